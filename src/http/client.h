/* client.h: one client connection, the HTTP/1.1 server side. Parses
 * requests with http_parser under strict framing (Content-Length together
 * with Transfer-Encoding, duplicate or signed lengths, bad chunk sizes,
 * transfer codings other than exactly "chunked", head lines not ended by
 * CRLF are 400 and close; versions other than 1.0 and 1.1 are 505), enforces
 * the header-size (431), body-size (413), header and body deadlines (which
 * trickled bytes cannot extend), keep-alive and pipelining (one request at a
 * time, in order). A complete request is handed to the handler; the handler
 * answers through client_respond, or client_start / client_write /
 * client_end for a streamed body. */
#ifndef TOLLGATE_CLIENT_H
#define TOLLGATE_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct event_base;
struct evbuffer;
struct client;

struct http_header {
    const char *name; /* NUL-terminated, as received */
    const char *value;
};

/* A complete request; owned by the client, valid until client_end. */
struct http_request {
    int method; /* enum http_method of http_parser */
    const char *method_name;
    const char *target; /* the request-target as received */
    const char *path;   /* target without the query, NUL-terminated copy */
    const char *query;  /* after '?', NULL if none */
    int http_minor;     /* HTTP/1.x */
    const struct http_header *headers;
    size_t n_headers;
    struct evbuffer *body; /* de-chunked */
};

/* Limits and deadlines for client connections. */
struct client_limits {
    size_t max_header_size;
    size_t max_body;
    int header_timeout_ms;
    int body_timeout_ms;
    int keepalive_timeout_ms;
    int send_timeout_ms;
    /* counts this connection while it is open (the listener's cap,
     * listener.h); NULL: not counted */
    atomic_ulong *open;
};

/* What the request handler is told while it owns a request. */
struct client_events {
    /* The client went away (EOF, reset, send timeout) while the request was
     * being answered. After this returns the client is gone: the handler
     * must not call client_* for this request again. */
    void (*gone)(void *ctx);
    /* Buffered output fell below the low mark after client_write returned
     * true for "above the high mark": resume reading upstream. */
    void (*drained)(void *ctx);
};

/* The listener's hooks: the request handler, and tollgate's own error
 * bodies in the dialect of the path ("" for framing errors before a path). */
struct client_hooks {
    void (*request)(struct client *c, struct http_request *req, void *arg);
    void (*error_body)(const char *path, int status, const char *code, const char *message,
                       struct evbuffer *out, void *arg);
    void *arg;
};

/* Takes over fd (non-blocking); with tls (an SSL_CTX), the connection is
 * TLS, server side. lim must outlive the connection and is read at each
 * use, so new limits (a reload) apply to its next request. Returns NULL when
 * out of memory (fd closed). */
struct client *client_new(struct event_base *base, int fd, void *tls,
                          const struct client_limits *lim,
                          const struct client_hooks *hooks) MUST_CHECK;

/* The handler registers itself for the request it was handed. */
void client_attach(struct client *c, const struct client_events *ev, void *ctx);

/* A whole response. headers may be NULL; Content-Length, Connection and
 * framing are added here. */
void client_respond(struct client *c, int status, const struct http_header *h, size_t n,
                    const char *body, size_t len);
/* tollgate's own error in the dialect of the request's path. */
void client_error(struct client *c, int status, const char *code, const char *message);
/* The same with extra response headers (Retry-After, x-should-retry). */
void client_error_with(struct client *c, int status, const char *code, const char *message,
                       const struct http_header *extra, size_t n_extra);

/* Starts a streamed response. content_length < 0: chunked (HTTP/1.1) or
 * close-delimited (HTTP/1.0). */
void client_start(struct client *c, int status, const struct http_header *h, size_t n,
                  long long content_length);
/* Queues body bytes. Returns true when the output buffer is above the high
 * mark: the caller should stop producing until drained. */
bool client_write(struct client *c, const char *buf, size_t len);
/* Ends the response. complete=false: the body is truncated, so the client
 * must see an error: no final chunk, and the connection is closed. */
void client_end(struct client *c, bool complete);

/* Headers lookup (case-insensitive); *count gets how many matched. */
const char *client_header(const struct http_request *r, const char *name, int *count);

/* Connections open in the process. */
unsigned long client_open_count(void);
/* Closes every connection accepted on the calling thread (shutdown): a
 * request in flight is told its client is gone. Not from a client callback. */
void client_close_all(void);

#endif
