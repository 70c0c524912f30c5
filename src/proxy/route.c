/* route.c: the contract's routing table. Configured prefixes first
 * ([upstream NAME] prefix = /NAME), then the paths the providers claim
 * (provider.h: Anthropic's /v1/messages, Gemini's /v1beta, every other /v1
 * path OpenAI's); then the provider's own route table classes the path as
 * metered, free or unknown. */
#include "proxy/route.h"

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "providers/provider.h"

/* A path segment prefix: "/v1/messages" matches "/v1/messages" and
 * "/v1/messages/..." but not "/v1/messagesX". */
static bool under(const char *path, const char *p)
{
    size_t n = strlen(p);
    return strncmp(path, p, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static const char *builtin_for(const char *path)
{
    const struct provider *p = provider_claiming(path);
    return p ? p->name : NULL;
}

static const struct cfg_upstream *find(const struct config *cfg, const char *name, size_t *idx)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        if (!cfg->upstreams[i].prefix && strcmp(cfg->upstreams[i].name, name) == 0) {
            *idx = i;
            return &cfg->upstreams[i];
        }
    }
    return NULL;
}

static enum route_result classify(const char *method, struct route *out)
{
    out->row = out->prov ? provider_route_find(out->prov, method, out->endpoint) : NULL;
    out->cls = out->row ? out->row->cls : ROUTE_UNKNOWN;
    return out->prov ? ROUTE_OK : ROUTE_NOT_FOUND;
}

enum route_result route_match(const struct config *cfg, const char *method, const char *path,
                              struct route *out)
{
    out->row = NULL;
    out->cls = ROUTE_UNKNOWN;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        if (u->prefix && under(path, u->prefix)) {
            out->upstream = i;
            out->up = u;
            out->prov = provider_find(u->kind);
            out->endpoint = path + strlen(u->prefix);
            if (*out->endpoint == '\0')
                out->endpoint = "/";
            return classify(method, out);
        }
    }
    const char *name = builtin_for(path);
    if (!name)
        return ROUTE_NOT_FOUND;
    out->up = find(cfg, name, &out->upstream);
    out->prov = provider_find(out->up ? out->up->kind : name);
    out->endpoint = path;
    return out->up ? classify(method, out) : ROUTE_NOT_FOUND;
}

const struct provider *route_dialect(const struct config *cfg, const char *path)
{
    struct route r;
    if (path && route_match(cfg, NULL, path, &r) == ROUTE_OK)
        return r.prov;
    const char *name = path ? builtin_for(path) : NULL;
    const struct provider *p = provider_find(name ? name : "openai");
    return p ? p : provider_find("openai");
}

void route_refusal(const struct route *r, const char *method, char *out, size_t n)
{
    const char *why = r->row && r->row->why
                          ? r->row->why
                          : "tollgate does not know what it costs at the provider";
    snprintf(out, n,
             "%s %.200s is not metered by tollgate (%s), so it is refused: a capped tenant "
             "could spend through it. To forward such paths unmetered, set [pricing] "
             "unmetered_routes = allow",
             method ? method : "", r->endpoint ? r->endpoint : "", why);
}

bool route_base_mistake(const char *path, char *out, size_t n)
{
    static const char *const versions[] = {"/v1", "/v1beta"};
    const char *rest = NULL;
    for (size_t i = 0; i < 2 && !rest; i++)
        for (size_t j = 0; j < 2 && !rest; j++)
            if (strncmp(path, versions[i], strlen(versions[i])) == 0 &&
                under(path + strlen(versions[i]), versions[j]))
                rest = path + strlen(versions[i]) + strlen(versions[j]);
    if (!rest)
        return false;
    /* the SDK added its version to a base URL that already ended in one */
    if (under(rest, "/messages"))
        snprintf(out, n,
                 "the path %.200s repeats its version: set ANTHROPIC_BASE_URL to tollgate's "
                 "address without /v1 (http://host:port); the Anthropic SDK adds /v1 itself",
                 path);
    else if (strncmp(rest, "/models/", 8) == 0 && strchr(rest, ':'))
        snprintf(out, n,
                 "the path %.200s repeats its version: give the Gemini SDK tollgate's address "
                 "without /v1beta as baseUrl; it adds the version itself",
                 path);
    else
        snprintf(out, n,
                 "the path %.200s repeats its version: OPENAI_BASE_URL ends in /v1 once "
                 "(http://host:port/v1)",
                 path);
    return true;
}
