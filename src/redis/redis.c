/* redis.c: one asynchronous Redis connection on a worker's event loop, over
 * hiredis 0.14.1's async API and its libevent adapter. 0.14.1 has no
 * timeouts and is unsafe when its context is freed from inside its own
 * callbacks, so this file owns both (the model is h2o lib/common/redis.c):
 *   - a connect timer covers TCP connect and the handshake (AUTH, SELECT,
 *     PING); the connection is "ready" only when the server has answered;
 *   - each command has its own timer; when one fires the whole context is
 *     dropped, which makes hiredis fail every pending command once;
 *   - the context is freed only from our own timers and events, never from
 *     inside a hiredis callback (those schedule the drop on a zero-timeout
 *     event instead);
 *   - a lost connection is retried with backoff from 100 ms to 5 s.
 * A redis_cmd lives until hiredis's own callback for it has fired (or, for a
 * command that failed to queue, until its deferred error event has run), so
 * hiredis never holds a dangling privdata. */
#include "redis/redis.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <stdint.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>

#include "core/log.h"
#include "redis/redis_url.h"

#define MAX_PENDING 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static const char err_timeout[] = "timeout";
static const char err_disconnected[] = "disconnected";

enum conn_state {
    C_DOWN,       /* no context; a reconnect is scheduled (or we are closing) */
    C_RESOLVING,  /* the host name is being resolved (evdns: never blocks the loop) */
    C_CONNECTING, /* TCP connect in progress */
    C_HANDSHAKE,  /* connected; AUTH / SELECT / PING sent, not all answered */
    C_READY,      /* commands accepted */
};

struct redis_cmd {
    struct redis *r;
    redis_cb cb;
    void *arg;
    void (*release)(void *arg); /* runs instead of cb when cancelled */
    struct event *ev;           /* the deadline; also the deferred error delivery */
    const char *fail;           /* set: queueing failed, ev delivers this error */
    bool cancelled;
    bool eval_retried;
    /* EVAL fallback for redis_eval: argv[0..2] rewritten on NOSCRIPT */
    struct redis_script *script;
    struct redis_stamp *stamp; /* redis_eval_stamped: written at each send */
    int stamp_at;              /* argv index of the connection id; seq follows */
    bool stamp_own;            /* this connection stamped it (seq was 0) */
    char stamp_buf[40];        /* the seq's digits */
    int argc;
    const char **argv;
    size_t *argvlen;
    TAILQ_ENTRY(redis_cmd) link;
};

TAILQ_HEAD(cmd_list, redis_cmd);

struct redis {
    struct event_base *base;
    struct redis_url url; /* TCP or UNIX (redis_url_supported) */
    char addr[300];       /* host:port or the socket path, for log lines */
    int timeout_ms;
    struct evdns_base *dns;                  /* created for a host name, else NULL */
    struct evdns_getaddrinfo_request *query; /* a resolution in flight */

    enum conn_state state;
    redisAsyncContext *ac;
    const char *drop_err; /* the error pending callbacks get while dropping */
    int handshake_left;
    int backoff_ms;
    bool closing;
    struct event *connect_timer; /* connect + handshake deadline */
    struct event *retry_timer;   /* next connect attempt */
    struct event *drop_ev;       /* deferred drop from inside callbacks */
    const char *drop_ev_err;
    redisAsyncContext *drop_target; /* the context drop_ev is meant for */

    char conn_id[17];       /* random per connection, for redis_stamp */
    unsigned long long seq; /* stamps sent on this connection */
    struct cmd_list cmds;   /* every live redis_cmd */
    unsigned npending;
    unsigned long errors;
};

static void start_connect(struct redis *r);

static void tv_ms(struct timeval *tv, int ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* ---- commands ----------------------------------------------------------- */

static void cmd_free(struct redis_cmd *c)
{
    struct redis *r = c->r;
    TAILQ_REMOVE(&r->cmds, c, link);
    r->npending--;
    if (c->ev)
        event_free(c->ev);
    free(c->argv);
    free(c);
}

/* Ends c: its callback (unless cancelled) runs once, then c is freed. */
static void cmd_finish(struct redis_cmd *c, struct redisReply *reply, const char *err)
{
    redis_cb cb = c->cb;
    void *arg = c->arg;
    bool cancelled = c->cancelled;
    if (err)
        c->r->errors++;
    cmd_free(c);
    if (!cancelled)
        cb(reply, err, arg);
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata);

/* Fills in c's stamp as it goes out on the current connection. */
static void stamp(struct redis_cmd *c)
{
    struct redis *r = c->r;
    if (!c->stamp)
        return;
    if (c->stamp_own) {
        memcpy(c->stamp->conn, r->conn_id, sizeof(c->stamp->conn));
        c->stamp->seq = ++r->seq;
    }
    int n = snprintf(c->stamp_buf, sizeof(c->stamp_buf), "%llu", c->stamp->seq);
    c->argv[c->stamp_at] = c->stamp->conn;
    c->argvlen[c->stamp_at] = strlen(c->stamp->conn);
    c->argv[c->stamp_at + 1] = c->stamp_buf;
    c->argvlen[c->stamp_at + 1] = (size_t)n;
}

static int issue_on(redisAsyncContext *ac, struct redis_cmd *c, int argc, const char **argv,
                    const size_t *argvlen)
{
    stamp(c);
    return redisAsyncCommandArgv(ac, on_reply, c, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

static int issue(struct redis_cmd *c, int argc, const char **argv, const size_t *argvlen)
{
    struct redis *r = c->r;
    if (r->state != C_READY || !r->ac)
        return -1;
    return issue_on(r->ac, c, argc, argv, argvlen);
}

static void schedule_retry(struct redis *r)
{
    struct timeval tv;
    if (r->closing)
        return;
    tv_ms(&tv, r->backoff_ms);
    event_add(r->retry_timer, &tv);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* Drops the context now: hiredis runs every pending command's callback with
 * a NULL reply, which on_reply turns into err. Only from our own events. */
static void drop(struct redis *r, const char *err)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    r->ac = NULL; /* on_disconnect sees it is not the current context */
    r->state = C_DOWN;
    r->drop_err = err;
    event_del(r->connect_timer);
    redisAsyncFree(ac);
    r->drop_err = NULL;
    schedule_retry(r);
}

/* From inside a hiredis callback: drop on the next loop iteration. */
static void schedule_drop(struct redis *r, const char *err)
{
    if (r->state == C_DOWN)
        return;
    r->drop_ev_err = err;
    r->drop_target = r->ac;
    event_active(r->drop_ev, EV_TIMEOUT, 0);
}

static void on_drop_ev(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    if (r->ac && r->ac == r->drop_target)
        drop(r, r->drop_ev_err);
    r->drop_target = NULL;
}

static void on_cmd_event(evutil_socket_t fd, short what, void *arg)
{
    struct redis_cmd *c = arg;
    if (c->fail) {
        cmd_finish(c, NULL, c->fail);
        return;
    }
    /* Deadline passed: the server is stuck or the link is gone. Dropping
     * the context fails this and every other pending command exactly once
     * (c is freed in the process). */
    struct redis *r = c->r;
    if (!r->ac) { /* cannot happen: a context drop ends its commands */
        cmd_finish(c, NULL, err_timeout);
        return;
    }
    log_warn("redis: command to %s timed out after %d ms, reconnecting", r->addr, r->timeout_ms);
    drop(r, err_timeout);
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct redis_cmd *c = privdata;
    struct redis *r = c->r;
    redisReply *reply = reply_;
    if (!reply) {
        /* The context is going away; no new command may be queued on it. */
        const char *err = r->drop_err ? r->drop_err : err_disconnected;
        if (r->ac == ac && r->state != C_DOWN)
            r->state = C_DOWN;
        cmd_finish(c, NULL, err);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (c->script && !c->eval_retried && !c->cancelled && reply->len >= 8 &&
            strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* The server lost the script (SCRIPT FLUSH, restart): send the
             * source once, under the same deadline and callback. */
            c->eval_retried = true;
            c->argv[0] = "EVAL";
            c->argvlen[0] = 4;
            c->argv[1] = c->script->source;
            c->argvlen[1] = strlen(c->script->source);
            if (issue_on(ac, c, c->argc, c->argv, c->argvlen) == 0)
                return;
            cmd_finish(c, NULL, err_disconnected);
            return;
        }
        /* an error reply: the command did not run, its stamp is free */
        if (c->stamp && c->stamp_own) {
            c->stamp->conn[0] = '\0';
            c->stamp->seq = 0;
        }
        cmd_finish(c, NULL, reply->str ? reply->str : "error");
        return;
    }
    cmd_finish(c, reply, NULL);
}

static struct redis_cmd *cmd_new(struct redis *r, redis_cb cb, void *arg)
{
    struct redis_cmd *c;
    if (r->closing || r->state != C_READY || r->npending >= MAX_PENDING || !cb)
        return NULL;
    if (!(c = calloc(1, sizeof(*c))))
        return NULL;
    if (!(c->ev = event_new(r->base, -1, 0, on_cmd_event, c))) {
        free(c);
        return NULL;
    }
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    TAILQ_INSERT_TAIL(&r->cmds, c, link);
    r->npending++;
    return c;
}

/* Arms c's deadline, or if sending failed schedules its error for the next
 * loop iteration, so the callback never runs inside the caller's call. */
static void cmd_start(struct redis_cmd *c, int rc)
{
    if (rc == 0) {
        struct timeval tv;
        tv_ms(&tv, c->r->timeout_ms);
        event_add(c->ev, &tv);
    } else {
        c->fail = err_disconnected;
        event_active(c->ev, EV_TIMEOUT, 0);
    }
}

struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg, int argc,
                                const char **argv, const size_t *argvlen)
{
    struct redis_cmd *c = cmd_new(r, cb, arg);
    if (!c)
        return NULL;
    cmd_start(c, issue(c, argc, argv, argvlen));
    return c;
}

void redis_script_prepare(struct redis_script *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(s->source, strlen(s->source), md, &mdlen, EVP_sha1(), NULL) != 1 ||
        mdlen != 20) {
        s->sha[0] = '\0'; /* redis_eval then always sends the source */
        return;
    }
    for (unsigned i = 0; i < 20; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
}

struct redis_cmd *redis_eval(struct redis *r, struct redis_script *s, redis_cb cb, void *arg,
                             int nkeys, int nargs, const char **args, const size_t *arglens)
{
    return redis_eval_stamped(r, s, cb, arg, nkeys, nargs, args, arglens, -1, NULL);
}

struct redis_cmd *redis_eval_stamped(struct redis *r, struct redis_script *s, redis_cb cb,
                                     void *arg, int nkeys, int nargs, const char **args,
                                     const size_t *arglens, int at, struct redis_stamp *st)
{
    if (nkeys < 0 || nargs < nkeys || nargs > 1000 || (st && (at < 0 || at + 1 >= nargs)))
        return NULL;
    struct redis_cmd *c = cmd_new(r, cb, arg);
    if (!c)
        return NULL;
    /* One block holds argv, argvlen, the key count and a copy of args: the
     * caller's args may be gone by the time a NOSCRIPT reply asks for the
     * EVAL retry. */
    int argc = 3 + nargs;
    size_t total = 16;
    for (int i = 0; i < nargs; i++)
        total += arglens ? arglens[i] : strlen(args[i]);
    c->argv = malloc((size_t)argc * (sizeof(*c->argv) + sizeof(*c->argvlen)) + total);
    if (!c->argv) {
        cmd_free(c);
        return NULL;
    }
    c->argvlen = (size_t *)(void *)(c->argv + argc);
    char *p = (char *)(c->argvlen + argc);
    int nkl = snprintf(p, 16, "%d", nkeys);
    c->argv[2] = p;
    c->argvlen[2] = (size_t)nkl;
    p += 16;
    for (int i = 0; i < nargs; i++) {
        size_t len = arglens ? arglens[i] : strlen(args[i]);
        memcpy(p, args[i], len);
        c->argv[3 + i] = p;
        c->argvlen[3 + i] = len;
        p += len;
    }
    /* Without a sha (prepare failed or was not called) send the source. */
    bool have_sha = s->sha[0] != '\0';
    c->script = s;
    c->argc = argc;
    c->eval_retried = !have_sha;
    c->argv[0] = have_sha ? "EVALSHA" : "EVAL";
    c->argv[1] = have_sha ? s->sha : s->source;
    c->argvlen[0] = strlen(c->argv[0]);
    c->argvlen[1] = strlen(c->argv[1]);
    if (st) {
        c->stamp = st;
        c->stamp_at = 3 + at;
        c->stamp_own = st->seq == 0;
    }
    cmd_start(c, issue(c, argc, c->argv, c->argvlen));
    return c;
}

void redis_cancel(struct redis_cmd *c)
{
    if (!c || c->cancelled)
        return;
    c->cancelled = true;
    c->stamp = NULL; /* the caller's; a cancelled command is never sent again */
    if (c->release) {
        c->release(c->arg);
        c->release = NULL;
    }
}

void redis_cmd_set_release(struct redis_cmd *c, void (*release)(void *arg))
{
    c->release = release;
}

/* ---- connection --------------------------------------------------------- */

/* A fresh random id for the connection now ready: stamps from an earlier
 * connection (or another process) can never be taken for its own. */
static void new_conn_id(struct redis *r)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[8];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        /* no entropy: time and address still differ per connection */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^
                     (uint64_t)(uintptr_t)r ^ ((uint64_t)r->seq << 40);
        memcpy(b, &v, sizeof(b));
    }
    for (size_t i = 0; i < sizeof(b); i++) {
        r->conn_id[2 * i] = hex[b[i] >> 4];
        r->conn_id[2 * i + 1] = hex[b[i] & 15];
    }
    r->conn_id[16] = '\0';
    r->seq = 0;
}

static void on_handshake(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct redis *r = privdata;
    redisReply *reply = reply_;
    if (!reply || r->ac != ac || r->state != C_HANDSHAKE)
        return; /* the context is being dropped; nothing to do */
    if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis: %s refused the handshake (AUTH/SELECT): %.200s", r->addr,
                 reply->str ? reply->str : "?");
        r->errors++;
        schedule_drop(r, err_disconnected);
        return;
    }
    if (--r->handshake_left > 0)
        return;
    new_conn_id(r);
    r->state = C_READY;
    r->backoff_ms = BACKOFF_MIN_MS;
    event_del(r->connect_timer);
    log_info("redis: connected to %s", r->addr);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct redis *r = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (!r || r->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac itself after this returns */
        log_warn("redis: connect to %s failed: %.200s", r->addr, ac->errstr);
        r->errors++;
        r->ac = NULL;
        r->state = C_DOWN;
        event_del(r->connect_timer);
        schedule_retry(r);
        return;
    }
    r->state = C_HANDSHAKE;
    r->handshake_left = 0;
    char dbs[16];
    snprintf(dbs, sizeof(dbs), "%d", r->url.db);
    int rc = REDIS_OK;
    if (r->url.password && r->url.user)
        rc |= redisAsyncCommand(ac, on_handshake, r, "AUTH %s %s", r->url.user, r->url.password);
    else if (r->url.password)
        rc |= redisAsyncCommand(ac, on_handshake, r, "AUTH %s", r->url.password);
    r->handshake_left += r->url.password ? 1 : 0;
    if (r->url.db) {
        rc |= redisAsyncCommand(ac, on_handshake, r, "SELECT %s", dbs);
        r->handshake_left++;
    }
    /* PING last: "ready" means the server answers, not just that the
     * kernel accepted the connection (a stopped server's backlog does). */
    rc |= redisAsyncCommand(ac, on_handshake, r, "PING");
    r->handshake_left++;
    if (rc != REDIS_OK)
        schedule_drop(r, err_disconnected);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct redis *r = cac->data;
    if (!r || r->ac != cac)
        return; /* we dropped it ourselves */
    /* hiredis frees the context after this returns */
    log_warn("redis: connection to %s lost: %.200s", r->addr, cac->errstr ? cac->errstr : "closed");
    r->errors++;
    r->ac = NULL;
    r->state = C_DOWN;
    event_del(r->connect_timer);
    schedule_retry(r);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    log_warn("redis: connect to %s timed out after %d ms", r->addr, r->timeout_ms);
    r->errors++;
    if (r->state == C_RESOLVING) {
        r->state = C_DOWN; /* the cancelled query's callback then does nothing */
        if (r->query)
            evdns_getaddrinfo_cancel(r->query);
        r->query = NULL;
        schedule_retry(r);
        return;
    }
    drop(r, err_timeout);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    start_connect(arg);
}

/* Connects to ip (an address, never a name) or the unix socket. */
static void connect_to(struct redis *r, const char *ip)
{
    redisAsyncContext *ac;
    ac = r->url.path ? redisAsyncConnectUnix(r->url.path)
                     : redisAsyncConnect(ip, r->url.addrs[0].port);
    if (!ac)
        goto fail;
    if (ac->err) {
        log_warn("redis: connect to %s failed: %.200s", r->addr, ac->errstr);
        redisAsyncFree(ac);
        goto fail;
    }
    ac->data = r;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK) {
        redisAsyncFree(ac);
        goto fail;
    }
    r->ac = ac;
    r->state = C_CONNECTING;
    return;
fail:
    r->errors++;
    r->state = C_DOWN;
    event_del(r->connect_timer);
    schedule_retry(r);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct redis *r = arg;
    char ip[INET6_ADDRSTRLEN] = "";
    r->query = NULL;
    if (result == EVUTIL_EAI_CANCEL) /* dropped meanwhile: nothing to do */
        return;
    if (result == 0 && res) {
        const void *a =
            res->ai_family == AF_INET6
                ? (const void *)&((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr
                : (const void *)&((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr;
        evutil_inet_ntop(res->ai_family, a, ip, sizeof(ip));
    }
    if (res)
        evutil_freeaddrinfo(res);
    if (r->state != C_RESOLVING)
        return;
    if (!ip[0]) {
        log_warn("redis: cannot resolve %s: %s", r->addr,
                 result ? evutil_gai_strerror(result) : "no address");
        r->errors++;
        r->state = C_DOWN;
        event_del(r->connect_timer);
        schedule_retry(r);
        return;
    }
    connect_to(r, ip);
}

/* An address is used as it is; a name is resolved first, by evdns. */
static bool is_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return evutil_inet_pton(AF_INET, host, buf) == 1 || evutil_inet_pton(AF_INET6, host, buf) == 1;
}

static void start_connect(struct redis *r)
{
    struct timeval tv;
    if (r->closing || r->ac || r->state != C_DOWN)
        return;
    tv_ms(&tv, r->timeout_ms); /* resolution, connect and handshake */
    event_add(r->connect_timer, &tv);
    if (r->url.path || is_address(r->url.addrs[0].host)) {
        connect_to(r, r->url.path ? NULL : r->url.addrs[0].host);
        return;
    }
    if (!r->dns && !(r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS))) {
        log_warn("redis: no resolver for %s (resolv.conf?)", r->addr);
        r->errors++;
        event_del(r->connect_timer);
        schedule_retry(r);
        return;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->state = C_RESOLVING;
    r->query = evdns_getaddrinfo(r->dns, r->url.addrs[0].host, NULL, &hints, on_resolved, r);
}

void redis_set_timeout(struct redis *r, int ms)
{
    if (ms > 0)
        r->timeout_ms = ms;
}

struct redis *redis_new(struct event_base *base, const char *url, int timeout_ms, char *err,
                        size_t errlen)
{
    struct redis *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    TAILQ_INIT(&r->cmds);
    r->base = base;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (redis_url_parse(url, &r->url, err, errlen) < 0)
        goto fail;
    if (!redis_url_supported(&r->url, err, errlen))
        goto fail;
    if (r->url.path)
        snprintf(r->addr, sizeof(r->addr), "%s", r->url.path);
    else
        redis_addr_format(&r->url.addrs[0], r->addr, sizeof(r->addr));
    if (timeout_ms <= 0) {
        snprintf(err, errlen, "redis timeout must be positive");
        goto fail;
    }
    r->connect_timer = evtimer_new(base, on_connect_timeout, r);
    r->retry_timer = evtimer_new(base, on_retry, r);
    r->drop_ev = event_new(base, -1, 0, on_drop_ev, r);
    if (!r->connect_timer || !r->retry_timer || !r->drop_ev) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* connect from the loop, so redis_new never blocks or calls back */
    event_add(r->retry_timer, &(struct timeval){0, 0});
    return r;
fail:
    r->closing = true;
    redis_free(r);
    return NULL;
}

void redis_free(struct redis *r)
{
    if (!r)
        return;
    r->closing = true;
    drop(r, err_disconnected);
    /* commands whose queueing failed still wait for their deferred event */
    while (!TAILQ_EMPTY(&r->cmds)) {
        struct redis_cmd *c = TAILQ_FIRST(&r->cmds);
        cmd_finish(c, NULL, c->fail ? c->fail : err_disconnected);
    }
    if (r->connect_timer)
        event_free(r->connect_timer);
    if (r->retry_timer)
        event_free(r->retry_timer);
    if (r->drop_ev)
        event_free(r->drop_ev);
    if (r->query)
        evdns_getaddrinfo_cancel(r->query); /* its callback sees EAI_CANCEL */
    if (r->dns)
        evdns_base_free(r->dns, 0);
    redis_url_free(&r->url);
    free(r);
}

bool redis_url_supported(const struct redis_url *u, char *err, size_t errlen)
{
    switch (u->kind) {
    case REDIS_URL_TCP:
    case REDIS_URL_UNIX:
        return true;
    case REDIS_URL_TLS:
        snprintf(err, errlen, "rediss:// (TLS) is not supported by this build yet");
        return false;
    case REDIS_URL_SENTINEL:
        snprintf(err, errlen, "redis-sentinel:// is not supported by this build yet");
        return false;
    case REDIS_URL_CLUSTER:
        snprintf(err, errlen, "redis-cluster:// is not supported by this build yet");
        return false;
    }
    snprintf(err, errlen, "unknown redis url kind");
    return false;
}

bool redis_connected(const struct redis *r)
{
    return r->state == C_READY;
}

unsigned long redis_errors(const struct redis *r)
{
    return r->errors;
}
