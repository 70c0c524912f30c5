/* fuzz_redis_slot.c: libFuzzer target for Redis Cluster's parsers
 * (redis_slot.c). The input is fed to hiredis's reply reader, as a node's
 * bytes reach the router; each reply read is walked as a CLUSTER SLOTS
 * answer, and its text (an error or a string) parsed as a MOVED / ASK
 * redirection; the whole input is also a key for redis_key_slot. Checked
 * (abort on violation): slots stay below 16384 and ranges in order, hosts
 * are NUL-free and shorter than REDIS_HOST_MAX, ports within 1..65535, the
 * covered count is the sum of the ranges, and a refusal says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "redis/redis_slot.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_redis_slot: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int on_range(void *arg, unsigned first, unsigned last, const char *host, int port)
{
    long *sum = arg;
    CHECKF(first <= last && last < REDIS_SLOTS);
    CHECKF(strlen(host) < REDIS_HOST_MAX);
    CHECKF(port >= 1 && port <= 65535);
    *sum += (long)(last - first + 1);
    return *sum > 20 * REDIS_SLOTS ? -1 : 0; /* exercise the refusal too */
}

static void redirect(const char *text)
{
    bool ask;
    unsigned slot;
    char host[REDIS_HOST_MAX];
    int port;
    if (redis_redirect_parse(text, &ask, &slot, host, &port) == 0) {
        CHECKF(slot < REDIS_SLOTS);
        CHECKF(port >= 1 && port <= 65535);
        CHECKF(strlen(host) < REDIS_HOST_MAX);
        CHECKF(strncmp(text, ask ? "ASK " : "MOVED ", ask ? 4 : 6) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CHECKF(redis_key_slot((const char *)data, size) < REDIS_SLOTS);
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    redirect(text);
    free(text);

    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        for (int i = 0; i < 64; i++) {
            void *v = NULL;
            if (redisReaderGetReply(rd, &v) != REDIS_OK || !v)
                break;
            redisReply *r = v;
            long sum = 0;
            char err[200] = "";
            long covered = redis_slots_parse(r, on_range, &sum, err, sizeof(err));
            if (covered < 0)
                CHECKF(strncmp(err, "CLUSTER SLOTS: ", 15) == 0);
            else
                CHECKF(covered == sum);
            if ((r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STRING) && r->str)
                redirect(r->str);
            freeReplyObject(r);
        }
    }
    redisReaderFree(rd);
    return 0;
}
