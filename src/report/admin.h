/* admin.h: the admin listener (admin_listen) on the main thread:
 * /healthz, /readyz, /dashboard, and with the admin token /metrics and the
 * JSON API (/admin/api/tenants[/ID]?period=, /admin/api/config). */
#ifndef TOLLGATE_ADMIN_H
#define TOLLGATE_ADMIN_H

#include <stddef.h>
#include "core/util.h"

struct event_base;
struct config;
struct export_hub;
struct worker;
struct record_sink;
struct admin;

/* Admin connections open at once (probes, a scraper, a few dashboards);
 * more are closed at accept. Apart from the API's max_connections. */
#define ADMIN_MAX_CONNECTIONS 32

struct admin *admin_new(struct event_base *base, struct config *cfg, struct worker **workers,
                        size_t n_workers, struct record_sink *sink, char *err,
                        size_t errlen) MUST_CHECK;
/* After a reload (main thread): the admin API uses cfg from now on (token,
 * on_failure, report margin, the config it shows, client deadlines). */
void admin_set_config(struct admin *a, struct config *cfg);
/* The export sinks whose counters /metrics shows (NULL: none); they outlive a. */
void admin_set_exports(struct admin *a, struct export_hub *hub);
void admin_free(struct admin *a);

#endif
