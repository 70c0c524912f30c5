/* redis_slot.h: Redis Cluster's I/O-free parts: the slot of a key (CRC16
 * of its hash tag or of the whole key, as the server computes it), the
 * MOVED / ASK redirections and the CLUSTER SLOTS answer. Used by the
 * cluster router (redis_cluster.c), the unit tests and the fuzzer. */
#ifndef TOLLGATE_REDIS_SLOT_H
#define TOLLGATE_REDIS_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct redisReply;

#define REDIS_SLOTS 16384
#define REDIS_HOST_MAX 256 /* a node's host, with its terminating NUL */

/* The cluster slot of key (len bytes): the CRC16 (XMODEM) of the text
 * between the first '{' and the next '}' when that is not empty, else of
 * the whole key, modulo 16384. */
unsigned redis_key_slot(const char *key, size_t len);

/* A redirection: "MOVED 3999 127.0.0.1:6381" or "ASK 3999 host:port" (an
 * error reply's text, err). Returns 0 with *ask, *slot, host (NUL-ended,
 * "" when the server does not know its endpoint: the node that answered)
 * and *port; -1 for any other text or a malformed one. */
int redis_redirect_parse(const char *err, bool *ask, unsigned *slot, char host[REDIS_HOST_MAX],
                         int *port) MUST_CHECK;

/* One range of a CLUSTER SLOTS answer and the primary serving it; host is
 * "" when the server does not know its endpoint (use the node asked). */
typedef int (*redis_slots_fn)(void *arg, unsigned first, unsigned last, const char *host, int port);

/* Walks a CLUSTER SLOTS reply ([[first, last, [host, port, id...],
 * replicas...], ...]), calling fn for each range; fn returns -1 to stop.
 * Returns the number of slots covered, or -1 with err (a malformed reply,
 * a range outside 0..16383, a port outside 1..65535, or fn's -1). */
long redis_slots_parse(const struct redisReply *reply, redis_slots_fn fn, void *arg, char *err,
                       size_t errlen) MUST_CHECK;

#endif
