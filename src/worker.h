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
#include "client.h"
#include "util.h"

struct config;
struct record_sink;

/* Counters a worker keeps and the admin thread sums (relaxed atomics). */
#define WORKER_STATS(X)                                                                            \
    X(requests_ok, "requests answered with outcome ok")                                          \
    X(requests_upstream_error, "requests with outcome upstream_error")                          \
    X(requests_client_aborted, "requests with outcome client_aborted")                          \
    X(requests_bad_request, "requests with outcome bad_request")                                \
    X(requests_blocked, "requests with outcome blocked")                                        \
    X(requests_rate_limited, "requests with outcome rate_limited")                              \
    X(unpriced, "metered requests whose model has no price")                                    \
    X(estimated, "requests whose usage was estimated")                                          \
    X(settle_failed, "settlements Redis did not take")                                          \
    X(budget_admit, "admission decisions: admit")                                               \
    X(budget_downgrade, "admission decisions: downgrade")                                       \
    X(budget_block, "admission decisions: block")                                               \
    X(budget_rate_limited, "admission decisions: rate limited")                                 \
    X(budget_unverified, "admissions the budget store did not answer")                          \
    X(cost_nano, "cost of all requests, nano-USD")

struct worker_stats {
#define X(name, doc) atomic_ulong name;
    WORKER_STATS(X)
#undef X
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
    struct generation *gen;          /* what new requests take */
    _Atomic(struct config *) next_cfg; /* main -> worker: a reloaded config */
    struct event *reload_ev;
    struct redis *redis;
    struct journal *journal;         /* settlements Redis did not take */
    struct alerter *alerter;         /* soft-limit webhooks */
    long settles_pending;            /* settlements sent, not yet answered */
    struct record_queue *records;
    struct evconnlistener *listener;
    struct evconnlistener *tls_listener; /* [server] tls_listen, NULL if off */
    struct ssl_ctx_st *tls;              /* its SSL_CTX */
    struct event *stop_ev;           /* main -> worker: stop accepting, drain */
    struct event *tick;              /* periodic: readiness, drain check */
    struct client_limits limits;
    struct worker_stats stats;
    atomic_bool redis_up;
    bool stopping;
    struct timespec stop_deadline;
    uint64_t rng;                    /* request ids */
};

/* Creates a worker bound to cfg->listen (SO_REUSEPORT); does not start it. */
struct worker *worker_new(int id, struct config *cfg, struct record_sink *sink, char *err,
                          size_t errlen) MUST_CHECK;
int worker_start(struct worker *w) MUST_CHECK;
/* Hands the worker a reloaded config (thread-safe; takes a reference). New
 * requests use it; requests in flight keep theirs. */
void worker_reload(struct worker *w, struct config *cfg);
/* A request takes and drops the current generation (worker thread only). */
struct generation *worker_gen_ref(struct worker *w);
void worker_gen_unref(struct generation *g);

/* Asks the worker to stop accepting and finish its requests (thread-safe). */
void worker_stop(struct worker *w);
/* Waits for the thread and frees everything. */
void worker_join(struct worker *w);

#endif
