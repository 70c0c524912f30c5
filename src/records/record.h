/* record.h: one JSON line per request ([records] file), never any prompt or
 * completion text. Workers format a line and queue it on their own batch; a
 * writer thread appends batches to the file, so the event loop never waits
 * on the disk and the request path takes no lock. */
#ifndef TOLLGATE_RECORD_H
#define TOLLGATE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "core/money.h"
#include "core/outcome.h"
#include "providers/usage.h"
#include "core/util.h"

struct event_base;

struct record {
    struct timespec ts; /* request start, UTC */
    const char *id;
    const char *tenant;
    const char *user;    /* NULL: null */
    const char *feature; /* NULL: null */
    const char *plan;
    const char *provider;
    const char *upstream; /* the [upstream NAME] that served it; NULL: null (not routed) */
    const char *endpoint;
    const char *model_requested; /* NULL: null */
    const char *model;           /* NULL: null */
    bool downgraded;
    bool stream;
    int status;
    enum outcome outcome;
    struct usage usage; /* usage.estimated -> "estimated"; units/unit -> "units", "unit"
                           (null when the endpoint is priced in tokens only) */
    money_t cost;
    bool priced;
    bool cache_hit; /* answered from the response cache: cost 0 */
    money_t saved;  /* a cache hit: what the call would have cost */
    double latency_ms;
    double ttfb_ms; /* < 0: null */
};

/* Formats r as one JSON object and a '\n'. Strings are escaped (control
 * bytes, quotes, invalid UTF-8 replaced) and NUL-terminated. Returns the
 * length (without the NUL), or -1 if n is too small. */
int record_format(const struct record *r, char *buf, size_t n) MUST_CHECK;

struct record_sink;  /* the file and its writer thread; one per process */
struct record_queue; /* one per worker */

/* Rotation done by the writer itself ([records] rotate, keep): past
 * max_bytes, or at the first record of a new UTC day, path becomes path.1
 * (path.1 path.2, ..., up to path.keep) and a new path is started. */
struct record_rotation {
    size_t max_bytes; /* 0: not by size */
    bool daily;
    int keep; /* >= 1 */
};

/* Opens path for appending (creating it and its directory), or standard
 * output for "-", and starts the writer thread; rot may be NULL (never
 * rotate). NULL with err filled on failure. */
struct record_sink *record_sink_open(const char *path, const struct record_rotation *rot, char *err,
                                     size_t errlen) MUST_CHECK;
/* Any thread: the writer opens path again before its next write (the file
 * was renamed by logrotate; SIGUSR1 and SIGHUP). A no-op for "-". */
void record_sink_reopen(struct record_sink *s);
/* Writes what is queued, stops the thread, closes the file. Free (or
 * flush) every queue first: lines still in a queue are not seen. */
void record_sink_close(struct record_sink *s);
/* Lines written, and lines that could not be written (disk errors; the
 * error is logged). Any thread. */
unsigned long record_sink_written(struct record_sink *s);
unsigned long record_sink_failed(struct record_sink *s);
struct record_sink_stats {
    unsigned long written, failed, rotations;
    bool failing; /* the last write failed (disk full): records are being lost */
};
/* All counters at once, consistent with each other. Any thread. */
void record_sink_stats(struct record_sink *s, struct record_sink_stats *out);

/* A worker's batch: flushed to the sink every 20 ms or at 64 KiB. Used only
 * from the thread running base. */
struct record_queue *record_queue_new(struct record_sink *s, struct event_base *base) MUST_CHECK;
/* Formats r (record_format) and queues the line; r is not kept. A record
 * too long to format (over 128 KiB) is dropped with an error logged. */
void record_queue_push(struct record_queue *q, const struct record *r);
/* Hands the batch over now (shutdown). */
void record_queue_flush(struct record_queue *q);
/* Flushes, then frees; before record_sink_close. */
void record_queue_free(struct record_queue *q);

#endif
