/* redis_server.h: the unit tests' real redis-server and loop waits. start_server
 * runs /usr/bin/redis-server on a free 127.0.0.1 port (server_port) in a temp
 * dir /tmp/tollgate-NAME-XXXXXX, without persistence; it is killed at exit, and
 * by the kernel if the test process dies first. Tests may signal server_pid
 * (SIGSTOP, SIGKILL) themselves. wait_for runs a libevent loop until a
 * condition holds or a deadline passes, polling every WAIT_POLL_US (define it
 * before the include to change it). Every wait is bounded. */
#ifndef TOLLGATE_REDIS_SERVER_H
#define TOLLGATE_REDIS_SERVER_H

#include "redis/redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#ifndef WAIT_POLL_US
#define WAIT_POLL_US 2000
#endif

static pid_t server_pid = -1;
static int server_port;
static char server_dir[64];

static __attribute__((unused)) long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server --------------------------------------------------------- */

static __attribute__((unused)) void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGCONT);
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/dump.rdb", server_dir);
    unlink(path);
    rmdir(server_dir);
}

static __attribute__((unused)) int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static __attribute__((unused)) int can_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Starts the server in /tmp/tollgate-NAME-XXXXXX and waits up to 5 s for it
 * to accept connections: 0, or -1. */
static __attribute__((unused)) int start_server(const char *name)
{
    char port[16];
    snprintf(server_dir, sizeof(server_dir), "/tmp/tollgate-%s-XXXXXX", name);
    if (!mkdtemp(server_dir) || (server_port = free_port()) < 0)
        return -1;
    snprintf(port, sizeof(port), "%d", server_port);
    atexit(stop_server);
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--dir", server_dir, (char *)NULL);
        _exit(127);
    }
    for (long long end = now_ms() + 5000; now_ms() < end; usleep(20000))
        if (can_connect(server_port))
            return 0;
    return -1;
}

/* ---- waiting on the loop ----------------------------------------------- */

struct wait {
    struct event_base *base;
    int (*cond)(void *);
    void *arg;
};

static __attribute__((unused)) void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct wait *w = arg;
    if (w->cond && w->cond(w->arg))
        event_base_loopbreak(w->base);
}

static __attribute__((unused)) void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Runs base until cond holds or ms pass (cond NULL: just ms). Own timers,
 * freed here, so no stray loopexit ends a later wait early. */
static __attribute__((unused)) int wait_for(struct event_base *base, int (*cond)(void *), void *arg,
                                            int ms)
{
    struct wait w = {base, cond, arg};
    struct event *poll = event_new(base, -1, EV_PERSIST, on_poll, &w);
    struct event *deadline = evtimer_new(base, on_deadline, base);
    struct timeval p = {0, WAIT_POLL_US}, d = {ms / 1000, (ms % 1000) * 1000};
    event_add(poll, &p);
    evtimer_add(deadline, &d);
    if (!(cond && cond(arg)))
        event_base_dispatch(base);
    event_free(poll);
    event_free(deadline);
    return cond ? cond(arg) : 1;
}

static __attribute__((unused)) int is_connected(void *r)
{
    return redis_connected(r);
}

#endif
