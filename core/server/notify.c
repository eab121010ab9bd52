/* core/server/notify.c — cross-session change notification.
 *
 * Sessions register the mailbox they have selected; a session that changes
 * a mailbox wakes every other watcher through net_wake, which runs their
 * on_wake on their own worker.  The store object of a mailbox is shared by
 * all sessions of the process, so its address is the key.
 *
 * Changes made by other processes (a second ringmaild, ringmail-admin)
 * arrive through inotify: one inotify fd per process, watched by one small
 * thread, and one watch per mailbox directory that has watchers here.  An
 * event means "some file of that mailbox was written"; the thread then
 * takes the mailbox's writer lock once (store_mbox_refresh: the writer that
 * caused the event has finished and its index update is visible), reads
 * the status and wakes the watchers only if messages/uidnext/highestmodseq
 * moved since the last value this process announced.  That suppresses the
 * echo of this process's own writes, which notify_changed has announced
 * already.  Without inotify (limits, EMFILE) notification stays within the
 * process, as before; a warning is logged once. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/server/server.h"
#include "store/assert.h"

struct watch {
    const store_mbox *mb;
    net_conn_id id;
    struct watch *next;
};

/* One per mailbox that has watchers in this process. */
struct nbox {
    store_mbox *mb;
    int wd;                     /* inotify watch on the directory; -1 none */
    unsigned watchers;
    unsigned busy;              /* the inotify thread uses mb unlocked */
    bool known;                 /* the last announced status below is set */
    uint32_t messages, uidnext;
    uint64_t highestmodseq;
    struct nbox *next;          /* in boxes[], by mb */
    struct nbox *wnext;         /* in wboxes[], by wd, while wd >= 0 */
};

/* The inotify side; allocated with the first watch, guarded by nlock but
 * for fd/efd/thread, which only notify_stop touches after the start. */
struct notify_ino {
    int fd, efd;                /* inotify; eventfd that stops the thread */
    bool thread_running;
    bool failed;                /* inotify unusable: do not try again */
    bool warned;                /* "watch failed" logged once */
    pthread_t thread;
    pthread_cond_t idle;        /* some nbox's busy dropped to 0 */
    struct nbox *wboxes[256];   /* chains by wd */
    struct nbox *boxes[];       /* NBUCKETS chains by mailbox */
};

#define NBUCKETS 4096
#define WATCH_MASK (IN_MODIFY | IN_MOVED_TO | IN_CREATE)

static size_t bucket(const store_mbox *mb)
{
    uintptr_t x = (uintptr_t)mb;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 40) % NBUCKETS;
}

static struct watch **table(imap_server *srv)
{
    if (!srv->watches) {
        srv->watches = calloc(NBUCKETS, sizeof(struct watch *));
        srv->nbuckets = NBUCKETS;
    }
    return srv->watches;
}

/* Under nlock. */
static struct notify_ino *ino_get(imap_server *srv)
{
    if (!srv->ino) {
        struct notify_ino *in = calloc(1, sizeof *in + NBUCKETS * sizeof(struct nbox *));
        if (!in)
            return NULL;
        in->fd = in->efd = -1;
        pthread_cond_init(&in->idle, NULL);
        srv->ino = in;
    }
    return srv->ino;
}

static struct nbox *nbox_find(struct notify_ino *in, const store_mbox *mb)
{
    for (struct nbox *b = in->boxes[bucket(mb)]; b; b = b->next)
        if (b->mb == mb)
            return b;
    return NULL;
}

static struct nbox **wchain(struct notify_ino *in, int wd)
{
    return &in->wboxes[(unsigned)wd % 256];
}

/* Under nlock: take b out of the wd chains and forget its wd. */
static void nbox_drop_wd(struct notify_ino *in, struct nbox *b)
{
    if (b->wd < 0)
        return;
    struct nbox **pp = wchain(in, b->wd);
    while (*pp && *pp != b)
        pp = &(*pp)->wnext;
    if (*pp)
        *pp = b->wnext;
    b->wd = -1;
}

static bool same_id(net_conn_id a, net_conn_id b)
{
    return a.worker == b.worker && a.seq == b.seq;
}

/* Under nlock: the ids of mb's watchers but `self`, into *ids (stack or
 * malloc'd; the caller frees it when it is not `stack`). */
static size_t collect(imap_server *srv, const store_mbox *mb, net_conn_id self,
                      net_conn_id *stack, net_conn_id **ids)
{
    size_t n = 0, cap = 64;
    *ids = stack;
    struct watch **t = srv->watches;
    for (struct watch *w = t ? t[bucket(mb)] : NULL; w; w = w->next) {
        if (w->mb != mb || same_id(w->id, self))
            continue;
        if (n == cap) {
            net_conn_id *nids = malloc(cap * 2 * sizeof *nids);
            if (!nids)
                break;
            memcpy(nids, *ids, n * sizeof *nids);
            if (*ids != stack)
                free(*ids);
            *ids = nids;
            cap *= 2;
        }
        (*ids)[n++] = w->id;
    }
    return n;
}

static void wake_all(imap_server *srv, net_conn_id *ids, size_t n, net_conn_id *stack)
{
    for (size_t i = 0; i < n; i++)
        net_wake(srv->net, ids[i]);
    if (ids != stack)
        free(ids);
}

/* Under nlock: remember st as announced; true if it differs from the last
 * announcement (or none was made). */
static bool nbox_update(struct nbox *b, const store_status *st)
{
    bool moved = !b->known || b->messages != st->messages || b->uidnext != st->uidnext ||
                 b->highestmodseq != st->highestmodseq;
    b->known = true;
    b->messages = st->messages;
    b->uidnext = st->uidnext;
    b->highestmodseq = st->highestmodseq;
    return moved;
}

/* ---- the inotify thread ---------------------------------------------- */

/* One mailbox directory changed: see whether the mailbox did, and wake. */
static void ino_changed(imap_server *srv, int wd)
{
    struct notify_ino *in = srv->ino;
    struct nbox *bs[8];
    size_t nb = 0;
    pthread_mutex_lock(&srv->nlock);
    /* One box per directory, unless two handles share a directory. */
    for (struct nbox *b = *wchain(in, wd); b && nb < 8; b = b->wnext)
        if (b->wd == wd) {
            b->busy++;      /* keeps mb open: its last unwatch waits for us */
            bs[nb++] = b;
        }
    pthread_mutex_unlock(&srv->nlock);
    for (size_t i = 0; i < nb; i++) {
        struct nbox *b = bs[i];
        store_status st;
        int rc = store_mbox_refresh(b->mb);
        if (rc == 0)
            rc = store_mbox_status(b->mb, &st);
        net_conn_id stack[64], *ids = stack;
        size_t n = 0;
        pthread_mutex_lock(&srv->nlock);
        if (rc < 0 || nbox_update(b, &st))
            n = collect(srv, b->mb, (net_conn_id){0, 0}, stack, &ids);
        RM_ASSERT(b->busy > 0);     /* ours, taken above */
        if (--b->busy == 0)
            pthread_cond_broadcast(&in->idle);
        pthread_mutex_unlock(&srv->nlock);
        wake_all(srv, ids, n, stack);
    }
}

static bool interesting(const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return true;
    if (!ev->len)
        return false;
    /* The log is the truth: appends modify it, compaction renames a new
     * one (and then the index) into place.  The cache and index are
     * written along with the log, and checkpoints change nothing a client
     * sees; ignoring them keeps our own refreshes from echoing. */
    if (!strncmp(ev->name, "log.", 4))
        return true;
    return (ev->mask & (IN_MOVED_TO | IN_CREATE)) && !strcmp(ev->name, "index");
}

static void ino_overflow(imap_server *srv)
{
    /* Events were lost: treat every watched directory as changed. */
    struct notify_ino *in = srv->ino;
    int *wds = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&srv->nlock);
    for (size_t bk = 0; bk < 256; bk++)
        for (struct nbox *b = in->wboxes[bk]; b; b = b->wnext) {
            if (n == cap) {
                int *nw = realloc(wds, (cap = cap ? cap * 2 : 256) * sizeof *wds);
                if (!nw)
                    goto done;
                wds = nw;
            }
            wds[n++] = b->wd;
        }
done:
    pthread_mutex_unlock(&srv->nlock);
    log_msg(LOGL_WARN, 0, NULL, "notify: inotify queue overflow: checking %zu mailboxes", n);
    for (size_t i = 0; i < n; i++)
        ino_changed(srv, wds[i]);
    free(wds);
}

static void *ino_thread(void *arg)
{
    imap_server *srv = arg;
    struct notify_ino *in = srv->ino;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        struct pollfd p[2] = {{.fd = in->fd, .events = POLLIN}, {.fd = in->efd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_msg(LOGL_ERROR, 0, NULL, "notify: poll: %s", strerror(errno));
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        ssize_t len = read(in->fd, buf, sizeof buf);
        if (len <= 0) {
            if (len < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            log_msg(LOGL_ERROR, 0, NULL, "notify: read inotify: %s",
                    len < 0 ? strerror(errno) : "EOF");
            return NULL;
        }
        /* One check per directory per batch: a single append writes the
         * cache, the log and maybe the index. */
        int wds[64];
        size_t nwd = 0;
        bool overflow = false;
        for (char *q = buf; q < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)q;
            q += sizeof *ev + ev->len;
            if (ev->mask & IN_IGNORED) {
                /* The directory is gone (mailbox deleted): the wd is dead. */
                pthread_mutex_lock(&srv->nlock);
                for (struct nbox *b = *wchain(in, ev->wd), *n; b; b = n) {
                    n = b->wnext;
                    if (b->wd == ev->wd)
                        nbox_drop_wd(in, b);
                }
                pthread_mutex_unlock(&srv->nlock);
                continue;
            }
            if (!interesting(ev))
                continue;
            if (ev->mask & IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            size_t i = 0;
            while (i < nwd && wds[i] != ev->wd)
                i++;
            if (i == nwd) {
                if (nwd == 64) {
                    overflow = true;
                    continue;
                }
                wds[nwd++] = ev->wd;
            }
        }
        if (overflow) {
            ino_overflow(srv);
            continue;
        }
        for (size_t i = 0; i < nwd; i++)
            ino_changed(srv, wds[i]);
    }
}

/* Under nlock: the inotify fd and its thread, started on first use. */
static int ino_start(imap_server *srv, struct notify_ino *in)
{
    if (in->thread_running)
        return 0;
    if (in->failed)
        return -1;
    in->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    in->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (in->fd < 0 || in->efd < 0 ||
        pthread_create(&in->thread, NULL, ino_thread, srv) != 0) {
        log_msg(LOGL_WARN, 0, NULL,
                "notify: no inotify (%s): changes made by other processes reach "
                "IDLE sessions only at their next command", strerror(errno));
        if (in->fd >= 0)
            close(in->fd);
        if (in->efd >= 0)
            close(in->efd);
        in->fd = in->efd = -1;
        in->failed = true;
        return -1;
    }
    in->thread_running = true;
    return 0;
}

/* ---- the API ----------------------------------------------------------- */

int notify_watch(imap_server *srv, const store_mbox *cmb, net_conn_id id)
{
    /* The session holds mb open; the store API wants it non-const. */
    store_mbox *mb = (store_mbox *)cmb;
    struct watch *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->mb = mb;
    w->id = id;
    /* The baseline against which inotify events are judged.  Read
     * before the lock: it may take the mailbox's locks. */
    store_status st;
    bool have_st = store_mbox_status(mb, &st) == 0;
    pthread_mutex_lock(&srv->nlock);
    struct watch **t = table(srv);
    struct notify_ino *in = ino_get(srv);
    struct nbox *b = in ? nbox_find(in, mb) : NULL;
    if (!b && in && (b = calloc(1, sizeof *b))) {
        b->mb = mb;
        b->wd = -1;
        size_t bk = bucket(mb);
        b->next = in->boxes[bk];
        in->boxes[bk] = b;
        if (have_st)
            nbox_update(b, &st);
        if (ino_start(srv, in) == 0) {
            b->wd = inotify_add_watch(in->fd, store_mbox_dir(mb), WATCH_MASK);
            if (b->wd >= 0) {
                b->wnext = *wchain(in, b->wd);
                *wchain(in, b->wd) = b;
            } else if (!in->warned) {
                in->warned = true;
                log_msg(LOGL_WARN, 0, NULL,
                        "notify: cannot watch %s: %s (see fs.inotify.max_user_watches); "
                        "such mailboxes see other processes' changes only at the next command",
                        store_mbox_dir(mb), strerror(errno));
            }
        }
    }
    if (!t || !b) {
        pthread_mutex_unlock(&srv->nlock);
        free(w);
        return -ENOMEM;
    }
    b->watchers++;
    size_t bk = bucket(mb);
    w->next = t[bk];
    t[bk] = w;
    pthread_mutex_unlock(&srv->nlock);
    return 0;
}

/* Under nlock: drop one watcher of mb; the last one takes the box and its
 * inotify watch away, after the inotify thread is done with mb (it may be
 * closed as soon as this returns). */
static void nbox_unwatch(imap_server *srv, const store_mbox *mb)
{
    struct notify_ino *in = srv->ino;
    struct nbox *b = in ? nbox_find(in, mb) : NULL;
    RM_ASSERT(!b || b->watchers > 0);
    if (!b || --b->watchers)
        return;
    while (b->busy) {
        pthread_cond_wait(&in->idle, &srv->nlock);
        /* The lock was let go: another session may have watched and
         * unwatched mb meanwhile, and that second last watcher, waiting
         * here too, may have woken first and freed b.  Look again. */
        if (nbox_find(in, mb) != b)
            return;
    }
    if (b->watchers)    /* re-watched while we waited */
        return;
    struct nbox **pp = &in->boxes[bucket(mb)];
    while (*pp != b)
        pp = &(*pp)->next;
    *pp = b->next;
    if (b->wd >= 0) {
        int wd = b->wd;
        nbox_drop_wd(in, b);
        /* inotify gives one wd per inode: keep it while another box (a
         * second handle on the same directory) uses it. */
        bool shared = false;
        for (struct nbox *o = *wchain(in, wd); o && !shared; o = o->wnext)
            shared = o->wd == wd;
        if (!shared)
            inotify_rm_watch(in->fd, wd);
    }
    free(b);
}

void notify_unwatch(imap_server *srv, const store_mbox *mb, net_conn_id id)
{
    pthread_mutex_lock(&srv->nlock);
    struct watch **t = table(srv);
    if (t) {
        for (struct watch **pp = &t[bucket(mb)]; *pp; pp = &(*pp)->next) {
            struct watch *w = *pp;
            if (w->mb == mb && same_id(w->id, id)) {
                *pp = w->next;
                free(w);
                nbox_unwatch(srv, mb);
                break;
            }
        }
    }
    pthread_mutex_unlock(&srv->nlock);
}

void notify_changed(imap_server *srv, const store_mbox *cmb, net_conn_id self)
{
    store_mbox *mb = (store_mbox *)cmb;     /* held open by the caller */
    store_status st;
    bool have_st = store_mbox_status(mb, &st) == 0;
    net_conn_id stack[64], *ids;
    pthread_mutex_lock(&srv->nlock);
    struct nbox *b = srv->ino ? nbox_find(srv->ino, mb) : NULL;
    if (b && have_st)
        nbox_update(b, &st);    /* so that our own write's event is quiet */
    size_t n = collect(srv, mb, self, stack, &ids);
    pthread_mutex_unlock(&srv->nlock);
    wake_all(srv, ids, n, stack);
}

void notify_stop(imap_server *srv)
{
    struct notify_ino *in = srv->ino;
    if (!in || !in->thread_running)
        return;
    uint64_t one = 1;
    ssize_t r = write(in->efd, &one, sizeof one);
    (void)r;
    pthread_join(in->thread, NULL);
    in->thread_running = false;
    in->failed = true;      /* no restart while the server winds down */
}

void notify_fini(imap_server *srv);
void notify_fini(imap_server *srv)
{
    notify_stop(srv);
    struct watch **t = srv->watches;
    if (t) {
        for (size_t b = 0; b < srv->nbuckets; b++)
            for (struct watch *w = t[b], *n; w; w = n) {
                n = w->next;
                free(w);
            }
        free(t);
        srv->watches = NULL;
    }
    struct notify_ino *in = srv->ino;
    if (in) {
        for (size_t bk = 0; bk < NBUCKETS; bk++)
            for (struct nbox *b = in->boxes[bk], *n; b; b = n) {
                n = b->next;
                free(b);
            }
        if (in->fd >= 0)
            close(in->fd);
        if (in->efd >= 0)
            close(in->efd);
        pthread_cond_destroy(&in->idle);
        free(in);
        srv->ino = NULL;
    }
}
