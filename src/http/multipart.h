/* multipart.h: the few form fields tollgate needs from a multipart/form-data
 * body (RFC 7578): an audio transcription's model, response_format and
 * stream, and how many bytes the file parts hold. Fed the body in pieces of
 * any size, resumable at every byte; keeps only the named fields (cut at
 * MULTIPART_VALUE_MAX) and one header line (MULTIPART_LINE_MAX), so its
 * memory does not grow with the upload. No I/O. */
#ifndef TOLLGATE_MULTIPART_H
#define TOLLGATE_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

#define MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 */
#define MULTIPART_LINE_MAX 1024   /* one part header line */
#define MULTIPART_VALUE_MAX 128   /* a captured field's value, NUL included */
#define MULTIPART_MAX_FIELDS 8

struct multipart_field {
    bool seen;     /* the field was present (the last one wins) */
    bool too_long; /* its value did not fit (value is then empty): a refusal, never a cut
                      model name */
    size_t len;
    char value[MULTIPART_VALUE_MAX];
};

/* Where the reader is; changed only by multipart_feed. */
enum multipart_state {
    MP_PREAMBLE, /* before the first delimiter */
    MP_AFTER,    /* just after a delimiter: "--" ends the body, else CRLF starts a part */
    MP_HEADERS,  /* a part's header lines */
    MP_BODY,     /* a part's content, up to the next delimiter */
    MP_DONE,     /* the closing delimiter was read; what follows is ignored */
    MP_ERROR,    /* malformed: err says why */
};

struct multipart {
    /* ---- results ---- */
    struct multipart_field fields[MULTIPART_MAX_FIELDS]; /* by index in names */
    int64_t file_bytes; /* content bytes of the parts with a filename */
    size_t parts;
    char err[96];

    /* ---- private ---- */
    const char *const *names; /* the field names to capture */
    size_t n_names;
    enum multipart_state state;
    char delim[MULTIPART_BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
    size_t dlen;
    size_t match;  /* bytes of delim matched so far */
    int after;     /* MP_AFTER: bytes seen of "--" or of padding then CRLF */
    bool after_cr; /* MP_AFTER: a CR was seen */
    int field;     /* the part being read: its index in names, -1 none */
    bool file;     /* the part being read has a filename */
    char line[MULTIPART_LINE_MAX];
    size_t line_len;
    bool line_cr;
};

/* The boundary of a Content-Type header value ("multipart/form-data;
 * boundary=..." quoted or not) into out (cap >= MULTIPART_BOUNDARY_MAX + 1).
 * Returns 0, or -1 when the type is not multipart/form-data or the boundary
 * is missing, empty, too long or has a byte RFC 2046 does not allow. */
int multipart_boundary(const char *content_type, char *out, size_t cap) MUST_CHECK;

/* Prepares m for a body with boundary, capturing the fields named in names
 * (at most MULTIPART_MAX_FIELDS; names must outlive m). */
void multipart_init(struct multipart *m, const char *boundary, const char *const *names,
                    size_t n_names);

/* The next piece of the body. Returns 0, or -1 once malformed (m->err). */
int multipart_feed(struct multipart *m, const char *buf, size_t len) MUST_CHECK;

/* The body ended: 0 when the closing delimiter was read, else -1 (m->err). */
int multipart_finish(struct multipart *m) MUST_CHECK;

#endif
