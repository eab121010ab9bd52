/* core/search/sindex.h — the search index: trigram posting lists that narrow
 * BODY and TEXT keys to candidate messages (private to core/search; see
 * sindex.c for the format and why it is exact).
 *
 * One sindex per running program: it reads the mailbox's index segments
 * and, if it could take the index lock, builds new ones from the messages
 * the search walks over that no segment covers (sindex_wants / sindex_doc /
 * sindex_add, then sindex_flush).  A query (sindex_q) answers, per UID,
 * "certainly no match" or "maybe": everything the index does not cover
 * (not built yet, damaged, being built) is "maybe", so the evaluator
 * decides every answer and the index only saves it work. */
#ifndef RINGMAIL_CORE_SEARCH_SINDEX_H
#define RINGMAIL_CORE_SEARCH_SINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sindex sindex;
typedef struct sindex_q sindex_q;

/* The index of the mailbox whose files are in dir.  With build, try to
 * become its builder (one at a time, across processes: a non-blocking
 * flock on dir/sindex.lock).  NULL when out of memory: search without. */
sindex *sindex_open(const char *dir, uint32_t uidvalidity, bool build);
/* Drop it; messages added since the last flush are not kept. */
void sindex_close(sindex *x);

/* Should the message uid be indexed now (a builder, no segment covers
 * it, above every message added so far)? */
bool sindex_wants(const sindex *x, uint32_t uid);
/* Index at most n messages with this handle (0: no limit): a search over
 * a large mailbox that was never indexed costs a bounded multiple of the
 * scan, and later searches index the rest. */
void sindex_set_budget(sindex *x, uint32_t n);
/* Start the message uid (sindex_wants said yes), then add its searchable
 * texts (folded UTF-8, as the evaluator searches them; several calls).
 * On failure the builder stops (the index stays as it was). */
int sindex_doc(sindex *x, uint32_t uid);
int sindex_add(sindex *x, const void *text, size_t len);
/* sindex_add for the message's body text: its words are kept too, so that
 * a search for a word can be answered without reading the message. */
int sindex_add_body(sindex *x, const void *text, size_t len);
/* Write what was added as a segment (nothing if nothing was), at once. */
int sindex_flush(sindex *x);
/* The same in steps: seal what was added and do up to steps steps of the
 * writing (each well under a millisecond; 0: all); sindex_work does more.
 * Both return 1 while work is left, 0 when none is, or -errno.  What is
 * left when the handle closes is done then. */
int sindex_seal(sindex *x, unsigned steps);
int sindex_work(sindex *x, unsigned steps);

/* A query for one needle (folded UTF-8).  NULL when the index cannot
 * narrow it (shorter than a trigram, a NUL byte, no memory). */
sindex_q *sindex_query(sindex *x, const char *needle, size_t len);
void sindex_query_free(sindex_q *q);
/* 0: the message uid certainly does not contain the needle; 1: maybe
 * (evaluate it).  UIDs must be asked in ascending order for speed (any
 * order is correct). */
int sindex_maybe(sindex_q *q, uint32_t uid);
/* The same with certainty both ways: SINDEX_NO the message uid does not
 * contain the needle anywhere; SINDEX_BODY_HAS its body text certainly
 * contains it (the needle is a word of the body: so BODY and TEXT match
 * without reading it); SINDEX_MAYBE evaluate it. */
#define SINDEX_NO 0
#define SINDEX_MAYBE 1
#define SINDEX_BODY_HAS 2
int sindex_state(sindex_q *q, uint32_t uid);
/* The first sequence number from seq on (view uids[0..count), ascending)
 * whose message may contain the needle, or count + 1.  Works through at
 * most *budget more segments (each a few hundred microseconds at most;
 * *budget is counted down), then returns where it got to: the message
 * there is not ruled out yet. */
uint32_t sindex_next(sindex_q *q, const uint32_t *uids, uint32_t count, uint32_t seq,
                     unsigned *budget);

/* Tests: segments of at most n postings (0: the default). */
void sindex_test_max_pairs(size_t n);

/* Statistics for tests and benchmarks. */
typedef struct sindex_stats {
    size_t segments;        /* listed at open */
    size_t bad;             /* found damaged (their messages are scanned) */
    size_t written;         /* segments this handle wrote */
} sindex_stats;
void sindex_get_stats(const sindex *x, sindex_stats *st);

#endif
