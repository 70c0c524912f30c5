/* ledger.h: a worker's settlement bookkeeping, the one way a request's
 * reservation ends. A settlement goes to Redis (budget_settle), or to the
 * journal when Redis does not take it, and a taken one is checked against
 * the alert thresholds. A reservation that must be given back (admission
 * timed out, the request was never forwarded) is released now, or kept and
 * retried from the worker's tick once Redis answers again, so a late
 * admission cannot leave a reservation behind. Worker thread only. */
#ifndef TOLLGATE_LEDGER_H
#define TOLLGATE_LEDGER_H

#include <stddef.h>
#include <stdint.h>
#include "core/money.h"
#include "core/util.h"

struct alerter;
struct journal;
struct metrics;
struct redis;
struct settle;
struct tally;
struct ledger;

/* Releases kept for a retry at most; past it the oldest wait is dropped
 * with a log (its lease expires by itself). */
#define LEDGER_MAX_RELEASES 1024

/* r, t (may be NULL: no tally), j and m are the worker's and must outlive
 * the ledger. NULL: no memory. */
struct ledger *ledger_new(struct redis *r, struct tally *t, struct journal *j,
                          struct metrics *m) MUST_CHECK;
void ledger_free(struct ledger *l);

/* The alerter settlements are checked against (NULL: none); a reload
 * hands over a new one. Not owned. */
void ledger_set_alerter(struct ledger *l, struct alerter *a);

/* What a settlement's soft-limit alerts are decided by, once Redis took
 * it: the month's spend at admission (-1: unknown) and the monthly cap
 * (-1: none); the allowance units used at admission (-1: unknown) of the
 * included ones (s->included) and their unit ("tokens" | "requests", a
 * static string; NULL: no allowance). */
struct ledger_marks {
    money_t spent_before, cap_monthly;
    int64_t units_before;
    const char *unit;
};

/* Settles s (its strings are copied): in Redis, else journaled for replay. */
void ledger_settle(struct ledger *l, const struct settle *s, const struct ledger_marks *m);

/* Gives back the reservation of request id (strings copied): now, or from
 * ledger_tick once Redis answers again. Releasing is idempotent. */
void ledger_release(struct ledger *l, const char *key_prefix, const char *tenant, const char *id);

/* From the worker's tick: retries the releases that waited for Redis. */
void ledger_tick(struct ledger *l);

/* Settlements sent to Redis and not yet answered (the drain waits for them). */
long ledger_pending(const struct ledger *l);
/* Releases waiting for Redis. */
size_t ledger_waiting(const struct ledger *l);

#endif
