/* pricing.h: list prices per model, from conf/pricing.conf (INI, USD per 1M
 * tokens) or LiteLLM's model_prices_and_context_window.json. Lookup takes
 * the exact name, else the longest listed prefix. Immutable once loaded. */
#ifndef TOLLGATE_PRICING_H
#define TOLLGATE_PRICING_H

#include <stdbool.h>
#include <stddef.h>
#include "core/money.h"
#include "providers/usage.h"
#include "core/util.h"

/* What a model produces: unpriced models are charged at the highest
 * price of their provider's models of the same kind. */
enum price_kind {
    PRICE_KIND_CHAT, /* text generation (default) */
    PRICE_KIND_EMBEDDING,
    PRICE_KIND_IMAGE,
    PRICE_KIND_AUDIO,
};
#define PRICE_KINDS 4

/* [pricing] unknown_model: what a model without a listed price costs. */
enum unknown_model {
    UNKNOWN_MODEL_HIGHEST,  /* its provider's highest price of its kind, priced false */
    UNKNOWN_MODEL_ALLOW,    /* $0, priced false */
    UNKNOWN_MODEL_BLOCK,    /* refused with 400 before forwarding */
    UNKNOWN_MODEL_PRICE_AS, /* a named model's price, priced false */
};

struct price {
    char *model;            /* key as listed */
    char *provider;         /* openai | anthropic | gemini | NULL */
    enum price_kind kind;   /* INI kind = chat | embedding | image | audio; LiteLLM mode */
    price_t input;          /* pico-USD per token */
    price_t cached_input;   /* cache reads; default: input */
    price_t cache_write;    /* cache writes; default: 1.25 x input */
    price_t cache_write_1h; /* 1-hour cache writes (Anthropic); default: 2 x input (the long
                               context tier's: 2 x tier_input) */
    price_t output;
    price_t image_input; /* image input tokens (gpt-image-1 edits); default: input */
    /* prices above a prompt-size threshold (long-context tiers); 0 = none */
    int64_t tier_threshold;
    price_t tier_input, tier_cached_input, tier_cache_write, tier_output;
    /* the most output tokens one answer may carry (INI max_output, LiteLLM
     * max_output_tokens): what a request without its own bound reserves; 0 =
     * not listed */
    int64_t max_output;
    /* pico-USD per unit for endpoints not priced in tokens, by enum
     * usage_unit (INI per_image, per_second, per_character in USD per unit);
     * 0 = none */
    price_t per_unit[USAGE_UNITS];
    /* The prices of OpenAI's flex and priority processing (service_tier), by
     * enum usage_tier (INI flex_input, flex_cached_input, flex_output,
     * priority_*; LiteLLM input_cost_per_token_flex, ..._priority); index
     * USAGE_TIER_STANDARD unused. Not listed (all 0): flex pays the standard
     * prices, priority twice them (above every priority price OpenAI lists:
     * 1.7x to 2x), and pricing_tier_listed says so. */
    struct {
        price_t input, cached_input, output;
        bool listed;
    } service[USAGE_TIERS];
};

struct pricing;

/* Loads a pricing file; format chosen by content ('{' first: LiteLLM JSON).
 * On error returns NULL and writes "file:line: message" into err. */
struct pricing *pricing_load(const char *path, char *err, size_t errlen) MUST_CHECK;
void pricing_free(struct pricing *p);
size_t pricing_count(const struct pricing *p);
/* The i-th model in name order (for listing and `-t`); NULL past the end. */
const struct price *pricing_at(const struct pricing *p, size_t i);

/* Exact match first, then the longest listed prefix; NULL if none. A
 * Bedrock model id ("us.anthropic.claude-sonnet-4-5-20250929-v1:0") not
 * listed as such is looked up without its region, vendor and version. */
const struct price *pricing_lookup(const struct pricing *p, const char *model);

/* The highest input, cached, cache-write and output prices (each on its
 * own, no tiers) among provider's models of kind; NULL when none is listed.
 * Computed at load; owned by p. */
const struct price *pricing_highest(const struct pricing *p, const char *provider,
                                    enum price_kind kind);

/* The price a request pays under the unknown_model policy: the listed price
 * of model (else of fallback, the model the request named, may be NULL),
 * sets *listed. Unlisted: HIGHEST gives pricing_highest(provider, kind)
 * (chat's when kind has none), PRICE_AS the price of price_as, ALLOW and
 * BLOCK NULL ($0). */
const struct price *pricing_choose(const struct pricing *p, enum unknown_model policy,
                                   const char *price_as, const char *provider, enum price_kind kind,
                                   const char *model, const char *fallback, bool *listed);

/* True the first time model is named for p (one warning per unpriced
 * model per loaded price table, that is per reload); thread-safe. After
 * 1024 distinct names it stays false. */
bool pricing_warn_once(struct pricing *p, const char *model);

/* Cost of u at price pr in nano-USD (exact: one rounding at the end).
 * input - cached - cache_write - image_input at input, image_input at
 * image_input, cached at cached_input, cache_write
 * at cache_write (its 1-hour part at cache_write_1h), output at output; tier
 * prices when input > tier_threshold;
 * plus u->units at per_unit[u->unit]. A flex or priority u->tier takes
 * that tier's input, cached and output prices (struct price, service). */
money_t pricing_cost(const struct price *pr, const struct usage *u);

/* False when tier is flex or priority and pr lists no price for it (the
 * cost is then a stand-in: recorded "priced": false). */
bool pricing_tier_listed(const struct price *pr, enum usage_tier tier);

#endif
