/* http_client.h: a small blocking HTTP/1.1 client for threads and commands
 * that have no event loop (the export threads, `tollgate export`,
 * `tollgate health`): one request per connection, http or https (verified
 * against the system CAs), every step under one deadline. Never used on an
 * event loop. */
#ifndef TOLLGATE_HTTP_CLIENT_H
#define TOLLGATE_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct tls_client;
struct lookup;

/* Where requests go, parsed once from an http[s]:// URL. */
struct http_target {
    bool tls;
    char *host;
    int port;
    char *path;            /* request target, "/" when the URL has none */
    struct tls_client *tc; /* https only; used by one thread at a time */
    struct lookup *lookup; /* a name lookup that outlived its deadline, still running */
};

/* Parses url (http[s]://host[:port][/path]) and, for https, builds the TLS
 * context (call on the main thread: it loads the trust store), trusting
 * ca_file's CAs besides the system's when it is not NULL. 0, or -1 with err
 * (which never echoes the URL: it may hold a secret). */
int http_target_init(struct http_target *t, const char *url, const char *ca_file, char *err,
                     size_t errlen) MUST_CHECK;
void http_target_free(struct http_target *t);

/* Sends method (GET, POST) to t with, when type is not NULL, body as
 * Content-Type type and, when auth is not NULL, an "Authorization: Bearer
 * auth" header. Everything (resolve, connect, TLS, send, the response head)
 * must finish within timeout_ms; a name lookup runs on a thread of its own
 * so that it too is bounded (one still running from an earlier request is
 * waited for, never doubled: at most one per target). Returns the response status, or -1 with err
 * saying what failed ("connect: Connection refused", "timeout waiting for
 * the response: no answer within N ms", "closed before a response"). */
int http_request(struct http_target *t, const char *method, const char *type, const char *auth,
                 const char *body, size_t len, int timeout_ms, char *err, size_t errlen) MUST_CHECK;

#endif
