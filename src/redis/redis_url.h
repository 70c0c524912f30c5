/* redis_url.h: the one parser of [redis] url, used by the daemon (redis.c),
 * the config check (-t) and the report and admin API (report.c). Forms:
 *   redis://[user:password@]host[:port][/db]        plain TCP (port 6379)
 *   rediss://[user:password@]host[:port][/db]       TLS (port 6379)
 *   unix://[user:password@]/path[?db=N&password=P]  a unix socket
 *   redis-sentinel://[user:password@]h1[:26379],h2[:26379]/MASTER[/db]
 *   redis-cluster://[user:password@]h1[:6379],h2[:6379]
 * user and password are %XX-decoded ("user:" may be empty: password only);
 * a host is a name, an IPv4 address or [an IPv6 address]. Pure parsing:
 * no I/O, no name resolution. */
#ifndef TOLLGATE_REDIS_URL_H
#define TOLLGATE_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

enum redis_url_kind {
    REDIS_URL_TCP,      /* redis:// */
    REDIS_URL_TLS,      /* rediss:// */
    REDIS_URL_UNIX,     /* unix:// */
    REDIS_URL_SENTINEL, /* redis-sentinel://: addrs are the sentinels */
    REDIS_URL_CLUSTER,  /* redis-cluster://: addrs are seed nodes */
};

#define REDIS_URL_MAX_ADDRS 16

struct redis_addr {
    char *host; /* without brackets */
    int port;
};

struct redis_url {
    enum redis_url_kind kind;
    struct redis_addr addrs[REDIS_URL_MAX_ADDRS]; /* one for TCP and TLS, none for UNIX */
    size_t naddrs;
    char *path;     /* UNIX */
    char *master;   /* SENTINEL: the master's name */
    char *user;     /* NULL: the default user */
    char *password; /* NULL: no AUTH */
    int db;         /* 0..65535 (CLUSTER: always 0) */
};

/* Parses url into *u (zeroed first; free with redis_url_free even on
 * failure). Returns -1 and writes why into err, never echoing the url (it
 * may carry a password). */
int redis_url_parse(const char *url, struct redis_url *u, char *err, size_t errlen) MUST_CHECK;
void redis_url_free(struct redis_url *u);

/* url with its password (and user) replaced by "***", for display; a url
 * that does not parse is shown only by its scheme. */
void redis_url_redact(const char *url, char *buf, size_t n);

/* "host:port" or "[v6]:port" of a, or the unix path, for log lines. */
void redis_addr_format(const struct redis_addr *a, char *buf, size_t n);

#endif
