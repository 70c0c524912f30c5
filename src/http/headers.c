/* headers.c: the header rule table (headers.h). */
#include "http/headers.h"

#include <string.h>
#include <strings.h>

#include "core/util.h"

static const struct {
    const char *name; /* lower case */
    unsigned flags;
} table[] = {
    {"connection", HEADER_HOP},
    {"keep-alive", HEADER_HOP},
    {"te", HEADER_HOP},
    {"trailer", HEADER_HOP},
    {"transfer-encoding", HEADER_HOP},
    {"upgrade", HEADER_HOP},
    /* framing: the request is re-framed with its own Content-Length, the
     * response reaches the client chunked or with the length tollgate sets */
    {"content-length", HEADER_DROP_UP | HEADER_DROP_DOWN},
    {"host", HEADER_DROP_UP},
    {"expect", HEADER_DROP_UP},           /* the 100-continue was answered here */
    {"accept-encoding", HEADER_DROP_UP},  /* identity: usage must be readable */
    {"content-encoding", HEADER_DROP_UP}, /* only identity bodies are taken (proxy.c) */
};

unsigned header_flags(const char *name)
{
    if (strncasecmp(name, "proxy-", 6) == 0)
        return HEADER_HOP; /* proxy-connection, proxy-authorization, ... */
    if (strncasecmp(name, "x-tollgate-", 11) == 0)
        return HEADER_DROP_UP; /* tollgate's namespace (the client token among it) */
    for (size_t i = 0; i < ARRAY_LEN(table); i++)
        if (strcasecmp(name, table[i].name) == 0)
            return table[i].flags;
    return 0;
}

bool header_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; n && p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == n && strncasecmp(p, name, n) == 0)
            return true;
        p = e;
    }
    return false;
}

bool header_drop_up(const char *name, const char *connection)
{
    if (header_flags(name) & (HEADER_HOP | HEADER_DROP_UP))
        return true;
    return header_in_list(connection, name);
}

bool header_drop_down(const char *name, const char *connection)
{
    if (header_flags(name) & (HEADER_HOP | HEADER_DROP_DOWN))
        return true;
    return header_in_list(connection, name);
}
