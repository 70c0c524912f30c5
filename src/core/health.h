/* health.h: `tollgate health`, the probe a container HEALTHCHECK runs, so
 * that the image needs no curl: GET /healthz on the admin listener, exit 0
 * on a 200 and 1 on anything else, within a few seconds. */
#ifndef TOLLGATE_HEALTH_H
#define TOLLGATE_HEALTH_H

/* argv[0] is "health". Accepts a URL (http://127.0.0.1:9090/healthz; the
 * path defaults to /healthz) or -c FILE, whose admin_listen is probed
 * (0.0.0.0 and [::] become loopback). Returns the exit status. */
int health_main(int argc, char **argv);

#endif
