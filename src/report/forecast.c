/* forecast.c: where each tenant of a month report is heading (see
 * report_forecast in report.h). Pure arithmetic on what report.c read: no
 * Redis, no I/O, every amount an integer in nano-USD.
 *
 * The run rate of a tenant is its cost so far divided by the days since its
 * first day with traffic in the month (today included), so a customer who
 * started on the 20th is not diluted by the 19 days before. The projection
 * is cost + rate x the days left; for a past month it is the cost itself. */
#include "report/report.h"

#include <stdlib.h>
#include <string.h>

#include "budget/plan.h"
#include "core/config.h"

static const char *const status_names[] = {
    [REPORT_STATUS_OK] = "ok",
    [REPORT_STATUS_DOWNGRADED] = "downgraded",
    [REPORT_STATUS_BLOCKED] = "blocked",
};

const char *report_status_name(enum report_status s)
{
    return status_names[s];
}

/* A plan's price per month in nano-USD (a yearly price over 12). */
static money_t monthly_price(const struct cfg_plan *p)
{
    return p->price_period == PRICE_PERIOD_YEAR ? (money_t)report_div_round(p->price, 12)
                                                : p->price;
}

/* Whether price x (1 - margin) covers cost: the plan keeps its target margin. */
static bool covers(money_t price, money_t cost, int margin_bp)
{
    return (__int128)price * (10000 - margin_bp) >= (__int128)cost * 10000;
}

/* The cheapest configured plan that covers cost at margin_bp, or NULL. */
static const struct cfg_plan *cheapest_covering(const struct config *cfg, money_t cost,
                                                int margin_bp)
{
    const struct cfg_plan *best = NULL;
    for (size_t i = 0; i < cfg->n_plans; i++) {
        const struct cfg_plan *p = &cfg->plans[i];
        money_t price = monthly_price(p);
        if (price > 0 && covers(price, cost, margin_bp) && (!best || price < monthly_price(best)))
            best = p;
    }
    return best;
}

/* Over which cap (or allowance) the tenant is now (plan_standing). */
static enum report_status status_now(const struct plan *eff, money_t month, money_t today,
                                     int64_t units)
{
    switch (plan_standing(eff, month, today, units)) {
    case PLAN_STANDING_BLOCKED:
        return REPORT_STATUS_BLOCKED;
    case PLAN_STANDING_DOWNGRADED:
        return REPORT_STATUS_DOWNGRADED;
    default:
        return REPORT_STATUS_OK;
    }
}

static int forecast_row(struct report_row *row, const struct report *r, const struct config *cfg,
                        int margin_bp)
{
    const struct report_period *p = &r->period;
    struct plan eff;
    bool has_plan = plan_resolve(cfg, row->tenant, row->plan[0] ? row->plan : NULL, &eff) == 0;

    row->projected = row->n.cost;
    row->cap = has_plan ? eff.budget_monthly : -1;
    if (row->first_day > 0 && r->today > row->first_day - 1 && r->today < p->days_in_month) {
        int active = r->today - row->first_day + 1, left = p->days_in_month - r->today;
        row->projected =
            row->n.cost + report_div_round((__int128)row->n.cost * left, (__int128)active);
        /* the day the run rate reaches the cap, when that is still this month */
        if (row->cap >= 0 && row->n.cost < row->cap && row->n.cost > 0) {
            __int128 need = (__int128)(row->cap - row->n.cost) * active;
            int days = (int)((need + row->n.cost - 1) / row->n.cost); /* ceil */
            if (days <= left)
                row->cross_day = r->today + days;
        }
    }
    if (has_plan && r->current)
        row->status = status_now(&eff, row->n.cost, row->today_cost, row->n.allowance_used);

    /* An upgrade to suggest: the tenant's plan does not keep the target margin
     * at the projected cost, and a configured plan would. */
    money_t price = has_plan ? monthly_price(eff.base) : 0;
    if (row->projected > 0 && !covers(price, row->projected, margin_bp)) {
        const struct cfg_plan *up = cheapest_covering(cfg, row->projected, margin_bp);
        if (up && (!has_plan || up != eff.base) && !(row->suggested_plan = strdup(up->name)))
            return -1;
    }
    return 0;
}

int report_forecast(struct report *r, const struct config *cfg, int target_margin_bp,
                    const struct report_breakdown *trend)
{
    if (target_margin_bp < 0 || target_margin_bp >= 10000)
        target_margin_bp = 5000;
    r->trend = trend;
    if (r->period.day)
        return 0; /* a day has no run rate */
    for (size_t i = 0; i < r->n; i++)
        if (forecast_row(&r->rows[i], r, cfg, target_margin_bp) < 0)
            return -1;
    return 0;
}
