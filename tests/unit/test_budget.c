/* test_budget.c: budget admission (admit.lua), settlement and release of its
 * leases (settle.lua, release.lua) through budget.c, against a real
 * redis-server started on a free 127.0.0.1 port in a temp dir (killed at
 * exit, and by the kernel if this process dies first; the helpers are
 * redis_server.h's). Every test uses its own tenant, so counters start at
 * zero; time is pinned through admit.now_ms except where expiry is real.
 * The race tests queue 200 admissions before any reply, on one connection
 * and on four connections in four threads, and print the measured
 * overspend. Every wait is bounded. */
#include "budget/budget.h"
#include "core/clock.h"
#include "core/log.h"
#include "redis/redis.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check.h"
#include "redis_server.h"

#define TIMEOUT_MS 3000 /* per command: generous for ASan builds */
#define PREFIX "tollgate:"
#define WHEN 1795348800                       /* 2026-11-22 12:00:00 UTC */
#define NOW_MS ((int64_t)WHEN * 1000 + 15000) /* 12:00:15 */
#define TO_MONTH_END (1796083200 - WHEN)      /* to 2026-12-01 00:00 */
#define TO_DAY_END (12 * 3600)

static char url[64];
static char run_id[64]; /* unique per run: every tenant starts at zero */

static struct redis *connect_new(struct event_base *base)
{
    char err[256];
    struct redis *r = redis_new(base, url, NULL, TIMEOUT_MS, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "  redis_new: %s\n", err);
        return NULL;
    }
    if (!wait_for(base, is_connected, r, 3000))
        fprintf(stderr, "  not connected after 3 s\n");
    return r;
}

/* ---- plain commands ----------------------------------------------------- */

struct result {
    int calls;
    int type;
    long long integer;
    char str[128];
    char err[128];
};

static void on_result(struct redisReply *reply, const char *err, void *arg)
{
    struct result *res = arg;
    res->calls++;
    if (err) {
        snprintf(res->err, sizeof(res->err), "%s", err);
        return;
    }
    res->type = reply->type;
    res->integer = reply->integer;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)
        snprintf(res->str, sizeof(res->str), "%.*s", (int)reply->len, reply->str);
}

static int done_one(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

/* Runs a command of up to 4 words and waits for its reply. */
static void run(struct event_base *base, struct redis *r, struct result *res, const char *a0,
                const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {a0, a1, a2, a3};
    int argc = a3 ? 4 : a2 ? 3 : a1 ? 2 : 1;
    memset(res, 0, sizeof(*res));
    struct redis_cmd *c = redis_command(r, on_result, res, argc, argv, NULL);
    CHECK(c != NULL);
    if (c)
        wait_for(base, done_one, res, 5000);
    CHECK_INT(res->calls, 1);
}

/* An integer field, string or counter; missing: 0. */
static long long hget(struct event_base *base, struct redis *r, const char *key, const char *f)
{
    struct result res;
    run(base, r, &res, f ? "HGET" : "GET", key, f, NULL);
    CHECK_STR(res.err, "");
    return res.type == REDIS_REPLY_STRING ? strtoll(res.str, NULL, 10) : 0;
}

/* What a GCRA key (admit.lua) holds at NOW_MS: how far its TAT is ahead of
 * now, in requests (or tokens) of 60 s / limit each; 0 when it is not. */
static long long rate_used(struct event_base *b, struct redis *r, const char *key, long long limit)
{
    double ahead = (double)hget(b, r, key, NULL) - (double)NOW_MS * 1000;
    return ahead <= 0 ? 0 : llround(ahead / (60e6 / (double)limit));
}
#define TPM_DEFAULT 1000000000 /* admit_of's */

static long long integer(struct event_base *base, struct redis *r, const char *cmd, const char *key)
{
    struct result res;
    run(base, r, &res, cmd, key, NULL, NULL);
    CHECK_INT(res.type, REDIS_REPLY_INTEGER);
    return res.integer;
}

/* ---- keys of a tenant --------------------------------------------------- */

struct keys {
    char tenant[96];
    char month[160], day[160], leases[160], rpm[160], tpm[160];
};

/* The minute keys are spelled out here, independently of budget.c. */
static void keys_for(struct keys *k, const char *name, time_t when)
{
    struct tm tm;
    gmtime_r(&when, &tm);
    snprintf(k->tenant, sizeof(k->tenant), "%s-%s", run_id, name);
    CHECK_INT(budget_key(k->month, sizeof(k->month), PREFIX, k->tenant, 'm', when), 0);
    CHECK_INT(budget_key(k->day, sizeof(k->day), PREFIX, k->tenant, 'd', when), 0);
    snprintf(k->leases, sizeof(k->leases), PREFIX "{%s}:leases", k->tenant);
    snprintf(k->rpm, sizeof(k->rpm), PREFIX "{%s}:rpm", k->tenant);
    snprintf(k->tpm, sizeof(k->tpm), PREFIX "{%s}:tpm", k->tenant);
}

/* A lease: the tenant's lease hash, '\0', the request id (its field). */
static void lease_key(char *buf, size_t n, const struct keys *k, const char *id)
{
    int len = snprintf(buf, n, PREFIX "{%s}:lease", k->tenant);
    snprintf(buf + len + 1, n - (size_t)len - 1, "%s", id);
}

static const char *lease_id(const char *lk)
{
    return lk + strlen(lk) + 1;
}

/* The nano-USD a lease reserves (its value's first word); 0 when none. */
static long long lease_est(struct event_base *base, struct redis *r, const char *lk)
{
    return hget(base, r, lk, lease_id(lk));
}

static long long lease_exists(struct event_base *base, struct redis *r, const char *lk)
{
    struct result res;
    run(base, r, &res, "HEXISTS", lk, lease_id(lk), NULL);
    CHECK_INT(res.type, REDIS_REPLY_INTEGER);
    return res.integer;
}

/* Entries of the leases zset (leases and tombstones), without the store's
 * keep-alive member at +inf. */
static long long leases_held(struct event_base *base, struct redis *r, const struct keys *k)
{
    struct result res;
    const char *argv[] = {"ZCOUNT", k->leases, "-inf", "(+inf"};
    memset(&res, 0, sizeof(res));
    struct redis_cmd *c = redis_command(r, on_result, &res, 4, argv, NULL);
    CHECK(c != NULL);
    if (c)
        wait_for(base, done_one, &res, 5000);
    CHECK_INT(res.type, REDIS_REPLY_INTEGER);
    return res.integer;
}

/* ---- admit and settle, waited for ---------------------------------------- */

struct admitted {
    int calls;
    bool ok;
    struct admit_result res;
    char err[128];
};

static void on_admitted(const struct admit_result *res, const char *err, void *arg)
{
    struct admitted *a = arg;
    a->calls++;
    a->ok = res != NULL;
    if (res)
        a->res = *res;
    snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
    if (!res != !!err)
        snprintf(a->err, sizeof(a->err), "BUG: res and err");
}

static int admitted_done(void *arg)
{
    return ((struct admitted *)arg)->calls > 0;
}

/* An admission with no limits, pinned to WHEN / NOW_MS; tests change fields. */
static struct admit admit_of(const struct keys *k, const char *id, money_t est)
{
    return (struct admit){
        .key_prefix = PREFIX,
        .tenant = k->tenant,
        .request_id = id,
        .when = WHEN,
        .now_ms = NOW_MS,
        .estimate = est,
        .estimate_down = -1,
        .cap_monthly = -1,
        .cap_daily = -1,
        .hard_limit = -1,
        .tpm = 1000000000, /* counted, never binding: the bucket is checked */
        .est_tokens = 100,
    };
}

static struct admitted admit_wait(struct event_base *base, struct redis *r, const struct admit *a)
{
    struct admitted out = {0};
    struct admit copy = *a;
    struct redis_cmd *c = budget_admit(r, &copy, on_admitted, &out);
    memset(&copy, 0xa5, sizeof(copy)); /* budget_admit copied what it needs */
    CHECK(c != NULL);
    CHECK_INT(out.calls, 0); /* never from inside the call */
    if (c)
        wait_for(base, admitted_done, &out, 5000);
    CHECK_INT(out.calls, 1);
    if (!out.ok)
        fprintf(stderr, "  admit %s: %s\n", a->request_id, out.err);
    return out;
}

struct settled {
    int calls;
    bool ok;
    char err[128];
};

static void on_settled(bool ok, const char *err, void *arg)
{
    struct settled *s = arg;
    s->calls++;
    s->ok = ok;
    snprintf(s->err, sizeof(s->err), "%s", err ? err : "");
}

static int settled_done(void *arg)
{
    return ((struct settled *)arg)->calls > 0;
}

/* Settles (everything at once: no tally) and returns the stamp it was
 * sent with; with a stamp given (seq != 0) the settle is a replay of it. */
static struct redis_stamp settle_stamped(struct event_base *base, struct redis *r,
                                         const struct keys *k, const char *id, money_t cost,
                                         int64_t input, int64_t output, struct redis_stamp st)
{
    struct settle s = {.key_prefix = PREFIX,
                       .tenant = k->tenant,
                       .request_id = id,
                       .when = WHEN,
                       .cost = cost,
                       .usage = {.input = input, .output = output, .seen = true}};
    struct settled res = {0};
    struct redis_cmd *c = budget_settle(r, NULL, &s, &st, on_settled, &res);
    CHECK(c != NULL);
    if (c)
        wait_for(base, settled_done, &res, 5000);
    CHECK_INT(res.calls, 1);
    CHECK(res.ok);
    CHECK(st.seq > 0);
    return st;
}

static struct redis_stamp settle_wait(struct event_base *base, struct redis *r,
                                      const struct keys *k, const char *id, money_t cost,
                                      int64_t input, int64_t output)
{
    return settle_stamped(base, r, k, id, cost, input, output, (struct redis_stamp){{0}, 0});
}

/* One event loop and connection per test. */
struct env {
    struct event_base *base;
    struct redis *r;
};

static bool env_open(struct env *e)
{
    e->base = event_base_new();
    e->r = e->base ? connect_new(e->base) : NULL;
    CHECK(e->r && redis_connected(e->r));
    return e->r && redis_connected(e->r);
}

static void env_close(struct env *e)
{
    redis_free(e->r);
    if (e->base)
        event_base_free(e->base);
}

/* ---- caps, table-driven --------------------------------------------------- */

static const struct cap_case {
    const char *name;
    money_t spent_m, spent_d; /* seeded "cost" (0: the field is missing) */
    money_t held;             /* reserved by an earlier admission still in flight */
    money_t est, down, cap_m, cap_d, hard;
    enum budget_decision want;
    enum budget_reason why;
    money_t reserved_after; /* the month's "reserved" afterwards */
} caps[] = {
    {"under_cap", 0, 0, 0, 100, -1, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 100},
    {"no_caps", 5000000000000, 0, 0, 100, -1, -1, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 100},
    {"exactly_cap", 900, 0, 0, 100, -1, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 100},
    /* an estimate is an upper bound: with money left it goes ahead,
     * reserving only what is left; with nothing left it blocks */
    {"monthly_left_less", 901, 0, 0, 100, -1, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 99},
    {"monthly_left_1", 999, 0, 0, 100, -1, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 1},
    {"monthly_full", 1000, 0, 0, 100, -1, 1000, -1, -1, BUDGET_BLOCK, BUDGET_REASON_MONTHLY, 0},
    {"monthly_over", 1001, 0, 0, 100, -1, 1000, -1, -1, BUDGET_BLOCK, BUDGET_REASON_MONTHLY, 0},
    {"in_flight_fits", 400, 0, 500, 100, -1, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 600},
    {"in_flight_left_less", 401, 0, 500, 100, -1, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE,
     599},
    {"in_flight_full", 500, 0, 500, 100, -1, 1000, -1, -1, BUDGET_BLOCK, BUDGET_REASON_MONTHLY,
     500},
    {"zero_cap", 0, 0, 0, 1, -1, 0, -1, -1, BUDGET_BLOCK, BUDGET_REASON_MONTHLY, 0},
    {"daily_left_less", 500, 450, 0, 100, -1, 1000, 500, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 50},
    {"daily_full", 500, 500, 0, 100, -1, 1000, 500, -1, BUDGET_BLOCK, BUDGET_REASON_DAILY, 0},
    {"daily_fits", 500, 400, 0, 100, -1, 1000, 500, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 100},
    /* the smallest room left of monthly, daily and hard is reserved */
    {"min_of_caps_daily", 920, 470, 0, 100, -1, 1000, 500, 2000, BUDGET_ADMIT, BUDGET_REASON_NONE,
     30},
    {"min_of_caps_hard", 900, 0, 0, 100, -1, 1000, -1, 960, BUDGET_ADMIT, BUDGET_REASON_NONE, 60},
    {"hard_only_left_less", 1950, 0, 0, 100, 10, -1, -1, 2000, BUDGET_ADMIT, BUDGET_REASON_NONE,
     50},
    {"hard_only_full", 2000, 0, 0, 100, 10, -1, -1, 2000, BUDGET_BLOCK, BUDGET_REASON_HARD, 0},
    /* money left under the cap admits, even with a mapping: no downgrade */
    {"left_not_downgraded", 950, 0, 0, 100, 10, 1000, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 50},
    {"daily_left_not_downgraded", 500, 450, 0, 100, 10, 1000, 500, -1, BUDGET_ADMIT,
     BUDGET_REASON_NONE, 50},
    {"daily_downgrade", 500, 500, 0, 100, 10, 1000, 500, -1, BUDGET_DOWNGRADE, BUDGET_REASON_DAILY,
     10},
    {"downgrade", 1000, 0, 0, 100, 10, 1000, -1, -1, BUDGET_DOWNGRADE, BUDGET_REASON_MONTHLY, 10},
    {"downgrade_hard_ok", 1000, 0, 0, 100, 10, 1000, -1, 2000, BUDGET_DOWNGRADE,
     BUDGET_REASON_MONTHLY, 10},
    {"downgrade_hard_exact", 1990, 0, 0, 100, 10, 1000, -1, 2000, BUDGET_DOWNGRADE,
     BUDGET_REASON_MONTHLY, 10},
    /* the downgrade too reserves only what is left under hard_limit */
    {"downgrade_hard_left_less", 1991, 0, 0, 100, 10, 1000, -1, 2000, BUDGET_DOWNGRADE,
     BUDGET_REASON_MONTHLY, 9},
    {"hard_blocks_downgrade", 2000, 0, 0, 100, 10, 1000, -1, 2000, BUDGET_BLOCK, BUDGET_REASON_HARD,
     0},
    {"hard_in_flight_left_less", 1000, 0, 991, 100, 10, 1000, -1, 2000, BUDGET_DOWNGRADE,
     BUDGET_REASON_MONTHLY, 1000},
    {"hard_counts_in_flight", 1000, 0, 1000, 100, 10, 1000, -1, 2000, BUDGET_BLOCK,
     BUDGET_REASON_HARD, 1000},
    {"no_mapping_left_less", 950, 0, 0, 100, -1, 1000, -1, 2000, BUDGET_ADMIT, BUDGET_REASON_NONE,
     50},
    {"no_mapping", 1000, 0, 0, 100, -1, 1000, -1, 2000, BUDGET_BLOCK, BUDGET_REASON_MONTHLY, 0},
    /* sums stay exact up to 2^53 nano-USD (~$9M) */
    {"near_2e53_fits", 8999999999999900, 0, 0, 100, -1, 9000000000000000, -1, -1, BUDGET_ADMIT,
     BUDGET_REASON_NONE, 100},
    {"near_2e53_left_less", 8999999999999901, 0, 0, 100, -1, 9000000000000000, -1, -1, BUDGET_ADMIT,
     BUDGET_REASON_NONE, 99},
    {"near_2e53_full", 9000000000000000, 0, 0, 100, -1, 9000000000000000, -1, -1, BUDGET_BLOCK,
     BUDGET_REASON_MONTHLY, 0},
};

static void test_caps(void)
{
    struct env e = {0};
    if (!env_open(&e))
        goto done;
    for (size_t i = 0; i < ARRAY_LEN(caps); i++) {
        const struct cap_case *c = &caps[i];
        struct keys k;
        struct result res;
        char num[32];
        int failed_before = check_failed_now;
        check_failed_now = 0;
        keys_for(&k, c->name, WHEN);
        if (c->spent_m) {
            snprintf(num, sizeof(num), "%" PRId64, c->spent_m);
            run(e.base, e.r, &res, "HSET", k.month, "cost", num);
        }
        if (c->spent_d) {
            snprintf(num, sizeof(num), "%" PRId64, c->spent_d);
            run(e.base, e.r, &res, "HSET", k.day, "cost", num);
        }
        if (c->held) {
            struct admit h = admit_of(&k, "held", c->held);
            CHECK_INT(admit_wait(e.base, e.r, &h).res.decision, BUDGET_ADMIT);
        }
        struct admit a = admit_of(&k, "req", c->est);
        a.estimate_down = c->down;
        a.cap_monthly = c->cap_m;
        a.cap_daily = c->cap_d;
        a.hard_limit = c->hard;
        struct admitted got = admit_wait(e.base, e.r, &a);
        CHECK(got.ok);
        CHECK_INT(got.res.decision, c->want);
        CHECK_INT(got.res.reason, c->why);
        CHECK_INT(got.res.spent_month, c->spent_m);
        CHECK_INT(got.res.spent_day, c->spent_d);
        CHECK_INT(got.res.reserved_month, c->held);
        CHECK_INT(hget(e.base, e.r, k.month, "reserved"), c->reserved_after);
        CHECK_INT(hget(e.base, e.r, k.day, "reserved"), c->reserved_after);
        bool holds = c->want == BUDGET_ADMIT || c->want == BUDGET_DOWNGRADE;
        CHECK_INT(leases_held(e.base, e.r, &k), (c->held ? 1 : 0) + holds);
        /* the request's lease holds exactly what it reserved */
        char lk[200];
        lease_key(lk, sizeof(lk), &k, "req");
        CHECK_INT(lease_exists(e.base, e.r, lk), holds);
        CHECK_INT(lease_est(e.base, e.r, lk), holds ? c->reserved_after - c->held : 0);
        if (holds)
            CHECK(c->reserved_after - c->held <= (c->want == BUDGET_DOWNGRADE ? c->down : c->est));
        else
            CHECK_INT(c->reserved_after, c->held);
        /* a block counts nothing against the rate limits; Retry-After is the period's end */
        CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT) > 0, (c->held ? 1 : 0) + holds > 0);
        if (c->want == BUDGET_BLOCK)
            CHECK_INT(got.res.retry_after_s,
                      c->why == BUDGET_REASON_DAILY ? TO_DAY_END : TO_MONTH_END);
        else
            CHECK_INT(got.res.retry_after_s, 0);
        if (check_failed_now)
            fprintf(stderr, "  ^ case %s\n", c->name);
        check_failed_now |= failed_before;
    }
done:
    env_close(&e);
}

/* ---- rate limits -------------------------------------------------------- */

static void test_rpm(void)
{
    struct env e = {0};
    struct keys k;
    if (!env_open(&e))
        goto done;
    keys_for(&k, "rpm", WHEN);
    const char *ids[] = {"r1", "r2", "r3"};
    for (int i = 0; i < 3; i++) {
        struct admit a = admit_of(&k, ids[i], 100);
        a.rpm = 2;
        a.cap_monthly = 1000000;
        struct admitted got = admit_wait(e.base, e.r, &a);
        CHECK_INT(got.res.decision, i < 2 ? BUDGET_ADMIT : BUDGET_RATE_LIMITED);
        CHECK_INT(got.res.reason, i < 2 ? BUDGET_REASON_NONE : BUDGET_REASON_RPM);
        /* the state OpenAI's x-ratelimit-* headers tell: r1 leaves 1, r2 none */
        if (i < 2) {
            CHECK_INT(got.res.requests_left, 1 - i);
            CHECK_INT(got.res.requests_reset_ms, 30000 * (i + 1));
        }
        if (i == 2) { /* GCRA: a burst of 2, then one every 30 s: the wait is exact */
            CHECK_INT(got.res.retry_after_ms, 30000);
            CHECK_INT(got.res.retry_after_s, 30);
        }
    }
    /* the limited one reserved nothing and was not counted */
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 200);
    CHECK_INT(rate_used(e.base, e.r, k.rpm, 2), 2);
    CHECK(integer(e.base, e.r, "PTTL", k.rpm) > 0);
    CHECK(integer(e.base, e.r, "PTTL", k.rpm) <= 61000);
    /* smooth: one slot frees every 30 s, not at the next minute */
    struct admit next = admit_of(&k, "r4", 100);
    next.rpm = 2;
    next.now_ms = NOW_MS + 29000;
    struct admitted early = admit_wait(e.base, e.r, &next);
    CHECK_INT(early.res.decision, BUDGET_RATE_LIMITED);
    CHECK_INT(early.res.retry_after_ms, 1000);
    next.now_ms = NOW_MS + 30000;
    CHECK_INT(admit_wait(e.base, e.r, &next).res.decision, BUDGET_ADMIT);
    next.request_id = "r5";
    next.now_ms = NOW_MS + 31000;
    CHECK_INT(admit_wait(e.base, e.r, &next).res.decision, BUDGET_RATE_LIMITED);

    /* the wall clock: retry_after is within a minute */
    struct keys w;
    time_t t = time(NULL);
    keys_for(&w, "rpm-wall", t);
    for (int i = 0; i < 3; i++) {
        struct admit a = admit_of(&w, ids[i], 100);
        a.rpm = 2;
        a.when = t;
        a.now_ms = 0;
        struct admitted got = admit_wait(e.base, e.r, &a);
        if (i < 2)
            continue;
        CHECK_INT(got.res.decision, BUDGET_RATE_LIMITED);
        CHECK(got.res.retry_after_s >= 1 && got.res.retry_after_s <= 60);
    }
done:
    env_close(&e);
}

static void test_tpm(void)
{
    struct env e = {0};
    struct keys k, big;
    if (!env_open(&e))
        goto done;
    keys_for(&k, "tpm", WHEN);
    static const struct {
        const char *id;
        int64_t tokens;
        enum budget_decision want;
    } steps[] = {
        {"t1", 600, BUDGET_ADMIT},
        {"t2", 600, BUDGET_RATE_LIMITED}, /* 1200 > 1000 */
        {"t3", 400, BUDGET_ADMIT},        /* exactly 1000 */
        {"t4", 1, BUDGET_RATE_LIMITED},
    };
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        struct admit a = admit_of(&k, steps[i].id, 100);
        a.tpm = 1000;
        a.est_tokens = steps[i].tokens;
        struct admitted got = admit_wait(e.base, e.r, &a);
        CHECK_INT(got.res.decision, steps[i].want);
        if (steps[i].want == BUDGET_RATE_LIMITED)
            CHECK_INT(got.res.reason, BUDGET_REASON_TPM);
    }
    CHECK_INT(rate_used(e.base, e.r, k.tpm, 1000), 1000);
    /* settling t1 with fewer tokens than estimated makes room at once */
    settle_wait(e.base, e.r, &k, "t1", 50, 300, 100);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, 1000), 800);
    struct admit a = admit_of(&k, "t5", 100);
    a.tpm = 1000;
    a.est_tokens = 200;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);

    /* a single request larger than tpm passes into an empty bucket, then
     * the bucket is full for as long as it takes to drain (5 minutes) */
    keys_for(&big, "tpm-big", WHEN);
    struct admit b = admit_of(&big, "b1", 100);
    b.tpm = 1000;
    b.est_tokens = 5000;
    CHECK_INT(admit_wait(e.base, e.r, &b).res.decision, BUDGET_ADMIT);
    b.request_id = "b2";
    b.est_tokens = 1;
    struct admitted got = admit_wait(e.base, e.r, &b);
    CHECK_INT(got.res.decision, BUDGET_RATE_LIMITED);
    CHECK_INT(got.res.reason, BUDGET_REASON_TPM);
done:
    env_close(&e);
}

/* ---- leases --------------------------------------------------------------- */

static void test_lease_expiry(void)
{
    struct env e = {0};
    struct keys k;
    char lk[200];
    if (!env_open(&e))
        goto done;
    /* real time: a 1 s lease, 1.2 s later */
    keys_for(&k, "expiry", WHEN);
    struct admit a = admit_of(&k, "dead", 100);
    a.now_ms = 0;
    a.lease_ttl_s = 1;
    a.cap_monthly = 1000;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 100);
    wait_for(e.base, NULL, NULL, 1200);
    struct admit b = admit_of(&k, "next", 50);
    b.now_ms = 0;
    b.cap_monthly = 1000;
    struct admitted got = admit_wait(e.base, e.r, &b);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.reserved_month, 0); /* the dead one's reservation came back first */
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 50);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 50);
    lease_key(lk, sizeof(lk), &k, "dead");
    CHECK_INT(lease_exists(e.base, e.r, lk), 0);
    CHECK_INT(leases_held(e.base, e.r, &k), 1);
    /* the lease outlives its ttl in Redis, so only a purge forgets it */
    lease_key(lk, sizeof(lk), &k, "next");
    CHECK(integer(e.base, e.r, "PTTL", lk) > 600 * 1000);

    /* pinned time: an unexpired lease stays counted, an expired one not */
    keys_for(&k, "expiry-pinned", WHEN);
    a = admit_of(&k, "p1", 700);
    a.lease_ttl_s = 10;
    a.cap_monthly = 1000;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    /* 1 ms before p1 expires it still counts: p2 gets only the 300 left,
     * and then nothing is left for p3 */
    b = admit_of(&k, "p2", 700);
    b.cap_monthly = 1000;
    b.now_ms = NOW_MS + 9999;
    got = admit_wait(e.base, e.r, &b);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.reason, BUDGET_REASON_NONE);
    CHECK_INT(got.res.reserved_month, 700);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 1000);
    lease_key(lk, sizeof(lk), &k, "p2");
    CHECK_INT(lease_est(e.base, e.r, lk), 300);
    struct admit c = admit_of(&k, "p3", 1);
    c.cap_monthly = 1000;
    c.now_ms = NOW_MS + 9999;
    got = admit_wait(e.base, e.r, &c);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_MONTHLY);
    CHECK_INT(got.res.reserved_month, 1000);
    CHECK_INT(got.res.retry_after_s, TO_MONTH_END);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 1000);
    CHECK_INT(leases_held(e.base, e.r, &k), 2);
    lease_key(lk, sizeof(lk), &k, "p3");
    CHECK_INT(lease_exists(e.base, e.r, lk), 0);
    /* at its expiry p1 is purged, and p2 admitted again gives back its 300
     * first: the whole 700 fits */
    b.now_ms = NOW_MS + 10000;
    got = admit_wait(e.base, e.r, &b);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.reserved_month, 0);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 700);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 700);
    lease_key(lk, sizeof(lk), &k, "p2");
    CHECK_INT(lease_est(e.base, e.r, lk), 700);
    lease_key(lk, sizeof(lk), &k, "p1");
    CHECK_INT(lease_exists(e.base, e.r, lk), 0);
    /* the same id admitted twice holds one reservation */
    b.now_ms = NOW_MS + 10001;
    CHECK_INT(admit_wait(e.base, e.r, &b).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 700);
    CHECK_INT(leases_held(e.base, e.r, &k), 1);
done:
    env_close(&e);
}

static void test_settle_releases(void)
{
    struct env e = {0};
    struct keys k;
    char lk[200];
    if (!env_open(&e))
        goto done;
    keys_for(&k, "settle", WHEN);
    struct admit a = admit_of(&k, "s1", 1000);
    a.est_tokens = 600;
    a.cap_monthly = 100000;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    lease_key(lk, sizeof(lk), &k, "s1");
    CHECK_INT(lease_exists(e.base, e.r, lk), 1);
    struct redis_stamp first = settle_wait(e.base, e.r, &k, "s1", 1234, 300, 150);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 1234);
    CHECK_INT(hget(e.base, e.r, k.day, "cost"), 1234);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 450); /* estimate 600 → actual 450 */
    CHECK_INT(lease_exists(e.base, e.r, lk), 0);
    CHECK_INT(leases_held(e.base, e.r, &k), 0);

    /* a replay of what ran (a journaled settlement whose first sending did
     * reach Redis) counts nothing and leaves no lease */
    settle_stamped(e.base, e.r, &k, "s1", 1234, 300, 150, first);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 1234);
    CHECK_INT(hget(e.base, e.r, k.month, "requests"), 1);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 450);

    /* a lease left behind (here: the same id admitted again) goes with a
     * duplicate settle, its reservation given back, nothing counted twice */
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 1000);
    settle_stamped(e.base, e.r, &k, "s1", 1234, 300, 150, first);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 1234);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 900); /* 450 + 600 - 150 */
    CHECK_INT(lease_exists(e.base, e.r, lk), 0);
    CHECK_INT(leases_held(e.base, e.r, &k), 0);

    /* more tokens than estimated fill the bucket; never below 0 either way */
    a.request_id = "s2";
    a.est_tokens = 100;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 1000);
    settle_wait(e.base, e.r, &k, "s2", 10, 1000, 100);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 2000);
    struct result res;
    a.request_id = "s3";
    a.est_tokens = 100;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    run(e.base, e.r, &res, "SET", k.tpm, "5", "KEEPTTL"); /* e.g. another tollgate's doing */
    settle_wait(e.base, e.r, &k, "s3", 10, 0, 0);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 1254);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);

    /* a lease that reserved only what was left gives back exactly that, and
     * the actual cost is counted in full: the overspend is the estimate's */
    a.request_id = "s4";
    a.cap_monthly = 1254 + 300;
    struct admitted got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.spent_month, 1254);
    lease_key(lk, sizeof(lk), &k, "s4");
    CHECK_INT(lease_est(e.base, e.r, lk), 300);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 300);
    settle_wait(e.base, e.r, &k, "s4", 900, 10, 10);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 2154);
    a.request_id = "s5";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_MONTHLY);
done:
    env_close(&e);
}

/* Settlements near INT64_MAX (absurd but well-formed costs and counts, as
 * a request with max_tokens near INT64_MAX billed on its estimate brings):
 * the counters saturate at INT64_MAX, every other counter, the lease and
 * the stamp's marker stay consistent; a counter that holds no integer fails
 * the settlement before anything is written. */
#define I64_MAX_S "9223372036854775807"
static void test_settle_saturates(void)
{
    struct env e = {0};
    struct keys k;
    struct result res;
    char lk[200];
    if (!env_open(&e))
        goto done;
    keys_for(&k, "saturate", WHEN);
    run(e.base, e.r, &res, "HSET", k.month, "cost", "9223372036854774807"); /* MAX - 1000 */
    run(e.base, e.r, &res, "HSET", k.day, "cost", "9223372036854774807");
    run(e.base, e.r, &res, "HSET", k.month, "output_tokens", "9223372036854775800");
    const money_t big = 9000000000000000; /* $9M: one absurd request's cost */
    const char *ids[] = {"x1", "x2"};
    for (size_t i = 0; i < 2; i++) {
        struct admit a = admit_of(&k, ids[i], big);
        a.est_tokens = INT64_MAX;   /* the tpm TAT stays a sane number */
        a.tpm = i == 0 ? a.tpm : 0; /* the first filled the bucket for centuries */
        CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    }
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 2 * big);
    long long tat = hget(e.base, e.r, k.tpm, NULL);
    CHECK(tat > NOW_MS * 1000LL && tat <= 9007199254740992LL);
    struct redis_stamp st[2];
    for (size_t i = 0; i < 2; i++) {
        st[i] = settle_wait(e.base, e.r, &k, ids[i], big, 10, INT64_MAX);
        CHECK_INT(hget(e.base, e.r, k.month, "cost"), INT64_MAX);
        CHECK_INT(hget(e.base, e.r, k.day, "cost"), INT64_MAX);
        CHECK_INT(hget(e.base, e.r, k.month, "output_tokens"), INT64_MAX);
        CHECK_INT(hget(e.base, e.r, k.day, "output_tokens"), INT64_MAX);
        CHECK_INT(hget(e.base, e.r, k.month, "requests"), (long long)i + 1);
        CHECK_INT(hget(e.base, e.r, k.month, "input_tokens"), 10 * ((long long)i + 1));
        CHECK_INT(hget(e.base, e.r, k.month, "reserved"), (1 - (long long)i) * big);
        CHECK_INT(hget(e.base, e.r, k.day, "reserved"), (1 - (long long)i) * big);
        lease_key(lk, sizeof(lk), &k, ids[i]);
        CHECK_INT(lease_exists(e.base, e.r, lk), 0);
    }
    CHECK_INT(leases_held(e.base, e.r, &k), 0);
    tat = hget(e.base, e.r, k.tpm, NULL);
    CHECK(tat >= 0 && tat <= 9007199254740992LL);
    /* the stamps' markers were written with the counters: replays count nothing */
    for (size_t i = 0; i < 2; i++)
        settle_stamped(e.base, e.r, &k, ids[i], big, 10, INT64_MAX, st[i]);
    CHECK_INT(hget(e.base, e.r, k.month, "requests"), 2);
    CHECK_INT(hget(e.base, e.r, k.month, "input_tokens"), 20);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), INT64_MAX);

    /* "reserved" near INT64_MAX: the lease takes only what still fits and
     * gives back exactly that */
    keys_for(&k, "saturate-reserved", WHEN);
    run(e.base, e.r, &res, "HSET", k.month, "reserved", "9223372036854775797"); /* MAX - 10 */
    struct admit a = admit_of(&k, "r1", 100);
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    lease_key(lk, sizeof(lk), &k, "r1");
    CHECK_INT(lease_est(e.base, e.r, lk), 10);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), INT64_MAX);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 10);
    settle_wait(e.base, e.r, &k, "r1", 50, 1, 1);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), INT64_MAX - 10);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 50);

    /* a counter that holds no integer: the settlement fails with nothing
     * written (lease kept, no counter, no marker), which is what an error
     * reply promises (redis.h: the stamp is reset, "send afresh"); once the
     * value is repaired the settlement counts once */
    keys_for(&k, "saturate-bad", WHEN);
    run(e.base, e.r, &res, "HSET", k.day, "output_tokens", "lots");
    a = admit_of(&k, "b1", 700);
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    struct settle s = {.key_prefix = PREFIX,
                       .tenant = k.tenant,
                       .request_id = "b1",
                       .when = WHEN,
                       .cost = 500,
                       .usage = {.input = 1, .output = 2, .seen = true}};
    struct settled sd = {0};
    struct redis_stamp bst = {{0}, 0};
    CHECK(budget_settle(e.r, NULL, &s, &bst, on_settled, &sd) != NULL);
    wait_for(e.base, settled_done, &sd, 5000);
    CHECK_INT(sd.calls, 1);
    CHECK(!sd.ok);
    CHECK(strstr(sd.err, "not an integer") != NULL);
    lease_key(lk, sizeof(lk), &k, "b1");
    CHECK_INT(lease_exists(e.base, e.r, lk), 1);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 700);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "requests"), 0);
    CHECK_INT(integer(e.base, e.r, "HLEN", k.day), 2); /* reserved and the bad field */
    CHECK(bst.seq == 0);
    run(e.base, e.r, &res, "HSET", k.day, "output_tokens", "0");
    bst = settle_wait(e.base, e.r, &k, "b1", 500, 1, 2);
    settle_stamped(e.base, e.r, &k, "b1", 500, 1, 2, bst);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 500);
    CHECK_INT(hget(e.base, e.r, k.day, "output_tokens"), 2);
    CHECK_INT(hget(e.base, e.r, k.month, "requests"), 1);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);
    CHECK_INT(lease_exists(e.base, e.r, lk), 0);
done:
    env_close(&e);
}

struct poll_field {
    struct event_base *base;
    struct redis *r;
    const char *key;
    long long want;
    struct result res;
    bool asked;
};

static void on_polled(struct redisReply *reply, const char *err, void *arg)
{
    struct poll_field *p = arg;
    on_result(reply, err, &p->res);
    p->asked = false;
}

/* Whether month "reserved" reached want; asks again when not. */
static int reserved_is(void *arg)
{
    struct poll_field *p = arg;
    if (p->res.calls && !p->asked && p->res.type == REDIS_REPLY_STRING &&
        strtoll(p->res.str, NULL, 10) == p->want)
        return 1;
    if (!p->asked) {
        const char *argv[] = {"HGET", p->key, "reserved"};
        memset(&p->res, 0, sizeof(p->res));
        p->asked = redis_command(p->r, on_polled, p, 3, argv, NULL) != NULL;
    }
    return 0;
}

static void test_release(void)
{
    struct env e = {0};
    struct keys k;
    char lk[200];
    if (!env_open(&e))
        goto done;
    keys_for(&k, "release", WHEN);
    struct admit a = admit_of(&k, "x1", 5000);
    a.est_tokens = 700;
    a.cap_monthly = 6000;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    /* x2 gets the 1000 left, x3 nothing */
    a.request_id = "x2";
    struct admitted got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.reserved_month, 5000);
    lease_key(lk, sizeof(lk), &k, "x2");
    CHECK_INT(lease_est(e.base, e.r, lk), 1000);
    a.request_id = "x3";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_MONTHLY);
    CHECK_INT(got.res.reserved_month, 6000);
    CHECK_INT(got.res.retry_after_s, TO_MONTH_END);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 6000);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 1400);
    CHECK(budget_release(e.r, PREFIX, k.tenant, "x1", NULL, NULL));
    struct poll_field p = {e.base, e.r, k.month, 1000, {0}, false};
    CHECK(wait_for(e.base, reserved_is, &p, 5000));
    wait_for(e.base, NULL, NULL, 20); /* an outstanding poll, if any */
    lease_key(lk, sizeof(lk), &k, "x1");
    /* what is left of the lease is a tombstone that stops a late admit */
    CHECK_INT(lease_est(e.base, e.r, lk), 0);
    struct result tomb;
    run(e.base, e.r, &tomb, "HGET", lk, lease_id(lk), NULL);
    CHECK_STR(tomb.str, "released");
    CHECK_INT(leases_held(e.base, e.r, &k), 2); /* x2, x1's tombstone */
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 1000);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 700);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "requests"), 0);
    /* an admission of x1 arriving after its release reserves nothing */
    a.request_id = "x1";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 1000);
    a.request_id = "x3";
    /* the room is back: x3 now fits whole; a second release is harmless */
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.reserved_month, 1000);
    lease_key(lk, sizeof(lk), &k, "x3");
    CHECK_INT(lease_est(e.base, e.r, lk), 5000);
    CHECK(budget_release(e.r, PREFIX, k.tenant, "x1", NULL, NULL));
    CHECK(budget_release(e.r, PREFIX, k.tenant, "x9", NULL, NULL));      /* no such lease */
    CHECK(!budget_release(e.r, PREFIX, "bad{tenant", "x1", NULL, NULL)); /* no key: not sent */
    CHECK(!budget_release(e.r, PREFIX, k.tenant, "", NULL, NULL));       /* no id: not sent */
    wait_for(e.base, NULL, NULL, 50);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 6000);
    /* releasing x2 gives back the 1000 it reserved, not its estimate */
    CHECK(budget_release(e.r, PREFIX, k.tenant, "x2", NULL, NULL));
    p = (struct poll_field){e.base, e.r, k.month, 5000, {0}, false};
    CHECK(wait_for(e.base, reserved_is, &p, 5000));
    wait_for(e.base, NULL, NULL, 20);
    CHECK_INT(hget(e.base, e.r, k.day, "reserved"), 5000);
    CHECK_INT(rate_used(e.base, e.r, k.tpm, TPM_DEFAULT), 700);
    CHECK_INT(leases_held(e.base, e.r, &k), 4); /* x3; tombstones of x1, x2, x9 */
    lease_key(lk, sizeof(lk), &k, "x2");
    CHECK_INT(lease_est(e.base, e.r, lk), 0);
done:
    env_close(&e);
}

/* ---- allowances ----------------------------------------------------------- */

/* Settles a request of an allowance plan (no tally): units used, the
 * period's included units and the overage terms (plan_overage_terms). */
static void settle_units(struct event_base *base, struct redis *r, const struct keys *k,
                         const char *id, money_t cost, int64_t units, int64_t included,
                         int64_t per_mu, int64_t markup_bp)
{
    struct settle s = {.key_prefix = PREFIX,
                       .tenant = k->tenant,
                       .request_id = id,
                       .when = WHEN,
                       .cost = cost,
                       .usage = {.input = units, .seen = true},
                       .units = units,
                       .included = included,
                       .overage_per_mu = per_mu,
                       .overage_markup_bp = markup_bp};
    struct redis_stamp st = {{0}, 0};
    struct settled res = {0};
    struct redis_cmd *c = budget_settle(r, NULL, &s, &st, on_settled, &res);
    CHECK(c != NULL);
    if (c)
        wait_for(base, settled_done, &res, 5000);
    CHECK_INT(res.calls, 1);
    CHECK(res.ok);
}

/* Overage: counted past the included units only, at the price per 1M
 * tokens, per request, or at the cost plus a markup; never refused. */
static void test_allowance_overage(void)
{
    struct env e = {0};
    struct keys k;
    if (!env_open(&e))
        goto done;
    keys_for(&k, "overage", WHEN);
    struct admit a = admit_of(&k, "o1", 100);
    a.included = 1000;
    a.est_units = 5000; /* more than the whole allowance: overage still serves */
    a.on_allowance = ON_ALLOWANCE_OVERAGE;
    struct admitted got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.allowance_used, 0);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_reserved"), 0); /* overage reserves none */
    /* $4 per 1M tokens: 4e9 nano-USD per million units */
    settle_units(e.base, e.r, &k, "o1", 600, 600, 1000, 4000000000LL, -1);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_used"), 600);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_units"), 0);
    settle_units(e.base, e.r, &k, "o2", 1200, 600, 1000, 4000000000LL, -1);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_used"), 1200);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_units"), 200);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_cost"), 400);   /* 200/600 of 1200 */
    CHECK_INT(hget(e.base, e.r, k.month, "overage_usd"), 800000); /* 200 x $4/1M = $0.0008 */
    /* cost + 20%: the overage's cost share, marked up */
    settle_units(e.base, e.r, &k, "o3", 1000, 100, 1000, 0, 2000);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_units"), 300);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_cost"), 1400);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_usd"), 801200); /* + 1000 x 1.2 */
    /* the admission now sees what was used */
    a.request_id = "o4";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.allowance_used, 1300);
    /* a plan without an allowance counts nothing of it */
    keys_for(&k, "no-allowance", WHEN);
    settle_units(e.base, e.r, &k, "n1", 100, 0, -1, 0, -1);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_used"), 0);
    /* a request allowance at $0.05 a request: 5e7 nano-USD, per million x 1e6 */
    keys_for(&k, "requests", WHEN);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "q%d", i);
        settle_units(e.base, e.r, &k, id, 10, 1, 2, 50000000LL * 1000000, -1);
    }
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_used"), 3);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_units"), 1);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_usd"), 50000000);
done:
    env_close(&e);
}

/* Block and downgrade: the allowance is a cap in units, reserved at
 * admission like dollars (one short reservation in flight at a time), and
 * given back by settlement or release. The dollar caps still hold. */
static void test_allowance_block(void)
{
    struct env e = {0};
    struct keys k;
    char lk[200];
    if (!env_open(&e))
        goto done;
    keys_for(&k, "allow-block", WHEN);
    settle_units(e.base, e.r, &k, "b0", 100, 900, 1000, 0, -1);
    struct admit a = admit_of(&k, "b1", 100);
    a.included = 1000;
    a.est_units = 500;
    a.on_allowance = ON_ALLOWANCE_BLOCK;
    /* 100 left: b1 goes ahead reserving the 100, b2 must wait for it */
    struct admitted got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.allowance_used, 900);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_reserved"), 100);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_capped"), 1);
    a.request_id = "b2";
    a.est_units = 50;
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_ALLOWANCE);
    CHECK_INT(got.res.retry_after_s, TO_MONTH_END);
    CHECK_INT(got.res.allowance_used, 1000);
    /* released: the room is back and b2 fits whole */
    CHECK(budget_release(e.r, PREFIX, k.tenant, "b1", NULL, NULL));
    struct poll_field p = {e.base, e.r, k.month, 0, {0}, false};
    CHECK(wait_for(e.base, reserved_is, &p, 5000));
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_capped"), 0);
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    lease_key(lk, sizeof(lk), &k, "b2");
    CHECK_INT(lease_exists(e.base, e.r, lk), 1);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_reserved"), 50);
    /* settled with what it really used: the reservation goes, the units count */
    settle_units(e.base, e.r, &k, "b2", 100, 100, 1000, 0, -1);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "allowance_used"), 1000);
    CHECK_INT(hget(e.base, e.r, k.month, "overage_units"), 0);
    a.request_id = "b3";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_ALLOWANCE);

    /* downgrade: the cheaper model goes on, still under the dollar caps */
    a.request_id = "b4";
    a.on_allowance = ON_ALLOWANCE_DOWNGRADE;
    a.estimate_down = 10;
    a.caps_block = true; /* on_exceed = block */
    a.cap_monthly = 1000;
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_DOWNGRADE);
    CHECK_INT(got.res.reason, BUDGET_REASON_ALLOWANCE);
    lease_key(lk, sizeof(lk), &k, "b4");
    CHECK_INT(lease_est(e.base, e.r, lk), 10);
    a.request_id = "b5";
    a.cap_monthly = 300; /* 200 spent + 10 held: the 10 fits, 100 would not */
    a.estimate_down = 100;
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_DOWNGRADE);
    a.request_id = "b6";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_MONTHLY);
    /* no cheaper model for this one: blocked at the allowance */
    a.request_id = "b7";
    a.estimate_down = -1;
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_ALLOWANCE);
done:
    env_close(&e);
}

/* ---- contract edges ------------------------------------------------------- */

static void test_refused(void)
{
    struct env e = {0};
    struct keys k;
    struct admitted out = {0};
    if (!env_open(&e))
        goto done;
    keys_for(&k, "refused", WHEN);
    struct admit a = admit_of(&k, "", 100);
    CHECK(budget_admit(e.r, &a, on_admitted, &out) == NULL); /* empty id */
    a.request_id = "ok";
    a.tenant = "br{ace";
    CHECK(budget_admit(e.r, &a, on_admitted, &out) == NULL);
    a.tenant = k.tenant;
    a.key_prefix = NULL;
    CHECK(budget_admit(e.r, &a, on_admitted, &out) == NULL);
    wait_for(e.base, NULL, NULL, 20);
    CHECK_INT(out.calls, 0);
    /* cancelled: no callback, nothing leaks (ASan) */
    a.key_prefix = PREFIX;
    struct redis_cmd *c = budget_admit(e.r, &a, on_admitted, &out);
    CHECK(c != NULL);
    redis_cancel(c);
    wait_for(e.base, NULL, NULL, 100);
    CHECK_INT(out.calls, 0);
done:
    env_close(&e);
}

/* A Redis error reply is a failure, never "spent 0"; NOSCRIPT is not. */
static void test_errors(void)
{
    struct env e = {0};
    struct keys k;
    struct result res;
    if (!env_open(&e))
        goto done;
    keys_for(&k, "wrongtype", WHEN);
    run(e.base, e.r, &res, "SET", k.month, "not a hash", NULL);
    struct admit a = admit_of(&k, "w1", 100);
    a.cap_monthly = 1000;
    struct admitted got = {0};
    CHECK(budget_admit(e.r, &a, on_admitted, &got) != NULL);
    wait_for(e.base, admitted_done, &got, 5000);
    CHECK_INT(got.calls, 1);
    CHECK(!got.ok);
    CHECK(strstr(got.err, "WRONGTYPE") != NULL);

    keys_for(&k, "noscript", WHEN);
    run(e.base, e.r, &res, "SCRIPT", "FLUSH", NULL, NULL);
    a = admit_of(&k, "n1", 100);
    got = admit_wait(e.base, e.r, &a);
    CHECK(got.ok);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    run(e.base, e.r, &res, "SCRIPT", "FLUSH", NULL, NULL);
    settle_wait(e.base, e.r, &k, "n1", 77, 1, 1);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 0);
    CHECK_INT(hget(e.base, e.r, k.month, "cost"), 77);
done:
    env_close(&e);
}

/* The last second of a month blocks until the next one; the first second
 * of the next month has a fresh budget and its own counters. */
static void test_month_boundary(void)
{
    struct env e = {0};
    struct keys k;
    struct result res;
    if (!env_open(&e))
        goto done;
    keys_for(&k, "boundary", WHEN);
    run(e.base, e.r, &res, "HSET", k.month, "cost", "1000");
    struct admit a = admit_of(&k, "late", 1);
    a.when = 1796083199; /* 2026-11-30 23:59:59 */
    a.now_ms = (int64_t)a.when * 1000;
    a.cap_monthly = 1000;
    struct admitted got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.retry_after_s, 1);
    a.request_id = "early";
    a.when = 1796083200;
    a.now_ms = (int64_t)a.when * 1000;
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.spent_month, 0);
done:
    env_close(&e);
}

/* clock_period: the billing period of an instant for an anchor, clamped in
 * short months, across a year's end; and an anchored tenant's admission
 * counts in the month key named for its period's start. */
static void test_anchor_periods(void)
{
    static const struct {
        const char *at;
        int anchor;
        const char *start, *end;
    } cases[] = {
        {"2026-11-13T23:59:59", 14, "2026-10-14", "2026-11-14"},
        {"2026-11-14T00:00:00", 14, "2026-11-14", "2026-12-14"},
        {"2026-11-30T12:00:00", 1, "2026-11-01", "2026-12-01"},
        {"2026-12-31T23:59:59", 1, "2026-12-01", "2027-01-01"},
        {"2027-01-05T00:00:00", 14, "2026-12-14", "2027-01-14"},
        {"2027-02-28T00:00:00", 31, "2027-02-28", "2027-03-31"},
        {"2027-02-27T23:00:00", 31, "2027-01-31", "2027-02-28"},
        {"2028-02-29T00:00:00", 30, "2028-02-29", "2028-03-30"},
        {"2026-11-10T00:00:00", 0, "2026-11-01", "2026-12-01"}, /* 0 counts as 1 */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct tm tm = {0};
        char s[16], e[16];
        CHECK(strptime(cases[i].at, "%Y-%m-%dT%H:%M:%S", &tm) != NULL);
        time_t start, end, at = timegm(&tm);
        clock_period(at, cases[i].anchor, &start, &end);
        gmtime_r(&start, &tm);
        strftime(s, sizeof(s), "%Y-%m-%d", &tm);
        gmtime_r(&end, &tm);
        strftime(e, sizeof(e), "%Y-%m-%d", &tm);
        CHECK_STR(s, cases[i].start);
        CHECK_STR(e, cases[i].end);
        CHECK(start % 86400 == 0 && start <= at && at < end);
        CHECK_INT(budget_period(at, cases[i].anchor), start);
    }

    struct env env = {0};
    struct keys k;
    struct result res;
    if (!env_open(&env))
        goto done;
    /* 2026-11-13 12:00: with anchor 14 the period began 2026-10-14, so its
     * spend is in the October key; the 14th starts a new, empty period */
    keys_for(&k, "anchored", 1794571200 - 86400 * 31); /* an October instant */
    run(env.base, env.r, &res, "HSET", k.month, "cost", "1000");
    struct admit a = admit_of(&k, "before", 1);
    a.when = 1794571200; /* 2026-11-13 12:00:00 */
    a.anchor = 14;
    a.now_ms = (int64_t)a.when * 1000;
    a.cap_monthly = 1000;
    struct admitted got = admit_wait(env.base, env.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.retry_after_s, 12 * 3600); /* to 2026-11-14 00:00 */
    a.request_id = "after";
    a.when = 1794571200 + 12 * 3600;
    a.now_ms = (int64_t)a.when * 1000;
    got = admit_wait(env.base, env.r, &a);
    CHECK_INT(got.res.decision, BUDGET_ADMIT);
    CHECK_INT(got.res.spent_month, 0);
done:
    env_close(&env);
}

/* ---- the race --------------------------------------------------------------- */

#define RACE_N 200
#define RACE_EST 1000000 /* $0.001 */
#define RACE_CAP (10 * RACE_EST)

enum race_costs {
    COSTS_EXACT, /* settled cost == estimate */
    COSTS_MIXED, /* estimate ±20%, spread over the range */
    COSTS_OVER,  /* estimate +20% on every request: the worst case */
    COSTS_UNDER, /* 80..100% of the estimate: an upper bound, as it is meant */
};

/* The settled cost of request i. */
static money_t race_cost(enum race_costs mode, int i)
{
    if (mode == COSTS_EXACT)
        return RACE_EST;
    if (mode == COSTS_OVER)
        return RACE_EST * 120 / 100;
    if (mode == COSTS_UNDER)
        return RACE_EST - RACE_EST * ((i * 7919) % 21) / 100;  /* 80%..100% */
    return RACE_EST + RACE_EST * ((i * 7919) % 41 - 20) / 100; /* -20%..+20% */
}

struct race_totals {
    atomic_int admitted, blocked, failed, settled;
    atomic_int capped;    /* admitted reserving less than the estimate */
    atomic_int wrong_est; /* a lease not holding min(estimate, cap - spent - reserved) */
    atomic_llong settled_sum, over_err; /* costs; sum of max(0, cost - reserved) */
};

struct race_req;

struct race {
    struct redis *r;
    const char *tenant;
    enum race_costs mode;
    bool serial; /* one request at a time per connection, else all at once */
    struct race_totals *tot;
    int first, n;
    int issued, done;
    struct race_req *reqs;
};

struct race_req {
    struct race *race;
    int i;
    char id[32];
    char lease[200];         /* its lease hash */
    struct admit_result res; /* its admission */
    struct redis_stamp stamp;
};

static void race_issue(struct race *race);

/* One request has ended (settled, refused or failed). */
static void race_end(struct race *race)
{
    race->done++;
    if (race->serial && race->issued < race->n)
        race_issue(race);
}

static void race_settled(bool ok, const char *err, void *arg)
{
    struct race_req *q = arg;
    if (ok)
        atomic_fetch_add(&q->race->tot->settled, 1);
    else
        atomic_fetch_add(&q->race->tot->failed, 1);
    race_end(q->race);
}

/* The lease's "est" read back: what the admission reserved. Settles. */
static void race_lease_read(struct redisReply *reply, const char *err, void *arg)
{
    struct race_req *q = arg;
    struct race *race = q->race;
    if (err || reply->type != REDIS_REPLY_STRING) {
        atomic_fetch_add(&race->tot->failed, 1);
        race_end(race);
        return;
    }
    money_t reserved = strtoll(reply->str, NULL, 10);
    /* only the monthly cap is set: min(estimate, what was left) */
    money_t left = RACE_CAP - q->res.spent_month - q->res.reserved_month;
    if (reserved != (left < RACE_EST ? left : RACE_EST) || reserved <= 0)
        atomic_fetch_add(&race->tot->wrong_est, 1);
    if (reserved < RACE_EST)
        atomic_fetch_add(&race->tot->capped, 1);
    /* the "upstream call" is instant: settle as soon as admitted */
    money_t cost = race_cost(race->mode, q->i);
    atomic_fetch_add(&race->tot->admitted, 1);
    atomic_fetch_add(&race->tot->settled_sum, cost);
    if (cost > reserved)
        atomic_fetch_add(&race->tot->over_err, cost - reserved);
    struct settle s = {.key_prefix = PREFIX,
                       .tenant = race->tenant,
                       .request_id = q->id,
                       .when = WHEN,
                       .cost = cost,
                       .usage = {.input = 100, .output = 50, .seen = true}};
    q->stamp = (struct redis_stamp){{0}, 0};
    if (!budget_settle(race->r, NULL, &s, &q->stamp, race_settled, q)) {
        atomic_fetch_add(&race->tot->failed, 1);
        race_end(race);
    }
}

static void race_admitted(const struct admit_result *res, const char *err, void *arg)
{
    struct race_req *q = arg;
    struct race *race = q->race;
    if (!res) {
        atomic_fetch_add(&race->tot->failed, 1);
        race_end(race);
        return;
    }
    if (res->decision != BUDGET_ADMIT) {
        /* money may be left only while another request holds the one short
         * (capped) reservation a tenant may have in flight */
        if (res->decision != BUDGET_BLOCK || res->reason != BUDGET_REASON_MONTHLY)
            atomic_fetch_add(&race->tot->wrong_est, 1);
        atomic_fetch_add(&race->tot->blocked, 1);
        race_end(race);
        return;
    }
    q->res = *res;
    snprintf(q->lease, sizeof(q->lease), PREFIX "{%s}:lease", race->tenant);
    const char *argv[] = {"HGET", q->lease, q->id};
    if (!redis_command(race->r, race_lease_read, q, 3, argv, NULL)) {
        atomic_fetch_add(&race->tot->failed, 1);
        race_end(race);
    }
}

/* Sends the admission of the next request. */
static void race_issue(struct race *race)
{
    struct race_req *q = &race->reqs[race->issued++];
    q->race = race;
    q->i = race->first + (int)(q - race->reqs);
    snprintf(q->id, sizeof(q->id), "race-%d", q->i);
    struct admit a = {
        .key_prefix = PREFIX,
        .tenant = race->tenant,
        .request_id = q->id,
        .when = WHEN,
        .now_ms = NOW_MS,
        .estimate = RACE_EST,
        .estimate_down = -1,
        .cap_monthly = RACE_CAP,
        .cap_daily = -1,
        .hard_limit = -1,
        .est_tokens = 150,
    };
    if (!budget_admit(race->r, &a, race_admitted, q)) {
        atomic_fetch_add(&race->tot->failed, 1);
        race_end(race);
    }
}

static int race_done(void *arg)
{
    struct race *race = arg;
    return race->done >= race->n;
}

/* Queues race->n admissions on race->r before any reply (serial: the first
 * only, each end sends the next), then runs base until every one has ended
 * (admitted and settled, or refused). */
static void race_run(struct event_base *base, struct race *race)
{
    if (!(race->reqs = calloc((size_t)race->n, sizeof(*race->reqs))))
        return;
    if (race->serial)
        race_issue(race);
    else
        while (race->issued < race->n)
            race_issue(race);
    wait_for(base, race_done, race, 20000);
    CHECK_INT(race->done, race->n);
    free(race->reqs);
}

struct race_thread {
    pthread_t th;
    pthread_barrier_t *start;
    struct race race;
};

static void *race_thread(void *arg)
{
    struct race_thread *t = arg;
    struct event_base *base = event_base_new();
    struct redis *r = base ? connect_new(base) : NULL;
    t->race.r = r;
    pthread_barrier_wait(t->start); /* every connection up: go together */
    if (r && redis_connected(r))
        race_run(base, &t->race);
    else
        atomic_fetch_add(&t->race.tot->failed, t->race.n);
    redis_free(r);
    if (base)
        event_base_free(base);
    return NULL;
}

static const char *const mode_names[] = {"exact", "+-20%", "+20%", "80-100%"};

static void race_check(struct event_base *base, struct redis *r, const struct keys *k,
                       enum race_costs mode, const char *how, struct race_totals *tot)
{
    long long cost = hget(base, r, k->month, "cost");
    long long overspend = cost - RACE_CAP;
    CHECK_INT(atomic_load(&tot->failed), 0);
    CHECK_INT(atomic_load(&tot->admitted) + atomic_load(&tot->blocked), RACE_N);
    CHECK_INT(atomic_load(&tot->settled), atomic_load(&tot->admitted));
    if (mode == COSTS_EXACT)
        CHECK_INT(atomic_load(&tot->admitted), 10);
    /* to the nano-dollar, and nothing left in flight */
    CHECK_INT(cost, atomic_load(&tot->settled_sum));
    CHECK_INT(hget(base, r, k->day, "cost"), atomic_load(&tot->settled_sum));
    CHECK_INT(hget(base, r, k->month, "requests"), atomic_load(&tot->admitted));
    CHECK_INT(hget(base, r, k->month, "reserved"), 0);
    CHECK_INT(hget(base, r, k->day, "reserved"), 0);
    CHECK_INT(leases_held(base, r, k), 0);
    CHECK_INT(atomic_load(&tot->wrong_est), 0);
    /* Every admission leaves spent + reserved <= cap (it reserves at most
     * what is left), and a settle moves it by cost - reserved: the
     * overspend is at most the sum of the positive errors against what was
     * reserved. Exact estimates fill the cap exactly and cannot overspend. */
    CHECK(overspend <= atomic_load(&tot->over_err));
    if (mode == COSTS_EXACT) {
        CHECK_INT(overspend, 0);
        CHECK_INT(atomic_load(&tot->capped), 0);
        CHECK_INT(atomic_load(&tot->over_err), 0);
    } else if (mode == COSTS_UNDER) {
        /* Upper bounds: only a capped admission (reserving less than its
         * estimate) can cost more than it reserved, by less than one
         * estimate, and admit.lua lets a tenant hold one capped reservation
         * at a time: a later one can only take what the earlier one left
         * unspent. So the overspend is at most one estimate, always. */
        CHECK(atomic_load(&tot->over_err) <= (long long)atomic_load(&tot->capped) * RACE_EST);
        CHECK(overspend <= RACE_EST);
    } else {
        /* under-estimates: the 10 in flight at +20% each, plus one capped */
        CHECK(overspend <= 10 * RACE_EST / 5 + RACE_EST);
    }
    printf("  race %-7s %-26s admitted %3d of %d (capped %2d), cost %lld, cap %d, overspend "
           "%lld nano-USD (%.2f estimates; bound %.2f)\n",
           mode_names[mode], how, atomic_load(&tot->admitted), RACE_N, atomic_load(&tot->capped),
           cost, RACE_CAP, overspend, (double)overspend / RACE_EST,
           (double)atomic_load(&tot->over_err) / RACE_EST);
}

static void race_one_conn(enum race_costs mode, const char *name)
{
    struct env e = {0};
    struct keys k;
    struct race_totals tot = {0};
    if (!env_open(&e))
        goto done;
    keys_for(&k, name, WHEN);
    struct race race = {.r = e.r, .tenant = k.tenant, .mode = mode, .tot = &tot, .n = RACE_N};
    race_run(e.base, &race);
    race_check(e.base, e.r, &k, mode, "1 conn, all at once", &tot);
    /* every admission runs before any settle: 10 fill the cap exactly, none
     * is capped, and upper-bound estimates cannot overspend at all */
    CHECK_INT(atomic_load(&tot.admitted), 10);
    CHECK_INT(atomic_load(&tot.capped), 0);
    if (mode == COSTS_UNDER)
        CHECK(hget(e.base, e.r, k.month, "cost") <= RACE_CAP);
    if (mode == COSTS_OVER) /* all admitted together: every error adds up */
        CHECK_INT(hget(e.base, e.r, k.month, "cost") - RACE_CAP, 2 * RACE_EST);
done:
    env_close(&e);
}

#define RACE_THREADS 4

/* serial: each connection keeps one request in flight, so admissions
 * keep coming while others settle (and mixed errors free room). */
static void race_threads(enum race_costs mode, bool serial, const char *name)
{
    struct env e = {0};
    struct keys k;
    struct race_totals tot = {0};
    struct race_thread th[RACE_THREADS];
    pthread_barrier_t start;
    if (!env_open(&e))
        goto done;
    keys_for(&k, name, WHEN);
    pthread_barrier_init(&start, NULL, RACE_THREADS);
    for (int i = 0; i < RACE_THREADS; i++) {
        th[i] = (struct race_thread){.start = &start};
        th[i].race = (struct race){.tenant = k.tenant,
                                   .mode = mode,
                                   .serial = serial,
                                   .tot = &tot,
                                   .first = i * (RACE_N / RACE_THREADS),
                                   .n = RACE_N / RACE_THREADS};
        CHECK_INT(pthread_create(&th[i].th, NULL, race_thread, &th[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(th[i].th, NULL);
    pthread_barrier_destroy(&start);
    race_check(e.base, e.r, &k, mode, serial ? "4 conns, 1 each in flight" : "4 conns, all at once",
               &tot);
done:
    env_close(&e);
}

static void test_race_exact(void)
{
    race_one_conn(COSTS_EXACT, "race-exact-1");
    race_threads(COSTS_EXACT, false, "race-exact-4");
    race_threads(COSTS_EXACT, true, "race-exact-4s");
}

static void test_race_mixed(void)
{
    race_one_conn(COSTS_MIXED, "race-mixed-1");
    race_threads(COSTS_MIXED, false, "race-mixed-4");
    race_threads(COSTS_MIXED, true, "race-mixed-4s");
}

static void test_race_over(void)
{
    race_one_conn(COSTS_OVER, "race-over-1");
    race_threads(COSTS_OVER, false, "race-over-4");
    race_threads(COSTS_OVER, true, "race-over-4s");
}

static void test_race_under(void)
{
    race_one_conn(COSTS_UNDER, "race-under-1");
    race_threads(COSTS_UNDER, false, "race-under-4");
    race_threads(COSTS_UNDER, true, "race-under-4s");
}

/* Per-user caps: each user's settled + reserved + estimate against its own
 * cap, one short reservation in flight, given back by release and moved to
 * the user's cost by settle; another user of the tenant is not held. */
static void test_user_cap(void)
{
    struct env e = {0};
    struct keys k;
    char ucap[200];
    if (!env_open(&e))
        goto done;
    keys_for(&k, "user-cap", WHEN);
    snprintf(ucap, sizeof(ucap), "%s:ucap", k.month);
    struct admit a = admit_of(&k, "u1a", 600);
    a.user = "u1";
    a.cap_user = 1000;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, ucap, "u1|r"), 600);
    a.request_id = "u1b"; /* 400 left: reserved short */
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, ucap, "u1|r"), 1000);
    CHECK_INT(hget(e.base, e.r, k.month, "reserved"), 1000);
    a.request_id = "u1c";
    struct admitted got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_BLOCK);
    CHECK_INT(got.res.reason, BUDGET_REASON_USER);
    CHECK_INT(got.res.retry_after_s, TO_MONTH_END);
    a.request_id = "u2a"; /* another user: its own cap */
    a.user = "u2";
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, ucap, "u2|r"), 600);
    a.request_id = "nu"; /* no user: no user cap */
    a.user = NULL;
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    /* release gives the user's reservation back, settle makes it its cost */
    CHECK(budget_release(e.r, PREFIX, k.tenant, "u1a", NULL, NULL));
    settle_units(e.base, e.r, &k, "u1b", 350, 0, -1, 0, -1);
    CHECK_INT(hget(e.base, e.r, ucap, "u1|r"), 0);
    CHECK_INT(hget(e.base, e.r, ucap, "u1"), 350);
    CHECK_INT(hget(e.base, e.r, ucap, "u2|r"), 600);
    /* 650 left for u1 now */
    a.request_id = "u1d";
    a.user = "u1";
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    CHECK_INT(hget(e.base, e.r, ucap, "u1|r"), 600);
    /* user_rpm: one a minute per user */
    a.cap_user = -1;
    a.user_rpm = 1;
    a.request_id = "r1";
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
    a.request_id = "r2";
    got = admit_wait(e.base, e.r, &a);
    CHECK_INT(got.res.decision, BUDGET_RATE_LIMITED);
    CHECK_INT(got.res.reason, BUDGET_REASON_USER_RPM);
    CHECK(got.res.retry_after_ms > 59000 && got.res.retry_after_ms <= 60000);
    a.request_id = "r3";
    a.user = "u2";
    CHECK_INT(admit_wait(e.base, e.r, &a).res.decision, BUDGET_ADMIT);
done:
    env_close(&e);
}

static const struct check_test tests[] = {
    {"user_cap", test_user_cap},
    {"caps", test_caps},
    {"rpm", test_rpm},
    {"tpm", test_tpm},
    {"lease_expiry", test_lease_expiry},
    {"settle_releases", test_settle_releases},
    {"settle_saturates", test_settle_saturates},
    {"release", test_release},
    {"allowance_overage", test_allowance_overage},
    {"allowance_block", test_allowance_block},
    {"refused", test_refused},
    {"errors", test_errors},
    {"month_boundary", test_month_boundary},
    {"anchor_periods", test_anchor_periods},
    {"race_exact", test_race_exact},
    {"race_mixed", test_race_mixed},
    {"race_over", test_race_over},
    {"race_under", test_race_under},
};

int main(void)
{
    log_setup(LOG_ERROR, false);
    signal(SIGPIPE, SIG_IGN);
    if (start_server("budget") < 0) {
        fprintf(stderr, "cannot start /usr/bin/redis-server\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", server_port);
    snprintf(run_id, sizeof(run_id), "tb-%d-%lld", (int)getpid(), now_ms());
    return CHECK_MAIN("budget", tests);
}
