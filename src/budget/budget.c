/* budget.c: admits a request against its tenant's rate limits and caps in
 * Redis, reserving its estimate under a lease (src/lua/admit.lua), and
 * settles its cost and tokens into the month and day counters exactly once
 * per request id, ending the lease (src/lua/settle.lua, or release.lua when
 * it never ran). The scripts are embedded by scripts/embed-lua.sh. Keys are
 * built here and only here, so the layout documented in budget.h has one
 * source. */
#include "budget/budget.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/numtext.h"
#include "core/sat.h"
#include "budget/tally.h"
#include "redis/redis.h"

#define KEY_MAX 512
#define LEASE_TTL_DEFAULT_S 600 /* well past any upstream timeout */

extern const char lua_settle[];
extern const char lua_admit[];
extern const char lua_release[];

static struct redis_script settle_script = {"settle", lua_settle, ""};
static struct redis_script admit_script = {"admit", lua_admit, ""};
static struct redis_script release_script = {"release", lua_release, ""};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

/* The sha is computed once, before any worker reads it. */
static void prepare_scripts(void)
{
    redis_script_prepare(&settle_script);
    redis_script_prepare(&admit_script);
    redis_script_prepare(&release_script);
}

/* Keys are built on every admission and settlement, so without printf
 * (numtext.h): "YYYY-MM" or "YYYY-MM-DD" of tm appended at at. */
static char *put_date(char *at, const char *end, const struct tm *tm, bool with_day)
{
    at = numtext_put_uint(at, end, (uint64_t)(tm->tm_year + 1900), 4);
    at = numtext_put(at, end, "-", 1);
    at = numtext_put_uint(at, end, (uint64_t)(tm->tm_mon + 1), 2);
    if (with_day) {
        at = numtext_put(at, end, "-", 1);
        at = numtext_put_uint(at, end, (uint64_t)tm->tm_mday, 2);
    }
    return at;
}

/* "{prefix}{tenant}:" at buf: the tenant as the hash tag; NULL when it does
 * not fit or the tenant would break the hash tag. */
static char *put_tenant(char *buf, const char *end, const char *prefix, const char *tenant)
{
    if (!prefix || !tenant || strpbrk(tenant, "{}"))
        return NULL;
    char *at = numtext_put_str(buf, end, prefix);
    at = numtext_put(at, end, "{", 1);
    at = numtext_put_str(at, end, tenant);
    return numtext_put(at, end, "}:", 2);
}

int budget_key(char *buf, size_t n, const char *prefix, const char *tenant, char kind, time_t when)
{
    struct tm tm;
    if ((kind != 'm' && kind != 'd') || !gmtime_r(&when, &tm))
        return -1;
    char *at = put_tenant(buf, buf + n, prefix, tenant);
    at = numtext_put(at, buf + n, kind == 'm' ? "m:" : "d:", 2);
    return put_date(at, buf + n, &tm, kind == 'd') ? 0 : -1;
}

int budget_month_key(char *buf, size_t n, const char *prefix, const char *tenant,
                     const char *suffix, time_t when)
{
    if (!suffix || budget_key(buf, n, prefix, tenant, 'm', when) < 0)
        return -1;
    char *at = numtext_put(buf + strlen(buf), buf + n, ":", 1);
    return numtext_put_str(at, buf + n, suffix) ? 0 : -1;
}

time_t budget_period(time_t when, int anchor)
{
    time_t start, end;
    clock_period(when, anchor, &start, &end);
    return start;
}

int budget_tenants_key(char *buf, size_t n, const char *prefix, time_t when)
{
    struct tm tm;
    if (!prefix || !gmtime_r(&when, &tm))
        return -1;
    char *at = numtext_put_str(buf, buf + n, prefix);
    at = numtext_put(at, buf + n, "tenants:", 8);
    return put_date(at, buf + n, &tm, false) ? 0 : -1;
}

/* "{prefix}{tenant}:suffix" in a KEY_MAX buffer; -1 when it does not fit or
 * the tenant would break the hash tag. */
static int tenant_key(char *buf, const char *prefix, const char *tenant, const char *suffix)
{
    return numtext_put_str(put_tenant(buf, buf + KEY_MAX, prefix, tenant), buf + KEY_MAX, suffix)
               ? 0
               : -1;
}

/* The tenant's lease keys: the zset of ids by expiry and the hash of
 * leases. The request id may not be empty (it names a lease). */
static int lease_keys(const char *prefix, const char *tenant, const char *id, char *leases,
                      char *lease)
{
    if (!prefix || !id || !*id)
        return -1;
    if (tenant_key(leases, prefix, tenant, "leases") < 0 ||
        tenant_key(lease, prefix, tenant, "lease") < 0)
        return -1;
    return 0;
}

struct settle_call {
    budget_cb cb;
    void *arg;
    struct tally *tally; /* NULL: settle.lua counted everything */
    struct settle s;     /* for the tally; strings in strs */
    char strs[];
};

static void on_settled(struct redisReply *reply, const char *err, void *arg)
{
    struct settle_call *call = arg;
    budget_cb cb = call->cb;
    void *cb_arg = call->arg;
    if (!reply) {
        free(call);
        cb(false, err, cb_arg);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        free(call);
        cb(false, "unexpected reply from settle.lua", cb_arg);
        return;
    }
    /* 1: settled now, 0: counted before; both leave the counters right.
     * Only a settlement counted now adds its breakdowns. */
    if (reply->integer == 1 && call->tally)
        tally_add(call->tally, &call->s);
    free(call);
    cb(true, NULL, cb_arg);
}

static void on_noted(struct redisReply *reply, const char *err, void *arg)
{
    /* Nobody waits: a lost SADD only hides a tenant without a [tenant]
     * section from that month's report until its next settlement. */
    if (!reply)
        log_debug("budget: tenants set not updated (%s)", err ? err : "?");
}

/* Tenants this thread has put in the month's set within the last minute: a
 * small direct-mapped cache of key hashes, so a busy tenant costs two
 * commands a minute per worker, not two per request. Entries age out so a
 * Redis restarted empty learns the tenant again within a minute; a
 * collision only sends again. */
#define NOTED_SLOTS 4096
static _Thread_local uint64_t noted[NOTED_SLOTS];
static _Thread_local time_t noted_at[NOTED_SLOTS];

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = b; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h | 1; /* never 0: 0 marks an empty slot */
}

/* Adds the tenant to the month's tenant set (not under its hash tag, so not
 * in the script: on a Cluster it lives in another slot). Fire and forget. */
static void note_tenant(struct redis *r, const struct settle *s)
{
    char key[KEY_MAX], ttl[24];
    if (budget_tenants_key(key, sizeof(key), s->key_prefix, budget_period(s->when, s->anchor)) < 0)
        return;
    uint64_t h = fnv1a(key, s->tenant);
    time_t now = time(NULL);
    size_t slot = h % NOTED_SLOTS;
    if (noted[slot] == h && now - noted_at[slot] < 60)
        return;
    noted[slot] = h;
    noted_at[slot] = now;
    snprintf(ttl, sizeof(ttl), "%d", BUDGET_MONTH_TTL_S);
    const char *sadd[] = {"SADD", key, s->tenant};
    const char *expire[] = {"EXPIRE", key, ttl};
    if (!redis_command(r, on_noted, NULL, 3, sadd, NULL) ||
        !redis_command(r, on_noted, NULL, 3, expire, NULL))
        log_debug("budget: tenants set update not queued");
}

/* A breakdown name: "-" when absent; '|' separates name and field, and the
 * report splits at the last one, so a name may contain it. */
static const char *by_name(const char *name)
{
    return name && *name ? name : BUDGET_NO_NAME;
}

static int64_t at_least(int64_t v, int64_t floor)
{
    return v < floor ? floor : v;
}

/* Copies s into a call whose strings live in the same block. */
static struct settle_call *call_new(const struct settle *s, struct tally *t)
{
    const char *src[] = {s->key_prefix, s->tenant, s->request_id, s->model,
                         s->feature,    s->user,   s->plan};
    size_t len[ARRAY_LEN(src)], total = 0;
    for (size_t i = 0; i < ARRAY_LEN(src); i++)
        total += len[i] = src[i] ? strlen(src[i]) + 1 : 0;
    struct settle_call *call = malloc(sizeof(*call) + (t ? total : 0));
    if (!call)
        return NULL;
    call->tally = t;
    call->s = *s;
    if (!t)
        return call;
    const char **dst[] = {&call->s.key_prefix, &call->s.tenant, &call->s.request_id, &call->s.model,
                          &call->s.feature,    &call->s.user,   &call->s.plan};
    char *p = call->strs;
    for (size_t i = 0; i < ARRAY_LEN(src); i++) {
        if (!src[i])
            continue;
        memcpy(p, src[i], len[i]);
        *dst[i] = p;
        p += len[i];
    }
    return call;
}

struct redis_cmd *budget_settle(struct redis *r, struct tally *t, const struct settle *s,
                                struct redis_stamp *stamp, budget_cb cb, void *arg)
{
    char month[KEY_MAX], day[KEY_MAX], leases[KEY_MAX], lease[KEY_MAX];
    char by_model[KEY_MAX], by_feature[KEY_MAX], by_user[KEY_MAX], by_plan[KEY_MAX];
    char num[11][NUMTEXT_I64_MAX], mday[4];
    struct settle_call *call = NULL;
    struct redis_cmd *cmd;
    struct tm tm;

    time_t period = budget_period(s->when, s->anchor);

    pthread_once(&scripts_once, prepare_scripts);
    if (!s->key_prefix || !s->tenant || !stamp || !gmtime_r(&s->when, &tm) ||
        budget_key(month, sizeof(month), s->key_prefix, s->tenant, 'm', period) < 0 ||
        budget_key(day, sizeof(day), s->key_prefix, s->tenant, 'd', s->when) < 0 ||
        lease_keys(s->key_prefix, s->tenant, s->request_id, leases, lease) < 0)
        goto fail;
    bool full = !t;
    if (full && (budget_month_key(by_model, sizeof(by_model), s->key_prefix, s->tenant,
                                  BUDGET_BY_MODEL, period) < 0 ||
                 budget_month_key(by_feature, sizeof(by_feature), s->key_prefix, s->tenant,
                                  BUDGET_BY_FEATURE, period) < 0 ||
                 budget_month_key(by_user, sizeof(by_user), s->key_prefix, s->tenant,
                                  BUDGET_BY_USER, period) < 0 ||
                 budget_month_key(by_plan, sizeof(by_plan), s->key_prefix, s->tenant,
                                  BUDGET_BY_PLAN, period) < 0))
        goto fail;
    numtext_put_uint(mday, mday + sizeof(mday), (uint64_t)tm.tm_mday, 2);
    numtext_i64(num[0], (int64_t)s->cost);
    numtext_i64(num[1], s->usage.input);
    numtext_i64(num[2], s->usage.cached);
    numtext_i64(num[3], s->usage.output);
    numtext_i64(num[4], s->usage.reasoning);
    /* tpm counts what the provider processed: every input and output token */
    int64_t tokens =
        sat_add(s->usage.input > 0 ? s->usage.input : 0, s->usage.output > 0 ? s->usage.output : 0);
    numtext_i64(num[5], tokens);
    bool allow = s->units > 0;
    numtext_i64(num[6], allow ? s->units : 0);
    numtext_i64(num[7], allow ? at_least(s->included, -1) : -1);
    numtext_i64(num[8], allow ? at_least(s->overage_per_mu, 0) : 0);
    numtext_i64(num[9], allow ? at_least(s->overage_markup_bp, -1) : -1);
    if (s->cache_hit)
        numtext_i64(num[10], (int64_t)s->saved);
    else
        num[10][0] = '\0';
    /* KEYS[1..4] (+5..8 in full mode), then ARGV as settle.lua lists them;
     * the stamp (ARGV[4], ARGV[5]) is written by redis.c as it is sent */
    const char *args[] = {
        month,
        day,
        leases,
        lease,
        by_model,
        by_feature,
        by_user,
        by_plan,
        s->request_id,
        num[0],
        num[5],
        "conn",
        "seq",
        !stamp->seq  ? "0"
        : s->tallied ? "2"
                     : "1",
        full ? "1" : "0",
        num[6],
        num[7],
        num[8],
        num[9],
        num[1],
        num[2],
        num[3],
        num[4],
        s->usage.estimated ? "1" : "0",
        by_name(s->model),
        by_name(s->feature),
        by_name(s->user),
        s->plan ? s->plan : "",
        mday,
        num[10],
        s->unpriced ? "1" : "0",
    };
    if (!(call = call_new(s, t)))
        goto fail;
    call->cb = cb;
    call->arg = arg;
    if (full)
        cmd = redis_eval_stamped(r, &settle_script, on_settled, call, 8, (int)ARRAY_LEN(args), args,
                                 NULL, 8 + 3, stamp);
    else /* cost only: KEYS[1..4] and ARGV[1..11] */
        cmd = redis_eval_stamped(r, &settle_script, on_settled, call, 4, 4 + 11,
                                 (const char *[]){month, day, leases, lease, args[8], args[9],
                                                  args[10], args[11], args[12], args[13], "0",
                                                  num[6], num[7], num[8], num[9]},
                                 NULL, 4 + 3, stamp);
    if (!cmd)
        goto fail;
    /* call belongs to on_settled; if the caller cancels, free it then */
    redis_cmd_set_release(cmd, free);
    note_tenant(r, s);
    return cmd;
fail:
    free(call);
    return NULL;
}

/* ---- admission ---------------------------------------------------------- */

struct admit_call {
    budget_admit_cb cb;
    void *arg;
    time_t when; /* for a block's Retry-After */
    int anchor;
};

static const char *const decisions[] = {
    [BUDGET_ADMIT] = "admit",
    [BUDGET_DOWNGRADE] = "downgrade",
    [BUDGET_BLOCK] = "block",
    [BUDGET_RATE_LIMITED] = "rate_limited",
};

static const char *const reasons[] = {
    [BUDGET_REASON_NONE] = "none",
    [BUDGET_REASON_MONTHLY] = "monthly",
    [BUDGET_REASON_DAILY] = "daily",
    [BUDGET_REASON_HARD] = "hard",
    [BUDGET_REASON_RPM] = "rpm",
    [BUDGET_REASON_TPM] = "tpm",
    [BUDGET_REASON_ALLOWANCE] = "allowance",
    [BUDGET_REASON_USER] = "user",
    [BUDGET_REASON_USER_RPM] = "user_rpm",
};

/* Index of the reply string e in names, or -1. */
static int lookup(const struct redisReply *e, const char *const *names, size_t n)
{
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == e->len && memcmp(names[i], e->str, e->len) == 0)
            return (int)i;
    return -1;
}

/* A reply element as an int64: an integer, or a string of one. */
static int reply_i64(const struct redisReply *e, int64_t *out)
{
    char buf[32], *end;
    if (e->type == REDIS_REPLY_INTEGER) {
        *out = e->integer;
        return 0;
    }
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof(buf))
        return -1;
    memcpy(buf, e->str, e->len);
    buf[e->len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_admit(const struct redisReply *reply, time_t when, int anchor,
                       struct admit_result *res)
{
    int64_t retry_ms;
    int d, why;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 11)
        return -1;
    struct redisReply **e = reply->element;
    if ((d = lookup(e[0], decisions, ARRAY_LEN(decisions))) < 0 ||
        (why = lookup(e[1], reasons, ARRAY_LEN(reasons))) < 0 ||
        reply_i64(e[2], &res->spent_month) < 0 || reply_i64(e[3], &res->reserved_month) < 0 ||
        reply_i64(e[4], &res->spent_day) < 0 || reply_i64(e[5], &retry_ms) < 0 || retry_ms < 0 ||
        retry_ms > 3600 * 1000 || reply_i64(e[6], &res->requests_left) < 0 ||
        reply_i64(e[7], &res->requests_reset_ms) < 0 || reply_i64(e[8], &res->tokens_left) < 0 ||
        reply_i64(e[9], &res->tokens_reset_ms) < 0 || reply_i64(e[10], &res->allowance_used) < 0)
        return -1;
    res->decision = (enum budget_decision)d;
    res->reason = (enum budget_reason)why;
    res->retry_after_ms = retry_ms;
    res->retry_after_s =
        (int)((retry_ms + 999) / 1000); /* Retry-After: whole seconds, rounded up */
    if (res->decision == BUDGET_BLOCK)
        res->retry_after_s =
            (int)clock_to_period_end(when, res->reason == BUDGET_REASON_DAILY ? 'd' : 'm', anchor);
    return 0;
}

static void on_admitted(struct redisReply *reply, const char *err, void *arg)
{
    struct admit_call *call = arg;
    budget_admit_cb cb = call->cb;
    void *cb_arg = call->arg;
    time_t when = call->when;
    int anchor = call->anchor;
    struct admit_result res = {0};
    free(call);
    if (!reply) {
        cb(NULL, err, cb_arg);
        return;
    }
    if (parse_admit(reply, when, anchor, &res) < 0) {
        cb(NULL, "unexpected reply from admit.lua", cb_arg);
        return;
    }
    cb(&res, NULL, cb_arg);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "{prefix}{tenant}:rpm" (or tpm): the rate limit's GCRA state, one number. */
static int rate_key(char *buf, const char *prefix, const char *tenant, const char *kind)
{
    return tenant_key(buf, prefix, tenant, kind);
}

struct redis_cmd *budget_admit(struct redis *r, const struct admit *a, budget_admit_cb cb,
                               void *arg)
{
    char month[KEY_MAX], day[KEY_MAX], leases[KEY_MAX], lease[KEY_MAX];
    char rpm_key[KEY_MAX], tpm_key[KEY_MAX], ucap_key[KEY_MAX], urpm_key[KEY_MAX], usfx[KEY_MAX];
    char num[16][24];
    struct admit_call *call = NULL;
    struct redis_cmd *cmd;

    pthread_once(&scripts_once, prepare_scripts);
    if (!cb || !a->key_prefix || !a->tenant ||
        budget_key(month, sizeof(month), a->key_prefix, a->tenant, 'm',
                   budget_period(a->when, a->anchor)) < 0 ||
        budget_key(day, sizeof(day), a->key_prefix, a->tenant, 'd', a->when) < 0 ||
        lease_keys(a->key_prefix, a->tenant, a->request_id, leases, lease) < 0 ||
        rate_key(rpm_key, a->key_prefix, a->tenant, "rpm") < 0 ||
        rate_key(tpm_key, a->key_prefix, a->tenant, "tpm") < 0 ||
        budget_month_key(ucap_key, sizeof(ucap_key), a->key_prefix, a->tenant, BUDGET_BY_UCAP,
                         budget_period(a->when, a->anchor)) < 0 ||
        !numtext_put_str(numtext_put_str(usfx, usfx + KEY_MAX, "urpm:"), usfx + KEY_MAX,
                         a->user ? a->user : "") ||
        rate_key(urpm_key, a->key_prefix, a->tenant, usfx) < 0)
        goto fail;
    int ttl_s = a->lease_ttl_s > 0 ? a->lease_ttl_s : LEASE_TTL_DEFAULT_S;
    /* Negative caps all mean "none"; the script reads exactly -1 or more. */
    numtext_i64(num[0], a->now_ms > 0 ? a->now_ms : wall_ms());
    numtext_i64(num[1], (int64_t)ttl_s * 1000);
    numtext_i64(num[2], at_least(a->estimate, 0));
    numtext_i64(num[3], at_least(a->estimate_down, -1));
    numtext_i64(num[4], at_least(a->cap_monthly, -1));
    numtext_i64(num[5], at_least(a->cap_daily, -1));
    numtext_i64(num[6], at_least(a->hard_limit, -1));
    numtext_i64(num[7], at_least(a->rpm, 0));
    numtext_i64(num[8], at_least(a->tpm, 0));
    numtext_i64(num[9], at_least(a->est_tokens, 0));
    bool allow = a->included >= 0 && a->on_allowance != ON_ALLOWANCE_UNSET;
    numtext_i64(num[10], allow ? a->included : -1);
    numtext_i64(num[11], at_least(a->est_units, 0));
    const char *policy = !allow                                      ? "-"
                         : a->on_allowance == ON_ALLOWANCE_BLOCK     ? "block"
                         : a->on_allowance == ON_ALLOWANCE_DOWNGRADE ? "downgrade"
                                                                     : "overage";
    /* the end user's caps: only with a user, whose id is a hash field */
    bool user = a->user && *a->user && !strpbrk(a->user, " |");
    numtext_i64(num[12], user ? at_least(a->cap_user, -1) : -1);
    numtext_i64(num[13], user ? at_least(a->user_rpm, 0) : 0);
    /* KEYS[1..8], then ARGV[1..18], as admit.lua lists them */
    const char *args[] = {
        month,
        day,
        leases,
        lease,
        rpm_key,
        tpm_key,
        ucap_key,
        urpm_key,
        a->request_id,
        num[0],
        num[1],
        num[2],
        num[3],
        num[4],
        num[5],
        num[6],
        num[7],
        num[8],
        num[9],
        num[10],
        num[11],
        policy,
        a->caps_block ? "0" : "1",
        user ? a->user : "",
        num[12],
        num[13],
    };
    if (!(call = malloc(sizeof(*call))))
        goto fail;
    call->cb = cb;
    call->arg = arg;
    call->when = a->when;
    call->anchor = a->anchor;
    cmd = redis_eval(r, &admit_script, on_admitted, call, 8, (int)ARRAY_LEN(args), args, NULL);
    if (!cmd)
        goto fail;
    /* call belongs to on_admitted; if the caller cancels, free it then */
    redis_cmd_set_release(cmd, free);
    return cmd;
fail:
    free(call);
    return NULL;
}

struct releasing {
    budget_cb cb;
    void *arg;
};

static void on_released(struct redisReply *reply, const char *err, void *arg)
{
    struct releasing *rl = arg;
    if (!reply)
        log_debug("budget: release not done (%s)", err ? err : "?");
    if (rl) {
        if (rl->cb)
            rl->cb(reply != NULL, err, rl->arg);
        free(rl);
    }
}

static void on_renewed(struct redisReply *reply, const char *err, void *arg)
{
    if (!reply)
        log_debug("budget: lease renewal not done (%s)", err ? err : "?");
}

bool budget_renew(struct redis *r, const char *key_prefix, const char *tenant,
                  const char *const *ids, size_t n, int ttl_s)
{
    char leases[KEY_MAX], lease[KEY_MAX], exp[24];
    if (n == 0 || n > 1000 || lease_keys(key_prefix, tenant, ids[0], leases, lease) < 0)
        return false;
    snprintf(exp, sizeof(exp), "%" PRId64, wall_ms() + (int64_t)ttl_s * 1000);
    const char **argv = malloc((3 + 2 * n) * sizeof(*argv));
    if (!argv)
        return false;
    argv[0] = "ZADD";
    argv[1] = leases;
    argv[2] = "XX";
    for (size_t i = 0; i < n; i++) {
        argv[3 + 2 * i] = exp;
        argv[4 + 2 * i] = ids[i];
    }
    struct redis_cmd *c = redis_command(r, on_renewed, NULL, (int)(3 + 2 * n), argv, NULL);
    free(argv);
    return c != NULL;
}

struct redis_cmd *budget_release(struct redis *r, const char *key_prefix, const char *tenant,
                                 const char *request_id, budget_cb cb, void *arg)
{
    char leases[KEY_MAX], lease[KEY_MAX], now[24];

    pthread_once(&scripts_once, prepare_scripts);
    if (lease_keys(key_prefix, tenant, request_id, leases, lease) < 0)
        return NULL;
    snprintf(now, sizeof(now), "%" PRId64, wall_ms());
    struct releasing *rl = malloc(sizeof(*rl));
    if (!rl)
        return NULL;
    *rl = (struct releasing){cb, arg};
    const char *args[] = {leases, lease, request_id, now};
    struct redis_cmd *cmd =
        redis_eval(r, &release_script, on_released, rl, 2, (int)ARRAY_LEN(args), args, NULL);
    if (!cmd)
        free(rl);
    else
        redis_cmd_set_release(cmd, free); /* a cancelled release frees its context */
    return cmd;
}
