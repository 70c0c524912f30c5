/* client.c: the HTTP/1.1 server side of one client connection.
 *
 * Bytes are read by a bufferevent and fed to http_parser; the request line
 * and headers are collected in one buffer bounded by max_header_size, the
 * body in an evbuffer bounded by max_body. Framing that two HTTP
 * implementations could read differently (request smuggling) is refused with
 * 400 and the connection is closed without reading further. One request is
 * handled at a time: while the handler owns it, the parser is paused and the
 * bytes of a pipelined next request wait in the input buffer. Deadlines are
 * absolute (armed once per phase), so a client trickling bytes cannot
 * extend them. A client is freed only from one of its own libevent
 * callbacks (or client_close_all at shutdown), never inside a call the
 * handler made into it, and the handler is told first (gone); the next
 * request and the close run on a fresh loop turn.
 *
 * Output over plain TCP is written directly: what a loop turn queued leaves
 * in one writev from the flush event at the end of that turn, and EV_WRITE
 * is enabled on the bufferevent only when the socket did not take it all
 * (then disabled again once the output is empty). Leaving EV_WRITE on would
 * cost two epoll_ctl calls and a loop turn for every response. */
#include "http/client.h"

#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "core/numtext.h"
#include "core/log.h"

#define MAX_HEADERS 100
#define OUT_HIGH (256 * 1024) /* stop the producer above this much unsent output */
#define OUT_LOW (64 * 1024)   /* and resume it below this */
#define IN_HIGH (256 * 1024)  /* bufferevent stops reading above this */
#define LINGER_MS 2000        /* after an error: drain input this long before close */

/* Where chunk_scan is in a chunked body (the framing bytes it checks). */
enum chunk_scan {
    CK_OFF,     /* not a chunked body */
    CK_SIZE,    /* the chunk-size line, up to its CR */
    CK_SIZE_LF, /* the LF after it */
    CK_DATA,    /* chunk data: chunk_left bytes */
    CK_DATA_CR, /* the CRLF after the data */
    CK_DATA_LF,
    CK_TRAILER, /* trailer lines after the last chunk, up to the empty one */
    CK_DONE,    /* the message ended: what follows is the next request */
};

enum client_state {
    CS_IDLE,     /* between requests, keep-alive deadline armed */
    CS_HEAD,     /* reading request line and headers, header deadline armed */
    CS_BODY,     /* reading the body, body deadline armed */
    CS_HANDLING, /* the handler owns the request; parser paused */
    CS_CLOSING,  /* flushing the last response, then lingering close */
};

struct client {
    struct event_base *base;
    struct bufferevent *bev;
    struct event *timer;             /* the deadline of the current phase */
    struct event *defer;             /* next request / close, on a fresh loop turn */
    struct event *flush;             /* plain TCP: writes the output at the end of the turn */
    bool direct;                     /* plain TCP: output written by flush, EV_WRITE only */
                                     /* while the socket is full */
    const struct client_limits *lim; /* the owner's, read at each use: a reload applies */
                                     /* to the next request of a kept-alive connection */
    struct client_hooks hooks;
    http_parser parser;
    http_parser_settings settings;
    enum client_state state;
    int send_timeout_ms; /* the write timeout set on bev (lim's, at this request's start) */
    char peer[64];

    /* the request being read: target and headers in hbuf, NUL-separated */
    char *hbuf;
    size_t hlen, hcap;
    size_t name_off[MAX_HEADERS], value_off[MAX_HEADERS];
    size_t nh;
    size_t target_end; /* hbuf[0..target_end) is the target */
    bool in_value;     /* the last header callback was a value */
    char prev[2];      /* the two bytes before the scan point (line-end checks) */
    bool line_seen;    /* a byte other than CR/LF was scanned: the request line began */
    bool head_scanned; /* the blank line ending the headers was seen */
    size_t head_end;   /* after head_scan: offset of the body in the buffer it scanned */
    enum chunk_scan ck;
    uint64_t chunk_size, chunk_left;
    bool ck_ext;      /* CK_SIZE: past the digits (an extension or white space) */
    bool ck_cr;       /* CK_TRAILER: the last byte was a CR */
    size_t ck_line;   /* CK_TRAILER: bytes of the current line */
    int error_status; /* set by a parser callback that refuses the request */
    const char *error_msg;
    struct evbuffer *body;
    struct http_request req;
    struct http_header headers[MAX_HEADERS];
    char *path;

    /* the response */
    bool keep_alive; /* the connection may carry another request */
    bool chunked;    /* response body is chunked */
    bool head;       /* the request was HEAD: the response has no body */
    bool started;    /* status line written */
    bool above_high; /* told the handler to pause */
    bool lingering;  /* output flushed, write side shut, draining input */
    const struct client_events *ev;
    void *ctx;
    LIST_ENTRY(client) link; /* on this thread's list, for client_close_all */
};

static atomic_ulong open_count;
/* Each worker thread owns the clients it accepted. */
static _Thread_local LIST_HEAD(client_list, client) clients;

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_defer(evutil_socket_t fd, short what, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);
static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_chunk_header(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

unsigned long client_open_count(void)
{
    return atomic_load(&open_count);
}

static void arm(struct client *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* The write timeout (send_timeout) of the owner's limits, set on the
 * bufferevent when it differs from the one in force: at accept and at the
 * start of each request, so a reload reaches kept-alive connections too. */
static void set_send_timeout(struct client *c)
{
    int ms = c->lim->send_timeout_ms;
    if (ms == c->send_timeout_ms)
        return;
    struct timeval wt = {ms / 1000, (ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    c->send_timeout_ms = ms;
}

static void reset_request(struct client *c)
{
    c->hlen = 0;
    c->nh = 0;
    c->target_end = 0;
    c->in_value = false;
    c->prev[0] = c->prev[1] = '\0';
    c->line_seen = false;
    c->head_scanned = false;
    c->ck = CK_OFF;
    c->error_status = 0;
    c->error_msg = NULL;
    free(c->path);
    c->path = NULL;
    if (c->hcap > 16384) { /* give back what one large request grew */
        free(c->hbuf);
        c->hbuf = NULL;
        c->hcap = 0;
    }
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    memset(&c->req, 0, sizeof(c->req));
    c->started = false;
    c->chunked = false;
    c->head = false;
    c->above_high = false;
    c->ev = NULL;
    c->ctx = NULL;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

struct client *client_new(struct event_base *base, int fd, void *tls,
                          const struct client_limits *lim, const struct client_hooks *hooks)
{
    struct client *c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->base = base;
    c->lim = lim;
    c->hooks = *hooks;
    if (tls) {
        SSL *ssl = SSL_new(tls);
        c->bev = ssl ? bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (!c->bev && ssl)
            SSL_free(ssl);
    } else {
        c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->timer = evtimer_new(base, on_timer, c);
    c->defer = event_new(base, -1, 0, on_defer, c);
    c->direct = !tls; /* bufferevent_openssl writes records of its own */
    c->flush = c->direct ? event_new(base, -1, 0, on_flush, c) : NULL;
    c->body = evbuffer_new();
    if (!c->bev || !c->timer || !c->defer || !c->body || (c->direct && !c->flush))
        goto fail;
    /* responses and SSE events are small writes that must leave at once,
     * not wait for the client's delayed ACK (Nagle) */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fd = -1; /* owned by the bufferevent now */

    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(bufferevent_getfd(c->bev), (struct sockaddr *)&ss, &sl) == 0 &&
        ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        evutil_inet_ntop(AF_INET, &sin->sin_addr, c->peer, sizeof(c->peer));
    } else {
        snprintf(c->peer, sizeof(c->peer), "-");
    }

    c->settings.on_message_begin = on_message_begin;
    c->settings.on_url = on_url;
    c->settings.on_header_field = on_header_field;
    c->settings.on_header_value = on_header_value;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_chunk_header = on_chunk_header;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    reset_request(c);

    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
    set_send_timeout(c);
    bufferevent_enable(c->bev, c->direct ? EV_READ : EV_READ | EV_WRITE);
    if (c->direct) /* a new bufferevent has EV_WRITE on (not yet added: no syscall) */
        bufferevent_disable(c->bev, EV_WRITE);
    LIST_INSERT_HEAD(&clients, c, link);
    c->state = CS_HEAD; /* the first request must arrive within the header deadline */
    arm(c, lim->header_timeout_ms);
    atomic_fetch_add(&open_count, 1);
    if (c->lim->open)
        atomic_fetch_add(c->lim->open, 1);
    return c;

fail:
    if (c) {
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->timer)
            event_free(c->timer);
        if (c->defer)
            event_free(c->defer);
        if (c->flush)
            event_free(c->flush);
        if (c->body)
            evbuffer_free(c->body);
        free(c);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Frees now. Only called from a libevent callback of this client's own,
 * with nothing of the client's further up the stack. */
static void destroy(struct client *c)
{
    if (c->ev) { /* the handler still owns a request: tell it first */
        const struct client_events *ev = c->ev;
        c->ev = NULL;
        ev->gone(c->ctx);
    }
    LIST_REMOVE(c, link);
    bufferevent_free(c->bev);
    event_free(c->timer);
    event_free(c->defer);
    if (c->flush)
        event_free(c->flush);
    evbuffer_free(c->body);
    free(c->hbuf);
    free(c->path);
    atomic_fetch_sub(&open_count, 1);
    if (c->lim->open)
        atomic_fetch_sub(c->lim->open, 1);
    free(c);
}

void client_close_all(void)
{
    while (!LIST_EMPTY(&clients))
        destroy(LIST_FIRST(&clients));
}

/* Output was queued: on plain TCP it leaves from on_flush at the end of
 * this loop turn (once, however many pieces the turn queued). */
static void queued(struct client *c)
{
    if (c->direct && !(bufferevent_get_enabled(c->bev) & EV_WRITE))
        event_active(c->flush, EV_WRITE, 1);
}

/* Closes after the queued output is written. */
static void close_after_flush(struct client *c)
{
    c->state = CS_CLOSING;
    c->keep_alive = false;
    evtimer_del(c->timer);
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        event_active(c->defer, 0, 0);
}

/* ---- parser callbacks: collect the request, refuse what is ambiguous ---- */

static int refuse(struct client *c, int status, const char *msg)
{
    c->error_status = status;
    c->error_msg = msg;
    return -1;
}

static int hbuf_add(struct client *c, const char *at, size_t len)
{
    if (c->hlen + len + 1 > c->lim->max_header_size + 1)
        return refuse(c, 431, "request header section too large");
    if (c->hlen + len + 1 > c->hcap) {
        size_t cap = c->hcap ? c->hcap : 1024;
        while (cap < c->hlen + len + 1)
            cap *= 2;
        char *nb = realloc(c->hbuf, cap);
        if (!nb)
            return refuse(c, 503, "out of memory");
        c->hbuf = nb;
        c->hcap = cap;
    }
    memcpy(c->hbuf + c->hlen, at, len);
    c->hlen += len;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (hbuf_add(c, at, len) < 0)
        return -1;
    c->target_end = c->hlen;
    return 0;
}

/* Terminates the header being collected; a header whose value callback
 * never came gets an empty value. */
static int finish_header(struct client *c)
{
    if (!c->in_value) {
        if (hbuf_add(c, "", 1) < 0)
            return -1;
        c->value_off[c->nh - 1] = c->hlen;
    }
    c->in_value = false;
    return hbuf_add(c, "", 1);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (c->state == CS_BODY) /* a chunked body's trailer: dropped, never stored */
        return 0;            /* (growing hbuf would move what the head points to) */
    bool continues = c->nh > 0 && !c->in_value; /* a name split across reads */
    if (!continues) {
        if (c->nh == 0 && hbuf_add(c, "", 1) < 0) /* terminate the target */
            return -1;
        if (c->nh > 0 && hbuf_add(c, "", 1) < 0) /* terminate the previous value */
            return -1;
        if (c->nh == MAX_HEADERS)
            return refuse(c, 431, "too many request headers");
        c->name_off[c->nh] = c->hlen;
        c->value_off[c->nh] = 0;
        c->nh++;
        c->in_value = false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        /* RFC 9110 token characters only: a proxy that reads "X A" or "X_A"
         * as another name is the smuggler's friend */
        if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch)) || ch == '\0')
            return refuse(c, 400, "invalid character in a header name");
    }
    return hbuf_add(c, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (c->state == CS_BODY) /* a trailer's value, as on_header_field */
        return 0;
    if (!c->in_value) {
        if (hbuf_add(c, "", 1) < 0) /* terminate the name */
            return -1;
        c->value_off[c->nh - 1] = c->hlen;
        c->in_value = true;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        /* NUL, CR, LF (obs-fold) and other controls in a value are refused:
         * a downstream parser could split or truncate it differently */
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return refuse(c, 400, "invalid byte in a header value");
    }
    return hbuf_add(c, at, len);
}

static bool token_is(const char *v, const char *want)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(want);
    if (strncasecmp(v, want, n) != 0)
        return false;
    v += n;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v == '\0';
}

static bool valid_target(const char *t)
{
    if (t[0] != '/')
        return false; /* absolute-form, authority-form and '*' are not for us */
    for (; *t; t++) {
        unsigned char ch = (unsigned char)*t;
        if (ch <= 0x20 || ch >= 0x7f || ch == '#')
            return false;
    }
    return true;
}

static int on_headers_complete(http_parser *p)
{
    struct client *c = p->data;
    if (c->nh == 0 && hbuf_add(c, "", 1) < 0) /* no headers: terminate the target */
        return -1;
    if (c->nh > 0 && finish_header(c) < 0)
        return -1;

    c->req.target = c->hbuf;
    int n_cl = 0, n_te = 0, n_host = 0;
    const char *te = NULL, *expect = NULL;
    for (size_t i = 0; i < c->nh; i++) {
        c->headers[i].name = c->hbuf + c->name_off[i];
        c->headers[i].value = c->hbuf + c->value_off[i];
        const char *name = c->headers[i].name;
        if (strcasecmp(name, "content-length") == 0)
            n_cl++;
        else if (strcasecmp(name, "transfer-encoding") == 0) {
            n_te++;
            te = c->headers[i].value;
        } else if (strcasecmp(name, "host") == 0)
            n_host++;
        else if (strcasecmp(name, "expect") == 0)
            expect = c->headers[i].value;
    }
    c->req.headers = c->headers;
    c->req.n_headers = c->nh;
    c->req.method = p->method;
    c->req.method_name = http_method_str(p->method);
    c->req.http_minor = p->http_minor;

    if (p->http_major != 1 || p->http_minor > 1)
        return refuse(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    if (p->method == HTTP_CONNECT)
        return refuse(c, 405, "CONNECT is not supported");
    /* a WebSocket (the Realtime API) would carry paid traffic tollgate
     * cannot meter past its handshake */
    if (p->upgrade)
        return refuse(c, 405,
                      "WebSocket and other protocol upgrades are not metered by tollgate and are "
                      "refused; use the HTTP endpoints");
    if (!valid_target(c->req.target))
        return refuse(c, 400, "the request target must be a path starting with '/'");
    if (n_te > 0 && p->http_minor == 0)
        return refuse(c, 400, "Transfer-Encoding is not allowed in HTTP/1.0");
    /* exactly "chunked" (coding names are case-insensitive, RFC 9112 7): with
     * "chunked\t" http_parser would not de-chunk while we believed it did */
    if (n_te > 1 || (n_te == 1 && (strcasecmp(te, "chunked") != 0 || !(p->flags & F_CHUNKED))))
        return refuse(c, 400, "only a single 'Transfer-Encoding: chunked' is accepted");
    if (n_te && n_cl)
        return refuse(c, 400, "Content-Length together with Transfer-Encoding");
    if (n_cl > 1)
        return refuse(c, 400, "more than one Content-Length");
    if (p->http_minor >= 1 && n_host != 1)
        return refuse(c, 400, "HTTP/1.1 needs exactly one Host header");
    if (n_cl && p->content_length > c->lim->max_body)
        return refuse(c, 413, "request body too large");
    if (expect) {
        if (!token_is(expect, "100-continue"))
            return refuse(c, 417, "unsupported Expect");
        if (p->http_minor >= 1) {
            evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
            queued(c);
        }
    }

    const char *q = strchr(c->req.target, '?');
    size_t plen = q ? (size_t)(q - c->req.target) : strlen(c->req.target);
    c->path = strndup(c->req.target, plen);
    if (!c->path)
        return refuse(c, 503, "out of memory");
    c->req.path = c->path;
    c->req.query = q ? q + 1 : NULL;
    c->keep_alive = http_should_keep_alive(p);
    c->head = p->method == HTTP_HEAD;

    if (p->flags & F_CHUNKED) {
        c->ck = CK_SIZE;
        c->chunk_size = 0;
        c->ck_ext = false;
    }
    c->state = CS_BODY;
    evtimer_del(c->timer);
    arm(c, c->lim->body_timeout_ms);
    return 0;
}

/* A chunk announcing more than max_body allows is refused when its size
 * line is read, not after the client has trickled it in (or stalled). */
static int on_chunk_header(http_parser *p)
{
    struct client *c = p->data;
    if (p->content_length > c->lim->max_body - evbuffer_get_length(c->body))
        return refuse(c, 413, "request body too large");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    if (evbuffer_get_length(c->body) + len > c->lim->max_body)
        return refuse(c, 413, "request body too large");
    if (evbuffer_add(c->body, at, len) < 0)
        return refuse(c, 503, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct client *c = p->data;
    c->req.body = c->body;
    c->state = CS_HANDLING;
    evtimer_del(c->timer);
    http_parser_pause(p, 1); /* one request at a time: the rest waits in the input */
    return 0;
}

/* ---- reading ---- */

static void framing_error(struct client *c, int status, const char *msg)
{
    static const struct {
        int status;
        const char *code;
    } codes[] = {
        {400, "bad_request"}, {405, "method_not_allowed"},       {413, "request_too_large"},
        {417, "bad_request"}, {431, "request_header_too_large"}, {505, "http_version"},
        {503, "overloaded"},
    };
    const char *code = "bad_request";
    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        if (codes[i].status == status)
            code = codes[i].code;
    log_debug("client %s: %d %s", c->peer, status, msg);
    c->keep_alive = false;
    client_error(c, status, code, msg);
}

/* http_parser (built without HTTP_PARSER_STRICT) takes a bare LF as a line
 * end, takes any byte after the CR of the blank line ("\r\n\rZ" ends the
 * headers, the Z swallowed) and joins obs-folded lines. RFC 9112 2.2 and 5.2
 * let a server refuse all three, and one that forwards should: another
 * parser may read those lines differently. Scans the head of the current
 * request, resuming on any split, until the blank line that ends it;
 * returns why the head is refused, or NULL. */
static const char *head_scan(struct client *c, const char *p, size_t n)
{
    c->head_end = n;
    for (size_t i = 0; i < n && !c->head_scanned; i++) {
        char ch = p[i];
        if (c->prev[1] == '\r' && ch != '\n')
            return "a CR not followed by LF in the request head";
        if (ch == '\n' && c->prev[1] != '\r')
            return "request head lines must end with CRLF, not a bare LF";
        if (c->prev[1] == '\n' && c->line_seen && (ch == ' ' || ch == '\t'))
            return "folded header lines (obs-fold) are not accepted";
        if (ch != '\r' && ch != '\n')
            c->line_seen = true; /* empty lines before the request line are skipped */
        else if (ch == '\n' && c->prev[0] == '\n' && c->line_seen) {
            c->head_scanned = true; /* "\n\r\n": the blank line */
            c->head_end = i + 1;
        }
        c->prev[0] = c->prev[1];
        c->prev[1] = ch;
    }
    return NULL;
}

/* The same for the framing of a chunked body, which http_parser also reads
 * leniently (any byte after a chunk-size line's CR or in place of the CRLF
 * after chunk data, bare LF in trailers): follows the chunks over the bytes
 * http_parser consumed (it has already refused bad sizes) and checks that
 * every line ends in CRLF. Resumes on any split; returns why the body is
 * refused, or NULL. */
static const char *chunk_scan(struct client *c, const char *p, size_t n)
{
    static const char crlf[] = "chunked body lines must end with CRLF";
    for (size_t i = 0; i < n && c->ck != CK_DONE && c->ck != CK_OFF; i++) {
        char ch = p[i];
        int hex = ch >= '0' && ch <= '9'   ? ch - '0'
                  : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                  : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                           : -1;
        switch (c->ck) {
        case CK_SIZE:
            if (ch == '\n')
                return crlf;
            if (ch == '\r')
                c->ck = CK_SIZE_LF;
            else if (hex >= 0 && !c->ck_ext)
                c->chunk_size = c->chunk_size * 16 + (uint64_t)hex;
            else
                c->ck_ext = true; /* ";name=value" or white space: not the size */
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return crlf;
            c->chunk_left = c->chunk_size;
            c->chunk_size = 0;
            c->ck = c->chunk_left ? CK_DATA : CK_TRAILER;
            c->ck_cr = false;
            c->ck_line = 0;
            break;
        case CK_DATA: {
            size_t take = n - i < c->chunk_left ? n - i : (size_t)c->chunk_left;
            c->chunk_left -= take;
            i += take - 1;
            if (!c->chunk_left)
                c->ck = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (ch != '\r')
                return crlf;
            c->ck = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return crlf;
            c->ck = CK_SIZE;
            c->ck_ext = false;
            break;
        case CK_TRAILER:
            if (c->ck_cr != (ch == '\n'))
                return crlf; /* a CR not followed by LF, or a bare LF */
            c->ck_cr = ch == '\r';
            if (ch == '\n') {
                if (c->ck_line == 0)
                    c->ck = CK_DONE; /* the empty line */
                c->ck_line = 0;
            } else if (ch != '\r') {
                c->ck_line++;
            }
            break;
        case CK_OFF:
        case CK_DONE:
            break;
        }
    }
    return NULL;
}

/* Feeds buffered input to the parser until a request is complete, the input
 * is used up, or the request is refused. */
static void parse_input(struct client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->state == CS_IDLE || c->state == CS_HEAD || c->state == CS_BODY) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        if (c->state == CS_IDLE) {
            c->state = CS_HEAD;
            evtimer_del(c->timer);
            arm(c, c->lim->header_timeout_ms);
            set_send_timeout(c); /* a reload may have changed it */
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        bool in_head = c->state == CS_HEAD;
        const char *bad = in_head ? head_scan(c, v.iov_base, v.iov_len) : NULL;
        if (bad) {
            evbuffer_drain(in, evbuffer_get_length(in));
            framing_error(c, 400, bad);
            return;
        }
        size_t done = http_parser_execute(&c->parser, &c->settings, v.iov_base, v.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        /* the chunked body's share of what was consumed, before the
         * request is handed over */
        size_t body_at = in_head ? c->head_end : 0;
        if ((err == HPE_OK || err == HPE_PAUSED) && !c->error_status && body_at < done)
            bad = chunk_scan(c, (const char *)v.iov_base + body_at, done - body_at);
        if (bad) {
            evbuffer_drain(in, evbuffer_get_length(in));
            framing_error(c, 400, bad);
            return;
        }
        if (err == HPE_PAUSED) {
            evbuffer_drain(in, done);
            http_parser_pause(&c->parser, 0);
            c->ev = NULL;
            c->hooks.request(c, &c->req, c->hooks.arg);
            return;
        }
        if (err != HPE_OK || c->error_status) {
            int status = c->error_status ? c->error_status : err == HPE_HEADER_OVERFLOW ? 431 : 400;
            const char *msg = c->error_msg ? c->error_msg : http_errno_description(err);
            if (!c->error_msg && c->state == CS_BODY)
                msg = "malformed request body framing (chunk size or length)";
            else if (!c->error_msg && err == HPE_UNEXPECTED_CONTENT_LENGTH)
                msg = "Content-Length repeated or combined with Transfer-Encoding";
            evbuffer_drain(in, evbuffer_get_length(in)); /* never answer what follows */
            framing_error(c, status, msg);
            return;
        }
        evbuffer_drain(in, done);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    /* while the handler owns a request, input stays buffered (pipelining);
     * the bufferevent's read watermark bounds it */
    parse_input(c);
}

/* What follows written output: the handler resumed below the low mark, a
 * closing connection closed once empty. bufferevent's write callback, and
 * on_flush after a direct write. */
static void wrote(struct client *c)
{
    struct bufferevent *bev = c->bev;
    size_t left = evbuffer_get_length(bufferevent_get_output(bev));
    if (c->above_high && left <= OUT_LOW) {
        c->above_high = false;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        if (c->ev && c->ev->drained)
            c->ev->drained(c->ctx);
        return;
    }
    if (c->state == CS_CLOSING && left == 0 && !c->lingering)
        event_active(c->defer, 0, 0);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    /* direct: the socket took the rest; back to writing from on_flush */
    if (c->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    wrote(c);
}

/* The end of a loop turn that queued output (plain TCP): one writev of all
 * of it; what the socket does not take, and any error, is left to the
 * bufferevent (EV_WRITE, with the send timeout; an error reaches on_event). */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (bufferevent_get_enabled(c->bev) & EV_WRITE)
        return; /* the bufferevent is writing the rest */
    if (evbuffer_get_length(out) > 0) {
        /* a socket bufferevent freezes the start of its output so that
         * only its own write drains it; it thaws it the same way */
        evbuffer_unfreeze(out, 1);
        (void)evbuffer_write(out, bufferevent_getfd(c->bev));
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(c->bev, EV_WRITE);
        return;
    }
    wrote(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (what & BEV_EVENT_TIMEOUT)
        log_debug("client %s: send timeout", c->peer);
    destroy(c); /* EOF, reset, or a client not reading within send_timeout */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    switch (c->state) {
    case CS_HEAD:
    case CS_BODY:
        if (c->state == CS_BODY || c->hlen > 0 || c->parser.nread > 0) {
            /* a request had started: say why before closing */
            framing_error(c, 408, "request not received in time");
            return;
        }
        destroy(c);
        return;
    case CS_IDLE:
    case CS_CLOSING: /* keep-alive expired, or the linger after an error */
        destroy(c);
        return;
    case CS_HANDLING:
        return;
    }
}

/* Runs on a fresh loop turn: the next pipelined request, or the close. */
static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    if (c->state == CS_CLOSING) {
        if (c->lingering)
            return;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            return; /* on_write comes back when flushed */
        /* Lingering close: shut our side and discard input for a while, so
         * the kernel does not answer unread bytes with a reset that could
         * destroy the response before the client read it. */
        c->lingering = true;
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        bufferevent_enable(c->bev, EV_READ);
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        arm(c, LINGER_MS);
        return;
    }
    if (c->state == CS_IDLE) {
        arm(c, c->lim->keepalive_timeout_ms);
        parse_input(c);
    }
}

/* ---- responding ---- */

static const char *reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

void client_attach(struct client *c, const struct client_events *ev, void *ctx)
{
    c->ev = ev;
    c->ctx = ctx;
}

void client_start(struct client *c, int status, const struct http_header *h, size_t n,
                  long long content_length)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int minor = c->req.http_minor;
    if (content_length < 0 && minor == 0)
        c->keep_alive = false; /* close-delimited body */
    c->chunked = content_length < 0 && minor >= 1 && !c->head;
    /* a server answers with its own version (RFC 9110 2.5); 1.0 clients
     * only change the framing chosen above */
    /* appends, no printf: a head for every answer */
    char num[NUMTEXT_I64_MAX];
    const char *why = reason(status);
    evbuffer_add(out, "HTTP/1.1 ", 9);
    evbuffer_add(out, num, numtext_i64(num, status));
    evbuffer_add(out, " ", 1);
    evbuffer_add(out, why, strlen(why));
    evbuffer_add(out, "\r\n", 2);
    for (size_t i = 0; i < n; i++) { /* four appends: no printf per header */
        evbuffer_add(out, h[i].name, strlen(h[i].name));
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, h[i].value, strlen(h[i].value));
        evbuffer_add(out, "\r\n", 2);
    }
    if (content_length >= 0) {
        evbuffer_add(out, "Content-Length: ", 16);
        evbuffer_add(out, num, numtext_i64(num, content_length));
        evbuffer_add(out, "\r\n", 2);
    } else if (c->chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (c->head && content_length < 0)
        c->keep_alive = minor >= 1; /* nothing follows the head, so no framing is needed */
    if (!c->keep_alive)
        evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    else if (minor == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    else
        evbuffer_add(out, "\r\n", 2);
    c->started = true;
    queued(c);
}

bool client_write(struct client *c, const char *buf, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (len > 0 && !c->head) {
        if (c->chunked) { /* the chunk size in hex, then CRLF; no printf per chunk */
            static const char hex[] = "0123456789abcdef";
            char size[2 * sizeof(size_t) + 2];
            size_t at = sizeof(size);
            size[--at] = '\n';
            size[--at] = '\r';
            size_t v = len;
            do {
                size[--at] = hex[v & 15];
                v >>= 4;
            } while (v);
            evbuffer_add(out, size + at, sizeof(size) - at);
            evbuffer_add(out, buf, len);
            evbuffer_add(out, "\r\n", 2);
        } else {
            evbuffer_add(out, buf, len);
        }
        queued(c);
    }
    if (evbuffer_get_length(out) > OUT_HIGH) {
        if (!c->above_high) {
            c->above_high = true;
            /* on_write fires once the output drains to OUT_LOW */
            bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
        }
        return true;
    }
    return false;
}

void client_end(struct client *c, bool complete)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (!complete)
        c->keep_alive = false; /* the client must see the cut: no terminator */
    else if (c->chunked) {
        evbuffer_add(out, "0\r\n\r\n", 5);
        queued(c);
    }
    c->ev = NULL;
    c->ctx = NULL;
    if (!c->keep_alive) {
        close_after_flush(c);
        return;
    }
    bool below = !c->above_high;
    reset_request(c);
    if (!below)
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    c->state = CS_IDLE;
    event_active(c->defer, 0, 0); /* a pipelined request may be waiting */
}

void client_respond(struct client *c, int status, const struct http_header *h, size_t n,
                    const char *body, size_t len)
{
    client_start(c, status, h, n, (long long)len);
    (void)client_write(c, body, len);
    client_end(c, true);
}

void client_error(struct client *c, int status, const char *code, const char *message)
{
    client_error_with(c, status, code, message, NULL, 0);
}

void client_error_with(struct client *c, int status, const char *code, const char *message,
                       const struct http_header *extra, size_t n_extra)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        close_after_flush(c);
        return;
    }
    c->hooks.error_body(c->path ? c->path : "", status, code, message, b, c->hooks.arg);
    size_t len = evbuffer_get_length(b);
    const char *body = (const char *)evbuffer_pullup(b, -1);
    struct http_header h[8] = {{"Content-Type", "application/json"}};
    size_t nh = 1;
    for (size_t i = 0; i < n_extra && nh < ARRAY_LEN(h); i++)
        h[nh++] = extra[i];
    if (status == 413 || status == 431 || status == 408)
        c->keep_alive = false; /* the rest of the request was not read */
    client_respond(c, status, h, nh, body ? body : "", body ? len : 0);
    evbuffer_free(b);
}

const char *client_header(const struct http_request *r, const char *name, int *count)
{
    const char *found = NULL;
    int n = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            if (!found)
                found = r->headers[i].value;
            n++;
        }
    }
    if (count)
        *count = n;
    return found;
}
