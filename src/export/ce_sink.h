/* ce_sink.h: delivery of usage records to a CloudEvents receiver
 * ([export] cloudevents_url), at least once. Workers hand over batches of
 * record lines (never waiting); a thread of its own appends them to the
 * on-disk spool (spool.h), then POSTs them as CloudEvents batches
 * (cloudevent.h) and moves the spool's cursor only past what the receiver
 * accepted (2xx). A receiver that is down, slow or failing is retried with
 * backoff while the spool holds the events, across restarts; a batch
 * refused as too large (413) is split; a single event refused as invalid
 * (400, 413, 422) is logged and skipped so it cannot block the rest. */
#ifndef TOLLGATE_CE_SINK_H
#define TOLLGATE_CE_SINK_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

struct config;
struct evbuffer;

#define CE_POST_TIMEOUT_MS 5000     /* a receiver must answer a batch within this */
#define CE_BATCH_EVENTS 500         /* events per POST at most */
#define CE_INCOMING_MAX (64u << 20) /* handed over, not yet on disk; past it: dropped */

struct ce_sink;

struct ce_stats {
    uint64_t spool_bytes;   /* on disk, not yet accepted by the receiver */
    uint64_t sent;          /* events the receiver accepted */
    uint64_t dropped;       /* never spooled: spool full, disk error, hand-over full */
    uint64_t rejected;      /* refused by the receiver one by one as invalid */
    uint64_t post_failures; /* POSTs that failed (network, timeout, 5xx, ...) */
};

/* Opens the spool and starts the thread (main thread; cfg->cloudevents_url
 * set). NULL with err. */
struct ce_sink *ce_sink_open(const struct config *cfg, char *err, size_t errlen) MUST_CHECK;
/* Spools what was handed over, stops the thread (a POST in flight ends
 * within CE_POST_TIMEOUT_MS), closes. What the receiver has not accepted
 * stays in the spool for the next start. After every worker stopped. */
void ce_sink_close(struct ce_sink *s);
/* Takes all of lines (whole record lines, n of them) from any thread. */
void ce_sink_push(struct ce_sink *s, struct evbuffer *lines, unsigned long n);
void ce_sink_stats(struct ce_sink *s, struct ce_stats *out);

#endif
