/* export.c: the fan-out of finished records (export.h). The record is
 * formatted once, as the records file has it, and that line is what every
 * export carries. */
#include "export/export.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "export/ce_sink.h"
#include "export/otlp_sink.h"
#include "export/span.h"
#include "export/trace.h"
#include "export/stream.h"
#include "records/record.h"

#define LINE_STACK 4096  /* most lines fit */
#define LINE_HEAP 131072 /* record.c's longest line */
#define BATCH_BYTES (64 * 1024)
#define BATCH_MS 20

struct export_hub {
    struct ce_sink *ce;     /* NULL: cloudevents_url unset */
    struct otlp_sink *otlp; /* NULL: otlp_endpoint unset */
};

struct export_worker {
    struct export_hub *hub;
    struct stream_export *stream;
    struct evbuffer *ce_batch; /* lines for hub->ce */
    unsigned long ce_lines;
    struct evbuffer *spans; /* span lines for hub->otlp */
    unsigned long n_spans;
    struct event *timer;
};

struct export_hub *export_hub_open(const struct config *cfg, char *err, size_t errlen)
{
    struct export_hub *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg->cloudevents_url && !(h->ce = ce_sink_open(cfg, err, errlen))) {
        free(h);
        return NULL;
    }
    if (cfg->otlp_endpoint && !(h->otlp = otlp_sink_open(cfg, err, errlen))) {
        ce_sink_close(h->ce);
        free(h);
        return NULL;
    }
    if (h->ce)
        log_info("export: CloudEvents to the configured receiver, spool in %s", cfg->spool_dir);
    if (h->otlp)
        log_info("export: OTLP spans to %s/v1/traces", cfg->otlp_endpoint);
    return h;
}

void export_hub_close(struct export_hub *h)
{
    if (!h)
        return;
    ce_sink_close(h->ce);
    otlp_sink_close(h->otlp);
    free(h);
}

void export_hub_metrics(struct export_hub *h, struct metrics_extra *x)
{
    if (!h)
        return;
    if (h->otlp) {
        struct otlp_stats os;
        otlp_sink_stats(h->otlp, &os);
        x->value[METRIC_OTLP_EXPORTED] += (int64_t)os.exported;
        x->value[METRIC_OTLP_DROPPED] += (int64_t)os.dropped;
        x->value[METRIC_OTLP_FAILURES] += (int64_t)os.post_failures;
        x->value[METRIC_OTLP_QUEUED] += (int64_t)os.queued;
    }
    if (!h->ce)
        return;
    struct ce_stats st;
    ce_sink_stats(h->ce, &st);
    x->value[METRIC_CE_SPOOL_BYTES] += (int64_t)st.spool_bytes;
    x->value[METRIC_CE_SENT] += (int64_t)st.sent;
    x->value[METRIC_CE_DROPPED] += (int64_t)st.dropped;
    x->value[METRIC_CE_REJECTED] += (int64_t)st.rejected;
    x->value[METRIC_CE_FAILURES] += (int64_t)st.post_failures;
}

void export_worker_flush(struct export_worker *x)
{
    if (!x)
        return;
    evtimer_del(x->timer);
    if (x->ce_lines && x->hub->ce)
        ce_sink_push(x->hub->ce, x->ce_batch, x->ce_lines);
    x->ce_lines = 0;
    if (x->n_spans && x->hub->otlp)
        otlp_sink_push(x->hub->otlp, x->spans, x->n_spans);
    x->n_spans = 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    export_worker_flush(arg);
}

struct export_worker *export_worker_new(struct export_hub *hub, struct event_base *base,
                                        struct redis *r, struct metrics *m)
{
    struct export_worker *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->hub = hub;
    if (!(x->stream = stream_export_new(base, r, m)) || !(x->ce_batch = evbuffer_new()) ||
        !(x->spans = evbuffer_new()) || !(x->timer = evtimer_new(base, on_timer, x)))
        goto fail;
    return x;
fail:
    if (x->ce_batch)
        evbuffer_free(x->ce_batch);
    if (x->spans)
        evbuffer_free(x->spans);
    stream_export_free(x->stream);
    free(x);
    return NULL;
}

void export_worker_free(struct export_worker *x)
{
    if (!x)
        return;
    export_worker_flush(x);
    stream_export_free(x->stream);
    event_free(x->timer);
    evbuffer_free(x->ce_batch);
    evbuffer_free(x->spans);
    free(x);
}

static void batch_added(struct export_worker *x)
{
    if (evbuffer_get_length(x->ce_batch) >= BATCH_BYTES ||
        evbuffer_get_length(x->spans) >= BATCH_BYTES) {
        export_worker_flush(x);
    } else if (!evtimer_pending(x->timer, NULL)) {
        struct timeval tv = {0, BATCH_MS * 1000};
        evtimer_add(x->timer, &tv);
    }
}

static void queue_ce(struct export_worker *x, const char *line, size_t len)
{
    if (evbuffer_add(x->ce_batch, line, len) < 0) {
        log_error("export: out of memory; a CloudEvent is not spooled (the records file keeps it)");
        return;
    }
    x->ce_lines++;
    batch_added(x);
}

void export_record(struct export_worker *x, const struct config *cfg, const struct record *rec,
                   const struct trace_ctx *trace, const char *decision)
{
    char stack[LINE_STACK];
    char *line = stack;
    bool ce = x->hub && x->hub->ce;
    if (trace && trace->on && x->hub && x->hub->otlp) {
        if (span_format(x->spans, rec, trace, decision) == 0) {
            x->n_spans++;
            batch_added(x);
        } else {
            log_error("otlp: out of memory; the span of %.64s is dropped", rec->id ? rec->id : "?");
        }
    }
    if (!cfg->redis_stream && !ce)
        return;
    int n = record_format(rec, stack, sizeof(stack));
    if (n < 0) { /* rare: long endpoint or many escapes */
        if (!(line = malloc(LINE_HEAP)) || (n = record_format(rec, line, LINE_HEAP)) < 0) {
            log_error("export: record %.64s could not be formatted; not exported",
                      rec->id ? rec->id : "?");
            goto done;
        }
    }
    if (ce)
        queue_ce(x, line, (size_t)n); /* with its '\n': the spool is JSONL */
    if (cfg->redis_stream)            /* the entry is the object itself */
        stream_export_push(x->stream, cfg->redis_stream, cfg->redis_stream_maxlen, line,
                           n > 0 && line[n - 1] == '\n' ? (size_t)n - 1 : (size_t)n);
done:
    if (line != stack)
        free(line);
}
