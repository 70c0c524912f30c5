/* export.h: where a finished usage record leaves tollgate besides the
 * records file. The process owns one export_hub (the sinks with threads of
 * their own: CloudEvents); each worker owns one export_worker and hands it
 * every record it emits (proxied requests and usage reported through the
 * admin API), which fans the record out to the exports the config turns on:
 * the Redis stream on the worker's own connection, the hub's sinks
 * (CloudEvents, OTLP spans) through per-worker batches handed over every
 * 20 ms. Never waits. */
#ifndef TOLLGATE_EXPORT_H
#define TOLLGATE_EXPORT_H

#include <stddef.h>
#include "core/util.h"

struct config;
struct event_base;
struct metrics;
struct metrics_extra;
struct record;
struct redis;
struct trace_ctx;

struct export_hub;
struct export_worker;

/* Starts the sinks cfg turns on ([export] cloudevents_url, otlp_endpoint); main thread,
 * before the workers. NULL with err on failure (a spool that cannot be
 * opened, a bad URL). */
struct export_hub *export_hub_open(const struct config *cfg, char *err, size_t errlen) MUST_CHECK;
/* After every worker is freed: delivers nothing more, keeps the spool. */
void export_hub_close(struct export_hub *h);
/* Adds the sinks' gauges and counters to x (any thread). */
void export_hub_metrics(struct export_hub *h, struct metrics_extra *x);

/* One per worker, on its loop; r and m are the worker's and outlive it; hub
 * outlives it. */
struct export_worker *export_worker_new(struct export_hub *hub, struct event_base *base,
                                        struct redis *r, struct metrics *m) MUST_CHECK;
/* Hands over what is batched; before redis_free. NULL is fine. */
void export_worker_free(struct export_worker *x);
/* Hands the batch over now (shutdown). */
void export_worker_flush(struct export_worker *x);
/* Exports rec as cfg (the request's snapshot) says: the stream, the
 * CloudEvents spool, and with trace (its span ids; NULL or trace->on false:
 * no span) the OTLP span, decision naming the admission decision (NULL:
 * none ran). Nothing is kept. */
void export_record(struct export_worker *x, const struct config *cfg, const struct record *rec,
                   const struct trace_ctx *trace, const char *decision);

#endif
