/* fdlimit.h: file descriptors against max_connections. At start the soft
 * RLIMIT_NOFILE is raised to the hard limit where allowed, and the API
 * connections the process may hold open are max_connections, or fewer when
 * the descriptors cannot hold that many (then a warning says so). */
#ifndef TOLLGATE_FDLIMIT_H
#define TOLLGATE_FDLIMIT_H

#include <stddef.h>
#include "core/util.h"

/* Fewer API connections than this fit: refuse to start. */
#define FDLIMIT_MIN 16

/* What the process holds besides API connections. */
struct fdlimit_need {
    int max_connections; /* [server] max_connections */
    int workers;
    long upstream_idle; /* idle pooled upstream connections: workers * upstreams * pool size */
    int admin;          /* admin connections (ADMIN_MAX_CONNECTIONS, 0 when off) */
};

/* API connections that fit in nofile descriptors. Each holds two (the
 * client's and, while proxied, its upstream's); the idle pools, the admin
 * connections and a reserve (stdio, records, journals, Redis, DNS, event
 * loops: a base plus some per worker) are set aside first. May be <= 0. */
long fdlimit_fit(unsigned long long nofile, const struct fdlimit_need *n);

/* Raises the soft limit to the hard one where allowed; *nofile gets the
 * limit in effect. Returns the API connections to allow (max_connections or
 * the fit, whichever is less; *clamped says which), or -1 with err when
 * fewer than FDLIMIT_MIN fit. */
int fdlimit_apply(const struct fdlimit_need *n, unsigned long long *nofile, int *clamped, char *err,
                  size_t errlen) MUST_CHECK;

#endif
