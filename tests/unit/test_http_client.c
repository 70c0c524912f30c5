/* test_http_client.c: the export client's name lookup has a deadline
 * (http_client.c resolve): a resolver that does not answer costs a request
 * its deadline, not the resolver's own timeouts; the late answer serves the
 * next request; one lookup per target at most; IP literals start no thread.
 * getaddrinfo is replaced by a resolver the test slows down at will. */
#include <stdatomic.h>
#include <netdb.h>

static int slow_getaddrinfo(const char *host, const char *port, const struct addrinfo *hints,
                            struct addrinfo **res);
#define getaddrinfo slow_getaddrinfo
#include "../../src/http/http_client.c"
#undef getaddrinfo

#include "check.h"

static atomic_int delay_ms;  /* how long a name lookup takes */
static atomic_int lookups;   /* name lookups started (not IP literals) */
static atomic_int in_flight; /* name lookups not yet returned */

static int slow_getaddrinfo(const char *host, const char *port, const struct addrinfo *hints,
                            struct addrinfo **res)
{
    if (hints && (hints->ai_flags & AI_NUMERICHOST))
        return getaddrinfo(host, port, hints, res);
    atomic_fetch_add(&lookups, 1);
    atomic_fetch_add(&in_flight, 1);
    struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    int rc = strcmp(host, "nx.test") == 0
                 ? EAI_NONAME
                 : getaddrinfo("127.0.0.1", port,
                               &(struct addrinfo){.ai_socktype = SOCK_STREAM,
                                                  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                               res);
    atomic_fetch_sub(&in_flight, 1);
    return rc;
}

static void wait_lookups_done(void)
{
    for (int i = 0; i < 400 && atomic_load(&in_flight); i++)
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
}

static void test_literal(void)
{
    struct http_target t;
    char err[256];
    struct addrinfo *res = NULL;
    atomic_store(&lookups, 0);
    CHECK(http_target_init(&t, "http://127.0.0.1:9/x", NULL, err, sizeof(err)) == 0);
    CHECK(resolve(&t, clock_mono_ms() + 100, &res, err, sizeof(err)) == 0);
    CHECK(res != NULL);
    CHECK_INT(atomic_load(&lookups), 0);
    CHECK(t.lookup == NULL);
    freeaddrinfo(res);
    http_target_free(&t);
}

static void test_deadline(void)
{
    struct http_target t;
    char err[256];
    struct addrinfo *res = NULL;
    atomic_store(&lookups, 0);
    atomic_store(&delay_ms, 800);
    CHECK(http_target_init(&t, "http://sink.test:4318/v1/traces", NULL, err, sizeof(err)) == 0);
    long long t0 = clock_mono_ms();
    CHECK(resolve(&t, t0 + 100, &res, err, sizeof(err)) == -1);
    long long took = clock_mono_ms() - t0;
    CHECK(took >= 90 && took < 700); /* the deadline, not the resolver's 800 ms */
    CHECK(strstr(err, "no answer within the deadline") != NULL);
    CHECK(t.lookup != NULL);
    /* the next request waits for the same lookup: never a second one */
    CHECK(resolve(&t, clock_mono_ms() + 50, &res, err, sizeof(err)) == -1);
    CHECK_INT(atomic_load(&lookups), 1);
    /* the whole request fails by its deadline too, naming the host */
    int st = http_request(&t, "POST", "application/json", NULL, "{}", 2, 50, err, sizeof(err));
    CHECK_INT(st, -1);
    CHECK(strstr(err, "sink.test:4318: resolve: no answer") != NULL);
    wait_lookups_done();
    /* the late answer serves the next request */
    CHECK(resolve(&t, clock_mono_ms() + 100, &res, err, sizeof(err)) == 0);
    CHECK(res != NULL);
    CHECK(t.lookup == NULL);
    CHECK_INT(atomic_load(&lookups), 1);
    freeaddrinfo(res);
    res = NULL;
    /* a quick resolver: answered within the deadline */
    atomic_store(&delay_ms, 0);
    CHECK(resolve(&t, clock_mono_ms() + 1000, &res, err, sizeof(err)) == 0);
    CHECK_INT(atomic_load(&lookups), 2);
    freeaddrinfo(res);
    http_target_free(&t);
}

static void test_error_and_free_while_running(void)
{
    struct http_target t;
    char err[256];
    struct addrinfo *res = NULL;
    atomic_store(&delay_ms, 0);
    CHECK(http_target_init(&t, "http://nx.test/", NULL, err, sizeof(err)) == 0);
    CHECK(resolve(&t, clock_mono_ms() + 1000, &res, err, sizeof(err)) == -1);
    CHECK(strstr(err, "resolve: ") != NULL && !strstr(err, "deadline"));
    CHECK(t.lookup == NULL);
    http_target_free(&t);
    /* freed while its lookup runs: the lookup thread frees what is left */
    atomic_store(&delay_ms, 300);
    CHECK(http_target_init(&t, "http://sink.test/", NULL, err, sizeof(err)) == 0);
    CHECK(resolve(&t, clock_mono_ms() + 20, &res, err, sizeof(err)) == -1);
    http_target_free(&t);
    wait_lookups_done();
    nanosleep(&(struct timespec){0, 50000000L}, NULL); /* its last unref (ASan: no leak) */
}

static const struct check_test tests[] = {
    {"literal", test_literal},
    {"deadline", test_deadline},
    {"error_and_free_while_running", test_error_and_free_while_running},
};

int main(void)
{
    return CHECK_MAIN("http_client", tests);
}
