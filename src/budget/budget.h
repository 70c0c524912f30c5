/* budget.h: per-tenant spend and request counters in Redis, per UTC month
 * and day, and admission against them. A request is admitted (rate limits,
 * caps, a reservation of its estimate) by lua/admit.lua and its cost is
 * settled exactly once by lua/settle.lua, which also ends the reservation.
 * Redis memory grows with tenants, days, models, features and users, never
 * with requests: no key is made per request. Keys carry the tenant in a hash
 * tag so the layout works on Redis Cluster:
 *   {prefix}{TENANT}:m:YYYY-MM      hash (expires after ~400 days), fields:
 *       cost (nano-USD), requests, input_tokens, cached_tokens, output_tokens,
 *       reasoning_tokens, estimated (requests with estimated usage; absent
 *       while 0), estimated_cost (their nano-USD), unpriced (requests
 *       recorded "priced": false), unpriced_cost (their nano-USD), reserved (nano-USD held by
 * leases in flight), capped (leases that reserved only what was left); every one an integer, only
 * ever changed by HINCRBY; the allowance (settle.lua): allowance_used (units: tokens or requests),
 * overage_units, overage_cost, overage_usd (nano-USD), and at admission allowance_reserved,
 * allowance_capped; plus w:CONN (highest tally flush counted from a connection) and j:CONN:SEQ (a
 * replayed flush), see tally.h {prefix}{TENANT}:d:YYYY-MM-DD   hash (expires after ~40 days): the
 * same counters (of the allowance only overage_units and overage_usd, the day's share of the
 * month's); w:CONN is the highest settlement sequence counted from a connection, j:CONN:SEQ
 * marks a settlement counted by a replay (one per journaled settlement, see settle.lua)
 *   {prefix}{TENANT}:m:YYYY-MM:model    hash, per model: NAME|cost,
 *       NAME|requests, NAME|input_tokens, NAME|cached_tokens,
 *       NAME|output_tokens (NAME "-" when absent; HINCRBY only)
 *   {prefix}{TENANT}:m:YYYY-MM:feature  the same per feature
 *   {prefix}{TENANT}:m:YYYY-MM:user     the same per user
 *   {prefix}{TENANT}:m:YYYY-MM:plan     hash: day of month "01".."31" -> the
 *       plan of that day's last settlement (all four expire with the month)
 *   {prefix}tenants:YYYY-MM         set of tenants settled in that month; no
 *       hash tag (it spans tenants), so it is written outside the script
 *   {prefix}{TENANT}:leases         sorted set: request id by lease expiry
 *       (unix ms), and released ids by the end of their tombstone
 *   {prefix}{TENANT}:lease          hash: request id -> "EST CAPPED TOKENS
 *       DAY MINUTE" (a lease in flight) or "released" (a tombstone); a field
 *       goes when settled, released or swept after expiry; Redis drops the
 *       hash and the zset 32 days after a quiet tenant's last admission
 *   {prefix}{TENANT}:rpm:YYYYMMDDHHMM  admitted requests in that UTC minute
 *   {prefix}{TENANT}:tpm:YYYYMMDDHHMM  their tokens (only with a tpm limit):
 *       the estimates, corrected to the actual tokens at settlement (both
 *       expire after 120 s)
 *   {prefix}{TENANT}:m:YYYY-MM:ucap  hash, the end users' caps (plans with
 *       user_budget_monthly): USER (settled nano-USD) and USER|r (reserved
 *       by leases in flight, which name the user); expires with the month
 *   {prefix}{TENANT}:urpm:USER      the user's user_rpm GCRA state
 * The tenant must not contain '{' or '}' (it would break the hash tag): the
 * functions below refuse such a tenant. */
#ifndef TOLLGATE_BUDGET_H
#define TOLLGATE_BUDGET_H

#include <stdbool.h>
#include <time.h>
#include "core/config.h"
#include "core/money.h"
#include "providers/usage.h"
#include "core/util.h"
#include "redis/redis.h"

struct redis;
struct redis_cmd;
struct tally;

struct settle {
    const char *key_prefix; /* "tollgate:" */
    const char *tenant;
    const char *request_id;
    time_t when; /* the request's start: picks the period and day */
    int anchor;  /* the tenant's billing_anchor (clock_period; 0: 1) */
    money_t cost;
    struct usage usage; /* input + output also correct the admission's tpm bucket */
    bool cache_hit;     /* answered from the response cache (cost 0) */
    money_t saved;      /* a cache hit: what the call would have cost */
    bool unpriced;      /* recorded "priced": false (a model or route without a price) */
    /* for the per-period breakdowns (report, admin API); NULL: none */
    const char *model;
    const char *feature;
    const char *user;
    const char *plan;
    /* where the settlement was sent (redis.h): seq 0 until first sent; the
     * journal keeps it, so a replay counts only what never ran */
    struct redis_stamp stamp;
    /* first sent with a tally (cost only): if its stamp ran, a replay still
     * counts the rest. The caller sets it with the tally it passes. */
    bool tallied;
    /* The plan's allowance (plan.h), counted with the cost: units this
     * request used (tokens or 1; 0: no allowance, the rest is ignored), the
     * units included in the period (-1: counted, none included), and the
     * overage terms of plan_overage_terms. */
    int64_t units, included, overage_per_mu, overage_markup_bp;
};

/* ok: settled now or counted before (a replay of a stamp that ran). Either
 * way the request's lease, if one is left, is released. */
typedef void (*budget_cb)(bool ok, const char *err, void *arg);

/* Settles s; exactly one callback unless NULL is returned (not queued: Redis
 * not connected, too many pending, or a tenant/request id that cannot form
 * a key). The callback never runs inside this call. s is copied; stamp is
 * s's stamp (in and out, see redis_eval_stamped: seq 0 sends s afresh, else
 * it is a replay), written while the command runs, so it must stay valid
 * until the callback or a cancel. With a tally only the cost is counted at
 * once (what caps read); requests, tokens and the breakdowns are added to
 * the tally when settle.lua answers that it counted s now, and reach Redis
 * with its next flush. Without one, settle.lua counts everything (replays).
 * If the caller redis_cancel()s the returned command, no callback runs and
 * nothing leaks (the settle may still happen on the server). */
struct redis_cmd *budget_settle(struct redis *r, struct tally *t, const struct settle *s,
                                struct redis_stamp *stamp, budget_cb cb, void *arg) MUST_CHECK;

/* Writes "{prefix}{tenant}:m:2026-11" (kind 'm') or
 * "{prefix}{tenant}:d:2026-11-22" (kind 'd') for the UTC month or day of
 * when into buf; for tests and the report. Returns -1 when buf is too
 * small, kind is unknown or tenant has a brace. */
int budget_key(char *buf, size_t n, const char *prefix, const char *tenant, char kind,
               time_t when) MUST_CHECK;

/* "{prefix}{tenant}:m:2026-11:SUFFIX" for a month breakdown hash, SUFFIX
 * one of BUDGET_BY_*; -1 as budget_key. */
int budget_month_key(char *buf, size_t n, const char *prefix, const char *tenant,
                     const char *suffix, time_t when) MUST_CHECK;
/* The start of the billing period of when for a tenant's anchor
 * (clock_period): the time every month key (kind 'm', month breakdowns,
 * the tenants set) of a settlement or admission is named for, so the key
 * "m:2026-11" holds the tenant's period that starts in November 2026. */
time_t budget_period(time_t when, int anchor);
/* "{prefix}tenants:2026-11": the tenants settled in the month of when. */
int budget_tenants_key(char *buf, size_t n, const char *prefix, time_t when) MUST_CHECK;

#define BUDGET_BY_MODEL "model"
#define BUDGET_BY_FEATURE "feature"
#define BUDGET_BY_USER "user"
#define BUDGET_BY_PLAN "plan"
#define BUDGET_BY_UCAP "ucap"       /* the end users' caps: USER, USER|r (admit.lua) */
#define BUDGET_NO_NAME "-"          /* breakdown name of a request without one */
#define BUDGET_MONTH_TTL_S 34560000 /* ~400 days, for year-over-year reports */

/* The hash fields, for readers of the counters (report, admin API). */
#define BUDGET_F_COST "cost"
#define BUDGET_F_REQUESTS "requests"
#define BUDGET_F_INPUT "input_tokens"
#define BUDGET_F_CACHED "cached_tokens"
#define BUDGET_F_OUTPUT "output_tokens"
#define BUDGET_F_REASONING "reasoning_tokens"
#define BUDGET_F_ESTIMATED "estimated"
#define BUDGET_F_ESTIMATED_COST "estimated_cost" /* nano-USD of the estimated requests */
#define BUDGET_F_UNPRICED "unpriced"             /* requests without a listed price */
#define BUDGET_F_UNPRICED_COST "unpriced_cost"   /* nano-USD of those */
#define BUDGET_F_CACHE_HITS "cache_hits"         /* requests answered from the response cache */
#define BUDGET_F_SAVED "saved"                   /* nano-USD those would have cost */
#define BUDGET_F_ALLOWANCE_USED "allowance_used"
#define BUDGET_F_OVERAGE_UNITS "overage_units"
#define BUDGET_F_OVERAGE_COST "overage_cost"
#define BUDGET_F_OVERAGE_USD "overage_usd"

/* ---- admission: rate limits and caps, before forwarding ----
 * One atomic script (lua/admit.lua) checks the tenant's rpm and tpm,
 * then its caps against spent + reserved + this request's estimate, and on
 * admission reserves the estimate as a lease: {prefix}{TENANT}:leases (a
 * sorted set of request ids by expiry) and a field of {prefix}{TENANT}:lease. A
 * lease whose tollgate died expires after lease_ttl and its reservation is
 * given back by the next admit; budget_settle releases the lease and adds
 * the exact cost, once. Month and day hashes gain the field "reserved". */

enum budget_decision {
    BUDGET_ADMIT,        /* under the caps: forward as asked */
    BUDGET_DOWNGRADE,    /* over the budget, under hard_limit: forward with the cheaper model */
    BUDGET_BLOCK,        /* over the cap (or hard_limit, or no downgrade): 429 */
    BUDGET_RATE_LIMITED, /* over rpm or tpm: 429 with a short Retry-After */
};

enum budget_reason {
    BUDGET_REASON_NONE,
    BUDGET_REASON_MONTHLY, /* budget_monthly reached */
    BUDGET_REASON_DAILY,   /* budget_daily reached */
    BUDGET_REASON_HARD,    /* hard_limit reached (even downgraded calls) */
    BUDGET_REASON_RPM,
    BUDGET_REASON_TPM,
    BUDGET_REASON_ALLOWANCE, /* included_tokens / included_requests used up */
    BUDGET_REASON_USER,      /* the end user's user_budget_monthly reached */
    BUDGET_REASON_USER_RPM,  /* the end user's user_rpm */
};

/* A request fits when spent + reserved + estimate <= cap, for each cap set.
 * Over budget_monthly or budget_daily with an estimate_down, it is
 * downgraded while spent + reserved + estimate_down <= hard_limit; the full
 * estimate must fit under hard_limit too. Sums are exact below 2^53 nano-USD
 * (~$9M per tenant-month, see admit.lua). tpm: a request larger than the
 * whole tpm passes when the tenant has used nothing in that minute. */
struct admit {
    const char *key_prefix;
    const char *tenant;
    const char *request_id;
    time_t when;           /* request start: period, day and minute buckets */
    int anchor;            /* the tenant's billing_anchor (clock_period; 0: 1) */
    int64_t now_ms;        /* wall clock (unix ms) for leases; 0: read it here */
    money_t estimate;      /* estimated cost as asked (below 0: taken as 0) */
    money_t estimate_down; /* estimated cost with the downgrade model; -1: no downgrade */
    money_t cap_monthly;   /* -1: none */
    money_t cap_daily;     /* -1: none */
    money_t hard_limit;    /* -1: none (downgrade is then unbounded by a hard cap) */
    int64_t rpm, tpm;      /* 0: unlimited */
    int64_t est_tokens;    /* input + output estimate, for tpm */
    int lease_ttl_s;       /* how long a reservation outlives a dead tollgate; 0: 600 */
    /* The allowance: units included in the period (-1: none), this
     * request's estimated units, and what happens past the allowance
     * (overage never refuses; block; downgrade to estimate_down). With
     * on_allowance downgrade, estimate_down is set even when on_exceed
     * blocks: caps_block then says that the dollar caps still block. */
    int64_t included, est_units;
    enum on_allowance on_allowance;
    bool caps_block;
    /* The end user (NULL or "": none) and its own caps, counted like the
     * tenant's month inside the tenant: a cap in nano-USD (-1: none),
     * reserved and settled in {prefix}{TENANT}:m:YYYY-MM:ucap, and
     * requests per minute (0: unlimited) on {prefix}{TENANT}:urpm:USER. */
    const char *user;
    money_t cap_user;
    int64_t user_rpm;
};

struct admit_result {
    enum budget_decision decision;
    enum budget_reason reason; /* NONE when admitted; the cap passed when downgraded */
    money_t spent_month;       /* settled cost this month, before this request */
    money_t reserved_month;    /* in flight this month, before this request */
    money_t spent_day;
    int retry_after_s;      /* rate limits: seconds until the request fits (rounded up);
                               blocks: seconds from when to the next UTC day (daily) or month */
    int64_t retry_after_ms; /* rate limits: the exact wait */
    /* The rate limits after this request, as OpenAI's x-ratelimit-* headers
     * say it: what is left and ms until full again; -1: no such limit. */
    int64_t requests_left, requests_reset_ms, tokens_left, tokens_reset_ms;
    int64_t allowance_used; /* units settled + in flight, before this request */
};

typedef void (*budget_admit_cb)(const struct admit_result *res, const char *err, void *arg);

/* Runs the admission script; on BUDGET_ADMIT and BUDGET_DOWNGRADE a lease
 * now holds the estimate, which budget_settle or budget_release must end
 * (else it expires after lease_ttl_s). Exactly one callback (res NULL and
 * err set on a Redis failure or an unexpected reply; res lives only during
 * the call), never inside this call, unless NULL is returned (not queued:
 * Redis not connected, too many pending, or a tenant/request id that cannot
 * form a key). a is copied. redis_cancel() of the returned command: no
 * callback, nothing leaks (the admission may still happen: its lease then
 * expires). */
struct redis_cmd *budget_admit(struct redis *r, const struct admit *a, budget_admit_cb cb,
                               void *arg) MUST_CHECK;

/* Extends the leases of requests still in flight (ids, n of them, all of
 * tenant's) to expire ttl_s from now: one ZADD XX on the tenant's leases
 * zset, so a lease already settled, released or swept is not brought back.
 * Fire and forget: a lost renewal only lets the leases expire as before.
 * Returns false when not queued. */
bool budget_renew(struct redis *r, const char *key_prefix, const char *tenant,
                  const char *const *ids, size_t n, int ttl_s);

/* Gives back the reservation of a request that was admitted but never
 * forwarded (or whose settlement is abandoned), and its tokens to the tpm
 * bucket; no request or cost is counted. Exactly one callback (ok: the
 * release ran; cb may be NULL) unless NULL is returned (not queued). The
 * release also leaves a tombstone, so an admission of the id that reaches
 * Redis later reserves nothing: retrying a release is always safe. The
 * daemon releases through ledger_release (ledger.h), which retries. */
struct redis_cmd *budget_release(struct redis *r, const char *key_prefix, const char *tenant,
                                 const char *request_id, budget_cb cb, void *arg) MUST_CHECK;

#endif
