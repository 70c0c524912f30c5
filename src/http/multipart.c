/* multipart.c: a bounded, resumable multipart/form-data field reader
 * (multipart.h). One byte state machine; runs of part content without a CR
 * are skipped with memchr, so an 8 MB upload costs little. */
#include "http/multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c));
}

int multipart_boundary(const char *ct, char *out, size_t cap)
{
    static const char type[] = "multipart/form-data";
    if (!ct || cap < MULTIPART_BOUNDARY_MAX + 1)
        return -1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, type, sizeof(type) - 1) != 0)
        return -1;
    const char *p = ct + sizeof(type) - 1;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ';')
            return -1;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        size_t nlen = (size_t)(p - name);
        if (*p != '=')
            return -1;
        p++;
        char val[MULTIPART_BOUNDARY_MAX + 2];
        size_t vlen = 0;
        bool too_long = false;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (vlen < sizeof(val) - 1)
                    val[vlen++] = *p;
                else
                    too_long = true;
            }
            if (*p != '"')
                return -1;
            p++;
        } else {
            for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
                if (vlen < sizeof(val) - 1)
                    val[vlen++] = *p;
                else
                    too_long = true;
            }
        }
        val[vlen] = '\0';
        if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (too_long || vlen == 0 || vlen > MULTIPART_BOUNDARY_MAX || val[vlen - 1] == ' ')
                return -1;
            for (size_t i = 0; i < vlen; i++)
                if (!bchar(val[i]))
                    return -1;
            memcpy(out, val, vlen + 1);
            return 0;
        }
    }
    return -1;
}

void multipart_init(struct multipart *m, const char *boundary, const char *const *names,
                    size_t n_names)
{
    memset(m, 0, sizeof(*m));
    m->names = names;
    m->n_names = n_names < MULTIPART_MAX_FIELDS ? n_names : MULTIPART_MAX_FIELDS;
    size_t b = strnlen(boundary, MULTIPART_BOUNDARY_MAX);
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, boundary, b);
    m->dlen = 4 + b;
    m->match = 2; /* the first delimiter may open the body: its CRLF is implied */
    m->field = -1;
    m->state = MP_PREAMBLE;
}

static int fail(struct multipart *m, const char *why)
{
    if (m->state != MP_ERROR)
        snprintf(m->err, sizeof(m->err), "%s", why);
    m->state = MP_ERROR;
    return -1;
}

/* Content of the current part. */
static void content(struct multipart *m, const char *p, size_t n)
{
    if (m->file)
        m->file_bytes += (int64_t)n;
    if (m->field < 0)
        return;
    struct multipart_field *f = &m->fields[m->field];
    if (f->too_long || f->len + n > sizeof(f->value) - 1) {
        /* no part of a value that does not fit, however the body was split */
        f->too_long = true;
        f->len = 0;
        f->value[0] = '\0';
        return;
    }
    memcpy(f->value + f->len, p, n);
    f->len += n;
    f->value[f->len] = '\0';
}

/* The value of parameter param (name, filename) in a Content-Disposition
 * value, into out; false when absent. */
static bool disposition_param(const char *v, const char *param, char *out, size_t cap)
{
    size_t plen = strlen(param);
    for (const char *p = strchr(v, ';'); p; p = strchr(p, ';')) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, param, plen) != 0 || p[plen] != '=')
            continue;
        p += plen + 1;
        size_t n = 0;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (n < cap - 1)
                    out[n++] = *p;
            }
        } else {
            for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++)
                if (n < cap - 1)
                    out[n++] = *p;
        }
        out[n] = '\0';
        return true;
    }
    return false;
}

/* One part header line (no line end). */
static int header_line(struct multipart *m)
{
    static const char cd[] = "content-disposition:";
    m->line[m->line_len] = '\0';
    if (strlen(m->line) != m->line_len)
        return fail(m, "a NUL byte in a part header");
    if (strncasecmp(m->line, cd, sizeof(cd) - 1) != 0)
        return 0;
    char name[MULTIPART_VALUE_MAX], file[8];
    const char *v = m->line + sizeof(cd) - 1;
    m->file = disposition_param(v, "filename", file, sizeof(file)) ||
              disposition_param(v, "filename*", file, sizeof(file));
    m->field = -1;
    if (!disposition_param(v, "name", name, sizeof(name)) || m->file)
        return 0;
    for (size_t i = 0; i < m->n_names; i++) {
        if (strcmp(name, m->names[i]) == 0) {
            struct multipart_field *f = &m->fields[i];
            *f = (struct multipart_field){.seen = true}; /* the last one wins */
            m->field = (int)i;
        }
    }
    return 0;
}

/* A whole delimiter matched (in the preamble or after a part): what
 * follows says whether another part or the end comes. */
static void at_boundary(struct multipart *m)
{
    m->state = MP_AFTER;
    m->after = 0;
    m->after_cr = false;
    m->match = 0;
    m->field = -1;
    m->file = false;
}

int multipart_feed(struct multipart *m, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        switch (m->state) {
        case MP_PREAMBLE:
            if (c == m->delim[m->match]) {
                if (++m->match == m->dlen)
                    at_boundary(m);
            } else {
                m->match = c == '\r';
            }
            break;
        case MP_AFTER:
            if (m->after_cr) {
                if (c != '\n')
                    return fail(m, "a boundary line must end with CRLF");
                m->state = MP_HEADERS;
                m->line_len = 0;
                m->line_cr = false;
                m->field = -1;
                m->file = false;
                m->parts++;
            } else if (c == '-') {
                if (++m->after == 2)
                    m->state = MP_DONE;
            } else if (m->after) {
                return fail(m, "a boundary followed by a single '-'");
            } else if (c == '\r') {
                m->after_cr = true;
            } else if (c != ' ' && c != '\t') {
                return fail(m, "a boundary followed by other bytes than CRLF or \"--\"");
            }
            break;
        case MP_HEADERS:
            if (c == '\n') {
                if (m->line_len == 0) {
                    m->state = MP_BODY;
                    m->match = 0;
                } else if (header_line(m) < 0) {
                    return -1;
                }
                m->line_len = 0;
                m->line_cr = false;
            } else if (m->line_cr) {
                return fail(m, "a CR inside a part header line");
            } else if (c == '\r') {
                m->line_cr = true;
            } else if (m->line_len == sizeof(m->line) - 1) {
                return fail(m, "a part header line longer than 1023 bytes");
            } else {
                m->line[m->line_len++] = c;
            }
            break;
        case MP_BODY:
            if (m->match == 0) { /* fast path: up to the next CR is content */
                const char *cr = memchr(buf + i, '\r', len - i);
                size_t n = cr ? (size_t)(cr - (buf + i)) : len - i;
                content(m, buf + i, n);
                i += n;
                if (i == len)
                    return 0;
                c = buf[i];
            }
            if (c == m->delim[m->match]) {
                if (++m->match == m->dlen)
                    at_boundary(m);
            } else {
                /* the bytes matched so far were content; the delimiter
                 * holds one CR only, at its start, so c may begin a new one */
                content(m, m->delim, m->match);
                m->match = 0;
                if (c == '\r')
                    m->match = 1;
                else
                    content(m, &c, 1);
            }
            break;
        case MP_DONE:
            return 0; /* the epilogue is ignored */
        case MP_ERROR:
            return -1;
        }
    }
    return m->state == MP_ERROR ? -1 : 0;
}

int multipart_finish(struct multipart *m)
{
    if (m->state == MP_DONE)
        return 0;
    if (m->state != MP_ERROR)
        fail(m, "the body ended before its closing boundary");
    return -1;
}
