/* report_cli.c: `tollgate report` (see report.h): reads the arguments and the
 * config, connects to Redis, and prints the report or a breakdown. */
#include "report/report.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/config.h"
#include "redis/redis.h"
#include "redis/redis_sync.h"

#define CLI_TIMEOUT_MS 5000

/* ---- the command line ---------------------------------------------------- */

static const char report_usage[] =
    "usage: tollgate report [-c FILE] [--period 2026-11|2026-11-22] [--format table|json|csv]\n"
    "                       [--tenant ID] [--by model|feature|user|day] [--forecast]\n"
    "  --forecast: each tenant's projected month-end cost at its run rate, the day it\n"
    "              crosses its cap, whether it is downgraded or blocked now, and the\n"
    "              cheapest plan that covers it at [report] target_margin\n";

static int lookup_word(const char *s, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s && words[i] && strcmp(s, words[i]) == 0)
            return (int)i;
    return -1;
}

/* The enum report_by named s ("model", ...), or -1. */
static int lookup_by(const char *s)
{
    for (int i = REPORT_BY_MODEL; i <= REPORT_BY_DAY; i++)
        if (strcmp(s, report_by_name((enum report_by)i)) == 0)
            return i;
    return -1;
}

int report_main(int argc, char **argv)
{
    static const char *const formats[] = {
        [REPORT_TABLE] = "table", [REPORT_JSON] = "json", [REPORT_CSV] = "csv"};
    const char *conf = "proxy.conf", *period = NULL, *tenant = NULL;
    int format = REPORT_TABLE, by = -1;
    bool forecast = false;
    struct report_period p;
    char err[8192] = "";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(report_usage, stdout);
            return 0;
        }
        if (strcmp(a, "--forecast") == 0) {
            forecast = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "tollgate report: '%s' needs a value or is unknown\n%s", a,
                    report_usage);
            return 2;
        }
        i++;
        if (strcmp(a, "-c") == 0) {
            conf = v;
        } else if (strcmp(a, "--period") == 0) {
            period = v;
        } else if (strcmp(a, "--tenant") == 0) {
            tenant = v;
        } else if (strcmp(a, "--format") == 0) {
            if ((format = lookup_word(v, formats, ARRAY_LEN(formats))) < 0) {
                fprintf(stderr, "tollgate report: --format is table, json or csv\n");
                return 2;
            }
        } else if (strcmp(a, "--by") == 0) {
            if ((by = lookup_by(v)) < 0) {
                fprintf(stderr, "tollgate report: --by is model, feature, user or day\n");
                return 2;
            }
        } else {
            fprintf(stderr, "tollgate report: unknown argument '%s'\n%s", a, report_usage);
            return 2;
        }
    }
    if (period) {
        if (report_parse_period(period, &p) < 0) {
            fprintf(stderr, "tollgate report: --period wants YYYY-MM or YYYY-MM-DD, not '%s'\n",
                    period);
            return 2;
        }
    } else {
        struct timespec now;
        clock_wall(&now);
        report_month_of(now.tv_sec, &p);
    }
    if (forecast && (p.day || by >= 0)) {
        fprintf(stderr, "tollgate report: --forecast is for a month period, without --by\n");
        return 2;
    }
    if (tenant && (!*tenant || strpbrk(tenant, "{}"))) {
        fprintf(stderr, "tollgate report: --tenant '%s' cannot be a tenant id\n", tenant);
        return 2;
    }

    struct config *cfg = config_load(conf, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] != '\n' ? "\n" : "");
        return 1;
    }
    int rc = 1;
    char *text = NULL;
    struct redis_tls tls = {cfg->redis_ca_file, cfg->redis_cert_file, cfg->redis_key_file};
    struct redis_sync *c = report_connect(cfg->redis_url, &tls, CLI_TIMEOUT_MS, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "tollgate report: %s\n", err);
        goto done;
    }
    if (by >= 0) {
        struct report_breakdown *b =
            report_breakdown(c, cfg, &p, tenant, (enum report_by)by, err, sizeof(err));
        text = b ? report_breakdown_render(b, (enum report_format)format) : NULL;
        report_breakdown_free(b);
        if (!b) {
            fprintf(stderr, "tollgate report: %s\n", err);
            rc = strncmp(err, "--by", 4) == 0 ? 2 : 1;
            goto done;
        }
    } else {
        struct report_breakdown *trend = NULL;
        struct report *r = report_build(c, cfg, &p, tenant, err, sizeof(err));
        if (r && tenant && (r->n != 1 || !r->rows[0].known)) {
            snprintf(err, sizeof(err), "tenant '%s' has no traffic in %s and no [tenant] section",
                     tenant, p.text);
            report_free(r);
            r = NULL;
        }
        /* the trend by day goes with every month report (the admin API's too) */
        if (r && !p.day &&
            !(trend = report_breakdown(c, cfg, &p, tenant, REPORT_BY_DAY, err, sizeof(err)))) {
            report_free(r);
            r = NULL;
        }
        if (r && report_forecast(r, cfg, cfg->report_target_margin_bp, trend) < 0) {
            snprintf(err, sizeof(err), "out of memory");
            report_free(r);
            r = NULL;
        }
        if (r && format == REPORT_TABLE)
            r->forecast_table = forecast;
        text = r ? report_render(r, (enum report_format)format) : NULL;
        report_free(r);
        report_breakdown_free(trend);
        if (!r) {
            fprintf(stderr, "tollgate report: %s\n", err);
            goto done;
        }
    }
    if (!text) {
        fprintf(stderr, "tollgate report: out of memory\n");
        goto done;
    }
    fputs(text, stdout);
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    free(text);
    redis_sync_free(c);
    config_unref(cfg);
    return rc;
}
