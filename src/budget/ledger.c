/* ledger.c: settlements and releases of one worker (ledger.h). */
#include "budget/ledger.h"

#include <stdlib.h>
#include <string.h>

#include "budget/alert.h"
#include "budget/budget.h"
#include "budget/journal.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/sat.h"
#include "redis/redis.h"

/* A reservation to give back; the strings live in one allocation. */
struct release {
    struct ledger *l;
    const char *prefix, *tenant, *id;
};

/* A settlement on its way to Redis: what the journal needs if Redis does
 * not take it, and what the alerter needs if it does. */
struct settling {
    struct ledger *l;
    struct settle s; /* strings point into the same allocation */
    struct ledger_marks m;
};

struct ledger {
    struct redis *redis;
    struct journal *journal;
    struct metrics *metrics;
    struct tally *tally;     /* NULL: settle.lua counts everything itself */
    struct alerter *alerter; /* not owned */
    long settles_pending;
    struct release **releases; /* waiting for Redis */
    size_t n_releases;
};

struct ledger *ledger_new(struct redis *r, struct tally *t, struct journal *j, struct metrics *m)
{
    struct ledger *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->releases = calloc(LEDGER_MAX_RELEASES, sizeof(*l->releases));
    if (!l->releases) {
        free(l);
        return NULL;
    }
    l->redis = r;
    l->tally = t;
    l->journal = j;
    l->metrics = m;
    return l;
}

void ledger_free(struct ledger *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_releases; i++)
        free(l->releases[i]);
    free(l->releases);
    free(l);
}

void ledger_set_alerter(struct ledger *l, struct alerter *a)
{
    l->alerter = a;
}

/* Copies s into dst[0..n) and returns the copy's start, or NULL for NULL. */
static const char *put(char **dst, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*dst, s, n);
    const char *at = *dst;
    *dst += n;
    return at;
}

static size_t len0(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* ---- releases ---- */

static void keep(struct ledger *l, struct release *rl)
{
    if (l->n_releases == LEDGER_MAX_RELEASES) {
        log_warn("ledger: %d releases waiting for Redis: dropping one (its lease expires by "
                 "itself)",
                 LEDGER_MAX_RELEASES);
        free(rl);
        return;
    }
    l->releases[l->n_releases++] = rl;
}

static void released(bool ok, const char *err, void *arg)
{
    struct release *rl = arg;
    if (ok)
        free(rl);
    else
        keep(rl->l, rl); /* retried from the tick */
}

static void send_release(struct ledger *l, struct release *rl)
{
    if (!budget_release(l->redis, rl->prefix, rl->tenant, rl->id, released, rl))
        keep(l, rl);
}

void ledger_release(struct ledger *l, const char *key_prefix, const char *tenant, const char *id)
{
    struct release *rl = malloc(sizeof(*rl) + len0(key_prefix) + len0(tenant) + len0(id));
    if (!rl) {
        log_warn("ledger: out of memory: a release is dropped (its lease expires by itself)");
        return;
    }
    char *p = (char *)(rl + 1);
    rl->l = l;
    rl->prefix = put(&p, key_prefix);
    rl->tenant = put(&p, tenant);
    rl->id = put(&p, id);
    send_release(l, rl);
}

void ledger_tick(struct ledger *l)
{
    if (!l->n_releases || !redis_connected(l->redis))
        return;
    size_t n = l->n_releases;
    struct release *batch[LEDGER_MAX_RELEASES];
    memcpy(batch, l->releases, n * sizeof(*batch));
    l->n_releases = 0;
    for (size_t i = 0; i < n; i++)
        send_release(l, batch[i]);
}

size_t ledger_waiting(const struct ledger *l)
{
    return l->n_releases;
}

/* ---- settlements ---- */

static void journal_settle(struct ledger *l, const struct settle *s)
{
    if (journal_append(l->journal, s) < 0)
        log_error("settlement of request %s for %s lost: Redis and the journal both failed",
                  s->request_id, s->tenant);
}

static void settled(bool ok, const char *err, void *arg)
{
    struct settling *st = arg;
    struct ledger *l = st->l;
    l->settles_pending--;
    if (!ok) {
        metrics_inc(l->metrics, METRIC_REDIS_ERRORS, 1);
        log_warn("redis: settlement of %s failed (%s): journaled for replay", st->s.request_id,
                 err ? err : "?");
        journal_settle(l, &st->s); /* idempotent by id: a late success is not counted twice */
    } else {
        const struct ledger_marks *m = &st->m;
        if (m->spent_before >= 0 && m->cap_monthly > 0)
            alerter_check(l->alerter, st->s.tenant, st->s.plan, m->spent_before,
                          sat_add(m->spent_before, st->s.cost), m->cap_monthly,
                          budget_period(st->s.when, st->s.anchor));
        if (m->unit && m->units_before >= 0 && st->s.units > 0)
            alerter_check_allowance(l->alerter, st->s.tenant, st->s.plan, m->units_before,
                                    sat_add(m->units_before, st->s.units), st->s.included, m->unit,
                                    budget_period(st->s.when, st->s.anchor));
    }
    free(st);
}

void ledger_settle(struct ledger *l, const struct settle *s, const struct ledger_marks *m)
{
    struct settling *st =
        malloc(sizeof(*st) + len0(s->key_prefix) + len0(s->tenant) + len0(s->request_id) +
               len0(s->model) + len0(s->feature) + len0(s->user) + len0(s->plan));
    if (!st) {
        journal_settle(l, s);
        return;
    }
    char *p = (char *)(st + 1);
    st->l = l;
    st->s = *s;
    st->s.key_prefix = put(&p, s->key_prefix);
    st->s.tenant = put(&p, s->tenant);
    st->s.request_id = put(&p, s->request_id);
    st->s.model = put(&p, s->model);
    st->s.feature = put(&p, s->feature);
    st->s.user = put(&p, s->user);
    st->s.plan = put(&p, s->plan);
    st->m = *m;
    st->s.tallied = l->tally != NULL; /* a replay then knows what its first sending counted */
    if (!budget_settle(l->redis, l->tally, &st->s, &st->s.stamp, settled, st)) {
        metrics_inc(l->metrics, METRIC_REDIS_ERRORS, 1);
        req_log(LOG_WARN, s->request_id, "redis unavailable: settlement journaled for replay");
        journal_settle(l, &st->s);
        free(st);
        return;
    }
    l->settles_pending++;
}

long ledger_pending(const struct ledger *l)
{
    return l->settles_pending;
}
