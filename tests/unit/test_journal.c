/* test_journal.c: journal.c against a real redis-server started on a free
 * 127.0.0.1 port in a temp dir (killed at exit, and by the kernel if this
 * process dies first). Each test uses its own tenant so the counters start
 * at zero, and its own journal dir. Every wait is bounded. */
#include "budget/budget.h"
#include "budget/journal.h"
#include "core/log.h"
#include "redis/redis.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check.h"
#define WAIT_POLL_US 1000 /* poll wait_for's condition every 1 ms */
#include "redis_server.h"

#define TIMEOUT_MS 3000 /* a deadline for a starved CI machine, not a speed check */
#define WHEN 1795348800 /* 2026-11-22 */

static char jroot[] = "/tmp/tollgate-journal-XXXXXX";
static char url[64];

/* ---- fixtures ----------------------------------------------------------- */

struct fx {
    struct event_base *base;
    struct redis *r;
    char dir[256];
    char tenant[64];
};

static int fx_open(struct fx *f, const char *name)
{
    char err[256];
    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    snprintf(f->dir, sizeof(f->dir), "%s/%s/journal", jroot, name); /* two levels: mkdir -p */
    snprintf(f->tenant, sizeof(f->tenant), "jt-%s-%d-%lld", name, (int)getpid(), now_ms());
    f->r = redis_new(f->base, url, NULL, TIMEOUT_MS, err, sizeof(err));
    if (!f->r) {
        fprintf(stderr, "  redis_new: %s\n", err);
        return -1;
    }
    if (!wait_for(f->base, is_connected, f->r, 3000)) {
        fprintf(stderr, "  not connected after 3 s\n");
        return -1;
    }
    return 0;
}

static void fx_close(struct fx *f)
{
    redis_free(f->r);
    event_base_free(f->base);
}

static struct journal *jopen(struct fx *f)
{
    char err[256];
    struct journal *j = journal_open(f->base, f->dir, 3, err, sizeof(err));
    if (!j)
        fprintf(stderr, "  journal_open: %s\n", err);
    return j;
}

/* Request i costs 1000 + i nano-USD and i % 7 output tokens. */
static struct settle mk(struct fx *f, int i, char *id, size_t idn)
{
    snprintf(id, idn, "req-%d", i);
    return (struct settle){
        .key_prefix = "tollgate:",
        .tenant = f->tenant,
        .request_id = id,
        .when = WHEN,
        .cost = 1000 + i,
        .usage = {.input = 10,
                  .cached = 1,
                  .cache_write = 2,
                  .output = i % 7,
                  .reasoning = 0,
                  .seen = true,
                  .estimated = i % 2 == 0},
    };
}

static int append_range(struct fx *f, struct journal *j, int from, int to)
{
    int failed = 0;
    for (int i = from; i < to; i++) {
        char id[32];
        struct settle s = mk(f, i, id, sizeof(id));
        failed += journal_append(j, &s) != 0;
    }
    return failed;
}

struct sent {
    struct settle s;
    char id[32];
    int calls;
    bool ok;
};

static void on_sent(bool ok, const char *err, void *arg)
{
    struct sent *x = arg;
    x->calls++;
    x->ok = ok;
}

static int sent_done(void *arg)
{
    return ((struct sent *)arg)->calls > 0;
}

/* Settles requests [from, to) in Redis, then journals each with the stamp
 * it was sent with, as a settlement whose answer timed out is journaled. */
static int settle_then_journal(struct fx *f, struct journal *j, int from, int to)
{
    int failed = 0;
    for (int i = from; i < to; i++) {
        struct sent x = {0};
        x.s = mk(f, i, x.id, sizeof(x.id));
        struct redis_cmd *c = budget_settle(f->r, NULL, &x.s, &x.s.stamp, on_sent, &x);
        if (c)
            wait_for(f->base, sent_done, &x, 3000);
        failed += !c || !x.ok || x.s.stamp.seq == 0 || journal_append(j, &x.s) != 0;
    }
    return failed;
}

static long long sum_cost(int from, int to)
{
    long long sum = 0;
    for (int i = from; i < to; i++)
        sum += 1000 + i;
    return sum;
}

struct replayed {
    int calls;
    size_t settled;
    char err[160];
};

static void on_replayed(size_t settled, const char *err, void *arg)
{
    struct replayed *rp = arg;
    rp->calls++;
    rp->settled = settled;
    snprintf(rp->err, sizeof(rp->err), "%s", err ? err : "");
}

static int replay_done(void *arg)
{
    return ((struct replayed *)arg)->calls > 0;
}

/* Replays and waits for the callback; checks it came exactly once. */
static struct replayed replay(struct fx *f, struct journal *j)
{
    struct replayed rp = {0};
    CHECK_INT(journal_replay(j, f->r, on_replayed, &rp), 0);
    CHECK_INT(rp.calls, 0); /* never from inside the call */
    CHECK(journal_replaying(j));
    wait_for(f->base, replay_done, &rp, 5000);
    CHECK_INT(rp.calls, 1);
    CHECK(!journal_replaying(j));
    return rp;
}

struct field {
    int calls;
    long long v;
};

static void on_field(struct redisReply *reply, const char *err, void *arg)
{
    struct field *fl = arg;
    fl->calls++;
    if (reply && reply->type == REDIS_REPLY_STRING)
        fl->v = strtoll(reply->str, NULL, 10);
}

static int field_done(void *arg)
{
    return ((struct field *)arg)->calls > 0;
}

/* HGET of the tenant's month counter (0 when absent). */
static long long counter(struct fx *f, const char *name)
{
    char key[256];
    struct field fl = {0};
    if (budget_key(key, sizeof(key), "tollgate:", f->tenant, 'm', WHEN) < 0)
        return -1;
    const char *argv[] = {"HGET", key, name};
    struct redis_cmd *c = redis_command(f->r, on_field, &fl, 3, argv, NULL);
    CHECK(c != NULL);
    if (c)
        wait_for(f->base, field_done, &fl, 3000);
    CHECK_INT(fl.calls, 1);
    return fl.v;
}

static bool exists(struct fx *f, const char *suffix)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/worker-3.%s", f->dir, suffix);
    return access(path, F_OK) == 0;
}

static off_t file_size(struct fx *f, const char *suffix)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/worker-3.%s", f->dir, suffix);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- tests -------------------------------------------------------------- */

#define N 2000 /* 20 windows of JOURNAL_INFLIGHT: the tests catch a replay midway */

static void test_append_format(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "format") < 0 || !(j = jopen(&f)))
        goto done;
    char id[32];
    struct settle s = mk(&f, 4, id, sizeof(id));
    CHECK_INT(journal_append(j, &s), 0);
    CHECK_INT(journal_pending(j), 1);
    char path[512], line[1024] = "", want[1024];
    snprintf(path, sizeof(path), "%s/worker-3.jsonl", f.dir);
    FILE *in = fopen(path, "r");
    CHECK(in != NULL);
    if (in) {
        CHECK(fgets(line, sizeof(line), in) != NULL);
        fclose(in);
    }
    snprintf(want, sizeof(want),
             "{\"v\":1,\"key_prefix\":\"tollgate:\",\"tenant\":\"%s\",\"request_id\":\"req-4\","
             "\"when\":1795348800,\"cost\":1004,\"input\":10,\"cached\":1,\"cache_write\":2,"
             "\"output\":4,\"reasoning\":0,\"seen\":true,\"estimated\":true,\"conn\":\"j",
             f.tenant);
    /* never sent: the journal stamps it ("j" + 15 hex digits, its own count) */
    CHECK(strncmp(line, want, strlen(want)) == 0);
    const char *tail = line + strlen(want);
    CHECK(strspn(tail, "0123456789abcdef") == 15);
    CHECK_STR(tail + 15, "\",\"seq\":1}\n");
    /* refused: budget_settle could never take these, they would block replay */
    struct settle bad = s;
    bad.tenant = "a{b}";
    CHECK_INT(journal_append(j, &bad), -1);
    bad = s;
    bad.request_id = "";
    CHECK_INT(journal_append(j, &bad), -1);
    CHECK_INT(journal_pending(j), 1);
    /* reopened: the count survives */
    journal_close(j);
    j = jopen(&f);
    CHECK(j != NULL);
    if (j)
        CHECK_INT(journal_pending(j), 1);
done:
    journal_close(j);
    fx_close(&f);
}

static void test_replay_sum_and_twice(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "sum") < 0 || !(j = jopen(&f)))
        goto done;
    CHECK_INT(append_range(&f, j, 0, N), 0);
    CHECK_INT(journal_pending(j), N);
    struct replayed rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, N);
    CHECK_INT(journal_pending(j), 0);
    CHECK(!exists(&f, "replaying"));
    CHECK_INT(file_size(&f, "jsonl"), 0);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N));
    CHECK_INT(counter(&f, "requests"), N);
    CHECK_INT(counter(&f, "input_tokens"), 10 * N);
    CHECK_INT(counter(&f, "estimated"), N / 2);
    /* settlements sent that did reach Redis but whose answer was lost (a
     * timeout) are journaled with their stamps: replayed, acknowledged, not
     * counted twice */
    CHECK_INT(settle_then_journal(&f, j, N, N + 50), 0);
    CHECK_INT(counter(&f, "requests"), N + 50);
    rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, 50);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N + 50));
    CHECK_INT(counter(&f, "requests"), N + 50);
    /* lines written before stamps existed: the same request twice counts once */
    char path[512], old[512];
    snprintf(path, sizeof(path), "%s/worker-3.jsonl", f.dir);
    int len = snprintf(old, sizeof(old),
                       "{\"v\":1,\"key_prefix\":\"tollgate:\",\"tenant\":\"%s\","
                       "\"request_id\":\"req-old\",\"when\":1795348800,\"cost\":7,\"input\":1,"
                       "\"cached\":0,\"cache_write\":0,\"output\":1,\"reasoning\":0,\"seen\":true,"
                       "\"estimated\":false}\n",
                       f.tenant);
    journal_close(j);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, old, (size_t)len) == len);
        CHECK(write(fd, old, (size_t)len) == len);
        close(fd);
    }
    j = jopen(&f);
    if (!j)
        goto done;
    rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, 2);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N + 50) + 7);
    CHECK_INT(counter(&f, "requests"), N + 51);
    /* a response cache hit: cost 0, what it saved kept through the journal */
    char hid[32];
    struct settle hit = mk(&f, 9000, hid, sizeof(hid));
    hit.cost = 0;
    hit.usage = (struct usage){.seen = true};
    hit.cache_hit = true;
    hit.saved = 123456;
    CHECK_INT(journal_append(j, &hit), 0);
    CHECK_INT(counter(&f, "cache_hits"), 0);
    rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, 1);
    CHECK_INT(counter(&f, "cache_hits"), 1);
    CHECK_INT(counter(&f, "saved"), 123456);
    CHECK_INT(counter(&f, "requests"), N + 52);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N + 50) + 7);
    /* nothing pending: still exactly one callback, later */
    rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, 0);
done:
    journal_close(j);
    fx_close(&f);
}

static int some_settled(void *arg)
{
    struct journal *j = arg;
    return journal_pending(j) < N;
}

/* A crash mid-replay (journal_close with settles in flight, as an exit
 * would leave it): the .replaying file stays, the next open finds it and
 * the replay that follows counts every request exactly once. A torn last
 * line in the append file is ended and dropped. */
static void test_crash_mid_replay(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "crash") < 0 || !(j = jopen(&f)))
        goto done;
    CHECK_INT(append_range(&f, j, 0, N), 0);
    struct replayed rp = {0};
    CHECK_INT(journal_replay(j, f.r, on_replayed, &rp), 0);
    wait_for(f.base, some_settled, j, 3000);
    CHECK(journal_pending(j) < N);
    CHECK(journal_pending(j) > 0);
    journal_close(j); /* "crash": no callback, files stay */
    j = NULL;
    wait_for(f.base, NULL, NULL, 50);
    CHECK_INT(rp.calls, 0);
    CHECK(exists(&f, "replaying"));
    long long partial = counter(&f, "requests");
    CHECK(partial > 0 && partial < N);

    /* a torn line, as a power loss mid-write leaves it */
    char path[512];
    snprintf(path, sizeof(path), "%s/worker-3.jsonl", f.dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "{\"v\":1,\"key_pre", 15) == 15);
        close(fd);
    }

    j = jopen(&f);
    CHECK(j != NULL);
    if (!j)
        goto done;
    CHECK_INT(journal_pending(j), N + 1);
    CHECK_INT(append_range(&f, j, N, N + 10), 0); /* after the torn one: whole */
    rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, N + 10);
    CHECK_INT(journal_pending(j), 0);
    CHECK(!exists(&f, "replaying"));
    CHECK_INT(counter(&f, "requests"), N + 10);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N + 10));
done:
    journal_close(j);
    fx_close(&f);
}

/* Appends while a replay runs go to the fresh file and are replayed in the
 * same run, never truncated with the old one. */
static void test_append_during_replay(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "during") < 0 || !(j = jopen(&f)))
        goto done;
    CHECK_INT(append_range(&f, j, 0, N), 0);
    struct replayed rp = {0};
    CHECK_INT(journal_replay(j, f.r, on_replayed, &rp), 0);
    CHECK_INT(append_range(&f, j, N, N + 5), 0); /* before the rotation */
    wait_for(f.base, some_settled, j, 3000);
    CHECK(exists(&f, "replaying"));
    CHECK_INT(append_range(&f, j, N + 5, N + 20), 0); /* mid-replay */
    CHECK(file_size(&f, "jsonl") > 0);
    wait_for(f.base, replay_done, &rp, 5000);
    CHECK_INT(rp.calls, 1);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, N + 20);
    CHECK_INT(journal_pending(j), 0);
    CHECK_INT(counter(&f, "requests"), N + 20);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N + 20));
done:
    journal_close(j);
    fx_close(&f);
}

/* Redis stalls mid-replay: the replay stops with an error, keeps every line
 * (and those appended meanwhile), and a later replay completes exactly. */
static void test_redis_fails_midway(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "fails") < 0 || !(j = jopen(&f)))
        goto done;
    CHECK_INT(append_range(&f, j, 0, N), 0);
    struct replayed rp = {0};
    CHECK_INT(journal_replay(j, f.r, on_replayed, &rp), 0);
    wait_for(f.base, some_settled, j, 3000);
    CHECK_INT(kill(server_pid, SIGSTOP), 0);
    CHECK_INT(append_range(&f, j, N, N + 3), 0);
    wait_for(f.base, replay_done, &rp, TIMEOUT_MS + 2000);
    CHECK_INT(rp.calls, 1);
    CHECK(rp.err[0] != '\0');
    CHECK(exists(&f, "replaying"));
    CHECK_INT(journal_pending(j), N + 3); /* all of the file goes again */
    /* not connected: refused, no callback */
    CHECK_INT(kill(server_pid, SIGCONT), 0);
    struct replayed none = {0};
    if (!redis_connected(f.r))
        CHECK_INT(journal_replay(j, f.r, on_replayed, &none), -1);
    CHECK(wait_for(f.base, is_connected, f.r, 8000));
    rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(journal_pending(j), 0);
    CHECK_INT(counter(&f, "requests"), N + 3);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, N + 3));
    CHECK_INT(none.calls, 0);
done:
    kill(server_pid, SIGCONT);
    journal_close(j);
    fx_close(&f);
}

/* Lines that are not settlements are dropped with a log, not retried forever. */
static void test_bad_lines_dropped(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "bad") < 0 || !(j = jopen(&f)))
        goto done;
    CHECK_INT(append_range(&f, j, 0, 2), 0);
    journal_close(j);
    char path[512];
    snprintf(path, sizeof(path), "%s/worker-3.jsonl", f.dir);
    FILE *out = fopen(path, "a");
    CHECK(out != NULL);
    if (out) {
        fputs("not json\n{\"v\":1}\n", out);
        fprintf(out,
                "{\"v\":1,\"key_prefix\":\"tollgate:\",\"tenant\":\"x{y}\",\"request_id\":\"r\","
                "\"when\":1,\"cost\":1,\"input\":0,\"cached\":0,\"cache_write\":0,\"output\":0,"
                "\"reasoning\":0,\"seen\":true,\"estimated\":false}\n");
        fclose(out);
    }
    j = jopen(&f);
    CHECK(j != NULL);
    if (!j)
        goto done;
    CHECK_INT(journal_pending(j), 5);
    CHECK_INT(append_range(&f, j, 2, 4), 0);
    struct replayed rp = replay(&f, j);
    CHECK_STR(rp.err, "");
    CHECK_INT(rp.settled, 4);
    CHECK_INT(journal_pending(j), 0);
    CHECK_INT(counter(&f, "requests"), 4);
done:
    journal_close(j);
    fx_close(&f);
}

static int pending_zero(void *arg)
{
    return journal_pending(arg) == 0 && !journal_replaying(arg);
}

/* The worker's tick replays by itself once Redis answers. */
static void test_tick(void)
{
    struct fx f;
    struct journal *j = NULL;
    if (fx_open(&f, "tick") < 0 || !(j = jopen(&f)))
        goto done;
    journal_tick(j, f.r); /* nothing pending: nothing happens */
    CHECK(!journal_replaying(j));
    CHECK_INT(append_range(&f, j, 0, 7), 0);
    journal_tick(j, f.r);
    CHECK(journal_replaying(j));
    CHECK(wait_for(f.base, pending_zero, j, 3000));
    CHECK_INT(counter(&f, "requests"), 7);
done:
    journal_close(j);
    fx_close(&f);
}

static int count_file_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    int n = 0, c;
    while (fp && (c = fgetc(fp)) != EOF)
        n += c == '\n';
    if (fp)
        fclose(fp);
    return n;
}

/* A previous instance ran 8 workers, this one runs 2: the files of workers
 * 5 (appends) and 7 (a replay cut short) are handed to worker 1, whose own
 * file ends in a torn line, and everything is replayed once. */
static void test_adopt(void)
{
    struct fx f;
    struct journal *j = NULL;
    char err[256] = "", path[400], rpath[400];
    if (fx_open(&f, "adopt") < 0)
        goto done;
    struct journal *j5 = journal_open(f.base, f.dir, 5, err, sizeof(err));
    struct journal *j7 = journal_open(f.base, f.dir, 7, err, sizeof(err));
    CHECK(j5 && j7);
    if (!j5 || !j7)
        goto done;
    CHECK_INT(append_range(&f, j5, 0, 10), 0);
    CHECK_INT(append_range(&f, j7, 10, 25), 0);
    journal_close(j5);
    journal_close(j7);
    snprintf(path, sizeof(path), "%s/worker-7.jsonl", f.dir);
    snprintf(rpath, sizeof(rpath), "%s/worker-7.replaying", f.dir);
    CHECK(rename(path, rpath) == 0);
    snprintf(path, sizeof(path), "%s/worker-1.jsonl", f.dir);
    FILE *torn = fopen(path, "w");
    CHECK(torn != NULL);
    if (torn) {
        fputs("{\"torn", torn);
        fclose(torn);
    }
    snprintf(path, sizeof(path), "%s/notes.txt", f.dir); /* not a journal: left alone */
    FILE *other = fopen(path, "w");
    if (other)
        fclose(other);

    CHECK_INT(journal_adopt(f.dir, 2, err, sizeof(err)), 0);
    const char *gone[] = {"worker-5.jsonl", "worker-7.replaying", "worker-7.jsonl"};
    for (size_t i = 0; i < ARRAY_LEN(gone); i++) {
        snprintf(path, sizeof(path), "%s/%s", f.dir, gone[i]);
        CHECK(access(path, F_OK) != 0);
    }
    snprintf(path, sizeof(path), "%s/notes.txt", f.dir);
    CHECK(access(path, F_OK) == 0);
    snprintf(path, sizeof(path), "%s/worker-1.jsonl", f.dir);
    CHECK_INT(count_file_lines(path), 26); /* the torn line, ended, and 25 */

    /* adopting again finds nothing more */
    CHECK_INT(journal_adopt(f.dir, 2, err, sizeof(err)), 0);
    CHECK_INT(count_file_lines(path), 26);

    j = journal_open(f.base, f.dir, 1, err, sizeof(err));
    CHECK(j != NULL);
    if (!j)
        goto done;
    journal_tick(j, f.r);
    CHECK(wait_for(f.base, pending_zero, j, 3000));
    CHECK_INT(counter(&f, "requests"), 25);
    CHECK_INT(counter(&f, "cost"), sum_cost(0, 25));
done:
    journal_close(j);
    fx_close(&f);
}

static void test_adopt_nothing(void)
{
    char err[256] = "";
    CHECK_INT(journal_adopt("/tmp/tollgate-no-such-journal-dir", 1, err, sizeof(err)), 0);
    CHECK_INT(journal_adopt("/proc/self/status", 1, err, sizeof(err)), -1); /* not a dir */
    CHECK(err[0] != '\0');
}

static void test_open_errors(void)
{
    char err[256] = "";
    struct event_base *base = event_base_new();
    struct journal *j = journal_open(base, "/proc/nope/journal", 0, err, sizeof(err));
    CHECK(j == NULL);
    CHECK(strstr(err, "/proc/nope") != NULL);
    event_base_free(base);
}

static const struct check_test tests[] = {
    {"append_format", test_append_format},
    {"replay_sum_and_twice", test_replay_sum_and_twice},
    {"crash_mid_replay", test_crash_mid_replay},
    {"append_during_replay", test_append_during_replay},
    {"bad_lines_dropped", test_bad_lines_dropped},
    {"tick", test_tick},
    {"open_errors", test_open_errors},
    {"adopt", test_adopt},
    {"adopt_nothing", test_adopt_nothing},
    {"redis_fails_midway", test_redis_fails_midway},
};

static void rm_tree(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", jroot);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", jroot);
}

int main(void)
{
    /* quiet: the tests feed bad lines on purpose, each logged at error */
    log_setup((enum log_level) - 1, false);
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(jroot) || start_server("redis") < 0) {
        fprintf(stderr, "cannot start /usr/bin/redis-server\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    atexit(rm_tree);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", server_port);
    return CHECK_MAIN("journal", tests);
}
