/* test_upstream.c: the upstream client against a scripted raw server running
 * in the same event loop on 127.0.0.1: plain TCP and TLS (a CA and server
 * certificates made with the openssl command line at test time). Cases come
 * from one table: the server's canned response and what it does after it,
 * how many requests the client sends and how, and what each must observe.
 * Every case is bounded by a guard timer. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "check.h"
#include "core/config.h"
#include "core/log.h"
#include "http/upstream.h"

#ifdef UPSTREAM_TEST_LOG_STUB
/* Only for building this test against upstream.o alone (log.c absent). */
bool log_enabled(enum log_level level)
{
    return getenv("TEST_LOG") != NULL;
}
void log_msg(enum log_level level, const char *reqid, const char *fmt, ...)
{
    if (!getenv("TEST_LOG"))
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
#endif

#define GUARD_MS 5000
#define NOCHECK LLONG_MIN

static char dir[64]; /* temp dir with ca.pem, srv.*, wrong.*, hosts */
static bool have_certs;

/* ---- the scripted upstream ---- */

enum srv_mode {
    SRV_PLAIN,
    SRV_TLS,       /* cert for IP 127.0.0.1 and DNS localhost, signed by ca.pem */
    SRV_TLS_WRONG, /* cert for other.example only, signed by ca.pem */
    SRV_SILENT,    /* accepts TCP, never reads: a TLS handshake that stalls */
    SRV_NONE,      /* nothing listens: connection refused */
};

enum after {
    AFTER_KEEP,        /* keep the connection, answer the next request */
    AFTER_HANG,        /* keep it, never answer again */
    AFTER_CLOSE,       /* close right after the response */
    AFTER_CLOSE_LATER, /* close 20 ms later (client has pooled the connection) */
    AFTER_RESET,       /* RST 30 ms later (client has read the bytes) */
};

struct mconn {
    struct mock *m;
    struct bufferevent *bev;
    struct event *later;
    struct mconn *next;
    bool sending;
};

struct mock {
    struct event_base *base;
    struct evconnlistener *lis;
    SSL_CTX *sctx;
    enum srv_mode mode;
    const char *resp;
    enum after after;
    int port;
    int accepts, requests, peer_closed;
    struct mconn *conns;
};

static void mconn_close(struct mconn *mc, bool reset)
{
    if (!mc->bev)
        return;
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(bufferevent_getfd(mc->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    bufferevent_free(mc->bev);
    mc->bev = NULL;
}

static void m_latercb(evutil_socket_t fd, short what, void *arg)
{
    struct mconn *mc = arg;
    mconn_close(mc, mc->m->after == AFTER_RESET);
}

static void m_after(struct mconn *mc)
{
    struct timeval tv = {0, 20000};
    switch (mc->m->after) {
    case AFTER_KEEP:
    case AFTER_HANG:
        break;
    case AFTER_CLOSE:
        mconn_close(mc, false);
        break;
    case AFTER_RESET:
        tv.tv_usec = 30000;
        /* fall through */
    case AFTER_CLOSE_LATER:
        evtimer_add(mc->later, &tv);
        break;
    }
}

static void m_readcb(struct bufferevent *bev, void *arg)
{
    struct mconn *mc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr e;
    while ((e = evbuffer_search(in, "\r\n\r\n", 4, NULL)).pos >= 0) {
        evbuffer_drain(in, e.pos + 4);
        mc->m->requests++;
        if (mc->m->after == AFTER_HANG && mc->m->requests > 1)
            return;
        size_t len = strlen(mc->m->resp);
        if (len == 0) {
            m_after(mc);
            return;
        }
        mc->sending = true;
        bufferevent_write(bev, mc->m->resp, len);
    }
}

static void m_writecb(struct bufferevent *bev, void *arg)
{
    struct mconn *mc = arg;
    if (!mc->sending)
        return;
    mc->sending = false;
    m_after(mc);
}

static void m_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct mconn *mc = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        mc->m->peer_closed++;
        mconn_close(mc, false);
    }
}

static void m_acceptcb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                       void *arg)
{
    struct mock *m = arg;
    struct mconn *mc = calloc(1, sizeof(*mc));
    mc->m = m;
    mc->next = m->conns;
    m->conns = mc;
    mc->later = evtimer_new(m->base, m_latercb, mc);
    m->accepts++;
    if (m->mode == SRV_SILENT) {
        mc->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
        return; /* never enabled: the ClientHello is never read */
    }
    if (m->sctx)
        mc->bev = bufferevent_openssl_socket_new(m->base, fd, SSL_new(m->sctx),
                                                 BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    else
        mc->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(mc->bev, m_readcb, m_writecb, m_eventcb, mc);
    bufferevent_enable(mc->bev, EV_READ | EV_WRITE);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd); /* nobody listens there now */
    return ntohs(sin.sin_port);
}

static int mock_start(struct mock *m, struct event_base *base)
{
    m->base = base;
    if (m->mode == SRV_NONE) {
        m->port = free_port();
        return m->port > 0 ? 0 : -1;
    }
    if (m->mode == SRV_TLS || m->mode == SRV_TLS_WRONG) {
        char cert[128], key[128];
        const char *stem = m->mode == SRV_TLS ? "srv" : "wrong";
        snprintf(cert, sizeof(cert), "%s/%s.pem", dir, stem);
        snprintf(key, sizeof(key), "%s/%s.key", dir, stem);
        m->sctx = SSL_CTX_new(TLS_server_method());
        if (!m->sctx || SSL_CTX_use_certificate_chain_file(m->sctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(m->sctx, key, SSL_FILETYPE_PEM) != 1)
            return -1;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    m->lis = evconnlistener_new_bind(base, m_acceptcb, m, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     16, (struct sockaddr *)&sin, sizeof(sin));
    if (!m->lis)
        return -1;
    socklen_t len = sizeof(sin);
    getsockname(evconnlistener_get_fd(m->lis), (struct sockaddr *)&sin, &len);
    m->port = ntohs(sin.sin_port);
    return 0;
}

static void mock_stop(struct mock *m)
{
    while (m->conns) {
        struct mconn *mc = m->conns;
        m->conns = mc->next;
        mconn_close(mc, false);
        event_free(mc->later);
        free(mc);
    }
    if (m->lis)
        evconnlistener_free(m->lis);
    if (m->sctx)
        SSL_CTX_free(m->sctx);
}

/* A resolver that answers NXDOMAIN to everything, so a failed lookup is
 * fast and never leaves 127.0.0.1. */
struct nxdns {
    evutil_socket_t fd;
    struct event *ev;
    int port;
};

static void nx_readcb(evutil_socket_t fd, short what, void *arg)
{
    unsigned char buf[512];
    struct sockaddr_in from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
    if (n < 12)
        return;
    buf[2] |= 0x80;                     /* QR: a response */
    buf[3] = (unsigned char)(0x80 | 3); /* RA, RCODE 3: NXDOMAIN */
    (void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
}

static int nxdns_start(struct nxdns *d, struct event_base *base)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    d->fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(d->fd, (struct sockaddr *)&sin, &len) < 0)
        return -1;
    d->port = ntohs(sin.sin_port);
    d->ev = event_new(base, d->fd, EV_READ | EV_PERSIST, nx_readcb, d);
    return d->ev && event_add(d->ev, NULL) == 0 ? 0 : -1;
}

static void nxdns_stop(struct nxdns *d)
{
    if (d->ev)
        event_free(d->ev);
    if (d->fd >= 0)
        close(d->fd);
}

/* ---- the cases ---- */

enum cancel_at { CANCEL_NONE, CANCEL_AT_SEND, CANCEL_IN_HEAD, CANCEL_IN_BODY };

struct ucase {
    const char *name;
    enum srv_mode mode;
    bool ca;          /* client gets ca_file */
    const char *host; /* NULL: 127.0.0.1 */
    const char *resp;
    enum after after;
    bool is_head;
    int n_req;  /* sequential requests */
    int gap_ms; /* between them; -1: the next is sent from inside on_done */
    enum cancel_at cancel;
    int pause_ms; /* pause at the first on_body for this long */
    enum upstream_result want;
    int want_status;       /* 0: no check */
    const char *want_body; /* NULL: no check */
    long long want_clen;   /* NOCHECK: no check */
    const char *want_hdrs; /* "Name: value\n"..., NULL: no check */
    int want_connects;     /* -1: no check */
    int want_resumed;      /* -1: no check */
    int want_requests;     /* requests the server saw; -1: no check */
    const char *want_err;  /* substring of errstr, NULL: no check */
    int max_ms;            /* bound on the whole case, 0: none */
};

#define OK200(extra, body) "HTTP/1.1 200 OK\r\n" extra "\r\n" body
#define R(...)                                                                                     \
    .want = UPSTREAM_OK, .want_clen = NOCHECK, .want_connects = -1, .want_resumed = -1,            \
    .want_requests = -1, .n_req = 1, __VA_ARGS__

/* R() gives the defaults and a case overrides some: intended here. */
#pragma GCC diagnostic ignored "-Woverride-init"

static const struct ucase cases[] = {
    /* framing */
    {"content_length", SRV_PLAIN,
     R(.resp = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
               "Content-Length: 7\r\n\r\n{\"a\":1}",
       .want_status = 201, .want_body = "{\"a\":1}", .want_clen = 7,
       .want_hdrs = "Content-Type: application/json\n")},
    {"chunked_dechunked", SRV_PLAIN,
     R(.resp = OK200("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
       .want_status = 200, .want_body = "hello world", .want_clen = -1, .want_hdrs = "")},
    {"eof_delimited", SRV_PLAIN,
     R(.resp = OK200("", "hello"), .after = AFTER_CLOSE, .want_body = "hello", .want_clen = -1)},
    {"hop_by_hop_removed", SRV_PLAIN,
     R(.resp = OK200("Connection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nX-Secret: 1\r\n"
                     "Proxy-Authenticate: x\r\nX-Keep: 2\r\nContent-Length: 0\r\n",
                     ""),
       .want_hdrs = "X-Keep: 2\n", .want_body = "", .want_clen = 0)},
    {"continue_100_skipped", SRV_PLAIN,
     R(.resp = "HTTP/1.1 100 Continue\r\n\r\n" OK200("Content-Length: 2\r\n", "ok"),
       .want_status = 200, .want_body = "ok")},
    {"head_no_body_reused", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 5\r\n", ""), .is_head = true, .n_req = 2, .gap_ms = 10,
       .want_body = "", .want_clen = 5, .want_connects = 1)},
    {"te_and_cl", SRV_PLAIN,
     R(.resp =
           OK200("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
       .want = UPSTREAM_BAD_RESPONSE)},
    {"two_content_lengths", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
       .want = UPSTREAM_BAD_RESPONSE)},
    {"negative_content_length", SRV_PLAIN,
     R(.resp = OK200("Content-Length: -1\r\n", "x"), .want = UPSTREAM_BAD_RESPONSE)},
    {"bad_chunk_size", SRV_PLAIN,
     R(.resp = OK200("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
       .want = UPSTREAM_BAD_RESPONSE)},
    {"chunk_size_overflow", SRV_PLAIN,
     R(.resp = OK200("Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\nx\r\n0\r\n\r\n"),
       .want = UPSTREAM_BAD_RESPONSE)},
    {"bad_status_line", SRV_PLAIN,
     R(.resp = "XTTP/1.1 200 OK\r\n\r\n", .want = UPSTREAM_BAD_RESPONSE)},
    {"bad_status_code", SRV_PLAIN,
     R(.resp = "HTTP/1.1 2000 OK\r\n\r\n", .want = UPSTREAM_BAD_RESPONSE)},
    {"switching_protocols", SRV_PLAIN,
     R(.resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
       .want = UPSTREAM_BAD_RESPONSE)},
    /* faults */
    {"refused_fast", SRV_NONE,
     R(.want = UPSTREAM_CONNECT_FAILED, .want_err = "refused", .max_ms = 250)},
    {"dns_failure", SRV_PLAIN,
     R(.host = "nonexistent.invalid", .want = UPSTREAM_CONNECT_FAILED, .want_err = "resolving",
       .want_requests = 0)},
    {"head_timeout", SRV_PLAIN,
     R(.resp = "", .after = AFTER_HANG, .want = UPSTREAM_HEAD_TIMEOUT, .max_ms = 1000)},
    {"idle_timeout_mid_body", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 10\r\n", "abc"), .after = AFTER_HANG,
       .want = UPSTREAM_IDLE_TIMEOUT, .want_body = "abc", .max_ms = 1000)},
    {"reset_mid_body", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 10\r\n", "abc"), .after = AFTER_RESET, .want = UPSTREAM_RESET,
       .want_body = "abc")},
    {"reset_before_head", SRV_PLAIN, R(.resp = "", .after = AFTER_RESET, .want = UPSTREAM_RESET)},
    {"short_body_then_close", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 10\r\n", "abc"), .after = AFTER_CLOSE,
       .want = UPSTREAM_RESET)},
    /* pool */
    {"keepalive_reuse", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\n", "ok"), .n_req = 2, .gap_ms = 10, .want_body = "ok",
       .want_connects = 1, .want_requests = 2)},
    {"extra_bytes_not_reused", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\n", "okEXTRA"), .n_req = 2, .gap_ms = 10,
       .want_body = "ok", .want_connects = 2)},
    {"connection_close_not_reused", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\nConnection: close\r\n", "ok"), .n_req = 2, .gap_ms = 10,
       .want_body = "ok", .want_connects = 2)},
    {"idle_closed_by_server", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\n", "ok"), .after = AFTER_CLOSE_LATER, .n_req = 2,
       .gap_ms = 100, .want_body = "ok", .want_connects = 2, .want_requests = 2)},
    {"pooled_closed_retry_once", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\n", "ok"), .after = AFTER_CLOSE, .n_req = 2, .gap_ms = -1,
       .want_body = "ok", .want_connects = 2, .want_requests = 2)},
    /* cancel and pause */
    {"cancel_at_send", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\n", "ok"), .cancel = CANCEL_AT_SEND)},
    {"cancel_in_head", SRV_PLAIN,
     R(.resp = OK200("Content-Length: 2\r\n", "ok"), .after = AFTER_HANG,
       .cancel = CANCEL_IN_HEAD)},
    {"cancel_in_body", SRV_PLAIN,
     R(.resp = OK200("Transfer-Encoding: chunked\r\n", "2\r\nab\r\n2\r\ncd\r\n"),
       .after = AFTER_HANG, .cancel = CANCEL_IN_BODY)},
    {"pause_holds_body", SRV_PLAIN,
     R(.resp = OK200("Transfer-Encoding: chunked\r\n", "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"),
       .pause_ms = 300, .want_body = "abcd")},
    /* TLS */
    {"tls_ok_resumed", SRV_TLS,
     R(.ca = true, .resp = OK200("Content-Length: 2\r\nConnection: close\r\n", "ok"),
       .after = AFTER_CLOSE, .n_req = 2, .gap_ms = 20, .want_body = "ok", .want_connects = 2,
       .want_resumed = 1)},
    {"tls_keepalive_reuse", SRV_TLS,
     R(.ca = true, .host = "localhost", .resp = OK200("Content-Length: 2\r\n", "ok"), .n_req = 2,
       .gap_ms = 10, .want_body = "ok", .want_connects = 1)},
    {"tls_eof_delimited_dirty_close", SRV_TLS,
     R(.ca = true, .resp = OK200("", "hello"), .after = AFTER_CLOSE, .want_body = "hello")},
    {"tls_short_body_then_close", SRV_TLS,
     R(.ca = true, .resp = OK200("Content-Length: 10\r\n", "abc"), .after = AFTER_CLOSE,
       .want = UPSTREAM_RESET)},
    {"tls_unknown_ca", SRV_TLS,
     R(.resp = "", .want = UPSTREAM_CONNECT_FAILED, .want_err = "certificate verify failed",
       .want_requests = 0)},
    {"tls_wrong_hostname", SRV_TLS,
     R(.ca = true, .host = "wrong.test", .resp = "", .want = UPSTREAM_CONNECT_FAILED,
       .want_err = "hostname mismatch", .want_requests = 0)},
    {"tls_wrong_ip", SRV_TLS_WRONG,
     R(.ca = true, .resp = "", .want = UPSTREAM_CONNECT_FAILED,
       .want_err = "certificate verify failed", .want_requests = 0)},
    {"tls_handshake_stall", SRV_SILENT,
     R(.ca = true, .want = UPSTREAM_CONNECT_TIMEOUT, .max_ms = 1000)},
};

/* ---- the client side ---- */

struct exch {
    struct run *run;
    struct upstream_req *r;
    int status;
    long long clen;
    char hdrs[1024];
    char body[4096];
    size_t blen;
    int bodies, bodies_while_paused;
    bool done;
    enum upstream_result res;
    char err[256];
};

struct run {
    const struct ucase *c;
    struct event_base *base;
    struct upstream_pool *pool;
    struct mock m;
    struct exch ex[4];
    int sent, ndone;
    bool paused_once;
    struct event *pause_timer;
};

static void send_next(struct run *run);

static void send_nextcb(evutil_socket_t fd, short what, void *arg)
{
    send_next(arg);
}

static void guardcb(evutil_socket_t fd, short what, void *arg)
{
    fprintf(stderr, "  guard timer fired\n");
    event_base_loopbreak(arg);
}

static void on_head(void *arg, int status, const struct upstream_header *h, size_t n,
                    long long clen)
{
    struct exch *e = arg;
    e->status = status;
    e->clen = clen;
    size_t off = 0;
    for (size_t i = 0; i < n && off < sizeof(e->hdrs); i++)
        off += (size_t)snprintf(e->hdrs + off, sizeof(e->hdrs) - off, "%s: %s\n", h[i].name,
                                h[i].value);
    if (e->run->c->cancel == CANCEL_IN_HEAD) {
        upstream_cancel(e->r);
        event_base_loopexit(e->run->base, &(struct timeval){0, 100000});
    }
}

static void pausecb(evutil_socket_t fd, short what, void *arg)
{
    struct exch *e = arg;
    e->bodies_while_paused = e->bodies;
    upstream_pause(e->r, false);
}

static void on_body(void *arg, const char *buf, size_t len)
{
    struct exch *e = arg;
    struct run *run = e->run;
    e->bodies++;
    if (e->blen + len < sizeof(e->body)) {
        memcpy(e->body + e->blen, buf, len);
        e->blen += len;
    }
    if (run->c->cancel == CANCEL_IN_BODY) {
        upstream_cancel(e->r);
        event_base_loopexit(run->base, &(struct timeval){0, 100000});
    }
    if (run->c->pause_ms && !run->paused_once) {
        run->paused_once = true;
        upstream_pause(e->r, true);
        int ms = run->c->pause_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(run->pause_timer, &tv);
    }
}

static void on_done(void *arg, enum upstream_result res, const char *errstr)
{
    struct exch *e = arg;
    struct run *run = e->run;
    e->done = true;
    e->res = res;
    snprintf(e->err, sizeof(e->err), "%s", errstr ? errstr : "");
    if (++run->ndone == run->c->n_req) {
        event_base_loopbreak(run->base);
    } else if (run->c->gap_ms < 0) {
        send_next(run);
    } else {
        int ms = run->c->gap_ms;
        event_base_once(run->base, -1, EV_TIMEOUT, send_nextcb, run,
                        &(struct timeval){ms / 1000, (ms % 1000) * 1000});
    }
}

static const struct upstream_handlers handlers = {on_head, on_body, on_done};

static void send_next(struct run *run)
{
    struct exch *e = &run->ex[run->sent++];
    e->run = run;
    struct evbuffer *req = evbuffer_new();
    evbuffer_add_printf(req, "%s /v1/x HTTP/1.1\r\nHost: upstream\r\n\r\n",
                        run->c->is_head ? "HEAD" : "GET");
    e->r = upstream_send(run->pool, req, run->c->is_head, &handlers, e);
    CHECK(e->r != NULL);
    if (e->r && run->c->cancel == CANCEL_AT_SEND) {
        upstream_cancel(e->r);
        event_base_loopexit(run->base, &(struct timeval){0, 100000});
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void run_case(const struct ucase *c)
{
    bool tls = c->mode != SRV_PLAIN && c->mode != SRV_NONE;
    if (tls && !have_certs) {
        fprintf(stderr, "  %s: no certificates\n", c->name);
        check_failed_now = 1;
        return;
    }
    struct run run = {.c = c};
    char hosts[128], ca[128], err[256] = "";
    snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    run.base = event_base_new();
    struct evdns_base *dns =
        evdns_base_new(run.base, 0); /* no nameservers: never leaves the host */
    CHECK(evdns_base_load_hosts(dns, hosts) == 0);
    struct nxdns nx = {.fd = -1};
    char ns[32];
    CHECK(nxdns_start(&nx, run.base) == 0);
    snprintf(ns, sizeof(ns), "127.0.0.1:%d", nx.port);
    CHECK(evdns_base_nameserver_ip_add(dns, ns) == 0);
    run.m.mode = c->mode;
    run.m.resp = c->resp ? c->resp : "";
    run.m.after = c->after;
    CHECK(mock_start(&run.m, run.base) == 0);
    run.pause_timer = evtimer_new(run.base, pausecb, &run.ex[0]);

    struct cfg_upstream cfg = {.name = "test",
                               .tls = tls,
                               .host = (char *)(c->host ? c->host : "127.0.0.1"),
                               .port = run.m.port,
                               .ca_file = c->ca ? ca : NULL};
    struct upstream_limits lim = {.connect_timeout_ms = 300,
                                  .first_byte_timeout_ms = 300,
                                  .idle_timeout_ms = 200,
                                  .pool_size = 4};
    run.pool = upstream_pool_new(run.base, dns, &cfg, &lim, err, sizeof(err));
    CHECK(run.pool != NULL);
    if (!run.pool) {
        fprintf(stderr, "  %s: %s\n", c->name, err);
        goto out;
    }

    double t0 = now_ms();
    send_next(&run);
    struct event *guard = evtimer_new(run.base, guardcb, run.base);
    struct timeval gtv = {GUARD_MS / 1000, 0};
    evtimer_add(guard, &gtv);
    event_base_dispatch(run.base);
    double took = now_ms() - t0;
    event_free(guard);

    if (c->max_ms)
        CHECK(took < c->max_ms);
    if (c->cancel != CANCEL_NONE) {
        CHECK(!run.ex[0].done); /* no callback after cancel */
        if (c->cancel != CANCEL_AT_SEND)
            CHECK_INT(run.m.peer_closed, 1); /* the connection was closed, not pooled */
        if (c->cancel == CANCEL_IN_BODY)
            CHECK_INT(run.ex[0].bodies, 1);
    } else {
        CHECK_INT(run.sent, c->n_req);
        for (int i = 0; i < run.sent; i++) {
            struct exch *e = &run.ex[i];
            CHECK(e->done);
            CHECK_INT(e->res, c->want);
            if (e->res != c->want)
                fprintf(stderr, "  %s[%d]: errstr \"%s\"\n", c->name, i, e->err);
            if (c->want_status)
                CHECK_INT(e->status, c->want_status);
            if (c->want_body) {
                e->body[e->blen] = '\0';
                CHECK_STR(e->body, c->want_body);
            }
            if (c->want_clen != NOCHECK)
                CHECK_INT(e->clen, c->want_clen);
            if (c->want_hdrs)
                CHECK_STR(e->hdrs, c->want_hdrs);
            if (c->want_err)
                CHECK(strstr(e->err, c->want_err) != NULL);
        }
        if (c->pause_ms) {
            CHECK(run.paused_once);
            CHECK_INT(run.ex[0].bodies_while_paused, 1); /* nothing delivered while paused */
        }
    }
    if (c->want_connects >= 0)
        CHECK_INT(upstream_pool_connects(run.pool), c->want_connects);
    if (c->want_resumed >= 0)
        CHECK_INT(upstream_pool_resumed(run.pool), c->want_resumed);
    if (c->want_requests >= 0)
        CHECK_INT(run.m.requests, c->want_requests);
out:
    upstream_pool_free(run.pool);
    mock_stop(&run.m);
    event_free(run.pause_timer);
    evdns_base_free(dns, 0);
    nxdns_stop(&nx);
    /* Let deferred frees (bufferevent finalizers) run before the base goes. */
    event_base_loop(run.base, EVLOOP_NONBLOCK);
    event_base_free(run.base);
}

static void test_table(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int before = check_failed_now;
        check_failed_now = 0;
        run_case(&cases[i]);
        printf("  %s %s\n", check_failed_now ? "FAIL" : "ok  ", cases[i].name);
        check_failed_now |= before;
    }
}

/* 101 headers: one over the limit. */
static void test_too_many_headers(void)
{
    static char resp[4096];
    size_t off = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 101; i++)
        off += (size_t)snprintf(resp + off, sizeof(resp) - off, "X-H%d: v\r\n", i);
    snprintf(resp + off, sizeof(resp) - off, "Content-Length: 0\r\n\r\n");
    struct ucase c = {"too_many_headers", SRV_PLAIN,
                      R(.resp = resp, .want = UPSTREAM_BAD_RESPONSE, .want_err = "headers")};
    run_case(&c);
}

/* 70 KiB of headers: over the 64 KiB bound (below http_parser's own 80 KiB). */
static void test_headers_too_big(void)
{
    static char resp[80 * 1024];
    size_t off = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 7; i++) {
        off += (size_t)snprintf(resp + off, sizeof(resp) - off, "X-Big%d: ", i);
        memset(resp + off, 'a', 10 * 1024);
        off += 10 * 1024;
        off += (size_t)snprintf(resp + off, sizeof(resp) - off, "\r\n");
    }
    snprintf(resp + off, sizeof(resp) - off, "Content-Length: 0\r\n\r\n");
    struct ucase c = {"headers_too_big", SRV_PLAIN,
                      R(.resp = resp, .want = UPSTREAM_BAD_RESPONSE, .want_err = "headers")};
    run_case(&c);
}

static void test_bad_ca_file(void)
{
    struct event_base *base = event_base_new();
    struct cfg_upstream cfg = {
        .name = "t", .tls = true, .host = "127.0.0.1", .port = 1, .ca_file = "/nonexistent/ca.pem"};
    struct upstream_limits lim = {100, 100, 100, 1};
    char err[256] = "";
    struct upstream_pool *p = upstream_pool_new(base, NULL, &cfg, &lim, err, sizeof(err));
    CHECK(p == NULL);
    CHECK(strstr(err, "ca_file") != NULL);
    upstream_pool_free(p);
    event_base_free(base);
}

static int make_certs(void)
{
    snprintf(dir, sizeof(dir), "/tmp/tg-upstream-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[2048];
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    snprintf(cmd, sizeof(cmd),
             "cd %s && printf '127.0.0.1 localhost wrong.test\\n' > hosts && "
             "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=tollgate-test-ca "
             "&& openssl req %s -keyout srv.key -out srv.csr -subj /CN=localhost "
             "&& printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > srv.ext "
             "&& openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile srv.ext "
             "&& openssl req %s -keyout wrong.key -out wrong.csr -subj /CN=other.example "
             "&& printf 'subjectAltName=DNS:other.example\\n' > wrong.ext "
             "&& openssl x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out wrong.pem -days 2 -extfile wrong.ext",
             dir, ec, ec, ec);
    char full[2200];
    snprintf(full, sizeof(full), "( %s ) >/dev/null 2>&1", cmd);
    return system(full) == 0 ? 0 : -1;
}

static const struct check_test tests[] = {
    {"table", test_table},
    {"too_many_headers", test_too_many_headers},
    {"headers_too_big", test_headers_too_big},
    {"bad_ca_file", test_bad_ca_file},
};

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* writes to a closed peer must fail with EPIPE */
    have_certs = make_certs() == 0;
    if (!have_certs)
        fprintf(stderr, "cannot create test certificates with openssl in %s\n", dir);
    int rc = CHECK_MAIN("upstream", tests);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return rc;
}
