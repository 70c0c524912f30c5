/* provider_gemini.c: Gemini's dialect (provider-wire-formats.md section 7):
 * the model and the verb come from the path (models/{model}:{verb}), usage
 * from the last usageMetadata of a stream or answer (never summed, never
 * reset by a chunk without it), and {"error":{"code","message","status"}}. */
#include "providers/openai_fields.h"
#include "providers/provider.h"

#include <stdio.h>
#include <string.h>

/* Model names travel in the URL and into records and metric labels: keep
 * them to the characters Google's ids use. */
static bool model_ok(const char *s, size_t n, size_t cap)
{
    if (n == 0 || n >= cap)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* Splits ".../models/{model}:{verb}" (also tunedModels/). Returns false when
 * the path has no such shape. */
static bool split_path(const char *ep, const char **model, size_t *model_len, const char **verb)
{
    const char *colon = ep ? strrchr(ep, ':') : NULL;
    if (!colon)
        return false;
    const char *name = colon;
    while (name > ep && name[-1] != '/')
        name--;
    static const char coll[] = "odels/"; /* models/ or tunedModels/ */
    if ((size_t)(name - ep) < sizeof(coll) - 1 ||
        memcmp(name - (sizeof(coll) - 1), coll, sizeof(coll) - 1) != 0)
        return false;
    *model = name;
    *model_len = (size_t)(colon - name);
    *verb = colon + 1;
    return true;
}

enum endpoint {
    EP_OTHER,    /* forwarded, not priced */
    EP_GENERATE, /* models/{model}:generateContent */
    EP_STREAM,   /* models/{model}:streamGenerateContent */
    EP_OPENAI,   /* openai/chat/completions: OpenAI's wire format, Gemini's models */
    EP_EMBED,    /* models/{model}:embedContent, :batchEmbedContents: input tokens only */
    EP_PREDICT,  /* models/{model}:predict (Imagen): per image asked for */
};

#define NOT_YET "it costs money and tollgate does not meter it yet"

/* Every path of the Gemini API that tollgate knows, first match wins;
 * "/ *" stands for the API version (v1beta, v1). */
static const struct provider_route routes[] = {
    {"POST", "/*/models/*:generateContent", ROUTE_METERED, EP_GENERATE, MODEL_PATH, NULL},
    {"POST", "/*/models/*:streamGenerateContent", ROUTE_METERED, EP_STREAM, MODEL_PATH, NULL},
    {"POST", "/*/tunedModels/*:generateContent", ROUTE_METERED, EP_GENERATE, MODEL_PATH, NULL},
    {"POST", "/*/tunedModels/*:streamGenerateContent", ROUTE_METERED, EP_STREAM, MODEL_PATH, NULL},
    {"POST", "/*/models/*:countTokens", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/*/tunedModels/*:countTokens", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/*/models/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/*/tunedModels/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    /* files: upload, metadata, delete */
    {NULL, "/*/files/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/upload/*/files/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    /* long-running operations and batch metadata */
    {"GET", "/*/operations/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/*/batches/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/*/batches/*:cancel", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"DELETE", "/*/batches/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/*/cachedContents/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"DELETE", "/*/cachedContents/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/*/models/*:embedContent", ROUTE_METERED, EP_EMBED, MODEL_PATH, NULL},
    {"POST", "/*/models/*:batchEmbedContents", ROUTE_METERED, EP_EMBED, MODEL_PATH, NULL},
    /* paid, not metered yet */
    {NULL, "/*/models/*:batchGenerateContent", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {"POST", "/*/models/*:predict", ROUTE_METERED, EP_PREDICT, MODEL_PATH, NULL},
    {NULL, "/*/models/*:predictLongRunning", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {NULL, "/*/cachedContents/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    /* the OpenAI-compatible endpoint: full chat, metered as chat */
    {"POST", "/*/openai/chat/completions", ROUTE_METERED, EP_OPENAI, MODEL_BODY, NULL},
    {"GET", "/*/openai/models/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/*/openai/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
};

static const char *const claims[] = {"/v1beta/**", "/upload/v1beta/**", "/v1/models/*:*",
                                     "/v1/tunedModels/**"};

/* What prepare reads; the text fields feed the input estimate. */
static const struct json_scan_field fields[] = {
    {"generationConfig", false},
    {"generationConfig.maxOutputTokens", false},
    {"generationConfig.candidateCount", false},
    {"generationConfig.thinkingConfig.thinkingBudget", false},
    {"contents", true},
    {"systemInstruction", true},
    {"content", true},                 /* embedContent */
    {"requests", true},                /* batchEmbedContents */
    {"parameters.sampleCount", false}, /* :predict (Imagen): images asked for */
    /* the OpenAI-compatible endpoint's request, read by provider_openai's
     * prepare, which asks for all of its own fields */
    OPENAI_BODY_FIELDS,
};

static const struct json_scan_spec body_fields = {
    .fields = fields,
    .n_fields = ARRAY_LEN(fields),
    .skip_keys = provider_text_skip_keys,
    .n_skip_keys = PROVIDER_N_TEXT_SKIP_KEYS,
};

/* The OpenAI-compatible endpoint is read by the OpenAI provider, as its
 * chat row (its kind, not ours, while it reads). */
static struct provider_call as_openai(const struct provider_call *call)
{
    struct provider_call c = *call;
    const struct provider_route *row =
        provider_route_find(&provider_openai, "POST", "/v1/chat/completions");
    c.kind = row ? row->kind : 0;
    return c;
}

/* embedContent / batchEmbedContents: the model is the path's; a body that
 * names another ("model": "models/x") is refused rather than priced on one
 * and served on the other. Gemini reports no usage for embeddings: the
 * input is estimated from the text (on_doc). */
static int prepare_embed(struct provider_call *call, const struct json_scan *body, char *err,
                         size_t errlen)
{
    char named[JSON_SCAN_STR_MAX] = "";
    provider_body_str(body, "model", named, sizeof(named));
    const char *m = strncmp(named, "models/", 7) == 0 ? named + 7 : named;
    if (named[0] && strcmp(m, call->model) != 0) {
        snprintf(err, errlen,
                 "the body's \"model\" (%.60s) differs from the model in the path (%.60s): "
                 "send one model",
                 named, call->model);
        return -1;
    }
    call->price_kind = PRICE_KIND_EMBEDDING;
    call->est_input_tokens = provider_body_tokens(body); /* content, requests */
    return 0;
}

/* Images Imagen makes when sampleCount is not sent (the Gemini API's
 * default numberOfImages). */
#define IMAGEN_DEFAULT_IMAGES 4

/* :predict (Imagen, models/imagen-...:predict): {"instances":[{"prompt"}],
 * "parameters":{"sampleCount"}}. The answer carries the images and no
 * usage; the images asked for are the bill (per image, pricing.conf
 * per_image), so an image the answer leaves out (a safety filter) is billed
 * too: an upper bound, never free. */
static int prepare_predict(struct provider_call *call, const struct json_scan *body, char *err,
                           size_t errlen)
{
    int64_t n = IMAGEN_DEFAULT_IMAGES;
    if (provider_body_count(body, "parameters.sampleCount", 1, 8, &n, err, errlen) < 0)
        return -1;
    call->units = n;
    call->unit = USAGE_UNIT_IMAGE;
    call->units_known = true;
    call->priced_on_request = true;
    call->price_kind = PRICE_KIND_IMAGE;
    /* priced per image only: its prompt tokens are not read (the scan's
     * fields are full), so a tpm limit counts it as 0 tokens */
    return 0;
}

static int prepare(struct provider_call *call, const struct json_scan *body, char *err,
                   size_t errlen)
{
    if (call->kind == EP_OPENAI) {
        struct provider_call c = as_openai(call);
        int rc = provider_openai.prepare(&c, body, err, errlen);
        c.kind = call->kind;
        *call = c;
        return rc;
    }
    provider_prepare_begin(call);
    const char *model, *verb;
    size_t model_len;
    if (!split_path(call->endpoint, &model, &model_len, &verb))
        return 0; /* files, cachedContents, model listing: forwarded as is */
    bool stream = call->kind == EP_STREAM;
    bool metered = call->kind != EP_OTHER;
    if (!model_ok(model, model_len, sizeof(call->model))) {
        if (!metered)
            return 0;
        snprintf(err, errlen,
                 "the model in the path (models/{model}:%s) must be 1 to %zu letters, digits, "
                 "'-', '.' or '_'",
                 verb, sizeof(call->model) - 1);
        return -1;
    }
    memcpy(call->model, model, model_len);
    call->model[model_len] = '\0';
    call->stream = stream;
    if (!body || !metered)
        return 0;
    if (provider_body_is_object(body, err, errlen) < 0)
        return -1;
    if (call->kind == EP_EMBED)
        return prepare_embed(call, body, err, errlen);
    if (call->kind == EP_PREDICT)
        return prepare_predict(call, body, err, errlen);
    if (provider_body_object(body, "generationConfig", err, errlen) < 0)
        return -1;
    int64_t max_out = 0, count = 1, thinking = 0;
    if (provider_body_count(body, "generationConfig.maxOutputTokens", 0, PROVIDER_MAX_OUTPUT_TOKENS,
                            &max_out, err, errlen) < 0 ||
        provider_body_count(body, "generationConfig.candidateCount", 1, 8, &count, err, errlen) < 0)
        return -1;
    /* thinkingBudget adds to the bound (section 7.1); -1 means "dynamic".
     * Without maxOutputTokens there is no bound (the model's maximum
     * applies), whatever the thinking budget. */
    if (max_out > 0)
        thinking = provider_body_int(body, "generationConfig.thinkingConfig.thinkingBudget");
    if (thinking > PROVIDER_MAX_OUTPUT_TOKENS)
        thinking = PROVIDER_MAX_OUTPUT_TOKENS;
    call->max_output_tokens = max_out > 0 ? provider_sat_add(max_out, thinking) : 0;
    call->choices = count;
    call->est_input_tokens = provider_body_tokens(body); /* contents + systemInstruction */
    return 0;
}

static size_t str_len(const json_t *v)
{
    return json_is_string(v) ? json_string_length(v) : 0;
}

/* One GenerateContentResponse (a stream chunk or a whole answer). */
static void response(struct meter *m, const json_t *j)
{
    if (!json_is_object(j))
        return;
    if (provider_json_has(j, "error"))
        m->stream_error = true;
    provider_copy_str(m->model, sizeof(m->model), json_object_get(j, "modelVersion"));
    const json_t *um = json_object_get(j, "usageMetadata");
    if (json_is_object(um)) {
        provider_check_usage(m, um);
        int64_t thoughts = provider_json_count(um, "thoughtsTokenCount");
        struct usage x = {
            .input = provider_sat_add(provider_json_count(um, "promptTokenCount"),
                                      provider_json_count(um, "toolUsePromptTokenCount")),
            .cached = provider_json_count(um, "cachedContentTokenCount"),
            .output = provider_sat_add(provider_json_count(um, "candidatesTokenCount"), thoughts),
            .reasoning = thoughts,
            .seen = true,
        };
        if (x.cached > x.input)
            x.cached = x.input;
        m->usage = x;
    }
    size_t i, k;
    json_t *c, *part;
    json_array_foreach(json_object_get(j, "candidates"), i, c)
    {
        json_array_foreach(json_object_get(json_object_get(c, "content"), "parts"), k, part)
            m->text_bytes += str_len(json_object_get(part, "text"));
        if (str_len(json_object_get(c, "finishReason")) > 0)
            m->done = true;
    }
}

static void on_event(struct meter *m, const struct provider_call *call, const struct sse_event *ev,
                     bool *drop)
{
    if (call->kind == EP_OPENAI) {
        struct provider_call c = as_openai(call);
        provider_openai.on_event(m, &c, ev, drop);
        return;
    }
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    response(m, j);
    json_decref(j);
}

/* A whole answer: one object, or (streamGenerateContent without alt=sse) a
 * JSON array of chunks. */
static void on_doc(struct meter *m, const struct provider_call *call, const json_t *j)
{
    if (call->kind == EP_OPENAI) {
        struct provider_call c = as_openai(call);
        provider_openai.on_doc(m, &c, j);
        return;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) response(m, e);
    } else {
        response(m, j);
    }
    if (call->kind == EP_EMBED) {
        /* the whole answer came; its input is billed as estimated when the
         * provider reported none (the Gemini API does not for embeddings) */
        if (!m->usage.seen)
            m->usage =
                (struct usage){.input = call->est_input_tokens, .seen = true, .estimated = true};
        m->usage.output = m->usage.reasoning = 0;
    }
}

/* google.rpc.Code names for the statuses tollgate answers with. */
static const char *error_status(int status)
{
    switch (status) {
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 502:
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
    }
}

/* google.rpc.ErrorInfo, where Google's own errors say why: reason in its
 * UPPER_SNAKE form, and tollgate's code (and cap) as written in the other
 * dialects in metadata. */
static json_t *error_info(const char *code, const char *cap)
{
    char reason[64];
    size_t n = 0;
    for (; code[n] && n < sizeof(reason) - 1; n++)
        reason[n] = code[n] >= 'a' && code[n] <= 'z' ? (char)(code[n] - 'a' + 'A') : code[n];
    reason[n] = '\0';
    json_t *meta = json_pack("{s:s}", "code", code);
    if (meta && cap)
        json_object_set_new(meta, "cap", json_string(cap));
    return json_pack("[{s:s,s:s,s:s,s:o?}]", "@type", "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason", reason, "domain", "tollgate", "metadata", meta);
}

static void error_body(struct evbuffer *out, int status, const char *code, const char *cap,
                       const char *message)
{
    json_t *v = json_pack("{s:{s:i,s:o?,s:s}}", "error", "code", status, "message",
                          provider_json_message(message ? message : "request rejected by tollgate"),
                          "status", error_status(status));
    /* the SDK's ApiError carries the whole body as its message */
    if (v && code)
        json_object_set_new(json_object_get(v, "error"), "details", error_info(code, cap));
    provider_write_json(out, v,
                        "{\"error\":{\"code\":500,\"message\":\"tollgate error\","
                        "\"status\":\"INTERNAL\"}}");
}

/* Gemini names the model in the path: rewrite models/{model}:{verb} there;
 * the OpenAI-compatible endpoint names it in the body. */
static int set_model(struct provider_call *call, const struct json_scan *body, char *path,
                     size_t pathlen, const char *model)
{
    const char *old, *verb;
    size_t old_len;
    if (call->kind == EP_OPENAI)
        return provider_set_body_model(call, body, path, pathlen, model);
    if (!split_path(path, &old, &old_len, &verb) || !model_ok(model, strlen(model), 128))
        return -1;
    char out[512];
    int n = snprintf(out, sizeof(out), "%.*s%s:%s", (int)(old - path), path, model, verb);
    if (n < 0 || (size_t)n >= sizeof(out) || (size_t)n >= pathlen)
        return -1;
    memcpy(path, out, (size_t)n + 1);
    return 0;
}

/* What on_doc reads of a whole GenerateContentResponse (an array answer is
 * read whole, answer.h). */
static const struct json_scan_field answer_fields[] = {
    {"modelVersion", false},
    {"error", false},
    {"usageMetadata", false},
    {"usageMetadata.promptTokenCount", false},
    {"usageMetadata.toolUsePromptTokenCount", false},
    {"usageMetadata.cachedContentTokenCount", false},
    {"usageMetadata.candidatesTokenCount", false},
    {"usageMetadata.thoughtsTokenCount", false},
    {"candidates", true},
    /* the OpenAI-compatible endpoint's chat answer (read by provider_openai) */
    OPENAI_ANSWER_FIELDS,
};

_Static_assert(ARRAY_LEN(fields) <= JSON_SCAN_MAX_FIELDS &&
                   ARRAY_LEN(answer_fields) <= JSON_SCAN_MAX_FIELDS,
               "json_scan reads at most JSON_SCAN_MAX_FIELDS members");

/* The response cache (cache/cache_key.h). The API takes a member in
 * camelCase or snake_case; both are listed. Grounding (Search, Maps, URL
 * context, file search) and code execution run at Google; function tools
 * are the client's. */
#define GEMINI_TOOL(camel, snake)                                                                  \
    {"tools." camel, CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL},                        \
    {                                                                                              \
        "tools." snake, CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL                       \
    }
#define GEMINI_GEN(camel, snake, match, value, why)                                                \
    {"generationConfig." camel, match, value, why, NULL},                                          \
    {                                                                                              \
        "generation_config." snake, match, value, why, NULL                                        \
    }
static const struct cache_rule cache_request[] = {
    GEMINI_GEN("temperature", "temperature", CACHE_MATCH_TEMPERATURE, NULL, 0),
    GEMINI_TOOL("googleSearch", "google_search"),
    GEMINI_TOOL("googleSearchRetrieval", "google_search_retrieval"),
    GEMINI_TOOL("codeExecution", "code_execution"),
    GEMINI_TOOL("urlContext", "url_context"),
    GEMINI_TOOL("googleMaps", "google_maps"),
    GEMINI_TOOL("fileSearch", "file_search"),
    GEMINI_TOOL("enterpriseWebSearch", "enterprise_web_search"),
    GEMINI_GEN("responseModalities", "response_modalities", CACHE_MATCH_STRING, "IMAGE",
               CACHE_WHY_IMAGE),
    GEMINI_GEN("responseModalities", "response_modalities", CACHE_MATCH_STRING, "AUDIO",
               CACHE_WHY_AUDIO),
    GEMINI_GEN("speechConfig", "speech_config", CACHE_MATCH_SET, NULL, CACHE_WHY_AUDIO),
    /* the OpenAI-compatible endpoint's chat body */
    OPENAI_CACHE_REQUEST_RULES,
};

/* A blocked prompt or candidate (safety, prohibited content, blocklist,
 * personal data, recitation), grounding and code execution results, images
 * and audio made. A streamed chunk has the whole answer's shape. */
#define GEMINI_FINISH(reason)                                                                      \
    {                                                                                              \
        "candidates.finishReason", CACHE_MATCH_STRING, reason, CACHE_WHY_REFUSAL, NULL             \
    }
static const struct cache_rule cache_answer[] = {
    {"promptFeedback.blockReason", CACHE_MATCH_SET, NULL, CACHE_WHY_REFUSAL, NULL},
    GEMINI_FINISH("*SAFETY"),
    GEMINI_FINISH("*PROHIBITED_CONTENT"),
    GEMINI_FINISH("BLOCKLIST"),
    GEMINI_FINISH("SPII"),
    GEMINI_FINISH("*RECITATION"),
    {"candidates.groundingMetadata", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL},
    {"candidates.urlContextMetadata", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL},
    {"candidates.content.parts.executableCode", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL,
     NULL},
    {"candidates.content.parts.codeExecutionResult", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL,
     NULL},
    {"candidates.content.parts.inlineData.mimeType", CACHE_MATCH_STRING, "image/*", CACHE_WHY_IMAGE,
     NULL},
    {"candidates.content.parts.inlineData.mimeType", CACHE_MATCH_STRING, "audio/*", CACHE_WHY_AUDIO,
     NULL},
    /* the OpenAI-compatible endpoint's chat answer */
    OPENAI_CACHE_ANSWER_RULES,
};

const struct provider provider_gemini = {
    .name = "gemini",
    .default_url = "https://generativelanguage.googleapis.com",
    .auth_header = "x-goog-api-key",
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
    .set_model = set_model,
    .cache_request = {cache_request, ARRAY_LEN(cache_request)},
    .cache_answer = {cache_answer, ARRAY_LEN(cache_answer)},
};
