/* percent.h: the one percent-decoder (%XX, RFC 3986), for the Redis URL,
 * the admin API's paths and queries and the report's URL. (proxy/path.c
 * applies its own narrower rule to request paths: it decodes only what
 * reads the same either way, and says why.) */
#ifndef TOLLGATE_PERCENT_H
#define TOLLGATE_PERCENT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

/* The value of one hex digit, or -1. */
int percent_hex(char c);

/* Decodes s[0..n) into out (cap bytes, NUL-terminated); plus_is_space: a
 * '+' is a space (form-encoded queries). Returns the decoded length, or -1
 * on a '%' not followed by two hex digits, an encoded NUL (%00), or when
 * out is too small. */
int percent_decode(const char *s, size_t n, bool plus_is_space, char *out, size_t cap) MUST_CHECK;

/* The same into a malloc'd copy (the caller frees it); NULL on a bad
 * escape or no memory. */
char *percent_decode_dup(const char *s, size_t n) MUST_CHECK;

#endif
