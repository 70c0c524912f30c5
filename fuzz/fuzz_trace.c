/* fuzz_trace.c: libFuzzer target for the W3C traceparent parser (trace.c):
 * the header comes from the app, so any bytes. Checked (abort on
 * violation): a parsed header has lowercase-hex, non-zero ids of the right
 * length; a version-00 header re-formats to itself (with the parent as the
 * span); trace_start always yields valid ids, keeping a parsed trace id. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/trace.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_trace: invariant failed: %s (line %d)\n", #cond, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int hex_ok(const char *s, size_t n)
{
    int nonzero = 0;
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size + 1);
    CHECKF(v != NULL);
    memcpy(v, data, size);
    v[size] = '\0';
    struct trace_ctx t;
    memset(&t, 0, sizeof(t));
    if (trace_parse(v, &t)) {
        CHECKF(strlen(v) >= TRACEPARENT_LEN);
        CHECKF(hex_ok(t.trace_id, 32) && hex_ok(t.parent_id, 16) && t.has_parent);
        if (v[0] == '0' && v[1] == '0') {
            struct trace_ctx u = t;
            char out[TRACEPARENT_LEN + 1];
            memcpy(u.span_id, t.parent_id, sizeof(u.span_id));
            trace_format(&u, out);
            CHECKF(strcmp(out, v) == 0);
        }
    }
    struct trace_ctx s;
    memset(&s, 0, sizeof(s));
    trace_start(&s, v);
    CHECKF(s.on && hex_ok(s.trace_id, 32) && hex_ok(s.span_id, 16));
    CHECKF(s.has_parent == (t.has_parent != 0));
    if (t.has_parent)
        CHECKF(strcmp(s.trace_id, t.trace_id) == 0 && strcmp(s.parent_id, t.parent_id) == 0);
    free(v);
    return 0;
}
