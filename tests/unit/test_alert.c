/* test_alert.c: alert.c against a real redis-server (started on a free
 * 127.0.0.1 port, killed at exit) and a webhook sink: a small evhttp server
 * on 127.0.0.1:0 in this process that records what it receives and can
 * answer 500 to the first requests. Each test uses its own tenant, so the
 * dedupe keys start fresh. Every wait is bounded. */
#include "budget/alert.h"
#include "core/config.h"
#include "core/log.h"
#include "redis/redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "check.h"
#include "redis_server.h"

#define TIMEOUT_MS 300
#define WHEN 1795348800 /* 2026-11-22 */
#define USD 1000000000LL

static char url[64];

/* ---- the webhook sink --------------------------------------------------- */

#define SINK_MAX 8

struct sink {
    struct evhttp *http;
    int port;
    int fail_first; /* answer 500 to this many requests first */
    int n;          /* requests received */
    char body[SINK_MAX][1024];
    char ctype[SINK_MAX][64];
    char uri[SINK_MAX][128];
    char host[SINK_MAX][64];
    int post[SINK_MAX];
};

static void on_hook(struct evhttp_request *req, void *arg)
{
    struct sink *s = arg;
    int i = s->n++;
    struct evbuffer *reply = evbuffer_new();
    if (i < SINK_MAX) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len >= sizeof(s->body[i]))
            len = sizeof(s->body[i]) - 1;
        evbuffer_remove(in, s->body[i], len);
        s->body[i][len] = '\0';
        struct evkeyvalq *h = evhttp_request_get_input_headers(req);
        const char *ct = evhttp_find_header(h, "Content-Type");
        const char *host = evhttp_find_header(h, "Host");
        snprintf(s->ctype[i], sizeof(s->ctype[i]), "%s", ct ? ct : "");
        snprintf(s->host[i], sizeof(s->host[i]), "%s", host ? host : "");
        snprintf(s->uri[i], sizeof(s->uri[i]), "%s", evhttp_request_get_uri(req));
        s->post[i] = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    }
    bool fail = i < s->fail_first;
    evbuffer_add_printf(reply, fail ? "oops" : "ok");
    evhttp_send_reply(req, fail ? 500 : 200, fail ? "Internal Server Error" : "OK", reply);
    evbuffer_free(reply);
}

static int sink_start(struct sink *s, struct event_base *base)
{
    memset(s, 0, sizeof(*s));
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    struct evhttp_bound_socket *bs;
    if (!(s->http = evhttp_new(base)) ||
        !(bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0)) ||
        getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&a, &len) < 0)
        return -1;
    s->port = ntohs(a.sin_port);
    evhttp_set_gencb(s->http, on_hook, s);
    return 0;
}

static void sink_stop(struct sink *s)
{
    if (s->http)
        evhttp_free(s->http);
    s->http = NULL;
}

/* ---- fixtures ----------------------------------------------------------- */

struct fx {
    struct event_base *base;
    struct evdns_base *dns;
    struct redis *r;
    struct sink sink;
    struct config cfg;
    char webhook[128];
    char tenant[64];
};

static int fx_open(struct fx *f, const char *name, bool webhook, bool redis)
{
    char err[256];
    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    f->dns = evdns_base_new(f->base, 0); /* numeric hosts only: no resolver needed */
    snprintf(f->tenant, sizeof(f->tenant), "at-%s-%d-%lld", name, (int)getpid(), now_ms());
    f->cfg.key_prefix = "tollgate:";
    f->cfg.thresholds[0] = 80;
    f->cfg.thresholds[1] = 100;
    f->cfg.n_thresholds = 2;
    if (sink_start(&f->sink, f->base) < 0) {
        fprintf(stderr, "  sink_start failed\n");
        return -1;
    }
    if (webhook) {
        snprintf(f->webhook, sizeof(f->webhook), "http://127.0.0.1:%d/services/T1/B2/secret",
                 f->sink.port);
        f->cfg.webhook = f->webhook;
    }
    if (!redis)
        return 0;
    f->r = redis_new(f->base, url, NULL, TIMEOUT_MS, err, sizeof(err));
    if (!f->r || !wait_for(f->base, is_connected, f->r, 3000)) {
        fprintf(stderr, "  redis: %s\n", f->r ? "not connected" : err);
        return -1;
    }
    return 0;
}

static void fx_close(struct fx *f)
{
    sink_stop(&f->sink);
    redis_free(f->r);
    if (f->dns)
        evdns_base_free(f->dns, 0);
    event_base_free(f->base);
}

static struct alerter *anew(struct fx *f)
{
    char err[256];
    struct alerter *a = alerter_new(f->base, f->dns, &f->cfg, f->r, err, sizeof(err));
    if (!a)
        fprintf(stderr, "  alerter_new: %s\n", err);
    return a;
}

static int settled(void *arg)
{
    struct alerter_stats st;
    alerter_stats(arg, &st);
    return st.pending == 0;
}

static struct alerter_stats settle_wait(struct fx *f, struct alerter *a, int ms)
{
    struct alerter_stats st;
    wait_for(f->base, settled, a, ms);
    wait_for(f->base, NULL, NULL, 100); /* and a little longer: nothing more comes */
    alerter_stats(a, &st);
    return st;
}

/* ---- tests -------------------------------------------------------------- */

/* Crossing 80% sends exactly one POST with the right JSON. */
static void test_cross_80(void)
{
    struct fx f;
    struct alerter *a = NULL;
    if (fx_open(&f, "80", true, true) < 0 || !(a = anew(&f)))
        goto done;
    alerter_check(a, f.tenant, "starter", 7 * USD, 7200000000LL, 9 * USD, WHEN);
    struct alerter_stats st = settle_wait(&f, a, 3000);
    CHECK_INT(st.fired, 1);
    CHECK_INT(st.delivered, 1);
    CHECK_INT(f.sink.n, 1);
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"text\":\"tollgate: tenant %s crossed 80%% of its monthly budget ($7.20 of $9) "
             "in 2026-11\",\"tenant\":\"%s\",\"plan\":\"starter\",\"threshold_pct\":80,"
             "\"spend_usd\":\"7.2\",\"cap_usd\":\"9\",\"percent\":80.0,\"month\":\"2026-11\"}",
             f.tenant, f.tenant);
    CHECK_STR(f.sink.body[0], want);
    CHECK_STR(f.sink.ctype[0], "application/json");
    CHECK_STR(f.sink.uri[0], "/services/T1/B2/secret");
    CHECK_INT(f.sink.post[0], 1);
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", f.sink.port);
    CHECK_STR(f.sink.host[0], host);

    /* the same crossing again, by this alerter and by another instance (a
     * second worker or process, or after a restart): deduped, no POST */
    alerter_check(a, f.tenant, "starter", 7 * USD, 8 * USD, 9 * USD, WHEN + 3600);
    struct alerter *b = anew(&f);
    CHECK(b != NULL);
    if (b)
        alerter_check(b, f.tenant, "starter", 7 * USD, 8 * USD, 9 * USD, WHEN + 7200);
    st = settle_wait(&f, a, 3000);
    CHECK_INT(st.deduped, 1);
    CHECK_INT(st.fired, 1);
    if (b) {
        st = settle_wait(&f, b, 3000);
        CHECK_INT(st.deduped, 1);
        CHECK_INT(st.fired, 0);
    }
    CHECK_INT(f.sink.n, 1);
    /* next month: a new alert */
    alerter_check(a, f.tenant, NULL, 0, 8 * USD, 9 * USD, WHEN + 20 * 86400);
    st = settle_wait(&f, a, 3000);
    CHECK_INT(st.delivered, 2);
    CHECK_INT(f.sink.n, 2);
    CHECK(strstr(f.sink.body[1], "\"plan\":null") != NULL);
    CHECK(strstr(f.sink.body[1], "\"month\":\"2026-12\"") != NULL);
    CHECK(strstr(f.sink.body[1], "\"percent\":88.8,") != NULL);
    alerter_free(b);
done:
    alerter_free(a);
    fx_close(&f);
}

static bool has_body(struct sink *s, const char *needle)
{
    for (int i = 0; i < s->n && i < SINK_MAX; i++)
        if (strstr(s->body[i], needle))
            return true;
    return false;
}

/* 80% and 100% crossed by one request: two alerts. */
static void test_jump_two(void)
{
    struct fx f;
    struct alerter *a = NULL;
    if (fx_open(&f, "jump", true, true) < 0 || !(a = anew(&f)))
        goto done;
    alerter_check(a, f.tenant, "free", 1 * USD, 12 * USD, 10 * USD, WHEN);
    struct alerter_stats st = settle_wait(&f, a, 3000);
    CHECK_INT(st.delivered, 2);
    CHECK_INT(f.sink.n, 2);
    CHECK(has_body(&f.sink, "\"threshold_pct\":80,"));
    CHECK(has_body(&f.sink, "\"threshold_pct\":100,"));
    CHECK(has_body(&f.sink, "\"percent\":120.0,"));
done:
    alerter_free(a);
    fx_close(&f);
}

/* Reads what was logged to stderr while fn ran. */
static void capture_stderr(void (*fn)(void *), void *arg, char *out, size_t n)
{
    char path[] = "/tmp/tollgate-alert-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    out[0] = '\0';
    if (fd < 0 || saved < 0)
        return;
    fflush(stderr);
    dup2(fd, 2);
    log_setup(LOG_WARN, false);
    fn(arg);
    log_setup(LOG_ERROR, false);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t len = pread(fd, out, n - 1, 0);
    out[len > 0 ? len : 0] = '\0';
    close(fd);
    unlink(path);
}

struct retry_run {
    struct fx *f;
    struct alerter *a;
    struct alerter_stats st;
};

static void retry_run(void *arg)
{
    struct retry_run *rr = arg;
    alerter_check(rr->a, rr->f->tenant, "pro", 79 * USD, 81 * USD, 100 * USD, WHEN);
    rr->st = settle_wait(rr->f, rr->a, 4000);
}

/* A 500 is retried after 1 s and the alert delivered once; the failed
 * attempt's log line names the webhook's address. */
static void test_retry_after_500(void)
{
    struct fx f;
    struct alerter *a = NULL;
    char log[4096], want[128];
    if (fx_open(&f, "retry", true, true) < 0 || !(a = anew(&f)))
        goto done;
    f.sink.fail_first = 1;
    long long t0 = now_ms();
    struct retry_run rr = {&f, a, {0}};
    capture_stderr(retry_run, &rr, log, sizeof(log));
    CHECK_INT(rr.st.fired, 1);
    CHECK_INT(rr.st.delivered, 1);
    CHECK_INT(rr.st.failed, 0);
    CHECK_INT(f.sink.n, 2);
    CHECK_STR(f.sink.body[0], f.sink.body[1]);
    CHECK(now_ms() - t0 >= 1000);
    snprintf(want, sizeof(want), "alert: webhook 127.0.0.1:%d attempt 1 failed (HTTP 500)",
             f.sink.port);
    CHECK(strstr(log, want) != NULL);
    if (!strstr(log, want))
        fprintf(stderr, "  log: %s", log);
done:
    alerter_free(a);
    fx_close(&f);
}

struct nohook {
    struct fx *f;
    struct alerter *a;
};

static void nohook_run(void *arg)
{
    struct nohook *nh = arg;
    alerter_check(nh->a, nh->f->tenant, "starter", 7 * USD, 7200000000LL, 9 * USD, WHEN);
    settle_wait(nh->f, nh->a, 3000);
}

/* No webhook: nothing is sent, the alert is still logged (once). */
static void test_no_webhook_logs(void)
{
    struct fx f;
    struct alerter *a = NULL;
    char log[4096], want[256];
    if (fx_open(&f, "nohook", false, true) < 0 || !(a = anew(&f)))
        goto done;
    struct nohook nh = {&f, a};
    capture_stderr(nohook_run, &nh, log, sizeof(log));
    snprintf(want, sizeof(want),
             "alert: tenant %s crossed 80%% of its monthly budget ($7.20 of $9)\n", f.tenant);
    CHECK(strstr(log, want) != NULL);
    CHECK(strstr(log, "level=warn") != NULL);
    if (!strstr(log, want))
        fprintf(stderr, "  log: %s", log);
    struct alerter_stats st;
    alerter_stats(a, &st);
    CHECK_INT(st.fired, 1);
    CHECK_INT(st.delivered, 0);
    CHECK_INT(f.sink.n, 0);
done:
    alerter_free(a);
    fx_close(&f);
}

/* Redis unreachable: the alert is sent anyway. */
static void test_redis_down_sends(void)
{
    struct fx f;
    struct alerter *a = NULL;
    char err[256], dead[64];
    if (fx_open(&f, "down", true, false) < 0)
        goto done;
    snprintf(dead, sizeof(dead), "redis://127.0.0.1:%d/0", free_port());
    f.r = redis_new(f.base, dead, NULL, TIMEOUT_MS, err, sizeof(err));
    CHECK(f.r != NULL);
    if (!(a = anew(&f)))
        goto done;
    alerter_check(a, f.tenant, "starter", 0, 9 * USD, 9 * USD, WHEN);
    struct alerter_stats st = settle_wait(&f, a, 3000);
    CHECK_INT(st.fired, 2);
    CHECK_INT(st.delivered, 2);
    CHECK_INT(f.sink.n, 2);
done:
    alerter_free(a);
    fx_close(&f);
}

/* Which thresholds fire: spent_before < t% of cap <= spent_after. */
static const struct {
    money_t before, after, cap;
    unsigned long fired;
} crossings[] = {
    {0, 7999999999LL, 10 * USD, 0},   /* just under 80% */
    {0, 8 * USD, 10 * USD, 1},        /* exactly 80% */
    {8 * USD, 9 * USD, 10 * USD, 0},  /* was already at 80% */
    {7 * USD, 10 * USD, 10 * USD, 2}, /* 80% and exactly 100% */
    {10 * USD, 11 * USD, 10 * USD, 0},
    {0, 5 * USD, 0, 0},  /* a zero cap: nothing to warn about */
    {0, 5 * USD, -1, 0}, /* no cap */
    {5 * USD, 4 * USD, 10 * USD, 0},
    {0, INT64_MAX, INT64_MAX / 2, 2}, /* no overflow */
};

static void test_crossings(void)
{
    struct fx f;
    if (fx_open(&f, "table", false, false) < 0)
        goto done;
    log_setup((enum log_level) - 1, false); /* quiet: every fire logs a warning */
    for (size_t i = 0; i < ARRAY_LEN(crossings); i++) {
        struct alerter *a = anew(&f);
        CHECK(a != NULL);
        if (!a)
            break;
        alerter_check(a, f.tenant, "p", crossings[i].before, crossings[i].after, crossings[i].cap,
                      WHEN);
        struct alerter_stats st;
        alerter_stats(a, &st);
        if (st.fired != crossings[i].fired)
            fprintf(stderr, "  crossing %zu\n", i);
        CHECK_INT(st.fired, crossings[i].fired);
        CHECK_INT(st.pending, 0);
        alerter_free(a);
    }
    log_setup(LOG_ERROR, false);
    /* a tenant that cannot form a key is refused, like budget.c does */
    struct alerter *a = anew(&f);
    if (a) {
        alerter_check(a, "a{b}", "p", 0, 10 * USD, 10 * USD, WHEN);
        struct alerter_stats st;
        alerter_stats(a, &st);
        CHECK_INT(st.fired, 0);
        alerter_free(a);
    }
done:
    fx_close(&f);
}

/* The queue is bounded, and alerter_free cancels what is pending (dedupes
 * in flight and a POST in flight) without callbacks or leaks. */
static void test_bound_and_free(void)
{
    struct fx f;
    struct alerter *a = NULL;
    if (fx_open(&f, "bound", true, true) < 0 || !(a = anew(&f)))
        goto done;
    log_setup((enum log_level) - 1, false); /* quiet: the drop logs at error */
    for (int i = 0; i < ALERT_QUEUE_MAX + 5; i++) {
        char tenant[96];
        snprintf(tenant, sizeof(tenant), "%s-%d", f.tenant, i);
        alerter_check(a, tenant, "p", 0, 8 * USD, 10 * USD, WHEN);
    }
    log_setup(LOG_ERROR, false);
    struct alerter_stats st;
    alerter_stats(a, &st);
    CHECK_INT(st.pending, ALERT_QUEUE_MAX);
    CHECK_INT(st.dropped, 5);
    alerter_free(a);
    a = NULL;
    wait_for(f.base, NULL, NULL, 100);
    CHECK_INT(f.sink.n, 0);

    /* a POST in flight (no Redis: sent at once), then freed */
    struct redis *r = f.r;
    f.r = NULL;
    a = anew(&f);
    f.r = r;
    if (a) {
        alerter_check(a, f.tenant, "p", 0, 8 * USD, 10 * USD, WHEN);
        alerter_stats(a, &st);
        CHECK_INT(st.pending, 1);
        alerter_free(a);
        a = NULL;
        wait_for(f.base, NULL, NULL, 100);
    }
done:
    alerter_free(a);
    fx_close(&f);
}

static void test_new_errors(void)
{
    struct fx f;
    char err[256] = "";
    if (fx_open(&f, "errors", false, false) < 0)
        goto done;
    f.cfg.webhook = "ftp://hooks.example.com/secret";
    CHECK(alerter_new(f.base, f.dns, &f.cfg, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "webhook") != NULL);
    CHECK(strstr(err, "secret") == NULL); /* never echo the URL */
done:
    fx_close(&f);
}

/* Allowance thresholds and standing events: apart from the budget's, each
 * once a month, with their own JSON. */
static void test_allowance_and_standing(void)
{
    struct fx f;
    struct alerter *a = NULL;
    if (fx_open(&f, "80", true, true) < 0 || !(a = anew(&f)))
        goto done;
    alerter_check_allowance(a, f.tenant, "growth", 3900000, 4100000, 5000000, "tokens", WHEN);
    struct alerter_stats st = settle_wait(&f, a, 3000);
    CHECK_INT(st.delivered, 1);
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"text\":\"tollgate: tenant %s crossed 80%% of its included tokens (4100000 of "
             "5000000) in 2026-11\",\"tenant\":\"%s\",\"plan\":\"growth\",\"kind\":\"allowance\","
             "\"threshold_pct\":80,\"used\":4100000,\"included\":5000000,\"unit\":\"tokens\","
             "\"percent\":82.0,\"month\":\"2026-11\"}",
             f.tenant, f.tenant);
    CHECK_STR(f.sink.body[0], want);
    /* the budget's 80% is another alert; the allowance's again is not */
    alerter_check(a, f.tenant, "growth", 7 * USD, 8 * USD, 9 * USD, WHEN);
    alerter_check_allowance(a, f.tenant, "growth", 3900000, 4200000, 5000000, "tokens", WHEN);
    st = settle_wait(&f, a, 3000);
    CHECK_INT(st.delivered, 2);
    CHECK_INT(st.deduped, 1);
    /* not past a threshold, or nothing included: nothing */
    alerter_check_allowance(a, f.tenant, "growth", 100, 200, 5000000, "tokens", WHEN);
    alerter_check_allowance(a, f.tenant, "growth", 100, 200, 0, "requests", WHEN);
    /* blocked: one event a month, however many requests are refused */
    for (int i = 0; i < 5; i++)
        alerter_standing(a, f.tenant, "growth", true, "included requests", WHEN);
    alerter_standing(a, f.tenant, "growth", false, "monthly budget", WHEN);
    st = settle_wait(&f, a, 3000);
    CHECK_INT(st.delivered, 4);
    CHECK_INT(f.sink.n, 4);
    CHECK(has_body(&f.sink, "\"event\":\"blocked\",\"kind\":\"standing\",\"reason\":\"included "
                            "requests\""));
    CHECK(has_body(&f.sink, "is downgraded (monthly budget) in 2026-11"));
    /* another worker (or process) that sees the tenant blocked: deduped in Redis */
    struct alerter *b = anew(&f);
    if (b) {
        alerter_standing(b, f.tenant, "growth", true, "included requests", WHEN + 60);
        st = settle_wait(&f, b, 3000);
        CHECK_INT(st.deduped, 1);
        CHECK_INT(st.fired, 0);
    }
    CHECK_INT(f.sink.n, 4);
    alerter_free(b);
done:
    alerter_free(a);
    fx_close(&f);
}

static const struct check_test tests[] = {
    {"allowance_and_standing", test_allowance_and_standing},
    {"crossings", test_crossings},
    {"cross_80", test_cross_80},
    {"jump_two", test_jump_two},
    {"retry_after_500", test_retry_after_500},
    {"no_webhook_logs", test_no_webhook_logs},
    {"redis_down_sends", test_redis_down_sends},
    {"bound_and_free", test_bound_and_free},
    {"new_errors", test_new_errors},
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
    return CHECK_MAIN("alert", tests);
}
