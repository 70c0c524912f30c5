/* health.c: `tollgate health` (health.h). One blocking HTTP/1.0 GET with
 * a deadline over everything (resolve, connect, send, read), the answer
 * framed by http_parser like every response tollgate reads; no event loop,
 * no TLS: the admin listener speaks plain HTTP on the loopback. */
#include "core/health.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

#include "core/config.h"

#define DEADLINE_MS 3000 /* under the image's HEALTHCHECK --timeout=5s */

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc < 0 ? -1 : rc > 0;
    }
}

static int connect_to(const char *host, int port, long long deadline, char *err, size_t errlen)
{
    char service[16];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        int e = 0;
        socklen_t el = sizeof(e);
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0)
            break;
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port,
                 e                      ? strerror(e)
                 : errno == EINPROGRESS ? "timed out"
                                        : strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0 && !err[0])
        snprintf(err, errlen, "cannot connect to %s:%d", host, port);
    return fd;
}

struct answer {
    int status;
    bool complete; /* headers seen: the status is known */
};

static int on_headers_complete(http_parser *p)
{
    struct answer *a = p->data;
    a->status = (int)p->status_code;
    a->complete = true;
    return 1; /* the body does not matter */
}

/* GETs path from host:port; returns the HTTP status, or -1 with err. */
static int probe(const char *host, int port, const char *path, char *err, size_t errlen)
{
    long long deadline = now_ms() + DEADLINE_MS;
    char req[1024], buf[4096];
    int fd = connect_to(host, port, deadline, err, errlen);
    if (fd < 0)
        return -1;
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: tollgate-health\r\n\r\n", path, host);
    int status = -1;
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(err, errlen, "path too long");
        goto done;
    }
    for (int sent = 0; sent < n;) {
        ssize_t w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 1) {
                snprintf(err, errlen, "timed out sending the request");
                goto done;
            }
            continue;
        }
        if (w < 0) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            goto done;
        }
        sent += (int)w;
    }
    http_parser parser;
    http_parser_settings settings = {.on_headers_complete = on_headers_complete};
    struct answer a = {0};
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &a;
    while (!a.complete) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline) != 1) {
                snprintf(err, errlen, "no answer within %d ms", DEADLINE_MS);
                goto done;
            }
            continue;
        }
        if (r < 0) {
            snprintf(err, errlen, "recv: %s", strerror(errno));
            goto done;
        }
        size_t used = http_parser_execute(&parser, &settings, buf, (size_t)r);
        if (a.complete)
            break;
        if (r == 0 || used != (size_t)r) {
            snprintf(err, errlen, "%s", r == 0 ? "closed before an answer" : "not an HTTP answer");
            goto done;
        }
    }
    status = a.status;
done:
    close(fd);
    return status;
}

/* admin_listen of the config at path as a URL on the loopback. */
static int url_from_config(const char *path, char *url, size_t n)
{
    char err[8192] = "";
    struct config *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "tollgate health: %s", err);
        return -1;
    }
    int rc = -1;
    const char *listen = cfg->admin_listen;
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon) {
        fprintf(stderr, "tollgate health: %s has no admin_listen to probe\n", path);
        goto done;
    }
    const char *host = listen;
    size_t hlen = (size_t)(colon - listen);
    if ((hlen == 7 && strncmp(host, "0.0.0.0", 7) == 0) || hlen == 0)
        host = "127.0.0.1", hlen = 9;
    else if (hlen == 4 && strncmp(host, "[::]", 4) == 0)
        host = "[::1]", hlen = 5;
    if (snprintf(url, n, "http://%.*s%s/healthz", (int)hlen, host, colon) < (int)n)
        rc = 0;
done:
    config_unref(cfg);
    return rc;
}

int health_main(int argc, char **argv)
{
    char url[512] = "";
    const char *conf = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            conf = argv[++i];
        else if (strncmp(argv[i], "http", 4) == 0 && !url[0])
            snprintf(url, sizeof(url), "%s", argv[i]);
        else {
            fprintf(stderr, "usage: tollgate health [URL | -c FILE]\n");
            return 2;
        }
    }
    if (!url[0] && url_from_config(conf ? conf : "proxy.conf", url, sizeof(url)) < 0)
        return 1;

    bool tls;
    char *host = NULL, *path = NULL;
    int port;
    if (config_parse_url(url, &tls, &host, &port, &path) < 0 || tls) {
        fprintf(stderr, "tollgate health: '%s' is not an http://host:port[/path] URL\n", url);
        free(host);
        free(path);
        return 2;
    }
    char err[512] = "";
    int status = probe(host, port, path[0] ? path : "/healthz", err, sizeof(err));
    free(host);
    free(path);
    if (status == 200) {
        printf("%s: 200\n", url);
        return 0;
    }
    if (status < 0)
        fprintf(stderr, "tollgate health: %s: %s\n", url, err);
    else
        fprintf(stderr, "tollgate health: %s: HTTP %d\n", url, status);
    return 1;
}
