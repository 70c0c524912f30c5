/* port_check.c: is a port already taken (port_check.h)? A probe bind
 * without SO_REUSEPORT fails with EADDRINUSE when any socket holds the
 * address, SO_REUSEPORT or not; /proc/net/tcp{,6} then give the listening
 * socket's inode and /proc/PID/fd the process that has it open. */
#include "core/port_check.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/util.h>

#define TCP_LISTEN 0x0A /* st column of /proc/net/tcp */

/* The inode of a socket listening on port, from /proc/net/tcp or tcp6; 0
 * if none is listed (or /proc is not readable). */
static unsigned long listening_inode(int port)
{
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (size_t t = 0; t < ARRAY_LEN(tables); t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        char line[512];
        unsigned long found = 0;
        if (!fgets(line, sizeof(line), f)) /* the header */
            line[0] = '\0';
        while (!found && fgets(line, sizeof(line), f)) {
            char local[64];
            unsigned st;
            unsigned long inode;
            /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
            if (sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &inode) != 3)
                continue;
            const char *colon = strrchr(local, ':');
            if (st == TCP_LISTEN && colon && strtol(colon + 1, NULL, 16) == port)
                found = inode;
        }
        fclose(f);
        if (found)
            return found;
    }
    return 0;
}

/* The pid with socket inode open, and its name into comm; 0 if not found
 * (another user's process is not visible without privileges). */
static long socket_owner(unsigned long inode, char *comm, size_t n)
{
    char want[64];
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    long owner = 0;
    struct dirent *p;
    while (!owner && (p = readdir(proc))) {
        char *end;
        long pid = strtol(p->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
        DIR *fds = opendir(path);
        if (!fds)
            continue;
        struct dirent *fd;
        while (!owner && (fd = readdir(fds))) {
            char link[300], target[64];
            snprintf(link, sizeof(link), "/proc/%ld/fd/%s", pid, fd->d_name);
            ssize_t len = readlink(link, target, sizeof(target) - 1);
            if (len > 0) {
                target[len] = '\0';
                if (strcmp(target, want) == 0)
                    owner = pid;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    if (owner) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%ld/comm", owner);
        FILE *f = fopen(path, "r");
        if (!f || !fgets(comm, (int)n, f))
            snprintf(comm, n, "?");
        comm[strcspn(comm, "\n")] = '\0';
        if (f)
            fclose(f);
    }
    return owner;
}

int port_check_free(const char *key, const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(err, errlen, "%s: cannot parse '%s' (want host:port)", key, addr);
        return -1;
    }
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: socket: %s", key, addr, strerror(errno));
        return -1;
    }
    /* SO_REUSEADDR only: a restart must not wait out TIME_WAIT, but any
     * live socket on the address makes this bind fail */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, (struct sockaddr *)&ss, (socklen_t)len);
    int e = errno;
    close(fd);
    if (rc == 0 || port == 0)
        return 0;
    if (e != EADDRINUSE) {
        snprintf(err, errlen, "%s %s: cannot bind: %s", key, addr, strerror(e));
        return -1;
    }
    char comm[64] = "";
    unsigned long inode = listening_inode(port);
    long pid = inode ? socket_owner(inode, comm, sizeof(comm)) : 0;
    if (pid)
        snprintf(err, errlen,
                 "%s %s: port %d is already in use by pid %ld (%s); is another tollgate running? "
                 "refusing to start",
                 key, addr, port, pid, comm);
    else
        snprintf(err, errlen,
                 "%s %s: port %d is already in use by another process (not visible to this "
                 "user); refusing to start",
                 key, addr, port);
    return -1;
}
