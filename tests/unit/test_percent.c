/* test_percent.c: the one percent-decoder, from a table. */
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "core/percent.h"
#include "core/util.h"

static const struct pct_case {
    const char *in;
    bool plus;       /* plus_is_space */
    size_t cap;      /* 0: 64 */
    const char *out; /* NULL: -1 */
} cases[] = {
    {"", false, 0, ""},
    {"abc", false, 0, "abc"},
    {"a%2Fb", false, 0, "a/b"},
    {"a%2fb", false, 0, "a/b"},
    {"%41%42", false, 0, "AB"},
    {"p%40ss%3Aw", false, 0, "p@ss:w"},
    {"a+b", false, 0, "a+b"},
    {"a+b", true, 0, "a b"},
    {"%2B", true, 0, "+"},
    {"%", false, 0, NULL},
    {"%4", false, 0, NULL},
    {"a%4", false, 0, NULL},
    {"%G1", false, 0, NULL},
    {"%1G", false, 0, NULL},
    {"%00", false, 0, NULL}, /* an encoded NUL would cut the string short */
    {"%%41", false, 0, NULL},
    {"%C3%A9", false, 0, "\xc3\xa9"},
    {"abcd", false, 5, "abcd"},
    {"abcde", false, 5, NULL}, /* no room for the NUL */
    {"%41%41%41%41", false, 5, "AAAA"},
};

static void test_table(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct pct_case *c = &cases[i];
        char out[64];
        size_t cap = c->cap ? c->cap : sizeof(out);
        int n = percent_decode(c->in, strlen(c->in), c->plus, out, cap);
        bool ok = c->out ? n == (int)strlen(c->out) && strcmp(out, c->out) == 0 : n == -1;
        if (!ok) {
            fprintf(stderr, "  case %zu '%s': got %d '%s'\n", i, c->in, n, n >= 0 ? out : "");
            check_failed_now = 1;
        }
        char *dup = percent_decode_dup(c->in, strlen(c->in));
        if (!c->plus && !c->cap)
            CHECK(c->out ? dup && strcmp(dup, c->out) == 0 : dup == NULL);
        free(dup);
    }
}

static const struct check_test tests[] = {{"table", test_table}};

int main(void)
{
    return CHECK_MAIN("percent", tests);
}
