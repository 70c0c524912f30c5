/* admin.c: the admin listener. Health and readiness answer anyone (probes);
 * metrics need the admin token, compared in constant time. Served by the
 * same HTTP code as the API listener, on the main thread's loop, so a busy
 * worker never delays a probe. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "money.h"
#include "record.h"
#include "worker.h"

struct admin {
    struct event_base *base;
    struct config *cfg;
    struct worker **workers;
    size_t n_workers;
    struct record_sink *sink;
    struct evconnlistener *listener;
    struct client_limits limits;
};

static void respond_json(struct client *c, int status, const char *body)
{
    static const struct http_header h[] = {{"Content-Type", "application/json"}};
    client_respond(c, status, h, 1, body, strlen(body));
}

static void error_body(const char *path, int status, const char *code, const char *message,
                       struct evbuffer *out, void *arg)
{
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    evbuffer_add_printf(out, "%s", s ? s : "{}");
    free(s);
    json_decref(o);
}

static bool authorized(const struct admin *a, const struct http_request *req)
{
    const char *tok = a->cfg->admin_token;
    const char *h = client_header(req, "authorization", NULL);
    if (!tok || !*tok || !h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    size_t n = strlen(tok);
    /* constant time over the token's length; the length itself is not secret */
    return strlen(h) == n && CRYPTO_memcmp(h, tok, n) == 0;
}

static void metrics(struct admin *a, struct client *c)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        client_error(c, 503, "overloaded", "out of memory");
        return;
    }
#define X(name, doc) unsigned long name = 0;
    WORKER_STATS(X)
#undef X
    long inflight = 0, journal = 0;
    for (size_t i = 0; i < a->n_workers; i++) {
        struct worker_stats *s = &a->workers[i]->stats;
#define X(name, doc) name += atomic_load_explicit(&s->name, memory_order_relaxed);
        WORKER_STATS(X)
#undef X
        inflight += atomic_load_explicit(&s->inflight, memory_order_relaxed);
        journal += atomic_load_explicit(&s->journal_pending, memory_order_relaxed);
    }
    evbuffer_add_printf(b, "# HELP tollgate_requests_total Requests by outcome.\n"
                           "# TYPE tollgate_requests_total counter\n");
    const struct {
        const char *outcome;
        unsigned long n;
    } outcomes[] = {{"ok", requests_ok},
                    {"upstream_error", requests_upstream_error},
                    {"client_aborted", requests_client_aborted},
                    {"bad_request", requests_bad_request},
                    {"blocked", requests_blocked},
                    {"rate_limited", requests_rate_limited}};
    for (size_t i = 0; i < ARRAY_LEN(outcomes); i++)
        evbuffer_add_printf(b, "tollgate_requests_total{outcome=\"%s\"} %lu\n",
                            outcomes[i].outcome, outcomes[i].n);
    evbuffer_add_printf(b, "# HELP tollgate_budget_decisions_total Admission decisions.\n"
                           "# TYPE tollgate_budget_decisions_total counter\n");
    const struct {
        const char *decision;
        unsigned long n;
    } decisions[] = {{"admit", budget_admit},
                     {"downgrade", budget_downgrade},
                     {"block", budget_block},
                     {"rate_limited", budget_rate_limited},
                     {"unverified", budget_unverified}};
    for (size_t i = 0; i < ARRAY_LEN(decisions); i++)
        evbuffer_add_printf(b, "tollgate_budget_decisions_total{decision=\"%s\"} %lu\n",
                            decisions[i].decision, decisions[i].n);
    char usd[32];
    if (money_format((money_t)cost_nano, usd, sizeof(usd)) < 0)
        snprintf(usd, sizeof(usd), "0");
    evbuffer_add_printf(b,
                        "# HELP tollgate_cost_usd_total AI cost of all requests, USD.\n"
                        "# TYPE tollgate_cost_usd_total counter\n"
                        "tollgate_cost_usd_total %s\n"
                        "# HELP tollgate_inflight_requests Requests being answered.\n"
                        "# TYPE tollgate_inflight_requests gauge\n"
                        "tollgate_inflight_requests %ld\n"
                        "# HELP tollgate_unpriced_requests_total Metered requests without a price.\n"
                        "# TYPE tollgate_unpriced_requests_total counter\n"
                        "tollgate_unpriced_requests_total %lu\n"
                        "# HELP tollgate_estimated_requests_total Requests with estimated usage.\n"
                        "# TYPE tollgate_estimated_requests_total counter\n"
                        "tollgate_estimated_requests_total %lu\n"
                        "# HELP tollgate_redis_errors_total Settlements Redis did not take.\n"
                        "# TYPE tollgate_redis_errors_total counter\n"
                        "tollgate_redis_errors_total %lu\n"
                        "# HELP tollgate_journal_pending Settlements waiting for Redis.\n"
                        "# TYPE tollgate_journal_pending gauge\n"
                        "tollgate_journal_pending %ld\n"
                        "# HELP tollgate_records_written_total Usage records written.\n"
                        "# TYPE tollgate_records_written_total counter\n"
                        "tollgate_records_written_total %lu\n"
                        "# HELP tollgate_connections Open client connections.\n"
                        "# TYPE tollgate_connections gauge\n"
                        "tollgate_connections %lu\n",
                        usd, inflight, unpriced, estimated, settle_failed, journal,
                        record_sink_written(a->sink), client_open_count());
    static const struct http_header h[] = {{"Content-Type", "text/plain; version=0.0.4"}};
    size_t n = evbuffer_get_length(b);
    client_respond(c, 200, h, 1, (const char *)evbuffer_pullup(b, -1), n);
    evbuffer_free(b);
}

static void handle(struct client *c, struct http_request *req, void *arg)
{
    struct admin *a = arg;
    if (strcmp(req->path, "/healthz") == 0) {
        respond_json(c, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (strcmp(req->path, "/readyz") == 0) {
        size_t up = 0;
        for (size_t i = 0; i < a->n_workers; i++)
            up += atomic_load(&a->workers[i]->redis_up);
        if (up == a->n_workers)
            respond_json(c, 200, "{\"status\":\"ready\",\"redis\":\"up\"}");
        else if (a->cfg->on_failure == ON_FAILURE_OPEN)
            respond_json(c, 200, "{\"status\":\"degraded\",\"redis\":\"down\"}");
        else
            respond_json(c, 503, "{\"status\":\"unavailable\",\"redis\":\"down\"}");
        return;
    }
    if (!authorized(a, req)) {
        client_error(c, 401, "unauthorized", "send Authorization: Bearer <admin_token>");
        return;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        metrics(a, c);
        return;
    }
    client_error(c, 404, "not_found", "no such admin endpoint");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct admin *a = arg;
    evutil_make_socket_nonblocking(fd);
    const struct client_hooks hooks = {handle, error_body, a};
    if (!client_new(a->base, fd, NULL, &a->limits, &hooks))
        log_warn("admin: out of memory accepting a connection");
}

struct admin *admin_new(struct event_base *base, struct config *cfg, struct worker **workers,
                        size_t n_workers, struct record_sink *sink, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *a = (struct admin){.base = base, .cfg = config_ref(cfg), .workers = workers, .n_workers = n_workers,
                        .sink = sink};
    a->limits = (struct client_limits){.max_header_size = 16384,
                                       .max_body = 65536,
                                       .header_timeout_ms = cfg->header_timeout_ms,
                                       .body_timeout_ms = cfg->body_timeout_ms,
                                       .keepalive_timeout_ms = cfg->keepalive_timeout_ms,
                                       .send_timeout_ms = cfg->send_timeout_ms};
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (evutil_parse_sockaddr_port(cfg->admin_listen, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(err, errlen, "admin_listen: cannot parse '%s'", cfg->admin_listen);
        config_unref(a->cfg);
        free(a);
        return NULL;
    }
    a->listener = evconnlistener_new_bind(base, on_accept, a,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
                                          (struct sockaddr *)&ss, len);
    if (!a->listener) {
        snprintf(err, errlen, "admin_listen on %s: cannot bind", cfg->admin_listen);
        config_unref(a->cfg);
        free(a);
        return NULL;
    }
    return a;
}

void admin_set_config(struct admin *a, struct config *cfg)
{
    if (!a)
        return;
    config_unref(a->cfg);
    a->cfg = config_ref(cfg);
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    evconnlistener_free(a->listener);
    client_close_all();
    config_unref(a->cfg);
    free(a);
}
