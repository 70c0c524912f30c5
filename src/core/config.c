/* config.c: reads proxy.conf (INI, through libinih) into an immutable,
 * refcounted struct config. One key table drives parsing, defaults,
 * validation, `tollgate -t`, the reload check and the docs test. Every
 * problem is reported as "file:line: message", all of them at once, so an
 * operator fixes a file in one pass. The parsers for single values (sizes,
 * durations, URLs, lists, env:) are in config_values.c. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_values.h"
#include "core/log.h"
#include "http/tls.h"
#include "providers/pricing.h"
#include "providers/provider.h"
#include "redis/redis_url.h"

/* Sections. Named ones are templates: [plan NAME] may appear many times. */
enum sect {
    S_NONE,
    S_SERVER,
    S_REDIS,
    S_UPSTREAM,
    S_PRICING,
    S_RECORDS,
    S_ALERTS,
    S_REPORT,
    S_EXPORT,
    S_CACHE,
    S_PLAN,
    S_TENANT
};

static const struct {
    const char *name;
    const char *doc_name; /* as config_each_key names it */
    bool named;           /* a template: [upstream NAME] */
} sects[] = {
    [S_NONE] = {"", "", false},
    [S_SERVER] = {"server", "server", false},
    [S_REDIS] = {"redis", "redis", false},
    [S_UPSTREAM] = {"upstream", "upstream *", true},
    [S_PRICING] = {"pricing", "pricing", false},
    [S_RECORDS] = {"records", "records", false},
    [S_ALERTS] = {"alerts", "alerts", false},
    [S_REPORT] = {"report", "report", false},
    [S_EXPORT] = {"export", "export", false},
    [S_CACHE] = {"cache", "cache", false},
    [S_PLAN] = {"plan", "plan *", true},
    [S_TENANT] = {"tenant", "tenant *", true},
};

/* How a value is parsed and where it is stored (at key.off in the section's
 * struct: struct config, cfg_upstream, cfg_plan or cfg_tenant). */
enum type {
    T_STR,    /* char *, any text; key.check may restrict it */
    T_ADDR,   /* char *, host:port to listen on */
    T_HEADER, /* char *, an HTTP header name */
    T_FILE,   /* char *, a path that must be readable at load time */
    T_SIZE,   /* size_t bytes: 1024, 64k, 8m */
    T_DUR,    /* int milliseconds: 500ms, 10s, 2m */
    T_INT,    /* int, within lo..hi */
    T_I64,    /* int64_t, within lo..hi; unset: -1 */
    T_ENUM,   /* an enum, the index of the value in key.names */
    T_MONEY,  /* money_t, USD >= 0; unset: -1 */
    T_FUNC,   /* key.set parses and stores */
};

#define K_OPT 1u     /* may be empty or absent: stored as NULL */
#define K_RESTART 2u /* a change takes effect only on restart */

/* Setters and checks write a message (without file:line or key) into msg. */
typedef int (*setter)(void *obj, const char *val, char *msg, size_t n);
typedef int (*checker)(const char *val, char *msg, size_t n);

struct key {
    enum sect sect;
    const char *name;
    enum type type;
    size_t off;
    const char *def; /* parsed like a value from the file; NULL: unset */
    unsigned flags;
    int64_t lo, hi;           /* T_INT, T_I64, T_SIZE, T_DUR */
    const char *const *names; /* T_ENUM, NULL-terminated, in enum order */
    setter set;               /* T_FUNC */
    checker check;            /* text types: extra validation */
    size_t max;               /* text and T_FUNC: longest value in bytes (after env:) */
    size_t span; /* T_FUNC and K_RESTART: bytes from off the setter stores, compared on reload */
    const char *doc;
};

static int check_kind(const char *v, char *msg, size_t n);

static const char *const missing_tenant_names[] = {"reject", "allow", NULL};
static const char *const on_failure_names[] = {"open", "closed", NULL};
static const char *const on_exceed_names[] = {"block", "downgrade", NULL};
static const char *const price_period_names[] = {"month", "year", NULL};
static const char *const unmetered_routes_names[] = {"block", "allow", NULL};
static const char *const no_yes_names[] = {"no", "yes", NULL};
static const char *const tenant_policy_names[] = {"open", "configured", NULL};
/* enum cache_mode: a plan may not say "plan" (config_load refuses it) */
static const char *const cache_mode_names[] = {"plan", "off", "on", "ask", NULL};

#define CF(f) offsetof(struct config, f)
#define UP(f) offsetof(struct cfg_upstream, f)
#define PL(f) offsetof(struct cfg_plan, f)
#define TN(f) offsetof(struct cfg_tenant, f)
#define MS_MAX (24LL * 3600 * 1000)
/* Longest values: no buffer anywhere holds a longer one (config.h has the
 * limits other modules size their buffers by). */
#define ADDR_MAX 270   /* [v6 address]:port or a host name and port */
#define HEADER_MAX 64  /* an HTTP header name */
#define URL_MAX 1024   /* upstream, Redis and webhook URLs */
#define PATH_MAX_ 4095 /* a file or directory path */
#define GB (1LL << 30)

/* The one key table, in the order proxy.conf.example documents it. */
static const struct key keys[] = {
    {S_SERVER, "listen", T_ADDR, CF(listen), "127.0.0.1:8080", K_RESTART, .max = ADDR_MAX,
     .doc = "host:port where apps connect (plain HTTP)"},
    {S_SERVER, "tls_listen", T_ADDR, CF(tls_listen), NULL, K_OPT | K_RESTART, .max = ADDR_MAX,
     .doc = "optional HTTPS listener, host:port"},
    {S_SERVER, "tls_cert", T_FILE, CF(tls_cert), NULL, K_OPT | K_RESTART, .max = PATH_MAX_,
     .doc = "PEM certificate chain for tls_listen"},
    {S_SERVER, "tls_key", T_FILE, CF(tls_key), NULL, K_OPT | K_RESTART, .max = PATH_MAX_,
     .doc = "PEM private key for tls_listen"},
    {S_SERVER, "admin_listen", T_ADDR, CF(admin_listen), "127.0.0.1:9090", K_OPT | K_RESTART,
     .max = ADDR_MAX,
     .doc = "host:port of /healthz /readyz /metrics /dashboard /admin/api; empty: off"},
    {S_SERVER, "admin_token", T_STR, CF(admin_token), NULL, K_OPT, .max = 256,
     .check = config_check_secret,
     .doc = "bearer token for the admin API; unset: only /healthz and /readyz answer"},
    {S_SERVER, "tenant_header", T_HEADER, CF(tenant_header), "X-Tenant-Id", 0, .max = HEADER_MAX,
     .check = config_check_identity_header, .doc = "request header naming the tenant"},
    {S_SERVER, "user_header", T_HEADER, CF(user_header), "X-User-Id", 0, .max = HEADER_MAX,
     .check = config_check_identity_header, .doc = "request header naming the end user (recorded)"},
    {S_SERVER, "feature_header", T_HEADER, CF(feature_header), "X-Feature", 0, .max = HEADER_MAX,
     .check = config_check_identity_header,
     .doc = "request header naming the app feature (recorded)"},
    {S_SERVER, "plan_header", T_HEADER, CF(plan_header), NULL, K_OPT, .max = HEADER_MAX,
     .check = config_check_identity_header,
     .doc = "optional request header naming the plan; unset: off"},
    {S_SERVER, "client_token", T_STR, CF(client_token), NULL, K_OPT, .max = 1024,
     .check = config_check_tokens,
     .doc = "shared secrets (16+ chars, comma-separated, env: allowed) apps send in "
            "X-Tollgate-Client-Token; set: requests without one get 401"},
    {S_SERVER, "trust_network", T_ENUM, CF(trust_network), "no", K_RESTART, .names = no_yes_names,
     .doc = "yes: listen on a non-loopback address without client_token (a private network)"},
    {S_SERVER, "trust_plan_header", T_ENUM, CF(trust_plan_header), "no", 0, .names = no_yes_names,
     .doc = "yes: plan_header may name any plan; no: only plans in plan_header_allow"},
    {S_SERVER, "plan_header_allow", T_STR, CF(plan_header_allow), NULL, K_OPT, .max = 1024,
     .check = config_check_names, .doc = "plans plan_header may name when not trusted: a, b"},
    {S_SERVER, "tenant_policy", T_ENUM, CF(tenant_policy), "open", 0, .names = tenant_policy_names,
     .doc = "open: any tenant id | configured: [tenant] sections and tenant_pattern only (403)"},
    {S_SERVER, "tenant_pattern", T_STR, CF(tenant_pattern), NULL, K_OPT, .max = 256,
     .check = config_check_regex,
     .doc = "with tenant_policy = configured: tenant ids matching this regex are served too"},
    {S_SERVER, "missing_tenant", T_ENUM, CF(missing_tenant), "reject", 0,
     .names = missing_tenant_names, .doc = "reject (400) | allow (as tenant \"anonymous\")"},
    {S_SERVER, "default_plan", T_STR, CF(default_plan), "free", 0, .check = config_check_name,
     .max = CONFIG_NAME_MAX, .doc = "plan of tenants without [tenant] section or plan header"},
    {S_SERVER, "max_body", T_SIZE, CF(max_body), "8m", 0, 1, GB,
     .doc = "largest request body, larger: 413"},
    {S_SERVER, "max_header_size", T_SIZE, CF(max_header_size), "32k", 0, 1024, 1 << 20,
     .doc = "largest request line + headers, larger: 431"},
    {S_SERVER, "workers", T_INT, CF(workers), "0", K_RESTART, 0, 1024,
     .doc = "worker threads; 0: one per CPU the process may use (affinity, cgroup quota)"},
    {S_SERVER, "max_connections", T_INT, CF(max_connections), "10000", K_RESTART, 1, 1000000,
     .doc = "API client connections of the process (all workers); lowered at start to what "
            "the descriptor limit holds; admin connections are apart (at most 32)"},
    {S_SERVER, "header_timeout", T_DUR, CF(header_timeout_ms), "10s", 0, 1, MS_MAX,
     .doc = "request line + headers must arrive within this"},
    {S_SERVER, "body_timeout", T_DUR, CF(body_timeout_ms), "60s", 0, 1, MS_MAX,
     .doc = "the whole request body must arrive within this"},
    {S_SERVER, "keepalive_timeout", T_DUR, CF(keepalive_timeout_ms), "75s", 0, 1, MS_MAX,
     .doc = "idle client connection is closed after this"},
    {S_SERVER, "send_timeout", T_DUR, CF(send_timeout_ms), "60s", 0, 1, MS_MAX,
     .doc = "client not reading the response is cut after this"},
    {S_SERVER, "drain_timeout", T_DUR, CF(drain_timeout_ms), "30s", 0, 0, MS_MAX,
     .doc = "on SIGTERM, how long open streams may finish"},
    {S_SERVER, "log_level", T_STR, CF(log_level), "info", 0, .check = config_check_log_level,
     .max = 16, .doc = "error | warn | info | debug"},
    {S_SERVER, "log_format", T_FUNC, 0, "plain", 0, .set = config_set_log_format, .max = 16,
     .doc = "plain | json (one object per line)"},
    {S_SERVER, "connect_timeout", T_DUR, CF(connect_timeout_ms), "10s", 0, 1, MS_MAX,
     .doc = "upstream TCP connect + TLS handshake"},
    {S_SERVER, "first_byte_timeout", T_DUR, CF(first_byte_timeout_ms), "300s", 0, 1, MS_MAX,
     .doc = "upstream request sent -> response headers"},
    {S_SERVER, "idle_timeout", T_DUR, CF(idle_timeout_ms), "120s", 0, 1, MS_MAX,
     .doc = "upstream silence between two reads of a response"},
    {S_SERVER, "drain_on_abort", T_DUR, CF(drain_on_abort_ms), "60s", 0, 0, MS_MAX,
     .doc = "client gone mid-request: keep reading the metered answer this long to bill the "
            "provider's usage; 0: cut at once (billed on the estimate)"},
    {S_SERVER, "max_request_time", T_DUR, CF(max_request_time_ms), "30m", 0, 1, MS_MAX,
     .doc = "a request still running after this (a long or trickling stream) is cut and "
            "settled on its estimate"},
    {S_SERVER, "upstream_pool_size", T_INT, CF(pool_size), "128", 0, 0, 10000,
     .doc = "idle keep-alive connections per upstream per worker"},

    {S_REDIS, "url", T_STR, CF(redis_url), "redis://127.0.0.1:6379/0", K_RESTART,
     .check = config_check_redis_url, .max = URL_MAX,
     .doc = "redis://[user:password@]host:port/db, rediss://... (TLS), "
            "redis-sentinel://h1:26379,h2:26379/MASTER, redis-cluster://h1:7000,h2:7001 or "
            "unix://[user:password@]/path.sock"},
    {S_REDIS, "ca_file", T_FILE, CF(redis_ca_file), NULL, K_OPT | K_RESTART, .max = PATH_MAX_,
     .doc = "rediss://: CAs (PEM) trusted beside the system's; the server is always verified"},
    {S_REDIS, "cert_file", T_FILE, CF(redis_cert_file), NULL, K_OPT | K_RESTART, .max = PATH_MAX_,
     .doc = "rediss://: client certificate chain (PEM), with key_file"},
    {S_REDIS, "key_file", T_FILE, CF(redis_key_file), NULL, K_OPT | K_RESTART, .max = PATH_MAX_,
     .doc = "rediss://: the client certificate's private key (PEM)"},
    {S_REDIS, "key_prefix", T_STR, CF(key_prefix), "tollgate:", K_RESTART,
     .check = config_check_key_prefix, .max = CONFIG_KEY_PREFIX_MAX,
     .doc = "prefix of every Redis key"},
    {S_REDIS, "on_failure", T_ENUM, CF(on_failure), "open", 0, .names = on_failure_names,
     .doc = "open: serve, keep records locally | closed: 503 while Redis is unreachable"},
    {S_REDIS, "timeout", T_DUR, CF(redis_timeout_ms), "250ms", 0, 1, 60000,
     .doc = "per Redis command; past it the budget store counts as unreachable"},
    {S_REDIS, "journal_dir", T_STR, CF(journal_dir), "var/journal", K_RESTART, .max = PATH_MAX_,
     .doc = "on_failure = open: settlements Redis missed, replayed when it is back"},

    {S_UPSTREAM, "url", T_FUNC, 0, NULL, 0, .set = config_set_url, .max = URL_MAX,
     .doc = "https://host[:port][/base]; built-ins default to the provider's API"},
    {S_UPSTREAM, "kind", T_STR, UP(kind), NULL, K_OPT, .check = check_kind, .max = 16,
     .doc = "openai | anthropic | gemini dialect; default: the name, else openai"},
    {S_UPSTREAM, "prefix", T_STR, UP(prefix), NULL, K_OPT, .check = config_check_prefix, .max = 128,
     .doc = "/NAME: requests under it go here, prefix stripped; required unless built-in"},
    {S_UPSTREAM, "api_key", T_STR, UP(api_key), NULL, K_OPT, .max = 1024,
     .doc = "sent upstream instead of the client's key; unset: the client's key passes"},
    {S_UPSTREAM, "ca_file", T_FILE, UP(ca_file), NULL, K_OPT, .max = PATH_MAX_,
     .doc = "extra CA bundle (PEM) for private upstreams and tests"},

    {S_PRICING, "file", T_STR, CF(pricing_file), "conf/pricing.conf", 0, .max = PATH_MAX_,
     .doc = "prices in USD per 1M tokens (INI, or LiteLLM JSON)"},
    {S_PRICING, "unknown_model", T_FUNC, 0, "highest", 0, .set = config_set_unknown_model,
     .max = 136,
     .doc = "highest (the provider's highest listed price of the model's kind, recorded "
            "unpriced) | allow ($0, unpriced) | block (400) | price_as:MODEL"},
    {S_PRICING, "unmetered_routes", T_ENUM, CF(unmetered_routes), "block", 0,
     .names = unmetered_routes_names,
     .doc = "block (403 route_not_metered) | allow (forward paths tollgate cannot price, "
            "record unpriced)"},

    {S_RECORDS, "file", T_STR, CF(records_file), "var/usage.jsonl", K_RESTART, .max = PATH_MAX_,
     .doc = "one JSON line per request; - : standard output (log shippers)"},
    {S_RECORDS, "rotate", T_FUNC, CF(records_rotate_bytes), "off", K_RESTART,
     .set = config_set_rotate, .max = 32,
     .span = CF(records_rotate_daily) + sizeof(bool) - CF(records_rotate_bytes),
     .doc = "off | a size (100m) | daily: tollgate rotates file itself to file.1, file.2, ..."},
    {S_RECORDS, "keep", T_INT, CF(records_keep), "7", K_RESTART, 1, 1000,
     .doc = "rotated files kept (file.1 newest); older ones are deleted"},
    {S_RECORDS, "redis_stream", T_STR, CF(redis_stream), NULL, K_OPT, .max = 256,
     .doc = "also XADD every record to this stream; unset: off"},
    {S_RECORDS, "redis_stream_maxlen", T_I64, CF(redis_stream_maxlen), "1000000", 0, 1, INT64_MAX,
     .doc = "entries the stream keeps (XADD MAXLEN ~): older ones are trimmed"},

    {S_ALERTS, "webhook", T_STR, CF(webhook), NULL, K_OPT, .check = config_check_webhook,
     .max = URL_MAX, .doc = "Slack-compatible JSON POST target; unset: off"},
    {S_ALERTS, "thresholds", T_FUNC, 0, "80%, 100%", 0, .set = config_set_thresholds, .max = 128,
     .doc = "percent of the monthly budget and of the allowance, each fired once per tenant per "
            "month"},

    {S_REPORT, "target_margin", T_FUNC, 0, "50%", 0, .set = config_set_report_margin, .max = 16,
     .doc = "margin a suggested plan keeps at a tenant's projected cost"},
    {S_EXPORT, "cloudevents_url", T_STR, CF(cloudevents_url), NULL, K_OPT | K_RESTART,
     .max = URL_MAX, .check = config_check_webhook,
     .doc = "POST every record as a CloudEvent, in batches (cloudevents-batch+json); unset: off"},
    {S_EXPORT, "cloudevents_token", T_STR, CF(cloudevents_token), NULL, K_OPT | K_RESTART,
     .max = 1024, .check = config_check_token,
     .doc = "sent as Authorization: Bearer TOKEN; unset: none"},
    {S_EXPORT, "source", T_STR, CF(export_source), "tollgate", K_RESTART, .max = 256,
     .doc = "CloudEvents source: keep it stable, receivers dedupe by (source, id)"},
    {S_EXPORT, "spool_dir", T_STR, CF(spool_dir), "var/spool", K_RESTART, .max = PATH_MAX_,
     .doc = "events not yet taken by the sink wait here, across restarts"},
    {S_EXPORT, "spool_max", T_SIZE, CF(spool_max), "1g", K_RESTART, 65536, 1LL << 40,
     .doc = "bound of the spool; past it new events are dropped (logged, counted)"},
    {S_EXPORT, "otlp_endpoint", T_STR, CF(otlp_endpoint), NULL, K_OPT | K_RESTART, .max = URL_MAX,
     .check = config_check_webhook,
     .doc = "OTLP/HTTP base URL: one span per request POSTed (JSON) to /v1/traces; unset: off"},
    {S_EXPORT, "ca_file", T_FILE, CF(export_ca_file), NULL, K_OPT | K_RESTART, .max = PATH_MAX_,
     .doc = "extra CA bundle (PEM) for https:// sinks (CloudEvents, OTLP); unset: the system's"},

    {S_CACHE, "enabled", T_ENUM, CF(cache_enabled), "no", 0, .names = no_yes_names,
     .doc = "yes: plans and tenants with cache = on | ask may be answered from the response "
            "cache (Redis)"},
    {S_CACHE, "ttl", T_DUR, CF(cache_ttl_ms), "1h", 0, 1000, 7 * MS_MAX,
     .doc = "how long a stored answer is served"},
    {S_CACHE, "max_entry", T_SIZE, CF(cache_max_entry), "1m", 0, 1024, 64 << 20,
     .doc = "answers longer than this are not stored (nor held in memory past it)"},
    {S_CACHE, "shared", T_ENUM, CF(cache_shared), "no", 0, .names = no_yes_names,
     .doc = "yes: one entry answers every tenant; no: each tenant has its own"},
    {S_CACHE, "wait", T_DUR, CF(cache_wait_ms), "10s", 0, 0, MS_MAX,
     .doc = "identical misses wait this long for the first one's answer (single flight); "
            "0: each goes upstream"},
    {S_CACHE, "allow", T_FUNC, 0, "none", 0, .set = config_set_cache_allow, .max = 128,
     .doc = "none | a list of sampled, provider_tools, images, audio: answers the cache "
            "otherwise never gives twice (a refusal never is)"},

    {S_PLAN, "price", T_MONEY, PL(price), "0", 0, .doc = "subscription revenue in USD"},
    {S_PLAN, "price_period", T_ENUM, PL(price_period), "month", 0, .names = price_period_names,
     .doc = "month | year: what price is for"},
    {S_PLAN, "budget_monthly", T_MONEY, PL(budget_monthly), NULL, 0,
     .doc = "AI cost cap in USD per calendar month (UTC); unset: none"},
    {S_PLAN, "budget_daily", T_MONEY, PL(budget_daily), NULL, 0,
     .doc = "AI cost cap in USD per day (UTC); unset: none"},
    {S_PLAN, "target_margin", T_FUNC, 0, "off", 0, .set = config_set_plan_margin, .max = 16,
     .doc = "instead of budget_monthly: cap = price x (1 - target_margin)"},
    {S_PLAN, "on_exceed", T_ENUM, PL(on_exceed), "block", 0, .names = on_exceed_names,
     .doc = "block | downgrade (needs downgrade)"},
    {S_PLAN, "downgrade", T_FUNC, 0, NULL, 0, .set = config_set_downgrade, .max = 4096,
     .doc = "model rewrites once over budget: a > b, c > d"},
    {S_PLAN, "hard_limit", T_MONEY, PL(hard_limit), NULL, 0,
     .doc = "USD per month past which even downgraded calls are blocked"},
    {S_PLAN, "rpm", T_I64, PL(rpm), "0", 0, 0, INT64_MAX,
     .doc = "requests per minute; 0: no limit"},
    {S_PLAN, "tpm", T_I64, PL(tpm), "0", 0, 0, INT64_MAX, .doc = "tokens per minute; 0: no limit"},
    {S_PLAN, "user_budget_monthly", T_MONEY, PL(user_budget_monthly), NULL, 0,
     .doc = "AI cost cap in USD per month for each end user (user_header) inside a tenant; "
            "unset: none"},
    {S_PLAN, "user_rpm", T_I64, PL(user_rpm), "0", 0, 0, INT64_MAX,
     .doc = "requests per minute of each end user inside a tenant; 0: no limit"},
    {S_PLAN, "block_message", T_STR, PL(block_message), NULL, K_OPT,
     .max = CONFIG_BLOCK_MESSAGE_MAX,
     .doc = "error message when blocked; unset: a default naming the cap"},
    {S_PLAN, "cache", T_ENUM, PL(cache), "off", 0, .names = cache_mode_names,
     .doc = "off | on (unless the request sends X-Tollgate-Cache: off) | ask (only requests "
            "that send X-Tollgate-Cache: on); needs [cache] enabled"},
    {S_PLAN, "included_tokens", T_I64, PL(included_tokens), NULL, 0, 1, INT64_MAX,
     .doc = "allowance of input + output tokens per billing period; unset: none"},
    {S_PLAN, "included_requests", T_I64, PL(included_requests), NULL, 0, 1, INT64_MAX,
     .doc = "allowance of metered requests per billing period; unset: none"},
    {S_PLAN, "on_allowance", T_FUNC, 0, NULL, 0, .set = config_set_on_allowance, .max = 16,
     .doc = "past the allowance: overage (serve and bill) | block | downgrade"},
    {S_PLAN, "period", T_FUNC, 0, NULL, 0, .set = config_set_period, .max = 16,
     .doc = "the billing period: month (from each tenant's billing_anchor); week is refused"},
    {S_PLAN, "overage", T_FUNC, 0, NULL, 0, .set = config_set_overage, .max = 32,
     .doc = "USD per 1M tokens (or per request) past the allowance, or cost + N%"},

    {S_TENANT, "plan", T_STR, TN(plan), NULL, K_OPT, .check = config_check_name,
     .max = CONFIG_NAME_MAX, .doc = "the tenant's plan"},
    {S_TENANT, "budget_monthly", T_MONEY, TN(budget_monthly), NULL, 0,
     .doc = "overrides the plan's monthly cap, USD"},
    {S_TENANT, "budget_daily", T_MONEY, TN(budget_daily), NULL, 0,
     .doc = "overrides the plan's daily cap, USD"},
    {S_TENANT, "hard_limit", T_MONEY, TN(hard_limit), NULL, 0,
     .doc = "overrides the plan's hard limit, USD"},
    {S_TENANT, "rpm", T_I64, TN(rpm), NULL, 0, 0, INT64_MAX,
     .doc = "overrides the plan's requests per minute"},
    {S_TENANT, "tpm", T_I64, TN(tpm), NULL, 0, 0, INT64_MAX,
     .doc = "overrides the plan's tokens per minute"},
    {S_TENANT, "user_budget_monthly", T_MONEY, TN(user_budget_monthly), NULL, 0,
     .doc = "overrides the plan's cap per end user, USD"},
    {S_TENANT, "user_rpm", T_I64, TN(user_rpm), NULL, 0, 0, INT64_MAX,
     .doc = "overrides the plan's requests per minute per end user"},
    {S_TENANT, "cache", T_ENUM, TN(cache), "plan", 0, .names = cache_mode_names,
     .doc = "plan (the plan's cache) | off | on | ask"},
    {S_TENANT, "included_tokens", T_I64, TN(included_tokens), NULL, 0, 1, INT64_MAX,
     .doc = "overrides the plan's included_tokens (a plan with a token allowance)"},
    {S_TENANT, "included_requests", T_I64, TN(included_requests), NULL, 0, 1, INT64_MAX,
     .doc = "overrides the plan's included_requests (a plan with a request allowance)"},
    {S_TENANT, "billing_anchor", T_I64, TN(billing_anchor), "1", 0, 1, 31,
     .doc = "day of the month (1..31, UTC; clamped in short months) the tenant's billing "
            "period starts: caps, allowances and alerts count from it to the same day of the "
            "next month"},
};

/* Where a key or section header was seen, for duplicates and for errors
 * found after the whole file is read. */
struct seen {
    enum sect sect;
    size_t idx;          /* instance of a template section; 0 otherwise */
    const struct key *k; /* NULL: the section header itself */
    int line;
    bool rejected; /* the value was reported bad: no follow-up errors */
};

/* State of one load. The reader and the handler run interleaved (inih asks
 * for a line, then reports its key), so p->line is the current key's line. */
struct parser {
    struct config *c;
    const char *path;
    FILE *f;
    char *buf; /* getline buffer */
    size_t cap;
    int line;
    enum sect sect; /* current section; S_NONE before the first */
    size_t idx;     /* its instance, for templates */
    bool skip;      /* the header was rejected: its keys are not reported again */
    char label[64]; /* "plan free", for messages */
    struct seen *seen;
    size_t n_seen, cap_seen;
    char *err;
    size_t errlen, used;
    int n_err;
};

static void failv(struct parser *p, int line, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    p->n_err++;
    if (!p->err || p->errlen == 0 || p->used + 1 >= p->errlen)
        return;
    int w;
    if (line < 0) /* already "file:line: message" */
        w = snprintf(p->err + p->used, p->errlen - p->used, "%s%s", p->used ? "\n" : "", msg);
    else if (line > 0)
        w = snprintf(p->err + p->used, p->errlen - p->used, "%s%s:%d: %s", p->used ? "\n" : "",
                     p->path, line, msg);
    else
        w = snprintf(p->err + p->used, p->errlen - p->used, "%s%s: %s", p->used ? "\n" : "",
                     p->path, msg);
    if (w > 0)
        p->used += (size_t)w < p->errlen - p->used ? (size_t)w : p->errlen - p->used - 1;
}

static void PRINTF_LIKE(3, 4) fail_at(struct parser *p, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(p, line, fmt, ap);
    va_end(ap);
}

/* Adds already formatted "file:line: message" lines (from the pricing loader). */
static void fail_raw(struct parser *p, const char *lines)
{
    while (*lines) {
        size_t len = strcspn(lines, "\n");
        if (len)
            fail_at(p, -1, "%.*s", (int)len, lines);
        lines += len + (lines[len] == '\n');
    }
}

/* -------- applying a value through the table -------- */

/* Upstream kinds are the providers of the table (provider.c); the other
 * value checks and setters named in the table are in config_values.c. */
static int check_kind(const char *v, char *msg, size_t n)
{
    if (provider_find(v))
        return 0;
    int w = snprintf(msg, n, "'%s' is not one of", v);
    for (size_t i = 0; provider_at(i) && w > 0 && (size_t)w < n; i++)
        w += snprintf(msg + w, n - (size_t)w, "%s %s", i ? "," : "", provider_at(i)->name);
    return -1;
}

static bool is_text(enum type t)
{
    return t == T_STR || t == T_ADDR || t == T_HEADER || t == T_FILE;
}

static int set_text(char **field, const struct key *k, const char *v, char *msg, size_t n)
{
    if (!*v) {
        if (!(k->flags & K_OPT)) {
            snprintf(msg, n, "needs a value");
            return -1;
        }
        free(*field);
        *field = NULL;
        return 0;
    }
    checker kind = k->type == T_ADDR     ? config_check_addr
                   : k->type == T_HEADER ? config_check_header
                   : k->type == T_FILE   ? config_check_file
                                         : NULL;
    if (kind && kind(v, msg, n) < 0)
        return -1;
    if (k->check && k->check(v, msg, n) < 0)
        return -1;
    char *copy = strdup(v);
    if (!copy) {
        snprintf(msg, n, "out of memory");
        return -1;
    }
    free(*field);
    *field = copy;
    return 0;
}

static int range_error(const struct key *k, char *msg, size_t n)
{
    const char *unit = k->type == T_DUR ? "ms" : k->type == T_SIZE ? " bytes" : "";
    snprintf(msg, n, "must be between %lld%s and %lld%s", (long long)k->lo, unit, (long long)k->hi,
             unit);
    return -1;
}

/* Parses v as k says and stores it in obj. v is trimmed and env-resolved. */
static int apply(void *obj, const struct key *k, const char *v, char *msg, size_t n)
{
    char *field = (char *)obj + k->off;
    unsigned long long u;
    const char *end;
    size_t sz;
    int ms;
    money_t m;

    size_t len = strlen(v);
    if (k->max && len > k->max) {
        snprintf(msg, n, "%zu bytes, longer than the limit of %zu", len, k->max);
        return -1;
    }
    switch (k->type) {
    case T_STR:
    case T_ADDR:
    case T_HEADER:
    case T_FILE:
        return set_text((char **)(void *)field, k, v, msg, n);
    case T_SIZE:
        if (config_parse_size(v, &sz) < 0) {
            snprintf(msg, n, "'%s' is not a size (1024, 64k, 8m, 1g)", v);
            return -1;
        }
        if ((long long)sz < k->lo || (long long)sz > k->hi)
            return range_error(k, msg, n);
        *(size_t *)(void *)field = sz;
        return 0;
    case T_DUR:
        if (config_parse_duration_ms(v, &ms) < 0) {
            snprintf(msg, n, "'%s' is not a duration (500ms, 10s, 2m, 1h)", v);
            return -1;
        }
        if (ms < k->lo || ms > k->hi)
            return range_error(k, msg, n);
        *(int *)(void *)field = ms;
        return 0;
    case T_INT:
    case T_I64:
        if (config_parse_u64(v, &u, &end) < 0 || *end) {
            snprintf(msg, n, "'%s' is not a whole number", v);
            return -1;
        }
        if (u > (unsigned long long)k->hi || (long long)u < k->lo)
            return range_error(k, msg, n);
        if (k->type == T_INT)
            *(int *)(void *)field = (int)u;
        else
            *(int64_t *)(void *)field = (int64_t)u;
        return 0;
    case T_ENUM:
        return config_parse_enum(v, k->names, (int *)(void *)field, msg, n);
    case T_MONEY:
        if (money_parse_usd(v, &m) < 0 || m < 0) {
            snprintf(msg, n, "'%s' is not a USD amount like 9 or 0.50", v);
            return -1;
        }
        *(money_t *)(void *)field = m;
        return 0;
    case T_FUNC:
        return k->set(obj, v, msg, n);
    }
    return -1;
}

/* Gives every key of sect its default in obj. Defaults are written in the
 * table as text and parsed like a file's value, so they obey the same rules. */
static int apply_defaults(void *obj, enum sect s)
{
    char msg[256];
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const struct key *k = &keys[i];
        if (k->sect != s)
            continue;
        if (k->def) {
            if (apply(obj, k, k->def, msg, sizeof msg) < 0)
                return -1;
        } else if (k->type == T_MONEY) {
            *(money_t *)(void *)((char *)obj + k->off) = -1;
        } else if (k->type == T_I64) {
            *(int64_t *)(void *)((char *)obj + k->off) = -1;
        }
    }
    return 0;
}

/* Frees the text fields the table owns in obj. */
static void free_fields(void *obj, enum sect s)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        if (keys[i].sect == s && is_text(keys[i].type)) {
            char **f = (char **)(void *)((char *)obj + keys[i].off);
            free(*f);
            *f = NULL;
        }
    }
}

/* -------- template instances -------- */

static void *instance(struct config *c, enum sect s, size_t idx)
{
    switch (s) {
    case S_UPSTREAM:
        return &c->upstreams[idx];
    case S_PLAN:
        return &c->plans[idx];
    case S_TENANT:
        return &c->tenants[idx];
    default:
        return c;
    }
}

static const char *instance_name(struct config *c, enum sect s, size_t idx)
{
    return s == S_UPSTREAM ? c->upstreams[idx].name
           : s == S_PLAN   ? c->plans[idx].name
                           : c->tenants[idx].name;
}

static size_t *instance_count(struct config *c, enum sect s)
{
    return s == S_UPSTREAM ? &c->n_upstreams : s == S_PLAN ? &c->n_plans : &c->n_tenants;
}

/* Appends a [s name] instance with its defaults; *idx is its index. */
static int add_instance(struct config *c, enum sect s, const char *name, size_t *idx)
{
    size_t *cnt = instance_count(c, s);
    size_t size = s == S_UPSTREAM ? sizeof(struct cfg_upstream)
                  : s == S_PLAN   ? sizeof(struct cfg_plan)
                                  : sizeof(struct cfg_tenant);
    void **arr = s == S_UPSTREAM ? (void **)&c->upstreams
                 : s == S_PLAN   ? (void **)&c->plans
                                 : (void **)&c->tenants;
    char *copy = strdup(name);
    void *grown = copy ? realloc(*arr, (*cnt + 1) * size) : NULL;
    if (!grown) {
        free(copy);
        return -1;
    }
    *arr = grown;
    void *obj = (char *)grown + *cnt * size;
    memset(obj, 0, size);
    if (s == S_UPSTREAM)
        ((struct cfg_upstream *)obj)->name = copy;
    else if (s == S_PLAN)
        ((struct cfg_plan *)obj)->name = copy;
    else
        ((struct cfg_tenant *)obj)->name = copy;
    *idx = (*cnt)++;
    return apply_defaults(obj, s);
}

/* The default url of a built-in upstream (a provider of the table); NULL
 * for any other name. */
static const char *builtin_url(const char *name)
{
    const struct provider *pv = provider_find(name);
    return pv ? pv->default_url : NULL;
}

/* -------- where things were seen -------- */

static int remember(struct parser *p, const struct key *k)
{
    if (p->n_seen == p->cap_seen) {
        size_t cap = p->cap_seen ? p->cap_seen * 2 : 64;
        struct seen *s = realloc(p->seen, cap * sizeof *s);
        if (!s)
            return -1;
        p->seen = s;
        p->cap_seen = cap;
    }
    p->seen[p->n_seen++] = (struct seen){p->sect, p->idx, k, p->line, false};
    return 0;
}

/* The line of key name (NULL: of the header) in section (s, idx); 0 if it
 * is not in the file. */
static int seen_at(const struct parser *p, enum sect s, size_t idx, const char *name)
{
    for (size_t i = 0; i < p->n_seen; i++) {
        const struct seen *e = &p->seen[i];
        if (e->sect == s && e->idx == idx && (name ? e->k && strcmp(e->k->name, name) == 0 : !e->k))
            return e->line;
    }
    return 0;
}

/* The key was written but its value reported bad. */
static bool rejected(const struct parser *p, enum sect s, size_t idx, const char *name)
{
    for (size_t i = 0; i < p->n_seen; i++) {
        const struct seen *e = &p->seen[i];
        if (e->sect == s && e->idx == idx && e->k && strcmp(e->k->name, name) == 0)
            return e->rejected;
    }
    return false;
}

/* Where to point an error about key name: its line, else its section's
 * header, else 0 (the file as a whole). */
static int line_of(const struct parser *p, enum sect s, size_t idx, const char *name)
{
    int line = name ? seen_at(p, s, idx, name) : 0;
    return line ? line : seen_at(p, s, idx, NULL);
}

/* -------- the reader: lines, sections, syntax -------- */

static const char *find_sep(const char *s, const char *chars)
{
    bool was_space = false;
    while (*s && !strchr(chars, *s) &&
           !(ini_allow_inline_comments && was_space && strchr(ini_inline_comment_prefixes, *s))) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static void begin_section(struct parser *p, char *text)
{
    char *name = config_trim(text);
    size_t wlen = strcspn(name, " \t");
    char *rest = config_trim(name + wlen);
    name[wlen] = '\0';
    snprintf(p->label, sizeof p->label, "%s%s%s", name, *rest ? " " : "", rest);
    p->sect = S_NONE;
    p->skip = true;
    p->idx = 0;

    enum sect s = S_NONE;
    for (size_t i = 1; i < ARRAY_LEN(sects); i++)
        if (strcmp(name, sects[i].name) == 0)
            s = (enum sect)i;
    if (s == S_NONE) {
        fail_at(p, p->line, "unknown section [%s]", p->label);
        return;
    }
    size_t idx = 0;
    if (!sects[s].named) {
        if (*rest) {
            fail_at(p, p->line, "section [%s] takes no name", name);
            return;
        }
    } else {
        if (!*rest) {
            fail_at(p, p->line, "section [%s] needs a name: [%s NAME]", name, name);
            return;
        }
        char msg[128];
        if (config_check_name(rest, msg, sizeof msg) < 0) {
            fail_at(p, p->line, "[%s]: %s", p->label, msg);
            return;
        }
        size_t cnt = *instance_count(p->c, s);
        for (idx = 0; idx < cnt && strcmp(instance_name(p->c, s, idx), rest) != 0; idx++)
            ;
    }
    int first = seen_at(p, s, idx, NULL);
    if (first) {
        fail_at(p, p->line, "duplicate section [%s] (first at line %d)", p->label, first);
        return;
    }
    if (sects[s].named && add_instance(p->c, s, rest, &idx) < 0) {
        fail_at(p, p->line, "out of memory");
        return;
    }
    p->sect = s;
    p->idx = idx;
    p->skip = false;
    if (remember(p, NULL) < 0)
        fail_at(p, p->line, "out of memory");
}

/* Looks at a line before inih does: section headers change p->sect (inih
 * calls the handler only for keys), and lines inih would reject are
 * reported here with their line. Returns false if the line is to be hidden. */
static bool scan_line(struct parser *p, char *s)
{
    if (p->line == 1 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    s = config_trim(s);
    if (!*s || strchr(ini_start_comment_prefixes, *s))
        return true;
    if (*s == '[') {
        char *end = (char *)find_sep(s + 1, "]");
        if (*end != ']') {
            fail_at(p, p->line, "missing ']' in section header");
            p->sect = S_NONE;
            p->skip = true;
            return false;
        }
        char *after = end + 1;
        while (isspace((unsigned char)*after))
            after++;
        if (*after && !strchr(ini_start_comment_prefixes, *after)) {
            fail_at(p, p->line, "unexpected text after ']'");
            p->sect = S_NONE;
            p->skip = true;
            return false;
        }
        *end = '\0';
        begin_section(p, s + 1);
        return true;
    }
    const char *sep = find_sep(s, "=:");
    if (*sep != '=' && *sep != ':') {
        fail_at(p, p->line, "expected 'key = value' or '[section]'");
        return false;
    }
    return true;
}

/* An ini_reader: one physical line per call, so p->line is exact. A line
 * longer than inih's buffer is an error, never split into two lines. */
static char *reader(char *str, int num, void *stream)
{
    struct parser *p = stream;
    ssize_t got = getline(&p->buf, &p->cap, p->f);
    if (got < 0 || num < 3)
        return NULL;
    p->line++;
    size_t len = strlen(p->buf);
    while (len && (p->buf[len - 1] == '\n' || p->buf[len - 1] == '\r'))
        p->buf[--len] = '\0';
    str[0] = '\0';
    if (len > (size_t)num - 3) {
        fail_at(p, p->line, "line is longer than %d characters", num - 3);
        return str;
    }
    memcpy(str, p->buf, len + 1);
    if (!scan_line(p, p->buf))
        str[0] = '\0';
    return str;
}

/* The inih handler: one key = value of the current section. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parser *p = user;
    char msg[384], *env = NULL;
    if (p->skip)
        return 1; /* the section header was reported already */
    if (p->sect == S_NONE) {
        fail_at(p, p->line, "key '%s' outside any section", name);
        return 1;
    }
    if (!*name) {
        fail_at(p, p->line, "missing key name before '='");
        return 1;
    }
    const struct key *k = NULL;
    for (size_t i = 0; i < ARRAY_LEN(keys) && !k; i++)
        if (keys[i].sect == p->sect && strcmp(keys[i].name, name) == 0)
            k = &keys[i];
    if (!k) {
        fail_at(p, p->line, "unknown key '%s' in [%s]", name, p->label);
        return 1;
    }
    int first = seen_at(p, p->sect, p->idx, name);
    if (first) {
        fail_at(p, p->line, "duplicate key '%s' in [%s] (first at line %d)", name, p->label, first);
        return 1;
    }
    if (remember(p, k) < 0) {
        fail_at(p, p->line, "out of memory");
        return 1;
    }
    if (config_resolve_env(name, value, &env, msg, sizeof msg) < 0) {
        fail_at(p, p->line, "%s", msg);
        return 1;
    }
    if (env)
        value = config_trim(env);
    if (apply(instance(p->c, p->sect, p->idx), k, value, msg, sizeof msg) < 0) {
        fail_at(p, p->line, "%s: %s", name, msg);
        p->seen[p->n_seen - 1].rejected = true;
    }
    free(env);
    return 1;
}

/* -------- checks across keys, after the whole file -------- */

static void finish_upstreams(struct parser *p)
{
    struct config *c = p->c;
    char msg[256];
    size_t in_file = c->n_upstreams;

    for (size_t b = 0; provider_at(b); b++) {
        size_t idx;
        const struct provider *pv = provider_at(b);
        if (config_upstream(c, pv->name))
            continue;
        if (add_instance(c, S_UPSTREAM, pv->name, &idx) < 0 ||
            config_set_url(&c->upstreams[idx], pv->default_url, msg, sizeof msg) < 0) {
            fail_at(p, 0, "out of memory");
            return;
        }
    }
    for (size_t i = 0; i < c->n_upstreams; i++) {
        struct cfg_upstream *u = &c->upstreams[i];
        bool builtin = builtin_url(u->name) != NULL;
        int head = i < in_file ? line_of(p, S_UPSTREAM, i, NULL) : 0;
        if (!u->url && builtin && config_set_url(u, builtin_url(u->name), msg, sizeof msg) < 0)
            fail_at(p, head, "%s", msg);
        /* A url or prefix that was written but rejected is reported already. */
        if (!u->url && !builtin && !rejected(p, S_UPSTREAM, i, "url"))
            fail_at(p, head, "[upstream %s] needs url = https://host[/base]", u->name);
        if (builtin && u->kind && strcmp(u->kind, u->name) != 0)
            fail_at(p, line_of(p, S_UPSTREAM, i, "kind"),
                    "kind: [upstream %s] is a built-in route and must be kind %s", u->name,
                    u->name);
        if (!u->kind && !(u->kind = strdup(builtin ? u->name : "openai")))
            fail_at(p, head, "out of memory");
        if (!builtin && !u->prefix && !rejected(p, S_UPSTREAM, i, "prefix"))
            fail_at(p, head,
                    "[upstream %s] needs prefix = /%s (only openai, anthropic and "
                    "gemini have built-in routes)",
                    u->name, u->name);
        for (size_t j = 0; j < i && u->prefix; j++)
            if (c->upstreams[j].prefix && strcmp(c->upstreams[j].prefix, u->prefix) == 0)
                fail_at(p, line_of(p, S_UPSTREAM, i, "prefix"),
                        "prefix: %s is already used by [upstream %s]", u->prefix,
                        c->upstreams[j].name);
    }
}

/* A plan's cap when it sets target_margin instead of budget_monthly: its
 * monthly price (a yearly one over 12) less the margin, rounded down. */
static money_t margin_cap(const struct cfg_plan *pl)
{
    money_t month = pl->price_period == PRICE_PERIOD_YEAR ? pl->price / 12 : pl->price;
    return (money_t)((__int128)month * (10000 - pl->target_margin_bp) / 10000);
}

/* A plan's allowance keys, together: one allowance, a policy for past it,
 * and an overage only where it is billed. */
static void finish_allowance(struct parser *p, size_t i)
{
    const struct cfg_plan *pl = &p->c->plans[i];
    bool has = pl->included_tokens >= 0 || pl->included_requests >= 0;
    if (pl->included_tokens >= 0 && pl->included_requests >= 0)
        fail_at(p, line_of(p, S_PLAN, i, "included_requests"),
                "included_requests: set it or included_tokens in [plan %s], not both", pl->name);
    if (has && pl->on_allowance == ON_ALLOWANCE_UNSET && !rejected(p, S_PLAN, i, "on_allowance"))
        fail_at(p,
                line_of(p, S_PLAN, i,
                        pl->included_tokens >= 0 ? "included_tokens" : "included_requests"),
                "on_allowance: missing in [plan %s]: say what happens past the allowance "
                "(overage, block or downgrade)",
                pl->name);
    if (!has && pl->on_allowance != ON_ALLOWANCE_UNSET)
        fail_at(p, line_of(p, S_PLAN, i, "on_allowance"),
                "on_allowance: [plan %s] has no allowance (included_tokens or included_requests)",
                pl->name);
    if (!has && pl->overage_kind != OVERAGE_NONE)
        fail_at(p, line_of(p, S_PLAN, i, "overage"),
                "overage: [plan %s] has no allowance (included_tokens or included_requests) to "
                "bill past",
                pl->name);
    else if (has && pl->overage_kind != OVERAGE_NONE && pl->on_allowance != ON_ALLOWANCE_OVERAGE &&
             pl->on_allowance != ON_ALLOWANCE_UNSET)
        fail_at(p, line_of(p, S_PLAN, i, "overage"),
                "overage: [plan %s] does not serve past its allowance (on_allowance is not "
                "overage)",
                pl->name);
    if (pl->on_allowance == ON_ALLOWANCE_OVERAGE && pl->overage_kind == OVERAGE_NONE)
        fail_at(p, line_of(p, S_PLAN, i, "on_allowance"),
                "on_allowance: overage needs overage = USD per 1M tokens (or per request) or "
                "cost + N%% in [plan %s]",
                pl->name);
    if (pl->on_allowance == ON_ALLOWANCE_DOWNGRADE && pl->n_downgrade == 0 &&
        !rejected(p, S_PLAN, i, "downgrade"))
        fail_at(p, line_of(p, S_PLAN, i, "on_allowance"),
                "on_allowance: downgrade needs downgrade = from > to in [plan %s]", pl->name);
}

static void finish_plans(struct parser *p)
{
    struct config *c = p->c;
    size_t idx;

    if (c->n_plans == 0) {
        /* No plans: one without caps, so a minimal file runs. */
        if (add_instance(c, S_PLAN, c->default_plan, &idx) < 0)
            fail_at(p, 0, "out of memory");
    } else if (!config_plan(c, c->default_plan) && !rejected(p, S_SERVER, 0, "default_plan")) {
        int line = line_of(p, S_SERVER, 0, "default_plan");
        fail_at(p, line ? line : line_of(p, S_PLAN, 0, NULL),
                "default_plan: no [plan %s] (tenants without a plan get it)", c->default_plan);
    }
    for (size_t i = 0; i < c->n_plans; i++) {
        const struct cfg_plan *pl = &c->plans[i];
        if (pl->on_exceed == ON_EXCEED_DOWNGRADE && pl->n_downgrade == 0 &&
            !rejected(p, S_PLAN, i, "downgrade"))
            fail_at(p, line_of(p, S_PLAN, i, "on_exceed"),
                    "on_exceed: downgrade needs downgrade = from > to in [plan %s]", pl->name);
        if (pl->target_margin_bp >= 0 && pl->budget_monthly >= 0)
            fail_at(p, line_of(p, S_PLAN, i, "target_margin"),
                    "target_margin: set it or budget_monthly in [plan %s], not both", pl->name);
        else if (pl->target_margin_bp >= 0) /* the cap follows the price */
            c->plans[i].budget_monthly = margin_cap(pl);
        if (pl->hard_limit >= 0 && pl->budget_monthly >= 0 && pl->hard_limit < pl->budget_monthly)
            fail_at(p, line_of(p, S_PLAN, i, "hard_limit"),
                    "hard_limit: is below budget_monthly in [plan %s]", pl->name);
        if (pl->cache == CACHE_MODE_PLAN) /* "plan" is a tenant's word */
            fail_at(p, line_of(p, S_PLAN, i, "cache"),
                    "cache: off, on or ask in [plan %s] (plan is for [tenant] sections)", pl->name);
        finish_allowance(p, i);
    }
    for (size_t i = 0; i < c->n_tenants; i++) {
        const struct cfg_tenant *t = &c->tenants[i];
        if (t->plan && !config_plan(c, t->plan))
            fail_at(p, line_of(p, S_TENANT, i, "plan"), "plan: no [plan %s] for [tenant %s]",
                    t->plan, t->name);
        const struct cfg_plan *pl = config_plan(c, t->plan ? t->plan : c->default_plan);
        if (t->included_tokens >= 0 && pl && pl->included_tokens < 0)
            fail_at(p, line_of(p, S_TENANT, i, "included_tokens"),
                    "included_tokens: [plan %s] of [tenant %s] has no token allowance (set "
                    "included_tokens and on_allowance there)",
                    pl->name, t->name);
        if (t->included_requests >= 0 && pl && pl->included_requests < 0)
            fail_at(p, line_of(p, S_TENANT, i, "included_requests"),
                    "included_requests: [plan %s] of [tenant %s] has no request allowance (set "
                    "included_requests and on_allowance there)",
                    pl->name, t->name);
    }
}

/* The trust model's keys, together (README "Trust model"). */
static void finish_trust(struct parser *p)
{
    struct config *c = p->c;
    const char *addrs[] = {c->listen, c->tls_listen};
    const char *names[] = {"listen", "tls_listen"};
    for (size_t i = 0; i < ARRAY_LEN(addrs); i++) {
        if (!addrs[i] || c->client_token || c->trust_network || config_addr_is_loopback(addrs[i]))
            continue;
        fail_at(p, line_of(p, S_SERVER, 0, names[i]),
                "%s: %s is not a loopback address and no client_token is set: anyone who reaches "
                "it could bill or drain any tenant; set [server] client_token, or trust_network "
                "= yes when only trusted apps can reach this network",
                names[i], addrs[i]);
    }
    if (c->plan_header && !c->trust_plan_header && !c->plan_header_allow &&
        !rejected(p, S_SERVER, 0, "plan_header"))
        fail_at(p, line_of(p, S_SERVER, 0, "plan_header"),
                "plan_header: would be ignored: set trust_plan_header = yes (apps may name any "
                "plan) or list the plans they may name in plan_header_allow");
    if (c->plan_header_allow) {
        char *list = strdup(c->plan_header_allow), *save = NULL;
        for (char *t = list ? strtok_r(list, ", \t", &save) : NULL; t;
             t = strtok_r(NULL, ", \t", &save))
            if (!config_plan(c, t))
                fail_at(p, line_of(p, S_SERVER, 0, "plan_header_allow"),
                        "plan_header_allow: no [plan %s]", t);
        free(list);
    }
    if (c->tenant_pattern && c->tenant_policy != TENANT_POLICY_CONFIGURED)
        fail_at(p, line_of(p, S_SERVER, 0, "tenant_pattern"),
                "tenant_pattern: only used with tenant_policy = configured");
    if (c->tenant_pattern) {
        /* anchored: "acme-.*" must not admit "x-acme-1" */
        size_t n = strlen(c->tenant_pattern) + 5;
        char *anchored = malloc(n);
        regex_t *re = malloc(sizeof(*re));
        if (anchored && re) {
            snprintf(anchored, n, "^(%s)$", c->tenant_pattern);
            if (regcomp(re, anchored, REG_EXTENDED | REG_NOSUB) == 0) {
                c->tenant_re = re;
                re = NULL;
            }
        }
        if (!c->tenant_re && !rejected(p, S_SERVER, 0, "tenant_pattern"))
            fail_at(p, line_of(p, S_SERVER, 0, "tenant_pattern"), "tenant_pattern: cannot compile");
        free(anchored);
        free(re);
    }
}

/* A downgrade target must have a price: an unpriced one would be charged
 * at the fallback (often the highest) price, the opposite of a downgrade. */
static void downgrades_priced(struct parser *p)
{
    struct config *c = p->c;
    for (size_t i = 0; i < c->n_plans; i++)
        for (size_t k = 0; k < c->plans[i].n_downgrade; k++)
            if (!pricing_lookup(c->pricing, c->plans[i].downgrade[k].to))
                fail_at(p, line_of(p, S_PLAN, i, "downgrade"),
                        "downgrade: %s has no price in %s (a downgrade target must be priced)",
                        c->plans[i].downgrade[k].to, c->pricing_file);
}

/* [redis] ca_file, cert_file, key_file: only with rediss:// (else they
 * would do nothing), cert and key together, and loadable as OpenSSL will
 * load them at start, so -t finds a bad file. */
static void finish_redis_tls(struct parser *p)
{
    struct config *c = p->c;
    struct redis_url u;
    char err[600];
    int line = line_of(p, S_REDIS, 0, c->redis_cert_file ? "cert_file" : "ca_file");
    if (!c->redis_ca_file && !c->redis_cert_file && !c->redis_key_file)
        return;
    bool tls = redis_url_parse(c->redis_url, &u, err, sizeof(err)) == 0 && u.kind == REDIS_URL_TLS;
    redis_url_free(&u);
    if (!tls) {
        fail_at(p, line, "ca_file, cert_file and key_file need a rediss:// url");
        return;
    }
    if (!c->redis_cert_file != !c->redis_key_file) {
        fail_at(p, line, "cert_file and key_file go together");
        return;
    }
    struct tls_client *tc = tls_client_new(c->redis_ca_file, err, sizeof(err));
    if (!tc || tls_client_use(tc, c->redis_cert_file, c->redis_key_file, err, sizeof(err)) < 0)
        fail_at(p, line, "%s", err);
    tls_client_free(tc);
}

static void finish(struct parser *p)
{
    struct config *c = p->c;
    char perr[1024] = "";

    if (c->tls_listen && (!c->tls_cert || !c->tls_key) && !rejected(p, S_SERVER, 0, "tls_cert") &&
        !rejected(p, S_SERVER, 0, "tls_key"))
        fail_at(p, line_of(p, S_SERVER, 0, "tls_listen"), "tls_listen: needs tls_cert and tls_key");
    finish_redis_tls(p);
    if ((c->records_rotate_bytes > 0 || c->records_rotate_daily) &&
        (strcmp(c->records_file, "-") == 0 || strncmp(c->records_file, "/dev/", 5) == 0))
        fail_at(p, line_of(p, S_RECORDS, 0, "rotate"),
                "rotate: file = %s is a stream, not a file tollgate can rotate", c->records_file);
    finish_upstreams(p);
    finish_plans(p);
    finish_trust(p);

    /* a relative pricing path is the config file's neighbour, wherever
     * tollgate was started from */
    const char *slash = strrchr(p->path, '/');
    if (c->pricing_file[0] != '/' && slash) {
        char *joined = NULL;
        if (asprintf(&joined, "%.*s/%s", (int)(slash - p->path), p->path, c->pricing_file) < 0) {
            fail_at(p, 0, "out of memory");
            return;
        }
        free(c->pricing_file);
        c->pricing_file = joined;
    }
    c->pricing = pricing_load(c->pricing_file, perr, sizeof perr);
    if (!c->pricing) {
        if (perr[0])
            fail_raw(p, perr);
        else
            fail_at(p, line_of(p, S_PRICING, 0, "file"), "file: cannot load %s", c->pricing_file);
    } else {
        downgrades_priced(p);
        if (c->unknown_model == UNKNOWN_MODEL_PRICE_AS &&
            !pricing_lookup(c->pricing, c->price_as_model)) {
            fail_at(p, line_of(p, S_PRICING, 0, "unknown_model"),
                    "unknown_model: price_as:%s has no price in %s", c->price_as_model,
                    c->pricing_file);
        }
    }
}

/* -------- public -------- */

static void config_free(struct config *c)
{
    for (enum sect s = S_SERVER; s <= S_CACHE; s++)
        if (!sects[s].named)
            free_fields(c, s);
    for (size_t i = 0; i < c->n_upstreams; i++) {
        struct cfg_upstream *u = &c->upstreams[i];
        free_fields(u, S_UPSTREAM);
        free(u->name);
        free(u->url);
        free(u->host);
        free(u->base_path);
    }
    for (size_t i = 0; i < c->n_plans; i++) {
        free_fields(&c->plans[i], S_PLAN);
        config_free_downgrades(&c->plans[i]);
        free(c->plans[i].name);
    }
    for (size_t i = 0; i < c->n_tenants; i++) {
        free_fields(&c->tenants[i], S_TENANT);
        free(c->tenants[i].name);
    }
    free(c->upstreams);
    free(c->plans);
    free(c->tenants);
    free(c->price_as_model);
    if (c->tenant_re) {
        regfree(c->tenant_re);
        free(c->tenant_re);
    }
    if (c->pricing)
        pricing_free(c->pricing);
    free(c->path);
    free(c);
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    struct parser p = {.path = path, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';

    p.c = calloc(1, sizeof *p.c);
    if (!p.c || !(p.c->path = strdup(path))) {
        fail_at(&p, 0, "out of memory");
        goto fail;
    }
    atomic_init(&p.c->refs, 1);
    for (enum sect s = S_SERVER; s <= S_CACHE; s++) {
        if (!sects[s].named && apply_defaults(p.c, s) < 0) {
            fail_at(&p, 0, "out of memory");
            goto fail;
        }
    }
    if (!(p.f = fopen(path, "r"))) {
        fail_at(&p, 0, "cannot open: %s", strerror(errno));
        goto fail;
    }
    /* Continuation lines would make an indented key part of the previous
     * value; this flag is process-wide, so it is restored right after. */
    bool multiline = ini_allow_multiline;
    ini_allow_multiline = false;
    int rc = ini_parse_stream(reader, &p, on_key, &p);
    ini_allow_multiline = multiline;
    if (rc == -2)
        fail_at(&p, 0, "out of memory");
    else if (rc > 0 && p.n_err == 0)
        fail_at(&p, rc, "syntax error");
    if (ferror(p.f))
        fail_at(&p, 0, "read error");
    finish(&p);
    if (p.n_err)
        goto fail;
    fclose(p.f);
    free(p.buf);
    free(p.seen);
    return p.c;
fail:
    if (p.f)
        fclose(p.f);
    free(p.buf);
    free(p.seen);
    if (p.c)
        config_free(p.c);
    return NULL;
}

struct config *config_ref(struct config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void config_unref(struct config *c)
{
    /* acq_rel: the last holder sees every write made by the others. */
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

const struct cfg_upstream *config_upstream(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_upstreams; i++)
        if (strcmp(c->upstreams[i].name, name) == 0)
            return &c->upstreams[i];
    return NULL;
}

const struct cfg_plan *config_plan(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_plans; i++)
        if (strcmp(c->plans[i].name, name) == 0)
            return &c->plans[i];
    return NULL;
}

const struct cfg_tenant *config_tenant(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_tenants; i++)
        if (strcmp(c->tenants[i].name, name) == 0)
            return &c->tenants[i];
    return NULL;
}

const struct cfg_upstream *config_upstream_for_path(const struct config *c, const char *path)
{
    const struct cfg_upstream *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->n_upstreams; i++) {
        const char *pre = c->upstreams[i].prefix;
        size_t len = pre ? strlen(pre) : 0;
        if (len > best_len && strncmp(path, pre, len) == 0 &&
            (path[len] == '\0' || path[len] == '/')) {
            best = &c->upstreams[i];
            best_len = len;
        }
    }
    return best;
}

void config_each_key(void (*fn)(const char *section, const char *key, void *arg), void *arg)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        fn(sects[keys[i].sect].doc_name, keys[i].name, arg);
}

void config_each_key_info(void (*fn)(const struct config_key_info *k, void *arg), void *arg)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        struct config_key_info info = {
            .section = sects[keys[i].sect].doc_name,
            .key = keys[i].name,
            .def = keys[i].def,
            .reloadable = !(keys[i].flags & K_RESTART),
            .max_len = keys[i].max,
            .text = is_text(keys[i].type) || keys[i].type == T_FUNC,
            .doc = keys[i].doc,
        };
        fn(&info, arg);
    }
}

/* Bytes of a non-text value in its struct. */
static size_t value_size(const struct key *k)
{
    return k->type == T_FUNC    ? k->span
           : k->type == T_SIZE  ? sizeof(size_t)
           : k->type == T_I64   ? sizeof(int64_t)
           : k->type == T_MONEY ? sizeof(money_t)
                                : sizeof(int);
}

static bool same(const struct config *a, const struct config *b, const struct key *k)
{
    const char *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
    if (is_text(k->type)) {
        const char *sa = *(char *const *)(const void *)fa, *sb = *(char *const *)(const void *)fb;
        return (!sa && !sb) || (sa && sb && strcmp(sa, sb) == 0);
    }
    size_t size = value_size(k);
    return memcmp(fa, fb, size) == 0;
}

/* Copies old's value of k into nw. */
static int keep_old(const struct config *old, struct config *nw, const struct key *k)
{
    const char *fo = (const char *)old + k->off;
    char *fn = (char *)nw + k->off;
    if (is_text(k->type)) {
        const char *so = *(char *const *)(const void *)fo;
        char *copy = so ? strdup(so) : NULL;
        if (so && !copy)
            return -1;
        char **dst = (char **)(void *)fn;
        free(*dst);
        *dst = copy;
        return 0;
    }
    size_t size = value_size(k);
    memcpy(fn, fo, size);
    return 0;
}

int config_restart_keys(const struct config *old, struct config *nw, char *buf, size_t n)
{
    int count = 0;
    size_t used = 0;
    if (n)
        buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const struct key *k = &keys[i];
        if (!(k->flags & K_RESTART) || sects[k->sect].named || value_size(k) == 0 ||
            same(old, nw, k))
            continue;
        count++;
        if (used < n) {
            int w = snprintf(buf + used, n - used, "%s%s.%s", used ? ", " : "", sects[k->sect].name,
                             k->name);
            if (w > 0)
                used += (size_t)w;
        }
        if (keep_old(old, nw, k) < 0)
            return -1;
    }
    return count;
}
