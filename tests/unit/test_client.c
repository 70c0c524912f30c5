/* test_client.c: HTTP framing of client requests (client.c), through a
 * socketpair and a real event loop. Each case sends exact bytes and checks
 * the status of every response, and whether the connection was closed. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "check.h"
#include "http/client.h"

static const struct client_limits limits = {
    .max_header_size = 1024,
    .max_body = 100,
    .header_timeout_ms = 300,
    .body_timeout_ms = 300,
    .keepalive_timeout_ms = 2000,
    .send_timeout_ms = 2000,
};

static int handled; /* requests that reached the handler */
static char last_body[256];

static void handler(struct client *c, struct http_request *req, void *arg)
{
    handled++;
    size_t n = evbuffer_get_length(req->body);
    if (n >= sizeof(last_body))
        n = sizeof(last_body) - 1;
    evbuffer_copyout(req->body, last_body, n);
    last_body[n] = '\0';
    client_respond(c, 200, NULL, 0, "ok", 2);
}

static void error_body(const char *path, int status, const char *code, const char *message,
                       struct evbuffer *out, void *arg)
{
    evbuffer_add_printf(out, "{\"code\":\"%s\"}", code);
}

struct run {
    char out[16384];
    size_t len;
    bool closed;
};

struct trickle {
    int fd;
    const char *rest;
    struct event *ev;
};

static void on_trickle(evutil_socket_t fd, short what, void *arg)
{
    struct trickle *t = arg;
    if (*t->rest) {
        if (write(t->fd, t->rest, 1) == 1)
            t->rest++;
        struct timeval tv = {0, 50000};
        evtimer_add(t->ev, &tv);
    }
}

/* Sends input (all at once, or one byte per 50 ms when trickle), runs the
 * loop for ms, and collects what came back. */
static void exchange(const char *input, size_t len, bool trickle, int ms, struct run *r)
{
    int sv[2];
    memset(r, 0, sizeof(*r));
    handled = 0;
    last_body[0] = '\0';
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return;
    struct event_base *base = event_base_new();
    evutil_make_socket_nonblocking(sv[0]);
    static const struct client_hooks hooks = {handler, error_body, NULL};
    struct client *c = client_new(base, sv[0], NULL, &limits, &hooks);
    CHECK(c != NULL);
    struct trickle t = {sv[1], input, NULL};
    if (trickle) {
        t.ev = evtimer_new(base, on_trickle, &t);
        on_trickle(-1, 0, &t);
    } else {
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(sv[1], input + off, len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);

    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t n = read(sv[1], r->out + r->len, sizeof(r->out) - 1 - r->len);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        r->closed = n == 0;
        break;
    }
    r->out[r->len] = '\0';
    /* a client still open (keep-alive) is freed by closing our end and
     * letting it see EOF */
    close(sv[1]);
    struct timeval tv2 = {0, 20000};
    event_base_loopexit(base, &tv2);
    event_base_dispatch(base);
    client_close_all();
    if (t.ev)
        event_free(t.ev);
    event_base_free(base);
}

/* The status codes of every response in out, in order, as "200 200". */
static void statuses(const struct run *r, char *buf, size_t n)
{
    buf[0] = '\0';
    const char *p = r->out;
    size_t used = 0;
    while ((p = strstr(p, "HTTP/1.1 ")) != NULL) {
        int st = atoi(p + 9);
        if (st != 100)
            used += (size_t)snprintf(buf + used, n - used, "%s%d", used ? " " : "", st);
        p += 9;
    }
}

struct framing_case {
    const char *name;
    const char *input;
    const char *want; /* statuses of the responses, in order */
    bool want_closed;
    int want_handled;
};

#define GET(extra) "GET /v1/models HTTP/1.1\r\nHost: x\r\n" extra
#define POST(extra) "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" extra

static const struct framing_case cases[] = {
    {"simple get", GET("\r\n"), "200", false, 1},
    {"post with length", POST("Content-Length: 5\r\n\r\nhello"), "200", false, 1},
    {"chunked body", POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "200",
     false, 1},
    {"chunked with trailing space", POST("Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n"), "400",
     true, 0},
    {"chunked with trailing tab", POST("Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n"), "400",
     true, 0},
    {"chunked in capitals", POST("Transfer-Encoding: CHUNKED\r\n\r\n2\r\nhi\r\n0\r\n\r\n"), "200",
     false, 1},
    {"empty line before the request line", "\r\n" GET("\r\n"), "200", false, 1},
    {"bare lf ends a header line", GET("X-A: b\n\r\n"), "400", true, 0},
    {"bare lf ends the request line", "GET /v1/models HTTP/1.1\nHost: x\r\n\r\n", "400", true, 0},
    {"lf-only request", "GET /v1/models HTTP/1.1\nHost: x\n\n", "400", true, 0},
    {"blank lines then lf-only", "\r\n\r\nGET /v1/models HTTP/1.1\nHost: x\n\n", "400", true, 0},
    {"bare lf before the request line", "\n" GET("\r\n"), "400", true, 0},
    {"cr then a byte ends the head", GET("\rZ"), "400", true, 0},
    {"bare cr inside a value", GET("X-A: a\rb\r\n\r\n"), "400", true, 0},
    {"chunk size over max_body refused at its size line",
     POST("Transfer-Encoding: chunked\r\n\r\n1000\r\n"), "413", true, 0},
    {"chunks adding up over max_body",
     POST("Transfer-Encoding: chunked\r\n\r\n3c\r\n"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n29\r\n"),
     "413", true, 0},
    {"chunks adding up to max_body",
     POST("Transfer-Encoding: chunked\r\n\r\n3c\r\n"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "\r\n28\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "\r\n0\r\n\r\n"),
     "200", false, 1},
    {"pipelined pair", GET("\r\n") GET("\r\n"), "200 200", false, 2},
    {"te + cl", POST("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "400",
     true, 0},
    {"cl + te", POST("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), "400",
     true, 0},
    {"two lengths", POST("Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"), "400", true, 0},
    {"two equal lengths", POST("Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), "400", true,
     0},
    {"signed length", POST("Content-Length: +5\r\n\r\nhello"), "400", true, 0},
    {"negative length", POST("Content-Length: -1\r\n\r\n"), "400", true, 0},
    {"length with junk", POST("Content-Length: 5x\r\n\r\nhello"), "400", true, 0},
    {"empty length", POST("Content-Length:\r\n\r\n"), "400", true, 0},
    {"20-digit length", POST("Content-Length: 99999999999999999999\r\n\r\n"), "400", true, 0},
    {"te gzip, chunked", POST("Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), "400", true, 0},
    {"te chunked, chunked", POST("Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"), "400",
     true, 0},
    {"te identity", POST("Transfer-Encoding: identity\r\n\r\n"), "400", true, 0},
    {"te xchunked", POST("Transfer-Encoding: xchunked\r\n\r\n"), "400", true, 0},
    {"two te headers",
     POST("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "400", true,
     0},
    {"te in http/1.0",
     "POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400",
     true, 0},
    {"huge chunk size", POST("Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n"), "400",
     true, 0},
    {"negative chunk size", POST("Transfer-Encoding: chunked\r\n\r\n-1\r\n"), "400", true, 0},
    {"hex-prefixed chunk size", POST("Transfer-Encoding: chunked\r\n\r\n0x10\r\n"), "400", true, 0},
    {"runaway chunk", POST("Transfer-Encoding: chunked\r\n\r\n4\r\nSEE-THIS\r\n0\r\n\r\n"), "400",
     true, 0},
    {"smuggled request after error",
     POST("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") GET("\r\n"), "400",
     true, 0},
    {"body over max_body by length", POST("Content-Length: 101\r\n\r\n"), "413", true, 0},
    {"body over max_body chunked",
     POST("Transfer-Encoding: chunked\r\n\r\n65\r\n"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"),
     "413", true, 0},
    {"expect 100-continue refused when too large",
     POST("Content-Length: 500\r\nExpect: 100-continue\r\n\r\n"), "413", true, 0},
    {"missing host on 1.1", "GET /v1/models HTTP/1.1\r\n\r\n", "400", true, 0},
    {"two hosts", GET("Host: y\r\n\r\n"), "400", true, 0},
    {"nul in a value", GET("X-A: a\0b\r\n\r\n"), "400", true, 0},
    {"obs-fold", GET("X-A: a\r\n b\r\n\r\n"), "400", true, 0},
    {"space in a header name", GET("X A: b\r\n\r\n"), "400", true, 0},
    {"empty header name", GET(": b\r\n\r\n"), "400", true, 0},
    {"absolute-form target", "GET http://evil.example/v1/models HTTP/1.1\r\nHost: x\r\n\r\n", "400",
     true, 0},
    {"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "400", true, 0},
    {"connect", "CONNECT evil.example:443 HTTP/1.1\r\nHost: x\r\n\r\n", "405", true, 0},
    {"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400", true, 0},
    {"chunk size line ended by cr and another byte",
     POST("Transfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n"), "400", true, 0},
    {"chunk size line ended by a bare lf",
     POST("Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), "400", true, 0},
    {"chunk data followed by two other bytes",
     POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n"), "400", true, 0},
    {"chunk data followed by a bare lf",
     POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n"), "400", true, 0},
    {"last chunk line ended by cr and another byte",
     POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\rX\r\n"), "400", true, 0},
    {"trailer with a bare lf",
     POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\n\r\n"), "400", true, 0},
    {"end of trailers cr and another byte",
     POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\rZ"), "400", true, 0},
    {"chunk extension with hex letters and a trailer",
     POST("Transfer-Encoding: chunked\r\n\r\n5;ab=cd\r\nhello\r\n0\r\nX-T: 1\r\n\r\n") GET("\r\n"),
     "200 200", false, 2},
    {"http/1.2", "GET /v1/models HTTP/1.2\r\nHost: x\r\n\r\n", "505", true, 0},
    {"http/9.9", "GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n", "505", true, 0},
    {"bad method", "G@T /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", "400", true, 0},
    {"header section too large",
     GET("X-Big: "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "\r\n\r\n"),
     "431", true, 0},
    {"http/1.0 without keep-alive closes", "GET /v1/models HTTP/1.0\r\n\r\n", "200", true, 1},
    {"connection close honoured", GET("Connection: close\r\n\r\n"), "200", true, 1},
};

static void test_framing_table(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct framing_case *fc = &cases[i];
        /* inputs may hold a NUL: the length is the literal's, minus its own */
        size_t len = strlen(fc->input);
        if (strcmp(fc->name, "nul in a value") == 0)
            len = sizeof(GET("X-A: a\0b\r\n\r\n")) - 1;
        struct run r;
        exchange(fc->input, len, false, 150, &r);
        char got[64];
        statuses(&r, got, sizeof(got));
        if (strcmp(got, fc->want) != 0 || r.closed != fc->want_closed ||
            handled != fc->want_handled) {
            fprintf(stderr,
                    "  case '%s': statuses '%s' (want '%s'), closed %d (want %d), "
                    "handled %d (want %d)\n",
                    fc->name, got, fc->want, r.closed, fc->want_closed, handled, fc->want_handled);
            check_failed_now = 1;
        }
    }
}

/* Every split point of a chunked request gives the same body. */
static void test_split_points(void)
{
    static const char req[] =
        POST("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    size_t len = sizeof(req) - 1;
    for (size_t cut = 1; cut < len; cut += 7) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        struct event_base *base = event_base_new();
        evutil_make_socket_nonblocking(sv[0]);
        static const struct client_hooks hooks = {handler, error_body, NULL};
        handled = 0;
        CHECK(client_new(base, sv[0], NULL, &limits, &hooks) != NULL);
        CHECK(write(sv[1], req, cut) == (ssize_t)cut);
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        CHECK(write(sv[1], req + cut, len - cut) == (ssize_t)(len - cut));
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        CHECK_INT(handled, 1);
        CHECK_STR(last_body, "hello world");
        close(sv[1]);
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        client_close_all();
        event_base_free(base);
    }
}

/* Headers trickled one byte every 50 ms cannot outlive the 300 ms deadline. */
static void test_slowloris(void)
{
    static const char req[] =
        GET("X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    struct run r;
    exchange(req, sizeof(req) - 1, true, 700, &r);
    char got[64];
    statuses(&r, got, sizeof(got));
    CHECK_STR(got, "408");
    CHECK(r.closed);
    CHECK_INT(handled, 0);
}

/* A body that stops arriving is cut at the body deadline. */
static void test_slow_body(void)
{
    static const char req[] = POST("Content-Length: 50\r\n\r\nonly part");
    struct run r;
    exchange(req, sizeof(req) - 1, false, 600, &r);
    char got[64];
    statuses(&r, got, sizeof(got));
    CHECK_STR(got, "408");
    CHECK(r.closed);
}

/* Expect: 100-continue on an acceptable body gets the interim answer. */
static void test_expect_continue(void)
{
    static const char req[] = POST("Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    struct run r;
    exchange(req, sizeof(req) - 1, false, 100, &r);
    CHECK(strstr(r.out, "HTTP/1.1 100 Continue\r\n\r\n") == r.out);
    CHECK(strstr(r.out, "HTTP/1.1 200 OK") != NULL);
}

int main(void)
{
    static const struct check_test tests[] = {
        {"framing_table", test_framing_table},
        {"split_points", test_split_points},
        {"slowloris", test_slowloris},
        {"slow_body", test_slow_body},
        {"expect_continue", test_expect_continue},
    };
    return CHECK_MAIN("client", tests);
}
