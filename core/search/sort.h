/* core/search/sort.h — SORT and THREAD (RFC 5256, RFC 5957) over the
 * messages a SEARCH program selected.
 *
 * Three steps, so that a caller can run the long ones in slices:
 *   1. imap_search_run_range (search.h) selects the messages;
 *   2. imap_sort_set_add, once per selected message in ascending sequence
 *      order, reads what the criteria need from the store's index entry
 *      and cache blob (never the message bytes) and keeps it prepared for
 *      comparison: base subjects and addresses decoded and case-mapped,
 *      sent dates in UTC seconds, Message-IDs normalized;
 *   3. imap_sort_order (SORT) or imap_thread_render (THREAD) works on the
 *      prepared keys only, in one go: O(n log n) comparisons of integers
 *      and short byte strings.
 *
 * Strings compare by the collation RFC 5256 section 7 asks for,
 * i;unicode-casemap (RFC 5051: imap_sort_casemap); the empty string
 * collates first.  (SEARCH's case folding, srch_fold, is not that
 * collation: it folds to lower case and does not decompose; equality
 * under it is close, the order is not.)  Ties are broken by sequence
 * number (RFC 5256 section 3: "there is an implicit sort criterion of
 * 'sequence number'"). */
#ifndef RINGMAIL_CORE_SORT_H
#define RINGMAIL_CORE_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/imap/imap_args.h"
#include "store/names.h"
#include "store/store.h"

typedef enum imap_sort_key {
    IMAP_SORT_ARRIVAL,
    IMAP_SORT_CC,
    IMAP_SORT_DATE,
    IMAP_SORT_FROM,
    IMAP_SORT_SIZE,
    IMAP_SORT_SUBJECT,
    IMAP_SORT_TO,
    IMAP_SORT_DISPLAYFROM,
    IMAP_SORT_DISPLAYTO,
} imap_sort_key;

#define IMAP_SORT_MAX_CRIT 32

typedef struct imap_sort_crit {
    imap_sort_key key;
    bool reverse;
} imap_sort_crit;

/* The sort-criteria list of SORT: "(" ["REVERSE" SP] sort-key ... ")".
 * Returns the number of criteria, or -EINVAL (*err says why: BAD). */
int imap_sort_parse_criteria(const imap_arg *list, imap_sort_crit *out,
                             size_t max, const char **err);

typedef enum imap_thread_alg {
    IMAP_THREAD_ORDEREDSUBJECT,
    IMAP_THREAD_REFERENCES,
} imap_thread_alg;

/* "ORDEREDSUBJECT" or "REFERENCES" (any case); -EINVAL otherwise. */
int imap_thread_parse_alg(const imap_arg *a, imap_thread_alg *out);

/* ---- base subject (basesubject.c) ------------------------------------ */

/* The base subject of RFC 5256 section 2.1 of a raw Subject: value (RFC
 * 2047 words still encoded), appended to out as UTF-8, not case-mapped.
 * *reply (may be NULL) says whether the extraction removed a subj-refwd, a
 * "(fwd)" subj-trailer or a subj-fwd-hdr and subj-fwd-trl (the test of a
 * reply or forward for THREAD=REFERENCES).  0 or -ENOMEM. */
int imap_base_subject(const char *p, size_t n, store_buf *out, bool *reply);

/* Prepare UTF-8 for comparison by memcmp and length, appended to out:
 * i;unicode-casemap (RFC 5051), whose step 2 maps each code point to its
 * titlecase (UnicodeData.txt's simple mapping) and then by its
 * decomposition property, canonical or compatibility (RFC 5051's own
 * example takes U+01C5's <compat> one), until nothing decomposes (the
 * result is not mapped again); so "Été" compares as "E\u0301TE\u0301",
 * between "E" and "F".  From a table of Unicode 14 (casemap_table.h, tools/
 * gen-casemap.py); Hangul syllables arithmetically.  Comparing the UTF-8
 * bytes is comparing the code points, as RFC 5051 says.  Bytes that are
 * not UTF-8 are copied.  0 or -ENOMEM. */
int imap_sort_casemap(const char *p, size_t n, store_buf *out);

/* ---- keys -------------------------------------------------------------- */

/* What imap_sort_set_add extracts (bits). */
enum {
    IMAP_SORT_NEED_SUBJECT = 1u << 0,   /* base subject, case-mapped */
    IMAP_SORT_NEED_FROM = 1u << 1,
    IMAP_SORT_NEED_TO = 1u << 2,
    IMAP_SORT_NEED_CC = 1u << 3,
    IMAP_SORT_NEED_DFROM = 1u << 4,
    IMAP_SORT_NEED_DTO = 1u << 5,
    IMAP_SORT_NEED_DATE = 1u << 6,
    IMAP_SORT_NEED_IDS = 1u << 7,       /* Message-ID, references */
};

/* The strings kept per message (offsets into the set's pool). */
enum {
    IMAP_SORT_S_SUBJECT, IMAP_SORT_S_FROM, IMAP_SORT_S_TO, IMAP_SORT_S_CC,
    IMAP_SORT_S_DFROM, IMAP_SORT_S_DTO,
    IMAP_SORT_NSTR
};

/* A message without a valid Message-ID (in imap_sort_set.ids). */
#define IMAP_SORT_NO_ID UINT32_MAX

typedef struct imap_sort_msg {
    uint32_t seq, uid;
    uint32_t size;
    bool reply;             /* see imap_base_subject */
    int64_t arrival;        /* INTERNALDATE, seconds since the epoch */
    int64_t date;           /* sent date (RFC 5256 2.2), UTC seconds */
    uint32_t off[IMAP_SORT_NSTR], len[IMAP_SORT_NSTR];
    /* THREAD=REFERENCES: ids[ids_at ..] of the set are the numbers of the
     * base subject (IMAP_SORT_NO_ID if empty), of the normalized
     * Message-ID (IMAP_SORT_NO_ID if none is valid), then of the nrefs
     * references */
    uint32_t ids_at, nrefs;
} imap_sort_msg;

typedef struct imap_sort_set {
    unsigned need;          /* IMAP_SORT_NEED_* */
    imap_sort_msg *m;
    size_t n, cap;
    size_t expect;          /* imap_sort_set_expect */
    uint32_t ra_pos;        /* entry position from which cache blobs are to
                               be read ahead again */
    /* imap_sort_set_yield_io: what is known to be in memory of the
     * cache, the fault that stopped an add, and the entry position it
     * was for (read without a look when tried again) */
    bool io_yield;
    store_resident res_cache;
    store_fault *fault;
    uint32_t fault_pos;
    store_buf pool;
    /* Message-IDs and base subjects as numbers (THREAD=REFERENCES):
     * equal strings, equal numbers, every one below
     * id_bound.  The store's numbers for the generation (the same in every
     * query: store_cursor_memo_name), or, with ids_local, the set's own
     * (when there is no store, or its memo budget is spent). */
    uint32_t *ids;
    size_t nids, capids;
    uint32_t id_bound;
    bool ids_local;
    store_names *local;
    /* scratch */
    store_buf t1, t2;
    void *addr;             /* imap_address_parts */
} imap_sort_set;

/* The NEED bits of a criteria list / of a threading algorithm. */
unsigned imap_sort_need(const imap_sort_crit *c, size_t n);
unsigned imap_thread_need(imap_thread_alg alg);

/* Add the message with this sequence number and UID, read through cur
 * (a cursor on the snapshot the search ran on; UIDs must ascend from call
 * to call).  A message gone from the snapshot or with a damaged cache
 * entry gets empty strings and its INTERNALDATE (or 0) as dates.
 * 0, -ENOMEM, or -E2BIG (the strings passed 4 GiB). */
int imap_sort_set_add(imap_sort_set *s, store_cursor *cur, uint32_t seq,
                      uint32_t uid);
/* Let imap_sort_set_add return -EWOULDBLOCK, having added nothing, when
 * the message's cache blob is not in memory (store/fault.c): the caller
 * brings it in off its thread with the fault imap_sort_set_take_fault
 * gives (its own then) and adds the same message again, which is then
 * read without another look.  Off unless asked for. */
void imap_sort_set_yield_io(imap_sort_set *s, bool on);
store_fault *imap_sort_set_take_fault(imap_sort_set *s);
void imap_sort_set_free(imap_sort_set *s);
/* n messages will be added: their array is allocated now and the strings'
 * pool sized from the first ones, so that a big set is not copied again
 * and again as it grows (each copy of a set of 10^6 would hold the
 * caller's thread for tens of ms).  0 or -ENOMEM. */
int imap_sort_set_expect(imap_sort_set *s, size_t n);
/* Give m (the set's last message, being added) the numbers THREAD=
 * REFERENCES works on: subj its base subject, case-mapped (as the
 * IMAP_SORT_S_SUBJECT key), msgid the normalized Message-ID ("" for
 * none), refs the normalized references, each followed by NUL (RFC 5256's
 * references: References, else In-Reply-To).  Numbered by the store
 * through cur, or by the set's own table (cur NULL, as in tests).  0 or
 * -ENOMEM. */
int imap_sort_set_ids(imap_sort_set *s, imap_sort_msg *m, const store_cursor *cur,
                      const char *subj, size_t subj_len, const char *msgid,
                      size_t msgid_len, const char *refs, size_t refs_len);

/* The set's messages in SORT order: *order (malloc'ed, s->n entries;
 * the caller frees it) gets indexes into s->m.  0 or -ENOMEM. */
int imap_sort_order(const imap_sort_set *s, const imap_sort_crit *c,
                    size_t ncrit, uint32_t **order);

/* Compare the set's messages a and b (indexes into s->m) as
 * imap_sort_order orders them: <0, 0 (a == b only) or >0.  For a caller
 * that keeps an order up to date (a CONTEXT=SORT context inserting new
 * matches).  The implicit criterion compares the entries' seq fields. */
int imap_sort_cmp(const imap_sort_set *s, const imap_sort_crit *c, size_t ncrit,
                  uint32_t a, uint32_t b);

/* The THREAD response's data (what follows "* THREAD", with its leading
 * spaces: " (1 2)(3)"), numbers being UIDs with uid, else sequence
 * numbers, appended to o.  0 or -ENOMEM. */
int imap_thread_render(const imap_sort_set *s, imap_thread_alg alg, bool uid,
                       imap_out *o);

/* ---- helpers, exposed for the tests ----------------------------------- */

/* The sent date of RFC 5256 2.2 of a Date: value in UTC seconds: "If the
 * time zone is invalid, the date and time SHOULD be treated as UTC.  If the
 * time is also invalid, the time SHOULD be treated as 00:00:00."  Returns 0
 * or -EINVAL when there is no valid date (the caller uses INTERNALDATE). */
int imap_sort_parse_date(const char *p, size_t n, int64_t *secs);

#endif
