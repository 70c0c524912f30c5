/* test_docs.c: proxy.conf.example documents every key of the config table
 * (as "key =" or "; key =" under its section), documents no key the table
 * lacks, lists fixed sections' keys in the table's order, marks (restart)
 * exactly the keys the table says need one, and loads. Runs
 * from the repository root. */
#include <ctype.h>
#include <stdlib.h>

#include "check.h"
#include "core/config.h"

#define EXAMPLE "proxy.conf.example"

struct doc {
    char section[64]; /* "server", "upstream groq" */
    char key[64];
    int line;
    bool restart;   /* the line says "(restart)" */
    char text[256]; /* the line from the key on */
};

static struct doc docs[512];
static size_t n_docs;

/* "; [plan free]" and "[plan free]" both open a section: commented-out
 * examples document their keys too. */
static void read_example(void)
{
    FILE *f = fopen(EXAMPLE, "r");
    char line[1024], section[64] = "";
    int lineno = 0;
    CHECK(f != NULL);
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        lineno++;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == ';' || *s == '#') {
            s++;
            while (isspace((unsigned char)*s))
                s++;
        }
        if (*s == '[') {
            size_t len = strcspn(s + 1, "]");
            if (s[1 + len] == ']')
                snprintf(section, sizeof section, "%.*s", (int)len, s + 1);
            continue;
        }
        size_t klen = 0;
        while (islower((unsigned char)s[klen]) || s[klen] == '_')
            klen++;
        char *after = s + klen;
        while (*after == ' ' || *after == '\t')
            after++;
        if (klen == 0 || klen >= sizeof docs[0].key || *after != '=' || n_docs == ARRAY_LEN(docs))
            continue;
        struct doc *d = &docs[n_docs++];
        snprintf(d->section, sizeof d->section, "%s", section);
        snprintf(d->key, sizeof d->key, "%.*s", (int)klen, s);
        d->line = lineno;
        d->restart = strstr(after, "(restart)") != NULL;
        snprintf(d->text, sizeof d->text, "%.250s", s);
    }
    fclose(f);
}

/* "upstream *" matches any "upstream NAME"; fixed sections match exactly. */
static bool section_matches(const char *table, const char *doc)
{
    size_t len = strlen(table);
    if (len > 2 && strcmp(table + len - 2, " *") == 0)
        return strncmp(doc, table, len - 1) == 0 && doc[len - 1] != '\0';
    return strcmp(table, doc) == 0;
}

static int find_doc(const char *section, const char *key)
{
    for (size_t i = 0; i < n_docs; i++)
        if (section_matches(section, docs[i].section) && strcmp(docs[i].key, key) == 0)
            return (int)i;
    return -1;
}

struct walk {
    int missing;
    char last_section[64];
    int last_index; /* where the previous key of the same fixed section was documented */
};

static void check_documented(const char *section, const char *key, void *arg)
{
    struct walk *w = arg;
    int i = find_doc(section, key);
    if (i < 0) {
        fprintf(stderr, "  %s: [%s] %s is not documented\n", EXAMPLE, section, key);
        w->missing++;
        return;
    }
    if (strchr(section, '*'))
        return;
    if (strcmp(w->last_section, section) != 0) {
        snprintf(w->last_section, sizeof w->last_section, "%s", section);
        w->last_index = -1;
    }
    if (i < w->last_index) {
        fprintf(stderr, "  %s:%d: [%s] %s is out of the table's order\n", EXAMPLE, docs[i].line,
                section, key);
        w->missing++;
    }
    w->last_index = i;
}

static void test_every_key_documented(void)
{
    struct walk w = {0};
    config_each_key(check_documented, &w);
    CHECK_INT(w.missing, 0);
}

struct lookup {
    const struct doc *d;
    bool found;
};

static void match_key(const char *section, const char *key, void *arg)
{
    struct lookup *l = arg;
    if (section_matches(section, l->d->section) && strcmp(key, l->d->key) == 0)
        l->found = true;
}

static void test_no_unknown_key_documented(void)
{
    CHECK(n_docs > 50);
    for (size_t i = 0; i < n_docs; i++) {
        struct lookup l = {&docs[i], false};
        config_each_key(match_key, &l);
        if (!l.found) {
            fprintf(stderr, "  %s:%d: [%s] %s is not a key\n", EXAMPLE, docs[i].line,
                    docs[i].section, docs[i].key);
            check_failed_now = 1;
        }
    }
}

static void check_restart_mark(const struct config_key_info *k, void *arg)
{
    int *bad = arg;
    int i = find_doc(k->section, k->key);
    if (i >= 0 && docs[i].restart == k->reloadable) {
        fprintf(stderr, "  %s:%d: [%s] %s %s (restart) but the key table says it %s\n", EXAMPLE,
                docs[i].line, k->section, k->key, docs[i].restart ? "is marked" : "is not marked",
                k->reloadable ? "reloads" : "needs a restart");
        (*bad)++;
    }
}

static void check_max_mark(const struct config_key_info *k, void *arg)
{
    int *bad = arg;
    int i = find_doc(k->section, k->key);
    char want[32];
    snprintf(want, sizeof want, "(max %zu)", k->max_len);
    if (i >= 0 && k->max_len && !strstr(docs[i].text, want)) {
        fprintf(stderr, "  %s:%d: [%s] %s does not say %s\n", EXAMPLE, docs[i].line, k->section,
                k->key, want);
        (*bad)++;
    }
}

/* Every text key has a limit, and the example states it. */
static void test_max_marks(void)
{
    int bad = 0;
    config_each_key_info(check_max_mark, &bad);
    CHECK_INT(bad, 0);
}

static void test_restart_marks(void)
{
    int bad = 0;
    config_each_key_info(check_restart_mark, &bad);
    CHECK_INT(bad, 0);
}

static void test_example_loads(void)
{
    char err[4096];
    struct config *c = config_load(EXAMPLE, err, sizeof err);
    if (!c)
        fprintf(stderr, "  %s\n", err);
    CHECK(c != NULL);
    if (!c)
        return;
    /* What `make run` and the README promise. */
    CHECK_STR(c->listen, "127.0.0.1:8080");
    CHECK_STR(c->admin_listen, "127.0.0.1:9090");
    CHECK(c->admin_token != NULL);
    CHECK_STR(c->redis_url, "redis://127.0.0.1:6379/0");
    CHECK_STR(c->pricing_file, "conf/pricing.conf");
    CHECK_STR(c->records_file, "var/usage.jsonl");
    CHECK(config_plan(c, "free") && config_plan(c, "starter") && config_plan(c, "pro") &&
          config_plan(c, "business"));
    CHECK(config_tenant(c, "acme") != NULL);
    CHECK_INT(c->n_upstreams, 3);
    config_unref(c);
}

static const struct check_test tests[] = {
    {"every_key_documented", test_every_key_documented},
    {"no_unknown_key_documented", test_no_unknown_key_documented},
    {"restart_marks", test_restart_marks},
    {"max_marks", test_max_marks},
    {"example_loads", test_example_loads},
};

int main(void)
{
    read_example();
    return CHECK_MAIN("docs", tests);
}
