/* headers.h: the one table of header rules for both directions, as h2o's
 * token table is: which headers are hop-by-hop, which tollgate rewrites on
 * the way up or frames itself on the way down. proxy.c (request) and upstream.c (response) both
 * ask it, so the two directions cannot disagree. Identity headers
 * (tenant, user, feature, plan) are named by the config and auth headers
 * belong to the providers (provider.h), so proxy.c adds those itself. */
#ifndef TOLLGATE_HEADERS_H
#define TOLLGATE_HEADERS_H

#include <stdbool.h>

/* How a known header is treated. */
enum header_flag {
    HEADER_HOP = 1u << 0,       /* hop-by-hop (RFC 9110 7.6.1): dropped both ways */
    HEADER_DROP_UP = 1u << 1,   /* request: tollgate writes its own (Host, framing) */
    HEADER_DROP_DOWN = 1u << 2, /* response: tollgate frames the body itself */
};

/* The flags of name (case-insensitive); 0 for a header with no rule. Every
 * "proxy-*" header counts as hop-by-hop; every "x-tollgate-*" header is
 * tollgate's own and never goes upstream. */
unsigned header_flags(const char *name);

/* True when name is one of the tokens of a Connection header value
 * ("close, X-Foo"); list may be NULL. */
bool header_in_list(const char *list, const char *name);

/* The request rule: drop name on the way upstream? connection: the
 * request's Connection header (NULL: none). */
bool header_drop_up(const char *name, const char *connection);

/* The response rule: drop name on the way to the client? connection is
 * matched like header_drop_up's. */
bool header_drop_down(const char *name, const char *connection);

#endif
