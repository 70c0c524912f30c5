/* check.h: the unit tests' harness. Each test file defines test functions,
 * lists them in a table and calls check_main; every CHECK counts, a failed
 * one prints file:line and marks the test failed. The last line is
 * "N passed, N failed" (tests, not checks). */
#ifndef TOLLGATE_CHECK_H
#define TOLLGATE_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failed_now;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)
#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_,    \
                    b_);                                                                           \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,    \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                       \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
    } while (0)

struct check_test {
    const char *name;
    void (*fn)(void);
};

static inline int check_main(const char *suite, const struct check_test *t, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        check_failed_now = 0;
        t[i].fn();
        printf("%s %s.%s\n", check_failed_now ? "FAIL" : "ok  ", suite, t[i].name);
        if (check_failed_now)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define CHECK_MAIN(suite, tests) check_main(suite, tests, sizeof(tests) / sizeof(tests[0]))

#endif
