/* redis_url.c: parses the [redis] url forms listed in redis_url.h, strictly:
 * every number checked for range, every %XX escape checked, nothing after
 * what the form allows. */
#include "redis/redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/percent.h"

static const struct {
    const char *prefix;
    enum redis_url_kind kind;
    int port; /* the default */
} schemes[] = {
    {"redis://", REDIS_URL_TCP, 6379},
    {"rediss://", REDIS_URL_TLS, 6379},
    {"unix://", REDIS_URL_UNIX, 0},
    {"redis-sentinel://", REDIS_URL_SENTINEL, 26379},
    {"redis-cluster://", REDIS_URL_CLUSTER, 6379},
};

static int parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* A host name or address: letters, digits, '-', '.', '_' (names); an
 * IPv6 address is bracketed and holds hex digits, ':' and '.'. */
static bool host_ok(const char *h, bool v6)
{
    if (!*h)
        return false;
    for (const char *p = h; *p; p++) {
        char c = *p;
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        ok = ok || (v6 ? c == ':' || c == '.' || c == '%' : c == '-' || c == '.' || c == '_');
        if (!ok)
            return false;
    }
    return true;
}

/* One "host[:port]" or "[v6][:port]" of s[0..n) into a. */
static int parse_addr(const char *s, size_t n, int defport, struct redis_addr *a)
{
    const char *end = s + n, *port = NULL;
    bool v6 = n > 0 && s[0] == '[';
    if (v6) {
        const char *rb = memchr(s, ']', n);
        if (!rb || (rb + 1 < end && rb[1] != ':'))
            return -1;
        port = rb + 1 < end ? rb + 2 : NULL;
        a->host = strndup(s + 1, (size_t)(rb - s - 1));
    } else {
        const char *colon = memchr(s, ':', n);
        port = colon ? colon + 1 : NULL;
        a->host = strndup(s, (size_t)((colon ? colon : end) - s));
    }
    if (!a->host || !host_ok(a->host, v6))
        return -1;
    a->port = defport;
    if (port && parse_int(port, (size_t)(end - port), 1, 65535, &a->port) < 0)
        return -1;
    return 0;
}

/* "[user]:password@" at the start of s[0..n), if any; returns its length. */
static int parse_userinfo(const char *s, size_t n, struct redis_url *u, size_t *used)
{
    const char *at = memchr(s, '@', n);
    *used = 0;
    if (!at)
        return 0;
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (!colon)
        return -1; /* "user@" alone: Redis has no user without a password */
    if (colon > s && !(u->user = percent_decode_dup(s, (size_t)(colon - s))))
        return -1;
    if (!(u->password = percent_decode_dup(colon + 1, (size_t)(at - colon - 1))))
        return -1;
    *used = (size_t)(at - s) + 1;
    return 0;
}

/* unix: "/path[?db=N&password=P]" (the query form predates userinfo). */
static int parse_unix(const char *p, struct redis_url *u)
{
    const char *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n < 2 || p[0] != '/' || !(u->path = percent_decode_dup(p, n)))
        return -1;
    for (q = q ? q + 1 : NULL; q && *q;) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 3 && strncmp(q, "db=", 3) == 0) {
            if (parse_int(q + 3, len - 3, 0, 65535, &u->db) < 0)
                return -1;
        } else if (len > 9 && strncmp(q, "password=", 9) == 0 && !u->password) {
            if (!(u->password = percent_decode_dup(q + 9, len - 9)))
                return -1;
        } else {
            return -1;
        }
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *u, char *err, size_t errlen)
{
    size_t k, used;
    memset(u, 0, sizeof(*u));
    for (k = 0; url && k < ARRAY_LEN(schemes); k++)
        if (strncmp(url, schemes[k].prefix, strlen(schemes[k].prefix)) == 0)
            break;
    if (!url || k == ARRAY_LEN(schemes)) {
        snprintf(err, errlen,
                 "bad redis url: want redis://, rediss://, unix://, redis-sentinel:// or "
                 "redis-cluster://");
        return -1;
    }
    u->kind = schemes[k].kind;
    const char *p = url + strlen(schemes[k].prefix);
    /* userinfo ends at the first '@' before the path */
    const char *slash = u->kind == REDIS_URL_UNIX ? NULL : strchr(p, '/');
    size_t head = slash ? (size_t)(slash - p) : strlen(p);
    if (u->kind == REDIS_URL_UNIX) {
        const char *at = strchr(p, '@'), *first_slash = strchr(p, '/');
        head = at && (!first_slash || at < first_slash) ? (size_t)(at - p) + 1 : 0;
    }
    if (parse_userinfo(p, head, u, &used) < 0)
        goto bad;
    p += used;
    if (u->kind == REDIS_URL_UNIX) {
        if (parse_unix(p, u) < 0)
            goto bad;
        return 0;
    }
    slash = strchr(p, '/');
    const char *hend = slash ? slash : p + strlen(p);
    /* hosts: one, or a comma-separated list for sentinels and clusters */
    bool many = u->kind == REDIS_URL_SENTINEL || u->kind == REDIS_URL_CLUSTER;
    for (const char *h = p; h < hend;) {
        const char *comma = memchr(h, ',', (size_t)(hend - h));
        const char *e = comma ? comma : hend;
        if (u->naddrs == REDIS_URL_MAX_ADDRS || (!many && u->naddrs == 1) ||
            parse_addr(h, (size_t)(e - h), schemes[k].port, &u->addrs[u->naddrs++]) < 0)
            goto bad;
        h = comma ? comma + 1 : hend;
        if (comma && h == hend)
            goto bad; /* a trailing comma */
    }
    if (u->naddrs == 0)
        goto bad;
    const char *rest = slash ? slash + 1 : NULL;
    if (u->kind == REDIS_URL_SENTINEL) {
        /* /MASTER[/db] */
        const char *s2 = rest ? strchr(rest, '/') : NULL;
        size_t mlen = rest ? (s2 ? (size_t)(s2 - rest) : strlen(rest)) : 0;
        if (mlen == 0 || !(u->master = percent_decode_dup(rest, mlen)) ||
            strpbrk(u->master, " \r\n"))
            goto bad;
        rest = s2 ? s2 + 1 : NULL;
    } else if (u->kind == REDIS_URL_CLUSTER && rest && *rest) {
        goto bad; /* a cluster has only db 0 */
    }
    if (rest && *rest && parse_int(rest, strlen(rest), 0, 65535, &u->db) < 0)
        goto bad;
    return 0;
bad:
    /* never echo the url: it may carry a password */
    snprintf(err, errlen,
             "bad redis url (want redis[s]://[user:password@]host[:port][/db], "
             "unix://[user:password@]/path[?db=N], "
             "redis-sentinel://[user:password@]host:port,.../MASTER[/db] or "
             "redis-cluster://[user:password@]host:port,...)");
    return -1;
}

void redis_url_free(struct redis_url *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < REDIS_URL_MAX_ADDRS; i++)
        free(u->addrs[i].host);
    free(u->path);
    free(u->master);
    free(u->user);
    if (u->password) {
        explicit_bzero(u->password, strlen(u->password));
        free(u->password);
    }
    memset(u, 0, sizeof(*u));
}

void redis_url_redact(const char *url, char *buf, size_t n)
{
    struct redis_url u;
    char err[8];
    if (!url) {
        snprintf(buf, n, "(none)");
        return;
    }
    int ok = redis_url_parse(url, &u, err, sizeof(err));
    redis_url_free(&u);
    const char *scheme_end = strstr(url, "://");
    size_t slen = scheme_end ? (size_t)(scheme_end - url) + 3 : 0;
    if (ok < 0) {
        snprintf(buf, n, "%.*s(unparsable)", (int)slen, url);
        return;
    }
    /* userinfo (up to '@' before the path) and a query password, masked */
    const char *p = url + slen, *at = strchr(p, '@');
    const char *path = strchr(p, '/');
    if (strncmp(url, "unix://", 7) == 0)
        path = at && (!path || at < path) ? strchr(at, '/') : path;
    if (at && (!path || at < path))
        snprintf(buf, n, "%.*s***@%s", (int)slen, url, at + 1);
    else
        snprintf(buf, n, "%s", url);
    /* the query's password= (unix urls), not a path that holds those letters */
    char *q = strncmp(buf, "unix://", 7) == 0 ? strchr(buf, '?') : NULL, *pw = NULL;
    for (char *p2 = q; p2 && !pw; p2 = strchr(p2 + 1, '&'))
        if (strncmp(p2 + 1, "password=", 9) == 0)
            pw = p2 + 1;
    if (pw) {
        char *end = strchr(pw, '&');
        char tail[256];
        snprintf(tail, sizeof(tail), "%s", end ? end : "");
        snprintf(pw, n - (size_t)(pw - buf), "password=***%s", tail);
    }
}

void redis_addr_format(const struct redis_addr *a, char *buf, size_t n)
{
    snprintf(buf, n, strchr(a->host, ':') ? "[%s]:%d" : "%s:%d", a->host, a->port);
}
