/* fuzz_usage_event.c: libFuzzer target for the body of POST
 * /admin/api/usage (usage_event.c): any bytes an admin client sends, as one
 * event, a JSON array or NDJSON, against a small config (three listed
 * models, one [tenant]). Checked:
 *  - a refusal names a reason and an index below the events read, or none;
 *  - an accepted body holds 1..USAGE_MAX_EVENTS events, each with a valid
 *    id and tenant, token counts >= 0 with cached <= input and reasoning <=
 *    output, a cost in 0..USAGE_MAX_COST, a 64-hex-digit fingerprint;
 *  - two accepted events with one id have one fingerprint (never merged);
 *  - a body that is one JSON object is one event. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "report/usage_event.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_usage_event: invariant failed: %s (line %d)\n", #cond,           \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct config *load(void)
{
    char dir[] = "/tmp/tollgate-fuzz-usage.XXXXXX", path[64], pricing[64], err[512];
    CHECKF(mkdtemp(dir) != NULL);
    snprintf(pricing, sizeof(pricing), "%s/pricing.conf", dir);
    FILE *f = fopen(pricing, "w");
    CHECKF(f != NULL);
    fprintf(f, "[gpt-4o]\nprovider = openai\ninput = 2.50\ncached_input = 1.25\noutput = 10\n"
               "[gpt-4o-mini]\nprovider = openai\ninput = 0.15\noutput = 0.60\n"
               "[local-llama]\ninput = 0.000001\noutput = 0.000001\n");
    fclose(f);
    snprintf(path, sizeof(path), "%s/proxy.conf", dir);
    f = fopen(path, "w");
    CHECKF(f != NULL);
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:1\ndefault_plan = free\n"
            "[pricing]\nfile = %s\n[plan free]\nprice = 0\n[tenant acme]\nplan = free\n",
            pricing);
    fclose(f);
    struct config *cfg = config_load(path, err, sizeof(err));
    if (!cfg)
        fprintf(stderr, "fuzz_usage_event: %s\n", err);
    CHECKF(cfg != NULL);
    unlink(path);
    unlink(pricing);
    rmdir(dir);
    return cfg;
}

static bool hex64(const char *s)
{
    for (int i = 0; i < USAGE_FINGERPRINT_LEN; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return false;
    return s[USAGE_FINGERPRINT_LEN] == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct config *cfg;
    if (!cfg) {
        log_setup((enum log_level) - 1, false);
        cfg = load();
    }
    struct usage_event *ev = NULL;
    size_t n = 0, bad = 0;
    char err[256] = "";
    int rc = usage_events_parse((const char *)data, size, cfg, &ev, &n, &bad, err, sizeof(err));
    if (rc < 0) {
        CHECKF(ev == NULL && n == 0);
        CHECKF(err[0] != '\0');
        CHECKF(bad == SIZE_MAX || bad < USAGE_MAX_EVENTS);
        return 0;
    }
    CHECKF(rc == 0 && ev && n >= 1 && n <= USAGE_MAX_EVENTS);
    for (size_t i = 0; i < n; i++) {
        const struct usage_event *e = &ev[i];
        CHECKF(trust_valid_id(e->id) && trust_valid_id(e->tenant));
        CHECKF(!strpbrk(e->tenant, "{}"));
        CHECKF(e->usage.input >= 0 && e->usage.output >= 0 && e->usage.cached >= 0 &&
               e->usage.reasoning >= 0);
        CHECKF(e->usage.cached <= e->usage.input && e->usage.reasoning <= e->usage.output);
        CHECKF(e->cost >= 0 && (!e->cost_given || e->cost <= USAGE_MAX_COST));
        CHECKF(hex64(e->fingerprint));
        CHECKF(e->tenant_configured == (strcmp(e->tenant, "acme") == 0));
        for (size_t k = 0; k < i; k++)
            if (strcmp(ev[k].id, e->id) == 0)
                CHECKF(strcmp(ev[k].fingerprint, e->fingerprint) == 0);
    }
    json_error_t je;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (json_is_object(doc))
        CHECKF(n == 1);
    json_decref(doc);
    free(ev);
    return 0;
}
