/* stream.c: the Redis stream export (stream.h has the contract). Each record
 * is one entry: XADD key MAXLEN ~ N * record <the JSON line>. Entries go out
 * at once while Redis is connected; otherwise, and after a timeout or a lost
 * connection, they wait in a FIFO that a timer drains when Redis answers
 * again. A timed-out XADD may have been applied, so the stream is at least
 * once: consumers dedupe by the record's id. */
#include "export/stream.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/log.h"
#include "core/metrics.h"
#include "redis/redis.h"

#define DRAIN_MS 200        /* how often the backlog is retried */
#define DROP_LOG_EVERY 1000 /* a storm of drops must not become a storm of logs */

struct entry {
    struct entry *next, *prev; /* backlog FIFO (next only) or in-flight list */
    struct stream_export *s;
    struct redis_cmd *cmd; /* while in flight */
    int64_t maxlen;
    size_t len;
    char *key;
    char line[]; /* len bytes, NUL-terminated */
};

struct stream_export {
    struct redis *r;
    struct metrics *m;
    struct event *timer;
    struct entry *head, *tail; /* backlog, oldest first */
    size_t n_backlog;
    struct entry *inflight; /* doubly linked */
    size_t n_inflight;
    unsigned long dropped;
};

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e);
}

static void dropped(struct stream_export *s, const char *why)
{
    s->dropped++;
    metrics_inc(s->m, METRIC_STREAM_DROPPED, 1);
    if (s->dropped % DROP_LOG_EVERY == 1)
        log_error("redis_stream: record not added to the stream (%s); %lu dropped so far, the "
                  "records file keeps them",
                  why, s->dropped);
}

static void backlog_put(struct stream_export *s, struct entry *e)
{
    if (s->n_backlog >= STREAM_BACKLOG_MAX) {
        dropped(s, "backlog full while Redis is away");
        entry_free(e);
        return;
    }
    e->next = NULL;
    e->prev = NULL;
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    s->n_backlog++;
    metrics_set(s->m, METRIC_STREAM_BACKLOG, (int64_t)s->n_backlog);
}

static void unlink_inflight(struct stream_export *s, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->inflight = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->next = e->prev = NULL;
    e->cmd = NULL;
    s->n_inflight--;
}

static void on_added(struct redisReply *reply, const char *err, void *arg)
{
    struct entry *e = arg;
    struct stream_export *s = e->s;
    unlink_inflight(s, e);
    if (reply) {
        metrics_inc(s->m, METRIC_STREAM_ADDED, 1);
        entry_free(e);
        return;
    }
    metrics_inc(s->m, METRIC_REDIS_ERRORS, 1);
    if (strcmp(err, "timeout") == 0 || strcmp(err, "disconnected") == 0) {
        backlog_put(s, e); /* Redis is away: try again when it is back */
        return;
    }
    /* the server refused it (WRONGTYPE, OOM, ...): retrying would not help */
    char why[160];
    snprintf(why, sizeof(why), "Redis answered: %.120s", err);
    dropped(s, why);
    entry_free(e);
}

/* Sends e; false when Redis cannot take it now (e untouched). */
static bool send_entry(struct stream_export *s, struct entry *e)
{
    char maxlen[24];
    snprintf(maxlen, sizeof(maxlen), "%lld", (long long)e->maxlen);
    const char *argv[] = {"XADD", e->key, "MAXLEN", "~", maxlen, "*", "record", e->line};
    size_t lens[] = {4, strlen(e->key), 6, 1, strlen(maxlen), 1, 6, e->len};
    if (s->n_inflight >= STREAM_INFLIGHT_MAX || !redis_connected(s->r))
        return false;
    struct redis_cmd *cmd = redis_command(s->r, on_added, e, (int)ARRAY_LEN(argv), argv, lens);
    if (!cmd)
        return false;
    e->cmd = cmd;
    e->prev = NULL;
    e->next = s->inflight;
    if (s->inflight)
        s->inflight->prev = e;
    s->inflight = e;
    s->n_inflight++;
    return true;
}

static void drain(evutil_socket_t fd, short what, void *arg)
{
    struct stream_export *s = arg;
    while (s->head) {
        struct entry *e = s->head;
        struct entry *next = e->next;
        e->next = NULL;
        if (!send_entry(s, e)) {
            e->next = next;
            break;
        }
        s->head = next;
        if (!next)
            s->tail = NULL;
        s->n_backlog--;
    }
    metrics_set(s->m, METRIC_STREAM_BACKLOG, (int64_t)s->n_backlog);
}

struct stream_export *stream_export_new(struct event_base *base, struct redis *r, struct metrics *m)
{
    struct stream_export *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->r = r;
    s->m = m;
    s->timer = event_new(base, -1, EV_PERSIST, drain, s);
    if (!s->timer)
        goto fail;
    struct timeval tv = {0, DRAIN_MS * 1000};
    if (event_add(s->timer, &tv) < 0)
        goto fail;
    return s;
fail:
    if (s->timer)
        event_free(s->timer);
    free(s);
    return NULL;
}

void stream_export_free(struct stream_export *s)
{
    if (!s)
        return;
    size_t lost = s->n_backlog + s->n_inflight;
    while (s->inflight) {
        struct entry *e = s->inflight;
        redis_cancel(e->cmd);
        unlink_inflight(s, e);
        entry_free(e);
    }
    while (s->head) {
        struct entry *e = s->head;
        s->head = e->next;
        entry_free(e);
    }
    if (lost)
        log_warn("redis_stream: %zu records not confirmed by Redis at shutdown (the records file "
                 "keeps them)",
                 lost);
    event_free(s->timer);
    free(s);
}

void stream_export_push(struct stream_export *s, const char *key, int64_t maxlen, const char *line,
                        size_t len)
{
    struct entry *e = malloc(sizeof(*e) + len + 1);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        dropped(s, "out of memory");
        return;
    }
    e->s = s;
    e->cmd = NULL;
    e->next = e->prev = NULL;
    e->maxlen = maxlen;
    e->len = len;
    memcpy(e->line, line, len);
    e->line[len] = '\0';
    /* keep the order while a backlog waits */
    if (s->head || !send_entry(s, e))
        backlog_put(s, e);
}

size_t stream_export_pending(const struct stream_export *s)
{
    return s->n_backlog + s->n_inflight;
}
