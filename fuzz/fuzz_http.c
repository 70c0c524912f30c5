/* fuzz_http.c: libFuzzer target for client HTTP framing (client.c), driven
 * for real: a socketpair, a libevent loop per input, client_new on one end.
 *
 * The input is the raw bytes a client sends, written in two parts (the cut
 * is derived from the bytes) with loop turns in between. The handler answers
 * by the request path: "/stream" chunked (or close-delimited on 1.0),
 * "/cut" a truncated stream, "/async" on a later loop turn, "/error" with
 * client_error, anything else a whole 200. What comes back is parsed as
 * HTTP responses. Checked (abort on violation):
 *  - never more responses than handled requests + framing errors, and at
 *    most one framing error per connection;
 *  - after a framing error no request reaches the handler and nothing
 *    follows its response on the wire;
 *  - every request handed over is well formed (path starts with '/', one
 *    Host on 1.1, body within max_body);
 *  - the output parses as HTTP/1.1 responses; no leak (client_close_all). */
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "http/client.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http: invariant failed: %s (line %d)\n", #cond, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FRAMING_MARK "{\"framing\":1}"

static const struct client_limits limits = {
    .max_header_size = 2048,
    .max_body = 512,
    .header_timeout_ms = 60000, /* deadlines never fire within one input */
    .body_timeout_ms = 60000,
    .keepalive_timeout_ms = 60000,
    .send_timeout_ms = 60000,
};

struct pending {
    struct client *c;
    bool gone;
    bool is_head;
};

static struct run {
    struct event_base *base;
    int handled;        /* requests that reached the handler */
    int answered;       /* requests the handler answered */
    int framing_errors; /* client_error from client.c itself */
    int handler_errors; /* client_error from the handler */
    bool in_handler;
    struct pending async; /* at most one: one request at a time */
    bool async_armed;
    uint8_t *out;
    size_t out_len, out_cap;
    bool closed;
} R;

static void gone(void *ctx)
{
    struct pending *p = ctx;
    p->gone = true;
}

static const struct client_events events = {gone, NULL};

static void answer(struct client *c, bool is_head)
{
    /* a HEAD answer carries no body (RFC 9110 9.3.2), else the wire desyncs */
    client_respond(c, 200, NULL, 0, "ok", is_head ? 0 : 2);
    R.answered++;
}

static void on_async(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    R.async_armed = false;
    if (!p->gone)
        answer(p->c, p->is_head);
}

static void handler(struct client *c, struct http_request *req, void *arg)
{
    CHECKF(R.framing_errors == 0); /* nothing is handled after a framing error */
    CHECKF(!R.async_armed);        /* one request at a time */
    R.handled++;
    CHECKF(req->path && req->path[0] == '/' && req->target && req->method_name);
    CHECKF(req->http_minor == 0 || req->http_minor == 1); /* 1.2+ is 505 */
    CHECKF(evbuffer_get_length(req->body) <= limits.max_body);
    int hosts = 0;
    (void)client_header(req, "host", &hosts);
    if (req->http_minor >= 1)
        CHECKF(hosts == 1);
    for (size_t i = 0; i < req->n_headers; i++)
        CHECKF(req->headers[i].name[0] != '\0');
    bool is_head = req->method == HTTP_HEAD;
    if (strstr(req->path, "/async")) {
        R.async = (struct pending){.c = c, .is_head = is_head};
        client_attach(c, &events, &R.async);
        struct timeval tv = {0, 0};
        R.async_armed = true;
        CHECKF(event_base_once(R.base, -1, EV_TIMEOUT, on_async, &R.async, &tv) == 0);
        return;
    }
    if (strstr(req->path, "/error")) {
        R.handler_errors++;
        R.in_handler = true;
        client_error(c, 429, "rate_limit_exceeded", "slow down");
        R.in_handler = false;
        R.answered++;
        return;
    }
    if (strstr(req->path, "/stream") || strstr(req->path, "/cut")) {
        bool cut = strstr(req->path, "/cut") != NULL;
        client_start(c, 200, NULL, 0, -1);
        if (!is_head) {
            (void)client_write(c, "data: a\n\n", 9);
            (void)client_write(c, "", 0);
            (void)client_write(c, "data: b\n\n", 9);
        }
        client_end(c, !cut);
        R.answered++;
        return;
    }
    answer(c, is_head);
}

static void error_body(const char *path, int status, const char *code, const char *message,
                       struct evbuffer *out, void *arg)
{
    CHECKF(path != NULL && code != NULL && message != NULL);
    CHECKF(status >= 400 && status <= 599);
    if (R.in_handler) {
        evbuffer_add_printf(out, "{\"code\":\"%s\"}", code);
        return;
    }
    CHECKF(R.framing_errors == 0); /* one framing error per connection */
    R.framing_errors++;
    evbuffer_add(out, FRAMING_MARK, strlen(FRAMING_MARK));
}

static void drain(int fd)
{
    for (;;) {
        if (R.out_len == R.out_cap) {
            R.out_cap = R.out_cap ? R.out_cap * 2 : 4096;
            R.out = realloc(R.out, R.out_cap);
            CHECKF(R.out != NULL);
        }
        ssize_t n = read(fd, R.out + R.out_len, R.out_cap - R.out_len);
        if (n > 0) {
            R.out_len += (size_t)n;
            continue;
        }
        if (n == 0)
            R.closed = true;
        return;
    }
}

/* Loop turns until nothing changes for a few turns in a row. */
static void settle(int fd)
{
    int quiet = 0;
    for (int i = 0; i < 500 && quiet < 4; i++) {
        size_t before = R.out_len;
        int h = R.handled, a = R.answered;
        event_base_loop(R.base, EVLOOP_NONBLOCK);
        drain(fd);
        bool same = R.out_len == before && R.handled == h && R.answered == a && !R.async_armed;
        quiet = same ? quiet + 1 : 0;
    }
}

/* ---- what came back, parsed as responses ---- */

struct resp_scan {
    int responses;      /* final responses, 1xx excluded */
    int framing_seen;   /* responses carrying FRAMING_MARK */
    size_t framing_end; /* offset just after that response */
    bool in_framing;
    int status;
};

static int r_headers(http_parser *p)
{
    struct resp_scan *s = p->data;
    s->status = (int)p->status_code;
    CHECKF(p->http_major == 1 && p->http_minor == 1);
    if (s->status >= 200) {
        s->responses++;
        s->in_framing = false;
    }
    return 0;
}

static int r_body(http_parser *p, const char *at, size_t len)
{
    struct resp_scan *s = p->data;
    if (len == strlen(FRAMING_MARK) && memcmp(at, FRAMING_MARK, len) == 0) {
        CHECKF(s->status >= 400);
        s->in_framing = true;
    }
    return 0;
}

static int r_complete(http_parser *p)
{
    struct resp_scan *s = p->data;
    if (s->in_framing) {
        s->framing_seen++;
        s->in_framing = false;
        return 1; /* stop here: the offset is checked by the caller */
    }
    return 0;
}

static void check_output(void)
{
    http_parser_settings set = {0};
    set.on_headers_complete = r_headers;
    set.on_body = r_body;
    set.on_message_complete = r_complete;
    struct resp_scan s = {0};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &s;
    size_t off = 0;
    while (off < R.out_len) {
        size_t n = http_parser_execute(&p, &set, (const char *)R.out + off, R.out_len - off);
        enum http_errno e = HTTP_PARSER_ERRNO(&p);
        off += n;
        if (e == HPE_CB_message_complete) {
            /* a framing error's response is the last thing on the wire */
            CHECKF(off == R.out_len);
            CHECKF(R.closed);
            break;
        }
        /* a response cut on purpose (/cut) ends the connection mid-body */
        if (e != HPE_OK)
            break;
    }
    if (off == R.out_len && R.closed)
        (void)http_parser_execute(&p, &set, NULL, 0); /* EOF ends a close-delimited body */
    if (getenv("FUZZ_HTTP_DEBUG"))
        fprintf(stderr, "handled %d answered %d framing %d responses %d closed %d\n", R.handled,
                R.answered, R.framing_errors, s.responses, R.closed);
    CHECKF(s.responses <= R.handled + R.framing_errors);
    CHECKF(s.framing_seen <= 1 && s.framing_seen <= R.framing_errors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return 0;
    free(R.out);
    memset(&R, 0, sizeof(R));
    R.base = event_base_new();
    CHECKF(R.base != NULL);
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    static const struct client_hooks hooks = {handler, error_body, NULL};
    struct client *c = client_new(R.base, sv[0], NULL, &limits, &hooks);
    CHECKF(c != NULL);

    size_t sum = 0;
    for (size_t i = 0; i < size; i++)
        sum = sum * 31 + data[i];
    size_t cut = size ? sum % (size + 1) : 0;
    size_t parts[2][2] = {{0, cut}, {cut, size}};
    for (int k = 0; k < 2; k++) {
        size_t off = parts[k][0];
        while (off < parts[k][1]) {
            ssize_t n = write(sv[1], data + off, parts[k][1] - off);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                settle(sv[1]);
                continue;
            }
            if (n <= 0)
                break; /* the client closed: the rest is never read */
            off += (size_t)n;
        }
        settle(sv[1]);
    }
    CHECKF(R.framing_errors == 0 || R.answered == R.handled);
    check_output();

    /* the client hangs up; everything is freed */
    close(sv[1]);
    event_base_loop(R.base, EVLOOP_NONBLOCK);
    client_close_all();
    CHECKF(client_open_count() == 0);
    event_base_free(R.base);
    free(R.out);
    memset(&R, 0, sizeof(R));
    return 0;
}
