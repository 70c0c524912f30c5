/* listener.h: a listening socket for client connections. Binds host:port,
 * caps the connections open through it (over the cap a connection is
 * accepted and closed at once, so the backlog does not fill with clients
 * waiting for nothing), and when accept fails for want of descriptors or
 * memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) stops accepting for a pause that
 * doubles up to a second, instead of retrying in a busy loop; log lines for
 * both are rate-limited and carry how many were not logged. */
#ifndef TOLLGATE_LISTENER_H
#define TOLLGATE_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct event_base;
struct metrics;
struct listener;

struct listener_conf {
    const char *name;       /* for log lines: "worker 0", "admin" */
    const char *addr;       /* host:port */
    bool reuseport;         /* SO_REUSEPORT: one socket per worker on the same port */
    int backlog;            /* listen(2) backlog */
    atomic_ulong *open;     /* connections open through this listener and its siblings;
                             * the client side keeps it (client_limits.open) */
    unsigned long max_open; /* the cap on *open */
    /* Takes a non-blocking accepted fd (and owns it). */
    void (*accept)(int fd, void *arg);
    void *arg;
    /* Counts pauses and refused connections (METRIC_ACCEPT_PAUSES,
     * METRIC_CONNECTIONS_REFUSED); written on the listener's thread. NULL: none. */
    struct metrics *metrics;
};

/* Binds and starts accepting on base's loop. NULL with a message in err. */
struct listener *listener_new(struct event_base *base, const struct listener_conf *conf, char *err,
                              size_t errlen) MUST_CHECK;
/* Stops accepting and closes the socket (NULL is fine). */
void listener_free(struct listener *l);

#endif
