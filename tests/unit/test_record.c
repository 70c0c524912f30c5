/* test_record.c: the usage record line (field order, nulls, escaping, one
 * exact line, parse-back of every field) and the queue -> sink -> file path
 * under two worker threads, with size rotation and rename + reopen. */
#include "records/record.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"

static struct record base_record(void)
{
    struct record r = {
        .ts = {.tv_sec = 1795348800, .tv_nsec = 123456789}, /* 2026-11-22T12:00:00.123Z */
        .id = "req_1",
        .tenant = "acme",
        .user = "u_1",
        .feature = "summary",
        .plan = "pro",
        .provider = "openai",
        .upstream = "openai-eu",
        .endpoint = "/v1/chat/completions",
        .model_requested = "gpt-4o",
        .model = "gpt-4o-mini",
        .downgraded = true,
        .stream = true,
        .status = 200,
        .outcome = OUTCOME_OK,
        .usage = {.input = 1000, .cached = 200, .cache_write = 100, .output = 500, .reasoning = 0},
        .cost = 405000,
        .priced = true,
        .latency_ms = 812.4,
        .ttfb_ms = 301.2,
    };
    return r;
}

static void test_exact_line(void)
{
    struct record r = base_record();
    char buf[2048];
    int n = record_format(&r, buf, sizeof(buf));
    const char *want =
        "{\"ts\":\"2026-11-22T12:00:00.123Z\",\"id\":\"req_1\",\"tenant\":\"acme\",\"user\":\"u_"
        "1\","
        "\"feature\":\"summary\",\"plan\":\"pro\",\"provider\":\"openai\","
        "\"upstream\":\"openai-eu\",\"endpoint\":\"/v1/chat/"
        "completions\",\"model_requested\":\"gpt-4o\","
        "\"model\":\"gpt-4o-mini\",\"downgraded\":true,\"stream\":true,\"status\":200,"
        "\"outcome\":\"ok\",\"input_tokens\":1000,\"cached_tokens\":200,"
        "\"cache_write_tokens\":100,\"output_tokens\":500,"
        "\"reasoning_tokens\":0,\"units\":null,\"unit\":null,\"cost_usd\":0.000405,\"priced\":true,"
        "\"estimated\":false,\"cache_hit\":false,\"saved_usd\":0,"
        "\"latency_ms\":812.4,\"ttfb_ms\":301.2}\n";
    CHECK_INT(n, strlen(want));
    CHECK_STR(buf, want);
}

/* Every field parsed back with jansson, in the contract's order. */
static void test_parse_back(void)
{
    struct record r = base_record();
    r.usage.estimated = true;
    r.downgraded = false;
    r.cost = 31500000000; /* 31.5 USD */
    char buf[2048];
    int n = record_format(&r, buf, sizeof(buf));
    CHECK(n > 0);
    json_error_t e;
    json_t *j = json_loadb(buf, (size_t)(n > 0 ? n : 0), 0, &e);
    CHECK(j != NULL);
    if (!j)
        return;
    static const char *const order[] = {
        "ts",
        "id",
        "tenant",
        "user",
        "feature",
        "plan",
        "provider",
        "upstream",
        "endpoint",
        "model_requested",
        "model",
        "downgraded",
        "stream",
        "status",
        "outcome",
        "input_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "units",
        "unit",
        "cost_usd",
        "priced",
        "estimated",
        "cache_hit",
        "saved_usd",
        "latency_ms",
        "ttfb_ms",
    };
    CHECK_INT(json_object_size(j), ARRAY_LEN(order));
    /* the order in the text, as the contract shows it */
    const char *at = buf;
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        char key[40];
        snprintf(key, sizeof(key), "\"%s\":", order[i]);
        const char *p = strstr(at, key);
        CHECK(p != NULL);
        if (p)
            at = p;
    }
    CHECK_STR(json_string_value(json_object_get(j, "ts")), "2026-11-22T12:00:00.123Z");
    CHECK_STR(json_string_value(json_object_get(j, "id")), "req_1");
    CHECK_STR(json_string_value(json_object_get(j, "tenant")), "acme");
    CHECK_STR(json_string_value(json_object_get(j, "user")), "u_1");
    CHECK_STR(json_string_value(json_object_get(j, "feature")), "summary");
    CHECK_STR(json_string_value(json_object_get(j, "plan")), "pro");
    CHECK_STR(json_string_value(json_object_get(j, "provider")), "openai");
    CHECK_STR(json_string_value(json_object_get(j, "endpoint")), "/v1/chat/completions");
    CHECK_STR(json_string_value(json_object_get(j, "model_requested")), "gpt-4o");
    CHECK_STR(json_string_value(json_object_get(j, "model")), "gpt-4o-mini");
    CHECK(json_is_false(json_object_get(j, "downgraded")));
    CHECK(json_is_true(json_object_get(j, "stream")));
    CHECK_INT(json_integer_value(json_object_get(j, "status")), 200);
    CHECK_STR(json_string_value(json_object_get(j, "outcome")), "ok");
    CHECK_INT(json_integer_value(json_object_get(j, "input_tokens")), 1000);
    CHECK_INT(json_integer_value(json_object_get(j, "cached_tokens")), 200);
    CHECK_INT(json_integer_value(json_object_get(j, "output_tokens")), 500);
    CHECK_INT(json_integer_value(json_object_get(j, "reasoning_tokens")), 0);
    CHECK_STR(json_string_value(json_object_get(j, "upstream")), "openai-eu");
    CHECK_INT(json_integer_value(json_object_get(j, "cache_write_tokens")), 100);
    CHECK(json_is_null(json_object_get(j, "units")));
    CHECK(json_is_null(json_object_get(j, "unit")));
    CHECK(json_number_value(json_object_get(j, "cost_usd")) == 31.5);
    CHECK(json_is_true(json_object_get(j, "priced")));
    CHECK(json_is_true(json_object_get(j, "estimated")));
    CHECK(json_real_value(json_object_get(j, "latency_ms")) == 812.4);
    CHECK(json_real_value(json_object_get(j, "ttfb_ms")) == 301.2);
    json_decref(j);
}

/* Strings as the line must show them, and what jansson reads back. */
static const struct {
    const char *in;
    const char *json;    /* between the quotes in the line */
    const char *decoded; /* jansson's value */
} escapes[] = {
    {"plain", "plain", "plain"},
    {"a\"b", "a\\\"b", "a\"b"},
    {"back\\slash", "back\\\\slash", "back\\slash"},
    {"two\nlines\r\t", "two\\nlines\\r\\t", "two\nlines\r\t"},
    {"bell\x07", "bell\\u0007", "bell\x07"},
    {"del\x7f", "del\\u007f", "del\x7f"},
    {"caf\xc3\xa9", "caf\xc3\xa9", "caf\xc3\xa9"},
    {"emoji\xf0\x9f\x98\x80", "emoji\xf0\x9f\x98\x80", "emoji\xf0\x9f\x98\x80"},
    {"bad\xff", "bad\\ufffd", "bad\xef\xbf\xbd"},
    {"trunc\xe2\x82", "trunc\\ufffd\\ufffd", "trunc\xef\xbf\xbd\xef\xbf\xbd"},
    {"overlong\xc0\xaf", "overlong\\ufffd\\ufffd", "overlong\xef\xbf\xbd\xef\xbf\xbd"},
    {"surrogate\xed\xa0\x80", "surrogate\\ufffd\\ufffd\\ufffd",
     "surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
};

static void test_escaping(void)
{
    for (size_t i = 0; i < ARRAY_LEN(escapes); i++) {
        struct record r = base_record();
        r.user = escapes[i].in;
        char buf[2048], want[256];
        int n = record_format(&r, buf, sizeof(buf));
        CHECK(n > 0);
        snprintf(want, sizeof(want), "\"user\":\"%s\",\"feature\"", escapes[i].json);
        if (!strstr(buf, want))
            fprintf(stderr, "  case %zu: %s\n", i, buf);
        CHECK(strstr(buf, want) != NULL);
        json_error_t e;
        json_t *j = json_loads(buf, 0, &e);
        if (!j)
            fprintf(stderr, "  case %zu: %s\n", i, e.text);
        CHECK(j != NULL);
        if (j)
            CHECK_STR(json_string_value(json_object_get(j, "user")), escapes[i].decoded);
        json_decref(j);
    }
}

static void test_nulls(void)
{
    struct record r = base_record();
    r.user = NULL;
    r.feature = NULL;
    r.model_requested = NULL;
    r.model = NULL;
    r.upstream = NULL;
    r.ttfb_ms = -1;
    r.cost = 0;
    r.priced = false;
    char buf[2048];
    CHECK(record_format(&r, buf, sizeof(buf)) > 0);
    static const char *const want[] = {
        "\"user\":null,",    "\"feature\":null,", "\"model_requested\":null,", "\"model\":null,",
        "\"ttfb_ms\":null}", "\"cost_usd\":0,",   "\"priced\":false,",         "\"upstream\":null,",
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        if (!strstr(buf, want[i]))
            fprintf(stderr, "  missing %s in %s", want[i], buf);
        CHECK(strstr(buf, want[i]) != NULL);
    }
}

/* Endpoints priced per image, second or character name their units. */
static void test_units(void)
{
    static const struct {
        enum usage_unit unit;
        int64_t units;
        const char *want;
    } cases[] = {
        {USAGE_UNIT_IMAGE, 2, "\"units\":2,\"unit\":\"image\","},
        {USAGE_UNIT_SECOND, 61, "\"units\":61,\"unit\":\"second\","},
        {USAGE_UNIT_CHARACTER, 0, "\"units\":0,\"unit\":\"character\","},
        {USAGE_UNIT_NONE, 7, "\"units\":null,\"unit\":null,"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct record r = base_record();
        r.usage.unit = cases[i].unit;
        r.usage.units = cases[i].units;
        char buf[2048];
        CHECK(record_format(&r, buf, sizeof(buf)) > 0);
        CHECK(strstr(buf, cases[i].want) != NULL);
    }
}

/* Every buffer too small fails cleanly; the exact one works. */
static void test_small_buffer(void)
{
    struct record r = base_record();
    char full[2048], buf[2048];
    int n = record_format(&r, full, sizeof(full));
    CHECK(n > 0);
    for (int k = 0; k <= n; k++) /* the NUL needs a byte too */
        CHECK_INT(record_format(&r, buf, (size_t)k), -1);
    CHECK_INT(record_format(&r, buf, (size_t)n + 1), n);
    CHECK_STR(buf, full);
}

/* ---- sink + queues ------------------------------------------------------ */

#define PER_THREAD 5000

struct worker {
    struct record_sink *sink;
    int n;
    int ok;
    int tag; /* in the ids, so two workers' ids differ */
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    struct event_base *base = event_base_new();
    struct record_queue *q = base ? record_queue_new(w->sink, base) : NULL;
    if (!q)
        goto done;
    for (int i = 0; i < w->n; i++) {
        struct record r = base_record();
        char id[32];
        snprintf(id, sizeof(id), "req_%d_%d_%d", w->tag, w->n, i);
        r.id = id;
        record_queue_push(q, &r);
        if (i % 500 == 0) /* let the 20 ms timer fire now and then */
            event_base_loop(base, EVLOOP_NONBLOCK);
    }
    /* run the loop so the timer path hands over the tail too */
    struct timeval tv = {0, 60 * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    w->ok = 1;
    record_queue_free(q);
done:
    if (base)
        event_base_free(base);
    return NULL;
}

static void test_sink_two_threads(void)
{
    char dir[] = "/tmp/tollgate-rec-XXXXXX";
    char path[256], err[256] = "";
    CHECK(mkdtemp(dir) != NULL);
    /* a missing parent directory is created */
    snprintf(path, sizeof(path), "%s/sub/usage.jsonl", dir);
    struct record_sink *s = record_sink_open(path, NULL, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    struct worker w[2] = {{s, PER_THREAD, 0, 1}, {s, PER_THREAD, 0, 2}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_INT(pthread_create(&t[i], NULL, run_worker, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(w[0].ok && w[1].ok);
    CHECK_INT(record_sink_written(s), 2 * PER_THREAD);
    CHECK_INT(record_sink_failed(s), 0);
    record_sink_close(s);

    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    char line[4096];
    int lines = 0, valid = 0;
    while (fgets(line, sizeof(line), f)) {
        lines++;
        json_t *j = json_loads(line, 0, NULL);
        if (j && json_is_object(j) && json_object_size(j) == 29 && strchr(line, '\n'))
            valid++;
        json_decref(j);
    }
    fclose(f);
    CHECK_INT(lines, 2 * PER_THREAD);
    CHECK_INT(valid, 2 * PER_THREAD);
    unlink(path);
    snprintf(path, sizeof(path), "%s/sub", dir);
    rmdir(path);
    rmdir(dir);
}

/* The writer's counters once n lines went through it (at most 5 s). */
static struct record_sink_stats wait_written(struct record_sink *s, unsigned long n)
{
    struct record_sink_stats st;
    for (int i = 0; i < 3000; i++) { /* up to 30 s: a loaded CI machine is slow, not wrong */
        record_sink_stats(s, &st);
        if (st.written + st.failed >= n)
            break;
        usleep(10000);
    }
    return st;
}

/* Counts, over every file in dir, the lines whose id is req_T_N_I; each
 * must be a whole JSON record and appear exactly once. */
static void count_ids(const char *dir, int per_thread, int *missing, int *dup, int *bad, int *files)
{
    static unsigned char seen[2][PER_THREAD];
    memset(seen, 0, sizeof(seen));
    *missing = *dup = *bad = *files = 0;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -1 '%s'", dir);
    FILE *ls = popen(cmd, "r");
    char name[256], line[4096], path[600];
    while (ls && fgets(name, sizeof(name), ls)) {
        name[strcspn(name, "\n")] = '\0';
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        (*files)++;
        while (fgets(line, sizeof(line), f)) {
            json_t *j = json_loads(line, 0, NULL);
            const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
            int t, n, i;
            if (!id || sscanf(id, "req_%d_%d_%d", &t, &n, &i) != 3 || t < 1 || t > 2 || i < 0 ||
                i >= per_thread)
                (*bad)++;
            else if (seen[t - 1][i]++)
                (*dup)++;
            json_decref(j);
        }
        fclose(f);
    }
    if (ls)
        pclose(ls);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < per_thread; i++)
            *missing += !seen[t][i];
}

/* Size rotation and logrotate-style renames + reopen while two workers
 * write: every record lands in exactly one file, whole. */
static void test_sink_rotate_under_load(void)
{
    char dir[] = "/tmp/tollgate-rot-XXXXXX";
    char path[256], moved[300], err[256] = "", cmd[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/usage.jsonl", dir);
    const struct record_rotation rot = {.max_bytes = 65536, .keep = 1000};
    struct record_sink *s = record_sink_open(path, &rot, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    struct worker w[2] = {{s, PER_THREAD, 0, 1}, {s, PER_THREAD, 0, 2}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_INT(pthread_create(&t[i], NULL, run_worker, &w[i]), 0);
    for (int k = 0; k < 5; k++) { /* what logrotate does: rename, then SIGUSR1 */
        usleep(20000);
        snprintf(moved, sizeof(moved), "%s/moved-%d", dir, k);
        if (rename(path, moved) == 0)
            record_sink_reopen(s);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(w[0].ok && w[1].ok);
    struct record_sink_stats st = wait_written(s, 2 * PER_THREAD);
    CHECK_INT(st.written, 2 * PER_THREAD);
    CHECK_INT(st.failed, 0);
    CHECK(!st.failing);
    if (st.rotations < 10)
        fprintf(stderr, "  rotations %lu\n", st.rotations);
    CHECK(st.rotations >= 10); /* ~4 MB in 64 KiB files */
    record_sink_close(s);

    int missing, dup, bad, files;
    count_ids(dir, PER_THREAD, &missing, &dup, &bad, &files);
    CHECK_INT(missing, 0);
    CHECK_INT(dup, 0);
    CHECK_INT(bad, 0);
    CHECK(files >= 11);
    /* rotated files stay within the size: batches are split at line ends */
    snprintf(cmd, sizeof(cmd), "test -z \"$(find '%s' -name 'usage.jsonl*' -size +64k)\"", dir);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* keep = 2: only file, file.1 and file.2 remain after many rotations. */
static void test_sink_rotate_keep(void)
{
    char dir[] = "/tmp/tollgate-keep-XXXXXX";
    char path[256], p[300], err[256] = "", cmd[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/usage.jsonl", dir);
    const struct record_rotation rot = {.max_bytes = 65536, .keep = 2};
    struct record_sink *s = record_sink_open(path, &rot, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    struct worker w = {s, PER_THREAD, 0, 1};
    run_worker(&w);
    CHECK(w.ok);
    struct record_sink_stats st = wait_written(s, PER_THREAD);
    CHECK(st.rotations >= 5);
    record_sink_close(s);
    const char *want[] = {"", ".1", ".2"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, want[i]);
        CHECK(access(p, F_OK) == 0);
    }
    snprintf(p, sizeof(p), "%s.3", path);
    CHECK(access(p, F_OK) != 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* rotate = daily: a file last written on an earlier UTC day is rotated at
 * the first record of today; one written today is appended to. */
static void test_sink_rotate_daily(void)
{
    char dir[] = "/tmp/tollgate-daily-XXXXXX";
    char path[256], p1[300], err[256] = "", cmd[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/usage.jsonl", dir);
    snprintf(p1, sizeof(p1), "%s.1", path);
    const struct record_rotation rot = {.daily = true, .keep = 3};
    for (int yesterday = 1; yesterday >= 0; yesterday--) {
        unlink(p1);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (!f)
            return;
        fputs("{\"old\":true}\n", f);
        fclose(f);
        struct timeval tv[2];
        gettimeofday(&tv[0], NULL);
        tv[0].tv_sec -= yesterday ? 86400 : 0;
        tv[1] = tv[0];
        CHECK(utimes(path, tv) == 0);
        struct record_sink *s = record_sink_open(path, &rot, err, sizeof(err));
        CHECK(s != NULL);
        if (!s)
            return;
        struct worker w = {s, 10, 0, 1};
        run_worker(&w);
        struct record_sink_stats st = wait_written(s, 10);
        CHECK_INT(st.written, 10);
        CHECK_INT(st.rotations, yesterday ? 1 : 0);
        record_sink_close(s);
        int missing, dup, bad, files;
        count_ids(dir, 10, &missing, &dup, &bad, &files);
        CHECK_INT(bad, 1);      /* the old line, once, in usage.jsonl.1 or usage.jsonl */
        CHECK_INT(missing, 10); /* tag 2 wrote nothing; all of tag 1 is there */
        CHECK_INT(dup, 0);
        CHECK_INT(access(p1, F_OK) == 0, yesterday);
        unlink(path);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_sink_open_fails(void)
{
    char err[256] = "";
    struct record_sink *s =
        record_sink_open("/proc/nonexistent/x/usage.jsonl", NULL, err, sizeof(err));
    CHECK(s == NULL);
    CHECK(err[0] != '\0');
    record_sink_close(s);
}

static const struct check_test tests[] = {
    {"exact_line", test_exact_line},
    {"parse_back", test_parse_back},
    {"escaping", test_escaping},
    {"nulls", test_nulls},
    {"units", test_units},
    {"small_buffer", test_small_buffer},
    {"sink_two_threads", test_sink_two_threads},
    {"sink_rotate_under_load", test_sink_rotate_under_load},
    {"sink_rotate_keep", test_sink_rotate_keep},
    {"sink_rotate_daily", test_sink_rotate_daily},
    {"sink_open_fails", test_sink_open_fails},
};

int main(void)
{
    return CHECK_MAIN("record", tests);
}
