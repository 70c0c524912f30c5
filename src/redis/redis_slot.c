/* redis_slot.c: the slot of a key and the parsers of Redis Cluster's
 * answers (redis_slot.h). Pure functions: no I/O, no allocation. */
#include "redis/redis_slot.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the one the Redis
 * Cluster specification names; bitwise, as keys are short. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t at = (size_t)(open - key) + 1;
        const char *close = memchr(key + at, '}', len - at);
        if (close && close > key + at) /* "{}" hashes the whole key */
            return crc16(key + at, (size_t)(close - (key + at))) & (REDIS_SLOTS - 1);
    }
    return crc16(key, len) & (REDIS_SLOTS - 1);
}

/* A decimal in [min, max] spanning exactly [s, end). */
static int number(const char *s, const char *end, long min, long max, long *out)
{
    long v = 0;
    if (s >= end || end - s > 6)
        return -1;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int redis_redirect_parse(const char *err, bool *ask, unsigned *slot, char host[REDIS_HOST_MAX],
                         int *port)
{
    const char *p;
    long v, pv;
    if (strncmp(err, "MOVED ", 6) == 0) {
        *ask = false;
        p = err + 6;
    } else if (strncmp(err, "ASK ", 4) == 0) {
        *ask = true;
        p = err + 4;
    } else {
        return -1;
    }
    const char *sp = strchr(p, ' ');
    if (!sp || number(p, sp, 0, REDIS_SLOTS - 1, &v) < 0)
        return -1;
    const char *addr = sp + 1;
    const char *colon = strrchr(addr, ':'); /* an IPv6 address has colons too */
    if (!colon || number(colon + 1, colon + strlen(colon), 1, 65535, &pv) < 0)
        return -1;
    size_t hl = (size_t)(colon - addr);
    if (hl >= REDIS_HOST_MAX || memchr(addr, ' ', hl))
        return -1;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    *slot = (unsigned)v;
    *port = (int)pv;
    return 0;
}

long redis_slots_parse(const redisReply *reply, redis_slots_fn fn, void *arg, char *err,
                       size_t errlen)
{
    long covered = 0;
    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "CLUSTER SLOTS: not an array");
        return -1;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *r = reply->element[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER ||
            r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2) {
            snprintf(err, errlen, "CLUSTER SLOTS: range %zu is malformed", i);
            return -1;
        }
        long long first = r->element[0]->integer, last = r->element[1]->integer;
        if (first < 0 || last < first || last >= REDIS_SLOTS) {
            snprintf(err, errlen, "CLUSTER SLOTS: range %lld-%lld is outside the slots", first,
                     last);
            return -1;
        }
        const redisReply *node = r->element[2];
        const redisReply *h = node->element[0], *pt = node->element[1];
        if ((h->type != REDIS_REPLY_STRING && h->type != REDIS_REPLY_NIL) ||
            pt->type != REDIS_REPLY_INTEGER || pt->integer < 1 || pt->integer > 65535 ||
            (h->type == REDIS_REPLY_STRING &&
             (h->len >= REDIS_HOST_MAX || memchr(h->str, '\0', h->len)))) {
            snprintf(err, errlen, "CLUSTER SLOTS: the node of range %lld-%lld is malformed", first,
                     last);
            return -1;
        }
        /* "" or "?": the node does not know its endpoint (Redis 7) */
        const char *host = h->type == REDIS_REPLY_STRING && strcmp(h->str, "?") != 0 ? h->str : "";
        if (fn(arg, (unsigned)first, (unsigned)last, host, (int)pt->integer) < 0) {
            snprintf(err, errlen, "CLUSTER SLOTS: too many nodes");
            return -1;
        }
        covered += last - first + 1;
    }
    return covered;
}
