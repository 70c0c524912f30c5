/* json_scan.h: a validating single-pass scanner of a request body's JSON that
 * builds no tree. It is fed the body in pieces of any size, as the pieces
 * arrive (state in the struct, no I/O), validates every byte (RFC 8259:
 * grammar, escapes, UTF-8 incl. lone surrogates), refuses duplicate members
 * of the top-level object (a second "model" must never pick the price), and
 * yields what the providers need: the values of a few member paths
 * ("model", "stream_options.include_usage", "generationConfig.maxOutputTokens")
 * with their byte offsets, so a body can be edited by splicing, and the text
 * bytes of some members for the token estimate. Nested values nobody asked
 * for are only validated.
 *
 * What it accepts is exactly what json_loadb(JSON_ALLOW_NUL) accepts plus a
 * check for duplicate top-level members (fuzz/fuzz_json_scan.c holds it to
 * that): the top level is an object or an array; integers fit int64_t; reals
 * do not overflow a double; nesting is at most 2048 values deep; \u0000 is
 * allowed in values and refused in keys. One deviation: jansson skips a raw
 * NUL byte right after a number or literal; here a raw NUL is always an
 * error, as the RFC says. */
#ifndef TOLLGATE_JSON_SCAN_H
#define TOLLGATE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

#define JSON_SCAN_MAX_FIELDS 24  /* member paths per scan */
#define JSON_SCAN_PATH_MAX 4     /* members per path: a.b.c.d */
#define JSON_SCAN_STR_MAX 128    /* decoded bytes kept of a string value (NUL included) */
#define JSON_SCAN_MAX_DEPTH 2048 /* jansson's limit: values nested deeper are refused */

enum json_scan_type {
    JSON_SCAN_ABSENT = 0, /* the path is not in the body */
    JSON_SCAN_NULL,
    JSON_SCAN_FALSE,
    JSON_SCAN_TRUE,
    JSON_SCAN_INT,    /* a number without fraction or exponent, in i (and d) */
    JSON_SCAN_REAL,   /* any other number, in d */
    JSON_SCAN_STRING, /* decoded into str (cut), full decoded length in len */
    JSON_SCAN_OBJECT,
    JSON_SCAN_ARRAY,
};

/* A member path to capture; text: add the text bytes of its value to the
 * estimate (strings by decoded length, 4 per number; members named in
 * skip_keys and base64 data: URLs not counted, at any depth). */
struct json_scan_field {
    const char *path; /* '.' between member names, at most JSON_SCAN_PATH_MAX */
    bool text;
};

/* What to look for. The spec and its strings must outlive the scan. */
struct json_scan_spec {
    const struct json_scan_field *fields; /* at most JSON_SCAN_MAX_FIELDS */
    size_t n_fields;
    const char *const *skip_keys; /* member names whose values are not text */
    size_t n_skip_keys;
};

/* One captured value. Offsets count from the first byte of the body; a
 * duplicate member inside a nested object is allowed, the last one wins
 * (as in jansson). */
struct json_scan_value {
    enum json_scan_type type;
    size_t start;                /* first byte of the value ('"', '{', '-', 't', ...) */
    size_t end;                  /* one past its last byte */
    size_t members;              /* objects and arrays: members or elements */
    int64_t i;                   /* JSON_SCAN_INT */
    double d;                    /* JSON_SCAN_INT and JSON_SCAN_REAL */
    size_t len;                  /* JSON_SCAN_STRING: decoded bytes (may exceed str) */
    size_t chars;                /* JSON_SCAN_STRING: decoded code points (UTF-8 characters) */
    bool nul;                    /* JSON_SCAN_STRING: holds U+0000 */
    char str[JSON_SCAN_STR_MAX]; /* JSON_SCAN_STRING: decoded, NUL-terminated, cut */
};

struct json_scan {
    /* ---- results, valid once json_scan_finish returned 0 ---- */
    enum json_scan_type top;                        /* JSON_SCAN_OBJECT or JSON_SCAN_ARRAY */
    size_t top_open;                                /* offset of the top-level '{' or '[' */
    size_t top_close;                               /* offset of its closing '}' or ']' */
    size_t top_members;                             /* members (elements) of the top level */
    size_t text_bytes;                              /* summed over the text fields, saturating */
    struct json_scan_value v[JSON_SCAN_MAX_FIELDS]; /* by index in spec->fields */
    /* ---- why the body is not valid, when a call returned -1 ---- */
    char err[112];
    size_t err_at; /* offset of the offending byte */

    /* ---- private ---- */
    const struct json_scan_spec *spec;
    uint8_t comp_off[JSON_SCAN_MAX_FIELDS][JSON_SCAN_PATH_MAX];
    uint8_t comp_len[JSON_SCAN_MAX_FIELDS][JSON_SCAN_PATH_MAX];
    uint8_t npath[JSON_SCAN_MAX_FIELDS];
    int state;                              /* enum state in json_scan.c */
    size_t pos;                             /* bytes fed before the current piece */
    const unsigned char *piece;             /* the piece being fed (offsets) */
    size_t depth;                           /* open objects and arrays */
    uint8_t kinds[JSON_SCAN_MAX_DEPTH / 8]; /* bit set: that level is an object */
    struct {
        uint32_t mask;  /* fields whose path continues inside this object */
        uint32_t exact; /* fields this container's value is */
        size_t members;
    } level[JSON_SCAN_PATH_MAX + 2]; /* by value depth (top level = 1) */
    uint32_t pending_mask;           /* fields the member whose key was just read may be */
    bool pending_skip;               /* that member's value is not text */
    uint32_t scalar_exact;           /* fields the scalar being read is */
    size_t scalar_start;
    size_t text_vd, skip_vd; /* value depths where text counting began, paused */
    /* strings */
    bool in_key;
    bool str_nul;
    size_t slen;   /* decoded bytes so far */
    size_t schars; /* of which the first bytes of a character (captured values only) */
    int sink;      /* where decoded bytes go (enum sink) */
    char *sink_buf;
    size_t sink_used, sink_cap;
    uint32_t hex, high; /* \uXXXX being read; high surrogate waiting for its pair */
    int hex_left;
    unsigned char u8[4]; /* a UTF-8 sequence split across pieces */
    int u8_have, u8_need;
    size_t u8_at;                    /* offset of its first byte */
    char keybuf[64];                 /* a nested key, for path matching and skip_keys */
    char textbuf[JSON_SCAN_STR_MAX]; /* start of a text string: data: URL check */
    /* literals and numbers */
    const char *lit;
    int lit_at;
    int num_part;
    bool num_neg, num_ovf, num_sticky, num_exp_neg;
    uint64_t num_mag;
    long num_point, num_exp;
    int num_nsig;
    char num_sig[400]; /* significant digits, enough to round any double */
    /* top-level keys: decoded back to back, with an open-addressing set */
    char *keys;
    size_t keys_len, keys_cap, key_start;
    size_t *slots; /* 1 + index into key_at, 0 = empty */
    size_t nslots, nkeys;
    size_t *key_at; /* start of each key in keys; its end is the next start */
    size_t key_at_cap;
};

/* Prepares s for one body; spec may be NULL (validate only). */
void json_scan_init(struct json_scan *s, const struct json_scan_spec *spec);
/* Feeds the next len bytes of the body. Returns 0, or -1 once the body is
 * known to be invalid (s->err, s->err_at) or memory ran out; later feeds
 * return -1 too. */
int json_scan_feed(struct json_scan *s, const char *buf, size_t len) MUST_CHECK;
/* End of the body. Returns 0 when it was one valid JSON text, else -1. */
int json_scan_finish(struct json_scan *s) MUST_CHECK;
/* Releases what the scan allocated (the top-level key set); s may then be
 * initialised again. */
void json_scan_free(struct json_scan *s);

#endif
