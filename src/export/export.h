/* export.h: where a finished usage record leaves tollgate besides the
 * records file. Each worker owns one export_worker and hands it every record
 * it emits (proxied requests and usage reported through the admin API); it
 * fans the record out to the exports the config turns on. Never waits. */
#ifndef TOLLGATE_EXPORT_H
#define TOLLGATE_EXPORT_H

#include "core/util.h"

struct config;
struct event_base;
struct metrics;
struct record;
struct redis;

struct export_worker;

/* One per worker, on its loop; r and m are the worker's and outlive it. */
struct export_worker *export_worker_new(struct event_base *base, struct redis *r,
                                        struct metrics *m) MUST_CHECK;
/* Before redis_free. NULL is fine. */
void export_worker_free(struct export_worker *x);
/* Exports rec as cfg (the request's snapshot) says. rec is not kept. */
void export_record(struct export_worker *x, const struct config *cfg, const struct record *rec);

#endif
