/* Folder core/search/: SEARCH — parsing the keys into a program
 * (search.c, search_date.c), running it over a mailbox view (search_eval.c)
 * and Unicode case folding for substring matches (search_fold.c).  It knows
 * no session: the view it runs over is handed in. */
/* core/search/search.h — SEARCH: from command arguments to a program, and running
 * the program over a session's view of a mailbox.
 *
 * Two steps.  imap_search_parse() turns the arguments of SEARCH / UID SEARCH
 * (RFC 3501, RFC 9051 6.4.4) into a program: the optional ESEARCH result
 * options "RETURN (...)" (RFC 4731, with SAVE from RFC 5182), the optional
 * "CHARSET x", and the search keys, including MODSEQ (RFC 7162) and "$"
 * (RFC 5182), OLDER/YOUNGER (RFC 5032).  imap_search_run() evaluates it
 * over the session's view and
 * returns the matching messages in ascending order, as sequence numbers and
 * UIDs; the caller renders SEARCH or ESEARCH (UID forms included).
 * SORT and THREAD parse their criteria with imap_search_parse_keys().
 *
 * Errors (parse): -EINVAL bad syntax (answer BAD; *err says why),
 * IMAP_SEARCH_EBADCHARSET an unsupported CHARSET (answer
 * "NO [BADCHARSET (UTF-8 US-ASCII)]"), -E2BIG a limit was exceeded: nesting
 * depth, number of keys, or ranges in a sequence set (answer "NO [LIMIT]"),
 * -ENOMEM.  Run: -ENOMEM or a store error (answer NO).  After any failure of
 * a SEARCH with SAVE the caller sets $ to empty (RFC 5182 2.1 / RFC 9051
 * 6.4.4.1 say only a BAD leaves it alone).
 *
 * Semantics chosen where the RFCs leave room:
 *  - BEFORE/ON/SINCE compare the INTERNALDATE's calendar date in the zone it
 *    was stored with (the one FETCH INTERNALDATE shows), so "ON d" agrees
 *    with what the client sees; a view may instead fix one zone for all
 *    (date_zone_fixed).  SENTBEFORE/SENTON/SENTSINCE use the calendar date
 *    written in the Date: header (time and zone disregarded); when Date: is
 *    missing or unparseable the INTERNALDATE is used, as RFC 5256 does for
 *    SORT.
 *  - OLDER n / YOUNGER n (RFC 5032) compare the INTERNALDATE itself, to the
 *    second, with the view's time minus n: "For OLDER, messages match if
 *    the INTERNALDATE is less recent than or equal to the target time.
 *    For YOUNGER, messages match if the INTERNALDATE is more recent than
 *    or equal to the target time."  (So one at exactly the target matches
 *    both.)
 *  - String keys are substring matches after decoding (RFC 2047 words in
 *    headers, transfer encodings and charsets of text parts, all to UTF-8)
 *    and simple case folding on both sides: ASCII, Latin-1 Supplement,
 *    Latin Extended-A, Greek, Cyrillic (incl. extensions), ẞ and fullwidth
 *    Latin; other characters compare exactly, bytes that are not UTF-8
 *    compare as bytes.  An empty string matches every message that has the
 *    field (HEADER, FROM, TO, CC, BCC, SUBJECT) and every message for BODY
 *    and TEXT.
 *  - FROM/TO/CC/BCC/SUBJECT and HEADER on a field the cache keeps (Date,
 *    Subject, From, Sender, Reply-To, To, Cc, Bcc, In-Reply-To, Message-ID,
 *    References) read the store cache: first occurrence, no message bytes.
 *    HEADER on any other field scans every occurrence in the raw header.
 *  - BODY searches the decoded text leaf parts (text/...) and the headers
 *    of embedded messages; other leaf types, preambles and epilogues are
 *    skipped (RFC 9051 allows it).  TEXT also searches the top-level header and every MIME
 *    part header.  Matches never span two parts.
 *  - KEYWORD \Seen etc. (a system flag where a keyword is expected, which
 *    some clients send) tests that flag; a keyword the mailbox has never
 *    seen matches nothing (UNKEYWORD: everything).
 *  - A message in the view that another session expunged is still
 *    evaluated while the snapshot has its entry (as FETCH still serves it);
 *    once compaction has dropped it, it matches nothing, not even NOT x.
 *  - Sequence numbers or UIDs outside the view are not errors; they match
 *    nothing.  '*' is the view's last sequence number or last UID.
 *
 * Cost: keys are evaluated per message with short-circuiting, and the
 * children of every AND/OR are ordered cheapest first: flags, UID, sequence
 * numbers, size, INTERNALDATE, MODSEQ, \Recent and $ read only the index
 * entry; envelope keys read the cache; other HEADER keys read the header
 * bytes; BODY/TEXT read and decode the message, unless the search index
 * (imap_search_set_index) rules the message out.  A search on index keys
 * over 10^5 messages touches no message byte.  A body search over a large
 * mailbox is CPU work: imap_search_run_range() lets the caller do it in
 * slices.
 *
 * Threads: a program is used by one thread at a time (running it caches
 * resolved sequence sets in it). */
#ifndef RINGMAIL_CORE_SEARCH_H
#define RINGMAIL_CORE_SEARCH_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/imap/imap_args.h"
#include "store/store.h"

#define IMAP_SEARCH_EBADCHARSET (-EILSEQ)

/* ESEARCH result options (RFC 4731, RFC 5182). */
#define IMAP_SEARCH_RET_MIN   0x01u
#define IMAP_SEARCH_RET_MAX   0x02u
#define IMAP_SEARCH_RET_ALL   0x04u
#define IMAP_SEARCH_RET_COUNT 0x08u
#define IMAP_SEARCH_RET_SAVE  0x10u
#define IMAP_SEARCH_RET_PARTIAL 0x20u   /* RFC 5267 4.4, RFC 9394 */
#define IMAP_SEARCH_RET_UPDATE 0x40u    /* RFC 5267 4.3 (CONTEXT=SEARCH) */
#define IMAP_SEARCH_RET_CONTEXT 0x80u   /* RFC 5267 4.2: a hint, ignored */

/* The RETURN options of SEARCH or SORT.  PARTIAL's range is kept as the
 * client wrote it (both ends > 0: counted from the first result; both < 0:
 * from the last, RFC 9394), since the answer repeats "the original range"
 * (RFC 5267 4.4). */
typedef struct imap_search_ret {
    unsigned opts;              /* IMAP_SEARCH_RET_* */
    int64_t partial_lo, partial_hi;
} imap_search_ret;

typedef struct imap_search_limits {
    unsigned max_depth;     /* nesting of (), NOT, OR (default 32) */
    unsigned max_keys;      /* search keys in the command (default 1000) */
    size_t max_ranges;      /* ranges in one sequence set (default 65536) */
} imap_search_limits;

typedef struct imap_search_prog imap_search_prog;

/* Parse the arguments after "SEARCH" (for UID SEARCH: after "SEARCH" too):
 *   [RETURN (opt ...)] [CHARSET name] key ...
 * lim may be NULL (defaults; so do its zero fields).  On success *out is owned by the caller
 * (imap_search_free); it copies what it needs, so args may go away.  On
 * failure *err (may be NULL) gets a static reason for the BAD text. */
int imap_search_parse(const imap_arg *args, size_t nargs,
                      const imap_search_limits *lim,
                      imap_search_prog **out, const char **err);
/* Keys only (SORT / THREAD, whose charset comes before the keys without the
 * word CHARSET: check it with imap_search_charset_ok). */
int imap_search_parse_keys(const imap_arg *args, size_t nargs,
                           const imap_search_limits *lim,
                           imap_search_prog **out, const char **err);
/* UTF-8 and US-ASCII (any case). */
bool imap_search_charset_ok(const char *name, size_t len);
void imap_search_free(imap_search_prog *p);

/* The list after RETURN: MIN MAX ALL COUNT SAVE (RFC 4731, RFC 5182),
 * PARTIAL range (RFC 5267 4.4 / RFC 9394: "PARTIAL 1:500", "PARTIAL
 * -1:-100"; ALL and PARTIAL exclude each other), UPDATE and CONTEXT (RFC
 * 5267 4.2, 4.3; they are no result options: "RETURN (UPDATE)" asks for
 * no data).  An empty list means ALL.
 * 0 or -EINVAL (*err says why: BAD). */
int imap_search_parse_return(const imap_arg *list, imap_search_ret *out,
                             const char **err);
/* Which of n results (in the answer's order) a PARTIAL range selects: the
 * indexes [*from, *to), empty (from == to) when the range lies beyond the
 * results ("the server returns the results that are in the set"). */
void imap_search_partial_slice(const imap_search_ret *r, size_t n,
                               size_t *from, size_t *to);
/* Write nums[i..end) as a sequence-set in the given order (ESEARCH ALL and
 * PARTIAL; for ESORT the sort order): ascending runs of consecutive
 * numbers become ranges "a:b", and a comma precedes every item but the one
 * at start (RFC 5267 3.2: "servers SHOULD present ranges only when the
 * first seq-number is lower than the second").  Stops after max items
 * (a run counts as one); returns the index where it stopped. */
size_t imap_search_out_set(imap_out *o, const uint32_t *nums, size_t start,
                           size_t i, size_t end, size_t max);

/* Was there a RETURN clause (answer with ESEARCH)?  And its options:
 * RETURN () gives ALL; no RETURN gives 0.  RETURN (SAVE) alone gives SAVE
 * only, which suppresses the ESEARCH response (RFC 5182 / RFC 9051). */
bool imap_search_has_return(const imap_search_prog *p);
unsigned imap_search_return(const imap_search_prog *p);
const imap_search_ret *imap_search_return_opts(const imap_search_prog *p);
/* Does a MODSEQ key occur (append "(MODSEQ n)" / ESEARCH "MODSEQ n" to a
 * non-empty result, RFC 7162 3.1.5/3.1.10)? */
bool imap_search_uses_modseq(const imap_search_prog *p);
/* Does "$" occur (RFC 5182 2.2: such a command must wait for a preceding
 * SEARCH ... SAVE)? */
bool imap_search_uses_saved(const imap_search_prog *p);

/* ---- running ----------------------------------------------------------- */

typedef struct imap_search_view imap_search_view;
/* Fix what the program refers to at the time of the command, for a
 * context that is evaluated again later over other messages (RFC 5267
 * 4.3: "any message sequence numbers used in the search program are
 * evaluated at the time the command is received"): sequence sets become
 * the UIDs they name in v, UID sets get '*' resolved to v's last UID, and
 * "$" becomes the UIDs it holds now.  The program then gives the same
 * answer over v, and over any view that lists a subset of v's messages
 * or messages added since, judges those by UID only.  0 or -ENOMEM (the
 * program is then unusable). */
int imap_search_freeze(imap_search_prog *p, const imap_search_view *v);

struct imap_search_view {
    store_snap *snap;           /* pinned by the caller for the whole run */
    const uint32_t *uids;       /* uids[seq - 1] = UID, ascending */
    uint32_t count;             /* messages in the view */
    uint32_t recent_first;      /* UIDs >= this are \Recent for the session;
                                   0: none is */
    const uint32_t *saved;      /* $ as UIDs, ascending; NULL/0: empty */
    size_t nsaved;
    bool date_zone_fixed;       /* BEFORE/ON/SINCE in date_zone_min instead
                                   of each message's own zone */
    int16_t date_zone_min;      /* minutes east of UTC */
    int64_t now;                /* OLDER/YOUNGER (RFC 5032) count back from
                                   this (seconds since the epoch): the time
                                   of the command; 0: the time of the run */
};

/* Matches in ascending order: seqs[i] is the sequence number in the view,
 * uids[i] its UID; modseqs[i] its MODSEQ (only filled when the program uses
 * MODSEQ, else NULL).  Owned by the caller: imap_search_result_free. */
typedef struct imap_search_result {
    uint32_t *seqs, *uids;
    uint64_t *modseqs;
    size_t n, cap;
} imap_search_result;

/* Run the program over the whole view; the result is replaced. */
int imap_search_run(imap_search_prog *p, const imap_search_view *v,
                    imap_search_result *res);
/* Run over sequence numbers first..last (inclusive, clipped to the view) and
 * APPEND the matches to res: a long search can run in slices (same view and
 * snapshot for all slices, ascending and disjoint). */
int imap_search_run_range(imap_search_prog *p, const imap_search_view *v,
                          uint32_t first, uint32_t last,
                          imap_search_result *res);
void imap_search_result_free(imap_search_result *res);
/* Let imap_search_run_range stop before a message whose bytes are not in
 * memory (store/fault.c) and return -EWOULDBLOCK, with the matches before
 * it appended: the caller brings them in off its thread with the fault
 * imap_search_take_fault gives (its own then), and runs the range again
 * from the sequence number given there.  That message is then read
 * without another look, so a scan always goes on.  Off unless asked for
 * (turn it off before handing the program to code that does not stop):
 * imap_search_run reads on, whatever waiting that costs. */
void imap_search_yield_io(imap_search_prog *p, bool on);
store_fault *imap_search_take_fault(imap_search_prog *p, uint32_t *seq);

/* The search index (core/search/sindex.c): BODY and TEXT keys of three
 * bytes or more are narrowed to the messages whose text has all the
 * needle's trigrams, which are then evaluated as always; runs build it
 * over the messages they walk.  On by default; off, every search scans
 * and nothing is written.  Set once at startup (config search_index). */
void imap_search_set_index(bool on);
/* The first sequence number from seq on that the program may match: the
 * index rules out the messages before it (seq itself when it cannot tell),
 * or v->count + 1.  Bounded work (a few segments of the index); a caller
 * running in slices calls it before each imap_search_run_range, from
 * where it got to, with the same view. */
uint32_t imap_search_skip(imap_search_prog *p, const imap_search_view *v, uint32_t seq);
/* After the last slice: a step (well under a millisecond) of writing what
 * the run indexed.  True while there is more; what is left when the
 * program is freed is done then. */
bool imap_search_finish(imap_search_prog *p);

/* The MODSEQ value to report for this result (RFC 7162 3.1.6, RFC 4731
 * 3.2: for a lone MIN or MAX, that message's; for MIN and MAX alone, the
 * higher of the two; else the highest of all).  0 if the result is empty or
 * the program has no MODSEQ key. */
uint64_t imap_search_result_modseq(const imap_search_prog *p,
                                   const imap_search_result *res);
/* The UIDs that $ holds after a successful SEARCH with SAVE (RFC 5182 2.4:
 * with MIN and/or MAX but no ALL/COUNT, only those messages; else all), in
 * ascending order; with PARTIAL only the messages the range selects.  out
 * is replaced; free with store_uidlist_free. */
int imap_search_saved_uids(const imap_search_prog *p,
                           const imap_search_result *res, store_uidlist *out);

#endif
