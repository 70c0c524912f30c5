/* proxy.c: the life of one request, top to bottom.
 *
 *   proxy_handle      route -> tenant, user, feature, plan -> body and
 *                     provider prepare -> price check -> response cache
 *                     (a stored answer is replayed as if from upstream)
 *   admit / admitted  rate limits and caps in one Redis script: forward,
 *                     downgrade the model, or answer 429
 *   forward_request   upstream_send
 *   on_head           response headers to the client; choose how to meter
 *   on_body           bytes to the client as they arrive (backpressure),
 *                     a copy through the SSE parser or into the JSON buffer
 *   on_done / gone    the exchange ended, or the client left (a metered answer
 *                     is still read for its usage, up to drain_on_abort)
 *   finish            usage (reported or estimated) -> price -> settle in
 *                     Redis -> record -> free
 *
 * A struct req lives from proxy_handle to finish and is owned by this file;
 * the client and the upstream exchange only call back into it. */
#include "proxy/proxy.h"

#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "budget/alert.h"
#include "budget/budget.h"
#include "cache/cache.h"
#include "budget/ledger.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/numtext.h"
#include "core/metrics.h"
#include "budget/plan.h"
#include "providers/answer.h"
#include "providers/pricing.h"
#include "providers/provider.h"
#include "records/record.h"
#include "export/export.h"
#include "export/trace.h"
#include "redis/redis.h"
#include "proxy/path.h"
#include "proxy/route.h"
#include "proxy/trust.h"
#include "proxy/tenant_usage.h"
#include "http/headers.h"
#include "http/json_scan.h"
#include "http/multipart.h"
#include "http/sse.h"
#include "http/upstream.h"
#include "core/worker.h"

#define ID_MAX TRUST_ID_MAX /* tenant, user, feature ids: up to 128 bytes */
#define MAX_SSE_EVENT (1 << 20)
#define MAX_RESP_HEADERS 64
#define LEASE_TTL_S 600 /* a reservation outlives a dead tollgate this long */
#define RENEW_BATCH 64  /* lease ids per renewal command */
#define REQ_FREE_MAX 64 /* finished requests a worker keeps for reuse (13 KB each) */

/* The lease TTL; tests shorten it with TOLLGATE_TEST_LEASE_TTL_S to see a
 * renewal happen (1..600). */
static int lease_ttl_s(void)
{
    static _Atomic int ttl;
    int v = atomic_load_explicit(&ttl, memory_order_relaxed);
    if (v == 0) {
        const char *e = getenv("TOLLGATE_TEST_LEASE_TTL_S");
        v = e ? atoi(e) : 0;
        if (v <= 0 || v > LEASE_TTL_S)
            v = LEASE_TTL_S;
        atomic_store_explicit(&ttl, v, memory_order_relaxed);
    }
    return v;
}

/* Where a request is; changed only by set_state, and only forward. */
enum req_state {
    REQ_ADMITTING, /* route, identity, body, price check, admission: nothing sent upstream */
    REQ_WAITING,   /* sent upstream, no response headers yet */
    REQ_STREAMING, /* response headers sent to the client, body flowing */
    REQ_FINISHED,  /* the record is written; only the free is left */
};

struct req {
    struct req *prev, *next; /* the worker's live requests (w->reqs) */
    struct trace_ctx trace;  /* its span ([export] otlp_endpoint) */
    const char *decision;    /* the admission decision, NULL until one ran */
    struct worker *w;
    struct client *client;  /* NULL once the client is gone */
    struct generation *gen; /* config and pools as of the start, ref held */
    struct config *cfg;     /* gen->cfg */
    struct upstream_req *up;
    struct redis_cmd *admit_cmd;   /* admission in flight */
    const struct http_request *hr; /* the client's request, valid until client_end */
    struct json_scan scan;         /* the body as scanned (no tree); valid when scanned */
    bool scanned;                  /* the body was scanned and is valid JSON */
    struct plan plan_eff;
    struct route route;
    struct provider_call call;
    struct meter meter;
    struct sse_parser sse;
    struct answer *answer;   /* a non-streamed 2xx answer, scanned for its usage */
    struct cache_call cache; /* the response cache's part (cache.h) */
    enum req_state state;
    enum outcome outcome;
    int status;
    bool sse_on, metering, paused, stream_cut;
    bool last_dropped; /* the previous SSE event was kept from the client */
    bool forwarded;    /* the request went upstream: it is settled and billed */
    bool unanswered;   /* the client left (or the drain cut it) before response headers */
    bool downgraded;
    bool draining;             /* the client left: the answer is read for its usage only */
    bool cut_on_abort;         /* the client left and the call was cut: billed on the estimate */
    bool unreadable;           /* the answer came encoded: billed on the estimate */
    bool leased;               /* a Redis lease holds its estimate: renewed while alive */
    unsigned renew_round;      /* the last lease renewal round that covered it */
    struct event *drain_timer; /* drain_on_abort deadline while draining */
    money_t remaining;         /* budget left this month before the request; -1: unknown */
    money_t spent_before;      /* month's spend at admission; -1: not admitted through Redis */
    int64_t allowance_left;    /* allowance units left before the request; -1: unknown/none */
    int64_t allowance_used;    /* allowance units used before the request; -1: unknown/none */
    char model_requested[128];
    char downgrade_hdr[300];
    char remaining_hdr[32];
    char allowance_hdr[24];
    /* x-ratelimit-* (OpenAI's names) from admission: limit, left, reset of
     * requests then tokens; limit 0: that limit is off */
    int64_t rl[6];
    char rl_hdr[6][24];
    char id[33];
    char tenant[ID_MAX], user[ID_MAX], feature[ID_MAX], plan[ID_MAX];
    char path[PATH_MAX_LEN + 1];     /* the client's path, canonical (path.h) */
    char endpoint[PATH_MAX_LEN + 1]; /* path as forwarded: prefix stripped, maybe downgraded */
    struct timespec wall;            /* start, UTC */
    struct timespec t0;              /* start, monotonic */
    double ttfb_ms;
};

static void on_head(void *arg, int status, const struct upstream_header *h, size_t n,
                    long long content_length);
static void on_body(void *arg, const char *buf, size_t len);
static void on_done(void *arg, enum upstream_result res, const char *errstr);
static void on_gone(void *ctx);
static void on_drained(void *ctx);
static void finish(struct req *r);

static void forward_raw(const char *raw, size_t len, void *arg);

static const struct upstream_handlers up_handlers = {on_head, on_body, on_done};
static const struct client_events client_events = {on_gone, on_drained};

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void set_state(struct req *r, enum req_state to)
{
    if (to > r->state) /* a finished request never becomes anything else */
        r->state = to;
}

void proxy_error_body(const char *path, int status, const char *code, const char *message,
                      struct evbuffer *out, void *arg)
{
    struct worker *w = arg;
    const struct provider *p = route_dialect(w->gen->cfg, path);
    p->error_body(out, status, code, NULL, message);
}

/* Answers with tollgate's own error, in the route's dialect, carrying the
 * request id, the tenant and extra (may be NULL), and records the request:
 * the one way a request ends before the upstream answered. */
static void answer_refusal(struct req *r, int status, const char *code, const char *cap,
                           const char *message, enum outcome outcome,
                           const struct http_header *extra, size_t n_extra)
{
    req_log(LOG_DEBUG, r->id, "%d %s%s%s", status, code, cap ? " " : "", cap ? cap : "");
    r->status = status;
    r->outcome = outcome;
    struct client *c = r->client;
    r->client = NULL;
    if (r->cache.verdict == CACHE_HIT) /* found but refused (rpm): not answered from the cache */
        r->cache.verdict = CACHE_MISS;
    struct http_header h[12];
    size_t n = 0;
    for (size_t i = 0; i < n_extra && n < ARRAY_LEN(h) - 3; i++)
        h[n++] = extra[i];
    h[n++] = (struct http_header){"X-Tollgate-Request-Id", r->id};
    h[n++] = (struct http_header){"X-Tollgate-Tenant", r->tenant[0] ? r->tenant : "-"};
    h[n++] = (struct http_header){CACHE_HEADER, cache_verdict_name(r->cache.verdict)};
    if (c && !cap) {
        client_error_with(c, status, code, message, h, n);
    } else if (c) { /* the client's hook knows no cap: the body is written here, as it would */
        struct evbuffer *b = evbuffer_new();
        if (b)
            r->route.prov->error_body(b, status, code, cap, message);
        const char *body = b ? (const char *)evbuffer_pullup(b, -1) : NULL;
        struct http_header hb[ARRAY_LEN(h) + 1] = {{"Content-Type", "application/json"}};
        memcpy(hb + 1, h, n * sizeof(h[0]));
        if (body)
            client_respond(c, status, hb, n + 1, body, evbuffer_get_length(b));
        else
            client_error_with(c, status, code, message, h, n);
        if (b)
            evbuffer_free(b);
    }
    finish(r);
}

static void answer_error(struct req *r, int status, const char *code, const char *message,
                         enum outcome outcome, const struct http_header *extra, size_t n_extra)
{
    answer_refusal(r, status, code, NULL, message, outcome, extra, n_extra);
}

static void reject(struct req *r, int status, const char *code, const char *message,
                   enum outcome outcome)
{
    answer_error(r, status, code, message, outcome, NULL, 0);
}

/* The header table's request rule (headers.h), plus the identity headers
 * the config names (tollgate's, not the upstream's) and, when the upstream
 * has its own api_key, the providers' auth headers (provider.h). */
static bool drop_request_header(const struct req *r, const char *name, const char *conn)
{
    const struct config *cfg = r->cfg;
    if (header_drop_up(name, conn))
        return true;
    const char *identity_headers[] = {cfg->tenant_header, cfg->user_header, cfg->feature_header,
                                      cfg->plan_header};
    for (size_t i = 0; i < ARRAY_LEN(identity_headers); i++)
        if (identity_headers[i] && strcasecmp(name, identity_headers[i]) == 0)
            return true;
    if (r->route.up->api_key && provider_is_auth_header(name))
        return true; /* the configured key replaces the client's */
    return false;
}

/* printf-free: a header line is four appends */
static void add_header(struct evbuffer *b, const char *name, const char *value)
{
    evbuffer_add(b, name, strlen(name));
    evbuffer_add(b, ": ", 2);
    evbuffer_add(b, value, strlen(value));
    evbuffer_add(b, "\r\n", 2);
}

/* The head, then the body moved over from the buffers it arrived in (whole
 * chains change hands, no copy) with the provider's edits spliced in. The
 * client's body buffer is left empty. */
static struct evbuffer *build_upstream_request(struct req *r, const struct http_request *hr)
{
    const struct cfg_upstream *u = r->route.up;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return NULL;
    /* appends, no printf: this head is written for every request */
    evbuffer_add(b, hr->method_name, strlen(hr->method_name));
    evbuffer_add(b, " ", 1);
    evbuffer_add(b, u->base_path, strlen(u->base_path));
    evbuffer_add(b, r->endpoint, strlen(r->endpoint));
    if (hr->query) {
        evbuffer_add(b, "?", 1);
        evbuffer_add(b, hr->query, strlen(hr->query));
    }
    evbuffer_add(b, " HTTP/1.1\r\nHost: ", 17);
    evbuffer_add(b, u->host, strlen(u->host));
    char num[NUMTEXT_I64_MAX];
    if (u->port != (u->tls ? 443 : 80)) { /* not the default port */
        evbuffer_add(b, ":", 1);
        evbuffer_add(b, num, numtext_i64(num, u->port));
    }
    evbuffer_add(b, "\r\n", 2);
    const char *conn = client_header(hr, "connection", NULL);
    for (size_t i = 0; i < hr->n_headers; i++) {
        const struct http_header *h = &hr->headers[i];
        if (r->trace.on && strcasecmp(h->name, "traceparent") == 0)
            continue; /* replaced: the upstream call is a child of our span */
        if (!drop_request_header(r, h->name, conn))
            add_header(b, h->name, h->value);
    }
    if (r->trace.on) {
        char tp[TRACEPARENT_LEN + 1];
        trace_format(&r->trace, tp);
        add_header(b, "traceparent", tp);
    }
    if (u->api_key) {
        const char *h = r->route.prov->auth_header, *scheme = r->route.prov->auth_scheme;
        evbuffer_add(b, h, strlen(h));
        evbuffer_add(b, ": ", 2);
        evbuffer_add(b, scheme, strlen(scheme));
        evbuffer_add(b, u->api_key, strlen(u->api_key));
        evbuffer_add(b, "\r\n", 2);
    }
    /* identity: usage must be readable from the answer */
    evbuffer_add(b, "Accept-Encoding: identity\r\n", 27);
    struct evbuffer *body = hr->body;
    size_t body_len = evbuffer_get_length(body), out_len = body_len, at = 0;
    for (size_t i = 0; i < r->call.n_edits; i++) {
        const struct provider_edit *e = &r->call.edits[i];
        if (e->start < at || e->end > body_len)
            goto fail; /* edits are ordered and inside the body (provider_add_edit) */
        out_len = out_len - (e->end - e->start) + e->len;
        at = e->end;
    }
    if (body_len > 0 || hr->method == HTTP_POST || hr->method == HTTP_PUT ||
        hr->method == HTTP_PATCH) {
        evbuffer_add(b, "Content-Length: ", 16);
        evbuffer_add(b, num, numtext_i64(num, (int64_t)out_len));
        evbuffer_add(b, "\r\n", 2);
    }
    evbuffer_add(b, "\r\n", 2);
    at = 0;
    for (size_t i = 0; i < r->call.n_edits; i++) {
        const struct provider_edit *e = &r->call.edits[i];
        size_t keep = e->start - at;
        if ((keep && evbuffer_remove_buffer(body, b, keep) != (int)keep) ||
            evbuffer_drain(body, e->end - e->start) < 0 || evbuffer_add(b, e->text, e->len) < 0)
            goto fail;
        at = e->end;
    }
    if (evbuffer_add_buffer(b, body) < 0)
        goto fail;
    return b;
fail:
    evbuffer_free(b);
    return NULL;
}

/* Hands body to feed chain by chain, as it lies in the buffer (no copy). */
static int each_chain(struct evbuffer *body, int (*feed)(void *ctx, const char *p, size_t n),
                      void *ctx)
{
    size_t n = evbuffer_get_length(body), done = 0;
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[16];
    evbuffer_ptr_set(body, &pos, 0, EVBUFFER_PTR_SET);
    while (done < n) {
        int k = evbuffer_peek(body, (ev_ssize_t)(n - done), &pos, v, ARRAY_LEN(v));
        if (k <= 0)
            return -1;
        for (int i = 0; i < k && i < (int)ARRAY_LEN(v); i++) {
            if (feed(ctx, v[i].iov_base, v[i].iov_len) < 0)
                return -1;
            done += v[i].iov_len;
        }
        if (done < n && evbuffer_ptr_set(body, &pos, done, EVBUFFER_PTR_SET) < 0)
            return -1;
    }
    return 0;
}

static int feed_json(void *ctx, const char *p, size_t n)
{
    return json_scan_feed(ctx, p, n);
}

static int feed_form(void *ctx, const char *p, size_t n)
{
    return multipart_feed(ctx, p, n);
}

/* Scans the JSON body without building a tree. */
static int scan_body(struct req *r, struct evbuffer *body)
{
    json_scan_init(&r->scan, r->route.prov->body_fields);
    if (each_chain(body, feed_json, &r->scan) < 0)
        return -1;
    return json_scan_finish(&r->scan);
}

/* A metered multipart/form-data body (an audio upload): the provider's
 * form fields read without a copy of the file, then its prepare_form.
 * Returns 0, 1 when the body is not such a form, or -1 with err set. */
static int prepare_form(struct req *r, const struct http_request *hr, char *err, size_t errlen)
{
    const struct provider *p = r->route.prov;
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    if (!p->prepare_form || !r->call.metered ||
        multipart_boundary(client_header(hr, "content-type", NULL), boundary, sizeof(boundary)) < 0)
        return 1;
    struct multipart form;
    multipart_init(&form, boundary, p->form_fields, p->n_form_fields);
    if (each_chain(hr->body, feed_form, &form) < 0 || multipart_finish(&form) < 0) {
        snprintf(err, errlen, "the multipart/form-data body is malformed: %s", form.err);
        return -1;
    }
    return p->prepare_form(&r->call, &form, (int64_t)evbuffer_get_length(hr->body), err, errlen);
}

/* Scans the body (no tree) and lets the provider read it and add its edits;
 * the scan stays in r->scan for a later downgrade. Returns 0, or -1 when
 * the request was refused. */
static int prepare_body(struct req *r, const struct http_request *hr)
{
    size_t n = evbuffer_get_length(hr->body);
    provider_call_init(&r->call, r->endpoint, r->route.row);

    bool bad_json = false;
    if (n > 0) {
        /* every Content-Encoding counts, not just the first: "identity"
         * then "gzip" is a gzip body (and the header is not forwarded) */
        for (size_t i = 0; i < hr->n_headers; i++) {
            const struct http_header *h = &hr->headers[i];
            if (strcasecmp(h->name, "content-encoding") == 0 &&
                strcasecmp(h->value, "identity") != 0) {
                reject(r, 415, "unsupported_content_encoding",
                       "compressed request bodies are not accepted: send the body uncompressed",
                       OUTCOME_BAD_REQUEST);
                return -1;
            }
        }
    }
    char err[256] = "";
    int rc = prepare_form(r, hr, err, sizeof(err));
    bool form = rc != 1;
    if (!form && n > 0) {
        /* duplicate top-level keys are refused: a second "model" must never pick the price */
        r->scanned = scan_body(r, hr->body) == 0;
        bad_json = !r->scanned;
    }
    const struct json_scan *body = r->scanned ? &r->scan : NULL;
    if (!form)
        rc = r->route.prov->prepare(&r->call, body, err, sizeof(err));
    const char *only = r->route.row && r->route.row->method ? r->route.row->method : "POST";
    if (r->call.metered && strcmp(hr->method_name, only) != 0) {
        /* a metered row is metered for its method, the one that creates (and
         * bills) the work; any other would pass unmetered */
        const struct http_header allow[] = {{"Allow", only}};
        char msg[64];
        snprintf(msg, sizeof(msg), "this endpoint accepts only %s", only);
        answer_error(r, 405, "method_not_allowed", msg, OUTCOME_BAD_REQUEST, allow,
                     ARRAY_LEN(allow));
        return -1;
    }
    if (bad_json && r->call.metered) {
        char msg[320];
        snprintf(msg, sizeof(msg), "the request body is not valid JSON: %s (at byte %zu)",
                 r->scan.err[0] ? r->scan.err : "out of memory", r->scan.err_at);
        reject(r, 400, "invalid_json", msg, OUTCOME_BAD_REQUEST);
        return -1;
    }
    if (rc < 0 && (body || form || r->call.metered)) {
        reject(r, 400, "invalid_request", err, OUTCOME_BAD_REQUEST);
        return -1;
    }
    snprintf(r->model_requested, sizeof(r->model_requested), "%s", r->call.model);
    return 0;
}

static void forward_request(struct req *r);
static void admit(struct req *r);
static const struct price *price_of(const struct req *r, const char *model, const char *fallback,
                                    bool *listed);
static bool cache_begin(struct req *r, const struct http_request *hr);

/* A zeroed request: one the worker kept (req_release) or a new one. malloc
 * and free of a 13 KB block on every request cost more than the zeroing. */
static struct req *req_new(struct worker *w)
{
    struct req *r = w->req_free;
    if (!r)
        return calloc(1, sizeof(*r));
    w->req_free = r->next;
    w->n_req_free--;
    memset(r, 0, sizeof(*r));
    return r;
}

static void req_release(struct worker *w, struct req *r)
{
    if (w->n_req_free >= REQ_FREE_MAX) {
        free(r);
        return;
    }
    r->next = w->req_free;
    w->req_free = r;
    w->n_req_free++;
}

void proxy_worker_free(struct worker *w)
{
    while (w->req_free) {
        struct req *r = w->req_free;
        w->req_free = r->next;
        free(r);
    }
    w->n_req_free = 0;
}

void proxy_handle(struct client *c, struct http_request *hr, void *arg)
{
    struct worker *w = arg;
    if (tenant_usage_is(hr->path)) { /* tollgate's own, not a paid call: no record */
        tenant_usage_handle(c, hr, w);
        return;
    }
    struct req *r = req_new(w);
    if (!r) {
        client_error(c, 503, "overloaded", "out of memory");
        return;
    }
    r->w = w;
    r->next = w->reqs;
    if (w->reqs)
        w->reqs->prev = r;
    w->reqs = r;
    r->client = c;
    r->gen = worker_gen_ref(w);
    r->cfg = r->gen->cfg;
    r->ttfb_ms = -1;
    r->remaining = -1;
    r->spent_before = -1;
    r->allowance_left = -1;
    r->allowance_used = -1;
    r->outcome = OUTCOME_OK;
    clock_wall(&r->wall);
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    worker_new_id(w, r->id);
    if (r->cfg->otlp_endpoint) /* a child of the app's span, when it sent one */
        trace_start(&r->trace, client_header(hr, "traceparent", NULL));
    atomic_fetch_add_explicit(&w->stats.inflight, 1, memory_order_relaxed);
    client_attach(c, &client_events, r);

    /* 0. the caller: one of the apps (client_token), before anything else */
    if (!trust_client_ok(r->cfg, hr)) {
        snprintf(r->endpoint, sizeof(r->endpoint), "%.*s", PATH_MAX_LEN, hr->path);
        r->route.prov = route_dialect(r->cfg, hr->path);
        reject(r, 401, "invalid_client_token",
               "send the shared secret of [server] client_token in " TRUST_CLIENT_TOKEN_HEADER,
               OUTCOME_BAD_REQUEST);
        return;
    }

    /* 1. route: the canonical path, only the configured upstreams; what is
     * routed is what is forwarded */
    const char *why = NULL;
    enum path_result pr = path_canonical(hr->path, r->path, sizeof(r->path), &why);
    if (pr != PATH_OK) {
        snprintf(r->endpoint, sizeof(r->endpoint), "%.*s", PATH_MAX_LEN, hr->path);
        r->route.prov = route_dialect(r->cfg, hr->path);
        if (pr == PATH_TOO_LONG)
            reject(r, 414, "uri_too_long", "the path is longer than tollgate forwards",
                   OUTCOME_BAD_REQUEST);
        else
            reject(r, 400, "invalid_path", why, OUTCOME_BAD_REQUEST);
        return;
    }
    snprintf(r->endpoint, sizeof(r->endpoint), "%s", r->path);
    char mistake[512];
    if (route_base_mistake(r->path, mistake, sizeof(mistake))) {
        r->route.prov = route_dialect(r->cfg, strchr(r->path + 1, '/')); /* the SDK's dialect */
        reject(r, 404, "not_found", mistake, OUTCOME_BAD_REQUEST);
        return;
    }
    enum route_result rr = route_match(r->cfg, hr->method_name, r->path, &r->route);
    if (rr != ROUTE_OK) {
        r->route.prov = route_dialect(r->cfg, r->path);
        reject(r, 404, "not_found", "no route for this path", OUTCOME_BAD_REQUEST);
        return;
    }
    snprintf(r->endpoint, sizeof(r->endpoint), "%s", r->route.endpoint);
    if (hr->method == HTTP_TRACE || hr->method == HTTP_CONNECT) {
        reject(r, 405, "method_not_allowed", "method not allowed", OUTCOME_BAD_REQUEST);
        return;
    }

    /* 2. who: tenant, user, feature, plan */
    char err[256];
    char asked_plan[ID_MAX];
    int t = trust_identity(hr, r->cfg->tenant_header, r->tenant, err, sizeof(err));
    if (t < 0 || trust_identity(hr, r->cfg->user_header, r->user, err, sizeof(err)) < 0 ||
        trust_identity(hr, r->cfg->feature_header, r->feature, err, sizeof(err)) < 0 ||
        trust_identity(hr, r->cfg->plan_header, asked_plan, err, sizeof(err)) < 0) {
        if (!r->tenant[0])
            snprintf(r->tenant, sizeof(r->tenant), "invalid");
        reject(r, 400, "invalid_header", err, OUTCOME_BAD_REQUEST);
        return;
    }
    if (t == 1) {
        if (r->cfg->missing_tenant == MISSING_TENANT_REJECT) {
            snprintf(err, sizeof(err), "missing the %s header: name the customer this call is for",
                     r->cfg->tenant_header);
            reject(r, 400, "missing_tenant", err, OUTCOME_BAD_REQUEST);
            return;
        }
        snprintf(r->tenant, sizeof(r->tenant), "anonymous");
    }
    if (!trust_tenant_allowed(r->cfg, r->tenant)) {
        snprintf(err, sizeof(err), "tenant '%s' is not configured (tenant_policy = configured)",
                 r->tenant);
        reject(r, 403, "unknown_tenant", err, OUTCOME_BAD_REQUEST);
        return;
    }
    if (asked_plan[0] && !trust_plan_allowed(r->cfg, asked_plan)) {
        snprintf(err, sizeof(err), "the %s header may not name plan '%s' (trust_plan_header)",
                 r->cfg->plan_header, asked_plan);
        reject(r, 403, "plan_not_allowed", err, OUTCOME_BAD_REQUEST);
        return;
    }
    if (asked_plan[0] && !config_plan(r->cfg, asked_plan)) {
        snprintf(err, sizeof(err), "the %s header names plan '%s', which is not configured",
                 r->cfg->plan_header, asked_plan);
        reject(r, 400, "unknown_plan", err, OUTCOME_BAD_REQUEST);
        return;
    }
    if (r->route.cls == ROUTE_UNKNOWN && r->cfg->unmetered_routes == UNMETERED_BLOCK) {
        char msg[512];
        route_refusal(&r->route, hr->method_name, msg, sizeof(msg));
        reject(r, 403, "route_not_metered", msg, OUTCOME_BLOCKED);
        return;
    }

    /* 3. what: the body, read by the provider (model, stream, estimates) */
    r->hr = hr;
    if (plan_resolve(r->cfg, r->tenant, asked_plan, &r->plan_eff) < 0) {
        reject(r, 500, "no_plan", "no plan configured for this tenant", OUTCOME_BAD_REQUEST);
        return;
    }
    snprintf(r->plan, sizeof(r->plan), "%s", r->plan_eff.base->name);
    if (prepare_body(r, hr) < 0)
        return;

    /* 4. price check: an unpriced model is forwarded or refused per config */
    bool listed = false;
    if (r->call.metered && r->cfg->unknown_model == UNKNOWN_MODEL_BLOCK &&
        (!price_of(r, r->call.model, NULL, &listed) || !listed)) { /* listed, not a fallback */
        snprintf(err, sizeof(err), "model '%.100s' has no price configured", r->call.model);
        reject(r, 400, "unknown_model", err, OUTCOME_BAD_REQUEST);
        return;
    }

    /* 5. the response cache: a stored answer (replayed after the rate
     * limits), or a miss that may store its answer */
    if (cache_begin(r, hr))
        return;

    /* 6. admission, then forward */
    admit(r);
}

/* ---- the response cache (cache.h) ---- */

/* The lookup ended: a hit (replayed after the rate limits) or a miss. */
static void cache_ready(void *arg)
{
    admit(arg);
}

/* Whether the request is answered through the cache (it then goes on from
 * cache_ready): the header, the tenant's and the plan's cache, a body that
 * can be answered twice, a key. Else a bypass (false). */
static bool cache_begin(struct req *r, const struct http_request *hr)
{
    struct cache_call *c = &r->cache;
    enum cache_ask ask;
    if (cache_parse_ask(client_header(hr, CACHE_HEADER, NULL), &ask) < 0) {
        reject(r, 400, "invalid_header", CACHE_HEADER " must be on, off or refresh",
               OUTCOME_BAD_REQUEST);
        return true;
    }
    struct cache_body_facts facts;
    unsigned char digest[CACHE_DIGEST_LEN];
    if (!cache_applies(r->cfg, r->plan_eff.base, r->tenant, ask) || !r->scanned ||
        r->scan.top != JSON_SCAN_OBJECT ||
        cache_digest_buffer(hr->body, &r->route.prov->cache_request, r->call.endpoint, digest,
                            &facts) < 0 ||
        !cache_cacheable(&r->call, &facts, r->cfg->cache_allow) ||
        cache_key(c->key, sizeof(c->key), r->cfg->key_prefix,
                  r->cfg->cache_shared ? NULL : r->tenant, r->route.prov->name, r->route.up->name,
                  r->endpoint, hr->query, r->call.stream, digest) < 0)
        return false;
    const struct cache_env env = {.redis = r->w->redis,
                                  .base = r->w->base,
                                  .metrics = r->w->metrics,
                                  .owner = r->id,
                                  .cfg = r->cfg,
                                  .answer_rules = &r->route.prov->cache_answer};
    if (ask == CACHE_ASK_REFRESH) { /* fetched anew; its answer replaces the entry */
        cache_refresh(c, &env, r->call.stream);
        return false;
    }
    cache_start(c, &env, r->call.stream, cache_ready, r);
    return true;
}

/* A hit, past the rate limits: the stored answer goes through the same
 * path as an upstream's (headers, metering, usage chunk kept or dropped). */
static void cache_replay(struct req *r)
{
    struct cache_call *c = &r->cache;
    const struct upstream_header h[] = {
        {"Content-Type", c->stream ? "text/event-stream; charset=utf-8" : "application/json"}};
    set_state(r, REQ_WAITING);
    on_head(r, 200, h, ARRAY_LEN(h), (long long)c->hit_len);
    on_body(r, c->hit, c->hit_len);
    on_done(r, UPSTREAM_OK, NULL); /* finishes r */
}

/* At the end: a miss's answer is kept when it ended well (a whole 200 with
 * the provider's usage, not downgraded; cache_keep bounds it by max_entry). */
static void cache_end(struct req *r, const struct usage *u)
{
    bool whole = r->status == 200 && r->outcome == OUTCOME_OK && !r->stream_cut &&
                 !r->meter.stream_error && !r->meter.usage_invalid && !r->downgraded &&
                 !r->unreadable && u->seen && !u->estimated && (!r->cache.stream || r->meter.done);
    cache_finish(&r->cache, whole);
}

/* ---- admission: rate limits and caps ---- */

/* The price of model (else fallback) under [pricing] unknown_model, for
 * estimates and the bill alike; *listed says whether it was on the list. */
static const struct price *price_of(const struct req *r, const char *model, const char *fallback,
                                    bool *listed)
{
    char key[sizeof(r->call.model) + sizeof(r->call.price_variant)];
    if (model && r->call.price_variant[0]) { /* dall-e-3/1024x1024/hd, else dall-e-3 */
        snprintf(key, sizeof(key), "%s%s", model, r->call.price_variant);
        fallback = fallback ? fallback : model;
        model = key;
    }
    return pricing_choose(r->cfg->pricing, r->cfg->unknown_model, r->cfg->price_as_model,
                          r->route.prov ? r->route.prov->name : NULL, r->call.price_kind, model,
                          fallback, listed);
}

/* The most the request can cost: input from the body, output from its own
 * bound or else the model's maximum, times the answers it asks for. An
 * upper bound, so concurrent reservations really hold the cap. */
static money_t estimate(const struct req *r, const char *model)
{
    bool listed;
    const struct price *pr = price_of(r, model, NULL, &listed);
    if (!pr)
        return 0;
    struct usage u = {.input = r->call.est_input_tokens,
                      .output = provider_output_bound(&r->call, pr->max_output),
                      .units = r->call.units,
                      .unit = r->call.unit,
                      .tier = r->call.tier};
    return pricing_cost(pr, &u);
}

static bool needs_admission(const struct req *r)
{
    const struct plan *p = &r->plan_eff;
    /* the user's caps bind only a request that names its user */
    bool user = r->user[0] && (p->user_budget_monthly >= 0 || p->user_rpm > 0);
    if (r->cache.verdict == CACHE_HIT) /* costs nothing: the rate limits, a request allowance */
        return p->rpm > 0 || p->tpm > 0 || (p->included >= 0 && p->unit == PLAN_UNIT_REQUESTS) ||
               (r->user[0] && p->user_rpm > 0);
    return r->call.metered &&
           (p->budget_monthly >= 0 || p->budget_daily >= 0 || p->hard_limit >= 0 || p->rpm > 0 ||
            p->tpm > 0 || p->included >= 0 || user);
}

static void admitted(const struct admit_result *res, const char *errstr, void *arg);

static void admit(struct req *r)
{
    if (!needs_admission(r)) {
        forward_request(r);
        return;
    }
    const struct plan *p = &r->plan_eff;
    bool exceed_down = p->base->on_exceed == ON_EXCEED_DOWNGRADE;
    bool allowance_down = p->included >= 0 && p->base->on_allowance == ON_ALLOWANCE_DOWNGRADE;
    const char *down = exceed_down || allowance_down ? plan_downgrade(p, r->call.model) : NULL;
    bool listed;
    const struct price *pr = price_of(r, r->call.model, NULL, &listed);
    int64_t out_tokens = provider_output_bound(&r->call, pr ? pr->max_output : 0);
    bool hit = r->cache.verdict == CACHE_HIT; /* a request, no tokens, no dollars */
    int64_t est_tokens = provider_sat_add(r->call.est_input_tokens, out_tokens);
    struct admit a = {
        .key_prefix = r->cfg->key_prefix,
        .tenant = r->tenant,
        .request_id = r->id,
        .when = r->wall.tv_sec,
        .anchor = p->anchor,
        .estimate = hit ? 0 : estimate(r, r->call.model),
        .estimate_down = down && !hit ? estimate(r, down) : -1,
        .cap_monthly = hit ? -1 : p->budget_monthly,
        .cap_daily = hit ? -1 : p->budget_daily,
        .hard_limit = hit ? -1 : p->hard_limit,
        .rpm = p->rpm,
        .tpm = p->tpm,
        .est_tokens = hit ? 0 : est_tokens,
        .lease_ttl_s = lease_ttl_s(),
        /* a cached answer is a request (issue 13): it counts toward a request
         * allowance (and is refused past one that blocks), never toward tokens */
        .included = hit && p->unit != PLAN_UNIT_REQUESTS ? -1 : p->included,
        .est_units = plan_units(p, est_tokens, 0),
        /* a hit has no cheaper model to be: past a downgrading allowance it is
         * served and counted like overage */
        .on_allowance = hit && p->base->on_allowance == ON_ALLOWANCE_DOWNGRADE
                            ? ON_ALLOWANCE_OVERAGE
                            : p->base->on_allowance,
        .caps_block = !exceed_down,
        .user = r->user,
        .cap_user = hit ? -1 : p->user_budget_monthly,
        .user_rpm = p->user_rpm,
    };
    r->admit_cmd = budget_admit(r->w->redis, &a, admitted, r);
    if (!r->admit_cmd)
        admitted(NULL, "redis unavailable", r);
}

/* X-Tollgate-Budget-Remaining: what is left under the tightest cap that
 * still applies to this answer (daily, monthly, hard limit), before the
 * request. A downgraded answer is past the cap that downgraded it, so that
 * cap no longer binds it: the next one does. -1 when no cap applies. */
static money_t budget_left(const struct plan *p, const struct admit_result *res)
{
    money_t spent = res->spent_month + res->reserved_month, left = -1;
    const struct {
        enum budget_reason reason;
        money_t cap, used;
    } caps[] = {{BUDGET_REASON_DAILY, p->budget_daily, res->spent_day},
                {BUDGET_REASON_MONTHLY, p->budget_monthly, spent},
                {BUDGET_REASON_HARD, p->hard_limit, spent}};
    for (size_t i = 0; i < ARRAY_LEN(caps); i++) {
        if (caps[i].cap < 0 || (res->decision == BUDGET_DOWNGRADE && res->reason == caps[i].reason))
            continue;
        money_t l = caps[i].cap > caps[i].used ? caps[i].cap - caps[i].used : 0;
        if (left < 0 || l < left)
            left = l;
    }
    return left;
}

/* "250ms", "1s", "6m0s": a duration as OpenAI writes x-ratelimit-reset-*. */
static void reset_text(char *buf, size_t n, int64_t ms)
{
    const char *end = buf + n;
    if (ms < 1000) {
        numtext_put(numtext_put_uint(buf, end, (uint64_t)(ms < 0 ? 0 : ms), 0), end, "ms", 2);
    } else if (ms < 60000) {
        numtext_put(numtext_put_uint(buf, end, (uint64_t)((ms + 999) / 1000), 0), end, "s", 1);
    } else {
        char *at = numtext_put_uint(buf, end, (uint64_t)(ms / 60000), 0);
        at = numtext_put(at, end, "m", 1);
        numtext_put(numtext_put_uint(at, end, (uint64_t)((ms % 60000 + 999) / 1000), 0), end, "s",
                    1);
    }
}

/* The rate limits' state after admission, for the x-ratelimit-* headers. */
static void keep_ratelimits(struct req *r, const struct admit_result *res)
{
    int64_t v[6] = {r->plan_eff.rpm, res->requests_left, res->requests_reset_ms,
                    r->plan_eff.tpm, res->tokens_left,   res->tokens_reset_ms};
    memcpy(r->rl, v, sizeof(v));
}

/* Appends x-ratelimit-{limit,remaining,reset}-{requests,tokens} for the
 * limits the plan has, as the OpenAI API sends them (the SDKs and apps
 * read them to pace themselves). */
static void put_ratelimits(struct req *r, struct http_header *out, size_t *k)
{
    static const char *const names[6] = {
        "x-ratelimit-limit-requests",   "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",   "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"};
    for (int i = 0; i < 6; i++) {
        int base = i / 3 * 3;
        if (r->rl[base] <= 0 || r->rl[i] < 0)
            continue;
        if (i % 3 == 2)
            reset_text(r->rl_hdr[i], sizeof(r->rl_hdr[i]), r->rl[i]);
        else
            numtext_i64(r->rl_hdr[i], r->rl[i]);
        out[*k].name = names[i];
        out[(*k)++].value = r->rl_hdr[i];
    }
}

static void retry_after(char *buf, size_t n, long s)
{
    snprintf(buf, n, "%ld", s > 0 ? s : 1);
}

/* The plan key whose limit refused, named in the error body ("cap") so an
 * app can tell which one without parsing the message. */
static const char *cap_key(const struct req *r, enum budget_reason reason)
{
    switch (reason) {
    case BUDGET_REASON_MONTHLY:
        return "budget_monthly";
    case BUDGET_REASON_DAILY:
        return "budget_daily";
    case BUDGET_REASON_HARD:
        return "hard_limit";
    case BUDGET_REASON_RPM:
        return "rpm";
    case BUDGET_REASON_TPM:
        return "tpm";
    case BUDGET_REASON_ALLOWANCE:
        return r->plan_eff.unit == PLAN_UNIT_REQUESTS ? "included_requests" : "included_tokens";
    case BUDGET_REASON_USER:
        return "user_budget_monthly";
    case BUDGET_REASON_USER_RPM:
        return "user_rpm";
    case BUDGET_REASON_NONE:
        break;
    }
    return NULL;
}

/* The 429 of an allowance used up: included units are not dollars, and the
 * app tells "upgrade" from "come back later" by its code. */
static void allowance_exhausted(struct req *r)
{
    const struct plan *p = &r->plan_eff;
    char msg[CONFIG_BLOCK_MESSAGE_MAX + 256], ra[24];
    if (p->base->block_message)
        snprintf(msg, sizeof(msg), "%s", p->base->block_message);
    else
        snprintf(msg, sizeof(msg),
                 "this account has used the %" PRId64 " %s included in its plan this billing "
                 "period; it resets at the start of the next period (UTC)",
                 p->included, p->unit == PLAN_UNIT_TOKENS ? "tokens" : "requests");
    retry_after(ra, sizeof(ra), clock_to_period_end(r->wall.tv_sec, 'm', p->anchor));
    const struct http_header h[] = {{"Retry-After", ra}, {"x-should-retry", "false"}};
    answer_refusal(r, 429, "allowance_exhausted", cap_key(r, BUDGET_REASON_ALLOWANCE), msg,
                   OUTCOME_BLOCKED, h, ARRAY_LEN(h));
}

static void block(struct req *r, const struct admit_result *res)
{
    const struct plan *p = &r->plan_eff;
    char msg[CONFIG_BLOCK_MESSAGE_MAX + 256], cap[32], ra[24]; /* tenant, plan and text fit */
    if (res->reason == BUDGET_REASON_ALLOWANCE) {
        allowance_exhausted(r);
        return;
    }
    char period = res->reason == BUDGET_REASON_DAILY ? 'd' : 'm';
    money_t c = res->reason == BUDGET_REASON_DAILY  ? p->budget_daily
                : res->reason == BUDGET_REASON_HARD ? p->hard_limit
                : res->reason == BUDGET_REASON_USER ? p->user_budget_monthly
                                                    : p->budget_monthly;
    if (money_format(c, cap, sizeof(cap)) < 0)
        snprintf(cap, sizeof(cap), "?");
    if (p->base->block_message)
        snprintf(msg, sizeof(msg), "%s", p->base->block_message);
    else
        /* the app may show this to its end user: no plan name (an internal word) */
        snprintf(msg, sizeof(msg),
                 "%s has used its %s AI budget of $%s; it resets at the start of "
                 "the next %s (UTC)",
                 res->reason == BUDGET_REASON_USER ? "this user (not the whole account)"
                                                   : "this account",
                 res->reason == BUDGET_REASON_DAILY  ? "daily"
                 : res->reason == BUDGET_REASON_HARD ? "monthly hard-limit"
                 : res->reason == BUDGET_REASON_USER ? "own monthly"
                                                     : "monthly",
                 cap, period == 'd' ? "day" : "billing period");
    retry_after(ra, sizeof(ra), clock_to_period_end(r->wall.tv_sec, period, r->plan_eff.anchor));
    /* the SDKs retry a 429 and honour Retry-After without a cap: a budget
     * block must tell them not to */
    const struct http_header h[] = {{"Retry-After", ra}, {"x-should-retry", "false"}};
    answer_refusal(r, 429, "budget_exceeded", cap_key(r, res->reason), msg, OUTCOME_BLOCKED, h,
                   ARRAY_LEN(h));
}

static void rate_limited(struct req *r, const struct admit_result *res)
{
    char msg[256], ra[24], ra_ms[24];
    snprintf(msg, sizeof(msg), "%s is over its %s limit: retry in %.1f s",
             res->reason == BUDGET_REASON_USER_RPM ? "this user (not the whole account)"
                                                   : "this account",
             res->reason == BUDGET_REASON_TPM ? "tokens-per-minute" : "requests-per-minute",
             (double)(res->retry_after_ms > 0 ? res->retry_after_ms : 1) / 1000.0);
    retry_after(ra, sizeof(ra), res->retry_after_s);
    /* the exact wait: the OpenAI SDKs prefer retry-after-ms to Retry-After */
    snprintf(ra_ms, sizeof(ra_ms), "%" PRId64, res->retry_after_ms > 0 ? res->retry_after_ms : 1);
    struct http_header h[8] = {{"Retry-After", ra}, {"retry-after-ms", ra_ms}};
    size_t k = 2;
    put_ratelimits(r, h, &k);
    answer_refusal(r, 429, "rate_limit_exceeded", cap_key(r, res->reason), msg,
                   OUTCOME_RATE_LIMITED, h, k);
}

static int downgrade(struct req *r)
{
    const char *to = plan_downgrade(&r->plan_eff, r->call.model);
    /* the body must have been scanned (a model to replace), as for the path */
    if (!to || !r->scanned ||
        r->route.prov->set_model(&r->call, &r->scan, r->endpoint, sizeof(r->endpoint), to) < 0)
        return -1;
    snprintf(r->downgrade_hdr, sizeof(r->downgrade_hdr), "%s -> %s", r->call.model, to);
    snprintf(r->call.model, sizeof(r->call.model), "%s", to);
    r->downgraded = true;
    return 0;
}

/* Counts an admission decision and keeps it for the request's span. */
static void decided(struct req *r, const char *decision)
{
    r->decision = decision;
    metrics_budget(r->w->metrics, decision);
}

/* The webhook hears once a month that a tenant is blocked or downgraded,
 * and by what (alert.h deduplicates across processes). */
static void standing_event(struct req *r, const struct admit_result *res, bool blocked)
{
    const struct plan *p = &r->plan_eff;
    const char *why = res->reason == BUDGET_REASON_DAILY       ? "daily budget"
                      : res->reason == BUDGET_REASON_HARD      ? "hard limit"
                      : res->reason == BUDGET_REASON_MONTHLY   ? "monthly budget"
                      : res->reason != BUDGET_REASON_ALLOWANCE ? NULL
                      : p->unit == PLAN_UNIT_TOKENS            ? "included tokens"
                                                               : "included requests";
    if (why)
        alerter_standing(r->w->alerter, r->tenant, r->plan, blocked, why,
                         budget_period(r->wall.tv_sec, p->anchor)); /* once per period */
}

static void admitted(const struct admit_result *res, const char *errstr, void *arg)
{
    struct req *r = arg;
    r->admit_cmd = NULL;
    if (!res) {
        /* the script may still run once Redis answers again: release now
         * (or once Redis is back), which also stops that late admission
         * from reserving */
        ledger_release(r->w->ledger, r->cfg->key_prefix, r->tenant, r->id);
        /* the budget store did not answer in time */
        decided(r, "unverified");
        metrics_inc(r->w->metrics, METRIC_REDIS_ERRORS, 1);
        if (r->cfg->on_failure == ON_FAILURE_CLOSED) {
            req_log(LOG_WARN, r->id,
                    "budget store unreachable (%s): refusing (on_failure = closed)",
                    errstr ? errstr : "?");
            reject(r, 503, "budget_store_unavailable",
                   "the budget store is unreachable; try again shortly", OUTCOME_UPSTREAM_ERROR);
            return;
        }
        req_log(LOG_WARN, r->id, "budget store unreachable (%s): serving (on_failure = open)",
                errstr ? errstr : "?");
        forward_request(r);
        return;
    }
    r->spent_before = res->spent_month;
    r->remaining = budget_left(&r->plan_eff, res);
    if (r->plan_eff.included >= 0)
        r->allowance_used = res->allowance_used;
    if (r->plan_eff.included >= 0)
        r->allowance_left = r->plan_eff.included > res->allowance_used
                                ? r->plan_eff.included - res->allowance_used
                                : 0;
    keep_ratelimits(r, res);
    /* admitted or downgraded: a lease holds the estimate until settled */
    r->leased = res->decision == BUDGET_ADMIT || res->decision == BUDGET_DOWNGRADE;
    switch (res->decision) {
    case BUDGET_ADMIT:
        decided(r, "admit");
        forward_request(r);
        return;
    case BUDGET_DOWNGRADE:
        decided(r, "downgrade");
        standing_event(r, res, false);
        if (downgrade(r) < 0) {
            struct admit_result b = *res;
            b.decision = BUDGET_BLOCK;
            ledger_release(r->w->ledger, r->cfg->key_prefix, r->tenant, r->id);
            decided(r, "block");
            block(r, &b);
            return;
        }
        forward_request(r);
        return;
    case BUDGET_BLOCK:
        decided(r, "block");
        standing_event(r, res, true);
        block(r, res);
        return;
    case BUDGET_RATE_LIMITED:
        decided(r, "rate_limited");
        rate_limited(r, res);
        return;
    }
}

/* ---- forwarding ---- */

static void forward_request(struct req *r)
{
    if (r->cache.verdict == CACHE_HIT) {
        cache_replay(r);
        return;
    }
    const struct http_request *hr = r->hr;
    struct evbuffer *out = build_upstream_request(r, hr);
    if (out)
        r->up = upstream_send(r->gen->pools[r->route.upstream], out, hr->method == HTTP_HEAD,
                              &up_handlers, r);
    if (!r->up) {
        if (out)
            evbuffer_free(out);
        ledger_release(r->w->ledger, r->cfg->key_prefix, r->tenant, r->id);
        reject(r, 503, "overloaded", "out of memory", OUTCOME_UPSTREAM_ERROR);
        return;
    }
    r->forwarded = true;
    set_state(r, REQ_WAITING);
}

static void response_headers(struct req *r, const struct upstream_header *h, size_t n,
                             struct http_header *out, size_t *nout, bool *sse)
{
    size_t k = 0;
    *sse = false;
    for (size_t i = 0; i < n && k < MAX_RESP_HEADERS - 13; i++) {
        if (strcasecmp(h[i].name, "content-type") == 0 &&
            strncasecmp(h[i].value, "text/event-stream", 17) == 0)
            *sse = true;
        out[k].name = h[i].name;
        out[k].value = h[i].value;
        k++;
    }
    out[k].name = "X-Tollgate-Request-Id";
    out[k++].value = r->id;
    out[k].name = "X-Tollgate-Tenant";
    out[k++].value = r->tenant;
    out[k].name = CACHE_HEADER;
    out[k++].value = cache_verdict_name(r->cache.verdict);
    if (r->downgraded) {
        out[k].name = "X-Tollgate-Downgraded";
        out[k++].value = r->downgrade_hdr;
    }
    if (r->remaining >= 0 &&
        money_format(r->remaining, r->remaining_hdr, sizeof(r->remaining_hdr)) > 0) {
        out[k].name = "X-Tollgate-Budget-Remaining";
        out[k++].value = r->remaining_hdr;
    }
    if (r->allowance_left >= 0) {
        snprintf(r->allowance_hdr, sizeof(r->allowance_hdr), "%" PRId64, r->allowance_left);
        out[k].name = "X-Tollgate-Allowance-Remaining";
        out[k++].value = r->allowance_hdr;
    }
    put_ratelimits(r, out, &k);
    *nout = k;
}

static void on_head(void *arg, int status, const struct upstream_header *h, size_t n,
                    long long content_length)
{
    struct req *r = arg;
    r->status = status;
    r->ttfb_ms = ms_since(&r->t0);
    struct http_header hdrs[MAX_RESP_HEADERS];
    size_t nh;
    bool sse;
    response_headers(r, h, n, hdrs, &nh, &sse);

    r->metering = r->call.metered && status >= 200 && status < 300;
    if (r->metering && sse) {
        r->sse_on = true;
        sse_init(&r->sse, MAX_SSE_EVENT, r->call.strip_usage);
        /* an event too large to parse is still the client's */
        if (r->call.strip_usage)
            sse_set_skip_raw(&r->sse, forward_raw);
    } else if (r->metering) {
        r->answer = malloc(sizeof(*r->answer));
        if (r->answer && answer_init(r->answer, r->route.prov) < 0) {
            free(r->answer);
            r->answer = NULL;
        }
    }
    if (r->cache.keep && status == 200 && !r->cache.answer)
        r->cache.answer = evbuffer_new(); /* the copy a miss may store, up to max_entry */
    for (size_t i = 0; r->metering && i < n; i++) {
        /* asked for identity; an encoded answer's usage cannot be read, so
         * it is billed on the estimate's upper bound */
        if (strcasecmp(h[i].name, "content-encoding") == 0 &&
            strcasecmp(h[i].value, "identity") != 0) {
            req_log(LOG_WARN, r->id,
                    "upstream answered Content-Encoding %.40s despite identity: "
                    "billed on the estimate",
                    h[i].value);
            r->unreadable = true;
            r->outcome = OUTCOME_UPSTREAM_ERROR;
        }
    }
    if (status >= 400)
        r->outcome = OUTCOME_UPSTREAM_ERROR;
    /* a stream we edit has a new length: chunk it */
    if (r->sse_on && r->call.strip_usage)
        content_length = -1;
    set_state(r, REQ_STREAMING);
    if (r->client) /* else draining: nobody to answer */
        client_start(r->client, status, hdrs, nh, content_length);
}

static void pause_upstream(struct req *r)
{
    if (!r->paused && r->up) {
        r->paused = true;
        upstream_pause(r->up, true);
    }
}

static void forward(struct req *r, const char *buf, size_t len)
{
    if (r->client && client_write(r->client, buf, len))
        pause_upstream(r);
}

static void on_event(const struct sse_event *ev, void *arg)
{
    struct req *r = arg;
    bool drop = false;
    r->route.prov->on_event(&r->meter, &r->call, ev, &drop);
    if (ev->raw) {
        /* a leading LF that belongs to the previous event follows its fate */
        size_t lead = r->last_dropped ? ev->raw_lead : 0;
        if (!drop)
            forward(r, ev->raw + lead, ev->raw_len - lead);
        r->last_dropped = drop;
    }
}

static void forward_raw(const char *raw, size_t len, void *arg)
{
    forward(arg, raw, len);
}

static void on_body(void *arg, const char *buf, size_t len)
{
    struct req *r = arg;
    cache_keep(&r->cache, buf, len);
    if (r->sse_on) {
        if (!r->call.strip_usage)
            forward(r, buf, len); /* bytes go on as they came; the parser reads a copy */
        if (sse_feed(&r->sse, buf, len, on_event, r) < 0)
            log_warn("sse: out of memory");
        return;
    }
    forward(r, buf, len);
    if (r->answer)
        answer_feed(r->answer, buf, len);
}

static void on_drained(void *ctx)
{
    struct req *r = ctx;
    if (r->paused && r->up) {
        r->paused = false;
        upstream_pause(r->up, false);
    }
}

static void upstream_failed(struct req *r, enum upstream_result res, const char *errstr)
{
    static const struct {
        enum upstream_result res;
        int status;
        const char *code;
        const char *msg;
    } map[] = {
        {UPSTREAM_CONNECT_FAILED, 502, "upstream_unreachable", "the upstream could not be reached"},
        {UPSTREAM_CONNECT_TIMEOUT, 504, "upstream_timeout", "connecting to the upstream timed out"},
        {UPSTREAM_HEAD_TIMEOUT, 504, "upstream_timeout", "the upstream did not answer in time"},
        {UPSTREAM_IDLE_TIMEOUT, 504, "upstream_timeout", "the upstream stalled"},
        {UPSTREAM_RESET, 502, "upstream_reset", "the upstream closed the connection"},
        {UPSTREAM_BAD_RESPONSE, 502, "upstream_bad_response",
         "the upstream's answer was malformed"},
    };
    int status = 502;
    const char *code = "upstream_error", *msg = "upstream error";
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        if (map[i].res == res) {
            status = map[i].status;
            code = map[i].code;
            msg = map[i].msg;
        }
    }
    /* host:port: the name alone does not say which address refused */
    const struct cfg_upstream *u = r->route.up;
    req_log(LOG_WARN, r->id, "upstream %s (%s:%d): %s (%s)", u->name, u->host, u->port, code,
            errstr);
    if (!r->draining) /* a client that left is the outcome either way */
        r->outcome = OUTCOME_UPSTREAM_ERROR;
    if (r->state == REQ_WAITING && r->client) {
        answer_error(r, status, code, msg, OUTCOME_UPSTREAM_ERROR, NULL, 0);
        return;
    }
    if (r->client) {
        /* headers already went out: the client must see the cut */
        r->stream_cut = true;
        struct client *c = r->client;
        r->client = NULL;
        client_end(c, false);
    }
    finish(r);
}

static void on_done(void *arg, enum upstream_result res, const char *errstr)
{
    struct req *r = arg;
    r->up = NULL;
    if (res != UPSTREAM_OK) {
        upstream_failed(r, res, errstr);
        return;
    }
    if (r->sse_on) {
        if (sse_finish(&r->sse, r->call.strip_usage ? forward_raw : NULL, r))
            r->stream_cut = true;
    } else if (r->answer) {
        answer_finish(r->answer, &r->meter, &r->call);
    }
    if (r->client) {
        struct client *c = r->client;
        r->client = NULL;
        client_end(c, true);
    }
    finish(r);
}

/* The drain_on_abort deadline (or shutdown's): the answer is cut and the
 * call billed on its estimate. */
static void cut_draining(struct req *r)
{
    if (r->up) {
        upstream_cancel(r->up);
        r->up = NULL;
    }
    req_log(LOG_WARN, r->id,
            "client gone and the answer not over in time: cut, billed on the estimate");
    r->cut_on_abort = true;
    r->unanswered = !r->status;
    if (!r->status)
        r->status = 499;
    finish(r);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    cut_draining(arg);
}

void proxy_cut_draining(struct worker *w)
{
    for (struct req *r = w->reqs, *next; r; r = next) {
        next = r->next;
        if (r->draining && r->state != REQ_FINISHED)
            cut_draining(r);
    }
}

/* The client left a metered call: the provider goes on generating (and
 * billing) it, so the answer is read to its end, within the usual upstream
 * timeouts and drain_on_abort, for the provider's usage. */
static int drain_start(struct req *r)
{
    int ms = r->cfg->drain_on_abort_ms;
    if (ms <= 0 || !r->up || !r->call.metered)
        return -1;
    r->drain_timer = evtimer_new(r->w->base, on_drain_deadline, r);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!r->drain_timer || evtimer_add(r->drain_timer, &tv) < 0)
        return -1;
    r->draining = true;
    if (r->paused) {
        r->paused = false;
        upstream_pause(r->up, false);
    }
    req_log(LOG_DEBUG, r->id, "client gone: reading the answer for its usage");
    return 0;
}

static void on_gone(void *ctx)
{
    struct req *r = ctx;
    r->client = NULL;
    if (r->state == REQ_FINISHED || r->draining)
        return;
    cache_stop(&r->cache); /* left during a cache lookup or wait: nothing was forwarded */
    if (r->admit_cmd) {    /* left while being admitted: nothing was forwarded */
        redis_cancel(r->admit_cmd);
        r->admit_cmd = NULL;
        ledger_release(r->w->ledger, r->cfg->key_prefix, r->tenant, r->id);
    } else if (!r->w->cut && drain_start(r) == 0) {
        r->outcome = OUTCOME_CLIENT_ABORTED;
        return; /* on_done or the deadline finishes it */
    }
    if (r->up) { /* not metered, drain_on_abort = 0, or the shutdown cut */
        upstream_cancel(r->up);
        r->up = NULL;
        r->cut_on_abort = !r->w->cut;
    }
    r->unanswered = !r->status;
    if (r->w->cut) { /* tollgate cut it at drain_timeout, the client did not leave */
        r->outcome = OUTCOME_DRAIN_CUT;
        if (!r->status)
            r->status = 503; /* stopping: no answer was given */
    } else {
        r->outcome = OUTCOME_CLIENT_ABORTED;
        if (!r->status)
            r->status = 499; /* nginx's "client closed request" */
    }
    finish(r);
}

/* Renews the leases of this worker's requests in flight, one command per
 * tenant: a request that outlives the lease TTL (long reasoning, a
 * trickling stream) keeps its reservation. */
static void renew_leases(struct worker *w)
{
    unsigned round = ++w->renew_round;
    for (struct req *r = w->reqs; r; r = r->next) {
        if (!r->leased || r->renew_round == round || r->state == REQ_FINISHED)
            continue;
        const char *ids[RENEW_BATCH];
        size_t n = 0;
        for (struct req *o = r; o && n < RENEW_BATCH; o = o->next) {
            if (o->leased && o->renew_round != round && o->state != REQ_FINISHED &&
                strcmp(o->tenant, r->tenant) == 0 &&
                strcmp(o->cfg->key_prefix, r->cfg->key_prefix) == 0) {
                o->renew_round = round;
                ids[n++] = o->id;
            }
        }
        if (!budget_renew(w->redis, r->cfg->key_prefix, r->tenant, ids, n, lease_ttl_s()))
            log_debug("lease renewal for %s not queued", r->tenant);
    }
}

/* A request past [server] max_request_time is cut like a stalled upstream
 * and settled on its estimate's upper bound (the provider may go on). */
static void cut_overtime(struct req *r)
{
    req_log(LOG_WARN, r->id, "longer than max_request_time: cut");
    if (r->draining) {
        cut_draining(r);
        return;
    }
    upstream_cancel(r->up);
    r->up = NULL;
    r->cut_on_abort = true;
    upstream_failed(r, UPSTREAM_IDLE_TIMEOUT, "max_request_time"); /* finishes r */
}

void proxy_tick(struct worker *w)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (now_ms - w->lease_renewed_ms >= (int64_t)lease_ttl_s() * 1000 / 3) {
        w->lease_renewed_ms = now_ms;
        renew_leases(w);
    }
    for (struct req *r = w->reqs, *next; r; r = next) {
        next = r->next;
        if (r->up && (r->state == REQ_WAITING || r->state == REQ_STREAMING) &&
            ms_since(&r->t0) > (double)r->cfg->max_request_time_ms)
            cut_overtime(r);
    }
}

/* Counts the request in Redis, or journals it when Redis is away (ledger.h). */
static void settle(struct req *r, money_t cost, money_t saved, bool priced, const struct usage *u)
{
    struct settle s = {.key_prefix = r->cfg->key_prefix,
                       .tenant = r->tenant,
                       .request_id = r->id,
                       .when = r->wall.tv_sec,
                       .anchor = r->plan_eff.anchor,
                       .cost = cost,
                       .usage = *u,
                       .cache_hit = r->cache.verdict == CACHE_HIT,
                       .saved = saved,
                       .unpriced = !priced,
                       .model = r->call.model[0] ? r->call.model : NULL,
                       .feature = r->feature[0] ? r->feature : NULL,
                       .user = r->user[0] ? r->user : NULL,
                       .plan = r->plan,
                       .units = plan_units(&r->plan_eff, u->input, u->output),
                       .included = r->plan_eff.included};
    /* a request allowance counts answered requests, cached answers included,
     * not upstream failures */
    if (r->plan_eff.unit == PLAN_UNIT_REQUESTS && r->cache.verdict != CACHE_HIT &&
        (r->status < 200 || r->status >= 300) && u->input <= 0 && u->output <= 0)
        s.units = 0;
    plan_overage_terms(&r->plan_eff, &s.overage_per_mu, &s.overage_markup_bp);
    const struct ledger_marks m = {
        .spent_before = r->spent_before,
        .cap_monthly = r->plan_eff.budget_monthly,
        .units_before = r->allowance_used,
        .unit = r->plan_eff.unit == PLAN_UNIT_TOKENS     ? "tokens"
                : r->plan_eff.unit == PLAN_UNIT_REQUESTS ? "requests"
                                                         : NULL,
    };
    ledger_settle(r->w->ledger, &s, &m);
}

/* The usage to bill: what the provider reported, else an estimate when the
 * answer was cut or never carried usage. */
static void bill_usage(struct req *r, struct usage *u)
{
    *u = r->meter.usage;
    if (!r->call.metered || !r->forwarded)
        return;
    bool answered = r->status >= 200 && r->status < 300;
    if (r->call.priced_on_request && answered)
        u->seen = true; /* the units asked for are the bill */
    bool whole = u->seen && (!r->call.stream || r->meter.done);
    bool lost = ((r->cut_on_abort || r->unreadable) && !whole) ||
                (r->call.bound_if_unseen && answered && !whole);
    if (lost || r->meter.usage_invalid) {
        /* we stopped reading while the provider did not stop generating, or
         * its counts cannot be believed: the estimate's upper bound is the bill */
        bool listed;
        const struct price *pr = price_of(r, r->call.model, NULL, &listed);
        int64_t bound = provider_output_bound(&r->call, pr ? pr->max_output : 0);
        int64_t text = provider_estimate_tokens(r->meter.text_bytes);
        if (r->meter.usage_invalid)
            *u = (struct usage){.seen = u->seen};
        if (!u->seen || r->meter.usage_invalid)
            u->input = r->call.est_input_tokens;
        u->output = bound > text ? bound : text;
        if (!r->meter.usage_invalid && u->output < r->meter.usage.output)
            u->output = r->meter.usage.output;
        u->estimated = true;
        return;
    }
    /* usage is final once the answer is whole (a JSON body, or a stream up
     * to its completion marker); Anthropic and Gemini streams report
     * partial counts on the way, which are not the bill */
    if (whole)
        return;
    bool unanswered = r->unanswered; /* the client left or was cut before the answer */
    if (!answered && !unanswered)
        return;    /* an upstream error answer bills nothing */
    if (u->seen) { /* the provider's input count, the output estimated */
        int64_t out = provider_estimate_tokens(r->meter.text_bytes);
        if (out > u->output)
            u->output = out;
        u->estimated = true;
        return;
    }
    u->input = r->call.est_input_tokens;
    u->output = provider_estimate_tokens(r->meter.text_bytes);
    u->estimated = true;
}

/* The usage to bill (bill_usage) with the units the call asked for when
 * the answer did not name them (an estimate). */
static void final_usage(struct req *r, struct usage *u)
{
    bill_usage(r, u);
    /* the tier the answer says served it, else the one asked for */
    u->tier = r->meter.tier_seen ? r->meter.tier : r->call.tier;
    if (r->call.unit != USAGE_UNIT_NONE && u->unit == USAGE_UNIT_NONE &&
        ((u->seen && r->call.units_known) || u->estimated)) {
        u->unit = r->call.unit;
        u->units = r->call.units;
    }
}

static void finish(struct req *r)
{
    struct worker *w = r->w;
    set_state(r, REQ_FINISHED);
    if (r->drain_timer) {
        event_free(r->drain_timer);
        r->drain_timer = NULL;
    }
    if (r->draining && !r->status) { /* the upstream failed before answering */
        r->status = 499;
        r->unanswered = true;
    }
    if (r->client) { /* still attached: detach before the req goes */
        client_attach(r->client, NULL, NULL);
        r->client = NULL;
    }
    /* a stream cut short, or one that carried an error event (Responses
     * "error", Anthropic "event: error"), did not end well upstream */
    if ((r->stream_cut || r->meter.stream_error) && r->outcome == OUTCOME_OK)
        r->outcome = OUTCOME_UPSTREAM_ERROR;
    if (r->meter.usage_invalid && r->call.metered && r->forwarded) {
        req_log(LOG_WARN, r->id, "the upstream's usage counts are invalid: billed on the estimate");
        if (r->outcome == OUTCOME_OK)
            r->outcome = OUTCOME_UPSTREAM_ERROR;
    }

    struct usage u;
    final_usage(r, &u);
    const char *model = r->call.model[0] ? r->call.model : NULL;
    const char *price_model = r->meter.model[0] ? r->meter.model : model;
    const struct price *pr = NULL;
    bool listed = false;
    if (r->call.metered) {
        pr = price_of(r, price_model, model, &listed);
        const char *name = price_model ? price_model : "(none)";
        if (!listed && pricing_warn_once(r->cfg->pricing, name))
            req_log(LOG_WARN, r->id,
                    "model '%.100s' has no price: %s, recorded \"priced\": false (warned once "
                    "per model until a reload)",
                    name,
                    pr ? "charged at the fallback price of [pricing] unknown_model"
                       : "charged $0 ([pricing] unknown_model = allow)");
    }
    money_t cost = pr ? pricing_cost(pr, &u) : 0, saved = 0;
    if (pr && !pricing_tier_listed(pr, u.tier)) { /* a stand-in for the tier's price */
        if (listed && pricing_warn_once(r->cfg->pricing, price_model ? price_model : "(none)"))
            req_log(LOG_WARN, r->id,
                    "model '%.100s' has no %s price: charged at a stand-in, recorded \"priced\": "
                    "false (warned once per model until a reload)",
                    price_model ? price_model : "(none)",
                    u.tier == USAGE_TIER_FLEX ? "flex" : "priority");
        listed = false;
    }
    if (r->cache.verdict == CACHE_HIT && r->status != 200) /* the client left before the replay */
        r->cache.verdict = CACHE_MISS;
    cache_end(r, &u);
    bool hit = r->cache.verdict == CACHE_HIT;
    if (hit) { /* no provider call: what it would have cost is saved, not spent */
        saved = cost;
        cost = 0;
        u = (struct usage){.seen = true};
    }
    /* a free route's price is known (0); an unknown one's is not */
    bool priced = r->call.metered ? listed : r->route.cls == ROUTE_FREE;
    if (r->forwarded || hit)
        settle(r, cost, saved, priced, &u);

    struct record rec = {
        .ts = r->wall,
        .id = r->id,
        .tenant = r->tenant[0] ? r->tenant : "-",
        .user = r->user[0] ? r->user : NULL,
        .feature = r->feature[0] ? r->feature : NULL,
        .plan = r->plan[0] ? r->plan : r->cfg->default_plan,
        .provider = r->route.prov ? r->route.prov->name : "-",
        .upstream = r->route.up ? r->route.up->name : NULL,
        .endpoint = r->endpoint,
        .model_requested = r->model_requested[0] ? r->model_requested : NULL,
        .model = model,
        .downgraded = r->downgraded,
        .stream = r->call.stream,
        .status = r->status,
        .outcome = r->outcome,
        .usage = u,
        .cost = cost,
        .priced = priced,
        .cache_hit = hit,
        .saved = saved,
        .latency_ms = ms_since(&r->t0),
        .ttfb_ms = r->ttfb_ms,
    };
    record_queue_push(w->records, &rec);
    export_record(w->exports, r->cfg, &rec, &r->trace, r->decision);
    bool unpriced = r->call.metered && !listed;
    metrics_request(w->metrics, r->route.prov ? r->route.prov->name : NULL, model, r->outcome, &u,
                    cost, unpriced, rec.latency_ms / 1e3, r->ttfb_ms < 0 ? -1 : r->ttfb_ms / 1e3);
    if (r->call.metered)
        metrics_cache(w->metrics, cache_verdict_name(r->cache.verdict), saved);
    atomic_fetch_sub_explicit(&w->stats.inflight, 1, memory_order_relaxed);

    if (r->sse_on)
        sse_free(&r->sse);
    if (r->answer) {
        answer_free(r->answer);
        free(r->answer);
    }
    json_scan_free(&r->scan);
    worker_gen_unref(r->gen);
    if (r->prev)
        r->prev->next = r->next;
    else
        w->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    req_release(w, r);
}
