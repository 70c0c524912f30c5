/* test_redis_slot.c: Redis Cluster's I/O-free parts (redis_slot.c), from
 * tables: the key slot (CRC16 vectors and hash tags, each checked against
 * redis-server's CLUSTER KEYSLOT), MOVED / ASK redirections, and CLUSTER
 * SLOTS answers given as RESP bytes, well-formed and broken. */
#include "redis/redis_slot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "check.h"

static const struct {
    const char *key;
    unsigned slot; /* CLUSTER KEYSLOT, redis-server 7.0 */
} slots[] = {
    {"123456789", 12739}, /* the CRC16 check value 0x31C3 */
    {"foo", 12182},
    {"bar", 5061},
    {"{user1000}.following", 3443},
    {"{user1000}.followers", 3443},
    {"foo{}{bar}", 8363},    /* "{}": the whole key */
    {"foo{{bar}}zap", 4015}, /* the tag is "{bar" */
    {"foo{bar}{zap}", 5061}, /* the first tag: "bar" */
    {"", 0},
    {"tollgate:{acme}:m:2026-12", 11304},
    {"tollgate:tenants:2026-12", 10773},
    {"{", 4092},
    {"}{a}", 15495},
    {"a{b", 13340},
    {"{}", 15257},
};

static void test_key_slot(void)
{
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        unsigned got = redis_key_slot(slots[i].key, strlen(slots[i].key));
        if (got != slots[i].slot)
            fprintf(stderr, "  key \"%s\"\n", slots[i].key);
        CHECK_INT(got, slots[i].slot);
    }
    /* every key of a tenant shares its slot: what the budget scripts rely on */
    const char *k1 = "tollgate:{acme}:leases", *k2 = "tollgate:{acme}:d:2026-12-03";
    CHECK_INT(redis_key_slot(k1, strlen(k1)), redis_key_slot(k2, strlen(k2)));
    /* only len bytes are read */
    CHECK_INT(redis_key_slot("foo{bar}", 3), 12182);
}

static const struct {
    const char *err;
    int ok;
    bool ask;
    unsigned slot;
    const char *host;
    int port;
} redirects[] = {
    {"MOVED 3999 127.0.0.1:6381", 1, false, 3999, "127.0.0.1", 6381},
    {"ASK 3999 127.0.0.1:6381", 1, true, 3999, "127.0.0.1", 6381},
    {"MOVED 0 redis-0.cluster.local:7000", 1, false, 0, "redis-0.cluster.local", 7000},
    {"MOVED 16383 ::1:7002", 1, false, 16383, "::1", 7002},
    {"MOVED 12 :7000", 1, false, 12, "", 7000}, /* endpoint unknown */
    {"MOVED 16384 h:1", 0, false, 0, NULL, 0},
    {"MOVED -1 h:1", 0, false, 0, NULL, 0},
    {"MOVED 1 h:0", 0, false, 0, NULL, 0},
    {"MOVED 1 h:65536", 0, false, 0, NULL, 0},
    {"MOVED 1 h", 0, false, 0, NULL, 0},
    {"MOVED 1", 0, false, 0, NULL, 0},
    {"MOVED  h:1", 0, false, 0, NULL, 0},
    {"MOVED 1 h:1x", 0, false, 0, NULL, 0},
    {"MOVED 1 a b:1", 0, false, 0, NULL, 0},
    {"MOVED 0000001 h:1", 0, false, 0, NULL, 0},
    {"CLUSTERDOWN The cluster is down", 0, false, 0, NULL, 0},
    {"ERR wrong", 0, false, 0, NULL, 0},
    {"", 0, false, 0, NULL, 0},
};

static void test_redirect(void)
{
    for (size_t i = 0; i < sizeof(redirects) / sizeof(redirects[0]); i++) {
        bool ask = !redirects[i].ask;
        unsigned slot = 99999;
        char host[REDIS_HOST_MAX] = "unset";
        int port = -1;
        int rc = redis_redirect_parse(redirects[i].err, &ask, &slot, host, &port);
        if ((rc == 0) != redirects[i].ok)
            fprintf(stderr, "  redirect \"%s\"\n", redirects[i].err);
        CHECK_INT(rc == 0, redirects[i].ok);
        if (rc != 0 || !redirects[i].ok)
            continue;
        CHECK_INT(ask, redirects[i].ask);
        CHECK_INT(slot, redirects[i].slot);
        CHECK_STR(host, redirects[i].host);
        CHECK_INT(port, redirects[i].port);
    }
    /* a host longer than a node's host buffer */
    char big[400];
    memset(big, 'h', sizeof(big));
    memcpy(big, "MOVED 1 ", 8);
    snprintf(big + sizeof(big) - 8, 8, ":7000");
    bool ask;
    unsigned slot;
    char host[REDIS_HOST_MAX];
    int port;
    CHECK_INT(redis_redirect_parse(big, &ask, &slot, host, &port), -1);
}

/* Ranges as "first-last@host:port;" in the order given. */
struct collect {
    char out[512];
    int limit; /* fn refuses after this many ranges (-1: never) */
};

static int collect(void *arg, unsigned first, unsigned last, const char *host, int port)
{
    struct collect *c = arg;
    if (c->limit == 0)
        return -1;
    c->limit--;
    size_t at = strlen(c->out);
    snprintf(c->out + at, sizeof(c->out) - at, "%u-%u@%s:%d;", first, last, host, port);
    return 0;
}

static const struct {
    const char *resp;
    long covered; /* -1: refused */
    const char *ranges;
    int limit;
} answers[] = {
    /* three primaries with a replica each: the primary is the third element */
    {"*3\r\n"
     "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
     "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nir\r\n"
     "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
     "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nir\r\n"
     "*3\r\n:10923\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7002\r\n",
     16384, "0-5460@127.0.0.1:7000;5461-10922@127.0.0.1:7001;10923-16383@127.0.0.1:7002;", -1},
    /* Redis 7: an unknown endpoint is "?" or ""; a hostname; extra metadata */
    {"*2\r\n*3\r\n:0\r\n:0\r\n*2\r\n$1\r\n?\r\n:7000\r\n"
     "*3\r\n:1\r\n:9\r\n*4\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n*0\r\n",
     10, "0-0@:7000;1-9@:7001;", -1},
    {"*0\r\n", 0, "", -1}, /* a cluster without slots yet */
    /* refused */
    {"-ERR This instance has cluster support disabled\r\n", -1, "", -1},
    {":1\r\n", -1, "", -1},
    {"*1\r\n*2\r\n:0\r\n:1\r\n", -1, "", -1},                                /* no node */
    {"*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1, "", -1},         /* last < first */
    {"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1, "", -1},     /* past the slots */
    {"*1\r\n*3\r\n:-1\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1, "", -1},        /* negative */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:0\r\n", -1, "", -1},         /* port 0 */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n", -1, "", -1}, /* port as text */
    {"*1\r\n*3\r\n$1\r\n0\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1, "", -1},    /* first as text */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*1\r\n$1\r\nh\r\n", -1, "", -1},               /* no port */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n:5\r\n:1\r\n", -1, "", -1},              /* host a number */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$3\r\na\0b\r\n:1\r\n", -1, "", -1},      /* a NUL */
    {"*1\r\n$2\r\nxx\r\n", -1, "", -1},
    /* fn refuses the second range (the node table is full) */
    {"*2\r\n*3\r\n:0\r\n:0\r\n*2\r\n$1\r\na\r\n:1\r\n*3\r\n:1\r\n:1\r\n*2\r\n$1\r\nb\r\n:1\r\n", -1,
     "0-0@a:1;", 1},
};

static redisReply *parse(const char *resp, size_t len)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;
    if (!rd || redisReaderFeed(rd, resp, len) != REDIS_OK ||
        redisReaderGetReply(rd, &reply) != REDIS_OK)
        reply = NULL;
    redisReaderFree(rd);
    return reply;
}

static void test_slots(void)
{
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        /* the NUL case has one inside: its length comes from the table text */
        size_t len = strlen(answers[i].resp);
        if (strstr(answers[i].resp, "$3\r\na"))
            len = strlen(answers[i].resp) + 1 + strlen(answers[i].resp + len + 1);
        redisReply *r = parse(answers[i].resp, len);
        CHECK(r != NULL);
        if (!r)
            continue;
        struct collect c = {.out = "", .limit = answers[i].limit};
        char err[200] = "";
        long got = redis_slots_parse(r, collect, &c, err, sizeof(err));
        if (got != answers[i].covered)
            fprintf(stderr, "  answer %zu: %ld (%s)\n", i, got, err);
        CHECK_INT(got, answers[i].covered);
        if (got >= 0)
            CHECK_STR(c.out, answers[i].ranges);
        else
            CHECK(strncmp(err, "CLUSTER SLOTS: ", 15) == 0);
        freeReplyObject(r);
    }
}

int main(void)
{
    static const struct check_test tests[] = {
        {"key slot: CRC16 vectors and hash tags", test_key_slot},
        {"MOVED and ASK redirections", test_redirect},
        {"CLUSTER SLOTS answers", test_slots},
    };
    return CHECK_MAIN("redis_slot", tests);
}
