/* tally.h: the counters caps never read (requests and tokens per month and
 * day, the per-model, feature, user and plan breakdowns), summed per tenant
 * in the worker and sent as one script per tenant and month each tick
 * (lua/flush.lua), so a request costs Redis only what its caps need:
 * settle.lua counts the cost at once, the tally the rest within a second.
 *
 * A flush counts exactly once: it is stamped like a settlement (redis.h,
 * redis_stamp) and the month hash keeps w:CONN, the highest flush counted
 * from a connection; one that failed without an answer is sent again as a
 * replay of its stamp, which counts only if it never ran (and then marks
 * j:CONN:SEQ). Until Redis answers, a flush is kept and retried from the
 * tick. What is still unsent when the process ends (its drain deadline
 * passed with Redis away) is lost and logged: the breakdowns of at most
 * that last stretch; costs and caps never go through here. One per worker,
 * on its loop: no locks. */
#ifndef TOLLGATE_TALLY_H
#define TOLLGATE_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct event_base;
struct redis;
struct settle;
struct tally;

#define TALLY_TICK_MS 1000      /* how long sums wait before they are sent */
#define TALLY_MAX_ENTRIES 65536 /* distinct (key, field) sums held; more: sent at once */
#define TALLY_MAX_FLIGHTS 4096  /* flushes unanswered or waiting to be sent again */

/* A tally sending to r (which must outlive it) from a timer on base. */
struct tally *tally_new(struct event_base *base, struct redis *r) MUST_CHECK;
/* Adds s's requests, tokens and breakdowns (settle.lua counted its cost).
 * Dropped, with an error log, only when TALLY_MAX_ENTRIES sums and
 * TALLY_MAX_FLIGHTS flushes are all waiting on a Redis that does not answer. */
void tally_add(struct tally *t, const struct settle *s);
/* Sends every sum now and retries what waits (the worker's drain). */
void tally_flush(struct tally *t);
/* Sums and flushes not yet acknowledged by Redis (0: nothing to lose). */
size_t tally_pending(const struct tally *t);
/* Frees t; what is still pending is logged as lost. Callbacks of commands
 * still in flight are cancelled. */
void tally_free(struct tally *t);

#endif
