/* bgthread.h: what a background thread of the daemon (the records writer,
 * the export sinks) is started and woken with: a mutex and a condition
 * variable on the monotonic clock, a timed sleep to a monotonic deadline,
 * and a start that leaves every signal to the main thread. */
#ifndef TOLLGATE_BGTHREAD_H
#define TOLLGATE_BGTHREAD_H

#include <pthread.h>
#include <stdbool.h>

#include "core/util.h"

/* Initialises mu and cv (cv waits on CLOCK_MONOTONIC). Returns 0, or -1 with
 * neither left initialised. */
int bgthread_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv) MUST_CHECK;

/* With mu held: waits for a signal on cv or until clock_mono_ms() reaches
 * until_ms, whichever comes first (a spurious wake-up may return earlier). */
void bgthread_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, long long until_ms);

/* pthread_create with every signal blocked in the new thread (signals
 * belong to the main thread). Returns pthread_create's result. */
int bgthread_start(pthread_t *t, void *(*fn)(void *), void *arg) MUST_CHECK;

/* Sets *stop under mu, wakes the thread (every waiter on cv) and joins it;
 * the thread reads *stop under mu and returns once it is true. */
void bgthread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop);

#endif
