/* fuzz_multipart.c: libFuzzer target for the multipart/form-data field
 * reader (multipart.c).
 *
 * Input: byte 0 seeds the split of the body into feeds, byte 1 the length
 * of the boundary taken from bytes 2.. (1-70), the rest is the body; the
 * input also goes whole through multipart_boundary as a Content-Type.
 * Checked (abort on violation):
 *  - a captured value is NUL-terminated within MULTIPART_VALUE_MAX and its
 *    len matches; too_long values are never cut silently (len stays short);
 *  - file_bytes never exceeds the body's length;
 *  - the split feed and a single feed give the same result (fields, sizes,
 *    parts, success), so the reader resumes at any byte. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/multipart.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_multipart: invariant failed: %s (line %d)\n", #cond, __LINE__);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const names[] = {"model", "stream", "a"};

static int run(struct multipart *m, const char *boundary, const char *body, size_t n, unsigned seed)
{
    multipart_init(m, boundary, names, 3);
    size_t at = 0;
    int rc = 0;
    while (at < n && rc == 0) {
        size_t k = seed ? 1 + (seed = seed * 1103515245u + 12345u) % 97 : n - at;
        if (k > n - at)
            k = n - at;
        rc = multipart_feed(m, body + at, k);
        at += k;
    }
    if (rc == 0)
        rc = multipart_finish(m);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    char *ct = malloc(size + 1);
    if (!ct)
        return 0;
    memcpy(ct, data, size);
    ct[size] = '\0';
    char out[MULTIPART_BOUNDARY_MAX + 1];
    if (multipart_boundary(ct, out, sizeof(out)) == 0)
        CHECKF(strlen(out) >= 1 && strlen(out) <= MULTIPART_BOUNDARY_MAX);
    free(ct);

    unsigned seed = data[0] | 1u;
    size_t blen = 1 + data[1] % MULTIPART_BOUNDARY_MAX;
    if (size - 2 < blen)
        return 0;
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    memcpy(boundary, data + 2, blen);
    boundary[blen] = '\0';
    const char *body = (const char *)data + 2 + blen;
    size_t n = size - 2 - blen;

    static struct multipart a, b;
    int ra = run(&a, boundary, body, n, 0);
    int rb = run(&b, boundary, body, n, seed);
    CHECKF(ra == rb);
    CHECKF(a.file_bytes >= 0 && (size_t)a.file_bytes <= n);
    CHECKF(a.file_bytes == b.file_bytes && a.parts == b.parts);
    for (size_t i = 0; i < 3; i++) {
        const struct multipart_field *x = &a.fields[i], *y = &b.fields[i];
        CHECKF(x->len < MULTIPART_VALUE_MAX);
        CHECKF(memchr(x->value, '\0', MULTIPART_VALUE_MAX) != NULL);
        CHECKF(x->seen == y->seen && x->too_long == y->too_long && x->len == y->len);
        CHECKF(memcmp(x->value, y->value, x->len) == 0);
    }
    return 0;
}
