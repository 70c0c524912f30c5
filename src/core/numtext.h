/* numtext.h: numbers and short strings written into fixed buffers without
 * printf, for the text built on every request (Redis keys and arguments,
 * counters): vsnprintf was a fifth of tollgate's instructions per request.
 *
 * The put functions append at `at`, keep the text NUL-terminated and return
 * the new end, or NULL when it would not fit before `end` (the end of the
 * buffer); a NULL `at` passes through, so a chain of puts is checked once. */
#ifndef TOLLGATE_NUMTEXT_H
#define TOLLGATE_NUMTEXT_H

#include <stddef.h>
#include <stdint.h>

#define NUMTEXT_I64_MAX 21 /* "-9223372036854775808" and its NUL */

/* The decimal text of v into buf (NUMTEXT_I64_MAX bytes); returns its length. */
size_t numtext_i64(char *buf, int64_t v);

char *numtext_put(char *at, const char *end, const char *s, size_t n);
char *numtext_put_str(char *at, const char *end, const char *s);
/* v (>= 0) in decimal, zero-padded to at least width digits. */
char *numtext_put_uint(char *at, const char *end, uint64_t v, int width);

#endif
