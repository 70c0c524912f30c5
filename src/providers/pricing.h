/* pricing.h: list prices per model, from conf/pricing.conf (INI, USD per 1M
 * tokens) or LiteLLM's model_prices_and_context_window.json. Lookup takes
 * the exact name, else the longest listed prefix. Immutable once loaded. */
#ifndef TOLLGATE_PRICING_H
#define TOLLGATE_PRICING_H

#include <stddef.h>
#include "core/money.h"
#include "providers/usage.h"
#include "core/util.h"

struct price {
    char *model;          /* key as listed */
    char *provider;       /* openai | anthropic | gemini | NULL */
    price_t input;        /* pico-USD per token */
    price_t cached_input; /* cache reads; default: input */
    price_t cache_write;  /* cache writes; default: 1.25 x input */
    price_t output;
    /* prices above a prompt-size threshold (long-context tiers); 0 = none */
    int64_t tier_threshold;
    price_t tier_input, tier_cached_input, tier_cache_write, tier_output;
    /* the most output tokens one answer may carry (INI max_output, LiteLLM
     * max_output_tokens): what a request without its own bound reserves; 0 =
     * not listed */
    int64_t max_output;
};

struct pricing;

/* Loads a pricing file; format chosen by content ('{' first: LiteLLM JSON).
 * On error returns NULL and writes "file:line: message" into err. */
struct pricing *pricing_load(const char *path, char *err, size_t errlen) MUST_CHECK;
void pricing_free(struct pricing *p);
size_t pricing_count(const struct pricing *p);
/* The i-th model in name order (for listing and `-t`); NULL past the end. */
const struct price *pricing_at(const struct pricing *p, size_t i);

/* Exact match first, then the longest listed prefix; NULL if none. */
const struct price *pricing_lookup(const struct pricing *p, const char *model);

/* Cost of u at price pr in nano-USD (exact: one rounding at the end).
 * input - cached - cache_write at input, cached at cached_input, cache_write
 * at cache_write, output at output; tier prices when input > tier_threshold. */
money_t pricing_cost(const struct price *pr, const struct usage *u);

#endif
