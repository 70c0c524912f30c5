/* budget.h: per-tenant spend and request counters in Redis, per UTC month
 * and day. A request's cost is settled exactly once (idempotent by request
 * id) by one Lua script (src/lua/settle.lua). Keys carry the tenant in a
 * hash tag so the layout works on Redis Cluster:
 *   {prefix}{TENANT}:m:YYYY-MM      hash (expires after ~400 days), fields:
 *       cost (nano-USD), requests, input_tokens, cached_tokens, output_tokens,
 *       reasoning_tokens, estimated (requests with estimated usage; absent
 *       while 0); every field an integer, only ever changed by HINCRBY
 *   {prefix}{TENANT}:d:YYYY-MM-DD   hash (expires after ~40 days): same fields
 *   {prefix}{TENANT}:settled:ID     "1", expires after 8 days
 * The tenant must not contain '{' or '}' (it would break the hash tag): the
 * functions below refuse such a tenant. */
#ifndef TOLLGATE_BUDGET_H
#define TOLLGATE_BUDGET_H

#include <stdbool.h>
#include <time.h>
#include "money.h"
#include "usage.h"
#include "util.h"

struct redis;
struct redis_cmd;

struct settle {
    const char *key_prefix; /* "tollgate:" */
    const char *tenant;
    const char *request_id;
    time_t when; /* the request's start: picks the month and day */
    money_t cost;
    struct usage usage;
};

/* ok: settled now or already settled before (duplicate). */
typedef void (*budget_cb)(bool ok, const char *err, void *arg);

/* Settles s; exactly one callback unless NULL is returned (not queued: Redis
 * not connected, too many pending, or a tenant/request id that cannot form
 * a key). The callback never runs inside this call. s is copied. If the
 * caller redis_cancel()s the returned command, no callback runs and nothing
 * leaks (the settle may still happen on the server). */
struct redis_cmd *budget_settle(struct redis *r, const struct settle *s, budget_cb cb,
                                void *arg) MUST_CHECK;

/* Writes "{prefix}{tenant}:m:2026-11" (kind 'm') or
 * "{prefix}{tenant}:d:2026-11-22" (kind 'd') for the UTC month or day of
 * when into buf; for tests and the report. Returns -1 when buf is too
 * small, kind is unknown or tenant has a brace. */
int budget_key(char *buf, size_t n, const char *prefix, const char *tenant, char kind,
               time_t when) MUST_CHECK;

/* The hash fields, for readers of the counters (report, admin API). */
#define BUDGET_F_COST "cost"
#define BUDGET_F_REQUESTS "requests"
#define BUDGET_F_INPUT "input_tokens"
#define BUDGET_F_CACHED "cached_tokens"
#define BUDGET_F_OUTPUT "output_tokens"
#define BUDGET_F_REASONING "reasoning_tokens"
#define BUDGET_F_ESTIMATED "estimated"

#endif
