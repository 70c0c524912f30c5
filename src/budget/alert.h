/* alert.h: soft-limit alerts. When a settlement carries a tenant's monthly
 * spend across one of [alerts] thresholds (percent of its monthly cap), or
 * its allowance use across one of them (percent of its included units), or
 * an admission blocks or downgrades it (once a month), the
 * alert is logged at warn and POSTed as Slack-compatible JSON to [alerts]
 * webhook, once per tenant, threshold and UTC month across every tollgate
 * process and restart: the first to
 *   SET {prefix}{TENANT}:alert:YYYY-MM:T 1 NX EX 3456000
 * sends; if Redis cannot answer, the alert is sent anyway (a duplicate beats
 * a silent miss). Everything after alerter_check is asynchronous on the
 * worker's loop, so no request ever waits for an alert. One alerter per
 * worker. */
#ifndef TOLLGATE_ALERT_H
#define TOLLGATE_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "core/money.h"
#include "core/util.h"

struct event_base;
struct evdns_base;
struct config;
struct redis;
struct alerter;

/* Alerts alive at once (deduping, sending or waiting to retry); beyond
 * this, new ones are dropped with a log. */
#define ALERT_QUEUE_MAX 1000
/* Delivery attempts of one alert, and the waits between them (ms). */
#define ALERT_ATTEMPTS 4
#define ALERT_BACKOFF_MS 1000, 4000, 16000

/* Copies from cfg what it needs (webhook, thresholds, key_prefix): a reload
 * that changes them takes a new alerter. cfg->webhook NULL: alerts are only
 * logged. r (the worker's connection, may be NULL) dedupes; it must outlive
 * the alerter. Returns NULL and writes err when the webhook's TLS context
 * cannot be built. */
struct alerter *alerter_new(struct event_base *base, struct evdns_base *dns,
                            const struct config *cfg, struct redis *r, char *err,
                            size_t errlen) MUST_CHECK;

/* Call after a settlement moved tenant's month spend from spent_before to
 * spent_after (nano-USD), with its monthly cap (<= 0: none, nothing to do)
 * and the request's start (picks the month). Fires one alert per threshold
 * t with spent_before < t% of cap <= spent_after. Never blocks; the strings
 * are copied. plan may be NULL. */
void alerter_check(struct alerter *a, const char *tenant, const char *plan, money_t spent_before,
                   money_t spent_after, money_t cap_monthly, time_t when);

/* The same for the plan's allowance: units used (tokens or requests, as
 * unit says) moved from before to after, of included (<= 0: nothing to
 * do). Deduped apart from the budget's ({...}:alert:YYYY-MM:aT). */
void alerter_check_allowance(struct alerter *a, const char *tenant, const char *plan,
                             int64_t before, int64_t after, int64_t included, const char *unit,
                             time_t when);

/* The tenant was just blocked (or downgraded) by why ("monthly budget",
 * "included tokens", ...): one event per tenant, kind and UTC month
 * ({...}:alert:YYYY-MM:blocked | downgraded), whichever cap did it.
 * Without a webhook it is only logged, once a month per worker, and leaves
 * no key in Redis. */
void alerter_standing(struct alerter *a, const char *tenant, const char *plan, bool blocked,
                      const char *why, time_t when);

/* Counters for metrics and tests. */
struct alerter_stats {
    unsigned long fired;     /* thresholds crossed here and won (or Redis down) */
    unsigned long deduped;   /* crossed, but another process (or restart) had sent it */
    unsigned long delivered; /* webhook answered 2xx */
    unsigned long failed;    /* gave up after ALERT_ATTEMPTS */
    unsigned long dropped;   /* queue full */
    size_t pending;          /* alive now */
};
void alerter_stats(const struct alerter *a, struct alerter_stats *out);

/* Cancels pending Redis commands, sends and retries (no log for them) and
 * frees. Call before redis_free. NULL is fine. */
void alerter_free(struct alerter *a);

#endif
