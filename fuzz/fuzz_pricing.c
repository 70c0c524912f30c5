/* fuzz_pricing.c: libFuzzer target for pricing files (pricing.c), both
 * formats (INI, LiteLLM JSON). The input is the file; it is handed to
 * pricing_load through a memfd, so nothing touches the disk. Checked (abort
 * on violation): a failed load says why; a loaded table is sorted with
 * unique names, every name looks itself up, a longer name finds a listed
 * prefix of it, prices are non-negative and a cost is never negative. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "providers/pricing.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_pricing: invariant failed: %s (line %d)\n", #cond, __LINE__);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_price(const struct price *pr)
{
    CHECKF(pr->model != NULL && pr->model[0] != '\0');
    CHECKF(pr->input >= 0 && pr->cached_input >= 0 && pr->cache_write >= 0 && pr->output >= 0);
    CHECKF(pr->tier_threshold >= 0);
    CHECKF(pr->tier_input >= 0 && pr->tier_cached_input >= 0 && pr->tier_cache_write >= 0 &&
           pr->tier_output >= 0);
    static const struct usage uses[] = {
        {.input = 1000, .cached = 100, .cache_write = 50, .output = 200, .reasoning = 20},
        {.input = INT64_MAX, .cached = INT64_MAX, .output = INT64_MAX},
        {.input = 5, .cached = 9, .cache_write = 9}, /* a provider that disagrees with itself */
        {0},
    };
    for (size_t i = 0; i < sizeof(uses) / sizeof(uses[0]); i++)
        CHECKF(pricing_cost(pr, &uses[i]) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("pricing", 0);
    if (fd < 0)
        return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    char path[64], err[512];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    memset(err, 0, sizeof(err));
    struct pricing *p = pricing_load(path, err, sizeof(err));
    close(fd);
    if (!p) {
        CHECKF(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
        return 0;
    }
    size_t n = pricing_count(p);
    CHECKF(pricing_at(p, n) == NULL);
    const struct price *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct price *pr = pricing_at(p, i);
        CHECKF(pr != NULL);
        check_price(pr);
        if (prev)
            CHECKF(strcmp(prev->model, pr->model) < 0);
        CHECKF(pricing_lookup(p, pr->model) == pr);
        size_t len = strlen(pr->model);
        char *longer = malloc(len + 3);
        CHECKF(longer != NULL);
        memcpy(longer, pr->model, len);
        memcpy(longer + len, "-x", 3);
        const struct price *hit = pricing_lookup(p, longer);
        CHECKF(hit != NULL && strncmp(longer, hit->model, strlen(hit->model)) == 0);
        CHECKF(strlen(hit->model) >= len); /* the longest listed prefix */
        free(longer);
        prev = pr;
    }
    CHECKF(pricing_lookup(p, "") == NULL);
    pricing_free(p);
    return 0;
}
