/* cloudevent.h: usage records as CloudEvents 1.0 in the JSON batch format
 * (application/cloudevents-batch+json), as OpenMeter, Lago and other billing
 * systems ingest them. One event per record: id = the record's id (so the
 * receiver drops duplicates by id and source), source = the configured
 * instance name, type = tollgate.usage, subject = the tenant, time = the
 * record's ts, data = the record line itself, byte for byte. No I/O. */
#ifndef TOLLGATE_CLOUDEVENT_H
#define TOLLGATE_CLOUDEVENT_H

#include <stddef.h>
#include "core/util.h"

struct evbuffer;

#define CLOUDEVENT_TYPE "tollgate.usage"
#define CLOUDEVENT_BATCH_TYPE "application/cloudevents-batch+json"

/* Appends the event for one record line (len bytes, a trailing '\n' is
 * allowed) to out. -1 with err when the line is not a record object with a
 * string id, tenant and ts (out is then unchanged). */
int cloudevent_append(struct evbuffer *out, const char *line, size_t len, const char *source,
                      char *err, size_t errlen) MUST_CHECK;

/* The batch body for the first lines of buf[0..len) (whole '\n'-terminated
 * lines, at most max_events): "[ev,ev,...]" into out. *used is the bytes of
 * buf those lines span, *events the events written, *bad the lines skipped
 * as not records (each logged once here, with its index). -1 when out of
 * memory. */
int cloudevent_batch(struct evbuffer *out, const char *buf, size_t len, size_t max_events,
                     const char *source, size_t *used, size_t *events, size_t *bad) MUST_CHECK;

#endif
