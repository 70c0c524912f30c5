/* usage.h: token counts of one request, normalised across providers
 * (provider-wire-formats.md section 8). */
#ifndef TOLLGATE_USAGE_H
#define TOLLGATE_USAGE_H

#include <stdbool.h>
#include <stdint.h>

struct usage {
    int64_t input;       /* all prompt tokens, cached and cache writes included */
    int64_t cached;      /* cache reads: a subset of input */
    int64_t cache_write; /* cache writes: a subset of input */
    int64_t output;      /* billed output tokens, reasoning included */
    int64_t reasoning;   /* a subset of output */
    bool seen;           /* the provider reported usage (reported 0 is not "missing") */
    bool estimated;      /* counts were estimated by tollgate, not reported */
};

#endif
