/* test_spool.c: the export spool (spool.c) on a temp dir: FIFO order across
 * segments, the cursor surviving a reopen, partial acks, the bound, a torn
 * last line cut at open, the lock against a second opener; and the
 * CloudEvents formatting of record lines (cloudevent.c), table-driven. */
#include "export/cloudevent.h"
#include "export/spool.h"

#include <dirent.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "check.h"

static char root[] = "/tmp/tollgate-spool-XXXXXX";
static int dirs;

static void fresh(char *dir, size_t n)
{
    snprintf(dir, n, "%s/d%d", root, dirs++);
}

static long peek_all(struct spool *s, char *buf, size_t n)
{
    char err[256];
    long got = spool_peek(s, buf, n, err, sizeof(err));
    if (got >= 0 && (size_t)got < n)
        buf[got] = '\0';
    return got;
}

static void test_fifo_and_reopen(void)
{
    char dir[256], err[256], buf[4096];
    fresh(dir, sizeof(dir));
    struct spool *s = spool_open(dir, 1 << 20, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_INT(spool_append(s, "a1\na2\n", 6, err, sizeof(err)), 0);
    CHECK_INT(spool_append(s, "a3\n", 3, err, sizeof(err)), 0);
    CHECK_INT(spool_pending(s), 9);
    CHECK_INT(peek_all(s, buf, sizeof(buf)), 9);
    CHECK_STR(buf, "a1\na2\na3\n");
    CHECK_INT(peek_all(s, buf, 7), 6); /* whole lines only */
    CHECK_INT(spool_ack(s, 3, err, sizeof(err)), 0);
    CHECK_INT(spool_pending(s), 6);
    spool_close(s);

    s = spool_open(dir, 1 << 20, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_INT(spool_pending(s), 6);
    CHECK_INT(peek_all(s, buf, sizeof(buf)), 6);
    CHECK_STR(buf, "a2\na3\n");
    CHECK_INT(spool_ack(s, 6, err, sizeof(err)), 0);
    CHECK_INT(peek_all(s, buf, sizeof(buf)), 0);
    spool_close(s);
}

static void test_segments(void)
{
    char dir[256], err[256];
    fresh(dir, sizeof(dir));
    struct spool *s = spool_open(dir, 64u << 20, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    /* 20 MiB in 1 MiB appends: three segments */
    size_t chunk = 1u << 20;
    char *line = malloc(chunk);
    char *buf = malloc(2 * chunk);
    for (size_t i = 0; i < chunk - 1; i++)
        line[i] = 'x';
    line[chunk - 1] = '\n';
    for (int i = 0; i < 20; i++) {
        line[0] = (char)('A' + i);
        CHECK_INT(spool_append(s, line, chunk, err, sizeof(err)), 0);
    }
    int files = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        files += strstr(e->d_name, ".jsonl") != NULL;
    closedir(d);
    CHECK_INT(files, 3);
    for (int i = 0; i < 20; i++) {
        long got = spool_peek(s, buf, 2 * chunk, err, sizeof(err));
        CHECK(got >= (long)chunk);
        CHECK_INT(buf[0], 'A' + i);
        CHECK_INT(spool_ack(s, chunk, err, sizeof(err)), 0);
    }
    CHECK_INT(spool_pending(s), 0);
    CHECK_INT(spool_peek(s, buf, 2 * chunk, err, sizeof(err)), 0);
    files = 0;
    d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        files += strstr(e->d_name, ".jsonl") != NULL;
    closedir(d);
    CHECK_INT(files, 1); /* read-past segments are deleted */
    spool_close(s);
    free(line);
    free(buf);
}

static void test_bound_torn_lock(void)
{
    char dir[256], err[256], buf[256], path[300];
    fresh(dir, sizeof(dir));
    struct spool *s = spool_open(dir, 10, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_INT(spool_append(s, "12345\n", 6, err, sizeof(err)), 0);
    CHECK_INT(spool_append(s, "12345\n", 6, err, sizeof(err)), -1);
    CHECK(strstr(err, "spool full") != NULL);
    CHECK(spool_open(dir, 10, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "in use by another tollgate") != NULL);
    spool_close(s);
    /* a crash mid-append leaves a torn line: cut at the next open */
    snprintf(path, sizeof(path), "%s/%016d.jsonl", dir, 1);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, "torn", 4), 4);
    close(fd);
    s = spool_open(dir, 100, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_INT(spool_pending(s), 6);
    CHECK_INT(peek_all(s, buf, sizeof(buf)), 6);
    CHECK_STR(buf, "12345\n");
    CHECK_INT(spool_append(s, "next\n", 5, err, sizeof(err)), 0);
    CHECK_INT(peek_all(s, buf, sizeof(buf)), 11);
    CHECK_STR(buf, "12345\nnext\n");
    spool_close(s);
}

static const struct {
    const char *line;
    bool ok;
} lines[] = {
    {"{\"ts\":\"2026-11-22T12:00:00.123Z\",\"id\":\"r1\",\"tenant\":\"acme\",\"cost_usd\":0.000405}"
     "\n",
     true},
    {"{\"ts\":\"2026-11-22T12:00:00.123Z\",\"id\":\"r\\\"2\",\"tenant\":\"a\\u00e9\"}", true},
    {"{\"id\":\"r3\",\"tenant\":\"acme\"}", false}, /* no ts */
    {"{\"ts\":\"t\",\"id\":\"\",\"tenant\":\"acme\"}", false},
    {"{\"ts\":\"t\",\"id\":5,\"tenant\":\"acme\"}", false},
    {"[1,2]", false},
    {"{\"ts\":\"t\",\"id\":\"x\",\"tenant\":\"acme\"", false},
    {"{\"ts\":\"t\",\"id\":\"x\",\"id\":\"y\",\"tenant\":\"acme\"}", false},
};

static void test_cloudevent(void)
{
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct evbuffer *b = evbuffer_new();
        char err[160];
        int rc =
            cloudevent_append(b, lines[i].line, strlen(lines[i].line), "src/1", err, sizeof(err));
        CHECK_INT(rc, lines[i].ok ? 0 : -1);
        if (!lines[i].ok) {
            CHECK_INT(evbuffer_get_length(b), 0);
        } else {
            size_t n = evbuffer_get_length(b);
            json_t *ev = json_loadb((const char *)evbuffer_pullup(b, -1), n, 0, NULL);
            json_t *rec = json_loads(lines[i].line, JSON_DECODE_ANY, NULL);
            CHECK(ev != NULL);
            CHECK_STR(json_string_value(json_object_get(ev, "specversion")), "1.0");
            CHECK_STR(json_string_value(json_object_get(ev, "type")), "tollgate.usage");
            CHECK_STR(json_string_value(json_object_get(ev, "source")), "src/1");
            CHECK_STR(json_string_value(json_object_get(ev, "id")),
                      json_string_value(json_object_get(rec, "id")));
            CHECK_STR(json_string_value(json_object_get(ev, "subject")),
                      json_string_value(json_object_get(rec, "tenant")));
            CHECK_STR(json_string_value(json_object_get(ev, "time")),
                      json_string_value(json_object_get(rec, "ts")));
            CHECK(json_equal(json_object_get(ev, "data"), rec));
            json_decref(ev);
            json_decref(rec);
        }
        evbuffer_free(b);
    }
    /* data keeps the record's digits exactly */
    struct evbuffer *b = evbuffer_new();
    char err[160];
    CHECK_INT(cloudevent_append(b, lines[0].line, strlen(lines[0].line), "s", err, sizeof(err)), 0);
    evbuffer_add(b, "", 1);
    CHECK(strstr((const char *)evbuffer_pullup(b, -1), "\"cost_usd\":0.000405}") != NULL);
    evbuffer_free(b);
}

static void test_batch(void)
{
    const char *buf = "{\"ts\":\"t\",\"id\":\"a\",\"tenant\":\"x\"}\n"
                      "not json\n"
                      "{\"ts\":\"t\",\"id\":\"b\",\"tenant\":\"x\"}\n"
                      "{\"ts\":\"t\",\"id\":\"c\",\"tenant\":\"x\"}\n"
                      "{\"ts\":\"t\",\"id\":\"partial";
    struct evbuffer *b = evbuffer_new();
    size_t used, events, bad;
    CHECK_INT(cloudevent_batch(b, buf, strlen(buf), 2, "s", &used, &events, &bad), 0);
    CHECK_INT(events, 2);
    CHECK_INT(bad, 1);
    CHECK_INT(used, strlen(buf) - strlen("{\"ts\":\"t\",\"id\":\"c\",\"tenant\":\"x\"}\n") -
                        strlen("{\"ts\":\"t\",\"id\":\"partial"));
    json_t *arr = json_loadb((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b), 0, NULL);
    CHECK(json_is_array(arr) && json_array_size(arr) == 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(arr, 1), "id")), "b");
    json_decref(arr);
    evbuffer_free(b);
}

int main(void)
{
    if (!mkdtemp(root))
        return 1;
    static const struct check_test tests[] = {
        {"fifo_and_reopen", test_fifo_and_reopen},
        {"segments", test_segments},
        {"bound_torn_lock", test_bound_torn_lock},
        {"cloudevent", test_cloudevent},
        {"batch", test_batch},
    };
    int rc = CHECK_MAIN("spool", tests);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return rc;
}
