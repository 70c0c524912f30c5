/* tally.c: sums the counters caps never read per (hash, field) in a small
 * open-addressing table, and each tick sends them as one lua/flush.lua call
 * per tenant and month (split when a tenant has many names), all in one
 * loop turn, so they travel pipelined. tally.h has the contract. */
#include "budget/tally.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "budget/budget.h"
#include "core/numtext.h"
#include "core/log.h"
#include "core/sat.h"
#include "redis/redis.h"

#define KEY_MAX 512
#define ARGS_MAX 900 /* per flush call: redis_eval takes up to 1000 */
#define SLOTS_MIN 256

extern const char lua_flush[];
static struct redis_script flush_script = {"flush", lua_flush, ""};
static pthread_once_t script_once = PTHREAD_ONCE_INIT;

static void prepare_script(void)
{
    redis_script_prepare(&flush_script);
}

/* One sum: HINCRBY group-or-other-key field delta, or HSET (value). */
struct entry {
    uint64_t h;
    int64_t delta;
    char *value; /* HSET with this value when set (owned) */
    char kind;   /* 'm': the key expires with the month, 'd': with the day */
    size_t glen, klen;
    char s[]; /* group '\0' key '\0' field '\0' */
};

static const char *e_group(const struct entry *e)
{
    return e->s;
}
static const char *e_key(const struct entry *e)
{
    return e->s + e->glen + 1;
}
static const char *e_field(const struct entry *e)
{
    return e->s + e->glen + 1 + e->klen + 1;
}

/* One flush call, kept until Redis has answered it. */
struct flight {
    struct tally *t;
    struct redis_cmd *cmd; /* NULL: waiting to be sent (again) from the tick */
    struct redis_stamp stamp;
    int nkeys, nargs;
    const char **args; /* KEYS, then ARGV; [nkeys + 2] is set at each send */
    size_t nsums;      /* for the count of what a shutdown loses */
    TAILQ_ENTRY(flight) link;
    /* args and their strings follow */
};

TAILQ_HEAD(flight_list, flight);

struct tally {
    struct event_base *base;
    struct redis *r;
    struct event *timer;
    struct entry **slots; /* open addressing, linear probing */
    size_t cap, n;
    struct flight_list flights;
    size_t nflights;
    time_t dropped_logged; /* last "dropped" error, at most one a minute */
    unsigned long dropped;
};

static uint64_t hash3(const char *a, const char *b, const char *c)
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h;
}

static int grow(struct tally *t)
{
    size_t cap = t->cap ? t->cap * 2 : SLOTS_MIN;
    struct entry **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        struct entry *e = t->slots[i];
        if (!e)
            continue;
        size_t j = e->h & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static void entry_free(struct entry *e)
{
    if (e) {
        free(e->value);
        free(e);
    }
}

static void flush_now(struct tally *t);

static void dropped(struct tally *t)
{
    time_t now = time(NULL);
    t->dropped++;
    if (now - t->dropped_logged >= 60) {
        t->dropped_logged = now;
        log_error("tally: Redis has not taken the breakdown counters for a while and %d flushes "
                  "wait: %lu sums dropped (costs and caps are not affected)",
                  TALLY_MAX_FLIGHTS, t->dropped);
    }
}

/* Adds delta (or sets value) at (group, key, field). */
static void add(struct tally *t, const char *group, const char *key, char kind, const char *field,
                int64_t delta, const char *value)
{
    uint64_t h = hash3(group, key, field);
    size_t j = 0;
    if (t->cap) {
        for (j = h & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1)) {
            struct entry *e = t->slots[j];
            if (e->h == h && strcmp(e_group(e), group) == 0 && strcmp(e_key(e), key) == 0 &&
                strcmp(e_field(e), field) == 0) {
                if (value) {
                    char *v = strdup(value);
                    if (!v) {
                        dropped(t);
                        return;
                    }
                    free(e->value);
                    e->value = v;
                } else {
                    e->delta = sat_add(e->delta, delta);
                }
                return;
            }
        }
    }
    if (t->n >= TALLY_MAX_ENTRIES) {
        flush_now(t); /* empties the table unless too many flushes wait */
        if (t->n >= TALLY_MAX_ENTRIES) {
            dropped(t);
            return;
        }
    }
    if ((t->n + 1) * 2 > t->cap && grow(t) < 0) {
        dropped(t);
        return;
    }
    size_t gl = strlen(group), kl = strlen(key), fl = strlen(field);
    struct entry *e = malloc(sizeof(*e) + gl + kl + fl + 3);
    if (!e || (value && !(e->value = strdup(value)))) {
        free(e);
        dropped(t);
        return;
    }
    if (!value)
        e->value = NULL;
    e->h = h;
    e->delta = delta;
    e->kind = kind;
    e->glen = gl;
    e->klen = kl;
    memcpy(e->s, group, gl + 1);
    memcpy(e->s + gl + 1, key, kl + 1);
    memcpy(e->s + gl + 1 + kl + 1, field, fl + 1);
    for (j = h & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1))
        ;
    t->slots[j] = e;
    t->n++;
}

static const char *by_name(const char *name)
{
    return name && *name ? name : BUDGET_NO_NAME;
}

void tally_add(struct tally *t, const struct settle *s)
{
    char month[KEY_MAX], day[KEY_MAX], by[KEY_MAX], field[KEY_MAX], mday[4];
    struct tm tm;
    time_t period = budget_period(s->when, s->anchor);
    if (!gmtime_r(&s->when, &tm) ||
        budget_key(month, sizeof(month), s->key_prefix, s->tenant, 'm', period) < 0 ||
        budget_key(day, sizeof(day), s->key_prefix, s->tenant, 'd', s->when) < 0)
        return; /* budget_settle built the same keys: cannot happen */
    const struct {
        const char *field;
        int64_t v;
        bool on; /* counted only when it happened */
    } counts[] = {
        {BUDGET_F_REQUESTS, 1, true},
        {BUDGET_F_INPUT, s->usage.input, true},
        {BUDGET_F_CACHED, s->usage.cached, true},
        {BUDGET_F_OUTPUT, s->usage.output, true},
        {BUDGET_F_REASONING, s->usage.reasoning, true},
        {BUDGET_F_ESTIMATED, 1, s->usage.estimated},
        {BUDGET_F_ESTIMATED_COST, s->cost, s->usage.estimated && s->cost},
        {BUDGET_F_UNPRICED, 1, s->unpriced},
        {BUDGET_F_UNPRICED_COST, s->cost, s->unpriced && s->cost},
        {BUDGET_F_CACHE_HITS, 1, s->cache_hit},
        {BUDGET_F_SAVED, s->saved, s->cache_hit},
    };
    for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
        if (!counts[i].on)
            continue;
        add(t, month, month, 'm', counts[i].field, counts[i].v, NULL);
        add(t, month, day, 'd', counts[i].field, counts[i].v, NULL);
    }
    const struct {
        const char *suffix, *name;
    } bys[] = {
        {BUDGET_BY_MODEL, s->model},
        {BUDGET_BY_FEATURE, s->feature},
        {BUDGET_BY_USER, s->user},
    };
    const struct {
        const char *field;
        int64_t v;
    } each[] = {
        {BUDGET_F_COST, s->cost},           {BUDGET_F_REQUESTS, 1},
        {BUDGET_F_INPUT, s->usage.input},   {BUDGET_F_CACHED, s->usage.cached},
        {BUDGET_F_OUTPUT, s->usage.output},
    };
    for (size_t b = 0; b < ARRAY_LEN(bys); b++) {
        if (budget_month_key(by, sizeof(by), s->key_prefix, s->tenant, bys[b].suffix, period) < 0)
            continue;
        for (size_t i = 0; i < ARRAY_LEN(each); i++) {
            /* "name|field" (no printf: this runs for every request) */
            char *at = numtext_put_str(field, field + sizeof(field), by_name(bys[b].name));
            at = numtext_put(at, field + sizeof(field), "|", 1);
            if (!numtext_put_str(at, field + sizeof(field), each[i].field))
                continue;
            add(t, month, by, 'm', field, each[i].v, NULL);
        }
    }
    if (s->plan && *s->plan &&
        budget_month_key(by, sizeof(by), s->key_prefix, s->tenant, BUDGET_BY_PLAN, period) == 0) {
        numtext_put_uint(mday, mday + sizeof(mday), (uint64_t)tm.tm_mday, 2);
        add(t, month, by, 'm', mday, 0, s->plan);
    }
}

/* ---- flushing ---- */

static void on_flushed(struct redisReply *reply, const char *err, void *arg);

/* Sends f; on failure to queue it waits for the next tick. */
static void send_flight(struct flight *f)
{
    /* ARGV[3]: a stamp already given is a replay (it may have run) */
    f->args[f->nkeys + 2] = f->stamp.seq ? "1" : "0";
    f->cmd = redis_eval_stamped(f->t->r, &flush_script, on_flushed, f, f->nkeys, f->nargs, f->args,
                                NULL, f->nkeys, &f->stamp);
}

static void flight_free(struct tally *t, struct flight *f)
{
    TAILQ_REMOVE(&t->flights, f, link);
    t->nflights--;
    free(f);
}

static void on_flushed(struct redisReply *reply, const char *err, void *arg)
{
    struct flight *f = arg;
    struct tally *t = f->t;
    f->cmd = NULL;
    if (reply) {
        flight_free(t, f);
        return;
    }
    /* kept: sent again from the tick, as a replay if it may have run */
    log_warn("tally: flush of %s not acknowledged (%.200s): sent again later", f->args[0],
             err ? err : "?");
}

static int cmp_entries(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    int c = strcmp(e_group(x), e_group(y));
    if (c == 0)
        c = strcmp(e_key(x), e_key(y));
    if (c == 0)
        c = strcmp(e_field(x), e_field(y));
    return c;
}

/* One flight for v[0..n), all of one group; their keys are at most
 * ARGS_MAX / 2 and their triples fit. NULL when out of memory. */
static struct flight *flight_new(struct tally *t, struct entry **v, size_t n)
{
    const char *keys[ARGS_MAX];
    int nkeys = 0;
    size_t bytes = 0;
    keys[nkeys++] = e_group(v[0]); /* KEYS[1]: the month hash keeps the stamps */
    for (size_t i = 0; i < n; i++) {
        const char *k = e_key(v[i]);
        if (strcmp(k, keys[0]) != 0 && strcmp(k, keys[nkeys - 1]) != 0)
            keys[nkeys++] = k; /* sorted: a key's entries are adjacent */
    }
    int nargs = nkeys + 4 + 3 * (int)n;
    bytes += (size_t)nargs * sizeof(char *) + (size_t)nkeys + 1;
    for (int k = 0; k < nkeys; k++)
        bytes += strlen(keys[k]) + 1;
    for (size_t i = 0; i < n; i++)
        bytes += 8 + strlen(e_field(v[i])) + 1 + (v[i]->value ? strlen(v[i]->value) : 24) + 1;
    struct flight *f = calloc(1, sizeof(*f) + bytes);
    if (!f)
        return NULL;
    f->t = t;
    f->nkeys = nkeys;
    f->nargs = nargs;
    f->nsums = n;
    f->args = (const char **)(void *)(f + 1);
    char *p = (char *)(f->args + nargs);
    char *kinds = NULL;
    for (int k = 0; k < nkeys; k++) {
        size_t l = strlen(keys[k]) + 1;
        memcpy(p, keys[k], l);
        f->args[k] = p;
        p += l;
    }
    f->args[nkeys] = "conn"; /* the stamp: written at each send */
    f->args[nkeys + 1] = "seq";
    f->args[nkeys + 2] = "0";
    kinds = p;
    p += nkeys + 1;
    f->args[nkeys + 3] = kinds;
    for (int k = 0; k < nkeys; k++)
        kinds[k] = k == 0 ? 'm' : 'd'; /* KEYS[1] is a month hash */
    kinds[nkeys] = '\0';
    int a = nkeys + 4, key = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = e_key(v[i]);
        if (strcmp(k, f->args[key]) != 0)
            for (key = 0; key < nkeys && strcmp(k, f->args[key]) != 0; key++)
                ;
        kinds[key] = v[i]->kind;
        f->args[a++] = p;
        p += sprintf(p, "%c%d", v[i]->value ? 's' : 'i', key + 1) + 1;
        f->args[a++] = p;
        p += sprintf(p, "%s", e_field(v[i])) + 1;
        f->args[a++] = p;
        if (v[i]->value)
            p += sprintf(p, "%s", v[i]->value) + 1;
        else
            p += sprintf(p, "%" PRId64, v[i]->delta) + 1;
    }
    return f;
}

/* Moves every sum into flights and sends them. Sums stay in the table when
 * too many flushes already wait or memory runs out. */
static void flush_now(struct tally *t)
{
    if (t->n == 0 || t->nflights >= TALLY_MAX_FLIGHTS)
        return;
    pthread_once(&script_once, prepare_script);
    struct entry **v = malloc(t->n * sizeof(*v));
    if (!v)
        return;
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            v[n++] = t->slots[i];
    qsort(v, n, sizeof(*v), cmp_entries);
    size_t i = 0, sent = 0;
    while (i < n && t->nflights < TALLY_MAX_FLIGHTS) {
        /* a chunk: one group, at most ARGS_MAX args */
        size_t j = i;
        int args = 4 + 2; /* the stamp and kinds; the month hash and the first key */
        while (j < n && strcmp(e_group(v[j]), e_group(v[i])) == 0) {
            int more = 3 + (j > i && strcmp(e_key(v[j]), e_key(v[j - 1])) != 0 ? 1 : 0);
            if (args + more > ARGS_MAX)
                break;
            args += more;
            j++;
        }
        struct flight *f = flight_new(t, v + i, j - i);
        if (!f)
            break;
        TAILQ_INSERT_TAIL(&t->flights, f, link);
        t->nflights++;
        send_flight(f);
        for (size_t k = i; k < j; k++)
            entry_free(v[k]);
        i = j;
        sent = j;
    }
    /* the table is rebuilt from what was not sent */
    memset(t->slots, 0, t->cap * sizeof(*t->slots));
    t->n = 0;
    for (size_t k = sent; k < n; k++) {
        size_t s = v[k]->h & (t->cap - 1);
        while (t->slots[s])
            s = (s + 1) & (t->cap - 1);
        t->slots[s] = v[k];
        t->n++;
    }
    free(v);
}

/* Sends again what waits, while Redis is there to take it. */
static void retry(struct tally *t)
{
    struct flight *f;
    if (!redis_connected(t->r))
        return;
    TAILQ_FOREACH(f, &t->flights, link)
    if (!f->cmd)
        send_flight(f);
}

void tally_flush(struct tally *t)
{
    retry(t);
    flush_now(t);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    tally_flush(arg);
}

struct tally *tally_new(struct event_base *base, struct redis *r)
{
    struct tally *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->base = base;
    t->r = r;
    TAILQ_INIT(&t->flights);
    t->timer = event_new(base, -1, EV_PERSIST, on_timer, t);
    if (!t->timer || grow(t) < 0) {
        tally_free(t);
        return NULL;
    }
    struct timeval tv = {TALLY_TICK_MS / 1000, (TALLY_TICK_MS % 1000) * 1000};
    event_add(t->timer, &tv);
    return t;
}

size_t tally_pending(const struct tally *t)
{
    return t->n + t->nflights;
}

void tally_free(struct tally *t)
{
    if (!t)
        return;
    size_t lost = t->n;
    while (!TAILQ_EMPTY(&t->flights)) {
        struct flight *f = TAILQ_FIRST(&t->flights);
        if (f->cmd)
            redis_cancel(f->cmd);
        lost += f->nsums;
        flight_free(t, f);
    }
    if (lost)
        log_error("tally: %zu breakdown sums (requests, tokens, per model/feature/user) never "
                  "reached Redis and are lost; costs and caps are not affected",
                  lost);
    for (size_t i = 0; i < t->cap; i++)
        entry_free(t->slots[i]);
    free(t->slots);
    if (t->timer)
        event_free(t->timer);
    free(t);
}
