/* money.h: integer money. Totals are nano-USD (1e-9 USD) in int64; prices are
 * pico-USD per token so that list prices with many decimals stay exact. No
 * floating point is ever accumulated. */
#ifndef TOLLGATE_MONEY_H
#define TOLLGATE_MONEY_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

typedef int64_t money_t; /* nano-USD */
typedef int64_t price_t; /* pico-USD per token */
#define MONEY_PER_USD 1000000000LL

/* Formats m as a decimal USD string with up to 9 decimals and no trailing
 * zeros ("0.000405", "9", "-31.5"). Returns the length written, or -1 if n
 * is too small. */
int money_format(money_t m, char *buf, size_t n) MUST_CHECK;

/* Parses a decimal USD amount ("9", "0.50", "1e-3" is not accepted) into
 * nano-USD. Returns 0, or -1 on syntax error, more than 9 decimals or overflow. */
int money_parse_usd(const char *s, money_t *out) MUST_CHECK;

/* Parses a list price in USD per 1M tokens ("2.50", "0.075") into pico-USD
 * per token. Returns 0, or -1 on syntax error, more than 6 decimals or overflow. */
int money_parse_price_per_mtok(const char *s, price_t *out) MUST_CHECK;

/* tokens * price in pico-USD, saturating at INT64_MAX. */
int64_t money_pico_mul(int64_t tokens, price_t price);
/* Rounds a pico-USD sum to nano-USD (half away from zero). */
money_t money_from_pico(int64_t pico);

#endif
