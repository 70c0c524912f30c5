/* bgthread.c: see bgthread.h. */
#include "core/bgthread.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

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

int bgthread_launch(pthread_t *t, pthread_mutex_t *mu, pthread_cond_t *cv, void *(*fn)(void *),
                    void *arg, const char *what, char *err, size_t errlen)
{
    if (bgthread_sync_init(mu, cv) < 0) {
        snprintf(err, errlen, "cannot start the %s thread: cannot create a lock", what);
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the %s thread: %s", what, strerror(rc));
        pthread_cond_destroy(cv);
        pthread_mutex_destroy(mu);
        return -1;
    }
    return 0;
}

void bgthread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop)
{
    pthread_mutex_lock(mu);
    *stop = true;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(mu);
    pthread_join(t, NULL);
    pthread_cond_destroy(cv);
    pthread_mutex_destroy(mu);
}

int bgqueue_init(struct bgqueue *q, size_t max_bytes, unsigned long max_lines)
{
    *q = (struct bgqueue){.max_bytes = max_bytes, .max_lines = max_lines};
    q->buf = evbuffer_new();
    return q->buf ? 0 : -1;
}

void bgqueue_free(struct bgqueue *q)
{
    if (q->buf)
        evbuffer_free(q->buf);
    q->buf = NULL;
}

bool bgqueue_push(struct bgqueue *q, pthread_mutex_t *mu, pthread_cond_t *cv, struct evbuffer *in,
                  unsigned long n, uint64_t *dropped)
{
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return false;
    pthread_mutex_lock(mu);
    bool full = (q->max_bytes && evbuffer_get_length(q->buf) + len > q->max_bytes) ||
                (q->max_lines && q->lines + n > q->max_lines);
    if (!full) {
        evbuffer_add_buffer(q->buf, in);
        q->lines += n;
        pthread_cond_signal(cv);
    } else {
        *dropped += n;
    }
    bool log = full && q->drops++ % 1000 == 0;
    pthread_mutex_unlock(mu);
    if (full)
        evbuffer_drain(in, len);
    return log;
}
