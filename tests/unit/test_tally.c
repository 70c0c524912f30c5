/* test_tally.c: settlement as the proxy does it (budget_settle with a
 * tally: the cost at once, requests, tokens and breakdowns summed and
 * flushed by tally.c through flush.lua), against a real redis-server from
 * redis_server.h:
 *   - the sums reach the same counters settle.lua alone would write;
 *   - a settlement or a flush that ran but whose answer was lost (the
 *     server stopped past the deadline, then resumed) counts once when it
 *     is sent again with its stamp, and one that never ran counts once;
 *   - footprint: 100,000 admitted and settled requests over a few tenants
 *     leave the key count and the dataset's memory flat once the
 *     per-tenant hashes exist (printed: keys and used_memory).
 * Every wait is bounded. */
#include "budget/budget.h"
#include "budget/tally.h"
#include "core/log.h"
#include "redis/redis.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check.h"
#include "redis_server.h"

#define TIMEOUT_MS 500
#define PREFIX "tollgate:"
#define WHEN 1795348800 /* 2026-11-22 12:00:00 UTC */

static char url[64];
static char run_id[64];

static struct redis *connect_new(struct event_base *base, int timeout_ms)
{
    char err[256];
    struct redis *r = redis_new(base, url, NULL, timeout_ms, err, sizeof(err));
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
    char *str;
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
        res->str = strndup(reply->str, reply->len);
}

static int done_one(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

/* Runs a command of up to 3 words; the reply's string is malloc'd. */
static struct result run(struct event_base *base, struct redis *r, const char *a0, const char *a1,
                         const char *a2)
{
    struct result res = {0};
    const char *argv[] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    struct redis_cmd *c = redis_command(r, on_result, &res, argc, argv, NULL);
    CHECK(c != NULL);
    if (c)
        wait_for(base, done_one, &res, 5000);
    CHECK_INT(res.calls, 1);
    return res;
}

/* A hash field as an integer; missing: 0. */
static long long hget(struct event_base *base, struct redis *r, const char *key, const char *f)
{
    struct result res = run(base, r, "HGET", key, f);
    long long v = res.str ? strtoll(res.str, NULL, 10) : 0;
    free(res.str);
    return v;
}

/* A field of INFO (e.g. "used_memory"); -1 when absent. */
static long long info(struct event_base *base, struct redis *r, const char *section,
                      const char *field)
{
    struct result res = run(base, r, "INFO", section, NULL);
    long long v = -1;
    char want[64];
    snprintf(want, sizeof(want), "\n%s:", field);
    const char *p = res.str ? strstr(res.str, want) : NULL;
    if (p)
        v = strtoll(p + strlen(want), NULL, 10);
    free(res.str);
    return v;
}

/* ---- settling ------------------------------------------------------------ */

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

static int tally_empty(void *arg)
{
    return tally_pending(arg) == 0;
}

/* Request i of a tenant: cost 1000 + i, model m(i % 3), user u(i % 5). */
static struct settle mk(const char *tenant, int i, char *id, size_t idn)
{
    static const char *const models[] = {"gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"};
    static const char *const users[] = {"u0", "u1", "u2", "u3", "u4"};
    snprintf(id, idn, "r%d", i);
    return (struct settle){
        .key_prefix = PREFIX,
        .tenant = tenant,
        .request_id = id,
        .when = WHEN,
        .cost = 1000 + i,
        .usage = {.input = 10 + i % 4, .cached = i % 2, .output = 5, .seen = true},
        .model = models[i % 3],
        .feature = i % 2 ? "chat" : NULL,
        .user = users[i % 5],
        .plan = "pro",
    };
}

static void tenant_name(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s-%s", run_id, name);
}

/* The sums a tenant's settlements [0, n) must have left in Redis. */
static void check_counts(struct event_base *base, struct redis *r, const char *tenant, int n)
{
    char month[256], day[256], by[256], field[64];
    long long cost = 0, input = 0, cached = 0, u1 = 0, u1_cost = 0, mini = 0;
    for (int i = 0; i < n; i++) {
        cost += 1000 + i;
        input += 10 + i % 4;
        cached += i % 2;
        if (i % 5 == 1) {
            u1++;
            u1_cost += 1000 + i;
        }
        mini += i % 3 == 1;
    }
    CHECK_INT(budget_key(month, sizeof(month), PREFIX, tenant, 'm', WHEN), 0);
    CHECK_INT(budget_key(day, sizeof(day), PREFIX, tenant, 'd', WHEN), 0);
    const char *keys[] = {month, day};
    for (size_t k = 0; k < 2; k++) {
        CHECK_INT(hget(base, r, keys[k], BUDGET_F_COST), cost);
        CHECK_INT(hget(base, r, keys[k], BUDGET_F_REQUESTS), n);
        CHECK_INT(hget(base, r, keys[k], BUDGET_F_INPUT), input);
        CHECK_INT(hget(base, r, keys[k], BUDGET_F_CACHED), cached);
        CHECK_INT(hget(base, r, keys[k], BUDGET_F_OUTPUT), 5LL * n);
        CHECK_INT(hget(base, r, keys[k], BUDGET_F_ESTIMATED), 0);
    }
    CHECK_INT(budget_month_key(by, sizeof(by), PREFIX, tenant, BUDGET_BY_USER, WHEN), 0);
    CHECK_INT(hget(base, r, by, "u1|requests"), u1);
    CHECK_INT(hget(base, r, by, "u1|cost"), u1_cost);
    CHECK_INT(budget_month_key(by, sizeof(by), PREFIX, tenant, BUDGET_BY_MODEL, WHEN), 0);
    CHECK_INT(hget(base, r, by, "gpt-4o-mini|requests"), mini);
    CHECK_INT(budget_month_key(by, sizeof(by), PREFIX, tenant, BUDGET_BY_FEATURE, WHEN), 0);
    snprintf(field, sizeof(field), "%s|requests", BUDGET_NO_NAME);
    CHECK_INT(hget(base, r, by, field), (n + 1) / 2);
    CHECK_INT(budget_month_key(by, sizeof(by), PREFIX, tenant, BUDGET_BY_PLAN, WHEN), 0);
    struct result plan = run(base, r, "HGET", by, "22");
    CHECK(plan.str && strcmp(plan.str, "pro") == 0);
    free(plan.str);
}

/* ---- tests ---------------------------------------------------------------- */

/* The tally's sums land where settle.lua's full mode puts them. */
static void test_sums(void)
{
    char tenant[96];
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base, 3000);
    struct tally *t = r ? tally_new(base, r) : NULL;
    CHECK(t != NULL);
    if (!t || !redis_connected(r))
        goto done;
    tenant_name(tenant, sizeof(tenant), "sums");
    char month[256];
    CHECK_INT(budget_key(month, sizeof(month), PREFIX, tenant, 'm', WHEN), 0);
    for (int i = 0; i < 40; i++) {
        char id[32];
        struct settle s = mk(tenant, i, id, sizeof(id));
        struct settled res = {0};
        struct redis_cmd *c = budget_settle(r, t, &s, &s.stamp, on_settled, &res);
        CHECK(c != NULL);
        if (c)
            wait_for(base, settled_done, &res, 3000);
        CHECK(res.ok);
        if (i == 0) { /* the cost is there at once, the rest after a flush */
            CHECK_INT(hget(base, r, month, BUDGET_F_COST), 1000);
            CHECK_INT(hget(base, r, month, BUDGET_F_REQUESTS), 0);
            CHECK(tally_pending(t) > 0);
        }
    }
    tally_flush(t);
    CHECK(wait_for(base, tally_empty, t, 3000));
    check_counts(base, r, tenant, 40);
done:
    tally_free(t);
    redis_free(r);
    event_base_free(base);
}

/* Absurd but well-formed counts (a request with max_tokens near INT64_MAX
 * billed on its estimate): sums in the tally and in Redis saturate at
 * INT64_MAX, no flush fails half-way, every other count stays exact. */
static void test_saturates(void)
{
    char tenant[96], month[256], day[256], by[256];
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base, 3000);
    struct tally *t = r ? tally_new(base, r) : NULL;
    CHECK(t != NULL);
    if (!t || !redis_connected(r))
        goto done;
    tenant_name(tenant, sizeof(tenant), "saturates");
    CHECK_INT(budget_key(month, sizeof(month), PREFIX, tenant, 'm', WHEN), 0);
    CHECK_INT(budget_key(day, sizeof(day), PREFIX, tenant, 'd', WHEN), 0);
    CHECK_INT(budget_month_key(by, sizeof(by), PREFIX, tenant, BUDGET_BY_MODEL, WHEN), 0);
    struct result seeded = {0}; /* the month's cost at INT64_MAX - 1000 */
    const char *seed[] = {"HSET", month, BUDGET_F_COST, "9223372036854774807"};
    CHECK(redis_command(r, on_result, &seeded, 4, seed, NULL) != NULL);
    wait_for(base, done_one, &seeded, 5000);
    free(seeded.str);
    /* two per flush: the second sum saturates in the tally, the second
     * flush in Redis */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2; i++) {
            char id[32];
            struct settle s = mk(tenant, round * 2 + i, id, sizeof(id));
            s.cost = 9000000000000000; /* $9M */
            s.usage = (struct usage){.input = 10, .output = INT64_MAX, .seen = true};
            struct settled res = {0};
            struct redis_cmd *c = budget_settle(r, t, &s, &s.stamp, on_settled, &res);
            CHECK(c != NULL);
            if (c)
                wait_for(base, settled_done, &res, 3000);
            CHECK(res.ok);
        }
        tally_flush(t);
        CHECK(wait_for(base, tally_empty, t, 3000));
        long long n = 2 * (round + 1);
        CHECK_INT(hget(base, r, month, BUDGET_F_COST), INT64_MAX);
        CHECK_INT(hget(base, r, month, BUDGET_F_REQUESTS), n);
        CHECK_INT(hget(base, r, day, BUDGET_F_REQUESTS), n);
        CHECK_INT(hget(base, r, month, BUDGET_F_INPUT), 10 * n);
        CHECK_INT(hget(base, r, month, BUDGET_F_OUTPUT), INT64_MAX);
        CHECK_INT(hget(base, r, day, BUDGET_F_OUTPUT), INT64_MAX);
        CHECK_INT(hget(base, r, by, "gpt-4o|output_tokens"), INT64_MAX);
        CHECK_INT(hget(base, r, by, "gpt-4o|requests") + hget(base, r, by, "gpt-4o-mini|requests") +
                      hget(base, r, by, "claude-haiku-4-5|requests"),
                  n);
    }
done:
    tally_free(t);
    redis_free(r);
    event_base_free(base);
}

/* A settlement and a flush that ran while their answers were lost: the
 * server is stopped past the deadline (the connection is dropped with both
 * pending), then resumed; it reads what was sent and runs it. Sent again
 * with their stamps, both count once. */
static void test_lost_answers(void)
{
    char tenant[96], month[256], id[32];
    struct event_base *base = event_base_new();
    struct redis *r = connect_new(base, TIMEOUT_MS);
    struct tally *t = r ? tally_new(base, r) : NULL;
    CHECK(t != NULL);
    if (!t || !redis_connected(r))
        goto done;
    tenant_name(tenant, sizeof(tenant), "lost");
    CHECK_INT(budget_key(month, sizeof(month), PREFIX, tenant, 'm', WHEN), 0);
    /* request 0 settled and its sums waiting in the tally */
    struct settle s0 = mk(tenant, 0, id, sizeof(id));
    struct settled res = {0};
    struct redis_cmd *c = budget_settle(r, t, &s0, &s0.stamp, on_settled, &res);
    CHECK(c != NULL);
    if (c)
        wait_for(base, settled_done, &res, 3000);
    CHECK(res.ok);

    kill(server_pid, SIGSTOP);
    tally_flush(t); /* the flush of request 0's sums: sent, never answered */
    char id1[32];
    struct settle s1 = mk(tenant, 1, id1, sizeof(id1));
    s1.tallied = true; /* as the proxy marks what it sends with a tally */
    struct settled res1 = {0};
    c = budget_settle(r, t, &s1, &s1.stamp, on_settled, &res1);
    CHECK(c != NULL);
    if (c)
        wait_for(base, settled_done, &res1, 3000);
    CHECK(!res1.ok);
    CHECK_STR(res1.err, "timeout");
    CHECK(s1.stamp.seq > 0); /* it may have run: the stamp is kept for the journal */
    kill(server_pid, SIGCONT);
    wait_for(base, is_connected, r, 3000);
    wait_for(base, NULL, NULL, 100);
    /* both ran after all */
    CHECK_INT(hget(base, r, month, BUDGET_F_COST), 1000 + 1001);
    CHECK_INT(hget(base, r, month, BUDGET_F_REQUESTS), 1);

    /* the flush goes again (a replay: counted before, so not again) */
    CHECK(tally_pending(t) > 0);
    tally_flush(t);
    CHECK(wait_for(base, tally_empty, t, 3000));
    CHECK_INT(hget(base, r, month, BUDGET_F_REQUESTS), 1);
    /* the settlement replayed from the journal with its stamp (twice, as a
     * replay cut short runs again): its cost ran, the rest never reached
     * the tally (the answer was lost), so the replay counts just the rest */
    struct redis_stamp st;
    for (int k = 0; k < 2; k++) {
        struct settled again = {0};
        st = s1.stamp;
        c = budget_settle(r, NULL, &s1, &st, on_settled, &again);
        CHECK(c != NULL);
        if (c)
            wait_for(base, settled_done, &again, 3000);
        CHECK(again.ok);
        CHECK_INT(hget(base, r, month, BUDGET_F_COST), 1000 + 1001);
        CHECK_INT(hget(base, r, month, BUDGET_F_REQUESTS), 2);
        CHECK_INT(hget(base, r, month, BUDGET_F_INPUT), 10 + 11);
    }

    /* a stamp that never ran (the journal's own) counts, once */
    char id2[32];
    struct settle s2 = mk(tenant, 2, id2, sizeof(id2));
    snprintf(s2.stamp.conn, sizeof(s2.stamp.conn), "jtest%s", "0123456789");
    s2.stamp.seq = 7;
    for (int k = 0; k < 2; k++) {
        struct settled x = {0};
        st = s2.stamp;
        c = budget_settle(r, NULL, &s2, &st, on_settled, &x);
        CHECK(c != NULL);
        if (c)
            wait_for(base, settled_done, &x, 3000);
        CHECK(x.ok);
    }
    CHECK_INT(hget(base, r, month, BUDGET_F_COST), 1000 + 1001 + 1002);
    CHECK_INT(hget(base, r, month, BUDGET_F_REQUESTS), 3);
done:
    tally_free(t);
    redis_free(r);
    event_base_free(base);
}

/* ---- footprint ------------------------------------------------------------ */

#define FOOT_TENANTS 4
#define FOOT_TOTAL 100000
#define FOOT_WARM 20000
#define FOOT_WINDOW 256

struct foot;

struct foot_req {
    struct foot *f;
    char id[32];
    struct settle s;
    char tenant_buf[96];
};

struct foot {
    struct event_base *base;
    struct redis *r;
    struct tally *t;
    char tenants[FOOT_TENANTS][96];
    int next, target, inflight, failed;
};

static void foot_issue(struct foot *f);

static void foot_settled(bool ok, const char *err, void *arg)
{
    struct foot_req *q = arg;
    struct foot *f = q->f;
    if (!ok && f->failed++ < 3)
        fprintf(stderr, "  settle: %s\n", err ? err : "?");
    free(q);
    f->inflight--;
    foot_issue(f);
}

static void foot_admitted(const struct admit_result *res, const char *err, void *arg)
{
    struct foot_req *q = arg;
    struct foot *f = q->f;
    if (!res || res->decision != BUDGET_ADMIT) {
        if (f->failed++ < 3)
            fprintf(stderr, "  admit: %s\n", err ? err : "not admitted");
        free(q);
        f->inflight--;
        foot_issue(f);
        return;
    }
    if (!budget_settle(f->r, f->t, &q->s, &q->s.stamp, foot_settled, q)) {
        f->failed++;
        free(q);
        f->inflight--;
        foot_issue(f);
    }
}

/* Keeps FOOT_WINDOW requests in flight, each admitted (with caps and rate
 * limits that never bind, as the bench's) and then settled, like a proxy. */
static void foot_issue(struct foot *f)
{
    while (f->inflight < FOOT_WINDOW && f->next < f->target) {
        int i = f->next++;
        struct foot_req *q = calloc(1, sizeof(*q));
        if (!q) {
            f->failed++;
            continue;
        }
        q->f = f;
        snprintf(q->tenant_buf, sizeof(q->tenant_buf), "%s", f->tenants[i % FOOT_TENANTS]);
        q->s = mk(q->tenant_buf, i, q->id, sizeof(q->id));
        struct admit a = {.key_prefix = PREFIX,
                          .tenant = q->tenant_buf,
                          .request_id = q->id,
                          .when = WHEN,
                          .now_ms = (int64_t)WHEN * 1000 + i / 100, /* within one minute */
                          .estimate = 2000,
                          .estimate_down = -1,
                          .cap_monthly = 1000000000000LL,
                          .cap_daily = 1000000000000LL,
                          .hard_limit = -1,
                          .rpm = 1000000000,
                          .tpm = 1000000000000LL,
                          .est_tokens = 20};
        if (!budget_admit(f->r, &a, foot_admitted, q)) {
            f->failed++;
            free(q);
            continue;
        }
        f->inflight++;
    }
}

static int foot_done(void *arg)
{
    struct foot *f = arg;
    return f->inflight == 0 && f->next >= f->target;
}

/* Runs requests up to n, then flushes the tally. */
static void foot_run(struct foot *f, int n)
{
    f->target = n;
    foot_issue(f);
    CHECK(wait_for(f->base, foot_done, f, 120000));
    tally_flush(f->t);
    CHECK(wait_for(f->base, tally_empty, f->t, 5000));
}

static void test_footprint(void)
{
    struct foot f = {0};
    f.base = event_base_new();
    f.r = connect_new(f.base, 5000);
    f.t = f.r ? tally_new(f.base, f.r) : NULL;
    CHECK(f.t != NULL);
    if (!f.t || !redis_connected(f.r))
        goto done;
    for (int k = 0; k < FOOT_TENANTS; k++) {
        char name[16];
        snprintf(name, sizeof(name), "foot%d", k);
        tenant_name(f.tenants[k], sizeof(f.tenants[k]), name);
    }
    struct result res = run(f.base, f.r, "FLUSHALL", NULL, NULL);
    free(res.str);
    foot_run(&f, FOOT_WARM);
    res = run(f.base, f.r, "DBSIZE", NULL, NULL);
    long long keys_warm = res.integer;
    long long mem_warm = info(f.base, f.r, "memory", "used_memory");
    long long data_warm = info(f.base, f.r, "memory", "used_memory_dataset");
    foot_run(&f, FOOT_TOTAL);
    res = run(f.base, f.r, "DBSIZE", NULL, NULL);
    long long keys_end = res.integer;
    long long mem_end = info(f.base, f.r, "memory", "used_memory");
    long long data_end = info(f.base, f.r, "memory", "used_memory_dataset");
    printf("  footprint: %d requests over %d tenants: %lld keys, used_memory %lld bytes "
           "(dataset %lld) after %d; %lld keys, used_memory %lld (dataset %lld) after %d\n",
           FOOT_TOTAL, FOOT_TENANTS, keys_warm, mem_warm, data_warm, FOOT_WARM, keys_end, mem_end,
           data_end, FOOT_TOTAL);
    CHECK_INT(f.failed, 0);
    /* per tenant: month, day, 4 breakdowns, leases zset and hash, the rpm
     * and tpm minute buckets; plus the month's tenant set */
    CHECK_INT(keys_end, keys_warm);
    CHECK_INT(keys_end, FOOT_TENANTS * 10 + 1);
    /* 80,000 more requests: a marker key per request was ~100 bytes each
     * (8 MB); the dataset may move by the encoding of the lease store (a
     * hash table once 64 leases were in flight) and lazy rehashing, which
     * is not per request: under 3 bytes a request */
    CHECK(data_end - data_warm < 256 * 1024);
    for (int k = 0; k < FOOT_TENANTS; k++) {
        char month[256];
        CHECK_INT(budget_key(month, sizeof(month), PREFIX, f.tenants[k], 'm', WHEN), 0);
        CHECK_INT(hget(f.base, f.r, month, BUDGET_F_REQUESTS), FOOT_TOTAL / FOOT_TENANTS);
        CHECK_INT(hget(f.base, f.r, month, "reserved"), 0);
    }
done:
    tally_free(f.t);
    redis_free(f.r);
    event_base_free(f.base);
}

static const struct check_test tests[] = {
    {"sums", test_sums},
    {"lost_answers", test_lost_answers},
    {"saturates", test_saturates},
    {"footprint", test_footprint},
};

int main(void)
{
    log_setup(LOG_ERROR, false);
    signal(SIGPIPE, SIG_IGN);
    if (start_server("tally") < 0) {
        fprintf(stderr, "cannot start /usr/bin/redis-server\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", server_port);
    snprintf(run_id, sizeof(run_id), "tt-%d-%lld", (int)getpid(), now_ms());
    return CHECK_MAIN("tally", tests);
}
