/* test_report.c: report.c against a real redis-server on a free 127.0.0.1
 * port: requests of several tenants, models, features, users and days are
 * settled through budget_settle (settle.lua), then the report is computed
 * and rendered: worst margin first, revenue from monthly and yearly plans,
 * a mid-month plan change prorated by days, "n/a" for no revenue, a day
 * period, the breakdowns, and exact JSON / CSV / table output. */
#include "budget/budget.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "redis/redis.h"
#include "redis/redis_sync.h"
#include "report/report.h"

#include <arpa/inet.h>
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
#include "redis_server.h"

static char url[64];
static struct config *cfg;
static struct redis_sync *rc;

/* ---- settling through budget_settle ------------------------------------- */

struct done {
    int calls, ok;
};

static void on_settled(bool ok, const char *err, void *arg)
{
    struct done *d = arg;
    d->calls++;
    d->ok = ok;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct event_base *base = arg;
    event_base_loopbreak(base);
}

/* Runs the loop in 10 ms slices until *calls > 0 or 3 s passed. */
static void wait_calls(struct event_base *base, const int *calls)
{
    struct event *tick = evtimer_new(base, on_tick, base);
    struct timeval tv = {0, 10000};
    for (long long end = now_ms() + 3000; *calls == 0 && now_ms() < end;) {
        evtimer_add(tick, &tv);
        event_base_dispatch(base);
    }
    event_free(tick);
}

/* One request to settle: tenant, day of 2026-11, cost in micro-USD. */
struct req {
    const char *tenant;
    int day;
    const char *id;
    int64_t micro;
    const char *model, *feature, *user, *plan;
    int64_t input, cached, output;
    int64_t saved_micro; /* > 0: a response cache hit (cost 0) that saved this */
};

static const struct req reqs[] = {
    /* acme: [tenant] plan pro, $120 a year = $10 a month; cost $2.50 */
    {"acme", 3, "a1", 1500000, "gpt-4o", "summary", "u1", "pro", 1000, 200, 500, 0},
    {"acme", 5, "a2", 250000, "gpt-4o-mini", "chat", "u2", "pro", 300, 0, 40, 0},
    {"acme", 5, "a3", 750000, "gpt-4o", NULL, "u1", "pro", 100, 0, 10, 0},
    {"acme", 5, "a3", 750000, "gpt-4o", NULL, "u1", "pro", 100, 0, 10, 0}, /* retried: once */
    /* bob: starter ($9) days 1-15, free from the 16th: $4.50; cost $40 */
    {"bob", 1, "b1", 10000000, "gpt-4o", "agent", "b", "starter", 10, 0, 10, 0},
    {"bob", 11, "b2", 10000000, "gpt-4o", "agent", "b", "starter", 10, 0, 10, 0},
    {"bob", 16, "b3", 20000000, "gpt-4o", "agent", "b", "free", 10, 0, 10, 0},
    /* carol: free all month, no revenue; cost $0.01 */
    {"carol", 2, "c1", 10000, "gpt-4o-mini", NULL, NULL, "free", 1, 0, 1, 0},
    /* dave: free (the config's plan) until the 10th, starter from then: $6.30 */
    {"dave", 10, "d1", 300000, "claude-haiku-4-5", "search", "x", "starter", 5, 0, 5, 0},
    /* December (day + 30), for the forecast seen from 2026-12-10: eve $7 by the 10th
     * on starter, fay over its $9 cap since the 2nd, gus on the free plan */
    {"eve", 31, "e1", 2000000, "gpt-4o", NULL, NULL, "starter", 1, 0, 1, 0},
    {"eve", 35, "e2", 2000000, "gpt-4o", NULL, NULL, "starter", 1, 0, 1, 0},
    {"eve", 40, "e3", 3000000, "gpt-4o", NULL, NULL, "starter", 1, 0, 1, 0},
    {"fay", 32, "f1", 10000000, "gpt-4o", NULL, NULL, "starter", 1, 0, 1, 0},
    {"gus", 33, "g1", 1000000, "gpt-4o", NULL, NULL, "free", 1, 0, 1, 0},
    /* gus asks it again: answered from the response cache */
    {"gus", 34, "g2", 0, "gpt-4o", NULL, NULL, "free", 0, 0, 0, 1000000},
};

/* eve's second request had estimated usage and her third an unpriced model
 * (report.h: the share of the cost that is not the provider's exact bill) */
static bool estimated_id(const char *id)
{
    return strcmp(id, "e2") == 0;
}
static bool unpriced_id(const char *id)
{
    return strcmp(id, "e3") == 0;
}

static void settle_all(void)
{
    char err[256];
    struct event_base *base = event_base_new();
    struct redis *r = redis_new(base, url, NULL, 1000, err, sizeof(err));
    CHECK(r != NULL);
    if (!r)
        return;
    struct redis_stamp last = {{0}, 0};
    for (size_t i = 0; i < ARRAY_LEN(reqs); i++) {
        const struct req *q = &reqs[i];
        /* a request settled again replays its stamp: counted once */
        bool again = i > 0 && strcmp(q->id, reqs[i - 1].id) == 0;
        struct tm tm = {.tm_year = 126, .tm_mon = 10, .tm_mday = q->day, .tm_hour = 13};
        struct settle s = {.key_prefix = "rt:",
                           .tenant = q->tenant,
                           .request_id = q->id,
                           .when = timegm(&tm),
                           .cost = q->micro * 1000,
                           .usage = {.input = q->input,
                                     .cached = q->cached,
                                     .output = q->output,
                                     .estimated = estimated_id(q->id)},
                           .unpriced = unpriced_id(q->id),
                           .model = q->model,
                           .feature = q->feature,
                           .user = q->user,
                           .plan = q->plan,
                           .cache_hit = q->saved_micro > 0,
                           .saved = q->saved_micro * 1000,
                           .stamp = again ? last : (struct redis_stamp){{0}, 0}};
        struct done d = {0};
        struct redis_cmd *c = NULL;
        for (long long end = now_ms() + 3000; !c && now_ms() < end;) {
            if (!(c = budget_settle(r, NULL, &s, &s.stamp, on_settled, &d))) {
                struct event *tick = evtimer_new(base, on_tick, base);
                struct timeval tv = {0, 20000};
                evtimer_add(tick, &tv);
                event_base_dispatch(base); /* not connected yet */
                event_free(tick);
            }
        }
        CHECK(c != NULL);
        wait_calls(base, &d.calls);
        CHECK_INT(d.calls, 1);
        CHECK(d.ok);
        last = s.stamp;
    }
    /* let the fire-and-forget SADDs land */
    struct event *tick = evtimer_new(base, on_tick, base);
    struct timeval tv = {0, 100000};
    evtimer_add(tick, &tv);
    event_base_dispatch(base);
    event_free(tick);
    redis_free(r);
    event_base_free(base);
}

/* ---- helpers ------------------------------------------------------------ */

static struct report_period period(const char *s)
{
    struct report_period p;
    CHECK_INT(report_parse_period(s, &p), 0);
    return p;
}

static struct report *build(const char *per, const char *tenant)
{
    char err[256] = "";
    struct report_period p = period(per);
    struct report *r = report_build(rc, cfg, &p, tenant, err, sizeof(err));
    if (!r)
        fprintf(stderr, "  report_build: %s\n", err);
    CHECK(r != NULL);
    CHECK(!r || report_forecast(r, cfg, 5000, NULL) == 0);
    return r;
}

static char *render(const char *per, const char *tenant, enum report_format f)
{
    struct report *r = build(per, tenant);
    char *text = r ? report_render(r, f) : NULL;
    report_free(r);
    CHECK(text != NULL);
    return text;
}

static struct report_breakdown *breakdown(const char *per, const char *tenant, enum report_by by)
{
    char err[256] = "";
    struct report_period p = period(per);
    struct report_breakdown *b = report_breakdown(rc, cfg, &p, tenant, by, err, sizeof(err));
    if (!b)
        fprintf(stderr, "  report_breakdown: %s\n", err);
    CHECK(b != NULL);
    return b;
}

#define USD(x) ((money_t)((x)*1000000LL) * 1000) /* exact for up to 6 decimals */

/* ---- tests -------------------------------------------------------------- */

static void test_periods(void)
{
    static const struct {
        const char *s;
        int ok, day, days;
    } cases[] = {
        {"2026-11", 1, 0, 30},    {"2026-11-22", 1, 22, 30}, {"2024-02", 1, 0, 29},
        {"2026-02-29", 0, 0, 0},  {"2026-13", 0, 0, 0},      {"2026-1", 0, 0, 0},
        {"2026-11-31", 0, 0, 0},  {"2026-11-2x", 0, 0, 0},   {"", 0, 0, 0},
        {"2026-11-22x", 0, 0, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct report_period p;
        int rc_ = report_parse_period(cases[i].s, &p);
        CHECK_INT(rc_ == 0, cases[i].ok);
        if (rc_ == 0 && cases[i].ok) {
            CHECK_INT(p.day, cases[i].day);
            CHECK_INT(p.days_in_month, cases[i].days);
            CHECK_STR(p.text, cases[i].s);
        }
    }
    struct report_period p;
    report_month_of(1795348800, &p); /* 2026-11-22 */
    CHECK_STR(p.text, "2026-11");
}

static void test_month(void)
{
    static const struct {
        const char *tenant, *plan;
        money_t revenue, cost;
        int64_t requests;
    } want[] = {
        {"bob", "free", USD(4.5), USD(40), 3},      /* worst first */
        {"carol", "free", 0, USD(0.01), 1},         /* n/a */
        {"idle", "starter", 0, 0, 0},               /* configured, no traffic: no revenue */
        {"dave", "starter", USD(6.3), USD(0.3), 1}, /* 21 of 30 days on starter */
        {"acme", "pro", 9333333333, USD(2.5), 3},   /* yearly 120 / 12, from the 3rd: 28/30 */
    };
    struct report *r = build("2026-11", NULL);
    if (!r)
        return;
    CHECK_INT(r->n, ARRAY_LEN(want));
    for (size_t i = 0; i < r->n && i < ARRAY_LEN(want); i++) {
        CHECK_STR(r->rows[i].tenant, want[i].tenant);
        CHECK_STR(r->rows[i].plan, want[i].plan);
        CHECK_INT(r->rows[i].revenue, want[i].revenue);
        CHECK_INT(r->rows[i].n.cost, want[i].cost);
        CHECK_INT(r->rows[i].n.requests, want[i].requests);
    }
    CHECK_INT(r->rows[4].n.input_tokens, 1400);
    CHECK_INT(r->rows[4].n.cached_tokens, 200);
    CHECK_INT(r->rows[4].n.output_tokens, 550);
    CHECK_INT(r->rows[0].first_day, 1);
    CHECK_INT(r->rows[2].first_day, 0);
    CHECK_INT(r->rows[4].first_day, 3);
    CHECK(r->rows[1].free_plan && !r->rows[0].free_plan && !r->rows[2].free_plan);
    report_free(r);

    /* an empty month: only the configured tenants, and without traffic they earn nothing */
    r = build("2026-10", NULL);
    if (r) {
        CHECK_INT(r->n, 2);
        CHECK_STR(r->rows[0].tenant, "acme");
        CHECK_INT(r->rows[0].revenue, 0);
        CHECK_STR(r->rows[1].tenant, "idle");
        CHECK_INT(r->rows[1].revenue, 0);
    }
    report_free(r);
}

static void test_json_csv(void)
{
    char *s = render("2026-11", "carol", REPORT_JSON);
    CHECK_STR(s, "{\"period\":\"2026-11\",\"tenants\":[{\"tenant\":\"carol\",\"plan\":\"free\","
                 "\"revenue_usd\":0,\"cost_usd\":0.01,\"margin_usd\":-0.01,\"margin_pct\":null,"
                 "\"requests\":1,\"input_tokens\":1,\"cached_tokens\":0,\"output_tokens\":1,"
                 "\"cache_hits\":0,\"saved_usd\":0,\"projected_cost_usd\":0.01,\"budget_monthly_"
                 "usd\":null,\"crosses_cap_on\":null,"
                 "\"status\":\"ok\",\"suggested_plan\":\"starter\",\"free_plan\":true,"
                 "\"included_tokens\":null,\"used_tokens\":2,\"overage_tokens\":0,"
                 "\"overage_usd\":0,\"included_requests\":null,\"overage_requests\":0,"
                 "\"unpriced_usd\":0,\"unpriced_requests\":0,\"estimated_usd\":0,"
                 "\"estimated_requests\":0,\"period_start\":\"2026-11-01T00:00:00Z\","
                 "\"period_end\":\"2026-12-01T00:00:00Z\"}],"
                 "\"totals\":{\"tenants\":1,\"revenue_usd\":0,\"cost_usd\":0.01,"
                 "\"margin_usd\":-0.01,\"margin_pct\":null,\"blended_cost_per_tenant_usd\":0.01,"
                 "\"tenants_under_water\":0,\"free_tenants\":1,\"free_plan_cost_usd\":0.01,"
                 "\"projected_cost_usd\":0.01,\"cache_hits\":0,\"saved_usd\":0,"
                 "\"unpriced_usd\":0,\"unpriced_requests\":0,\"estimated_usd\":0,"
                 "\"estimated_requests\":0},"
                 "\"days_begun\":30,\"days_in_period\":30}\n");
    free(s);
    s = render("2026-11", NULL, REPORT_CSV);
    CHECK_STR(
        s,
        "tenant,plan,revenue_usd,cost_usd,margin_usd,margin_pct,requests,input_tokens,"
        "cached_tokens,output_tokens,projected_cost_usd,budget_monthly_usd,"
        "crosses_cap_on,status,suggested_plan,free_plan,cache_hits,saved_usd,"
        "included_tokens,used_tokens,overage_tokens,overage_usd,included_requests,"
        "overage_requests,unpriced_usd,unpriced_requests,estimated_usd,estimated_requests,"
        "period_start,period_end\n"
        "bob,free,4.5,40,-35.5,-788.89,3,30,0,30,40,,,ok,,false,0,0,,60,0,0,,0,0,0,0,0,2026-11-"
        "01T00:00:00Z,2026-12-01T00:00:00Z\n"
        "carol,free,0,0.01,-0.01,n/"
        "a,1,1,0,1,0.01,,,ok,starter,true,0,0,,2,0,0,,0,0,0,0,0,2026-11-01T00:00:00Z,2026-12-01T00:"
        "00:00Z\n"
        "idle,starter,0,0,0,n/"
        "a,0,0,0,0,0,9,,ok,,false,0,0,,0,0,0,,0,0,0,0,0,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z\n"
        "dave,starter,6.3,0.3,6,95.24,1,5,0,5,0.3,9,,ok,,false,0,0,,10,0,0,,0,0,0,0,0,2026-11-"
        "01T00:00:00Z,2026-12-01T00:00:00Z\n"
        "acme,pro,9.333333333,2.5,6.833333333,73.21,3,1400,200,550,2.5,100,,ok,,false,0,"
        "0,,1950,0,0,,0,0,0,0,0,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z\n");
    free(s);
    s = render("2026-11", NULL, REPORT_JSON);
    CHECK(s && strstr(s, "\"totals\":{\"tenants\":5,\"revenue_usd\":20.133333333,"
                         "\"cost_usd\":42.81,\"margin_usd\":-22.676666667,\"margin_pct\":-112.63,"
                         "\"blended_cost_per_tenant_usd\":8.562,\"tenants_under_water\":1,"
                         "\"free_tenants\":1,\"free_plan_cost_usd\":0.01,"
                         "\"projected_cost_usd\":42.81,\"cache_hits\":0,\"saved_usd\":0,"
                         "\"unpriced_usd\":0,\"unpriced_requests\":0,\"estimated_usd\":0,"
                         "\"estimated_requests\":0},"
                         "\"days_begun\":30,"
                         "\"days_in_period\":30}\n"));
    CHECK(s && strstr(s, "{\"tenant\":\"bob\",\"plan\":\"free\",\"revenue_usd\":4.5,"
                         "\"cost_usd\":40,\"margin_usd\":-35.5,\"margin_pct\":-788.89,"));
    free(s);
}

/* Names a client chose cannot become spreadsheet formulas (OWASP CSV
 * injection): a leading = + - @ tab or CR gets a ' inside quotes. */
static void test_csv_injection(void)
{
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""},
        {"+1", "\"'+1\""},
        {"-2+3", "\"'-2+3\""},
        {"@SUM(A1)", "\"'@SUM(A1)\""},
        {"\tx", "\"'\tx\""},
        {"\rx", "\"'\rx\""},
        {"gpt-4o", "gpt-4o"},
        {"a=b", "a=b"},
        {"a,b", "\"a,b\""},
        {"", ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct report_item item = {(char *)cases[i].name, {0}};
        struct report_breakdown b = {.by = REPORT_BY_MODEL, .items = &item, .n = 1};
        char *s = report_breakdown_render(&b, REPORT_CSV);
        CHECK(s != NULL);
        if (!s)
            continue;
        const char *line = strchr(s, '\n');
        char want[128];
        snprintf(want, sizeof(want), "%s,0,0,0,0,0\n", cases[i].want);
        CHECK_STR(line ? line + 1 : "", want);
        free(s);
    }
}

/* Every line of the grid (header, rows, rule, totals) is as wide as the
 * others, and the columns line up. */
static void test_table(void)
{
    char *s = render("2026-11", NULL, REPORT_TABLE);
    if (!s)
        return;
    if (getenv("REPORT_SHOW")) /* to look at it */
        fputs(s, stderr);
    char *save = NULL, *line = strtok_r(s, "\n", &save);
    CHECK_STR(line, "period 2026-11");
    size_t width = 0, lines = 0;
    const char *rows[16] = {0};
    for (line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "blended", 7) == 0) {
            CHECK_STR(line, "blended cost per tenant $8.5620, 1 paying under water; 1 on free "
                            "plans cost $0.0100");
            break;
        }
        if (!width)
            width = strlen(line);
        CHECK_INT(strlen(line), width);
        if (lines < ARRAY_LEN(rows))
            rows[lines] = line;
        lines++;
    }
    CHECK_INT(lines, 8); /* header, 5 tenants, rule, totals */
    if (lines == 8) {
        CHECK(strncmp(rows[0], "TENANT", 6) == 0);
        CHECK(strncmp(rows[1], "bob ", 4) == 0);
        CHECK(strstr(rows[1], "$4.5000") && strstr(rows[1], "$40.0000") &&
              strstr(rows[1], "-$35.5000") && strstr(rows[1], "-788.89%"));
        CHECK(strstr(rows[2], "n/a") != NULL);
        CHECK(rows[6][0] == '-');
        CHECK(strncmp(rows[7], "TOTAL (5)", 9) == 0);
        CHECK(strstr(rows[7], "$20.1333") && strstr(rows[7], "-$22.6767") &&
              strstr(rows[7], "-112.63%"));
        /* the REVENUE header ends where the revenue cells end */
        const char *h = strstr(rows[0], "REVENUE"), *v = strstr(rows[1], "$4.5000");
        CHECK(h && v && (h - rows[0]) + 7 == (v - rows[1]) + 7);
    }
    free(s);
}

static void test_day(void)
{
    struct report *r = build("2026-11-05", NULL);
    if (!r)
        return;
    /* acme: $1 spent, a day of $10/month; bob: starter day; idle: starter */
    money_t third = 333333333; /* 120 / 12 / 30, rounded to the nano-dollar */
    int seen = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        if (strcmp(row->tenant, "acme") == 0) {
            CHECK_INT(row->n.cost, USD(1));
            CHECK_INT(row->n.requests, 2);
            CHECK_INT(row->revenue, third);
            seen++;
        } else if (strcmp(row->tenant, "bob") == 0) {
            CHECK_INT(row->revenue, USD(0.3));
            CHECK_STR(row->plan, "starter");
            CHECK_INT(row->n.cost, 0);
            seen++;
        } else if (strcmp(row->tenant, "idle") == 0) {
            CHECK_INT(row->revenue, 0); /* no traffic yet: not earning */
            CHECK_STR(row->plan, "starter");
            seen++;
        } else if (strcmp(row->tenant, "dave") == 0) {
            CHECK_INT(row->revenue, 0); /* before its first traffic: the config's plan, free */
            CHECK_STR(row->plan, "free");
            seen++;
        }
    }
    CHECK_INT(seen, 4);
    CHECK_STR(r->rows[0].tenant, "acme");  /* $0.33 of revenue, $1 spent */
    CHECK_STR(r->rows[1].tenant, "carol"); /* margin 0, ties by name */
    CHECK_STR(r->rows[2].tenant, "dave");
    report_free(r);
}

static void test_breakdowns(void)
{
    struct report_breakdown *b = breakdown("2026-11", "acme", REPORT_BY_MODEL);
    if (b) {
        CHECK_INT(b->n, 2);
        CHECK_STR(b->items[0].name, "gpt-4o");
        CHECK_INT(b->items[0].n.cost, USD(2.25));
        CHECK_INT(b->items[0].n.requests, 2);
        CHECK_INT(b->items[0].n.input_tokens, 1100);
        CHECK_INT(b->items[0].n.cached_tokens, 200);
        CHECK_INT(b->items[0].n.output_tokens, 510);
        CHECK_STR(b->items[1].name, "gpt-4o-mini");
        CHECK_INT(b->items[1].n.cost, USD(0.25));
        char *s = report_breakdown_render(b, REPORT_CSV);
        CHECK_STR(s, "model,cost_usd,requests,input_tokens,cached_tokens,output_tokens\n"
                     "gpt-4o,2.25,2,1100,200,510\n"
                     "gpt-4o-mini,0.25,1,300,0,40\n");
        free(s);
        s = report_breakdown_render(b, REPORT_JSON);
        CHECK_STR(s, "{\"period\":\"2026-11\",\"tenant\":\"acme\",\"by\":\"model\",\"rows\":["
                     "{\"model\":\"gpt-4o\",\"cost_usd\":2.25,\"requests\":2,\"input_tokens\":1100,"
                     "\"cached_tokens\":200,\"output_tokens\":510},{\"model\":\"gpt-4o-mini\","
                     "\"cost_usd\":0.25,\"requests\":1,\"input_tokens\":300,\"cached_tokens\":0,"
                     "\"output_tokens\":40}]}\n");
        free(s);
    }
    report_breakdown_free(b);

    b = breakdown("2026-11", "acme", REPORT_BY_FEATURE);
    if (b) {
        CHECK_INT(b->n, 3);
        CHECK_STR(b->items[0].name, "summary");
        CHECK_STR(b->items[1].name, "-"); /* no feature header */
        CHECK_INT(b->items[1].n.cost, USD(0.75));
        CHECK_STR(b->items[2].name, "chat");
    }
    report_breakdown_free(b);

    b = breakdown("2026-11", "acme", REPORT_BY_USER);
    if (b) {
        CHECK_INT(b->n, 2);
        CHECK_STR(b->items[0].name, "u1");
        CHECK_INT(b->items[0].n.cost, USD(2.25));
    }
    report_breakdown_free(b);

    b = breakdown("2026-11", "acme", REPORT_BY_DAY);
    if (b) {
        CHECK_INT(b->n, 30);
        money_t sum = 0;
        for (size_t i = 0; i < b->n; i++)
            sum += b->items[i].n.cost;
        CHECK_INT(sum, USD(2.5));
        CHECK_STR(b->items[2].name, "2026-11-03");
        CHECK_INT(b->items[2].n.cost, USD(1.5));
        CHECK_INT(b->items[4].n.requests, 2);
    }
    report_breakdown_free(b);

    /* every tenant: gpt-4o of acme and bob together */
    b = breakdown("2026-11", NULL, REPORT_BY_MODEL);
    if (b) {
        CHECK_INT(b->n, 3);
        CHECK_STR(b->items[0].name, "gpt-4o");
        CHECK_INT(b->items[0].n.cost, USD(42.25));
        CHECK_INT(b->items[0].n.requests, 5);
        CHECK_STR(b->items[1].name, "claude-haiku-4-5");
        CHECK_STR(b->items[2].name, "gpt-4o-mini");
        CHECK_INT(b->items[2].n.cost, USD(0.26));
        char *s = report_breakdown_render(b, REPORT_TABLE);
        CHECK(s && strstr(s, "TOTAL") && strstr(s, "$42.8100"));
        if (s && getenv("REPORT_SHOW"))
            fputs(s, stderr);
        free(s);
    }
    report_breakdown_free(b);

    b = breakdown("2026-11-16", NULL, REPORT_BY_DAY);
    if (b) {
        CHECK_INT(b->n, 1);
        CHECK_INT(b->items[0].n.cost, USD(20));
    }
    report_breakdown_free(b);

    /* by model needs a month */
    char err[256] = "";
    struct report_period p = period("2026-11-05");
    CHECK(report_breakdown(rc, cfg, &p, "acme", REPORT_BY_MODEL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "per month") != NULL);
}

static void test_tenant_json(void)
{
    char err[256] = "";
    int status = 0;
    struct report_period p = period("2026-11");
    char *s = report_tenant_json(rc, cfg, &p, "acme", &status, err, sizeof(err));
    CHECK_INT(status, 200);
    static const char want_head[] =
        "{\"tenant\":\"acme\",\"plan\":\"pro\",\"period\":\"2026-11\","
        "\"revenue_usd\":9.333333333,\"cost_usd\":2.5,"
        "\"margin_usd\":6.833333333,\"margin_pct\":73.21,\"requests\":3,"
        "\"input_tokens\":1400,\"cached_tokens\":200,\"output_tokens\":550,"
        "\"budget_monthly_usd\":100,\"hard_limit_usd\":null,"
        "\"cache_hits\":0,\"saved_usd\":0,"
        "\"included_tokens\":null,\"used_tokens\":1950,\"overage_tokens\":0,"
        "\"overage_usd\":0,\"included_requests\":null,\"overage_requests\":0,"
        "\"unpriced_usd\":0,\"unpriced_requests\":0,\"estimated_usd\":0,"
        "\"estimated_requests\":0,\"period_start\":\"2026-11-01T00:00:00Z\","
        "\"period_end\":\"2026-12-01T00:00:00Z\","
        "\"daily\":["
        "{\"day\":\"2026-11-01\",\"cost_usd\":0,";
    CHECK(s && strncmp(s, want_head, sizeof(want_head) - 1) == 0);
    CHECK(s && strstr(s, "\"by_model\":[{\"model\":\"gpt-4o\",\"cost_usd\":2.25,"));
    CHECK(s && strstr(s, "\"by_user\":[{\"user\":\"u1\","));
    free(s);
    s = report_tenant_json(rc, cfg, &p, "carol", &status, err, sizeof(err));
    CHECK_INT(status, 200);
    CHECK(s && strstr(s, "\"budget_monthly_usd\":null"));
    free(s);
    s = report_tenant_json(rc, cfg, &p, "nobody", &status, err, sizeof(err));
    CHECK(s == NULL);
    CHECK_INT(status, 404);
    p = period("2026-11-05");
    s = report_tenant_json(rc, cfg, &p, "acme", &status, err, sizeof(err));
    CHECK(s == NULL);
    CHECK_INT(status, 400);
}

/* Seen from 2026-12-10 12:00 UTC: run rates since each tenant's first day,
 * the day a cap is crossed, who is blocked now, the upgrade that covers a
 * free tenant, the company trend with no future days. */
static void test_forecast(void)
{
    char err[256] = "";
    struct report_period p = period("2026-12");
    struct tm tm = {.tm_year = 126, .tm_mon = 11, .tm_mday = 10, .tm_hour = 12};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char off[32];
    snprintf(off, sizeof(off), "%lld", (long long)(timegm(&tm) - now.tv_sec));
    setenv("TOLLGATE_CLOCK_OFFSET", off, 1);
    clock_init();
    struct report *r = report_build(rc, cfg, &p, NULL, err, sizeof(err));
    struct report_breakdown *trend =
        report_breakdown(rc, cfg, &p, NULL, REPORT_BY_DAY, err, sizeof(err));
    CHECK(r && trend);
    if (!r || !trend)
        goto done;
    CHECK(r->current);
    CHECK_INT(r->today, 10);
    CHECK_INT(trend->n, 10); /* days 1..10, none after today */
    CHECK_INT(report_forecast(r, cfg, 5000, trend), 0);
    int seen = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        if (strcmp(row->tenant, "eve") == 0) { /* $7 in 10 days, 21 left: $21.70 */
            CHECK_INT(row->projected, USD(21.7));
            CHECK_INT(row->cap, USD(9));
            CHECK_INT(row->cross_day, 13); /* $0.70 a day: $2 more in 3 days */
            CHECK_INT(row->status, REPORT_STATUS_OK);
            CHECK(row->suggested_plan == NULL); /* no plan covers $21.70 at 50% */
            CHECK_INT(row->n.estimated, 1);
            CHECK_INT(row->n.estimated_cost, USD(2));
            CHECK_INT(row->n.unpriced, 1);
            CHECK_INT(row->n.unpriced_cost, USD(3));
            seen++;
        } else if (strcmp(row->tenant, "fay") == 0) { /* $10 in 9 days */
            CHECK_INT(row->status, REPORT_STATUS_BLOCKED);
            CHECK_INT(row->projected, 33333333333);
            CHECK_INT(row->cross_day, 0);
            seen++;
        } else if (strcmp(row->tenant, "gus") == 0) { /* free: $1 in 8 days -> $3.625 */
            CHECK_INT(row->projected, 3625000000);
            CHECK(row->free_plan);
            CHECK_STR(row->suggested_plan, "starter"); /* $9 keeps 50% of $3.625 */
            CHECK_INT(row->n.requests, 2);             /* the cache hit is a request */
            CHECK_INT(row->n.cache_hits, 1);
            CHECK_INT(row->n.saved, USD(1));
            CHECK_INT(row->n.cost, USD(1)); /* that cost nothing */
            seen++;
        }
    }
    CHECK_INT(seen, 3);
    char *s = report_render(r, REPORT_JSON);
    CHECK(s && strstr(s, "\"crosses_cap_on\":\"2026-12-13\""));
    CHECK(s && strstr(s, "\"daily\":[{\"day\":\"2026-12-01\",\"cost_usd\":2,"
                         "\"revenue_usd\":0.290322581,\"overage_usd\":0,"
                         "\"margin_usd\":-1.709677419,"
                         "\"requests\":1},{\"day\":\"2026-12-02\",\"cost_usd\":10,"));
    CHECK(s && strstr(s, "\"days_begun\":10,\"days_in_period\":31"));
    CHECK(s && strstr(s, "\"requests\":2,\"input_tokens\":1,\"cached_tokens\":0,"
                         "\"output_tokens\":1,\"cache_hits\":1,\"saved_usd\":1,"));
    CHECK(s && strstr(s, ",\"cache_hits\":1,\"saved_usd\":1,\"unpriced_usd\":3,"
                         "\"unpriced_requests\":1,\"estimated_usd\":2,\"estimated_requests\":1},"
                         "\"days_begun\":10")); /* totals */
    free(s);
    s = report_render(r, REPORT_CSV);
    CHECK(s && strstr(s, ",free_plan,cache_hits,saved_usd,included_tokens,") &&
          strstr(s, ",true,1,1,,2,0,0,,0,0,0,0,0,2026-12-01T00:00:00Z,2027-01-01T00:00:00Z\n"));
    free(s);
    r->forecast_table = true; /* --forecast */
    s = report_render(r, REPORT_TABLE);
    CHECK(s && strstr(s, "forecast 2026-12 (day 10 of 31") && strstr(s, "2026-12-13") &&
          strstr(s, "blocked") && strstr(s, "$21.7000"));
    if (s && getenv("REPORT_SHOW"))
        fputs(s, stderr);
    free(s);
done:
    report_breakdown_free(trend);
    report_free(r);
    unsetenv("TOLLGATE_CLOCK_OFFSET");
    clock_init();
}

static void test_unreachable(void)
{
    char err[256] = "";
    struct redis_sync *c = report_connect("redis://127.0.0.1:1/0", NULL, 500, err, sizeof(err));
    CHECK(c == NULL);
    CHECK(strstr(err, "cannot reach Redis at 127.0.0.1:1") != NULL);
    c = report_connect("redis://:secret@127.0.0.1:1/0", NULL, 500, err, sizeof(err));
    CHECK(c == NULL);
    CHECK(strstr(err, "secret") == NULL);
    c = report_connect("http://x", NULL, 500, err, sizeof(err));
    CHECK(c == NULL);
    CHECK(strstr(err, "bad redis url") != NULL);
}

static const struct check_test tests[] = {
    {"periods", test_periods},       {"month", test_month},
    {"json_csv", test_json_csv},     {"csv_injection", test_csv_injection},
    {"table", test_table},           {"day", test_day},
    {"breakdowns", test_breakdowns}, {"tenant_json", test_tenant_json},
    {"forecast", test_forecast},     {"unreachable", test_unreachable},
};

int main(void)
{
    char path[256], err[4096] = "", cwd[200];
    log_setup(LOG_ERROR, false);
    if (start_server("report") < 0) {
        fprintf(stderr, "cannot start /usr/bin/redis-server\n");
        return 1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", server_port);
    if (!getcwd(cwd, sizeof(cwd)))
        return 1;
    snprintf(path, sizeof(path), "%s/t.conf", server_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:1\ndefault_plan = free\n"
            "[redis]\nurl = %s\nkey_prefix = rt:\n"
            "[pricing]\nfile = %s/conf/pricing.conf\n"
            "[records]\nfile = %s/usage.jsonl\n"
            "[plan free]\nprice = 0\n"
            "[plan starter]\nprice = 9\nbudget_monthly = 9\n"
            "[plan pro]\nprice = 120\nprice_period = year\nbudget_monthly = 100\n"
            "[tenant acme]\nplan = pro\n"
            "[tenant idle]\nplan = starter\n",
            url, cwd, server_dir);
    fclose(f);
    if (!(cfg = config_load(path, err, sizeof(err)))) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    settle_all();
    if (!(rc = report_connect(url, NULL, 2000, err, sizeof(err)))) {
        fprintf(stderr, "connect: %s\n", err);
        return 1;
    }
    int failed = CHECK_MAIN("report", tests);
    redis_sync_free(rc);
    config_unref(cfg);
    return failed;
}
