/* report.h: gross margin per tenant for a UTC month or day, from the
 * counters settle.lua keeps in Redis (budget.h) and the plans' prices in the
 * config, rendered as a table, JSON (the contract's shape) or CSV; also the
 * per-model / feature / user / day breakdowns and the admin API's tenant
 * detail. Blocking: it talks to Redis through redis_sync.h (the daemon's
 * connection layer on a private loop: every scheme the daemon reaches), so it
 * runs in the CLI (`tollgate report`) or on a thread of its own, never on a
 * worker's event loop.
 *
 * Revenue of a tenant in a month: its plan's price (price_period = year:
 * price / 12), prorated by days when the plan changed within the month. The
 * plan of a day is the one its settlements carried ({T}:m:YYYY-MM:plan); a
 * day without traffic takes the plan of the nearest earlier day with
 * traffic, else the tenant's plan in the config today. A plan no longer in
 * the config counts as price 0. A day's revenue is its plan's monthly price
 * / days in the month. Revenue accrues from the first day of the month on
 * which the tenant had traffic to the month's end: a tenant (configured or
 * not) with no traffic in a month earns nothing in it, and a tenant first
 * seen on the 20th earns the days from the 20th. A plan with an allowance
 * adds the overage its tenant was billed (overage_usd, settled at the
 * plan's terms of the time) to its revenue. margin = revenue - cost;
 * all amounts are nano-USD.
 *
 * report.c reads and computes, report_format.c renders (report_render,
 * report_breakdown_render, report_tenant_json), report_cli.c is report_main. */
#ifndef TOLLGATE_REPORT_H
#define TOLLGATE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/money.h"
#include "core/util.h"

struct config;
struct redis_sync;
struct redis_tls;

struct report_period {
    int year, month;
    int day;           /* 1..31; 0: the whole month */
    int days_in_month; /* 28..31 */
    char text[11];     /* "2026-11" or "2026-11-22" */
};

/* "2026-11" or "2026-11-22" (a real date); -1 otherwise. */
int report_parse_period(const char *s, struct report_period *p) MUST_CHECK;
/* The UTC month of t. */
void report_month_of(time_t t, struct report_period *p);

/* Counters of a period (or of one breakdown name in it). */
struct report_counts {
    money_t cost;
    int64_t requests, input_tokens, cached_tokens, output_tokens;
    int64_t cache_hits; /* requests answered from the response cache */
    money_t saved;      /* what those would have cost */
    /* cost that is not the provider's exact bill: requests recorded
     * "priced": false (a model charged at [pricing] unknown_model's
     * fallback, or a route without a price) and requests with
     * "estimated": true usage, and their cost; one request may be both */
    int64_t unpriced, estimated;
    money_t unpriced_cost, estimated_cost;
    /* the allowance (month hashes only; settle.lua): units used (tokens or
     * requests), units past the included ones, and what they bill */
    int64_t allowance_used, overage_units;
    money_t overage_usd;
};

/* Where a tenant stands against its caps right now (current month only). */
enum report_status {
    REPORT_STATUS_OK,         /* under every cap */
    REPORT_STATUS_DOWNGRADED, /* over a cap whose plan downgrades */
    REPORT_STATUS_BLOCKED,    /* over a cap that blocks, or past hard_limit */
};

struct report_row {
    char *tenant;
    char *plan; /* the plan of the period's last day */
    money_t revenue;
    struct report_counts n;
    bool known;         /* configured, or seen in the month's tenant set */
    int first_day;      /* first day of the month with traffic (1..31); 0: none */
    money_t today_cost; /* today's cost, when the period is the current month */
    /* the allowance of its plan (with the tenant's override): included
     * units per period (-1: none) and their kind: 't' tokens, 'r' requests */
    int64_t included;
    char unit;
    /* the tenant's billing period that starts in the report's month
     * (billing_anchor, clock_period): its first instant and the end */
    time_t period_start, period_end;

    /* Filled by report_forecast (forecast.c) for month periods. */
    money_t projected;         /* month-end cost at the run rate since first_day */
    money_t cap;               /* budget_monthly of its effective plan; -1: none */
    int cross_day;             /* day the run rate reaches cap; 0: not this month */
    enum report_status status; /* now */
    bool free_plan;            /* no revenue and a plan priced 0: its cost is
                                  acquisition spend, not a losing customer */
    char *suggested_plan;      /* cheapest plan covering projected at the target margin;
                                  NULL: the plan it has covers it, or none does */
};

struct report {
    struct report_period period;
    struct report_row *rows; /* worst margin first (then by tenant) */
    size_t n;
    bool current;            /* the period is in this month */
    int today;               /* days of the period that have begun: the current month's
                                day, all days of a past one, 0 for a future one */
    money_t day_revenue[32]; /* [1..31]: revenue accrued on each day (month periods) */
    /* Company-wide cost per day, days 1..today; set by report_forecast when
     * given a by-day breakdown (NULL: no trend). Not owned. */
    const struct report_breakdown *trend;
    bool forecast_table; /* REPORT_TABLE renders the forecast view (--forecast) */
};

enum report_format { REPORT_TABLE, REPORT_JSON, REPORT_CSV };
enum report_by { REPORT_BY_MODEL, REPORT_BY_FEATURE, REPORT_BY_USER, REPORT_BY_DAY };

struct report_item {
    char *name; /* model / feature / user ("-": none), or the day "2026-11-22" */
    struct report_counts n;
};

struct report_breakdown {
    struct report_period period;
    char *tenant; /* NULL: summed over every tenant */
    enum report_by by;
    struct report_item *items; /* by cost, highest first; days in order */
    size_t n;
};

/* Connects to [redis] url (any scheme the daemon reaches; tls: [redis]
 * ca_file, cert_file, key_file, or NULL) with timeout_ms for the connect
 * and for every reply, authenticates and selects the db. NULL with a
 * message (never the password) in err. Free with redis_sync_free. */
struct redis_sync *report_connect(const char *url, const struct redis_tls *tls, int timeout_ms,
                                  char *err, size_t errlen) MUST_CHECK;

/* Every tenant of the period (the month's tenant set plus the [tenant]
 * sections), or only `tenant` when not NULL. NULL with err on a Redis error. */
struct report *report_build(struct redis_sync *c, const struct config *cfg,
                            const struct report_period *p, const char *tenant, char *err,
                            size_t errlen) MUST_CHECK;
void report_free(struct report *r);
/* The report as text (malloc'd, NUL-terminated); NULL when out of memory. */
char *report_render(const struct report *r, enum report_format f) MUST_CHECK;

/* One tenant's (or, tenant NULL, everyone's) counters by model, feature or
 * user (month periods only: those hashes are per month) or by day (every
 * day of a month period; the day itself for a day period). */
struct report_breakdown *report_breakdown(struct redis_sync *c, const struct config *cfg,
                                          const struct report_period *p, const char *tenant,
                                          enum report_by by, char *err, size_t errlen) MUST_CHECK;
void report_breakdown_free(struct report_breakdown *b);
char *report_breakdown_render(const struct report_breakdown *b, enum report_format f) MUST_CHECK;
/* The word for a breakdown ("model", "feature", "user", "day"): its hash in
 * Redis, its JSON field, its --by value. A static string. */
const char *report_by_name(enum report_by by);
/* a += b, field by field. */
void report_counts_add(struct report_counts *a, const struct report_counts *b);
/* a / b rounded half away from zero; b > 0. */
int64_t report_div_round(__int128 a, __int128 b);

/* The admin API's /admin/api/tenants/{id} body for a month period. NULL
 * with *status 400 (day period), 404 (tenant unknown in that month) or 503
 * (Redis) and a message in err. */
char *report_tenant_json(struct redis_sync *c, const struct config *cfg,
                         const struct report_period *p, const char *tenant, int *status, char *err,
                         size_t errlen) MUST_CHECK;

/* The projection of a month report (see struct report_row): run rate since
 * each tenant's first active day, the day it crosses its cap, its status now,
 * and the cheapest plan whose price covers the projected cost at
 * target_margin_bp (basis points of the price kept as margin: 5000 = 50%).
 * trend (may be NULL) is a by-day breakdown over every tenant of the same
 * period; the report keeps a pointer to it. -1 when out of memory. */
int report_forecast(struct report *r, const struct config *cfg, int target_margin_bp,
                    const struct report_breakdown *trend) MUST_CHECK;
/* The word for a status: "ok", "downgraded", "blocked". */
const char *report_status_name(enum report_status s);

/* `tollgate report ...` (argv[0] is "report"): prints the report to stdout.
 * Returns the exit code: 0, 1 (config or Redis failed), 2 (bad usage). */
int report_main(int argc, char **argv);

#endif
