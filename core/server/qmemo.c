/* core/server/qmemo.c — the last SORT and THREAD answers, kept per process.
 *
 * A webmail client sends the same SORT or THREAD on every view of a folder
 * (Roundcube: THREAD REFERENCES UTF-8 ALL, or SORT (REVERSE DATE) ...), and
 * most views find the folder unchanged.  An answer depends only on which
 * messages the search matched (with their sequence numbers, which are what
 * a non-UID answer lists) and on those messages' header fields, which
 * never change for a UID under one UIDVALIDITY.  So the answer computed
 * for one set is the answer for the same set again, in any session of the
 * process: it is kept here, keyed by the mailbox and the question (the
 * scope) and the exact list of (sequence number, UID) pairs.  A change in
 * the folder that matters changes the list (a new message, an expunge, a
 * flag that a search key looks at), so the next query computes afresh; a
 * kept answer is never stale, only unused, and goes when the memory is
 * needed.
 *
 * Lookup: a cheap hash of the scope and the list's ends and length picks
 * candidates under the lock; the full comparison of the list (a memcmp,
 * 8 bytes per message) runs outside it on a referenced entry.  Memory:
 * at most QMEMO_BUDGET bytes of keys and answers per process, least
 * recently used first out. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/server/qmemo.h"
#include "store/assert.h"

struct qmemo_entry {
    qmemo_entry *prev, *next;   /* LRU list, most recent first */
    atomic_int refs;            /* the list's (while in it) and each reader's */
    uint64_t hash;
    size_t scope_len, n, len, bytes;
    bool seqs_dense;            /* seqs were 1..n: not stored */
    uint8_t *scope;             /* these point into the same allocation */
    uint32_t *seqs, *uids;
    uint8_t *data;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static qmemo_entry *head, *tail;
static size_t held;
static size_t nentries;
static atomic_uint_fast64_t hits, misses;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t key_hash(const qmemo_key *k)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < k->scope_len; i++)
        h = (h ^ ((const uint8_t *)k->scope)[i]) * 0x100000001b3ull;
    h = mix(h, k->n);
    if (k->n) {
        h = mix(h, k->uids[0]);
        h = mix(h, k->uids[k->n - 1]);
        h = mix(h, k->seqs[0]);
        h = mix(h, k->seqs[k->n - 1]);
        h = mix(h, k->uids[k->n / 2]);
    }
    return h;
}

static bool dense(const uint32_t *seqs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (seqs[i] != i + 1)
            return false;
    return true;
}

static bool same_key(const qmemo_entry *e, const qmemo_key *k)
{
    if (e->n != k->n || e->scope_len != k->scope_len ||
        memcmp(e->scope, k->scope, k->scope_len) != 0 ||
        memcmp(e->uids, k->uids, k->n * sizeof *k->uids) != 0)
        return false;
    return e->seqs_dense ? dense(k->seqs, k->n)
                         : memcmp(e->seqs, k->seqs, k->n * sizeof *k->seqs) == 0;
}

static void unlink_entry(qmemo_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        tail = e->prev;
    e->prev = e->next = NULL;
    held -= e->bytes;
    nentries--;
}

static void push_front(qmemo_entry *e)
{
    e->prev = NULL;
    e->next = head;
    if (head)
        head->prev = e;
    head = e;
    if (!tail)
        tail = e;
    held += e->bytes;
    nentries++;
}

void qmemo_release(qmemo_entry *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

qmemo_entry *qmemo_get(const qmemo_key *k, const void **data, size_t *len)
{
    uint64_t h = key_hash(k);
    qmemo_entry *found = NULL;
    pthread_mutex_lock(&lock);
    for (qmemo_entry *e = head; e; e = e->next) {
        if (e->hash == h && e->n == k->n) {
            atomic_fetch_add(&e->refs, 1);
            found = e;
            unlink_entry(e);      /* most recently used: to the front */
            push_front(e);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    /* The list comparison, outside the lock: an entry never changes. */
    if (found && !same_key(found, k)) {
        qmemo_release(found);
        found = NULL;
    }
    atomic_fetch_add(found ? &hits : &misses, 1);
    if (found) {
        *data = found->data;
        *len = found->len;
    }
    return found;
}

void qmemo_put(const qmemo_key *k, const void *data, size_t len)
{
    bool sd = dense(k->seqs, k->n);
    size_t nseq = sd ? 0 : k->n;
    size_t bytes = sizeof(qmemo_entry) + k->scope_len + (k->n + nseq) * sizeof(uint32_t) + len;
    if (bytes > QMEMO_BUDGET / 4)
        return;
    qmemo_entry *e = malloc(bytes);
    if (!e)
        return;
    *e = (qmemo_entry){.hash = key_hash(k), .scope_len = k->scope_len, .n = k->n,
                       .len = len, .bytes = bytes, .seqs_dense = sd};
    atomic_init(&e->refs, 1);
    /* The answer right after the lists, 4-aligned (a SORT answer is an
     * array of uint32_t); the scope, bytes, last. */
    e->uids = (uint32_t *)(e + 1);
    e->seqs = e->uids + k->n;
    e->data = (uint8_t *)(e->seqs + nseq);
    e->scope = e->data + len;
    memcpy(e->uids, k->uids, k->n * sizeof *k->uids);
    memcpy(e->seqs, k->seqs, nseq * sizeof *k->seqs);
    memcpy(e->scope, k->scope, k->scope_len);
    memcpy(e->data, data, len);
    pthread_mutex_lock(&lock);
    /* Two sessions that computed the same answer at once keep it twice
     * until the older copy ages out: comparing lists here would hold the
     * lock for as long as a memcmp of them. */
    while (tail && held + bytes > QMEMO_BUDGET) {
        qmemo_entry *old = tail;
        unlink_entry(old);
        qmemo_release(old);
    }
    push_front(e);
    RM_ASSERT(held <= QMEMO_BUDGET);
    pthread_mutex_unlock(&lock);
}

void qmemo_clear(void)
{
    pthread_mutex_lock(&lock);
    while (head) {
        qmemo_entry *e = head;
        unlink_entry(e);
        qmemo_release(e);
    }
    pthread_mutex_unlock(&lock);
}

void qmemo_stats(size_t *entries, size_t *bytes, uint64_t *h, uint64_t *m)
{
    pthread_mutex_lock(&lock);
    *entries = nentries;
    *bytes = held;
    pthread_mutex_unlock(&lock);
    *h = atomic_load(&hits);
    *m = atomic_load(&misses);
}
