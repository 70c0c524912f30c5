/* test_multipart.c: the multipart/form-data field reader: boundaries from
 * Content-Type, fields and file sizes from bodies fed at every split point,
 * bounds on values and header lines, and malformed bodies refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/multipart.h"

static const struct {
    const char *ct;
    const char *want; /* NULL: refused */
} boundaries[] = {
    {"multipart/form-data; boundary=abc123", "abc123"},
    {"Multipart/Form-Data;boundary=\"a b:c\"", "a b:c"},
    {"multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundary7MA4YWxk",
     "----WebKitFormBoundary7MA4YWxk"},
    {"multipart/form-data; boundary=\"x\\\"y\"", NULL}, /* '"' is not a bchar */
    {"multipart/form-data", NULL},
    {"multipart/form-data; boundary=", NULL},
    {"multipart/form-data; boundary=\"abc \"", NULL}, /* ends with a space */
    {"multipart/mixed; boundary=abc", NULL},
    {"application/json", NULL},
    {"multipart/form-data; boundary="
     "12345678901234567890123456789012345678901234567890123456789012345678901",
     NULL},
    {NULL, NULL},
};

static void test_boundary(void)
{
    for (size_t i = 0; i < ARRAY_LEN(boundaries); i++) {
        char out[MULTIPART_BOUNDARY_MAX + 1] = "";
        int rc = multipart_boundary(boundaries[i].ct, out, sizeof(out));
        if (!boundaries[i].want) {
            CHECK_INT(rc, -1);
            continue;
        }
        CHECK_INT(rc, 0);
        CHECK_STR(out, boundaries[i].want);
    }
}

static const char *const names[] = {"model", "stream"};

#define B "--xYz\r\n"
#define CD "Content-Disposition: form-data; name="
static const struct {
    const char *body;
    int rc;            /* of feed + finish */
    const char *model; /* NULL: not seen */
    const char *stream;
    long file_bytes;
    size_t parts;
} bodies[] = {
    {B CD "\"model\"\r\n\r\nwhisper-1\r\n" B CD "\"file\"; filename=\"a.mp3\"\r\nContent-Type: "
          "audio/mpeg\r\n\r\nID3\r\n--xY\r\r\n--x\r\n--xYz\r\n" CD
          "\"stream\"\r\n\r\ntrue\r\n--xYz--\r\n",
     0, "whisper-1", "true", 15, 3},
    /* a preamble, padding after the boundary, the file first, an epilogue */
    {"preamble\r\n--xYz \t\r\n" CD "file; filename=x\r\n\r\n\r\n\r\n" B CD
     "model\r\n\r\ngpt-4o-transcribe\r\n--xYz--epilogue",
     0, "gpt-4o-transcribe", NULL, 2, 2},
    /* the last model wins; a file part named model is not the field */
    {B CD "\"model\"\r\n\r\na\r\n" B CD "\"model\"\r\n\r\nb\r\n" B CD
          "\"model\"; filename=\"m\"\r\n\r\nc\r\n--xYz--",
     0, "b", NULL, 1, 3},
    /* a value longer than the bound is flagged, never cut */
    {B CD
     "\"model\"\r\n\r\n"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n--xYz--",
     0, "(too long)", NULL, 0, 1},
    {B CD "\"model\"\r\n\r\nwhisper-1\r\n--xYz", -1, "whisper-1", NULL, 0, 1}, /* no close */
    {B CD "\"model\"\r\n\r\nwhisper-1", -1, "whisper-1", NULL, 0, 1},
    {"--xYz-x\r\n", -1, NULL, NULL, 0, 0},
    {"--xYzq\r\n", -1, NULL, NULL, 0, 0},
    {B "Content-Disposition: form-data; name=\"model\"\rX\r\n\r\nx\r\n--xYz--", -1, NULL, NULL, 0,
     1},
    {"", -1, NULL, NULL, 0, 0},
    {"no boundary at all", -1, NULL, NULL, 0, 0},
};

static void check_result(size_t i, const struct multipart *m, int rc)
{
    CHECK_INT(rc, bodies[i].rc);
    const struct multipart_field *model = &m->fields[0], *stream = &m->fields[1];
    if (!bodies[i].model)
        CHECK(!model->seen);
    else if (strcmp(bodies[i].model, "(too long)") == 0)
        CHECK(model->seen && model->too_long);
    else if (model->seen)
        CHECK_STR(model->value, bodies[i].model);
    else
        CHECK(model->seen);
    if (bodies[i].stream)
        CHECK(stream->seen && strcmp(stream->value, bodies[i].stream) == 0);
    if (bodies[i].rc == 0) {
        CHECK_INT(m->file_bytes, bodies[i].file_bytes);
        CHECK_INT(m->parts, bodies[i].parts);
    } else {
        CHECK(m->err[0] != '\0');
    }
}

/* Every body fed whole, in two pieces split at every byte, and a byte at a time. */
static void test_bodies(void)
{
    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        const char *b = bodies[i].body;
        size_t n = strlen(b);
        for (size_t cut = 0; cut <= n; cut++) {
            struct multipart m;
            multipart_init(&m, "xYz", names, ARRAY_LEN(names));
            int rc = multipart_feed(&m, b, cut);
            if (rc == 0)
                rc = multipart_feed(&m, b + cut, n - cut);
            if (rc == 0)
                rc = multipart_finish(&m);
            check_result(i, &m, rc < 0 ? -1 : 0);
        }
        struct multipart m;
        multipart_init(&m, "xYz", names, ARRAY_LEN(names));
        int rc = 0;
        for (size_t k = 0; k < n && rc == 0; k++)
            rc = multipart_feed(&m, b + k, 1);
        if (rc == 0)
            rc = multipart_finish(&m);
        check_result(i, &m, rc < 0 ? -1 : 0);
    }
}

/* A header line past the bound is refused; a large file costs no memory. */
static void test_bounds(void)
{
    size_t big = 3 * 1024 * 1024;
    char *body = malloc(big + 256);
    CHECK(body != NULL);
    if (!body)
        return;
    size_t k = (size_t)sprintf(body, B CD "\"file\"; filename=\"a\"\r\n\r\n");
    memset(body + k, '\r', big); /* CRs everywhere: the slow path all along */
    k += big;
    k += (size_t)sprintf(body + k, "\r\n--xYz--\r\n");
    struct multipart m;
    multipart_init(&m, "xYz", names, ARRAY_LEN(names));
    CHECK_INT(multipart_feed(&m, body, k), 0);
    CHECK_INT(multipart_finish(&m), 0);
    CHECK_INT(m.file_bytes, (long)big);

    k = (size_t)sprintf(body, B "X-Long: ");
    memset(body + k, 'h', 2000);
    k += 2000;
    multipart_init(&m, "xYz", names, ARRAY_LEN(names));
    CHECK_INT(multipart_feed(&m, body, k), -1);
    CHECK(strstr(m.err, "longer") != NULL);
    free(body);
}

static const struct check_test tests[] = {
    {"boundary", test_boundary},
    {"bodies", test_bodies},
    {"bounds", test_bounds},
};

int main(void)
{
    return CHECK_MAIN("multipart", tests);
}
