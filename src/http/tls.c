/* tls.c: client TLS contexts for upstream connections. Verification is on
 * (SSL_VERIFY_PEER + SSL_set1_host, which OpenSSL checks during the
 * handshake, so a failed check aborts it before any request byte is sent).
 * Sessions are saved through the new-session callback rather than
 * SSL_get1_session right after the handshake: with TLS 1.3 the ticket
 * arrives after the handshake, so only the callback sees a resumable one. */
#include "http/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <sys/stat.h>
#include <pthread.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

struct tls_client {
    SSL_CTX *ctx;
    SSL_SESSION *last; /* the newest session ticket, offered on the next connect */
};

/* OpenSSL hands us a reference to every new client session; keep the newest. */
static int save_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_client *tc = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!tc)
        return 0;
    if (tc->last)
        SSL_SESSION_free(tc->last);
    tc->last = sess;
    return 1; /* we keep the reference */
}

static void openssl_reason(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s: %s", what, why ? why : "unknown OpenSSL error");
    ERR_clear_error();
}

/* Trust stores, built once per CA file and shared by every context (an
 * X509_STORE is reference counted and safe to share across threads).
 * Loading the system bundle parses ~150 certificates; doing it for every
 * upstream of every worker on every reload stalled the workers' loops long
 * enough to time out their Redis commands. Keyed by the file's path, size
 * and mtime, so a replaced ca_file is read again on the next reload; the
 * system store is read once per process. */
#define MAX_STORES 32
static pthread_mutex_t stores_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char path[512]; /* "" for the system store alone */
    time_t mtime;
    off_t size;
    X509_STORE *store;
} stores[MAX_STORES];
static size_t n_stores;

/* Returns a new reference to the store for ca_file (NULL: system CAs only). */
static X509_STORE *store_for(const char *ca_file, char *err, size_t errlen)
{
    struct stat st = {0};
    if (ca_file && stat(ca_file, &st) != 0) {
        snprintf(err, errlen, "cannot load ca_file %s: %s", ca_file, strerror(errno));
        return NULL;
    }
    const char *key = ca_file ? ca_file : "";
    X509_STORE *found = NULL;
    pthread_mutex_lock(&stores_lock);
    for (size_t i = 0; i < n_stores && !found; i++)
        if (strcmp(stores[i].path, key) == 0 && stores[i].mtime == st.st_mtime &&
            stores[i].size == st.st_size)
            found = stores[i].store;
    if (found && X509_STORE_up_ref(found) == 1) {
        pthread_mutex_unlock(&stores_lock);
        return found;
    }
    X509_STORE *store = X509_STORE_new();
    if (!store || X509_STORE_set_default_paths(store) != 1) {
        openssl_reason("loading the system CA store", err, errlen);
        goto fail;
    }
    if (ca_file && X509_STORE_load_file(store, ca_file) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "cannot load ca_file %s", ca_file);
        openssl_reason(what, err, errlen);
        goto fail;
    }
    if (n_stores < MAX_STORES && strlen(key) < sizeof(stores[0].path) &&
        X509_STORE_up_ref(store) == 1) {
        snprintf(stores[n_stores].path, sizeof(stores[0].path), "%s", key);
        stores[n_stores].mtime = st.st_mtime;
        stores[n_stores].size = st.st_size;
        stores[n_stores].store = store; /* the cache's reference */
        n_stores++;
    }
    pthread_mutex_unlock(&stores_lock);
    return store;
fail:
    pthread_mutex_unlock(&stores_lock);
    X509_STORE_free(store);
    return NULL;
}

int tls_client_prepare(const char *ca_file, char *err, size_t errlen)
{
    X509_STORE *store = store_for(ca_file, err, errlen);
    if (!store)
        return -1;
    X509_STORE_free(store);
    return 0;
}

struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen)
{
    struct tls_client *tc = calloc(1, sizeof(*tc));
    if (!tc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tc->ctx = SSL_CTX_new(TLS_client_method());
    if (!tc->ctx) {
        openssl_reason("SSL_CTX_new", err, errlen);
        goto fail;
    }
    X509_STORE *store = store_for(ca_file, err, errlen);
    if (!store)
        goto fail;
    SSL_CTX_set_cert_store(tc->ctx, store); /* takes our reference */
    SSL_CTX_set_verify(tc->ctx, SSL_VERIFY_PEER, NULL);
    /* OpenSSL 3 reports a close without close_notify as a fatal error that
     * libevent's allow_dirty_shutdown does not recognise, and the fatal alert
     * would also void the session. Many servers close that way; the HTTP
     * framing decides whether the response was complete. */
    SSL_CTX_set_options(tc->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* a connection holds its ~34 KB of record buffers only while a record
     * is read or written, not while it waits (in the pool, or for the
     * answer): with hundreds of upstream connections that was most of
     * tollgate's memory (nginx does the same) */
    SSL_CTX_set_mode(tc->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_min_proto_version(tc->ctx, TLS1_2_VERSION) != 1) {
        openssl_reason("setting TLS 1.2 minimum", err, errlen);
        goto fail;
    }
    /* Says out loud that we speak HTTP/1.1 only; returns 0 on success. */
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_alpn_protos(tc->ctx, alpn, sizeof(alpn) - 1) != 0) {
        openssl_reason("setting ALPN", err, errlen);
        goto fail;
    }
    /* No internal cache: one upstream per context, we only want the newest. */
    SSL_CTX_set_session_cache_mode(tc->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(tc->ctx, save_session);
    SSL_CTX_set_app_data(tc->ctx, tc);
    return tc;
fail:
    tls_client_free(tc);
    return NULL;
}

void tls_client_free(struct tls_client *tc)
{
    if (!tc)
        return;
    if (tc->last)
        SSL_SESSION_free(tc->last);
    if (tc->ctx)
        SSL_CTX_free(tc->ctx);
    free(tc);
}

/* Copies host without IPv6 brackets into buf; false if it does not fit. */
int tls_client_use(struct tls_client *tc, const char *cert_file, const char *key_file, char *err,
                   size_t errlen)
{
    char what[600];
    /* An empty list turns the offer off (this one returns 0 on success). */
    if (SSL_CTX_set_alpn_protos(tc->ctx, NULL, 0) != 0) {
        openssl_reason("clearing ALPN", err, errlen);
        return -1;
    }
    if (!cert_file)
        return 0;
    if (SSL_CTX_use_certificate_chain_file(tc->ctx, cert_file) != 1) {
        snprintf(what, sizeof(what), "cannot load cert_file %s", cert_file);
        openssl_reason(what, err, errlen);
        return -1;
    }
    if (!key_file || SSL_CTX_use_PrivateKey_file(tc->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(tc->ctx) != 1) {
        snprintf(what, sizeof(what), "cannot load key_file %s for cert_file %s",
                 key_file ? key_file : "(none)", cert_file);
        openssl_reason(what, err, errlen);
        return -1;
    }
    return 0;
}

static bool strip_brackets(const char *host, char *buf, size_t n)
{
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len >= n)
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    return true;
}

static bool host_is_ip(const char *host)
{
    char buf[INET6_ADDRSTRLEN + 8];
    unsigned char addr[sizeof(struct in6_addr)];
    if (!strip_brackets(host, buf, sizeof(buf)))
        return false;
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

SSL *tls_client_ssl(struct tls_client *tc, const char *host)
{
    SSL *ssl = SSL_new(tc->ctx);
    if (!ssl)
        return NULL;
    if (host_is_ip(host)) {
        /* SNI must not carry an IP (RFC 6066); check the cert's IP SAN instead. */
        char buf[INET6_ADDRSTRLEN + 8];
        if (!strip_brackets(host, buf, sizeof(buf)) ||
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), buf) != 1)
            goto fail;
    } else {
        if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1)
            goto fail;
    }
    /* A stale or refused session just means a full handshake. */
    if (tc->last && SSL_SESSION_is_resumable(tc->last))
        (void)SSL_set_session(ssl, tc->last);
    return ssl;
fail:
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

void tls_client_close(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl || !SSL_is_init_finished(ssl))
        return;
    /* Only when our write side is idle: libevent retries a partial SSL_write
     * with the same buffer, and a close_notify in between would break it. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        (void)SSL_shutdown(ssl);
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
    ERR_clear_error();
}

void tls_client_error(struct bufferevent *bev, char *buf, size_t n)
{
    unsigned long e, first = 0;
    /* Drain everything so the next connection starts with an empty queue. */
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (!first)
            first = e;
    buf[0] = '\0';
    if (!first)
        return;
    const char *why = ERR_reason_error_string(first);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(buf, n, "TLS: %s (%s)", why ? why : "error", X509_verify_cert_error_string(vr));
    else
        snprintf(buf, n, "TLS: %s", why ? why : "error");
}

SSL_CTX *tls_server_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: cannot create a server context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(err, errlen, "tls_cert %s: %s", cert_file,
                 ERR_reason_error_string(ERR_get_error()));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls_key %s: %s", key_file, ERR_reason_error_string(ERR_get_error()));
        goto fail;
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
