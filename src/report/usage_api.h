/* usage_api.h: POST /admin/api/usage once the body is parsed
 * (usage_event.h). Each id is claimed in Redis before anything is counted:
 * {prefix}usage:ID holds the event's fingerprint for USAGE_ID_TTL_S, so a
 * retry within that window counts nothing twice and the same id with other
 * numbers is refused (409), while Redis memory stays bounded by the events
 * of one window, not by every event ever sent. The claim runs on the admin
 * API's job thread (blocking, its own connection); the events it claimed are
 * then counted on a worker exactly as a proxied request's finish counts:
 * the ledger's settlement (caps, the soft-limit alerts, the tally behind
 * the report), the record, the exports, the metrics.
 *
 * One gap is stated, not hidden: an id claimed by a process that dies before
 * its worker handed the settlement to Redis or the journal is not counted,
 * and a retry of it is taken as a duplicate. */
#ifndef TOLLGATE_USAGE_API_H
#define TOLLGATE_USAGE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "core/money.h"
#include "core/util.h"

struct config;
struct redis_sync;
struct usage_event;
struct worker;

#define USAGE_ID_TTL_S (7 * 86400) /* how long an id is remembered: retries within a week */
#define USAGE_API_ENDPOINT "/admin/api/usage" /* the records' "endpoint" of reported usage */

struct usage_batch {
    struct config *cfg;     /* a ref: the snapshot the events were checked against */
    struct timespec when;   /* when the API took them: their month and day, the records' ts */
    struct usage_event *ev; /* owned */
    size_t n;
    bool *fresh;           /* per event: claimed now, to be counted (false: a duplicate) */
    money_t *spent_before; /* per event: its tenant's month spend before it (alerts) */
    /* the answer: 200, 400 (bad is the event's index), 409 (the same), 503 */
    int status;
    size_t bad;
    char err[256];
};

/* A batch of the n events ev (ownership taken, also on failure: NULL). */
struct usage_batch *usage_batch_new(struct config *cfg, struct usage_event *ev,
                                    size_t n) MUST_CHECK;
void usage_batch_free(struct usage_batch *b);

/* On a job thread: decides b->status. Tenants outside the config must have
 * usage this month or last (tenant_policy open) or are unknown (400); an id
 * known with other numbers is 409 and nothing is claimed; then every new id
 * is claimed. Only a claim that loses a race with another request for the
 * same id can leave a 409 beside claimed events (they are counted). */
void usage_api_claim(struct redis_sync *rc, struct usage_batch *b);

/* Events b claimed (fresh). */
size_t usage_api_fresh(const struct usage_batch *b);

/* The JSON answer for b->status (malloc'd; NULL: no memory). */
char *usage_api_answer(const struct usage_batch *b);

/* Hands b's fresh events to worker w, which counts them on its own thread
 * and frees b; false (b not taken) only when out of memory. */
bool usage_api_count(struct worker *w, struct usage_batch *b) MUST_CHECK;

#endif
