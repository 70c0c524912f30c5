/* usage_event.h: the body of POST /admin/api/usage (usage that did not pass
 * through the proxy), parsed with jansson and checked: one event (a JSON
 * object), a JSON array of them, or NDJSON (one object per line). Every
 * event is checked before anything is counted, so a batch is taken whole or
 * refused whole, naming the first bad event's index and why. No I/O: ids
 * and tenants only Redis knows are checked by usage_api.c. */
#ifndef TOLLGATE_USAGE_EVENT_H
#define TOLLGATE_USAGE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/money.h"
#include "core/util.h"
#include "providers/usage.h"
#include "proxy/trust.h"

struct config;

#define USAGE_MAX_EVENTS 1000                      /* per request; more: refused */
#define USAGE_MAX_TOKENS 1000000000000LL           /* per count of one event */
#define USAGE_MAX_COST (1000000LL * MONEY_PER_USD) /* cost_usd of one event */
#define USAGE_MODEL_MAX 129
#define USAGE_PROVIDER_MAX 32
#define USAGE_FINGERPRINT_LEN 64 /* hex SHA-256 */

struct usage_event {
    char id[TRUST_ID_MAX];
    char tenant[TRUST_ID_MAX];
    char user[TRUST_ID_MAX];                     /* "": none */
    char feature[TRUST_ID_MAX];                  /* "": none */
    char model[USAGE_MODEL_MAX];                 /* "": none (cost_usd alone) */
    char provider[USAGE_PROVIDER_MAX];           /* the price list's, "": unknown */
    struct usage usage;                          /* seen: always; estimated: never */
    money_t cost;                                /* cost_usd, or the model's list price */
    bool cost_given;                             /* cost_usd was sent */
    bool tenant_configured;                      /* [tenant] or tenant_pattern (trust.h) */
    char fingerprint[USAGE_FINGERPRINT_LEN + 1]; /* the caller's numbers, hashed */
};

/* Parses body[0..len) against cfg (tenants, the price list). On success
 * returns 0 with *out (malloc'd, the caller frees) and *n >= 1 events. On
 * failure returns -1 with err naming the reason and *bad the index of the
 * offending event (SIZE_MAX when the body as a whole is wrong: not JSON,
 * empty, too many events). Two events with the same id are refused unless
 * their numbers are the same (the second is then a duplicate the caller
 * counts once). An event's tenant outside the config is accepted here with
 * tenant_configured false: the caller decides whether it is known. */
int usage_events_parse(const char *body, size_t len, const struct config *cfg,
                       struct usage_event **out, size_t *n, size_t *bad, char *err,
                       size_t errlen) MUST_CHECK;

#endif
