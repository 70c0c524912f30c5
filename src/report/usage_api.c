/* usage_api.c: claiming and counting reported usage (usage_api.h). */
#include "report/usage_api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "budget/budget.h"
#include "budget/ledger.h"
#include "budget/plan.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "export/export.h"
#include "export/trace.h"
#include "records/record.h"
#include "redis/redis_sync.h"
#include "report/usage_event.h"

#define KEY_MAX 512

struct usage_batch *usage_batch_new(struct config *cfg, struct usage_event *ev, size_t n)
{
    struct usage_batch *b = calloc(1, sizeof(*b));
    if (!b || !(b->fresh = calloc(n, sizeof(*b->fresh))) ||
        !(b->spent_before = calloc(n, sizeof(*b->spent_before)))) {
        if (b)
            free(b->fresh);
        free(b);
        free(ev);
        return NULL;
    }
    b->cfg = config_ref(cfg);
    b->ev = ev;
    b->n = n;
    b->status = 503;
    clock_wall(&b->when);
    return b;
}

void usage_batch_free(struct usage_batch *b)
{
    if (!b)
        return;
    config_unref(b->cfg);
    free(b->ev);
    free(b->fresh);
    free(b->spent_before);
    free(b);
}

size_t usage_api_fresh(const struct usage_batch *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        k += b->fresh[i];
    return k;
}

PRINTF_LIKE(4, 5)
static void refuse(struct usage_batch *b, int status, size_t bad, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof(b->err), fmt, ap);
    va_end(ap);
    b->status = status;
    b->bad = bad;
}

static int id_key(char *buf, const char *prefix, const char *id)
{
    int n = snprintf(buf, KEY_MAX, "%susage:%s", prefix, id);
    return n < 0 || n >= KEY_MAX ? -1 : 0;
}

/* Sends the n commands argv[i] (argc[i] words) as one pipeline and reads
 * their replies into rep[i] (the caller frees them). -1 with b refused 503. */
static int pipeline(struct redis_sync *rc, struct usage_batch *b, size_t n, const int *argc,
                    const char *(*argv)[6], redisReply **rep)
{
    char err[256] = "redis: cannot send";
    for (size_t i = 0; i < n; i++)
        if (redis_sync_append(rc, argc[i], argv[i], NULL) < 0)
            goto fail;
    for (size_t i = 0; i < n; i++) {
        if (redis_sync_get(rc, &rep[i], err, sizeof(err)) < 0)
            goto fail;
        if (rep[i]->type == REDIS_REPLY_ERROR) {
            refuse(b, 503, SIZE_MAX, "redis: %.200s", rep[i]->str);
            return -1;
        }
    }
    return 0;
fail:
    refuse(b, 503, SIZE_MAX, "%s", err);
    return -1;
}

static void free_replies(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    memset(rep, 0, n * sizeof(*rep));
}

/* Index of the first event before i with the same id, or i. */
static size_t first_of(const struct usage_batch *b, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(b->ev[k].id, b->ev[i].id) == 0)
            return k;
    return i;
}

/* Index of the first event before i with the same tenant, or i. */
static size_t first_tenant(const struct usage_batch *b, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(b->ev[k].tenant, b->ev[i].tenant) == 0)
            return k;
    return i;
}

void usage_api_claim(struct redis_sync *rc, struct usage_batch *b)
{
    const struct config *cfg = b->cfg;
    const char *prefix = cfg->key_prefix;
    size_t n = b->n;
    /* per event: up to 3 commands (two SISMEMBER or GET + HGET), keys in keys */
    char(*keys)[3][KEY_MAX] = calloc(n, sizeof(*keys));
    int *argc = calloc(3 * n, sizeof(*argc));
    const char *(*argv)[6] = calloc(3 * n, sizeof(*argv));
    redisReply **rep = calloc(3 * n, sizeof(*rep));
    size_t *at = calloc(n, sizeof(*at));
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", USAGE_ID_TTL_S);
    if (!keys || !argc || !argv || !rep || !at) {
        refuse(b, 503, SIZE_MAX, "out of memory");
        goto refused;
    }
    time_t now = b->when.tv_sec;
    struct tm tm;
    gmtime_r(&now, &tm);
    time_t last_month = now - (time_t)tm.tm_mday * 86400; /* the last day of last month */

    /* 1. tenants outside the config: known when they had usage this month or last */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct usage_event *e = &b->ev[i];
        if (e->tenant_configured || first_tenant(b, i) != i)
            continue;
        if (cfg->tenant_policy != TENANT_POLICY_OPEN) {
            refuse(b, 400, i,
                   "unknown tenant \"%s\": no [tenant] section or tenant_pattern names it",
                   e->tenant);
            goto refused;
        }
        if (budget_tenants_key(keys[i][0], KEY_MAX, prefix, now) < 0 ||
            budget_tenants_key(keys[i][1], KEY_MAX, prefix, last_month) < 0) {
            refuse(b, 400, i, "tenant \"%s\" cannot form a key", e->tenant);
            goto refused;
        }
        at[i] = k;
        for (int m = 0; m < 2; m++) {
            argc[k] = 3;
            argv[k][0] = "SISMEMBER";
            argv[k][1] = keys[i][m];
            argv[k][2] = e->tenant;
            k++;
        }
    }
    if (k && pipeline(rc, b, k, argc, argv, rep) < 0)
        goto refused;
    for (size_t i = 0; i < n; i++) {
        const struct usage_event *e = &b->ev[i];
        if (e->tenant_configured || first_tenant(b, i) != i)
            continue;
        if (rep[at[i]]->integer != 1 && rep[at[i] + 1]->integer != 1) {
            refuse(b, 400, i,
                   "unknown tenant \"%s\": not configured and no usage this month or last "
                   "(a typo would create spend nobody bills)",
                   e->tenant);
            goto refused;
        }
    }
    free_replies(rep, k);

    /* 2. every id as Redis knows it, and every tenant's month spend */
    k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct usage_event *e = &b->ev[i];
        if (id_key(keys[i][0], prefix, e->id) < 0 ||
            budget_key(keys[i][1], KEY_MAX, prefix, e->tenant, 'm',
                       budget_period(now, plan_anchor(cfg, e->tenant))) < 0) {
            refuse(b, 400, i, "id \"%s\" cannot form a key", e->id);
            goto refused;
        }
        at[i] = k;
        argc[k] = 2;
        argv[k][0] = "GET";
        argv[k][1] = keys[i][0];
        k++;
        argc[k] = 3;
        argv[k][0] = "HGET";
        argv[k][1] = keys[i][1];
        argv[k][2] = BUDGET_F_COST;
        k++;
    }
    if (pipeline(rc, b, k, argc, argv, rep) < 0)
        goto refused;
    for (size_t i = 0; i < n; i++) {
        const redisReply *r = rep[at[i]];
        if (r->type == REDIS_REPLY_STRING && strcmp(r->str, b->ev[i].fingerprint) != 0) {
            refuse(b, 409, i,
                   "id \"%s\" was reported before with other numbers: refused, not merged "
                   "(ids are remembered %d days)",
                   b->ev[i].id, USAGE_ID_TTL_S / 86400);
            goto refused;
        }
        b->fresh[i] = r->type != REDIS_REPLY_STRING && first_of(b, i) == i;
    }
    /* alerts compare the month's spend before and after each event */
    for (size_t i = 0; i < n; i++) {
        if (!b->fresh[i])
            continue;
        size_t t = first_tenant(b, i);
        const redisReply *r = rep[at[t] + 1];
        money_t spent = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        for (size_t p = t; p < i; p++)
            if (b->fresh[p] && strcmp(b->ev[p].tenant, b->ev[i].tenant) == 0)
                spent += b->ev[p].cost;
        b->spent_before[i] = spent;
    }
    free_replies(rep, k);

    /* 3. claim the new ids; one lost to a concurrent request is read again */
    k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!b->fresh[i])
            continue;
        at[i] = k;
        argc[k] = 6;
        argv[k][0] = "SET";
        argv[k][1] = keys[i][0];
        argv[k][2] = b->ev[i].fingerprint;
        argv[k][3] = "NX";
        argv[k][4] = "EX";
        argv[k][5] = ttl;
        k++;
    }
    if (k && pipeline(rc, b, k, argc, argv, rep) < 0)
        goto lost; /* some may have run: a retry finds them claimed */
    b->status = 200;
    for (size_t i = 0; i < n; i++) {
        if (!b->fresh[i] || rep[at[i]]->type == REDIS_REPLY_STATUS)
            continue;
        b->fresh[i] = false; /* claimed by another request meanwhile */
        char gerr[256];
        redisReply *g =
            redis_sync_command(rc, 2, (const char *[]){"GET", keys[i][0]}, gerr, sizeof(gerr));
        bool same = g && g->type == REDIS_REPLY_STRING && strcmp(g->str, b->ev[i].fingerprint) == 0;
        if (g)
            freeReplyObject(g);
        if (!same && b->status == 200)
            refuse(b, 409, i,
                   "id \"%s\" was reported at the same time with other numbers: this event is "
                   "refused, the batch's other events are counted",
                   b->ev[i].id);
    }
    goto done;
refused:
lost:
    /* refused before any claim; or the claims' replies are lost: count nothing now (a retry sees
     * them as duplicates only if they ran; those are then not counted) */
    for (size_t i = 0; i < n; i++)
        b->fresh[i] = false;
done:
    if (rep)
        free_replies(rep, 3 * n);
    free(rep);
    free(keys);
    free(argc);
    free(argv);
    free(at);
}

char *usage_api_answer(const struct usage_batch *b)
{
    json_t *o;
    if (b->status != 200) {
        const char *code = b->status == 400   ? "bad_request"
                           : b->status == 409 ? "conflict"
                                              : "unavailable";
        o = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", code, "message", b->err, "index",
                      b->bad == SIZE_MAX ? json_null() : json_integer((json_int_t)b->bad));
    } else {
        json_t *evs = json_array();
        size_t counted = 0;
        money_t total = 0;
        for (size_t i = 0; evs && i < b->n; i++) {
            const struct usage_event *e = &b->ev[i];
            counted += b->fresh[i];
            total += b->fresh[i] ? e->cost : 0;
            json_array_append_new(evs,
                                  json_pack("{s:I,s:s,s:s,s:f}", "index", (json_int_t)i, "id",
                                            e->id, "status", b->fresh[i] ? "counted" : "duplicate",
                                            "cost_usd", (double)e->cost / (double)MONEY_PER_USD));
        }
        o = json_pack("{s:I,s:I,s:f,s:o}", "counted", (json_int_t)counted, "duplicates",
                      (json_int_t)(b->n - counted), "cost_usd",
                      (double)total / (double)MONEY_PER_USD, "events", evs);
    }
    char *text =
        o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    return text;
}

/* On the worker: each fresh event finishes as a proxied request does
 * (proxy.c finish): settled through the ledger, recorded, exported,
 * counted in the metrics. */
static void count(struct worker *w, void *arg)
{
    struct usage_batch *b = arg;
    const struct config *cfg = b->cfg;
    for (size_t i = 0; i < b->n; i++) {
        if (!b->fresh[i])
            continue;
        const struct usage_event *e = &b->ev[i];
        struct plan p;
        if (plan_resolve(cfg, e->tenant, NULL, &p) < 0) {
            log_error("usage %s for %s: no plan resolves; not counted", e->id, e->tenant);
            continue;
        }
        const char *model = e->model[0] ? e->model : NULL;
        const char *user = e->user[0] ? e->user : NULL;
        const char *feature = e->feature[0] ? e->feature : NULL;
        struct settle s = {.key_prefix = cfg->key_prefix,
                           .tenant = e->tenant,
                           .request_id = e->id,
                           .when = b->when.tv_sec,
                           .anchor = p.anchor,
                           .cost = e->cost,
                           .usage = e->usage,
                           .model = model,
                           .feature = feature,
                           .user = user,
                           .plan = p.base->name,
                           /* counted against the allowance like a proxied request */
                           .units = plan_units(&p, e->usage.input, e->usage.output),
                           .included = p.included};
        plan_overage_terms(&p, &s.overage_per_mu, &s.overage_markup_bp);
        const struct ledger_marks m = {.spent_before = b->spent_before[i],
                                       .cap_monthly = p.budget_monthly,
                                       .units_before = -1};
        ledger_settle(w->ledger, &s, &m);
        const struct record rec = {
            .ts = b->when,
            .id = e->id,
            .tenant = e->tenant,
            .user = user,
            .feature = feature,
            .plan = p.base->name,
            .provider = e->provider[0] ? e->provider : "-",
            .endpoint = USAGE_API_ENDPOINT,
            .model_requested = model,
            .model = model,
            .status = 200,
            .outcome = OUTCOME_OK,
            .usage = e->usage,
            .cost = e->cost,
            .priced = true, /* cost_usd as given, or the model's list price */
            .latency_ms = 0,
            .ttfb_ms = -1,
        };
        record_queue_push(w->records, &rec);
        /* a root span of its own: the job that used it did not pass through
         * tollgate, but its cost belongs in the same traces backend */
        struct trace_ctx tr = {.on = false};
        if (cfg->otlp_endpoint)
            trace_start(&tr, NULL);
        export_record(w->exports, cfg, &rec, &tr, NULL);
        metrics_request(w->metrics, e->provider[0] ? e->provider : NULL, model, OUTCOME_OK,
                        &e->usage, e->cost, false, -1, -1);
        metrics_inc(w->metrics, METRIC_USAGE_COUNTED, 1);
    }
    usage_batch_free(b);
}

bool usage_api_count(struct worker *w, struct usage_batch *b)
{
    return worker_call(w, count, b);
}
