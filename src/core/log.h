/* log.h: the one logging API. One line per event to stderr, plain or JSON.
 * Thread-safe: each line is formatted into a local buffer and written with
 * one write(2). Never pass request or response bodies, keys or tokens. */
#ifndef TOLLGATE_LOG_H
#define TOLLGATE_LOG_H

#include <stdbool.h>
#include "core/util.h"

enum log_level {
    LOG_ERROR, /* the daemon or a request failed in a way ops must see */
    LOG_WARN,  /* degraded but serving (Redis down, unpriced model) */
    LOG_INFO,  /* lifecycle: start, reload, stop */
    LOG_DEBUG, /* per-request detail; off by default */
};

/* Set the threshold and the format (json = one JSON object per line). */
void log_setup(enum log_level level, bool json);
bool log_enabled(enum log_level level);
/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int log_level_parse(const char *s) MUST_CHECK;

void log_msg(enum log_level level, const char *reqid, const char *fmt, ...) PRINTF_LIKE(3, 4);

#define log_error(...) log_msg(LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, NULL, __VA_ARGS__);                                                 \
    } while (0)
/* The per-request form: the line carries the request id. */
#define req_log(lvl, reqid, ...)                                                                   \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            log_msg(lvl, reqid, __VA_ARGS__);                                                      \
    } while (0)

#endif
