/* provider.h: what differs between LLM providers, behind one small
 * interface; one file per provider (provider_openai.c, ...), one table
 * (provider.c). The proxy calls prepare on the request body, then either
 * on_event for each SSE event of a streamed answer or on_doc for a whole
 * JSON answer, and error_body for tollgate's own errors in the dialect. */
#ifndef TOLLGATE_PROVIDER_H
#define TOLLGATE_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "cache/cache_key.h"
#include "http/json_scan.h"
#include "http/multipart.h"
#include "http/sse.h"
#include "providers/pricing.h"
#include "providers/usage.h"
#include "core/util.h"

struct evbuffer;

/* How a path is billed (product contract, "Every paid call is counted"). */
enum route_class {
    ROUTE_UNKNOWN, /* not known to be free or metered: [pricing] unmetered_routes decides */
    ROUTE_FREE,    /* costs nothing at the provider: forwarded without admission, cost 0 */
    ROUTE_METERED, /* priced from usage: admission, usage, cost, settlement */
};

/* Where a metered call names its model. */
enum model_in {
    MODEL_NONE, /* no model (free and unknown routes) */
    MODEL_BODY, /* the body's top-level "model" */
    MODEL_PATH, /* a path segment (models/{model}:verb); the body's is ignored */
};

/* One row of a provider's route table. Paths are matched segment by
 * segment: '*' inside a segment matches one or more bytes of it, a last
 * segment "**" matches what is left (nothing included). A path with an
 * empty segment ("/v1/x/", "//") matches no row, so it is unknown. */
struct provider_route {
    const char *method; /* "POST", "GET", ...; NULL: any method. Metered rows
                           match any method; the proxy refuses all but theirs */
    const char *
        path; /* "/v1/chat/completions", "/v1beta/models/{m}:generateContent" written with a star */
    enum route_class cls;
    int kind;            /* the provider's own endpoint kind, read by its prepare */
    enum model_in model; /* metered rows: where the model is named */
    const char *why;     /* unknown rows: why the path is not metered, for the 403 */
};

/* An edit of the request body as text: bytes [start, end) of the body as
 * it arrived are replaced by text (start == end: text is inserted). The body
 * is forwarded from the buffers it arrived in with the edits spliced in, so
 * nothing is re-serialised. */
struct provider_edit {
    size_t start, end;
    size_t len; /* bytes of text */
    char text[400];
};

#define PROVIDER_MAX_EDITS 2 /* include_usage, and the model of a downgrade */

/* What the request asked for; filled by route + prepare. */
struct provider_call {
    const char *endpoint;       /* upstream path without query: "/v1/chat/completions" */
    int kind;                   /* route row's kind (provider_route.kind), 0 when unknown */
    bool metered;               /* a priced endpoint: the route row is ROUTE_METERED */
    enum price_kind price_kind; /* set by prepare: the kind an unpriced model is charged as */
    enum usage_tier tier;       /* the service_tier the body asks for (estimate; the bill
                                   when the answer names none) */
    bool stream;                /* the answer is an SSE stream */
    bool strip_usage;           /* prepare added include_usage: drop the usage-only chunk */
    char model[128];            /* from the body (gemini: from the path); "" if none */
    int64_t est_input_tokens;   /* estimated from the body text */
    int64_t max_output_tokens;  /* requested bound on one answer's output (max_tokens,
                                   max_completion_tokens, max_output_tokens, maxOutputTokens
                                   + thinkingBudget), 0 if none */
    int64_t choices;            /* answers generated and billed: n, best_of, candidateCount;
                                   0 is read as 1 */
    struct provider_edit edits[PROVIDER_MAX_EDITS]; /* in order of start */
    size_t n_edits;
    /* Endpoints not priced in tokens (images, audio): what one call bills in
     * unit (images asked for), for the estimate and the record. */
    int64_t units;
    enum usage_unit unit;
    /* Appended to the model for the price lookup ("/1024x1024/hd": dall-e is
     * priced per size and quality); the model alone when not listed. */
    char price_variant[48];
    /* The usage sits after a payload too large to read (a streamed image):
     * an answer without it is billed on the estimate's upper bound. */
    bool bound_if_unseen;
    /* The request is the bill (tts-1: its characters): a 2xx answer, which
     * carries no usage, is billed units at the per-unit price, not estimated. */
    bool priced_on_request;
    /* units are what the request asked for (images, characters), recorded
     * with any answer; otherwise they are an estimate, recorded only when
     * the bill is (a transcription's seconds from its file size). */
    bool units_known;
};

/* What the response taught us; filled by on_event / on_doc. */
struct meter {
    struct usage usage;
    char model[128];      /* model named by the response, "" if none */
    size_t text_bytes;    /* generated text seen in stream deltas, for estimates */
    bool done;            /* completion marker seen ([DONE], message_stop, ...) */
    bool stream_error;    /* an error event arrived mid-stream */
    bool usage_invalid;   /* a usage count was negative, fractional, not a number or absurd:
                             the provider's usage is not the bill (provider_check_usage) */
    int step;             /* provider's private progress */
    enum usage_tier tier; /* the service_tier the answer names, when tier_seen */
    bool tier_seen;
};

struct provider {
    /* Facts, one home each: the [upstream NAME] that is built in, where it
     * goes by default, how a configured api_key is sent, which paths of the
     * shared listener are this provider's (claims, same pattern syntax as
     * routes: the claim with the most literal bytes wins), and how each path
     * is billed (routes, first matching row wins; none: ROUTE_UNKNOWN). */
    const char *name;        /* "openai" */
    const char *default_url; /* "https://api.openai.com" */
    const char *auth_header; /* "Authorization" */
    const char *auth_scheme; /* "Bearer " or "" */
    const char *const *claims;
    size_t n_claims;
    const struct provider_route *routes;
    size_t n_routes;
    /* The member paths of a request body that prepare reads (text fields:
     * the ones the input estimate counts); the proxy scans the body for them
     * (http/json_scan.h) as it arrives, without building a tree. */
    const struct json_scan_spec *body_fields;
    /* Reads the scanned body (NULL for a bodyless request or one that is
     * not valid JSON; body->top may be an array), fills call->model, stream
     * and estimates, and may add edits (e.g. stream_options.include_usage).
     * call->endpoint, kind and metered are set from the route row before
     * (provider_call_init); prepare leaves them. Returns 0, or -1 with a
     * message for the client in err (a 400). */
    int (*prepare)(struct provider_call *call, const struct json_scan *body, char *err,
                   size_t errlen);
    /* The same for a metered multipart/form-data body (audio uploads): form
     * holds the fields named in form_fields, read from a body of body_bytes.
     * NULL: the provider takes no form on a metered route. */
    int (*prepare_form)(struct provider_call *call, const struct multipart *form,
                        int64_t body_bytes, char *err, size_t errlen);
    const char *const *form_fields; /* at most MULTIPART_MAX_FIELDS */
    size_t n_form_fields;
    /* One SSE event of a streamed answer; set *drop to keep it from the client. */
    void (*on_event)(struct meter *m, const struct provider_call *call, const struct sse_event *ev,
                     bool *drop);
    /* A whole JSON answer (status 2xx) as a tree: the proxy builds it of
     * only the members named in answer_fields (answer.h), scanned from an
     * answer of any size, and hands it over as built, never as text to parse
     * again; an array answer (Gemini) is parsed whole. doc may be any JSON
     * value or NULL. provider_on_json feeds it text. */
    void (*on_doc)(struct meter *m, const struct provider_call *call, const json_t *doc);
    /* The members of a whole answer on_doc reads; text: generated text,
     * counted for an estimate when usage is missing. */
    const struct json_scan_field *answer_fields;
    size_t n_answer_fields;
    /* Appends tollgate's own error in this provider's dialect. code is
     * tollgate's code ("missing_tenant", "budget_exceeded",
     * "rate_limit_exceeded", "upstream_unreachable", ...), carried in every
     * dialect so an app tells "upgrade" from "slow down"; cap (NULL: none)
     * names the plan key that refused a 429 ("budget_daily", "rpm",
     * "included_tokens", "user_budget_monthly", ...). */
    void (*error_body)(struct evbuffer *out, int status, const char *code, const char *cap,
                       const char *message);
    /* Downgrade: makes the request ask for model instead, by an edit of
     * the top-level "model" of body (call->edits), or of the model segment
     * of path (size pathlen) for providers that name it there. Returns 0 or
     * -1. */
    int (*set_model)(struct provider_call *call, const struct json_scan *body, char *path,
                     size_t pathlen, const char *model);
    /* The response cache's rules (cache/cache_key.h), one home per
     * provider: what in a request (a body member, or the endpoint) makes its
     * answer one not to give twice (provider-run tools, images, audio, the
     * temperature), and what in a whole answer or any SSE event of one
     * (a refusal, a provider-run tool's result, images, audio) keeps it from
     * being stored. */
    struct cache_rules cache_request;
    struct cache_rules cache_answer;
};

/* set_model for providers that name the model in the body's top level. */
int provider_set_body_model(struct provider_call *call, const struct json_scan *body, char *path,
                            size_t pathlen, const char *model);

/* The table: "openai", "anthropic", "gemini"; NULL if unknown. */
const struct provider *provider_find(const char *name);
/* The i-th provider of the table; NULL past the end. */
const struct provider *provider_at(size_t i);
/* True when name is the api-key header of some provider (a configured key
 * replaces any of them). */
bool provider_is_auth_header(const char *name);

/* How well pattern matches path: the pattern's literal bytes (> 0), or -1
 * when it does not match (syntax in struct provider_route). */
int provider_path_match(const char *pattern, const char *path);
/* The first row of p's table for method and path; NULL: unknown. */
const struct provider_route *provider_route_find(const struct provider *p, const char *method,
                                                 const char *path);
/* The provider that claims path on the shared listener (best claim), NULL
 * when none does. */
const struct provider *provider_claiming(const char *path);
/* Resets call for endpoint and sets kind and metered from row (NULL:
 * unknown). endpoint must outlive call. */
void provider_call_init(struct provider_call *call, const char *endpoint,
                        const struct provider_route *row);
/* What prepare fills, back to "nothing known yet" (no model, no stream,
 * no estimate, one choice, no edits): the first step of every prepare, so
 * a call prepared again carries nothing of the earlier body. */
void provider_prepare_begin(struct provider_call *call);
/* prepare for an endpoint forwarded untouched (not metered): only learns
 * from body whether an SSE answer is coming and the model it names. */
void provider_prepare_forwarded(struct provider_call *call, const struct json_scan *body);
/* A metered request body must be one JSON object: 0, or -1 with the
 * client's message in err. */
int provider_body_is_object(const struct json_scan *body, char *err, size_t errlen) MUST_CHECK;
/* "metered" | "free" | "unknown" */
const char *provider_route_class_name(enum route_class c);

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
/* The member names whose values are binary payloads (base64 files) or
 * references, not text read as tokens: skipped by the input estimate. */
#define PROVIDER_N_TEXT_SKIP_KEYS 10
extern const char *const provider_text_skip_keys[PROVIDER_N_TEXT_SKIP_KEYS];
/* Copies the JSON string v into dst (cut to cap - 1 bytes); leaves dst alone
 * when v is not a string. */
void provider_copy_str(char *dst, size_t cap, const json_t *v);

/* Request bodies, as scanned. path must be one of the provider's body_fields
 * (another aborts: a defect of the provider's file that its tests find)
 * ("stream_options.include_usage"); a body that is NULL or not an object
 * has every path absent. */
const struct json_scan_value *provider_body_get(const struct json_scan *body, const char *path);
/* body[path] is present and not null. */
bool provider_body_has(const struct json_scan *body, const char *path);
/* body[path] as a token count, like provider_json_count. */
int64_t provider_body_int(const struct json_scan *body, const char *path);
/* Copies the string at path into dst (cut to cap - 1 bytes); leaves dst
 * alone when it is not a string. */
void provider_body_str(const struct json_scan *body, const char *path, char *dst, size_t cap);
/* Input tokens estimated from the text fields of body_fields. */
int64_t provider_body_tokens(const struct json_scan *body);

/* Request checks for prepare. Each returns 0, or -1 with a message for the
 * client in err that names the member and what to send instead. */
/* body["model"] into model[cap]: when required, a non-empty string shorter
 * than cap without control bytes; when not required, absent is fine. */
int provider_body_model(const struct json_scan *body, bool required, char *model, size_t cap,
                        char *err, size_t errlen) MUST_CHECK;
/* body[path] must be true, false or null if present; *out set when a bool. */
int provider_body_bool(const struct json_scan *body, const char *path, bool *out, char *err,
                       size_t errlen) MUST_CHECK;
/* body[path] must be an integer >= min if present (null counts as absent);
 * *out is set to it, clamped to max; left alone when absent. */
int provider_body_count(const struct json_scan *body, const char *path, int64_t min, int64_t max,
                        int64_t *out, char *err, size_t errlen) MUST_CHECK;
/* body[path] must be an object or null if present. */
int provider_body_object(const struct json_scan *body, const char *path, char *err,
                         size_t errlen) MUST_CHECK;
/* Adds an edit replacing [start, end) of the body with len bytes of text
 * (kept in order of start). Returns 0, or -1 when there is no room. */
int provider_add_edit(struct provider_call *call, size_t start, size_t end, const char *text,
                      size_t len) MUST_CHECK;

/* Usage counts above this are absurd for one request, not a bill. */
#define PROVIDER_MAX_USAGE_TOKENS 100000000

/* Checks a usage object the provider sent (any depth): every member named
 * like a count (..._tokens, ...Tokens, ...TokenCount, tokenCount) must be
 * null or an integer from 0 to PROVIDER_MAX_USAGE_TOKENS; otherwise sets
 * m->usage_invalid. */
void provider_check_usage(struct meter *m, const json_t *usage);
/* A whole answer given as text: parsed (a NULL tree when it is not JSON)
 * and handed to p->on_doc. */
void provider_on_json(const struct provider *p, struct meter *m, const struct provider_call *call,
                      const char *body, size_t len);

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
