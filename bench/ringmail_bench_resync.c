/* ringmail-bench --workload resync: mobile devices coming back.
 *
 * Every user has one writer session and D devices (--devices, 3 by
 * default).  A device holds what a client caches of the INBOX: its
 * UIDVALIDITY, HIGHESTMODSEQ and UID -> flags.  Rounds: the writer changes
 * K messages (--changes, 10 by default; a mix of flag changes, appends and
 * expunges, by UID), then every device reconnects (a new TCP connection,
 * LOGIN) and resyncs, the best way the server's CAPABILITY allows
 * (--resync-mode forces one):
 *
 *   qresync    ENABLE QRESYNC, SELECT INBOX (QRESYNC (uidvalidity modseq)):
 *              the server sends VANISHED (EARLIER) and the changed FETCHes
 *              with the SELECT (RFC 7162 section 3.2.5).
 *   condstore  SELECT INBOX (CONDSTORE), UID FETCH 1:* (FLAGS) (CHANGEDSINCE
 *              modseq) for the changed and new messages (RFC 7162 section
 *              3.1.4.1); CONDSTORE alone says nothing of expunges, so, as
 *              RFC 4549 section 4.3.1 note 3 has it, "UID SEARCH UID
 *              1:<lastseenuid>" lists the survivors (RETURN (ALL) when the
 *              server has ESEARCH, RFC 4731: ranges instead of every UID).
 *              It is skipped, as careful clients do, when EXISTS equals the
 *              messages known plus the new ones (then nothing was expunged).
 *   full       SELECT INBOX, UID FETCH 1:* (FLAGS): the whole INBOX again.
 *
 * A device's first sync (it holds nothing) is a full one, counted apart.
 * After each resync the device's state is compared with the writer's truth
 * (what the writer knows it did, from its own first full listing on); every
 * message that differs is a mismatch.  The device then drops the connection
 * (as a phone going out of coverage, no LOGOUT) and waits for the next
 * round; the writer starts the next round when all its devices are done.
 * A resync's latency runs from the socket's creation to the check; its bytes
 * are all received on that connection (greeting and LOGIN included).
 * RINGMAIL_BENCH_DEBUG=1 in the environment prints each resync that found
 * mismatches (user, device, method) on stderr.
 *
 * A user's clients run on one worker thread (ringmail_bench_conn.c puts
 * them there), so the per-user state here is never shared between threads.
 */
#include "bench/ringmail_bench_conn.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const bench_resync_mode_name[RESYNC_NMODES] = {
    "auto", "qresync", "condstore", "full"
};

/* Flags as a byte per UID; 0: no such message. */
enum { RF_SEEN = 1, RF_FLAGGED = 2, RF_ANSWERED = 4, RF_DELETED = 8, RF_DRAFT = 16,
       RF_OTHER = 32, RF_PRESENT = 0x80 };

struct msgset {
    uint8_t *f;          /* f[uid] */
    uint32_t cap;        /* entries of f */
};

struct rs_user {
    struct msgset truth;
    uint32_t uidvalidity;
    uint32_t maxuid;                 /* highest UID the writer knows of */
    int round;                       /* devices sync while theirs is below */
    int done;                        /* devices done with this round */
    int ndev;
    struct bench_client *writer;
    struct bench_client **dev;
    int attached;
};

enum { PK_NONE, PK_FLAG, PK_APPEND, PK_EXPUNGE1, PK_EXPUNGE2 };

struct bench_resync {
    struct rs_user *u;
    int k;                           /* 0: the writer, else device k */
    uint32_t conn_gen;               /* the connection the fields below are of */
    int selected, enabled, fetched, searched;
    /* what the SELECT said */
    uint32_t sel_uidvalidity;
    uint64_t sel_hms;
    int sel_nomodseq;
    long exists;
    /* capabilities (asked once per device) */
    int caps_known, has_qresync, has_condstore, has_esearch;
    enum bench_resync_mode mode;     /* resolved */
    /* a device's cache */
    struct msgset st, mark;
    int have_state, synced_round;
    uint32_t uidvalidity;
    uint64_t hms;
    uint32_t lastuid;                /* highest UID held when this sync began */
    long newcount;                   /* FETCHes above lastuid in this sync */
    int full;                        /* this sync lists the whole INBOX */
    int need_search;
    enum bench_resync_mode this_mode;
    /* the writer */
    int initial_done, changes_left, pend_kind;
    uint32_t pend_uid;
    uint8_t pend_flags;
    uint64_t rng, appends;
};

static struct rs_user *users;
static int nusers, nattached;

static uint64_t rs_rnd(struct bench_resync *r)
{
    uint64_t x = r->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->rng = x;
}

static void set_ensure(struct msgset *s, uint32_t uid)
{
    if (uid < s->cap)
        return;
    uint32_t cap = s->cap ? s->cap : 1024;
    while (cap <= uid)
        cap *= 2;
    uint8_t *f = realloc(s->f, cap);
    if (!f) {
        fprintf(stderr, "ringmail-bench: out of memory\n");
        exit(1);
    }
    memset(f + s->cap, 0, cap - s->cap);
    s->f = f;
    s->cap = cap;
}

static void set_put(struct msgset *s, uint32_t uid, uint8_t v)
{
    if (!uid)
        return;
    set_ensure(s, uid);
    s->f[uid] = v;
}

static uint8_t set_get(const struct msgset *s, uint32_t uid)
{
    return uid < s->cap ? s->f[uid] : 0;
}

static void set_clear(struct msgset *s)
{
    if (s->f)
        memset(s->f, 0, s->cap);
}

static uint32_t set_max(const struct msgset *s)
{
    for (uint32_t u = s->cap; u-- > 1;)
        if (s->f[u])
            return u;
    return 0;
}

static long set_count(const struct msgset *s, uint32_t hi)
{
    long n = 0;
    for (uint32_t u = 1; u <= hi && u < s->cap; u++)
        n += s->f[u] != 0;
    return n;
}

int bench_resync_attach(struct bench_client *c, int u, int k)
{
    const struct bench_config *cfg = bench_conn_config();
    if (!users) {
        nusers = cfg->nusers;
        users = calloc((size_t)nusers, sizeof *users);
        if (!users)
            return -ENOMEM;
    }
    if (u >= nusers)
        return -EINVAL;
    struct rs_user *us = &users[u];
    if (!us->dev) {
        us->ndev = cfg->devices;
        us->dev = calloc((size_t)cfg->devices, sizeof *us->dev);
        if (!us->dev)
            return -ENOMEM;
        /* round 0 counts as done: the writer's first listing opens round 1,
         * the devices' first syncs */
        us->done = us->ndev;
    }
    struct bench_resync *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->u = us;
    r->k = k;
    r->rng = (bench_now_ns() ^ ((uint64_t)u << 20) ^ (uint64_t)k) * 0x9e3779b97f4a7c15ull | 1;
    r->conn_gen = UINT32_MAX;
    if (k == 0)
        us->writer = c;
    else
        us->dev[k - 1] = c;
    us->attached++;
    nattached++;
    c->rs = r;
    return 0;
}

void bench_resync_detach(struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    if (!r)
        return;
    struct rs_user *us = r->u;
    free(r->st.f);
    free(r->mark.f);
    free(r);
    c->rs = NULL;
    if (--us->attached == 0) {
        free(us->truth.f);
        free(us->dev);
        memset(us, 0, sizeof *us);
    }
    if (--nattached == 0) {
        free(users);
        users = NULL;
    }
}

/* A new connection: forget what the last one did. */
static void conn_fresh(struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    if (r->conn_gen == c->gen)
        return;
    r->conn_gen = c->gen;
    r->selected = r->enabled = r->fetched = r->searched = 0;
    r->need_search = 0;
}

int bench_resync_may_connect(struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    return r->k == 0 || r->synced_round < r->u->round;
}

/* ---- parsing ---- */

static int tok_is(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && !strncasecmp(p, word, n);
}

static uint8_t parse_flags(const char *p, const char *end)
{
    uint8_t f = RF_PRESENT;
    while (p < end && *p != ')') {
        while (p < end && *p == ' ')
            p++;
        const char *t = p;
        while (p < end && *p != ' ' && *p != ')')
            p++;
        size_t n = (size_t)(p - t);
        if (!n)
            continue;
        if (tok_is(t, n, "\\Seen"))
            f |= RF_SEEN;
        else if (tok_is(t, n, "\\Flagged"))
            f |= RF_FLAGGED;
        else if (tok_is(t, n, "\\Answered"))
            f |= RF_ANSWERED;
        else if (tok_is(t, n, "\\Deleted"))
            f |= RF_DELETED;
        else if (tok_is(t, n, "\\Draft"))
            f |= RF_DRAFT;
        else if (!tok_is(t, n, "\\Recent"))   /* session state, not the message's */
            f |= RF_OTHER;
    }
    return f;
}

static uint64_t num(const char **pp, const char *end)
{
    uint64_t v = 0;
    const char *p = *pp;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    *pp = p;
    return v;
}

/* Calls fn for every UID of the sequence set at p (up to a space or end). */
static void uidset_each(const char *p, const char *end, void (*fn)(void *, uint32_t),
                        void *arg)
{
    while (p < end && *p != ' ') {
        uint64_t a = num(&p, end), b = a;
        if (p < end && *p == ':') {
            p++;
            b = num(&p, end);
        }
        if (a > b) {
            uint64_t t = a;
            a = b;
            b = t;
        }
        for (uint64_t u = a ? a : 1; u <= b && u <= UINT32_MAX; u++)
            fn(arg, (uint32_t)u);
        if (p < end && *p == ',')
            p++;
        else
            break;
    }
}

static void vanish_one(void *arg, uint32_t uid)
{
    struct msgset *s = arg;
    if (uid < s->cap)
        s->f[uid] = 0;
}

static void mark_one(void *arg, uint32_t uid)
{
    set_put(arg, uid, 1);
}

static const char *find(const char *p, const char *end, const char *what)
{
    size_t n = strlen(what);
    const char *q = memmem(p, (size_t)(end - p), what, n);
    return q ? q : NULL;
}

/* "* n FETCH (... UID u ... FLAGS (...) ...)": applies the flags to s. */
static void on_fetch(struct bench_resync *r, struct msgset *s, const char *p, const char *end)
{
    const char *lp = memchr(p, '(', (size_t)(end - p));
    if (!lp)
        return;
    uint32_t uid = 0;
    int have_flags = 0;
    uint8_t f = 0;
    for (const char *q = lp + 1; q < end;) {
        const char *t = q;
        while (q < end && *q != ' ' && *q != ')' && *q != '(')
            q++;
        size_t n = (size_t)(q - t);
        if (q < end && *q == ' ')
            q++;
        if (tok_is(t, n, "UID")) {
            uid = (uint32_t)num(&q, end);
        } else if (tok_is(t, n, "FLAGS") && q < end && *q == '(') {
            f = parse_flags(q + 1, end);
            have_flags = 1;
            const char *rp = memchr(q, ')', (size_t)(end - q));
            q = rp ? rp + 1 : end;
        } else if (q < end && *q == '(') {          /* MODSEQ (n) and the like */
            const char *rp = memchr(q, ')', (size_t)(end - q));
            q = rp ? rp + 1 : end;
        } else if (!n) {
            q++;
        } else {                                    /* an atom value */
            while (q < end && *q != ' ' && *q != ')')
                q++;
        }
        while (q < end && *q == ' ')
            q++;
    }
    if (!uid || !have_flags)
        return;
    if (r->k && uid > r->lastuid && !set_get(s, uid))
        r->newcount++;
    set_put(s, uid, f);
}

void bench_resync_untagged(struct bench_client *c, const char *line, size_t len)
{
    struct bench_resync *r = c->rs;
    const char *p = line + 2, *end = line + len;
    conn_fresh(c);
    if (p < end && *p >= '0' && *p <= '9') {
        uint64_t n = num(&p, end);
        if (end - p >= 7 && !strncasecmp(p, " EXISTS", 7)) {
            r->exists = (long)n;
        } else if (end - p >= 7 && !strncasecmp(p, " FETCH ", 7)) {
            if (r->k)
                on_fetch(r, &r->st, p, end);
            else if (c->cmd == BC_UID_FETCH)           /* the writer's first listing */
                on_fetch(r, &r->u->truth, p, end);
        }
        return;
    }
    if (end - p >= 4 && !strncasecmp(p, "OK [", 4)) {
        p += 4;
        if (end - p >= 12 && !strncasecmp(p, "UIDVALIDITY ", 12)) {
            p += 12;
            r->sel_uidvalidity = (uint32_t)num(&p, end);
        } else if (end - p >= 14 && !strncasecmp(p, "HIGHESTMODSEQ ", 14)) {
            p += 14;
            r->sel_hms = num(&p, end);
        } else if (end - p >= 8 && !strncasecmp(p, "NOMODSEQ", 8)) {
            r->sel_nomodseq = 1;
        }
        return;
    }
    if (!r->k)
        return;
    if (end - p >= 9 && !strncasecmp(p, "VANISHED ", 9)) {
        p += 9;
        if (end - p >= 10 && !strncasecmp(p, "(EARLIER) ", 10))
            p += 10;
        uidset_each(p, end, vanish_one, &r->st);
    } else if (end - p >= 11 && !strncasecmp(p, "CAPABILITY ", 11)) {
        for (p += 11; p < end;) {
            const char *t = p;
            while (p < end && *p != ' ')
                p++;
            size_t n = (size_t)(p - t);
            if (tok_is(t, n, "QRESYNC"))
                r->has_qresync = 1;
            else if (tok_is(t, n, "CONDSTORE"))
                r->has_condstore = 1;
            else if (tok_is(t, n, "ESEARCH"))
                r->has_esearch = 1;
            while (p < end && *p == ' ')
                p++;
        }
    } else if (end - p >= 7 && !strncasecmp(p, "SEARCH", 6) && (p[6] == ' ')) {
        for (p += 7; p < end;) {
            uint32_t u = (uint32_t)num(&p, end);
            if (u)
                set_put(&r->mark, u, 1);
            while (p < end && (*p < '0' || *p > '9'))
                p++;
        }
    } else if (end - p >= 8 && !strncasecmp(p, "ESEARCH ", 8)) {
        const char *a = find(p, end, " ALL ");
        if (a)
            uidset_each(a + 5, end, mark_one, &r->mark);
    }
}

/* ---- the writer ---- */

static uint32_t pick_present(struct bench_resync *r)
{
    struct rs_user *u = r->u;
    if (!u->maxuid)
        return 0;
    for (int i = 0; i < 64; i++) {
        uint32_t uid = 1 + (uint32_t)(rs_rnd(r) % u->maxuid);
        if (set_get(&u->truth, uid))
            return uid;
    }
    for (uint32_t uid = 1; uid <= u->maxuid; uid++)
        if (set_get(&u->truth, uid))
            return uid;
    return 0;
}

static const char *flag_name(uint8_t bit)
{
    return bit == RF_SEEN ? "\\Seen" : bit == RF_FLAGGED ? "\\Flagged" : "\\Answered";
}

/* The next change of the round: 3 in 5 flag changes, 1 append, 1 expunge. */
static int writer_change(struct bench_resync *r)
{
    struct rs_user *u = r->u;
    unsigned kind = (unsigned)(rs_rnd(r) % 5);
    long have = set_count(&u->truth, u->maxuid);
    if (kind == 3 || have < 2) {
        r->pend_kind = PK_APPEND;
        static const uint8_t fl[] = { 0, RF_SEEN, RF_FLAGGED, RF_SEEN | RF_ANSWERED };
        r->pend_flags = RF_PRESENT | fl[rs_rnd(r) % 4];
        return BC_APPEND;
    }
    r->pend_uid = pick_present(r);
    if (kind == 4) {
        r->pend_kind = PK_EXPUNGE1;
        return BC_UID_STORE;
    }
    static const uint8_t bits[] = { RF_SEEN, RF_FLAGGED, RF_ANSWERED };
    uint8_t bit = bits[rs_rnd(r) % 3];
    r->pend_kind = PK_FLAG;
    r->pend_flags = set_get(&u->truth, r->pend_uid) ^ bit;
    return BC_UID_STORE;
}

static void wake(struct bench_worker *w, struct bench_client *c)
{
    if (c->state == ST_WAIT) {
        c->wake_at = 0;
        bench_conn_step(w, c);
    }
}

static int writer_next(struct bench_worker *w, struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    struct rs_user *u = r->u;
    if (!r->selected)
        return BC_SELECT;
    if (!r->initial_done)
        return BC_UID_FETCH;
    if (u->done < u->ndev) {
        c->wake_at = UINT64_MAX;       /* the last device wakes it */
        return -1;
    }
    if (r->pend_kind == PK_EXPUNGE2)
        return BC_UID_EXPUNGE;
    if (r->changes_left > 0)
        return writer_change(r);
    /* the round's changes are made (none before round 1): the devices go */
    u->round++;
    u->done = 0;
    w->st->rs.rounds++;
    r->changes_left = bench_conn_config()->changes;
    c->wake_at = UINT64_MAX;
    for (int i = 0; i < u->ndev; i++)
        wake(w, u->dev[i]);
    return -1;
}

/* ---- a device ---- */

static void device_finish(struct bench_worker *w, struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    struct rs_user *u = r->u;
    struct bench_resync_stats *s = &w->st->rs;
    uint32_t hi = u->truth.cap > r->st.cap ? u->truth.cap : r->st.cap;
    uint64_t mism = 0;
    for (uint32_t uid = 1; uid < hi; uid++)
        mism += set_get(&r->st, uid) != set_get(&u->truth, uid);
    if (r->sel_uidvalidity != u->uidvalidity)
        mism++;
    s->mismatches += mism;
    if (mism && getenv("RINGMAIL_BENCH_DEBUG"))
        fprintf(stderr, "resync: user %d device %d: %" PRIu64 " mismatches (%s)\n",
                c->user + 1, r->k, mism, bench_resync_mode_name[r->this_mode]);
    if (r->have_state) {
        s->resyncs++;
        s->bytes += c->rxbytes;
        s->by_mode[r->this_mode]++;
        bench_hist_add(&s->lat, bench_now_ns() - c->conn_t0);
    } else {
        s->initial++;
        s->initial_bytes += c->rxbytes;
    }
    r->have_state = 1;
    r->uidvalidity = r->sel_uidvalidity;
    r->hms = r->sel_nomodseq ? 0 : r->sel_hms;
    r->synced_round = u->round;
    bench_conn_close(w, c, 0);
    if (++u->done == u->ndev)
        wake(w, u->writer);
}

static int device_next(struct bench_worker *w, struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    if (!r->caps_known)
        return BC_CAPABILITY;
    if (r->mode == RESYNC_QRESYNC && !r->enabled)
        return BC_ENABLE;
    if (!r->selected)
        return BC_SELECT;
    if (r->full || r->this_mode == RESYNC_CONDSTORE) {
        if (!r->fetched)
            return BC_UID_FETCH;
        if (r->need_search && !r->searched)
            return BC_UID_SEARCH;
    }
    device_finish(w, c);
    return -1;
}

int bench_resync_next(struct bench_worker *w, struct bench_client *c)
{
    conn_fresh(c);
    if (!c->authed)
        return BC_LOGIN;
    return c->rs->k == 0 ? writer_next(w, c) : device_next(w, c);
}

/* The SELECT of a device: how this sync goes. */
static void device_select(struct bench_client *c)
{
    struct bench_resync *r = c->rs;
    r->lastuid = set_max(&r->st);
    r->newcount = 0;
    r->full = !r->have_state || r->mode == RESYNC_FULL || !r->hms;
    r->this_mode = r->full ? RESYNC_FULL : r->mode;
    if (r->this_mode == RESYNC_QRESYNC) {
        /* No known-UIDs list: the server then takes 1:<UIDNEXT-1> (RFC 7162
         * section 3.2.5.1), so new messages come as FETCHes too. */
        bench_out_printf(c, "SELECT INBOX (QRESYNC (%u %" PRIu64 "))\r\n", r->uidvalidity,
                         r->hms);
    } else if (r->mode == RESYNC_QRESYNC || r->mode == RESYNC_CONDSTORE) {
        bench_out_printf(c, "SELECT INBOX (CONDSTORE)\r\n");
    } else {
        bench_out_printf(c, "SELECT INBOX\r\n");
    }
}

void bench_resync_format(struct bench_worker *w, struct bench_client *c, int cmd)
{
    (void)w;
    struct bench_resync *r = c->rs;
    struct rs_user *u = r->u;
    switch (cmd) {
    case BC_CAPABILITY:
        bench_out_printf(c, "CAPABILITY\r\n");
        break;
    case BC_ENABLE:
        bench_out_printf(c, "ENABLE QRESYNC\r\n");
        break;
    case BC_SELECT:
        r->sel_uidvalidity = 0;
        r->sel_hms = 0;
        r->sel_nomodseq = 0;
        r->exists = -1;
        if (r->k)
            device_select(c);
        else
            bench_out_printf(c, "SELECT INBOX\r\n");
        break;
    case BC_UID_FETCH:
        if (!r->k) {
            set_clear(&u->truth);
            bench_out_printf(c, "UID FETCH 1:* (FLAGS)\r\n");
        } else if (r->full) {
            set_clear(&r->st);
            bench_out_printf(c, "UID FETCH 1:* (FLAGS)\r\n");
        } else {
            bench_out_printf(c, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %" PRIu64 ")\r\n", r->hms);
        }
        break;
    case BC_UID_SEARCH:
        set_clear(&r->mark);
        if (r->has_esearch)
            bench_out_printf(c, "UID SEARCH RETURN (ALL) UID 1:%u\r\n", r->lastuid);
        else
            bench_out_printf(c, "UID SEARCH UID 1:%u\r\n", r->lastuid);
        break;
    case BC_UID_STORE:
        if (r->pend_kind == PK_EXPUNGE1) {
            bench_out_printf(c, "UID STORE %u +FLAGS.SILENT (\\Deleted)\r\n", r->pend_uid);
        } else {
            uint8_t old = set_get(&u->truth, r->pend_uid), bit = old ^ r->pend_flags;
            bench_out_printf(c, "UID STORE %u %cFLAGS.SILENT (%s)\r\n", r->pend_uid,
                             old & bit ? '-' : '+', flag_name(bit));
        }
        break;
    case BC_UID_EXPUNGE:
        bench_out_printf(c, "UID EXPUNGE %u\r\n", r->pend_uid);
        break;
    case BC_APPEND: {
        char msg[512];
        int n = snprintf(msg, sizeof msg,
                         "From: Resync Writer <writer@example.com>\r\n"
                         "To: Device <device@example.org>\r\n"
                         "Subject: change %" PRIu64 " of user %d\r\n"
                         "Message-ID: <%016" PRIx64 ".%" PRIu64 "@resync.ringmail-bench>\r\n"
                         "\r\n"
                         "A message appended between two resyncs.\r\n",
                         r->appends, c->user + 1, rs_rnd(r), r->appends);
        r->appends++;
        uint8_t f = r->pend_flags;
        bench_out_printf(c, "APPEND INBOX (%s%s%s%s%s) {%d+}\r\n",
                         f & RF_SEEN ? "\\Seen" : "",
                         (f & RF_SEEN) && (f & RF_FLAGGED) ? " " : "",
                         f & RF_FLAGGED ? "\\Flagged" : "",
                         (f & (RF_SEEN | RF_FLAGGED)) && (f & RF_ANSWERED) ? " " : "",
                         f & RF_ANSWERED ? "\\Answered" : "", n);
        bench_out_bytes(c, msg, (size_t)n);
        bench_out_printf(c, "\r\n");
        break;
    }
    default:
        bench_out_printf(c, "NOOP\r\n");
        break;
    }
}

static void resolve_mode(struct bench_resync *r)
{
    enum bench_resync_mode m = bench_conn_config()->resync_mode;
    if (m == RESYNC_AUTO)
        m = r->has_qresync ? RESYNC_QRESYNC : r->has_condstore ? RESYNC_CONDSTORE
          : RESYNC_FULL;
    r->mode = m;
}

int bench_resync_tagged(struct bench_worker *w, struct bench_client *c, int cmd, int ok,
                        const char *resp, size_t len)
{
    struct bench_resync *r = c->rs;
    struct rs_user *u = r->u;
    conn_fresh(c);
    if (!ok) {
        /* the error is counted; a change that failed is not in the truth */
        if (!r->k)
            r->pend_kind = PK_NONE;
        bench_conn_close(w, c, 100000000ull);
        return 1;
    }
    switch (cmd) {
    case BC_CAPABILITY:
        r->caps_known = 1;
        resolve_mode(r);
        break;
    case BC_ENABLE:
        r->enabled = 1;
        break;
    case BC_SELECT:
        r->selected = 1;
        if (!r->k) {
            u->uidvalidity = r->sel_uidvalidity;
        } else if (r->have_state && r->sel_uidvalidity != r->uidvalidity) {
            r->full = 1;             /* a new mailbox: everything again */
            r->this_mode = RESYNC_FULL;
        } else if (r->this_mode == RESYNC_CONDSTORE && r->sel_nomodseq) {
            r->full = 1;
            r->this_mode = RESYNC_FULL;
        }
        break;
    case BC_UID_FETCH:
        if (!r->k) {
            r->initial_done = 1;
            u->maxuid = set_max(&u->truth);
        } else {
            r->fetched = 1;
            if (!r->full) {
                long known = set_count(&r->st, r->lastuid);
                /* nothing held: nothing can have been expunged */
                r->need_search = r->lastuid > 0 &&
                                 (r->exists < 0 || known + r->newcount != r->exists);
            }
        }
        break;
    case BC_UID_SEARCH:
        r->searched = 1;
        for (uint32_t uid = 1; uid <= r->lastuid && uid < r->st.cap; uid++)
            if (r->st.f[uid] && !set_get(&r->mark, uid))
                r->st.f[uid] = 0;
        break;
    case BC_UID_STORE:
        if (r->pend_kind == PK_EXPUNGE1) {
            set_put(&u->truth, r->pend_uid, set_get(&u->truth, r->pend_uid) | RF_DELETED);
            r->pend_kind = PK_EXPUNGE2;
        } else if (r->pend_kind == PK_FLAG) {
            set_put(&u->truth, r->pend_uid, r->pend_flags);
            r->pend_kind = PK_NONE;
            r->changes_left--;
            w->st->rs.changes++;
        }
        break;
    case BC_UID_EXPUNGE:
        set_put(&u->truth, r->pend_uid, 0);
        r->pend_kind = PK_NONE;
        r->changes_left--;
        w->st->rs.changes++;
        break;
    case BC_APPEND: {
        /* "OK [APPENDUID uidvalidity uid]" (RFC 4315 section 3) */
        const char *end = resp + len, *a = find(resp, end, "[APPENDUID ");
        if (a && r->pend_kind == PK_APPEND) {
            const char *p = a + 11;
            num(&p, end);
            if (p < end && *p == ' ')
                p++;
            uint32_t uid = (uint32_t)num(&p, end);
            set_put(&u->truth, uid, r->pend_flags);
            if (uid > u->maxuid)
                u->maxuid = uid;
        } else {
            w->st->errors[BC_APPEND]++;   /* the truth cannot follow without UIDPLUS */
        }
        r->pend_kind = PK_NONE;
        r->changes_left--;
        w->st->rs.changes++;
        break;
    }
    default:
        break;
    }
    return 0;
}
