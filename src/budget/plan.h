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
};

/* The plan for tenant: [tenant] plan, else the plan the app named (when it
 * exists), else default_plan; then the tenant's overrides. Returns -1 only
 * when no plan can be found (config validation prevents it). */
int plan_resolve(const struct config *cfg, const char *tenant, const char *asked,
                 struct plan *out) MUST_CHECK;

/* The cheaper model a plan downgrades model to, or NULL. */
const char *plan_downgrade(const struct plan *p, const char *model);

#endif
