/* numtext.c: decimal text and string appends without printf (numtext.h). */
#include "core/numtext.h"

#include <string.h>

size_t numtext_i64(char *buf, int64_t v)
{
    char tmp[NUMTEXT_I64_MAX];
    size_t n = 0, len = 0;
    /* through uint64_t: -INT64_MIN does not exist as an int64_t */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

char *numtext_put(char *at, const char *end, const char *s, size_t n)
{
    if (!at || (size_t)(end - at) <= n)
        return NULL;
    memcpy(at, s, n);
    at[n] = '\0';
    return at + n;
}

char *numtext_put_str(char *at, const char *end, const char *s)
{
    return numtext_put(at, end, s, strlen(s));
}

char *numtext_put_uint(char *at, const char *end, uint64_t v, int width)
{
    char tmp[NUMTEXT_I64_MAX];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width && n < (int)sizeof(tmp))
        tmp[n++] = '0';
    if (!at || end - at <= n)
        return NULL;
    for (int i = 0; i < n; i++)
        at[i] = tmp[n - 1 - i];
    at[n] = '\0';
    return at + n;
}
