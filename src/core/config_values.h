/* config_values.h: the value parsers behind config.c's key table (internal;
 * the public parsers, config_parse_size, _duration_ms and _url, are declared
 * in config.h). Checks and setters have the table's shapes: a check accepts
 * or refuses text, a setter parses it into the section's struct. On -1 both
 * write a message (without file:line or key) into msg, n bytes. */
#ifndef TOLLGATE_CONFIG_VALUES_H
#define TOLLGATE_CONFIG_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include "core/config.h"
#include "core/util.h"

/* Strips leading and trailing white space in place; returns the start. */
char *config_trim(char *s);

/* Reads the decimal digits at s (at least one) into *out, *end after them;
 * -1 on no digit or overflow. */
int config_parse_u64(const char *s, unsigned long long *out, const char **end) MUST_CHECK;

/* Finds v in the NULL-terminated names; *out is its index. */
int config_parse_enum(const char *v, const char *const *names, int *out, char *msg,
                      size_t n) MUST_CHECK;

/* Checks, for text keys: 0 if v is acceptable. */
int config_check_addr(const char *v, char *msg, size_t n);      /* host:port, [v6]:port */
int config_check_header(const char *v, char *msg, size_t n);    /* an HTTP header name */
int config_check_file(const char *v, char *msg, size_t n);      /* readable now */
int config_check_log_level(const char *v, char *msg, size_t n); /* error|warn|info|debug */
int config_check_redis_url(const char *v, char *msg, size_t n); /* redis:// or unix:// */
int config_check_webhook(const char *v, char *msg, size_t n);   /* http[s] URL, never echoed */
int config_check_token(const char *v, char *msg, size_t n);     /* a bearer token, never echoed */
int config_check_prefix(const char *v, char *msg, size_t n);    /* /name, not /v1 or /v1beta */
int config_check_name(const char *v, char *msg, size_t n);      /* plan and tenant names */
int config_check_names(const char *v, char *msg, size_t n);     /* a list of names: a, b */
int config_check_secret(const char *v, char *msg, size_t n);    /* 16+ printable ASCII chars */
int config_check_tokens(const char *v, char *msg, size_t n);    /* secrets: a, b */
int config_check_regex(const char *v, char *msg, size_t n);     /* a POSIX extended regex */
/* tenant/user/feature/plan headers: not one HTTP, the provider keys or
 * tollgate itself give a meaning (Host, Authorization, Content-Length...) */
int config_check_identity_header(const char *v, char *msg, size_t n);
int config_check_key_prefix(const char *v, char *msg, size_t n); /* no { } (hash tags) */
/* Whether host:port (as config_check_addr accepts it) is on a loopback
 * address: 127.0.0.0/8, ::1, localhost. */
bool config_addr_is_loopback(const char *addr);

/* Setters: obj is the struct named; on error it is unchanged. */
int config_set_url(void *obj, const char *v, char *msg, size_t n);           /* cfg_upstream */
int config_set_downgrade(void *obj, const char *v, char *msg, size_t n);     /* cfg_plan */
int config_set_unknown_model(void *obj, const char *v, char *msg, size_t n); /* config */
int config_set_log_format(void *obj, const char *v, char *msg, size_t n);    /* config */
int config_set_thresholds(void *obj, const char *v, char *msg, size_t n);    /* config */
int config_set_cache_allow(void *obj, const char *v, char *msg, size_t n);   /* config */
int config_set_report_margin(void *obj, const char *v, char *msg, size_t n); /* config */
int config_set_plan_margin(void *obj, const char *v, char *msg, size_t n);   /* cfg_plan */
int config_set_rotate(void *obj, const char *v, char *msg, size_t n);        /* config */
int config_set_on_allowance(void *obj, const char *v, char *msg, size_t n);  /* cfg_plan */
int config_set_period(void *obj, const char *v, char *msg, size_t n);        /* cfg_plan */
int config_set_overage(void *obj, const char *v, char *msg, size_t n);       /* cfg_plan */

/* Frees pl's downgrade list and empties it. */
void config_free_downgrades(struct cfg_plan *pl);

/* Resolves "env:NAME" (spaces allowed before NAME). Returns 0 with *out
 * NULL when value is not an env: reference, 0 with *out the variable's value
 * (malloc'd, untrimmed, owned by the caller) when it is, and -1 when NAME is
 * empty or unset or memory runs out; msg then is a whole message, naming key. */
int config_resolve_env(const char *key, const char *value, char **out, char *msg,
                       size_t n) MUST_CHECK;

#endif
