/* cache_key.c: the canonical digest of a request body (cache_key.h).
 *
 * Every value gets a SHA-256 digest of a tag and its content: strings by
 * their decoded bytes, integers and reals by their binary value, arrays by
 * their elements' digests in order, objects by their members' (key digest,
 * value digest) pairs sorted by key, so member order never counts. The walk
 * keeps one stack of these pairs: a container's pairs sit from its frame's
 * start to the top, and closing it replaces them by its own digest. Each
 * value, once whole, is also matched against the provider's rules by its
 * path (the names of the objects it sits in). */
#include "cache/cache_key.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/utf8.h"

#define KEYNAME_MAX 40 /* member names kept for the rules (a longer one matches none) */

struct pair {
    unsigned char key[CACHE_DIGEST_LEN]; /* object members; zero in arrays */
    unsigned char val[CACHE_DIGEST_LEN];
    size_t idx; /* order of arrival: arrays keep it, objects let the last key win */
};

struct frame {
    bool object;
    bool drop;                           /* the member being read is left out */
    size_t start;                        /* its first pair */
    size_t n;                            /* members or elements so far */
    unsigned char key[CACHE_DIGEST_LEN]; /* the member being read */
    char keyname[KEYNAME_MAX];           /* its name, cut ("" if longer) */
};

struct walk {
    const unsigned char *p, *end;
    struct pair *pairs;
    size_t npairs, cap_pairs;
    struct frame *frames;
    size_t nframes, cap_frames;
    unsigned char *str; /* a decoded string */
    size_t str_len, str_cap;
    EVP_MD_CTX *md;
    bool hash; /* false: only the facts */
    const struct cache_rules *rules;
    struct cache_body_facts *facts;
};

/* The value just read, for the rules. */
enum vkind { V_NULL, V_FALSE, V_TRUE, V_NUMBER, V_STRING, V_OBJECT, V_ARRAY };

/* The top-level members that do not change the answer. */
static const char *const dropped[] = {"stream", "stream_options", "user", "metadata"};

static void skip_ws(struct walk *w)
{
    while (w->p < w->end && (*w->p == ' ' || *w->p == '\t' || *w->p == '\n' || *w->p == '\r'))
        w->p++;
}

static int digest(struct walk *w, char tag, const void *a, size_t na, unsigned char *out)
{
    unsigned int n = 0;
    if (!w->hash)
        return 0;
    if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(w->md, &tag, 1) != 1 || (na && EVP_DigestUpdate(w->md, a, na) != 1) ||
        EVP_DigestFinal_ex(w->md, out, &n) != 1)
        return -1;
    return 0;
}

static int str_put(struct walk *w, const void *b, size_t n)
{
    if (w->str_len + n > w->str_cap) {
        size_t cap = w->str_cap ? w->str_cap : 256;
        while (cap < w->str_len + n)
            cap *= 2;
        unsigned char *s = realloc(w->str, cap);
        if (!s)
            return -1;
        w->str = s;
        w->str_cap = cap;
    }
    memcpy(w->str + w->str_len, b, n);
    w->str_len += n;
    return 0;
}

static int hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int put_cp(struct walk *w, uint32_t cp)
{
    unsigned char b[4];
    size_t n = utf8_encode(cp, b);
    return str_put(w, b, n);
}

/* Decodes the string at w->p (its opening quote) into w->str. */
static int read_string(struct walk *w)
{
    w->str_len = 0;
    w->p++;
    for (;;) {
        const unsigned char *run = w->p;
        while (w->p < w->end && *w->p != '"' && *w->p != '\\')
            w->p++;
        if (w->p > run && str_put(w, run, (size_t)(w->p - run)) < 0)
            return -1;
        if (w->p >= w->end)
            return -1;
        if (*w->p == '"') {
            w->p++;
            return 0;
        }
        if (w->end - w->p < 2)
            return -1;
        unsigned char e = w->p[1];
        w->p += 2;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *at = e ? strchr(from, e) : NULL;
        if (at) {
            if (str_put(w, &to[at - from], 1) < 0)
                return -1;
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || w->end - w->p < 4 || hex4(w->p, &cp) < 0)
            return -1;
        w->p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair (json_scan refused lone halves) */
            if (w->end - w->p < 6 || w->p[0] != '\\' || w->p[1] != 'u' || hex4(w->p + 2, &lo) < 0 ||
                lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            w->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return -1;
        }
        if (put_cp(w, cp) < 0)
            return -1;
    }
}

/* A number by its value: an integer as int64, anything else as a double. */
static int read_number(struct walk *w, unsigned char *out, double *value)
{
    const unsigned char *s = w->p;
    bool real = false;
    while (w->p < w->end && strchr("+-0123456789.eE", *w->p) && *w->p) {
        if (*w->p == '.' || *w->p == 'e' || *w->p == 'E')
            real = true;
        w->p++;
    }
    size_t n = (size_t)(w->p - s);
    if (n == 0)
        return -1;
    char stackbuf[64], *buf = n < sizeof(stackbuf) ? stackbuf : malloc(n + 1);
    if (!buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *endp;
    errno = 0;
    int rc = -1;
    if (real) {
        double d = strtod(buf, &endp);
        if (*endp == '\0') {
            *value = d;
            rc = digest(w, 'r', &d, sizeof(d), out);
        }
    } else {
        long long i = strtoll(buf, &endp, 10);
        if (*endp == '\0' && errno == 0) {
            int64_t v = i;
            *value = (double)v;
            rc = digest(w, 'i', &v, sizeof(v), out);
        }
    }
    if (buf != stackbuf)
        free(buf);
    return rc;
}

static int push_frame(struct walk *w, bool object)
{
    if (w->nframes == w->cap_frames) {
        size_t cap = w->cap_frames ? w->cap_frames * 2 : 16;
        struct frame *f = realloc(w->frames, cap * sizeof(*f));
        if (!f)
            return -1;
        w->frames = f;
        w->cap_frames = cap;
    }
    struct frame *f = &w->frames[w->nframes++];
    memset(f, 0, sizeof(*f));
    f->object = object;
    f->start = w->npairs;
    return 0;
}

static int push_pair(struct walk *w, struct frame *f, const unsigned char *val)
{
    if (w->npairs == w->cap_pairs) {
        size_t cap = w->cap_pairs ? w->cap_pairs * 2 : 64;
        struct pair *p = realloc(w->pairs, cap * sizeof(*p));
        if (!p)
            return -1;
        w->pairs = p;
        w->cap_pairs = cap;
    }
    struct pair *p = &w->pairs[w->npairs++];
    if (f->object)
        memcpy(p->key, f->key, CACHE_DIGEST_LEN);
    else
        memset(p->key, 0, CACHE_DIGEST_LEN);
    memcpy(p->val, val, CACHE_DIGEST_LEN);
    p->idx = f->n;
    return 0;
}

static int by_key(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int c = memcmp(x->key, y->key, CACHE_DIGEST_LEN);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Closes the top frame into out: its pairs (sorted by key, the last of a
 * repeated key kept, for objects) digested, then popped. */
static int close_frame(struct walk *w, unsigned char *out)
{
    struct frame *f = &w->frames[w->nframes - 1];
    size_t n = w->npairs - f->start;
    struct pair *p = n ? w->pairs + f->start : NULL; /* none yet allocated for {} and [] */
    if (f->object && n > 1)
        qsort(p, n, sizeof(*p), by_key);
    unsigned int len = 0;
    char tag = f->object ? 'o' : 'a';
    if (!w->hash) {
        w->nframes--;
        return 0;
    }
    if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(w->md, &tag, 1) != 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (f->object && i + 1 < n && memcmp(p[i].key, p[i + 1].key, CACHE_DIGEST_LEN) == 0)
            continue; /* a later member of the same name wins */
        if ((f->object && EVP_DigestUpdate(w->md, p[i].key, CACHE_DIGEST_LEN) != 1) ||
            EVP_DigestUpdate(w->md, p[i].val, CACHE_DIGEST_LEN) != 1)
            return -1;
    }
    if (EVP_DigestFinal_ex(w->md, out, &len) != 1)
        return -1;
    w->npairs = f->start;
    w->nframes--;
    return 0;
}

/* Reads a member name at w->p into the top frame, through the ':'. */
static int read_key(struct walk *w)
{
    struct frame *f = &w->frames[w->nframes - 1];
    if (w->p >= w->end || *w->p != '"' || read_string(w) < 0 ||
        digest(w, 's', w->str, w->str_len, f->key) < 0)
        return -1;
    f->keyname[0] = '\0';
    if (w->str_len > 0 && w->str_len < KEYNAME_MAX && !memchr(w->str, '\0', w->str_len)) {
        memcpy(f->keyname, w->str, w->str_len);
        f->keyname[w->str_len] = '\0';
    }
    f->drop = false;
    if (w->nframes == 1)
        for (size_t i = 0; i < ARRAY_LEN(dropped); i++)
            if (strcmp(f->keyname, dropped[i]) == 0)
                f->drop = true;
    skip_ws(w);
    if (w->p >= w->end || *w->p != ':')
        return -1;
    w->p++;
    return 0;
}

/* Whether the value just read sits at path (arrays passed through). */
static bool path_is(const struct walk *w, const char *path)
{
    const char *p = path;
    for (size_t i = 0; i < w->nframes; i++) {
        const struct frame *f = &w->frames[i];
        if (!f->object)
            continue;
        size_t k = strlen(f->keyname);
        if (!*p || !k || strncmp(p, f->keyname, k) != 0 || (p[k] != '\0' && p[k] != '.'))
            return false;
        p += k;
        if (*p == '.')
            p++;
    }
    return *p == '\0';
}

/* s[0..n) against pat: '*' at either end is any text. */
static bool glob_is(const char *pat, const unsigned char *s, size_t n)
{
    size_t k = strlen(pat);
    bool lead = k > 0 && pat[0] == '*', trail = k > 1 && pat[k - 1] == '*';
    const char *core = pat + lead;
    size_t m = k - lead - trail;
    if (lead && trail)
        return m == 0 || (n >= m && memmem(s, n, core, m) != NULL);
    if (n < m)
        return false;
    if (lead)
        return memcmp(s + n - m, core, m) == 0;
    if (trail)
        return memcmp(s, core, m) == 0;
    return n == m && memcmp(s, core, m) == 0;
}

/* The value just read (kind; a string in w->str, a number's value, a
 * container's members) against every rule. */
static void match_rules(struct walk *w, enum vkind kind, double num, size_t members)
{
    if (!w->rules || !w->facts || w->nframes == 0)
        return;
    for (size_t i = 0; i < w->rules->n; i++) {
        const struct cache_rule *r = &w->rules->rows[i];
        if (!r->path || !path_is(w, r->path))
            continue;
        switch (r->match) {
        case CACHE_MATCH_SET:
            if (kind != V_NULL && kind != V_FALSE && !(kind == V_STRING && w->str_len == 0) &&
                !(kind == V_ARRAY && members == 0))
                w->facts->why |= r->why;
            break;
        case CACHE_MATCH_STRING:
            if (kind == V_STRING && r->value && glob_is(r->value, w->str, w->str_len))
                w->facts->why |= r->why;
            break;
        case CACHE_MATCH_TEMPERATURE:
            if (kind == V_NUMBER) {
                w->facts->has_temperature = true;
                w->facts->temperature = num;
            }
            break;
        }
    }
}

static int run(struct walk *w, unsigned char *out)
{
    unsigned char d[CACHE_DIGEST_LEN];
    enum vkind kind = V_NULL;
    double num = 0;
    size_t members = 0;
    skip_ws(w);
    for (;;) {
        /* a value starts at w->p */
        if (w->p >= w->end)
            return -1;
        unsigned char c = *w->p;
        if (c == '{' || c == '[') {
            if (push_frame(w, c == '{') < 0)
                return -1;
            w->p++;
            skip_ws(w);
            if (w->p < w->end && *w->p == (c == '{' ? '}' : ']')) {
                w->p++;
                if (close_frame(w, d) < 0)
                    return -1;
                kind = c == '{' ? V_OBJECT : V_ARRAY;
                members = 0;
            } else {
                if (c == '{' && read_key(w) < 0)
                    return -1;
                skip_ws(w);
                continue;
            }
        } else if (c == '"') {
            if (read_string(w) < 0 || digest(w, 's', w->str, w->str_len, d) < 0)
                return -1;
            kind = V_STRING;
        } else if (c == 't' || c == 'f' || c == 'n') {
            const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
            size_t n = strlen(lit);
            if ((size_t)(w->end - w->p) < n || memcmp(w->p, lit, n) != 0)
                return -1;
            w->p += n;
            if (digest(w, c, NULL, 0, d) < 0)
                return -1;
            kind = c == 't' ? V_TRUE : c == 'f' ? V_FALSE : V_NULL;
        } else {
            if (read_number(w, d, &num) < 0)
                return -1;
            kind = V_NUMBER;
        }
        /* the value is whole: it goes to its container, which may close too */
        for (;;) {
            if (w->nframes == 0) {
                skip_ws(w);
                if (w->p != w->end)
                    return -1;
                memcpy(out, d, CACHE_DIGEST_LEN);
                return 0;
            }
            match_rules(w, kind, num, members);
            struct frame *f = &w->frames[w->nframes - 1];
            if (w->hash && !f->drop && push_pair(w, f, d) < 0)
                return -1;
            f->n++;
            skip_ws(w);
            if (w->p >= w->end)
                return -1;
            if (*w->p == ',') {
                w->p++;
                skip_ws(w);
                if (f->object && read_key(w) < 0)
                    return -1;
                skip_ws(w);
                break; /* the next value */
            }
            if (*w->p != (f->object ? '}' : ']'))
                return -1;
            w->p++;
            kind = f->object ? V_OBJECT : V_ARRAY;
            members = f->n;
            if (close_frame(w, d) < 0)
                return -1;
        }
    }
}

static int walk_body(const char *body, size_t len, unsigned char *out,
                     const struct cache_rules *rules, struct cache_body_facts *facts)
{
    unsigned char none[CACHE_DIGEST_LEN];
    struct walk w = {.p = (const unsigned char *)body,
                     .end = (const unsigned char *)body + len,
                     .hash = out != NULL,
                     .rules = rules,
                     .facts = facts};
    if (facts)
        memset(facts, 0, sizeof(*facts));
    int rc = -1;
    if (w.hash && !(w.md = EVP_MD_CTX_new()))
        goto fail;
    rc = run(&w, out ? out : none);
fail:
    EVP_MD_CTX_free(w.md);
    free(w.pairs);
    free(w.frames);
    free(w.str);
    return rc;
}

int cache_body_digest(const char *body, size_t len, unsigned char out[CACHE_DIGEST_LEN],
                      const struct cache_rules *rules, struct cache_body_facts *facts)
{
    return walk_body(body, len, out, rules, facts);
}

int cache_body_facts(const char *body, size_t len, const struct cache_rules *rules,
                     struct cache_body_facts *facts)
{
    return walk_body(body, len, NULL, rules, facts);
}
