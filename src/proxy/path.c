/* path.c: request path -> its one canonical form (path.h). Decoding and
 * normalising happen here once; the router, the provider's metering and
 * the upstream request all read the result. */
#include "proxy/path.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "core/percent.h"

/* The literal words of the providers' paths whose spelling decides the
 * route or whether a call is metered. An upstream that matches them
 * without regard to case must not see a spelling the router missed. */
static const char *const fixed_words[] = {
    "v1",
    "v1beta",
    "v1alpha",
    "upload",
    "chat",
    "completions",
    "embeddings",
    "responses",
    "messages",
    "count_tokens",
    "models",
    "tunedModels",
    "batches",
    "files",
    "cachedContents",
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    "batchGenerateContent",
};

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 pchar as a literal, without ';' (matrix parameters): what a
 * canonical path may hold besides '/'. */
static bool literal_ok(unsigned char c)
{
    return unreserved(c) || (c && strchr("!$&'()*+,=:@", c));
}

/* Gives the part [p, p + n) of a segment (segments split further at ':',
 * Gemini's model:verb) the spelling of the fixed word it names; -1 when it
 * is a fixed word with a '.' suffix ("completions.json"). */
static int fix_part(char *p, size_t n)
{
    for (size_t i = 0; i < ARRAY_LEN(fixed_words); i++) {
        size_t k = strlen(fixed_words[i]);
        if (n < k || strncasecmp(p, fixed_words[i], k) != 0)
            continue;
        if (n == k) {
            memcpy(p, fixed_words[i], k);
            return 0;
        }
        if (p[k] == '.')
            return -1;
    }
    return 0;
}

static enum path_result bad(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return PATH_BAD;
}

enum path_result path_canonical(const char *raw, char *out, size_t outlen, const char **why)
{
    size_t cap = outlen > PATH_MAX_LEN + 1 ? PATH_MAX_LEN + 1 : outlen;
    if (cap == 0)
        return PATH_TOO_LONG;
    out[0] = '\0';
    if (!raw || raw[0] != '/')
        return bad(why, "the path must start with '/'");

    /* 1. decode: only what is the same character either way */
    size_t n = 0;
    for (const char *p = raw; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            int hi = percent_hex(p[1]), lo = hi < 0 ? -1 : percent_hex(p[2]);
            if (hi < 0 || lo < 0)
                return bad(why, "the path has a '%' that is not followed by two hex digits");
            c = (unsigned char)(hi * 16 + lo);
            if (!unreserved(c) && c != ':' && c != '@')
                return bad(why, "the path encodes a character that must be sent as is: only "
                                "letters, digits, '-', '.', '_', '~', ':' and '@' may be "
                                "percent-encoded");
            p += 2;
        } else if (c == ';') {
            return bad(why, "the path has ';' parameters: send the path without them");
        } else if (c == '/' && p[1] == '\0' && n > 0) {
            break; /* one trailing slash is the same resource */
        } else if (c != '/' && !literal_ok(c)) {
            return bad(why, "the path has a character that must not appear in it (a space, "
                            "control, backslash or non-ASCII byte)");
        }
        if (n + 1 >= cap)
            return PATH_TOO_LONG;
        out[n++] = (char)c;
    }
    out[n] = '\0';

    /* 2. segments: none empty, none a dot segment; fixed words spelled
     * their own way */
    for (char *seg = out + 1; seg <= out + n;) {
        char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (n > 1 && len == 0)
            return bad(why, "the path has an empty segment ('//')");
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return bad(why, "the path has a '.' or '..' segment");
        for (char *part = seg; part < seg + len;) {
            char *colon = memchr(part, ':', (size_t)(seg + len - part));
            size_t plen = colon ? (size_t)(colon - part) : (size_t)(seg + len - part);
            if (fix_part(part, plen) < 0)
                return bad(why, "the path names an endpoint with a suffix (such as '.json'): "
                                "send the endpoint's own path");
            part += plen + (colon != NULL);
        }
        if (!end)
            break;
        seg = end + 1;
    }
    return PATH_OK;
}
