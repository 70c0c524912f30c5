/* fdlimit.c: RLIMIT_NOFILE against what max_connections promises. A
 * default of 10000 connections under the usual soft limit of 1024 used to
 * end in EMFILE at accept; now the limit is raised where allowed and
 * max_connections lowered to what fits, at start, with a line saying so. */
#include "core/fdlimit.h"

#include <stdio.h>
#include <sys/resource.h>

#define RESERVE_BASE 32       /* stdio, records file, signals, main loop, admin listener */
#define RESERVE_PER_WORKER 16 /* loop, notify pipe, listeners, Redis, journal, DNS, webhooks */

long fdlimit_fit(unsigned long long nofile, const struct fdlimit_need *n)
{
    long long left = (long long)(nofile > (1ULL << 40) ? (1ULL << 40) : nofile);
    left -= RESERVE_BASE + (long long)RESERVE_PER_WORKER * n->workers;
    left -= n->upstream_idle + n->admin;
    return left <= 0 ? 0 : (long)(left / 2);
}

int fdlimit_apply(const struct fdlimit_need *n, unsigned long long *nofile, int *clamped, char *err,
                  size_t errlen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE) failed");
        return -1;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    *nofile = rl.rlim_cur == RLIM_INFINITY ? (1ULL << 40) : (unsigned long long)rl.rlim_cur;
    long fit = fdlimit_fit(*nofile, n);
    if (fit < FDLIMIT_MIN) {
        snprintf(err, errlen,
                 "descriptors: the limit is %llu, and %d workers with %ld idle upstream "
                 "connections (upstream_pool_size) leave room for %ld connections: raise "
                 "`ulimit -n` or lower workers or upstream_pool_size",
                 *nofile, n->workers, n->upstream_idle, fit);
        return -1;
    }
    *clamped = fit < n->max_connections;
    return *clamped ? (int)fit : n->max_connections;
}
