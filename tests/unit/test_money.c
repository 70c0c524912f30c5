/* test_money.c: money parsing, formatting, pico multiplication and rounding,
 * from tables. */
#include <stdint.h>

#include "check.h"
#include "core/money.h"

struct parse_case {
    const char *in;
    int rc;
    int64_t want;
};

static const struct parse_case usd_cases[] = {
    {"0", 0, 0},
    {"9", 0, 9000000000LL},
    {"0.50", 0, 500000000},
    {"0.000405", 0, 405000},
    {"-31.5", 0, -31500000000LL},
    {"0.000000001", 0, 1},
    {"-0.000000001", 0, -1},
    {"9223372036.854775807", 0, INT64_MAX},
    {"9223372036.854775808", -1, 0}, /* one past INT64_MAX */
    {"9223372037", -1, 0},
    {"12345678901234567890", -1, 0}, /* 20 digits */
    {"0.0000000001", -1, 0},         /* 10 decimals */
    {"1e3", -1, 0},
    {"1E3", -1, 0},
    {"1.2.3", -1, 0},
    {"-", -1, 0},
    {"", -1, 0},
    {"+1", -1, 0},
    {"--1", -1, 0},
    {".5", -1, 0},
    {"5.", -1, 0},
    {" 1", -1, 0},
    {"1 ", -1, 0},
    {"0x10", -1, 0},
    {"nan", -1, 0},
    {"1,5", -1, 0},
};

static const struct parse_case price_cases[] = {
    {"2.50", 0, 2500000},
    {"0.075", 0, 75000},
    {"0.000001", 0, 1},
    {"0", 0, 0},
    {"168", 0, 168000000},
    {"0.0000001", -1, 0}, /* 7 decimals */
    {"-1", -1, 0},        /* prices are never negative */
    {"-0", -1, 0},
    {"1e-6", -1, 0},
    {"9223372036854.775807", 0, INT64_MAX},
    {"9223372036855", -1, 0},
    {"2.5.0", -1, 0},
    {"", -1, 0},
};

static void test_parse_usd(void)
{
    for (size_t i = 0; i < ARRAY_LEN(usd_cases); i++) {
        const struct parse_case *c = &usd_cases[i];
        money_t m = 12345;
        int rc = money_parse_usd(c->in, &m);
        if (rc != c->rc || (rc == 0 && m != c->want))
            fprintf(stderr, "  case \"%s\"\n", c->in);
        CHECK_INT(rc, c->rc);
        if (rc == 0)
            CHECK_INT(m, c->want);
    }
}

static void test_parse_price(void)
{
    for (size_t i = 0; i < ARRAY_LEN(price_cases); i++) {
        const struct parse_case *c = &price_cases[i];
        price_t p = 12345;
        int rc = money_parse_price_per_mtok(c->in, &p);
        if (rc != c->rc || (rc == 0 && p != c->want))
            fprintf(stderr, "  case \"%s\"\n", c->in);
        CHECK_INT(rc, c->rc);
        if (rc == 0)
            CHECK_INT(p, c->want);
    }
}

static const struct {
    money_t m;
    const char *want;
} format_cases[] = {
    {0, "0"},
    {405000, "0.000405"},
    {9000000000LL, "9"},
    {-31500000000LL, "-31.5"},
    {1, "0.000000001"},
    {-1, "-0.000000001"},
    {7250000, "0.00725"},
    {1522500000, "1.5225"},
    {INT64_MAX, "9223372036.854775807"},
    {INT64_MIN, "-9223372036.854775808"},
};

static void test_format(void)
{
    for (size_t i = 0; i < ARRAY_LEN(format_cases); i++) {
        char buf[32];
        int n = money_format(format_cases[i].m, buf, sizeof(buf));
        CHECK_INT(n, (long long)strlen(format_cases[i].want));
        CHECK_STR(buf, format_cases[i].want);
    }
}

/* Every formatted value parses back to itself. */
static void test_round_trip(void)
{
    for (size_t i = 0; i < ARRAY_LEN(format_cases); i++) {
        char buf[32];
        money_t back = 0;
        if (format_cases[i].m == INT64_MIN)
            continue; /* its magnitude is not representable as a positive */
        CHECK(money_format(format_cases[i].m, buf, sizeof(buf)) > 0);
        CHECK_INT(money_parse_usd(buf, &back), 0);
        CHECK_INT(back, format_cases[i].m);
    }
}

static void test_format_small_buffer(void)
{
    char buf[16];
    CHECK_INT(money_format(1500000000, buf, sizeof(buf)), 3);
    CHECK_STR(buf, "1.5");
    CHECK_INT(money_format(405000, buf, 8), -1); /* "0.000405" needs 9 bytes */
    CHECK_INT(money_format(405000, buf, 9), 8);
    CHECK_INT(money_format(0, buf, 1), -1);
}

static const struct {
    int64_t tokens;
    price_t price;
    int64_t want;
} mul_cases[] = {
    {1000, 2500000, 2500000000LL},
    {0, INT64_MAX, 0},
    {INT64_MAX, 0, 0},
    {INT64_MAX, 1, INT64_MAX},
    {INT64_MAX, 2, INT64_MAX},
    {4611686018427387904LL, 2, INT64_MAX}, /* 2^62 * 2 */
    {4611686018427387903LL, 2, 9223372036854775806LL},
    {1LL << 40, 1LL << 40, INT64_MAX},
    {-(1LL << 40), 1LL << 40, INT64_MIN},
};

static void test_pico_mul(void)
{
    for (size_t i = 0; i < ARRAY_LEN(mul_cases); i++)
        CHECK_INT(money_pico_mul(mul_cases[i].tokens, mul_cases[i].price), mul_cases[i].want);
}

static const struct {
    int64_t pico;
    money_t want;
} round_cases[] = {
    {0, 0},
    {499, 0},
    {500, 1},
    {1499, 1},
    {1500, 2},
    {-499, 0},
    {-500, -1},
    {-1500, -2},
    {2000, 2},
    {7250000000LL, 7250000},
    {INT64_MAX, 9223372036854776LL},
    {INT64_MIN, -9223372036854776LL},
};

static void test_from_pico(void)
{
    for (size_t i = 0; i < ARRAY_LEN(round_cases); i++)
        CHECK_INT(money_from_pico(round_cases[i].pico), round_cases[i].want);
}

static const struct check_test tests[] = {
    {"parse_usd", test_parse_usd},
    {"parse_price", test_parse_price},
    {"format", test_format},
    {"round_trip", test_round_trip},
    {"format_small_buffer", test_format_small_buffer},
    {"pico_mul", test_pico_mul},
    {"from_pico", test_from_pico},
};

int main(void)
{
    return CHECK_MAIN("money", tests);
}
