/* test_cpus.c: workers = 0 sizing (cpus.c) from fake cgroup trees: v2
 * cpu.max, v1 cfs quota under the cpu mounts, a limit on an ancestor
 * binding its child, "max" and -1 meaning none, the tighter of two. The
 * static helpers are tested by including the .c. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/cpus.c"
#include "core/util.h"

static char root[256];

static void put_file(const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = dir + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void fresh_root(void)
{
    char cmd[300];
    if (root[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
    snprintf(root, sizeof(root), "/tmp/tollgate-cpus-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
}

static void test_own_path(void)
{
    static const struct {
        const char *text;
        bool v2;
        const char *want;
    } cases[] = {
        {"0::/kubepods/pod1/c1\n", true, "/kubepods/pod1/c1"},
        {"0::/kubepods/pod1/c1\n", false, "/"},
        {"4:memory:/m\n2:cpu,cpuacct:/docker/abc\n0::/\n", false, "/docker/abc"},
        {"4:memory:/m\n2:cpuacct,cpu:/docker/abc\n0::/u\n", true, "/u"},
        {"3:cpuset:/x\n2:cpuacct:/y\n", false, "/"}, /* cpuset and cpuacct are not cpu */
        {"", true, "/"},
        {"garbage", false, "/"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[256];
        own_path(cases[i].text, cases[i].v2, out, sizeof(out));
        CHECK_STR(out, cases[i].want);
    }
}

static void test_quota_files(void)
{
    static const struct {
        const char *files[4][2]; /* relative path, content */
        const char *self;        /* /proc/self/cgroup */
        long long quota, period; /* -1: none */
    } cases[] = {
        {{{"cpu.max", "150000 100000\n"}}, "0::/\n", 150000, 100000},
        {{{"cpu.max", "max 100000\n"}}, "0::/\n", -1, -1},
        /* a pod's limit on the parent binds the container below it */
        {{{"kubepods/cpu.max", "50000 100000\n"}, {"kubepods/c1/cpu.max", "max 100000\n"}},
         "0::/kubepods/c1\n",
         50000,
         100000},
        /* the tighter of parent and child */
        {{{"k/cpu.max", "400000 100000\n"}, {"k/c/cpu.max", "200000 100000\n"}},
         "0::/k/c\n",
         200000,
         100000},
        {{{"cpu/cpu.cfs_quota_us", "250000\n"}, {"cpu/cpu.cfs_period_us", "100000\n"}},
         "1:cpu:/\n",
         250000,
         100000},
        {{{"cpu,cpuacct/docker/x/cpu.cfs_quota_us", "100000\n"},
          {"cpu,cpuacct/docker/x/cpu.cfs_period_us", "50000\n"}},
         "2:cpu,cpuacct:/docker/x\n",
         100000,
         50000},
        {{{"cpu/cpu.cfs_quota_us", "-1\n"}, {"cpu/cpu.cfs_period_us", "100000\n"}},
         "1:cpu:/\n",
         -1,
         -1},
        /* a quota without its period is not a limit */
        {{{"cpu.cfs_quota_us", "100000\n"}}, "", -1, -1},
        {{{"cpu.max", "nonsense\n"}}, "0::/\n", -1, -1},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        fresh_root();
        for (size_t f = 0; f < 4 && cases[i].files[f][0]; f++)
            put_file(cases[i].files[f][0], cases[i].files[f][1]);
        struct quota q = {.quota = -1, .period = -1};
        cgroup_quota(root, cases[i].self, &q);
        if (q.quota != cases[i].quota || q.period != cases[i].period)
            fprintf(stderr, "  case %zu: got %lld/%lld\n", i, q.quota, q.period);
        CHECK_INT(q.quota, cases[i].quota);
        CHECK_INT(q.period, cases[i].period);
    }
}

/* Through the public entry point and the environment hook. */
static void test_available(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    int affinity = CPU_COUNT(&set);
    char why[512];

    fresh_root();
    put_file("cpu.max", "1000 100000\n"); /* 0.01 CPU: still one worker */
    setenv(CPUS_CGROUP_ENV, root, 1);
    CHECK_INT(cpus_available(why, sizeof(why)), 1);
    CHECK(strstr(why, "cgroup quota 1000/100000") != NULL);

    fresh_root();
    put_file("cpu.max", "max 100000\n");
    setenv(CPUS_CGROUP_ENV, root, 1);
    CHECK_INT(cpus_available(why, sizeof(why)), affinity);
    CHECK(strstr(why, "no cgroup CPU quota") != NULL);

    fresh_root();
    put_file("cpu.max", "100000000 100000\n"); /* 1000 CPUs: the affinity mask is smaller */
    setenv(CPUS_CGROUP_ENV, root, 1);
    CHECK_INT(cpus_available(why, sizeof(why)), affinity);
    unsetenv(CPUS_CGROUP_ENV);

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    static const struct check_test tests[] = {
        {"own_path", test_own_path},
        {"quota_files", test_quota_files},
        {"available", test_available},
    };
    return CHECK_MAIN("cpus", tests);
}
