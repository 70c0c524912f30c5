/* cloudevent.c: records to CloudEvents JSON (cloudevent.h). The record line
 * is parsed (jansson) only to find id, tenant and ts and to be sure it is a
 * JSON object; "data" is the line as written, so amounts keep the exact
 * decimal digits of the records file (a parse and re-print could turn
 * 0.000405 into 0.00040500000000000003). */
#include "export/cloudevent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "core/log.h"

/* Appends s as a JSON string. */
static int put_str(struct evbuffer *out, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    int rc = t ? evbuffer_add(out, t, strlen(t)) : -1;
    free(t);
    json_decref(j);
    return rc;
}

int cloudevent_append(struct evbuffer *out, const char *line, size_t len, const char *source,
                      char *err, size_t errlen)
{
    json_error_t je;
    if (len > 0 && line[len - 1] == '\n')
        len--;
    json_t *rec = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    const char *id = NULL, *tenant = NULL, *ts = NULL;
    if (!rec) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -1;
    }
    if (!json_is_object(rec) || !(id = json_string_value(json_object_get(rec, "id"))) ||
        !(tenant = json_string_value(json_object_get(rec, "tenant"))) ||
        !(ts = json_string_value(json_object_get(rec, "ts"))) || !*id) {
        snprintf(err, errlen, "not a usage record (an object with string id, tenant and ts)");
        json_decref(rec);
        return -1;
    }
    struct evbuffer *ev = evbuffer_new(); /* built to the side: out changes whole or not */
    int rc =
        !ev || evbuffer_add_printf(ev, "{\"specversion\":\"1.0\",\"id\":") < 0 ||
                put_str(ev, id) < 0 || evbuffer_add_printf(ev, ",\"source\":") < 0 ||
                put_str(ev, source) < 0 ||
                evbuffer_add_printf(ev, ",\"type\":\"" CLOUDEVENT_TYPE "\",\"subject\":") < 0 ||
                put_str(ev, tenant) < 0 || evbuffer_add_printf(ev, ",\"time\":") < 0 ||
                put_str(ev, ts) < 0 ||
                evbuffer_add_printf(ev, ",\"datacontenttype\":\"application/json\",\"data\":") <
                    0 ||
                evbuffer_add(ev, line, len) < 0 || evbuffer_add(ev, "}", 1) < 0 ||
                evbuffer_add_buffer(out, ev) < 0
            ? -1
            : 0;
    json_decref(rec);
    if (ev)
        evbuffer_free(ev);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* Shortens out to its first n bytes. */
static void cut_to(struct evbuffer *out, size_t n)
{
    struct evbuffer *keep = evbuffer_new();
    if (!keep)
        return;
    evbuffer_remove_buffer(out, keep, n);
    evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_add_buffer(out, keep);
    evbuffer_free(keep);
}

int cloudevent_batch(struct evbuffer *out, const char *buf, size_t len, size_t max_events,
                     const char *source, size_t *used, size_t *events, size_t *bad)
{
    size_t off = 0, n = 0, skipped = 0, index = 0;
    if (evbuffer_add(out, "[", 1) < 0)
        return -1;
    while (off < len && n < max_events) {
        const char *nl = memchr(buf + off, '\n', len - off);
        if (!nl)
            break;
        size_t l = (size_t)(nl - (buf + off)) + 1;
        char err[160];
        size_t mark = evbuffer_get_length(out);
        if (n > 0 && evbuffer_add(out, ",", 1) < 0)
            return -1;
        if (cloudevent_append(out, buf + off, l, source, err, sizeof(err)) < 0) {
            if (strcmp(err, "out of memory") == 0)
                return -1;
            if (evbuffer_get_length(out) > mark) /* take the comma back */
                cut_to(out, mark);
            log_error("export: spooled line %zu of this batch skipped: %s", index, err);
            skipped++;
        } else {
            n++;
        }
        off += l;
        index++;
    }
    if (evbuffer_add(out, "]", 1) < 0)
        return -1;
    *used = off;
    *events = n;
    *bad = skipped;
    return 0;
}
