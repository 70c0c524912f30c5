/* bgthread.c: see bgthread.h. */
#include "core/bgthread.h"

#include <signal.h>
#include <time.h>

#include "core/clock.h"

int bgthread_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -1;
    if (pthread_mutex_init(mu, NULL) != 0) {
        pthread_cond_destroy(cv);
        return -1;
    }
    return 0;
}

void bgthread_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, long long until_ms)
{
    long long add = until_ms - clock_mono_ms();
    if (add <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += add / 1000;
    ts.tv_nsec += (add % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

int bgthread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void bgthread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop)
{
    pthread_mutex_lock(mu);
    *stop = true;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(mu);
    pthread_join(t, NULL);
}
