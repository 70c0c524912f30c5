/* cache_key.h: the canonical digest of a request body for the response
 * cache. Two bodies that are the same question get the same digest: the
 * members of every object in any order, any whitespace, a string escaped any
 * way ("\u0041" is "A"), a number spelled any way with the same value (1e2 and
 * 100.0, but 100 stays an integer, as jansson reads them); a member repeated
 * inside a nested object counts once, the last one (jansson's rule). The top-level
 * members that do not change the answer (stream, stream_options, user,
 * metadata) are left out. The same walk matches a provider's rules (what
 * makes an answer one not to give twice) on the way. It is a digest of the values, never a
 * re-serialisation: nothing is rebuilt as text.
 *
 * The body must already have passed json_scan (http/json_scan.h), which
 * validates every byte; this walk only reads the structure the scanner
 * accepted and answers -1 if it meets anything else. No I/O; memory grows
 * with the number of values in the body, freed before it returns. */
#ifndef TOLLGATE_CACHE_KEY_H
#define TOLLGATE_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

#define CACHE_DIGEST_LEN 32 /* SHA-256 */

/* Why an answer cannot be given twice (bits). The first four are the
 * operator's to allow ([cache] allow); a refusal never is. */
enum cache_why {
    CACHE_WHY_SAMPLED = 1 << 0,       /* n > 1 at a temperature above 0: meant to differ */
    CACHE_WHY_PROVIDER_TOOL = 1 << 1, /* tools the provider runs (web search, code, files,
                                         MCP): their results change over time */
    CACHE_WHY_IMAGE = 1 << 2,         /* images made */
    CACHE_WHY_AUDIO = 1 << 3,         /* audio made */
    CACHE_WHY_REFUSAL = 1 << 4,       /* answers: the provider refused (a 200 all the same) */
};

/* How a rule's value is matched. */
enum cache_match {
    CACHE_MATCH_SET,         /* present and not null, false, "" or [] ({} counts: a tool
                                switched on by an empty object) */
    CACHE_MATCH_STRING,      /* a string equal to value; '*' at either end is any text */
    CACHE_MATCH_TEMPERATURE, /* a number: the sampling temperature (a fact, no why) */
};

/* A provider's rule (its own table, providers/NAME.c): the member at path
 * makes a body (a request's, or an answer's or one SSE event's) what why
 * says. path names members from the top joined by '.', arrays passed
 * through: "tools.type" is the type of every element of tools. Or, with
 * path NULL, a request row for the endpoint pattern (provider_path_match). */
struct cache_rule {
    const char *path;
    enum cache_match match;
    const char *value; /* CACHE_MATCH_STRING */
    unsigned why;      /* enum cache_why bits */
    const char *endpoint;
};

struct cache_rules {
    const struct cache_rule *rows;
    size_t n;
};

/* What the walk learnt that decides whether an answer can be given twice. */
struct cache_body_facts {
    bool has_temperature; /* a CACHE_MATCH_TEMPERATURE member */
    double temperature;
    unsigned why; /* enum cache_why bits of the rules that matched */
};

/* Digest of the canonical form of body[0..len) into out; facts (may be NULL)
 * from rules (may be NULL). Returns 0, or -1 when the body is not JSON as
 * json_scan accepts it or memory ran out. */
int cache_body_digest(const char *body, size_t len, unsigned char out[CACHE_DIGEST_LEN],
                      const struct cache_rules *rules, struct cache_body_facts *facts) MUST_CHECK;

/* The same walk without a digest: only the facts of rules (an answer's).
 * Returns 0, or -1 when body is not JSON (facts then hold what was found
 * before the error). */
int cache_body_facts(const char *body, size_t len, const struct cache_rules *rules,
                     struct cache_body_facts *facts) MUST_CHECK;

#endif
