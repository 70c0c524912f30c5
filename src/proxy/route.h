/* route.h: request path -> provider, upstream and route class, from config
 * and the providers' tables only (the contract's routing table and "Every
 * paid call is counted"). Nothing in the request but its method and path
 * chooses: Host, absolute-form targets and custom headers cannot. */
#ifndef TOLLGATE_ROUTE_H
#define TOLLGATE_ROUTE_H

#include <stddef.h>
#include "core/util.h"
#include "providers/provider.h"

struct config;
struct cfg_upstream;
struct provider;

struct route {
    size_t upstream; /* index into config->upstreams */
    const struct cfg_upstream *up;
    const struct provider *prov;
    const char *endpoint; /* path as sent upstream (prefix stripped), points into path */
    const struct provider_route *row; /* the provider's row; NULL: unknown */
    enum route_class cls;             /* row's class, ROUTE_UNKNOWN without one */
};

enum route_result {
    ROUTE_OK,
    ROUTE_NOT_FOUND, /* no configured upstream serves this path: 404 */
};

/* path is canonical (path.h): decoded, normalised, no dot segments.
 * method: "POST" etc. (rows may name one). */
enum route_result route_match(const struct config *cfg, const char *method, const char *path,
                              struct route *out);

/* The message of the 403 route_not_metered for a route of class unknown:
 * names the method, the path and the key that lets it through. */
void route_refusal(const struct route *r, const char *method, char *out, size_t n);

/* Whether path starts with a version segment twice (/v1/v1/messages): an
 * SDK base URL that already ended in its version. Writes a message that
 * names the setting to fix into out. */
bool route_base_mistake(const char *path, char *out, size_t n);

/* The dialect for tollgate's own errors on a path, even one that does not
 * route (openai when nothing better fits). */
const struct provider *route_dialect(const struct config *cfg, const char *path);

#endif
