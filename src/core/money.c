/* money.c: integer money. Parsing works on the decimal digits themselves
 * (never strtod) so "0.075" is exactly 75000 pico-USD per token, and every
 * step is overflow-checked so a hostile config cannot wrap a price. */
#include "core/money.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/numtext.h"
#include "core/sat.h"

/* Parses [-]digits[.digits] as a fixed-point integer with `scale` decimals
 * (value * 10^scale). At most max_decimals fraction digits; no exponent, no
 * '+', no spaces, no bare "." or "5." or ".5". */
static int parse_fixed(const char *s, bool allow_neg, int scale, int max_decimals, int64_t *out)
{
    bool neg = false;
    int64_t v = 0;
    int decimals = 0;

    if (!s)
        return -1;
    if (*s == '-') {
        if (!allow_neg)
            return -1;
        neg = true;
        s++;
    }
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
            return -1;
    }
    /* The integer part is scaled now; fraction digits then fill in from the
     * most significant decimal place down. */
    int64_t unit = 1;
    for (int i = 0; i < scale; i++)
        unit *= 10;
    if (__builtin_mul_overflow(v, unit, &v))
        return -1;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return -1;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (++decimals > max_decimals)
                return -1;
            unit /= 10;
            if (__builtin_add_overflow(v, (int64_t)(*s - '0') * unit, &v))
                return -1;
        }
    }
    if (*s != '\0')
        return -1;
    *out = neg ? -v : v;
    return 0;
}

int money_parse_usd(const char *s, money_t *out)
{
    return parse_fixed(s, true, 9, 9, out);
}

int money_parse_price_per_mtok(const char *s, price_t *out)
{
    /* 1 USD per 1M tokens = 1e-6 USD per token = 1e6 pico-USD per token,
     * so the 6 decimals of a per-1M price are exactly the pico digits. */
    return parse_fixed(s, false, 6, 6, out);
}

int money_format(money_t m, char *buf, size_t n)
{
    /* Magnitude as unsigned so INT64_MIN has a printable negation. */
    uint64_t mag = m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
    uint64_t whole = mag / (uint64_t)MONEY_PER_USD;
    uint64_t frac = mag % (uint64_t)MONEY_PER_USD;
    char fracbuf[16] = "";

    /* no printf: every record carries a cost */
    if (frac) {
        fracbuf[0] = '.';
        numtext_put_uint(fracbuf + 1, fracbuf + sizeof(fracbuf), frac, 9);
        size_t end = strlen(fracbuf);
        while (fracbuf[end - 1] == '0')
            fracbuf[--end] = '\0';
    }
    char *at = numtext_put(buf, buf + n, "-", m < 0 ? 1 : 0);
    at = numtext_put_uint(at, buf + n, whole, 0);
    at = numtext_put_str(at, buf + n, fracbuf);
    if (!at || at - buf > INT32_MAX)
        return -1;
    return (int)(at - buf);
}

int64_t money_pico_mul(int64_t tokens, price_t price)
{
    return sat_mul(tokens, price);
}

money_t money_from_pico(int64_t pico)
{
    /* C division truncates toward zero, so the remainder carries the sign
     * and half-away-from-zero is symmetric. */
    int64_t q = pico / 1000, r = pico % 1000;
    if (r >= 500)
        q++;
    else if (r <= -500)
        q--;
    return q;
}
