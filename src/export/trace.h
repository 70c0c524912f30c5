/* trace.h: W3C Trace Context for the OTLP export: the app's `traceparent`
 * is parsed, the request gets a span of its own as the child of it (or the
 * root of a new trace), and the upstream receives a `traceparent` naming
 * that span, so the provider call joins the app's trace. No I/O. */
#ifndef TOLLGATE_TRACE_H
#define TOLLGATE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

#define TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

struct trace_ctx {
    bool on;             /* otlp_endpoint set: a span is made for this request */
    bool has_parent;     /* the app sent a valid traceparent */
    char trace_id[33];   /* lowercase hex */
    char span_id[17];    /* this request's span */
    char parent_id[17];  /* the app's span; "" without a parent */
    unsigned char flags; /* trace-flags, from the parent (default 01: sampled) */
};

/* Parses a traceparent header value (version 00 exactly; a higher version
 * is read by its first four fields, as the spec asks). Fills trace_id,
 * parent_id, flags and has_parent; false (t untouched) when it is invalid:
 * wrong length or shape, upper-case hex, all-zero ids, version ff. */
bool trace_parse(const char *value, struct trace_ctx *t) MUST_CHECK;

/* Starts this request's span: a fresh span id, and a fresh trace id (flags
 * 01) when no parent was parsed. value may be NULL (no header). */
void trace_start(struct trace_ctx *t, const char *value);

/* "00-TRACE-SPAN-FLAGS" for the upstream; out has TRACEPARENT_LEN + 1. */
void trace_format(const struct trace_ctx *t, char *out);

#endif
