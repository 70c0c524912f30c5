/* report_format.c: the report and its breakdowns as an aligned table, JSON
 * (the contract's shape) or CSV, and the admin API's tenant detail (see
 * report.h). Text only, except that report_tenant_json fetches its figures
 * through report.c; every amount is printed from integer nano-USD through
 * money_format. */
#include "report/report.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget/plan.h"

/* ---- text output --------------------------------------------------------- */

struct out {
    char *buf;
    size_t len, cap;
    bool oom;
};

PRINTF_LIKE(2, 3)
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    if (o->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap : 256;
        while (cap <= o->len + (size_t)n)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

/* The text, or NULL (and freed) when anything ran out of memory. */
static char *take(struct out *o)
{
    if (o->oom || !o->buf) {
        free(o->buf);
        return o->oom ? NULL : strdup("");
    }
    return o->buf;
}

/* A JSON string literal. */
static void put_json_str(struct out *o, const char *s)
{
    put(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(o, "\\%c", *p);
        else if (*p < 0x20)
            put(o, "\\u%04x", *p);
        else
            put(o, "%c", *p);
    }
    put(o, "\"");
}

/* A CSV field, quoted when it needs to be. A field a spreadsheet would read
 * as a formula (starting with = + - @, tab or CR: OWASP's CSV injection
 * list) is quoted with a leading ' so it stays text: tenant, model, feature
 * and user names come from clients. */
static void put_csv_str(struct out *o, const char *s)
{
    bool formula = s[0] && strchr("=+-@\t\r", s[0]);
    if (!formula && !strpbrk(s, ",\"\r\n")) {
        put(o, "%s", s);
        return;
    }
    put(o, formula ? "\"'" : "\"");
    for (const char *p = s; *p; p++)
        put(o, *p == '"' ? "\"\"" : "%c", *p);
    put(o, "\"");
}

/* USD with every digit: "9", "-31.5", "0.000405" (a JSON number too). */
static const char *usd(money_t m, char *buf, size_t n)
{
    if (money_format(m, buf, n) < 0)
        snprintf(buf, n, "0");
    return buf;
}

/* USD rounded to `decimals` (0..9) places, zero-padded: "$9.00", "-$0.0041". */
static const char *usd_fixed(money_t m, int decimals, char *buf, size_t n)
{
    int64_t unit = 1;
    char num[40];
    for (int i = decimals; i < 9; i++)
        unit *= 10;
    money_t r = (money_t)report_div_round(m, unit) * unit;
    if (money_format(r < 0 ? -r : r, num, sizeof(num)) < 0)
        snprintf(num, sizeof(num), "0");
    char *dot = strchr(num, '.');
    size_t have = dot ? strlen(dot + 1) : 0;
    size_t len = strlen(num);
    if (decimals > 0 && !dot && len + 1 < sizeof(num))
        num[len++] = '.';
    while ((int)have < decimals && len + 1 < sizeof(num)) {
        num[len++] = '0';
        have++;
    }
    num[len] = '\0';
    snprintf(buf, n, "%s$%s", r < 0 ? "-" : "", num);
    return buf;
}

/* margin / revenue * 100 with 2 decimals, trailing zeros dropped ("-350",
 * "33.33"); NULL when revenue is 0. */
static const char *pct(money_t margin, money_t revenue, char *buf, size_t n)
{
    if (revenue == 0)
        return NULL;
    __int128 num = (__int128)margin * 10000;
    int64_t h =
        report_div_round(revenue < 0 ? -num : num, revenue < 0 ? -(__int128)revenue : revenue);
    int64_t a = h < 0 ? -h : h;
    int len = snprintf(buf, n, "%s%" PRId64, h < 0 ? "-" : "", a / 100);
    if (a % 100 && len > 0 && (size_t)len < n) {
        if (a % 10)
            snprintf(buf + len, n - (size_t)len, ".%02" PRId64, a % 100);
        else
            snprintf(buf + len, n - (size_t)len, ".%" PRId64, a % 100 / 10);
    }
    return buf;
}

/* Totals of a report. A free plan's cost is acquisition spend, not a losing
 * customer: under_water counts paying tenants only, free ones are apart. */
struct totals {
    size_t tenants, under_water, free_tenants;
    money_t revenue, free_cost, projected;
    struct report_counts n;
};

static void totals_of(const struct report *r, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        t->tenants++;
        t->revenue += row->revenue;
        t->projected += row->projected;
        report_counts_add(&t->n, &row->n);
        if (row->free_plan) {
            t->free_tenants++;
            t->free_cost += row->n.cost;
        } else {
            t->under_water += row->revenue - row->n.cost < 0;
        }
    }
}

static const char *const columns[] = {
    "tenant",
    "plan",
    "revenue_usd",
    "cost_usd",
    "margin_usd",
    "margin_pct",
    "requests",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "projected_cost_usd",
    "budget_monthly_usd",
    "crosses_cap_on",
    "status",
    "suggested_plan",
    "free_plan",
    "cache_hits",
    "saved_usd",
    "included_tokens",
    "used_tokens",
    "overage_tokens",
    "overage_usd",
    "included_requests",
    "overage_requests",
    "unpriced_usd",
    "unpriced_requests",
    "estimated_usd",
    "estimated_requests",
    "period_start",
    "period_end",
};

/* The allowance of a row, as JSON fields or CSV cells (the columns above):
 * included_* null (empty) when its plan has no allowance of that kind;
 * used_tokens = input + output tokens whatever the plan. */
static void allowance_cells(const struct report_row *row, struct out *o, bool json)
{
    char a[48], inc_t[24] = "", inc_r[24] = "", over_t[24] = "0", over_r[24] = "0";
    const char *none = json ? "null" : "";
    if (row->included >= 0 && row->unit == 't') {
        snprintf(inc_t, sizeof(inc_t), "%" PRId64, row->included);
        snprintf(over_t, sizeof(over_t), "%" PRId64, row->n.overage_units);
    } else if (row->included >= 0 && row->unit == 'r') {
        snprintf(inc_r, sizeof(inc_r), "%" PRId64, row->included);
        snprintf(over_r, sizeof(over_r), "%" PRId64, row->n.overage_units);
    }
    int64_t used = row->n.input_tokens + row->n.output_tokens;
    if (json)
        put(o,
            ",\"included_tokens\":%s,\"used_tokens\":%" PRId64
            ",\"overage_tokens\":%s,\"overage_usd\":%s,\"included_requests\":%s,"
            "\"overage_requests\":%s",
            *inc_t ? inc_t : none, used, over_t, usd(row->n.overage_usd, a, sizeof(a)),
            *inc_r ? inc_r : none, over_r);
    else
        put(o, ",%s,%" PRId64 ",%s,%s,%s,%s", inc_t, used, over_t,
            usd(row->n.overage_usd, a, sizeof(a)), inc_r, over_r);
}

/* "2026-11-19" for a day of the report's month, into buf; NULL for day 0. */
static const char *day_text(const struct report *r, int day, char *buf, size_t n)
{
    if (day <= 0)
        return NULL;
    snprintf(buf, n, "%04d-%02d-%02d", r->period.year % 10000, r->period.month % 100, day % 100);
    return buf;
}

/* ---- aligned tables ------------------------------------------------------ */

#define TABLE_COLS 14

/* A table as cells, row after row; column widths from the widest cell.
 * right[i]: column i holds numbers, aligned right. The last row is the
 * totals, set off by a rule. */
struct grid {
    char **cells;
    size_t n, cap, cols;
    const bool *right;
};

PRINTF_LIKE(2, 3)
static int cell(struct grid *g, const char *fmt, ...)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16 * g->cols;
        char **c = realloc(g->cells, cap * sizeof(*c));
        if (!c)
            return -1;
        g->cells = c;
        g->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&g->cells[g->n], fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    g->n++;
    return 0;
}

static void grid_print(const struct grid *g, struct out *o)
{
    size_t w[TABLE_COLS] = {0}, rows = g->n / g->cols;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < g->cols; c++) {
            size_t n = strlen(g->cells[r * g->cols + c]);
            if (n > w[c])
                w[c] = n;
        }
    for (size_t r = 0; r < rows; r++) {
        if (r == rows - 1 && rows > 1) { /* a rule above the totals */
            size_t all = 0;
            for (size_t c = 0; c < g->cols; c++)
                all += w[c] + (c ? 2 : 0);
            for (size_t i = 0; i < all; i++)
                put(o, "-");
            put(o, "\n");
        }
        for (size_t c = 0; c < g->cols; c++) {
            const char *s = g->cells[r * g->cols + c];
            bool last = c == g->cols - 1;
            if (g->right[c])
                put(o, "%s%*s", c ? "  " : "", (int)w[c], s);
            else
                put(o, "%s%-*s", c ? "  " : "", last ? 0 : (int)w[c], s);
        }
        put(o, "\n");
    }
}

static void grid_free(struct grid *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->cells[i]);
    free(g->cells);
}

static int row_cells(struct grid *g, const char *name, const char *plan, money_t revenue,
                     const struct report_counts *n)
{
    char a[48], b[48], m[48], s[48], pc[32];
    char ov[48], un[48], es[48];
    const char *p = pct(revenue - n->cost, revenue, pc, sizeof(pc));
    return cell(g, "%s", name) | cell(g, "%s", plan) |
           cell(g, "%s", usd_fixed(revenue, 4, a, sizeof(a))) |
           cell(g, "%s", n->overage_usd ? usd_fixed(n->overage_usd, 4, ov, sizeof(ov)) : "-") |
           cell(g, "%s", usd_fixed(n->cost, 4, b, sizeof(b))) |
           cell(g, "%s", usd_fixed(n->saved, 4, s, sizeof(s))) |
           cell(g, "%s", usd_fixed(revenue - n->cost, 4, m, sizeof(m))) |
           cell(g, "%s%s", p ? p : "n/a", p ? "%" : "") |
           /* how much of that margin rests on prices or counts that are not the bill */
           cell(g, "%s", n->unpriced ? usd_fixed(n->unpriced_cost, 4, un, sizeof(un)) : "-") |
           cell(g, "%s", n->estimated ? usd_fixed(n->estimated_cost, 4, es, sizeof(es)) : "-") |
           cell(g, "%" PRId64, n->requests) | cell(g, "%" PRId64, n->input_tokens) |
           cell(g, "%" PRId64, n->cached_tokens) | cell(g, "%" PRId64, n->output_tokens);
}

static void render_table(const struct report *r, struct out *o)
{
    static const bool right[TABLE_COLS] = {false, false, true, true, true, true, true,
                                           true,  true,  true, true, true, true, true};
    struct grid g = {.cols = TABLE_COLS, .right = right};
    struct totals t;
    char total[48], blended[48];
    int rc = 0;
    totals_of(r, &t);
    rc |= cell(&g, "TENANT") | cell(&g, "PLAN") | cell(&g, "REVENUE") | cell(&g, "OVERAGE") |
          cell(&g, "COST") | cell(&g, "SAVED") | cell(&g, "MARGIN") | cell(&g, "MARGIN%%") |
          cell(&g, "UNPRICED") | cell(&g, "ESTIMATED") | cell(&g, "REQUESTS") | cell(&g, "INPUT") |
          cell(&g, "CACHED") | cell(&g, "OUTPUT");
    for (size_t i = 0; i < r->n; i++)
        rc |= row_cells(&g, r->rows[i].tenant, r->rows[i].plan, r->rows[i].revenue, &r->rows[i].n);
    snprintf(total, sizeof(total), "TOTAL (%zu)", t.tenants);
    rc |= row_cells(&g, total, "", t.revenue, &t.n);
    if (rc)
        o->oom = true;
    put(o, "period %s\n", r->period.text);
    if (!o->oom)
        grid_print(&g, o);
    put(o, "blended cost per tenant %s, %zu paying under water",
        usd_fixed(t.tenants ? (money_t)report_div_round(t.n.cost, (__int128)t.tenants) : 0, 4,
                  blended, sizeof(blended)),
        t.under_water);
    if (t.free_tenants)
        put(o, "; %zu on free plans cost %s", t.free_tenants,
            usd_fixed(t.free_cost, 4, total, sizeof(total)));
    put(o, "\n");
    grid_free(&g);
}

/* `--forecast`: where each tenant is heading this month, worst margin first. */
static void render_forecast_table(const struct report *r, struct out *o)
{
    static const bool right[] = {false, false, true, true, true, true, false, false};
    struct grid g = {.cols = 8, .right = right};
    char a[48], b[48], c[48], d[16];
    int rc = cell(&g, "TENANT") | cell(&g, "PLAN") | cell(&g, "COST") | cell(&g, "PROJECTED") |
             cell(&g, "CAP") | cell(&g, "CROSSES") | cell(&g, "NOW") | cell(&g, "SUGGESTED PLAN");
    struct totals t;
    totals_of(r, &t);
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        const char *cross = day_text(r, row->cross_day, d, sizeof(d));
        rc |= cell(&g, "%s", row->tenant) | cell(&g, "%s", row->plan) |
              cell(&g, "%s", usd_fixed(row->n.cost, 4, a, sizeof(a))) |
              cell(&g, "%s", usd_fixed(row->projected, 4, b, sizeof(b))) |
              cell(&g, "%s", row->cap >= 0 ? usd_fixed(row->cap, 4, c, sizeof(c)) : "-") |
              cell(&g, "%s", cross ? cross : "-") |
              cell(&g, "%s", report_status_name(row->status)) |
              cell(&g, "%s", row->suggested_plan ? row->suggested_plan : "-");
    }
    rc |= cell(&g, "TOTAL (%zu)", t.tenants) | cell(&g, "%s", "") |
          cell(&g, "%s", usd_fixed(t.n.cost, 4, a, sizeof(a))) |
          cell(&g, "%s", usd_fixed(t.projected, 4, b, sizeof(b))) | cell(&g, "%s", "") |
          cell(&g, "%s", "") | cell(&g, "%s", "") | cell(&g, "%s", "");
    if (rc)
        o->oom = true;
    put(o, "forecast %s (day %d of %d, run rate since each tenant's first day)\n", r->period.text,
        r->today, r->period.days_in_month);
    if (!o->oom)
        grid_print(&g, o);
    grid_free(&g);
}

/* The forecast fields of a tenant row, each after a ','. */
static void forecast_json(const struct report *r, const struct report_row *row, struct out *o)
{
    char a[48], b[48], d[16];
    const char *cross = day_text(r, row->cross_day, d, sizeof(d));
    put(o, ",\"projected_cost_usd\":%s,\"budget_monthly_usd\":%s,\"crosses_cap_on\":",
        usd(row->projected, a, sizeof(a)), row->cap >= 0 ? usd(row->cap, b, sizeof(b)) : "null");
    if (cross)
        put_json_str(o, cross);
    else
        put(o, "null");
    put(o, ",\"status\":\"%s\",\"suggested_plan\":", report_status_name(row->status));
    if (row->suggested_plan)
        put_json_str(o, row->suggested_plan);
    else
        put(o, "null");
    put(o, ",\"free_plan\":%s", row->free_plan ? "true" : "false");
}

/* What the response cache answered and saved (cache.h). */
static void cache_json(const struct report_counts *n, struct out *o)
{
    char s[48];
    put(o, ",\"cache_hits\":%" PRId64 ",\"saved_usd\":%s", n->cache_hits,
        usd(n->saved, s, sizeof(s)));
}

/* How much of the cost is not the provider's exact bill (report.h), as
 * JSON fields or CSV cells (the last four columns). */
static void uncertain_cells(const struct report_counts *n, struct out *o, bool json)
{
    char u[48], e[48];
    usd(n->unpriced_cost, u, sizeof(u));
    usd(n->estimated_cost, e, sizeof(e));
    if (json)
        put(o,
            ",\"unpriced_usd\":%s,\"unpriced_requests\":%" PRId64
            ",\"estimated_usd\":%s,\"estimated_requests\":%" PRId64,
            u, n->unpriced, e, n->estimated);
    else
        put(o, ",%s,%" PRId64 ",%s,%" PRId64, u, n->unpriced, e, n->estimated);
}

/* The tenant's billing period (billing_anchor) as JSON fields or CSV cells
 * (the last two columns): "2026-11-14T00:00:00Z", the end exclusive. */
static void period_cells(const struct report_row *row, struct out *o, bool json)
{
    char s[32], e[32];
    struct tm tm;
    gmtime_r(&row->period_start, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    gmtime_r(&row->period_end, &tm);
    strftime(e, sizeof(e), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (json)
        put(o, ",\"period_start\":\"%s\",\"period_end\":\"%s\"", s, e);
    else
        put(o, ",%s,%s", s, e);
}

/* The company's cost, revenue and margin per day that has begun; a day's
 * revenue is its share of the plans' prices plus the overage billed that
 * day (the day hashes' overage_usd). */
static void trend_json(const struct report *r, struct out *o)
{
    char a[48], b[48], m[48], ov[48];
    put(o, ",\"daily\":[");
    for (size_t i = 0; r->trend && i < r->trend->n; i++) {
        int day = atoi(r->trend->items[i].name + 8); /* "2026-11-22" */
        money_t cost = r->trend->items[i].n.cost, over = r->trend->items[i].n.overage_usd,
                rev = (day >= 1 && day <= 31 ? r->day_revenue[day] : 0) + over;
        put(o, "%s{\"day\":", i ? "," : "");
        put_json_str(o, r->trend->items[i].name);
        put(o,
            ",\"cost_usd\":%s,\"revenue_usd\":%s,\"overage_usd\":%s,\"margin_usd\":%s,"
            "\"requests\":%" PRId64 "}",
            usd(cost, a, sizeof(a)), usd(rev, b, sizeof(b)), usd(over, ov, sizeof(ov)),
            usd(rev - cost, m, sizeof(m)), r->trend->items[i].n.requests);
    }
    put(o, "]");
}

static void render_json(const struct report *r, struct out *o)
{
    char a[48], b[48], m[48], pc[32];
    struct totals t;
    totals_of(r, &t);
    put(o, "{\"period\":");
    put_json_str(o, r->period.text);
    put(o, ",\"tenants\":[");
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        money_t margin = row->revenue - row->n.cost;
        const char *p = pct(margin, row->revenue, pc, sizeof(pc));
        put(o, "%s{\"tenant\":", i ? "," : "");
        put_json_str(o, row->tenant);
        put(o, ",\"plan\":");
        put_json_str(o, row->plan);
        put(o,
            ",\"revenue_usd\":%s,\"cost_usd\":%s,\"margin_usd\":%s,\"margin_pct\":%s,"
            "\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
            ",\"output_tokens\":%" PRId64,
            usd(row->revenue, a, sizeof(a)), usd(row->n.cost, b, sizeof(b)),
            usd(margin, m, sizeof(m)), p ? p : "null", row->n.requests, row->n.input_tokens,
            row->n.cached_tokens, row->n.output_tokens);
        cache_json(&row->n, o);
        forecast_json(r, row, o);
        allowance_cells(row, o, true);
        uncertain_cells(&row->n, o, true);
        period_cells(row, o, true);
        put(o, "}");
    }
    money_t margin = t.revenue - t.n.cost;
    const char *p = pct(margin, t.revenue, pc, sizeof(pc));
    char bl[48];
    char fc[48], pj[48];
    put(o,
        "],\"totals\":{\"tenants\":%zu,\"revenue_usd\":%s,\"cost_usd\":%s,\"margin_usd\":%s,"
        "\"margin_pct\":%s,\"blended_cost_per_tenant_usd\":%s,\"tenants_under_water\":%zu,"
        "\"free_tenants\":%zu,\"free_plan_cost_usd\":%s,\"projected_cost_usd\":%s",
        t.tenants, usd(t.revenue, a, sizeof(a)), usd(t.n.cost, b, sizeof(b)),
        usd(margin, m, sizeof(m)), p ? p : "null",
        usd(t.tenants ? (money_t)report_div_round(t.n.cost, (__int128)t.tenants) : 0, bl,
            sizeof(bl)),
        t.under_water, t.free_tenants, usd(t.free_cost, fc, sizeof(fc)),
        usd(t.projected, pj, sizeof(pj)));
    cache_json(&t.n, o);
    uncertain_cells(&t.n, o, true);
    put(o, "}");
    put(o, ",\"days_begun\":%d,\"days_in_period\":%d", r->today,
        r->period.day ? 1 : r->period.days_in_month);
    if (r->trend)
        trend_json(r, o);
    put(o, "}\n");
}

static void render_csv(const struct report *r, struct out *o)
{
    char a[48], b[48], m[48], pc[32];
    for (size_t i = 0; i < ARRAY_LEN(columns); i++)
        put(o, "%s%s", i ? "," : "", columns[i]);
    put(o, "\n");
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        money_t margin = row->revenue - row->n.cost;
        const char *p = pct(margin, row->revenue, pc, sizeof(pc));
        put_csv_str(o, row->tenant);
        put(o, ",");
        put_csv_str(o, row->plan);
        put(o, ",%s,%s,%s,%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64,
            usd(row->revenue, a, sizeof(a)), usd(row->n.cost, b, sizeof(b)),
            usd(margin, m, sizeof(m)), p ? p : "n/a", row->n.requests, row->n.input_tokens,
            row->n.cached_tokens, row->n.output_tokens);
        char pj[48], cp[48], d[16];
        const char *cross = day_text(r, row->cross_day, d, sizeof(d));
        put(o, ",%s,%s,%s,%s,", usd(row->projected, pj, sizeof(pj)),
            row->cap >= 0 ? usd(row->cap, cp, sizeof(cp)) : "", cross ? cross : "",
            report_status_name(row->status));
        put_csv_str(o, row->suggested_plan ? row->suggested_plan : "");
        char sv[48];
        put(o, ",%s,%" PRId64 ",%s", row->free_plan ? "true" : "false", row->n.cache_hits,
            usd(row->n.saved, sv, sizeof(sv)));
        allowance_cells(row, o, false);
        uncertain_cells(&row->n, o, false);
        period_cells(row, o, false);
        put(o, "\n");
    }
}

char *report_render(const struct report *r, enum report_format f)
{
    struct out o = {0};
    if (f == REPORT_TABLE && r->forecast_table)
        render_forecast_table(r, &o);
    else if (f == REPORT_JSON)
        render_json(r, &o);
    else if (f == REPORT_CSV)
        render_csv(r, &o);
    else
        render_table(r, &o);
    return take(&o);
}

/* ---- breakdowns ---------------------------------------------------------- */

/* The items as a JSON array of {"<by>":name,"cost_usd",...}. */
static void items_json(const struct report_breakdown *b, struct out *o)
{
    char cost[48];
    put(o, "[");
    for (size_t i = 0; i < b->n; i++) {
        const struct report_item *it = &b->items[i];
        put(o, "%s{\"%s\":", i ? "," : "", report_by_name(b->by));
        put_json_str(o, it->name);
        put(o,
            ",\"cost_usd\":%s,\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64
            ",\"cached_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64,
            usd(it->n.cost, cost, sizeof(cost)), it->n.requests, it->n.input_tokens,
            it->n.cached_tokens, it->n.output_tokens);
        if (b->by == REPORT_BY_DAY) /* the day's overage billed (day hashes only) */
            put(o, ",\"overage_usd\":%s", usd(it->n.overage_usd, cost, sizeof(cost)));
        put(o, "}");
    }
    put(o, "]");
}

char *report_breakdown_render(const struct report_breakdown *b, enum report_format f)
{
    struct out o = {0};
    char cost[48];
    if (f == REPORT_JSON) {
        put(&o, "{\"period\":");
        put_json_str(&o, b->period.text);
        put(&o, ",\"tenant\":");
        if (b->tenant)
            put_json_str(&o, b->tenant);
        else
            put(&o, "null");
        put(&o, ",\"by\":\"%s\",\"rows\":", report_by_name(b->by));
        items_json(b, &o);
        put(&o, "}\n");
    } else if (f == REPORT_CSV) {
        put(&o, "%s,cost_usd,requests,input_tokens,cached_tokens,output_tokens\n",
            report_by_name(b->by));
        for (size_t i = 0; i < b->n; i++) {
            const struct report_item *it = &b->items[i];
            put_csv_str(&o, it->name);
            put(&o, ",%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n",
                usd(it->n.cost, cost, sizeof(cost)), it->n.requests, it->n.input_tokens,
                it->n.cached_tokens, it->n.output_tokens);
        }
    } else {
        static const bool right[] = {false, true, true, true, true, true};
        struct grid g = {.cols = 6, .right = right};
        struct report_counts sum = {0};
        char upper[16];
        int rc = 0;
        snprintf(upper, sizeof(upper), "%s", report_by_name(b->by));
        for (char *s = upper; *s; s++)
            *s = (char)toupper((unsigned char)*s);
        rc |= cell(&g, "%s", upper) | cell(&g, "COST") | cell(&g, "REQUESTS") | cell(&g, "INPUT") |
              cell(&g, "CACHED") | cell(&g, "OUTPUT");
        for (size_t i = 0; i <= b->n; i++) {
            const struct report_item *it = i < b->n ? &b->items[i] : NULL;
            const struct report_counts *n = it ? &it->n : &sum;
            if (it)
                report_counts_add(&sum, &it->n);
            rc |= cell(&g, "%s", it ? it->name : "TOTAL") |
                  cell(&g, "%s", usd_fixed(n->cost, 4, cost, sizeof(cost))) |
                  cell(&g, "%" PRId64, n->requests) | cell(&g, "%" PRId64, n->input_tokens) |
                  cell(&g, "%" PRId64, n->cached_tokens) | cell(&g, "%" PRId64, n->output_tokens);
        }
        put(&o, "period %s, %s, by %s\n", b->period.text, b->tenant ? b->tenant : "all tenants",
            report_by_name(b->by));
        if (rc)
            o.oom = true;
        else
            grid_print(&g, &o);
        grid_free(&g);
    }
    return take(&o);
}

/* ---- the admin API's tenant detail --------------------------------------- */

char *report_tenant_json(struct redis_sync *c, const struct config *cfg,
                         const struct report_period *p, const char *tenant, int *status, char *err,
                         size_t errlen)
{
    struct report *r = NULL;
    struct report_breakdown *by[4] = {0};
    struct out o = {0};
    char a[48], b[48], m[48], pc[32], cap[48], hard[48];
    static const enum report_by kinds[] = {REPORT_BY_DAY, REPORT_BY_MODEL, REPORT_BY_FEATURE,
                                           REPORT_BY_USER};
    static const char *const labels[] = {"daily", "by_model", "by_feature", "by_user"};

    *status = 503;
    if (p->day) {
        *status = 400;
        snprintf(err, errlen, "period must be a month (YYYY-MM) for a tenant");
        return NULL;
    }
    if (!tenant || !*tenant || strpbrk(tenant, "{}")) {
        *status = 404;
        snprintf(err, errlen, "no such tenant");
        return NULL;
    }
    if (!(r = report_build(c, cfg, p, tenant, err, errlen)))
        goto fail;
    if (r->n != 1 || !r->rows[0].known) {
        *status = 404;
        snprintf(err, errlen, "tenant '%s' has no traffic in %s and no [tenant] section", tenant,
                 p->text);
        goto fail;
    }
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++)
        if (!(by[i] = report_breakdown(c, cfg, p, tenant, kinds[i], err, errlen)))
            goto fail;
    const struct report_row *row = &r->rows[0];
    struct plan eff;
    bool resolved = plan_resolve(cfg, tenant, row->plan, &eff) == 0;
    bool has_cap = resolved && eff.budget_monthly >= 0, has_hard = resolved && eff.hard_limit >= 0;
    money_t margin = row->revenue - row->n.cost;
    const char *pp = pct(margin, row->revenue, pc, sizeof(pc));
    put(&o, "{\"tenant\":");
    put_json_str(&o, row->tenant);
    put(&o, ",\"plan\":");
    put_json_str(&o, row->plan);
    put(&o, ",\"period\":");
    put_json_str(&o, p->text);
    put(&o,
        ",\"revenue_usd\":%s,\"cost_usd\":%s,\"margin_usd\":%s,\"margin_pct\":%s,"
        "\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
        ",\"output_tokens\":%" PRId64 ",\"budget_monthly_usd\":%s,\"hard_limit_usd\":%s",
        usd(row->revenue, a, sizeof(a)), usd(row->n.cost, b, sizeof(b)), usd(margin, m, sizeof(m)),
        pp ? pp : "null", row->n.requests, row->n.input_tokens, row->n.cached_tokens,
        row->n.output_tokens, has_cap ? usd(eff.budget_monthly, cap, sizeof(cap)) : "null",
        has_hard ? usd(eff.hard_limit, hard, sizeof(hard)) : "null");
    cache_json(&row->n, &o);
    allowance_cells(row, &o, true);
    uncertain_cells(&row->n, &o, true);
    period_cells(row, &o, true);
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
        put(&o, ",\"%s\":", labels[i]);
        items_json(by[i], &o);
    }
    put(&o, "}\n");
    for (size_t i = 0; i < ARRAY_LEN(by); i++)
        report_breakdown_free(by[i]);
    report_free(r);
    *status = 200;
    char *text = take(&o);
    if (!text) {
        *status = 503;
        snprintf(err, errlen, "out of memory");
    }
    return text;
fail:
    for (size_t i = 0; i < ARRAY_LEN(by); i++)
        report_breakdown_free(by[i]);
    report_free(r);
    return NULL;
}
