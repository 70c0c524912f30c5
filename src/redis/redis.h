/* redis.h: one asynchronous Redis connection per worker, on the worker's
 * event loop, over tollgate's own connection layer (libevent bufferevents,
 * OpenSSL for rediss://, hiredis only for its I/O-free request formatter
 * and reply reader). Every command gets a deadline and ends in exactly one
 * callback, with a reply or an error, never from inside the call that
 * issued it. Lost connections reconnect with capped backoff. */
#ifndef TOLLGATE_REDIS_H
#define TOLLGATE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct event_base;
struct redisReply;
struct redis;
struct redis_cmd;
struct redis_url;

/* A Lua script embedded at build time (src/lua/NAME.lua). */
struct redis_script {
    const char *name;
    const char *source;
    char sha[41]; /* computed by redis_script_prepare */
};

/* reply is NULL on error (err says why: "timeout", "disconnected", or the
 * server's error reply such as "OOM ..."); a Redis error reply is passed as
 * an error, never as a reply. The reply lives only during the call. */
typedef void (*redis_cb)(struct redisReply *reply, const char *err, void *arg);

/* [redis] ca_file, cert_file, key_file: for rediss:// only; each may be NULL. */
struct redis_tls {
    const char *ca_file;   /* CAs beside the system's; the server is always verified */
    const char *cert_file; /* a client certificate (PEM), for servers that ask */
    const char *key_file;  /* its key */
};

/* url: any form redis_url.h parses that redis_url_supported accepts; tls
 * may be NULL (system CAs, no client certificate). A host name is resolved
 * with evdns, never blocking the loop. Connects in the background; returns
 * NULL only for a malformed or unsupported url or TLS files that do not
 * load (err says which). */
struct redis *redis_new(struct event_base *base, const char *url, const struct redis_tls *tls,
                        int timeout_ms, char *err, size_t errlen) MUST_CHECK;
/* Fails every pending command and frees. The callbacks run synchronously,
 * inside redis_free, with err "disconnected": call it only at worker
 * shutdown, never from a redis callback, and only while the callbacks' args
 * are still valid (or after cancelling their commands). */
void redis_free(struct redis *r);
/* A new per-command deadline for commands sent from now on ([redis]
 * timeout on reload); ms > 0. Commands in flight keep theirs. */
void redis_set_timeout(struct redis *r, int ms);
/* Whether this connection layer can reach a url of u's kind; else err
 * says which scheme is missing. For redis_new and the config check (-t). */
bool redis_url_supported(const struct redis_url *u, char *err, size_t errlen);
/* Connection events (connected, failed, lost) logged at debug level
 * instead of info and warn: for a caller that reports them itself
 * (redis_sync: the report's error message, the admin API's answer). */
void redis_set_quiet(struct redis *r);
/* True while connected (and authenticated / db selected); for
 * redis-cluster://, while the slot map is read and every primary in it is
 * connected (commands are accepted as soon as the map is read: those for a
 * node that is down fail with "disconnected"). */
bool redis_connected(const struct redis *r);

/* redis-cluster://: a command goes to the primary serving the slot of its
 * first key (argv[1]; an EVAL's KEYS[1]), follows -MOVED and -ASK (at most
 * 5 hops, then it fails with "CLUSTER too many redirections"), and waits
 * out -TRYAGAIN and -CLUSTERDOWN (5 retries from 50 ms, doubling) before
 * failing with the server's error. Multi-key commands must keep their keys
 * in one slot (a hash tag), as the server demands.
 *
 * Runs a command given as argv (argvlen NULL: strlen). Returns a handle, or
 * NULL when the command cannot be queued now (not connected, 10000 pending);
 * then no callback will run. argv is copied before the call returns. The
 * deadline is redis_new's timeout_ms; a command that misses it drops the
 * connection, so every pending command fails with "timeout", once. */
struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg, int argc,
                                const char **argv, const size_t *argvlen) MUST_CHECK;
/* EVALSHA, falling back to EVAL on NOSCRIPT (after SCRIPT FLUSH or a
 * restart); same contract as redis_command. args are KEYS then ARGV
 * (nargs in all, the first nkeys of them keys). s must outlive the command;
 * without a sha (redis_script_prepare not called) the source is sent. */
struct redis_cmd *redis_eval(struct redis *r, struct redis_script *s, redis_cb cb, void *arg,
                             int nkeys, int nargs, const char **args,
                             const size_t *arglens) MUST_CHECK;
/* Where a command stands in its connection's order, for settlements that
 * must count exactly once without a key per request (budget.c). conn is a
 * random id of the connection (a new one per connection), seq counts the
 * stamped commands sent on it from 1. A connection runs its commands in
 * the order sent and a lost one ran a prefix of them, so a server-side
 * "highest seq seen from conn" tells whether any stamp ran. */
struct redis_stamp {
    char conn[17]; /* 16 hex digits; "" with seq 0: not stamped */
    unsigned long long seq;
};

/* redis_eval, with args[at] and args[at + 1] replaced by stamp->conn and
 * stamp->seq. When stamp->seq is 0 the connection stamps the command each
 * time it writes it (again after NOSCRIPT, so the stamps a server sees from
 * one connection only ever grow); otherwise the stamp is sent as given (a
 * replay). On an error reply, which means the command did not run, a stamp
 * given here is reset to 0 ("send afresh"); on a timeout or a lost
 * connection it is kept ("may have run"). stamp must stay valid until the
 * callback runs or the command is cancelled. */
struct redis_cmd *redis_eval_stamped(struct redis *r, struct redis_script *s, redis_cb cb,
                                     void *arg, int nkeys, int nargs, const char **args,
                                     const size_t *arglens, int at,
                                     struct redis_stamp *stamp) MUST_CHECK;

/* The callback of cmd will not run; safe until that callback would have run.
 * The command itself may still run on the server. */
void redis_cancel(struct redis_cmd *cmd);
/* release(arg) runs at redis_cancel, for callers whose arg is owned by the
 * callback (it would otherwise leak when the callback never runs). */
void redis_cmd_set_release(struct redis_cmd *cmd, void (*release)(void *arg));

/* Computes s->sha (SHA1 of the source, hex). Call once per script before
 * sharing it between threads; redis_eval only reads it. */
void redis_script_prepare(struct redis_script *s);

/* Counters for metrics: commands ended in an error (timeouts, disconnects,
 * error replies) plus failed connection attempts and lost connections. */
unsigned long redis_errors(const struct redis *r);
/* Of those, failed connection attempts (refused, timed out, TLS, AUTH) and
 * lost connections. */
unsigned long redis_connect_failures(const struct redis *r);
/* Why the last connection attempt failed or the last connection was lost,
 * as logged ("connect to 10.0.0.5:6379 failed: Connection refused"). */
const char *redis_last_error(const struct redis *r);
/* Where the connection goes (host:port, the socket path, "sentinel
 * host:port" while asking one, "cluster h1:p1,h2:p2"), for messages. */
const char *redis_addr(const struct redis *r);

/* redis-cluster:// counters, for metrics; all 0 for other schemes. */
struct redis_cluster_stats {
    unsigned long moved;     /* -MOVED followed */
    unsigned long ask;       /* -ASK followed (with ASKING) */
    unsigned long retries;   /* waits after -TRYAGAIN, -CLUSTERDOWN or a node not up yet */
    unsigned long refreshes; /* CLUSTER SLOTS asked */
    unsigned long failed;    /* commands the router failed: a MOVED loop, retries spent */
};
void redis_cluster_stats(const struct redis *r, struct redis_cluster_stats *out);

#endif
