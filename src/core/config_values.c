/* config_values.c: turns one value of proxy.conf, as text, into what the
 * config stores: sizes, durations, host:port and URLs, names and prefixes,
 * the downgrade list, alert percents, and env: references. No file, no key
 * table: each function sees one value and writes its complaint (without
 * file:line or key) into msg, so config.c reports it where it was read. */
#include "core/config_values.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "cache/cache_key.h"
#include "core/log.h"
#include "redis/redis.h"
#include "redis/redis_url.h"

/* -------- small parsers -------- */

char *config_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int config_parse_u64(const char *s, unsigned long long *out, const char **end)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *end = s;
    return 0;
}

int config_parse_size(const char *s, size_t *out)
{
    unsigned long long v, mul = 1;
    const char *end;
    if (!s || config_parse_u64(s, &v, &end) < 0)
        return -1;
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'k':
        mul = 1ULL << 10;
        end++;
        break;
    case 'm':
        mul = 1ULL << 20;
        end++;
        break;
    case 'g':
        mul = 1ULL << 30;
        end++;
        break;
    default:
        return -1;
    }
    if (*end || v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

int config_parse_duration_ms(const char *s, int *out)
{
    unsigned long long v, mul;
    const char *end;
    if (!s || config_parse_u64(s, &v, &end) < 0)
        return -1;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else if (*end == '\0' && v == 0)
        mul = 1; /* "0" needs no unit; any other bare number is ambiguous */
    else
        return -1;
    if (v > (unsigned long long)INT_MAX / mul)
        return -1;
    *out = (int)(v * mul);
    return 0;
}

static bool host_ok(const char *h, size_t len, bool v6)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (v6 ? !(isxdigit(ch) || ch == ':' || ch == '.')
               : !(isalnum(ch) || ch == '.' || ch == '-' || ch == '_' || ch == '*'))
            return false;
    }
    return true;
}

static int parse_port(const char *s, size_t len, int *out)
{
    int v = 0;
    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

/* host:port, or [v6]:port. */
static int parse_hostport(const char *s, size_t len, int *port)
{
    const char *colon;
    if (len && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (!rb || !host_ok(s + 1, (size_t)(rb - s - 1), true) || rb + 1 >= s + len || rb[1] != ':')
            return -1;
        colon = rb + 1;
    } else {
        colon = memrchr(s, ':', len);
        if (!colon || !host_ok(s, (size_t)(colon - s), false))
            return -1;
    }
    return parse_port(colon + 1, len - (size_t)(colon + 1 - s), port);
}

int config_parse_url(const char *url, bool *tls, char **host, int *port, char **base_path)
{
    const char *p;
    bool t;
    if (strncmp(url, "https://", 8) == 0) {
        t = true;
        p = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        t = false;
        p = url + 7;
    } else {
        return -1;
    }
    for (const char *q = p; *q; q++)
        if (strchr("?#@\\", *q) || isspace((unsigned char)*q) || iscntrl((unsigned char)*q))
            return -1;
    size_t alen = strcspn(p, "/");
    const char *hs = p, *he, *after;
    bool v6 = p[0] == '[';
    if (v6) {
        const char *rb = memchr(p, ']', alen);
        if (!rb)
            return -1;
        hs = p + 1;
        he = rb;
        after = rb + 1;
    } else {
        const char *colon = memchr(p, ':', alen);
        he = colon ? colon : p + alen;
        after = he;
    }
    if (!host_ok(hs, (size_t)(he - hs), v6))
        return -1;
    int pt = t ? 443 : 80;
    if (after < p + alen) {
        if (*after != ':' || parse_port(after + 1, (size_t)(p + alen - after - 1), &pt) < 0)
            return -1;
    }
    const char *bp = p + alen;
    size_t blen = strlen(bp);
    while (blen && bp[blen - 1] == '/')
        blen--;
    char *h = strndup(hs, (size_t)(he - hs));
    char *b = strndup(bp, blen);
    if (!h || !b) {
        free(h);
        free(b);
        return -1;
    }
    *tls = t;
    *host = h;
    *port = pt;
    *base_path = b;
    return 0;
}

/* -------- checks and setters named in the table -------- */

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

int config_check_log_level(const char *v, char *msg, size_t n)
{
    if (log_level_parse(v) >= 0)
        return 0;
    snprintf(msg, n, "'%s' is not one of error, warn, info, debug", v);
    return -1;
}

int config_check_redis_url(const char *v, char *msg, size_t n)
{
    /* the daemon's own parser, and what its connection layer can reach */
    struct redis_url u;
    int rc = redis_url_parse(v, &u, msg, n) == 0 && redis_url_supported(&u, msg, n) ? 0 : -1;
    redis_url_free(&u);
    return rc;
}

int config_check_webhook(const char *v, char *msg, size_t n)
{
    bool tls;
    char *host, *base;
    int port;
    if (config_parse_url(v, &tls, &host, &port, &base) == 0) {
        free(host);
        free(base);
        return 0;
    }
    /* Webhook URLs carry a secret in their path: never echo them. */
    snprintf(msg, n, "expected an http:// or https:// URL");
    return -1;
}

int config_check_token(const char *v, char *msg, size_t n)
{
    for (const char *q = v; *q; q++) {
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            snprintf(msg, n, "a token may not hold spaces or control characters");
            return -1;
        }
    }
    return 0;
}

int config_check_prefix(const char *v, char *msg, size_t n)
{
    if (v[0] != '/' || v[1] == '\0' || v[strlen(v) - 1] == '/') {
        snprintf(msg, n, "must look like /name (a leading '/', no trailing '/')");
        return -1;
    }
    for (const char *q = v; *q; q++) {
        if (!isalnum((unsigned char)*q) && !strchr("/-._~", *q)) {
            snprintf(msg, n, "may only hold letters, digits and / - . _ ~");
            return -1;
        }
    }
    size_t seg = strcspn(v + 1, "/");
    if ((seg == 2 && strncmp(v + 1, "v1", 2) == 0) ||
        (seg == 6 && strncmp(v + 1, "v1beta", 6) == 0)) {
        snprintf(msg, n, "%s would take over the provider routes (/v1, /v1beta)", v);
        return -1;
    }
    return 0;
}

/* Plan and tenant names: they appear in Redis keys and metrics labels. */
static bool name_ok(const char *v)
{
    if (!*v || strlen(v) > CONFIG_NAME_MAX)
        return false;
    for (const char *q = v; *q; q++)
        if (!isalnum((unsigned char)*q) && !strchr("-._:@", *q))
            return false;
    return true;
}

int config_check_name(const char *v, char *msg, size_t n)
{
    if (name_ok(v))
        return 0;
    snprintf(msg, n, "'%.60s' is not a valid name (1-%d letters, digits, - . _ : @)", v,
             CONFIG_NAME_MAX);
    return -1;
}

/* Calls fn for each item of a list separated by commas or blanks; stops
 * at the first that returns -1. */
static int each_item(const char *v, int (*fn)(const char *item, char *msg, size_t n), char *msg,
                     size_t n)
{
    int count = 0;
    while (*v) {
        size_t skip = strspn(v, ", \t");
        v += skip;
        size_t len = strcspn(v, ", \t");
        if (!len)
            break;
        char item[256];
        if (len >= sizeof(item)) {
            snprintf(msg, n, "an item is longer than %zu characters", sizeof(item) - 1);
            return -1;
        }
        memcpy(item, v, len);
        item[len] = '\0';
        if (fn(item, msg, n) < 0)
            return -1;
        count++;
        v += len;
    }
    if (count == 0) {
        snprintf(msg, n, "needs at least one item");
        return -1;
    }
    return 0;
}

int config_check_names(const char *v, char *msg, size_t n)
{
    return each_item(v, config_check_name, msg, n);
}

/* A shared secret: long enough not to be guessed, and only characters
 * that travel in a header unchanged. Never echoed in the message. */
int config_check_secret(const char *v, char *msg, size_t n)
{
    if (strlen(v) < 16) {
        snprintf(msg, n, "needs at least 16 characters (a secret that cannot be guessed)");
        return -1;
    }
    for (const char *q = v; *q; q++) {
        if (!isgraph((unsigned char)*q)) {
            snprintf(msg, n, "holds a character that is not printable ASCII");
            return -1;
        }
    }
    return 0;
}

int config_check_tokens(const char *v, char *msg, size_t n)
{
    return each_item(v, config_check_secret, msg, n);
}

int config_check_regex(const char *v, char *msg, size_t n)
{
    regex_t re;
    int rc = regcomp(&re, v, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, &re, why, sizeof(why));
        snprintf(msg, n, "'%s' is not a POSIX extended regular expression: %s", v, why);
        return -1;
    }
    regfree(&re);
    return 0;
}

bool config_addr_is_loopback(const char *addr)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    size_t len = colon ? (size_t)(colon - addr) : strlen(addr);
    if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']') {
        addr++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(host))
        return false; /* ":8080" binds every address */
    memcpy(host, addr, len);
    host[len] = '\0';
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

int config_check_identity_header(const char *v, char *msg, size_t n)
{
    /* these carry the request's framing, its routing or a credential: as
     * a tenant id they would be dropped upstream or bill by API key */
    static const char *const taken[] = {
        "host",         "authorization",    "proxy-authorization",
        "x-api-key",    "x-goog-api-key",   "content-length",
        "content-type", "content-encoding", "transfer-encoding",
        "connection",   "cookie",           "expect",
        "te",           "upgrade",          "accept-encoding",
        "keep-alive",
    };
    for (size_t i = 0; i < ARRAY_LEN(taken); i++) {
        if (strcasecmp(v, taken[i]) == 0) {
            snprintf(msg, n, "'%s' has a meaning in HTTP or to the provider: choose another header",
                     v);
            return -1;
        }
    }
    if (strncasecmp(v, "x-tollgate-", 11) == 0) {
        snprintf(msg, n, "'%s': X-Tollgate-* headers are tollgate's own", v);
        return -1;
    }
    return 0;
}

int config_check_key_prefix(const char *v, char *msg, size_t n)
{
    if (strpbrk(v, "{}")) {
        snprintf(msg, n,
                 "'%s' holds '{' or '}': keys carry the tenant in a {hash tag}, and a brace in "
                 "the prefix would move every tenant into one cluster slot",
                 v);
        return -1;
    }
    return 0;
}

int config_check_addr(const char *v, char *msg, size_t n)
{
    int port;
    if (parse_hostport(v, strlen(v), &port) == 0)
        return 0;
    snprintf(msg, n, "'%s' is not host:port", v);
    return -1;
}

int config_check_header(const char *v, char *msg, size_t n)
{
    for (const char *q = v; *q; q++) {
        if (!is_tchar((unsigned char)*q)) {
            snprintf(msg, n, "'%s' is not a header name", v);
            return -1;
        }
    }
    return 0;
}

int config_check_file(const char *v, char *msg, size_t n)
{
    if (access(v, R_OK) == 0)
        return 0;
    snprintf(msg, n, "cannot read %s: %s", v, strerror(errno));
    return -1;
}

int config_parse_enum(const char *v, const char *const *names, int *out, char *msg, size_t n)
{
    for (int i = 0; names[i]; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char list[128] = "";
    for (int i = 0; names[i]; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
    }
    snprintf(msg, n, "'%s' is not one of %s", v, list);
    return -1;
}

int config_set_url(void *obj, const char *v, char *msg, size_t n)
{
    struct cfg_upstream *u = obj;
    bool tls;
    char *host, *base, *url;
    int port;
    if (config_parse_url(v, &tls, &host, &port, &base) < 0) {
        snprintf(msg, n, "'%s' is not http[s]://host[:port][/base]", v);
        return -1;
    }
    if (!(url = strdup(v))) {
        free(host);
        free(base);
        snprintf(msg, n, "out of memory");
        return -1;
    }
    free(u->url);
    free(u->host);
    free(u->base_path);
    u->url = url;
    u->tls = tls;
    u->host = host;
    u->port = port;
    u->base_path = base;
    return 0;
}

void config_free_downgrades(struct cfg_plan *pl)
{
    for (size_t i = 0; i < pl->n_downgrade; i++) {
        free(pl->downgrade[i].from);
        free(pl->downgrade[i].to);
    }
    free(pl->downgrade);
    pl->downgrade = NULL;
    pl->n_downgrade = 0;
}

static bool model_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s) || *s == '>' || *s == ',')
            return false;
    return true;
}

/* "gpt-4o > gpt-4o-mini, claude-sonnet-4-5 > claude-haiku-4-5" */
int config_set_downgrade(void *obj, const char *v, char *msg, size_t n)
{
    struct cfg_plan *pl = obj;
    struct cfg_plan tmp = {0};
    char *copy = strdup(v), *save = NULL;
    if (!copy)
        goto oom;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *gt = strchr(item, '>');
        if (!gt || strchr(gt + 1, '>')) {
            snprintf(msg, n, "expected 'from > to' pairs separated by ','");
            goto fail;
        }
        *gt = '\0';
        char *from = config_trim(item), *to = config_trim(gt + 1);
        if (!model_ok(from) || !model_ok(to)) {
            snprintf(msg, n, "expected 'from > to' pairs separated by ','");
            goto fail;
        }
        if (strcmp(from, to) == 0) {
            snprintf(msg, n, "%s is downgraded to itself", from);
            goto fail;
        }
        for (size_t i = 0; i < tmp.n_downgrade; i++) {
            if (strcmp(tmp.downgrade[i].from, from) == 0) {
                snprintf(msg, n, "%s is listed twice", from);
                goto fail;
            }
        }
        struct cfg_downgrade *d =
            realloc(tmp.downgrade, (tmp.n_downgrade + 1) * sizeof *tmp.downgrade);
        if (!d)
            goto oom;
        tmp.downgrade = d;
        d[tmp.n_downgrade].from = strdup(from);
        d[tmp.n_downgrade].to = strdup(to);
        tmp.n_downgrade++;
        if (!d[tmp.n_downgrade - 1].from || !d[tmp.n_downgrade - 1].to)
            goto oom;
    }
    free(copy);
    config_free_downgrades(pl);
    pl->downgrade = tmp.downgrade;
    pl->n_downgrade = tmp.n_downgrade;
    return 0;
oom:
    snprintf(msg, n, "out of memory");
fail:
    free(copy);
    config_free_downgrades(&tmp);
    return -1;
}

int config_set_unknown_model(void *obj, const char *v, char *msg, size_t n)
{
    struct config *c = obj;
    char *model = NULL;
    enum unknown_model um;
    if (strcmp(v, "highest") == 0) {
        um = UNKNOWN_MODEL_HIGHEST;
    } else if (strcmp(v, "allow") == 0) {
        um = UNKNOWN_MODEL_ALLOW;
    } else if (strcmp(v, "block") == 0) {
        um = UNKNOWN_MODEL_BLOCK;
    } else if (strncmp(v, "price_as:", 9) == 0) {
        char *copy = strdup(v + 9);
        if (!copy) {
            snprintf(msg, n, "out of memory");
            return -1;
        }
        char *m = config_trim(copy);
        if (!model_ok(m) || !(model = strdup(m))) {
            free(copy);
            snprintf(msg, n, "price_as needs a model: price_as:gpt-4o");
            return -1;
        }
        free(copy);
        um = UNKNOWN_MODEL_PRICE_AS;
    } else {
        snprintf(msg, n, "'%s' is not one of highest, allow, block, price_as:MODEL", v);
        return -1;
    }
    free(c->price_as_model);
    c->price_as_model = model;
    c->unknown_model = um;
    return 0;
}

int config_set_log_format(void *obj, const char *v, char *msg, size_t n)
{
    struct config *c = obj;
    if (strcmp(v, "plain") == 0 || strcmp(v, "json") == 0) {
        c->log_json = v[0] == 'j';
        return 0;
    }
    snprintf(msg, n, "'%s' is not one of plain, json", v);
    return -1;
}

/* [records] rotate: "off", "daily", or a size of at least 64k ("100m"). */
int config_set_rotate(void *obj, const char *v, char *msg, size_t n)
{
    struct config *c = obj;
    size_t bytes;
    if (strcmp(v, "off") == 0 || strcmp(v, "daily") == 0) {
        c->records_rotate_bytes = 0;
        c->records_rotate_daily = v[0] == 'd';
        return 0;
    }
    if (config_parse_size(v, &bytes) < 0 || bytes < 65536) {
        snprintf(msg, n, "'%s' is not off, daily or a size of at least 64k (100m)", v);
        return -1;
    }
    c->records_rotate_bytes = bytes;
    c->records_rotate_daily = false;
    return 0;
}

/* "80%, 100%": ascending percents of the monthly budget. */
int config_set_thresholds(void *obj, const char *v, char *msg, size_t n)
{
    struct config *c = obj;
    int t[ARRAY_LEN(c->thresholds)];
    size_t cnt = 0;
    const char *s = v;
    while (*s) {
        while (isspace((unsigned char)*s))
            s++;
        unsigned long long x;
        const char *end;
        if (config_parse_u64(s, &x, &end) < 0 || x < 1 || x > 1000) {
            snprintf(msg, n, "expected percents from 1%% to 1000%% separated by ','");
            return -1;
        }
        s = end;
        if (*s == '%')
            s++;
        while (isspace((unsigned char)*s))
            s++;
        if (*s && *s != ',') {
            snprintf(msg, n, "expected percents from 1%% to 1000%% separated by ','");
            return -1;
        }
        if (*s == ',')
            s++;
        if (cnt == ARRAY_LEN(t)) {
            snprintf(msg, n, "at most %zu thresholds", ARRAY_LEN(t));
            return -1;
        }
        if (cnt && (int)x <= t[cnt - 1]) {
            snprintf(msg, n, "thresholds must be in ascending order");
            return -1;
        }
        t[cnt++] = (int)x;
    }
    memcpy(c->thresholds, t, cnt * sizeof t[0]);
    c->n_thresholds = cnt;
    return 0;
}

int config_set_cache_allow(void *obj, const char *v, char *msg, size_t n)
{
    static const struct {
        const char *name;
        unsigned why;
    } names[] = {{"sampled", CACHE_WHY_SAMPLED},
                 {"provider_tools", CACHE_WHY_PROVIDER_TOOL},
                 {"images", CACHE_WHY_IMAGE},
                 {"audio", CACHE_WHY_AUDIO}};
    struct config *c = obj;
    unsigned allow = 0;
    const char *s = v;
    while (isspace((unsigned char)*s))
        s++;
    if (strcasecmp(s, "none") == 0) {
        c->cache_allow = 0;
        return 0;
    }
    while (*s) {
        while (isspace((unsigned char)*s) || *s == ',')
            s++;
        size_t k = strcspn(s, ", \t");
        if (k == 0)
            break;
        size_t i = 0;
        while (i < ARRAY_LEN(names) &&
               !(strlen(names[i].name) == k && strncasecmp(s, names[i].name, k) == 0))
            i++;
        if (i == ARRAY_LEN(names)) {
            snprintf(msg, n,
                     "expected none, or sampled, provider_tools, images, audio "
                     "separated by ','");
            return -1;
        }
        allow |= names[i].why;
        s += k;
    }
    c->cache_allow = allow;
    return 0;
}

/* "60%": a margin kept of a price, 0% to 99%, in basis points; "off": -1. */
static int parse_margin(const char *v, int *out, char *msg, size_t n)
{
    unsigned long long x;
    const char *end;
    if (strcmp(v, "off") == 0) {
        *out = -1;
        return 0;
    }
    if (config_parse_u64(v, &x, &end) < 0 || *end != '%' || end[1] || x > 99) {
        snprintf(msg, n, "expected a percent from 0%% to 99%% (the share of the price kept)");
        return -1;
    }
    *out = (int)x * 100;
    return 0;
}

int config_set_report_margin(void *obj, const char *v, char *msg, size_t n)
{
    struct config *c = obj;
    int bp;
    if (strcmp(v, "off") == 0) {
        snprintf(msg, n, "expected a percent from 0%% to 99%%");
        return -1;
    }
    if (parse_margin(v, &bp, msg, n) < 0)
        return -1;
    c->report_target_margin_bp = bp;
    return 0;
}

int config_set_plan_margin(void *obj, const char *v, char *msg, size_t n)
{
    struct cfg_plan *pl = obj;
    return parse_margin(v, &pl->target_margin_bp, msg, n);
}

int config_set_on_allowance(void *obj, const char *v, char *msg, size_t n)
{
    static const char *const names[] = {"overage", "block", "downgrade", NULL};
    struct cfg_plan *pl = obj;
    int i;
    if (config_parse_enum(v, names, &i, msg, n) < 0)
        return -1;
    pl->on_allowance = (enum on_allowance)(ON_ALLOWANCE_OVERAGE + i);
    return 0;
}

/* [plan] period: the billing period's length. Only month exists: a weekly
 * plan is refused by name rather than counted by month unannounced. */
int config_set_period(void *obj, const char *v, char *msg, size_t n)
{
    (void)obj;
    if (strcmp(v, "month") == 0)
        return 0;
    if (strcmp(v, "week") == 0)
        snprintf(msg, n,
                 "'week': weekly billing periods are not supported; only month "
                 "(from the tenant's billing_anchor)");
    else
        snprintf(msg, n, "'%s' is not a period (month)", v);
    return -1;
}

/* "4.00" (USD per 1M tokens, or per request) or "cost + 20%" (the AI cost
 * of the overage plus a markup, 0% to 1000%). */
int config_set_overage(void *obj, const char *v, char *msg, size_t n)
{
    struct cfg_plan *pl = obj;
    if (strncmp(v, "cost", 4) == 0) {
        const char *s = v + 4, *end;
        unsigned long long x;
        while (isspace((unsigned char)*s))
            s++;
        if (*s++ != '+')
            goto bad;
        while (isspace((unsigned char)*s))
            s++;
        if (config_parse_u64(s, &x, &end) < 0 || *end != '%' || end[1] || x > 1000)
            goto bad;
        pl->overage_kind = OVERAGE_MARKUP;
        pl->overage_markup_bp = (int)x * 100;
        pl->overage = 0;
        return 0;
    }
    money_t m;
    if (money_parse_usd(v, &m) < 0 || m < 0)
        goto bad;
    pl->overage_kind = OVERAGE_PRICE;
    pl->overage = m;
    pl->overage_markup_bp = 0;
    return 0;
bad:
    snprintf(msg, n,
             "expected USD per 1M tokens (or per request) like 4.00, or cost + N%% (0%% to "
             "1000%%)");
    return -1;
}

/* -------- env: references -------- */

int config_resolve_env(const char *key, const char *value, char **out, char *msg, size_t n)
{
    *out = NULL;
    if (strncmp(value, "env:", 4) != 0)
        return 0;
    const char *var = value + 4;
    while (isspace((unsigned char)*var))
        var++;
    const char *got = getenv(var);
    if (!*var) {
        snprintf(msg, n, "%s: env: needs a variable name", key);
        return -1;
    }
    if (!got) {
        snprintf(msg, n, "%s: environment variable %s is not set", key, var);
        return -1;
    }
    if (!(*out = strdup(got))) {
        snprintf(msg, n, "out of memory");
        return -1;
    }
    return 0;
}
