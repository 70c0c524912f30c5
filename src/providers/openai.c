/* provider_openai.c: OpenAI's dialect (provider-wire-formats.md sections 2-5):
 * request checks and stream_options.include_usage injection for chat and
 * legacy completions, usage from chat chunks, Responses events and JSON
 * answers, and error bodies shaped like OpenAI's own. */
#include "providers/openai_fields.h"
#include "providers/provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum endpoint {
    EP_OTHER,      /* forwarded, not priced */
    EP_CHAT,       /* /v1/chat/completions */
    EP_LEGACY,     /* /v1/completions */
    EP_EMBED,      /* /v1/embeddings */
    EP_RESP,       /* /v1/responses */
    EP_IMAGE,      /* /v1/images/generations: gpt-image-1 by tokens, dall-e per image */
    EP_SPEECH,     /* /v1/audio/speech: tts-1 per character, gpt-4o-mini-tts by tokens */
    EP_TRANSCRIBE, /* /v1/audio/transcriptions, translations: multipart; whisper-1 per
                      second, gpt-4o(-mini)-transcribe by tokens */
    EP_IMAGE_EDIT, /* /v1/images/edits: multipart; as EP_IMAGE, and gpt-image-1's image
                      input tokens at image_input */
    EP_IMAGE_VARY, /* /v1/images/variations: multipart; dall-e-2 per image by size */
};

/* Why a paid endpoint is not metered yet, for the 403 and the README. */
#define NOT_YET "it costs money and tollgate does not meter it yet"
#define EPHEMERAL                                                                                  \
    "it mints an ephemeral key or session that reaches OpenAI without passing tollgate"

/* Every path of OpenAI's API that tollgate knows, first match wins; the
 * rest is unknown ([pricing] unmetered_routes). Metered endpoints are POSTs;
 * reading, listing and deleting what they stored is free. */
static const struct provider_route routes[] = {
    {"POST", "/v1/chat/completions", ROUTE_METERED, EP_CHAT, MODEL_BODY, NULL},
    {"POST", "/v1/completions", ROUTE_METERED, EP_LEGACY, MODEL_BODY, NULL},
    {"POST", "/v1/embeddings", ROUTE_METERED, EP_EMBED, MODEL_BODY, NULL},
    {"POST", "/v1/responses", ROUTE_METERED, EP_RESP, MODEL_BODY, NULL},
    /* counting input tokens and cancelling cost nothing */
    {"POST", "/v1/responses/input_tokens", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/responses/*/cancel", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/v1/responses/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"DELETE", "/v1/responses/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    /* stored chat completions: list, read, update metadata, delete */
    {"GET", "/v1/chat/completions/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/chat/completions/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"DELETE", "/v1/chat/completions/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/v1/models/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"DELETE", "/v1/models/*", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/moderations", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    /* files and uploads: metadata and content, stored without charge */
    {NULL, "/v1/files/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/v1/uploads/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    /* batch metadata; creating one is paid */
    {"GET", "/v1/batches/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/batches/*/cancel", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/batches", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {"POST", "/v1/images/generations", ROUTE_METERED, EP_IMAGE, MODEL_BODY, NULL},
    {"POST", "/v1/audio/speech", ROUTE_METERED, EP_SPEECH, MODEL_BODY, NULL},
    {"POST", "/v1/audio/transcriptions", ROUTE_METERED, EP_TRANSCRIBE, MODEL_BODY, NULL},
    {"POST", "/v1/audio/translations", ROUTE_METERED, EP_TRANSCRIBE, MODEL_BODY, NULL},
    {"POST", "/v1/images/edits", ROUTE_METERED, EP_IMAGE_EDIT, MODEL_BODY, NULL},
    {"POST", "/v1/images/variations", ROUTE_METERED, EP_IMAGE_VARY, MODEL_BODY, NULL},
    {NULL, "/v1/images/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {NULL, "/v1/audio/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {NULL, "/v1/realtime/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, EPHEMERAL},
    /* fine-tuning jobs: reading and cancelling are free, creating trains */
    {"GET", "/v1/fine_tuning/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/fine_tuning/jobs/*/cancel", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/fine_tuning/jobs/*/pause", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"POST", "/v1/fine_tuning/jobs/*/resume", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/v1/fine_tuning/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    /* Assistants: runs bill tokens tollgate never sees; the objects are free */
    {NULL, "/v1/threads/runs", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {"GET", "/v1/threads/*/runs/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/v1/threads/*/runs/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {NULL, "/v1/threads/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/v1/assistants/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {"GET", "/v1/videos/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
    {NULL, "/v1/videos/**", ROUTE_UNKNOWN, EP_OTHER, MODEL_NONE, NOT_YET},
    {"GET", "/v1/organization/**", ROUTE_FREE, EP_OTHER, MODEL_NONE, NULL},
};

/* On the shared listener every /v1 path not claimed more precisely by
 * another provider is OpenAI's. */
static const char *const claims[] = {"/v1/**"};

/* What prepare reads; the text fields feed the input estimate. */
static const struct json_scan_field fields[] = {
    OPENAI_BODY_FIELDS,
    /* images and speech only (not the chat shape gemini.c shares) */
    {"size", false},
    {"quality", false},
    {"moderation", false},
    {"output_format", false},
    {"output_compression", false},
    {"partial_images", false},
    {"stream_format", false},
    {"speed", false},
};

static const struct json_scan_spec body_fields = {
    .fields = fields,
    .n_fields = ARRAY_LEN(fields),
    .skip_keys = provider_text_skip_keys,
    .n_skip_keys = PROVIDER_N_TEXT_SKIP_KEYS,
};

/* Makes a chat/legacy stream carry its usage chunk: stream_options.include_usage
 * = true, other stream_options members kept, by an edit of the body's text.
 * The client did not ask for the chunk, so the proxy strips it again
 * (call->strip_usage). */
static int want_usage(struct provider_call *call, const struct json_scan *body, char *err,
                      size_t errlen)
{
    if (provider_body_object(body, "stream_options", err, errlen) < 0)
        return -1;
    const struct json_scan_value *so = provider_body_get(body, "stream_options");
    const struct json_scan_value *iu = provider_body_get(body, "stream_options.include_usage");
    if (iu->type == JSON_SCAN_TRUE)
        return 0;
    call->strip_usage = true;
    static const char member[] = "\"stream_options\":{\"include_usage\":true},";
    static const char object[] = "{\"include_usage\":true}";
    static const char inner[] = "\"include_usage\":true,";
    int rc;
    if (so->type == JSON_SCAN_ABSENT) /* first member; the comma only before another */
        rc = provider_add_edit(call, body->top_open + 1, body->top_open + 1, member,
                               sizeof(member) - 1 - !body->top_members);
    else if (so->type == JSON_SCAN_NULL)
        rc = provider_add_edit(call, so->start, so->end, object, sizeof(object) - 1);
    else if (iu->type != JSON_SCAN_ABSENT) /* false, null, ...: the value replaced */
        rc = provider_add_edit(call, iu->start, iu->end, "true", 4);
    else
        rc = provider_add_edit(call, so->start + 1, so->start + 1, inner,
                               sizeof(inner) - 1 - !so->members);
    if (rc < 0)
        snprintf(err, errlen, "the request cannot be prepared (too many edits)");
    return rc;
}

/* A size or quality as a price key part: short, [a-z0-9] only; anything
 * else leaves the variant unlisted, so the model's (or the highest) price. */
static bool variant_word(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* What an image request bills, generated or edited: n images, priced per
 * image by size and quality (pricing.conf [dall-e-3/1024x1024/hd]) unless
 * the answer reports token usage (gpt-image-1). */
static void image_units(struct provider_call *call, int64_t n, const char *size,
                        const char *quality)
{
    call->choices = n;
    call->units = n;
    call->unit = USAGE_UNIT_IMAGE;
    call->units_known = true;
    call->price_kind = PRICE_KIND_IMAGE;
    call->bound_if_unseen = true;
    /* a variant that does not fit is no price variant (and -O1's
     * -Wformat-truncation wants the result looked at) */
    if (variant_word(size) && variant_word(quality) &&
        snprintf(call->price_variant, sizeof(call->price_variant), "/%s/%s", size, quality) >=
            (int)sizeof(call->price_variant))
        call->price_variant[0] = '\0';
}

/* POST /v1/images/generations (ImageGenerateParams): n images of size and
 * quality. gpt-image-1 reports token usage; dall-e-2 and dall-e-3 report
 * none and are priced per image, by size and quality (pricing.conf
 * [dall-e-3/1024x1024/hd]). */
static int prepare_image(struct provider_call *call, const struct json_scan *body, char *err,
                         size_t errlen)
{
    if (provider_body_model(body, false, call->model, sizeof(call->model), err, errlen) < 0 ||
        provider_body_bool(body, "stream", &call->stream, err, errlen) < 0)
        return -1;
    if (!call->model[0]) {
        /* OpenAI's default: dall-e-2, unless a parameter only gpt-image-1 takes is sent */
        static const char *const only_gpt_image[] = {
            "moderation", "output_format", "output_compression", "partial_images", "background"};
        bool gpt = call->stream;
        for (size_t i = 0; i < ARRAY_LEN(only_gpt_image); i++)
            gpt = gpt || provider_body_has(body, only_gpt_image[i]);
        snprintf(call->model, sizeof(call->model), "%s", gpt ? "gpt-image-1" : "dall-e-2");
    }
    int64_t n = 1;
    if (provider_body_count(body, "n", 1, 10, &n, err, errlen) < 0)
        return -1;
    char size[JSON_SCAN_STR_MAX] = "1024x1024", quality[JSON_SCAN_STR_MAX] = "standard";
    provider_body_str(body, "size", size, sizeof(size));
    provider_body_str(body, "quality", quality, sizeof(quality));
    image_units(call, n, size, quality);
    call->est_input_tokens = provider_body_tokens(body); /* the prompt */
    return 0;
}

/* POST /v1/audio/speech (SpeechCreateParams): the answer is audio bytes.
 * tts-1 and tts-1-hd are billed per character of input, known from the
 * request; gpt-4o-mini-tts by tokens, reported only in the SSE answer
 * (stream_format "sse", speech.audio.done), else billed on the bound. */
static int prepare_speech(struct provider_call *call, const struct json_scan *body, char *err,
                          size_t errlen)
{
    if (provider_body_model(body, true, call->model, sizeof(call->model), err, errlen) < 0)
        return -1;
    const struct json_scan_value *in = provider_body_get(body, "input");
    if (in->type != JSON_SCAN_STRING) {
        snprintf(err, errlen, "`input` must be a string: the text to generate audio for");
        return -1;
    }
    char fmt[JSON_SCAN_STR_MAX] = "";
    provider_body_str(body, "stream_format", fmt, sizeof(fmt));
    call->stream = strcmp(fmt, "sse") == 0;
    call->units = (int64_t)in->chars;
    call->unit = USAGE_UNIT_CHARACTER;
    call->price_kind = PRICE_KIND_AUDIO;
    call->priced_on_request = strncmp(call->model, "tts-1", 5) == 0;
    call->units_known = true;
    call->bound_if_unseen = !call->priced_on_request;
    call->est_input_tokens = provider_body_tokens(body); /* input, instructions */
    /* The audio's tokens bound: speech at speed 1 runs about 1.3 audio tokens a
     * character, 2 bounds it; a slower speed (down to 0.25) makes it longer. */
    const struct json_scan_value *sp = provider_body_get(body, "speed");
    int64_t per_char =
        (sp->type == JSON_SCAN_INT || sp->type == JSON_SCAN_REAL) && sp->d < 1 ? 8 : 2;
    call->max_output_tokens = provider_sat_mul(call->units > 0 ? call->units : 1, per_char);
    return 0;
}

/* Audio bytes a second of speech takes at least (16 kbit/s, below the
 * common encodings): a file's size bounds its duration from above. */
#define AUDIO_MIN_BYTES_PER_SECOND 2000
/* Audio input tokens a second (gpt-4o-transcribe bills about 17), for the
 * estimate of a transcription whose usage is lost. */
#define AUDIO_TOKENS_PER_SECOND 20

/* the fields of the multipart endpoints, by index (form->fields) */
static const char *const form_fields[] = {"model", "stream", "n", "size", "quality"};
enum { F_MODEL, F_STREAM, F_N, F_SIZE, F_QUALITY };

/* The form's model into call->model; dflt when the form names none (NULL:
 * the field is required). */
static int form_model(struct provider_call *call, const struct multipart *form, const char *dflt,
                      char *err, size_t errlen)
{
    const struct multipart_field *model = &form->fields[F_MODEL];
    if (!model->seen && dflt) {
        snprintf(call->model, sizeof(call->model), "%s", dflt);
        return 0;
    }
    if (!model->seen || model->too_long || model->len == 0 || strlen(model->value) != model->len) {
        snprintf(err, errlen,
                 "the form needs a `model` field: a model name shorter than 128 bytes");
        return -1;
    }
    for (const char *p = model->value; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "the `model` field must not hold control characters");
            return -1;
        }
    }
    snprintf(call->model, sizeof(call->model), "%s", model->value);
    return 0;
}

/* Image input tokens a file part of an edit may take at most (gpt-image-1
 * with input_fidelity high), for the estimate: the answer's usage is the
 * bill. */
#define IMAGE_INPUT_TOKENS_MAX 6500

/* POST /v1/images/edits and /v1/images/variations (multipart): n images of
 * size and quality, as a generation (prepare_image). An edit names its
 * model (OpenAI's default, dall-e-2, changes with the parameters sent; a
 * form without one is refused rather than guessed), a variation is
 * dall-e-2's unless named. gpt-image-1 reports its usage, image input
 * tokens apart; the estimate counts the text fields' bytes and a bound per
 * image uploaded. */
static int prepare_image_form(struct provider_call *call, const struct multipart *form,
                              int64_t body_bytes, char *err, size_t errlen)
{
    bool vary = call->kind == EP_IMAGE_VARY;
    if (form_model(call, form, vary ? "dall-e-2" : NULL, err, errlen) < 0)
        return -1;
    call->stream = form->fields[F_STREAM].seen && strcmp(form->fields[F_STREAM].value, "true") == 0;
    int64_t n = 1;
    if (form->fields[F_N].seen) {
        char *end = NULL;
        long v = strtol(form->fields[F_N].value, &end, 10);
        if (!end || *end || end == form->fields[F_N].value || v < 1 || v > 10) {
            snprintf(err, errlen, "`n` must be an integer from 1 to 10");
            return -1;
        }
        n = v;
    }
    const char *size = form->fields[F_SIZE].seen ? form->fields[F_SIZE].value : "1024x1024";
    const char *quality =
        form->fields[F_QUALITY].seen && !vary ? form->fields[F_QUALITY].value : "standard";
    image_units(call, n, size, quality);
    int64_t text = body_bytes - form->file_bytes;
    int64_t files = form->parts > 0 ? (int64_t)form->parts : 1;
    call->est_input_tokens = provider_sat_add(provider_estimate_tokens(text > 0 ? (size_t)text : 0),
                                              provider_sat_mul(files, IMAGE_INPUT_TOKENS_MAX));
    return 0;
}

/* POST /v1/audio/transcriptions and translations (multipart): the model
 * field, stream, and a duration bounded from the file's size. whisper-1 is
 * billed per second of the duration its answer reports, the gpt-4o
 * transcribe models by their token usage; an answer without either (text,
 * srt, vtt formats) is billed on that bound, flagged estimated. */
static int prepare_transcribe(struct provider_call *call, const struct multipart *form,
                              int64_t body_bytes, char *err, size_t errlen)
{
    if (form_model(call, form, NULL, err, errlen) < 0)
        return -1;
    const struct multipart_field *stream = &form->fields[F_STREAM];
    call->stream = stream->seen && strcmp(stream->value, "true") == 0;
    int64_t audio = form->file_bytes > 0 ? form->file_bytes : body_bytes;
    int64_t seconds = (audio + AUDIO_MIN_BYTES_PER_SECOND - 1) / AUDIO_MIN_BYTES_PER_SECOND;
    call->units = seconds > 0 ? seconds : 1;
    call->unit = USAGE_UNIT_SECOND;
    call->price_kind = PRICE_KIND_AUDIO;
    call->bound_if_unseen = true;
    call->est_input_tokens = provider_sat_mul(call->units, AUDIO_TOKENS_PER_SECOND);
    return 0;
}

/* The multipart endpoints. */
static int prepare_form(struct provider_call *call, const struct multipart *form,
                        int64_t body_bytes, char *err, size_t errlen)
{
    if (call->kind == EP_IMAGE_EDIT || call->kind == EP_IMAGE_VARY)
        return prepare_image_form(call, form, body_bytes, err, errlen);
    return prepare_transcribe(call, form, body_bytes, err, errlen);
}

static int prepare(struct provider_call *call, const struct json_scan *body, char *err,
                   size_t errlen)
{
    enum endpoint kind = (enum endpoint)call->kind;
    provider_prepare_begin(call);
    if (kind == EP_TRANSCRIBE || kind == EP_IMAGE_EDIT || kind == EP_IMAGE_VARY) {
        snprintf(err, errlen, "send the %s as multipart/form-data with a file and a model field",
                 kind == EP_TRANSCRIBE ? "audio" : "image");
        return -1;
    }
    /* The caller rejects an invalid JSON body (passed as NULL) only on a
     * metered endpoint. */
    if (!body)
        return 0;
    if (kind == EP_OTHER) {
        provider_prepare_forwarded(call, body);
        return 0;
    }
    if (provider_body_is_object(body, err, errlen) < 0)
        return -1;
    if (kind == EP_IMAGE)
        return prepare_image(call, body, err, errlen);
    if (kind == EP_SPEECH)
        return prepare_speech(call, body, err, errlen);
    /* Responses may take the model from a stored prompt; the answer names it. */
    bool need_model = !(kind == EP_RESP && provider_body_has(body, "prompt"));
    if (provider_body_model(body, need_model, call->model, sizeof(call->model), err, errlen) < 0)
        return -1;
    bool stream = false;
    if (provider_body_bool(body, "stream", &stream, err, errlen) < 0)
        return -1;
    call->stream = stream && kind != EP_EMBED;
    call->price_kind = kind == EP_EMBED ? PRICE_KIND_EMBEDDING : PRICE_KIND_CHAT;
    /* A background Response answers at once without usage; the work (and
     * its bill) arrives later through GET /v1/responses/{id}, which tollgate
     * does not meter: refused rather than let through nearly free. */
    bool background = false;
    if (kind == EP_RESP &&
        (provider_body_bool(body, "background", &background, err, errlen) < 0 || background)) {
        if (background)
            snprintf(err, errlen,
                     "background Responses (\"background\": true) are not accepted: their usage "
                     "arrives after the request, past the budget check; send the request "
                     "without it (streaming works)");
        return -1;
    }

    /* Any of the three bounds may be sent; reserve for the largest. */
    static const char *const bounds[] = {"max_completion_tokens", "max_tokens",
                                         "max_output_tokens"};
    int64_t bound = 0;
    for (size_t i = 0; i < ARRAY_LEN(bounds); i++) {
        int64_t b = 0;
        if (provider_body_count(body, bounds[i], 0, PROVIDER_MAX_OUTPUT_TOKENS, &b, err, errlen) <
            0)
            return -1;
        if (b > bound)
            bound = b;
    }
    /* n choices (best_of for legacy completions) are all billed. */
    int64_t n = 1, best_of = 1;
    if (provider_body_count(body, "n", 1, 128, &n, err, errlen) < 0 ||
        provider_body_count(body, "best_of", 1, 128, &best_of, err, errlen) < 0)
        return -1;
    call->max_output_tokens = bound;
    call->choices = n > best_of ? n : best_of;
    /* flex and priority processing have their own prices (pricing.h) */
    char tier[JSON_SCAN_STR_MAX] = "";
    provider_body_str(body, "service_tier", tier, sizeof(tier));
    call->tier = usage_tier_of(tier);

    /* messages, input, prompt, instructions: the text fields */
    call->est_input_tokens = provider_body_tokens(body);

    if (call->stream && (kind == EP_CHAT || kind == EP_LEGACY))
        return want_usage(call, body, err, errlen);
    return 0;
}

/* The service_tier an answer (or a chunk, or a Response) names: the tier
 * that served it and is billed, whatever the request asked. */
static void read_tier(struct meter *m, const json_t *o)
{
    const char *t = json_string_value(json_object_get(o, "service_tier"));
    if (t) {
        m->tier = usage_tier_of(t);
        m->tier_seen = true;
    }
}

/* The member names of one of OpenAI's usage shapes. */
struct usage_names {
    const char *input, *input_details, *output, *output_details;
};
/* CompletionUsage (chat, legacy, embeddings) and ResponseUsage. */
static const struct usage_names chat_names = {"prompt_tokens", "prompt_tokens_details",
                                              "completion_tokens", "completion_tokens_details"};
static const struct usage_names resp_names = {"input_tokens", "input_tokens_details",
                                              "output_tokens", "output_tokens_details"};

/* A usage object of shape n: the whole object replaces what an earlier
 * chunk said (last wins). */
static void read_usage(struct usage *u, const json_t *o, const struct usage_names *n)
{
    const json_t *in = json_object_get(o, n->input_details);
    const json_t *out = json_object_get(o, n->output_details);
    struct usage x = {
        .input = provider_json_count(o, n->input),
        .cached = provider_json_count(in, "cached_tokens"),
        .cache_write = provider_json_count(in, "cache_write_tokens"),
        .output = provider_json_count(o, n->output),
        .reasoning = provider_json_count(out, "reasoning_tokens"),
        .seen = true,
    };
    /* Keep the subsets subsets even if a compatible backend disagrees. */
    if (x.cached > x.input)
        x.cached = x.input;
    if (x.cache_write > x.input - x.cached)
        x.cache_write = x.input - x.cached;
    if (x.reasoning > x.output)
        x.reasoning = x.output;
    *u = x;
}

static size_t str_len(const json_t *v)
{
    return json_is_string(v) ? json_string_length(v) : 0;
}

/* Generated text of one chunk: content, refusal, tool-call arguments (chat),
 * text (legacy completions). Used only to estimate output when usage is lost. */
static size_t chunk_text(const json_t *choices)
{
    size_t total = 0, i, k;
    json_t *c, *tc;
    json_array_foreach(choices, i, c)
    {
        const json_t *d = json_object_get(c, "delta");
        total += str_len(json_object_get(d, "content")) + str_len(json_object_get(d, "refusal")) +
                 str_len(json_object_get(c, "text"));
        json_array_foreach(json_object_get(d, "tool_calls"), k, tc) total +=
            str_len(json_object_get(json_object_get(tc, "function"), "arguments"));
    }
    return total;
}

static void chat_chunk(struct meter *m, const struct provider_call *call, const json_t *j,
                       bool *drop)
{
    if (provider_json_has(j, "error"))
        m->stream_error = true;
    provider_copy_str(m->model, sizeof(m->model), json_object_get(j, "model"));
    read_tier(m, j);
    const json_t *choices = json_object_get(j, "choices");
    m->text_bytes += chunk_text(choices);
    const json_t *u = json_object_get(j, "usage");
    if (!json_is_object(u))
        return;
    provider_check_usage(m, u);
    read_usage(&m->usage, u, &chat_names);
    /* The usage-only chunk ("choices": [], null or absent) exists because
     * prepare asked for it; a chunk that also carries choices is kept. */
    bool usage_only = !choices || json_is_null(choices) ||
                      (json_is_array(choices) && json_array_size(choices) == 0);
    if (call->strip_usage && usage_only)
        *drop = true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Responses API events, keyed by the JSON "type" (fixtures omit event:). */
static void resp_event(struct meter *m, const json_t *j, const char *type)
{
    const json_t *r = json_object_get(j, "response");
    provider_copy_str(m->model, sizeof(m->model), json_object_get(r, "model"));
    read_tier(m, r);
    if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
        strcmp(type, "response.failed") == 0) {
        const json_t *u = json_object_get(r, "usage");
        if (json_is_object(u))
            provider_check_usage(m, u);
        read_usage(&m->usage, u, &resp_names);
        m->done = true;
        if (strcmp(type, "response.failed") == 0)
            m->stream_error = true;
    } else if (strcmp(type, "error") == 0) {
        m->stream_error = true;
    } else if (ends_with(type, ".delta")) {
        /* output_text, reasoning text, function arguments: all billed output. */
        m->text_bytes += str_len(json_object_get(j, "delta"));
    }
}

static bool is_image(int kind)
{
    return kind == EP_IMAGE || kind == EP_IMAGE_EDIT || kind == EP_IMAGE_VARY;
}

/* Whole-answer usage of an image call: ImagesResponse.usage (gpt-image-1)
 * added to what earlier images of the call reported; the images billed
 * per image are the n asked for. dall-e reports no usage: its answer is the
 * bill (per image). */
static void image_usage(struct meter *m, const struct provider_call *call, const json_t *u)
{
    struct usage add = {0}, *t = &m->usage;
    if (json_is_object(u)) {
        provider_check_usage(m, u);
        read_usage(&add, u, &resp_names);
        add.image_input =
            provider_json_count(json_object_get(u, "input_tokens_details"), "image_tokens");
        if (add.image_input > add.input - add.cached)
            add.image_input = add.input - add.cached;
        t->image_input = provider_sat_add(t->image_input, add.image_input);
        t->input = provider_sat_add(t->input, add.input);
        t->cached = provider_sat_add(t->cached, add.cached);
        t->output = provider_sat_add(t->output, add.output);
        t->seen = true;
    } else if (strncmp(call->model, "dall-e", 6) == 0) {
        t->seen = true;
    }
    t->units = call->units;
    t->unit = call->unit;
}

/* Streamed image generation (gpt-image-1): partial images, then one
 * image_generation.completed per image with its usage. */
static void image_event(struct meter *m, const struct provider_call *call, const json_t *j,
                        const char *type)
{
    if (strcmp(type, "image_generation.completed") == 0 ||
        strcmp(type, "image_edit.completed") == 0) {
        image_usage(m, call, json_object_get(j, "usage"));
        m->done = true;
    } else if (strcmp(type, "error") == 0) {
        m->stream_error = true;
    }
}

/* Speech as SSE (gpt-4o-mini-tts, stream_format "sse"): audio deltas, then
 * speech.audio.done with the usage. */
static void speech_event(struct meter *m, const json_t *j, const char *type)
{
    if (strcmp(type, "speech.audio.done") == 0) {
        const json_t *u = json_object_get(j, "usage");
        if (json_is_object(u)) {
            provider_check_usage(m, u);
            read_usage(&m->usage, u, &resp_names);
        }
        m->done = true;
    } else if (strcmp(type, "error") == 0) {
        m->stream_error = true;
    }
}

/* A Transcription's usage: {"type":"tokens", input_tokens, output_tokens}
 * (gpt-4o transcribe models) or {"type":"duration","seconds":N} (whisper-1),
 * else the verbose answer's "duration" (seconds, rounded up). */
static void transcript_usage(struct meter *m, const json_t *j)
{
    const json_t *u = json_object_get(j, "usage");
    const char *type = json_string_value(json_object_get(u, "type"));
    const json_t *secs = json_object_get(u, "seconds");
    const json_t *dur = json_object_get(j, "duration");
    if (type && strcmp(type, "tokens") == 0) {
        provider_check_usage(m, u);
        read_usage(&m->usage, u, &resp_names);
        return;
    }
    if (!json_is_number(secs))
        secs = dur;
    double d = json_number_value(secs);
    if (!json_is_number(secs) || !(d >= 0) || d > 1e7) {
        if (secs)
            m->usage_invalid = true;
        return;
    }
    int64_t s = (int64_t)d;
    m->usage =
        (struct usage){.seen = true, .units = s + (d > (double)s), .unit = USAGE_UNIT_SECOND};
}

/* A streamed transcription: transcript.text.delta events, then
 * transcript.text.done with the usage. */
static void transcript_event(struct meter *m, const json_t *j, const char *type)
{
    if (strcmp(type, "transcript.text.done") == 0) {
        transcript_usage(m, j);
        m->done = true;
    } else if (strcmp(type, "transcript.text.delta") == 0) {
        m->text_bytes += str_len(json_object_get(j, "delta"));
    } else if (strcmp(type, "error") == 0) {
        m->stream_error = true;
    }
}

static bool is_done_marker(const char *d, size_t n)
{
    while (n && (d[n - 1] == ' ' || d[n - 1] == '\t'))
        n--;
    return n == 6 && memcmp(d, "[DONE]", 6) == 0;
}

/* Every chunk is parsed: text_bytes needs the deltas, and a chunk is a few
 * hundred bytes, so jansson's cost is small next to the network. */
/* True when the JSON text names key followed (after blanks and ':') by c.
 * A quoted key inside a string value is escaped (\"usage\") and does not
 * match, so a false match only costs the slow path. */
static bool key_then(const char *d, size_t n, const char *key, char c)
{
    size_t k = strlen(key);
    for (const char *p = d, *end = d + n; (p = memmem(p, (size_t)(end - p), key, k)); p += k) {
        const char *q = p + k;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n' || *q == ':'))
            q++;
        if (c == 0 || (q < end && *q == c))
            return true;
    }
    return false;
}

/* UTF-8 bytes of the JSON string starting after its opening quote at p,
 * as json_string_length would count them; stops at the closing quote. */
static size_t json_str_bytes(const char *p, const char *end)
{
    size_t n = 0;
    while (p < end && *p != '"') {
        if (*p != '\\') {
            n++;
            p++;
            continue;
        }
        if (p + 1 < end && p[1] == 'u' && p + 6 <= end) {
            unsigned v = (unsigned)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
            n += v < 0x80 ? 1 : v < 0x800 ? 2 : (v >= 0xd800 && v < 0xe000) ? 2 : 3;
            p += 6; /* a surrogate pair counts 2 + 2: the 4 bytes of its code point */
        } else {
            n++;
            p += 2;
        }
    }
    return n;
}

/* The hot path of a chat stream: most chunks carry only a few bytes of
 * delta content. When the model is known and the chunk has no usage
 * object, no error and no "type" (Responses events), its only use is the
 * text count for estimates, which a scan gives without building JSON. */
static bool plain_chunk(struct meter *m, const struct sse_event *ev)
{
    const char *d = ev->data, *end = ev->data + ev->data_len;
    if (!m->model[0] || ev->data_len == 0 || d[0] != '{' ||
        key_then(d, ev->data_len, "\"usage\"", '{') || key_then(d, ev->data_len, "\"error\"", 0) ||
        key_then(d, ev->data_len, "\"type\"", 0) || key_then(d, ev->data_len, "\"tool_calls\"", 0))
        return false;
    static const char *const keys[] = {"\"content\"", "\"refusal\"", "\"text\""};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        size_t k = strlen(keys[i]);
        for (const char *p = d; (p = memmem(p, (size_t)(end - p), keys[i], k)); p += k) {
            const char *q = p + k;
            while (q < end && (*q == ' ' || *q == ':'))
                q++;
            if (q < end && *q == '"')
                m->text_bytes += json_str_bytes(q + 1, end);
        }
    }
    return true;
}

static void on_event(struct meter *m, const struct provider_call *call, const struct sse_event *ev,
                     bool *drop)
{
    if (is_done_marker(ev->data, ev->data_len)) {
        m->done = true;
        return;
    }
    if (ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0)
        m->stream_error = true;
    if (plain_chunk(m, ev))
        return;
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!json_is_object(j))
        goto out;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && is_image(call->kind))
        image_event(m, call, j, type);
    else if (type && call->kind == EP_SPEECH)
        speech_event(m, j, type);
    else if (type && call->kind == EP_TRANSCRIBE)
        transcript_event(m, j, type);
    else if (type)
        resp_event(m, j, type);
    else
        chat_chunk(m, call, j, drop);
out:
    json_decref(j);
}

static void on_doc(struct meter *m, const struct provider_call *call, const json_t *j)
{
    if (!json_is_object(j))
        return;
    provider_copy_str(m->model, sizeof(m->model), json_object_get(j, "model"));
    const json_t *u = json_object_get(j, "usage");
    if (is_image(call->kind)) {
        m->usage = (struct usage){0};
        image_usage(m, call, u);
        return;
    }
    if (call->kind == EP_TRANSCRIBE) {
        transcript_usage(m, j);
        return;
    }
    read_tier(m, j);
    if (!json_is_object(u))
        return;
    provider_check_usage(m, u);
    /* Shape decides: Responses name input_tokens, the others prompt_tokens. */
    if (json_object_get(u, "input_tokens") || json_object_get(u, "output_tokens"))
        read_usage(&m->usage, u, &resp_names);
    else
        read_usage(&m->usage, u, &chat_names);
    if (call->kind == EP_EMBED) {
        m->usage.cached = m->usage.cache_write = 0;
        m->usage.output = m->usage.reasoning = 0;
    }
}

/* The type the SDKs expect for tollgate's own codes and statuses (section 5);
 * both 429 types parse into RateLimitError. */
static const char *error_type(int status, const char *code)
{
    if (code && (strcmp(code, "budget_exceeded") == 0 || strcmp(code, "allowance_exhausted") == 0))
        return "insufficient_quota";
    if (code && strcmp(code, "rate_limit_exceeded") == 0)
        return "rate_limit_exceeded";
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_exceeded";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void error_body(struct evbuffer *out, int status, const char *code, const char *cap,
                       const char *message)
{
    json_t *v = json_pack("{s:{s:o?,s:s,s:n,s:o?}}", "error", "message",
                          provider_json_message(message ? message : "request rejected by tollgate"),
                          "type", error_type(status, code), "param", "code",
                          code ? provider_json_message(code) : NULL);
    /* beside code, as the SDKs keep the whole error object (err.error.cap) */
    if (v && cap)
        json_object_set_new(json_object_get(v, "error"), "cap", json_string(cap));
    provider_write_json(out, v,
                        "{\"error\":{\"message\":\"tollgate error\",\"type\":\"api_error\","
                        "\"param\":null,\"code\":null}}");
}

/* What on_doc reads of a whole answer (chat, legacy, embeddings, Responses). */
static const struct json_scan_field answer_fields[] = {
    OPENAI_ANSWER_FIELDS,
    /* image and audio answers only (not the chat shape gemini.c shares) */
    {"usage.input_tokens_details.image_tokens", false},
    {"usage.type", false},
    {"usage.seconds", false},
    {"duration", false},
};

/* The response cache (cache/cache_key.h): what a request asks for that is
 * not to be given twice. The Responses API runs its built-in tools itself;
 * function, computer and shell tools are the client's. */
static const struct cache_rule cache_request[] = {
    OPENAI_CACHE_REQUEST_RULES,
    {NULL, CACHE_MATCH_SET, NULL, CACHE_WHY_IMAGE, "/v1/images/**"},
    {NULL, CACHE_MATCH_SET, NULL, CACHE_WHY_AUDIO, "/v1/audio/**"},
};

/* A Responses output item that a built-in tool made, whole (output.type),
 * in an event (item.type) and in the final event (response.output.type). */
#define RESP_ITEM(type, why)                                                                       \
    {"output.type", CACHE_MATCH_STRING, type, why, NULL},                                          \
        {"item.type", CACHE_MATCH_STRING, type, why, NULL},                                        \
    {                                                                                              \
        "response.output.type", CACHE_MATCH_STRING, type, why, NULL                                \
    }

/* What in an answer keeps it from being stored: refusals (chat, and the
 * Responses refusal part and events, or output cut by the content filter),
 * built-in tools' results, images and audio. */
static const struct cache_rule cache_answer[] = {
    OPENAI_CACHE_ANSWER_RULES,
    {"output.content.type", CACHE_MATCH_STRING, "refusal", CACHE_WHY_REFUSAL, NULL},
    {"item.content.type", CACHE_MATCH_STRING, "refusal", CACHE_WHY_REFUSAL, NULL},
    {"part.type", CACHE_MATCH_STRING, "refusal", CACHE_WHY_REFUSAL, NULL},
    {"response.output.content.type", CACHE_MATCH_STRING, "refusal", CACHE_WHY_REFUSAL, NULL},
    {"type", CACHE_MATCH_STRING, "response.refusal.*", CACHE_WHY_REFUSAL, NULL},
    {"incomplete_details.reason", CACHE_MATCH_STRING, "content_filter", CACHE_WHY_REFUSAL, NULL},
    {"response.incomplete_details.reason", CACHE_MATCH_STRING, "content_filter", CACHE_WHY_REFUSAL,
     NULL},
    RESP_ITEM("web_search_call", CACHE_WHY_PROVIDER_TOOL),
    RESP_ITEM("file_search_call", CACHE_WHY_PROVIDER_TOOL),
    RESP_ITEM("code_interpreter_call", CACHE_WHY_PROVIDER_TOOL),
    RESP_ITEM("mcp_call", CACHE_WHY_PROVIDER_TOOL),
    RESP_ITEM("mcp_list_tools", CACHE_WHY_PROVIDER_TOOL),
    RESP_ITEM("image_generation_call", CACHE_WHY_IMAGE),
};

_Static_assert(ARRAY_LEN(fields) <= JSON_SCAN_MAX_FIELDS &&
                   ARRAY_LEN(answer_fields) <= JSON_SCAN_MAX_FIELDS,
               "json_scan reads at most JSON_SCAN_MAX_FIELDS members");

const struct provider provider_openai = {
    .name = "openai",
    .default_url = "https://api.openai.com",
    .auth_header = "Authorization",
    .auth_scheme = "Bearer ",
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
    .prepare_form = prepare_form,
    .form_fields = form_fields,
    .n_form_fields = ARRAY_LEN(form_fields),
    .cache_request = {cache_request, ARRAY_LEN(cache_request)},
    .cache_answer = {cache_answer, ARRAY_LEN(cache_answer)},
};
