/* tls.h: client-side TLS helpers for upstream connections (OpenSSL 3). One
 * tls_client per upstream pool: an SSL_CTX that verifies the peer against the
 * system CAs plus an optional extra bundle, TLS 1.2 minimum, ALPN http/1.1,
 * and the last session ticket the upstream gave us, so the next connection
 * can resume instead of doing a full handshake. Not thread-safe: one per
 * worker, like the pool that owns it. The server-side listener lives elsewhere. */
#ifndef TOLLGATE_TLS_H
#define TOLLGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include "core/util.h"

struct bufferevent;
struct tls_client;

/* Builds the client context. ca_file may be NULL. Returns NULL and writes a
 * reason to err when the CA bundle cannot be loaded or OpenSSL fails. */
struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen) MUST_CHECK;
void tls_client_free(struct tls_client *tc);
/* For a non-HTTP peer (Redis): no ALPN offer, and, when cert_file is not
 * NULL, a client certificate chain and its key (PEM) for servers that ask
 * for one. 0, or -1 with err when a file does not load or does not match. */
int tls_client_use(struct tls_client *tc, const char *cert_file, const char *key_file, char *err,
                   size_t errlen) MUST_CHECK;
/* Loads (and caches) the trust store for ca_file ahead of time, so the
 * workers' tls_client_new finds it ready: the main thread calls it for each
 * upstream before a (re)load reaches the workers. 0, or -1 with err. */
int tls_client_prepare(const char *ca_file, char *err, size_t errlen) MUST_CHECK;

/* A new SSL for one connection to host: hostname (or IP for a literal)
 * verification, SNI for names, and the last saved session if there is one.
 * The caller owns the result (hand it to bufferevent_openssl with
 * BEV_OPT_CLOSE_ON_FREE). Returns NULL when out of memory. */
SSL *tls_client_ssl(struct tls_client *tc, const char *host) MUST_CHECK;

/* Call before freeing a TLS bufferevent: sends close_notify when our write
 * side is idle and marks the SSL as shut down, because OpenSSL voids the
 * session of an SSL freed without that and the next connection could not
 * resume. Best effort, never fails. */
void tls_client_close(struct bufferevent *bev);

/* Formats why a TLS bufferevent failed: drains its OpenSSL error queue and
 * adds the certificate verification result ("certificate verify failed
 * (hostname mismatch)"). Writes "" when there is no TLS error. */
void tls_client_error(struct bufferevent *bev, char *buf, size_t n);

/* The server side, for [server] tls_listen: a context with the certificate
 * chain and key (PEM files), TLS 1.2 at least. NULL with err on failure. */
SSL_CTX *tls_server_new(const char *cert_file, const char *key_file, char *err,
                        size_t errlen) MUST_CHECK;

#endif
