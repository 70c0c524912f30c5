/* upstream.h: HTTP/1.1 client to one configured upstream, over TLS
 * (OpenSSL 3: peer and hostname verified against the system CAs plus
 * ca_file, SNI, session resumption) or plain TCP, with a keep-alive pool.
 * One pool per upstream per worker: no locks. The response is parsed with
 * http_parser (strict framing: TE+CL, bad Content-Length or chunk sizes are
 * errors) and its body handed over as it arrives, de-chunked. */
#ifndef TOLLGATE_UPSTREAM_H
#define TOLLGATE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct event_base;
struct evdns_base;
struct evbuffer;
struct cfg_upstream;
struct upstream_pool;
struct upstream_req;

struct upstream_limits {
    int connect_timeout_ms;    /* TCP connect + TLS handshake */
    int first_byte_timeout_ms; /* request written -> first response byte */
    int idle_timeout_ms;       /* gap between two reads of the response */
    int pool_size;             /* idle connections kept */
};

/* How an exchange ended; on_done reports exactly one. */
enum upstream_result {
    UPSTREAM_OK,              /* the response was complete (framing proved it) */
    UPSTREAM_CONNECT_FAILED,  /* DNS, refused, TLS verify failed: nothing sent -> 502 */
    UPSTREAM_CONNECT_TIMEOUT, /* connect or TLS handshake too slow -> 504 */
    UPSTREAM_HEAD_TIMEOUT,    /* no response headers in time -> 504 */
    UPSTREAM_IDLE_TIMEOUT,    /* body stalled between reads */
    UPSTREAM_RESET,           /* closed or reset before the response was complete */
    UPSTREAM_BAD_RESPONSE,    /* malformed status line, headers or framing -> 502 */
};

struct upstream_header {
    const char *name; /* NUL-terminated, as received */
    const char *value;
};

struct upstream_handlers {
    /* Response headers arrived. Hop-by-hop headers (Connection, Keep-Alive,
     * TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*, and names listed in
     * Connection) and Content-Length are removed; content_length is -1 when
     * the body is chunked or runs to EOF (0 for a 204/304 without one; for
     * HEAD it is the header's value though no body follows). 1xx responses
     * are skipped. The arrays live only during the call. */
    void (*on_head)(void *arg, int status, const struct upstream_header *h, size_t n,
                    long long content_length);
    /* Body bytes, de-chunked, as they arrive; live only during the call. */
    void (*on_body)(void *arg, const char *buf, size_t len);
    /* Exactly once, last, unless upstream_cancel was called first. errstr
     * is a short reason for logs. The exchange is gone after this returns. */
    void (*on_done)(void *arg, enum upstream_result res, const char *errstr);
};

/* Builds the pool for one upstream (loads the TLS context). Returns NULL and
 * writes err when the TLS setup fails (bad ca_file). */
struct upstream_pool *upstream_pool_new(struct event_base *base, struct evdns_base *dns,
                                        const struct cfg_upstream *cfg,
                                        const struct upstream_limits *lim, char *err,
                                        size_t errlen) MUST_CHECK;
/* Closes idle connections; exchanges in flight must be cancelled first. */
void upstream_pool_free(struct upstream_pool *p);

/* Sends request (the complete bytes: request line, headers with Host and
 * Content-Length, body), taking ownership of the evbuffer (on NULL it stays
 * the caller's). Uses an idle
 * pooled connection when one is alive, else connects. is_head: the request
 * method is HEAD (no body in the response). Callbacks never run from inside
 * this call. Returns NULL only when out of memory. */
struct upstream_req *upstream_send(struct upstream_pool *p, struct evbuffer *request, bool is_head,
                                   const struct upstream_handlers *h, void *arg) MUST_CHECK;

/* Backpressure: while paused, no more body is read from the upstream or
 * delivered (even mid-batch when called from on_body), and the response
 * deadlines are suspended: the client is slow, not the upstream. */
void upstream_pause(struct upstream_req *r, bool paused);

/* Abandons the exchange: no callback runs after this, the connection is
 * closed (never reused mid-response). */
void upstream_cancel(struct upstream_req *r);

/* For metrics and tests: connections opened and TLS sessions resumed. */
unsigned long upstream_pool_connects(const struct upstream_pool *p);
unsigned long upstream_pool_resumed(const struct upstream_pool *p);

#endif
