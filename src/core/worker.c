/* worker.c: a worker thread and what it owns. Each worker binds its own
 * listening socket with SO_REUSEPORT, so the kernel spreads connections
 * across workers and no accept lock or hand-off is needed. Stopping is a
 * drain: close the listener, let requests in flight finish until the drain
 * deadline, then close what is left and flush the record batch. */
#include "core/worker.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <openssl/ssl.h>

#include "budget/alert.h"
#include "budget/budget.h"
#include "core/config.h"
#include "budget/journal.h"
#include "budget/tally.h"
#include "budget/ledger.h"
#include "core/log.h"
#include "core/metrics.h"
#include "proxy/proxy.h"
#include "records/record.h"
#include "export/export.h"
#include "redis/redis.h"
#include "http/listener.h"
#include "http/tls.h"
#include "http/upstream.h"

#define TICK_MS 250
#define DRAIN_SETTLE_MS 500 /* past the Redis timeout, for settlements of cut requests */

/* API connections open in the process, over every worker and both API
 * listeners (max_connections is per process; the admin listener counts its
 * own). */
static atomic_ulong api_open;

static void accept_conn(struct worker *w, int fd, SSL_CTX *tls)
{
    const struct client_hooks hooks = {proxy_handle, proxy_error_body, w};
    if (!client_new(w->base, fd, tls, &w->limits, &hooks))
        log_warn("worker %d: out of memory accepting a connection", w->id);
}

static void on_accept(int fd, void *arg)
{
    accept_conn(arg, fd, NULL);
}

static void on_accept_tls(int fd, void *arg)
{
    struct worker *w = arg;
    accept_conn(w, fd, w->tls);
}

void worker_new_id(struct worker *w, char out[33])
{
    /* xorshift64*, seeded per worker from getrandom */
    for (int half = 0; half < 2; half++) {
        w->rng ^= w->rng >> 12;
        w->rng ^= w->rng << 25;
        w->rng ^= w->rng >> 27;
        uint64_t v = w->rng * 0x2545F4914F6CDD1DULL;
        snprintf(out + half * 16, 17, "%016llx", (unsigned long long)v);
    }
}

/* The alerter follows the config: a reload builds a new one (webhook,
 * thresholds), and the old one finishes what it is delivering (freed from
 * the tick once idle). */
static void reload_alerter(struct worker *w, const struct config *cfg)
{
    char err[256];
    struct alerter *a = alerter_new(w->base, w->dns, cfg, w->redis, err, sizeof(err));
    if (!a) {
        log_error("worker %d: reload: alerts: %s; keeping the previous alert settings", w->id, err);
        return;
    }
    struct alerter **grown = realloc(w->retired, (w->n_retired + 1) * sizeof(*grown));
    if (!grown) {
        log_error("worker %d: reload: out of memory; keeping the previous alert settings", w->id);
        alerter_free(a);
        return;
    }
    w->retired = grown;
    w->retired[w->n_retired++] = w->alerter;
    w->alerter = a;
    ledger_set_alerter(w->ledger, a);
}

/* From the tick: frees the replaced alerters that have nothing left to send. */
static void free_retired(struct worker *w)
{
    size_t k = 0;
    for (size_t i = 0; i < w->n_retired; i++) {
        struct alerter_stats st;
        alerter_stats(w->retired[i], &st);
        if (st.pending == 0)
            alerter_free(w->retired[i]);
        else
            w->retired[k++] = w->retired[i];
    }
    w->n_retired = k;
}

static bool past(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* *t = now (monotonic) + ms. */
static void deadline_in(struct timespec *t, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    atomic_store(&w->redis_up, redis_connected(w->redis));
    unsigned long cf = redis_connect_failures(w->redis);
    metrics_inc(w->metrics, METRIC_REDIS_CONNECT_FAILURES, (int64_t)(cf - w->redis_cf_seen));
    w->redis_cf_seen = cf;
    struct redis_cluster_stats cs;
    redis_cluster_stats(w->redis, &cs);
    metrics_inc(w->metrics, METRIC_REDIS_MOVED, (int64_t)(cs.moved - w->redis_cl_seen.moved));
    metrics_inc(w->metrics, METRIC_REDIS_ASK, (int64_t)(cs.ask - w->redis_cl_seen.ask));
    metrics_inc(w->metrics, METRIC_REDIS_CLUSTER_RETRIES,
                (int64_t)(cs.retries - w->redis_cl_seen.retries));
    metrics_inc(w->metrics, METRIC_REDIS_CLUSTER_FAILED,
                (int64_t)(cs.failed - w->redis_cl_seen.failed));
    metrics_inc(w->metrics, METRIC_REDIS_SLOT_REFRESHES,
                (int64_t)(cs.refreshes - w->redis_cl_seen.refreshes));
    w->redis_cl_seen = cs;
    /* after a burst, give the freed buffers back to the system so RSS
     * follows the load down (glibc keeps them per thread arena otherwise) */
    long now_inflight = atomic_load(&w->stats.inflight);
    if (now_inflight == 0 && w->busy_since_trim) {
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not glibc's: nothing to trim */
        malloc_trim(0);
#endif
        w->busy_since_trim = false;
    } else if (now_inflight > 0) {
        w->busy_since_trim = true;
    }
    journal_tick(w->journal, w->redis);
    proxy_tick(w);
    ledger_tick(w->ledger);
    if (w->n_retired)
        free_retired(w);
    atomic_store(&w->stats.journal_pending, (long)journal_pending(w->journal));
    if (!w->stopping)
        return;
    long inflight = atomic_load(&w->stats.inflight);
    if (!w->cut && past(&w->stop_deadline)) {
        /* what did not finish is cut now and recorded drain_cut; its
         * settlement goes to Redis, which gets a moment to answer before
         * the loop ends (a settlement still unanswered then is journaled) */
        if (inflight)
            log_warn("worker %d: drain deadline: cutting %ld requests", w->id, inflight);
        w->cut = true;
        client_close_all();
        proxy_cut_draining(w); /* and what was still read for a client that left */
        deadline_in(&w->settle_deadline, w->gen->cfg->redis_timeout_ms + DRAIN_SETTLE_MS);
        inflight = atomic_load(&w->stats.inflight);
    }
    if (inflight == 0 && ledger_pending(w->ledger) == 0)
        tally_flush(w->tally); /* what the last settlements summed, now */
    if ((inflight == 0 && ledger_pending(w->ledger) == 0 && tally_pending(w->tally) == 0) ||
        (w->cut && past(&w->settle_deadline))) {
        client_close_all(); /* idle keep-alive connections */
        record_queue_flush(w->records);
        export_worker_flush(w->exports);
        event_base_loopexit(w->base, NULL);
    }
}

struct worker_call {
    void (*fn)(struct worker *w, void *arg);
    void *arg;
    struct worker_call *next;
};

/* Runs the calls queued so far, oldest first. */
static void run_calls(struct worker *w)
{
    pthread_mutex_lock(&w->calls_lock);
    struct worker_call *c = w->calls;
    w->calls = NULL;
    pthread_mutex_unlock(&w->calls_lock);
    struct worker_call *rev = NULL; /* queued newest first: reverse */
    while (c) {
        struct worker_call *next = c->next;
        c->next = rev;
        rev = c;
        c = next;
    }
    while (rev) {
        struct worker_call *next = rev->next;
        rev->fn(w, rev->arg);
        free(rev);
        rev = next;
    }
}

static void on_call(evutil_socket_t fd, short what, void *arg)
{
    run_calls(arg);
}

bool worker_call(struct worker *w, void (*fn)(struct worker *w, void *arg), void *arg)
{
    struct worker_call *c = malloc(sizeof(*c));
    if (!c)
        return false;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&w->calls_lock);
    c->next = w->calls;
    w->calls = c;
    pthread_mutex_unlock(&w->calls_lock);
    event_active(w->call_ev, 0, 0); /* thread-safe: evthread_use_pthreads() is on */
    return true;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (w->stopping)
        return;
    w->stopping = true;
    listener_free(w->listener);
    w->listener = NULL;
    listener_free(w->tls_listener);
    w->tls_listener = NULL;
    deadline_in(&w->stop_deadline, w->gen->cfg->drain_timeout_ms);
    on_tick(-1, 0, w);
}

static void gen_free(struct generation *g)
{
    if (g->pools) {
        for (size_t i = 0; i < g->cfg->n_upstreams; i++)
            if (g->pools[i])
                upstream_pool_free(g->pools[i]);
        free(g->pools);
    }
    config_unref(g->cfg);
    free(g);
}

static struct generation *gen_new(struct worker *w, struct config *cfg, char *err, size_t errlen)
{
    struct generation *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->cfg = config_ref(cfg);
    g->refs = 1;
    g->pools = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*g->pools));
    if (!g->pools) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    const struct upstream_limits lim = {
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .first_byte_timeout_ms = cfg->first_byte_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .pool_size = cfg->pool_size,
    };
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        g->pools[i] = upstream_pool_new(w->base, w->dns, &cfg->upstreams[i], &lim, err, errlen);
        if (!g->pools[i])
            goto fail;
    }
    return g;
fail:
    gen_free(g);
    return NULL;
}

struct generation *worker_gen_ref(struct worker *w)
{
    w->gen->refs++;
    return w->gen;
}

void worker_gen_unref(struct generation *g)
{
    if (--g->refs == 0)
        gen_free(g);
}

static void set_limits(struct worker *w, const struct config *cfg)
{
    w->limits = (struct client_limits){
        .max_header_size = cfg->max_header_size,
        .max_body = cfg->max_body,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .keepalive_timeout_ms = cfg->keepalive_timeout_ms,
        .send_timeout_ms = cfg->send_timeout_ms,
        .open = &api_open,
    };
}

/* On the worker's thread: swap in the config the main thread handed over,
 * and re-apply everything built from the config (client limits, upstream
 * pools, the Redis deadline, the alerter). */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct config *cfg = atomic_exchange(&w->next_cfg, NULL);
    if (!cfg)
        return;
    char err[512];
    struct generation *g = gen_new(w, cfg, err, sizeof(err));
    config_unref(cfg);
    if (!g) {
        log_error("worker %d: reload: %s; keeping the previous config", w->id, err);
        return;
    }
    struct generation *old = w->gen;
    w->gen = g;
    set_limits(w, g->cfg);
    redis_set_timeout(w->redis, g->cfg->redis_timeout_ms);
    reload_alerter(w, g->cfg);
    worker_gen_unref(old);
    log_info("worker %d: new requests use the reloaded config", w->id);
}

void worker_reload(struct worker *w, struct config *cfg)
{
    struct config *prev = atomic_exchange(&w->next_cfg, config_ref(cfg));
    if (prev) /* a reload the worker had not picked up yet: superseded */
        config_unref(prev);
    event_active(w->reload_ev, 0, 0);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static struct listener *listen_on(struct worker *w, const char *addr, void (*cb)(int, void *),
                                  char *err, size_t errlen)
{
    char name[32];
    snprintf(name, sizeof(name), "worker %d", w->id);
    const struct listener_conf conf = {
        .name = name,
        .addr = addr,
        .reuseport = true,
        .backlog = 1024,
        .open = &api_open,
        .max_open = (unsigned long)w->max_connections,
        .accept = cb,
        .arg = w,
        .metrics = w->metrics,
    };
    return listener_new(w->base, &conf, err, errlen);
}

struct worker *worker_new(int id, struct config *cfg, int max_connections, struct record_sink *sink,
                          struct export_hub *hub, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->id = id;
    pthread_mutex_init(&w->calls_lock, NULL);
    w->max_connections = max_connections;
    w->metrics = metrics_new();
    if (!w->metrics) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
        w->rng = (uint64_t)time(NULL) * 2654435761u + (uint64_t)id + 1;
    set_limits(w, cfg);
    w->base = event_base_new();
    if (!w->base) {
        snprintf(err, errlen, "event_base_new failed");
        goto fail;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns) /* no resolv.conf: IP-literal upstreams still work */
        w->dns = evdns_base_new(w->base, 0);
    if (!w->dns) {
        snprintf(err, errlen, "evdns_base_new failed");
        goto fail;
    }
    w->gen = gen_new(w, cfg, err, errlen);
    if (!w->gen)
        goto fail;
    struct redis_tls tls = {cfg->redis_ca_file, cfg->redis_cert_file, cfg->redis_key_file};
    w->redis = redis_new(w->base, cfg->redis_url, &tls, cfg->redis_timeout_ms, err, errlen);
    if (!w->redis)
        goto fail;
    w->tally = tally_new(w->base, w->redis);
    if (!w->tally) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->journal = journal_open(w->base, cfg->journal_dir, w->id, err, errlen);
    if (!w->journal)
        goto fail;
    w->alerter = alerter_new(w->base, w->dns, cfg, w->redis, err, errlen);
    if (!w->alerter)
        goto fail;
    w->ledger = ledger_new(w->redis, w->tally, w->journal, w->metrics);
    if (!w->ledger) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    ledger_set_alerter(w->ledger, w->alerter);
    w->records = record_queue_new(sink, w->base);
    w->exports = export_worker_new(hub, w->base, w->redis, w->metrics);
    if (!w->records || !w->exports) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->listener = listen_on(w, cfg->listen, on_accept, err, errlen);
    if (!w->listener)
        goto fail;
    if (cfg->tls_listen) {
        w->tls = tls_server_new(cfg->tls_cert, cfg->tls_key, err, errlen);
        if (!w->tls)
            goto fail;
        w->tls_listener = listen_on(w, cfg->tls_listen, on_accept_tls, err, errlen);
        if (!w->tls_listener)
            goto fail;
    }
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    w->reload_ev = event_new(w->base, -1, 0, on_reload, w);
    w->call_ev = event_new(w->base, -1, 0, on_call, w);
    if (!w->stop_ev || !w->tick || !w->reload_ev || !w->call_ev) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(w->tick, &tv);
    return w;

fail:
    worker_join(w);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, run, w) == 0 ? 0 : -1;
}

void worker_stop(struct worker *w)
{
    event_active(w->stop_ev, 0, 0); /* thread-safe: evthread_use_pthreads() is on */
}

void worker_join(struct worker *w)
{
    if (!w)
        return;
    if (w->thread)
        pthread_join(w->thread, NULL);
    if (w->call_ev)
        run_calls(w); /* asked for after the loop's last turn */
    listener_free(w->listener);
    listener_free(w->tls_listener);
    if (w->tls)
        SSL_CTX_free(w->tls);
    if (w->records)
        record_queue_free(w->records);
    /* alerts first (their Redis commands are cancelled); then Redis, whose
     * failing settlements still reach the open journal; then the journal */
    if (w->ledger)
        ledger_set_alerter(w->ledger, NULL);
    if (w->alerter)
        alerter_free(w->alerter);
    export_worker_free(w->exports);
    for (size_t i = 0; i < w->n_retired; i++)
        alerter_free(w->retired[i]);
    free(w->retired);
    if (w->redis)
        redis_free(w->redis); /* failing settlements and releases reach the ledger */
    ledger_free(w->ledger);
    tally_free(w->tally); /* after Redis: its failed flushes come back to it */
    if (w->journal)
        journal_close(w->journal);
    if (w->gen)
        worker_gen_unref(w->gen);
    struct config *pending = atomic_exchange(&w->next_cfg, NULL);
    if (pending)
        config_unref(pending);
    if (w->reload_ev)
        event_free(w->reload_ev);
    if (w->call_ev)
        event_free(w->call_ev);
    pthread_mutex_destroy(&w->calls_lock);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->tick)
        event_free(w->tick);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->base)
        event_base_free(w->base);
    proxy_worker_free(w);
    metrics_free(w->metrics);
    free(w);
}
