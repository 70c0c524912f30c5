/* fuzz_cache_key.c: differential libFuzzer target for the response cache's
 * canonical body digest (cache/cache_key.c), with jansson as the oracle.
 *
 * Input: the body. What the scanner (http/json_scan.c) refuses never
 * reaches the digest in the proxy, so only accepted bodies are held to:
 *   - the digest succeeds;
 *   - jansson's reading of the body written back with sorted keys and no
 *     whitespace, and again indented with every non-ASCII character escaped,
 *     has the same digest (order, whitespace, escapes and number spelling
 *     never count; a repeated nested member counts once, the last);
 *   - for an object: adding or changing a dropped member (stream, user,
 *     metadata) keeps the digest, and adding a member the body does not have
 *     changes it.
 *   - the providers' cache rules, matched on the same walk, never change
 *     the digest; the facts-only walk finds the same facts.
 * Bodies the scanner refuses are still walked, for memory safety. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache/cache_key.h"
#include "http/json_scan.h"
#include "providers/provider.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_cache_key: invariant failed: %s (line %d)\n", #cond, __LINE__);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool accepted(const uint8_t *d, size_t n)
{
    struct json_scan s;
    json_scan_init(&s, NULL);
    bool ok = json_scan_feed(&s, (const char *)d, n) == 0 && json_scan_finish(&s) == 0;
    json_scan_free(&s);
    return ok;
}

/* The digest of jansson's writing of j with flags; false when it cannot
 * write it. */
static bool digest_dump(const json_t *j, size_t flags, unsigned char *out)
{
    char *text = json_dumps(j, flags | JSON_ENCODE_ANY);
    if (!text)
        return false;
    CHECKF(cache_body_digest(text, strlen(text), out, NULL, NULL) == 0);
    free(text);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    unsigned char want[CACHE_DIGEST_LEN], got[CACHE_DIGEST_LEN];
    struct cache_body_facts facts;
    size_t k_prov = 0;
    if (!accepted(d, n)) {
        int rc =
            cache_body_digest((const char *)d, n, want, &provider_gemini.cache_request, &facts);
        rc = cache_body_facts((const char *)d, n, &provider_openai.cache_answer, &facts);
        (void)rc; /* anything but a crash, a leak or a hang */
        return 0;
    }
    CHECKF(cache_body_digest((const char *)d, n, want, NULL, &facts) == 0);
    for (const struct provider *p; (p = provider_at(k_prov)); k_prov++) {
        const struct cache_rules *rules[] = {&p->cache_request, &p->cache_answer};
        for (size_t i = 0; i < 2; i++) {
            unsigned char with[CACHE_DIGEST_LEN];
            struct cache_body_facts f1, f2;
            CHECKF(cache_body_digest((const char *)d, n, with, rules[i], &f1) == 0);
            CHECKF(memcmp(want, with, sizeof(want)) == 0);
            CHECKF(cache_body_facts((const char *)d, n, rules[i], &f2) == 0);
            CHECKF(f1.why == f2.why && f1.has_temperature == f2.has_temperature);
        }
    }
    json_error_t e;
    json_t *j = json_loadb((const char *)d, n, JSON_ALLOW_NUL, &e);
    CHECKF(j != NULL); /* the scanner accepts exactly what jansson does (fuzz_json_scan) */
    if (digest_dump(j, JSON_SORT_KEYS | JSON_COMPACT, got))
        CHECKF(memcmp(want, got, sizeof(want)) == 0);
    if (digest_dump(j, JSON_INDENT(3) | JSON_ENSURE_ASCII, got))
        CHECKF(memcmp(want, got, sizeof(want)) == 0);
    if (json_is_object(j)) {
        json_object_set_new(j, "stream", json_true());
        json_object_set_new(j, "user", json_string("fuzz-user"));
        json_object_set_new(j, "metadata", json_pack("{s:i}", "k", 1));
        if (digest_dump(j, JSON_COMPACT, got))
            CHECKF(memcmp(want, got, sizeof(want)) == 0);
        if (!json_object_get(j, "zz-fuzz-member")) {
            json_object_set_new(j, "zz-fuzz-member", json_integer(1));
            if (digest_dump(j, JSON_COMPACT, got))
                CHECKF(memcmp(want, got, sizeof(want)) != 0);
        }
    }
    json_decref(j);
    return 0;
}
