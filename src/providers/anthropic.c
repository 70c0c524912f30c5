/* provider_anthropic.c: Anthropic's dialect (provider-wire-formats.md section
 * 6): /v1/messages checks, usage from message_start + the last message_delta
 * (output is cumulative; input and cache counts are overwritten when a later
 * event names them), and {"type":"error",...} bodies. */
#include "providers/provider.h"

#include <stdio.h>
#include <string.h>

enum endpoint {
    EP_OTHER,    /* forwarded, not priced */
    EP_MESSAGES, /* POST /v1/messages */
};

#define NOT_YET "it costs money and tollgate does not meter it yet"

/* Every path of Anthropic's API that tollgate knows, first match wins. */
static const struct provider_route routes[] = {
    {"POST", "/v1/messages", ROUTE_METERED, EP_MESSAGES, MODEL_BODY, NULL},
    {"POST", "/v1/messages/count_tokens", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    /* message batches: metadata, cancel and delete are free; creating one is paid */
    {"POST", "/v1/messages/batches", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {"GET", "/v1/messages/batches/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/messages/batches/*/cancel", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"DELETE", "/v1/messages/batches/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/v1/models/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/v1/files/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/v1/organizations/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
};

/* /v1/models is OpenAI's on the shared listener (both list models there;
 * provider-wire-formats.md 1.1); a prefixed anthropic upstream has it. */
static const char *const claims[] = {"/v1/messages/**"};

/* What prepare reads; the text fields feed the input estimate. */
static const struct json_scan_field fields[] = {
    {"model", false},   {"stream", false}, {"max_tokens", false},
    {"messages", true}, {"system", true},
};

static const struct json_scan_spec body_fields = {
    .fields = fields,
    .n_fields = ARRAY_LEN(fields),
    .skip_keys = provider_text_skip_keys,
    .n_skip_keys = PROVIDER_N_TEXT_SKIP_KEYS,
};

static int prepare(struct provider_call *call, const struct json_scan *body, char *err,
                   size_t errlen)
{
    provider_prepare_begin(call);
    if (!body)
        return 0;
    if (call->kind != EP_MESSAGES) {
        /* count_tokens, batches, models: forwarded, never priced. */
        provider_prepare_forwarded(call, body);
        return 0;
    }
    if (provider_body_is_object(body, err, errlen) < 0)
        return -1;
    if (provider_body_model(body, true, call->model, sizeof(call->model), err, errlen) < 0 ||
        provider_body_bool(body, "stream", &call->stream, err, errlen) < 0 ||
        provider_body_count(body, "max_tokens", 0, PROVIDER_MAX_OUTPUT_TOKENS,
                            &call->max_output_tokens, err, errlen) < 0)
        return -1;
    call->est_input_tokens = provider_body_tokens(body); /* messages + system */
    return 0;
}

/* Folds one Usage / MessageDeltaUsage object into u. Anthropic's input_tokens
 * excludes cache reads and writes; the normalised input includes them, so the
 * uncached part is kept implicitly as input - cached - cache_write. A member
 * that is absent or null leaves the earlier value alone. */
static void fold_usage(struct usage *u, const json_t *o)
{
    int64_t plain = u->input - u->cached - u->cache_write;
    if (provider_json_has(o, "input_tokens"))
        plain = provider_json_count(o, "input_tokens");
    if (provider_json_has(o, "cache_read_input_tokens"))
        u->cached = provider_json_count(o, "cache_read_input_tokens");
    if (provider_json_has(o, "cache_creation_input_tokens"))
        u->cache_write = provider_json_count(o, "cache_creation_input_tokens");
    /* the 1-hour part of the writes, priced higher (cache_write_1h) */
    const json_t *cc = json_object_get(o, "cache_creation");
    if (provider_json_has(cc, "ephemeral_1h_input_tokens"))
        u->cache_write_1h = provider_json_count(cc, "ephemeral_1h_input_tokens");
    if (u->cache_write_1h > u->cache_write)
        u->cache_write_1h = u->cache_write;
    u->input = provider_sat_add(provider_sat_add(plain, u->cached), u->cache_write);
    if (provider_json_has(o, "output_tokens"))
        u->output = provider_json_count(o, "output_tokens");
    const json_t *d = json_object_get(o, "output_tokens_details");
    if (provider_json_has(d, "thinking_tokens"))
        u->reasoning = provider_json_count(d, "thinking_tokens");
    if (u->reasoning > u->output)
        u->reasoning = u->output;
    u->seen = true;
}

static size_t str_len(const json_t *v)
{
    return json_is_string(v) ? json_string_length(v) : 0;
}

/* Keyed by the JSON "type"; the event: line is only needed for errors whose
 * data is not JSON. Unknown types (new ones appear) are ignored. */
static void on_event(struct meter *m, const struct provider_call *call, const struct sse_event *ev,
                     bool *drop)
{
    if (ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0)
        m->stream_error = true;
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type)
        goto out;
    if (strcmp(type, "message_start") == 0) {
        const json_t *msg = json_object_get(j, "message");
        provider_copy_str(m->model, sizeof(m->model), json_object_get(msg, "model"));
        const json_t *u = json_object_get(msg, "usage");
        if (json_is_object(u))
            provider_check_usage(m, u);
        fold_usage(&m->usage, u);
    } else if (strcmp(type, "message_delta") == 0) {
        const json_t *u = json_object_get(j, "usage");
        if (json_is_object(u))
            provider_check_usage(m, u);
        fold_usage(&m->usage, u);
    } else if (strcmp(type, "content_block_delta") == 0) {
        /* Text, thinking and tool-input JSON are all billed output. */
        const json_t *d = json_object_get(j, "delta");
        m->text_bytes += str_len(json_object_get(d, "text")) +
                         str_len(json_object_get(d, "thinking")) +
                         str_len(json_object_get(d, "partial_json"));
    } else if (strcmp(type, "message_stop") == 0) {
        m->done = true;
    } else if (strcmp(type, "error") == 0) {
        m->stream_error = true;
    }
out:
    json_decref(j);
}

static void on_doc(struct meter *m, const struct provider_call *call, const json_t *j)
{
    if (!json_is_object(j))
        return;
    provider_copy_str(m->model, sizeof(m->model), json_object_get(j, "model"));
    const json_t *u = json_object_get(j, "usage");
    if (json_is_object(u)) {
        m->usage = (struct usage){0};
        provider_check_usage(m, u);
        fold_usage(&m->usage, u);
    }
}

/* Types per docs.claude.com/en/api/errors; a budget 429 is rate_limit_error
 * like Anthropic's own spend-limit 429. */
static const char *error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void error_body(struct evbuffer *out, int status, const char *code, const char *cap,
                       const char *message)
{
    json_t *v = json_pack(
        "{s:s,s:{s:s,s:o?}}", "type", "error", "error", "type", error_type(status), "message",
        provider_json_message(message ? message : "request rejected by tollgate"));
    /* The SDK raises by status and type alone; tollgate's code and cap ride
     * beside them in the error object (err.error.error.code), which it keeps. */
    json_t *e = v ? json_object_get(v, "error") : NULL;
    if (e && code)
        json_object_set_new(e, "code", json_string(code));
    if (e && cap)
        json_object_set_new(e, "cap", json_string(cap));
    provider_write_json(out, v,
                        "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                        "\"message\":\"tollgate error\"}}");
}

/* What on_doc reads of a whole Message. */
static const struct json_scan_field answer_fields[] = {
    {"model", false},
    {"usage", false},
    {"usage.input_tokens", false},
    {"usage.cache_read_input_tokens", false},
    {"usage.cache_creation_input_tokens", false},
    {"usage.cache_creation", false},
    {"usage.cache_creation.ephemeral_1h_input_tokens", false},
    {"usage.output_tokens", false},
    {"usage.output_tokens_details.thinking_tokens", false},
    {"content", true},
};

/* The response cache (cache/cache_key.h): the server tools Anthropic runs
 * itself (web search and fetch, code execution, MCP servers, a container);
 * bash, text editor and computer tools are the client's. */
static const struct cache_rule cache_request[] = {
    {"temperature", CACHE_MATCH_TEMPERATURE, NULL, 0, NULL},
    {"tools.type", CACHE_MATCH_STRING, "web_search_*", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"tools.type", CACHE_MATCH_STRING, "web_fetch_*", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"tools.type", CACHE_MATCH_STRING, "code_execution_*", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"mcp_servers", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL},
    {"container", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL},
};

/* A refusal (stop_reason, whole or in message_delta) and the blocks of a
 * server tool (whole: content, streamed: content_block_start). */
static const struct cache_rule cache_answer[] = {
    {"stop_reason", CACHE_MATCH_STRING, "refusal", CACHE_WHY_REFUSAL, NULL},
    {"delta.stop_reason", CACHE_MATCH_STRING, "refusal", CACHE_WHY_REFUSAL, NULL},
    {"content.type", CACHE_MATCH_STRING, "server_tool_use", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"content.type", CACHE_MATCH_STRING, "*_tool_result", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"content.type", CACHE_MATCH_STRING, "mcp_tool_use", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"content_block.type", CACHE_MATCH_STRING, "server_tool_use", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"content_block.type", CACHE_MATCH_STRING, "*_tool_result", CACHE_WHY_PROVIDER_TOOL, NULL},
    {"content_block.type", CACHE_MATCH_STRING, "mcp_tool_use", CACHE_WHY_PROVIDER_TOOL, NULL},
};

const struct provider provider_anthropic = {
    .name = "anthropic",
    .default_url = "https://api.anthropic.com",
    .auth_header = "x-api-key",
    .auth_scheme = "",
    .claims = claims,
    .n_claims = ARRAY_LEN(claims),
    .routes = routes,
    .n_routes = ARRAY_LEN(routes),
    .body_fields = &body_fields,
    .prepare = prepare,
    .on_event = on_event,
    .on_doc = on_doc,
    .answer_fields = answer_fields,
    .n_answer_fields = ARRAY_LEN(answer_fields),
    .error_body = error_body,
    .set_model = provider_set_body_model,
    .cache_request = {cache_request, ARRAY_LEN(cache_request)},
    .cache_answer = {cache_answer, ARRAY_LEN(cache_answer)},
};
