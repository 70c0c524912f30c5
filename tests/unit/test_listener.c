/* test_listener.c: the listener's connection cap and its pause when accept
 * runs out of descriptors (listener.c), with a real socket and event loop
 * under a lowered RLIMIT_NOFILE; and the descriptor arithmetic of
 * fdlimit.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "check.h"
#include "core/fdlimit.h"
#include "core/metrics.h"
#include "http/listener.h"

#define CLIENTS 100

static int accepted[CLIENTS * 2];
static size_t n_accepted;

static void keep(int fd, void *arg)
{
    if (n_accepted < ARRAY_LEN(accepted))
        accepted[n_accepted++] = fd;
    else
        close(fd);
}

/* A port free on 127.0.0.1 (bound to 0, read back, released). */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(s, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

static int connect_to(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s >= 0 && connect(s, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(s);
        return -1;
    }
    return s;
}

static long long metric(struct metrics *m, const char *name)
{
    struct evbuffer *b = evbuffer_new();
    long long v = -1;
    if (metrics_render(b, &m, 1, NULL) == 0) {
        evbuffer_add(b, "", 1);
        const char *text = (const char *)evbuffer_pullup(b, -1);
        char want[128];
        snprintf(want, sizeof(want), "\n%s ", name);
        const char *p = strstr(text, want);
        if (p)
            v = atoll(p + strlen(want));
    }
    evbuffer_free(b);
    return v;
}

static void run_for(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* 100 clients wait in the backlog while the process can open only a few
 * more descriptors: the listener pauses (a handful of times in 600 ms,
 * not once per loop turn) and accepts the rest once descriptors are free. */
static void test_emfile_pauses(void)
{
    struct event_base *base = event_base_new();
    struct metrics *m = metrics_new();
    atomic_ulong open = 0;
    int port = free_port();
    char addr[32], err[256];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    const struct listener_conf conf = {.name = "test",
                                       .addr = addr,
                                       .backlog = 512,
                                       .open = &open,
                                       .max_open = 100000,
                                       .accept = keep,
                                       .metrics = m};
    struct listener *l = listener_new(base, &conf, err, sizeof(err));
    CHECK(l != NULL);
    if (!l || !m)
        return;
    int clients[CLIENTS];
    int maxfd = 0;
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = connect_to(port);
        CHECK(clients[i] >= 0);
        if (clients[i] > maxfd)
            maxfd = clients[i];
    }
    struct rlimit saved, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    low = saved;
    low.rlim_cur = (rlim_t)maxfd + 1 + 10; /* room for 10 accepted connections */
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);

    n_accepted = 0;
    run_for(base, 600);
    long long pauses = metric(m, "tollgate_accept_pauses_total");
    CHECK(n_accepted <= 10);
    /* 1+2+4+...+512 ms: about ten pauses in 600 ms; a busy loop makes thousands */
    CHECK(pauses >= 1 && pauses <= 12);
    if (pauses < 1 || pauses > 12)
        fprintf(stderr, "  %lld pauses, %zu accepted\n", pauses, n_accepted);

    /* descriptors come back: the next pause ends in accepting the rest */
    for (size_t i = 0; i < n_accepted; i++)
        close(accepted[i]);
    size_t before = n_accepted;
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    run_for(base, 1500);
    CHECK_INT(n_accepted, CLIENTS);
    for (size_t i = before; i < n_accepted; i++)
        close(accepted[i]);
    for (int i = 0; i < CLIENTS; i++)
        close(clients[i]);
    listener_free(l);
    metrics_free(m);
    event_base_free(base);
}

/* Over max_open a connection is accepted and closed at once, and counted. */
static void test_cap(void)
{
    struct event_base *base = event_base_new();
    struct metrics *m = metrics_new();
    atomic_ulong open = 3; /* as if three connections were open */
    int port = free_port();
    char addr[32], err[256];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    const struct listener_conf conf = {.name = "test",
                                       .addr = addr,
                                       .backlog = 16,
                                       .open = &open,
                                       .max_open = 3,
                                       .accept = keep,
                                       .metrics = m};
    struct listener *l = listener_new(base, &conf, err, sizeof(err));
    CHECK(l != NULL);
    if (!l || !m)
        return;
    int c1 = connect_to(port), c2 = connect_to(port);
    n_accepted = 0;
    run_for(base, 100);
    CHECK_INT(n_accepted, 0);
    CHECK_INT(metric(m, "tollgate_connections_refused_total"), 2);
    char ch;
    CHECK(read(c1, &ch, 1) == 0); /* closed by the listener */
    open = 2;
    int c3 = connect_to(port);
    run_for(base, 100);
    CHECK_INT(n_accepted, 1);
    for (size_t i = 0; i < n_accepted; i++)
        close(accepted[i]);
    close(c1);
    close(c2);
    close(c3);
    listener_free(l);
    metrics_free(m);
    event_base_free(base);
}

static void test_fit(void)
{
    static const struct {
        unsigned long long nofile;
        struct fdlimit_need need;
        long want;
    } cases[] = {
        /* 300 - 32 - 2*16 - 24 idle - 32 admin = 180, two per connection */
        {300, {10000, 2, 24, 32}, 90},
        {1024, {10000, 1, 0, 0}, (1024 - 48) / 2},
        {1024, {10000, 8, 3072, 32}, 0}, /* the pools alone need more than the limit */
        {1ULL << 20, {10000, 4, 1536, 32}, ((1L << 20) - 32 - 64 - 1536 - 32) / 2},
        {10, {10, 1, 0, 0}, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        CHECK_INT(fdlimit_fit(cases[i].nofile, &cases[i].need), cases[i].want);
}

int main(void)
{
    static const struct check_test tests[] = {
        {"emfile_pauses", test_emfile_pauses},
        {"cap", test_cap},
        {"fit", test_fit},
    };
    return CHECK_MAIN("listener", tests);
}
