/* fuzz_redis_url.c: libFuzzer target for the [redis] url parser
 * (redis_url.c). The input is the url (cut at its first NUL). Checked
 * (abort on violation): a refusal says why and never echoes the input's
 * password; an accepted url has what its kind needs (hosts with ports in
 * range, or a path; a master name for sentinels), a db in range, and its
 * redacted form never holds a password of 4 bytes or more. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis/redis_url.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_redis_url: invariant failed: %s (line %d)\n", #cond, __LINE__);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1), err[512] = "", red[4096];
    struct redis_url u;
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    int rc = redis_url_parse(url, &u, err, sizeof(err));
    if (rc < 0) {
        CHECKF(err[0] != '\0');
    } else {
        CHECKF(u.db >= 0 && u.db <= 65535);
        if (u.kind == REDIS_URL_UNIX) {
            CHECKF(u.path && u.path[0] == '/' && u.naddrs == 0);
        } else {
            CHECKF(u.naddrs >= 1 && u.naddrs <= REDIS_URL_MAX_ADDRS);
            CHECKF(u.kind == REDIS_URL_SENTINEL || u.kind == REDIS_URL_CLUSTER || u.naddrs == 1);
            for (size_t i = 0; i < u.naddrs; i++)
                CHECKF(u.addrs[i].host && u.addrs[i].host[0] && u.addrs[i].port >= 1 &&
                       u.addrs[i].port <= 65535);
        }
        CHECKF(u.kind != REDIS_URL_SENTINEL || (u.master && u.master[0]));
        CHECKF(u.kind != REDIS_URL_CLUSTER || u.db == 0);
        redis_url_redact(url, red, sizeof(red));
        /* the password's own place is masked: it shows up no more often
         * than in the url (where it may also be part of a host or path),
         * and less often when it was written there verbatim, not %XX-encoded
         * ("redis://:%41AAA@AAAA" keeps the host AAAA) */
        if (u.password && strlen(u.password) >= 4) {
            size_t in_url = count(url, u.password), in_red = count(red, u.password);
            CHECKF(in_red <= in_url);
            CHECKF(strstr(red, "***") != NULL);
            if (!strchr(url, '%'))
                CHECKF(in_url == 0 ? in_red == 0 : in_red < in_url);
        }
    }
    redis_url_free(&u);
    free(url);
    return 0;
}
