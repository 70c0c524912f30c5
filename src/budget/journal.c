/* journal.c: the per-worker journal of settlements Redis missed (journal.h
 * has the contract and the file layout). Appends are one write(2) each on an
 * O_APPEND fd; a replay rotates the file aside, streams it line by line into
 * budget_settle with a bounded window, and removes it only when every line
 * was acknowledged. Everything runs on the worker's loop: no locks. */
#include "budget/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "budget/budget.h"
#include "core/log.h"
#include "redis/redis.h"

#define LINE_MAX_BYTES 4096 /* a line is ~300 bytes; longer ones are refused */
#define KEY_BUDGET 400      /* budget.c builds keys in 512 bytes: stay well under */
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 60000

enum jstate {
    J_IDLE,    /* no replay: appends only */
    J_RUNNING, /* journal_replay called, its callback not yet run */
};

/* One settle in flight; the slot is the callback's arg, so a cancelled or
 * finished command never points at freed memory. */
struct slot {
    struct journal *j;
    struct redis_cmd *cmd;    /* NULL: free */
    struct redis_stamp stamp; /* the line's, read by redis.c while cmd runs */
};

struct journal {
    struct event_base *base;
    char *path;          /* worker-N.jsonl: appends */
    char *rpath;         /* worker-N.replaying: being replayed */
    int fd;              /* O_APPEND on path */
    size_t lines_main;   /* lines in path */
    bool have_replaying; /* rpath exists */
    size_t replay_total; /* lines in rpath */
    size_t replay_left;  /* of those, not acknowledged in this replay */
    bool full_logged;    /* "journal full" logged once per episode */

    enum jstate state;
    struct redis *r;
    journal_cb cb;
    void *cb_arg;
    struct event *kick; /* starts a replay on the next loop turn */
    FILE *in;           /* rpath while reading it */
    bool eof;
    bool failed;
    char err[160];
    size_t settled;
    struct slot slots[JOURNAL_INFLIGHT];
    size_t inflight;
    char *line;
    size_t linecap;

    /* stamps of settlements appended before they were ever sent: "j" and
     * 15 random hex digits per open (a live connection's id is all hex),
     * and a count */
    char stamp_id[17];
    unsigned long long stamp_seq;

    /* journal_tick's backoff after a failed replay */
    int backoff_ms;
    struct timespec next_try;
};

static void fill(struct journal *j);

/* ---- files ---- */

/* mkdir -p: var/journal must work on a fresh checkout. */
static int make_dirs(const char *dir)
{
    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Lines in path (a last line without '\n' counts); 0 when it does not
 * exist. *last_nl: the file is empty or ends with '\n'. */
static int count_lines(const char *path, size_t *lines, bool *last_nl)
{
    char buf[65536];
    ssize_t n;
    char last = '\n';
    size_t count = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *lines = 0;
        *last_nl = true;
        return errno == ENOENT ? 0 : -1;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n; i++)
            count += buf[i] == '\n';
        if (n > 0)
            last = buf[n - 1];
    }
    close(fd);
    if (n < 0)
        return -1;
    *lines = count + (last != '\n');
    *last_nl = last == '\n';
    return 0;
}

/* One write: with O_APPEND a line lands whole at the end, never interleaved. */
static int write_all(int fd, const char *buf, size_t len)
{
    ssize_t n;
    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

/* Moves the append file aside for a replay; appends go to a fresh file from
 * here on (the old fd would keep writing into the renamed inode). */
static int rotate(struct journal *j)
{
    if (rename(j->path, j->rpath) < 0)
        return -1;
    int fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (rename(j->rpath, j->path) < 0) /* keep appending where we were */
            log_error("journal: cannot move %s back: %s", j->rpath, strerror(errno));
        errno = e;
        return -1;
    }
    close(j->fd);
    j->fd = fd;
    j->have_replaying = true;
    j->replay_total = j->replay_left = j->lines_main;
    j->lines_main = 0;
    return 0;
}

/* ---- lines ---- */

static void new_stamp_id(struct journal *j)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[8] = {0};
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)j;
        memcpy(b, &v, sizeof(b));
    }
    j->stamp_id[0] = 'j';
    for (size_t i = 1; i < 16; i++)
        j->stamp_id[i] = hex[(b[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    j->stamp_id[16] = '\0';
}

/* Whether budget_settle could ever take s: such a line would block the
 * journal forever, so it is refused at append and dropped at replay. */
static bool settleable(const struct settle *s)
{
    return s->key_prefix && s->tenant && s->request_id && *s->tenant && *s->request_id &&
           !strpbrk(s->tenant, "{}") &&
           strlen(s->key_prefix) + strlen(s->tenant) + strlen(s->request_id) < KEY_BUDGET;
}

/* The breakdown names of s (model, feature, user, plan), each only when set. */
static const char *const names[] = {"model", "feature", "user", "plan"};

static const char **name_slot(struct settle *s, size_t i)
{
    const char **slots[] = {&s->model, &s->feature, &s->user, &s->plan};
    return slots[i];
}

/* The line for s, '\n'-terminated, malloc'd; NULL when out of memory. */
static char *encode(const struct settle *s, size_t *len)
{
    json_t *o = json_pack(
        "{s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b}", "v", 1, "key_prefix",
        s->key_prefix, "tenant", s->tenant, "request_id", s->request_id, "when",
        (json_int_t)s->when, "cost", (json_int_t)s->cost, "input", (json_int_t)s->usage.input,
        "cached", (json_int_t)s->usage.cached, "cache_write", (json_int_t)s->usage.cache_write,
        "output", (json_int_t)s->usage.output, "reasoning", (json_int_t)s->usage.reasoning, "seen",
        s->usage.seen, "estimated", s->usage.estimated);
    if (o && (json_object_set_new(o, "conn", json_string(s->stamp.conn)) < 0 ||
              json_object_set_new(o, "seq", json_integer((json_int_t)s->stamp.seq)) < 0 ||
              (s->tallied && json_object_set_new(o, "tallied", json_true()) < 0) ||
              (s->unpriced && json_object_set_new(o, "unpriced", json_true()) < 0) ||
              (s->anchor > 1 && json_object_set_new(o, "anchor", json_integer(s->anchor)) < 0) ||
              (s->cache_hit && (json_object_set_new(o, "cache_hit", json_true()) < 0 ||
                                json_object_set_new(o, "saved", json_integer(s->saved)) < 0)) ||
              (s->units > 0 &&
               json_object_set_new(o, "allowance",
                                   json_pack("[I,I,I,I]", (json_int_t)s->units,
                                             (json_int_t)s->included, (json_int_t)s->overage_per_mu,
                                             (json_int_t)s->overage_markup_bp)) < 0))) {
        json_decref(o);
        o = NULL;
    }
    struct settle copy = *s;
    for (size_t i = 0; o && i < ARRAY_LEN(names); i++) {
        const char *v = *name_slot(&copy, i);
        if (v && json_object_set_new(o, names[i], json_string(v)) < 0) {
            json_decref(o);
            o = NULL;
        }
    }
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *line = NULL;
    json_decref(o);
    if (!text)
        return NULL;
    *len = strlen(text);
    if ((line = malloc(*len + 2))) {
        memcpy(line, text, *len);
        line[(*len)++] = '\n';
        line[*len] = '\0';
    }
    free(text);
    return line;
}

/* Parses a line into s; s's strings live in the returned object (decref it
 * after use). NULL when the line is not a settlement. */
static json_t *decode(const char *line, struct settle *s)
{
    json_int_t when, cost, in, cached, cw, out, reas;
    int seen, est;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
    memset(s, 0, sizeof(*s));
    if (!o ||
        json_unpack(o, "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b}", "key_prefix",
                    &s->key_prefix, "tenant", &s->tenant, "request_id", &s->request_id, "when",
                    &when, "cost", &cost, "input", &in, "cached", &cached, "cache_write", &cw,
                    "output", &out, "reasoning", &reas, "seen", &seen, "estimated", &est) < 0) {
        json_decref(o);
        return NULL;
    }
    s->when = (time_t)when;
    s->cost = cost;
    s->usage = (struct usage){.input = in,
                              .cached = cached,
                              .cache_write = cw,
                              .output = out,
                              .reasoning = reas,
                              .seen = seen,
                              .estimated = est};
    /* The stamp that says whether the settlement already ran (settle.lua).
     * Lines written before stamps existed get one made from the request
     * id, the same at every replay, so those count once too. */
    const char *conn = json_string_value(json_object_get(o, "conn"));
    json_int_t seq = json_integer_value(json_object_get(o, "seq"));
    if (conn && *conn && strlen(conn) < sizeof(s->stamp.conn) && seq > 0) {
        snprintf(s->stamp.conn, sizeof(s->stamp.conn), "%s", conn);
        s->stamp.seq = (unsigned long long)seq;
    } else {
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = s->request_id; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        snprintf(s->stamp.conn, sizeof(s->stamp.conn), "r");
        s->stamp.seq = (h & ((1ULL << 53) - 1)) | 1; /* exact in Lua; never 0 */
    }
    s->tallied = json_is_true(json_object_get(o, "tallied"));
    s->unpriced = json_is_true(json_object_get(o, "unpriced")); /* optional */
    /* optional: the tenant's billing_anchor, so a replay counts in the
     * period the request was in (absent: 1) */
    json_int_t anchor = json_integer_value(json_object_get(o, "anchor"));
    s->anchor = anchor >= 1 && anchor <= 31 ? (int)anchor : 1;
    /* optional: a response cache hit and what it saved */
    s->cache_hit = json_is_true(json_object_get(o, "cache_hit"));
    s->saved = s->cache_hit ? json_integer_value(json_object_get(o, "saved")) : 0;
    /* optional: [units, included, overage per 1M units, markup] (allowance plans) */
    json_int_t al[4];
    if (json_unpack(json_object_get(o, "allowance"), "[IIII]", &al[0], &al[1], &al[2], &al[3]) ==
            0 &&
        al[0] > 0) {
        s->units = al[0];
        s->included = al[1];
        s->overage_per_mu = al[2];
        s->overage_markup_bp = al[3];
    }
    /* optional: lines written before the breakdowns existed lack them */
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        const char *v = json_string_value(json_object_get(o, names[i]));
        *name_slot(s, i) = v && *v ? v : NULL;
    }
    return o;
}

/* ---- replay ---- */

/* Ends the replay: removes the file if every line was acknowledged, goes on
 * with lines appended meanwhile, or stops and reports. The callback is the
 * last thing done, so it may close the journal. */
static void finish(struct journal *j)
{
    if (j->in) {
        fclose(j->in);
        j->in = NULL;
    }
    if (!j->failed && j->have_replaying) {
        if (unlink(j->rpath) < 0 && errno != ENOENT) {
            j->failed = true;
            snprintf(j->err, sizeof(j->err), "cannot remove %s: %s", j->rpath, strerror(errno));
        } else {
            j->have_replaying = false;
            j->replay_total = j->replay_left = 0;
        }
    }
    if (!j->failed && j->lines_main > 0) {
        /* appended while we replayed: next round, on the next loop turn */
        event_active(j->kick, 0, 0);
        return;
    }
    if (j->failed)
        j->replay_left = j->replay_total; /* all of it goes again next time */
    char err[sizeof(j->err)];
    snprintf(err, sizeof(err), "%s", j->err);
    journal_cb cb = j->cb;
    void *arg = j->cb_arg;
    size_t settled = j->settled;
    bool failed = j->failed;
    j->state = J_IDLE;
    j->cb = NULL;
    j->r = NULL;
    if (cb)
        cb(settled, failed ? err : NULL, arg);
}

static void fail(struct journal *j, const char *fmt, const char *what)
{
    if (j->failed)
        return; /* the first reason is the one worth reporting */
    j->failed = true;
    snprintf(j->err, sizeof(j->err), fmt, what);
}

/* A line is done with (settled or dropped); the count was taken at open or
 * rotation, so a file edited by hand must not make it wrap. */
static void acked(struct journal *j)
{
    if (j->replay_left)
        j->replay_left--;
}

static void on_settled(bool ok, const char *err, void *arg)
{
    struct slot *sl = arg;
    struct journal *j = sl->j;
    sl->cmd = NULL;
    j->inflight--;
    if (ok) {
        j->settled++;
        acked(j);
    } else {
        fail(j, "settle: %s", err ? err : "failed");
    }
    fill(j);
}

static struct slot *free_slot(struct journal *j)
{
    for (size_t i = 0; i < ARRAY_LEN(j->slots); i++)
        if (!j->slots[i].cmd)
            return &j->slots[i];
    return NULL;
}

/* Keeps up to JOURNAL_INFLIGHT settles going until the file ends or one
 * fails; finishes once nothing is in flight. */
static void fill(struct journal *j)
{
    while (!j->failed && !j->eof && j->inflight < JOURNAL_INFLIGHT) {
        errno = 0;
        ssize_t n = getline(&j->line, &j->linecap, j->in);
        if (n < 0) {
            if (ferror(j->in))
                fail(j, "read %s", j->rpath);
            j->eof = true;
            break;
        }
        if (n == 1 && j->line[0] == '\n') {
            acked(j); /* a torn line's terminator: nothing to settle */
            continue;
        }
        struct settle s;
        json_t *o = decode(j->line, &s);
        if (!o || !settleable(&s)) {
            log_error("journal: %s: dropping a line that is not a settlement", j->rpath);
            json_decref(o);
            acked(j);
            continue;
        }
        struct slot *sl = free_slot(j);
        sl->j = j;
        sl->stamp = s.stamp; /* never 0: a replay counts only what never ran */
        sl->cmd = budget_settle(j->r, NULL, &s, &sl->stamp, on_settled, sl); /* copies s */
        json_decref(o);
        if (!sl->cmd) {
            fail(j, "settle: %s", "Redis not connected or too busy");
            break;
        }
        j->inflight++;
    }
    if (j->inflight == 0 && (j->failed || j->eof))
        finish(j);
}

/* Starts (or continues with) the next file on the loop, never inside
 * journal_replay: the callback must not run from there. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct journal *j = arg;
    j->eof = false;
    if (!j->have_replaying) {
        if (j->lines_main == 0) {
            finish(j); /* nothing pending */
            return;
        }
        if (rotate(j) < 0) {
            fail(j, "rotate: %s", strerror(errno));
            finish(j);
            return;
        }
    }
    if (!redis_connected(j->r)) {
        fail(j, "settle: %s", "Redis not connected");
        finish(j);
        return;
    }
    j->replay_left = j->replay_total;
    j->in = fopen(j->rpath, "re");
    if (!j->in) {
        if (errno == ENOENT) { /* removed by hand: nothing to do */
            j->have_replaying = false;
            j->replay_total = j->replay_left = 0;
            j->eof = true;
            finish(j);
            return;
        }
        fail(j, "open: %s", strerror(errno));
        finish(j);
        return;
    }
    fill(j);
}

/* ---- public ---- */

/* Whether the file at fd (open for reading) is empty or ends with '\n'. */
static bool ends_whole(int fd)
{
    struct stat st;
    char c;
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        return true;
    return pread(fd, &c, 1, st.st_size - 1) == 1 && c == '\n';
}

/* Appends the lines of from to the file at fd (each ending in '\n'). */
static int append_file(int fd, const char *from)
{
    char buf[65536];
    ssize_t n;
    char last = '\n';
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    if (!ends_whole(fd) && write_all(fd, "\n", 1) < 0)
        goto fail;
    while ((n = read(in, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0 && write_all(fd, buf, (size_t)n) < 0)
            goto fail;
        if (n > 0)
            last = buf[n - 1];
    }
    if (n < 0 || (last != '\n' && write_all(fd, "\n", 1) < 0))
        goto fail;
    close(in);
    return 0;
fail:
    close(in);
    return -1;
}

/* Appends dir/name (worker id's file) to worker-(id mod n).jsonl, then
 * removes it. */
static int adopt_one(const char *dir, const char *name, int id, int n, char *err, size_t errlen)
{
    char *from = NULL, *to = NULL;
    int fd = -1, rc = -1;
    size_t lines = 0;
    bool last_nl;
    if (asprintf(&from, "%s/%s", dir, name) < 0 ||
        asprintf(&to, "%s/worker-%d.jsonl", dir, id % n) < 0) {
        snprintf(err, errlen, "out of memory");
        from = to = NULL; /* asprintf leaves them undefined on failure */
        goto fail;
    }
    if (count_lines(from, &lines, &last_nl) < 0 ||
        (fd = open(to, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
        append_file(fd, from) < 0 || fsync(fd) < 0) {
        snprintf(err, errlen, "journal: cannot move %s into %s: %s", from, to, strerror(errno));
        goto fail;
    }
    if (unlink(from) < 0) { /* replayed twice at worst: settling is idempotent */
        snprintf(err, errlen, "journal: cannot remove %s: %s", from, strerror(errno));
        goto fail;
    }
    log_info("journal: %s left by a previous instance (%zu settlements) handed to worker %d", name,
             lines, id % n);
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    free(to);
    free(from);
    return rc;
}

int journal_adopt(const char *dir, int n_workers, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) /* a first start: nothing left behind */
            return 0;
        snprintf(err, errlen, "journal: cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        int id, end = 0;
        char kind[16];
        if (sscanf(e->d_name, "worker-%d.%15[a-z]%n", &id, kind, &end) != 2 ||
            e->d_name[end] != '\0' || id < n_workers ||
            (strcmp(kind, "jsonl") != 0 && strcmp(kind, "replaying") != 0))
            continue;
        rc = adopt_one(dir, e->d_name, id, n_workers, err, errlen);
    }
    closedir(d);
    return rc;
}

struct journal *journal_open(struct event_base *base, const char *dir, int worker_id, char *err,
                             size_t errlen)
{
    struct journal *j = calloc(1, sizeof(*j));
    bool last_nl;
    size_t rlines;
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    j->fd = -1;
    j->base = base;
    if (asprintf(&j->path, "%s/worker-%d.jsonl", dir, worker_id) < 0) {
        j->path = NULL;
        goto oom;
    }
    if (asprintf(&j->rpath, "%s/worker-%d.replaying", dir, worker_id) < 0) {
        j->rpath = NULL;
        goto oom;
    }
    if (!(j->kick = event_new(base, -1, 0, on_kick, j)))
        goto oom;
    new_stamp_id(j);
    if (make_dirs(dir) < 0) {
        snprintf(err, errlen, "journal: cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (count_lines(j->rpath, &rlines, &last_nl) < 0) {
        snprintf(err, errlen, "journal: cannot read %s: %s", j->rpath, strerror(errno));
        goto fail;
    }
    j->have_replaying = access(j->rpath, F_OK) == 0;
    j->replay_total = j->replay_left = rlines;
    if (count_lines(j->path, &j->lines_main, &last_nl) < 0) {
        snprintf(err, errlen, "journal: cannot read %s: %s", j->path, strerror(errno));
        goto fail;
    }
    j->fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (j->fd < 0) {
        snprintf(err, errlen, "journal: cannot open %s: %s", j->path, strerror(errno));
        goto fail;
    }
    /* A crash mid-write left a torn last line: end it, or the next append
     * would be glued to it and both lost. */
    if (!last_nl && write_all(j->fd, "\n", 1) < 0) {
        snprintf(err, errlen, "journal: cannot write %s: %s", j->path, strerror(errno));
        goto fail;
    }
    if (journal_pending(j))
        log_warn("journal: %zu settlements pending in %s, replayed once Redis answers",
                 journal_pending(j), dir);
    return j;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    journal_close(j);
    return NULL;
}

int journal_append(struct journal *j, const struct settle *s)
{
    size_t len;
    char *line = NULL;
    if (!settleable(s)) {
        log_error("journal: refusing a settlement with a bad tenant or request id");
        goto fail;
    }
    if (journal_pending(j) >= JOURNAL_MAX_LINES) {
        if (!j->full_logged)
            log_error("journal: %s is full (%d lines): settlements are being lost", j->path,
                      JOURNAL_MAX_LINES);
        j->full_logged = true;
        goto fail;
    }
    j->full_logged = false;
    struct settle stamped = *s;
    if (stamped.stamp.seq == 0) { /* never sent, or refused: counts at its first replay */
        memcpy(stamped.stamp.conn, j->stamp_id, sizeof(stamped.stamp.conn));
        stamped.stamp.seq = ++j->stamp_seq;
    }
    if (!(line = encode(&stamped, &len)) || len > LINE_MAX_BYTES) {
        log_error("journal: cannot encode settlement of request %s", s->request_id);
        goto fail;
    }
    if (write_all(j->fd, line, len) < 0) {
        log_error("journal: write %s: %s", j->path, strerror(errno));
        /* a short write left part of a line: end it so the next one is whole */
        if (write_all(j->fd, "\n", 1) == 0)
            j->lines_main++;
        goto fail;
    }
    j->lines_main++;
    free(line);
    return 0;
fail:
    free(line);
    return -1;
}

size_t journal_pending(const struct journal *j)
{
    return j->lines_main + j->replay_left;
}

bool journal_replaying(const struct journal *j)
{
    return j->state == J_RUNNING;
}

int journal_replay(struct journal *j, struct redis *r, journal_cb cb, void *arg)
{
    if (j->state == J_RUNNING || !r || !redis_connected(r))
        return -1;
    j->state = J_RUNNING;
    j->r = r;
    j->cb = cb;
    j->cb_arg = arg;
    j->failed = false;
    j->err[0] = '\0';
    j->settled = 0;
    event_active(j->kick, 0, 0);
    return 0;
}

static void on_tick_done(size_t settled, const char *err, void *arg)
{
    struct journal *j = arg;
    if (!err) {
        j->backoff_ms = 0;
        log_info("journal: replayed %zu settlements into Redis", settled);
        return;
    }
    j->backoff_ms = j->backoff_ms ? j->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (j->backoff_ms > BACKOFF_MAX_MS)
        j->backoff_ms = BACKOFF_MAX_MS;
    clock_gettime(CLOCK_MONOTONIC, &j->next_try);
    j->next_try.tv_sec += j->backoff_ms / 1000;
    log_warn("journal: replay stopped after %zu settlements (%s); %zu pending, retry in %d ms",
             settled, err, journal_pending(j), j->backoff_ms);
}

void journal_tick(struct journal *j, struct redis *r)
{
    struct timespec now;
    if (!j || j->state == J_RUNNING || journal_pending(j) == 0 || !redis_connected(r))
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (j->backoff_ms && now.tv_sec < j->next_try.tv_sec)
        return;
    if (journal_replay(j, r, on_tick_done, j) < 0)
        return; /* checked above: cannot happen */
}

void journal_close(struct journal *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < ARRAY_LEN(j->slots); i++)
        if (j->slots[i].cmd)
            redis_cancel(j->slots[i].cmd);
    if (j->in)
        fclose(j->in);
    if (j->kick)
        event_free(j->kick);
    if (j->fd >= 0)
        close(j->fd);
    free(j->line);
    free(j->path);
    free(j->rpath);
    free(j);
}
