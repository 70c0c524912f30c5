/* bgthread.h: what a background thread of the daemon (the records writer,
 * the export sinks) is started and woken with: a mutex and a condition
 * variable on the monotonic clock, a timed sleep to a monotonic deadline,
 * a start that leaves every signal to the main thread, a stop, and the
 * bounded queue the workers hand their lines over in. */
#ifndef TOLLGATE_BGTHREAD_H
#define TOLLGATE_BGTHREAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct evbuffer;

/* Initialises mu and cv (cv waits on CLOCK_MONOTONIC, for
 * bgthread_wait_until). Returns 0, or -1 with neither left initialised. */
int bgthread_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv) MUST_CHECK;

/* Initialises mu and cv (bgthread_sync_init) and starts fn(arg)
 * with every signal blocked (signals belong to the main thread). Returns 0,
 * or -1 with "cannot start the WHAT thread: why" in err and nothing left
 * initialised. */
int bgthread_launch(pthread_t *t, pthread_mutex_t *mu, pthread_cond_t *cv, void *(*fn)(void *),
                    void *arg, const char *what, char *err, size_t errlen) MUST_CHECK;

/* With mu held: waits for a signal on cv or until clock_mono_ms() reaches
 * until_ms, whichever comes first (a spurious wake-up may return earlier). */
void bgthread_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, long long until_ms);

/* Sets *stop under mu, wakes the thread (every waiter on cv), joins it and
 * destroys mu and cv; the thread reads *stop under mu and returns once it
 * is true. */
void bgthread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop);

/* A bounded queue of lines handed over by the workers to a background
 * thread, guarded by that thread's mutex. */
struct bgqueue {
    struct evbuffer *buf;
    unsigned long lines;     /* in buf */
    size_t max_bytes;        /* a push past it is dropped; 0: no bound */
    unsigned long max_lines; /* the same in lines */
    unsigned long drops;     /* pushes dropped, to log only some */
};

/* An empty queue with these bounds. Returns 0, or -1 when out of memory. */
int bgqueue_init(struct bgqueue *q, size_t max_bytes, unsigned long max_lines) MUST_CHECK;
void bgqueue_free(struct bgqueue *q);
/* The workers' side: under mu, moves in (n lines) into q and wakes the
 * thread on cv; when that would pass a bound, drains in instead and adds n
 * to *dropped (read under mu too). Returns true when this drop is one to
 * log (the first, then one in 1000), for the caller to log outside the
 * lock. */
bool bgqueue_push(struct bgqueue *q, pthread_mutex_t *mu, pthread_cond_t *cv, struct evbuffer *in,
                  unsigned long n, uint64_t *dropped);

#endif
