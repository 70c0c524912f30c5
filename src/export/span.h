/* span.h: one OTLP span (the protobuf JSON mapping of opentelemetry.proto.
 * trace.v1.Span) per request, following the OpenTelemetry GenAI semantic
 * conventions: name "{operation} {model}", kind CLIENT, gen_ai.* request
 * and usage attributes, plus tollgate.* (tenant, user, feature, plan,
 * cost_usd, budget_decision, outcome, request_id). No I/O. */
#ifndef TOLLGATE_SPAN_H
#define TOLLGATE_SPAN_H

#include "core/util.h"

struct evbuffer;
struct record;
struct trace_ctx;

/* The gen_ai.operation.name of an endpoint: chat, text_completion,
 * embeddings, generate_content, or NULL when it is none of these. */
const char *span_operation(const char *endpoint);
/* The gen_ai.provider.name of a tollgate provider name (openai,
 * anthropic, gcp.gemini); others as given. */
const char *span_provider(const char *provider);

/* Appends the span of rec as one JSON object and a '\n'. decision may be
 * NULL (admission did not run). 0, or -1 when out of memory (out unchanged). */
int span_format(struct evbuffer *out, const struct record *rec, const struct trace_ctx *t,
                const char *decision) MUST_CHECK;

#endif
