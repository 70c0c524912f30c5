/* utf8.h: a code point as UTF-8, the one encoder of the JSON readers
 * (json_scan.c's text, cache_key.c's canonical form). Inline: the fuzz
 * targets link those files alone. */
#ifndef TOLLGATE_UTF8_H
#define TOLLGATE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Writes cp (at most 0x10FFFF, not a surrogate: the caller checked) into
 * b; returns how many bytes (1 to 4). */
static inline size_t utf8_encode(uint32_t cp, unsigned char b[4])
{
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (unsigned char)(0xf0 | cp >> 18);
    b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    b[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

#endif
