/* redis_cluster.h: internal to src/redis. The map of a redis-cluster://
 * deployment: which primary serves each slot, one connection (a struct
 * redis of its own, from redis_node_new) per node, and the refresh of the
 * map from CLUSTER SLOTS. redis.c routes each command through it. */
#ifndef TOLLGATE_REDIS_CLUSTER_H
#define TOLLGATE_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"
#include "redis/redis.h"

struct event_base;
struct redis;
struct redis_url;
struct cluster;

/* Starts connecting to the url's seed nodes and asking them for the map.
 * router is the struct redis the callers hold; NULL with err. */
struct cluster *cluster_new(struct redis *router, struct event_base *base,
                            const struct redis_url *u, char *err, size_t errlen) MUST_CHECK;
/* Frees every node connection: their pending callbacks run, inside. */
void cluster_free(struct cluster *cl);
/* A slot map has been read (commands are accepted). */
bool cluster_has_map(const struct cluster *cl);
/* The map is read and every primary in it is connected. */
bool cluster_all_up(const struct cluster *cl);
/* The connection of the primary serving slot; NULL without a map. */
struct redis *cluster_node(struct cluster *cl, unsigned slot);
/* The connection to host:port, opened now if there is none; NULL when the
 * node table is full. host "" means the node that sent the redirection. */
struct redis *cluster_node_at(struct cluster *cl, const char *host, int port);
/* A -MOVED: slot is served by node from now on; the whole map is asked
 * for again (other slots likely moved with it). */
void cluster_moved(struct cluster *cl, unsigned slot, struct redis *node);
/* Asks for the map again soon (at most every REFRESH_MIN_MS); why is logged. */
void cluster_refresh(struct cluster *cl, const char *why);
/* node's connection failed or was lost: when the map names it, the map
 * may be stale (a failover), so it is asked for again. */
void cluster_node_lost(struct cluster *cl, const struct redis *node);
/* Log map changes at debug level (redis_set_quiet). */
void cluster_set_quiet(struct cluster *cl);
/* Applies fn to every node connection ([redis] timeout, quiet). */
void cluster_each(struct cluster *cl, void (*fn)(struct redis *node, void *arg), void *arg);
struct redis_cluster_stats *cluster_stats(struct cluster *cl);

/* From redis.c: a connection to one node of the cluster, with the router's
 * credentials and deadline; its failures also count as the router's. */
struct redis *redis_node_new(struct redis *router, const char *host, int port, char *err,
                             size_t errlen) MUST_CHECK;
/* No command pending on r: it can be freed without calling anyone back. */
bool redis_idle(const struct redis *r);

#endif
