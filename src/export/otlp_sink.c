/* otlp_sink.c: the OTLP/HTTP JSON delivery thread (otlp_sink.h). The
 * request body is one resource (service.name = tollgate) with one scope
 * (tollgate) holding the batch's spans, as the OTLP JSON encoding of
 * ExportTraceServiceRequest has it. */
#include "export/otlp_sink.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "http/http_client.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define FAIL_LOG_EVERY 20

static const char head[] = "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
                           "\"service.name\",\"value\":{\"stringValue\":\"tollgate\"}}]},"
                           "\"scopeSpans\":[{\"scope\":{\"name\":\"tollgate\"},\"spans\":[";
static const char tail[] = "]}]}]}";

struct otlp_sink {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct bgqueue queue; /* span lines from the workers */
    bool stop;
    struct otlp_stats st;
    /* the thread's own */
    struct http_target target;
    unsigned fails;
    int backoff_ms;
};

/* Moves up to OTLP_BATCH_SPANS lines of q into body (as array items);
 * returns how many. Under mu. */
static unsigned long take(struct otlp_sink *s, struct evbuffer *body)
{
    unsigned long n = 0;
    while (n < OTLP_BATCH_SPANS && s->queue.lines > 0) {
        size_t len;
        char *line = evbuffer_readln(s->queue.buf, &len, EVBUFFER_EOL_LF);
        if (!line)
            break;
        if (n > 0)
            evbuffer_add(body, ",", 1);
        evbuffer_add(body, line, len);
        free(line);
        n++;
        s->queue.lines--;
    }
    return n;
}

/* Waits until the deadline or a stop; returns true when stopping. */
static bool sleep_until(struct otlp_sink *s, long long until)
{
    pthread_mutex_lock(&s->mu);
    while (!s->stop && clock_mono_ms() < until)
        bgthread_wait_until(&s->cv, &s->mu, until);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *run(void *arg)
{
    struct otlp_sink *s = arg;
    struct evbuffer *body = evbuffer_new();
    unsigned long n = 0; /* spans in body, kept across retries */
    char err[256];
    if (!body) {
        log_error("otlp: out of memory: the OTLP thread stops");
        return NULL;
    }
    for (;;) {
        if (n == 0) {
            pthread_mutex_lock(&s->mu);
            while (!s->stop && s->queue.lines == 0)
                pthread_cond_wait(&s->cv, &s->mu);
            if (s->stop) {
                pthread_mutex_unlock(&s->mu);
                break;
            }
            evbuffer_add(body, head, sizeof(head) - 1);
            n = take(s, body);
            evbuffer_add(body, tail, sizeof(tail) - 1);
            pthread_mutex_unlock(&s->mu);
        }
        size_t len = evbuffer_get_length(body);
        int status = http_request(&s->target, "POST", "application/json", NULL,
                                  (const char *)evbuffer_pullup(body, -1), len,
                                  OTLP_POST_TIMEOUT_MS, err, sizeof(err));
        bool ok = status >= 200 && status < 300;
        bool refused = status == 400 || status == 413; /* retrying would not help */
        if (ok || refused) {
            pthread_mutex_lock(&s->mu);
            if (ok)
                s->st.exported += n;
            else
                s->st.dropped += n;
            pthread_mutex_unlock(&s->mu);
            if (refused)
                log_error("otlp: the collector refused %lu spans with %d: dropped", n, status);
            else if (s->fails)
                log_info("otlp: the collector takes spans again after %u failed POSTs", s->fails);
            if (ok)
                s->fails = 0;
            s->backoff_ms = 0;
            evbuffer_drain(body, len);
            n = 0;
            continue;
        }
        s->fails++;
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (s->backoff_ms > BACKOFF_MAX_MS)
            s->backoff_ms = BACKOFF_MAX_MS;
        pthread_mutex_lock(&s->mu);
        s->st.post_failures++;
        pthread_mutex_unlock(&s->mu);
        if (s->fails == 1 || s->fails % FAIL_LOG_EVERY == 0) {
            char why[300];
            if (status < 0)
                snprintf(why, sizeof(why), "%s", err);
            else
                snprintf(why, sizeof(why), "HTTP %d", status);
            log_warn("otlp: POST of %lu spans failed (%s); retrying in %d ms (failure %u in a "
                     "row)",
                     n, why, s->backoff_ms, s->fails);
        }
        if (sleep_until(s, clock_mono_ms() + s->backoff_ms))
            break;
    }
    pthread_mutex_lock(&s->mu);
    unsigned long lost = n + s->queue.lines;
    s->st.dropped += lost;
    s->queue.lines = 0;
    pthread_mutex_unlock(&s->mu);
    if (lost)
        log_warn("otlp: %lu spans not delivered at shutdown: dropped", lost);
    evbuffer_free(body);
    return NULL;
}

struct otlp_sink *otlp_sink_open(const struct config *cfg, char *err, size_t errlen)
{
    struct otlp_sink *s = calloc(1, sizeof(*s));
    char url[2200], why[256];
    if (!s || bgqueue_init(&s->queue, 0, OTLP_QUEUE_MAX) < 0) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    size_t n = strlen(cfg->otlp_endpoint);
    while (n > 0 && cfg->otlp_endpoint[n - 1] == '/')
        n--;
    snprintf(url, sizeof(url), "%.*s/v1/traces", (int)n, cfg->otlp_endpoint);
    if (http_target_init(&s->target, url, cfg->export_ca_file, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "[export] otlp_endpoint: %s", why);
        goto fail;
    }
    if (bgthread_launch(&s->thread, &s->mu, &s->cv, run, s, "OTLP", err, errlen) < 0)
        goto fail;
    return s;
fail:
    http_target_free(&s->target);
    bgqueue_free(&s->queue);
    free(s);
    return NULL;
}

void otlp_sink_close(struct otlp_sink *s)
{
    if (!s)
        return;
    bgthread_stop(s->thread, &s->mu, &s->cv, &s->stop);
    http_target_free(&s->target);
    bgqueue_free(&s->queue);
    free(s);
}

void otlp_sink_push(struct otlp_sink *s, struct evbuffer *spans, unsigned long n)
{
    if (bgqueue_push(&s->queue, &s->mu, &s->cv, spans, n, &s->st.dropped))
        log_warn("otlp: span queue full (%d spans; the collector is away or slow): %lu spans "
                 "dropped",
                 OTLP_QUEUE_MAX, n);
}

void otlp_sink_stats(struct otlp_sink *s, struct otlp_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->queue.lines;
    pthread_mutex_unlock(&s->mu);
}
