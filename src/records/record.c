/* record.c: usage records, one JSON line per request. record_format builds
 * the line with the contract's field order; each worker appends lines to its
 * own record_queue (an evbuffer, no lock) and hands the whole batch to the
 * process's record_sink every 20 ms or at 64 KiB, under one mutex per batch.
 * The sink's writer thread appends batches to the file, so neither the event
 * loop nor the request path ever waits on the disk; it is also the one that
 * reopens (SIGUSR1, SIGHUP) and rotates the file (by size or day), between
 * two batches, so no record is split, lost or written twice by a rotation. */
#include "records/record.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/bgthread.h"
#include "core/numtext.h"
#include "core/log.h"

#define BATCH_BYTES (64 * 1024)
#define BATCH_MS 20
#define LINE_STACK 4096  /* most lines fit */
#define LINE_HEAP 131072 /* the longest line we accept (long paths, escapes) */

/* ---- formatting ------------------------------------------------------- */

struct out {
    char *p;
    size_t n, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->n - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* numbers without printf: a record is formatted for every request */
static void put_i64(struct out *o, int64_t v)
{
    char buf[NUMTEXT_I64_MAX];
    put(o, buf, numtext_i64(buf, v));
}

static void put_uint(struct out *o, uint64_t v, int width)
{
    char buf[NUMTEXT_I64_MAX];
    char *end = numtext_put_uint(buf, buf + sizeof(buf), v, width);
    if (end)
        put(o, buf, (size_t)(end - buf));
    else
        o->full = true;
}

static void putf(struct out *o, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void putf(struct out *o, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        o->full = true;
    else
        put(o, buf, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is invalid
 * (overlong, surrogate, above U+10FFFF, truncated). */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000;
    else
        return 0;
    if (avail < n)
        return 0;
    unsigned cp = c & (0x3f >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string, or null for NULL. Invalid UTF-8 bytes become U+FFFD one
 * by one, so the file always parses and no byte is silently dropped. */
static void put_str(struct out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s) {
        puts_(o, "null");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    put(o, "\"", 1);
    while (left > 0) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(o, e, 2);
        } else if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c == '\r') {
            put(o, "\\r", 2);
        } else if (c == '\t') {
            put(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, e, 6);
        } else {
            size_t n = utf8_len(p, left);
            if (n == 0) {
                put(o, "\\ufffd", 6);
                n = 1;
            } else {
                put(o, (const char *)p, n);
            }
            p += n;
            left -= n;
            continue;
        }
        p++;
        left--;
    }
    put(o, "\"", 1);
}

static void put_ms(struct out *o, double ms)
{
    if (!isfinite(ms) || ms < 0)
        puts_(o, "null");
    else
        putf(o, "%.1f", ms);
}

int record_format(const struct record *r, char *buf, size_t n)
{
    struct out o = {.p = buf, .n = n, .len = 0, .full = false};
    struct tm tm;
    char cost[40], saved[40];
    time_t sec = r->ts.tv_sec;

    if (!gmtime_r(&sec, &tm) || money_format(r->cost, cost, sizeof(cost)) < 0 ||
        money_format(r->saved, saved, sizeof(saved)) < 0)
        return -1;
    /* "ts":"YYYY-MM-DDTHH:MM:SS.mmmZ" */
    puts_(&o, "{\"ts\":\"");
    put_uint(&o, (uint64_t)(tm.tm_year + 1900), 4);
    put(&o, "-", 1);
    put_uint(&o, (uint64_t)(tm.tm_mon + 1), 2);
    put(&o, "-", 1);
    put_uint(&o, (uint64_t)tm.tm_mday, 2);
    put(&o, "T", 1);
    put_uint(&o, (uint64_t)tm.tm_hour, 2);
    put(&o, ":", 1);
    put_uint(&o, (uint64_t)tm.tm_min, 2);
    put(&o, ":", 1);
    put_uint(&o, (uint64_t)tm.tm_sec, 2);
    put(&o, ".", 1);
    put_uint(&o, (uint64_t)((r->ts.tv_nsec / 1000000) % 1000), 3);
    puts_(&o, "Z\"");
    puts_(&o, ",\"id\":");
    put_str(&o, r->id);
    puts_(&o, ",\"tenant\":");
    put_str(&o, r->tenant);
    puts_(&o, ",\"user\":");
    put_str(&o, r->user);
    puts_(&o, ",\"feature\":");
    put_str(&o, r->feature);
    puts_(&o, ",\"plan\":");
    put_str(&o, r->plan);
    puts_(&o, ",\"provider\":");
    put_str(&o, r->provider);
    puts_(&o, ",\"upstream\":");
    put_str(&o, r->upstream);
    puts_(&o, ",\"endpoint\":");
    put_str(&o, r->endpoint);
    puts_(&o, ",\"model_requested\":");
    put_str(&o, r->model_requested);
    puts_(&o, ",\"model\":");
    put_str(&o, r->model);
    puts_(&o, r->downgraded ? ",\"downgraded\":true" : ",\"downgraded\":false");
    puts_(&o, r->stream ? ",\"stream\":true" : ",\"stream\":false");
    puts_(&o, ",\"status\":");
    put_i64(&o, r->status);
    puts_(&o, ",\"outcome\":");
    put_str(&o, outcome_name(r->outcome));
    puts_(&o, ",\"input_tokens\":");
    put_i64(&o, r->usage.input);
    puts_(&o, ",\"cached_tokens\":");
    put_i64(&o, r->usage.cached);
    puts_(&o, ",\"cache_write_tokens\":");
    put_i64(&o, r->usage.cache_write);
    puts_(&o, ",\"output_tokens\":");
    put_i64(&o, r->usage.output);
    puts_(&o, ",\"reasoning_tokens\":");
    put_i64(&o, r->usage.reasoning);
    const char *unit = usage_unit_name(r->usage.unit);
    if (unit) {
        puts_(&o, ",\"units\":");
        put_i64(&o, r->usage.units);
        puts_(&o, ",\"unit\":\"");
        puts_(&o, unit);
        puts_(&o, "\"");
    } else {
        puts_(&o, ",\"units\":null,\"unit\":null");
    }
    puts_(&o, ",\"cost_usd\":");
    puts_(&o, cost);
    puts_(&o, r->priced ? ",\"priced\":true" : ",\"priced\":false");
    puts_(&o, r->usage.estimated ? ",\"estimated\":true" : ",\"estimated\":false");
    puts_(&o, r->cache_hit ? ",\"cache_hit\":true,\"saved_usd\":"
                           : ",\"cache_hit\":false,\"saved_usd\":");
    puts_(&o, saved);
    puts_(&o, ",\"latency_ms\":");
    put_ms(&o, r->latency_ms);
    puts_(&o, ",\"ttfb_ms\":");
    put_ms(&o, r->ttfb_ms);
    puts_(&o, "}\n");
    put(&o, "", 1); /* the NUL, not counted */
    if (o.full || o.len > INT32_MAX)
        return -1;
    return (int)o.len - 1;
}

/* ---- the sink: file + writer thread ------------------------------------ */

#define FAIL_LOG_MS 10000 /* at most one "records lost" line per 10 s */
#define RECOVER_MS 5000   /* failing until writes succeeded this long after the last failure */

struct record_sink {
    int fd;
    bool is_stdout; /* file = "-": fd is a dup of 1, never reopened */
    long day;       /* UTC day (epoch days) the open file belongs to */
    struct record_rotation rot;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct evbuffer *pending; /* batches handed over, not yet taken */
    struct evbuffer *batch;   /* the writer's own: what it is writing now */
    struct evbuffer *part;    /* the writer's own: the chunk of batch for one file */
    unsigned long pending_lines;
    bool stop, reopen;
    bool failing; /* the last write failed: /readyz says degraded */
    unsigned long written, failed, rotations;
    /* the writer's own: the rate-limited error line */
    unsigned long lost_unlogged;
    struct timespec last_fail_log;
    struct timespec last_fail;
    char *path;
};

/* Writes all of b to fd; returns 0, or -1 with errno (b is then drained). */
static int write_all(int fd, struct evbuffer *b)
{
    while (evbuffer_get_length(b) > 0) {
        struct iovec iov[64];
        struct evbuffer_iovec v[64];
        int nv = evbuffer_peek(b, -1, NULL, v, 64);
        if (nv > 64)
            nv = 64;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        ssize_t w = writev(fd, iov, nv);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            evbuffer_drain(b, evbuffer_get_length(b));
            errno = e;
            return -1;
        }
        evbuffer_drain(b, (size_t)w);
    }
    return 0;
}

/* mkdir -p of path's parent directory. */
static int make_parent(const char *path)
{
    char dir[4096];
    size_t n = strlen(path);
    if (n >= sizeof(dir))
        return -1;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static long utc_day(time_t t)
{
    return (long)(t / 86400);
}

/* Opens s->path for appending; sets s->day from the file's age (an old
 * file found at start is rotated at its first record when daily). Returns
 * the fd, or -1 with errno. */
static int open_file(struct record_sink *s)
{
    if (make_parent(s->path) < 0)
        return -1;
    int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        s->day = utc_day(st.st_mtime);
    else
        s->day = utc_day(time(NULL));
    return fd;
}

/* SIGUSR1/SIGHUP: the file may have been renamed away (logrotate); open
 * the path again. On failure the old fd stays: records keep flowing into
 * the renamed file rather than nowhere. */
static void reopen(struct record_sink *s)
{
    if (s->is_stdout)
        return;
    int fd = open_file(s);
    if (fd < 0) {
        log_error("records: reopening %s failed (%s); still writing to the file already open",
                  s->path, strerror(errno));
        return;
    }
    close(s->fd);
    s->fd = fd;
    log_info("records: reopened %s", s->path);
}

/* Renames path.(keep-1) .. path.1 one up (dropping path.keep), path to
 * path.1, and opens a new path. Runs on the writer between two batches, so
 * no record is split or written twice. */
static void rotate(struct record_sink *s)
{
    size_t n = strlen(s->path) + 16;
    char *from = malloc(n), *to = malloc(n);
    if (!from || !to)
        goto done;
    snprintf(to, n, "%s.%d", s->path, s->rot.keep);
    if (unlink(to) < 0 && errno != ENOENT)
        log_warn("records: removing %s: %s", to, strerror(errno));
    for (int k = s->rot.keep - 1; k >= 1; k--) {
        snprintf(from, n, "%s.%d", s->path, k);
        snprintf(to, n, "%s.%d", s->path, k + 1);
        if (rename(from, to) < 0 && errno != ENOENT)
            log_warn("records: renaming %s: %s", from, strerror(errno));
    }
    snprintf(to, n, "%s.1", s->path);
    bool moved_away = false;
    if (rename(s->path, to) < 0) {
        if (errno != ENOENT) {
            log_error("records: rotating %s failed (%s); the file keeps growing", s->path,
                      strerror(errno));
            goto done;
        }
        moved_away = true; /* renamed by someone else, the SIGUSR1 still to come */
    }
    int fd = open_file(s);
    if (fd < 0) { /* the old fd (now path.1) takes the records meanwhile */
        log_error("records: opening a new %s after rotation failed (%s)", s->path, strerror(errno));
        goto done;
    }
    fsync(s->fd);
    close(s->fd);
    s->fd = fd;
    pthread_mutex_lock(&s->mu);
    s->rotations += !moved_away;
    pthread_mutex_unlock(&s->mu);
done:
    free(from);
    free(to);
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* A failed write: the lines are counted lost and said so, at most once per
 * FAIL_LOG_MS so that a full disk does not also flood the log. */
static void write_failed(struct record_sink *s, unsigned long lines, int err)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    s->lost_unlogged += lines;
    if (s->last_fail_log.tv_sec == 0 || ms_between(&s->last_fail_log, &now) >= FAIL_LOG_MS) {
        log_error("records: writing %s failed (%s); %lu records lost since the last report "
                  "(Redis settlement is not affected)",
                  s->path, strerror(err), s->lost_unlogged);
        s->lost_unlogged = 0;
        s->last_fail_log = now;
    }
}

/* Lines (newlines) in b from byte from on. */
static unsigned long count_lines(struct evbuffer *b, size_t from)
{
    unsigned long n = 0;
    struct evbuffer_ptr p;
    if (evbuffer_ptr_set(b, &p, from, EVBUFFER_PTR_SET) < 0)
        return 0;
    for (;;) {
        struct evbuffer_ptr f = evbuffer_search(b, "\n", 1, &p);
        if (f.pos < 0)
            return n;
        n++;
        if (evbuffer_ptr_set(b, &p, (size_t)f.pos + 1, EVBUFFER_PTR_SET) < 0)
            return n;
    }
}

/* Bytes of the longest run of whole lines at the start of b that fits in
 * room; 0 when even the first line does not. */
static size_t whole_lines(struct evbuffer *b, size_t room)
{
    size_t fit = 0;
    struct evbuffer_ptr p;
    evbuffer_ptr_set(b, &p, 0, EVBUFFER_PTR_SET);
    for (;;) {
        struct evbuffer_ptr f = evbuffer_search(b, "\n", 1, &p);
        if (f.pos < 0 || (size_t)f.pos + 1 > room)
            return fit;
        fit = (size_t)f.pos + 1;
        if (evbuffer_ptr_set(b, &p, fit, EVBUFFER_PTR_SET) < 0)
            return fit;
    }
}

/* The length of the first line of b (all of b without a newline). */
static size_t first_line(struct evbuffer *b)
{
    struct evbuffer_ptr f = evbuffer_search(b, "\n", 1, NULL);
    return f.pos < 0 ? evbuffer_get_length(b) : (size_t)f.pos + 1;
}

/* Writes a batch of whole lines. With rotation on, a batch is split at line
 * ends so that each file stays under the size (a single longer line gets a
 * file of its own), and a new UTC day starts a new file. A write that fails
 * half way is cut back to the last whole line, so the file stays JSONL for
 * the records written once the disk has room again. lines: how many b
 * holds. Returns the number of lines not written (0: all); b and part are
 * empty after. */
static unsigned long write_batch(struct record_sink *s, struct evbuffer *b, unsigned long lines,
                                 struct evbuffer *part)
{
    bool rotating = !s->is_stdout && (s->rot.max_bytes > 0 || s->rot.daily);
    bool rotated = false; /* once per chunk: a failed rotation must not loop */
    while (evbuffer_get_length(b) > 0) {
        struct stat st;
        bool regular = !s->is_stdout && fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode);
        size_t len = evbuffer_get_length(b), n = len;
        if (rotating && regular) {
            size_t size = (size_t)st.st_size;
            bool new_day = s->rot.daily && utc_day(time(NULL)) != s->day;
            if (s->rot.max_bytes > 0)
                n = whole_lines(b, size < s->rot.max_bytes ? s->rot.max_bytes - size : 0);
            if (size > 0 && (n == 0 || new_day) && !rotated) {
                rotate(s);
                rotated = true;
                continue;
            }
            if (n == 0)
                n = first_line(b);
        }
        rotated = false;
        unsigned long after = 0; /* lines left in b once this chunk is taken */
        if (n < len) {
            evbuffer_remove_buffer(b, part, n);
            after = count_lines(b, 0);
        } else {
            evbuffer_add_buffer(part, b);
        }
        if (write_all(s->fd, part) < 0) {
            int e = errno;
            if (regular && ftruncate(s->fd, st.st_size) < 0)
                log_warn("records: cutting a partial line from %s: %s", s->path, strerror(errno));
            evbuffer_drain(b, evbuffer_get_length(b));
            errno = e;
            return lines; /* this chunk (cut back) and the rest */
        }
        lines = after;
    }
    return 0;
}

static void *writer(void *arg)
{
    struct record_sink *s = arg;
    struct evbuffer *batch = s->batch, *part = s->part;
    bool stop = false;
    pthread_mutex_lock(&s->mu);
    while (!stop) {
        while (!s->stop && !s->reopen && evbuffer_get_length(s->pending) == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        stop = s->stop && evbuffer_get_length(s->pending) == 0;
        bool want_reopen = s->reopen;
        s->reopen = false;
        /* take everything in one move; write without holding the lock */
        evbuffer_add_buffer(batch, s->pending);
        unsigned long lines = s->pending_lines;
        s->pending_lines = 0;
        pthread_mutex_unlock(&s->mu);

        if (want_reopen)
            reopen(s);
        unsigned long lost = write_batch(s, batch, lines, part);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        /* a nearly full disk takes a small batch and refuses the next: the
         * sink counts as failing until writes succeeded for RECOVER_MS */
        bool recovered =
            !lost && lines && s->failing && ms_between(&s->last_fail, &now) >= RECOVER_MS;
        if (lost) {
            write_failed(s, lost, errno);
            s->last_fail = now;
        } else if (recovered) {
            log_info("records: writing %s again", s->path);
        }

        pthread_mutex_lock(&s->mu);
        s->failed += lost;
        s->written += lines - lost;
        if (lost)
            s->failing = true;
        else if (recovered)
            s->failing = false;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

struct record_sink *record_sink_open(const char *path, const struct record_rotation *rot, char *err,
                                     size_t errlen)
{
    struct record_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fd = -1;
    if (rot)
        s->rot = *rot;
    if (s->rot.keep < 1)
        s->rot.keep = 1;
    if (!(s->path = strdup(path)) || !(s->pending = evbuffer_new()) ||
        !(s->batch = evbuffer_new()) || !(s->part = evbuffer_new())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (strcmp(path, "-") == 0) {
        s->is_stdout = true;
        s->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        if (s->fd < 0) {
            snprintf(err, errlen, "cannot use standard output: %s", strerror(errno));
            goto fail;
        }
    } else if ((s->fd = open_file(s)) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (bgthread_launch(&s->thread, &s->mu, &s->cv, writer, s, "records writer", err, errlen) < 0)
        goto fail;
    return s;
fail:
    if (s->fd >= 0)
        close(s->fd);
    if (s->part)
        evbuffer_free(s->part);
    if (s->batch)
        evbuffer_free(s->batch);
    if (s->pending)
        evbuffer_free(s->pending);
    free(s->path);
    free(s);
    return NULL;
}

void record_sink_reopen(struct record_sink *s)
{
    pthread_mutex_lock(&s->mu);
    s->reopen = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void record_sink_close(struct record_sink *s)
{
    if (!s)
        return;
    bgthread_stop(s->thread, &s->mu, &s->cv, &s->stop);
    if (s->lost_unlogged)
        log_error("records: %lu more records lost writing %s", s->lost_unlogged, s->path);
    if (fsync(s->fd) < 0 && errno != EINVAL)
        log_warn("records: fsync %s: %s", s->path, strerror(errno));
    close(s->fd);
    evbuffer_free(s->part);
    evbuffer_free(s->batch);
    evbuffer_free(s->pending);
    free(s->path);
    free(s);
}

void record_sink_stats(struct record_sink *s, struct record_sink_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->written = s->written;
    out->failed = s->failed;
    out->rotations = s->rotations;
    out->failing = s->failing;
    pthread_mutex_unlock(&s->mu);
}

unsigned long record_sink_written(struct record_sink *s)
{
    struct record_sink_stats st;
    record_sink_stats(s, &st);
    return st.written;
}

unsigned long record_sink_failed(struct record_sink *s)
{
    struct record_sink_stats st;
    record_sink_stats(s, &st);
    return st.failed;
}

/* ---- the per-worker queue ---------------------------------------------- */

struct record_queue {
    struct record_sink *sink;
    struct evbuffer *buf;
    unsigned long lines;
    struct event *timer;
};

static void on_batch_timer(evutil_socket_t fd, short what, void *arg)
{
    record_queue_flush(arg);
}

struct record_queue *record_queue_new(struct record_sink *s, struct event_base *base)
{
    struct record_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->sink = s;
    if (!(q->buf = evbuffer_new()) || !(q->timer = evtimer_new(base, on_batch_timer, q)))
        goto fail;
    return q;
fail:
    if (q->buf)
        evbuffer_free(q->buf);
    free(q);
    return NULL;
}

void record_queue_push(struct record_queue *q, const struct record *r)
{
    char stack[LINE_STACK];
    char *line = stack;
    int n = record_format(r, stack, sizeof(stack));
    if (n < 0) {
        /* rare: long endpoint or many escapes */
        if (!(line = malloc(LINE_HEAP)) || (n = record_format(r, line, LINE_HEAP)) < 0) {
            log_error("records: record %.64s could not be formatted; dropped", r->id ? r->id : "?");
            goto done;
        }
    }
    if (evbuffer_add(q->buf, line, (size_t)n) < 0) {
        log_error("records: out of memory; record dropped");
        goto done;
    }
    q->lines++;
    if (evbuffer_get_length(q->buf) >= BATCH_BYTES)
        record_queue_flush(q);
    else if (!evtimer_pending(q->timer, NULL)) {
        struct timeval tv = {0, BATCH_MS * 1000};
        evtimer_add(q->timer, &tv);
    }
done:
    if (line != stack)
        free(line);
}

void record_queue_flush(struct record_queue *q)
{
    struct record_sink *s = q->sink;
    evtimer_del(q->timer);
    if (q->lines == 0)
        return;
    pthread_mutex_lock(&s->mu);
    evbuffer_add_buffer(s->pending, q->buf);
    s->pending_lines += q->lines;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    q->lines = 0;
}

void record_queue_free(struct record_queue *q)
{
    if (!q)
        return;
    record_queue_flush(q);
    event_free(q->timer);
    evbuffer_free(q->buf);
    free(q);
}
