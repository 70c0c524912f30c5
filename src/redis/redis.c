/* redis.c: one asynchronous Redis connection on a worker's event loop, a
 * connection layer of our own: a libevent bufferevent (plain, or OpenSSL for
 * rediss://) carries bytes, hiredis's redisReader parses replies and
 * write_argv writes requests in RESP. Over plain TCP the commands a loop
 * turn queued leave in one write at its end (on_flush), without the
 * EPOLLOUT round trip of a bufferevent's own writes.
 * Debian's hiredis 0.14 has neither TLS nor timeouts, so its own async
 * context is not used. This file owns (the model is h2o lib/common/redis.c):
 *   - a connect timer covering name resolution (evdns), TCP connect, the TLS
 *     handshake and ours (AUTH, SELECT, PING): "ready" means the server has
 *     answered;
 *   - each command's deadline; when one passes the connection is dropped,
 *     which fails every command in flight once;
 *   - replies matched to commands in the order sent (one FIFO);
 *   - bounds: MAX_PENDING commands, MAX_REPLY_BYTES for one reply and
 *     MAX_ELEMENTS per array, past which the connection is dropped;
 *   - a lost connection is retried with backoff from 100 ms to 5 s;
 *   - redis-sentinel://: each connection starts by asking a sentinel for the
 *     primary (SENTINEL get-master-addr-by-name, the next sentinel after a
 *     failure) and checks it with ROLE, so a failover is followed at the
 *     next connection: the sentinels close the old primary's clients when
 *     they demote it, and a READONLY reply drops the connection too; a
 *     second connection (a "watch") subscribes to +switch-master on a
 *     sentinel and drops the primary's connection as soon as it moves;
 *   - redis-cluster://: this struct is the router the callers hold; its
 *     nodes are connections of their own (redis_cluster.c keeps the map),
 *     and each command is copied, sent to its slot's node and re-sent on
 *     -MOVED / -ASK / -TRYAGAIN / -CLUSTERDOWN, within bounds.
 * Every callback runs from our own events (a timer, a read, a connection
 * event), never from inside the call that issued the command. */
#include "redis/redis.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/log.h"
#include "core/numtext.h"
#include "http/tls.h"
#include "redis/redis_cluster.h"
#include "redis/redis_slot.h"
#include "redis/redis_url.h"

#define MAX_PENDING 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Far above anything the daemon reads (its replies are a few numbers, the
 * largest a tenant's lease list); a bigger one is a broken or hostile peer. */
#define MAX_REPLY_BYTES (16u << 20)
#define MAX_ELEMENTS (1 << 20)

static const char err_timeout[] = "timeout";
static const char err_disconnected[] = "disconnected";
/* redis-cluster://: a command's redirections and retries are bounded; past
 * them it fails with these (the log line says which node and error). */
static const char err_loop[] = "CLUSTER too many redirections (a MOVED/ASK loop?)";
static const char err_noslot[] = "CLUSTERDOWN no node serves this key's slot";
#define MAX_HOPS 5    /* MOVED and ASK followed for one command */
#define MAX_RETRIES 5 /* TRYAGAIN, CLUSTERDOWN, a node not up yet: 50 ms doubling */

enum conn_state {
    C_DOWN,        /* no connection; a reconnect is scheduled (or we are closing) */
    C_DISCOVERING, /* redis-sentinel://: asking a sentinel where the primary is */
    C_CONNECTING,  /* resolving, TCP connect, TLS handshake */
    C_HANDSHAKE,   /* connected; AUTH / SELECT / PING sent, not all answered */
    C_READY,       /* commands accepted */
};

struct redis_cmd {
    struct redis *r;
    redis_cb cb;
    void *arg;
    void (*release)(void *arg); /* runs instead of cb when cancelled */
    struct event *ev;           /* the deadline; also the deferred error delivery */
    const char *fail;           /* set: sending failed, ev delivers this error */
    bool cancelled;
    bool eval_retried;
    bool inflight; /* on r->inflight: sent, its reply not read yet */
    /* EVAL fallback for redis_eval: argv[0..2] rewritten on NOSCRIPT */
    struct redis_script *script;
    struct redis_stamp *stamp; /* redis_eval_stamped: written at each send */
    int stamp_at;              /* argv index of the connection id; seq follows */
    bool stamp_own;            /* this connection stamped it (seq was 0) */
    char stamp_buf[40];        /* the seq's digits */
    /* redis-cluster://: this command is the router's; child carries it */
    struct redis_cmd *child; /* on a node's connection; NULL between hops */
    unsigned slot;           /* of its first key */
    int nkeys;               /* EVAL: the key count */
    int hops, retries;       /* redirections followed, retries made */
    int argc;
    const char **argv;
    size_t *argvlen;
    TAILQ_ENTRY(redis_cmd) link;  /* every live command */
    TAILQ_ENTRY(redis_cmd) qlink; /* in flight, in the order sent */
};

TAILQ_HEAD(cmd_list, redis_cmd);

struct redis {
    struct event_base *base;
    struct redis_url url; /* TCP, TLS or UNIX (redis_url_supported) */
    char addr[300];       /* host:port or the socket path, for log lines */
    char host[256];       /* where this connection goes: the url's host, a sentinel, */
    int port;             /* or the primary a sentinel named */
    size_t sentinel_at;   /* the sentinel asked next (the one after, on a failure) */
    int timeout_ms;
    struct evdns_base *dns;  /* created for a host name, else NULL */
    struct tls_client *tls;  /* rediss:// only */
    struct bufferevent *bev; /* the connection, from connect to drop */
    struct event *flush;     /* plain TCP: writes what a loop turn queued, at its end */
    bool direct;             /* connected over plain TCP: EV_WRITE only while the */
                             /* socket does not take what flush writes */
    struct redisReader *rdr; /* its reply parser */
    size_t reply_bytes;      /* fed since the last complete reply: bounds one reply */

    enum conn_state state;
    int handshake_left; /* replies still owed to the handshake, ahead of any command */
    int backoff_ms;
    bool closing;
    struct event *connect_timer; /* resolve + connect + handshake deadline */
    struct event *retry_timer;   /* next connect attempt */

    char conn_id[17];         /* random per connection, for redis_stamp */
    unsigned long long seq;   /* stamps sent on this connection */
    struct cmd_list cmds;     /* every live redis_cmd */
    struct cmd_list inflight; /* sent on bev, awaiting their replies in order */
    unsigned npending;
    unsigned long errors;
    unsigned long conn_failures; /* failed connects and lost connections, also in errors */
    char why[300];               /* the last of those, for redis_last_error */
    bool quiet;                  /* connection events at debug level (redis_set_quiet) */
    struct cluster *cluster;     /* redis-cluster://: this is the router, the nodes its own */
    struct redis *parent;        /* a cluster node: its router; a watch: its connection */
    struct redis *watch;         /* redis-sentinel://: subscribed to +switch-master */
    bool watching;               /* this is a watch: replies after the handshake are pushes */
    size_t watch_at;             /* the sentinel the watch goes to (the next, on a failure) */
    time_t logged_at[2];         /* the router's last rate-limited line, of each kind */
    unsigned long unlogged[2];   /* and the lines of that kind left out since */
};

static void start_connect(struct redis *r);
static void connect_target(struct redis *r, enum conn_state state);
static void on_sentinel_reply(struct redis *r, redisReply *reply);
static void on_switch(struct redis *w, redisReply *reply);
static struct redis *child_new(struct redis *parent, const char *host, int port, bool watching,
                               char *err, size_t errlen);

/* A connection attempt failed or a connection was lost (or dropped by us):
 * counted, logged as a warning, and kept for redis_last_error. */
static void conn_failed(struct redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conn_failed(struct redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    r->errors++;
    r->conn_failures++;
    log_msg(r->quiet ? LOG_DEBUG : LOG_WARN, NULL, "redis: %s", r->why);
    if (r->watching) /* that sentinel failed us: watch from the next one */
        r->parent->watch_at = (r->parent->watch_at + 1) % r->parent->url.naddrs;
    if (r->parent && r->parent->cluster) { /* a cluster node: the router reports for it */
        memcpy(r->parent->why, r->why, sizeof(r->why));
        r->parent->errors++;
        r->parent->conn_failures++;
        cluster_node_lost(r->parent->cluster, r);
    }
}

static void tv_ms(struct timeval *tv, int ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* ---- the reply parser ---------------------------------------------------- */

/* hiredis 0.14's reader trusts an array header ("*2000000000") and
 * allocates for it; ours refuses arrays above MAX_ELEMENTS (the reader then
 * fails, and the connection is dropped). */
static redisReplyObjectFunctions bounded_fn;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t bounded_once = PTHREAD_ONCE_INIT;

static void *create_array(const redisReadTask *t, int elements)
{
    if (elements < 0 || elements > MAX_ELEMENTS)
        return NULL;
    return default_create_array(t, elements);
}

static void bounded_init(void)
{
    redisReader *probe = redisReaderCreate();
    if (!probe)
        return; /* reader_new then fails too */
    bounded_fn = *probe->fn;
    default_create_array = bounded_fn.createArray;
    bounded_fn.createArray = create_array;
    redisReaderFree(probe);
}

static redisReader *reader_new(void)
{
    pthread_once(&bounded_once, bounded_init);
    if (!default_create_array)
        return NULL;
    return redisReaderCreateWithFunctions(&bounded_fn);
}

/* ---- commands ----------------------------------------------------------- */

static void cmd_free(struct redis_cmd *c)
{
    struct redis *r = c->r;
    TAILQ_REMOVE(&r->cmds, c, link);
    if (c->inflight)
        TAILQ_REMOVE(&r->inflight, c, qlink);
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

/* "*N\r\n" or "$N\r\n" at p; returns the end. */
static char *resp_len(char *p, char kind, size_t n)
{
    *p++ = kind;
    p += numtext_i64(p, (int64_t)n);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Appends one request to the connection's output, in RESP, written in place
 * (hiredis's formatter printed every length with sprintf and made a copy);
 * what a loop turn queued leaves in one write (pipelining for free). */
static int write_argv(struct redis *r, int argc, const char **argv, const size_t *argvlen)
{
    struct evbuffer *out = bufferevent_get_output(r->bev);
    size_t total = 1 + NUMTEXT_I64_MAX + 2;
    for (int i = 0; i < argc; i++)
        total += 1 + NUMTEXT_I64_MAX + 2 + (argvlen ? argvlen[i] : strlen(argv[i])) + 2;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1)
        return -1;
    char *p = resp_len(v.iov_base, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        p = resp_len(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    v.iov_len = (size_t)(p - (char *)v.iov_base);
    if (evbuffer_commit_space(out, &v, 1) < 0)
        return -1;
    if (r->direct && !(bufferevent_get_enabled(r->bev) & EV_WRITE))
        event_active(r->flush, EV_WRITE, 1);
    return 0;
}

/* The end of a loop turn that queued commands (plain TCP): one write of all
 * of them, no EPOLLOUT round trip. What the socket does not take, and an
 * error, are left to the bufferevent (EV_WRITE; an error reaches on_event). */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    if (!r->bev || !r->direct || (bufferevent_get_enabled(r->bev) & EV_WRITE))
        return;
    struct evbuffer *out = bufferevent_get_output(r->bev);
    /* a socket bufferevent freezes the start of its output so that only its
     * own write drains it; it thaws it the same way */
    evbuffer_unfreeze(out, 1);
    (void)evbuffer_write(out, bufferevent_getfd(r->bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(r->bev, EV_WRITE);
}

/* The bufferevent wrote the rest: back to writing from on_flush. */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct redis *r = arg;
    if (r->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

/* Sends c on the ready connection and puts it last in the reply order. */
static int send_cmd(struct redis_cmd *c, int argc, const char **argv, const size_t *argvlen)
{
    struct redis *r = c->r;
    if (r->state != C_READY || !r->bev)
        return -1;
    stamp(c);
    if (write_argv(r, argc, argv, argvlen) < 0)
        return -1;
    TAILQ_INSERT_TAIL(&r->inflight, c, qlink);
    c->inflight = true;
    return 0;
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

/* Closes the connection and fails every command in flight with err, once,
 * in the order sent; then schedules a reconnect. From our own events only
 * (callbacks may run: none of them may free r). */
static void drop(struct redis *r, const char *err)
{
    struct bufferevent *bev = r->bev;
    if (!bev)
        return;
    r->bev = NULL;
    r->direct = false;
    if (r->flush)
        event_del(r->flush);
    if (r->state == C_DISCOVERING) /* that sentinel failed us: ask the next one */
        r->sentinel_at = (r->sentinel_at + 1) % r->url.naddrs;
    r->state = C_DOWN; /* callbacks below cannot queue on a dying connection */
    event_del(r->connect_timer);
    if (r->tls)
        tls_client_close(bev);
    bufferevent_free(bev); /* safe inside its own callbacks: libevent defers */
    if (r->rdr)
        redisReaderFree(r->rdr);
    r->rdr = NULL;
    struct redis_cmd *c;
    while ((c = TAILQ_FIRST(&r->inflight)) != NULL)
        cmd_finish(c, NULL, err);
    schedule_retry(r);
}

static void route(struct redis_cmd *c, struct redis *node, bool asking);

static void on_cmd_event(evutil_socket_t fd, short what, void *arg)
{
    struct redis_cmd *c = arg;
    if (c->fail) {
        cmd_finish(c, NULL, c->fail);
        return;
    }
    if (c->r->cluster) { /* a retry's wait is over */
        if (c->cancelled || c->r->closing)
            cmd_finish(c, NULL, err_disconnected);
        else
            route(c, NULL, false);
        return;
    }
    /* Deadline passed: the server is stuck or the link is gone. Dropping
     * the connection fails this and every other command in flight exactly
     * once (c is freed in the process). */
    struct redis *r = c->r;
    if (!c->inflight) { /* cannot happen: a drop ends what it carried */
        cmd_finish(c, NULL, err_timeout);
        return;
    }
    conn_failed(r, "command to %s timed out after %d ms, reconnecting", r->addr, r->timeout_ms);
    drop(r, err_timeout);
}

/* A reply for the oldest command in flight. */
static void on_cmd_reply(struct redis *r, redisReply *reply)
{
    struct redis_cmd *c = TAILQ_FIRST(&r->inflight);
    if (!c) {
        log_warn("redis: %s sent a reply nobody asked for, reconnecting", r->addr);
        drop(r, err_disconnected);
        return;
    }
    TAILQ_REMOVE(&r->inflight, c, qlink);
    c->inflight = false;
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
            if (send_cmd(c, c->argc, c->argv, c->argvlen) == 0)
                return;
            cmd_finish(c, NULL, err_disconnected);
            return;
        }
        /* an error reply: the command did not run, its stamp is free */
        if (c->stamp && c->stamp_own) {
            c->stamp->conn[0] = '\0';
            c->stamp->seq = 0;
        }
        bool readonly = reply->len >= 8 && strncmp(reply->str, "READONLY", 8) == 0;
        cmd_finish(c, NULL, reply->str ? reply->str : "error");
        if (readonly && r->bev) {
            /* a replica now (a failover demoted it): find the primary again */
            conn_failed(r, "%s answers READONLY (a replica now?), reconnecting", r->addr);
            drop(r, err_disconnected);
        }
        return;
    }
    cmd_finish(c, reply, NULL);
}

static struct redis_cmd *cmd_new(struct redis *r, redis_cb cb, void *arg)
{
    struct redis_cmd *c;
    bool ready = r->cluster ? cluster_has_map(r->cluster) : r->state == C_READY;
    if (r->closing || !ready || r->npending >= MAX_PENDING || !cb)
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

/* Gives c its own argv: head entries left for the caller, then a copy of
 * args; scratch bytes after them, at *scratch. */
static int cmd_copy(struct redis_cmd *c, int head, int n, const char **args, const size_t *lens,
                    size_t extra, char **scratch)
{
    int argc = head + n;
    size_t total = extra;
    for (int i = 0; i < n; i++)
        total += lens ? lens[i] : strlen(args[i]);
    c->argv = malloc((size_t)argc * (sizeof(*c->argv) + sizeof(*c->argvlen)) + total);
    if (!c->argv)
        return -1;
    c->argc = argc;
    c->argvlen = (size_t *)(void *)(c->argv + argc);
    char *p = (char *)(c->argvlen + argc);
    if (scratch)
        *scratch = p;
    p += extra;
    for (int i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(args[i]);
        memcpy(p, args[i], len);
        c->argv[head + i] = p;
        c->argvlen[head + i] = len;
        p += len;
    }
    return 0;
}

/* ---- redis-cluster:// routing -------------------------------------------- */

/* Kinds of a router's rate-limited lines. */
enum { LOG_RETRYING, LOG_FAILED };

/* A router's line about retries (LOG_RETRYING) or a command it failed
 * (LOG_FAILED): at most one of each kind a second, so a cluster in trouble
 * under load does not flood the log. */
static void cluster_log(struct redis *r, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cluster_log(struct redis *r, int kind, const char *fmt, ...)
{
    char line[400];
    time_t now = time(NULL);
    if (now == r->logged_at[kind]) {
        r->unlogged[kind]++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (r->unlogged[kind])
        log_msg(r->quiet ? LOG_DEBUG : LOG_WARN, NULL, "redis: %s (and %lu more like it)", line,
                r->unlogged[kind]);
    else
        log_msg(r->quiet ? LOG_DEBUG : LOG_WARN, NULL, "redis: %s", line);
    r->logged_at[kind] = now;
    r->unlogged[kind] = 0;
}

/* Waits before routing c again, or when its retries are spent ends it with
 * err (an event's context only: err may be a reply's text). */
static void retry_later(struct redis_cmd *c, const char *err)
{
    struct redis *r = c->r;
    if (c->retries >= MAX_RETRIES) {
        cluster_stats(r->cluster)->failed++;
        cluster_log(r, LOG_FAILED, "cluster: a command failed after %d retries: %.200s", c->retries,
                    err);
        cmd_finish(c, NULL, err);
        return;
    }
    struct timeval tv;
    tv_ms(&tv, 50 << c->retries);
    c->retries++;
    cluster_stats(r->cluster)->retries++;
    event_add(c->ev, &tv);
}

static void on_asking(struct redisReply *reply, const char *err, void *arg)
{
    /* nothing to do: the command after it tells how the ASK went */
}

/* A node answered c (or failed it). Redirections are followed at once, a
 * cluster that is busy or failing over is given a little time; anything
 * else is c's answer. */
static void on_child(struct redisReply *reply, const char *err, void *arg)
{
    struct redis_cmd *c = arg;
    struct redis *r = c->r;
    c->child = NULL;
    if (reply || !err || c->cancelled || r->closing) {
        cmd_finish(c, reply, err);
        return;
    }
    bool ask;
    unsigned slot;
    char host[REDIS_HOST_MAX];
    int port;
    if (redis_redirect_parse(err, &ask, &slot, host, &port) == 0) {
        if (++c->hops > MAX_HOPS) {
            cluster_stats(r->cluster)->failed++;
            cluster_log(r, LOG_FAILED,
                        "cluster: still redirected after %d hops (%.100s): a MOVED loop? "
                        "failing the command",
                        MAX_HOPS, err);
            cmd_finish(c, NULL, err_loop);
            return;
        }
        struct redis *node = cluster_node_at(r->cluster, host, port);
        if (ask) {
            cluster_stats(r->cluster)->ask++;
        } else {
            cluster_stats(r->cluster)->moved++;
            if (node)
                cluster_moved(r->cluster, slot, node);
            else
                cluster_refresh(r->cluster, "MOVED to an unknown node");
        }
        if (node && redis_connected(node))
            route(c, node, ask);
        else
            retry_later(c, err); /* a new node: connecting */
        return;
    }
    if (strncmp(err, "TRYAGAIN", 8) == 0 || strncmp(err, "CLUSTERDOWN", 11) == 0) {
        if (c->retries == 0) /* once per command: its failure is logged too */
            cluster_log(r, LOG_RETRYING, "cluster answered %.200s; retrying", err);
        retry_later(c, err);
        return;
    }
    if (strcmp(err, err_timeout) == 0 || strcmp(err, err_disconnected) == 0)
        cluster_refresh(r->cluster, "a node failed a command");
    cmd_finish(c, NULL, err);
}

/* Sends the router's c to node (NULL: the one serving its slot), after
 * ASKING for an -ASK. What goes wrong ends c from an event, never inside
 * this call. */
static void route(struct redis_cmd *c, struct redis *node, bool asking)
{
    struct redis *r = c->r;
    if (!node && !(node = cluster_node(r->cluster, c->slot))) {
        cluster_refresh(r->cluster, "a slot without a node");
        c->fail = err_noslot;
        event_active(c->ev, EV_TIMEOUT, 0);
        return;
    }
    if (!redis_connected(node)) { /* lost, or a failover under way */
        cluster_refresh(r->cluster, "a node is down");
        c->fail = err_disconnected;
        event_active(c->ev, EV_TIMEOUT, 0);
        return;
    }
    if (asking && !redis_command(node, on_asking, NULL, 1, (const char *[]){"ASKING"}, NULL))
        c->child = NULL;
    else if (c->script)
        c->child =
            redis_eval_stamped(node, c->script, on_child, c, c->nkeys, c->argc - 3, c->argv + 3,
                               c->argvlen + 3, c->stamp ? c->stamp_at - 3 : -1, c->stamp);
    else
        c->child = redis_command(node, on_child, c, c->argc, c->argv, c->argvlen);
    if (!c->child) {
        c->fail = err_disconnected;
        event_active(c->ev, EV_TIMEOUT, 0);
    }
}

/* A command for the router: copied (it may travel to several nodes) and
 * routed by the slot of its first key. */
static struct redis_cmd *cluster_start(struct redis_cmd *c, const char *key, size_t keylen)
{
    c->slot = key ? redis_key_slot(key, keylen) : 0;
    route(c, NULL, false);
    return c;
}

struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg, int argc,
                                const char **argv, const size_t *argvlen)
{
    struct redis_cmd *c = cmd_new(r, cb, arg);
    if (!c)
        return NULL;
    if (r->cluster) {
        if (argc < 1 || cmd_copy(c, 0, argc, argv, argvlen, 0, NULL) < 0) {
            cmd_free(c);
            return NULL;
        }
        return cluster_start(c, argc > 1 ? c->argv[1] : NULL, argc > 1 ? c->argvlen[1] : 0);
    }
    cmd_start(c, send_cmd(c, argc, argv, argvlen));
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
    char *p;
    if (cmd_copy(c, 3, nargs, args, arglens, 16, &p) < 0) {
        cmd_free(c);
        return NULL;
    }
    int argc = c->argc;
    int nkl = snprintf(p, 16, "%d", nkeys);
    c->argv[2] = p;
    c->argvlen[2] = (size_t)nkl;
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
    if (r->cluster) { /* the node's connection stamps it, and retries NOSCRIPT */
        c->nkeys = nkeys;
        return cluster_start(c, nkeys > 0 ? c->argv[3] : NULL, nkeys > 0 ? c->argvlen[3] : 0);
    }
    cmd_start(c, send_cmd(c, argc, c->argv, c->argvlen));
    return c;
}

void redis_cancel(struct redis_cmd *c)
{
    if (!c || c->cancelled)
        return;
    c->cancelled = true;
    c->stamp = NULL; /* the caller's; a cancelled command is never sent again */
    if (c->child) {  /* it ends as it is, never sent again, its reply unread */
        c->child->stamp = NULL;
        c->child->eval_retried = true;
    }
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

/* A reply to AUTH, SELECT or PING. */
static void on_handshake_reply(struct redis *r, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        conn_failed(r, "%s refused the handshake (AUTH, SELECT or PING): %.200s", r->addr,
                    reply->str ? reply->str : "?");
        drop(r, err_disconnected);
        return;
    }
    /* redis-sentinel://: ROLE is the reply before PING's */
    if (r->url.kind == REDIS_URL_SENTINEL && r->handshake_left == 2) {
        const char *role = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                                   reply->element[0]->type == REDIS_REPLY_STRING
                               ? reply->element[0]->str
                               : "?";
        if (strcmp(role, "master") != 0) {
            conn_failed(r, "%s is not the primary of %s (ROLE %.20s), asking the sentinels again",
                        r->addr, r->url.master, role);
            drop(r, err_disconnected);
            return;
        }
    }
    if (--r->handshake_left > 0)
        return;
    new_conn_id(r);
    r->state = C_READY;
    r->backoff_ms = BACKOFF_MIN_MS;
    event_del(r->connect_timer);
    if (r->watching) {
        if (write_argv(r, 2, (const char *[]){"SUBSCRIBE", "+switch-master"}, NULL) < 0) {
            conn_failed(r, "cannot subscribe at %s (out of memory)", r->addr);
            drop(r, err_disconnected);
            return;
        }
        log_msg(r->quiet ? LOG_DEBUG : LOG_INFO, NULL, "redis: watching %s for +switch-master",
                r->addr);
        return;
    }
    log_msg(r->quiet ? LOG_DEBUG : LOG_INFO, NULL, "redis: connected to %s", r->addr);
}

/* A message on a watch: "+switch-master NAME OLD-IP OLD-PORT NEW-IP
 * NEW-PORT". When it names our master and a primary other than the one
 * connected, that connection is dropped (what was in flight fails
 * "disconnected", so settlements are journaled, never lost), and the next
 * one asks the sentinels again: the failover is followed at once, not at
 * the next error. Anything else (the SUBSCRIBE confirmation) is ignored. */
static void on_switch(struct redis *w, redisReply *reply)
{
    struct redis *r = w->parent;
    char name[256], old_host[256], new_host[256];
    int old_port, new_port;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[2]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[1]->str, "+switch-master") != 0)
        return;
    if (sscanf(reply->element[2]->str, "%255s %255s %d %255s %d", name, old_host, &old_port,
               new_host, &new_port) != 5 ||
        strcmp(name, r->url.master) != 0)
        return;
    log_msg(r->quiet ? LOG_DEBUG : LOG_INFO, NULL,
            "redis: %s: +switch-master %s from %s:%d to %s:%d", w->addr, name, old_host, old_port,
            new_host, new_port);
    if (r->bev && r->state != C_DISCOVERING &&
        (strcmp(r->host, new_host) != 0 || r->port != new_port)) {
        conn_failed(r, "%s is no longer the primary of %s (+switch-master), reconnecting", r->addr,
                    name);
        drop(r, err_disconnected);
    }
}

/* The reader moves what follows a parsed reply to the front of its buffer
 * (once 1 KiB is consumed), so it is fed a bounded chunk at a time and
 * drained before the next: feeding all of a large pipelined answer first
 * would cost a copy of the rest per reply. */
#define FEED_CHUNK 16384

static void on_read(struct bufferevent *bev, void *arg)
{
    struct redis *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v;
    while (evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
        size_t len = v.iov_len < FEED_CHUNK ? v.iov_len : FEED_CHUNK;
        if (redisReaderFeed(r->rdr, v.iov_base, len) != REDIS_OK)
            goto broken;
        r->reply_bytes += len;
        evbuffer_drain(in, len);
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(r->rdr, &reply) != REDIS_OK)
                goto broken;
            if (!reply)
                break;
            /* what is left in the reader belongs to the replies after this one */
            r->reply_bytes = r->rdr->len - r->rdr->pos;
            if (r->state == C_DISCOVERING)
                on_sentinel_reply(r, reply);
            else if (r->state == C_HANDSHAKE && r->handshake_left > 0)
                on_handshake_reply(r, reply);
            else if (r->watching)
                on_switch(r, reply);
            else
                on_cmd_reply(r, reply);
            freeReplyObject(reply);
            if (r->bev != bev) /* dropped meanwhile: the reader is gone */
                return;
        }
        if (r->reply_bytes > MAX_REPLY_BYTES) {
            conn_failed(r, "a reply from %s exceeds %u bytes, reconnecting", r->addr,
                        MAX_REPLY_BYTES);
            drop(r, err_disconnected);
            return;
        }
    }
    return;
broken:
    conn_failed(r, "protocol error from %s: %.120s, reconnecting", r->addr,
                r->rdr->errstr[0] ? r->rdr->errstr : "unreadable reply");
    drop(r, err_disconnected);
}

/* Connected (for rediss://: the TLS handshake done and the certificate
 * verified): our own handshake goes first, AUTH, SELECT, then PING, which
 * tells that the server answers, not just that the kernel accepted the
 * connection (a stopped server's backlog does). */
static void start_handshake(struct redis *r)
{
    char dbs[16];
    const char *auth[3] = {"AUTH", NULL, NULL};
    int rc = 0;
    evutil_socket_t fd = bufferevent_getfd(r->bev);
    int one = 1;
    if (!r->url.path && fd >= 0) /* small requests, answered at once: no Nagle */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    r->state = C_HANDSHAKE;
    r->handshake_left = 0;
    if (r->url.password) { /* AUTH [user] password: an ACL user, or the default one */
        int argc = 1;
        if (r->url.user)
            auth[argc++] = r->url.user;
        auth[argc++] = r->url.password;
        rc |= write_argv(r, argc, auth, NULL);
        r->handshake_left++;
    }
    if (r->url.db) {
        snprintf(dbs, sizeof(dbs), "%d", r->url.db);
        rc |= write_argv(r, 2, (const char *[]){"SELECT", dbs}, NULL);
        r->handshake_left++;
    }
    if (r->url.kind == REDIS_URL_SENTINEL) { /* the sentinel's answer may be stale */
        rc |= write_argv(r, 1, (const char *[]){"ROLE"}, NULL);
        r->handshake_left++;
    }
    rc |= write_argv(r, 1, (const char *[]){"PING"}, NULL);
    r->handshake_left++;
    if (rc != 0) {
        conn_failed(r, "cannot write to %s (out of memory)", r->addr);
        drop(r, err_disconnected);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct redis *r = arg;
    if (r->bev != bev)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        /* from now on written from on_flush; bufferevent_openssl makes
         * records of its own */
        if (!r->tls) {
            r->direct = true;
            bufferevent_disable(bev, EV_WRITE);
        }
        if (r->state != C_DISCOVERING) {
            start_handshake(r);
        } else if (write_argv(
                       r, 3, (const char *[]){"SENTINEL", "get-master-addr-by-name", r->url.master},
                       NULL) < 0) {
            conn_failed(r, "cannot ask %s (out of memory)", r->addr);
            drop(r, err_disconnected);
        }
        return;
    }
    char why[300] = "";
    int dns_err = bufferevent_socket_get_dns_error(bev);
    if (r->tls)
        tls_client_error(bev, why, sizeof(why));
    if (!why[0] && dns_err)
        snprintf(why, sizeof(why), "cannot resolve: %s", evutil_gai_strerror(dns_err));
    if (!why[0] && (what & BEV_EVENT_ERROR))
        snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    if (!why[0])
        snprintf(why, sizeof(why), "closed");
    if (r->state == C_CONNECTING || r->state == C_DISCOVERING)
        conn_failed(r, "connect to %s failed: %.250s", r->addr, why);
    else
        conn_failed(r, "connection to %s lost: %.250s", r->addr, why);
    drop(r, err_disconnected);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    conn_failed(r, "connect to %s timed out after %d ms", r->addr, r->timeout_ms);
    if (!r->bev) { /* cannot happen: the timer runs only while connecting */
        schedule_retry(r);
        return;
    }
    drop(r, err_timeout);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    start_connect(arg);
}

/* Where the next connection goes, and how log lines name it. */
static void target(struct redis *r, const struct redis_addr *a, bool sentinel)
{
    char buf[280];
    snprintf(r->host, sizeof(r->host), "%s", a->host);
    r->port = a->port;
    redis_addr_format(a, buf, sizeof(buf));
    snprintf(r->addr, sizeof(r->addr), "%s%s", sentinel ? "sentinel " : "", buf);
}

/* The sentinel's answer: [host, port] of the primary, or nil when it does
 * not know the name. On an answer the sentinel's connection is closed and
 * the primary's opened, under the same connect deadline. */
static void on_sentinel_reply(struct redis *r, redisReply *reply)
{
    char port[8] = "";
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING && reply->element[0]->len > 0 &&
        reply->element[0]->len < sizeof(r->host) && reply->element[1]->len < sizeof(port))
        memcpy(port, reply->element[1]->str, reply->element[1]->len + 1);
    char *end = NULL;
    long p = port[0] ? strtol(port, &end, 10) : 0;
    if (!port[0] || *end || p <= 0 || p > 65535) {
        conn_failed(r, "%s does not name a primary for %s: %.200s", r->addr, r->url.master,
                    reply->type == REDIS_REPLY_ERROR ? reply->str
                    : reply->type == REDIS_REPLY_NIL ? "unknown master name"
                                                     : "unexpected reply");
        drop(r, err_disconnected);
        return;
    }
    struct redis_addr primary = {.host = reply->element[0]->str, .port = (int)p};
    char sentinel[300];
    snprintf(sentinel, sizeof(sentinel), "%s", r->addr);
    /* close the sentinel's connection; not a failure, nothing in flight */
    struct bufferevent *bev = r->bev;
    r->bev = NULL;
    r->direct = false;
    event_del(r->flush);
    bufferevent_free(bev);
    redisReaderFree(r->rdr);
    r->rdr = NULL;
    target(r, &primary, false);
    log_msg(r->quiet ? LOG_DEBUG : LOG_INFO, NULL, "redis: %s names %s as the primary of %s",
            sentinel, r->addr, r->url.master);
    connect_target(r, C_CONNECTING);
}

/* An address is used as it is; a name is resolved first, by evdns. */
static bool is_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return evutil_inet_pton(AF_INET, host, buf) == 1 || evutil_inet_pton(AF_INET6, host, buf) == 1;
}

/* Opens the bufferevent (TLS for rediss://) and starts connecting; every
 * outcome arrives at on_event, later (deferred callbacks). */
static int open_bev(struct redis *r, enum conn_state state)
{
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    SSL *ssl = NULL;
    if (r->tls) {
        if (!(ssl = tls_client_ssl(r->tls, r->host)))
            return -1;
        r->bev = bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
        if (!r->bev) {
            SSL_free(ssl);
            return -1;
        }
        /* Redis closes without close_notify; the protocol frames replies. */
        bufferevent_openssl_set_allow_dirty_shutdown(r->bev, 1);
    } else if (!(r->bev = bufferevent_socket_new(r->base, -1, opts))) {
        return -1;
    }
    if (!(r->rdr = reader_new()))
        return -1;
    r->reply_bytes = 0;
    bufferevent_setcb(r->bev, on_read, on_write, on_event, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    r->state = state;
    if (r->url.path) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(r->url.path) >= sizeof(sun.sun_path))
            return -1;
        memcpy(sun.sun_path, r->url.path, strlen(r->url.path) + 1);
        return bufferevent_socket_connect(r->bev, (struct sockaddr *)&sun, sizeof(sun));
    }
    return bufferevent_socket_connect_hostname(r->bev, r->dns, AF_UNSPEC, r->host, r->port);
}

/* Connects to r->host:r->port (or the unix socket); a failure to even
 * start is logged and retried like any other. */
static void connect_target(struct redis *r, enum conn_state state)
{
    if (!r->url.path && !is_address(r->host) && !r->dns &&
        !(r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS))) {
        conn_failed(r, "no resolver for %s (resolv.conf?)", r->addr);
        r->state = C_DOWN;
        event_del(r->connect_timer);
        schedule_retry(r);
        return;
    }
    if (open_bev(r, state) < 0) {
        conn_failed(r, "cannot connect to %s: %s", r->addr,
                    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        if (r->bev) {
            drop(r, err_disconnected);
            return;
        }
        r->state = C_DOWN;
        event_del(r->connect_timer);
        schedule_retry(r);
    }
}

static void start_connect(struct redis *r)
{
    struct timeval tv;
    if (r->closing || r->bev || r->state != C_DOWN)
        return;
    tv_ms(&tv, r->timeout_ms); /* resolution, connect and handshakes */
    event_add(r->connect_timer, &tv);
    if (r->watching) {
        target(r, &r->parent->url.addrs[r->parent->watch_at], true);
        connect_target(r, C_CONNECTING);
        return;
    }
    bool sentinel = r->url.kind == REDIS_URL_SENTINEL;
    if (!r->url.path)
        target(r, &r->url.addrs[sentinel ? r->sentinel_at : 0], sentinel);
    connect_target(r, sentinel ? C_DISCOVERING : C_CONNECTING);
}

static void node_timeout(struct redis *node, void *arg)
{
    redis_set_timeout(node, *(int *)arg);
}

void redis_set_timeout(struct redis *r, int ms)
{
    if (ms > 0)
        r->timeout_ms = ms;
    if (ms > 0 && r->cluster)
        cluster_each(r->cluster, node_timeout, &ms);
    if (r->watch)
        redis_set_timeout(r->watch, ms);
}

/* One home for what every connection (a url's, a cluster node, a sentinel
 * watch) is made of: conn_alloc before its address is known, conn_start
 * after. A connection built by hand once missed its flush event. */
static struct redis *conn_alloc(struct event_base *base, int timeout_ms, char *err, size_t errlen)
{
    struct redis *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    TAILQ_INIT(&r->cmds);
    TAILQ_INIT(&r->inflight);
    r->base = base;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    return r;
}

/* Its timers and flush event, then the first connect from the loop, so
 * the constructors never block or call back. */
static int conn_start(struct redis *r, char *err, size_t errlen)
{
    r->connect_timer = evtimer_new(r->base, on_connect_timeout, r);
    r->retry_timer = evtimer_new(r->base, on_retry, r);
    r->flush = event_new(r->base, -1, 0, on_flush, r);
    if (!r->connect_timer || !r->retry_timer || !r->flush) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    event_add(r->retry_timer, &(struct timeval){0, 0});
    return 0;
}

struct redis *redis_new(struct event_base *base, const char *url, const struct redis_tls *tls,
                        int timeout_ms, char *err, size_t errlen)
{
    struct redis *r = conn_alloc(base, timeout_ms, err, errlen);
    if (!r)
        return NULL;
    if (redis_url_parse(url, &r->url, err, errlen) < 0)
        goto fail;
    if (!redis_url_supported(&r->url, err, errlen))
        goto fail;
    if (timeout_ms <= 0) {
        snprintf(err, errlen, "redis timeout must be positive");
        goto fail;
    }
    if (r->url.kind == REDIS_URL_CLUSTER) { /* a router: its nodes connect */
        char one[280];
        size_t at = (size_t)snprintf(r->addr, sizeof(r->addr), "cluster ");
        for (size_t i = 0; i < r->url.naddrs && at < sizeof(r->addr); i++) {
            redis_addr_format(&r->url.addrs[i], one, sizeof(one));
            at += (size_t)snprintf(r->addr + at, sizeof(r->addr) - at, "%s%s", i ? "," : "", one);
        }
        if (!(r->cluster = cluster_new(r, base, &r->url, err, errlen)))
            goto fail;
        return r;
    }
    if (r->url.path)
        snprintf(r->addr, sizeof(r->addr), "%s", r->url.path);
    else
        redis_addr_format(&r->url.addrs[0], r->addr, sizeof(r->addr));
    if (r->url.kind == REDIS_URL_TLS) {
        if (!(r->tls = tls_client_new(tls ? tls->ca_file : NULL, err, errlen)))
            goto fail;
        if (tls_client_use(r->tls, tls ? tls->cert_file : NULL, tls ? tls->key_file : NULL, err,
                           errlen) < 0)
            goto fail;
    }
    /* redis-sentinel://: a second connection hears of failovers at once */
    if (r->url.kind == REDIS_URL_SENTINEL &&
        !(r->watch = child_new(r, r->url.addrs[0].host, r->url.addrs[0].port, true, err, errlen)))
        goto fail;
    if (conn_start(r, err, errlen) < 0)
        goto fail;
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
    struct cluster *cl = r->cluster;
    r->cluster = NULL;
    cluster_free(cl);     /* a router: its nodes end what they carry */
    redis_free(r->watch); /* carries no command */
    r->watch = NULL;
    drop(r, err_disconnected);
    /* commands whose sending failed still wait for their deferred event */
    while (!TAILQ_EMPTY(&r->cmds)) {
        struct redis_cmd *c = TAILQ_FIRST(&r->cmds);
        cmd_finish(c, NULL, c->fail ? c->fail : err_disconnected);
    }
    if (r->connect_timer)
        event_free(r->connect_timer);
    if (r->retry_timer)
        event_free(r->retry_timer);
    if (r->flush)
        event_free(r->flush);
    if (r->dns)
        evdns_base_free(r->dns, 0);
    tls_client_free(r->tls);
    redis_url_free(&r->url);
    free(r);
}

bool redis_url_supported(const struct redis_url *u, char *err, size_t errlen)
{
    switch (u->kind) {
    case REDIS_URL_TCP:
    case REDIS_URL_TLS:
    case REDIS_URL_UNIX:
        return true;
    case REDIS_URL_SENTINEL:
    case REDIS_URL_CLUSTER:
        return true;
    }
    snprintf(err, errlen, "unknown redis url kind");
    return false;
}

static void node_quiet(struct redis *node, void *arg)
{
    node->quiet = true;
}

void redis_set_quiet(struct redis *r)
{
    r->quiet = true;
    if (r->watch)
        r->watch->quiet = true;
    if (r->cluster) {
        cluster_set_quiet(r->cluster);
        cluster_each(r->cluster, node_quiet, NULL);
    }
}

bool redis_connected(const struct redis *r)
{
    return r->cluster ? cluster_all_up(r->cluster) : r->state == C_READY;
}

/* A connection owned by parent: a cluster node (with the parent's
 * credentials), or a sentinel watch (watching: none, the sentinels are
 * asked without AUTH). */
static struct redis *child_new(struct redis *parent, const char *host, int port, bool watching,
                               char *err, size_t errlen)
{
    struct redis *router = parent;
    struct redis *r = conn_alloc(router->base, router->timeout_ms, err, errlen);
    if (!r)
        return NULL;
    r->quiet = router->quiet;
    r->parent = router;
    r->watching = watching;
    r->url.kind = REDIS_URL_TCP;
    r->url.naddrs = 1;
    r->url.addrs[0].port = port;
    if (!(r->url.addrs[0].host = strdup(host)) ||
        (!watching && router->url.user && !(r->url.user = strdup(router->url.user))) ||
        (!watching && router->url.password && !(r->url.password = strdup(router->url.password)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    redis_addr_format(&r->url.addrs[0], r->addr, sizeof(r->addr));
    if (conn_start(r, err, errlen) < 0)
        goto fail;
    return r;
fail:
    r->closing = true;
    redis_free(r);
    return NULL;
}

struct redis *redis_node_new(struct redis *router, const char *host, int port, char *err,
                             size_t errlen)
{
    return child_new(router, host, port, false, err, errlen);
}

bool redis_idle(const struct redis *r)
{
    return r->npending == 0;
}

void redis_cluster_stats(const struct redis *r, struct redis_cluster_stats *out)
{
    static const struct redis_cluster_stats none;
    *out = r->cluster ? *cluster_stats(r->cluster) : none;
}

unsigned long redis_errors(const struct redis *r)
{
    return r->errors;
}

unsigned long redis_connect_failures(const struct redis *r)
{
    return r->conn_failures;
}

const char *redis_last_error(const struct redis *r)
{
    return r->why[0] ? r->why : "no answer yet";
}

const char *redis_addr(const struct redis *r)
{
    return r->addr;
}
