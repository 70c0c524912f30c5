/* test_redis.c: redis.c and budget.c against a real redis-server started on
 * a free 127.0.0.1 port in a temp dir (killed at exit, and by the kernel if
 * this process dies first). The tests run in table order on one server: the
 * last ones stop it (SIGSTOP) and kill it. Every wait is bounded. */
#include "budget.h"
#include "log.h"
#include "redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check.h"

#define TIMEOUT_MS 300
#define SLACK_MS 700

static pid_t server_pid = -1;
static int server_port;
static char server_dir[] = "/tmp/tollgate-redis-XXXXXX";
static char url[64];
static char tenant[64]; /* unique per run: the counters start at zero */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server --------------------------------------------------------- */

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGCONT);
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/dump.rdb", server_dir);
    unlink(path);
    rmdir(server_dir);
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int can_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int start_server(void)
{
    char port[16];
    if (!mkdtemp(server_dir) || (server_port = free_port()) < 0)
        return -1;
    snprintf(port, sizeof(port), "%d", server_port);
    atexit(stop_server);
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--dir", server_dir, (char *)NULL);
        _exit(127);
    }
    for (long long end = now_ms() + 5000; now_ms() < end; usleep(20000))
        if (can_connect(server_port))
            return 0;
    return -1;
}

/* ---- waiting on the loop ----------------------------------------------- */

struct wait {
    struct event_base *base;
    int (*cond)(void *);
    void *arg;
};

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct wait *w = arg;
    if (w->cond && w->cond(w->arg))
        event_base_loopbreak(w->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Runs base until cond holds or ms pass (cond NULL: just ms). Own timers,
 * freed here, so no stray loopexit ends a later wait early. */
static int wait_for(struct event_base *base, int (*cond)(void *), void *arg, int ms)
{
    struct wait w = {base, cond, arg};
    struct event *poll = event_new(base, -1, EV_PERSIST, on_poll, &w);
    struct event *deadline = evtimer_new(base, on_deadline, base);
    struct timeval p = {0, 2000}, d = {ms / 1000, (ms % 1000) * 1000};
    event_add(poll, &p);
    evtimer_add(deadline, &d);
    if (!(cond && cond(arg)))
        event_base_dispatch(base);
    event_free(poll);
    event_free(deadline);
    return cond ? cond(arg) : 1;
}

static int is_connected(void *r)
{
    return redis_connected(r);
}

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
    struct redis *r = redis_new(base, url, TIMEOUT_MS, err, sizeof(err));
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
};

static void test_url(void)
{
    struct event_base *base = event_base_new();
    for (size_t i = 0; i < ARRAY_LEN(urls); i++) {
        char err[256] = "";
        struct redis *r = redis_new(base, urls[i].url, 100, err, sizeof(err));
        if ((r != NULL) != urls[i].ok)
            fprintf(stderr, "  url %s: %s\n", urls[i].url, r ? "accepted" : err);
        CHECK_INT(r != NULL, urls[i].ok);
        CHECK(r || !strstr(err, "secret")); /* never echo a password */
        redis_free(r);
    }
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

static void settle(struct event_base *base, struct redis *r, const char *id, money_t cost)
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
    struct redis_cmd *c = budget_settle(r, &s, on_settled, &res);
    CHECK(c != NULL);
    CHECK_INT(res.calls, 0); /* never from inside the call */
    if (c)
        wait_for(base, settled_done, &res, 3000);
    CHECK_INT(res.calls, 1);
    CHECK(res.ok);
    if (!res.ok)
        fprintf(stderr, "  settle %s: %s\n", id, res.err);
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
    settle(base, r, "req-a", 405000);
    settle(base, r, "req-a", 405000); /* a retry: counted once */
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
    struct redis_cmd *b = budget_settle(r, &s, on_settled, &st);
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

static const struct check_test tests[] = {
    {"url", test_url},
    {"budget_key", test_budget_key},
    {"roundtrip", test_roundtrip},
    {"settle_once", test_settle_once},
    {"noscript", test_noscript},
    {"cancel", test_cancel},
    {"pending_bound", test_pending_bound},
    {"free_pending", test_free_pending},
    {"stopped_server", test_stopped_server},
    {"killed_server", test_killed_server},
};

int main(void)
{
    log_setup(LOG_ERROR, false);
    signal(SIGPIPE, SIG_IGN);
    if (start_server() < 0) {
        fprintf(stderr, "cannot start /usr/bin/redis-server\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", server_port);
    snprintf(tenant, sizeof(tenant), "test-%d-%lld", (int)getpid(), now_ms());
    return CHECK_MAIN("redis", tests);
}
