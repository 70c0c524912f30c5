/* span.c: the OTLP/JSON span of one request (span.h). Built with jansson
 * so every string is escaped; ids are lowercase hex as the OTLP JSON
 * encoding requires (not base64), int64 values are decimal strings and
 * times are Unix nanoseconds as strings (the proto3 JSON mapping). */
#include "export/span.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "core/money.h"
#include "export/trace.h"
#include "records/record.h"

#define SPAN_KIND_CLIENT 3
#define STATUS_UNSET 0
#define STATUS_ERROR 2

const char *span_operation(const char *ep)
{
    if (!ep)
        return NULL;
    if (strstr(ep, "/embeddings") || strstr(ep, ":embedContent") || strstr(ep, ":batchEmbed"))
        return "embeddings";
    if (strstr(ep, "/chat/completions") || strstr(ep, "/messages") || strstr(ep, "/responses"))
        return "chat";
    if (strstr(ep, "/completions"))
        return "text_completion";
    if (strstr(ep, ":generateContent") || strstr(ep, ":streamGenerateContent"))
        return "generate_content";
    return NULL;
}

const char *span_provider(const char *p)
{
    if (p && strcmp(p, "gemini") == 0)
        return "gcp.gemini";
    return p;
}

static int add(json_t *attrs, const char *key, const char *kind, json_t *v)
{
    if (!v)
        return -1;
    json_t *a = json_pack("{s:s,s:{s:o}}", "key", key, "value", kind, v);
    return a ? json_array_append_new(attrs, a) : -1;
}

static int add_str(json_t *attrs, const char *key, const char *v)
{
    return v ? add(attrs, key, "stringValue", json_string(v)) : 0;
}

static int add_int(json_t *attrs, const char *key, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return add(attrs, key, "intValue", json_string(buf));
}

static int64_t unix_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

int span_format(struct evbuffer *out, const struct record *rec, const struct trace_ctx *t,
                const char *decision)
{
    json_t *attrs = json_array(), *span = NULL;
    char *text = NULL;
    int rc = -1;
    const char *op = span_operation(rec->endpoint);
    const struct usage *u = &rec->usage;
    char name[200], start[24], end[24];
    int64_t t0 = unix_ns(&rec->ts);
    int64_t dur = rec->latency_ms > 0 ? (int64_t)(rec->latency_ms * 1e6) : 0;
    snprintf(start, sizeof(start), "%" PRId64, t0);
    snprintf(end, sizeof(end), "%" PRId64, t0 + dur);
    const char *req_model = rec->model_requested ? rec->model_requested : rec->model;
    if (req_model)
        snprintf(name, sizeof(name), "%s %.150s", op ? op : "proxy", req_model);
    else
        snprintf(name, sizeof(name), "%s %.150s", op ? op : "proxy", rec->endpoint);
    if (!attrs)
        goto done;
    if (add_str(attrs, "gen_ai.operation.name", op ? op : "other") < 0 ||
        add_str(attrs, "gen_ai.provider.name", span_provider(rec->provider)) < 0 ||
        add_str(attrs, "gen_ai.request.model", req_model) < 0 ||
        add_str(attrs, "gen_ai.response.model", rec->model) < 0 ||
        add_int(attrs, "gen_ai.usage.input_tokens", u->input) < 0 ||
        add_int(attrs, "gen_ai.usage.output_tokens", u->output) < 0 ||
        add_int(attrs, "gen_ai.usage.cache_read.input_tokens", u->cached) < 0 ||
        add_int(attrs, "gen_ai.usage.cache_creation.input_tokens", u->cache_write) < 0 ||
        add_int(attrs, "gen_ai.usage.reasoning.output_tokens", u->reasoning) < 0 ||
        add_str(attrs, "tollgate.tenant", rec->tenant) < 0 ||
        add_str(attrs, "tollgate.user", rec->user) < 0 ||
        add_str(attrs, "tollgate.feature", rec->feature) < 0 ||
        add_str(attrs, "tollgate.plan", rec->plan) < 0 ||
        add(attrs, "tollgate.cost_usd", "doubleValue",
            json_real((double)rec->cost / (double)MONEY_PER_USD)) < 0 ||
        add_str(attrs, "tollgate.budget_decision", decision ? decision : "none") < 0 ||
        add_str(attrs, "tollgate.outcome", outcome_name(rec->outcome)) < 0 ||
        add_str(attrs, "tollgate.request_id", rec->id) < 0 ||
        add(attrs, "tollgate.estimated", "boolValue", json_boolean(u->estimated)) < 0 ||
        add(attrs, "tollgate.downgraded", "boolValue", json_boolean(rec->downgraded)) < 0 ||
        add_str(attrs, "url.path", rec->endpoint) < 0 ||
        (rec->status > 0 && add_int(attrs, "http.response.status_code", rec->status) < 0))
        goto done;
    bool error = rec->outcome != OUTCOME_OK;
    if (error && add_str(attrs, "error.type", outcome_name(rec->outcome)) < 0)
        goto done;
    span = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:O}", "traceId", t->trace_id, "spanId", t->span_id,
                     "name", name, "kind", SPAN_KIND_CLIENT, "startTimeUnixNano", start,
                     "endTimeUnixNano", end, "attributes", attrs);
    if (!span)
        goto done;
    if (t->has_parent && json_object_set_new(span, "parentSpanId", json_string(t->parent_id)) < 0)
        goto done;
    json_t *status =
        error ? json_pack("{s:i,s:s}", "code", STATUS_ERROR, "message", outcome_name(rec->outcome))
              : json_pack("{s:i}", "code", STATUS_UNSET);
    if (!status || json_object_set_new(span, "status", status) < 0)
        goto done;
    text = json_dumps(span, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (!text || evbuffer_add(out, text, strlen(text)) < 0)
        goto done;
    if (evbuffer_add(out, "\n", 1) < 0)
        goto done; /* unlikely; the sink skips a line without its '\n' end */
    rc = 0;
done:
    free(text);
    json_decref(span);
    json_decref(attrs);
    return rc;
}
