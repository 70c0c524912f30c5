/* redis_sync.c: the blocking client of redis_sync.h. A private event_base
 * runs the daemon's connection layer until what the caller waits for has
 * happened; the layer's deadlines (connect, and every command's) make each
 * wait end. Replies are deep-copied out of the layer's callback, which only
 * lends them, and a server's error reply becomes a REDIS_REPLY_ERROR reply
 * again, as hiredis's own blocking API returns it. */
#include "redis/redis_sync.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis/redis.h"

struct pending {
    struct redis_sync *s;
    bool done;
    redisReply *reply; /* owned until handed out */
    char err[200];     /* "timeout" or "disconnected": the connection's fault */
};

struct redis_sync {
    struct event_base *base;
    struct redis *r;
    struct pending **q; /* queued in order; q[head] is the next reply */
    size_t head, n, cap;
    size_t inflight; /* queued, no reply yet */
    bool broken;     /* a timeout or a lost connection: every later call fails */
    char why[200];
};

/* freeReplyObject releases with free(): build copies with malloc. */
static redisReply *copy_reply(const redisReply *in, int depth)
{
    redisReply *out = calloc(1, sizeof(*out));
    if (!out || depth > 8)
        goto fail;
    out->type = in->type;
    out->integer = in->integer;
    if (in->str) {
        if (!(out->str = malloc(in->len + 1)))
            goto fail;
        memcpy(out->str, in->str, in->len);
        out->str[in->len] = '\0';
        out->len = in->len;
    }
    if (in->type == REDIS_REPLY_ARRAY && in->elements) {
        if (!(out->element = calloc(in->elements, sizeof(*out->element))))
            goto fail;
        out->elements = in->elements;
        for (size_t i = 0; i < in->elements; i++)
            if (!(out->element[i] = copy_reply(in->element[i], depth + 1)))
                goto fail;
    }
    return out;
fail:
    if (out)
        freeReplyObject(out);
    return NULL;
}

static redisReply *error_reply(const char *msg)
{
    redisReply *out = calloc(1, sizeof(*out));
    if (!out)
        return NULL;
    out->type = REDIS_REPLY_ERROR;
    out->len = strlen(msg);
    if (!(out->str = malloc(out->len + 1))) {
        free(out);
        return NULL;
    }
    memcpy(out->str, msg, out->len + 1);
    return out;
}

static void on_reply(struct redisReply *reply, const char *err, void *arg)
{
    struct pending *p = arg;
    p->done = true;
    p->s->inflight--;
    if (!err) {
        if (!(p->reply = copy_reply(reply, 0)))
            snprintf(p->err, sizeof(p->err), "out of memory");
    } else if (strcmp(err, "timeout") == 0 || strcmp(err, "disconnected") == 0) {
        snprintf(p->err, sizeof(p->err), "%s", err); /* the layer's own: no reply */
    } else if (!(p->reply = error_reply(err))) {
        snprintf(p->err, sizeof(p->err), "out of memory");
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

struct redis_sync *redis_sync_connect(const char *url, const struct redis_tls *tls, int timeout_ms,
                                      char *err, size_t errlen)
{
    struct redis_sync *s = calloc(1, sizeof(*s));
    struct event *deadline = NULL;
    bool expired = false;
    if (!s || !(s->base = event_base_new())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!(s->r = redis_new(s->base, url, tls, timeout_ms, err, errlen)))
        goto fail;
    redis_set_quiet(s->r); /* failures reach the caller as err */
    if (!(deadline = evtimer_new(s->base, on_deadline, &expired))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(deadline, &tv);
    while (!redis_connected(s->r) && !expired)
        if (event_base_loop(s->base, EVLOOP_ONCE) < 0)
            break;
    event_free(deadline);
    if (!redis_connected(s->r)) {
        snprintf(err, errlen, "cannot reach Redis at %s: %s", redis_addr(s->r),
                 redis_last_error(s->r));
        goto fail;
    }
    return s;
fail:
    redis_sync_free(s);
    return NULL;
}

void redis_sync_free(struct redis_sync *s)
{
    if (!s)
        return;
    redis_free(s->r); /* fails what is still queued: their pendings get err */
    for (size_t i = s->head; i < s->n; i++) {
        if (s->q[i]->reply)
            freeReplyObject(s->q[i]->reply);
        free(s->q[i]);
    }
    free(s->q);
    if (s->base)
        event_base_free(s->base);
    free(s);
}

int redis_sync_append(struct redis_sync *s, int argc, const char **argv, const size_t *argvlen)
{
    if (s->broken)
        return -1;
    if (s->head == s->n) /* all handed out: start the queue over */
        s->head = s->n = 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct pending **q = realloc(s->q, cap * sizeof(*q));
        if (!q)
            return -1;
        s->q = q;
        s->cap = cap;
    }
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    p->s = s;
    /* The layer holds at most 10000 commands in flight; a longer batch
     * (a report over thousands of tenants) waits for replies to come in. */
    while (!redis_command(s->r, on_reply, p, argc, argv, argvlen)) {
        if (!s->inflight || !redis_connected(s->r) || event_base_loop(s->base, EVLOOP_ONCE) < 0) {
            free(p);
            return -1;
        }
    }
    s->inflight++;
    s->q[s->n++] = p;
    return 0;
}

int redis_sync_get(struct redis_sync *s, struct redisReply **reply, char *err, size_t errlen)
{
    *reply = NULL;
    if (s->head == s->n) {
        snprintf(err, errlen, "redis: no command queued");
        return -1;
    }
    struct pending *p = s->q[s->head];
    /* the layer ends every command by its deadline */
    while (!p->done)
        if (event_base_loop(s->base, EVLOOP_ONCE) < 0)
            break;
    s->head++;
    int rc = 0;
    if (p->reply) {
        *reply = p->reply;
    } else {
        if (!s->broken)
            snprintf(s->why, sizeof(s->why), "%s", p->done ? p->err : "the event loop failed");
        s->broken = true;
        snprintf(err, errlen, "redis: %s at %s", s->why, redis_addr(s->r));
        rc = -1;
    }
    free(p);
    return rc;
}

struct redisReply *redis_sync_command(struct redis_sync *s, int argc, const char **argv, char *err,
                                      size_t errlen)
{
    struct redisReply *reply = NULL;
    if (redis_sync_append(s, argc, argv, NULL) < 0) {
        snprintf(err, errlen, "redis: %s", s->broken ? s->why : "cannot send");
        return NULL;
    }
    if (redis_sync_get(s, &reply, err, errlen) < 0)
        return NULL;
    return reply;
}
