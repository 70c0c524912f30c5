/* path.h: the one canonical form of a request path, made once before
 * routing. What is routed and metered is exactly what is forwarded, so no
 * spelling the upstream would read as a metered endpoint (an encoded
 * letter, other case, a trailing slash, ";params", a ".json" suffix) can
 * slip past the route as an unmetered one. */
#ifndef TOLLGATE_PATH_H
#define TOLLGATE_PATH_H

#include <stddef.h>
#include "core/util.h"

/* The longest canonical path tollgate forwards; longer ones get 414. */
#define PATH_MAX_LEN 2048

enum path_result {
    PATH_OK,
    PATH_BAD,      /* cannot be made canonical: 400 */
    PATH_TOO_LONG, /* the canonical form is over PATH_MAX_LEN: 414 */
};

/* Canonicalises raw (a request target's path, without the query) into out
 * (outlen bytes; PATH_MAX_LEN + 1 always suffices). The canonical form:
 *   - percent-encoded unreserved characters (A-Z a-z 0-9 - . _ ~) and ':'
 *     and '@' decoded; any other encoding (%2F, %3B, %20, %25, ...) is BAD;
 *   - literal bytes limited to RFC 3986 pchar without ';' (matrix
 *     parameters are BAD), so no space, control, non-ASCII or backslash;
 *   - no empty, "." or ".." segments (after decoding); one trailing '/'
 *     is dropped ("/" itself stays);
 *   - the fixed words of the providers' paths (v1, chat, completions,
 *     messages, models, generateContent, ...) spelled in their own case;
 *     a fixed word with a suffix (completions.json) is BAD.
 * On PATH_BAD, *why (when why is not NULL) points to a static reason for
 * the client. Canonicalising a canonical path gives it back unchanged. */
enum path_result path_canonical(const char *raw, char *out, size_t outlen,
                                const char **why) MUST_CHECK;

#endif
