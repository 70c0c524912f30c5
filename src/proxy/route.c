/* route.c: the contract's routing table. Configured prefixes first
 * ([upstream NAME] prefix = /NAME), then Anthropic's and Gemini's paths,
 * then every other /v1/ path to OpenAI. */
#include "proxy/route.h"

#include <string.h>

#include "core/config.h"
#include "providers/provider.h"

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* A path segment prefix: "/v1/messages" matches "/v1/messages" and
 * "/v1/messages/..." but not "/v1/messagesX". */
static bool under(const char *path, const char *p)
{
    size_t n = strlen(p);
    return strncmp(path, p, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static const char *builtin_for(const char *path)
{
    if (under(path, "/v1/messages"))
        return "anthropic";
    if (under(path, "/v1beta") || under(path, "/upload/v1beta"))
        return "gemini";
    /* Gemini with apiVersion v1: /v1/models/{model}:verb (OpenAI's
     * /v1/models/{id} has no ':verb') */
    if (has_prefix(path, "/v1/models/") && strchr(path + 11, ':'))
        return "gemini";
    if (under(path, "/v1"))
        return "openai";
    return NULL;
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

enum route_result route_match(const struct config *cfg, const char *path, struct route *out)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct cfg_upstream *u = &cfg->upstreams[i];
        if (u->prefix && under(path, u->prefix)) {
            out->upstream = i;
            out->up = u;
            out->prov = provider_find(u->kind);
            out->endpoint = path + strlen(u->prefix);
            if (*out->endpoint == '\0')
                out->endpoint = "/";
            return out->prov ? ROUTE_OK : ROUTE_NOT_FOUND;
        }
    }
    const char *name = builtin_for(path);
    if (!name)
        return ROUTE_NOT_FOUND;
    out->up = find(cfg, name, &out->upstream);
    out->prov = provider_find(out->up ? out->up->kind : name);
    out->endpoint = path;
    return out->up && out->prov ? ROUTE_OK : ROUTE_NOT_FOUND;
}

const struct provider *route_dialect(const struct config *cfg, const char *path)
{
    struct route r;
    if (path && route_match(cfg, path, &r) == ROUTE_OK)
        return r.prov;
    const char *name = path ? builtin_for(path) : NULL;
    const struct provider *p = provider_find(name ? name : "openai");
    return p ? p : provider_find("openai");
}
