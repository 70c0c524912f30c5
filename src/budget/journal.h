/* journal.h: settlements Redis did not take while it was unreachable
 * ([redis] on_failure = open), kept on local disk and replayed once it is
 * back. One journal per worker, {journal_dir}/worker-N.jsonl, one JSON line
 * per struct settle, with its stamp (redis.h): the connection and sequence
 * it was sent with when it may have run (a timeout, a lost connection), or
 * one the journal makes when it was never sent. A replay counts a stamp
 * only if it never ran (settle.lua), so a replay cut by a crash or a Redis
 * failure is simply run again.
 *
 * Files: worker-N.jsonl takes appends. A replay first renames it to
 * worker-N.replaying and appends go to a fresh worker-N.jsonl, so lines
 * written during a replay are never lost nor truncated with it; the
 * .replaying file is removed only after every line in it was acknowledged.
 * A .replaying file found at open (a crash mid-replay) is replayed first. */
#ifndef TOLLGATE_JOURNAL_H
#define TOLLGATE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct event_base;
struct redis;
struct settle;
struct journal;

/* Settles at most this many lines at once during a replay. */
#define JOURNAL_INFLIGHT 100
/* Appends past this many pending lines are refused (a bounded journal: an
 * outage of many hours must not fill the disk). */
#define JOURNAL_MAX_LINES 1000000

/* Creates dir when missing (one level; its parent must exist), opens
 * dir/worker-N.jsonl for appending and counts the lines pending in it and in
 * a leftover worker-N.replaying. base runs the replay's timers. Returns NULL
 * and writes err on failure. */
struct journal *journal_open(struct event_base *base, const char *dir, int worker_id, char *err,
                             size_t errlen) MUST_CHECK;

/* Before the workers open their journals: the files of workers this
 * instance does not have (a previous instance ran more workers, or a pod
 * restarted with a smaller CPU limit) are appended to worker-(N mod
 * n_workers).jsonl and removed, so every settlement a previous instance
 * left in dir is replayed. Returns -1 with err on an I/O error. */
int journal_adopt(const char *dir, int n_workers, char *err, size_t errlen) MUST_CHECK;

/* Appends s as one line with one write(2) (O_APPEND): cheap enough for the
 * loop, and a crash never leaves half a line in the middle of the file.
 * Returns -1 (and logs) when the line cannot be written: a tenant or request
 * id budget_settle would refuse, the journal full, or a write error. */
int journal_append(struct journal *j, const struct settle *s) MUST_CHECK;

/* Lines on disk not yet acknowledged by Redis (both files). */
size_t journal_pending(const struct journal *j);
/* True from journal_replay until its callback. */
bool journal_replaying(const struct journal *j);

/* settled: lines acknowledged by this replay (duplicates included); err:
 * NULL when every pending line was settled and the files are empty, else why
 * it stopped (the rest stays on disk for the next replay). */
typedef void (*journal_cb)(size_t settled, const char *err, void *arg);

/* Replays every pending line into r with budget_settle, at most
 * JOURNAL_INFLIGHT at a time; stops at the first failure. Returns 0 and then
 * calls cb (may be NULL) exactly once, never from inside this call; each
 * settle has r's deadline, so the replay ends in bounded time. Returns -1
 * with no callback when a replay is already running or r is not connected.
 * Lines that cannot be parsed (a torn last line after a power loss) or
 * settled (bad tenant) are logged and dropped. */
int journal_replay(struct journal *j, struct redis *r, journal_cb cb, void *arg) MUST_CHECK;

/* For the worker's tick: starts a replay (without a callback) when r is
 * connected, lines are pending, none runs and the backoff after the last
 * failed replay (1 s doubling to 60 s) has passed. Logs the outcome. */
void journal_tick(struct journal *j, struct redis *r);

/* Cancels a running replay (no callback runs; the files stay for the next
 * start), closes the files and frees. NULL is fine; may be called from cb.
 * Call it before redis_free (which would fail the replay's commands). */
void journal_close(struct journal *j);

#endif
