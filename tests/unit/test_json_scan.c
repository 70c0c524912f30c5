/* test_json_scan.c: the request-body scanner (http/json_scan.c) on tables of
 * bodies, each scanned whole, cut at every split point into two pieces and
 * fed one byte at a time (all must agree), and every truncated prefix of a
 * valid body refused: verdict, error and offset, captured values with their
 * offsets, text bytes, and the top level's shape. */
#include "check.h"

#include <stdbool.h>
#include <stdlib.h>

#include "http/json_scan.h"

static const char *const skip[] = {"image_url", "source", "inlineData"};

static const struct json_scan_field fields[] = {
    {"model", false},                                          /* 0 */
    {"stream", false},                                         /* 1 */
    {"max_tokens", false},                                     /* 2 */
    {"stream_options", false},                                 /* 3 */
    {"stream_options.include_usage", false},                   /* 4 */
    {"generationConfig.thinkingConfig.thinkingBudget", false}, /* 5 */
    {"messages", true},                                        /* 6 */
    {"temperature", false},                                    /* 7 */
};

static const struct json_scan_spec spec = {fields, ARRAY_LEN(fields), skip, ARRAY_LEN(skip)};

static const struct {
    const char *body;
    const char *model;    /* captured model string, NULL when not a string */
    int stream;           /* -1 absent, 0 false, 1 true */
    long long max_tokens; /* -1 when not an integer */
    size_t text;
    size_t members;
} valid[] = {
    /* what the providers read */
    {"{\"model\":\"gpt-4o\",\"stream\":true,\"max_tokens\":100}", "gpt-4o", 1, 100, 0, 3},
    {" {\"model\" : \"m\\u00e9\\ud83d\\ude00\\\"\" , \"stream\":false}\r\n",
     "m\xc3\xa9\xf0\x9f\x98\x80\"", 0, -1, 0, 2},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"},{\"content\":[1,2.5]}]}", NULL, -1,
     -1, 4 + 5 + 4 + 4, 1},
    {"{\"messages\":[{\"image_url\":{\"url\":\"xxxxxxxx\"},\"text\":\"ab\"},"
     "\"data:image/png;base64,AAAA\",\"\\u0041\"]}",
     NULL, -1, -1, 2 + 1, 1},
    {"{\"a\":{\"x\":1,\"x\":2},\"model\":\"m\",\"stream\":null}", "m", -1, -1, 0, 3},
    {"{\"max_tokens\":-9223372036854775808}", NULL, -1, INT64_MIN, 0, 1},
    {"{\"max_tokens\":1.5e3}", NULL, -1, -1, 0, 1},
    {"{\"model\":\"a\\u0000b\"}", "a", -1, -1, 0, 1},
    {"[1,{\"model\":\"x\"}]", NULL, -1, -1, 0, 2},
    {"{}", NULL, -1, -1, 0, 0},
    {"{\"temperature\":1.7976931348623157e308,\"m\\u006fdel\":\"esc\"}", "esc", -1, -1, 0, 2},
};

/* refused: why and where */
static const struct {
    const char *body;
    const char *err; /* start of the message */
    size_t at;
    size_t len; /* 0: strlen(body) */
} refused[] = {
    {"{\"model\":\"a\",\"model\":\"b\"}", "duplicate member \"model\"", 19, 0},
    {"{\"mo\\u0064el\":\"a\",\"model\":\"b\"}", "duplicate member \"model\"", 24, 0},
    {"\xef\xbb\xbf{}", "the body must be a JSON object or array", 0, 0},
    {"\"model\"", "the body must be a JSON object or array", 0, 0},
    {"{\"model\":\"\\ud800\"}", "lone Unicode surrogate", 16, 0},
    {"{\"model\":\"\\udc00\"}", "lone Unicode surrogate", 15, 0},
    {"{\"model\":\"\\ud800\\u0041\"}", "invalid Unicode surrogate pair", 21, 0},
    {"{\"model\":\"\xc0\xaf\"}", "invalid UTF-8 byte 0xc0", 10, 0},
    {"{\"model\":\"\xed\xa0\x80\"}", "invalid UTF-8 sequence", 10, 0},
    {"{\"model\":\"\xe2\x82\"}", "invalid UTF-8 sequence", 10, 0},
    {"{\"model\":\"a\nb\"}", "control character 0x0a", 11, 0},
    {"{\"k\\u0000\":1}", "NUL byte in a member name", 9, 0},
    {"{\"a\":1\x00}", "',' or '}' must come here", 6, 8},
    {"{\"a\":01}", "numbers have no leading zeros", 6, 0},
    {"{\"a\":1.}", "a digit must follow '.'", 7, 0},
    {"{\"a\":-}", "a digit must follow '-'", 6, 0},
    {"{\"a\":1e}", "a digit must follow the exponent", 7, 0},
    {"{\"a\":9223372036854775808}", "integer out of range", 5, 0},
    {"{\"a\":-9223372036854775809}", "integer out of range", 5, 0},
    {"{\"a\":1e309}", "real number overflow", 5, 0},
    {"{\"a\":1.7976931348623159e308}", "real number overflow", 5, 0},
    {"{\"a\":tru}", "invalid literal", 5, 0},
    {"{\"a\":1,}", "a member name (string) must come here", 7, 0},
    {"[1,]", "unexpected ']'", 3, 0},
    {"{\"a\" 1}", "':' must follow a member name", 5, 0},
    {"{\"a\":1]", "unexpected ']'", 6, 0},
    {"{} {}", "nothing may follow the top-level value", 3, 0},
    {"{\"a\":\"\\x\"}", "invalid escape", 7, 0},
    {"{\"a\":\"\\u12g4\"}", "invalid \\u escape", 10, 0},
    {"", "the body is empty", 0, 0},
    {"{\"a\":[1,2", "the body ends too early", 9, 0},
};

static void check_valid(size_t i, const struct json_scan *s, int rc)
{
    if (rc != 0)
        fprintf(stderr, "  valid %zu: %s at %zu\n", i, s->err, s->err_at);
    CHECK_INT(rc, 0);
    if (rc != 0)
        return;
    const struct json_scan_value *m = &s->v[0], *st = &s->v[1], *mt = &s->v[2];
    if (valid[i].model) {
        CHECK_INT(m->type, JSON_SCAN_STRING);
        CHECK_STR(m->str, valid[i].model);
    } else {
        CHECK(m->type != JSON_SCAN_STRING);
    }
    CHECK_INT(st->type == JSON_SCAN_TRUE    ? 1
              : st->type == JSON_SCAN_FALSE ? 0
                                            : -1,
              valid[i].stream);
    CHECK_INT(mt->type == JSON_SCAN_INT ? mt->i : -1, valid[i].max_tokens);
    CHECK_INT(s->text_bytes, valid[i].text);
    CHECK_INT(s->top_members, valid[i].members);
}

static void check_refused(size_t i, const struct json_scan *s, int rc)
{
    CHECK_INT(rc, -1);
    if (strncmp(s->err, refused[i].err, strlen(refused[i].err)) != 0 || s->err_at != refused[i].at)
        fprintf(stderr, "  refused %zu: \"%s\" at %zu, expected \"%s\" at %zu\n", i, s->err,
                s->err_at, refused[i].err, refused[i].at);
    CHECK(strncmp(s->err, refused[i].err, strlen(refused[i].err)) == 0);
    CHECK_INT(s->err_at, refused[i].at);
}

static int scan_split(struct json_scan *s, const char *b, size_t n, size_t cut, size_t step)
{
    json_scan_init(s, &spec);
    int rc = 0;
    size_t at = 0;
    if (cut) {
        rc = json_scan_feed(s, b, cut);
        at = cut;
    }
    while (rc == 0 && at < n) {
        size_t k = step && step < n - at ? step : n - at;
        rc = json_scan_feed(s, b + at, k);
        at += k;
    }
    if (rc == 0)
        rc = json_scan_finish(s);
    return rc;
}

/* Whole, cut at every point into two pieces, and byte by byte: one answer. */
static void test_cases(void)
{
    static struct json_scan s;
    for (size_t i = 0; i < ARRAY_LEN(valid) + ARRAY_LEN(refused); i++) {
        bool ok = i < ARRAY_LEN(valid);
        size_t r = i - ARRAY_LEN(valid);
        const char *b = ok ? valid[i].body : refused[r].body;
        size_t n = ok || !refused[r].len ? strlen(b) : refused[r].len;
        for (size_t cut = 0; cut <= n; cut++) { /* n: byte by byte */
            int rc = scan_split(&s, b, n, cut < n ? cut : 0, cut < n ? 0 : 1);
            if (ok)
                check_valid(i, &s, rc);
            else
                check_refused(r, &s, rc);
            json_scan_free(&s);
        }
    }
}

/* Every strict prefix of a valid body is incomplete, never valid. */
static void test_prefixes(void)
{
    static struct json_scan s;
    for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
        const char *b = valid[i].body;
        size_t n = strlen(b);
        while (n > 0 && strchr(" \r\n\t", b[n - 1]))
            n--;
        for (size_t k = 0; k < n; k++) {
            json_scan_init(&s, &spec);
            int rc = json_scan_feed(&s, b, k);
            CHECK_INT(rc, 0);
            CHECK_INT(json_scan_finish(&s), -1);
            json_scan_free(&s);
        }
    }
}

/* Offsets cut out the values exactly, for splicing. */
static void test_offsets(void)
{
    static struct json_scan s;
    const char *b = "{ \"stream_options\" : {\"include_usage\":false, \"x\":[1]} ,"
                    "\"generationConfig\":{\"thinkingConfig\":{\"thinkingBudget\":-1}},"
                    "\"model\":\"gpt\",\"temperature\":0.25}";
    json_scan_init(&s, &spec);
    CHECK_INT(json_scan_feed(&s, b, strlen(b)), 0);
    CHECK_INT(json_scan_finish(&s), 0);
    const struct json_scan_value *so = &s.v[3], *iu = &s.v[4], *tb = &s.v[5], *m = &s.v[0];
    CHECK_INT(so->type, JSON_SCAN_OBJECT);
    CHECK_INT(so->members, 2);
    CHECK(strncmp(b + so->start, "{\"include_usage\"", 16) == 0);
    CHECK(strncmp(b + so->end - 3, "1]}", 3) == 0);
    CHECK_INT(iu->type, JSON_SCAN_FALSE);
    CHECK_INT(iu->end - iu->start, 5);
    CHECK(strncmp(b + iu->start, "false", 5) == 0);
    CHECK_INT(tb->type, JSON_SCAN_INT);
    CHECK_INT(tb->i, -1);
    CHECK(strncmp(b + m->start, "\"gpt\"", m->end - m->start) == 0);
    CHECK_INT(m->end - m->start, 5);
    CHECK_INT(s.v[7].type, JSON_SCAN_REAL);
    CHECK(s.v[7].d == 0.25);
    CHECK_INT(s.top_open, 0);
    CHECK_INT(s.top_close, strlen(b) - 1);
    CHECK_INT(s.top_members, 4);
    json_scan_free(&s);
}

/* A captured string's characters (code points), at every split of the
 * body and through escapes: speech is billed per character. */
static void test_chars(void)
{
    static const struct {
        const char *body;
        size_t len, chars;
    } cases[] = {
        {"{\"model\":\"abc\"}", 3, 3},
        {"{\"model\":\"caf\u00e9 \u65e5\u672c\"}", 12, 7},   /* é 2 bytes, 日本 3 each */
        {"{\"model\":\"x\\u00e9\\n\\ud83d\\ude00\"}", 8, 4}, /* escapes: é, LF, 😀 */
        {"{\"model\":\"\"}", 0, 0},
        {"{\"x\":\"\u00e9\u00e9\",\"model\":\"a\"}", 1, 1}, /* other strings do not count */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].body);
        for (size_t cut = 0; cut <= n; cut++) {
            static struct json_scan s;
            json_scan_init(&s, &spec);
            CHECK_INT(json_scan_feed(&s, cases[i].body, cut), 0);
            CHECK_INT(json_scan_feed(&s, cases[i].body + cut, n - cut), 0);
            CHECK_INT(json_scan_finish(&s), 0);
            CHECK_INT(s.v[0].len, cases[i].len);
            CHECK_INT(s.v[0].chars, cases[i].chars);
            json_scan_free(&s);
        }
    }
}

/* Many top-level members: the key set grows and still finds a duplicate. */
static void test_many_keys(void)
{
    static struct json_scan s;
    size_t cap = 2000 * 16 + 64, n = 0;
    char *b = malloc(cap);
    CHECK(b != NULL);
    if (!b)
        return;
    n += (size_t)snprintf(b + n, cap - n, "{");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(b + n, cap - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    size_t body = n;
    n += (size_t)snprintf(b + n, cap - n, "}");
    json_scan_init(&s, &spec);
    CHECK_INT(json_scan_feed(&s, b, n), 0);
    CHECK_INT(json_scan_finish(&s), 0);
    CHECK_INT(s.top_members, 2000);
    json_scan_free(&s);
    n = body + (size_t)snprintf(b + body, cap - body, ",\"k1234\":0}");
    json_scan_init(&s, &spec);
    CHECK_INT(json_scan_feed(&s, b, n), -1);
    CHECK_STR(s.err, "duplicate member \"k1234\"");
    json_scan_free(&s);
    free(b);
}

/* Nesting: 2048 values deep is fine, 2049 is refused (jansson's limit). */
static void test_depth(void)
{
    static struct json_scan s;
    static char b[2 * 2049 + 1];
    for (size_t depth = 2048; depth <= 2049; depth++) {
        memset(b, '[', depth);
        memset(b + depth, ']', depth);
        json_scan_init(&s, &spec);
        int rc = json_scan_feed(&s, b, 2 * depth);
        if (rc == 0)
            rc = json_scan_finish(&s);
        CHECK_INT(rc, depth == 2048 ? 0 : -1);
        json_scan_free(&s);
    }
}

static const struct check_test tests[] = {
    {"cases", test_cases},         {"prefixes", test_prefixes}, {"offsets", test_offsets},
    {"many_keys", test_many_keys}, {"chars", test_chars},       {"depth", test_depth},
};

int main(void)
{
    return CHECK_MAIN("json_scan", tests);
}
