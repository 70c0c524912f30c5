/* export.c: the per-worker fan-out of finished records (export.h). The
 * record is formatted once, as the records file has it, and that line is
 * what every export carries. */
#include "export/export.h"

#include <stdlib.h>

#include "core/config.h"
#include "core/log.h"
#include "export/stream.h"
#include "records/record.h"

#define LINE_STACK 4096  /* most lines fit */
#define LINE_HEAP 131072 /* record.c's longest line */

struct export_worker {
    struct stream_export *stream;
};

struct export_worker *export_worker_new(struct event_base *base, struct redis *r, struct metrics *m)
{
    struct export_worker *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    if (!(x->stream = stream_export_new(base, r, m))) {
        free(x);
        return NULL;
    }
    return x;
}

void export_worker_free(struct export_worker *x)
{
    if (!x)
        return;
    stream_export_free(x->stream);
    free(x);
}

void export_record(struct export_worker *x, const struct config *cfg, const struct record *rec)
{
    char stack[LINE_STACK];
    char *line = stack;
    if (!cfg->redis_stream)
        return;
    int n = record_format(rec, stack, sizeof(stack));
    if (n < 0) { /* rare: long endpoint or many escapes */
        if (!(line = malloc(LINE_HEAP)) || (n = record_format(rec, line, LINE_HEAP)) < 0) {
            log_error("export: record %.64s could not be formatted; not exported",
                      rec->id ? rec->id : "?");
            goto done;
        }
    }
    if (n > 0 && line[n - 1] == '\n')
        n--; /* a stream entry is the object itself */
    stream_export_push(x->stream, cfg->redis_stream, cfg->redis_stream_maxlen, line, (size_t)n);
done:
    if (line != stack)
        free(line);
}
