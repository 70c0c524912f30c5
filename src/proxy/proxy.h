/* proxy.h: the request path, from a parsed client request to the usage
 * record. See proxy.c for the steps in order. */
#ifndef TOLLGATE_PROXY_H
#define TOLLGATE_PROXY_H

#include "http/client.h"

struct evbuffer;
struct worker;

/* client_hooks.request for the API listener; arg is the struct worker. */
void proxy_handle(struct client *c, struct http_request *req, void *arg);

/* client_hooks.error_body: tollgate's own errors in the path's dialect. */
void proxy_error_body(const char *path, int status, const char *code, const char *message,
                      struct evbuffer *out, void *arg);

/* From the worker's tick: renews the leases of requests in flight (every
 * third of the lease TTL) and cuts requests past max_request_time. */
void proxy_tick(struct worker *w);

/* Frees what the worker's requests left for reuse (worker_join). */
void proxy_worker_free(struct worker *w);

/* Shutdown deadline: cuts the requests still reading an answer for a
 * client that left (drain_on_abort), settling them on their estimate. */
void proxy_cut_draining(struct worker *w);

#endif
