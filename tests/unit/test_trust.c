/* test_trust.c: the trust model's checks (proxy/trust.c) on configs loaded
 * from text: the client token (one of several, exactly one header), the
 * tenant policy (configured sections, an anchored pattern) and which plans
 * the plan header may name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/config.h"
#include "http/client.h"
#include "proxy/trust.h"

static char dir[] = "/tmp/tollgate-test-trust-XXXXXX";

static struct config *load(const char *server)
{
    char path[128], text[1024], err[1024] = "";
    snprintf(path, sizeof(path), "%s/pricing.conf", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("[gpt-4o]\nprovider = openai\ninput = 2.50\noutput = 10.00\n", f);
        fclose(f);
    }
    snprintf(text, sizeof(text),
             "[server]\n%s\n[pricing]\nfile = %s\n[plan free]\n[plan pro]\n[plan max]\n"
             "[tenant acme]\n",
             server, path);
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    struct config *c = config_load(path, err, sizeof(err));
    if (!c)
        fprintf(stderr, "  load: %s\n", err);
    return c;
}

static bool token_ok(const struct config *c, const char *const *values, size_t n)
{
    struct http_header h[4] = {{"Host", "x"}};
    for (size_t i = 0; i < n; i++)
        h[i + 1] = (struct http_header){TRUST_CLIENT_TOKEN_HEADER, values[i]};
    struct http_request r = {.headers = h, .n_headers = n + 1};
    return trust_client_ok(c, &r);
}

static void test_client_token(void)
{
    struct config *c = load("client_token = first-secret-0123456, second-secret-012345");
    CHECK(c != NULL);
    if (!c)
        return;
    static const struct {
        const char *values[2];
        size_t n;
        bool want;
    } cases[] = {
        {{"first-secret-0123456"}, 1, true},
        {{"second-secret-012345"}, 1, true},
        {{"first-secret-012345"}, 1, false},   /* a prefix */
        {{"first-secret-01234567"}, 1, false}, /* longer */
        {{"first-secret-0123456, second-secret-012345"}, 1, false},
        {{""}, 1, false},
        {{0}, 0, false},                                              /* absent */
        {{"first-secret-0123456", "first-secret-0123456"}, 2, false}, /* repeated */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        bool got = token_ok(c, cases[i].values, cases[i].n);
        if (got != cases[i].want) {
            fprintf(stderr, "  client token case %zu: got %d\n", i, got);
            check_failed_now = 1;
        }
    }
    config_unref(c);
    /* no client_token: every request passes */
    c = load("");
    CHECK(c && token_ok(c, NULL, 0));
    config_unref(c);
}

static void test_tenants(void)
{
    struct config *c = load("tenant_policy = configured\ntenant_pattern = t-[0-9]+|org_[a-f]{4}");
    CHECK(c != NULL);
    if (!c)
        return;
    static const struct {
        const char *tenant;
        bool want;
    } cases[] = {
        {"acme", true},       {"t-1", true},        {"t-123", true},  {"org_beef", true},
        {"acme2", false},     {"t-", false},        {"x-t-1", false}, {"t-1x", false},
        {"org_beefy", false}, {"anonymous", false}, {"ACME", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (trust_tenant_allowed(c, cases[i].tenant) != cases[i].want) {
            fprintf(stderr, "  tenant '%s': want %d\n", cases[i].tenant, cases[i].want);
            check_failed_now = 1;
        }
    config_unref(c);
    c = load("tenant_policy = configured");
    CHECK(c && trust_tenant_allowed(c, "acme") && !trust_tenant_allowed(c, "t-1"));
    config_unref(c);
    c = load("");
    CHECK(c && trust_tenant_allowed(c, "anyone-at-all"));
    config_unref(c);
}

static void test_plans(void)
{
    struct config *c = load("plan_header = X-Plan\nplan_header_allow = free, pro");
    CHECK(c != NULL);
    if (c) {
        CHECK(trust_plan_allowed(c, "free"));
        CHECK(trust_plan_allowed(c, "pro"));
        CHECK(!trust_plan_allowed(c, "max"));
        CHECK(!trust_plan_allowed(c, "pr"));
        CHECK(!trust_plan_allowed(c, ""));
    }
    config_unref(c);
    c = load("plan_header = X-Plan\ntrust_plan_header = yes");
    CHECK(c && trust_plan_allowed(c, "max"));
    config_unref(c);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    static const struct check_test tests[] = {
        {"client_token", test_client_token},
        {"tenants", test_tenants},
        {"plans", test_plans},
    };
    int rc = CHECK_MAIN("trust", tests);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
