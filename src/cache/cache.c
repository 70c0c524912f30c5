/* cache.c: the response cache's rules, keys, entries and Redis commands
 * (cache.h). The proxy decides when to call them; everything about what a
 * key or an entry is lives here. */
#include "cache/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/sse.h"
#include "providers/provider.h"
#include "redis/redis.h"

#define ENTRY_MAGIC "TGC1" /* bump when the entry format changes: old ones read as corrupt */

extern const char lua_cache_lookup[];
extern const char lua_cache_store[];

static struct redis_script lookup_script = {"cache_lookup", lua_cache_lookup, ""};
static struct redis_script store_script = {"cache_store", lua_cache_store, ""};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void prepare_scripts(void)
{
    redis_script_prepare(&lookup_script);
    redis_script_prepare(&store_script);
}

void cache_prepare(void)
{
    pthread_once(&scripts_once, prepare_scripts);
}

int cache_parse_ask(const char *value, enum cache_ask *out)
{
    static const struct {
        const char *name;
        enum cache_ask ask;
    } names[] = {{"on", CACHE_ASK_ON}, {"off", CACHE_ASK_OFF}, {"refresh", CACHE_ASK_REFRESH}};
    *out = CACHE_ASK_NONE;
    if (!value)
        return 0;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (strcasecmp(value, names[i].name) == 0) {
            *out = names[i].ask;
            return 0;
        }
    }
    return -1;
}

const char *cache_verdict_name(enum cache_verdict v)
{
    return v == CACHE_HIT ? "hit" : v == CACHE_MISS ? "miss" : "bypass";
}

bool cache_applies(const struct config *cfg, const struct cfg_plan *plan, const char *tenant,
                   enum cache_ask ask)
{
    if (!cfg->cache_enabled || ask == CACHE_ASK_OFF)
        return false;
    const struct cfg_tenant *t = config_tenant(cfg, tenant);
    enum cache_mode mode = t && t->cache != CACHE_MODE_PLAN ? t->cache : plan->cache;
    switch (mode) {
    case CACHE_MODE_ON:
        return true;
    case CACHE_MODE_ASK:
        return ask == CACHE_ASK_ON || ask == CACHE_ASK_REFRESH;
    case CACHE_MODE_PLAN:
    case CACHE_MODE_OFF:
        break;
    }
    return false;
}

bool cache_cacheable(const struct provider_call *call, const struct cache_body_facts *facts,
                     unsigned allow)
{
    if (!call->metered)
        return false;
    unsigned why = facts->why;
    /* several answers sampled at a temperature are meant to differ (the
     * providers' default temperature is above 0) */
    if (call->choices > 1 && (!facts->has_temperature || facts->temperature > 0))
        why |= CACHE_WHY_SAMPLED;
    return (why & ~(allow & ~(unsigned)CACHE_WHY_REFUSAL)) == 0;
}

struct answer_walk {
    const struct cache_rules *rules;
    unsigned why;
};

static void on_answer_event(const struct sse_event *ev, void *arg)
{
    struct answer_walk *a = arg;
    struct cache_body_facts f;
    size_t i = 0;
    while (i < ev->data_len && strchr(" \t\r\n", ev->data[i]) && ev->data[i])
        i++;
    /* JSON events only ([DONE] and the like say nothing of the answer) */
    if (i < ev->data_len && (ev->data[i] == '{' || ev->data[i] == '[')) {
        int rc = cache_body_facts(ev->data, ev->data_len, a->rules, &f);
        (void)rc; /* what was found before a fault still counts */
        a->why |= f.why;
    }
}

bool cache_answer_storable(const char *answer, size_t len, bool stream,
                           const struct cache_rules *rules, unsigned allow)
{
    struct answer_walk a = {.rules = rules};
    if (stream) {
        struct sse_parser p;
        sse_init(&p, len + 1, false);
        int rc = sse_feed(&p, answer, len, on_answer_event, &a);
        sse_finish(&p, NULL, NULL);
        sse_free(&p);
        if (rc < 0)
            return false;
    } else {
        struct cache_body_facts f;
        if (cache_body_facts(answer, len, rules, &f) < 0)
            return false;
        a.why = f.why;
    }
    return (a.why & ~(allow & ~(unsigned)CACHE_WHY_REFUSAL)) == 0;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int cache_key(char *out, size_t n, const char *prefix, const char *tenant, const char *provider,
              const char *upstream, const char *path, const char *query, bool stream,
              const unsigned char digest[CACHE_DIGEST_LEN])
{
    if (tenant && strpbrk(tenant, "{}"))
        return -1;
    /* every part ends with a NUL, so no two lists of parts hash alike */
    const char *parts[] = {"tollgate-cache-1",     provider, upstream, path, query ? query : "",
                           stream ? "sse" : "json"};
    unsigned char d[CACHE_DIGEST_LEN];
    unsigned int len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < ARRAY_LEN(parts); i++)
        ok = EVP_DigestUpdate(md, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestUpdate(md, digest, CACHE_DIGEST_LEN) == 1 &&
         EVP_DigestFinal_ex(md, d, &len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return -1;
    char h[2 * CACHE_DIGEST_LEN + 1];
    hex(d, sizeof(d), h);
    /* the hash tag keeps an entry and its lock in one cluster slot */
    int w = tenant ? snprintf(out, n, "%s{%s}:cache:%s", prefix, tenant, h)
                   : snprintf(out, n, "%s{cache:%s}", prefix, h);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

int cache_digest_buffer(struct evbuffer *body, const struct cache_rules *rules,
                        const char *endpoint, unsigned char digest[CACHE_DIGEST_LEN],
                        struct cache_body_facts *facts)
{
    size_t n = evbuffer_get_length(body);
    const unsigned char *p = evbuffer_pullup(body, -1);
    if ((!p && n) || cache_body_digest((const char *)p, n, digest, rules, facts) < 0)
        return -1;
    for (size_t i = 0; rules && i < rules->n; i++)
        if (!rules->rows[i].path && rules->rows[i].endpoint &&
            provider_path_match(rules->rows[i].endpoint, endpoint) > 0)
            facts->why |= rules->rows[i].why;
    return 0;
}

/* ---- entries ---- */

static int sha_hex(const char *data, size_t len, char out[2 * CACHE_DIGEST_LEN + 1])
{
    unsigned char d[CACHE_DIGEST_LEN];
    unsigned int n = 0;
    if (EVP_Digest(data, len, d, &n, EVP_sha256(), NULL) != 1)
        return -1;
    hex(d, sizeof(d), out);
    return 0;
}

char *cache_entry_build(const char *answer, size_t len, bool stream, size_t *out_len)
{
    char sum[2 * CACHE_DIGEST_LEN + 1], head[128];
    if (sha_hex(answer, len, sum) < 0)
        return NULL;
    int h = snprintf(head, sizeof(head), ENTRY_MAGIC " %c %zu %s\n", stream ? 's' : 'j', len, sum);
    if (h < 0 || (size_t)h >= sizeof(head))
        return NULL;
    char *e = malloc((size_t)h + len);
    if (!e)
        return NULL;
    memcpy(e, head, (size_t)h);
    memcpy(e + h, answer, len);
    *out_len = (size_t)h + len;
    return e;
}

int cache_entry_parse(const char *entry, size_t n, bool stream, const char **answer, size_t *len)
{
    const char *nl = memchr(entry, '\n', n < 128 ? n : 128);
    if (!nl)
        return -1;
    char head[128], kind, sum[2 * CACHE_DIGEST_LEN + 1], want[2 * CACHE_DIGEST_LEN + 1];
    size_t hl = (size_t)(nl - entry), body_len;
    memcpy(head, entry, hl);
    head[hl] = '\0';
    int used = 0;
    if (sscanf(head, ENTRY_MAGIC " %c %zu %64[0-9a-f]%n", &kind, &body_len, sum, &used) != 3 ||
        (size_t)used != hl || kind != (stream ? 's' : 'j') || body_len != n - hl - 1)
        return -1;
    if (sha_hex(nl + 1, body_len, want) < 0 || strcmp(want, sum) != 0)
        return -1;
    *answer = nl + 1;
    *len = body_len;
    return 0;
}

void cache_keep(struct cache_call *c, const char *buf, size_t len)
{
    if (!c->answer)
        return;
    if (evbuffer_get_length(c->answer) + len > c->max_entry || evbuffer_add(c->answer, buf, len)) {
        evbuffer_free(c->answer); /* too big to keep: never more than max_entry held */
        c->answer = NULL;
    }
}

/* ---- Redis ---- */

struct lookup {
    cache_lookup_cb cb;
    void *arg;
    bool stream;
    struct redis *r;
    char key[CACHE_KEY_MAX];
};

static void on_dropped(struct redisReply *reply, const char *err, void *arg)
{
    if (err)
        log_debug("cache: a corrupt entry was not deleted (%s); it expires", err);
}

static void drop_corrupt(struct redis *r, const char *key)
{
    const char *argv[] = {"DEL", key};
    struct redis_cmd *c = redis_command(r, on_dropped, NULL, 2, argv, NULL);
    if (!c)
        log_debug("cache: a corrupt entry could not be deleted now (it expires)");
}

static void on_lookup(struct redisReply *reply, const char *err, void *arg)
{
    struct lookup *l = arg;
    enum cache_found found = CACHE_UNREACHABLE;
    const char *answer = NULL;
    size_t len = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        long long code = reply->element[0]->integer;
        if (code == 1 && reply->elements == 2 && reply->element[1]->type == REDIS_REPLY_STRING) {
            if (cache_entry_parse(reply->element[1]->str, reply->element[1]->len, l->stream,
                                  &answer, &len) == 0) {
                found = CACHE_FOUND;
            } else {
                drop_corrupt(l->r, l->key);
                found = CACHE_CORRUPT;
            }
        } else if (code == 2) {
            found = CACHE_LEAD;
        } else if (code == 3) {
            found = CACHE_WAIT;
        } else if (code == 0) {
            found = CACHE_ABSENT;
        }
    } else if (err) {
        log_debug("cache: lookup failed (%s): a miss", err);
    }
    l->cb(found, answer, len, l->arg);
    free(l);
}

struct redis_cmd *cache_lookup(struct redis *r, const char *key, bool stream, const char *owner,
                               int lock_ms, cache_lookup_cb cb, void *arg)
{
    cache_prepare();
    struct lookup *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->cb = cb;
    l->arg = arg;
    l->stream = stream;
    l->r = r;
    snprintf(l->key, sizeof(l->key), "%s", key);
    char lock[CACHE_KEY_MAX + 8], ms[24];
    snprintf(lock, sizeof(lock), "%s:lock", key);
    snprintf(ms, sizeof(ms), "%d", lock_ms > 0 ? lock_ms : 0);
    const char *args[] = {key, lock, owner, ms};
    struct redis_cmd *c = redis_eval(r, &lookup_script, on_lookup, l, 2, 4, args, NULL);
    if (!c) {
        free(l);
        return NULL;
    }
    redis_cmd_set_release(c, free);
    return c;
}

static void mem_full(long long used, long long max);

static void on_stored(struct redisReply *reply, const char *err, void *arg)
{
    if (err)
        log_debug("cache: an entry was not stored (%s)", err);
    else if (arg && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        mem_full(-1, -1); /* the script found no room for it */
}

bool cache_store(struct redis *r, const char *key, const char *entry, size_t len, int ttl_ms,
                 const char *owner, int fill_pct)
{
    cache_prepare();
    char lock[CACHE_KEY_MAX + 8], ms[24], pct[16];
    snprintf(lock, sizeof(lock), "%s:lock", key);
    snprintf(ms, sizeof(ms), "%d", ttl_ms);
    snprintf(pct, sizeof(pct), "%d", fill_pct);
    const char *args[] = {key, lock, entry ? entry : "", ms, owner, pct};
    size_t lens[] = {strlen(key), strlen(lock),  entry ? len : 0,
                     strlen(ms),  strlen(owner), strlen(pct)};
    /* arg: an entry was sent (a 0 then means no room) */
    struct redis_cmd *c =
        redis_eval(r, &store_script, on_stored, entry ? (void *)r : NULL, 2, 6, args, lens);
    return c != NULL;
}

/* ---- Redis memory: the cache never pushes the budget counters out ----
 *
 * The counters live in the same Redis and carry TTLs (a month, a day, a
 * rate window), so only maxmemory-policy noeviction keeps them: any other
 * policy may evict them once the cache fills memory. And under noeviction
 * a full Redis refuses the counters' writes. So an entry is stored only
 * under noeviction and below CACHE_FILL_PCT of maxmemory; entries then
 * leave by their TTL. The store script checks it exactly (INFO memory, in
 * the script) whenever Redis may be near the mark; to spare that INFO on
 * every store, a worker reads INFO memory at most once a second, and while
 * Redis stays below half of maxmemory counting every entry sent since that
 * read (or has no maxmemory), stores skip the check. */

#define CACHE_MEM_CHECK_MS 1000
#define CACHE_FILL_PCT 80
#define CACHE_FULL_PCT 75 /* INFO said this much: stores stop until it is below */

enum mem_state {
    MEM_UNKNOWN, /* not read yet, or INFO refused (an ACL): the script checks */
    MEM_ROOM,    /* noeviction: mem_used and mem_max say how near the mark */
    MEM_FULL,    /* the script found no room, or above CACHE_FULL_PCT: nothing is stored */
    MEM_EVICTS,  /* a policy other than noeviction: nothing is stored */
};

static _Atomic long long mem_asked_ms = -CACHE_MEM_CHECK_MS;
static _Atomic int mem_state = MEM_UNKNOWN;
static _Atomic long long mem_used, mem_max; /* INFO's last word; max 0: none */
static _Atomic long long mem_sent;          /* entry bytes sent since */

/* The number after name in INFO's text; -1 when absent. */
static long long info_number(const char *info, const char *name)
{
    const char *p = strstr(info, name);
    return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

static void on_info(struct redisReply *reply, const char *err, void *arg)
{
    if (!reply || reply->type != REDIS_REPLY_STRING) {
        log_debug("cache: INFO memory not read (%s)", err ? err : "no text");
        atomic_store(&mem_state, MEM_UNKNOWN);
        return;
    }
    long long used = info_number(reply->str, "\nused_memory:");
    long long max = info_number(reply->str, "\nmaxmemory:");
    const char *pol = strstr(reply->str, "\nmaxmemory_policy:");
    char policy[32] = "";
    if (pol)
        sscanf(pol + strlen("\nmaxmemory_policy:"), "%31[a-z-]", policy);
    enum mem_state now = MEM_ROOM;
    if (policy[0] && strcmp(policy, "noeviction") != 0)
        now = MEM_EVICTS;
    else if (max > 0 && used >= max / 100 * CACHE_FULL_PCT)
        now = MEM_FULL;
    atomic_store(&mem_used, used);
    atomic_store(&mem_max, max > 0 ? max : 0);
    atomic_store(&mem_sent, 0);
    if (now == MEM_FULL) {
        mem_full(used, max);
        return;
    }
    int was = atomic_exchange(&mem_state, (int)now);
    if (was == (int)now)
        return;
    if (now == MEM_EVICTS)
        log_warn("cache: Redis maxmemory-policy is %s: it may evict tollgate's budget counters "
                 "(set noeviction); the response cache stores no entries meanwhile",
                 policy);
    else if (was == MEM_FULL || was == MEM_EVICTS)
        log_info("cache: Redis has room again: the response cache stores entries");
}

/* Redis is near its maxmemory (used and max: -1 when the script said so). */
static void mem_full(long long used, long long max)
{
    if (atomic_exchange(&mem_state, MEM_FULL) == MEM_FULL)
        return;
    if (used >= 0)
        log_warn("cache: Redis uses %lld of its maxmemory %lld bytes: the response cache stores "
                 "no entries until it is below %d%%, so the budget counters keep room",
                 used, max, CACHE_FULL_PCT);
    else
        log_warn("cache: an entry would take Redis past %d%% of its maxmemory: the response "
                 "cache stores no entries until it is below %d%%, so the budget counters keep "
                 "room",
                 CACHE_FILL_PCT, CACHE_FULL_PCT);
}

/* Reads INFO memory when the last read is older than CACHE_MEM_CHECK_MS. */
static void mem_check(struct redis *r)
{
    long long now = clock_mono_ms(), last = atomic_load(&mem_asked_ms);
    if (now - last < CACHE_MEM_CHECK_MS ||
        !atomic_compare_exchange_strong(&mem_asked_ms, &last, now))
        return;
    const char *argv[] = {"INFO", "memory"};
    if (!redis_command(r, on_info, NULL, 2, argv, NULL))
        atomic_store(&mem_asked_ms, last); /* Redis cannot take it now: the next call asks */
}

/* The store script's fill mark for an entry of len bytes (percent; 0: no
 * check), or -1: store nothing. */
static int mem_mark(size_t len)
{
    long long max = atomic_load(&mem_max);
    switch ((enum mem_state)atomic_load(&mem_state)) {
    case MEM_ROOM:
        if (max == 0 || atomic_load(&mem_used) + atomic_load(&mem_sent) + (long long)len < max / 2)
            return 0;
        return CACHE_FILL_PCT;
    case MEM_UNKNOWN:
        return CACHE_FILL_PCT;
    case MEM_FULL:
    case MEM_EVICTS:
        break;
    }
    return -1;
}

/* ---- one request's call ---- */

static void look(struct cache_call *c);

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
    struct cache_call *c = arg;
    event_free(c->timer);
    c->timer = NULL;
    look(c);
}

/* Single flight: another request is fetching this answer; look again soon
 * (25 ms, growing: few looks for a slow answer), until [cache] wait has
 * passed. Returns -1 when the wait is over. */
static int wait_more(struct cache_call *c)
{
    int wait = c->env.cfg->cache_wait_ms, step = 25 + c->waited_ms / 4;
    if (c->waited_ms >= wait)
        return -1;
    if (step > wait - c->waited_ms)
        step = wait - c->waited_ms;
    struct timeval tv = {step / 1000, (step % 1000) * 1000};
    if (!(c->timer = evtimer_new(c->env.base, on_wait, c)) || evtimer_add(c->timer, &tv) < 0) {
        if (c->timer)
            event_free(c->timer);
        c->timer = NULL;
        return -1;
    }
    c->waited_ms += step;
    return 0;
}

static void on_found(enum cache_found found, const char *answer, size_t len, void *arg)
{
    struct cache_call *c = arg;
    c->cmd = NULL;
    switch (found) {
    case CACHE_FOUND:
        if ((c->hit = malloc(len ? len : 1))) {
            memcpy(c->hit, answer, len);
            c->hit_len = len;
            c->verdict = CACHE_HIT;
            c->keep = false;
        }
        break;
    case CACHE_WAIT:
        if (wait_more(c) == 0)
            return;
        break; /* waited long enough: a miss of its own */
    case CACHE_LEAD:
        c->lead = true;
        break;
    case CACHE_CORRUPT:
        req_log(LOG_WARN, c->env.owner, "cache: a stored entry failed its check: dropped, a miss");
        metrics_inc(c->env.metrics, METRIC_CACHE_CORRUPT, 1);
        break;
    case CACHE_ABSENT:
    case CACHE_UNREACHABLE: /* Redis away: a miss, never an error */
        break;
    }
    c->ready(c->arg);
}

static void look(struct cache_call *c)
{
    mem_check(c->env.redis);
    c->cmd = cache_lookup(c->env.redis, c->key, c->stream, c->env.owner, c->env.cfg->cache_wait_ms,
                          on_found, c);
    if (!c->cmd)
        on_found(CACHE_UNREACHABLE, NULL, 0, c);
}

static void begin(struct cache_call *c, const struct cache_env *env, bool stream)
{
    c->env = *env;
    c->verdict = CACHE_MISS;
    c->stream = stream;
    c->max_entry = env->cfg->cache_max_entry;
    c->keep = true;
}

void cache_start(struct cache_call *c, const struct cache_env *env, bool stream,
                 void (*ready)(void *arg), void *arg)
{
    begin(c, env, stream);
    c->ready = ready;
    c->arg = arg;
    look(c);
}

void cache_refresh(struct cache_call *c, const struct cache_env *env, bool stream)
{
    begin(c, env, stream);
}

void cache_stop(struct cache_call *c)
{
    if (c->cmd) {
        redis_cancel(c->cmd);
        c->cmd = NULL;
    }
    if (c->timer) {
        event_free(c->timer);
        c->timer = NULL;
    }
}

void cache_finish(struct cache_call *c, bool whole)
{
    cache_stop(c);
    whole = whole && c->answer;
    if (whole) {
        const char *bytes = (const char *)evbuffer_pullup(c->answer, -1);
        size_t len = evbuffer_get_length(c->answer);
        if ((bytes || len == 0) &&
            !cache_answer_storable(bytes ? bytes : "", len, c->stream, c->env.answer_rules,
                                   c->env.cfg->cache_allow)) {
            req_log(LOG_DEBUG, c->env.owner,
                    "cache: a refusal or an answer that may not be given twice: not stored");
            metrics_inc(c->env.metrics, METRIC_CACHE_REFUSED, 1);
            whole = false;
        }
    }
    if (whole) /* not for a bypass: it has no env */
        mem_check(c->env.redis);
    int mark = whole ? mem_mark(evbuffer_get_length(c->answer)) : 0;
    whole = whole && mark >= 0; /* else the lock alone is released */
    if (whole || c->lead) {
        char *entry = NULL;
        size_t n = 0, len = whole ? evbuffer_get_length(c->answer) : 0;
        const char *bytes = whole ? (const char *)evbuffer_pullup(c->answer, -1) : NULL;
        if (whole && (bytes || len == 0))
            entry = cache_entry_build(bytes ? bytes : "", len, c->stream, &n);
        if (cache_store(c->env.redis, c->key, entry, n, c->env.cfg->cache_ttl_ms, c->env.owner,
                        mark) &&
            entry) {
            atomic_fetch_add(&mem_sent, (long long)n);
            metrics_inc(c->env.metrics, METRIC_CACHE_STORED, 1);
        }
        free(entry);
    }
    if (c->answer)
        evbuffer_free(c->answer);
    c->answer = NULL;
    free(c->hit);
    c->hit = NULL;
    c->lead = false;
}
