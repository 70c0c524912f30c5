/* tenant_usage.c: GET /v1/tollgate/usage. The tenant comes from the tenant
 * header exactly as for a proxied request, so an app can only ask for the
 * tenant it would bill; the answer is read from the counters admission
 * reads (budget.h: the month and day hashes, and the month's by-user hash
 * for X-User-Id), in three commands answered together. Nothing is recorded:
 * a usage query is not a paid call. */
#include "proxy/tenant_usage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <http_parser.h>
#include <jansson.h>

#include "budget/budget.h"
#include "budget/plan.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/client.h"
#include "proxy/trust.h"
#include "redis/redis.h"

#define KEY_MAX 512

/* What the month hash is read for, in this order (HMGET). */
static const char *const month_fields[] = {
    BUDGET_F_COST,  "reserved",      BUDGET_F_ALLOWANCE_USED, "allowance_reserved",
    BUDGET_F_INPUT, BUDGET_F_OUTPUT, BUDGET_F_REQUESTS,       BUDGET_F_OVERAGE_UNITS,
};
enum { M_COST, M_RESERVED, M_USED, M_URESERVED, M_INPUT, M_OUTPUT, M_REQUESTS, M_OVER, M_N };

/* One query in flight: freed when its last reply is in. */
struct query {
    struct client *client; /* NULL once gone */
    struct generation *gen;
    struct plan plan;
    time_t when;
    int pending; /* replies still to come */
    bool failed;
    int64_t month[M_N], day[2], user[3]; /* day: cost, reserved; user: input, output, requests */
    int64_t ucap[2];                     /* the user's cap: settled, reserved (admit.lua) */
    char tenant[TRUST_ID_MAX], user_id[TRUST_ID_MAX];
};

static void gone(void *ctx)
{
    ((struct query *)ctx)->client = NULL;
}

static const struct client_events events = {gone, NULL};

bool tenant_usage_is(const char *path)
{
    size_t n = strlen(TENANT_USAGE_PATH);
    return strncmp(path, TENANT_USAGE_PATH, n) == 0 && (path[n] == '\0' || path[n] == '?');
}

static int64_t field(const redisReply *e)
{
    return e && e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* Percent of cap used, two decimals; NULL (JSON null) when there is no cap. */
static json_t *pct(int64_t used, int64_t cap)
{
    if (cap < 0)
        return json_null();
    if (cap == 0)
        return json_real(used > 0 ? 100.0 : 0.0);
    return json_real(round((double)used * 10000.0 / (double)cap) / 100.0);
}

static json_t *count_or_null(bool has, int64_t v)
{
    return has ? json_integer(v) : json_null();
}

static void iso(char *buf, size_t n, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The body: usage and limits of the period, never a money amount. */
static char *render(const struct query *q)
{
    const struct plan *p = &q->plan;
    const int64_t *m = q->month;
    money_t month = m[M_COST] + (m[M_RESERVED] > 0 ? m[M_RESERVED] : 0);
    money_t today = q->day[0] + (q->day[1] > 0 ? q->day[1] : 0);
    int64_t units = m[M_USED] + (m[M_URESERVED] > 0 ? m[M_URESERVED] : 0);
    bool tokens = p->unit == PLAN_UNIT_TOKENS, requests = p->unit == PLAN_UNIT_REQUESTS;
    /* the allowance's own count is exact at settlement; the others arrive
     * with the worker's tally flush */
    int64_t used_tokens = tokens ? m[M_USED] : m[M_INPUT] + m[M_OUTPUT];
    int64_t used_requests = requests ? m[M_USED] : m[M_REQUESTS];
    enum plan_standing st = plan_standing(p, month, today, units);
    json_t *caps =
        json_pack("{s:o,s:o,s:o}", "monthly_pct", pct(month, p->budget_monthly), "daily_pct",
                  pct(today, p->budget_daily), "hard_limit_pct", pct(month, p->hard_limit));
    /* budget_used_pct: the cap nearest to binding */
    double worst = -1;
    const char *names[] = {"monthly_pct", "daily_pct", "hard_limit_pct"};
    for (size_t i = 0; caps && i < 3; i++) {
        json_t *v = json_object_get(caps, names[i]);
        if (json_is_real(v) && json_real_value(v) > worst)
            worst = json_real_value(v);
    }
    time_t start, end;
    clock_period(q->when, p->anchor, &start, &end);
    struct tm tm;
    char period[16], start_s[32], end_s[32];
    gmtime_r(&start, &tm); /* the period is named for the month it starts in */
    snprintf(period, sizeof(period), "%04d-%02d", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100);
    iso(start_s, sizeof(start_s), start);
    iso(end_s, sizeof(end_s), end);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:I,s:o,s:o,s:o,s:o,s:o,s:b,s:b}", "tenant", q->tenant,
        "plan", p->base->name, "period", period, "period_start", start_s, "period_end", end_s,
        "used_tokens", (json_int_t)used_tokens, "included_tokens",
        count_or_null(tokens, p->included), "used_requests", (json_int_t)used_requests,
        "included_requests", count_or_null(requests, p->included), "allowance_used_pct",
        p->unit != PLAN_UNIT_NONE ? pct(units, p->included) : json_null(), "overage",
        p->unit != PLAN_UNIT_NONE ? json_integer(m[M_OVER]) : json_null(), "budget_used_pct",
        worst >= 0 ? json_real(worst) : json_null(), "caps", caps ? caps : json_null(),
        "downgraded", st == PLAN_STANDING_DOWNGRADED, "blocked", st == PLAN_STANDING_BLOCKED);
    if (o && q->user_id[0]) {
        /* the user's own cap (user_budget_monthly): used and where it stands */
        money_t spent = q->ucap[0] + (q->ucap[1] > 0 ? q->ucap[1] : 0);
        bool over = p->user_budget_monthly >= 0 && spent >= p->user_budget_monthly;
        bool down = over && p->base->on_exceed == ON_EXCEED_DOWNGRADE;
        json_object_set_new(o, "user",
                            json_pack("{s:s,s:I,s:I,s:o,s:b,s:b}", "user", q->user_id,
                                      "used_tokens", (json_int_t)(q->user[0] + q->user[1]),
                                      "requests", (json_int_t)q->user[2], "budget_used_pct",
                                      pct(spent, p->user_budget_monthly), "downgraded", down,
                                      "blocked", over && !down));
    }
    char *text =
        o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    return text;
}

static void done(struct query *q)
{
    if (q->client) {
        struct client *c = q->client;
        client_attach(c, NULL, NULL);
        char *body = q->failed ? NULL : render(q);
        if (body) {
            const struct http_header h[] = {{"Content-Type", "application/json"},
                                            {"Cache-Control", "no-store"}};
            client_respond(c, 200, h, ARRAY_LEN(h), body, strlen(body));
        } else {
            client_error(c, 503, "budget_store_unavailable",
                         q->failed ? "the budget store did not answer; try again shortly"
                                   : "out of memory");
        }
        free(body);
    }
    worker_gen_unref(q->gen);
    free(q);
}

static void on_reply(struct query *q, const redisReply *reply, int64_t *out, size_t n)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != n)
        q->failed = true;
    else
        for (size_t i = 0; i < n; i++)
            out[i] = field(reply->element[i]);
    if (--q->pending == 0)
        done(q);
}

static void on_month(struct redisReply *reply, const char *err, void *arg)
{
    struct query *q = arg;
    on_reply(q, reply, q->month, M_N);
}

static void on_day(struct redisReply *reply, const char *err, void *arg)
{
    struct query *q = arg;
    on_reply(q, reply, q->day, 2);
}

static void on_user(struct redisReply *reply, const char *err, void *arg)
{
    struct query *q = arg;
    on_reply(q, reply, q->user, 3);
}

static void on_ucap(struct redisReply *reply, const char *err, void *arg)
{
    struct query *q = arg;
    on_reply(q, reply, q->ucap, 2);
}

/* Sends one HMGET; false when not queued. */
static bool hmget(struct redis *r, redis_cb cb, struct query *q, const char *key,
                  const char *const *fields, size_t n)
{
    const char *argv[2 + M_N];
    argv[0] = "HMGET";
    argv[1] = key;
    for (size_t i = 0; i < n; i++)
        argv[2 + i] = fields[i];
    if (!redis_command(r, cb, q, (int)(2 + n), argv, NULL))
        return false;
    q->pending++;
    return true;
}

void tenant_usage_handle(struct client *c, const struct http_request *hr, struct worker *w)
{
    char err[256], asked[TRUST_ID_MAX];
    char month[KEY_MAX], day[KEY_MAX], by_user[KEY_MAX], ucap[KEY_MAX];
    char uf[4][TRUST_ID_MAX + 32];
    struct query *q = calloc(1, sizeof(*q));
    if (!q) {
        client_error(c, 503, "overloaded", "out of memory");
        return;
    }
    q->gen = worker_gen_ref(w);
    const struct config *cfg = q->gen->cfg;
    struct timespec now;
    clock_wall(&now);
    q->when = now.tv_sec;
    if (!trust_client_ok(cfg, hr)) {
        client_error(
            c, 401, "invalid_client_token",
            "send the shared secret of [server] client_token in " TRUST_CLIENT_TOKEN_HEADER);
        goto out;
    }
    if (hr->method != HTTP_GET) {
        client_error(c, 405, "method_not_allowed", "GET " TENANT_USAGE_PATH);
        goto out;
    }
    int t = trust_identity(hr, cfg->tenant_header, q->tenant, err, sizeof(err));
    if (t < 0 || trust_identity(hr, cfg->user_header, q->user_id, err, sizeof(err)) < 0 ||
        trust_identity(hr, cfg->plan_header, asked, err, sizeof(err)) < 0) {
        client_error(c, 400, "invalid_header", err);
        goto out;
    }
    if (t == 1) {
        /* no "anonymous" here: usage is asked for a named customer */
        snprintf(err, sizeof(err), "missing the %s header: name the customer to report on",
                 cfg->tenant_header);
        client_error(c, 400, "missing_tenant", err);
        goto out;
    }
    if (!trust_tenant_allowed(cfg, q->tenant)) {
        snprintf(err, sizeof(err), "tenant '%s' is not configured (tenant_policy = configured)",
                 q->tenant);
        client_error(c, 403, "unknown_tenant", err);
        goto out;
    }
    if (asked[0] && (!trust_plan_allowed(cfg, asked) || !config_plan(cfg, asked))) {
        snprintf(err, sizeof(err), "the %s header may not name plan '%s'", cfg->plan_header, asked);
        client_error(c, 403, "plan_not_allowed", err);
        goto out;
    }
    if (plan_resolve(cfg, q->tenant, asked, &q->plan) < 0) {
        client_error(c, 500, "no_plan", "no plan configured for this tenant");
        goto out;
    }
    time_t period = budget_period(q->when, q->plan.anchor);
    if (budget_key(month, sizeof(month), cfg->key_prefix, q->tenant, 'm', period) < 0 ||
        budget_key(day, sizeof(day), cfg->key_prefix, q->tenant, 'd', q->when) < 0 ||
        budget_month_key(by_user, sizeof(by_user), cfg->key_prefix, q->tenant, BUDGET_BY_USER,
                         period) < 0 ||
        budget_month_key(ucap, sizeof(ucap), cfg->key_prefix, q->tenant, BUDGET_BY_UCAP, period) <
            0) {
        client_error(c, 400, "invalid_header", "the tenant cannot form a key");
        goto out;
    }
    snprintf(uf[0], sizeof(uf[0]), "%s|%s", q->user_id, BUDGET_F_INPUT);
    snprintf(uf[1], sizeof(uf[1]), "%s|%s", q->user_id, BUDGET_F_OUTPUT);
    snprintf(uf[2], sizeof(uf[2]), "%s|%s", q->user_id, BUDGET_F_REQUESTS);
    const char *day_fields[] = {BUDGET_F_COST, "reserved"};
    const char *user_fields[] = {uf[0], uf[1], uf[2]};
    snprintf(uf[3], sizeof(uf[3]), "%s|r", q->user_id);
    const char *ucap_fields[] = {q->user_id, uf[3]};
    q->client = c;
    client_attach(c, &events, q);
    /* the replies come after this returns: pending counts what was sent */
    bool sent = hmget(w->redis, on_month, q, month, month_fields, M_N) &&
                hmget(w->redis, on_day, q, day, day_fields, 2) &&
                (!q->user_id[0] || (hmget(w->redis, on_user, q, by_user, user_fields, 3) &&
                                    hmget(w->redis, on_ucap, q, ucap, ucap_fields, 2)));
    if (!sent) {
        q->failed = true;
        if (q->pending > 0) /* the sent ones answer, then done() refuses */
            return;
        done(q);
    }
    return;
out:
    worker_gen_unref(q->gen);
    free(q);
}
