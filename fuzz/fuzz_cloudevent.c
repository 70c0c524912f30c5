/* fuzz_cloudevent.c: libFuzzer target for the CloudEvents formatting of
 * spooled record lines (cloudevent.c). The spool is tollgate's own file, but
 * a disk error, a manual edit or a crash can leave anything in it, and the
 * sink thread must neither crash nor send invalid JSON.
 *
 * Input: byte 0 is max_events (0 -> 1), the rest the spool bytes. Checked:
 *  - the batch body is a JSON array of exactly `events` objects;
 *  - used <= len, it ends on a '\n' (or is 0), and events + bad lines equal
 *    the lines in buf[0..used);
 *  - each event has specversion 1.0, type tollgate.usage, the source, and a
 *    data object whose id/tenant/ts are its id/subject/time. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "export/cloudevent.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_cloudevent: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int same(json_t *a, const char *key_a, json_t *b, const char *key_b)
{
    const char *x = json_string_value(json_object_get(a, key_a));
    const char *y = json_string_value(json_object_get(b, key_b));
    return x && y && strcmp(x, y) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        log_setup((enum log_level) - 1, false); /* skipped-line errors are expected */
        quiet = 1;
    }
    if (size < 1)
        return 0;
    size_t max = data[0] ? data[0] : 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    struct evbuffer *b = evbuffer_new();
    size_t used = 0, events = 0, bad = 0;
    CHECKF(b != NULL);
    CHECKF(cloudevent_batch(b, buf, len, max, "fuzz", &used, &events, &bad) == 0);
    CHECKF(used <= len);
    CHECKF(used == 0 || buf[used - 1] == '\n');
    CHECKF(events <= max);
    size_t lines = 0;
    for (size_t i = 0; i < used; i++)
        lines += buf[i] == '\n';
    CHECKF(lines == events + bad);
    json_error_t je;
    json_t *arr = json_loadb((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b), 0, &je);
    CHECKF(json_is_array(arr));
    CHECKF(json_array_size(arr) == events);
    for (size_t i = 0; i < events; i++) {
        json_t *ev = json_array_get(arr, i);
        json_t *d = json_object_get(ev, "data");
        CHECKF(json_is_object(d));
        CHECKF(strcmp(json_string_value(json_object_get(ev, "specversion")), "1.0") == 0);
        CHECKF(strcmp(json_string_value(json_object_get(ev, "type")), "tollgate.usage") == 0);
        CHECKF(strcmp(json_string_value(json_object_get(ev, "source")), "fuzz") == 0);
        CHECKF(same(ev, "id", d, "id") && same(ev, "subject", d, "tenant") &&
               same(ev, "time", d, "ts"));
    }
    json_decref(arr);
    evbuffer_free(b);
    return 0;
}
