/* route.h: request path -> provider and upstream, from config only (the
 * contract's routing table). Nothing in the request but its path chooses
 * the upstream: Host, absolute-form targets and custom headers cannot. */
#ifndef TOLLGATE_ROUTE_H
#define TOLLGATE_ROUTE_H

#include <stddef.h>
#include "core/util.h"

struct config;
struct cfg_upstream;
struct provider;

struct route {
    size_t upstream; /* index into config->upstreams */
    const struct cfg_upstream *up;
    const struct provider *prov;
    const char *endpoint; /* path as sent upstream (prefix stripped), points into path */
};

enum route_result {
    ROUTE_OK,
    ROUTE_NOT_FOUND, /* no configured upstream serves this path: 404 */
};

/* path is canonical (path.h): decoded, normalised, no dot segments. */
enum route_result route_match(const struct config *cfg, const char *path, struct route *out);

/* The dialect for tollgate's own errors on a path, even one that does not
 * route (openai when nothing better fits). */
const struct provider *route_dialect(const struct config *cfg, const char *path);

#endif
