/* cache.h: the response cache ([cache], plan and tenant `cache`, the
 * X-Tollgate-Cache request header): whether a request may be answered from
 * it, its Redis key, the stored entry (checked when read), and the Redis
 * commands that read, keep and lock entries through the worker's connection.
 * A Redis that is away or slow is a miss, never an error. Single flight:
 * the first miss of a key takes a short lock; identical misses meanwhile
 * wait for its entry, boundedly ([cache] wait), then go upstream themselves.
 * The proxy (proxy.c) drives one struct cache_call per request. */
#ifndef TOLLGATE_CACHE_H
#define TOLLGATE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cache/cache_key.h"
#include "core/config.h"
#include "core/util.h"

struct evbuffer;
struct event;
struct event_base;
struct metrics;
struct redis;
struct redis_cmd;
struct provider_call;

#define CACHE_HEADER "X-Tollgate-Cache"
#define CACHE_KEY_MAX (CONFIG_KEY_PREFIX_MAX + 129 + 2 * CACHE_DIGEST_LEN + 32)

/* What the request's X-Tollgate-Cache header asked. */
enum cache_ask {
    CACHE_ASK_NONE,    /* no header: the plan decides */
    CACHE_ASK_ON,      /* answer from the cache when it can */
    CACHE_ASK_OFF,     /* never: bypass */
    CACHE_ASK_REFRESH, /* fetch upstream and replace the entry */
};

/* How the request met the cache; its name is the X-Tollgate-Cache answer. */
enum cache_verdict {
    CACHE_BYPASS, /* not looked up: off for the tenant or the request, or not cacheable */
    CACHE_MISS,   /* looked up (or refreshed) and answered upstream */
    CACHE_HIT,    /* answered from a stored entry */
};

/* "bypass", "miss", "hit". */
const char *cache_verdict_name(enum cache_verdict v);

/* What a request's cache call works with: the worker's and the request's;
 * all must outlive the call (until cache_finish). */
struct cache_env {
    struct redis *redis;
    struct event_base *base;
    struct metrics *metrics;
    const char *owner; /* the request id: the lock's owner, the logs */
    const struct config *cfg;
    const struct cache_rules *answer_rules; /* the provider's: what is never stored */
};

/* A request's cache state, owned by its struct req (zeroed: a bypass). */
struct cache_call {
    enum cache_verdict verdict;
    bool stream;             /* the entry is an SSE stream, else one JSON answer */
    bool lead;               /* holds the single-flight lock of key */
    bool keep;               /* the answer is to be stored if it ends well */
    int waited_ms;           /* single flight: time spent waiting so far */
    struct evbuffer *answer; /* the answer's bytes being kept; NULL: none (or too big) */
    size_t max_entry;        /* from [cache] max_entry */
    char *hit;               /* the stored answer being replayed (malloc'd) */
    size_t hit_len;
    struct redis_cmd *cmd; /* lookup in flight */
    struct event *timer;   /* single flight: the next look */
    struct cache_env env;
    void (*ready)(void *arg); /* the lookup ended (cache_start) */
    void *arg;
    char key[CACHE_KEY_MAX];
};

/* Looks c->key (set by cache_key) up; ready(arg) then runs exactly once,
 * from a later callback, or at once when Redis cannot take the command now
 * (a miss). c->verdict is then CACHE_HIT with c->hit, or CACHE_MISS (with
 * c->lead when this request fetches the answer for the others). A corrupt
 * entry is dropped, logged and counted; a request fetching the same answer
 * is waited for up to [cache] wait; Redis away is a miss. */
void cache_start(struct cache_call *c, const struct cache_env *env, bool stream,
                 void (*ready)(void *arg), void *arg);
/* A refresh: no lookup, a miss whose answer replaces the entry. */
void cache_refresh(struct cache_call *c, const struct cache_env *env, bool stream);
/* Stops a lookup or a wait in progress: ready will not run. */
void cache_stop(struct cache_call *c);
/* The request ended: its kept answer is stored when whole (the proxy's
 * verdict on how it ended), the lock released, memory freed. A bypass is
 * a no-op. */
void cache_finish(struct cache_call *c, bool whole);

/* Parses the X-Tollgate-Cache request header (NULL: absent). Returns 0, or -1
 * for a value other than on, off, refresh (any case). */
int cache_parse_ask(const char *value, enum cache_ask *out) MUST_CHECK;

/* Whether the cache serves this tenant on this request: [cache] enabled,
 * then the tenant's cache (plan: the plan's), then the header: plan `on`
 * caches unless the request says off; `ask` caches only requests that say
 * on or refresh; `off` never (the header is then ignored: bypass). */
bool cache_applies(const struct config *cfg, const struct cfg_plan *plan, const char *tenant,
                   enum cache_ask ask);

/* Whether an answer to this request can be given twice: a metered call
 * none of whose reasons (facts->why from the provider's request rules, and
 * n > 1 with a temperature above 0 or unset) is outside allow ([cache]
 * allow, enum cache_why bits). */
bool cache_cacheable(const struct provider_call *call, const struct cache_body_facts *facts,
                     unsigned allow);

/* Whether a whole answer (JSON, or SSE when stream: each event's data) may
 * be stored: none of rules matches it outside allow (a refusal never may),
 * and a JSON answer is JSON. */
bool cache_answer_storable(const char *answer, size_t len, bool stream,
                           const struct cache_rules *rules, unsigned allow);

/* Writes the Redis key of an entry: the tenant's (tenant NULL: shared by
 * every tenant), for provider, upstream, path and query (NULL: none), stream
 * or not, and the body's canonical digest. Returns -1 when out is too small
 * or the tenant holds a brace. */
int cache_key(char *out, size_t n, const char *prefix, const char *tenant, const char *provider,
              const char *upstream, const char *path, const char *query, bool stream,
              const unsigned char digest[CACHE_DIGEST_LEN]) MUST_CHECK;

/* The canonical digest of a request body as it lies in an evbuffer (made
 * contiguous), with the facts of the provider's request rules: the body's,
 * and the rows for endpoint. 0 or -1 as cache_body_digest. */
int cache_digest_buffer(struct evbuffer *body, const struct cache_rules *rules,
                        const char *endpoint, unsigned char digest[CACHE_DIGEST_LEN],
                        struct cache_body_facts *facts) MUST_CHECK;

/* ---- entries ---- */

/* Builds the stored form of an answer: a checked header line (version,
 * kind, length, SHA-256 of the answer) and the bytes. malloc'd, *out_len
 * its length; NULL when out of memory. */
char *cache_entry_build(const char *answer, size_t len, bool stream, size_t *out_len);
/* Checks a stored entry: 0 with *answer, *len pointing into entry when it
 * is whole and of the kind expected; -1 when corrupt (cut, altered, another
 * version or kind). */
int cache_entry_parse(const char *entry, size_t n, bool stream, const char **answer,
                      size_t *len) MUST_CHECK;

/* Keeps len more bytes of the answer in c->answer, or drops the copy for
 * good once it would pass max_entry (never more is held). */
void cache_keep(struct cache_call *c, const char *buf, size_t len);

/* ---- Redis ---- */

/* The result of a lookup. */
enum cache_found {
    CACHE_FOUND,      /* the entry: answer/len valid during the callback only */
    CACHE_LEAD,       /* none; this request took the lock and fetches it */
    CACHE_WAIT,       /* none; another request holds the lock and is fetching it */
    CACHE_ABSENT,     /* none, no lock asked for (wait 0) */
    CACHE_CORRUPT,    /* an entry failed its check: it was deleted */
    CACHE_UNREACHABLE /* Redis did not answer (or refused): a miss */
};
typedef void (*cache_lookup_cb)(enum cache_found found, const char *answer, size_t len, void *arg);

/* Looks key up and, when absent and lock_ms > 0, takes its lock for owner
 * (the request id) for lock_ms. Returns the command (cancel it with
 * redis_cancel), or NULL when Redis cannot take it now (no callback). */
struct redis_cmd *cache_lookup(struct redis *r, const char *key, bool stream, const char *owner,
                               int lock_ms, cache_lookup_cb cb, void *arg) MUST_CHECK;
/* Stores entry (entry NULL: nothing) under key for ttl_ms and releases the
 * lock if owner holds it. fill_pct > 0: only under maxmemory-policy
 * noeviction and when the entry fits below fill_pct of maxmemory (the
 * script reads INFO memory). Fire and forget; false when Redis cannot take
 * it now. */
bool cache_store(struct redis *r, const char *key, const char *entry, size_t len, int ttl_ms,
                 const char *owner, int fill_pct);

/* The Lua scripts' SHAs, computed once before workers share them. */
void cache_prepare(void);

#endif
