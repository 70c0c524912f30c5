/* upstream.c: the HTTP/1.1 client to one upstream, with a keep-alive pool.
 *
 * One exchange (struct upstream_req) walks CONNECTING -> WRITING -> WAITING
 * -> READING -> DONE, with one libevent timer holding the deadline of the
 * current state (bufferevent timeouts are not used: they cannot tell "the
 * client paused us" from "the upstream went quiet"). Connections (struct
 * conn) outlive exchanges: after a response whose framing proved it complete
 * on a keep-alive connection with nothing extra after it, the connection goes
 * back to the pool's LIFO idle list.
 *
 * Response framing is http_parser's (strict: TE+CL, duplicate or bad
 * Content-Length, bad chunk sizes are errors). TLS runs with dirty shutdown
 * allowed, because many servers close without close_notify; truncation is
 * still caught because a Content-Length or chunked body is complete only
 * when the parser says so. A body delimited by EOF (no length, not chunked)
 * is accepted as complete at EOF, clean close_notify or not: HTTP/1.1 gives
 * no other signal, and LLM APIs always frame their bodies anyway.
 *
 * Reentrancy: user callbacks may cancel the exchange, pause it, or send a
 * new one. Every libevent entry point brackets its work with enter/leave;
 * cancel or completion only marks the exchange dead, and leave frees it once
 * the stack has unwound (the hiredis libevent adapter's pattern). */
#include "http/upstream.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <http_parser.h>

#include "core/config.h"
#include "core/log.h"
#include "http/headers.h"
#include "http/tls.h"

#define MAX_HEADERS 100
#define MAX_HEADER_BYTES (64 * 1024) /* names + values, NULs included */
#define READ_HIGH_MARK (64 * 1024)   /* one read batch is bounded */
#define TLS_RECORD_MAX 16384         /* the most plaintext one TLS record carries */
#define POOL_IDLE_SECS 60            /* drop idle connections after this */

struct conn;

struct upstream_pool {
    struct event_base *base;
    struct evdns_base *dns;
    char *host;
    int port;
    struct tls_client *tls; /* NULL: plain TCP */
    struct upstream_limits lim;
    struct conn *idle; /* LIFO: the most recently used socket is the warmest */
    int n_idle;
    unsigned long connects, resumed;
};

struct conn {
    struct upstream_pool *pool;
    struct bufferevent *bev;
    struct event *idle_timer; /* armed only while in the idle list */
    struct conn *next;        /* idle list */
    struct upstream_req *req; /* NULL while idle */
    bool reused;              /* served an earlier exchange */
};

enum req_state {
    RS_CONNECTING, /* DNS, TCP connect, TLS handshake; connect deadline */
    RS_WRITING,    /* request going out; first-byte deadline */
    RS_WAITING,    /* request written, no response byte yet; first-byte deadline */
    RS_READING,    /* response bytes arriving; idle deadline between reads */
    RS_DONE,       /* on_done called or cancelled; freed when the stack unwinds */
};

struct hdr_off {
    uint32_t name, value; /* offsets into hbuf */
};

struct upstream_req {
    struct upstream_pool *pool;
    struct conn *c;
    struct upstream_handlers h;
    void *arg;
    enum req_state st;
    struct evbuffer *request; /* kept until the first response byte on a reused
                                 connection, for the one retry */
    struct event *timer;      /* the deadline of the current state */
    struct event *defer;      /* runs failures and resumes outside the caller's stack */
    http_parser parser;

    char *hbuf; /* header names and values, NUL-terminated */
    size_t hlen, hcap;
    struct hdr_off hoff[MAX_HEADERS];
    size_t nh;
    bool in_value; /* last header callback was a value */

    int depth; /* libevent entry points on the stack */
    bool dead; /* cancelled or finished: no more callbacks */
    bool is_head;
    bool paused;
    bool got_byte; /* a response byte arrived: no retry any more */
    bool written;  /* the whole request left our buffers */
    bool complete; /* on_message_complete for the final response */
    bool eof;      /* the upstream closed; handled once input is drained */
    bool retried;
    enum upstream_result fail_res; /* for defer: a failure found inside upstream_send */
    bool fail_pending;
    char errbuf[256];
};

/* Requests and SSE events are small writes that must leave at once: Nagle's
 * algorithm would hold them for the peer's delayed ACK (~40 ms). */
static void nodelay(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int p_message_begin(http_parser *hp);
static int p_header_field(http_parser *hp, const char *at, size_t len);
static int p_header_value(http_parser *hp, const char *at, size_t len);
static int p_headers_complete(http_parser *hp);
static int p_body(http_parser *hp, const char *at, size_t len);
static int p_message_complete(http_parser *hp);

static const http_parser_settings parser_settings = {
    .on_message_begin = p_message_begin,
    .on_header_field = p_header_field,
    .on_header_value = p_header_value,
    .on_headers_complete = p_headers_complete,
    .on_body = p_body,
    .on_message_complete = p_message_complete,
};

static void conn_readcb(struct bufferevent *bev, void *arg);
static void conn_writecb(struct bufferevent *bev, void *arg);
static void conn_eventcb(struct bufferevent *bev, short what, void *arg);

/* ---- connections and the pool ---- */

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    if (c->idle_timer)
        event_free(c->idle_timer);
    /* Safe inside the bufferevent's own callbacks: libevent refcounts it. */
    if (c->bev) {
        if (c->pool->tls)
            tls_client_close(c->bev);
        bufferevent_free(c->bev);
    }
    free(c);
}

static void idle_unlink(struct conn *c)
{
    struct upstream_pool *p = c->pool;
    for (struct conn **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            p->n_idle--;
            break;
        }
    }
    c->next = NULL;
}

/* An idle connection has nothing to say: data, EOF or an error all mean the
 * upstream closed it or broke framing, so it is dropped. */
static void idle_drop(struct conn *c)
{
    idle_unlink(c);
    conn_free(c);
}

static void idle_readcb(struct bufferevent *bev, void *arg)
{
    idle_drop(arg);
}

static void idle_eventcb(struct bufferevent *bev, short what, void *arg)
{
    idle_drop(arg);
}

static void idle_timercb(evutil_socket_t fd, short what, void *arg)
{
    idle_drop(arg);
}

static void pool_put(struct upstream_pool *p, struct conn *c)
{
    if (p->n_idle >= p->lim.pool_size) {
        conn_free(c);
        return;
    }
    struct timeval tv = {POOL_IDLE_SECS, 0};
    c->req = NULL;
    bufferevent_setcb(c->bev, idle_readcb, NULL, idle_eventcb, c);
    if (bufferevent_enable(c->bev, EV_READ) < 0 || evtimer_add(c->idle_timer, &tv) < 0) {
        conn_free(c);
        return;
    }
    c->next = p->idle;
    p->idle = c;
    p->n_idle++;
}

static struct conn *pool_take(struct upstream_pool *p)
{
    struct conn *c = p->idle;
    if (!c)
        return NULL;
    p->idle = c->next;
    p->n_idle--;
    c->next = NULL;
    evtimer_del(c->idle_timer);
    c->reused = true;
    return c;
}

/* A new connection in progress for r; NULL with r->errbuf set on failure. */
static struct conn *conn_open(struct upstream_req *r)
{
    struct upstream_pool *p = r->pool;
    struct conn *c = calloc(1, sizeof(*c));
    SSL *ssl = NULL;
    if (!c)
        goto oom;
    c->pool = p;
    c->idle_timer = evtimer_new(p->base, idle_timercb, c);
    if (!c->idle_timer)
        goto oom;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (p->tls) {
        ssl = tls_client_ssl(p->tls, p->host);
        if (!ssl)
            goto oom;
        c->bev = bufferevent_openssl_socket_new(p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
        if (!c->bev)
            goto oom;
        ssl = NULL; /* the bufferevent owns it now */
        /* Deliberate: see the top of the file. Framing decides completeness. */
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(p->base, -1, opts);
        if (!c->bev)
            goto oom;
    }
    c->req = r;
    bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_MARK);
    p->connects++;
    /* With an evdns base the lookup is asynchronous and every outcome,
     * including an immediate refusal, reaches conn_eventcb later (deferred
     * callbacks), never from inside this call. */
    if (bufferevent_socket_connect_hostname(c->bev, p->dns, AF_UNSPEC, p->host, p->port) < 0) {
        snprintf(r->errbuf, sizeof(r->errbuf), "connect: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_free(c);
        return NULL;
    }
    nodelay(c->bev); /* an IP literal has its socket already */
    return c;
oom:
    if (ssl)
        SSL_free(ssl);
    conn_free(c);
    snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
    return NULL;
}

/* ---- exchange lifetime ---- */

static void req_free(struct upstream_req *r)
{
    if (r->timer)
        event_free(r->timer);
    if (r->defer)
        event_free(r->defer);
    if (r->request)
        evbuffer_free(r->request);
    free(r->hbuf);
    free(r);
}

static void enter(struct upstream_req *r)
{
    r->depth++;
}

/* The exchange is freed only here, once nothing up the stack can touch it. */
static void leave(struct upstream_req *r)
{
    if (--r->depth == 0 && r->dead)
        req_free(r);
}

/* Arms the deadline of the current state. Paused exchanges wait on the
 * client, not the upstream, so their response deadline is suspended. */
static void arm(struct upstream_req *r)
{
    const struct upstream_limits *l = &r->pool->lim;
    int ms;
    switch (r->st) {
    case RS_CONNECTING:
        ms = l->connect_timeout_ms;
        break;
    case RS_WRITING:
    case RS_WAITING:
        ms = r->paused ? -1 : l->first_byte_timeout_ms;
        break;
    case RS_READING:
        ms = r->paused ? -1 : l->idle_timeout_ms;
        break;
    default:
        ms = -1;
    }
    if (ms < 0) {
        evtimer_del(r->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

/* Ends the exchange: the connection goes back to the pool when reusable,
 * else is closed, then on_done runs last. After on_done the caller's state
 * may be gone, so nothing of it is touched. */
static void finish(struct upstream_req *r, enum upstream_result res, const char *errstr,
                   bool reusable)
{
    struct conn *c = r->c;
    r->c = NULL;
    r->st = RS_DONE;
    r->dead = true;
    evtimer_del(r->timer);
    event_del(r->defer);
    if (c) {
        /* Pooled before on_done so a request sent from on_done can use it. */
        if (reusable)
            pool_put(r->pool, c);
        else
            conn_free(c);
    }
    if (res != UPSTREAM_OK)
        log_debug("upstream %s:%d: %s", r->pool->host, r->pool->port, errstr ? errstr : "error");
    r->h.on_done(r->arg, res, errstr);
}

static void headers_reset(struct upstream_req *r)
{
    r->hlen = 0;
    r->nh = 0;
    r->in_value = false;
}

static void parser_reset(struct upstream_req *r)
{
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    headers_reset(r);
}

/* Puts the request on the connection; on a reused connection keeps r's
 * buffer for the one retry (the output refers to its chains), else hands
 * the buffer over. */
static int write_request(struct upstream_req *r)
{
    struct evbuffer *out = bufferevent_get_output(r->c->bev);
    /* the head and the start of the body in one piece: bufferevent_openssl
     * makes a TLS record, and a write(2), of every chunk it is handed, and
     * the head is a chunk of its own; one record for a small request */
    size_t len = evbuffer_get_length(r->request);
    if (!evbuffer_pullup(r->request, (ev_ssize_t)(len < TLS_RECORD_MAX ? len : TLS_RECORD_MAX)) &&
        len > 0)
        return -1;
    if (!r->c->reused || r->retried) {
        int rc = evbuffer_add_buffer(out, r->request);
        evbuffer_free(r->request);
        r->request = NULL;
        return rc;
    }
    /* the connection's output refers to r's chains: the body is not held
     * twice while it waits for the first response byte (nor copied) */
    if (evbuffer_add_buffer_reference(out, r->request) == 0)
        return 0;
    /* one peek of every chunk: the body arrives as many small chains */
    int n = evbuffer_peek(r->request, -1, NULL, NULL, 0);
    if (n <= 0)
        return n < 0 ? -1 : 0;
    struct evbuffer_iovec *v = malloc((size_t)n * sizeof(*v));
    if (!v)
        return -1;
    int got = evbuffer_peek(r->request, -1, NULL, v, n), rc = 0;
    for (int i = 0; i < got && i < n && rc == 0; i++)
        rc = evbuffer_add(out, v[i].iov_base, v[i].iov_len);
    free(v);
    return rc;
}

/* Starts sending on r->c (connected: fresh after the handshake, or pooled). */
static int start_request(struct upstream_req *r)
{
    r->st = RS_WRITING;
    if (write_request(r) < 0)
        return -1;
    if (bufferevent_enable(r->c->bev, EV_WRITE) < 0)
        return -1;
    if (r->paused)
        bufferevent_disable(r->c->bev, EV_READ);
    else if (bufferevent_enable(r->c->bev, EV_READ) < 0)
        return -1;
    arm(r);
    return 0;
}

/* Reports a failure found outside libevent's callbacks on the next loop turn. */
static void fail_later(struct upstream_req *r, enum upstream_result res)
{
    r->fail_res = res;
    r->fail_pending = true;
    event_active(r->defer, EV_TIMEOUT, 1);
}

/* Opens a fresh connection for r (first try or the retry). */
static void connect_fresh(struct upstream_req *r)
{
    r->st = RS_CONNECTING;
    r->c = conn_open(r);
    if (!r->c) {
        fail_later(r, UPSTREAM_CONNECT_FAILED);
        return;
    }
    arm(r);
}

/* ---- response parsing ---- */

static int hbuf_add(struct upstream_req *r, const char *at, size_t len)
{
    if (len > MAX_HEADER_BYTES - r->hlen)
        return -1;
    if (r->hlen + len > r->hcap) {
        size_t cap = r->hcap ? r->hcap : 1024;
        while (cap < r->hlen + len)
            cap *= 2;
        if (cap > MAX_HEADER_BYTES)
            cap = MAX_HEADER_BYTES;
        char *nb = realloc(r->hbuf, cap);
        if (!nb)
            return -1;
        r->hbuf = nb;
        r->hcap = cap;
    }
    memcpy(r->hbuf + r->hlen, at, len);
    r->hlen += len;
    return 0;
}

/* Ends the current header name; a name without a value gets "". */
static int name_end(struct upstream_req *r)
{
    if (hbuf_add(r, "", 1) < 0)
        return -1;
    r->hoff[r->nh - 1].value = (uint32_t)r->hlen;
    r->in_value = true;
    return 0;
}

static int p_message_begin(http_parser *hp)
{
    headers_reset(hp->data); /* a final response after a 1xx starts over */
    return 0;
}

static int p_header_field(http_parser *hp, const char *at, size_t len)
{
    struct upstream_req *r = hp->data;
    if (r->nh == 0 || r->in_value) {
        if (r->nh == MAX_HEADERS) {
            snprintf(r->errbuf, sizeof(r->errbuf), "more than %d response headers", MAX_HEADERS);
            return -1;
        }
        if (r->nh > 0 && hbuf_add(r, "", 1) < 0)
            goto too_big;
        r->hoff[r->nh].name = (uint32_t)r->hlen;
        r->nh++;
        r->in_value = false;
    }
    if (hbuf_add(r, at, len) < 0)
        goto too_big;
    return 0;
too_big:
    snprintf(r->errbuf, sizeof(r->errbuf), "response headers over %d bytes", MAX_HEADER_BYTES);
    return -1;
}

static int p_header_value(http_parser *hp, const char *at, size_t len)
{
    struct upstream_req *r = hp->data;
    if ((!r->in_value && name_end(r) < 0) || hbuf_add(r, at, len) < 0) {
        snprintf(r->errbuf, sizeof(r->errbuf), "response headers over %d bytes", MAX_HEADER_BYTES);
        return -1;
    }
    return 0;
}

/* The header rule table (headers.h), plus the names every Connection
 * header of this response lists. */
static bool drop_header(const struct upstream_req *r, const char *name)
{
    if (header_drop_down(name, NULL))
        return true;
    for (size_t i = 0; i < r->nh; i++)
        if (strcasecmp(r->hbuf + r->hoff[i].name, "connection") == 0 &&
            header_in_list(r->hbuf + r->hoff[i].value, name))
            return true;
    return false;
}

static long long body_length(const struct upstream_req *r, int status)
{
    if (status == 204 || status == 304)
        return 0; /* never a body, whatever the headers say */
    if (r->parser.flags & F_CHUNKED)
        return -1;
    if (r->parser.flags & F_CONTENTLENGTH)
        return r->parser.content_length > (uint64_t)LLONG_MAX ? -1
                                                              : (long long)r->parser.content_length;
    return -1;
}

static int p_headers_complete(http_parser *hp)
{
    struct upstream_req *r = hp->data;
    int status = hp->status_code;
    if (status == 101) {
        snprintf(r->errbuf, sizeof(r->errbuf), "unexpected 101 Switching Protocols");
        return -1;
    }
    if (status >= 100 && status < 200)
        return 1; /* informational: no body (RFC 9110 15.2), skipped; the final response follows */
    if (r->nh > 0 && !r->in_value && name_end(r) < 0)
        goto too_big;
    if (r->nh > 0 && hbuf_add(r, "", 1) < 0)
        goto too_big;

    struct upstream_header out[MAX_HEADERS];
    size_t n = 0;
    for (size_t i = 0; i < r->nh; i++) {
        const char *name = r->hbuf + r->hoff[i].name;
        if (!drop_header(r, name))
            out[n++] = (struct upstream_header){name, r->hbuf + r->hoff[i].value};
    }
    if (r->h.on_head)
        r->h.on_head(r->arg, status, out, n, body_length(r, status));
    if (r->dead)
        return -1; /* cancelled from on_head: stop the parser here */
    /* 1 tells http_parser there is no body: a HEAD response keeps its
     * Content-Length header but sends no bytes, and 204 and 304 have none
     * whatever their headers say (bytes after them are not their body) */
    return r->is_head || status == 204 || status == 304 ? 1 : 0;
too_big:
    snprintf(r->errbuf, sizeof(r->errbuf), "response headers over %d bytes", MAX_HEADER_BYTES);
    return -1;
}

static int p_body(http_parser *hp, const char *at, size_t len)
{
    struct upstream_req *r = hp->data;
    if (r->h.on_body && len > 0)
        r->h.on_body(r->arg, at, len);
    return r->dead ? -1 : 0;
}

static int p_message_complete(http_parser *hp)
{
    struct upstream_req *r = hp->data;
    if (hp->status_code >= 100 && hp->status_code < 200)
        return 0;
    r->complete = true;
    /* Stop right after this message: whatever follows is extra data. */
    http_parser_pause(hp, 1);
    return 0;
}

/* The response is complete: reuse the connection only when keep-alive, the
 * request fully left and not one byte more came (response splitting or a
 * confused upstream would poison the next exchange). */
static void complete(struct upstream_req *r)
{
    struct bufferevent *bev = r->c->bev;
    bool reusable = !r->eof && r->written && http_should_keep_alive(&r->parser) &&
                    evbuffer_get_length(bufferevent_get_input(bev)) == 0 &&
                    evbuffer_get_length(bufferevent_get_output(bev)) == 0;
    finish(r, UPSTREAM_OK, NULL, reusable);
}

/* The upstream closed and every byte before the close has been parsed. */
static void at_eof(struct upstream_req *r)
{
    if (!r->complete)
        (void)http_parser_execute(&r->parser, &parser_settings, NULL, 0);
    if (r->dead)
        return;
    if (r->complete)
        finish(r, UPSTREAM_OK, NULL, false);
    else
        finish(r, UPSTREAM_RESET, "upstream closed before the response was complete", false);
}

static void first_byte(struct upstream_req *r)
{
    r->got_byte = true;
    r->st = RS_READING;
    /* From here a retry could repeat a request the upstream is acting on. */
    if (r->request) {
        evbuffer_free(r->request);
        r->request = NULL;
    }
}

/* Feeds buffered input to the parser until it runs out, the exchange is
 * paused, ends or is cancelled. */
static void process(struct upstream_req *r)
{
    struct evbuffer *in = bufferevent_get_input(r->c->bev);
    while (!r->paused) {
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        if (!r->got_byte)
            first_byte(r);
        size_t n = http_parser_execute(&r->parser, &parser_settings, v.iov_base, v.iov_len);
        if (r->dead)
            return; /* cancelled inside on_head/on_body: r->c is gone */
        evbuffer_drain(in, n);
        if (r->complete) {
            complete(r);
            return;
        }
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e == HPE_PAUSED)
            continue; /* upstream_pause from a callback; the loop test stops */
        if (e != HPE_OK || n != v.iov_len) {
            if (!r->errbuf[0])
                snprintf(r->errbuf, sizeof(r->errbuf), "bad response: %s",
                         http_errno_description(e));
            finish(r, UPSTREAM_BAD_RESPONSE, r->errbuf, false);
            return;
        }
    }
    if (r->paused)
        return;
    if (r->eof) {
        at_eof(r);
        return;
    }
    if (r->st == RS_READING)
        arm(r); /* the idle gap starts now */
}

/* Why the connection failed, for errstr. */
static void close_reason(struct upstream_req *r, struct bufferevent *bev, short what, int err)
{
    struct upstream_pool *p = r->pool;
    char tls[160] = "";
    int dnserr = bufferevent_socket_get_dns_error(bev);
    if (p->tls)
        tls_client_error(bev, tls, sizeof(tls));
    if (dnserr)
        snprintf(r->errbuf, sizeof(r->errbuf), "resolving %s: %s", p->host,
                 evutil_gai_strerror(dnserr));
    else if (tls[0])
        snprintf(r->errbuf, sizeof(r->errbuf), "%s", tls);
    else if (what & BEV_EVENT_EOF)
        snprintf(r->errbuf, sizeof(r->errbuf), "connection closed");
    else
        snprintf(r->errbuf, sizeof(r->errbuf), "%s",
                 err ? evutil_socket_error_to_string(err) : "connection error");
}

/* Whether a failure may be retried on a fresh connection: the connection
 * came from the pool, the peer closed it, and no response byte came back.
 * Safe because an HTTP/1.1 server that closes an idle keep-alive connection
 * does so without having processed a request on it (RFC 9112 §9.3.1 allows
 * the retry for exactly this race); once a byte of response arrives the
 * request is dropped and never re-sent. */
static bool retryable(const struct upstream_req *r, short what, int err)
{
    if (!r->c->reused || r->retried || r->got_byte || !r->request)
        return false;
    if (evbuffer_get_length(bufferevent_get_input(r->c->bev)) > 0)
        return false;
    return (what & BEV_EVENT_EOF) || err == ECONNRESET || err == EPIPE || err == ECONNABORTED;
}

static void on_connected(struct upstream_req *r)
{
    struct upstream_pool *p = r->pool;
    if (p->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(r->c->bev);
        if (ssl && SSL_session_reused(ssl))
            p->resumed++;
    }
    if (start_request(r) < 0)
        finish(r, UPSTREAM_CONNECT_FAILED, "out of memory", false);
}

static void on_closed(struct upstream_req *r, short what)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct bufferevent *bev = r->c->bev;
    if (r->st == RS_CONNECTING) {
        close_reason(r, bev, what, err);
        finish(r, UPSTREAM_CONNECT_FAILED, r->errbuf, false);
        return;
    }
    if (retryable(r, what, err)) {
        conn_free(r->c);
        r->c = NULL;
        r->retried = true;
        parser_reset(r);
        log_debug("upstream %s:%d: pooled connection closed, retrying once", r->pool->host,
                  r->pool->port);
        connect_fresh(r);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        r->eof = true;
        if (!r->paused)
            process(r); /* drains what is left, then decides at EOF */
        return;
    }
    close_reason(r, bev, what, err);
    finish(r, UPSTREAM_RESET, r->errbuf, false);
}

/* ---- libevent entry points ---- */

static void conn_readcb(struct bufferevent *bev, void *arg)
{
    struct upstream_req *r = ((struct conn *)arg)->req;
    enter(r);
    if (!r->dead && !r->paused)
        process(r);
    leave(r);
}

static void conn_writecb(struct bufferevent *bev, void *arg)
{
    struct upstream_req *r = ((struct conn *)arg)->req;
    if (r->dead || r->st == RS_CONNECTING || r->written)
        return;
    r->written = true;
    if (r->st == RS_WRITING) {
        r->st = RS_WAITING;
        arm(r); /* the first-byte deadline counts from the last request byte */
    }
}

static void conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_CONNECTED)
        nodelay(bev);
    struct upstream_req *r = ((struct conn *)arg)->req;
    enter(r);
    if (!r->dead) {
        if (what & BEV_EVENT_CONNECTED)
            on_connected(r);
        else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
            on_closed(r, what);
    }
    leave(r);
}

static void timercb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_req *r = arg;
    enter(r);
    const struct upstream_limits *l = &r->pool->lim;
    char *e = r->errbuf;
    size_t n = sizeof(r->errbuf);
    switch (r->st) {
    case RS_CONNECTING:
        snprintf(e, n, "connect timed out after %d ms", l->connect_timeout_ms);
        finish(r, UPSTREAM_CONNECT_TIMEOUT, e, false);
        break;
    case RS_WRITING:
    case RS_WAITING:
        snprintf(e, n, "no response within %d ms", l->first_byte_timeout_ms);
        finish(r, UPSTREAM_HEAD_TIMEOUT, e, false);
        break;
    case RS_READING:
        snprintf(e, n, "response stalled for %d ms", l->idle_timeout_ms);
        finish(r, UPSTREAM_IDLE_TIMEOUT, e, false);
        break;
    case RS_DONE:
        break;
    }
    leave(r);
}

static void defercb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_req *r = arg;
    enter(r);
    if (r->dead) {
        /* nothing */
    } else if (r->fail_pending) {
        finish(r, r->fail_res, r->errbuf[0] ? r->errbuf : "upstream failure", false);
    } else if (r->c && r->st != RS_CONNECTING && !r->paused) {
        process(r); /* resumed: parse what piled up while paused */
    }
    leave(r);
}

/* ---- public API ---- */

struct upstream_pool *upstream_pool_new(struct event_base *base, struct evdns_base *dns,
                                        const struct cfg_upstream *cfg,
                                        const struct upstream_limits *lim, char *err, size_t errlen)
{
    struct upstream_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->base = base;
    p->dns = dns;
    p->port = cfg->port;
    p->lim = *lim;
    p->host = strdup(cfg->host);
    if (!p->host) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->tls) {
        p->tls = tls_client_new(cfg->ca_file, err, errlen);
        if (!p->tls)
            goto fail;
    }
    return p;
fail:
    upstream_pool_free(p);
    return NULL;
}

void upstream_pool_free(struct upstream_pool *p)
{
    if (!p)
        return;
    while (p->idle) {
        struct conn *c = p->idle;
        p->idle = c->next;
        conn_free(c);
    }
    tls_client_free(p->tls);
    free(p->host);
    free(p);
}

struct upstream_req *upstream_send(struct upstream_pool *p, struct evbuffer *request, bool is_head,
                                   const struct upstream_handlers *h, void *arg)
{
    struct upstream_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->pool = p;
    r->h = *h;
    r->arg = arg;
    r->is_head = is_head;
    r->timer = evtimer_new(p->base, timercb, r);
    r->defer = event_new(p->base, -1, 0, defercb, r);
    if (!r->timer || !r->defer)
        goto fail;
    parser_reset(r);
    r->request = request;

    r->c = pool_take(p);
    if (r->c) {
        r->c->req = r;
        bufferevent_setcb(r->c->bev, conn_readcb, conn_writecb, conn_eventcb, r->c);
        if (start_request(r) < 0) {
            conn_free(r->c);
            r->c = NULL;
            snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
            fail_later(r, UPSTREAM_CONNECT_FAILED);
        }
    } else {
        connect_fresh(r);
    }
    return r;
fail:
    r->request = NULL; /* still the caller's on NULL */
    req_free(r);
    return NULL;
}

void upstream_pause(struct upstream_req *r, bool paused)
{
    if (r->dead || r->paused == paused)
        return;
    r->paused = paused;
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    /* Pausing the parser too stops it mid-batch when called from on_body. */
    if (e == HPE_OK || e == HPE_PAUSED)
        http_parser_pause(&r->parser, paused);
    bool live = r->c && r->st != RS_CONNECTING;
    if (live) {
        if (paused)
            bufferevent_disable(r->c->bev, EV_READ);
        else
            bufferevent_enable(r->c->bev, EV_READ);
    }
    if (r->st != RS_CONNECTING)
        arm(r); /* the connect deadline is not the client's to stretch */
    /* Input may already hold bytes (or an EOF) no read event will announce. */
    if (!paused && live)
        event_active(r->defer, EV_TIMEOUT, 1);
}

void upstream_cancel(struct upstream_req *r)
{
    if (!r || r->dead)
        return;
    r->dead = true;
    r->st = RS_DONE;
    conn_free(r->c); /* mid-response: never reused */
    r->c = NULL;
    evtimer_del(r->timer);
    event_del(r->defer);
    if (r->depth == 0)
        req_free(r);
}

unsigned long upstream_pool_connects(const struct upstream_pool *p)
{
    return p->connects;
}

unsigned long upstream_pool_resumed(const struct upstream_pool *p)
{
    return p->resumed;
}
