/* test_sat.c: saturating int64 arithmetic (core/sat.h), from tables: every
 * sign combination at, one inside and one past the bounds. */
#include <stdint.h>

#include "check.h"
#include "core/sat.h"
#include "core/util.h"

struct sat_case {
    int64_t a, b, want;
};

static const struct sat_case add_cases[] = {
    {0, 0, 0},
    {1, 2, 3},
    {-5, 3, -2},
    {INT64_MAX - 1, 1, INT64_MAX},
    {INT64_MAX, 1, INT64_MAX},
    {INT64_MAX, INT64_MAX, INT64_MAX},
    {9223372036854774807, 9000000000000000, INT64_MAX}, /* a month near the top + $9M */
    {INT64_MAX, -1, INT64_MAX - 1},
    {INT64_MAX, INT64_MIN, -1},
    {INT64_MIN + 1, -1, INT64_MIN},
    {INT64_MIN, -1, INT64_MIN},
    {INT64_MIN, INT64_MIN, INT64_MIN},
    {INT64_MIN, 1, INT64_MIN + 1},
    {-1, INT64_MIN, INT64_MIN},
};

static const struct sat_case mul_cases[] = {
    {0, INT64_MAX, 0},
    {3, 4, 12},
    {-3, 4, -12},
    {-3, -4, 12},
    {INT64_MAX, 1, INT64_MAX},
    {INT64_MAX, 2, INT64_MAX},
    {INT64_MAX, -2, INT64_MIN},
    {-2, INT64_MAX, INT64_MIN},
    {INT64_MIN, -1, INT64_MAX},
    {INT64_MIN, 1, INT64_MIN},
    {INT64_MIN, 2, INT64_MIN},
    {4611686018427387904, 2, INT64_MAX},  /* 2^62 * 2 = 2^63 */
    {-4611686018427387904, 2, INT64_MIN}, /* -2^63 fits */
    {3037000500, 3037000500, INT64_MAX},  /* just past sqrt(INT64_MAX) squared */
    {3037000499, 3037000499, 9223372030926249001},
};

static void test_add(void)
{
    for (size_t i = 0; i < ARRAY_LEN(add_cases); i++) {
        const struct sat_case *c = &add_cases[i];
        CHECK_INT(sat_add(c->a, c->b), c->want);
        CHECK_INT(sat_add(c->b, c->a), c->want); /* commutes */
    }
}

static void test_mul(void)
{
    for (size_t i = 0; i < ARRAY_LEN(mul_cases); i++) {
        const struct sat_case *c = &mul_cases[i];
        CHECK_INT(sat_mul(c->a, c->b), c->want);
        CHECK_INT(sat_mul(c->b, c->a), c->want);
    }
}

static const struct check_test tests[] = {
    {"add", test_add},
    {"mul", test_mul},
};

int main(void)
{
    return CHECK_MAIN("sat", tests);
}
