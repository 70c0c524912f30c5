/* answer.c: usage from a whole JSON answer as it passes (answer.h). */
#include "providers/answer.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

int answer_init(struct answer *a, const struct provider *prov)
{
    memset(a, 0, sizeof(*a));
    a->prov = prov;
    a->spec.fields = prov->answer_fields;
    a->spec.n_fields = prov->n_answer_fields;
    a->spec.skip_keys = provider_text_skip_keys;
    a->spec.n_skip_keys = PROVIDER_N_TEXT_SKIP_KEYS;
    json_scan_init(&a->scan, &a->spec);
    return 0;
}

void answer_feed(struct answer *a, const char *buf, size_t len)
{
    if (!a->started) {
        size_t i = 0;
        while (i < len && strchr(" \t\r\n", buf[i]) && buf[i])
            i++;
        if (i < len) {
            a->started = true;
            a->array = buf[i] == '[';
            if (a->array && !(a->copy = evbuffer_new()))
                a->too_big = true;
        }
    }
    if (a->array) {
        if (a->too_big || evbuffer_get_length(a->copy) + len > ANSWER_MAX_ARRAY)
            a->too_big = true;
        else if (evbuffer_add(a->copy, buf, len) < 0)
            a->too_big = true;
        return;
    }
    if (!a->failed && json_scan_feed(&a->scan, buf, len) < 0)
        a->failed = true;
}

/* Sets doc's member at the dotted path to v (taking v), making the objects
 * on the way. */
static void set_path(json_t *doc, const char *path, json_t *v)
{
    char name[64];
    json_t *at = doc;
    for (const char *p = path;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(name))
            break;
        memcpy(name, p, n);
        name[n] = '\0';
        if (!dot) {
            json_t *old = json_object_get(at, name);
            if (json_is_object(old) && json_is_object(v)) /* an inner member came first */
                break;
            json_object_set(at, name, v);
            break;
        }
        json_t *next = json_object_get(at, name);
        if (!json_is_object(next)) {
            next = json_object();
            if (!next || json_object_set_new(at, name, next) < 0)
                break;
        }
        at = next;
        p = dot + 1;
    }
    json_decref(v);
}

static json_t *value_of(const struct json_scan_value *v)
{
    switch (v->type) {
    case JSON_SCAN_NULL:
        return json_null();
    case JSON_SCAN_FALSE:
        return json_false();
    case JSON_SCAN_TRUE:
        return json_true();
    case JSON_SCAN_INT:
        return json_integer(v->i);
    case JSON_SCAN_REAL:
        return json_real(v->d);
    case JSON_SCAN_STRING: /* cut mid-character: no string rather than a bad one */
        return json_stringn(v->str, strnlen(v->str, sizeof(v->str)));
    case JSON_SCAN_OBJECT:
        return json_object();
    case JSON_SCAN_ARRAY:
        return json_array();
    case JSON_SCAN_ABSENT:
        break;
    }
    return NULL;
}

void answer_finish(struct answer *a, struct meter *m, const struct provider_call *call)
{
    if (a->array) {
        if (!a->too_big) {
            size_t n = evbuffer_get_length(a->copy);
            provider_on_json(a->prov, m, call, (const char *)evbuffer_pullup(a->copy, -1), n);
        }
        return;
    }
    if (a->failed || json_scan_finish(&a->scan) < 0 || a->scan.top != JSON_SCAN_OBJECT)
        return;
    json_t *doc = json_object();
    if (!doc)
        return;
    /* objects first, so a member set later lands inside them */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < a->spec.n_fields; i++) {
            const struct json_scan_value *v = &a->scan.v[i];
            bool container = v->type == JSON_SCAN_OBJECT || v->type == JSON_SCAN_ARRAY;
            if (v->type == JSON_SCAN_ABSENT || container != (pass == 0))
                continue;
            set_path(doc, a->spec.fields[i].path, value_of(v));
        }
    }
    a->prov->on_doc(m, call, doc); /* as built: no text to print and parse again */
    json_decref(doc);
    m->text_bytes += a->scan.text_bytes;
}

void answer_free(struct answer *a)
{
    json_scan_free(&a->scan);
    if (a->copy)
        evbuffer_free(a->copy);
    a->copy = NULL;
}
