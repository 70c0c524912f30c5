/* cpus.h: how many CPUs this process may really use, for `workers = 0`:
 * the CPUs its affinity mask allows (taskset, cpuset) and the cgroup CPU
 * quota of its container (v2 cpu.max, v1 cpu.cfs_quota_us/cfs_period_us),
 * whichever is smaller, at least 1. A node with 32 cores and a pod limited
 * to 1 CPU then runs 1 worker, not 32. */
#ifndef TOLLGATE_CPUS_H
#define TOLLGATE_CPUS_H

#include <stddef.h>

/* The environment variable that points the cgroup lookup at another
 * directory than /sys/fs/cgroup (tests give a directory of fake files). */
#define CPUS_CGROUP_ENV "TOLLGATE_CGROUP_ROOT"

/* Returns the CPU count to size workers by (>= 1) and writes into why how
 * it was decided, e.g. "cgroup quota 150000/100000 us (cpu.max) -> 2 of 8
 * CPUs in the affinity mask". Never fails: what cannot be read is skipped. */
int cpus_available(char *why, size_t n);

#endif
