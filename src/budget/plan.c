/* plan.c: tenant -> effective plan. Kept apart from the proxy so the rules
 * of precedence (tenant section, plan header, default plan) live in one
 * place. */
#include "budget/plan.h"

#include <string.h>

int plan_resolve(const struct config *cfg, const char *tenant, const char *asked, struct plan *out)
{
    const struct cfg_tenant *t = config_tenant(cfg, tenant);
    const struct cfg_plan *p = NULL;
    if (t && t->plan)
        p = config_plan(cfg, t->plan);
    if (!p && asked && asked[0])
        p = config_plan(cfg, asked);
    if (!p)
        p = config_plan(cfg, cfg->default_plan);
    if (!p)
        return -1;
    out->base = p;
    out->budget_monthly = t && t->budget_monthly >= 0 ? t->budget_monthly : p->budget_monthly;
    out->budget_daily = t && t->budget_daily >= 0 ? t->budget_daily : p->budget_daily;
    out->hard_limit = t && t->hard_limit >= 0 ? t->hard_limit : p->hard_limit;
    out->rpm = t && t->rpm >= 0 ? t->rpm : p->rpm;
    out->tpm = t && t->tpm >= 0 ? t->tpm : p->tpm;
    return 0;
}

const char *plan_downgrade(const struct plan *p, const char *model)
{
    for (size_t i = 0; i < p->base->n_downgrade; i++)
        if (strcmp(p->base->downgrade[i].from, model) == 0)
            return p->base->downgrade[i].to;
    return NULL;
}
