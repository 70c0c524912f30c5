/* admin.c: the admin listener. Health and readiness answer anyone (probes),
 * and so does the dashboard page (it asks for the token itself); metrics and
 * the JSON API need the admin token, compared in constant time. Served by
 * the same HTTP code as the API listener, on the main thread's loop, so a
 * busy worker never delays a probe. The API's reports block on Redis, so
 * each runs on a short-lived thread with its own connection (report.c) and
 * hands its answer back to the loop through an event; the loop answers 503
 * if that takes more than API_TIMEOUT_MS. */
#include "report/admin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "http/client.h"
#include "http/listener.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "redis/redis.h"
#include "redis/redis_sync.h"
#include "redis/redis_url.h"
#include "core/metrics.h"
#include "core/money.h"
#include "core/percent.h"
#include "providers/pricing.h"
#include "records/record.h"
#include "export/export.h"
#include "report/report.h"
#include "report/usage_api.h"
#include "report/usage_event.h"
#include "core/worker.h"

#define API_TIMEOUT_MS 2000    /* a report not done by then is answered 503 */
#define API_MAX_JOBS 8         /* reports computing at once; more: 503 */
#define API_MAX_BODY (1 << 20) /* POST /admin/api/usage: 1 MiB, larger is 413 */

extern const char web_dashboard_html[]; /* src/report/web/dashboard.html, embedded */

struct job;
LIST_HEAD(job_list, job);

struct admin {
    struct event_base *base;
    struct config *cfg;
    struct worker **workers;
    size_t n_workers;
    struct record_sink *sink;
    struct export_hub *exports; /* NULL: none */
    struct listener *listener;
    struct client_limits limits;
    struct job_list jobs; /* threads not yet joined */
    size_t n_jobs;
    size_t next_worker;                      /* usage batches go round the workers */
    int64_t usage_duplicates, usage_refused; /* main thread only, like /metrics */
};

enum job_kind {
    JOB_TENANTS, /* GET /admin/api/tenants: the report as JSON */
    JOB_TENANT,  /* GET /admin/api/tenants/{id}: one tenant's detail */
    JOB_USAGE,   /* POST /admin/api/usage: ids claimed in Redis (usage_api.h) */
};

/* One API report being computed on its own thread. The thread reads only
 * cfg, kind, period and tenant, writes status, body and err, then activates
 * done; everything else belongs to the main loop. */
struct job {
    struct admin *a;
    struct client *c;   /* NULL once answered (timeout) or gone */
    struct config *cfg; /* a ref held for the thread */
    enum job_kind kind;
    struct report_period period;
    char *tenant;
    struct usage_batch *usage; /* JOB_USAGE: until handed to a worker */
    pthread_t thread;
    struct event *done;  /* activated by the thread as its last act */
    struct event *timer; /* API_TIMEOUT_MS after the request */
    int status;
    char *body;
    char err[256];
    LIST_ENTRY(job) link;
};

static void respond_json(struct client *c, int status, const char *body)
{
    static const struct http_header h[] = {{"Content-Type", "application/json"}};
    client_respond(c, status, h, 1, body, strlen(body));
}

static void error_body(const char *path, int status, const char *code, const char *message,
                       struct evbuffer *out, void *arg)
{
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    evbuffer_add_printf(out, "%s", s ? s : "{}");
    free(s);
    json_decref(o);
}

static bool authorized(const struct admin *a, const struct http_request *req)
{
    const char *tok = a->cfg->admin_token;
    const char *h = client_header(req, "authorization", NULL);
    if (!tok || !*tok || !h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    size_t n = strlen(tok);
    /* constant time over the token's length; the length itself is not secret */
    return strlen(h) == n && CRYPTO_memcmp(h, tok, n) == 0;
}

static void metrics(struct admin *a, struct client *c)
{
    struct evbuffer *b = evbuffer_new();
    struct metrics **ms = calloc(a->n_workers ? a->n_workers : 1, sizeof(*ms));
    long inflight = 0, journal = 0;
    for (size_t i = 0; ms && i < a->n_workers; i++) {
        ms[i] = a->workers[i]->metrics;
        inflight += atomic_load_explicit(&a->workers[i]->stats.inflight, memory_order_relaxed);
        journal +=
            atomic_load_explicit(&a->workers[i]->stats.journal_pending, memory_order_relaxed);
    }
    struct record_sink_stats rs;
    record_sink_stats(a->sink, &rs);
    struct metrics_extra x = {.value = {[METRIC_INFLIGHT] = inflight,
                                        [METRIC_JOURNAL_PENDING] = journal,
                                        [METRIC_RECORDS_WRITTEN] = (int64_t)rs.written,
                                        [METRIC_RECORDS_FAILED] = (int64_t)rs.failed,
                                        [METRIC_RECORDS_ROTATIONS] = (int64_t)rs.rotations,
                                        [METRIC_CONNECTIONS] = (int64_t)client_open_count(),
                                        [METRIC_USAGE_DUPLICATES] = a->usage_duplicates,
                                        [METRIC_USAGE_REFUSED] = a->usage_refused}};
    export_hub_metrics(a->exports, &x);
    if (!b || !ms || metrics_render(b, ms, a->n_workers, &x) < 0) {
        free(ms);
        if (b)
            evbuffer_free(b);
        client_error(c, 503, "overloaded", "out of memory");
        return;
    }
    free(ms);
    static const struct http_header h[] = {{"Content-Type", "text/plain; version=0.0.4"}};
    size_t n = evbuffer_get_length(b);
    client_respond(c, 200, h, 1, (const char *)evbuffer_pullup(b, -1), n);
    evbuffer_free(b);
}

/* ---- the JSON API ------------------------------------------------------- */

static void job_free(struct job *j)
{
    LIST_REMOVE(j, link);
    j->a->n_jobs--;
    if (j->done)
        event_free(j->done);
    if (j->timer)
        event_free(j->timer);
    config_unref(j->cfg);
    free(j->body);
    free(j->tenant);
    usage_batch_free(j->usage);
    free(j);
}

/* The thread: its own Redis connection, bounded by the same timeout. */
static void *job_run(void *arg)
{
    struct job *j = arg;
    j->status = 503;
    const struct config *cfg = j->cfg;
    struct redis_tls tls = {cfg->redis_ca_file, cfg->redis_cert_file, cfg->redis_key_file};
    struct redis_sync *rc =
        report_connect(cfg->redis_url, &tls, API_TIMEOUT_MS, j->err, sizeof(j->err));
    if (rc && j->kind == JOB_USAGE) {
        usage_api_claim(rc, j->usage);
        redis_sync_free(rc);
    } else if (!rc && j->kind == JOB_USAGE) {
        snprintf(j->usage->err, sizeof(j->usage->err), "%s", j->err);
        j->usage->bad = SIZE_MAX;
    } else if (rc) {
        if (j->kind == JOB_TENANTS) {
            /* the report, its forecast, and the company's trend by day */
            struct report_breakdown *trend = NULL;
            struct report *r = report_build(rc, j->cfg, &j->period, NULL, j->err, sizeof(j->err));
            if (r && !j->period.day)
                trend = report_breakdown(rc, j->cfg, &j->period, NULL, REPORT_BY_DAY, j->err,
                                         sizeof(j->err));
            if (r && (j->period.day || trend) &&
                report_forecast(r, j->cfg, j->cfg->report_target_margin_bp, trend) == 0)
                j->body = report_render(r, REPORT_JSON);
            if (r && !j->body && !j->err[0])
                snprintf(j->err, sizeof(j->err), "out of memory");
            report_free(r);
            report_breakdown_free(trend);
            j->status = j->body ? 200 : 503;
        } else {
            j->body = report_tenant_json(rc, j->cfg, &j->period, j->tenant, &j->status, j->err,
                                         sizeof(j->err));
        }
        redis_sync_free(rc);
    }
    event_active(j->done, 0, 0);
    return NULL;
}

static void job_gone(void *ctx)
{
    struct job *j = ctx;
    j->c = NULL;
}

static const struct client_events job_events = {job_gone, NULL};

static const char *status_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 404:
        return "not_found";
    default:
        return "unavailable";
    }
}

/* The usage job's end: what it claimed is counted even when its client
 * left or was answered 503 (a retry then finds the ids counted). */
static void usage_done(struct job *j)
{
    struct usage_batch *b = j->usage;
    struct admin *a = j->a;
    char *text = usage_api_answer(b);
    int status = b->status; /* b is the worker's once handed over: read nothing of it after */
    if (b->status == 200) {
        a->usage_duplicates += (int64_t)(b->n - usage_api_fresh(b));
    } else {
        a->usage_refused++;
        if (b->bad != SIZE_MAX)
            log_info("usage API: refused (%d), event %zu: %s", b->status, b->bad, b->err);
        else
            log_warn("usage API: refused (%d): %s", b->status, b->err);
    }
    if (j->c) {
        static const struct http_header h[] = {{"Content-Type", "application/json"}};
        if (text)
            client_respond(j->c, status, h, 1, text, strlen(text));
        else
            client_error(j->c, 503, "overloaded", "out of memory");
        j->c = NULL;
    }
    free(text);
    size_t fresh = usage_api_fresh(b);
    if (fresh) {
        struct worker *w = a->workers[a->next_worker++ % a->n_workers];
        if (usage_api_count(w, b))
            j->usage = NULL; /* the worker's now */
        else
            log_error("usage API: out of memory: %zu claimed events are not counted", fresh);
    }
}

static void on_job_done(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    pthread_join(j->thread, NULL);
    if (j->kind == JOB_USAGE) {
        usage_done(j);
    } else if (j->c) {
        if (j->status == 200 && j->body)
            respond_json(j->c, 200, j->body);
        else
            client_error(j->c, j->status, status_code(j->status), j->err[0] ? j->err : "failed");
        j->c = NULL;
    }
    job_free(j);
}

static void on_job_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    if (j->c) {
        client_error(j->c, 503, "timeout",
                     j->kind == JOB_USAGE
                         ? "the usage was not taken within 2 s (Redis slow or unreachable): "
                           "retry with the same ids, nothing is counted twice"
                         : "the report did not finish within 2 s (Redis slow or "
                           "unreachable)");
        j->c = NULL;
    }
    /* the thread ends by its own Redis timeouts; on_job_done frees the job */
}

/* Starts a report (or a usage claim, taking usage) for c on a thread;
 * answers c itself when it cannot. */
static void job_start(struct admin *a, struct client *c, enum job_kind kind,
                      const struct report_period *p, const char *tenant, struct usage_batch *usage)
{
    struct job *j = NULL;
    if (a->n_jobs >= API_MAX_JOBS) {
        usage_batch_free(usage);
        client_error(c, 503, "busy", "too many reports in progress; retry shortly");
        return;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        usage_batch_free(usage);
        goto oom;
    }
    j->a = a;
    j->cfg = config_ref(a->cfg);
    j->kind = kind;
    j->usage = usage;
    if (p)
        j->period = *p;
    LIST_INSERT_HEAD(&a->jobs, j, link);
    a->n_jobs++;
    if ((tenant && !(j->tenant = strdup(tenant))) ||
        !(j->done = event_new(a->base, -1, 0, on_job_done, j)) ||
        !(j->timer = evtimer_new(a->base, on_job_timeout, j)))
        goto oom;
    if (pthread_create(&j->thread, NULL, job_run, j) != 0) {
        job_free(j);
        client_error(c, 503, "unavailable", "cannot start a report thread");
        return;
    }
    struct timeval tv = {API_TIMEOUT_MS / 1000, (API_TIMEOUT_MS % 1000) * 1000};
    evtimer_add(j->timer, &tv);
    j->c = c;
    client_attach(c, &job_events, j);
    return;
oom:
    if (j)
        job_free(j);
    client_error(c, 503, "overloaded", "out of memory");
}

/* The value of key in a query string ("a=1&period=2026-11"), decoded into
 * buf: 1 when found, 0 when absent, -1 when present but too long for buf
 * or badly escaped (a caller must refuse it, not fall back to a default). */
static int query_param(const char *query, const char *key, char *buf, size_t n)
{
    size_t klen = strlen(key);
    for (const char *q = query; q && *q;) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len >= klen && strncmp(q, key, klen) == 0 && (len == klen || q[klen] == '=')) {
            if (len == klen)
                return -1; /* "period" without a value */
            return percent_decode(q + klen + 1, len - klen - 1, true, buf, n) >= 0 ? 1 : -1;
        }
        q = end ? end + 1 : NULL;
    }
    return 0;
}

static json_t *usd_json(money_t m)
{
    return json_real((double)m / (double)MONEY_PER_USD);
}

static json_t *cap_json(money_t m)
{
    return m < 0 ? json_null() : usd_json(m);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *secret(const char *s)
{
    return s && *s ? json_string("***") : json_null();
}

/* The redis url with its password masked (redis_url_redact). */
static json_t *redis_url_json(const char *url)
{
    char buf[1024];
    if (!url)
        return json_null();
    redis_url_redact(url, buf, sizeof(buf));
    return json_string(buf);
}

/* The effective config, secrets masked. */
static char *config_json(const struct config *cfg)
{
    static const char *const on_exceed[] = {
        [ON_EXCEED_BLOCK] = "block", [ON_EXCEED_DOWNGRADE] = "downgrade"};
    static const char *const unknown[] = {[UNKNOWN_MODEL_HIGHEST] = "highest",
                                          [UNKNOWN_MODEL_ALLOW] = "allow",
                                          [UNKNOWN_MODEL_BLOCK] = "block",
                                          [UNKNOWN_MODEL_PRICE_AS] = "price_as"};
    json_t *ups = json_array(), *plans = json_array(), *tenants = json_array(), *th = json_array();
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        json_array_append_new(ups,
                              json_pack("{s:s,s:s,s:s?,s:o,s:o,s:s?}", "name", u->name, "url",
                                        u->url, "kind", u->kind, "prefix", str_or_null(u->prefix),
                                        "api_key", secret(u->api_key), "ca_file", u->ca_file));
    }
    for (size_t i = 0; i < cfg->n_plans; i++) {
        const struct cfg_plan *p = &cfg->plans[i];
        json_t *down = json_array();
        for (size_t k = 0; k < p->n_downgrade; k++)
            json_array_append_new(down, json_pack("{s:s,s:s}", "from", p->downgrade[k].from, "to",
                                                  p->downgrade[k].to));
        json_array_append_new(
            plans,
            json_pack("{s:s,s:o,s:s,s:o,s:o,s:s,s:o,s:o,s:I,s:I,s:s?}", "name", p->name,
                      "price_usd", usd_json(p->price), "price_period",
                      p->price_period == PRICE_PERIOD_YEAR ? "year" : "month", "budget_monthly_usd",
                      cap_json(p->budget_monthly), "budget_daily_usd", cap_json(p->budget_daily),
                      "on_exceed", on_exceed[p->on_exceed], "downgrade", down, "hard_limit_usd",
                      cap_json(p->hard_limit), "rpm", (json_int_t)p->rpm, "tpm", (json_int_t)p->tpm,
                      "block_message", p->block_message));
    }
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_tenant *t = &cfg->tenants[i];
        json_array_append_new(tenants,
                              json_pack("{s:s,s:s?,s:o,s:o,s:o,s:o,s:o}", "name", t->name, "plan",
                                        t->plan, "budget_monthly_usd", cap_json(t->budget_monthly),
                                        "budget_daily_usd", cap_json(t->budget_daily),
                                        "hard_limit_usd", cap_json(t->hard_limit), "rpm",
                                        t->rpm < 0 ? json_null() : json_integer(t->rpm), "tpm",
                                        t->tpm < 0 ? json_null() : json_integer(t->tpm)));
    }
    for (size_t i = 0; i < cfg->n_thresholds; i++)
        json_array_append_new(th, json_integer(cfg->thresholds[i]));
    json_t *o = json_pack(
        "{s:{s:s,s:s?,s:s?,s:o,s:s,s:s,s:s,s:s?,s:s,s:s,s:I,s:i},"
        "s:{s:o,s:s,s:s},s:o,s:{s:s,s:I,s:s,s:s?},s:{s:s,s:s?},s:{s:o,s:o},s:o,s:o}",
        "server", "listen", cfg->listen, "tls_listen", cfg->tls_listen, "admin_listen",
        cfg->admin_listen, "admin_token", secret(cfg->admin_token), "tenant_header",
        cfg->tenant_header, "user_header", cfg->user_header, "feature_header", cfg->feature_header,
        "plan_header", cfg->plan_header, "missing_tenant",
        cfg->missing_tenant == MISSING_TENANT_ALLOW ? "allow" : "reject", "default_plan",
        cfg->default_plan, "max_body", (json_int_t)cfg->max_body, "workers", cfg->workers, "redis",
        "url", redis_url_json(cfg->redis_url), "key_prefix", cfg->key_prefix, "on_failure",
        cfg->on_failure == ON_FAILURE_CLOSED ? "closed" : "open", "upstreams", ups, "pricing",
        "file", cfg->pricing_file, "models", (json_int_t)pricing_count(cfg->pricing),
        "unknown_model", unknown[cfg->unknown_model], "price_as", cfg->price_as_model, "records",
        "file", cfg->records_file, "redis_stream", cfg->redis_stream, "alerts", "webhook",
        secret(cfg->webhook), "thresholds", th, "plans", plans, "tenants", tenants);
    char *text =
        o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    return text;
}

/* POST /admin/api/usage: the body checked whole, then its ids claimed on a
 * job thread (usage_api.h). A bad event is 400 naming its index. */
static void usage(struct admin *a, struct client *c, const struct http_request *req)
{
    struct usage_event *ev = NULL;
    size_t n = 0, bad = SIZE_MAX;
    char err[256];
    size_t len = evbuffer_get_length(req->body);
    const char *body = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (usage_events_parse(body, len, a->cfg, &ev, &n, &bad, err, sizeof(err)) < 0) {
        a->usage_refused++;
        if (bad != SIZE_MAX)
            log_info("usage API: refused (400), event %zu: %s", bad, err);
        else
            log_info("usage API: refused (400): %s", err);
        json_t *o =
            json_pack("{s:{s:s,s:s,s:o}}", "error", "code", "bad_request", "message", err, "index",
                      bad == SIZE_MAX ? json_null() : json_integer((json_int_t)bad));
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (text)
            respond_json(c, 400, text);
        else
            client_error(c, 503, "overloaded", "out of memory");
        free(text);
        return;
    }
    struct usage_batch *b = usage_batch_new(a->cfg, ev, n);
    if (!b) {
        client_error(c, 503, "overloaded", "out of memory");
        return;
    }
    job_start(a, c, JOB_USAGE, NULL, NULL, b);
}

/* GET /admin/api/tenants[?period=], /admin/api/tenants/{id}[?period=],
 * /admin/api/config; POST /admin/api/usage. */
static void api(struct admin *a, struct client *c, const struct http_request *req)
{
    const char *rest = req->path + strlen("/admin/api/");
    char period[32], tenant[256];
    struct report_period p;

    if (strcmp(rest, "usage") == 0) {
        if (strcmp(req->method_name, "POST") != 0) {
            static const struct http_header allow[] = {{"Allow", "POST"}};
            client_error_with(c, 405, "method_not_allowed", "POST usage events here", allow, 1);
            return;
        }
        usage(a, c, req);
        return;
    }
    if (strcmp(req->method_name, "GET") != 0 && strcmp(req->method_name, "HEAD") != 0) {
        client_error(c, 405, "method_not_allowed", "this admin endpoint answers GET only");
        return;
    }
    if (strcmp(rest, "config") == 0) {
        char *text = config_json(a->cfg);
        if (!text) {
            client_error(c, 503, "overloaded", "out of memory");
            return;
        }
        respond_json(c, 200, text);
        free(text);
        return;
    }
    if (strcmp(rest, "tenants") != 0 && strncmp(rest, "tenants/", 8) != 0) {
        client_error(c, 404, "not_found", "no such admin endpoint");
        return;
    }
    int has_period = query_param(req->query, "period", period, sizeof(period));
    if (has_period != 0) {
        if (has_period < 0 || report_parse_period(period, &p) < 0) {
            client_error(c, 400, "bad_request", "period is YYYY-MM or YYYY-MM-DD");
            return;
        }
    } else {
        struct timespec now;
        clock_wall(&now);
        report_month_of(now.tv_sec, &p);
    }
    if (strcmp(rest, "tenants") == 0) {
        job_start(a, c, JOB_TENANTS, &p, NULL, NULL);
        return;
    }
    rest += 8;
    /* the id is the rest of the path, decoded: tenant ids may hold '/'
     * (sent as %2F or as is) and '+' */
    if (percent_decode(rest, strlen(rest), false, tenant, sizeof(tenant)) < 0 || !tenant[0] ||
        strpbrk(tenant, "{}")) {
        client_error(c, 404, "not_found", "no such tenant");
        return;
    }
    job_start(a, c, JOB_TENANT, &p, tenant, NULL);
}

/* Ready: Redis up and records written. Degraded (still 200: requests are
 * served and budgets settled) while Redis is down with on_failure = open,
 * or while the records file cannot be written (disk full: records are lost,
 * counted in tollgate_records_failed_total). 503 only when requests would
 * be refused: Redis down with on_failure = closed. */
static void readyz(struct admin *a, struct client *c)
{
    size_t up = 0;
    for (size_t i = 0; i < a->n_workers; i++)
        up += atomic_load(&a->workers[i]->redis_up);
    struct record_sink_stats rs;
    record_sink_stats(a->sink, &rs);
    bool redis_up = up == a->n_workers;
    const char *records = rs.failing ? "failing" : "ok";
    char body[128];
    int status = 200;
    const char *verdict = "ready";
    if (!redis_up && a->cfg->on_failure != ON_FAILURE_OPEN) {
        status = 503;
        verdict = "unavailable";
    } else if (!redis_up || rs.failing) {
        verdict = "degraded";
    }
    snprintf(body, sizeof(body), "{\"status\":\"%s\",\"redis\":\"%s\",\"records\":\"%s\"}", verdict,
             redis_up ? "up" : "down", records);
    respond_json(c, status, body);
}

static void handle(struct client *c, struct http_request *req, void *arg)
{
    struct admin *a = arg;
    if (strcmp(req->path, "/healthz") == 0) {
        respond_json(c, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (strcmp(req->path, "/readyz") == 0) {
        readyz(a, c);
        return;
    }
    if (strcmp(req->path, "/dashboard") == 0 || strcmp(req->path, "/dashboard/") == 0) {
        /* not framable (clickjacking): frame-ancestors works only in a CSP
         * header, not in the page's meta CSP; X-Frame-Options for older
         * browsers */
        static const struct http_header h[] = {
            {"Content-Type", "text/html; charset=utf-8"},
            {"Cache-Control", "no-store"},
            {"Content-Security-Policy", "frame-ancestors 'none'"},
            {"X-Frame-Options", "DENY"},
            {"X-Content-Type-Options", "nosniff"},
            {"Referrer-Policy", "no-referrer"},
        };
        client_respond(c, 200, h, ARRAY_LEN(h), web_dashboard_html, strlen(web_dashboard_html));
        return;
    }
    if (!authorized(a, req)) {
        client_error(c, 401, "unauthorized", "send Authorization: Bearer <admin_token>");
        return;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        metrics(a, c);
        return;
    }
    if (strncmp(req->path, "/admin/api/", 11) == 0) {
        api(a, c, req);
        return;
    }
    client_error(c, 404, "not_found", "no such admin endpoint");
}

/* Admin connections open: capped apart from the API's max_connections. */
static atomic_ulong admin_open;

static void on_accept(int fd, void *arg)
{
    struct admin *a = arg;
    const struct client_hooks hooks = {handle, error_body, a};
    if (!client_new(a->base, fd, NULL, &a->limits, &hooks))
        log_warn("admin: out of memory accepting a connection");
}

/* The admin listener's own size caps, with the [server] deadlines of cfg;
 * its connections read them at each use, so a reload applies to them too. */
static void set_limits(struct admin *a, const struct config *cfg)
{
    a->limits = (struct client_limits){.max_header_size = 16384,
                                       .max_body = API_MAX_BODY,
                                       .header_timeout_ms = cfg->header_timeout_ms,
                                       .body_timeout_ms = cfg->body_timeout_ms,
                                       .keepalive_timeout_ms = cfg->keepalive_timeout_ms,
                                       .send_timeout_ms = cfg->send_timeout_ms,
                                       .open = &admin_open};
}

struct admin *admin_new(struct event_base *base, struct config *cfg, struct worker **workers,
                        size_t n_workers, struct record_sink *sink, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *a = (struct admin){.base = base,
                        .cfg = config_ref(cfg),
                        .workers = workers,
                        .n_workers = n_workers,
                        .sink = sink};
    LIST_INIT(&a->jobs);
    set_limits(a, cfg);
    const struct listener_conf lc = {
        .name = "admin",
        .addr = cfg->admin_listen,
        .backlog = 128,
        .open = &admin_open,
        .max_open = ADMIN_MAX_CONNECTIONS,
        .accept = on_accept,
        .arg = a,
    };
    a->listener = listener_new(base, &lc, err, errlen);
    if (!a->listener) {
        config_unref(a->cfg);
        free(a);
        return NULL;
    }
    return a;
}

void admin_set_exports(struct admin *a, struct export_hub *hub)
{
    a->exports = hub;
}

void admin_set_config(struct admin *a, struct config *cfg)
{
    if (!a)
        return;
    config_unref(a->cfg);
    a->cfg = config_ref(cfg);
    set_limits(a, cfg);
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    listener_free(a->listener);
    client_close_all(); /* a report in flight loses its client: job_gone */
    /* each thread ends within its Redis timeouts */
    while (!LIST_EMPTY(&a->jobs)) {
        struct job *j = LIST_FIRST(&a->jobs);
        pthread_join(j->thread, NULL);
        job_free(j);
    }
    config_unref(a->cfg);
    free(a);
}
