/* test_redis.c: redis.c and budget.c against a real redis-server started on
 * a free 127.0.0.1 port in a temp dir (killed at exit, and by the kernel if
 * this process dies first). The tests run in table order on one server: the
 * last ones stop it (SIGSTOP) and kill it. Every wait is bounded. */
#include "budget/budget.h"
#include "core/log.h"
#include "redis/redis.h"
#include "redis/redis_sync.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>

#include "check.h"
#include "redis_server.h"

#define TIMEOUT_MS 300
#define SLACK_MS 700

static char url[64];
static char tenant[64]; /* unique per run: the counters start at zero */

/* ---- command results ---------------------------------------------------- */

struct result {
    int calls;
    int type;
    long long integer;
    char str[128];
    char err[128];
    char *hash; /* HGETALL as "k=v," */
    long long at_ms;
};

static void on_result(struct redisReply *reply, const char *err, void *arg)
{
    struct result *res = arg;
    res->calls++;
    res->at_ms = now_ms();
    if (err) {
        snprintf(res->err, sizeof(res->err), "%s", err);
        if (reply)
            snprintf(res->err, sizeof(res->err), "BUG: reply and err");
        return;
    }
    res->type = reply->type;
    res->integer = reply->integer;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)
        snprintf(res->str, sizeof(res->str), "%.*s", (int)reply->len, reply->str);
    if (reply->type == REDIS_REPLY_ARRAY) {
        size_t cap = 1;
        for (size_t i = 0; i < reply->elements; i++)
            cap += reply->element[i]->len + 2;
        free(res->hash);
        res->hash = calloc(1, cap);
        for (size_t i = 0; res->hash && i + 1 < reply->elements; i += 2) {
            /* settlement stamps (w:CONN, j:CONN:SEQ) are not counters */
            if (strncmp(reply->element[i]->str, "w:", 2) == 0 ||
                strncmp(reply->element[i]->str, "j:", 2) == 0)
                continue;
            strcat(res->hash, reply->element[i]->str);
            strcat(res->hash, "=");
            strcat(res->hash, reply->element[i + 1]->str);
            strcat(res->hash, ",");
        }
    }
}

static int done_one(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

static struct redis *connect_new(struct event_base *base)
{
    char err[256];
    struct redis *r = redis_new(base, url, NULL, TIMEOUT_MS, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "  redis_new: %s\n", err);
        return NULL;
    }
    if (!wait_for(base, is_connected, r, 3000))
        fprintf(stderr, "  not connected after 3 s\n");
    return r;
}

/* Runs argv (space-separated) and waits for its reply. */
static void run(struct event_base *base, struct redis *r, struct result *res, const char *cmd)
{
    char copy[512];
    const char *argv[16];
    int argc = 0;
    snprintf(copy, sizeof(copy), "%s", cmd);
    for (char *save, *t = strtok_r(copy, " ", &save); t && argc < 16;
         t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    free(res->hash);
    memset(res, 0, sizeof(*res));
    struct redis_cmd *c = redis_command(r, on_result, res, argc, argv, NULL);
    CHECK(c != NULL);
    if (c)
        wait_for(base, done_one, res, 3000);
    CHECK_INT(res->calls, 1);
}

/* ---- a lying server ------------------------------------------------------ */

/* On the test's own loop: answers the handshake's PING with +PONG, then
 * every later PING with `payload` (and `extra` bytes of 'x' after it). */
#define FAKE_CONNS 16

struct fake_conn;

struct fake {
    struct evconnlistener *l;
    struct fake_conn *conn[FAKE_CONNS]; /* freed by fake_stop */
    int port;
    const char *payload;
    size_t extra;
    int conns;
    int loading; /* this many handshake PINGs answered -LOADING first */
};

struct fake_conn {
    struct fake *f;
    struct bufferevent *bev; /* NULL once the client hung up */
    int pings;
};

static void fake_read(struct bufferevent *bev, void *arg)
{
    struct fake_conn *fc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    char *buf = malloc(n + 1);
    if (!buf)
        return;
    evbuffer_remove(in, buf, n);
    buf[n] = '\0';
    for (char *p = buf; (p = strstr(p, "PING")) != NULL; p += 4) {
        if (fc->pings++ == 0) {
            if (fc->f->loading > 0) {
                fc->f->loading--;
                fc->pings = 0; /* the client hangs up and comes back */
                const char *l = "-LOADING Redis is loading the dataset in memory\r\n";
                bufferevent_write(bev, l, strlen(l));
                continue;
            }
            bufferevent_write(bev, "+PONG\r\n", 7);
            continue;
        }
        bufferevent_write(bev, fc->f->payload, strlen(fc->f->payload));
        for (size_t left = fc->f->extra; left > 0;) {
            static char xs[65536];
            size_t k = left < sizeof(xs) ? left : sizeof(xs);
            memset(xs, 'x', k);
            bufferevent_write(bev, xs, k);
            left -= k;
        }
    }
    free(buf);
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    struct fake_conn *fc = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(bev);
        fc->bev = NULL;
    }
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                        void *arg)
{
    struct fake *f = arg;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    struct fake_conn *fc = calloc(1, sizeof(*fc));
    if (!bev || !fc || f->conns >= FAKE_CONNS) {
        free(fc);
        if (bev)
            bufferevent_free(bev);
        return;
    }
    fc->f = f;
    fc->bev = bev;
    f->conn[f->conns++] = fc;
    bufferevent_setcb(bev, fake_read, NULL, fake_event, fc);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static int fake_start(struct event_base *base, struct fake *f)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    f->l = evconnlistener_new_bind(base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                   16, (struct sockaddr *)&a, sizeof(a));
    if (!f->l || getsockname(evconnlistener_get_fd(f->l), (struct sockaddr *)&a, &len) != 0)
        return -1;
    f->port = ntohs(a.sin_port);
    return 0;
}

static void fake_stop(struct fake *f)
{
    for (int i = 0; i < f->conns; i++) {
        if (f->conn[i]->bev)
            bufferevent_free(f->conn[i]->bev);
        free(f->conn[i]);
    }
    if (f->l)
        evconnlistener_free(f->l);
}

static int reconnected(void *arg)
{
    struct redis *r = arg;
    return redis_connected(r) && redis_connect_failures(r) > 0;
}

/* Replies the reader must not build: an array header far above the bound,
 * a bulk string above 16 MiB, bytes that are not RESP. Each drops the
 * connection (the command fails once with "disconnected", the failure is
 * counted) and the client connects again. */
static void test_bounded_replies(void)
{
    static const struct {
        const char *name;
        const char *payload;
        size_t extra;
    } cases[] = {
        {"array of 2e9 elements", "*2000000000\r\n", 0},
        {"array of 2^20 + 1 elements", "*1048577\r\n", 0},
        {"bulk of 20 MB", "$20000000\r\n", 17u << 20},
        {"not RESP", "!oops\r\n", 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct event_base *base = event_base_new();
        struct fake f = {.payload = cases[i].payload, .extra = cases[i].extra};
        struct result res = {0};
        char u[64], err[256];
        struct redis *r = NULL;
        CHECK_INT(fake_start(base, &f), 0);
        snprintf(u, sizeof(u), "redis://127.0.0.1:%d/0", f.port);
        r = redis_new(base, u, NULL, 2000, err, sizeof(err));
        CHECK(r && wait_for(base, is_connected, r, 3000));
        if (!r || !redis_connected(r))
            goto next;
        const char *argv[] = {"PING"};
        CHECK(redis_command(r, on_result, &res, 1, argv, NULL) != NULL);
        wait_for(base, done_one, &res, 5000);
        if (res.calls != 1 || strcmp(res.err, "disconnected") != 0)
            fprintf(stderr, "  %s: calls %d err '%s'\n", cases[i].name, res.calls, res.err);
        CHECK_INT(res.calls, 1);
        CHECK_STR(res.err, "disconnected");
        CHECK(wait_for(base, reconnected, r, 3000));
        CHECK(f.conns >= 2);
    next:
        redis_free(r);
        fake_stop(&f);
        event_base_free(base);
    }
}

/* A server still loading its dataset answers -LOADING: not ready, the
 * failure counted and kept (redis_last_error), retried until it answers. */
static void test_loading(void)
{
    struct event_base *base = event_base_new();
    struct fake f = {.payload = "+PONG\r\n", .loading = 2};
    char u[64], err[256];
    CHECK_INT(fake_start(base, &f), 0);
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d/0", f.port);
    struct redis *r = redis_new(base, u, NULL, 1000, err, sizeof(err));
    CHECK(r != NULL);
    if (!r)
        goto done;
    CHECK(wait_for(base, is_connected, r, 5000));
    CHECK_INT((int)redis_connect_failures(r), 2);
    CHECK(strstr(redis_last_error(r), "refused the handshake") != NULL);
    CHECK(strstr(redis_last_error(r), "LOADING") != NULL);
    CHECK_INT(f.conns, 3);
done:
    redis_free(r);
    fake_stop(&f);
    event_base_free(base);
}

/* ---- tests -------------------------------------------------------------- */

static const struct {
    const char *url;
    int ok;
} urls[] = {
    {"redis://127.0.0.1:6379/0", 1},
    {"redis://127.0.0.1", 1},
    {"redis://:secret@127.0.0.1:6380/2", 1},
    {"redis://user:p%40ss@localhost:6379", 1},
    {"redis://[::1]:6379/1", 1},
    {"unix:///run/redis.sock", 1},
    {"unix:///run/redis.sock?db=3", 1},
    {"http://127.0.0.1:6379", 0},
    {"redis://", 0},
    {"redis://127.0.0.1:0", 0},
    {"redis://127.0.0.1:70000", 0},
    {"redis://127.0.0.1:63x9", 0},
    {"redis://127.0.0.1/db", 0},
    {"redis://nopass@127.0.0.1", 0},
    {"redis://:bad%zz@127.0.0.1", 0},
    {"unix://relative", 0},
    {"unix:///run/redis.sock?db=x", 0},
    {"unix:///run/redis.sock?foo=1", 0},
    {"unix://app:secret@/run/redis.sock", 1}, /* an ACL user on every scheme */
    {"redis://app:secret@cache.internal:6379/0", 1},
    {"rediss://127.0.0.1:6380", 1},
    {"rediss://app:secret@cache.internal/3", 1},
    {"redis-sentinel://127.0.0.1:26379/mymaster", 1},
    {"redis-sentinel://:pw@h1:26379,h2:26380/mymaster/2", 1},
    {"redis-cluster://127.0.0.1:7000,127.0.0.1:7001", 1},
    {"redis-cluster://app:pw@127.0.0.1:7000", 1},
};

static void test_url(void)
{
    struct event_base *base = event_base_new();
    for (size_t i = 0; i < ARRAY_LEN(urls); i++) {
        char err[256] = "";
        struct redis *r = redis_new(base, urls[i].url, NULL, 100, err, sizeof(err));
        if ((r != NULL) != urls[i].ok)
            fprintf(stderr, "  url %s: %s\n", urls[i].url, r ? "accepted" : err);
        CHECK_INT(r != NULL, urls[i].ok);
        CHECK(r || !strstr(err, "secret")); /* never echo a password */
        redis_free(r);
    }
    event_base_free(base);
}

/* A host name is resolved by evdns on the loop (here from /etc/hosts). */
static void test_hostname(void)
{
    char url2[64], err[256];
    struct event_base *base = event_base_new();
    struct result res = {0};
    snprintf(url2, sizeof(url2), "redis://localhost:%d/0", server_port);
    struct redis *r = redis_new(base, url2, NULL, 1000, err, sizeof(err));
    CHECK(r != NULL);
    if (!r)
        goto done;
    CHECK(wait_for(base, is_connected, r, 3000));
    run(base, r, &res, "PING");
    CHECK_STR(res.str, "PONG");
    /* a name that does not resolve: no connection, errors counted, no hang */
    struct redis *bad =
        redis_new(base, "redis://no-such-host.invalid:6379/0", NULL, 300, err, sizeof(err));
    CHECK(bad != NULL);
    wait_for(base, NULL, NULL, 500);
    CHECK(bad && !redis_connected(bad));
    CHECK(bad && redis_errors(bad) > 0);
    redis_free(bad);
done:
    free(res.hash);
    redis_free(r);
    event_base_free(base);
}

static void test_roundtrip(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct result res = {0};
    CHECK(r && redis_connected(r));
    if (!r || !redis_connected(r))
        goto done;
    run(base, r, &res, "SET tollgate:test:k hello");
    CHECK_STR(res.str, "OK");
    run(base, r, &res, "GET tollgate:test:k");
    CHECK_INT(res.type, REDIS_REPLY_STRING);
    CHECK_STR(res.str, "hello");
    /* an error reply is an error, never a reply */
    run(base, r, &res, "INCR tollgate:test:k");
    CHECK(strncmp(res.err, "ERR", 3) == 0);
    CHECK_INT(res.type, 0);
done:
    free(res.hash);
    redis_free(r);
    event_base_free(base);
}

struct settled {
    int calls;
    int ok;
    char err[128];
};

static void on_settled(bool ok, const char *err, void *arg)
{
    struct settled *s = arg;
    s->calls++;
    s->ok = ok;
    snprintf(s->err, sizeof(s->err), "%s", err ? err : "");
}

static int settled_done(void *arg)
{
    return ((struct settled *)arg)->calls > 0;
}

/* Settles; *st in and out: seq 0 sends afresh, else replays that stamp. */
static void settle_st(struct event_base *base, struct redis *r, const char *id, money_t cost,
                      struct redis_stamp *st)
{
    struct settle s = {
        .key_prefix = "tollgate:",
        .tenant = tenant,
        .request_id = id,
        .when = 1795348800, /* 2026-11-22 */
        .cost = cost,
        .usage = {.input = 1000, .cached = 200, .output = 500, .reasoning = 7},
    };
    struct settled res = {0};
    struct redis_cmd *c = budget_settle(r, NULL, &s, st, on_settled, &res);
    CHECK(c != NULL);
    CHECK_INT(res.calls, 0); /* never from inside the call */
    if (c)
        wait_for(base, settled_done, &res, 3000);
    CHECK_INT(res.calls, 1);
    CHECK(res.ok);
    if (!res.ok)
        fprintf(stderr, "  settle %s: %s\n", id, res.err);
}

static void settle(struct event_base *base, struct redis *r, const char *id, money_t cost)
{
    struct redis_stamp st = {{0}, 0};
    settle_st(base, r, id, cost, &st);
}

static void check_counters(struct event_base *base, struct redis *r, char kind, const char *want)
{
    char key[256], cmd[300];
    struct result res = {0};
    CHECK_INT(budget_key(key, sizeof(key), "tollgate:", tenant, kind, 1795348800), 0);
    snprintf(cmd, sizeof(cmd), "HGETALL %s", key);
    run(base, r, &res, cmd);
    /* HGETALL order follows insertion for small hashes (listpack/ziplist) */
    CHECK_STR(res.hash, want);
    free(res.hash);
}

static void test_settle_once(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    if (!r || !redis_connected(r))
        goto done;
    struct redis_stamp st = {{0}, 0};
    settle_st(base, r, "req-a", 405000, &st);
    CHECK(st.seq > 0);
    settle_st(base, r, "req-a", 405000, &st); /* a retry of what ran: counted once */
    const char *once = "cost=405000,requests=1,input_tokens=1000,cached_tokens=200,"
                       "output_tokens=500,reasoning_tokens=7,";
    check_counters(base, r, 'm', once);
    check_counters(base, r, 'd', once);
    /* past 2^53 nano-USD the sum must stay exact (no double in Lua) */
    settle(base, r, "req-b", 9007199254740993LL);
    check_counters(base, r, 'm',
                   "cost=9007199255145993,requests=2,input_tokens=2000,cached_tokens=400,"
                   "output_tokens=1000,reasoning_tokens=14,");
done:
    redis_free(r);
    event_base_free(base);
}

static void test_noscript(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct result res = {0};
    if (!r || !redis_connected(r))
        goto done;
    run(base, r, &res, "SCRIPT FLUSH");
    CHECK_STR(res.str, "OK");
    settle(base, r, "req-c", 1);
    check_counters(base, r, 'd',
                   "cost=9007199255145994,requests=3,input_tokens=3000,cached_tokens=600,"
                   "output_tokens=1500,reasoning_tokens=21,");
done:
    free(res.hash);
    redis_free(r);
    event_base_free(base);
}

static void test_budget_key(void)
{
    char buf[128];
    CHECK_INT(budget_key(buf, sizeof(buf), "tollgate:", "acme", 'm', 1795348800), 0);
    CHECK_STR(buf, "tollgate:{acme}:m:2026-11");
    CHECK_INT(budget_key(buf, sizeof(buf), "tollgate:", "acme", 'd', 1795348800), 0);
    CHECK_STR(buf, "tollgate:{acme}:d:2026-11-22");
    /* the last second of a UTC month */
    CHECK_INT(budget_key(buf, sizeof(buf), "t:", "a", 'm', 1796083199), 0);
    CHECK_STR(buf, "t:{a}:m:2026-11");
    CHECK_INT(budget_key(buf, sizeof(buf), "t:", "a", 'd', 1796083200), 0);
    CHECK_STR(buf, "t:{a}:d:2026-12-01");
    CHECK_INT(budget_key(buf, sizeof(buf), "t:", "a{b", 'm', 0), -1);
    CHECK_INT(budget_key(buf, sizeof(buf), "t:", "a", 'x', 0), -1);
    CHECK_INT(budget_key(buf, 10, "tollgate:", "acme", 'm', 0), -1);
}

static void test_cancel(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct result res = {0};
    if (!r || !redis_connected(r))
        goto done;
    const char *argv[] = {"PING"};
    struct redis_cmd *c = redis_command(r, on_result, &res, 1, argv, NULL);
    CHECK(c != NULL);
    redis_cancel(c);
    struct settled st = {0};
    struct settle s = {
        .key_prefix = "tollgate:", .tenant = tenant, .request_id = "req-x", .when = 1795348800};
    struct redis_cmd *b = budget_settle(r, NULL, &s, &s.stamp, on_settled, &st);
    CHECK(b != NULL);
    redis_cancel(b); /* its internal state is released, no callback */
    wait_for(base, NULL, NULL, 200);
    CHECK_INT(res.calls, 0);
    CHECK_INT(st.calls, 0);
    run(base, r, &res, "PING"); /* the connection is fine */
    CHECK_STR(res.str, "PONG");
done:
    free(res.hash);
    redis_free(r);
    event_base_free(base);
}

#define MANY 10000

static int all_done(void *arg)
{
    return ((struct result *)arg)->calls >= MANY;
}

static void test_pending_bound(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct result res = {0};
    if (!r || !redis_connected(r))
        goto done;
    const char *argv[] = {"PING"};
    int queued = 0;
    for (int i = 0; i < MANY; i++)
        queued += redis_command(r, on_result, &res, 1, argv, NULL) != NULL;
    CHECK_INT(queued, MANY);
    CHECK(redis_command(r, on_result, &res, 1, argv, NULL) == NULL);
    wait_for(base, all_done, &res, 5000);
    CHECK_INT(res.calls, MANY);
    CHECK_STR(res.err, "");
done:
    redis_free(r);
    event_base_free(base);
}

/* redis_free fails pending commands, synchronously and once. */
static void test_free_pending(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct result res = {0};
    if (!r || !redis_connected(r)) {
        redis_free(r);
        goto done;
    }
    const char *argv[] = {"PING"};
    CHECK(redis_command(r, on_result, &res, 1, argv, NULL) != NULL);
    redis_free(r);
    CHECK_INT(res.calls, 1);
    CHECK_STR(res.err, "disconnected");
done:
    event_base_free(base);
}

struct many {
    struct result res[3];
};

static int three_done(void *arg)
{
    struct many *m = arg;
    return m->res[0].calls && m->res[1].calls && m->res[2].calls;
}

/* A stopped server: every pending command fails with "timeout" once, near
 * the deadline; after SIGCONT the client reconnects by itself. */
static void test_stopped_server(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct many m = {0};
    struct result res = {0};
    if (!r || !redis_connected(r))
        goto done;
    CHECK_INT(kill(server_pid, SIGSTOP), 0);
    const char *argv[] = {"PING"};
    long long t0 = now_ms();
    for (int i = 0; i < 3; i++)
        CHECK(redis_command(r, on_result, &m.res[i], 1, argv, NULL) != NULL);
    wait_for(base, three_done, &m, TIMEOUT_MS + SLACK_MS);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(m.res[i].calls, 1);
        CHECK_STR(m.res[i].err, "timeout");
        CHECK(m.res[i].at_ms - t0 >= TIMEOUT_MS - 5);
        CHECK(m.res[i].at_ms - t0 <= TIMEOUT_MS + SLACK_MS);
    }
    CHECK(!redis_connected(r));
    /* a while longer: still exactly one callback each */
    wait_for(base, NULL, NULL, 2 * TIMEOUT_MS);
    for (int i = 0; i < 3; i++)
        CHECK_INT(m.res[i].calls, 1);
    CHECK(redis_errors(r) >= 3);
    CHECK_INT(kill(server_pid, SIGCONT), 0);
    CHECK(wait_for(base, is_connected, r, 8000));
    run(base, r, &res, "PING");
    CHECK_STR(res.str, "PONG");
done:
    kill(server_pid, SIGCONT);
    free(res.hash);
    redis_free(r);
    event_base_free(base);
}

/* A dead server: pending commands fail, new ones are refused, no crash. */
static void test_killed_server(void)
{
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base);
    struct result res = {0};
    if (!r || !redis_connected(r))
        goto done;
    const char *argv[] = {"BLPOP", "tollgate:test:never", "0"}; /* waits forever */
    CHECK(redis_command(r, on_result, &res, 3, argv, NULL) != NULL);
    wait_for(base, NULL, NULL, 50);
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
    wait_for(base, done_one, &res, TIMEOUT_MS + SLACK_MS);
    CHECK_INT(res.calls, 1);
    CHECK(strcmp(res.err, "disconnected") == 0 || strcmp(res.err, "timeout") == 0);
    CHECK(!redis_connected(r));
    CHECK(redis_command(r, on_result, &res, 3, argv, NULL) == NULL);
    wait_for(base, NULL, NULL, 400); /* a few reconnect attempts, refused */
    CHECK_INT(res.calls, 1);
    CHECK(!redis_connected(r));
done:
    redis_free(r);
    event_base_free(base);
}

/* redis_sync: the blocking client on the same layer. A batch longer than
 * the layer's bound of commands in flight, replies in order, a server's
 * error as a REDIS_REPLY_ERROR reply, the connection's loss as -1. */
static void test_sync(void)
{
    char err[256] = "";
    struct redis_sync *s = redis_sync_connect(url, NULL, 2000, err, sizeof(err));
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    enum { N = MANY + 2000 };
    char num[N][12];
    int queued = 0;
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof(num[i]), "%d", i);
        queued += redis_sync_append(s, 2, (const char *[]){"ECHO", num[i]}, NULL) == 0;
    }
    CHECK_INT(queued, N);
    int in_order = 0;
    for (int i = 0; i < queued; i++) {
        redisReply *rep = NULL;
        if (redis_sync_get(s, &rep, err, sizeof(err)) == 0 && rep &&
            rep->type == REDIS_REPLY_STRING && strcmp(rep->str, num[i]) == 0)
            in_order++;
        if (rep)
            freeReplyObject(rep);
    }
    CHECK_INT(in_order, N);
    redisReply *rep = redis_sync_command(s, 3, (const char *[]){"SET", "tollgate:test:sync", "x"},
                                         err, sizeof(err));
    CHECK(rep && rep->type == REDIS_REPLY_STATUS);
    if (rep)
        freeReplyObject(rep);
    rep = redis_sync_command(s, 3, (const char *[]){"HGET", "tollgate:test:sync", "f"}, err,
                             sizeof(err));
    CHECK(rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "WRONGTYPE", 9) == 0);
    if (rep)
        freeReplyObject(rep);
    redis_sync_free(s);
    /* nothing listens: a clear error within the deadline */
    char dead[64];
    snprintf(dead, sizeof(dead), "redis://:secret@127.0.0.1:%d/0", free_port());
    long long t0 = now_ms();
    CHECK(redis_sync_connect(dead, NULL, 300, err, sizeof(err)) == NULL);
    CHECK(now_ms() - t0 < 300 + SLACK_MS);
    CHECK(strstr(err, "cannot reach Redis at 127.0.0.1:") != NULL);
    CHECK(strstr(err, "secret") == NULL);
}

static const struct check_test tests[] = {
    {"url", test_url},
    {"hostname", test_hostname},
    {"budget_key", test_budget_key},
    {"roundtrip", test_roundtrip},
    {"settle_once", test_settle_once},
    {"noscript", test_noscript},
    {"cancel", test_cancel},
    {"bounded_replies", test_bounded_replies},
    {"loading", test_loading},
    {"pending_bound", test_pending_bound},
    {"sync", test_sync},
    {"free_pending", test_free_pending},
    {"stopped_server", test_stopped_server},
    {"killed_server", test_killed_server},
};

int main(void)
{
    log_setup(LOG_ERROR, false);
    signal(SIGPIPE, SIG_IGN);
    if (start_server("redis") < 0) {
        fprintf(stderr, "cannot start /usr/bin/redis-server\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", server_port);
    snprintf(tenant, sizeof(tenant), "test-%d-%lld", (int)getpid(), now_ms());
    return CHECK_MAIN("redis", tests);
}
