/* test_headers.c: the header rule table, both directions, from tables. */
#include <stdbool.h>

#include "check.h"
#include "core/util.h"
#include "http/headers.h"

static const struct rule_case {
    const char *name;
    const char *connection; /* the message's Connection value, NULL: none */
    bool up, down;          /* dropped on the way up / down */
} cases[] = {
    {"Connection", NULL, true, true},
    {"keep-alive", NULL, true, true},
    {"TE", NULL, true, true},
    {"Trailer", NULL, true, true},
    {"Transfer-Encoding", NULL, true, true},
    {"Upgrade", NULL, true, true},
    {"Proxy-Connection", NULL, true, true},
    {"Proxy-Authorization", NULL, true, true},
    {"proxy-authenticate", NULL, true, true},
    {"Content-Length", NULL, true, true},
    {"Host", NULL, true, false},
    {"Expect", NULL, true, false},
    {"Accept-Encoding", NULL, true, false},
    {"Content-Type", NULL, false, false},
    {"Content-Encoding", NULL, true, false},
    {"X-Tollgate-Client-Token", NULL, true, false},
    {"x-tollgate-anything", NULL, true, false},
    {"OpenAI-Organization", NULL, false, false},
    {"Authorization", NULL, false, false},
    {"X-Foo", "close, X-Foo", true, true},
    {"x-foo", " keep-alive ,\tX-FOO\t", true, true},
    {"X-Foo", "X-Foobar", false, false},
    {"X-Foo", "X-Fo", false, false},
    {"X-Foo", ",,", false, false},
    {"X-Foo", "", false, false},
    {"", "", false, false},
};

static void test_rules(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct rule_case *c = &cases[i];
        bool up = header_drop_up(c->name, c->connection);
        bool down = header_drop_down(c->name, c->connection);
        if (up != c->up || down != c->down) {
            fprintf(stderr, "  case %zu (%s, %s): up %d down %d\n", i, c->name,
                    c->connection ? c->connection : "-", up, down);
            check_failed_now = 1;
        }
    }
}

static void test_list(void)
{
    CHECK(header_in_list("a, b ,c", "b"));
    CHECK(header_in_list("a, b ,c", "C"));
    CHECK(!header_in_list("a, b ,c", "d"));
    CHECK(!header_in_list(NULL, "a"));
    CHECK(!header_in_list("a", ""));
    CHECK(header_flags("PROXY-anything") == HEADER_HOP);
    CHECK(header_flags("x-request-id") == 0);
    CHECK(header_flags("x-tollgate-request-id") == HEADER_DROP_UP);
}

static const struct check_test tests[] = {
    {"rules", test_rules},
    {"list", test_list},
};

int main(void)
{
    return CHECK_MAIN("headers", tests);
}
