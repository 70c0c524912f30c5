/* test_numtext.c: decimal text and bounded appends without printf, against
 * snprintf as the reference. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "core/numtext.h"
#include "core/util.h"

static void test_i64(void)
{
    const int64_t cases[] = {
        0,   1,         -1,        9,         10,        -10,           99,
        100, 123456789, -98765432, INT64_MAX, INT64_MIN, INT64_MIN + 1, 1000000000000000000};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char got[NUMTEXT_I64_MAX], want[32];
        snprintf(want, sizeof(want), "%" PRId64, cases[i]);
        size_t n = numtext_i64(got, cases[i]);
        CHECK_STR(got, want);
        CHECK_INT(n, strlen(want));
    }
}

static void test_uint_width(void)
{
    const struct {
        uint64_t v;
        int width;
        const char *want;
    } cases[] = {
        {0, 0, "0"},     {0, 2, "00"},   {7, 2, "07"},      {12, 2, "12"},
        {123, 2, "123"}, {5, 4, "0005"}, {2026, 4, "2026"}, {UINT64_MAX, 1, "18446744073709551615"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char buf[32];
        char *end = numtext_put_uint(buf, buf + sizeof(buf), cases[i].v, cases[i].width);
        CHECK(end != NULL);
        CHECK_STR(buf, cases[i].want);
        CHECK_INT(end - buf, strlen(cases[i].want));
    }
}

/* a chain of appends: exact fit, one byte short (no room for the NUL), and
 * a NULL from an earlier step passes through */
static void test_bounds(void)
{
    char buf[8];
    char *at = numtext_put_str(buf, buf + sizeof(buf), "abc");
    at = numtext_put(at, buf + sizeof(buf), "-", 1);
    at = numtext_put_uint(at, buf + sizeof(buf), 42, 3);
    CHECK(at != NULL);
    CHECK_STR(buf, "abc-042");
    CHECK(numtext_put(at, buf + sizeof(buf), "x", 1) == NULL); /* 8 bytes + NUL */
    CHECK(numtext_put_str(buf, buf + 3, "abc") == NULL);
    CHECK(numtext_put_uint(buf, buf + 3, 123, 0) == NULL);
    CHECK(numtext_put_uint(buf, buf + 4, 123, 0) != NULL);
    CHECK(numtext_put_str(NULL, buf + sizeof(buf), "a") == NULL);
    CHECK(numtext_put_uint(NULL, buf + sizeof(buf), 1, 0) == NULL);
}

int main(void)
{
    static const struct check_test tests[] = {
        {"i64", test_i64},
        {"uint_width", test_uint_width},
        {"bounds", test_bounds},
    };
    return CHECK_MAIN("numtext", tests);
}
