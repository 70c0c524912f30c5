/* trace.c: W3C Trace Context (trace.h). Ids come from a per-thread
 * xorshift seeded by getrandom: span ids must be unique, not secret. */
#include "export/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static _Thread_local uint64_t rng;

static uint64_t next(void)
{
    if (rng == 0) {
        if (getrandom(&rng, sizeof(rng), 0) != sizeof(rng) || rng == 0)
            rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + (uint64_t)(uintptr_t)&rng;
    }
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static bool lower_hex(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        nonzero |= c != '0';
    }
    return nonzero;
}

static int hexval(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

bool trace_parse(const char *v, struct trace_ctx *t)
{
    if (!v)
        return false;
    size_t n = strlen(v);
    if (n < TRACEPARENT_LEN || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    /* version: two hex digits, ff forbidden; 00 has exactly 55 bytes, a
     * later version may append "-..." */
    char ver[3] = {v[0], v[1], 0};
    bool v_hex = strspn(ver, "0123456789abcdef") == 2;
    if (!v_hex || strcmp(ver, "ff") == 0)
        return false;
    if (strcmp(ver, "00") == 0 ? n != TRACEPARENT_LEN
                               : (n > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-'))
        return false;
    if (!lower_hex(v + 3, 32) || !lower_hex(v + 36, 16))
        return false;
    if (strspn(v + 53, "0123456789abcdef") < 2)
        return false;
    memcpy(t->trace_id, v + 3, 32);
    t->trace_id[32] = '\0';
    memcpy(t->parent_id, v + 36, 16);
    t->parent_id[16] = '\0';
    t->flags = (unsigned char)(hexval(v[53]) * 16 + hexval(v[54]));
    t->has_parent = true;
    return true;
}

static void hex64(uint64_t x, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[x & 15];
        x >>= 4;
    }
}

void trace_start(struct trace_ctx *t, const char *value)
{
    t->on = true;
    if (!trace_parse(value, t)) {
        t->has_parent = false;
        t->parent_id[0] = '\0';
        t->flags = 1;
        uint64_t a, b;
        do {
            a = next();
            b = next();
        } while (a == 0 && b == 0);
        hex64(a, t->trace_id);
        hex64(b, t->trace_id + 16);
        t->trace_id[32] = '\0';
    }
    uint64_t s;
    do
        s = next();
    while (s == 0);
    hex64(s, t->span_id);
    t->span_id[16] = '\0';
}

void trace_format(const struct trace_ctx *t, char *out)
{
    snprintf(out, TRACEPARENT_LEN + 1, "00-%s-%s-%02x", t->trace_id, t->span_id, t->flags);
}
