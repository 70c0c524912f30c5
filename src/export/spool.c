/* spool.c: the on-disk FIFO of lines (spool.h). Appends go to the newest
 * segment and are fdatasync'ed before spool_append returns, so a line the
 * sink took is on disk; the cursor is written to "cursor.tmp", synced and
 * renamed over "cursor", so a crash leaves the old or the new cursor, never
 * a torn one. Lines before the cursor are never read again; lines after it
 * may be sent twice (a crash between the receiver's answer and the cursor
 * write), which the receiver's dedup by event id absorbs. */
#include "export/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define SEG_BYTES (8u << 20)   /* a segment is closed past this, deleted once read */
#define TAIL_SCAN (256u << 10) /* a torn last line is found within this */

struct spool {
    char *dir;
    int lockfd;
    uint64_t max;
    uint64_t rseq, roff;  /* the cursor */
    uint64_t wseq, wsize; /* the segment appended to */
    int wfd;              /* -1: not open */
    int rfd;              /* -1: not open */
    uint64_t rfd_seq;
    uint64_t pending;
};

static void seg_path(const struct spool *s, uint64_t seq, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%016" PRIu64 ".jsonl", s->dir, seq);
}

/* mkdir -p dir */
static int make_dir(const char *dir)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(p))
        return -1;
    memcpy(p, dir, n + 1);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -1;
        *q = '/';
    }
    return mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static int save_cursor(struct spool *s, char *err, size_t errlen)
{
    char tmp[4200], dst[4200], line[64];
    snprintf(tmp, sizeof(tmp), "%s/cursor.tmp", s->dir);
    snprintf(dst, sizeof(dst), "%s/cursor", s->dir);
    int n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", s->rseq, s->roff);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || fdatasync(fd) < 0) {
        snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (rename(tmp, dst) < 0) {
        snprintf(err, errlen, "renaming %s: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static int parse_seq(const char *name, uint64_t *seq)
{
    char *end;
    if (strlen(name) != 22 || strcmp(name + 16, ".jsonl") != 0)
        return -1;
    errno = 0;
    unsigned long long v = strtoull(name, &end, 10);
    if (errno || end != name + 16 || v == 0)
        return -1;
    *seq = v;
    return 0;
}

/* Cuts a torn last line (a crash mid-append) off segment path. */
static int drop_torn_tail(const char *path, uint64_t *size)
{
    if (*size == 0)
        return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint64_t from = *size > TAIL_SCAN ? *size - TAIL_SCAN : 0;
    size_t n = (size_t)(*size - from);
    char *buf = malloc(n);
    int rc = -1;
    if (!buf || pread(fd, buf, n, (off_t)from) != (ssize_t)n)
        goto done;
    if (buf[n - 1] != '\n') {
        size_t keep = n;
        while (keep > 0 && buf[keep - 1] != '\n')
            keep--;
        uint64_t cut = from + keep;
        log_warn("export spool: %s ends in a partial line (a crash while writing): %" PRIu64
                 " bytes cut",
                 path, *size - cut);
        if (ftruncate(fd, (off_t)cut) < 0)
            goto done;
        *size = cut;
    }
    rc = 0;
done:
    free(buf);
    close(fd);
    return rc;
}

static int load(struct spool *s, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/cursor", s->dir);
    FILE *f = fopen(path, "re");
    s->rseq = 0;
    s->roff = 0;
    if (f) {
        unsigned long long a, b;
        if (fscanf(f, "%llu %llu", &a, &b) == 2 && a > 0) {
            s->rseq = a;
            s->roff = b;
        } else {
            log_warn("export spool: %s is unreadable: starting from the oldest segment", path);
        }
        fclose(f);
    }
    DIR *d = opendir(s->dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", s->dir, strerror(errno));
        return -1;
    }
    uint64_t lo = 0, hi = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t seq;
        if (parse_seq(e->d_name, &seq) < 0)
            continue;
        if (s->rseq && seq < s->rseq) { /* read past before a crash: delete now */
            seg_path(s, seq, path, sizeof(path));
            unlink(path);
            continue;
        }
        if (!lo || seq < lo)
            lo = seq;
        if (seq > hi)
            hi = seq;
    }
    closedir(d);
    if (!s->rseq) {
        s->rseq = lo ? lo : 1;
        s->roff = 0;
    }
    s->wseq = hi > s->rseq ? hi : s->rseq;
    s->pending = 0;
    for (uint64_t seq = s->rseq; lo && seq <= hi; seq++) {
        struct stat st;
        seg_path(s, seq, path, sizeof(path));
        if (stat(path, &st) < 0)
            continue;
        uint64_t size = (uint64_t)st.st_size;
        if (seq == s->wseq && drop_torn_tail(path, &size) < 0) {
            snprintf(err, errlen, "cannot repair %s: %s", path, strerror(errno));
            return -1;
        }
        if (seq == s->wseq)
            s->wsize = size;
        if (seq == s->rseq) {
            if (s->roff > size)
                s->roff = size;
            s->pending += size - s->roff;
        } else {
            s->pending += size;
        }
    }
    if (s->wseq == s->rseq && s->roff > s->wsize)
        s->roff = s->wsize;
    return 0;
}

struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
    struct spool *s = calloc(1, sizeof(*s));
    char path[4200];
    if (!s || !(s->dir = strdup(dir))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->lockfd = s->wfd = s->rfd = -1;
    s->max = max_bytes;
    if (make_dir(dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/lock", dir);
    s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "%s: %s", path,
                 errno == EWOULDBLOCK ? "in use by another tollgate (one spool per process)"
                                      : strerror(errno));
        goto fail;
    }
    if (load(s, err, errlen) < 0)
        goto fail;
    return s;
fail:
    spool_close(s);
    return NULL;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    if (s->wfd >= 0)
        close(s->wfd);
    if (s->rfd >= 0)
        close(s->rfd);
    if (s->lockfd >= 0)
        close(s->lockfd);
    free(s->dir);
    free(s);
}

uint64_t spool_pending(const struct spool *s)
{
    return s->pending;
}

int spool_append(struct spool *s, const char *data, size_t len, char *err, size_t errlen)
{
    char path[4200];
    if (len == 0)
        return 0;
    if (s->pending + len > s->max) {
        snprintf(err, errlen, "spool full (%" PRIu64 " bytes pending, spool_max %" PRIu64 ")",
                 s->pending, s->max);
        return -1;
    }
    if (s->wfd >= 0 && s->wsize >= SEG_BYTES) { /* start a new segment */
        close(s->wfd);
        s->wfd = -1;
        s->wseq++;
        s->wsize = 0;
    }
    if (s->wfd < 0) {
        seg_path(s, s->wseq, path, sizeof(path));
        s->wfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (s->wfd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(s->wfd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            snprintf(err, errlen, "writing the spool: %s", strerror(e));
            if (ftruncate(s->wfd, (off_t)s->wsize) < 0) /* no torn line left behind */
                log_error("export spool: cannot cut a failed write back: %s", strerror(errno));
            return -1;
        }
        done += (size_t)w;
    }
    if (fdatasync(s->wfd) < 0) {
        int e = errno;
        snprintf(err, errlen, "syncing the spool: %s", strerror(e));
        if (ftruncate(s->wfd, (off_t)s->wsize) < 0)
            log_error("export spool: cannot cut a failed write back: %s", strerror(errno));
        return -1;
    }
    s->wsize += len;
    s->pending += len;
    return 0;
}

/* Size of segment seq as far as it is known. */
static uint64_t seg_size(struct spool *s, uint64_t seq)
{
    if (seq == s->wseq)
        return s->wsize;
    struct stat st;
    if (s->rfd >= 0 && s->rfd_seq == seq && fstat(s->rfd, &st) == 0)
        return (uint64_t)st.st_size;
    char path[4200];
    seg_path(s, seq, path, sizeof(path));
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Past the end of a finished segment: delete it and move to the next. */
static void advance(struct spool *s)
{
    char path[4200], err[256];
    while (s->rseq < s->wseq && s->roff >= seg_size(s, s->rseq)) {
        if (s->rfd >= 0 && s->rfd_seq == s->rseq) {
            close(s->rfd);
            s->rfd = -1;
        }
        seg_path(s, s->rseq, path, sizeof(path));
        s->rseq++;
        s->roff = 0;
        if (save_cursor(s, err, sizeof(err)) < 0)
            log_error("export spool: %s", err);
        unlink(path); /* after the cursor moved past it */
    }
}

long spool_peek(struct spool *s, char *buf, size_t max, char *err, size_t errlen)
{
    advance(s);
    uint64_t size = seg_size(s, s->rseq);
    if (s->roff >= size)
        return 0;
    if (s->rfd < 0 || s->rfd_seq != s->rseq) {
        char path[4200];
        if (s->rfd >= 0)
            close(s->rfd);
        seg_path(s, s->rseq, path, sizeof(path));
        s->rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->rfd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        s->rfd_seq = s->rseq;
    }
    size_t want = size - s->roff < max ? (size_t)(size - s->roff) : max;
    ssize_t r = pread(s->rfd, buf, want, (off_t)s->roff);
    if (r < 0) {
        snprintf(err, errlen, "reading the spool: %s", strerror(errno));
        return -1;
    }
    size_t n = (size_t)r;
    while (n > 0 && buf[n - 1] != '\n')
        n--;
    if (n == 0) {
        snprintf(err, errlen, "a spooled line is longer than %zu bytes", max);
        return -1;
    }
    return (long)n;
}

int spool_ack(struct spool *s, size_t n, char *err, size_t errlen)
{
    s->roff += n;
    s->pending = s->pending >= n ? s->pending - n : 0;
    int rc = save_cursor(s, err, errlen);
    advance(s);
    return rc;
}
