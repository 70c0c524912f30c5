/* log.c: the logging API of log.h. Each line is built in a fixed buffer on
 * the stack and written with one write(2), so lines from worker threads never
 * interleave and logging never allocates (it must work when malloc fails).
 * Long messages are cut at LINE_MAX_LEN with a "..." marker. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 2048 /* a whole line, newline included */
#define MSG_MAX_LEN 1536  /* the formatted message before escaping */

static atomic_int threshold = LOG_INFO;
static atomic_bool as_json = false;

static const char *const level_names[] = {
    [LOG_ERROR] = "error",
    [LOG_WARN] = "warn",
    [LOG_INFO] = "info",
    [LOG_DEBUG] = "debug",
};

void log_setup(enum log_level level, bool json)
{
    atomic_store(&threshold, (int)level);
    atomic_store(&as_json, json);
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load(&threshold);
}

int log_level_parse(const char *s)
{
    for (size_t i = 0; i < ARRAY_LEN(level_names); i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return (int)i;
    return -1;
}

/* A bounded writer into the line buffer: appends what fits and remembers
 * whether anything was cut. */
struct line {
    char buf[LINE_MAX_LEN];
    size_t len;
    bool cut;
};

static void put(struct line *l, const char *s, size_t n)
{
    /* keep one byte for the final '\n' */
    size_t room = sizeof(l->buf) - 1 - l->len;
    if (n > room) {
        n = room;
        l->cut = true;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* The length of s[0..len) without a UTF-8 sequence a cut left incomplete
 * at its end (a complete last character may go too; only after a cut). */
static size_t utf8_prefix(const char *s, size_t len)
{
    size_t i = len, k = 0;
    while (i > 0 && k < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
        i--;
        k++;
    }
    if (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0xc0)
        return i - 1;
    return len;
}

/* Copies s, making control bytes visible: in JSON as \uXXXX escapes (and
 * quotes and backslashes escaped), in plain text as \xNN so a message can
 * never start a forged second line. */
static void put_escaped(struct line *l, const char *s, bool json, size_t reserve)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t n = 0;
        if (json && (*p == '"' || *p == '\\')) {
            esc[n++] = '\\';
            esc[n++] = (char)*p;
        } else if (json && *p == '\n') {
            esc[n++] = '\\';
            esc[n++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            if (json) {
                memcpy(esc, "\\u00", 4);
                n = 4;
            } else {
                memcpy(esc, "\\x", 2);
                n = 2;
            }
            esc[n++] = hex[*p >> 4];
            esc[n++] = hex[*p & 15];
        } else {
            esc[n++] = (char)*p;
        }
        if (l->len + n + reserve > sizeof(l->buf) - 1) {
            l->cut = true;
            l->len = utf8_prefix(l->buf, l->len);
            return;
        }
        put(l, esc, n);
    }
}

static void put_time(struct line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (n > 0)
        put(l, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void emit(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere left to report it */
        s += w;
        n -= (size_t)w;
    }
}

void log_msg(enum log_level level, const char *reqid, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno; /* callers often log and then inspect errno */
    char msg[MSG_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    int mn = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bool cut = mn < 0 || (size_t)mn >= sizeof(msg);
    if (mn < 0)
        msg[0] = '\0';
    if (cut) /* vsnprintf may have split a UTF-8 character */
        msg[utf8_prefix(msg, strlen(msg))] = '\0';

    const char *lvl = (unsigned)level < ARRAY_LEN(level_names) ? level_names[level] : "?";
    bool json = atomic_load(&as_json);
    struct line l = {.len = 0, .cut = false};
    if (json) {
        puts_(&l, "{\"ts\":\"");
        put_time(&l);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, lvl);
        puts_(&l, "\",\"req\":");
        if (reqid) {
            puts_(&l, "\"");
            put_escaped(&l, reqid, true, 64);
            puts_(&l, "\"");
        } else {
            puts_(&l, "null");
        }
        puts_(&l, ",\"msg\":\"");
        put_escaped(&l, msg, true, 5);
        /* the closing bytes are reserved so a long message still yields
         * valid JSON */
        const char *tail = (cut || l.cut) ? "...\"}" : "\"}";
        put(&l, tail, strlen(tail));
    } else {
        put_time(&l);
        puts_(&l, " level=");
        puts_(&l, lvl);
        if (reqid) {
            puts_(&l, " [");
            put_escaped(&l, reqid, false, 64);
            puts_(&l, "]");
        }
        puts_(&l, " ");
        put_escaped(&l, msg, false, 3);
        if (cut || l.cut)
            put(&l, "...", 3);
    }
    l.buf[l.len++] = '\n';
    emit(l.buf, l.len);
    errno = saved_errno;
}
