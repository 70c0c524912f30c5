/* fuzz_path.c: libFuzzer target for the path canonicaliser (path.c). The
 * input is a raw path (a NUL inside ends it, as in the C string the HTTP
 * parser hands over). Checked (abort on violation):
 *  - a result always, never a write past the output buffer (a guard byte
 *    after a small buffer stays intact);
 *  - PATH_OK: starts with '/', at most PATH_MAX_LEN bytes, no '%', ';',
 *    '\\', space or control byte, no empty, "." or ".." segment, no
 *    trailing '/' (except "/"), and canonicalising it again gives it back;
 *  - PATH_BAD comes with a reason;
 *  - the same verdict (and form) in a buffer just large enough. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/path.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_path: invariant failed: %s (line %d)\n", #cond, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_canonical(const char *p)
{
    size_t n = strlen(p);
    CHECKF(n >= 1 && n <= PATH_MAX_LEN && p[0] == '/');
    CHECKF(n == 1 || p[n - 1] != '/');
    CHECKF(!strstr(p, "//") && !strstr(p, "/./") && !strstr(p, "/../"));
    CHECKF(!(n >= 2 && strcmp(p + n - 2, "/.") == 0) && !(n >= 3 && strcmp(p + n - 3, "/..") == 0));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        CHECKF(c > 0x20 && c < 0x7f && c != '%' && c != ';' && c != '\\');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    if (!raw)
        return 0;
    memcpy(raw, data, size);
    raw[size] = '\0';

    static char out[PATH_MAX_LEN + 1], again[PATH_MAX_LEN + 1];
    const char *why = NULL;
    enum path_result rc = path_canonical(raw, out, sizeof(out), &why);
    CHECKF(rc == PATH_OK || rc == PATH_BAD || rc == PATH_TOO_LONG);
    if (rc == PATH_BAD)
        CHECKF(why != NULL && why[0] != '\0');
    if (rc == PATH_OK) {
        check_canonical(out);
        CHECKF(path_canonical(out, again, sizeof(again), NULL) == PATH_OK);
        CHECKF(strcmp(out, again) == 0);
        /* a buffer just large enough gives the same; one byte less is too small */
        size_t n = strlen(out);
        char *tight = malloc(n + 2);
        if (tight) {
            tight[n + 1] = 'G';
            CHECKF(path_canonical(raw, tight, n + 1, NULL) == PATH_OK && strcmp(tight, out) == 0);
            CHECKF(tight[n + 1] == 'G');
            if (n > 0)
                CHECKF(path_canonical(raw, tight, n, NULL) != PATH_OK);
            free(tight);
        }
    }
    free(raw);
    return 0;
}
