/* trust.h: who may use the API port, for which tenant and plan (README
 * "Trust model"). The client token proves the caller is one of the apps;
 * tenant_policy bounds the tenants a caller can create; the plan header is
 * believed only as far as the config says. Pure checks on a config
 * snapshot: the proxy turns a refusal into its answer. */
#ifndef TOLLGATE_TRUST_H
#define TOLLGATE_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct config;
struct http_request;

/* The header apps send the shared secret in: apart from Authorization,
 * which the provider SDKs fill with the provider's key. Never forwarded. */
#define TRUST_CLIENT_TOKEN_HEADER "X-Tollgate-Client-Token"

/* True when no client_token is configured, or the request carries exactly
 * one X-Tollgate-Client-Token equal to one of them (compared in constant
 * time: digests of both sides, every configured token compared). */
bool trust_client_ok(const struct config *cfg, const struct http_request *hr);

/* Tenant, user, feature and plan ids: 1 to TRUST_ID_MAX - 1 bytes. */
#define TRUST_ID_MAX 129

/* True when v is a valid id: 1-128 characters of A-Z a-z 0-9 . _ : @ + = / -
 * (the identity headers' alphabet, and the usage API's ids). */
bool trust_valid_id(const char *v);

/* Reads the identity header name (NULL: not configured) into out
 * (TRUST_ID_MAX bytes). Returns 0, 1 when absent (out ""), -1 when
 * repeated or malformed, with a message for the client in err. */
int trust_identity(const struct http_request *hr, const char *name, char *out, char *err,
                   size_t errlen) MUST_CHECK;

/* True when tenant may be served: tenant_policy open, or a [tenant]
 * section names it, or it matches tenant_pattern. */
bool trust_tenant_allowed(const struct config *cfg, const char *tenant);

/* True when a [tenant] section names tenant or it matches tenant_pattern,
 * whatever tenant_policy says. */
bool trust_tenant_configured(const struct config *cfg, const char *tenant);

/* True when the plan header may name plan: trust_plan_header = yes, or
 * plan is in plan_header_allow. */
bool trust_plan_allowed(const struct config *cfg, const char *plan);

#endif
