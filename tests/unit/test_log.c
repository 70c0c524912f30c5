/* test_log.c: log lines as written to stderr (captured through a pipe):
 * plain and JSON shapes, escaping, the level threshold, truncation. */
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Runs fn with stderr redirected into buf (NUL-terminated). */
static void capture(void (*fn)(void), char *buf, size_t n)
{
    int p[2], saved = dup(2);
    size_t len = 0;
    if (pipe(p) < 0)
        abort();
    dup2(p[1], 2);
    close(p[1]);
    fn();
    dup2(saved, 2);
    close(saved);
    for (ssize_t r; len + 1 < n && (r = read(p[0], buf + len, n - 1 - len)) > 0;)
        len += (size_t)r;
    buf[len] = '\0';
    close(p[0]);
}

static void test_level_parse(void)
{
    static const struct {
        const char *s;
        int want;
    } cases[] = {
        {"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
        {"WARN", -1},         {"", -1},           {"verbose", -1},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        CHECK_INT(log_level_parse(cases[i].s), cases[i].want);
}

static void emit_plain(void)
{
    log_setup(LOG_INFO, false);
    log_warn("redis down: %d", 42);
    req_log(LOG_INFO, "r-1", "line\nbreak");
    log_debug("hidden");
}

static void test_plain(void)
{
    char out[4096];
    capture(emit_plain, out, sizeof(out));
    char *second = strchr(out, '\n');
    CHECK(second != NULL);
    if (!second)
        return;
    /* 2026-11-23T10:00:00.123Z level=warn redis down: 42 */
    CHECK(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' && out[19] == '.' && out[23] == 'Z');
    CHECK(strncmp(out + 24, " level=warn redis down: 42\n", 27) == 0);
    CHECK(strstr(second + 1, " level=info [r-1] line\\x0abreak\n") != NULL);
    CHECK(strstr(out, "hidden") == NULL);
    /* exactly two lines */
    CHECK(strchr(second + 1, '\n') != NULL && strchr(second + 1, '\n')[1] == '\0');
}

static void emit_json(void)
{
    log_setup(LOG_DEBUG, true);
    req_log(LOG_ERROR, "r\"2", "quote \" slash \\ tab \t done");
    log_debug("debug on");
}

static void test_json(void)
{
    char out[4096];
    capture(emit_json, out, sizeof(out));
    char *nl = strchr(out, '\n');
    CHECK(nl != NULL);
    if (!nl)
        return;
    *nl = '\0';
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "level")), "error");
    CHECK_STR(json_string_value(json_object_get(j, "req")), "r\"2");
    CHECK_STR(json_string_value(json_object_get(j, "msg")), "quote \" slash \\ tab \t done");
    CHECK(json_string_length(json_object_get(j, "ts")) == 24);
    json_decref(j);
    j = json_loads(nl + 1, 0, NULL);
    CHECK(j != NULL);
    CHECK(json_is_null(json_object_get(j, "req")));
    CHECK_STR(json_string_value(json_object_get(j, "msg")), "debug on");
    json_decref(j);
}

static char big[5000];

static void emit_long(void)
{
    log_setup(LOG_INFO, true);
    log_info("%s", big);
    log_setup(LOG_INFO, false);
    log_info("%s", big);
}

/* Long messages are cut to one bounded line; JSON stays valid even when the
 * cut falls inside escapes or a multi-byte character. */
static void test_truncation(void)
{
    static const char *const fills[] = {"a", "\n", "\xc3\xa9", "\""};
    for (size_t f = 0; f < ARRAY_LEN(fills); f++) {
        size_t fl = strlen(fills[f]), n = 0;
        while (n + fl < sizeof(big))
            memcpy(big + n, fills[f], fl), n += fl;
        big[n] = '\0';
        char out[8192];
        capture(emit_long, out, sizeof(out));
        char *nl = strchr(out, '\n');
        CHECK(nl != NULL);
        if (!nl)
            return;
        CHECK((size_t)(nl - out) + 1 <= 2048);
        *nl = '\0';
        json_t *j = json_loads(out, 0, NULL);
        CHECK(j != NULL);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        CHECK(msg && strlen(msg) > 100 && strcmp(msg + strlen(msg) - 3, "...") == 0);
        json_decref(j);
        char *nl2 = strchr(nl + 1, '\n');
        CHECK(nl2 && (size_t)(nl2 - nl) <= 2048 && strncmp(nl2 - 3, "...", 3) == 0);
    }
}

static const struct check_test tests[] = {
    {"level_parse", test_level_parse},
    {"plain", test_plain},
    {"json", test_json},
    {"truncation", test_truncation},
};

int main(void)
{
    return CHECK_MAIN("log", tests);
}
