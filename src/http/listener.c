/* listener.c: the listening socket, its connection cap and the pause after
 * accept runs out of descriptors. libevent's listener retries a failing
 * accept on every loop turn while the socket stays readable: with EMFILE
 * that is a worker at 100% of a core and a log line per turn. Here the
 * listener is disabled for a pause (1 ms doubling to 1 s, reset by the next
 * accepted connection) and the log says so at most once per LOG_EVERY_S. */
#include "http/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core/log.h"
#include "core/metrics.h"

#define PAUSE_MIN_MS 1
#define PAUSE_MAX_MS 1000
#define LOG_EVERY_S 10

/* A log line that appears at most once per LOG_EVERY_S, with the count of
 * the events it stood for meanwhile. */
struct ratelog {
    time_t last;         /* CLOCK_MONOTONIC seconds of the last line; 0: never */
    unsigned long quiet; /* events not logged since */
};

struct listener {
    struct listener_conf conf;
    char name[32];
    struct evconnlistener *ev;
    struct event *resume; /* the end of a pause */
    int pause_ms;         /* the next pause; doubled by each, reset by an accept */
    struct ratelog paused, refused;
};

/* True when a line is due now; *quiet gets the events skipped before it. */
static bool ratelog_due(struct ratelog *r, unsigned long *quiet)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (r->last && now.tv_sec - r->last < LOG_EVERY_S) {
        r->quiet++;
        return false;
    }
    *quiet = r->quiet;
    r->quiet = 0;
    r->last = now.tv_sec ? now.tv_sec : 1;
    return true;
}

static void on_accept(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct listener *l = arg;
    l->pause_ms = PAUSE_MIN_MS;
    if (atomic_load(l->conf.open) >= l->conf.max_open) {
        /* over the cap: refuse this one at once, never disturb the others */
        evutil_closesocket(fd);
        if (l->conf.metrics)
            metrics_inc(l->conf.metrics, METRIC_CONNECTIONS_REFUSED, 1);
        unsigned long quiet;
        if (ratelog_due(&l->refused, &quiet))
            log_warn("%s: %lu connections open: closing new ones (%lu more since the last line)",
                     l->name, l->conf.max_open, quiet);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    l->conf.accept(fd, l->conf.arg);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;
    evconnlistener_enable(l->ev);
}

static void on_error(struct evconnlistener *ev, void *arg)
{
    struct listener *l = arg;
    int e = EVUTIL_SOCKET_ERROR();
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
        /* ECONNABORTED and the like concern one connection: keep accepting */
        log_debug("%s: accept: %s", l->name, evutil_socket_error_to_string(e));
        return;
    }
    /* out of descriptors or memory: the pending connections wait in the
     * backlog until a pause ends and connections have closed meanwhile */
    evconnlistener_disable(l->ev);
    struct timeval tv = {l->pause_ms / 1000, (l->pause_ms % 1000) * 1000};
    evtimer_add(l->resume, &tv);
    if (l->conf.metrics)
        metrics_inc(l->conf.metrics, METRIC_ACCEPT_PAUSES, 1);
    unsigned long quiet;
    if (ratelog_due(&l->paused, &quiet))
        log_warn("%s: accept: %s; not accepting for %d ms (%lu more pauses since the last line)",
                 l->name, evutil_socket_error_to_string(e), l->pause_ms, quiet);
    l->pause_ms = l->pause_ms * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : l->pause_ms * 2;
}

struct listener *listener_new(struct event_base *base, const struct listener_conf *conf, char *err,
                              size_t errlen)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->conf = *conf;
    snprintf(l->name, sizeof(l->name), "%s", conf->name);
    l->pause_ms = PAUSE_MIN_MS;
    if (evutil_parse_sockaddr_port(conf->addr, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(err, errlen, "%s: cannot parse '%s' (want host:port)", l->name, conf->addr);
        goto fail;
    }
    l->resume = evtimer_new(base, on_resume, l);
    if (!l->resume) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;
    if (conf->reuseport)
        flags |= LEV_OPT_REUSEABLE_PORT;
    l->ev = evconnlistener_new_bind(base, on_accept, l, flags, conf->backlog,
                                    (struct sockaddr *)&ss, len);
    if (!l->ev) {
        snprintf(err, errlen, "%s: listen on %s: %s", l->name, conf->addr, strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(l->ev, on_error);
    return l;

fail:
    listener_free(l);
    return NULL;
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    if (l->ev)
        evconnlistener_free(l->ev);
    if (l->resume)
        event_free(l->resume);
    free(l);
}
