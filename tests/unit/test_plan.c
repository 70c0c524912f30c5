/* test_plan.c: tenant -> effective plan (plan.c): the order of precedence
 * ([tenant] plan, then the plan the app named, then default_plan), the
 * tenant's overrides over the plan's caps, and the downgrade map. From a
 * config file and a table. Runs from the repository root (the pricing file). */
#include <stdlib.h>
#include <unistd.h>

#include "budget/plan.h"
#include "check.h"
#include "core/util.h"

static const char conf[] =
    "[server]\ndefault_plan = free\n"
    "[plan free]\nbudget_monthly = 1\nrpm = 10\n"
    "[plan pro]\nbudget_monthly = 50\nbudget_daily = 5\nhard_limit = 100\n"
    "rpm = 600\ntpm = 90000\non_exceed = downgrade\n"
    "downgrade = gpt-4o > gpt-4o-mini, claude-sonnet-4-5 > claude-haiku-4-5\n"
    "[plan team]\nbudget_monthly = 200\n"
    "[tenant acme]\nplan = pro\nbudget_monthly = 80\nrpm = 0\n"
    "[tenant solo]\nbudget_daily = 0.5\n";

static struct config *cfg;

static const struct {
    const char *tenant, *asked;
    const char *plan;
    money_t monthly, daily, hard;
    int64_t rpm, tpm;
} cases[] = {
    /* [tenant] plan wins over the plan header; its overrides win over the plan */
    {"acme", NULL, "pro", 80 * MONEY_PER_USD, 5 * MONEY_PER_USD, 100 * MONEY_PER_USD, 0, 90000},
    {"acme", "team", "pro", 80 * MONEY_PER_USD, 5 * MONEY_PER_USD, 100 * MONEY_PER_USD, 0, 90000},
    /* no [tenant]: the named plan, else default_plan */
    {"other", "team", "team", 200 * MONEY_PER_USD, -1, -1, 0, 0},
    {"other", NULL, "free", 1 * MONEY_PER_USD, -1, -1, 10, 0},
    {"other", "", "free", 1 * MONEY_PER_USD, -1, -1, 10, 0},
    {"other", "nosuch", "free", 1 * MONEY_PER_USD, -1, -1, 10, 0},
    /* a [tenant] without plan: the header's or the default, with its overrides */
    {"solo", NULL, "free", 1 * MONEY_PER_USD, MONEY_PER_USD / 2, -1, 10, 0},
    {"solo", "pro", "pro", 50 * MONEY_PER_USD, MONEY_PER_USD / 2, 100 * MONEY_PER_USD, 600, 90000},
};

static void test_resolve(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct plan p;
        int rc = plan_resolve(cfg, cases[i].tenant, cases[i].asked, &p);
        if (rc != 0 || strcmp(p.base->name, cases[i].plan) != 0 ||
            p.budget_monthly != cases[i].monthly || p.budget_daily != cases[i].daily ||
            p.hard_limit != cases[i].hard || p.rpm != cases[i].rpm || p.tpm != cases[i].tpm) {
            fprintf(stderr,
                    "  case %zu (%s, %s): rc %d plan %s monthly %lld daily %lld hard %lld rpm "
                    "%lld tpm %lld\n",
                    i, cases[i].tenant, cases[i].asked ? cases[i].asked : "-", rc,
                    rc == 0 ? p.base->name : "-", (long long)p.budget_monthly,
                    (long long)p.budget_daily, (long long)p.hard_limit, (long long)p.rpm,
                    (long long)p.tpm);
            check_failed_now = 1;
        }
    }
}

static void test_downgrade(void)
{
    struct plan p;
    CHECK_INT(plan_resolve(cfg, "acme", NULL, &p), 0);
    CHECK_STR(plan_downgrade(&p, "gpt-4o"), "gpt-4o-mini");
    CHECK_STR(plan_downgrade(&p, "claude-sonnet-4-5"), "claude-haiku-4-5");
    CHECK(plan_downgrade(&p, "gpt-4o-mini") == NULL);       /* no chains */
    CHECK(plan_downgrade(&p, "gpt-4o-2024-08-06") == NULL); /* exact names only */
    CHECK_INT(plan_resolve(cfg, "other", NULL, &p), 0);
    CHECK(plan_downgrade(&p, "gpt-4o") == NULL); /* free has no map */
}

static const struct check_test tests[] = {
    {"resolve", test_resolve},
    {"downgrade", test_downgrade},
};

int main(void)
{
    char path[] = "/tmp/tollgate-test-plan-XXXXXX";
    char cwd[1024], text[sizeof(conf) + 1200];
    if (!getcwd(cwd, sizeof(cwd)))
        return 1;
    int len = snprintf(text, sizeof(text), "%s[pricing]\nfile = %s/conf/pricing.conf\n", conf, cwd);
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, (size_t)len) != (ssize_t)len) {
        perror("test_plan: temporary config");
        return 1;
    }
    close(fd);
    char err[4096] = "";
    cfg = config_load(path, err, sizeof(err));
    unlink(path);
    if (!cfg) {
        fprintf(stderr, "test_plan: %s\n", err);
        return 1;
    }
    int rc = CHECK_MAIN("plan", tests);
    config_unref(cfg);
    return rc;
}
