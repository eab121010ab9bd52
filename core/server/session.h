/* core/server/session.h — one IMAP connection's state (private to core/).
 *
 * A session lives on one worker; its callbacks never run concurrently, so
 * nothing here is locked.  Commands run one at a time, in the order they
 * arrived; responses are collected in `out` and handed to the connection
 * when the command ends.  A long command (FETCH, SEARCH, LIST, SELECT,
 * and the updates of core/server/view_sync.c) runs in steps (core/server/cmd_cont.c):
 * between them the worker serves the other sessions, and this one reads no
 * further command until it is done. */
#ifndef RINGMAIL_CORE_SESSION_H
#define RINGMAIL_CORE_SESSION_H

#include "core/search/search.h"
#include "core/server/server.h"

typedef enum sess_state {
    ST_NOAUTH,
    ST_AUTH,
    ST_SELECTED,
    ST_LOGOUT,
} sess_state;

typedef enum sess_wait {
    WAIT_NONE,
    WAIT_IDLE,          /* IDLE: waiting for DONE */
    WAIT_AUTH,          /* AUTHENTICATE: waiting for the client's response */
} sess_wait;

typedef struct session session;
/* One step of a long command: do a bounded amount of work (sess_slice_over
 * says when to stop) and return true once the tagged answer is out. */
typedef bool (*sess_step_fn)(session *s, void *state);

struct session {
    imap_server *srv;
    net_conn *conn;
    uint64_t id;
    imap_reader *rd;
    sess_state state;
    sess_wait wait;
    char *wait_tag;             /* tag of IDLE / AUTHENTICATE */
    char *auth_mech;
    bool rev2, utf8;            /* ENABLE IMAP4rev2 / either (UTF-8 names) */
    bool utf8_accept;           /* ENABLE UTF8=ACCEPT itself (RFC 6855) */
    /* a CONDSTORE enabling command was issued (RFC 7162 3.1): every FETCH
     * response with FLAGS, solicited or not, carries MODSEQ from now on,
     * and SELECT/EXAMINE send HIGHESTMODSEQ */
    bool condstore;
    /* ENABLE QRESYNC was answered (RFC 7162 3.2.3): CONDSTORE is on too,
     * expunges are announced as VANISHED, SELECT takes (QRESYNC ...) and
     * UID FETCH takes the VANISHED modifier */
    bool qresync;
    bool loopback;
    bool counted_ip, counted_user;  /* in the abuse accounting */
    bool out_paused;            /* reading stopped: the client does not read */
    bool starttls;              /* STARTTLS answered: drop the rest of the input */
    bool compress;              /* COMPRESS answered: the rest is compressed */
    char ip[64];
    char peer[64];              /* "ip:port" of the client: the connection's,
                                   or a PROXY protocol header's */
    bool proxy_wait;            /* listen_proxy: the header is still to come */
    unsigned bad;               /* BAD answers in a row */
    unsigned ncmds;             /* commands before authentication */
    uint64_t login_deadline;    /* CLOCK_MONOTONIC ms: absolute, from connect */
    bool timer_login;           /* the timer is armed for login_deadline */
    bool full_limits;           /* the reader has the limits of a logged-in user */
    char *delayed;              /* an answer held back (failed login delay) */
    bool pool_busy;             /* a password check or a flush runs on a pool */
    imap_out held;              /* answers waiting for their flush (durable) */
    bool dead;                  /* closed while pool_busy: freed by the job */
    struct sasl *sasl;          /* AUTHENTICATE in progress */
    struct auth_job *auth_job;  /* a password check queued or running */
    uint8_t *stash;             /* bytes received while an answer is held */
    size_t nstash;

    char *user;
    store_user *su;

    /* the selected mailbox and this session's view of it */
    store_mbox *mb;
    char *mbname;               /* as the client named it (UTF-8) */
    bool readonly;
    uint32_t *view;             /* view[seq - 1] = uid */
    uint32_t nview, capview;
    uint32_t recent_first;      /* uids >= this are \Recent for us */
    uint32_t nrecent;           /* \Recent count last announced */
    uint64_t modseq_seen;       /* flag changes up to here were announced */
    /* expunges up to here were announced (the view's snapshot at SELECT,
     * then each sync that was allowed to announce them): an expunge held
     * back (during FETCH, STORE, SEARCH) has a higher modseq */
    uint64_t modseq_expunged;
    /* The keywords (bits of the store's keyword table) the client has been
     * told of by an untagged FLAGS: no FETCH FLAGS shows another one, in
     * any session (RFC 9051 7.3.5, 2.3.2: the FLAGS response names the
     * flags applicable to the mailbox, and a client learns a new keyword
     * from it before meeting it on a message). */
    uint64_t kw_announced;
    bool kw_announced_once;     /* FLAGS was sent since SELECT */
    uint32_t *saved;            /* SEARCHRES $, as UIDs */
    uint32_t nsaved;
    struct search_ctx *ctxs;    /* CONTEXT=SEARCH (search_context.h) */
    unsigned nctxs;
    bool woken;                 /* another session changed the mailbox */

    imap_out out;               /* responses of the current command */

    /* a command that runs in steps (core/server/cmd_cont.c); allocated only
     * while one runs, so an idle session carries two pointers for it */
    struct sess_cont *cont;     /* NULL: none */
    struct sess_cont *cont_then;    /* started by the last step: runs next */
    bool cont_drain;            /* waits for the output queue to drain */
    bool in_yield;              /* a pipeline paused for one loop round
                                   (or for the output to drain) */
    /* metrics (core/server/metrics.h): the (state, TLS) the session is
     * counted under, and the command being timed (index + 1; 0: none) */
    uint8_t m_state, m_cmd;
    uint64_t m_start_ns;
    /* the worker's list of its sessions (control.c: who, kick, stats) */
    session *reg_prev, *reg_next;
    uint64_t opened_ms, last_cmd_ms;    /* CLOCK_MONOTONIC */
    bool kicked;                /* BYE [UNAVAILABLE] once the command ends */
};

/* Responses.  `text` may contain a response code "[...] ". */
void sess_tagged(session *s, const char *tag, const char *status,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void sess_bad(session *s, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sess_untagged(session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hand what is in s->out to the connection. */
void sess_flush(session *s);
/* Send s->out (the answer so far) only after delay_ms, reading nothing
 * meanwhile: the failed-login delay.  Pipelined commands wait. */
void sess_delay_answer(session *s, unsigned delay_ms);
bool sess_plaintext_ok(const session *s);
/* Stop reading commands (keep what arrives) while the pool works for us;
 * sess_resume_input goes on with what was kept. */
void sess_hold_input(session *s);
void sess_resume_input(session *s);
/* The answer of the command just run must wait for these writes to be on
 * disk (fsync = batch/always): flushed on the sync pool, input held. */
void sess_hold_until_durable(session *s, store_defer *d);
/* For writes run on a pool thread (big STORE/EXPUNGE/COPY, FETCH's \Seen):
 * end the deferral begun with store_defer_begin and flush what the writes
 * left pending.  Returns the flush's status (0 or -errno). */
int sess_defer_flush(store_defer *d);
/* On the worker, when such a write ended with flush status sync_rc < 0:
 * log it and say BYE (never acknowledge what may not be on disk).
 * Returns true then; false when the flush succeeded. */
bool sess_flush_failed(session *s, int sync_rc);

/* ---- long commands (core/server/cmd_cont.c) ----
 * A handler that has more to do than one slice allows calls
 * sess_cont_start with its step and state (owned from then on, freed with
 * freefn when the command ends or the connection goes); the step then runs
 * again once the loop has served the other sessions, or, when the client
 * is slow to read, once the output queue has drained below its limit.  The
 * session reads no further command meanwhile, so answers keep their order. */
typedef struct sess_slice {
    uint64_t deadline_ns;       /* CLOCK_MONOTONIC */
    unsigned n;                 /* units of work so far */
} sess_slice;
#define SESS_SLICE_NS 500000u   /* ~0.5 ms of work per step */
/* Changed messages listed at once (store_snap_changed_since_max: a few
 * hundred microseconds of work) by a view sync, a QRESYNC SELECT or a
 * FETCH CHANGEDSINCE; after a change of more, they walk the messages in
 * slices instead of listing every change in one go. */
#define SESS_CHANGES_MAX 16384
void sess_slice_begin(sess_slice *sl);
/* The slice's time is up (the output is not looked at). */
bool sess_slice_expired(const sess_slice *sl);
/* Count one unit of work (a message, a mailbox, a few KB of output) and
 * say whether the step should end now: its time is up, or the output
 * queued for the client is over max_output_buffer.  Never true before the
 * first unit, so every step makes progress. */
bool sess_slice_over(session *s, sess_slice *sl);
/* The same, looking at the clock after every unit: for units that can take
 * a millisecond or more (SEARCH's evaluation of a few bodies, which may
 * also feed the search index), where every eighth would overshoot. */
bool sess_slice_over_each(session *s, sess_slice *sl);
/* From a step of a running command (the step then returns true), the new
 * one follows it: FETCH's closing sync. */
void sess_cont_start(session *s, sess_step_fn step, void (*freefn)(void *), void *state);
/* How a handler runs a long command: the first step at once; if it
 * finished, its state is freed, else the command goes on in steps
 * (sess_cont_start). */
void sess_cont_begin(session *s, sess_step_fn step, void (*freefn)(void *), void *state);
/* Run the next step (on_resume). */
void sess_cont_run(session *s);
/* Schedule the next step: now (after one loop round) or, if the output
 * queue is over its limit, once it drains. */
void sess_cont_next(session *s);
/* From a step that met store pages not in memory (imap_search_yield_io,
 * imap_sort_set_yield_io): f (taken) reads them in on the sync pool, and
 * the step is run again once it has (it then returns false).  0, or
 * -EAGAIN when no job could be made: f was run here, on the worker, and
 * the step goes on at once. */
int sess_cont_fault_in(session *s, store_fault *f);
/* Drop the command in progress (the connection is gone). */
void sess_cont_free(session *s);

/* Free a session whose connection is gone. */
void sess_free(session *s);

/* The capability list for the current state (no leading "* CAPABILITY"). */
void sess_capabilities(session *s, imap_out *o);

/* Mailbox names between client and store: modified UTF-7 for IMAP4rev1
 * clients that did not ENABLE UTF8=ACCEPT, UTF-8 otherwise.  Returns a
 * malloc'd UTF-8 name or NULL (bad encoding). */
char *sess_mbox_from_client(session *s, const char *name);
/* Writes the name as an IMAP string in the client's encoding. */
void sess_mbox_to_client(session *s, imap_out *o, const char *utf8name);

/* The selected mailbox. */
void sess_unselect(session *s);
/* Bring the view up to date and announce what changed: EXISTS, RECENT,
 * FETCH FLAGS and, when allowed, EXPUNGE (core/server/view_sync.c).  There may be
 * a line per message, so the announcement runs in steps (sess_cont_start)
 * when it is long, and whatever must follow it (the command's tagged
 * answer) is handed over as its tail instead of being written after the
 * call.  Called from a step of a long command, it follows that command. */
typedef struct sess_update_req {
    bool allow_expunge;         /* as the command's entry says (cmd_update) */
    /* STORE without .SILENT: FETCH FLAGS of the view's messages in these
     * ranges, " UID n" added for UID STORE (malloc'd, taken over) */
    store_range *echo;
    size_t necho;
    bool echo_uid;
    /* with CONDSTORE: FETCH (MODSEQ (n)) only, no FLAGS (a .SILENT STORE,
     * RFC 7162 3.1.3 and Example 14) */
    bool echo_modseq_only;
    /* UIDs of the echo ranges that get no line (STORE UNCHANGEDSINCE's
     * failures under .SILENT), ascending (malloc'd, taken over) */
    uint32_t *echo_skip;
    size_t nechoskip;
    /* nonzero: the messages with this modseq were written by the command
     * and the client knows their flags (a conditional STORE whose test
     * was no newer than what the client had been told): they are not
     * announced again among the others' changes */
    uint64_t echo_known_modseq;
    /* EXPUNGE, MOVE: UIDs the command removed, ascending (malloc'd, taken
     * over); announced first, as they must be before the tagged answer */
    uint32_t *gone;
    size_t ngone;
    imap_out tail;              /* written last (taken over) */
    /* tail_hms: "[HIGHESTMODSEQ n] " goes into the tail at offset
     * tail_hms_at (after "tag OK "), n being the highest modseq of the
     * snapshot the announcement was made from: everything up to it has
     * been told by then (RFC 7162 3.2.7 and 3.2.9, EXPUNGE and UID
     * EXPUNGE under QRESYNC; RFC 6851 4.4, MOVE) */
    bool tail_hms;
    size_t tail_hms_at;
} sess_update_req;
void sess_update(session *s, sess_update_req *u);
/* uid -> seq in the view (0 if none). */
uint32_t sess_seq_of_uid(const session *s, uint32_t uid);
/* Index of the first view entry with a UID >= uid (nview if none). */
uint32_t sess_view_lower(const session *s, uint32_t uid);
/* The same within the view's first n entries. */
uint32_t sess_view_lower_n(const session *s, uint32_t uid, uint32_t n);
/* Turn a sequence set (uid = false) or UID set into sorted UID ranges of
 * messages in the view.  *r is malloc'd. */
int sess_set_to_uids(session *s, const char *spec, bool uid,
                     store_range **r, size_t *n);
/* The answer to a sequence set sess_set_to_uids refused. */
void sess_set_error(session *s, const char *tag, int rc);
/* The store error as an IMAP answer "NO [CODE] text". */
void sess_store_error(session *s, const char *tag, int rc, const char *what);
/* Tell others a mailbox changed. */
void sess_changed(session *s, store_mbox *mb);
/* FLAGS list of a message: only the keywords announced (kw_announced);
 * call sess_keywords_announce before the line begins. */
void sess_flags(session *s, imap_out *o, const store_snap *snap, uint32_t flags,
                uint64_t keywords, bool recent);
/* Write "* FLAGS (...)" and "* OK [PERMANENTFLAGS (...)]" for the
 * keywords the mailbox has now, and remember them as announced. */
void sess_announce_flags(session *s, imap_out *o, const store_snap *snap);
/* Before a line that shows a message's keywords: if any of them was not
 * announced yet, announce the mailbox's flags first (to o, before the
 * line).  Returns the keywords the line may show (all of them, unless
 * writing the announcement failed). */
uint64_t sess_keywords_announce(session *s, imap_out *o, const store_snap *snap,
                                uint64_t keywords);
/* The mailbox has keywords the client has not been told of. */
bool sess_keywords_new(session *s, const store_snap *snap);

void sess_set_server(imap_server *srv);

/* A CONDSTORE enabling command (RFC 7162 3.1).  The first one with a
 * mailbox selected writes "* OK [HIGHESTMODSEQ n]" to o: "A first
 * CONDSTORE enabling command executed in the session with a mailbox
 * selected MUST cause the server to return HIGHESTMODSEQ".  Returns true
 * if CONDSTORE was off until now. */
bool sess_condstore_enable(session *s, imap_out *o);
/* The HIGHESTMODSEQ a client may take as "told everything up to here":
 * modseq_seen, or with QRESYNC and expunges held back, modseq_expunged. */
uint64_t sess_modseq_told(const session *s);

/* The UID set of a command that names UIDs which may be gone (UID FETCH's
 * VANISHED modifier): sorted, merged ranges of numbers as written, '*'
 * being `star` ("$" as sess_set_to_uids).  *r is malloc'd.  -E2BIG, -EINVAL
 * as sess_set_to_uids. */
int sess_uidset_raw(session *s, const char *spec, uint32_t star, store_range **r,
                    size_t *n);
/* The UIDs of `known` (sorted ranges) at or above `from` expunged with a
 * modseq above `since` in snap (RFC 7162 3.2.5.1, 3.2.6), appended to out
 * as ranges.  0 or -errno. */
int sess_vanished_collect(const store_snap *snap, uint64_t since, const store_range *known,
                          size_t nknown, uint32_t from, store_rangelist *out);
/* One "* VANISHED (EARLIER) ..." line (RFC 7162 3.2.10.1) of the ranges
 * v->r[i..i+max) (fewer at the end); returns the index after the last one
 * written.  A long answer is several such lines, written in slices. */
size_t sess_vanished_write(imap_out *o, const store_rangelist *v, size_t i, size_t max);
#define SESS_VANISHED_LINE 1024     /* ranges per VANISHED (EARLIER) line */

/* ---- commands (core/server/commands.c) ----
 * Each command has an entry in one table that declares what it needs: the
 * states it is valid in, whether it has a UID form, whether it changes the
 * selected mailbox, and which updates it announces before its tagged
 * answer.  The dispatcher (session.c) checks the state and the UID form
 * before the handler runs; the handler then answers through cmd_done /
 * cmd_update, which announce what the entry allows, and a command that
 * writes asks cmd_read_only once its arguments are known to be good. */
typedef struct cmd_def cmd_def;

/* One command being run: all a handler gets.  Valid while the handler
 * runs; a command that goes on in steps copies what it keeps (the tag). */
typedef struct imap_cmd {
    session *s;
    const cmd_def *def;         /* its entry in the table */
    const char *tag;            /* NUL-terminated */
    imap_args *a;               /* the parsed line (imap_arg_astring) */
    imap_arg *args;             /* the arguments after the name */
    size_t nargs;
    bool uid;                   /* the UID form ("UID FETCH ...") */
} imap_cmd;

typedef void (*cmd_fn)(imap_cmd *c);

/* The states a command is valid in (cmd_def.states). */
enum {
    CMD_IN_NOAUTH = 1,
    CMD_IN_AUTH = 2,
    CMD_IN_SELECTED = 4,
    CMD_IN_AUTHED = CMD_IN_AUTH | CMD_IN_SELECTED,
    CMD_IN_ANY = CMD_IN_NOAUTH | CMD_IN_AUTH | CMD_IN_SELECTED,
};

/* The updates of the selected mailbox (EXISTS, RECENT, FETCH FLAGS,
 * EXPUNGE: core/server/view_sync.c) a command announces before its tagged
 * answer. */
typedef enum cmd_updates {
    CMD_UPD_NONE,               /* none: they wait for a command that does */
    /* all but EXPUNGE: RFC 9051 7.5.1 forbids it while answering FETCH,
     * STORE or SEARCH, whose answers carry sequence numbers; the UID forms
     * may send it, but hold it back too: one rule for both forms */
    CMD_UPD_NO_EXPUNGE,
    CMD_UPD_ALL,
} cmd_updates;

struct cmd_def {
    const char *name;
    cmd_fn fn;
    uint8_t states;             /* CMD_IN_* */
    bool uid;                   /* has a UID form */
    /* changes the selected mailbox: refused with NO [READ-ONLY] after
     * EXAMINE (cmd_read_only); COPY, which writes elsewhere, does not */
    bool writes;
    /* the plain form takes no arguments: the dispatcher answers BAD "<name>
     * takes no arguments" before the handler runs (UID EXPUNGE takes a set) */
    bool no_args;
    uint8_t updates;            /* cmd_updates */
};

/* The commands, by their index in cmd_table. */
typedef enum cmd_code {
    CMD_CAPABILITY, CMD_NOOP, CMD_LOGOUT, CMD_ID, CMD_ENABLE, CMD_STARTTLS,
    CMD_LOGIN, CMD_AUTHENTICATE, CMD_NAMESPACE, CMD_SELECT, CMD_EXAMINE,
    CMD_CREATE, CMD_DELETE, CMD_RENAME, CMD_SUBSCRIBE, CMD_UNSUBSCRIBE,
    CMD_LIST, CMD_LSUB, CMD_STATUS, CMD_APPEND, CMD_IDLE, CMD_CHECK, CMD_CLOSE,
    CMD_UNSELECT, CMD_EXPUNGE, CMD_STORE, CMD_COPY, CMD_MOVE, CMD_FETCH,
    CMD_SEARCH, CMD_COMPRESS,
    CMD_GETQUOTA, CMD_GETQUOTAROOT, CMD_SETQUOTA,
    CMD_SORT, CMD_THREAD, CMD_CANCELUPDATE,
    CMD_COUNT
} cmd_code;
extern const cmd_def cmd_table[CMD_COUNT];

/* The entry of a command name (any case; "UID" is not one), or NULL. */
const cmd_def *cmd_find(const char *name);
/* The tagged answer "tag status text" of the command def, after the
 * updates def announces (in steps if they are long: see sess_update). */
void cmd_done(session *s, const cmd_def *def, const char *tag, const char *status,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* sess_update for the command def: EXPUNGE only where def allows it.
 * For a command that announces updates (not CMD_UPD_NONE). */
void cmd_update(session *s, const cmd_def *def, sess_update_req *u);
/* The updates def allows, with no tagged answer (IDLE). */
void cmd_sync(session *s, const cmd_def *def);
/* Asked by a command that may write once its arguments are known to be
 * good (a malformed command is BAD even on a read-only mailbox): if its
 * entry says it writes and the mailbox was opened with EXAMINE, answers
 * NO [READ-ONLY] and returns true. */
bool cmd_read_only(imap_cmd *c);

/* Command handlers by file. */
void cmd_capability(imap_cmd *c);
void cmd_starttls(imap_cmd *c);
void cmd_compress(imap_cmd *c);
void cmd_noop(imap_cmd *c);
void cmd_logout(imap_cmd *c);
void cmd_id(imap_cmd *c);
void cmd_enable(imap_cmd *c);
void cmd_login(imap_cmd *c);
void cmd_authenticate(imap_cmd *c);
void auth_continue(session *s, const uint8_t *line, size_t n);
/* The connection closed: drop its password check if it has not started. */
void auth_cancel(session *s);
/* AUTH=SCRAM-SHA-256(-PLUS) is offered only where it works for every
 * user (see passwd_scram_everyone) and auth_scram allows it. */
bool auth_scram_offered(session *s);
void cmd_namespace(imap_cmd *c);
void cmd_select(imap_cmd *c);
void cmd_examine(imap_cmd *c);
void cmd_create(imap_cmd *c);
void cmd_delete(imap_cmd *c);
void cmd_rename(imap_cmd *c);
void cmd_subscribe(imap_cmd *c);
void cmd_unsubscribe(imap_cmd *c);
void cmd_list(imap_cmd *c);
void cmd_lsub(imap_cmd *c);
void cmd_status(imap_cmd *c);
void cmd_getquota(imap_cmd *c);
void cmd_getquotaroot(imap_cmd *c);
void cmd_setquota(imap_cmd *c);
/* Quota checks before a write (cmd_quota.c): true if the command was
 * answered (NO [OVERQUOTA], or an error) and must write nothing. */
bool quota_refuse_append(session *s, const char *tag, const store_new_msg *m, size_t n);
bool quota_refuse_copy(session *s, const char *tag, const store_range *r, size_t nr, bool move);
void cmd_append(imap_cmd *c);
void cmd_close(imap_cmd *c);
void cmd_unselect(imap_cmd *c);
void cmd_expunge(imap_cmd *c);
void cmd_store(imap_cmd *c);
void cmd_copy(imap_cmd *c);
void cmd_move(imap_cmd *c);
void cmd_fetch(imap_cmd *c);
/* Parse a search program (keys_only: SORT's and THREAD's search keys, the
 * charset taken apart) with the session's limits.  0 and *prog; or -1 with
 * the tagged answer written (NO [BADCHARSET], NO [LIMIT], BAD).  A MODSEQ
 * key enables CONDSTORE. */
int sess_search_program(session *s, const char *tag, const imap_arg *args, size_t nargs,
                        bool keys_only, imap_search_prog **prog);
void cmd_search(imap_cmd *c);
void cmd_sort(imap_cmd *c);
void cmd_thread(imap_cmd *c);
void cmd_cancelupdate(imap_cmd *c);     /* search_context.c */
void cmd_idle(imap_cmd *c);
void idle_line(session *s, const uint8_t *line, size_t n);

#endif
