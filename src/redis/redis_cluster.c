/* redis_cluster.c: the slot map of a redis-cluster:// deployment
 * (redis_cluster.h). A table of nodes, each with its own connection from
 * the connection layer (so deadlines, reconnects, TLS and the handshake
 * stay in redis.c), and for each of the 16384 slots the node serving it.
 * The map is read with CLUSTER SLOTS from any connected node: at start,
 * after a -MOVED, and when a node in the map is lost (a failover promotes
 * a replica that the old map does not name). Asking is rate-limited to one
 * CLUSTER SLOTS in flight and one every REFRESH_MIN_MS. Nodes the map no
 * longer names are closed once nothing waits on them, so the table stays
 * bounded (MAX_NODES). */
#include "redis/redis_cluster.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/log.h"
#include "redis/redis.h"
#include "redis/redis_slot.h"
#include "redis/redis_url.h"

#define MAX_NODES 64 /* primaries and the seeds; far above a real cluster's */
#define REFRESH_MIN_MS 200
#define SEARCH_MS 50 /* no node connected yet: look again this often */

struct node {
    char host[REDIS_HOST_MAX];
    int port;
    struct redis *conn; /* NULL: a free entry */
    bool in_map;        /* serves at least one slot */
};

struct cluster {
    struct redis *router;
    struct event_base *base;
    struct node nodes[MAX_NODES];
    uint8_t map[REDIS_SLOTS];  /* node index + 1; 0: no node serves the slot */
    uint8_t next[REDIS_SLOTS]; /* the map being read */
    bool has_map;
    bool asking;          /* CLUSTER SLOTS in flight */
    size_t asked;         /* the node asked */
    size_t rotor;         /* the node asked next */
    bool wanted;          /* a refresh was asked for */
    char why[120];        /* and why, for the log line */
    struct timespec last; /* when CLUSTER SLOTS was last sent */
    struct event *timer;
    bool quiet;
    bool closing;
    struct redis_cluster_stats stats;
};

static long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void arm(struct cluster *cl, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!cl->closing && !evtimer_pending(cl->timer, NULL))
        evtimer_add(cl->timer, &tv);
}

static struct node *find(struct cluster *cl, const char *host, int port)
{
    for (size_t i = 0; i < MAX_NODES; i++)
        if (cl->nodes[i].conn && cl->nodes[i].port == port && strcmp(cl->nodes[i].host, host) == 0)
            return &cl->nodes[i];
    return NULL;
}

/* The node at host:port, its connection opened now if it is new. */
static struct node *node_add(struct cluster *cl, const char *host, int port)
{
    struct node *n = find(cl, host, port);
    if (n)
        return n;
    for (size_t i = 0; i < MAX_NODES; i++) {
        if (cl->nodes[i].conn)
            continue;
        char err[200];
        n = &cl->nodes[i];
        if (!(n->conn = redis_node_new(cl->router, host, port, err, sizeof(err)))) {
            log_warn("redis: cluster node %s:%d: %s", host, port, err);
            return NULL;
        }
        snprintf(n->host, sizeof(n->host), "%s", host);
        n->port = port;
        n->in_map = false;
        return n;
    }
    log_warn("redis: cluster names more than %d nodes; %s:%d not used", MAX_NODES, host, port);
    return NULL;
}

struct reading {
    struct cluster *cl;
    const char *asked_host; /* for a range whose node has no endpoint */
};

static int on_range(void *arg, unsigned first, unsigned last, const char *host, int port)
{
    struct reading *rd = arg;
    struct node *n = node_add(rd->cl, host[0] ? host : rd->asked_host, port);
    if (!n)
        return -1;
    uint8_t idx = (uint8_t)(n - rd->cl->nodes + 1);
    memset(rd->cl->next + first, idx, last - first + 1);
    return 0;
}

/* Closes the connections of nodes the map does not name and nobody waits
 * on (the old primary after a failover, seeds that are replicas). From the
 * timer only: never inside one of those connections' callbacks. */
static void prune(struct cluster *cl)
{
    if (!cl->has_map)
        return;
    for (size_t i = 0; i < MAX_NODES; i++) {
        struct node *n = &cl->nodes[i];
        if (!n->conn || n->in_map || (cl->asking && cl->asked == i) || !redis_idle(n->conn))
            continue;
        redis_free(n->conn);
        n->conn = NULL;
    }
}

static void on_slots(struct redisReply *reply, const char *err, void *arg)
{
    struct cluster *cl = arg;
    char perr[200];
    cl->asking = false;
    if (cl->closing)
        return;
    struct node *asked = &cl->nodes[cl->asked];
    if (!reply) {
        log_msg(cl->quiet ? LOG_DEBUG : LOG_WARN, NULL,
                "redis: CLUSTER SLOTS to %s:%d failed: %.200s", asked->host, asked->port, err);
        cluster_refresh(cl, "the last CLUSTER SLOTS failed");
        return;
    }
    char host[REDIS_HOST_MAX];
    snprintf(host, sizeof(host), "%s", asked->host);
    int port = asked->port;
    struct reading rd = {cl, host};
    memset(cl->next, 0, sizeof(cl->next));
    long covered = redis_slots_parse(reply, on_range, &rd, perr, sizeof(perr));
    if (covered < 0) {
        log_msg(cl->quiet ? LOG_DEBUG : LOG_WARN, NULL, "redis: %s:%d: %s", host, port, perr);
        cluster_refresh(cl, "the last CLUSTER SLOTS was unreadable");
        return;
    }
    bool changed = !cl->has_map || memcmp(cl->map, cl->next, sizeof(cl->map)) != 0;
    memcpy(cl->map, cl->next, sizeof(cl->map));
    cl->has_map = true;
    size_t primaries = 0;
    for (size_t i = 0; i < MAX_NODES; i++)
        cl->nodes[i].in_map = false;
    for (size_t s = 0; s < REDIS_SLOTS; s++)
        if (cl->map[s] && !cl->nodes[cl->map[s] - 1].in_map) {
            cl->nodes[cl->map[s] - 1].in_map = true;
            primaries++;
        }
    if (changed)
        log_msg(cl->quiet ? LOG_DEBUG : LOG_INFO, NULL,
                "redis: cluster map from %s:%d: %zu primaries, %ld of %d slots served", host, port,
                primaries, covered, REDIS_SLOTS);
    if (covered < REDIS_SLOTS)
        log_msg(cl->quiet ? LOG_DEBUG : LOG_WARN, NULL,
                "redis: cluster has %ld slots without a node; their tenants fail until it is "
                "whole",
                REDIS_SLOTS - covered);
    if (cl->wanted)
        arm(cl, REFRESH_MIN_MS);
}

/* Sends CLUSTER SLOTS to the next connected node, if one is. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct cluster *cl = arg;
    if (cl->closing || cl->asking)
        return;
    prune(cl);
    if (!cl->wanted)
        return;
    for (size_t k = 0; k < MAX_NODES; k++) {
        size_t i = (cl->rotor + k) % MAX_NODES;
        struct node *n = &cl->nodes[i];
        if (!n->conn || !redis_connected(n->conn))
            continue;
        if (!redis_command(n->conn, on_slots, cl, 2, (const char *[]){"CLUSTER", "SLOTS"}, NULL))
            continue;
        cl->rotor = (i + 1) % MAX_NODES;
        cl->asking = true;
        cl->asked = i;
        cl->wanted = false;
        cl->stats.refreshes++;
        clock_gettime(CLOCK_MONOTONIC, &cl->last);
        log_debug("redis: asking %s:%d for the cluster map (%s)", n->host, n->port, cl->why);
        return;
    }
    arm(cl, cl->has_map ? REFRESH_MIN_MS : SEARCH_MS); /* nodes are (re)connecting */
}

void cluster_refresh(struct cluster *cl, const char *why)
{
    if (cl->closing)
        return;
    if (!cl->wanted)
        snprintf(cl->why, sizeof(cl->why), "%s", why);
    cl->wanted = true;
    if (cl->asking)
        return; /* on_slots arms the timer */
    long wait = REFRESH_MIN_MS - ms_since(&cl->last);
    arm(cl, wait > 0 ? wait : 0);
}

struct cluster *cluster_new(struct redis *router, struct event_base *base,
                            const struct redis_url *u, char *err, size_t errlen)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cl->router = router;
    cl->base = base;
    if (!(cl->timer = evtimer_new(base, on_timer, cl))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < u->naddrs; i++) {
        if (find(cl, u->addrs[i].host, u->addrs[i].port))
            continue;
        struct node *n = &cl->nodes[i];
        if (!(n->conn = redis_node_new(router, u->addrs[i].host, u->addrs[i].port, err, errlen)))
            goto fail;
        snprintf(n->host, sizeof(n->host), "%s", u->addrs[i].host);
        n->port = u->addrs[i].port;
    }
    cl->last.tv_sec = -1000; /* the first refresh goes at once */
    cluster_refresh(cl, "start");
    return cl;
fail:
    cluster_free(cl);
    return NULL;
}

void cluster_free(struct cluster *cl)
{
    if (!cl)
        return;
    cl->closing = true;
    for (size_t i = 0; i < MAX_NODES; i++)
        if (cl->nodes[i].conn) {
            struct redis *conn = cl->nodes[i].conn;
            cl->nodes[i].conn = NULL;
            redis_free(conn); /* the commands it carried end now, "disconnected" */
        }
    if (cl->timer)
        event_free(cl->timer);
    free(cl);
}

bool cluster_has_map(const struct cluster *cl)
{
    return cl->has_map;
}

bool cluster_all_up(const struct cluster *cl)
{
    if (!cl->has_map)
        return false;
    for (size_t i = 0; i < MAX_NODES; i++)
        if (cl->nodes[i].in_map && (!cl->nodes[i].conn || !redis_connected(cl->nodes[i].conn)))
            return false;
    return true;
}

struct redis *cluster_node(struct cluster *cl, unsigned slot)
{
    if (!cl->has_map || slot >= REDIS_SLOTS || !cl->map[slot])
        return NULL;
    return cl->nodes[cl->map[slot] - 1].conn;
}

struct redis *cluster_node_at(struct cluster *cl, const char *host, int port)
{
    if (!host[0])
        return NULL;
    struct node *n = node_add(cl, host, port);
    return n ? n->conn : NULL;
}

void cluster_moved(struct cluster *cl, unsigned slot, struct redis *node)
{
    for (size_t i = 0; i < MAX_NODES && slot < REDIS_SLOTS; i++)
        if (cl->nodes[i].conn == node) {
            cl->map[slot] = (uint8_t)(i + 1);
            cl->nodes[i].in_map = true;
            break;
        }
    cluster_refresh(cl, "a slot moved");
}

void cluster_node_lost(struct cluster *cl, const struct redis *node)
{
    if (cl->closing)
        return;
    for (size_t i = 0; i < MAX_NODES; i++)
        if (cl->nodes[i].conn == node && (cl->nodes[i].in_map || !cl->has_map)) {
            cluster_refresh(cl, "a node was lost");
            return;
        }
}

void cluster_each(struct cluster *cl, void (*fn)(struct redis *node, void *arg), void *arg)
{
    for (size_t i = 0; i < MAX_NODES; i++)
        if (cl->nodes[i].conn)
            fn(cl->nodes[i].conn, arg);
}

void cluster_set_quiet(struct cluster *cl)
{
    cl->quiet = true;
}

struct redis_cluster_stats *cluster_stats(struct cluster *cl)
{
    return &cl->stats;
}
