/* alert.c: soft-limit alerts (alert.h has the contract). Each crossed
 * threshold becomes one struct alert that walks dedupe (Redis SET NX) ->
 * send (upstream.c's client, POST to the webhook) -> wait and resend on a
 * failure, and is freed when delivered, deduped or given up. All of it on
 * the worker's loop; the caller of alerter_check never waits. */
#include "budget/alert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "core/config.h"
#include "core/log.h"
#include "redis/redis.h"
#include "http/upstream.h"

#define DEDUPE_TTL_S "3456000" /* 40 days: past the end of any month */
#define DROP_LOG_EVERY 100     /* a storm of drops must not become a storm of logs */

static const int backoff_ms[ALERT_ATTEMPTS - 1] = {ALERT_BACKOFF_MS};

enum astate {
    A_DEDUPE,  /* SET NX in flight: who sends? */
    A_SENDING, /* POST in flight */
    A_WAITING, /* the last attempt failed; the timer sends the next */
};

struct alert {
    struct alerter *a;
    struct alert *prev, *next; /* a->alive */
    enum astate state;
    struct redis_cmd *cmd;    /* A_DEDUPE */
    struct upstream_req *req; /* A_SENDING */
    struct event *timer;      /* A_WAITING */
    int attempts;             /* POSTs done */
    int status;               /* of the last response, 0 if none */
    int threshold;            /* percent */
    char tenant[129];         /* tenant ids are up to 128 bytes (proxy.c) */
    char text[320];           /* for the log and the webhook's "text" */
    char *body;               /* the JSON */
    size_t body_len;
};

#define STANDING_SLOTS 1024

struct alerter {
    struct event_base *base;
    struct redis *r;            /* NULL: no dedupe */
    struct upstream_pool *pool; /* NULL: no webhook */
    char *host_header;          /* "host" or "host:port" */
    char *path;                 /* request target */
    char *key_prefix;
    int thresholds[ARRAY_LEN(((struct config *)0)->thresholds)];
    size_t n_thresholds;
    struct alert *alive;
    size_t n_alive;
    struct alerter_stats st;
    /* standing events this worker already started: a hash of tenant, event
     * and month per slot, so a tenant downgraded on every request costs one
     * dedupe command a month here, not one per request (a collision only
     * asks Redis again) */
    uint64_t standing_seen[STANDING_SLOTS];
};

static void send_now(struct alert *al);

/* ---- formatting ---- */

/* Dollars for people: "$9", "$7.20"; amounts under a cent keep their
 * digits ("$0.004") rather than read "$0.00". The JSON fields use
 * money_format, exact. */
static void human_usd(money_t m, char *buf, size_t n)
{
    const money_t cent = MONEY_PER_USD / 100;
    if (m % MONEY_PER_USD == 0) {
        snprintf(buf, n, "$%lld", (long long)(m / MONEY_PER_USD));
        return;
    }
    money_t cents = m / cent + (m % cent >= cent / 2); /* no m + cent/2: it may overflow */
    if (m < 0 || cents == 0) {
        char tmp[40];
        if (money_format(m, tmp, sizeof(tmp)) < 0)
            snprintf(tmp, sizeof(tmp), "?");
        snprintf(buf, n, "$%s", tmp);
        return;
    }
    snprintf(buf, n, "$%lld.%02lld", (long long)(cents / 100), (long long)(cents % 100));
}

/* What an alert is about: a share of the monthly budget (amounts in
 * nano-USD), a share of the allowance (amounts in units), or the tenant's
 * standing (blocked or downgraded now; no amounts). */
struct about {
    char kind;        /* 'b' budget, 'a' allowance, 's' standing */
    const char *unit; /* 'a': "tokens" | "requests"; 's': "blocked" | "downgraded" */
    const char *why;  /* 's': the cap or allowance that did it */
    int64_t used, cap;
};

/* The alert's text and JSON body. percent is used/cap with one decimal,
 * rounded down so that "80.0" never shows for a use under 80%. */
static int build(struct alert *al, const char *plan, const struct about *ab, time_t when)
{
    char used_h[48], cap_h[48], used_s[40], cap_s[40], month[16];
    struct tm tm;
    json_t *o = NULL;
    char *text = NULL;
    if (!gmtime_r(&when, &tm) || strftime(month, sizeof(month), "%Y-%m", &tm) == 0)
        goto fail;
    if (ab->kind == 's') {
        snprintf(al->text, sizeof(al->text), "tenant %s is %s (%s)", al->tenant, ab->unit, ab->why);
        char slack[400];
        snprintf(slack, sizeof(slack), "tollgate: %s in %s", al->text, month);
        o = json_pack("{s:s,s:s,s:s?,s:s,s:s,s:s,s:s}", "text", slack, "tenant", al->tenant, "plan",
                      plan, "event", ab->unit, "kind", "standing", "reason", ab->why, "month",
                      month);
    } else if (ab->kind == 'a') {
        snprintf(al->text, sizeof(al->text),
                 "tenant %s crossed %d%% of its included %s (%lld of %lld)", al->tenant,
                 al->threshold, ab->unit, (long long)ab->used, (long long)ab->cap);
        __int128 tenths = (__int128)ab->used * 1000 / ab->cap;
        char slack[400];
        snprintf(slack, sizeof(slack), "tollgate: %s in %s", al->text, month);
        o = json_pack("{s:s,s:s,s:s?,s:s,s:i,s:I,s:I,s:s,s:f,s:s}", "text", slack, "tenant",
                      al->tenant, "plan", plan, "kind", "allowance", "threshold_pct", al->threshold,
                      "used", (json_int_t)ab->used, "included", (json_int_t)ab->cap, "unit",
                      ab->unit, "percent", (double)tenths / 10.0, "month", month);
    } else {
        human_usd(ab->used, used_h, sizeof(used_h));
        human_usd(ab->cap, cap_h, sizeof(cap_h));
        if (money_format(ab->used, used_s, sizeof(used_s)) < 0 ||
            money_format(ab->cap, cap_s, sizeof(cap_s)) < 0)
            goto fail;
        snprintf(al->text, sizeof(al->text),
                 "tenant %s crossed %d%% of its monthly budget (%s of %s)", al->tenant,
                 al->threshold, used_h, cap_h);
        __int128 tenths = (__int128)ab->used * 1000 / ab->cap;
        char slack[400];
        snprintf(slack, sizeof(slack), "tollgate: %s in %s", al->text, month);
        o = json_pack("{s:s,s:s,s:s?,s:i,s:s,s:s,s:f,s:s}", "text", slack, "tenant", al->tenant,
                      "plan", plan, "threshold_pct", al->threshold, "spend_usd", used_s, "cap_usd",
                      cap_s, "percent", (double)tenths / 10.0, "month", month);
    }
    if (!o || !(text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12))))
        goto fail;
    al->body = text;
    al->body_len = strlen(text);
    json_decref(o);
    return 0;
fail:
    json_decref(o);
    return -1;
}

/* ---- lifecycle of one alert ---- */

static void alert_free(struct alert *al)
{
    struct alerter *a = al->a;
    if (al->cmd)
        redis_cancel(al->cmd);
    if (al->req)
        upstream_cancel(al->req);
    if (al->timer)
        event_free(al->timer);
    if (al->prev)
        al->prev->next = al->next;
    else
        a->alive = al->next;
    if (al->next)
        al->next->prev = al->prev;
    a->n_alive--;
    free(al->body);
    free(al);
}

/* This process sends the alert: log it, then POST it if there is a webhook. */
static void fire(struct alert *al)
{
    struct alerter *a = al->a;
    a->st.fired++;
    log_warn("alert: %s", al->text);
    if (!a->pool) {
        alert_free(al);
        return;
    }
    send_now(al);
}

static void on_dedupe(struct redisReply *reply, const char *err, void *arg)
{
    struct alert *al = arg;
    al->cmd = NULL;
    if (!reply) {
        log_warn("alert: Redis could not dedupe (%s): sending anyway", err ? err : "error");
        fire(al);
        return;
    }
    if (reply->type == REDIS_REPLY_STATUS) { /* "OK": the key is ours, so is the alert */
        fire(al);
        return;
    }
    /* nil: another process (or this one before a restart) sent it */
    al->a->st.deduped++;
    log_debug("alert: tenant %s %d%% (0: a standing event) already sent this month", al->tenant,
              al->threshold);
    alert_free(al);
}

/* An attempt failed: wait and resend, or give up with an error. */
static void retry(struct alert *al, const char *why)
{
    struct alerter *a = al->a;
    if (al->attempts >= ALERT_ATTEMPTS) {
        a->st.failed++;
        log_error("alert: webhook %s failed %d times (%s), giving up: %s", a->host_header,
                  al->attempts, why, al->text);
        alert_free(al);
        return;
    }
    int ms = backoff_ms[al->attempts - 1];
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    log_warn("alert: webhook %s attempt %d failed (%s), retry in %d ms", a->host_header,
             al->attempts, why, ms);
    al->state = A_WAITING;
    if (evtimer_add(al->timer, &tv) < 0) {
        a->st.failed++;
        log_error("alert: cannot arm the retry timer, giving up: %s", al->text);
        alert_free(al);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    send_now(arg);
}

static void on_head(void *arg, int status, const struct upstream_header *h, size_t n,
                    long long content_length)
{
    ((struct alert *)arg)->status = status;
}

static void on_body(void *arg, const char *buf, size_t len)
{
    /* the webhook's answer ("ok") says nothing the status did not */
}

static void on_done(void *arg, enum upstream_result res, const char *errstr)
{
    struct alert *al = arg;
    char why[96];
    al->req = NULL;
    if (res == UPSTREAM_OK && al->status >= 200 && al->status < 300) {
        al->a->st.delivered++;
        alert_free(al);
        return;
    }
    if (res == UPSTREAM_OK)
        snprintf(why, sizeof(why), "HTTP %d", al->status);
    else
        snprintf(why, sizeof(why), "%s", errstr ? errstr : "connection failed");
    retry(al, why);
}

static const struct upstream_handlers handlers = {on_head, on_body, on_done};

static void send_now(struct alert *al)
{
    struct alerter *a = al->a;
    struct evbuffer *b = evbuffer_new();
    al->attempts++;
    al->status = 0;
    al->state = A_SENDING;
    if (!b ||
        evbuffer_add_printf(b,
                            "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tollgate\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            a->path, a->host_header, al->body_len) < 0 ||
        evbuffer_add(b, al->body, al->body_len) < 0)
        goto fail;
    if (!(al->req = upstream_send(a->pool, b, false, &handlers, al)))
        goto fail;
    return;
fail:
    if (b)
        evbuffer_free(b);
    retry(al, "out of memory");
}

/* ---- public ---- */

struct alerter *alerter_new(struct event_base *base, struct evdns_base *dns,
                            const struct config *cfg, struct redis *r, char *err, size_t errlen)
{
    struct cfg_upstream up = {.name = "webhook"};
    struct alerter *a = calloc(1, sizeof(*a));
    if (!a)
        goto oom;
    a->base = base;
    a->r = r;
    a->n_thresholds = cfg->n_thresholds;
    memcpy(a->thresholds, cfg->thresholds, cfg->n_thresholds * sizeof(cfg->thresholds[0]));
    if (!(a->key_prefix = strdup(cfg->key_prefix ? cfg->key_prefix : "")))
        goto oom;
    if (!cfg->webhook)
        return a;
    if (config_parse_url(cfg->webhook, &up.tls, &up.host, &up.port, &up.base_path) < 0) {
        /* the URL holds a secret: never echo it */
        snprintf(err, errlen, "alerts: webhook is not an http:// or https:// URL");
        goto fail;
    }
    bool v6 = strchr(up.host, ':') != NULL;
    bool default_port = up.port == (up.tls ? 443 : 80);
    int n = default_port ? asprintf(&a->host_header, v6 ? "[%s]" : "%s", up.host)
                         : asprintf(&a->host_header, v6 ? "[%s]:%d" : "%s:%d", up.host, up.port);
    if (n < 0) {
        a->host_header = NULL;
        goto oom;
    }
    if (!(a->path = strdup(up.base_path[0] ? up.base_path : "/")))
        goto oom;
    /* Deadlines for each attempt: a slow webhook costs a retry, never a
     * request, so these only bound how long an alert lives. */
    const struct upstream_limits lim = {
        .connect_timeout_ms = 5000,
        .first_byte_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .pool_size = 2,
    };
    if (!(a->pool = upstream_pool_new(base, dns, &up, &lim, err, errlen)))
        goto fail;
    free(up.host);
    free(up.base_path);
    return a;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(up.host);
    free(up.base_path);
    alerter_free(a);
    return NULL;
}

/* spent * 100 against cap * t, in 128 bits: no overflow, no rounding. */
static bool reached(money_t spent, money_t cap, int t)
{
    return (__int128)spent * 100 >= (__int128)cap * t;
}

/* Starts one alert: deduped through {prefix}{TENANT}:alert:YYYY-MM:TAG
 * (SET NX), then fired. t is the threshold (0 for a standing event). */
static void start(struct alerter *a, const char *tenant, const char *plan, const struct about *ab,
                  int t, const char *tag, time_t when)
{
    if (strpbrk(tenant, "{}") || strlen(tenant) >= sizeof(((struct alert *)0)->tenant))
        return; /* no key can carry it, and budget.c refuses it too */
    if (a->n_alive >= ALERT_QUEUE_MAX) {
        if (a->st.dropped++ % DROP_LOG_EVERY == 0)
            log_error("alert: %d alerts pending, dropping tenant %s %s (%lu dropped)",
                      ALERT_QUEUE_MAX, tenant, tag, a->st.dropped);
        return;
    }
    struct alert *al = calloc(1, sizeof(*al));
    if (!al) {
        a->st.dropped++;
        log_error("alert: out of memory, dropping tenant %s %s", tenant, tag);
        return;
    }
    al->a = a;
    al->threshold = t;
    snprintf(al->tenant, sizeof(al->tenant), "%s", tenant);
    al->next = a->alive;
    if (a->alive)
        a->alive->prev = al;
    a->alive = al;
    a->n_alive++;
    if (build(al, plan, ab, when) < 0 || !(al->timer = evtimer_new(a->base, on_timer, al))) {
        a->st.dropped++;
        log_error("alert: out of memory, dropping tenant %s %s", tenant, tag);
        alert_free(al);
        return;
    }
    /* a standing event without a webhook is only logged (once a month per
     * worker, by the memo): it leaves no key behind */
    if (!a->r || (ab->kind == 's' && !a->pool)) {
        fire(al);
        return;
    }
    char key[512];
    struct tm tm;
    gmtime_r(&when, &tm);
    snprintf(key, sizeof(key), "%s{%s}:alert:%04d-%02d:%s", a->key_prefix, tenant,
             tm.tm_year + 1900, tm.tm_mon + 1, tag);
    const char *argv[] = {"SET", key, "1", "NX", "EX", DEDUPE_TTL_S};
    al->state = A_DEDUPE;
    al->cmd = redis_command(a->r, on_dedupe, al, (int)ARRAY_LEN(argv), argv, NULL);
    if (!al->cmd) {
        log_warn("alert: Redis not connected, cannot dedupe: sending anyway");
        fire(al);
    }
}

/* One alert per threshold t with before < t% of cap <= after. */
static void thresholds(struct alerter *a, const char *tenant, const char *plan, struct about *ab,
                       int64_t before, time_t when)
{
    for (size_t i = 0; i < a->n_thresholds; i++) {
        int t = a->thresholds[i];
        if (reached(before, ab->cap, t) || !reached(ab->used, ab->cap, t))
            continue;
        char tag[16];
        /* budget thresholds keep their historical key (":80"); allowance ones are ":a80" */
        snprintf(tag, sizeof(tag), "%s%d", ab->kind == 'a' ? "a" : "", t);
        start(a, tenant, plan, ab, t, tag, when);
    }
}

void alerter_check(struct alerter *a, const char *tenant, const char *plan, money_t spent_before,
                   money_t spent_after, money_t cap_monthly, time_t when)
{
    if (!a || !tenant || cap_monthly <= 0 || spent_after <= spent_before)
        return;
    struct about ab = {'b', NULL, NULL, spent_after, cap_monthly};
    thresholds(a, tenant, plan, &ab, spent_before, when);
}

void alerter_check_allowance(struct alerter *a, const char *tenant, const char *plan,
                             int64_t before, int64_t after, int64_t included, const char *unit,
                             time_t when)
{
    if (!a || !tenant || !unit || included <= 0 || after <= before)
        return;
    struct about ab = {'a', unit, NULL, after, included};
    thresholds(a, tenant, plan, &ab, before, when);
}

void alerter_standing(struct alerter *a, const char *tenant, const char *plan, bool blocked,
                      const char *why, time_t when)
{
    if (!a || !tenant || !why)
        return;
    struct about ab = {'s', blocked ? "blocked" : "downgraded", why, 0, 0};
    struct tm tm;
    gmtime_r(&when, &tm);
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = tenant; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (uint64_t)(blocked ? 1 : 2)) * 1099511628211ULL;
    h = ((h ^ (uint64_t)(tm.tm_year * 12 + tm.tm_mon)) * 1099511628211ULL) | 1;
    uint64_t *slot = &a->standing_seen[h % STANDING_SLOTS];
    if (*slot == h)
        return;
    *slot = h;
    start(a, tenant, plan, &ab, 0, blocked ? "blocked" : "downgraded", when);
}

void alerter_stats(const struct alerter *a, struct alerter_stats *out)
{
    *out = a->st;
    out->pending = a->n_alive;
}

void alerter_free(struct alerter *a)
{
    if (!a)
        return;
    while (a->alive)
        alert_free(a->alive);
    upstream_pool_free(a->pool); /* after the cancels: nothing in flight */
    free(a->host_header);
    free(a->path);
    free(a->key_prefix);
    free(a);
}
