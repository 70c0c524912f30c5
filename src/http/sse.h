/* sse.h: a Server-Sent Events parser that does no I/O. It is fed the bytes
 * of a response body in pieces of any size, keeps its partial line and event
 * in its own bounded buffers, and calls back once per complete event. Line
 * ends may be \n, \r\n or \r, split anywhere; ':' lines are comments. */
#ifndef TOLLGATE_SSE_H
#define TOLLGATE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct sse_event {
    const char *event; /* the event: field, "" if none */
    size_t event_len;
    const char *data; /* data: lines joined with '\n' (no trailing '\n') */
    size_t data_len;
    const char *raw; /* the event's bytes as received, blank line included;
                        only with keep_raw, else NULL */
    size_t raw_len;
    size_t raw_lead; /* 0 or 1: raw starts with the LF of a CRLF whose CR ended
                        the previous event at the end of a feed; these bytes
                        belong to the previous event: forward them only if
                        that event was forwarded */
};

/* Called once per event; the event's memory lives only during the call. */
typedef void (*sse_event_cb)(const struct sse_event *ev, void *arg);

struct sse_parser {
    char *line; /* current partial line */
    size_t line_len, line_cap;
    char *data; /* data of the current event */
    size_t data_len, data_cap;
    char *raw; /* raw bytes of the current event (keep_raw) */
    size_t raw_len, raw_cap;
    char event[64];
    size_t event_len;
    size_t max_event; /* bound on line, data and raw buffers */
    bool keep_raw;
    bool saw_cr;      /* last byte was '\r': a following '\n' belongs to it */
    bool has_data;    /* a data: field was seen in the current event */
    bool overflow;    /* the current event passed max_event: skipped */
    size_t overflows; /* events skipped for size */
    size_t raw_lead;  /* see struct sse_event */
    void (*skip_raw)(const char *raw, size_t len, void *arg); /* see sse_set_skip_raw */
};

/* max_event bounds the memory the parser may hold (e.g. 1 MiB). */
void sse_init(struct sse_parser *p, size_t max_event, bool keep_raw);
void sse_free(struct sse_parser *p);

/* Feeds len bytes. Returns 0, or -1 when out of memory. An event over
 * max_event is skipped (counted in overflows) and never delivered. */
int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_cb cb,
             void *arg) MUST_CHECK;

/* keep_raw only: the bytes of an event skipped for size (and those held before
 * it) are handed to fn, with sse_feed's arg, as they arrive, so they can still
 * be forwarded. Then raw of the events + these bytes + sse_finish's bytes
 * reproduce the input exactly, in order. Without it they are discarded. */
void sse_set_skip_raw(struct sse_parser *p, void (*fn)(const char *raw, size_t len, void *arg));

/* At end of body: true if a partial event (or line) was pending, which means
 * the stream was cut inside an event. Pending bytes are discarded; with
 * keep_raw they are first handed to raw_cb (may be NULL) so they can still
 * be forwarded. The parser is then empty and may take a new stream. */
bool sse_finish(struct sse_parser *p, void (*raw_cb)(const char *raw, size_t len, void *arg),
                void *arg);

/* Note on raw: when a CR ends an event's blank line and the next byte is in
 * the same feed, a following LF is part of that event's raw. When the CR is the
 * last byte of a feed the event is delivered at once (no waiting for input) and
 * the LF, if it comes, starts the next raw (raw_lead = 1). The same holds for
 * the bytes sse_finish hands back: if they start with '\n' and the last event
 * ended with '\r', that LF is the event's (harmless to forward either way: a
 * lone blank line dispatches nothing). */

#endif
