/* plan.c: tenant -> effective plan. Kept apart from the proxy so the rules
 * of precedence (tenant section, plan header, default plan) live in one
 * place. */
#include "budget/plan.h"

#include <stdbool.h>
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
    out->user_budget_monthly =
        t && t->user_budget_monthly >= 0 ? t->user_budget_monthly : p->user_budget_monthly;
    out->user_rpm = t && t->user_rpm >= 0 ? t->user_rpm : p->user_rpm;
    out->anchor = t ? (int)t->billing_anchor : 1;
    out->unit = PLAN_UNIT_NONE;
    out->included = -1;
    if (p->included_tokens >= 0) {
        out->unit = PLAN_UNIT_TOKENS;
        out->included = t && t->included_tokens >= 0 ? t->included_tokens : p->included_tokens;
    } else if (p->included_requests >= 0) {
        out->unit = PLAN_UNIT_REQUESTS;
        out->included =
            t && t->included_requests >= 0 ? t->included_requests : p->included_requests;
    }
    return 0;
}

int plan_anchor(const struct config *cfg, const char *tenant)
{
    const struct cfg_tenant *t = config_tenant(cfg, tenant);
    return t ? (int)t->billing_anchor : 1;
}

int64_t plan_units(const struct plan *p, int64_t input, int64_t output)
{
    if (p->unit == PLAN_UNIT_REQUESTS)
        return 1;
    if (p->unit != PLAN_UNIT_TOKENS)
        return 0;
    return (input > 0 ? input : 0) + (output > 0 ? output : 0);
}

const char *plan_downgrade(const struct plan *p, const char *model)
{
    for (size_t i = 0; i < p->base->n_downgrade; i++)
        if (strcmp(p->base->downgrade[i].from, model) == 0)
            return p->base->downgrade[i].to;
    return NULL;
}

void plan_overage_terms(const struct plan *p, int64_t *per_mu, int64_t *markup_bp)
{
    const struct cfg_plan *b = p->base;
    *per_mu = 0;
    *markup_bp = -1;
    if (p->unit == PLAN_UNIT_NONE || b->on_allowance != ON_ALLOWANCE_OVERAGE)
        return;
    if (b->overage_kind == OVERAGE_MARKUP)
        *markup_bp = b->overage_markup_bp;
    else if (b->overage_kind == OVERAGE_PRICE) /* per 1M tokens, or per request */
        *per_mu = p->unit == PLAN_UNIT_TOKENS        ? b->overage
                  : b->overage > INT64_MAX / 1000000 ? INT64_MAX
                                                     : b->overage * 1000000;
}

enum plan_standing plan_standing(const struct plan *p, money_t month, money_t today, int64_t units)
{
    if (p->hard_limit >= 0 && month >= p->hard_limit)
        return PLAN_STANDING_BLOCKED;
    bool over_cap = (p->budget_monthly >= 0 && month >= p->budget_monthly) ||
                    (p->budget_daily >= 0 && today >= p->budget_daily);
    bool over_allowance =
        p->included >= 0 && p->base->on_allowance != ON_ALLOWANCE_OVERAGE && units >= p->included;
    if ((over_cap && p->base->on_exceed != ON_EXCEED_DOWNGRADE) ||
        (over_allowance && p->base->on_allowance == ON_ALLOWANCE_BLOCK))
        return PLAN_STANDING_BLOCKED;
    return over_cap || over_allowance ? PLAN_STANDING_DOWNGRADED : PLAN_STANDING_OK;
}
