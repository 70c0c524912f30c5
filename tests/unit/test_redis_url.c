/* test_redis_url.c: the one [redis] url parser (redis_url.c), from a table:
 * every scheme with and without user:password@, defaults, lists of hosts,
 * and the malformed forms it must refuse without echoing a password; and
 * the redacted form the admin API shows. */
#include "redis/redis_url.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static const struct {
    const char *url;
    int ok;
    enum redis_url_kind kind;
    const char *hosts; /* "h:p,h:p" */
    const char *path, *master, *user, *password;
    int db;
} cases[] = {
    {"redis://127.0.0.1", 1, REDIS_URL_TCP, "127.0.0.1:6379", NULL, NULL, NULL, NULL, 0},
    {"redis://cache.internal:6380/2", 1, REDIS_URL_TCP, "cache.internal:6380", NULL, NULL, NULL,
     NULL, 2},
    {"redis://:s3cret@h:1/0", 1, REDIS_URL_TCP, "h:1", NULL, NULL, NULL, "s3cret", 0},
    {"redis://app:p%40ss%3Aw@h", 1, REDIS_URL_TCP, "h:6379", NULL, NULL, "app", "p@ss:w", 0},
    {"redis://[::1]:7000/3", 1, REDIS_URL_TCP, "[::1]:7000", NULL, NULL, NULL, NULL, 3},
    {"rediss://app:pw@redis.example.com:6380", 1, REDIS_URL_TLS, "redis.example.com:6380", NULL,
     NULL, "app", "pw", 0},
    {"unix:///run/redis.sock", 1, REDIS_URL_UNIX, "", "/run/redis.sock", NULL, NULL, NULL, 0},
    {"unix:///run/redis.sock?db=4&password=x", 1, REDIS_URL_UNIX, "", "/run/redis.sock", NULL, NULL,
     "x", 4},
    {"unix://app:pw@/run/r.sock?db=1", 1, REDIS_URL_UNIX, "", "/run/r.sock", NULL, "app", "pw", 1},
    {"redis-sentinel://s1,s2:26380/mymaster", 1, REDIS_URL_SENTINEL, "s1:26379,s2:26380", NULL,
     "mymaster", NULL, NULL, 0},
    {"redis-sentinel://:pw@s1:26379/mymaster/5", 1, REDIS_URL_SENTINEL, "s1:26379", NULL,
     "mymaster", NULL, "pw", 5},
    {"redis-cluster://a:7000,b:7001,[::1]:7002", 1, REDIS_URL_CLUSTER, "a:7000,b:7001,[::1]:7002",
     NULL, NULL, NULL, NULL, 0},
    /* refused */
    {"http://h", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h:0", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h:65536", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h:6x", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h/x", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h/70000", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://user@h", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://:bad%zzsecret@h", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://:nul%00secret@h", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h1,h2", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://h h", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://[::1", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis://[::1]x", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"unix://relative", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"unix:///p?db=x", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"unix:///p?foo=1", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis-sentinel://s1:26379", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis-sentinel://s1:26379/", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis-sentinel://s1,/m", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis-cluster://a:7000/1", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
    {"redis-cluster://", 0, REDIS_URL_TCP, NULL, NULL, NULL, NULL, NULL, 0},
};

static void test_parse(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct redis_url u;
        char err[512] = "", hosts[256] = "";
        int rc = redis_url_parse(cases[i].url, &u, err, sizeof(err));
        if ((rc == 0) != cases[i].ok)
            fprintf(stderr, "  %s: %s\n", cases[i].url, rc ? err : "accepted");
        CHECK_INT(rc == 0, cases[i].ok);
        CHECK(!strstr(err, "secret")); /* never echo a password */
        if (rc == 0 && cases[i].ok) {
            CHECK_INT(u.kind, cases[i].kind);
            for (size_t a = 0; a < u.naddrs; a++) {
                char one[128];
                redis_addr_format(&u.addrs[a], one, sizeof(one));
                snprintf(hosts + strlen(hosts), sizeof(hosts) - strlen(hosts), "%s%s", a ? "," : "",
                         one);
            }
            CHECK_STR(hosts, cases[i].hosts);
            CHECK_STR(u.path ? u.path : "(null)", cases[i].path ? cases[i].path : "(null)");
            CHECK_STR(u.master ? u.master : "(null)", cases[i].master ? cases[i].master : "(null)");
            CHECK_STR(u.user ? u.user : "(null)", cases[i].user ? cases[i].user : "(null)");
            CHECK_STR(u.password ? u.password : "(null)",
                      cases[i].password ? cases[i].password : "(null)");
            CHECK_INT(u.db, cases[i].db);
        }
        redis_url_free(&u);
    }
}

static void test_redact(void)
{
    static const struct {
        const char *url, *want;
    } r[] = {
        {"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
        {"redis://app:secret@h:6379/0", "redis://***@h:6379/0"},
        {"rediss://:secret@h", "rediss://***@h"},
        {"unix://app:secret@/run/r.sock", "unix://***@/run/r.sock"},
        {"unix:///run/r.sock?db=1&password=secret", "unix:///run/r.sock?db=1&password=***"},
        {"redis-sentinel://:secret@s1,s2/m", "redis-sentinel://***@s1,s2/m"},
        {"redis://user@secret", "redis://(unparsable)"},
    };
    for (size_t i = 0; i < ARRAY_LEN(r); i++) {
        char buf[256];
        redis_url_redact(r[i].url, buf, sizeof(buf));
        CHECK_STR(buf, r[i].want);
    }
}

static const struct check_test tests[] = {
    {"parse", test_parse},
    {"redact", test_redact},
};

int main(void)
{
    return CHECK_MAIN("redis_url", tests);
}
