/* cpus.c: the CPUs this process may use (cpus.h). The affinity mask is
 * one system call; the quota is read from the cgroup files of this
 * process's own cgroup and every ancestor up to the mount point, since a
 * limit set on a parent (a Kubernetes pod around its containers) binds its
 * children too. The smallest quota found wins. */
#include "core/cpus.h"

#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATH_LEN 4096

struct quota {
    long long quota, period; /* microseconds; quota < 0: no limit found */
    char file[PATH_LEN];     /* where it was read */
};

/* Reads a small file into buf; false when absent or unreadable. */
static bool slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = '\0';
    return got > 0;
}

/* Keeps q if it is tighter than what best holds. */
static void consider(struct quota *best, long long q, long long p, const char *file)
{
    if (q <= 0 || p <= 0)
        return;
    if (best->quota < 0 || (double)q / (double)p < (double)best->quota / (double)best->period) {
        best->quota = q;
        best->period = p;
        snprintf(best->file, sizeof(best->file), "%s", file);
    }
}

/* cgroup v2: "max 100000" (no limit) or "150000 100000". */
static void read_v2(const char *dir, struct quota *best)
{
    char path[PATH_LEN], buf[128];
    long long q, p;
    if (snprintf(path, sizeof(path), "%s/cpu.max", dir) >= (int)sizeof(path) ||
        !slurp(path, buf, sizeof(buf)))
        return;
    if (sscanf(buf, "%lld %lld", &q, &p) == 2)
        consider(best, q, p, path);
}

/* cgroup v1: cpu.cfs_quota_us (-1: no limit) over cpu.cfs_period_us. */
static void read_v1(const char *dir, struct quota *best)
{
    char qpath[PATH_LEN], ppath[PATH_LEN], buf[64];
    long long q, p;
    if (snprintf(qpath, sizeof(qpath), "%s/cpu.cfs_quota_us", dir) >= (int)sizeof(qpath) ||
        snprintf(ppath, sizeof(ppath), "%s/cpu.cfs_period_us", dir) >= (int)sizeof(ppath))
        return;
    if (!slurp(qpath, buf, sizeof(buf)) || sscanf(buf, "%lld", &q) != 1)
        return;
    if (!slurp(ppath, buf, sizeof(buf)) || sscanf(buf, "%lld", &p) != 1)
        return;
    consider(best, q, p, qpath);
}

/* This process's cgroup path for a hierarchy, from /proc/self/cgroup text
 * ("hierarchy-id:controllers:path" per line): the v2 line is "0::PATH", a
 * v1 line lists its controllers ("4:cpu,cpuacct:/PATH"). "/" when absent. */
static void own_path(const char *text, bool v2, char *out, size_t n)
{
    snprintf(out, n, "/");
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            bool match = false;
            if (v2) {
                match = c2 == c1 + 1;
            } else { /* "cpu" among the comma-separated controllers */
                for (const char *c = c1 + 1; c < c2;) {
                    const char *comma = memchr(c, ',', (size_t)(c2 - c));
                    const char *stop = comma ? comma : c2;
                    if (stop - c == 3 && memcmp(c, "cpu", 3) == 0)
                        match = true;
                    c = comma ? comma + 1 : c2;
                }
            }
            size_t plen = len - (size_t)(c2 + 1 - line);
            if (match && plen > 0 && plen < n) {
                memcpy(out, c2 + 1, plen);
                out[plen] = '\0';
                return;
            }
        }
        line = end ? end + 1 : NULL;
    }
}

/* Reads the quota in base+path and in each ancestor up to base itself. */
static void walk(const char *base, const char *path, bool v2, struct quota *best)
{
    char dir[PATH_LEN];
    size_t blen = strlen(base);
    if (snprintf(dir, sizeof(dir), "%s%s", base, strcmp(path, "/") == 0 ? "" : path) >=
        (int)sizeof(dir))
        return;
    for (;;) {
        if (v2)
            read_v2(dir, best);
        else
            read_v1(dir, best);
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= blen || !slash || (size_t)(slash - dir) < blen)
            break;
        *slash = '\0';
    }
}

/* The tightest quota under root (v2 at root, v1 under its cpu mounts). */
static void cgroup_quota(const char *root, const char *self, struct quota *best)
{
    static const char *const v1_mounts[] = {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu", ""};
    char p2[PATH_LEN], p1[PATH_LEN], base[PATH_LEN];
    own_path(self, true, p2, sizeof(p2));
    own_path(self, false, p1, sizeof(p1));
    walk(root, p2, true, best);
    for (size_t i = 0; i < sizeof(v1_mounts) / sizeof(v1_mounts[0]); i++) {
        if (snprintf(base, sizeof(base), "%s%s", root, v1_mounts[i]) < (int)sizeof(base))
            walk(base, p1, false, best);
    }
}

int cpus_available(char *why, size_t n)
{
    int affinity = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        affinity = CPU_COUNT(&set);
    if (affinity < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        affinity = online > 0 ? (int)online : 1;
    }

    const char *root = getenv(CPUS_CGROUP_ENV);
    if (!root || !*root)
        root = "/sys/fs/cgroup";
    char self[8192] = "";
    if (!slurp("/proc/self/cgroup", self, sizeof(self)))
        self[0] = '\0';
    struct quota best = {.quota = -1, .period = -1};
    cgroup_quota(root, self, &best);

    int cpus = affinity;
    if (best.quota > 0) {
        double limit = (double)best.quota / (double)best.period;
        int by_quota = (int)ceil(limit);
        if (by_quota < 1)
            by_quota = 1;
        if (by_quota < cpus)
            cpus = by_quota;
        snprintf(why, n, "%d CPUs in the affinity mask, cgroup quota %lld/%lld us (%.2f CPUs, %s)",
                 affinity, best.quota, best.period, limit, best.file);
    } else {
        snprintf(why, n, "%d CPUs in the affinity mask, no cgroup CPU quota under %s", affinity,
                 root);
    }
    return cpus;
}
