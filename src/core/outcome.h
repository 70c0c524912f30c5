/* outcome.h: how a request ended, as the record's "outcome" field and the
 * tollgate_requests_total label name it (product contract). One enum, one
 * spelling of each name. */
#ifndef TOLLGATE_OUTCOME_H
#define TOLLGATE_OUTCOME_H

enum outcome {
    OUTCOME_OK,             /* answered by the upstream (any 2xx/3xx) */
    OUTCOME_BLOCKED,        /* over a budget cap: 429 */
    OUTCOME_RATE_LIMITED,   /* over rpm or tpm: 429 */
    OUTCOME_UPSTREAM_ERROR, /* the upstream failed, answered >= 400, or cut the stream */
    OUTCOME_CLIENT_ABORTED, /* the client left first */
    OUTCOME_BAD_REQUEST,    /* refused by tollgate before forwarding */
    OUTCOME_DRAIN_CUT,      /* still open at drain_timeout: cut by tollgate's stop */
    OUTCOME__COUNT
};

/* The contract's name of o ("ok", "blocked", ...). */
static inline const char *outcome_name(enum outcome o)
{
    static const char *const names[OUTCOME__COUNT] = {
        [OUTCOME_OK] = "ok",
        [OUTCOME_BLOCKED] = "blocked",
        [OUTCOME_RATE_LIMITED] = "rate_limited",
        [OUTCOME_UPSTREAM_ERROR] = "upstream_error",
        [OUTCOME_CLIENT_ABORTED] = "client_aborted",
        [OUTCOME_BAD_REQUEST] = "bad_request",
        [OUTCOME_DRAIN_CUT] = "drain_cut",
    };
    return (unsigned)o < OUTCOME__COUNT ? names[o] : "ok";
}

#endif
