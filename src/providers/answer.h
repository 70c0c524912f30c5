/* answer.h: usage from a whole JSON answer of any size. The answer is
 * scanned as it passes (json_scan.h, bounded memory, no buffer), keeping
 * only the members the provider names in answer_fields; at the end those
 * members are rebuilt as a small JSON tree and handed to the provider's
 * on_doc as built, so one reader per provider takes usage from whole answers,
 * small or 9 MB alike. A top-level array (Gemini's streamGenerateContent
 * without alt=sse) is kept whole up to a bound instead, as its usage sits
 * in the last element. */
#ifndef TOLLGATE_ANSWER_H
#define TOLLGATE_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include "http/json_scan.h"
#include "providers/provider.h"

struct evbuffer;

#define ANSWER_MAX_ARRAY (8 << 20) /* a JSON array answer larger than this is estimated */

struct answer {
    const struct provider *prov;
    struct json_scan_spec spec;
    struct json_scan scan;
    bool failed;           /* not valid JSON (or out of memory): no usage from it */
    bool started;          /* the first non-blank byte was seen */
    bool array;            /* it is an array: kept in copy instead */
    struct evbuffer *copy; /* the array answer, while within ANSWER_MAX_ARRAY */
    bool too_big;
};

/* Prepares a for one answer of prov. Returns 0 or -1 (out of memory). */
int answer_init(struct answer *a, const struct provider *prov) MUST_CHECK;
/* The next bytes of the answer, as they pass. */
void answer_feed(struct answer *a, const char *buf, size_t len);
/* The answer ended: its usage (and model, text count) into m. */
void answer_finish(struct answer *a, struct meter *m, const struct provider_call *call);
void answer_free(struct answer *a);

#endif
