/* core/server/qmemo.h — the last SORT and THREAD answers, kept per process
 * for the same query over the same messages (core/server/qmemo.c). */
#ifndef RINGMAIL_CORE_SERVER_QMEMO_H
#define RINGMAIL_CORE_SERVER_QMEMO_H

#include <stddef.h>
#include <stdint.h>

/* The bytes a memo holds, at most: beyond, answers are not kept. */
#define QMEMO_BUDGET (64u << 20)

typedef struct qmemo_entry qmemo_entry;

/* A query: `scope` names the mailbox (its directory and UIDVALIDITY) and
 * the question (SORT criteria or THREAD algorithm, UID or not), and the
 * messages it is asked of are the search result (seqs[i], uids[i]), n of
 * them.  Everything an answer depends on must be in scope or the messages:
 * what a UID names under one UIDVALIDITY never changes. */
typedef struct qmemo_key {
    const void *scope;
    size_t scope_len;
    const uint32_t *seqs, *uids;
    size_t n;
} qmemo_key;

/* The answer kept for exactly this key, or NULL.  The bytes stay valid
 * until qmemo_release(entry).  Thread-safe. */
qmemo_entry *qmemo_get(const qmemo_key *k, const void **data, size_t *len);
void qmemo_release(qmemo_entry *e);
/* Keep a copy of the answer (the least recently used ones go to make room
 * within QMEMO_BUDGET; one bigger than a quarter of it is not kept).
 * Thread-safe; a failed allocation only means it is not kept. */
void qmemo_put(const qmemo_key *k, const void *data, size_t len);
/* Drop everything (at exit, so that nothing is left allocated). */
void qmemo_clear(void);
/* For tests: entries and bytes held, hits and misses so far. */
void qmemo_stats(size_t *entries, size_t *bytes, uint64_t *hits, uint64_t *misses);

#endif
