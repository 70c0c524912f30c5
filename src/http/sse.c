/* sse.c: the Server-Sent Events parser declared in sse.h. Bytes go through a
 * small state machine (current line, current event, a pending CR) so any split
 * of the input gives the same events; every buffer is bounded by max_event and
 * an event that passes the bound is skipped to its blank line, not grown. */
#include "http/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sse_init(struct sse_parser *p, size_t max_event, bool keep_raw)
{
    memset(p, 0, sizeof(*p));
    p->max_event = max_event;
    p->keep_raw = keep_raw;
}

void sse_free(struct sse_parser *p)
{
    free(p->line);
    free(p->data);
    free(p->raw);
    memset(p, 0, sizeof(*p));
}

void sse_set_skip_raw(struct sse_parser *p, void (*fn)(const char *raw, size_t len, void *arg))
{
    p->skip_raw = fn;
}

/* Makes room for need bytes plus a NUL. Callers keep need <= max, so a
 * buffer never grows past max + 1. */
static int grow(char **buf, size_t *cap, size_t need, size_t max)
{
    if (need + 1 <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need + 1)
        n *= 2;
    if (max < SIZE_MAX && n > max + 1)
        n = max + 1;
    char *b = realloc(*buf, n);
    if (!b)
        return -1;
    *buf = b;
    *cap = n;
    return 0;
}

/* Forgets the current event; the partial line is not part of it. */
static void reset_event(struct sse_parser *p)
{
    p->data_len = 0;
    p->event_len = 0;
    p->event[0] = '\0';
    p->has_data = false;
    p->raw_len = 0;
    p->raw_lead = 0;
    p->overflow = false;
}

/* The current event passed max_event: drop what is held (handing held raw
 * bytes on so the caller can still forward them) and skip to its blank line. */
static void start_overflow(struct sse_parser *p, void *arg)
{
    if (p->keep_raw && p->skip_raw && p->raw_len)
        p->skip_raw(p->raw, p->raw_len, arg);
    p->raw_len = 0;
    p->raw_lead = 0;
    p->data_len = 0;
    p->has_data = false;
    p->overflow = true;
    /* While skipping, line_len only says "the line is not empty". */
    p->line_len = p->line_len ? 1 : 0;
}

static int add_raw(struct sse_parser *p, const char *b, size_t n, void *arg)
{
    if (!p->keep_raw || n == 0)
        return 0;
    if (!p->overflow && n > p->max_event - p->raw_len)
        start_overflow(p, arg);
    if (p->overflow) {
        if (p->skip_raw)
            p->skip_raw(b, n, arg);
        return 0;
    }
    if (grow(&p->raw, &p->raw_cap, p->raw_len + n, p->max_event) < 0)
        return -1;
    memcpy(p->raw + p->raw_len, b, n);
    p->raw_len += n;
    return 0;
}

/* Line and data together stay within max_event, so the event's data can
 * always be completed from the line without passing the bound twice. */
static int add_line(struct sse_parser *p, const char *b, size_t n, void *arg)
{
    if (n == 0)
        return 0;
    if (!p->overflow && p->line_len + n > p->max_event - p->data_len)
        start_overflow(p, arg);
    if (p->overflow) {
        p->line_len = 1;
        return 0;
    }
    if (grow(&p->line, &p->line_cap, p->line_len + n, p->max_event) < 0)
        return -1;
    memcpy(p->line + p->line_len, b, n);
    p->line_len += n;
    return 0;
}

static void dispatch(struct sse_parser *p, sse_event_cb cb, void *arg)
{
    if (p->overflow) {
        p->overflows++;
        reset_event(p);
        return;
    }
    if (!p->has_data) {
        /* No data: per the SSE spec nothing is dispatched and the event name
         * is forgotten; held raw bytes (comments, blank lines) stay for the
         * next event so that they are forwarded with it. */
        p->event_len = 0;
        p->event[0] = '\0';
        return;
    }
    if (p->data)
        p->data[p->data_len] = '\0';
    struct sse_event ev = {
        .event = p->event,
        .event_len = p->event_len,
        .data = p->data ? p->data : "",
        .data_len = p->data_len,
        .raw = p->keep_raw ? p->raw : NULL,
        .raw_len = p->keep_raw ? p->raw_len : 0,
        .raw_lead = p->keep_raw ? p->raw_lead : 0,
    };
    cb(&ev, arg);
    reset_event(p);
}

/* One complete, non-empty line of the current event. */
static int field(struct sse_parser *p, const char *line, size_t n, void *arg)
{
    if (line[0] == ':')
        return 0; /* comment or keep-alive */
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = colon ? n - name_len - 1 : 0;
    if (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        size_t sep = p->has_data ? 1 : 0;
        if (vlen + sep > p->max_event - p->data_len) {
            start_overflow(p, arg);
            return 0;
        }
        if (grow(&p->data, &p->data_cap, p->data_len + sep + vlen, p->max_event) < 0)
            return -1;
        if (sep)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, v, vlen);
        p->data_len += vlen;
        p->has_data = true;
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        /* Names longer than the buffer are cut: no provider uses one. */
        size_t k = vlen < sizeof(p->event) - 1 ? vlen : sizeof(p->event) - 1;
        memcpy(p->event, v, k);
        p->event[k] = '\0';
        p->event_len = k;
    }
    /* id:, retry: and unknown fields are ignored. */
    return 0;
}

static int end_line(struct sse_parser *p, sse_event_cb cb, void *arg)
{
    if (p->line_len == 0) {
        dispatch(p, cb, arg);
        return 0;
    }
    size_t n = p->line_len;
    p->line_len = 0;
    if (p->overflow)
        return 0;
    return field(p, p->line, n, arg);
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_cb cb, void *arg)
{
    size_t i = 0;
    while (i < len) {
        char c = buf[i];
        if (p->saw_cr) {
            p->saw_cr = false;
            if (c == '\n') {
                /* The LF of a CRLF split across feeds: the line already ended.
                 * If that line ended an event, this byte leads the next raw. */
                bool lead = p->keep_raw && !p->overflow && p->raw_len == 0;
                if (add_raw(p, buf + i, 1, arg) < 0)
                    return -1;
                if (lead && p->raw_len == 1)
                    p->raw_lead = 1;
                i++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            size_t n = 1;
            if (c == '\r') {
                if (i + 1 < len && buf[i + 1] == '\n')
                    n = 2;
                else
                    p->saw_cr = true;
            }
            if (add_raw(p, buf + i, n, arg) < 0)
                return -1;
            i += n;
            if (end_line(p, cb, arg) < 0)
                return -1;
            continue;
        }
        size_t j = i + 1;
        while (j < len && buf[j] != '\r' && buf[j] != '\n')
            j++;
        if (add_raw(p, buf + i, j - i, arg) < 0 || add_line(p, buf + i, j - i, arg) < 0)
            return -1;
        i = j;
    }
    return 0;
}

bool sse_finish(struct sse_parser *p, void (*raw_cb)(const char *raw, size_t len, void *arg),
                void *arg)
{
    bool partial = p->line_len > 0 || p->has_data || p->event_len > 0 || p->overflow;
    if (p->keep_raw && p->raw_len && raw_cb)
        raw_cb(p->raw, p->raw_len, arg);
    p->line_len = 0;
    p->saw_cr = false;
    reset_event(p);
    return partial;
}
