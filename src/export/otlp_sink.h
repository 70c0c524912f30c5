/* otlp_sink.h: delivery of request spans to an OpenTelemetry collector
 * ([export] otlp_endpoint) over OTLP/HTTP with the JSON encoding: POST
 * {endpoint}/v1/traces. Workers hand over span lines (span.h) in batches;
 * a thread of its own wraps up to OTLP_BATCH_SPANS of them in one
 * ExportTraceServiceRequest and POSTs it, retrying with backoff while the
 * collector is away. Traces are telemetry, not billing: the queue is
 * bounded in memory, and spans past it (or still queued at shutdown) are
 * dropped and counted. */
#ifndef TOLLGATE_OTLP_SINK_H
#define TOLLGATE_OTLP_SINK_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

struct config;
struct evbuffer;

#define OTLP_QUEUE_MAX 8192 /* spans waiting; past it new spans are dropped */
#define OTLP_BATCH_SPANS 512
#define OTLP_POST_TIMEOUT_MS 5000

struct otlp_sink;

struct otlp_stats {
    uint64_t exported;      /* spans the collector accepted */
    uint64_t dropped;       /* queue full, refused as invalid, or left at shutdown */
    uint64_t post_failures; /* POSTs that failed and were retried */
    uint64_t queued;        /* waiting now */
};

/* Starts the thread (main thread; cfg->otlp_endpoint set). NULL with err. */
struct otlp_sink *otlp_sink_open(const struct config *cfg, char *err, size_t errlen) MUST_CHECK;
/* Stops the thread (a POST in flight ends within OTLP_POST_TIMEOUT_MS);
 * what is still queued is dropped, counted and logged. */
void otlp_sink_close(struct otlp_sink *s);
/* Takes all of spans ('\n'-terminated span objects, n of them); any thread. */
void otlp_sink_push(struct otlp_sink *s, struct evbuffer *spans, unsigned long n);
void otlp_sink_stats(struct otlp_sink *s, struct otlp_stats *out);

#endif
