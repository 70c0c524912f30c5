/* trust.c: the trust model's checks. Tokens are compared as SHA-256
 * digests with CRYPTO_memcmp, against every configured token without an
 * early exit, so neither a token's content nor which one matched shows in
 * the timing. */
#include "proxy/trust.h"

#include <regex.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "core/config.h"
#include "http/client.h"

#define LIST_SEP ", \t"

/* Reads one identity header into out. Returns 0, 1 when absent, -1 when
 * repeated or malformed (the message is written to err). */
int trust_identity(const struct http_request *hr, const char *name, char *out, char *err,
                   size_t errlen)
{
    out[0] = '\0';
    if (!name)
        return 1;
    int count;
    const char *v = client_header(hr, name, &count);
    if (!v)
        return 1;
    if (count > 1 || !trust_valid_id(v)) {
        snprintf(err, errlen,
                 "the %s header must appear once and hold 1-128 characters of A-Z a-z 0-9 . _ : "
                 "@ + = / -",
                 name);
        return -1;
    }
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

bool trust_client_ok(const struct config *cfg, const struct http_request *hr)
{
    if (!cfg->client_token)
        return true;
    int count = 0;
    const char *sent = client_header(hr, TRUST_CLIENT_TOKEN_HEADER, &count);
    if (!sent || count != 1)
        return false;
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)sent, strlen(sent), got);
    bool ok = false;
    for (const char *p = cfg->client_token; *p;) {
        p += strspn(p, LIST_SEP);
        size_t len = strcspn(p, LIST_SEP);
        if (!len)
            break;
        SHA256((const unsigned char *)p, len, want);
        ok |= CRYPTO_memcmp(want, got, sizeof(got)) == 0;
        p += len;
    }
    return ok;
}

bool trust_valid_id(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= TRUST_ID_MAX)
        return false;
    for (const char *p = v; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("._:@+=/-", ch)))
            return false;
    }
    return true;
}

bool trust_tenant_configured(const struct config *cfg, const char *tenant)
{
    if (config_tenant(cfg, tenant))
        return true;
    return cfg->tenant_re && regexec(cfg->tenant_re, tenant, 0, NULL, 0) == 0;
}

bool trust_tenant_allowed(const struct config *cfg, const char *tenant)
{
    return cfg->tenant_policy == TENANT_POLICY_OPEN || trust_tenant_configured(cfg, tenant);
}

bool trust_plan_allowed(const struct config *cfg, const char *plan)
{
    if (cfg->trust_plan_header)
        return true;
    size_t n = strlen(plan);
    for (const char *p = cfg->plan_header_allow; p && *p;) {
        p += strspn(p, LIST_SEP);
        size_t len = strcspn(p, LIST_SEP);
        if (len == n && n && strncmp(p, plan, n) == 0)
            return true;
        p += len;
    }
    return false;
}
