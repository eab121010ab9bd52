/* core/search/search_internal.h — what the SEARCH files share (private to
 * core/search*.c): the program tree, and the text helpers the evaluator
 * uses: case folding (search_fold.c) and dates (search_date.c).  MIME
 * decoding is core/fetch/mime_decode.h's. */
#ifndef RINGMAIL_CORE_SEARCH_INTERNAL_H
#define RINGMAIL_CORE_SEARCH_INTERNAL_H

#include <errno.h>
#include <stdlib.h>

#include "core/search/search.h"
#include "core/search/sindex.h"

typedef enum srch_kind {
    SK_ALL,
    SK_AND,             /* kids, all must match */
    SK_OR,              /* kids, one must match */
    SK_NOT,             /* kids[0] */
    SK_FLAGS,           /* u.flags: every flag in mask set (or, negated
                           by want_set = false, clear) */
    SK_KEYWORD,         /* u.kw */
    SK_RECENT,
    SK_SEQSET,          /* u.set over sequence numbers */
    SK_UIDSET,          /* u.set over UIDs */
    SK_SAVED,           /* $ */
    SK_LARGER,          /* u.num: size > num */
    SK_SMALLER,         /* size < num */
    SK_BEFORE,          /* u.day: INTERNALDATE's day < day */
    SK_ON,
    SK_SINCE,
    SK_SENTBEFORE,      /* Date: header's day */
    SK_SENTON,
    SK_SENTSINCE,
    SK_MODSEQ,          /* modseq >= num */
    SK_OLDER,           /* u.num: INTERNALDATE <= now - num (RFC 5032) */
    SK_YOUNGER,         /* INTERNALDATE >= now - num */
    SK_ENVELOPE,        /* u.str with field = an ENV_* index: cache */
    SK_HEADER,          /* u.str with name: raw header, every occurrence */
    SK_BODY,            /* u.str */
    SK_TEXT,            /* u.str */
    SK_SAVEDBEFORE,     /* u.day: the save date's day (RFC 8514) */
    SK_SAVEDON,
    SK_SAVEDSINCE,
    SK_EMAILID,         /* u.emailid (RFC 8474) */
    SK_THREADID,        /* u.threadid (RFC 8474) */
} srch_kind;

/* Envelope fields, in store_envelope's order. */
enum {
    ENV_DATE, ENV_SUBJECT, ENV_FROM, ENV_SENDER, ENV_REPLY_TO, ENV_TO,
    ENV_CC, ENV_BCC, ENV_IN_REPLY_TO, ENV_MESSAGE_ID, ENV_REFERENCES,
    ENV_COUNT
};

typedef struct srch_node srch_node;
struct srch_node {
    srch_kind kind;
    unsigned cost;          /* evaluation cost class: smaller is cheaper */
    union {
        struct { uint32_t mask; bool want_set; } flags;
        struct {
            char *name;             /* NULL: a system flag (sysflag) */
            uint32_t sysflag;       /* 0 with name NULL: never set */
            bool want_set;
            int idx;                /* name's keyword index in this run's
                                       snapshot, or -1 */
        } kw;
        struct {
            imap_seqset set;        /* as parsed */
            imap_range *res;        /* resolved for star: sorted, merged */
            size_t nres;
            uint32_t star;          /* what res was resolved for */
            bool resolved;
            bool frozen;            /* res is fixed (imap_search_freeze) */
        } set;
        uint64_t num;
        int64_t day;                /* days since 1970-01-01 */
        store_msg_ext emailid;      /* email_uid 0: not an id the store makes */
        uint64_t threadid;          /* 0: not an id the store makes */
        struct {
            char *needle;           /* folded UTF-8, NUL-terminated */
            size_t len;
            char *name;             /* SK_HEADER: field name */
            size_t name_len;
            int field;              /* SK_ENVELOPE: ENV_* */
            sindex_q *ixq;          /* SK_BODY/SK_TEXT: the index's
                                       candidates (NULL: scan) */
        } str;
    } u;
    srch_node **kids;
    size_t nkids;
};

struct imap_search_prog {
    srch_node *root;
    bool has_return;
    imap_search_ret ret;
    bool uses_modseq, uses_saved;
    sindex *ix;             /* the search index, opened at the first run */
    sindex_q *gate;         /* a query every match must pass (a key of the
                               root's AND): the walk jumps over what it rules
                               out.  Owned by its node. */
    uint32_t ra_pos;        /* entry position from which the message
                               bytes are to be read ahead again */
    bool ix_tried;
    /* imap_search_yield_io: what is known to be in memory, the fault
     * that stopped the run and where it stopped; the message it was for
     * is read without a look (faulted_seq) */
    bool io_yield;
    store_resident res_body, res_cache;
    store_fault *fault;
    uint32_t fault_seq, faulted_seq;
    unsigned fault_what, faulted_what;  /* STORE_RA_BODY or _CACHE */
};

/* ---- text (search_fold.c, search_date.c) ------------------------------ */

/* Case-fold UTF-8 (see search.h for the coverage) and append to out.
 * Bytes that are not UTF-8 are copied. */
int srch_fold(const char *p, size_t n, store_buf *out);
/* Day number (days since 1970-01-01) of a civil date. */
int64_t srch_days_from_civil(int64_t y, unsigned m, unsigned d);
/* IMAP date "d-Mon-yyyy" -> day number.  Returns 0 or -EINVAL. */
int srch_parse_imap_date(const char *s, size_t n, int64_t *day);
/* The calendar date of an RFC 5322 Date: value, time and zone
 * disregarded.  Returns 0 or -EINVAL. */
int srch_parse_rfc5322_date(const char *s, size_t n, int64_t *day);

/* Room for `need` elements of `size` bytes in the array *arr (capacity
 * *cap, doubled from `first`): one growth rule for core/search's arrays.
 * 0 or -ENOMEM (*arr unchanged). */
static inline int srch_grow(void *arr, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    void *p = realloc(*(void **)arr, c * size);
    if (!p)
        return -ENOMEM;
    *(void **)arr = p;
    *cap = c;
    return 0;
}

#endif
