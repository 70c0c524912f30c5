/* cache_key.h: the canonical digest of a request body for the response
 * cache. Two bodies that are the same question get the same digest: the
 * members of every object in any order, any whitespace, a string escaped any
 * way ("\u0041" is "A"), a number spelled any way with the same value (1e2 and
 * 100.0, but 100 stays an integer, as jansson reads them); a member repeated
 * inside a nested object counts once, the last one (jansson's rule). The top-level
 * members that do not change the answer (stream, stream_options, user,
 * metadata) are left out. It is a digest of the values, never a
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

/* What the walk learnt that decides whether an answer can be given twice. */
struct cache_body_facts {
    bool has_temperature; /* top-level temperature or generationConfig.temperature */
    double temperature;
    bool audio; /* a top-level "audio" member (OpenAI audio output) */
};

/* Digest of the canonical form of body[0..len) into out; facts may be NULL.
 * Returns 0, or -1 when the body is not JSON as json_scan accepts it or
 * memory ran out. */
int cache_body_digest(const char *body, size_t len, unsigned char out[CACHE_DIGEST_LEN],
                      struct cache_body_facts *facts) MUST_CHECK;

#endif
