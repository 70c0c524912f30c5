/* tenant_usage.h: GET /v1/tollgate/usage on the API listener: a tenant's (and
 * optionally a user's) usage and limits this period, for the app to show its
 * customer ("80% of your included tokens"). Usage and limits only: never a
 * cost, a price or a margin, so the app needs no admin token. */
#ifndef TOLLGATE_TENANT_USAGE_H
#define TOLLGATE_TENANT_USAGE_H

#include <stdbool.h>

struct client;
struct http_request;
struct worker;

#define TENANT_USAGE_PATH "/v1/tollgate/usage"

/* Whether path (as the client sent it, query included) is the usage
 * endpoint: the proxy hands such requests here instead of routing them. */
bool tenant_usage_is(const char *path);

/* Answers the request, after the same checks as a proxied one (client
 * token, tenant and user headers, tenant policy, plan header): 200 with the
 * JSON, or tollgate's error in the OpenAI dialect (405 but GET, 400, 403,
 * 503 when the budget store does not answer). Reads Redis asynchronously;
 * the answer is given once, or never if the client left. */
void tenant_usage_handle(struct client *c, const struct http_request *hr, struct worker *w);

#endif
