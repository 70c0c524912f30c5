/* worker.h: one worker thread: its own event loop, DNS resolver, upstream
 * pools, Redis connection and record batch, accepting on its own
 * SO_REUSEPORT socket, so the request path shares nothing and takes no
 * lock. The main thread starts and stops workers and reads their stats. */
#ifndef TOLLGATE_WORKER_H
#define TOLLGATE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "http/client.h"
#include "redis/redis.h"
#include "core/util.h"

struct config;
struct metrics;
struct record_sink;
struct export_hub;
struct export_worker;
struct req;
struct worker_call;

/* Gauges the drain logic and the admin thread read (relaxed atomics);
 * every other figure is in the worker's metrics (metrics.h). */
struct worker_stats {
    atomic_long inflight;
    atomic_long journal_pending;
};

/* A config and the upstream pools built for it. Requests hold the
 * generation they started with; a reload makes a new one, and the old one is
 * freed by the last request that used it. Touched only on its worker's
 * thread, so the count is a plain int. */
struct generation {
    struct config *cfg;
    struct upstream_pool **pools; /* one per cfg->upstreams[i] */
    int refs;
};

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct generation *gen;            /* what new requests take */
    _Atomic(struct config *) next_cfg; /* main -> worker: a reloaded config */
    struct event *reload_ev;
    struct redis *redis;
    struct journal *journal;  /* settlements Redis did not take */
    struct tally *tally;      /* breakdown counters on their way to Redis */
    struct alerter *alerter;  /* soft-limit webhooks, built from gen->cfg */
    struct alerter **retired; /* replaced by a reload, still delivering */
    size_t n_retired;
    struct ledger *ledger; /* settlements and releases (ledger.h) */
    struct record_queue *records;
    struct export_worker *exports; /* redis_stream, CloudEvents, OTLP */
    struct listener *listener;
    struct listener *tls_listener; /* [server] tls_listen, NULL if off */
    int max_connections;           /* API connections of the process (fdlimit.h) */
    struct ssl_ctx_st *tls;        /* its SSL_CTX */
    struct event *stop_ev;         /* main -> worker: stop accepting, drain */
    struct event *tick;            /* periodic: readiness, drain check */
    struct client_limits limits;
    struct worker_stats stats;
    struct metrics *metrics; /* written by this worker only */
    atomic_bool redis_up;
    unsigned long redis_cf_seen;              /* redis_connect_failures already in metrics */
    struct redis_cluster_stats redis_cl_seen; /* and the cluster counters */
    bool stopping;
    bool cut;                   /* past drain_timeout: requests still open are cut (drain_cut) */
    bool busy_since_trim;       /* requests ran since the last malloc_trim */
    pthread_mutex_t calls_lock; /* guards calls: any thread -> this worker */
    struct worker_call *calls;  /* worker_call: to run on this thread, in order */
    struct event *call_ev;
    struct timespec stop_deadline;
    struct timespec settle_deadline; /* after the cut: Redis answers the settlements by then */
    uint64_t rng;                    /* request ids */
    struct req *reqs;                /* proxy.c: the requests alive on this worker */
    struct req *req_free;            /* proxy.c: finished requests kept for reuse */
    unsigned n_req_free;
    int64_t lease_renewed_ms; /* proxy.c: last lease renewal (monotonic ms) */
    unsigned renew_round;     /* proxy.c: renewal rounds so far */
};

/* Creates a worker bound to cfg->listen (SO_REUSEPORT); does not start it.
 * max_connections: API connections the process may hold open, over every
 * worker (cfg->max_connections, or less when descriptors are short). */
struct worker *worker_new(int id, struct config *cfg, int max_connections, struct record_sink *sink,
                          struct export_hub *hub, char *err, size_t errlen) MUST_CHECK;
int worker_start(struct worker *w) MUST_CHECK;
/* Hands the worker a reloaded config (thread-safe; takes a reference). New
 * requests use it; requests in flight keep theirs. */
void worker_reload(struct worker *w, struct config *cfg);
/* Writes a fresh request id (32 hex digits and a NUL) into out: unique
 * and unguessable enough for a request id, and cheap. Worker thread only. */
void worker_new_id(struct worker *w, char out[33]);

/* A request takes and drops the current generation (worker thread only). */
struct generation *worker_gen_ref(struct worker *w);
void worker_gen_unref(struct generation *g);

/* Runs fn(w, arg) on w's thread soon (thread-safe; in the order asked).
 * Every call runs exactly once: one still queued when the loop has ended
 * runs in worker_join, before the worker's Redis connection, records and
 * exports go (a settlement then reaches the journal). false: out of memory,
 * fn will not run. */
bool worker_call(struct worker *w, void (*fn)(struct worker *w, void *arg), void *arg) MUST_CHECK;

/* Asks the worker to stop accepting and finish its requests (thread-safe). */
void worker_stop(struct worker *w);
/* Waits for the thread and frees everything. */
void worker_join(struct worker *w);

#endif
