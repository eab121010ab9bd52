/* core/server/search_context.h — CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267
 * 4): the live contexts of SEARCH / SORT RETURN (UPDATE) (and their UID
 * forms), and their "* ESEARCH (TAG ..) ADDTO / REMOVEFROM" updates as the
 * mailbox changes.
 *
 * A context keeps its program (frozen at the command: sequence numbers,
 * '*' and $ mean what they meant then, imap_search_freeze) and the UIDs of
 * its matches.  At each view sync (core/server/view_sync.c) only what
 * changed is evaluated again: the messages whose modseq passed the one the
 * context last saw (flag changes, and expunges by their gone entries), and
 * the messages new in the view; each whose match changed goes into one
 * REMOVEFROM or ADDTO per context.  For SEARCH, context positions are 0,
 * which RFC 5267 4.3.3 allows ("the context position MAY be zero"), the
 * sets in mailbox order as it recommends.  For SORT, the context also
 * keeps the sort keys of its messages (read from the cache once, when a
 * message first matches: they never change) and its matches in sort
 * order, and each update is a list of (position, number) pairs that the
 * client applies in turn.
 *
 * Order on the wire (RFC 5267 4.3.3/4.3.4): updates for messages in the
 * view the client knows (flag changes, expunges) go out at the start of the
 * sync, before its EXPUNGEs ("a REMOVEFROM containing message sequence
 * numbers removed as a result of those messages being expunged MUST be
 * sent prior to the expunge notification itself"); updates for new
 * messages after the EXISTS ("MUST be sent after the EXISTS notification
 * itself").  Sequence numbers are those of the view at that moment.  An
 * update goes before the FETCH of the same flag change (Dovecot 2.3 sends it
 * after): RFC 5267 4.3.2 lets ESEARCH updates "be sent at any time" and
 * only anticipates that servers "emit ADDTO when they normally emit the
 * causal FETCH or EXISTS"; tests/integration/compare_esearch.py shows the
 * answers otherwise agree.
 *
 * OLDER/YOUNGER in a context are judged when a message is evaluated again,
 * not as time passes (RFC 5032 2: "the server MAY delay the updates").
 *
 * The evaluation runs in slices within the sync's steps: after a change
 * of a whole big mailbox (past CTX_CHANGES_MAX changed messages, the whole
 * view is evaluated), the worker's other sessions are served in between.
 *
 * At most SEARCH_CONTEXT_MAX contexts per session; beyond, the search is
 * answered with "* NO [NOUPDATE "tag"]" and keeps no context (RFC 5267
 * 4.3.1).  Contexts end with CANCELUPDATE or when the mailbox is closed. */
#ifndef RINGMAIL_CORE_SERVER_SEARCH_CONTEXT_H
#define RINGMAIL_CORE_SERVER_SEARCH_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/search/search.h"
#include "core/search/sort.h"
#include "store/store.h"

typedef struct session session;

#define SEARCH_CONTEXT_MAX 16

/* Is there a live context with this tag (RFC 5267 4.3: UPDATE with a tag
 * in use "SHALL result in the server rejecting the searching command with
 * a BAD response")? */
bool search_ctx_exists(const session *s, const char *tag);

/* Keep a context for a SEARCH with UPDATE that was just answered: *prog
 * (frozen with imap_search_freeze over v) is taken (set to NULL), matches
 * are the result's UIDs (ascending, copied), v the view it ran over,
 * modseq the highest modseq of the snapshot it ran on.  0, -ENOSPC (no room
 * for more contexts: the caller says NOUPDATE) or -ENOMEM. */
int search_ctx_add(session *s, const char *tag, bool uid, imap_search_prog **prog,
                   const imap_search_view *v, const uint32_t *matches, size_t n,
                   uint64_t modseq);

/* The same for SORT / UID SORT RETURN (UPDATE) (CONTEXT=SORT): the keys
 * set (its messages the matches, added in ascending UID order) and order
 * (imap_sort_order's) are taken too. */
int search_ctx_add_sorted(session *s, const char *tag, bool uid, imap_search_prog **prog,
                          const imap_search_view *v, uint64_t modseq,
                          const imap_sort_crit *crit, size_t ncrit, imap_sort_set *set,
                          uint32_t **order);

/* CANCELUPDATE: end the context with this tag.  0 or -ENOENT. */
int search_ctx_cancel(session *s, const char *tag);

/* Drop every context (the mailbox is closed). */
void search_ctx_free_all(session *s);

/* The view sync's hooks (view_sync.c), run as steps of the sync: false
 * when the slice ran out (call again with the same *st), true when done.
 * *st (NULL at first) keeps the progress; free it with
 * search_ctx_sync_free.  new = false: before anything of the sync is
 * written, for the messages of the view that changed; new = true: right
 * after the EXISTS, for the view's messages added since the contexts
 * last looked. */
typedef struct search_ctx_sync search_ctx_sync;
typedef struct sess_slice sess_slice;
bool search_ctx_sync_step(session *s, store_snap *snap, search_ctx_sync **st, bool new,
                          sess_slice *sl);
void search_ctx_sync_free(search_ctx_sync *st);

#endif
