/* config.h: the daemon's configuration, read from an INI file through
 * libinih. One key table (config.c) drives parsing, `tollgate -t` and the
 * docs check. A loaded config is immutable and refcounted: a reload builds a
 * new one to the side and swaps it; requests keep the snapshot they started
 * with. */
#ifndef TOLLGATE_CONFIG_H
#define TOLLGATE_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/money.h"
#include "core/util.h"
#include "providers/pricing.h"

struct pricing;

/* Longest values of the keys other modules keep copies of (every text key
 * has a limit in the key table; `tollgate -t` and reload refuse longer). */
#define CONFIG_NAME_MAX 48           /* plan, tenant and upstream section names */
#define CONFIG_KEY_PREFIX_MAX 64     /* [redis] key_prefix */
#define CONFIG_BLOCK_MESSAGE_MAX 500 /* [plan] block_message */

enum missing_tenant { MISSING_TENANT_REJECT, MISSING_TENANT_ALLOW };
enum on_failure { ON_FAILURE_OPEN, ON_FAILURE_CLOSED };
enum on_exceed { ON_EXCEED_BLOCK, ON_EXCEED_DOWNGRADE };
enum price_period { PRICE_PERIOD_MONTH, PRICE_PERIOD_YEAR };
/* [plan] on_allowance: what happens past included_tokens/included_requests. */
enum on_allowance {
    ON_ALLOWANCE_UNSET,     /* not written (an error when the plan has an allowance) */
    ON_ALLOWANCE_OVERAGE,   /* serve and bill the overage */
    ON_ALLOWANCE_BLOCK,     /* 429 allowance_exhausted */
    ON_ALLOWANCE_DOWNGRADE, /* forward with the plan's cheaper model */
};
/* [plan] overage: how units past the allowance are billed. */
enum overage_kind {
    OVERAGE_NONE,   /* not written: overage is not billed */
    OVERAGE_PRICE,  /* overage USD per 1M tokens, or per request */
    OVERAGE_MARKUP, /* "cost + N%": the AI cost of the overage plus a markup */
};
/* Paths no route table prices (route.h): refused with 403, or forwarded unpriced. */
enum unmetered_routes { UNMETERED_BLOCK, UNMETERED_ALLOW };
enum tenant_policy {
    TENANT_POLICY_OPEN,       /* any tenant id the header names */
    TENANT_POLICY_CONFIGURED, /* [tenant] sections and tenant_pattern only */
};
/* Whether a plan (or a tenant) is answered from the response cache (cache.h);
 * in the order of the key table's names. */
enum cache_mode {
    CACHE_MODE_PLAN, /* a tenant only: as its plan says */
    CACHE_MODE_OFF,  /* never, whatever the request asks */
    CACHE_MODE_ON,   /* unless the request says X-Tollgate-Cache: off */
    CACHE_MODE_ASK,  /* only requests that say X-Tollgate-Cache: on or refresh */
};

/* [upstream NAME]: where one provider's traffic goes. */
struct cfg_upstream {
    char *name;      /* section name: openai, anthropic, gemini, or any */
    char *kind;      /* provider dialect: openai | anthropic | gemini (default: name) */
    char *url;       /* as written: https://api.openai.com[/base] */
    bool tls;        /* scheme is https */
    char *host;      /* from url */
    int port;        /* from url (default 443/80) */
    char *base_path; /* path part of url without trailing '/', "" if none */
    char *prefix;    /* "/groq": requests under it come here, stripped; NULL: none (built-ins) */
    char *api_key;   /* NULL: the client's key passes through */
    char *ca_file;   /* extra CA bundle, NULL if none */
};

/* A downgrade mapping "gpt-4o > gpt-4o-mini". */
struct cfg_downgrade {
    char *from;
    char *to;
};

/* [plan NAME] */
struct cfg_plan {
    char *name;
    money_t price; /* subscription revenue per price_period */
    enum price_period price_period;
    money_t budget_monthly; /* -1: no cap */
    money_t budget_daily;   /* -1: no cap */
    enum on_exceed on_exceed;
    struct cfg_downgrade *downgrade;
    size_t n_downgrade;
    money_t hard_limit;          /* -1: none */
    int target_margin_bp;        /* -1: off; else budget_monthly = price x (1 - it) */
    int64_t rpm;                 /* 0: unlimited */
    int64_t tpm;                 /* 0: unlimited */
    money_t user_budget_monthly; /* -1: none; each end user's cap per month */
    int64_t user_rpm;            /* 0: unlimited; each end user's requests per minute */
    char *block_message;         /* NULL: a default naming the cap */
    enum cache_mode cache;       /* never CACHE_MODE_PLAN */
    /* allowance per billing period: at most one of the two is set (-1: unset) */
    int64_t included_tokens;   /* input + output tokens */
    int64_t included_requests; /* metered requests */
    enum on_allowance on_allowance;
    enum overage_kind overage_kind;
    money_t overage;       /* OVERAGE_PRICE: nano-USD per 1M tokens, or per request */
    int overage_markup_bp; /* OVERAGE_MARKUP: basis points added to the cost */
};

/* [tenant NAME]: per-customer overrides; -1 / NULL means "from the plan". */
struct cfg_tenant {
    char *name;
    char *plan;
    money_t budget_monthly;
    money_t budget_daily;
    money_t hard_limit;
    int64_t rpm;
    int64_t tpm;
    money_t user_budget_monthly; /* -1: the plan's */
    int64_t user_rpm;            /* -1: the plan's */
    enum cache_mode cache;       /* CACHE_MODE_PLAN: the plan's */
    int64_t included_tokens;     /* -1: the plan's */
    int64_t included_requests;   /* -1: the plan's */
    int64_t billing_anchor;      /* day of the month its billing period starts, 1..31 */
};

struct config {
    atomic_int refs; /* config_ref / config_unref */
    char *path;

    /* [server] */
    char *listen;     /* host:port */
    char *tls_listen; /* NULL: off */
    char *tls_cert;
    char *tls_key;
    char *admin_listen; /* NULL: off */
    char *admin_token;  /* NULL: admin API refuses everything but /healthz, /readyz */
    char *tenant_header;
    char *user_header;
    char *feature_header;
    char *plan_header; /* NULL: off */
    /* the trust model (README "Trust model", proxy/trust.h) */
    char *client_token;      /* NULL: off; secrets apps send in X-Tollgate-Client-Token, "a, b" */
    int trust_network;       /* 1: a non-loopback listen without client_token is fine */
    int trust_plan_header;   /* 1: plan_header may name any plan */
    char *plan_header_allow; /* NULL: none; plans plan_header may name, "a, b" */
    enum tenant_policy tenant_policy;
    char *tenant_pattern; /* NULL: none; with TENANT_POLICY_CONFIGURED */
    void *tenant_re;      /* regex_t: tenant_pattern compiled, anchored; NULL: none */
    enum missing_tenant missing_tenant;
    char *default_plan;
    size_t max_body;          /* bytes */
    size_t max_header_size;   /* bytes of request line + headers */
    int workers;              /* 0: one per core */
    int max_connections;      /* API connections of the process (fdlimit.h) */
    int header_timeout_ms;    /* request line + headers must arrive within this */
    int body_timeout_ms;      /* the whole body must arrive within this */
    int keepalive_timeout_ms; /* idle client connection */
    int send_timeout_ms;      /* client not reading a response */
    int drain_timeout_ms;     /* SIGTERM: how long streams may finish */
    char *log_level;
    bool log_json;

    /* upstream timeouts and pool, shared by every [upstream] */
    int connect_timeout_ms;    /* TCP connect + TLS handshake */
    int first_byte_timeout_ms; /* request sent -> response headers */
    int idle_timeout_ms;       /* gap between two body reads */
    int drain_on_abort_ms;     /* client gone: read the metered answer this long for its usage */
    int max_request_time_ms;   /* a request (a stream) is cut and settled after this */
    int pool_size;             /* idle keep-alive connections per upstream per worker */

    /* [redis] */
    char *redis_url;
    char *key_prefix;
    enum on_failure on_failure;
    int redis_timeout_ms;
    char *redis_ca_file;   /* rediss:// only: extra CAs, NULL: the system's */
    char *redis_cert_file; /* rediss:// only: client certificate, with redis_key_file */
    char *redis_key_file;
    char *journal_dir; /* worker-N.jsonl: settlements Redis missed (journal.h) */

    /* [pricing] */
    char *pricing_file;
    enum unknown_model unknown_model;
    char *price_as_model; /* with UNKNOWN_MODEL_PRICE_AS */
    enum unmetered_routes unmetered_routes;
    struct pricing *pricing; /* loaded with the config, owned */

    /* [records] */
    char *records_file;          /* "-": standard output */
    size_t records_rotate_bytes; /* rotate past this size; 0: not by size */
    bool records_rotate_daily;   /* rotate at the first record of a new UTC day */
    int records_keep;            /* rotated files kept: file.1 .. file.N */
    char *redis_stream;          /* NULL: off */
    int64_t redis_stream_maxlen; /* XADD MAXLEN ~ this */

    /* [export] */
    char *cloudevents_url;   /* NULL: off */
    char *cloudevents_token; /* NULL: no Authorization */
    char *export_source;     /* CloudEvents source */
    char *spool_dir;
    size_t spool_max;     /* bytes */
    char *otlp_endpoint;  /* NULL: off */
    char *export_ca_file; /* https sinks: extra CAs, NULL: the system's */

    /* [alerts] */
    char *webhook;     /* NULL: off */
    int thresholds[8]; /* percent, ascending */
    size_t n_thresholds;

    /* [report] */
    int report_target_margin_bp; /* margin a suggested plan must keep */

    /* [cache] (cache.h) */
    int cache_enabled;      /* 0: no request is looked up or stored */
    int cache_ttl_ms;       /* an entry's lifetime */
    size_t cache_max_entry; /* bytes: a longer answer is not stored */
    int cache_shared;       /* 1: one entry serves every tenant */
    int cache_wait_ms;      /* single flight: identical misses wait this long; 0: off */
    unsigned cache_allow;   /* enum cache_why bits the operator allows ([cache] allow) */

    struct cfg_upstream *upstreams;
    size_t n_upstreams;
    struct cfg_plan *plans;
    size_t n_plans;
    struct cfg_tenant *tenants;
    size_t n_tenants;
};

/* Loads and validates path, and the pricing file it names (a relative
 * pricing path is taken from path's directory; other relative paths from
 * the current directory). On error returns NULL and writes
 * "file:line: message" lines (one per problem) into err. The result has
 * refs == 1. Call from one thread at a time: libinih's options are process
 * globals and this flips one (multi-line values) for the parse. */
struct config *config_load(const char *path, char *err, size_t errlen) MUST_CHECK;
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* Lookups; NULL when absent. */
const struct cfg_upstream *config_upstream(const struct config *c, const char *name);
const struct cfg_plan *config_plan(const struct config *c, const char *name);
const struct cfg_tenant *config_tenant(const struct config *c, const char *name);

/* The key table, for the docs check: calls fn for every fixed key
 * ("server", "listen"), and for section templates with section "upstream *",
 * "plan *", "tenant *". */
void config_each_key(void (*fn)(const char *section, const char *key, void *arg), void *arg);

/* Parses "8m", "64k", "1024" into bytes; "10s", "500ms", "2m" into ms. */
int config_parse_size(const char *s, size_t *out) MUST_CHECK;
int config_parse_duration_ms(const char *s, int *out) MUST_CHECK;

/* One row of the key table, for `tollgate -t`, the docs check and reload. */
struct config_key_info {
    const char *section; /* "server", or a template: "upstream *" */
    const char *key;
    const char *def; /* default as written in the file; NULL: unset */
    bool reloadable; /* false: a changed value needs a restart */
    size_t max_len;  /* text values: the longest accepted, bytes; 0: not text */
    bool text;       /* the value is free text (not a number, size, duration or enum) */
    const char *doc; /* one line */
};
void config_each_key_info(void (*fn)(const struct config_key_info *k, void *arg), void *arg);

/* Splits "https://host[:port][/base]" (also http, and "[v6addr]" hosts).
 * port defaults to 443 / 80; base_path has no trailing '/' and is "" when
 * absent. On success *host and *base_path are malloc'd and owned by the
 * caller; returns -1 on anything else (query, fragment, userinfo, bad port). */
int config_parse_url(const char *url, bool *tls, char **host, int *port,
                     char **base_path) MUST_CHECK;

/* The upstream whose prefix starts path ("/groq/v1/x" -> [upstream groq]
 * with prefix = /groq; the longest prefix wins); NULL if none. */
const struct cfg_upstream *config_upstream_for_path(const struct config *c, const char *path);

/* For SIGHUP: writes the names ("server.listen, redis.url") of keys that
 * differ between old and nw but only take effect on restart into buf ("" if
 * none), and puts old's value back into nw for each, so the running process
 * keeps using one value everywhere (the admin API, the report and the
 * request path never disagree) until it restarts. Returns how many differ;
 * -1 when out of memory (nw is then unusable). */
int config_restart_keys(const struct config *old, struct config *nw, char *buf,
                        size_t n) MUST_CHECK;

#endif
