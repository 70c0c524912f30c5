/* metrics.h: Prometheus metrics. Every family is defined once, in
 * METRICS_FAMILIES; each worker owns one struct metrics that only its thread
 * writes (no lock: relaxed atomics, so the admin thread may read while the
 * worker writes), and the admin thread sums the workers' tables when it
 * renders /metrics in text format 0.0.4. */
#ifndef TOLLGATE_METRICS_H
#define TOLLGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/outcome.h"
#include "core/util.h"

struct evbuffer;
struct usage;

/* X(id, name, type, labels, help). labels: comma-separated label names, ""
 * for a family with a single sample; a histogram's "le" is implied. The
 * unlabelled families are the plain ones metrics_inc/metrics_set and struct
 * metrics_extra address by id. */
#define METRICS_FAMILIES(X)                                                                        \
    X(METRIC_REQUESTS, "tollgate_requests_total", COUNTER, "provider,model,outcome",               \
      "Requests answered, by provider, model and outcome.")                                        \
    X(METRIC_TOKENS, "tollgate_tokens_total", COUNTER, "provider,model,kind",                      \
      "Tokens used (kind: input, cached, output, reasoning; cached is a subset of input, "         \
      "reasoning of output).")                                                                     \
    X(METRIC_COST, "tollgate_cost_usd_total", COUNTER, "provider,model", "AI cost, USD.")          \
    X(METRIC_UNPRICED, "tollgate_unpriced_requests_total", COUNTER, "provider,model",              \
      "Metered requests whose model has no price (recorded with priced false).")                   \
    X(METRIC_DURATION, "tollgate_request_duration_seconds", HISTOGRAM, "provider",                 \
      "Time from the request's arrival to its end, seconds.")                                      \
    X(METRIC_TTFB, "tollgate_upstream_ttfb_seconds", HISTOGRAM, "provider",                        \
      "Time from the request's arrival to the upstream's response headers, seconds.")              \
    X(METRIC_BUDGET_DECISIONS, "tollgate_budget_decisions_total", COUNTER, "decision",             \
      "Admission decisions of the budget store.")                                                  \
    X(METRIC_ESTIMATED, "tollgate_estimated_requests_total", COUNTER, "",                          \
      "Requests whose usage was estimated by tollgate, not reported by the provider.")             \
    X(METRIC_REDIS_ERRORS, "tollgate_redis_errors_total", COUNTER, "",                             \
      "Redis commands that failed or timed out.")                                                  \
    X(METRIC_REDIS_CONNECT_FAILURES, "tollgate_redis_connect_failures_total", COUNTER, "",         \
      "Redis connection attempts that failed (refused, timed out, TLS, AUTH) and lost "            \
      "connections.")                                                                              \
    X(METRIC_REDIS_MOVED, "tollgate_redis_cluster_moved_total", COUNTER, "",                       \
      "Redis Cluster -MOVED redirections followed (a slot changed primary).")                      \
    X(METRIC_REDIS_ASK, "tollgate_redis_cluster_ask_total", COUNTER, "",                           \
      "Redis Cluster -ASK redirections followed (a slot migrating).")                              \
    X(METRIC_REDIS_CLUSTER_RETRIES, "tollgate_redis_cluster_retries_total", COUNTER, "",           \
      "Redis Cluster commands retried after -TRYAGAIN, -CLUSTERDOWN or a node not up yet.")        \
    X(METRIC_REDIS_CLUSTER_FAILED, "tollgate_redis_cluster_failed_total", COUNTER, "",             \
      "Redis Cluster commands failed by tollgate: a -MOVED loop, or retries spent.")               \
    X(METRIC_REDIS_SLOT_REFRESHES, "tollgate_redis_cluster_slot_refreshes_total", COUNTER, "",     \
      "Redis Cluster slot maps asked for (CLUSTER SLOTS): at start, after -MOVED, on node loss.")  \
    X(METRIC_INFLIGHT, "tollgate_inflight_requests", GAUGE, "", "Requests being answered.")        \
    X(METRIC_JOURNAL_PENDING, "tollgate_journal_pending", GAUGE, "",                               \
      "Settlements waiting in the local journal for Redis.")                                       \
    X(METRIC_RECORDS_WRITTEN, "tollgate_records_written_total", COUNTER, "",                       \
      "Usage records written.")                                                                    \
    X(METRIC_STREAM_ADDED, "tollgate_redis_stream_added_total", COUNTER, "",                       \
      "Records added to the [records] redis_stream.")                                              \
    X(METRIC_STREAM_DROPPED, "tollgate_redis_stream_dropped_total", COUNTER, "",                   \
      "Records not added to the redis_stream (backlog full, or refused by Redis).")                \
    X(METRIC_STREAM_BACKLOG, "tollgate_redis_stream_backlog", GAUGE, "",                           \
      "Records waiting for Redis to take them into the redis_stream.")                             \
    X(METRIC_RECORDS_FAILED, "tollgate_records_failed_total", COUNTER, "",                         \
      "Usage records lost because the records file could not be written (disk full).")             \
    X(METRIC_RECORDS_ROTATIONS, "tollgate_records_rotations_total", COUNTER, "",                   \
      "Rotations of the records file done by tollgate ([records] rotate).")                        \
    X(METRIC_CE_SPOOL_BYTES, "tollgate_export_spool_bytes", GAUGE, "",                             \
      "CloudEvents in the on-disk spool not yet accepted by the receiver, bytes.")                 \
    X(METRIC_CE_SENT, "tollgate_export_events_sent_total", COUNTER, "",                            \
      "CloudEvents the receiver accepted.")                                                        \
    X(METRIC_CE_DROPPED, "tollgate_export_events_dropped_total", COUNTER, "",                      \
      "CloudEvents never spooled (spool full, disk error); the records file keeps them.")          \
    X(METRIC_CE_REJECTED, "tollgate_export_events_rejected_total", COUNTER, "",                    \
      "CloudEvents the receiver refused one by one as invalid (400, 413, 422), skipped.")          \
    X(METRIC_CE_FAILURES, "tollgate_export_post_failures_total", COUNTER, "",                      \
      "CloudEvents POSTs that failed (unreachable, timeout, 5xx, ...) and were retried.")          \
    X(METRIC_OTLP_EXPORTED, "tollgate_otlp_spans_exported_total", COUNTER, "",                     \
      "Request spans the OpenTelemetry collector accepted.")                                       \
    X(METRIC_OTLP_DROPPED, "tollgate_otlp_spans_dropped_total", COUNTER, "",                       \
      "Request spans dropped: queue full (collector away or slow), refused, or left at shutdown.") \
    X(METRIC_OTLP_FAILURES, "tollgate_otlp_post_failures_total", COUNTER, "",                      \
      "OTLP POSTs that failed and were retried.")                                                  \
    X(METRIC_OTLP_QUEUED, "tollgate_otlp_spans_queued", GAUGE, "",                                 \
      "Request spans waiting to be sent to the collector.")                                        \
    X(METRIC_CONNECTIONS, "tollgate_connections", GAUGE, "", "Open client connections.")           \
    X(METRIC_CONNECTIONS_REFUSED, "tollgate_connections_refused_total", COUNTER, "",               \
      "API connections closed at once because max_connections were open.")                         \
    X(METRIC_ACCEPT_PAUSES, "tollgate_accept_pauses_total", COUNTER, "",                           \
      "Times a listener stopped accepting for a pause because accept ran out of file "             \
      "descriptors or memory (EMFILE, ENFILE).")                                                   \
    X(METRIC_LABELS_FOLDED, "tollgate_metric_labels_folded_total", COUNTER, "",                    \
      "Requests counted under model=\"other\" because a worker reached its label cap.")            \
    X(METRIC_CACHE_REQUESTS, "tollgate_cache_requests_total", COUNTER, "result",                   \
      "Requests by how the response cache answered: hit, miss, bypass.")                           \
    X(METRIC_CACHE_SAVED, "tollgate_cache_saved_usd_total", COUNTER, "",                           \
      "What the cache hits would have cost upstream, USD.")                                        \
    X(METRIC_CACHE_STORED, "tollgate_cache_stored_total", COUNTER, "",                             \
      "Answers sent to Redis to be kept in the response cache.")                                   \
    X(METRIC_CACHE_CORRUPT, "tollgate_cache_corrupt_total", COUNTER, "",                           \
      "Cache entries that failed their check when read (dropped, answered as a miss).")            \
    X(METRIC_CACHE_REFUSED, "tollgate_cache_refused_total", COUNTER, "",                           \
      "Whole answers not stored: a provider's refusal, or provider-run tools, images or audio "    \
      "found in the answer ([cache] allow).")                                                      \
    X(METRIC_USAGE_COUNTED, "tollgate_usage_events_counted_total", COUNTER, "",                    \
      "Usage events of POST /admin/api/usage counted (settled, recorded, exported).")              \
    X(METRIC_USAGE_DUPLICATES, "tollgate_usage_events_duplicate_total", COUNTER, "",               \
      "Usage events whose id was counted before with the same numbers: not counted again.")        \
    X(METRIC_USAGE_REFUSED, "tollgate_usage_requests_refused_total", COUNTER, "",                  \
      "POST /admin/api/usage requests refused: a bad event, an unknown tenant, an id reported "    \
      "with other numbers (nothing of them counted).")

enum metric_id {
#define X(id, name, type, labels, help) id,
    METRICS_FAMILIES(X)
#undef X
        METRIC__COUNT
};

/* Distinct (provider, model) pairs a worker labels by name; later pairs are
 * counted as (provider, "other") and in tollgate_metric_labels_folded_total. */
#define METRICS_MODEL_CAP 200
/* Longer label values are cut (at a UTF-8 boundary) to this many bytes. */
#define METRICS_LABEL_MAX 127

struct metrics;

/* What the process, rather than a worker, knows: added to the workers' sums
 * of the unlabelled family of the same id (other ids are ignored). Build it
 * with designated initialisers: {.value = {[METRIC_CONNECTIONS] = n}}. */
struct metrics_extra {
    int64_t value[METRIC__COUNT];
};

/* One worker's table, allocated whole here: the hot path never allocates.
 * Returns NULL when out of memory. */
struct metrics *metrics_new(void);
/* Frees m (NULL is fine). Only after its worker and every render are done. */
void metrics_free(struct metrics *m);

/* Counts one finished request (worker thread only). provider and model may
 * be NULL or "" (label "none"); u may be NULL (no usage). cost_nano: nano-USD.
 * unpriced: a metered request whose model had no price. latency_s: the whole
 * request (< 0: none, usage reported through the admin API); ttfb_s < 0: no upstream response
 * headers. Counts u->estimated in tollgate_estimated_requests_total. Never allocates. */
void metrics_request(struct metrics *m, const char *provider, const char *model,
                     enum outcome outcome, const struct usage *u, int64_t cost_nano, bool unpriced,
                     double latency_s, double ttfb_s);

/* Counts one admission decision: admit, downgrade, block, rate_limited,
 * unverified (others count as "other"). Worker thread only. */
void metrics_budget(struct metrics *m, const char *decision);

/* Counts one request's cache result: hit, miss, bypass (others count as
 * "other"), and what a hit saved (nano-USD). Worker thread only. */
void metrics_cache(struct metrics *m, const char *result, int64_t saved_nano);

/* Adds n (may be negative) to / sets an unlabelled family (worker thread
 * only); ids of labelled families are ignored. */
void metrics_inc(struct metrics *m, enum metric_id id, int64_t n);
void metrics_set(struct metrics *m, enum metric_id id, int64_t v);

/* Appends the text exposition of the n workers' tables (summed; any may be
 * NULL) plus extra (may be NULL) to out. Any thread; allocates scratch.
 * Returns 0, or -1 when out of memory. */
int metrics_render(struct evbuffer *out, struct metrics *const *per_worker, size_t n,
                   const struct metrics_extra *extra) MUST_CHECK;

/* Distinct label series m holds (pairs plus per-provider histograms); for
 * tests and the cap. */
size_t metrics_series_count(const struct metrics *m);

#endif
