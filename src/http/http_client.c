/* http_client.c: blocking HTTP/1.1 with one deadline (http_client.h). The
 * socket is non-blocking and every wait is a poll() bounded by what is left
 * of the deadline, TLS handshake included, so a sink that accepts and then
 * says nothing costs at most timeout_ms. Name resolution is getaddrinfo's,
 * which has no deadline of its own (a resolver that never answers holds it
 * for resolv.conf's timeouts times attempts times servers), so a name is
 * looked up on a short-lived thread the request waits for until its
 * deadline; a lookup that outlives it finishes on its own and the next
 * request of the target takes its answer. IP literals need no thread.
 * "Connection: close": the status line is all we need, and a fresh connection
 * per request keeps the state machine trivial at a few batches per second. */
#include "http/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/config.h"
#include "http/tls.h"

#define HEAD_MAX 16384 /* a response head longer than this is refused */

int http_target_init(struct http_target *t, const char *url, const char *ca_file, char *err,
                     size_t errlen)
{
    char *base = NULL;
    memset(t, 0, sizeof(*t));
    if (config_parse_url(url, &t->tls, &t->host, &t->port, &base) < 0) {
        snprintf(err, errlen, "expected an http:// or https:// URL");
        return -1;
    }
    size_t n = strlen(base);
    t->path = malloc(n + 2);
    if (!t->path) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(t->path, n + 2, "%s", n ? base : "/");
    free(base);
    base = NULL;
    if (t->tls && !(t->tc = tls_client_new(ca_file, err, errlen)))
        goto fail;
    return 0;
fail:
    free(base);
    http_target_free(t);
    return -1;
}

/* A getaddrinfo on its own thread, shared by the thread and the waiting
 * request (two references); the last one to let go frees it. */
struct lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC, as the deadlines */
    int refs;
    bool done;
    int rc;               /* getaddrinfo's */
    struct addrinfo *res; /* taken by the request that reads it */
    char port[8];
    char host[];
};

static void lookup_unref(struct lookup *l)
{
    pthread_mutex_lock(&l->mu);
    int left = --l->refs;
    pthread_mutex_unlock(&l->mu);
    if (left)
        return;
    if (l->res)
        freeaddrinfo(l->res);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void *lookup_run(void *arg)
{
    struct lookup *l = arg;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(l->host, l->port, &hints, &res);
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->res = rc == 0 ? res : NULL;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    return NULL;
}

static struct lookup *lookup_start(const char *host, const char *port)
{
    size_t n = strlen(host) + 1;
    struct lookup *l = calloc(1, sizeof(*l) + n);
    pthread_attr_t ta;
    pthread_t th;
    if (!l)
        return NULL;
    if (bgthread_sync_init(&l->mu, &l->cv) < 0) {
        free(l);
        return NULL;
    }
    memcpy(l->host, host, n);
    snprintf(l->port, sizeof(l->port), "%s", port);
    l->refs = 2;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &ta, lookup_run, l);
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        l->refs = 1;
        lookup_unref(l);
        return NULL;
    }
    return l;
}

/* Resolves t's host by deadline: 0 with *res (the caller frees it), or -1
 * with err. */
static int resolve(struct http_target *t, long long deadline, struct addrinfo **res, char *err,
                   size_t errlen)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", t->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST};
    if (getaddrinfo(t->host, port, &hints, res) == 0)
        return 0; /* an IP literal: nothing to wait for */
    struct lookup *l = t->lookup;
    if (!l && !(l = lookup_start(t->host, port))) {
        snprintf(err, errlen, "resolve: cannot start a lookup thread");
        return -1;
    }
    t->lookup = l;
    pthread_mutex_lock(&l->mu);
    while (!l->done && clock_mono_ms() < deadline)
        bgthread_wait_until(&l->cv, &l->mu, deadline);
    bool done = l->done;
    int rc = l->rc;
    *res = l->res;
    l->res = NULL;
    pthread_mutex_unlock(&l->mu);
    if (!done) { /* kept: the next request waits for this lookup, not a new one */
        snprintf(err, errlen, "resolve: no answer within the deadline (the lookup goes on)");
        return -1;
    }
    t->lookup = NULL;
    lookup_unref(l);
    if (rc != 0) {
        snprintf(err, errlen, "resolve: %s", gai_strerror(rc));
        return -1;
    }
    return 0;
}

void http_target_free(struct http_target *t)
{
    if (t->lookup)
        lookup_unref(t->lookup); /* its thread frees it when it ends */
    if (t->tc)
        tls_client_free(t->tc);
    free(t->host);
    free(t->path);
    memset(t, 0, sizeof(*t));
}

/* Waits for fd to be ready for events; 1 ready, 0 deadline, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - clock_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -1;
        if (rc > 0)
            return 1;
    }
}

static int connect_to(struct http_target *t, long long deadline, char *err, size_t errlen)
{
    struct addrinfo *res = NULL;
    if (resolve(t, deadline, &res, err, errlen) < 0)
        return -1;
    int fd = -1;
    snprintf(err, errlen, "connect: no address");
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
            snprintf(err, errlen, "connect: %s",
                     w == 0 ? "timeout" : strerror(soerr ? soerr : errno));
        } else {
            snprintf(err, errlen, "connect: %s", strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/* One connection: plain fd or TLS over it. */
struct conn {
    int fd;
    SSL *ssl;
    long long deadline;
    int timeout_ms; /* what the deadline was set from, for the message */
};

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, buf[0] ? buf : "connection closed");
}

/* The deadline passed while waiting for the response head. */
static void no_answer(const struct conn *c, char *err, size_t errlen)
{
    snprintf(err, errlen, "timeout waiting for the response: no answer within %d ms",
             c->timeout_ms);
}

/* Waits for what the last SSL call wants; 1 go on, 0/-1 give up. */
static int ssl_wait(struct conn *c, int ret)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(c->fd, POLLIN, c->deadline);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(c->fd, POLLOUT, c->deadline);
    return -1;
}

static int send_all(struct conn *c, const char *p, size_t n, char *err, size_t errlen)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
            if (r <= 0) {
                int ok = ssl_wait(c, r);
                if (ok > 0)
                    continue;
                if (ok == 0)
                    snprintf(err, errlen, "timeout sending the request");
                else
                    ssl_err(err, errlen, "send");
                return -1;
            }
            w = r;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                int ok = wait_fd(c->fd, POLLOUT, c->deadline);
                if (ok > 0)
                    continue;
                snprintf(err, errlen, ok == 0 ? "timeout sending the request" : "send: %s",
                         strerror(errno));
                return -1;
            }
            if (w < 0) {
                snprintf(err, errlen, "send: %s", strerror(errno));
                return -1;
            }
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the response head is complete; returns the status. */
static int read_status(struct conn *c, char *err, size_t errlen)
{
    char head[HEAD_MAX + 1];
    size_t len = 0;
    for (;;) {
        ssize_t r;
        if (c->ssl) {
            int n = SSL_read(c->ssl, head + len, (int)(HEAD_MAX - len));
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
                    r = 0;
                } else {
                    int ok = ssl_wait(c, n);
                    if (ok > 0)
                        continue;
                    if (ok == 0)
                        no_answer(c, err, errlen);
                    else
                        ssl_err(err, errlen, "receive");
                    return -1;
                }
            } else {
                r = n;
            }
        } else {
            r = recv(c->fd, head + len, HEAD_MAX - len, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                int ok = wait_fd(c->fd, POLLIN, c->deadline);
                if (ok > 0)
                    continue;
                if (ok == 0)
                    no_answer(c, err, errlen);
                else
                    snprintf(err, errlen, "receive: %s", strerror(errno));
                return -1;
            }
            if (r < 0) {
                snprintf(err, errlen, "receive: %s", strerror(errno));
                return -1;
            }
        }
        if (r == 0) {
            snprintf(err, errlen, "closed before a whole response head");
            return -1;
        }
        len += (size_t)r;
        head[len] = '\0';
        if (strstr(head, "\r\n\r\n") || strstr(head, "\n\n"))
            break;
        if (len == HEAD_MAX) {
            snprintf(err, errlen, "response head over %d bytes", HEAD_MAX);
            return -1;
        }
    }
    int status = 0;
    if (sscanf(head, "HTTP/1.%*1[01] %3d", &status) != 1 || status < 100 || status > 599) {
        snprintf(err, errlen, "not an HTTP/1.x response");
        return -1;
    }
    return status;
}

/* Every failure names the address it was about ("10.0.0.7:4318: connect:
 * Connection refused"): the log line of a sink or a health check must say
 * which of several endpoints failed. */
static void name_peer(const struct http_target *t, char *err, size_t errlen)
{
    char why[256];
    bool v6 = strchr(t->host, ':') != NULL;
    snprintf(why, sizeof(why), "%s", err);
    snprintf(err, errlen, "%s%s%s:%d: %s", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port, why);
}

int http_request(struct http_target *t, const char *method, const char *type, const char *auth,
                 const char *body, size_t len, int timeout_ms, char *err, size_t errlen)
{
    struct conn c = {
        .fd = -1, .ssl = NULL, .deadline = clock_mono_ms() + timeout_ms, .timeout_ms = timeout_ms};
    char head[1024];
    int status = -1;
    c.fd = connect_to(t, c.deadline, err, errlen);
    if (c.fd < 0)
        goto done;
    if (t->tls) {
        if (!(c.ssl = tls_client_ssl(t->tc, t->host)) || SSL_set_fd(c.ssl, c.fd) != 1) {
            snprintf(err, errlen, "TLS: out of memory");
            goto done;
        }
        for (;;) {
            int r = SSL_connect(c.ssl);
            if (r == 1)
                break;
            int ok = ssl_wait(&c, r);
            if (ok > 0)
                continue;
            if (ok == 0) {
                snprintf(err, errlen, "timeout in the TLS handshake");
            } else {
                long v = SSL_get_verify_result(c.ssl);
                if (v != X509_V_OK)
                    snprintf(err, errlen, "TLS: certificate verify failed (%s)",
                             X509_verify_cert_error_string(v));
                else
                    ssl_err(err, errlen, "TLS handshake");
            }
            goto done;
        }
    }
    bool v6 = strchr(t->host, ':') != NULL;
    bool dflt = t->port == (t->tls ? 443 : 80);
    char port[16] = "";
    if (!dflt)
        snprintf(port, sizeof(port), ":%d", t->port);
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: %s%s%s%s\r\nConnection: close\r\n"
                     "User-Agent: tollgate\r\n",
                     method, t->path, v6 ? "[" : "", t->host, v6 ? "]" : "", port);
    if (type && n > 0 && (size_t)n < sizeof(head))
        n += snprintf(head + n, sizeof(head) - (size_t)n,
                      "Content-Type: %s\r\nContent-Length: %zu\r\n", type, len);
    if (n < 0 || (size_t)n >= sizeof(head)) {
        snprintf(err, errlen, "request head too long");
        goto done;
    }
    if (send_all(&c, head, (size_t)n, err, errlen) < 0)
        goto done;
    if (auth && (send_all(&c, "Authorization: Bearer ", 22, err, errlen) < 0 ||
                 send_all(&c, auth, strlen(auth), err, errlen) < 0 ||
                 send_all(&c, "\r\n", 2, err, errlen) < 0))
        goto done;
    if (send_all(&c, "\r\n", 2, err, errlen) < 0 ||
        (type && send_all(&c, body, len, err, errlen) < 0))
        goto done;
    status = read_status(&c, err, errlen);
done:
    if (c.ssl) {
        SSL_set_quiet_shutdown(c.ssl, 1);
        SSL_free(c.ssl);
    }
    if (c.fd >= 0)
        close(c.fd);
    if (status < 0)
        name_peer(t, err, errlen);
    return status;
}
