/* budget.c: settles a request's cost and tokens into its tenant's month and
 * day counters in Redis, exactly once per request id, with one Lua script
 * (src/lua/settle.lua, embedded by scripts/embed-lua.sh). Keys are built
 * here and only here, so the layout documented in budget.h has one source. */
#include "budget.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis.h"

#define SETTLED_TTL_S (8 * 24 * 3600) /* retries of a request end well within this */
#define KEY_MAX 512

extern const char lua_settle[];

static struct redis_script settle_script = {"settle", lua_settle, ""};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

/* The sha is computed once, before any worker reads it. */
static void prepare_scripts(void)
{
    redis_script_prepare(&settle_script);
}

int budget_key(char *buf, size_t n, const char *prefix, const char *tenant, char kind, time_t when)
{
    struct tm tm;
    int len;
    if (!prefix || !tenant || strpbrk(tenant, "{}") || !gmtime_r(&when, &tm))
        return -1;
    if (kind == 'm')
        len = snprintf(buf, n, "%s{%s}:m:%04d-%02d", prefix, tenant, tm.tm_year + 1900,
                       tm.tm_mon + 1);
    else if (kind == 'd')
        len = snprintf(buf, n, "%s{%s}:d:%04d-%02d-%02d", prefix, tenant, tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday);
    else
        return -1;
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

static int settled_key(char *buf, size_t n, const char *prefix, const char *tenant, const char *id)
{
    if (!id || !*id || strpbrk(tenant, "{}"))
        return -1;
    int len = snprintf(buf, n, "%s{%s}:settled:%s", prefix, tenant, id);
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

struct settle_call {
    budget_cb cb;
    void *arg;
};

static void on_settled(struct redisReply *reply, const char *err, void *arg)
{
    struct settle_call *call = arg;
    budget_cb cb = call->cb;
    void *cb_arg = call->arg;
    free(call);
    if (!reply) {
        cb(false, err, cb_arg);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        cb(false, "unexpected reply from settle.lua", cb_arg);
        return;
    }
    /* 1: settled now, 0: a duplicate; both leave the counters right */
    cb(true, NULL, cb_arg);
}

struct redis_cmd *budget_settle(struct redis *r, const struct settle *s, budget_cb cb, void *arg)
{
    char marker[KEY_MAX], month[KEY_MAX], day[KEY_MAX];
    char num[6][24];
    struct settle_call *call = NULL;
    struct redis_cmd *cmd;

    pthread_once(&scripts_once, prepare_scripts);
    if (!s->key_prefix || !s->tenant ||
        budget_key(month, sizeof(month), s->key_prefix, s->tenant, 'm', s->when) < 0 ||
        budget_key(day, sizeof(day), s->key_prefix, s->tenant, 'd', s->when) < 0 ||
        settled_key(marker, sizeof(marker), s->key_prefix, s->tenant, s->request_id) < 0)
        goto fail;
    snprintf(num[0], sizeof(num[0]), "%" PRId64, (int64_t)s->cost);
    snprintf(num[1], sizeof(num[1]), "%" PRId64, s->usage.input);
    snprintf(num[2], sizeof(num[2]), "%" PRId64, s->usage.cached);
    snprintf(num[3], sizeof(num[3]), "%" PRId64, s->usage.output);
    snprintf(num[4], sizeof(num[4]), "%" PRId64, s->usage.reasoning);
    snprintf(num[5], sizeof(num[5]), "%d", SETTLED_TTL_S);
    const char *args[] = {
        marker, month, day, num[0], num[1], num[2], num[3], num[4], s->usage.estimated ? "1" : "0",
        num[5],
    };
    if (!(call = malloc(sizeof(*call))))
        goto fail;
    call->cb = cb;
    call->arg = arg;
    cmd = redis_eval(r, &settle_script, on_settled, call, 3, (int)ARRAY_LEN(args), args, NULL);
    if (!cmd)
        goto fail;
    /* call belongs to on_settled; if the caller cancels, free it then */
    redis_cmd_set_release(cmd, free);
    return cmd;
fail:
    free(call);
    return NULL;
}
