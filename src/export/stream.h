/* stream.h: [records] redis_stream: every usage record XADDed (MAXLEN ~ N)
 * to a Redis stream through the worker's Redis connection, so a consumer
 * group can read usage as it happens. While Redis is away, records wait in a
 * bounded backlog and go out when it answers again; past the bound they are
 * dropped from the stream (counted and logged; the records file keeps them). */
#ifndef TOLLGATE_STREAM_H
#define TOLLGATE_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

struct event_base;
struct metrics;
struct redis;

/* Records waiting for Redis, per worker; beyond this they are dropped. */
#define STREAM_BACKLOG_MAX 20000
/* XADDs in flight at once, per worker. */
#define STREAM_INFLIGHT_MAX 512

struct stream_export;

/* One per worker, on its loop; r and m are the worker's and outlive it. */
struct stream_export *stream_export_new(struct event_base *base, struct redis *r,
                                        struct metrics *m) MUST_CHECK;
/* Cancels what is in flight, logs what never reached Redis, frees. Before
 * redis_free. */
void stream_export_free(struct stream_export *s);
/* Queues line (len bytes, one JSON record, no newline) for XADD to key with
 * MAXLEN ~ maxlen. Copies what it keeps; never waits. */
void stream_export_push(struct stream_export *s, const char *key, int64_t maxlen, const char *line,
                        size_t len);
/* Records waiting in the backlog or in flight. */
size_t stream_export_pending(const struct stream_export *s);

#endif
