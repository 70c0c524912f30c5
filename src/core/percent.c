/* percent.c: %XX decoding (percent.h). */
#include "core/percent.h"

#include <stdlib.h>

int percent_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int percent_decode(const char *s, size_t n, bool plus_is_space, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            int hi = i + 2 < n ? percent_hex(s[i + 1]) : -1;
            int lo = i + 2 < n ? percent_hex(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (j + 1 >= cap)
            return -1;
        out[j++] = (char)ch;
    }
    if (cap == 0)
        return -1;
    out[j] = '\0';
    return (int)j;
}

char *percent_decode_dup(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out && percent_decode(s, n, false, out, n + 1) < 0) {
        free(out);
        return NULL;
    }
    return out;
}
