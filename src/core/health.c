/* health.c: `tollgate health` (health.h). One GET through the blocking
 * client (http/http_client.h) with a deadline over everything (resolve,
 * connect, send, the answer's head); no event loop. */
#include "core/health.h"

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "http/http_client.h"

#define DEADLINE_MS 3000 /* under the image's HEALTHCHECK --timeout=5s */

/* admin_listen of the config at path as a URL on the loopback. */
static int url_from_config(const char *path, char *url, size_t n)
{
    char err[8192] = "";
    struct config *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "tollgate health: %s", err);
        return -1;
    }
    int rc = -1;
    const char *listen = cfg->admin_listen;
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon) {
        fprintf(stderr, "tollgate health: %s has no admin_listen to probe\n", path);
        goto done;
    }
    const char *host = listen;
    size_t hlen = (size_t)(colon - listen);
    if ((hlen == 7 && strncmp(host, "0.0.0.0", 7) == 0) || hlen == 0)
        host = "127.0.0.1", hlen = 9;
    else if (hlen == 4 && strncmp(host, "[::]", 4) == 0)
        host = "[::1]", hlen = 5;
    if (snprintf(url, n, "http://%.*s%s/healthz", (int)hlen, host, colon) < (int)n)
        rc = 0;
done:
    config_unref(cfg);
    return rc;
}

int health_main(int argc, char **argv)
{
    char url[512] = "";
    const char *conf = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            conf = argv[++i];
        else if (strncmp(argv[i], "http", 4) == 0 && !url[0])
            snprintf(url, sizeof(url), "%s", argv[i]);
        else {
            fprintf(stderr, "usage: tollgate health [URL | -c FILE]\n");
            return 2;
        }
    }
    if (!url[0] && url_from_config(conf ? conf : "proxy.conf", url, sizeof(url)) < 0)
        return 1;

    const char *auth = strstr(url, "://");
    if (auth && !strchr(auth + 3, '/') && strlen(url) + 8 < sizeof(url))
        strcat(url, "/healthz"); /* a bare host:port probes /healthz */
    struct http_target t;
    char err[512] = "";
    if (strncmp(url, "http://", 7) != 0 || http_target_init(&t, url, NULL, err, sizeof(err)) < 0) {
        /* the admin listener speaks plain HTTP */
        fprintf(stderr, "tollgate health: '%s' is not an http://host:port[/path] URL\n", url);
        return 2;
    }
    int status = http_request(&t, "GET", NULL, NULL, NULL, 0, DEADLINE_MS, err, sizeof(err));
    http_target_free(&t);
    if (status == 200) {
        printf("%s: 200\n", url);
        return 0;
    }
    if (status < 0)
        fprintf(stderr, "tollgate health: %s: cannot connect or no answer in time: %s\n", url, err);
    else
        fprintf(stderr, "tollgate health: %s: HTTP %d\n", url, status);
    return 1;
}
