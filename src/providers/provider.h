/* provider.h: what differs between LLM providers, behind one small
 * interface; one file per provider (provider_openai.c, ...), one table
 * (provider.c). The proxy calls prepare on the request body, then either
 * on_event for each SSE event of a streamed answer or on_json for a whole
 * JSON answer, and error_body for tollgate's own errors in the dialect. */
#ifndef TOLLGATE_PROVIDER_H
#define TOLLGATE_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "http/sse.h"
#include "providers/usage.h"
#include "core/util.h"

struct evbuffer;

/* What the request asked for; filled by route + prepare. */
struct provider_call {
    const char *endpoint;      /* upstream path without query: "/v1/chat/completions" */
    bool metered;              /* a priced endpoint */
    bool stream;               /* the answer is an SSE stream */
    bool strip_usage;          /* prepare added include_usage: drop the usage-only chunk */
    bool splice_usage;         /* the body has no stream_options: the proxy inserts
                                  "stream_options":{"include_usage":true} as text, which
                                  spares re-serialising the whole body */
    char model[128];           /* from the body (gemini: from the path); "" if none */
    int64_t est_input_tokens;  /* estimated from the body text */
    int64_t max_output_tokens; /* requested bound on one answer's output (max_tokens,
                                  max_completion_tokens, max_output_tokens, maxOutputTokens
                                  + thinkingBudget), 0 if none */
    int64_t choices;           /* answers generated and billed: n, best_of, candidateCount;
                                  0 is read as 1 */
};

/* What the response taught us; filled by on_event / on_json. */
struct meter {
    struct usage usage;
    char model[128];   /* model named by the response, "" if none */
    size_t text_bytes; /* generated text seen in stream deltas, for estimates */
    bool done;         /* completion marker seen ([DONE], message_stop, ...) */
    bool stream_error; /* an error event arrived mid-stream */
    int step;          /* provider's private progress */
};

struct provider {
    const char *name; /* "openai" */
    /* Reads the parsed body (a JSON object, or NULL for a bodyless request
     * or one that is not valid JSON), fills call->model, stream and
     * estimates, and may edit body (e.g. add stream_options.include_usage);
     * sets *modified when it did. call->metered comes from the endpoint
     * alone, body or not. Returns 0, or -1 with a message for the client in
     * err (a 400). */
    int (*prepare)(struct provider_call *call, json_t *body, bool *modified, char *err,
                   size_t errlen);
    /* One SSE event of a streamed answer; set *drop to keep it from the client. */
    void (*on_event)(struct meter *m, const struct provider_call *call, const struct sse_event *ev,
                     bool *drop);
    /* A whole JSON answer (status 2xx). */
    void (*on_json)(struct meter *m, const struct provider_call *call, const char *body,
                    size_t len);
    /* Appends tollgate's own error in this provider's dialect. code is
     * tollgate's code ("missing_tenant", "budget_exceeded",
     * "rate_limit_exceeded", "upstream_unreachable", ...). */
    void (*error_body)(struct evbuffer *out, int status, const char *code, const char *message);
    /* Downgrade: makes the request ask for model instead, rewriting only
     * the top-level "model" of body, or the model segment of path (size
     * pathlen) for providers that name it there. Returns 0 or -1. */
    int (*set_model)(json_t *body, char *path, size_t pathlen, const char *model);
};

/* set_model for providers that name the model in the body's top level. */
int provider_set_body_model(json_t *body, char *path, size_t pathlen, const char *model);

/* The table: "openai", "anthropic", "gemini"; NULL if unknown. */
const struct provider *provider_find(const char *name);

/* Output tokens assumed for one answer when neither the request nor the
 * price list bounds it (a priced model without max_output): as large as
 * the largest outputs listed, so the estimate stays an upper bound. */
#define PROVIDER_UNLISTED_MAX_OUTPUT 128000

/* The most output the call can be billed for: the request's own bound per
 * answer, else model_max (the price list's max_output; 0: unknown, then
 * PROVIDER_UNLISTED_MAX_OUTPUT), times call->choices. Saturates. */
int64_t provider_output_bound(const struct provider_call *call, int64_t model_max);

/* Estimates tokens from bytes of text (about 4 bytes a token, at least 1 if any). */
int64_t provider_estimate_tokens(size_t bytes);

/* The table's entries, one per provider_*.c file. */
extern const struct provider provider_openai;
extern const struct provider provider_anthropic;
extern const struct provider provider_gemini;

/* Helpers for the provider_*.c files (defined in provider.c). */

/* Requested output bounds above this are clamped, not rejected. */
#define PROVIDER_MAX_OUTPUT_TOKENS 10000000

/* obj[key] as a token count: a non-negative integer (a finite real is
 * truncated), 0 when obj is not an object or the member is absent, null,
 * negative or not a number. */
int64_t provider_json_count(const json_t *obj, const char *key);
/* obj[key] is present and not null. */
bool provider_json_has(const json_t *obj, const char *key);
/* Bytes of text inside v (strings, 4 per number), walking objects and arrays
 * without copying; skips inline binary payloads (base64 images, audio, files)
 * that would swamp an estimate. */
size_t provider_json_text_bytes(const json_t *v);
/* The member names whose values that walk skips (binary payloads). */
extern const char *const provider_text_skip_keys[];
extern const size_t provider_n_text_skip_keys;
/* Copies the JSON string v into dst (cut to cap - 1 bytes); leaves dst alone
 * when v is not a string. */
void provider_copy_str(char *dst, size_t cap, const json_t *v);

/* Request checks for prepare. Each returns 0, or -1 with a message for the
 * client in err that names the member and what to send instead. */
/* body["model"] into model[cap]: when required, a non-empty string shorter
 * than cap without control bytes; when not required, absent is fine. */
int provider_body_model(const json_t *body, bool required, char *model, size_t cap, char *err,
                        size_t errlen) MUST_CHECK;
/* body[key] must be true, false or null if present; *out set when a bool. */
int provider_body_bool(const json_t *body, const char *key, bool *out, char *err,
                       size_t errlen) MUST_CHECK;
/* body[key] must be an integer >= min if present (null counts as absent);
 * *out is set to it, clamped to max; left alone when absent. */
int provider_body_count(const json_t *body, const char *key, int64_t min, int64_t max, int64_t *out,
                        char *err, size_t errlen) MUST_CHECK;

/* a * b and a + b for non-negative counts, saturating at INT64_MAX. */
int64_t provider_sat_mul(int64_t a, int64_t b);
int64_t provider_sat_add(int64_t a, int64_t b);

/* A JSON string for a client message; bytes that are not valid UTF-8 become
 * '?', so a message is never lost. NULL only when out of memory. */
json_t *provider_json_message(const char *msg);
/* Appends v as compact JSON to out and releases v (v may be NULL). When v is
 * NULL or encoding fails, appends fallback instead (a static, valid body). */
void provider_write_json(struct evbuffer *out, json_t *v, const char *fallback);

#endif
