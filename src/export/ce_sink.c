/* ce_sink.c: the CloudEvents delivery thread (ce_sink.h). The only state the
 * workers touch is the hand-over buffer under one mutex, taken once per
 * worker batch (every 20 ms at most), never per request. Everything slow
 * (fdatasync, DNS, connect, the receiver's answer) happens on this thread. */
#include "export/ce_sink.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "export/cloudevent.h"
#include "http/http_client.h"
#include "export/spool.h"

#define PEEK_MAX (1u << 20) /* spool bytes read per POST at most */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define IDLE_WAKE_MS 1000
#define FAIL_LOG_EVERY 20 /* consecutive failures between two log lines */

struct ce_sink {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct bgqueue incoming; /* JSONL events from the workers */
    bool stop;
    struct ce_stats st;
    /* the thread's own */
    struct spool *spool;
    struct http_target target;
    char *token;
    char *source;
    char *peek;
    size_t max_events;
    unsigned fails;
    int backoff_ms;
    long long next_try;
};

static void stat_add(struct ce_sink *s, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    *field += n;
    s->st.spool_bytes = spool_pending(s->spool);
    pthread_mutex_unlock(&s->mu);
}

static void dropped(struct ce_sink *s, unsigned long lines, const char *why)
{
    pthread_mutex_lock(&s->mu);
    s->st.dropped += lines;
    uint64_t total = s->st.dropped;
    pthread_mutex_unlock(&s->mu);
    log_error("export: %lu CloudEvents dropped before the spool: %s (%" PRIu64
              " so far; the records file keeps them, `tollgate export` can replay them)",
              lines, why, total);
}

/* The id of the first line of buf, for logs. */
static void first_id(const char *buf, size_t len, char *out, size_t n)
{
    const char *nl = memchr(buf, '\n', len);
    json_t *j = json_loadb(buf, nl ? (size_t)(nl - buf) : len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    snprintf(out, n, "%.64s", id ? id : "?");
    json_decref(j);
}

static void failed(struct ce_sink *s, const char *why, size_t events)
{
    s->fails++;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    /* jitter: instances restarted together do not retry in step */
    int wait = s->backoff_ms / 2 + (int)((unsigned)rand() % (unsigned)(s->backoff_ms / 2 + 1));
    s->next_try = clock_mono_ms() + wait;
    stat_add(s, &s->st.post_failures, 1);
    if (s->fails == 1 || s->fails % FAIL_LOG_EVERY == 0)
        log_warn("export: CloudEvents POST of %zu events failed (%s); %" PRIu64
                 " bytes wait in the spool; retrying in %d ms (failure %u in a row)",
                 events, why, spool_pending(s->spool), wait, s->fails);
}

static void ack(struct ce_sink *s, size_t used)
{
    char err[256];
    if (spool_ack(s->spool, used, err, sizeof(err)) < 0)
        log_error("export: %s (those events may be sent again after a restart)", err);
}

/* One POST of what the spool holds. */
static void deliver(struct ce_sink *s)
{
    char err[256];
    long got = spool_peek(s->spool, s->peek, PEEK_MAX, err, sizeof(err));
    if (got <= 0) {
        if (got < 0) {
            log_error("export: %s", err);
            failed(s, "spool read error", 0);
        }
        return;
    }
    struct evbuffer *body = evbuffer_new();
    size_t used = 0, events = 0, bad = 0;
    if (!body || cloudevent_batch(body, s->peek, (size_t)got, s->max_events, s->source, &used,
                                  &events, &bad) < 0) {
        failed(s, "out of memory", 0);
        goto done;
    }
    if (events == 0) { /* only lines that are not records: nothing to send */
        ack(s, used);
        stat_add(s, &s->st.rejected, bad);
        goto done;
    }
    size_t len = evbuffer_get_length(body);
    int status = http_request(&s->target, "POST", CLOUDEVENT_BATCH_TYPE, s->token,
                              (const char *)evbuffer_pullup(body, -1), len, CE_POST_TIMEOUT_MS, err,
                              sizeof(err));
    if (status >= 200 && status < 300) {
        ack(s, used);
        pthread_mutex_lock(&s->mu);
        s->st.sent += events;
        s->st.rejected += bad;
        s->st.spool_bytes = spool_pending(s->spool);
        pthread_mutex_unlock(&s->mu);
        if (s->fails)
            log_info("export: CloudEvents receiver takes events again after %u failed POSTs",
                     s->fails);
        s->fails = 0;
        s->backoff_ms = 0;
        s->next_try = 0;
        if (s->max_events < CE_BATCH_EVENTS)
            s->max_events =
                s->max_events * 2 > CE_BATCH_EVENTS ? CE_BATCH_EVENTS : s->max_events * 2;
        goto done;
    }
    bool refused = status == 400 || status == 413 || status == 422;
    if (refused && events > 1) { /* find what it refuses: smaller batches, at once */
        s->max_events = events / 2;
        log_warn("export: CloudEvents receiver answered %d to %zu events (%zu bytes); "
                 "sending %zu at a time",
                 status, events, len, s->max_events);
        goto done;
    }
    if (refused) {
        char id[80];
        first_id(s->peek, used, id, sizeof(id));
        log_error("export: CloudEvents receiver refused event %s with %d: skipped (it stays in "
                  "the records file)",
                  id, status);
        ack(s, used);
        stat_add(s, &s->st.rejected, 1 + bad);
        s->max_events = CE_BATCH_EVENTS;
        goto done;
    }
    char why[300];
    if (status < 0)
        snprintf(why, sizeof(why), "%s", err);
    else
        snprintf(why, sizeof(why), "HTTP %d", status);
    failed(s, why, events);
done:
    if (body)
        evbuffer_free(body);
}

/* Moves what the workers handed over into the spool. */
static void spool_incoming(struct ce_sink *s, struct evbuffer *in, unsigned long lines)
{
    char err[256];
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    const char *p = (const char *)evbuffer_pullup(in, -1);
    if (!p)
        dropped(s, lines, "out of memory");
    else if (spool_append(s->spool, p, len, err, sizeof(err)) < 0)
        dropped(s, lines, err);
    evbuffer_drain(in, len);
    pthread_mutex_lock(&s->mu);
    s->st.spool_bytes = spool_pending(s->spool);
    pthread_mutex_unlock(&s->mu);
}

static void *run(void *arg)
{
    struct ce_sink *s = arg;
    struct evbuffer *local = evbuffer_new();
    if (!local) {
        log_error("export: out of memory: the CloudEvents thread stops");
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&s->mu);
        for (;;) {
            if (s->stop || evbuffer_get_length(s->incoming.buf) > 0)
                break;
            long long now = clock_mono_ms();
            bool due = spool_pending(s->spool) > 0 && now >= s->next_try;
            if (due)
                break;
            long long until = spool_pending(s->spool) > 0 ? s->next_try : now + IDLE_WAKE_MS;
            bgthread_wait_until(&s->cv, &s->mu, until);
        }
        bool stopping = s->stop;
        evbuffer_add_buffer(local, s->incoming.buf);
        unsigned long lines = s->incoming.lines;
        s->incoming.lines = 0;
        pthread_mutex_unlock(&s->mu);

        spool_incoming(s, local, lines);
        if (stopping)
            break;
        if (spool_pending(s->spool) > 0 && clock_mono_ms() >= s->next_try)
            deliver(s);
    }
    evbuffer_free(local);
    return NULL;
}

/* What open built, freed (the thread is not running). */
static void free_sink(struct ce_sink *s)
{
    spool_close(s->spool);
    http_target_free(&s->target);
    bgqueue_free(&s->incoming);
    free(s->peek);
    free(s->source);
    free(s->token);
    free(s);
}

struct ce_sink *ce_sink_open(const struct config *cfg, char *err, size_t errlen)
{
    struct ce_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (bgqueue_init(&s->incoming, CE_INCOMING_MAX, 0) < 0 || !(s->peek = malloc(PEEK_MAX)) ||
        !(s->source = strdup(cfg->export_source)) ||
        (cfg->cloudevents_token && !(s->token = strdup(cfg->cloudevents_token)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->max_events = CE_BATCH_EVENTS;
    char why[256];
    if (http_target_init(&s->target, cfg->cloudevents_url, cfg->export_ca_file, why, sizeof(why)) <
        0) {
        snprintf(err, errlen, "[export] cloudevents_url: %s", why);
        goto fail;
    }
    if (!(s->spool = spool_open(cfg->spool_dir, cfg->spool_max, why, sizeof(why)))) {
        snprintf(err, errlen, "[export] spool_dir: %s", why);
        goto fail;
    }
    s->st.spool_bytes = spool_pending(s->spool);
    if (bgthread_launch(&s->thread, &s->mu, &s->cv, run, s, "CloudEvents", err, errlen) < 0)
        goto fail;
    s->started = true;
    if (s->st.spool_bytes)
        log_info("export: %" PRIu64 " bytes of CloudEvents in the spool from an earlier run",
                 s->st.spool_bytes);
    return s;
fail:
    free_sink(s);
    return NULL;
}

void ce_sink_close(struct ce_sink *s)
{
    if (!s)
        return;
    bgthread_stop(s->thread, &s->mu, &s->cv, &s->stop);
    if (spool_pending(s->spool))
        log_info("export: %" PRIu64 " bytes of CloudEvents stay in the spool for the next start",
                 spool_pending(s->spool));
    free_sink(s);
}

void ce_sink_push(struct ce_sink *s, struct evbuffer *lines, unsigned long n)
{
    if (bgqueue_push(&s->incoming, &s->mu, &s->cv, lines, n, &s->st.dropped))
        log_error("export: the CloudEvents spool cannot keep up (disk too slow): %lu events "
                  "dropped (the records file keeps them)",
                  n);
}

void ce_sink_stats(struct ce_sink *s, struct ce_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}
