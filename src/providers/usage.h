/* usage.h: token counts of one request, normalised across providers
 * (provider-wire-formats.md section 8). */
#ifndef TOLLGATE_USAGE_H
#define TOLLGATE_USAGE_H

#include <stdbool.h>
#include <stdint.h>

/* What an endpoint not priced in tokens counts (product contract, "Usage
 * record": units and unit). */
enum usage_unit {
    USAGE_UNIT_NONE,      /* priced in tokens only */
    USAGE_UNIT_IMAGE,     /* images generated (dall-e: per image by size and quality) */
    USAGE_UNIT_SECOND,    /* seconds of audio transcribed or translated */
    USAGE_UNIT_CHARACTER, /* characters of text spoken (tts-1, tts-1-hd) */
};
#define USAGE_UNITS 4

/* The processing tier that served a request (OpenAI's service_tier): each
 * has its own prices (pricing.h). */
enum usage_tier {
    USAGE_TIER_STANDARD, /* "default", "auto", "scale", or none named */
    USAGE_TIER_FLEX,     /* "flex": slower, cheaper */
    USAGE_TIER_PRIORITY, /* "priority": faster, dearer */
};
#define USAGE_TIERS 3

struct usage {
    int64_t input;          /* all prompt tokens, cached and cache writes included */
    int64_t cached;         /* cache reads: a subset of input */
    int64_t cache_write;    /* cache writes: a subset of input */
    int64_t output;         /* billed output tokens, reasoning included */
    int64_t reasoning;      /* a subset of output */
    bool seen;              /* the provider reported usage (reported 0 is not "missing") */
    bool estimated;         /* counts were estimated by tollgate, not reported */
    int64_t cache_write_1h; /* cache writes with a 1-hour TTL: a subset of cache_write */
    int64_t image_input;    /* image input tokens (gpt-image-1 edits): a subset of input,
                               not cached */
    int64_t units;          /* of unit, priced at the price's per-unit rate for unit */
    enum usage_unit unit;
    enum usage_tier tier; /* prices the tokens at that tier's prices */
};

/* The tier a service_tier value names: "", "auto", "default", "scale" and
 * "standard" are standard, "flex" flex, any other ("priority", "fast")
 * priority: a tier tollgate does not know is charged as the dearer one. */
enum usage_tier usage_tier_of(const char *service_tier);

/* "image" | "second" | "character"; NULL for USAGE_UNIT_NONE. */
const char *usage_unit_name(enum usage_unit u);

#endif
