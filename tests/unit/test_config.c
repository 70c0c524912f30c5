/* test_config.c: the config loader. Snippets from tables are written to a
 * temporary directory (which holds its own conf/pricing.conf, so defaults
 * resolve there) and loaded; bad ones must fail with the exact
 * "file:line: message" lines, good ones must give the expected values. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/config.h"
#include "providers/pricing.h"

static char tmpdir[] = "/tmp/tollgate-test-config-XXXXXX";

static const char pricing_text[] = "[gpt-4o]\nprovider = openai\ninput = 2.50\noutput = 10.00\n"
                                   "[gpt-4o-mini]\nprovider = openai\ninput = 0.15\n"
                                   "output = 0.60\n"
                                   "[claude-haiku-4-5]\nprovider = anthropic\ninput = 1\n"
                                   "output = 5\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

/* Loads text as t.conf in the temporary directory. */
static struct config *load(const char *text, char *err, size_t n)
{
    write_file("t.conf", text);
    return config_load("t.conf", err, n);
}

#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
/* 197 characters: the longest line the INI parser takes. */
#define LINE197 "; " X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 "xxxxx"

static const struct {
    const char *name;
    const char *text;
    const char *err; /* all of err, exactly */
} bad_cases[] = {
    {"unknown key", "[server]\nlisten = 127.0.0.1:8080\nlisen = 1\n",
     "t.conf:3: unknown key 'lisen' in [server]"},
    {"unknown key in template", "\n[plan free]\nbudget = 1\n",
     "t.conf:3: unknown key 'budget' in [plan free]"},
    {"unknown section", "\n[sever]\nlisten = x\n", "t.conf:2: unknown section [sever]"},
    {"too long line", "[server]\n" LINE197 "x\nlisten = bad\n",
     "t.conf:2: line is longer than 197 characters\n"
     "t.conf:3: listen: 'bad' is not host:port"},
    {"too long value", "[alerts]\nwebhook = https://example.com/" X100 X100 "\n",
     "t.conf:2: line is longer than 197 characters"},
    {"duplicate key", "[server]\nlisten = 127.0.0.1:1\n\nlisten = 127.0.0.1:2\n",
     "t.conf:4: duplicate key 'listen' in [server] (first at line 2)"},
    {"duplicate section", "[server]\n[redis]\n[server]\n",
     "t.conf:3: duplicate section [server] (first at line 1)"},
    {"duplicate template", "[plan free]\n[plan free]\n",
     "t.conf:2: duplicate section [plan free] (first at line 1)"},
    {"key outside section", "listen = 127.0.0.1:1\n", "t.conf:1: key 'listen' outside any section"},
    {"no equals", "[server]\nlisten\n", "t.conf:2: expected 'key = value' or '[section]'"},
    {"missing bracket", "; c\n[server\n", "t.conf:2: missing ']' in section header"},
    {"text after section", "[server] x\n", "t.conf:1: unexpected text after ']'"},
    {"template without name", "[plan]\n", "t.conf:1: section [plan] needs a name: [plan NAME]"},
    {"fixed with name", "[server main]\n", "t.conf:1: section [server] takes no name"},
    {"bad template name", "[tenant a{b}]\n",
     "t.conf:1: [tenant a{b}]: 'a{b}' is not a valid name (1-48 letters, digits, - . _ : @)"},
    {"env unset", "[server]\nadmin_token = env:TOLLGATE_TEST_UNSET\n",
     "t.conf:2: admin_token: environment variable TOLLGATE_TEST_UNSET is not set"},
    {"env empty name", "[server]\nadmin_token = env:\n",
     "t.conf:2: admin_token: env: needs a variable name"},
    {"bad size", "[server]\nmax_body = 8x\n",
     "t.conf:2: max_body: '8x' is not a size (1024, 64k, 8m, 1g)"},
    {"bad duration", "[server]\nheader_timeout = 10\n",
     "t.conf:2: header_timeout: '10' is not a duration (500ms, 10s, 2m, 1h)"},
    {"duration range", "[redis]\ntimeout = 2m\n",
     "t.conf:2: timeout: must be between 1ms and 60000ms"},
    {"int range", "[server]\nworkers = 2000\n", "t.conf:2: workers: must be between 0 and 1024"},
    {"negative int", "[server]\nworkers = -1\n", "t.conf:2: workers: '-1' is not a whole number"},
    {"bad enum", "[server]\nmissing_tenant = maybe\n",
     "t.conf:2: missing_tenant: 'maybe' is not one of reject, allow"},
    {"empty required", "[server]\nlisten =\n", "t.conf:2: listen: needs a value"},
    {"bad header", "[server]\ntenant_header = X Tenant\n",
     "t.conf:2: tenant_header: 'X Tenant' is not a header name"},
    {"bad log level", "[server]\nlog_level = loud\n",
     "t.conf:2: log_level: 'loud' is not one of error, warn, info, debug"},
    {"bad log format", "[server]\nlog_format = xml\n",
     "t.conf:2: log_format: 'xml' is not one of plain, json"},
    {"bad redis url", "[redis]\nurl = 127.0.0.1:6379\n",
     "t.conf:2: url: bad redis url: want redis://, rediss://, unix://, redis-sentinel:// or "
     "redis-cluster://"},
    {"tls without cert", "[server]\ntls_listen = 127.0.0.1:8443\n",
     "t.conf:2: tls_listen: needs tls_cert and tls_key"},
    {"tls cert missing", "[server]\ntls_cert = /nonexistent/tls.crt\n",
     "t.conf:2: tls_cert: cannot read /nonexistent/tls.crt: No such file or directory"},
    {"custom upstream without prefix", "[upstream groq]\nurl = https://api.groq.com/openai\n",
     "t.conf:1: [upstream groq] needs prefix = /groq (only openai, anthropic and gemini have "
     "built-in routes)"},
    {"custom upstream without url", "\n[upstream groq]\nprefix = /groq\n",
     "t.conf:2: [upstream groq] needs url = https://host[/base]"},
    {"bad kind", "[upstream vllm]\nurl = http://127.0.0.1:8000\nkind = mistral\nprefix = /vllm\n",
     "t.conf:3: kind: 'mistral' is not one of openai, anthropic, gemini"},
    {"built-in with other kind", "[upstream openai]\nkind = gemini\n",
     "t.conf:2: kind: [upstream openai] is a built-in route and must be kind openai"},
    {"prefix taken",
     "[upstream a]\nurl = http://127.0.0.1:1\nprefix = /x\n"
     "[upstream b]\nurl = http://127.0.0.1:2\nprefix = /x\n",
     "t.conf:6: prefix: /x is already used by [upstream a]"},
    {"prefix over routes", "[upstream a]\nurl = http://127.0.0.1:1\nprefix = /v1\n",
     "t.conf:3: prefix: /v1 would take over the provider routes (/v1, /v1beta)"},
    {"prefix without slash", "[upstream a]\nurl = http://127.0.0.1:1\nprefix = a\n",
     "t.conf:3: prefix: must look like /name (a leading '/', no trailing '/')"},
    {"bad url", "[upstream openai]\nurl = ftp://api.openai.com\n",
     "t.conf:2: url: 'ftp://api.openai.com' is not http[s]://host[:port][/base]"},
    {"ca_file missing", "[upstream openai]\nca_file = /nonexistent/ca.pem\n",
     "t.conf:2: ca_file: cannot read /nonexistent/ca.pem: No such file or directory"},
    {"tenant plan missing", "[tenant acme]\nplan = gold\n",
     "t.conf:2: plan: no [plan gold] for [tenant acme]"},
    {"default plan missing", "[plan pro]\nprice = 1\n",
     "t.conf:1: default_plan: no [plan free] (tenants without a plan get it)"},
    {"default plan named", "[server]\ndefault_plan = basic\n[plan pro]\n",
     "t.conf:2: default_plan: no [plan basic] (tenants without a plan get it)"},
    {"downgrade without list", "[plan free]\non_exceed = downgrade\n",
     "t.conf:2: on_exceed: downgrade needs downgrade = from > to in [plan free]"},
    {"downgrade syntax", "[plan free]\ndowngrade = gpt-4o gpt-4o-mini\n",
     "t.conf:2: downgrade: expected 'from > to' pairs separated by ','"},
    {"downgrade twice", "[plan free]\ndowngrade = a > b, a > c\n",
     "t.conf:2: downgrade: a is listed twice"},
    {"downgrade to itself", "[plan free]\ndowngrade = a > a\n",
     "t.conf:2: downgrade: a is downgraded to itself"},
    {"negative money", "[plan free]\nbudget_monthly = -1\n",
     "t.conf:2: budget_monthly: '-1' is not a USD amount like 9 or 0.50"},
    {"hard limit below budget", "[plan free]\nbudget_monthly = 10\nhard_limit = 5\n",
     "t.conf:3: hard_limit: is below budget_monthly in [plan free]"},
    {"thresholds order", "[alerts]\nthresholds = 100%, 80%\n",
     "t.conf:2: thresholds: thresholds must be in ascending order"},
    {"thresholds syntax", "[alerts]\nthresholds = 80%%\n",
     "t.conf:2: thresholds: expected percents from 1% to 1000% separated by ','"},
    {"bad webhook", "[alerts]\nwebhook = hooks.example.com/secret\n",
     "t.conf:2: webhook: expected an http:// or https:// URL"},
    {"unknown_model", "[pricing]\nunknown_model = guess\n",
     "t.conf:2: unknown_model: 'guess' is not one of highest, allow, block, price_as:MODEL"},
    {"price_as unpriced", "[pricing]\n\nunknown_model = price_as:nope-1\n",
     "t.conf:3: unknown_model: price_as:nope-1 has no price in conf/pricing.conf"},
    {"pricing file missing", "[pricing]\nfile = missing.conf\n",
     "missing.conf: No such file or directory"},
    {"no follow-up for bad url", "[upstream a]\nurl = ftp://x\nprefix = /a\n",
     "t.conf:2: url: 'ftp://x' is not http[s]://host[:port][/base]"},
    {"downgrade target unpriced", "[plan free]\ndowngrade = gpt-4o > gpt-9-nano\n",
     "t.conf:2: downgrade: gpt-9-nano has no price in conf/pricing.conf (a downgrade target must "
     "be priced)"},
    {"no follow-up for bad downgrade", "[plan free]\non_exceed = downgrade\ndowngrade = a b\n",
     "t.conf:3: downgrade: expected 'from > to' pairs separated by ','"},
    {"no follow-up for bad default_plan", "[server]\ndefault_plan = a b\n[plan pro]\n",
     "t.conf:2: default_plan: 'a b' is not a valid name (1-48 letters, digits, - . _ : @)"},
    {"key_prefix over its limit", "[redis]\nkey_prefix = " X10 X10 X10 X10 X10 X10 "12345\n",
     "t.conf:2: key_prefix: 65 bytes, longer than the limit of 64"},
    {"plan name over its limit", "[plan " X10 X10 X10 X10 X10 "]\n",
     "t.conf:1: [plan " X10 X10 X10 X10 X10 "]: '" X10 X10 X10 X10 X10
     "' is not a valid name (1-48 letters, digits, - . _ : @)"},
    {"no follow-up for bad tls_cert",
     "[server]\ntls_listen = 127.0.0.1:8443\ntls_cert = /nonexistent/c\ntls_key = /nonexistent/k\n",
     "t.conf:3: tls_cert: cannot read /nonexistent/c: No such file or directory\n"
     "t.conf:4: tls_key: cannot read /nonexistent/k: No such file or directory"},
    /* the trust model: a non-loopback port needs a client token or trust_network */
    {"non-loopback listen without client_token", "[server]\nlisten = 0.0.0.0:8080\n",
     "t.conf:2: listen: 0.0.0.0:8080 is not a loopback address and no client_token is set: anyone "
     "who reaches it could bill or drain any tenant; set [server] client_token, or trust_network "
     "= yes when only trusted apps can reach this network"},
    {"v6 any listen without client_token", "[server]\nlisten = [::]:8080\n",
     "t.conf:2: listen: [::]:8080 is not a loopback address and no client_token is set: anyone "
     "who reaches it could bill or drain any tenant; set [server] client_token, or trust_network "
     "= yes when only trusted apps can reach this network"},
    {"short client_token", "[server]\nclient_token = 0123456789abcde, 0123456789abcdef\n",
     "t.conf:2: client_token: needs at least 16 characters (a secret that cannot be guessed)"},
    {"5-character admin_token", "[server]\nadmin_token = abcde\n",
     "t.conf:2: admin_token: needs at least 16 characters (a secret that cannot be guessed)"},
    {"plan_header without trust", "[server]\nplan_header = X-Plan\n",
     "t.conf:2: plan_header: would be ignored: set trust_plan_header = yes (apps may name any "
     "plan) or list the plans they may name in plan_header_allow"},
    {"plan_header_allow names no plan",
     "[server]\nplan_header = X-Plan\nplan_header_allow = free, gold\n",
     "t.conf:3: plan_header_allow: no [plan gold]"},
    {"tenant_pattern with open policy", "[server]\ntenant_pattern = acme-.*\n",
     "t.conf:2: tenant_pattern: only used with tenant_policy = configured"},
    {"bad tenant_pattern", "[server]\ntenant_policy = configured\ntenant_pattern = a(\n",
     "t.conf:3: tenant_pattern: 'a(' is not a POSIX extended regular expression: Unmatched ( or "
     "\\("},
    /* tollgate -t checks (issue 18) */
    {"tenant_header = Host", "[server]\ntenant_header = Host\n",
     "t.conf:2: tenant_header: 'Host' has a meaning in HTTP or to the provider: choose another "
     "header"},
    {"tenant_header = Authorization", "[server]\ntenant_header = authorization\n",
     "t.conf:2: tenant_header: 'authorization' has a meaning in HTTP or to the provider: choose "
     "another header"},
    {"user_header = x-api-key", "[server]\nuser_header = X-Api-Key\n",
     "t.conf:2: user_header: 'X-Api-Key' has a meaning in HTTP or to the provider: choose another "
     "header"},
    {"feature_header in tollgate's namespace",
     "[server]\nfeature_header = X-Tollgate-Client-Token\n",
     "t.conf:2: feature_header: 'X-Tollgate-Client-Token': X-Tollgate-* headers are tollgate's "
     "own"},
    {"key_prefix with a brace", "[redis]\nkey_prefix = tg{x}:\n",
     "t.conf:2: key_prefix: 'tg{x}:' holds '{' or '}': keys carry the tenant in a {hash tag}, and "
     "a brace in the prefix would move every tenant into one cluster slot"},
    {"all errors collected", "[server]\nmax_body = x\n[bogus]\nfoo = 1\n[redis]\nfoo = 2\n",
     "t.conf:2: max_body: 'x' is not a size (1024, 64k, 8m, 1g)\n"
     "t.conf:3: unknown section [bogus]\n"
     "t.conf:6: unknown key 'foo' in [redis]"},
};

static void test_bad(void)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
        char err[2048];
        struct config *c = load(bad_cases[i].text, err, sizeof err);
        if (c || strcmp(err, bad_cases[i].err) != 0) {
            fprintf(stderr, "  case '%s':\n    got  \"%s\"\n    want \"%s\"\n", bad_cases[i].name,
                    c ? "(loaded)" : err, bad_cases[i].err);
            check_failed_now = 1;
        }
        config_unref(c);
    }
}

static void test_missing_file(void)
{
    char err[256];
    CHECK(config_load("nope.conf", err, sizeof err) == NULL);
    CHECK_STR(err, "nope.conf: cannot open: No such file or directory");
}

/* Layouts libinih must read the way the file looks. */
static const struct {
    const char *name;
    const char *text;
    const char *listen;
    size_t max_body;
} good_cases[] = {
    {"empty", "", "127.0.0.1:8080", 8u << 20},
    {"comments", "; c\n# c\n[server]\nlisten = 127.0.0.1:1 ; inline\n", "127.0.0.1:1", 8u << 20},
    {"indented keys", "[server]\n  listen = 127.0.0.1:2\n  max_body = 64k\n", "127.0.0.1:2",
     64u << 10},
    {"crlf", "[server]\r\nlisten = 127.0.0.1:3\r\nmax_body = 1m\r\n", "127.0.0.1:3", 1u << 20},
    {"bom", "\xEF\xBB\xBF[server]\nlisten = 127.0.0.1:4\n", "127.0.0.1:4", 8u << 20},
    {"no final newline", "[server]\nlisten = 127.0.0.1:5", "127.0.0.1:5", 8u << 20},
    {"longest line", "[server]\n" LINE197 "\nmax_body = 2k\n", "127.0.0.1:8080", 2048},
    {"v6 listen", "[server]\nlisten = [::1]:8080\n", "[::1]:8080", 8u << 20},
    {"colon separator", "[server]\nlisten: 127.0.0.1:6\n", "127.0.0.1:6", 8u << 20},
    {"loopback 127/8", "[server]\nlisten = 127.1.2.3:7\n", "127.1.2.3:7", 8u << 20},
    {"localhost", "[server]\nlisten = localhost:7\n", "localhost:7", 8u << 20},
    {"any with client_token", "[server]\nlisten = 0.0.0.0:7\nclient_token = 0123456789abcdef\n",
     "0.0.0.0:7", 8u << 20},
    {"any on a trusted network", "[server]\nlisten = 0.0.0.0:7\ntrust_network = yes\n", "0.0.0.0:7",
     8u << 20},
};

static void test_good(void)
{
    for (size_t i = 0; i < ARRAY_LEN(good_cases); i++) {
        char err[1024];
        struct config *c = load(good_cases[i].text, err, sizeof err);
        if (!c) {
            fprintf(stderr, "  case '%s': %s\n", good_cases[i].name, err);
            check_failed_now = 1;
            continue;
        }
        CHECK_STR(c->listen, good_cases[i].listen);
        CHECK_INT(c->max_body, good_cases[i].max_body);
        config_unref(c);
    }
}

static void test_defaults(void)
{
    char err[1024];
    struct config *c = load("", err, sizeof err);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_INT(atomic_load(&c->refs), 1);
    CHECK_STR(c->path, "t.conf");
    CHECK_STR(c->listen, "127.0.0.1:8080");
    CHECK(c->tls_listen == NULL);
    CHECK_STR(c->admin_listen, "127.0.0.1:9090");
    CHECK(c->admin_token == NULL);
    CHECK_STR(c->tenant_header, "X-Tenant-Id");
    CHECK_STR(c->user_header, "X-User-Id");
    CHECK_STR(c->feature_header, "X-Feature");
    CHECK(c->plan_header == NULL);
    CHECK_INT(c->missing_tenant, MISSING_TENANT_REJECT);
    CHECK_STR(c->default_plan, "free");
    CHECK_INT(c->max_body, 8 << 20);
    CHECK_INT(c->max_header_size, 32 << 10);
    CHECK_INT(c->workers, 0);
    CHECK_INT(c->max_connections, 10000);
    CHECK_INT(c->header_timeout_ms, 10000);
    CHECK_INT(c->body_timeout_ms, 60000);
    CHECK_INT(c->keepalive_timeout_ms, 75000);
    CHECK_INT(c->send_timeout_ms, 60000);
    CHECK_INT(c->drain_timeout_ms, 30000);
    CHECK_STR(c->log_level, "info");
    CHECK(!c->log_json);
    CHECK_INT(c->connect_timeout_ms, 10000);
    CHECK_INT(c->first_byte_timeout_ms, 300000);
    CHECK_INT(c->idle_timeout_ms, 120000);
    CHECK_INT(c->pool_size, 128);
    CHECK_STR(c->redis_url, "redis://127.0.0.1:6379/0");
    CHECK_STR(c->key_prefix, "tollgate:");
    CHECK_INT(c->on_failure, ON_FAILURE_OPEN);
    CHECK_INT(c->redis_timeout_ms, 250);
    CHECK_STR(c->pricing_file, "conf/pricing.conf");
    CHECK_INT(c->unknown_model, UNKNOWN_MODEL_HIGHEST);
    CHECK(c->pricing != NULL);
    CHECK_STR(c->records_file, "var/usage.jsonl");
    CHECK(c->redis_stream == NULL);
    CHECK(c->webhook == NULL);
    CHECK_INT(c->n_thresholds, 2);
    CHECK_INT(c->thresholds[0], 80);
    CHECK_INT(c->thresholds[1], 100);

    /* The built-in upstreams, and a plan without caps so the file runs. */
    static const struct {
        const char *name, *host;
    } up[] = {{"openai", "api.openai.com"},
              {"anthropic", "api.anthropic.com"},
              {"gemini", "generativelanguage.googleapis.com"}};
    CHECK_INT(c->n_upstreams, 3);
    for (size_t i = 0; i < ARRAY_LEN(up); i++) {
        const struct cfg_upstream *u = config_upstream(c, up[i].name);
        CHECK(u != NULL);
        if (!u)
            continue;
        CHECK_STR(u->kind, up[i].name);
        CHECK_STR(u->host, up[i].host);
        CHECK(u->tls);
        CHECK_INT(u->port, 443);
        CHECK_STR(u->base_path, "");
        CHECK(u->prefix == NULL);
        CHECK(u->api_key == NULL);
    }
    CHECK_INT(c->n_plans, 1);
    const struct cfg_plan *pl = config_plan(c, "free");
    CHECK(pl != NULL);
    if (pl) {
        CHECK_INT(pl->price, 0);
        CHECK_INT(pl->budget_monthly, -1);
        CHECK_INT(pl->budget_daily, -1);
        CHECK_INT(pl->hard_limit, -1);
        CHECK_INT(pl->rpm, 0);
        CHECK_INT(pl->on_exceed, ON_EXCEED_BLOCK);
    }
    CHECK_INT(c->n_tenants, 0);
    config_unref(c);
}

static void test_env(void)
{
    char err[1024];
    setenv("TOLLGATE_TEST_TOKEN", "  s3cret-token-0123 \t", 1);
    setenv("TOLLGATE_TEST_BODY", "1m", 1);
    struct config *c = load("[server]\nadmin_token = env:TOLLGATE_TEST_TOKEN\n"
                            "max_body = env:TOLLGATE_TEST_BODY\n",
                            err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->admin_token, "s3cret-token-0123");
        CHECK_INT(c->max_body, 1 << 20);
    }
    config_unref(c);
    unsetenv("TOLLGATE_TEST_TOKEN");
    unsetenv("TOLLGATE_TEST_BODY");
    c = load("[server]\nadmin_token = env:TOLLGATE_TEST_TOKEN\n", err, sizeof err);
    CHECK(c == NULL);
    CHECK_STR(err, "t.conf:2: admin_token: environment variable TOLLGATE_TEST_TOKEN is not set");
    config_unref(c);
    /* a value from the environment is held to the key's limit too */
    setenv("TOLLGATE_TEST_PREFIX", X100, 1);
    c = load("[redis]\nkey_prefix = env:TOLLGATE_TEST_PREFIX\n", err, sizeof err);
    CHECK(c == NULL);
    CHECK_STR(err, "t.conf:2: key_prefix: 100 bytes, longer than the limit of 64");
    config_unref(c);
    setenv("TOLLGATE_TEST_PREFIX", X10 X10 X10 X10 X10 X10 "1234", 1);
    c = load("[redis]\nkey_prefix = env:TOLLGATE_TEST_PREFIX\n", err, sizeof err);
    CHECK(c != NULL);
    if (c)
        CHECK_INT(strlen(c->key_prefix), 64);
    config_unref(c);
    unsetenv("TOLLGATE_TEST_PREFIX");
}

/* A relative pricing path is found next to the config file, not in the
 * directory tollgate runs in (which holds a conf/pricing.conf here). */
static void test_pricing_beside_config(void)
{
    char err[1024];
    mkdir("sub", 0700);
    mkdir("sub/conf", 0700);
    write_file("sub/prices.conf", pricing_text);
    write_file("sub/t.conf", "[pricing]\nfile = prices.conf\n");
    struct config *c = config_load("sub/t.conf", err, sizeof err);
    CHECK(c != NULL);
    if (c)
        CHECK_STR(c->pricing_file, "sub/prices.conf");
    config_unref(c);
    /* the default, conf/pricing.conf, is looked for in sub/ too */
    write_file("sub/t.conf", "[server]\n");
    c = config_load("sub/t.conf", err, sizeof err);
    CHECK(c == NULL);
    CHECK(strstr(err, "sub/conf/pricing.conf") != NULL);
    config_unref(c);
    write_file("sub/conf/pricing.conf", pricing_text);
    c = config_load("sub/t.conf", err, sizeof err);
    CHECK(c != NULL);
    config_unref(c);
    unlink("sub/conf/pricing.conf");
    unlink("sub/prices.conf");
    unlink("sub/t.conf");
    rmdir("sub/conf");
    rmdir("sub");
}

static void test_sizes(void)
{
    static const struct {
        const char *in;
        int ok;
        size_t out;
    } t[] = {
        {"8m", 1, 8u << 20},
        {"64k", 1, 64u << 10},
        {"64K", 1, 64u << 10},
        {"1024", 1, 1024},
        {"1g", 1, 1u << 30},
        {"0", 1, 0},
        {"", 0, 0},
        {"k", 0, 0},
        {"-1", 0, 0},
        {"8mb", 0, 0},
        {"1.5m", 0, 0},
        {" 8m", 0, 0},
        {"8 m", 0, 0},
        {"99999999999999999999", 0, 0},
        {"17179869184g", 0, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        size_t out = 12345;
        int rc = config_parse_size(t[i].in, &out);
        if (rc != (t[i].ok ? 0 : -1) || (t[i].ok && out != t[i].out)) {
            fprintf(stderr, "  size '%s': rc %d out %zu\n", t[i].in, rc, out);
            check_failed_now = 1;
        }
    }
}

static void test_durations(void)
{
    static const struct {
        const char *in;
        int ok;
        int out;
    } t[] = {
        {"10s", 1, 10000},
        {"500ms", 1, 500},
        {"2m", 1, 120000},
        {"1h", 1, 3600000},
        {"0", 1, 0},
        {"0ms", 1, 0},
        {"10", 0, 0},
        {"", 0, 0},
        {"s", 0, 0},
        {"-1s", 0, 0},
        {"1.5s", 0, 0},
        {"10 s", 0, 0},
        {"10sec", 0, 0},
        {"1d", 0, 0},
        {"597h", 0, 0},
        {"2147483647ms", 1, 2147483647},
        {"2147483648ms", 0, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        int out = 12345;
        int rc = config_parse_duration_ms(t[i].in, &out);
        if (rc != (t[i].ok ? 0 : -1) || (t[i].ok && out != t[i].out)) {
            fprintf(stderr, "  duration '%s': rc %d out %d\n", t[i].in, rc, out);
            check_failed_now = 1;
        }
    }
}

static void test_urls(void)
{
    static const struct {
        const char *in;
        int ok;
        bool tls;
        const char *host;
        int port;
        const char *base;
    } t[] = {
        {"https://api.openai.com", 1, true, "api.openai.com", 443, ""},
        {"https://api.openai.com/", 1, true, "api.openai.com", 443, ""},
        {"http://127.0.0.1", 1, false, "127.0.0.1", 80, ""},
        {"http://127.0.0.1:8001", 1, false, "127.0.0.1", 8001, ""},
        {"https://api.groq.com/openai", 1, true, "api.groq.com", 443, "/openai"},
        {"https://h:8443/a/b//", 1, true, "h", 8443, "/a/b"},
        {"http://[::1]:9000/x", 1, false, "::1", 9000, "/x"},
        {"https://[::1]", 1, true, "::1", 443, ""},
        {"ftp://h", 0, false, NULL, 0, NULL},
        {"api.openai.com", 0, false, NULL, 0, NULL},
        {"https://", 0, false, NULL, 0, NULL},
        {"https://:443", 0, false, NULL, 0, NULL},
        {"https://h:", 0, false, NULL, 0, NULL},
        {"https://h:0", 0, false, NULL, 0, NULL},
        {"https://h:65536", 0, false, NULL, 0, NULL},
        {"https://h:12ab", 0, false, NULL, 0, NULL},
        {"https://user:pw@h", 0, false, NULL, 0, NULL},
        {"https://h/x?q=1", 0, false, NULL, 0, NULL},
        {"https://h/x#f", 0, false, NULL, 0, NULL},
        {"https://h x", 0, false, NULL, 0, NULL},
        {"https://[::1", 0, false, NULL, 0, NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        bool tls = false;
        char *host = NULL, *base = NULL;
        int port = 0;
        int rc = config_parse_url(t[i].in, &tls, &host, &port, &base);
        bool good = rc == (t[i].ok ? 0 : -1);
        if (good && t[i].ok)
            good = tls == t[i].tls && strcmp(host, t[i].host) == 0 && port == t[i].port &&
                   strcmp(base, t[i].base) == 0;
        if (!good) {
            fprintf(stderr, "  url '%s': rc %d tls %d host %s port %d base %s\n", t[i].in, rc, tls,
                    host ? host : "-", port, base ? base : "-");
            check_failed_now = 1;
        }
        if (rc == 0) {
            free(host);
            free(base);
        }
    }
}

static const char full_text[] =
    "[server]\n"
    "admin_listen =\n"
    "plan_header = X-Tenant-Plan\n"
    "plan_header_allow = free, starter\n"
    "tenant_policy = configured\n"
    "tenant_pattern = t-[0-9]+\n"
    "missing_tenant = allow\n"
    "log_format = json\n"
    "[upstream openai]\n"
    "url = http://127.0.0.1:18080/base/\n"
    "api_key = sk-test\n"
    "[upstream groq]\n"
    "url = https://api.groq.com/openai\n"
    "prefix = /groq\n"
    "[upstream claude-proxy]\n"
    "url = http://127.0.0.1:18081\n"
    "kind = anthropic\n"
    "prefix = /groq/claude\n"
    "[pricing]\n"
    "unknown_model = price_as: gpt-4o\n"
    "[records]\n"
    "redis_stream = usage\n"
    "[alerts]\n"
    "webhook = https://hooks.example.com/services/T/B/X\n"
    "thresholds = 50, 90%,100%\n"
    "[plan free]\n"
    "budget_monthly = 0.50\n"
    "[plan starter]\n"
    "price = 9\n"
    "price_period = year\n"
    "budget_monthly = 9\n"
    "budget_daily = 1\n"
    "on_exceed = downgrade\n"
    "downgrade = gpt-4o > gpt-4o-mini, claude-sonnet-4-5 > claude-haiku-4-5\n"
    "hard_limit = 20\n"
    "rpm = 60\n"
    "tpm = 100000\n"
    "block_message = You have used this month's included AI budget. Upgrade for more.\n"
    "[tenant acme]\n"
    "plan = starter\n"
    "budget_monthly = 100\n"
    "[tenant beta]\n";

static void test_full(void)
{
    char err[1024];
    struct config *c = load(full_text, err, sizeof err);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK(c->admin_listen == NULL);
    CHECK_STR(c->plan_header, "X-Tenant-Plan");
    CHECK_INT(c->missing_tenant, MISSING_TENANT_ALLOW);
    CHECK(c->log_json);
    CHECK_INT(c->unknown_model, UNKNOWN_MODEL_PRICE_AS);
    CHECK_STR(c->price_as_model, "gpt-4o");
    CHECK_STR(c->redis_stream, "usage");
    CHECK_STR(c->webhook, "https://hooks.example.com/services/T/B/X");
    CHECK_INT(c->n_thresholds, 3);
    CHECK_INT(c->thresholds[0], 50);
    CHECK_INT(c->thresholds[2], 100);

    /* Two from the file first, then the missing built-ins. */
    CHECK_INT(c->n_upstreams, 5);
    const struct cfg_upstream *u = config_upstream(c, "openai");
    CHECK(u && !u->tls && u->port == 18080);
    CHECK(u && strcmp(u->base_path, "/base") == 0 && strcmp(u->api_key, "sk-test") == 0);
    u = config_upstream(c, "groq");
    CHECK(u && strcmp(u->kind, "openai") == 0 && strcmp(u->prefix, "/groq") == 0);
    CHECK(u && u->tls && u->port == 443 && strcmp(u->base_path, "/openai") == 0);
    CHECK(config_upstream(c, "anthropic") && config_upstream(c, "gemini"));
    CHECK(config_upstream(c, "claude-proxy") &&
          strcmp(config_upstream(c, "claude-proxy")->kind, "anthropic") == 0);

    static const struct {
        const char *path, *upstream;
    } routes[] = {
        {"/groq/v1/chat/completions", "groq"},
        {"/groq", "groq"},
        {"/groq/claude/v1/messages", "claude-proxy"},
        {"/groqx/v1", NULL},
        {"/v1/chat/completions", NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(routes); i++) {
        const struct cfg_upstream *r = config_upstream_for_path(c, routes[i].path);
        if (routes[i].upstream)
            CHECK(r && strcmp(r->name, routes[i].upstream) == 0);
        else
            CHECK(r == NULL);
    }

    CHECK_INT(c->n_plans, 2);
    const struct cfg_plan *pl = config_plan(c, "starter");
    CHECK(pl != NULL);
    if (pl) {
        CHECK_INT(pl->price, 9 * MONEY_PER_USD);
        CHECK_INT(pl->price_period, PRICE_PERIOD_YEAR);
        CHECK_INT(pl->budget_monthly, 9 * MONEY_PER_USD);
        CHECK_INT(pl->budget_daily, 1 * MONEY_PER_USD);
        CHECK_INT(pl->hard_limit, 20 * MONEY_PER_USD);
        CHECK_INT(pl->on_exceed, ON_EXCEED_DOWNGRADE);
        CHECK_INT(pl->rpm, 60);
        CHECK_INT(pl->tpm, 100000);
        CHECK_STR(pl->block_message,
                  "You have used this month's included AI budget. Upgrade for more.");
        CHECK_INT(pl->n_downgrade, 2);
        if (pl->n_downgrade == 2) {
            CHECK_STR(pl->downgrade[0].from, "gpt-4o");
            CHECK_STR(pl->downgrade[0].to, "gpt-4o-mini");
            CHECK_STR(pl->downgrade[1].from, "claude-sonnet-4-5");
            CHECK_STR(pl->downgrade[1].to, "claude-haiku-4-5");
        }
    }
    CHECK(config_plan(c, "free") && config_plan(c, "free")->budget_monthly == MONEY_PER_USD / 2);
    CHECK(config_plan(c, "pro") == NULL);

    CHECK_INT(c->n_tenants, 2);
    const struct cfg_tenant *t = config_tenant(c, "acme");
    CHECK(t != NULL);
    if (t) {
        CHECK_STR(t->plan, "starter");
        CHECK_INT(t->budget_monthly, 100 * MONEY_PER_USD);
        CHECK_INT(t->budget_daily, -1);
        CHECK_INT(t->hard_limit, -1);
        CHECK_INT(t->rpm, -1);
        CHECK_INT(t->tpm, -1);
    }
    t = config_tenant(c, "beta");
    CHECK(t && t->plan == NULL);
    CHECK(config_tenant(c, "gamma") == NULL);
    config_unref(c);
}

static void test_refs(void)
{
    char err[1024];
    struct config *c = load("", err, sizeof err);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK(config_ref(c) == c);
    CHECK_INT(atomic_load(&c->refs), 2);
    config_unref(c);
    CHECK_INT(atomic_load(&c->refs), 1);
    config_unref(c); /* frees: ASan reports a leak otherwise */
    config_unref(NULL);
}

static void test_restart_keys(void)
{
    char err[1024], buf[256];
    struct config *a = load("[server]\nlisten = 127.0.0.1:1\nlog_level = info\n", err, sizeof err);
    struct config *b =
        load("[server]\nlisten = 127.0.0.1:2\nlog_level = debug\n[redis]\nurl = unix:///r.sock\n"
             "[records]\nrotate = daily\n",
             err, sizeof err);
    CHECK(a && b);
    if (a && b) {
        CHECK_INT(config_restart_keys(a, b, buf, sizeof buf), 3);
        CHECK_STR(buf, "server.listen, redis.url, records.rotate");
        CHECK(!b->records_rotate_daily); /* a key set through a function too */
        /* the running values stay until a restart; the reloadable one moved */
        CHECK_STR(b->listen, "127.0.0.1:1");
        CHECK_STR(b->redis_url, a->redis_url);
        CHECK_STR(b->log_level, "debug");
        CHECK_INT(config_restart_keys(a, b, buf, sizeof buf), 0);
        CHECK_STR(buf, "");
        CHECK_INT(config_restart_keys(a, a, buf, sizeof buf), 0);
        CHECK_STR(buf, "");
    }
    config_unref(a);
    config_unref(b);
}

struct key_count {
    int total, templates;
    bool upstream_url, server_listen;
};

static void count_key(const char *section, const char *key, void *arg)
{
    struct key_count *k = arg;
    k->total++;
    k->templates += strchr(section, '*') != NULL;
    k->upstream_url |= strcmp(section, "upstream *") == 0 && strcmp(key, "url") == 0;
    k->server_listen |= strcmp(section, "server") == 0 && strcmp(key, "listen") == 0;
}

static void check_info(const struct config_key_info *k, void *arg)
{
    int *bad = arg;
    if (!k->doc || !*k->doc || !k->section || !k->key)
        (*bad)++;
    if (k->text && k->max_len == 0) {
        fprintf(stderr, "  [%s] %s: a text key without a length limit\n", k->section, k->key);
        (*bad)++;
    }
    if (strcmp(k->key, "listen") == 0 && (k->reloadable || strcmp(k->def, "127.0.0.1:8080")))
        (*bad)++;
}

static void test_each_key(void)
{
    struct key_count k = {0};
    config_each_key(count_key, &k);
    CHECK(k.total > 50);
    CHECK_INT(k.templates, 36); /* upstream 5 + plan 19 + tenant 12 */
    CHECK(k.upstream_url);
    CHECK(k.server_listen);
    int bad_info = 0;
    config_each_key_info(check_info, &bad_info);
    CHECK_INT(bad_info, 0);
}

/* target_margin: a plan's cap follows its price; the report's margin for a
 * suggested plan; what -t refuses. */
static void test_margins(void)
{
    char err[2048];
    struct config *c =
        load("[report]\ntarget_margin = 40%\n"
             "[plan free]\nprice = 0\n"
             "[plan pro]\nprice = 50\ntarget_margin = 60%\n"
             "[plan yearly]\nprice = 120\nprice_period = year\ntarget_margin = 25%\n",
             err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(c->report_target_margin_bp, 4000);
        CHECK_INT(config_plan(c, "pro")->budget_monthly, 20000000000LL);   /* $50 x 40% */
        CHECK_INT(config_plan(c, "yearly")->budget_monthly, 7500000000LL); /* $10 x 75% */
        CHECK_INT(config_plan(c, "free")->budget_monthly, -1);
        CHECK_INT(config_plan(c, "free")->target_margin_bp, -1);
        config_unref(c);
    }
    c = load("", err, sizeof err);
    CHECK(c && c->report_target_margin_bp == 5000); /* the default: 50% */
    config_unref(c);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[plan free]\nprice = 9\nbudget_monthly = 4\ntarget_margin = 50%\n",
         "target_margin: set it or budget_monthly in [plan free], not both"},
        {"[plan free]\nprice = 9\ntarget_margin = 100%\n", "expected a percent from 0% to 99%"},
        {"[plan free]\nprice = 9\ntarget_margin = half\n", "expected a percent from 0% to 99%"},
        {"[report]\ntarget_margin = off\n", "expected a percent from 0% to 99%"},
        {"[report]\ntarget_margin = 50\n", "expected a percent from 0% to 99%"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        c = load(bad[i].text, err, sizeof err);
        CHECK(c == NULL);
        if (!c && !strstr(err, bad[i].want)) {
            fprintf(stderr, "  margin case %zu: got \"%s\"\n", i, err);
            check_failed_now = 1;
        }
        config_unref(c);
    }
}

/* Allowances: the keys of a plan and a tenant, and what -t refuses, each
 * with its file:line. */
static void test_allowances(void)
{
    char err[2048];
    struct config *c =
        load("[plan growth]\nprice = 19\nincluded_tokens = 5000000\non_allowance = overage\n"
             "overage = 4.00\n"
             "[plan team]\nincluded_requests = 2000\non_allowance = overage\n"
             "overage = cost + 20%\n"
             "[plan lite]\nincluded_tokens = 100\non_allowance = downgrade\n"
             "downgrade = gpt-4o > gpt-4o-mini\n"
             "[plan free]\n"
             "[tenant acme]\nplan = growth\nincluded_tokens = 9000000\n",
             err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        const struct cfg_plan *g = config_plan(c, "growth"), *t = config_plan(c, "team");
        CHECK_INT(g->included_tokens, 5000000);
        CHECK_INT(g->included_requests, -1);
        CHECK_INT(g->on_allowance, ON_ALLOWANCE_OVERAGE);
        CHECK_INT(g->overage_kind, OVERAGE_PRICE);
        CHECK_INT(g->overage, 4000000000LL);
        CHECK_INT(t->included_requests, 2000);
        CHECK_INT(t->overage_kind, OVERAGE_MARKUP);
        CHECK_INT(t->overage_markup_bp, 2000);
        CHECK_INT(config_plan(c, "lite")->on_allowance, ON_ALLOWANCE_DOWNGRADE);
        CHECK_INT(config_plan(c, "free")->on_allowance, ON_ALLOWANCE_UNSET);
        CHECK_INT(config_plan(c, "free")->included_tokens, -1);
        CHECK_INT(config_tenant(c, "acme")->included_tokens, 9000000);
        CHECK_INT(config_tenant(c, "acme")->included_requests, -1);
        config_unref(c);
    }
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[plan free]\nincluded_tokens = 1000\n",
         "t.conf:2: on_allowance: missing in [plan free]: say what happens past the allowance "
         "(overage, block or downgrade)"},
        {"[plan free]\noverage = 4\n",
         "t.conf:2: overage: [plan free] has no allowance (included_tokens or included_requests) "
         "to bill past"},
        {"[plan free]\non_allowance = block\n",
         "t.conf:2: on_allowance: [plan free] has no allowance"},
        {"[plan free]\nincluded_tokens = 10\nincluded_requests = 5\non_allowance = block\n",
         "t.conf:3: included_requests: set it or included_tokens in [plan free], not both"},
        {"[plan free]\nincluded_tokens = 10\non_allowance = overage\n",
         "t.conf:3: on_allowance: overage needs overage = USD per 1M tokens"},
        {"[plan free]\nincluded_tokens = 10\non_allowance = block\noverage = 4\n",
         "t.conf:4: overage: [plan free] does not serve past its allowance"},
        {"[plan free]\nincluded_tokens = 10\non_allowance = downgrade\n",
         "t.conf:3: on_allowance: downgrade needs downgrade = from > to in [plan free]"},
        {"[plan free]\nincluded_tokens = 10\non_allowance = refuse\n",
         "t.conf:3: on_allowance: 'refuse' is not one of overage, block, downgrade"},
        {"[plan free]\nincluded_tokens = 10\non_allowance = overage\noverage = cost + x\n",
         "t.conf:4: overage: expected USD per 1M tokens"},
        {"[plan free]\nincluded_tokens = 0\non_allowance = block\n", "t.conf:2: included_tokens:"},
        {"[plan free]\n[tenant a]\nincluded_tokens = 10\n",
         "t.conf:3: included_tokens: [plan free] of [tenant a] has no token allowance"},
        {"[plan free]\nincluded_tokens = 10\non_allowance = block\n[tenant a]\n"
         "included_requests = 10\n",
         "t.conf:5: included_requests: [plan free] of [tenant a] has no request allowance"},
        {"[plan free]\n[tenant a]\nbilling_anchor = 0\n",
         "t.conf:3: billing_anchor: must be between 1 and 31"},
        {"[plan free]\n[tenant a]\nbilling_anchor = 32\n",
         "t.conf:3: billing_anchor: must be between 1 and 31"},
        {"[plan free]\n[tenant a]\nbilling_anchor = the 14th\n",
         "t.conf:3: billing_anchor: 'the 14th' is not a whole number"},
        {"[plan free]\nperiod = week\n",
         "t.conf:2: period: 'week': weekly billing periods are not supported"},
        {"[plan free]\nperiod = day\n", "t.conf:2: period: 'day' is not a period (month)"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        c = load(bad[i].text, err, sizeof err);
        CHECK(c == NULL);
        if (!c && !strstr(err, bad[i].want)) {
            fprintf(stderr, "  allowance case %zu: got \"%s\"\n", i, err);
            check_failed_now = 1;
        }
        config_unref(c);
    }
}

/* Per-user caps: a plan's and a tenant's, their defaults, and refusals. */
static void test_user_caps(void)
{
    char err[2048];
    struct config *c = load("[plan team]\nuser_budget_monthly = 2.50\nuser_rpm = 30\n[plan free]\n"
                            "[tenant acme]\nplan = team\nuser_budget_monthly = 5\n",
                            err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(config_plan(c, "team")->user_budget_monthly, 2500000000LL);
        CHECK_INT(config_plan(c, "team")->user_rpm, 30);
        CHECK_INT(config_plan(c, "free")->user_budget_monthly, -1);
        CHECK_INT(config_plan(c, "free")->user_rpm, 0);
        CHECK_INT(config_tenant(c, "acme")->user_budget_monthly, 5 * MONEY_PER_USD);
        CHECK_INT(config_tenant(c, "acme")->user_rpm, -1);
        config_unref(c);
    }
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[plan free]\nuser_budget_monthly = lots\n", "t.conf:2: user_budget_monthly:"},
        {"[plan free]\nuser_budget_monthly = -1\n", "t.conf:2: user_budget_monthly:"},
        {"[plan free]\nuser_rpm = -3\n", "t.conf:2: user_rpm:"},
        {"[plan free]\n[tenant a]\nuser_rpm = ten\n", "t.conf:3: user_rpm:"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        c = load(bad[i].text, err, sizeof err);
        CHECK(c == NULL);
        if (!c && !strstr(err, bad[i].want)) {
            fprintf(stderr, "  user cap case %zu: got \"%s\"\n", i, err);
            check_failed_now = 1;
        }
        config_unref(c);
    }
}

static const struct check_test tests[] = {
    {"user_caps", test_user_caps},
    {"allowances", test_allowances},
    {"margins", test_margins},
    {"bad", test_bad},
    {"missing_file", test_missing_file},
    {"good", test_good},
    {"defaults", test_defaults},
    {"env", test_env},
    {"pricing_beside_config", test_pricing_beside_config},
    {"sizes", test_sizes},
    {"durations", test_durations},
    {"urls", test_urls},
    {"full", test_full},
    {"refs", test_refs},
    {"restart_keys", test_restart_keys},
    {"each_key", test_each_key},
};

int main(void)
{
    if (!mkdtemp(tmpdir) || chdir(tmpdir) < 0 || mkdir("conf", 0700) < 0) {
        perror("test_config: temporary directory");
        return 1;
    }
    write_file("conf/pricing.conf", pricing_text);
    int rc = CHECK_MAIN("config", tests);
    unlink("conf/pricing.conf");
    unlink("t.conf");
    rmdir("conf");
    if (chdir("/") == 0)
        rmdir(tmpdir);
    return rc;
}
