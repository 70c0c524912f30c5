/* spool.h: an on-disk FIFO of lines for at-least-once delivery: the
 * CloudEvents sink appends every record line here before it tries to send,
 * and moves a cursor past lines only once the receiver took them, so lines
 * survive a restart and a receiver that is down for hours. Segment files
 * (NNNNNNNNNNNNNNNN.jsonl, 8 MiB each) are deleted once read past; the cursor
 * (file "cursor": "SEQ OFFSET") is replaced atomically. Bounded: an append
 * past max_bytes pending is refused. Used by one thread only. */
#ifndef TOLLGATE_SPOOL_H
#define TOLLGATE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

struct spool;

/* Opens (creating) dir, locks it against a second process, drops a partial
 * last line left by a crash, and resumes at the saved cursor. NULL with err. */
struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen) MUST_CHECK;
void spool_close(struct spool *s);

/* Appends len bytes of whole lines and syncs them to disk. 0, or -1 with
 * err when it would pass max_bytes ("spool full") or the disk refused
 * (nothing of data is then kept: a failed write is cut back). */
int spool_append(struct spool *s, const char *data, size_t len, char *err,
                 size_t errlen) MUST_CHECK;

/* Copies whole lines from the cursor, at most max bytes (at least one line
 * if one is pending and fits in max), into buf. Returns the bytes copied (0:
 * nothing pending), or -1 with err on a read error. The cursor does not move. */
long spool_peek(struct spool *s, char *buf, size_t max, char *err, size_t errlen) MUST_CHECK;
/* Moves the cursor past n bytes (a prefix of what spool_peek returned) and
 * saves it. 0, or -1 with err (the cursor then moves in memory only: those
 * lines may be sent again after a restart). */
int spool_ack(struct spool *s, size_t n, char *err, size_t errlen) MUST_CHECK;

/* Bytes appended and not yet acknowledged. */
uint64_t spool_pending(const struct spool *s);

#endif
