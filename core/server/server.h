/* Folder core/server/: the IMAP server itself — the process (main_ringmaild.c,
 * server.c), a connection's session and its command loop (session.c,
 * cmd_cont.c), the commands (cmd_*.c), a session's view of its mailbox and
 * how changes reach it (view.c, view_sync.c, notify.c).  The only folder
 * that knows all the others. */
/* core/server/server.h — the IMAP server: shared state and the session API.
 *
 * One imap_server per process.  Sessions (one per connection) live on the
 * worker that accepted them; the only state they share is the store (which
 * is thread-safe) and the notifier below. */
#ifndef RINGMAIL_CORE_SERVER_H
#define RINGMAIL_CORE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/base/config.h"
#include "core/base/quota.h"
#include "core/imap/imap_args.h"
#include "core/auth/passwd.h"
#include "core/auth/userdb.h"
#include "net/net.h"
#include "store/store.h"

/* The sync pool: threads that wait in fdatasync for the sessions (several,
 * so mailboxes flush in parallel; each flush serves all writers of its
 * log), and how many flushes may wait for a thread. */
#define SYNCPOOL_THREADS 8
#define SYNCPOOL_QUEUE 65536

/* Before login a literal carries at most a user name, a password or an ID
 * value: a few KB, so unauthenticated clients cannot make the server hold
 * APPENDLIMIT-sized buffers (10 of them held 672 MB).  A command before
 * login is bounded by a line plus a couple of such literals. */
#define PREAUTH_MAX_LITERAL (8u * 1024)
#define PREAUTH_MAX_COMMAND_EXTRA (16u * 1024)

/* Listener tags (net_server_tag): which protocol a connection speaks. */
/* LISTEN_SOCKETMAP: Postfix lookup tables (socketmap.c); LISTEN_AUTH_HTTP:
 * nginx's auth_http (auth_http.c); LISTEN_IMAP_PROXY: IMAP after a PROXY
 * protocol header. */
enum { LISTEN_IMAP = 0, LISTEN_LMTP = 1, LISTEN_SOCKETMAP = 2, LISTEN_AUTH_HTTP = 3,
       LISTEN_IMAP_PROXY = 4 };

/* LMTP delivery settings (core/server/lmtp.c). */
typedef struct lmtp_conf {
    bool keep_domain;           /* lmtp_user_domain = keep */
    char delimiters[16];        /* recipient_delimiter */
    unsigned max_rcpt;
    unsigned timeout_ms;
    uint64_t max_size;          /* append_limit: the same bound as APPEND */
    char hostname[256];
} lmtp_conf;

typedef struct imap_server {
    const config *cfg;
    const char *mail_root;
    store_opts sopts;
    userdb *users;      /* the directory: who exists, passwords, quota, routes */
    passwd_db *pw;      /* userdb_passwd(users): SCRAM, the auth cache's generation */
    net_server *net;
    imap_reader_limits limits;
    imap_reader_limits preauth_limits;  /* before login: small literals */
    enum { PLAINTEXT_LOOPBACK, PLAINTEXT_YES, PLAINTEXT_NO } plaintext;
    unsigned login_timeout_ms, idle_timeout_ms, partial_timeout_ms;
    unsigned max_bad;           /* BAD answers in a row before BYE */
    unsigned auth_failure_delay_ms;
    unsigned auth_queue_per_ip; /* password checks admitted per address */
    bool scram_auto;            /* auth_scram = auto */
    unsigned max_conn_ip, max_conn_user, max_cmds_preauth;
    size_t max_output;          /* unsent bytes before we stop reading */
    size_t max_seqset_ranges;
    unsigned search_max_depth, search_max_keys;
    bool log_commands;
    struct abuse *abuse;
    net_tls *tls;               /* NULL: no TLS configured */
    struct authpool *authpool;  /* password checks off the workers' loops */
    struct authpool *syncpool;  /* disk flushes off the workers' loops */
    struct authcache *authcache;
    atomic_uint_fast64_t next_session;
    /* notifier: which connections have which mailbox selected */
    pthread_mutex_t nlock;
    struct watch **watches;     /* hash buckets */
    size_t nbuckets;
    struct notify_ino *ino;     /* changes by other processes (inotify) */
    lmtp_conf lmtp;
    quota_limits quota_default; /* quota_storage, quota_messages */
    bool quota_tempfail;        /* quota_full_tempfail */
    struct control *ctl;        /* the control socket (control.h) */
    struct autocompact *autocompact;    /* NULL: off (autocompact.h) */
} imap_server;

/* The connection callbacks for net (on_open ... on_shutdown): IMAP's, and
 * the ones the server gives net, which hand each connection to IMAP or
 * LMTP by its listener's tag. */
extern const net_conn_ops imap_session_ops;
extern const net_conn_ops server_conn_ops;
/* lmtp.c: the LMTP settings from the configuration; -EINVAL with a line on
 * stderr for a bad one. */
int lmtp_conf_init(imap_server *srv, const config *cfg);

int imap_server_init(imap_server *srv, const config *cfg);
/* Have the auth pool ask the directory for user's record (none cached, or
 * older than auth_cache_ttl) so that the next userdb_lookup_cached on a
 * worker finds it; nobody waits for the answer. */
void server_refresh_user(imap_server *srv, const char *user);
void imap_server_fini(imap_server *srv);

/* notify.c: sessions watching a mailbox get on_wake when it changes. */
int notify_watch(imap_server *srv, const store_mbox *mb, net_conn_id id);
void notify_unwatch(imap_server *srv, const store_mbox *mb, net_conn_id id);
/* Wake every watcher of mb except `self` (pass an id with seq 0 for none). */
void notify_changed(imap_server *srv, const store_mbox *mb, net_conn_id self);
/* Stop the thread that watches for other processes' changes; call after
 * the workers stopped and before net_server_free (it calls net_wake). */
void notify_stop(imap_server *srv);

#endif
