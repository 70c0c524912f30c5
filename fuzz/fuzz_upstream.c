/* fuzz_upstream.c: libFuzzer target for the upstream response framing and
 * chunked decoding (upstream.c), without I/O: the .c is included so its
 * parser callbacks run exactly as process() drives them, on the bytes an
 * upstream sends. The first input byte picks the cut; the rest is fed in
 * two parts, then as a whole to a second exchange, and both end with EOF.
 * Checked (abort on violation):
 *  - the same outcome (complete, bad response, or cut at EOF), the same
 *    status, headers and body bytes whichever way the input was split;
 *  - at most one final response head, before any body byte;
 *  - no header the header table drops on the way down (hop-by-hop,
 *    Content-Length, anything Connection lists) reaches on_head;
 *  - a complete response with a Content-Length carries exactly that many
 *    body bytes; a HEAD-like exchange (is_head) carries none;
 *  - header bytes stay within MAX_HEADER_BYTES; no leak. */
#include "http/upstream.c"

#include <stdint.h>

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_upstream: invariant failed: %s (line %d)\n", #cond, __LINE__);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum end { END_COMPLETE, END_BAD, END_CUT };

struct seen {
    int heads;
    int status;
    long long content_length;
    unsigned long header_hash; /* names and values in order */
    size_t n_headers;
    unsigned char *body;
    size_t body_len, body_cap;
    enum end end;
};

static unsigned long mix(unsigned long h, const char *s)
{
    for (; *s; s++)
        h = h * 31 + (unsigned char)*s;
    return h * 131 + 7;
}

static void f_head(void *arg, int status, const struct upstream_header *h, size_t n,
                   long long content_length)
{
    struct seen *s = arg;
    CHECKF(s->heads == 0 && s->body_len == 0);
    s->heads++;
    s->status = status;
    s->content_length = content_length;
    s->n_headers = n;
    for (size_t i = 0; i < n; i++) {
        CHECKF(!header_drop_down(h[i].name, NULL));
        s->header_hash = mix(mix(s->header_hash, h[i].name), h[i].value);
    }
}

static void f_body(void *arg, const char *buf, size_t len)
{
    struct seen *s = arg;
    CHECKF(s->heads == 1);
    if (s->body_len + len > s->body_cap) {
        size_t cap = s->body_cap ? s->body_cap * 2 : 1024;
        while (cap < s->body_len + len)
            cap *= 2;
        unsigned char *nb = realloc(s->body, cap);
        CHECKF(nb != NULL);
        s->body = nb;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, buf, len);
    s->body_len += len;
}

/* Feeds one part as process() does; false once the exchange ended. */
static bool feed(struct upstream_req *r, struct seen *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t used = http_parser_execute(&r->parser, &parser_settings, (const char *)p, n);
        if (r->complete) {
            s->end = END_COMPLETE;
            return false;
        }
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e != HPE_OK || used != n) {
            s->end = END_BAD;
            return false;
        }
        p += used;
        n -= used;
    }
    return true;
}

static void run(const uint8_t *d, size_t n, size_t cut, bool is_head, struct seen *s)
{
    struct upstream_req *r = calloc(1, sizeof(*r));
    CHECKF(r != NULL);
    memset(s, 0, sizeof(*s));
    s->content_length = -2;
    r->h = (struct upstream_handlers){f_head, f_body, NULL};
    r->arg = s;
    r->is_head = is_head;
    parser_reset(r);
    if (feed(r, s, d, cut) && feed(r, s, d + cut, n - cut)) {
        /* EOF, as at_eof: a close-delimited body ends here */
        (void)http_parser_execute(&r->parser, &parser_settings, NULL, 0);
        s->end = r->complete ? END_COMPLETE : END_CUT;
    }
    CHECKF(r->hlen <= MAX_HEADER_BYTES);
    free(r->hbuf);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool is_head = data[0] & 0x80;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    size_t cut = n ? (data[0] & 0x7f) * n / 127 : 0;
    struct seen a, b;
    run(d, n, cut, is_head, &a);
    run(d, n, n, is_head, &b);
    CHECKF(a.end == b.end && a.heads == b.heads);
    if (a.heads) {
        CHECKF(a.status == b.status && a.content_length == b.content_length);
        CHECKF(a.n_headers == b.n_headers && a.header_hash == b.header_hash);
    }
    CHECKF(a.body_len == b.body_len &&
           (a.body_len == 0 || memcmp(a.body, b.body, a.body_len) == 0));
    if (a.end == END_COMPLETE && a.content_length >= 0 && !is_head)
        CHECKF((long long)a.body_len == a.content_length);
    if (is_head)
        CHECKF(a.body_len == 0);
    free(a.body);
    free(b.body);
    return 0;
}
