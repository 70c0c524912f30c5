/* sat.h: saturating int64 arithmetic. Counts and amounts that come from
 * outside (a provider's usage, a request's max_tokens, a counter read back
 * from Redis) can be absurd; a sum or product of them pins at INT64_MAX or
 * INT64_MIN instead of wrapping (signed overflow is undefined in C). The
 * settlement scripts saturate the same way (src/budget/lua/lib/int64.lua). */
#ifndef TOLLGATE_SAT_H
#define TOLLGATE_SAT_H

#include <stdint.h>

/* a + b, pinned at INT64_MAX / INT64_MIN. */
static inline int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b < 0 ? INT64_MIN : INT64_MAX;
    return r;
}

/* a * b, pinned at INT64_MAX / INT64_MIN by the sign of the true product. */
static inline int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
    return r;
}

#endif
