/* main.c: the command line (run, -t, --version, --help), signals, and the
 * main thread: it starts the workers (as many as the CPUs the process may
 * use, cpus.c), serves the admin listener, reloads on SIGHUP, reopens the
 * records file on SIGUSR1, reaps orphans on SIGCHLD (tollgate is often PID
 * 1 in a container), and on SIGTERM/SIGINT drains the workers, flushes the
 * records and exits 0. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "report/admin.h"
#include "core/clock.h"
#include "budget/journal.h"
#include "core/config.h"
#include "core/cpus.h"
#include "core/health.h"
#include "core/fdlimit.h"
#include "core/log.h"
#include "core/port_check.h"
#include "providers/pricing.h"
#include "records/record.h"
#include "http/tls.h"
#include "report/report.h"
#include "core/worker.h"
#include "export/export.h"
#include "export/export_cli.h"

#define TOLLGATE_VERSION "0.1.0"
#define MAX_WORKERS 64

static const char usage_text[] =
    "usage: tollgate [-c FILE]            run the daemon (default FILE: ./proxy.conf)\n"
    "       tollgate -t [-c FILE]         check the config and pricing, exit 0/1\n"
    "       tollgate report [-c FILE] [--period 2026-11|2026-11-22] [--format table|json|csv]\n"
    "                       [--tenant ID] [--by model|feature|user|day]\n"
    "       tollgate health [URL | -c FILE]  GET /healthz on the admin listener, exit 0 on 200\n"
    "       tollgate -H URL               the same (a container HEALTHCHECK; no curl needed)\n"
    "       tollgate export --period 2026-11|2026-11-22 [-c FILE]\n"
    "                                     replay the period's records to [export] cloudevents_url\n"
    "       tollgate --version | --help\n";

struct daemon {
    const char *path;
    struct event_base *base;
    struct config *cfg;
    struct record_sink *sink;
    struct export_hub *exports;
    struct worker *workers[MAX_WORKERS];
    size_t n_workers;
    struct admin *admin;
};

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    log_info("signal %d: draining (up to %d ms)", (int)sig, d->cfg->drain_timeout_ms);
    event_base_loopbreak(d->base);
}

/* Loads the upstreams' trust stores here, on the main thread, so workers
 * building their TLS contexts find them cached and their loops never stall
 * on parsing certificates. */
static int prepare_tls(const struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (cfg->upstreams[i].tls && tls_client_prepare(cfg->upstreams[i].ca_file, err, errlen) < 0)
            return -1;
    return 0;
}

/* SIGUSR1 (the nginx and logrotate convention): reopen the records file. */
static void on_usr1(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    record_sink_reopen(d->sink);
}

/* As PID 1 of a container, tollgate inherits every orphan (what `docker
 * exec` left behind): reap them so none stays a zombie. It starts no child
 * of its own, so nothing else waits for these. */
static void on_chld(evutil_socket_t sig, short what, void *arg)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* One tollgate per port: before anything binds (or the records file is
 * opened), refuse to start when another process listens on one of ours. */
static int check_ports(const struct config *cfg, char *err, size_t errlen)
{
    const struct {
        const char *key, *addr;
    } ports[] = {{"server.listen", cfg->listen},
                 {"server.tls_listen", cfg->tls_listen},
                 {"server.admin_listen", cfg->admin_listen}};
    for (size_t i = 0; i < ARRAY_LEN(ports); i++)
        if (ports[i].addr && port_check_free(ports[i].key, ports[i].addr, err, errlen) < 0)
            return -1;
    return 0;
}

/* Logging as cfg says; at start and again on every reload. */
static void apply_logging(const struct config *cfg)
{
    int lvl = log_level_parse(cfg->log_level);
    log_setup(lvl < 0 ? LOG_INFO : (enum log_level)lvl, cfg->log_json);
}

/* A reload that moves a tenant's billing_anchor moves its billing period:
 * the log says which period each such tenant is in now (its caps and
 * allowance count there from this request on). */
static void log_anchor_changes(const struct config *old, const struct config *cfg)
{
    struct timespec now;
    clock_wall(&now);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_tenant *t = &cfg->tenants[i], *was = config_tenant(old, t->name);
        int before = was ? (int)was->billing_anchor : 1;
        if (before == (int)t->billing_anchor)
            continue;
        time_t start, end;
        struct tm a, b;
        clock_period(now.tv_sec, (int)t->billing_anchor, &start, &end);
        end -= 86400; /* the last day */
        gmtime_r(&start, &a);
        gmtime_r(&end, &b);
        log_info("reload: tenant %s billing_anchor %d -> %" PRId64
                 ": now in the period %04d-%02d-%02d to %04d-%02d-%02d (UTC)",
                 t->name, before, t->billing_anchor, a.tm_year + 1900, a.tm_mon + 1, a.tm_mday,
                 b.tm_year + 1900, b.tm_mon + 1, b.tm_mday);
    }
}
/* SIGHUP: build the new config to the side; if it is valid, hand it to every
 * worker (new requests use it, requests in flight keep theirs); if not, keep
 * serving with the old one and say why, file:line. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    char err[8192] = "";
    record_sink_reopen(d->sink); /* a reload reopens the records file too */
    struct config *cfg = config_load(d->path, err, sizeof(err));
    if (!cfg) {
        for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
            log_error("reload: %s", line);
        log_error("reload failed: keeping the previous config");
        return;
    }
    if (prepare_tls(cfg, err, sizeof(err)) < 0) {
        log_error("reload: %s; keeping the previous config", err);
        config_unref(cfg);
        return;
    }
    char keys[512];
    int changed = config_restart_keys(d->cfg, cfg, keys, sizeof(keys));
    if (changed < 0) {
        log_error("reload: out of memory; keeping the previous config");
        config_unref(cfg);
        return;
    }
    if (changed > 0)
        log_warn("reload: %s changed: these need a restart; until then the running values stay",
                 keys);
    apply_logging(cfg);
    log_anchor_changes(d->cfg, cfg);
    for (size_t i = 0; i < d->n_workers; i++)
        worker_reload(d->workers[i], cfg);
    admin_set_config(d->admin, cfg);
    config_unref(d->cfg);
    d->cfg = cfg;
    log_info("reload: %s loaded (%zu plans, %zu tenants, %zu priced models)", d->path, cfg->n_plans,
             cfg->n_tenants, pricing_count(cfg->pricing));
}

/* The admin token the examples ship (docker/.env.example, the k8s Secret):
 * left in place, anyone who read the repository holds the admin API. */
#define ADMIN_TOKEN_PLACEHOLDER "change-me"

static bool placeholder_token(const struct config *cfg)
{
    return cfg->admin_token &&
           strncmp(cfg->admin_token, ADMIN_TOKEN_PLACEHOLDER, strlen(ADMIN_TOKEN_PLACEHOLDER)) == 0;
}

static int check_config(const char *path)
{
    char err[8192] = "";
    struct config *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        return 1;
    }
    if (placeholder_token(cfg))
        fprintf(stderr,
                "WARNING: %s: admin_token is the example's placeholder (%s...): anyone "
                "who read the examples can use the admin API; set a long random "
                "token (openssl rand -hex 32)\n",
                path, ADMIN_TOKEN_PLACEHOLDER);
    printf("%s: ok (%zu upstreams, %zu plans, %zu tenants, %zu priced models)\n", path,
           cfg->n_upstreams, cfg->n_plans, cfg->n_tenants, pricing_count(cfg->pricing));
    config_unref(cfg);
    return 0;
}

static int run(const char *path)
{
    struct daemon d = {.path = path};
    char err[8192] = "";
    int rc = 1;

    d.cfg = config_load(path, err, sizeof(err));
    if (!d.cfg) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        return 1;
    }
    apply_logging(d.cfg);
    if (placeholder_token(d.cfg))
        log_warn("admin_token is the example's placeholder: anyone who read the examples can "
                 "use the admin API; set a long random token");
    signal(SIGPIPE, SIG_IGN);
    if (check_ports(d.cfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto fail;
    }

    d.base = event_base_new();
    if (!d.base)
        goto fail;
    const struct record_rotation rot = {.max_bytes = d.cfg->records_rotate_bytes,
                                        .daily = d.cfg->records_rotate_daily,
                                        .keep = d.cfg->records_keep};
    d.sink = record_sink_open(d.cfg->records_file, &rot, err, sizeof(err));
    if (!d.sink) {
        log_error("records: %s", err);
        goto fail;
    }
    if (prepare_tls(d.cfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto fail;
    }
    d.exports = export_hub_open(d.cfg, err, sizeof(err));
    if (!d.exports) {
        log_error("%s", err);
        goto fail;
    }
    char sizing[512];
    long n = d.cfg->workers;
    if (n > 0)
        snprintf(sizing, sizeof(sizing), "workers = %ld in the config", n);
    else
        n = cpus_available(sizing, sizeof(sizing));
    if (n > MAX_WORKERS)
        n = MAX_WORKERS;
    const struct fdlimit_need need = {
        .max_connections = d.cfg->max_connections,
        .workers = (int)n,
        .upstream_idle = n * (long)d.cfg->n_upstreams * d.cfg->pool_size,
        .admin = d.cfg->admin_listen ? ADMIN_MAX_CONNECTIONS : 0,
    };
    unsigned long long nofile = 0;
    int clamped = 0;
    int max_conn = fdlimit_apply(&need, &nofile, &clamped, err, sizeof(err));
    if (max_conn < 0) {
        log_error("%s", err);
        goto fail;
    }
    log_info("descriptors: limit %llu; up to %d API connections, %d admin", nofile, max_conn,
             need.admin);
    if (clamped)
        log_warn("descriptors: max_connections %d lowered to %d: each proxied connection holds "
                 "two descriptors; raise `ulimit -n` for more",
                 d.cfg->max_connections, max_conn);
    if (journal_adopt(d.cfg->journal_dir, (int)n, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto fail;
    }
    for (long i = 0; i < n; i++) {
        d.workers[i] = worker_new((int)i, d.cfg, max_conn, d.sink, d.exports, err, sizeof(err));
        if (!d.workers[i]) {
            log_error("%s", err);
            goto fail;
        }
        d.n_workers++;
    }
    if (d.cfg->admin_listen) {
        d.admin = admin_new(d.base, d.cfg, d.workers, d.n_workers, d.sink, err, sizeof(err));
        if (!d.admin) {
            log_error("%s", err);
            goto fail;
        }
        admin_set_exports(d.admin, d.exports);
    }
    for (size_t i = 0; i < d.n_workers; i++) {
        if (worker_start(d.workers[i]) < 0) {
            log_error("cannot start worker thread %zu", i);
            goto fail;
        }
    }

    struct event *sigterm = evsignal_new(d.base, SIGTERM, on_stop_signal, &d);
    struct event *sigint = evsignal_new(d.base, SIGINT, on_stop_signal, &d);
    struct event *sighup = evsignal_new(d.base, SIGHUP, on_hup, &d);
    struct event *sigusr1 = evsignal_new(d.base, SIGUSR1, on_usr1, &d);
    struct event *sigchld = evsignal_new(d.base, SIGCHLD, on_chld, &d);
    if (!sigterm || !sigint || !sighup || !sigusr1 || !sigchld)
        goto fail_signals;
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);
    event_add(sigusr1, NULL);
    event_add(sigchld, NULL);
    on_chld(SIGCHLD, 0, &d); /* orphans that ended before the handler was in place */
    log_info("tollgate %s: %zu workers on %s, admin on %s, records to %s", TOLLGATE_VERSION,
             d.n_workers, d.cfg->listen, d.cfg->admin_listen ? d.cfg->admin_listen : "(off)",
             d.cfg->records_file);
    log_info("workers: %zu (%s)", d.n_workers, sizing);
    if (d.cfg->admin_listen)
        log_info("dashboard: http://%s/dashboard (sign in with [server] admin_token%s)",
                 d.cfg->admin_listen, d.cfg->admin_token ? "" : ", which is not set: set it first");
    event_base_dispatch(d.base);
    rc = 0;

fail_signals:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (sighup)
        event_free(sighup);
    if (sigusr1)
        event_free(sigusr1);
    if (sigchld)
        event_free(sigchld);
fail:
    for (size_t i = 0; i < d.n_workers; i++)
        worker_stop(d.workers[i]);
    for (size_t i = 0; i < d.n_workers; i++)
        worker_join(d.workers[i]); /* threads never started join as no-ops */
    admin_free(d.admin);
    export_hub_close(d.exports); /* after the workers handed over their last batches */
    if (d.sink)
        record_sink_close(d.sink);
    if (d.base)
        event_base_free(d.base);
    config_unref(d.cfg);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    const char *conf = "proxy.conf";
    bool test = false;
    if (argc > 1 && strcmp(argv[1], "health") == 0)
        return health_main(argc - 1, argv + 1);
    if (argc == 3 && strcmp(argv[1], "-H") == 0)
        return health_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "export") == 0)
        return export_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "report") == 0) {
        clock_init(); /* the default period is the current month by tollgate's clock */
        return report_main(argc - 1, argv + 1);
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0) {
            test = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("tollgate %s\n", TOLLGATE_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "tollgate: unknown argument '%s'\n%s", argv[i], usage_text);
            return 2;
        }
    }
    clock_init();
    if (evthread_use_pthreads() < 0) {
        fprintf(stderr, "tollgate: libevent without thread support\n");
        return 1;
    }
    return test ? check_config(conf) : run(conf);
}
