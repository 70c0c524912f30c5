/* test_sse.c: the SSE parser against recorded streams (tests/captures/NAME.sse)
 * and a table of small cases. Every input is fed whole, in two pieces at
 * every split point, and byte by byte, and every truncated prefix is fed and
 * finished; each run must give the events of a plain reference parser kept
 * here (written for clarity, not speed), the same partial flag, and with
 * keep_raw the exact input back from raw + sse_finish. The overflow cases
 * build a 2 MB event in memory. Run from the repository root, as make does
 * (or set TOLLGATE_SRCDIR). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "capture.h"
#include "check.h"
#include "http/sse.h"

/* ---- growable byte buffer ---- */

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static bool buf_eq(const struct buf *b, const char *s, size_t n)
{
    return b->n == n && (n == 0 || memcmp(b->p, s, n) == 0);
}

/* ---- what a run produced ---- */

enum seg_kind { SEG_EVENT, SEG_SKIP, SEG_FINISH };

/* Raw output in order: each delivered event's raw, skip_raw bytes, and the
 * bytes sse_finish handed back. */
struct seg {
    enum seg_kind kind;
    struct buf bytes;
    size_t lead;
};

struct ev {
    struct buf event, data;
};

struct run {
    struct ev *ev;
    size_t n_ev;
    struct seg *seg;
    size_t n_seg;
    bool partial;
    size_t overflows;
};

static struct seg *new_seg(struct run *r, enum seg_kind kind)
{
    r->seg = realloc(r->seg, (r->n_seg + 1) * sizeof(*r->seg));
    if (!r->seg)
        abort();
    struct seg *s = &r->seg[r->n_seg++];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    return s;
}

static void on_ev(const struct sse_event *e, void *arg)
{
    struct run *r = arg;
    r->ev = realloc(r->ev, (r->n_ev + 1) * sizeof(*r->ev));
    if (!r->ev)
        abort();
    struct ev *x = &r->ev[r->n_ev++];
    memset(x, 0, sizeof(*x));
    buf_add(&x->event, e->event, e->event_len);
    buf_add(&x->data, e->data, e->data_len);
    if (e->raw) {
        struct seg *s = new_seg(r, SEG_EVENT);
        buf_add(&s->bytes, e->raw, e->raw_len);
        s->lead = e->raw_lead;
    }
}

static void on_skip(const char *raw, size_t len, void *arg)
{
    struct run *r = arg;
    /* Consecutive skipped bytes form one segment. */
    if (!r->n_seg || r->seg[r->n_seg - 1].kind != SEG_SKIP)
        new_seg(r, SEG_SKIP);
    buf_add(&r->seg[r->n_seg - 1].bytes, raw, len);
}

static void on_finish_raw(const char *raw, size_t len, void *arg)
{
    struct seg *s = new_seg(arg, SEG_FINISH);
    buf_add(&s->bytes, raw, len);
}

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->n_ev; i++) {
        buf_free(&r->ev[i].event);
        buf_free(&r->ev[i].data);
    }
    for (size_t i = 0; i < r->n_seg; i++)
        buf_free(&r->seg[i].bytes);
    free(r->ev);
    free(r->seg);
    memset(r, 0, sizeof(*r));
}

/* Raw output with event number drop left out (drop < 0: keep all), the way
 * the proxy forwards: a segment's lead bytes belong to the event before it
 * and go out only if that event did (for sse_finish's bytes the lead is a
 * '\n' after a '\r'-ended event). */
static void run_output(const struct run *r, long drop, struct buf *out)
{
    long k = 0;
    bool prev_kept = true, prev_cr = false;
    for (size_t i = 0; i < r->n_seg; i++) {
        const struct seg *s = &r->seg[i];
        size_t lead = s->lead;
        if (s->kind != SEG_EVENT)
            lead = prev_cr && s->bytes.n && s->bytes.p[0] == '\n';
        bool keep = !(s->kind == SEG_EVENT && k++ == drop);
        if (lead && prev_kept)
            buf_add(out, s->bytes.p, lead);
        if (keep)
            buf_add(out, s->bytes.p + lead, s->bytes.n - lead);
        prev_kept = keep;
        prev_cr = s->bytes.n && s->bytes.p[s->bytes.n - 1] == '\r';
    }
}

/* Feeds in in pieces: the first at split, then pieces of step (0: rest). */
static void feed(const char *in, size_t len, size_t split, size_t step, bool keep_raw,
                 size_t max_event, struct run *r)
{
    struct sse_parser p;
    sse_init(&p, max_event, keep_raw);
    sse_set_skip_raw(&p, on_skip);
    memset(r, 0, sizeof(*r));
    size_t off = 0;
    if (split > len)
        split = len;
    CHECK(sse_feed(&p, in, split, on_ev, r) == 0);
    off = split;
    while (off < len) {
        size_t n = step && step < len - off ? step : len - off;
        CHECK(sse_feed(&p, in + off, n, on_ev, r) == 0);
        off += n;
    }
    CHECK(p.line_cap <= max_event + 1 && p.data_cap <= max_event + 1 && p.raw_cap <= max_event + 1);
    r->overflows = p.overflows;
    r->partial = sse_finish(&p, on_finish_raw, r);
    sse_free(&p);
}

/* ---- the reference parser: whole input, line by line ---- */

static void oracle(const char *in, size_t len, struct run *r)
{
    memset(r, 0, sizeof(*r));
    struct buf data = {0}, name = {0};
    bool has_data = false;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && in[j] != '\r' && in[j] != '\n')
            j++;
        if (j == len) {
            r->partial = j > i || has_data || name.n > 0;
            break;
        }
        const char *line = in + i;
        size_t n = j - i;
        i = j + (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n' ? 2 : 1);
        if (n == 0) {
            if (has_data) {
                struct sse_event e = {
                    name.p ? name.p : "", name.n, data.p ? data.p : "", data.n, NULL, 0, 0};
                on_ev(&e, r);
            }
            data.n = name.n = 0;
            has_data = false;
            continue;
        }
        if (line[0] == ':')
            continue;
        size_t c = 0;
        while (c < n && line[c] != ':')
            c++;
        const char *v = c < n ? line + c + 1 : line + n;
        size_t vl = c < n ? n - c - 1 : 0;
        if (vl && v[0] == ' ')
            v++, vl--;
        if (c == 4 && memcmp(line, "data", 4) == 0) {
            if (has_data)
                buf_add(&data, "\n", 1);
            buf_add(&data, v, vl);
            has_data = true;
        } else if (c == 5 && memcmp(line, "event", 5) == 0) {
            name.n = 0;
            buf_add(&name, v, vl);
        }
    }
    buf_free(&data);
    buf_free(&name);
}

static bool same_events(const struct run *a, const struct run *b)
{
    if (a->n_ev != b->n_ev)
        return false;
    for (size_t i = 0; i < a->n_ev; i++)
        if (!buf_eq(&a->ev[i].event, b->ev[i].event.p, b->ev[i].event.n) ||
            !buf_eq(&a->ev[i].data, b->ev[i].data.p, b->ev[i].data.n))
            return false;
    return true;
}

/* A raw_lead byte is always the LF of a CR that ended the previous segment. */
static bool leads_ok(const struct run *r)
{
    for (size_t i = 0; i < r->n_seg; i++) {
        const struct seg *s = &r->seg[i];
        if (s->lead == 0)
            continue;
        if (s->lead != 1 || s->bytes.p[0] != '\n' || i == 0)
            return false;
        const struct buf *prev = &r->seg[i - 1].bytes;
        if (prev->n == 0 || prev->p[prev->n - 1] != '\r')
            return false;
    }
    return true;
}

/* Checks one run against the reference: events, partial, raw round trip and,
 * for each event, that dropping it gives the same bytes as in the whole-feed
 * run (want_drop[k]). Returns false on the first difference so a failing
 * split is reported once with its position. */
static bool run_matches(const struct run *r, const struct run *ref, const char *in, size_t len,
                        bool keep_raw, struct buf *want_drop)
{
    if (!same_events(r, ref) || r->partial != ref->partial || r->overflows != 0)
        return false;
    if (!keep_raw)
        return r->n_seg == 0;
    struct buf out = {0};
    run_output(r, -1, &out);
    bool ok = buf_eq(&out, in, len) && leads_ok(r);
    buf_free(&out);
    for (size_t k = 0; ok && want_drop && k < r->n_ev; k++) {
        run_output(r, (long)k, &out);
        ok = buf_eq(&out, want_drop[k].p, want_drop[k].n);
        buf_free(&out);
    }
    return ok;
}

/* Every split, byte by byte, and every truncated prefix, with and without raw. */
static void exercise(const char *name, const char *in, size_t len)
{
    struct run ref, whole;
    oracle(in, len, &ref);
    feed(in, len, len, 0, true, 1 << 20, &whole);
    /* Fed whole, a CRLF's LF is never split from its CR: no event has a lead. */
    for (size_t k = 0; k < whole.n_seg; k++)
        CHECK_INT(whole.seg[k].lead, 0);
    struct buf *want_drop = calloc(whole.n_ev + 1, sizeof(*want_drop));
    for (size_t k = 0; k < whole.n_ev; k++)
        run_output(&whole, (long)k, &want_drop[k]);
    for (int keep_raw = 0; keep_raw <= 1; keep_raw++) {
        for (size_t split = 0; split <= len; split++) {
            struct run r;
            feed(in, len, split, 0, keep_raw, 1 << 20, &r);
            bool ok = run_matches(&r, &ref, in, len, keep_raw, want_drop);
            run_free(&r);
            if (!ok) {
                fprintf(stderr, "  %s: split at %zu (keep_raw %d) differs\n", name, split,
                        keep_raw);
                CHECK(ok);
                break;
            }
        }
        struct run r;
        feed(in, len, 0, 1, keep_raw, 1 << 20, &r);
        if (!run_matches(&r, &ref, in, len, keep_raw, want_drop)) {
            fprintf(stderr, "  %s: byte by byte (keep_raw %d) differs\n", name, keep_raw);
            CHECK(0);
        }
        run_free(&r);
        for (size_t cut = 0; cut <= len; cut++) {
            struct run pre, got, bytes;
            oracle(in, cut, &pre);
            feed(in, cut, cut, 0, keep_raw, 1 << 20, &got);
            feed(in, cut, 0, 1, keep_raw, 1 << 20, &bytes);
            bool ok = run_matches(&got, &pre, in, cut, keep_raw, NULL) &&
                      run_matches(&bytes, &pre, in, cut, keep_raw, NULL);
            run_free(&pre);
            run_free(&got);
            run_free(&bytes);
            if (!ok) {
                fprintf(stderr, "  %s: prefix of %zu bytes (keep_raw %d) differs\n", name, cut,
                        keep_raw);
                CHECK(ok);
                break;
            }
        }
    }
    for (size_t k = 0; k < whole.n_ev; k++)
        buf_free(&want_drop[k]);
    free(want_drop);
    run_free(&whole);
    run_free(&ref);
}

/* ---- captures ---- */

/* What each capture must contain: the events' names, and the data of the
 * first and last event, so the reference parser is checked too. */
static const struct {
    const char *file;
    size_t events;
    const char *names; /* event names joined with ',' */
    const char *first_data, *last_data;
} captures[] = {
    {"openai_chat_usage.sse", 5, ",,,,", NULL, "[DONE]"},
    {"openai_chat_reasoning_crlf.sse", 6, ",,,,,", NULL, "[DONE]"},
    {"openai_chat_nousage.sse", 5, ",,,,", NULL, "[DONE]"},
    {"openai_comments.sse", 4, ",,,", NULL, "[DONE]"},
    {"openai_responses.sse", 4,
     "response.created,response.output_text.delta,response.output_text.delta,response.completed",
     NULL, NULL},
    {"openai_error.sse", 2, ",", NULL,
     "{\"error\":{\"message\":\"The server had an error while processing your request.\","
     "\"type\":\"server_error\",\"param\":null,\"code\":null}}"},
    {"anthropic_basic.sse", 7,
     "message_start,content_block_start,ping,content_block_delta,content_block_stop,"
     "message_delta,message_stop",
     NULL, "{\"type\":\"message_stop\"}"},
    {"anthropic_cache.sse", 13, NULL, NULL, "{\"type\":\"message_stop\"}"},
    {"gemini_crlf.sse", 4, ",,,", NULL, NULL},
    {"multiline_cr.sse", 3, "first,,second", "line one\nline two\n\n two spaces", "{\"a\":\n1}"},
};

static void test_captures(void)
{
    for (size_t i = 0; i < ARRAY_LEN(captures); i++) {

        size_t len;
        char *in = load(captures[i].file, &len);
        CHECK(in != NULL);
        if (!in)
            continue;
        struct run r;
        feed(in, len, len, 0, false, 1 << 20, &r);
        CHECK_INT(r.n_ev, captures[i].events);
        CHECK(!r.partial);
        struct buf names = {0};
        for (size_t k = 0; k < r.n_ev; k++) {
            if (k)
                buf_add(&names, ",", 1);
            buf_add(&names, r.ev[k].event.p, r.ev[k].event.n);
        }
        if (captures[i].names)
            CHECK_STR(names.p ? names.p : "", captures[i].names);
        if (captures[i].first_data && r.n_ev)
            CHECK_STR(r.ev[0].data.p, captures[i].first_data);
        if (captures[i].last_data && r.n_ev)
            CHECK_STR(r.ev[r.n_ev - 1].data.p, captures[i].last_data);
        /* Every JSON-looking data payload is one complete object. */
        for (size_t k = 0; k < r.n_ev; k++) {
            const struct buf *d = &r.ev[k].data;
            if (d->n && d->p[0] == '{')
                CHECK(d->p[d->n - 1] == '}');
        }
        buf_free(&names);
        run_free(&r);
        exercise(captures[i].file, in, len);
        free(in);
    }
}

/* ---- small cases ---- */

static const struct {
    const char *in;
    const char *want; /* events as "name|data" joined with ';' */
    bool partial;
} cases[] = {
    {"data:x\n\n", "|x", false},
    {"data: x\n\n", "|x", false},
    {"data:  x\n\n", "| x", false},
    {"data: x\r\n\r\n", "|x", false},
    {"data: x\r\r", "|x", false},
    {"data: x\n\r\n", "|x", false},
    {"data\n\n", "|", false},
    {"data:\n\n", "|", false},
    {"data: a\ndata: b\n\n", "|a\nb", false},
    {"data: a\n\ndata: b\n\n", "|a;|b", false},
    {"event: e\n\n", "", false},
    {"event: e\n\ndata: x\n\n", "|x", false},
    {"event:e\ndata:x\n\n", "e|x", false},
    {"event: a\nevent: b\ndata: x\n\n", "b|x", false},
    {":c\n\n", "", false},
    {": c\ndata: x\n: d\n\n", "|x", false},
    {"id: 5\nretry: 10\ndata: x\n\n", "|x", false},
    {"foo: bar\ndata: x\n\n", "|x", false},
    {"Data: x\n\n", "", false},
    {"data: x:y\n\n", "|x:y", false},
    {"\n\n\n", "", false},
    {"", "", false},
    {"data: x\n", "", true},
    {"data: x", "", true},
    {"data: x\r", "", true},
    {"event: e\n", "", true},
    {"id: 1\n", "", false},
    {"data: x\n\n: trailing", "|x", true},
    {"data: x\n\ndata", "|x", true},
    {"data: [DONE]\n\n", "|[DONE]", false},
    {"data: \xc3\xa9t\xc3\xa9\n\n", "|\xc3\xa9t\xc3\xa9", false},
    {"event: a-very-long-event-name-that-is-longer-than-sixty-three-bytes-in-all\ndata: x\n\n",
     "a-very-long-event-name-that-is-longer-than-sixty-three-bytes-in|x", false},
};

static void test_cases(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const char *in = cases[i].in;
        size_t len = strlen(in);
        struct run r;
        feed(in, len, len, 0, false, 1 << 20, &r);
        struct buf got = {0};
        for (size_t k = 0; k < r.n_ev; k++) {
            if (k)
                buf_add(&got, ";", 1);
            buf_add(&got, r.ev[k].event.p, r.ev[k].event.n);
            buf_add(&got, "|", 1);
            buf_add(&got, r.ev[k].data.p, r.ev[k].data.n);
        }
        if (!buf_eq(&got, cases[i].want, strlen(cases[i].want)) || r.partial != cases[i].partial) {
            fprintf(stderr, "  case %zu: got \"%s\" partial %d\n", i, got.p ? got.p : "",
                    r.partial);
            CHECK(0);
        }
        buf_free(&got);
        run_free(&r);
        /* The 63-byte cut of long names is the parser's, not the reference's. */
        if (i != ARRAY_LEN(cases) - 1)
            exercise(in, in, len);
    }
}

/* ---- overflow: a 2 MB event with a 1 MiB bound ---- */

static const char head[] = "data: before\n\n";
static const char tail[] = "data: after\n\n";

/* kind 0: one 2 MB data line; 1: 2 MB of short data lines; 2: a 2 MB comment
 * line inside the event; 3: cut inside the big event (no tail). */
static char *big_stream(int kind, size_t *len)
{
    struct buf b = {0};
    buf_add(&b, head, strlen(head));
    buf_add(&b, "event: big\r\n", 12);
    char chunk[1024];
    memset(chunk, 'x', sizeof(chunk));
    if (kind == 0 || kind == 3)
        buf_add(&b, "data: ", 6);
    if (kind == 2)
        buf_add(&b, ": ", 2);
    int lines = kind == 1 ? 20480 : 2048;
    for (int i = 0; i < lines; i++) {
        if (kind == 1)
            buf_add(&b, "data: ", 6);
        buf_add(&b, chunk, kind == 1 ? 100 : sizeof(chunk));
        if (kind == 1)
            buf_add(&b, "\n", 1);
    }
    if (kind == 2)
        buf_add(&b, "\ndata: big\n", 11);
    if (kind != 3) {
        buf_add(&b, kind == 1 ? "\n" : "\n\n", kind == 1 ? 1 : 2);
        buf_add(&b, tail, strlen(tail));
    }
    *len = b.n;
    return b.p;
}

static void test_overflow(void)
{
    static const size_t steps[] = {1, 7, 4096, 65536, 0};
    static const size_t splits[] = {0, 5, 14, 15, 26, 1000, 1048576, 1048590, 2000000};
    for (int kind = 0; kind <= 3; kind++) {
        size_t len;
        char *in = big_stream(kind, &len);
        for (int keep_raw = 0; keep_raw <= 1; keep_raw++) {
            for (size_t s = 0; s < ARRAY_LEN(steps) + ARRAY_LEN(splits); s++) {
                bool by_step = s < ARRAY_LEN(steps);
                struct run r;
                feed(in, len, by_step ? 0 : splits[s - ARRAY_LEN(steps)], by_step ? steps[s] : 0,
                     keep_raw, 1 << 20, &r);
                size_t want_ev = kind == 3 ? 1 : 2;
                CHECK_INT(r.n_ev, want_ev);
                if (r.n_ev >= 1)
                    CHECK_STR(r.ev[0].data.p, "before");
                if (r.n_ev == 2)
                    CHECK_STR(r.ev[1].data.p, "after");
                CHECK_INT(r.overflows, kind == 3 ? 0 : 1);
                CHECK(r.partial == (kind == 3));
                if (keep_raw) {
                    struct buf out = {0};
                    run_output(&r, -1, &out);
                    CHECK(buf_eq(&out, in, len));
                    buf_free(&out);
                }
                run_free(&r);
            }
        }
        free(in);
    }
}

/* Without skip_raw the skipped bytes are gone, and the parser is reusable
 * after sse_finish. */
static void test_reuse(void)
{
    struct sse_parser p;
    struct run r;
    memset(&r, 0, sizeof(r));
    sse_init(&p, 16, true);
    const char *a = "data: 0123456789abcdef\n\ndata: ok\n\n", *b = "data: two\n\ndata: cut";
    CHECK(sse_feed(&p, a, strlen(a), on_ev, &r) == 0);
    CHECK_INT(p.overflows, 1);
    CHECK_INT(r.n_ev, 1);
    CHECK(!sse_finish(&p, on_finish_raw, &r));
    CHECK(sse_feed(&p, b, strlen(b), on_ev, &r) == 0);
    CHECK(sse_finish(&p, on_finish_raw, &r));
    CHECK_INT(r.n_ev, 2);
    if (r.n_ev == 2)
        CHECK_STR(r.ev[1].data.p, "two");
    CHECK_INT(r.n_seg, 3);
    if (r.n_seg == 3) {
        CHECK_STR(r.seg[0].bytes.p, "data: ok\n\n");
        CHECK(r.seg[2].kind == SEG_FINISH);
        CHECK_STR(r.seg[2].bytes.p, "data: cut");
    }
    sse_free(&p);
    run_free(&r);
}

static const struct check_test tests[] = {
    {"captures", test_captures},
    {"cases", test_cases},
    {"overflow", test_overflow},
    {"reuse", test_reuse},
};

int main(void)
{
    return CHECK_MAIN("sse", tests);
}
