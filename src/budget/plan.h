/* plan.h: the effective plan of a tenant: its [plan] with the [tenant]
 * overrides applied, resolved once per request. */
#ifndef TOLLGATE_PLAN_H
#define TOLLGATE_PLAN_H

#include <stdint.h>
#include "core/config.h"
#include "core/money.h"

struct plan {
    const struct cfg_plan *base; /* never NULL */
    money_t budget_monthly;      /* -1: no cap */
    money_t budget_daily;        /* -1: no cap */
    money_t hard_limit;          /* -1: none */
    int64_t rpm, tpm;            /* 0: unlimited */
    /* each end user's own caps inside the tenant (admit.lua) */
    money_t user_budget_monthly; /* -1: none */
    int64_t user_rpm;            /* 0: unlimited */
    /* the allowance per billing period, in units of its kind; -1: none */
    enum plan_unit { PLAN_UNIT_NONE, PLAN_UNIT_TOKENS, PLAN_UNIT_REQUESTS } unit;
    int64_t included;
    int anchor; /* [tenant] billing_anchor: day its billing period starts (1..31) */
};

/* The allowance units a request uses: its input + output tokens, or 1
 * request; 0 for a plan without an allowance. */
int64_t plan_units(const struct plan *p, int64_t input, int64_t output);

/* How overage is billed, as settle.lua takes it: *per_mu nano-USD per
 * million units past the allowance (0: not by price), *markup_bp basis
 * points on the overage's AI cost (-1: not by cost). Both "none" for a
 * plan that does not bill overage. */
void plan_overage_terms(const struct plan *p, int64_t *per_mu, int64_t *markup_bp);

/* The plan for tenant: [tenant] plan, else the plan the app named (when it
 * exists), else default_plan; then the tenant's overrides. Returns -1 only
 * when no plan can be found (config validation prevents it). */
int plan_resolve(const struct config *cfg, const char *tenant, const char *asked,
                 struct plan *out) MUST_CHECK;

/* The tenant's billing_anchor (1 for a tenant without a [tenant] section):
 * the day of the month its billing period starts (clock_period). */
int plan_anchor(const struct config *cfg, const char *tenant);

/* The cheaper model a plan downgrades model to, or NULL. */
const char *plan_downgrade(const struct plan *p, const char *model);

/* Where a tenant on p stands now, given its month's and today's cost
 * (settled, plus in flight where the caller knows it) and the allowance
 * units used: past hard_limit, or past a cap or the allowance whose policy
 * blocks, it is blocked; past one that downgrades, downgraded. */
enum plan_standing {
    PLAN_STANDING_OK,         /* under every cap and the allowance (or in overage) */
    PLAN_STANDING_DOWNGRADED, /* its calls get the cheaper model */
    PLAN_STANDING_BLOCKED,    /* its calls are refused */
};
enum plan_standing plan_standing(const struct plan *p, money_t month, money_t today, int64_t units);

#endif
