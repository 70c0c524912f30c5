/* redis_sync.h: a blocking Redis client for `tollgate report` and the admin
 * API's report thread, over the daemon's own connection layer (redis.h) on a
 * private event loop, so every scheme the daemon reaches (rediss://,
 * redis-sentinel://) and its deadlines hold for the report too. Not for a
 * worker's loop: each call runs its own loop until the replies are in. */
#ifndef TOLLGATE_REDIS_SYNC_H
#define TOLLGATE_REDIS_SYNC_H

#include <stddef.h>
#include "core/util.h"

struct redisReply;
struct redis_sync;
struct redis_tls;

/* Connects and waits (at most timeout_ms, also each command's deadline)
 * until the server answers. NULL with err ("cannot reach Redis at ADDR:
 * why", or the url's error, never echoing a password). tls may be NULL. */
struct redis_sync *redis_sync_connect(const char *url, const struct redis_tls *tls, int timeout_ms,
                                      char *err, size_t errlen) MUST_CHECK;
void redis_sync_free(struct redis_sync *s);

/* Queues one command (argv copied; argvlen NULL: strlen); replies come back
 * from redis_sync_get in the order queued. -1 when the connection is gone
 * or the queue is full (redis.h's bound). */
int redis_sync_append(struct redis_sync *s, int argc, const char **argv,
                      const size_t *argvlen) MUST_CHECK;
/* The next reply, which the caller frees with freeReplyObject. A server's
 * error reply comes back as a REDIS_REPLY_ERROR reply; 0 with *reply set.
 * -1 with err on a timeout or a lost connection (the connection is then
 * unusable: later calls fail too). */
int redis_sync_get(struct redis_sync *s, struct redisReply **reply, char *err,
                   size_t errlen) MUST_CHECK;
/* append + get. */
struct redisReply *redis_sync_command(struct redis_sync *s, int argc, const char **argv, char *err,
                                      size_t errlen) MUST_CHECK;

#endif
