/* export_cli.c: `tollgate export --period P [-c FILE]`: replays the records
 * of a period (a month 2026-11 or a day 2026-11-22, UTC, by the record's
 * ts) from the records file and its rotated copies (oldest first) to the
 * CloudEvents receiver of [export] cloudevents_url, as the daemon's sink
 * formats them (same source and ids, so the receiver drops what it already
 * has). For backfills, and for a receiver added after the fact. Blocking;
 * each POST is retried with backoff, and the command fails (exit 1) when a
 * batch cannot be delivered. */
#include "export/export_cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "core/config.h"
#include "export/ce_sink.h"
#include "export/cloudevent.h"
#include "http/http_client.h"

#define ATTEMPTS 6

static const char export_usage[] =
    "usage: tollgate export --period 2026-11|2026-11-22 [-c FILE]\n"
    "  replays the period's records ([records] file and its rotated copies) to\n"
    "  [export] cloudevents_url; the receiver drops duplicates by (source, id)\n";

static bool period_ok(const char *p)
{
    size_t n = strlen(p);
    if (n != 7 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? p[i] != '-' : (p[i] < '0' || p[i] > '9'))
            return false;
    }
    return true;
}

/* The record line's ts starts with period? (cheap: "ts" is its first field) */
static bool in_period(const char *line, size_t len, const char *period)
{
    static const char key[] = "{\"ts\":\"";
    size_t k = sizeof(key) - 1, n = strlen(period);
    return len > k + n && memcmp(line, key, k) == 0 && memcmp(line + k, period, n) == 0;
}

struct replay {
    struct http_target t;
    const char *token, *source;
    struct evbuffer *lines; /* the current batch, whole lines */
    size_t n_lines;
    unsigned long sent, bad;
};

static int post_batch(struct replay *r)
{
    if (r->n_lines == 0)
        return 0;
    size_t len = evbuffer_get_length(r->lines);
    const char *buf = (const char *)evbuffer_pullup(r->lines, -1);
    size_t off = 0;
    while (off < len) {
        struct evbuffer *body = evbuffer_new();
        size_t used, events, bad;
        if (!body || cloudevent_batch(body, buf + off, len - off, CE_BATCH_EVENTS, r->source, &used,
                                      &events, &bad) < 0) {
            fprintf(stderr, "tollgate export: out of memory\n");
            if (body)
                evbuffer_free(body);
            return -1;
        }
        r->bad += bad;
        int status = 0, delay_ms = 500;
        char err[256] = "";
        for (int a = 0; events > 0 && a < ATTEMPTS; a++) {
            status = http_request(&r->t, "POST", CLOUDEVENT_BATCH_TYPE, r->token,
                                  (const char *)evbuffer_pullup(body, -1),
                                  evbuffer_get_length(body), CE_POST_TIMEOUT_MS, err, sizeof(err));
            if (status >= 200 && status < 300)
                break;
            if (status >= 400 && status < 500 && status != 408 && status != 429)
                break; /* the receiver refuses it: retrying will not help */
            fprintf(stderr, "tollgate export: POST failed (%s); retrying in %d ms\n",
                    status < 0 ? err : "an HTTP error", delay_ms);
            usleep((useconds_t)delay_ms * 1000);
            delay_ms *= 2;
        }
        evbuffer_free(body);
        if (events > 0 && !(status >= 200 && status < 300)) {
            if (status > 0)
                fprintf(stderr,
                        "tollgate export: the receiver answered %d; %lu events sent "
                        "before this batch\n",
                        status, r->sent);
            else
                fprintf(stderr, "tollgate export: %s; %lu events sent before this batch\n", err,
                        r->sent);
            return -1;
        }
        r->sent += events;
        off += used;
    }
    evbuffer_drain(r->lines, len);
    r->n_lines = 0;
    return 0;
}

/* Replays the period's lines of one file; a missing file is no error. */
static int replay_file(struct replay *r, const char *path, const char *period)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n' || !in_period(line, (size_t)n, period))
            continue; /* a line still being written, or another period */
        evbuffer_add(r->lines, line, (size_t)n);
        if (++r->n_lines >= CE_BATCH_EVENTS && (rc = post_batch(r)) < 0)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

int export_main(int argc, char **argv)
{
    const char *conf = "proxy.conf", *period = NULL;
    char err[8192] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(export_usage, stdout);
            return 0;
        } else if (strcmp(a, "-c") == 0 && v) {
            conf = v;
            i++;
        } else if (strcmp(a, "--period") == 0 && v) {
            period = v;
            i++;
        } else {
            fprintf(stderr, "tollgate export: unknown argument '%s'\n%s", a, export_usage);
            return 2;
        }
    }
    if (!period || !period_ok(period)) {
        fprintf(stderr, "tollgate export: --period YYYY-MM or YYYY-MM-DD is required\n%s",
                export_usage);
        return 2;
    }
    struct config *cfg = config_load(conf, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s", err);
        return 1;
    }
    int rc = 1;
    struct replay r = {.token = cfg->cloudevents_token, .source = cfg->export_source};
    if (!cfg->cloudevents_url) {
        fprintf(stderr, "tollgate export: [export] cloudevents_url is not set in %s\n", conf);
        goto done;
    }
    if (strcmp(cfg->records_file, "-") == 0) {
        fprintf(stderr, "tollgate export: [records] file is standard output: nothing to read\n");
        goto done;
    }
    if (http_target_init(&r.t, cfg->cloudevents_url, cfg->export_ca_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "tollgate export: [export] cloudevents_url: %s\n", err);
        goto done;
    }
    if (!(r.lines = evbuffer_new()))
        goto done;
    /* oldest first: file.keep ... file.1, then file */
    char path[4200];
    for (int k = cfg->records_keep; k >= 0; k--) {
        if (k > 0)
            snprintf(path, sizeof(path), "%s.%d", cfg->records_file, k);
        else
            snprintf(path, sizeof(path), "%s", cfg->records_file);
        if (replay_file(&r, path, period) < 0)
            goto done;
    }
    if (post_batch(&r) < 0)
        goto done;
    printf("tollgate export: %lu events of %s sent to the CloudEvents receiver", r.sent, period);
    if (r.bad)
        printf(" (%lu lines skipped: not records)", r.bad);
    printf("\n");
    rc = 0;
done:
    if (r.lines)
        evbuffer_free(r.lines);
    http_target_free(&r.t);
    config_unref(cfg);
    return rc;
}
