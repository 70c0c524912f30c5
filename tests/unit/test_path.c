/* test_path.c: the canonical path (path.c) from a table: the spellings an
 * upstream would read as a metered endpoint come out as that endpoint, or
 * are refused; canonical paths come back unchanged; no truncation. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "proxy/path.h"

static const struct {
    const char *raw;
    enum path_result rc;
    const char *want; /* PATH_OK: the canonical form */
} cases[] = {
    {"/v1/chat/completions", PATH_OK, "/v1/chat/completions"},
    {"/", PATH_OK, "/"},
    /* issue 17's variants */
    {"/v1/chat/completion%73", PATH_OK, "/v1/chat/completions"},
    {"/v1/chat/completions/", PATH_OK, "/v1/chat/completions"},
    {"/v1/Chat/Completions", PATH_OK, "/v1/chat/completions"},
    {"/V1/CHAT/COMPLETIONS", PATH_OK, "/v1/chat/completions"},
    {"/v1/chat/completions;x", PATH_BAD, NULL},
    {"/v1/chat;x/completions", PATH_BAD, NULL},
    {"/v1/chat/completions%20", PATH_BAD, NULL},
    {"/v1/chat/completions ", PATH_BAD, NULL},
    {"/v1/chat/completions.json", PATH_BAD, NULL},
    {"/v1/Messages.JSON", PATH_BAD, NULL},
    {"/v1beta/models/gemini-2.5-flash:generate%43ontent", PATH_OK,
     "/v1beta/models/gemini-2.5-flash:generateContent"},
    {"/v1beta/models/gemini-2.5-flash%3AgenerateContent", PATH_OK,
     "/v1beta/models/gemini-2.5-flash:generateContent"},
    {"/v1beta/models/gemini-2.5-flash%3agenerateCONTENT", PATH_OK,
     "/v1beta/models/gemini-2.5-flash:generateContent"},
    {"/v1beta/models/gemini-2.5-flash:streamGenerateContent", PATH_OK,
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent"},
    {"/v1beta/models/gemini-2.5-flash:generateContent.json", PATH_BAD, NULL},
    {"/v1/%6Dessages", PATH_OK, "/v1/messages"},
    {"/v1/MESSAGES/count_tokens", PATH_OK, "/v1/messages/count_tokens"},
    /* ids keep their case: only fixed words are respelled */
    {"/v1/responses/resp_AbC", PATH_OK, "/v1/responses/resp_AbC"},
    {"/v1/files/File-Models", PATH_OK, "/v1/files/File-Models"},
    /* encodings that are not the same character either way */
    {"/v1/chat%2Fcompletions", PATH_BAD, NULL},
    {"/v1/chat/%2e%2e/completions", PATH_BAD, NULL},
    {"/v1/chat/%2E/completions", PATH_BAD, NULL},
    {"/v1/chat/completions%00", PATH_BAD, NULL},
    {"/v1/chat/completions%3B", PATH_BAD, NULL},
    {"/v1/chat/completions%2573", PATH_BAD, NULL},
    {"/v1/chat/completions%", PATH_BAD, NULL},
    {"/v1/chat/completions%7", PATH_BAD, NULL},
    {"/v1/chat/completions%G0", PATH_BAD, NULL},
    {"/v1/chat\\completions", PATH_BAD, NULL},
    {"/v1/chat/compl\xc3\xa9tions", PATH_BAD, NULL},
    {"/v1/chat/completions\t", PATH_BAD, NULL},
    /* segments */
    {"/v1//chat/completions", PATH_BAD, NULL},
    {"/v1/chat/completions//", PATH_BAD, NULL},
    {"/v1/./chat/completions", PATH_BAD, NULL},
    {"/v1/../v1/chat/completions", PATH_BAD, NULL},
    {"/v1/chat/..", PATH_BAD, NULL},
    {"v1/chat/completions", PATH_BAD, NULL},
    {"", PATH_BAD, NULL},
    {"/v1/a.b/~x_-y!$&'()*+,=:@", PATH_OK, "/v1/a.b/~x_-y!$&'()*+,=:@"},
};

static void test_table(void)
{
    char out[PATH_MAX_LEN + 1];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const char *why = NULL;
        enum path_result rc = path_canonical(cases[i].raw, out, sizeof(out), &why);
        bool ok = rc == cases[i].rc;
        if (ok && rc == PATH_OK)
            ok = strcmp(out, cases[i].want) == 0;
        if (ok && rc == PATH_BAD)
            ok = why && *why;
        if (!ok) {
            fprintf(stderr, "  case %zu \"%s\": rc %d out \"%s\" why \"%s\"\n", i, cases[i].raw, rc,
                    rc == PATH_OK ? out : "", why ? why : "");
            CHECK(ok);
        }
        /* canonical is a fixed point */
        if (rc == PATH_OK) {
            char again[PATH_MAX_LEN + 1];
            CHECK(path_canonical(out, again, sizeof(again), NULL) == PATH_OK);
            CHECK_STR(again, out);
        }
    }
}

/* Long paths: whole up to PATH_MAX_LEN, 414 past it, never cut. */
static void test_lengths(void)
{
    static char raw[3 * PATH_MAX_LEN + 16], out[PATH_MAX_LEN + 1];
    memset(raw, 'a', sizeof(raw));
    raw[0] = '/';
    raw[PATH_MAX_LEN] = '\0';
    CHECK(path_canonical(raw, out, sizeof(out), NULL) == PATH_OK);
    CHECK_INT(strlen(out), PATH_MAX_LEN);
    raw[PATH_MAX_LEN] = 'a';
    raw[PATH_MAX_LEN + 1] = '\0';
    CHECK(path_canonical(raw, out, sizeof(out), NULL) == PATH_TOO_LONG);
    /* encoded letters count once decoded */
    size_t n = 1;
    raw[0] = '/';
    while (n + 3 <= 3 * PATH_MAX_LEN - 3) {
        memcpy(raw + n, "%61", 3);
        n += 3;
    }
    raw[n] = '\0';
    CHECK(path_canonical(raw, out, sizeof(out), NULL) == PATH_OK);
    CHECK_INT(strlen(out), 1 + (n - 1) / 3);
    /* a small buffer is never overrun */
    char small[8];
    CHECK(path_canonical("/v1/chat/completions", small, sizeof(small), NULL) == PATH_TOO_LONG);
    CHECK(path_canonical("/v1", small, sizeof(small), NULL) == PATH_OK);
    CHECK_STR(small, "/v1");
}

static const struct check_test tests[] = {
    {"table", test_table},
    {"lengths", test_lengths},
};

int main(void)
{
    return CHECK_MAIN("path", tests);
}
