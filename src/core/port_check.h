/* port_check.h: one tollgate per port. The API listeners bind with
 * SO_REUSEPORT (one socket per worker), which would also let a second
 * tollgate started by mistake bind the same port and silently take part of
 * the traffic. Before any listener is made, main.c asks here whether
 * another socket already holds the address; if so, tollgate refuses to
 * start and names the port and the process that holds it. */
#ifndef TOLLGATE_PORT_CHECK_H
#define TOLLGATE_PORT_CHECK_H

#include <stddef.h>
#include "core/util.h"

/* Returns 0 when host:port (addr) can be bound by this process alone: a
 * bind without SO_REUSEPORT succeeds (and is closed again). Returns -1 with
 * a message in err naming key (the config key, "server.listen"), the port
 * and, when /proc shows it, the pid and name of the process listening
 * there. */
int port_check_free(const char *key, const char *addr, char *err, size_t errlen) MUST_CHECK;

#endif
