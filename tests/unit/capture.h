/* capture.h: the unit tests' growable byte buffer and the loader of the
 * recorded wire captures in tests/captures/ (found from TOLLGATE_SRCDIR, or
 * from this file's own path). Static helpers, like check.h. */
#ifndef TOLLGATE_CAPTURE_H
#define TOLLGATE_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    char *p;
    size_t n, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static __attribute__((unused)) char *load(const char *file, size_t *len)
{
    char path[600];
    const char *env = getenv("TOLLGATE_SRCDIR");
    if (env) {
        snprintf(path, sizeof(path), "%s/tests/captures/%s", env, file);
    } else {
        /* __FILE__ is tests/unit/capture.h: the root is two up. */
        const char *f = __FILE__, *slash = strrchr(f, '/');
        snprintf(path, sizeof(path), "%.*s/../../tests/captures/%s", slash ? (int)(slash - f) : 1,
                 slash ? f : ".", file);
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "  cannot open %s\n", path);
        return NULL;
    }
    struct buf b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        buf_add(&b, tmp, n);
    fclose(fp);
    if (!b.p)
        buf_add(&b, "", 0);
    *len = b.n;
    return b.p;
}

#endif
