/* ringmail-bench --workload deliver: mail arriving by LMTP (RFC 2033) while
 * IMAP clients wait for it in IDLE.
 *
 * --clients LMTP clients connect to --lmtp (a Unix socket path, or
 * host:port), say LHLO once per connection and then deliver message after
 * message on it.  A message is 4-40 KB, generated from --seed (the same
 * seed gives the same messages and recipients): text/plain,
 * multipart/alternative, or multipart/mixed with a base64 attachment (some
 * of them with a nested alternative part), with lines that begin with a dot
 * (so that dot-stuffing is exercised).  It goes to 1..--max-rcpts (5)
 * distinct users of the bench's user set, as RCPT TO:<user@--rcpt-domain>.
 *
 * A transaction is two writes.  RFC 2920 section 3.1 lets MAIL, the RCPTs
 * and DATA go in one: "The actual transfer of message content is explicitly
 * allowed to be the first 'command' in a group", and DATA "can only appear
 * as the last command in a group", so the content follows the 354.  Every
 * reply is checked in order: 250 for MAIL, 250 for each RCPT, 354 for
 * DATA, then (RFC 2033 section 4.2) one 250 per recipient after the
 * content.  Anything else is a bad reply: counted, the connection dropped
 * and opened again.
 *
 * The watchers (--watchers per user, 1 by default) are IMAP sessions (the
 * client logic of ringmail_bench_conn.c: LOGIN, SELECT INBOX, IDLE).  The
 * deliveries start once every watcher idles.  For each user the k-th
 * recipient 250 (in the order the bench received them, stamped with the
 * time of the LAST 250 of its transaction: the delivery is done) is matched
 * with the k-th message the watchers announce by EXISTS (the first watcher
 * to see it stamps it): a match by count, which is exact when one message
 * at a time goes to a user and otherwise pairs deliveries that finished
 * close together.  An EXISTS seen before its 250 (the server announced the
 * copy before the bench read the reply) counts as 0 ms and as "early".
 * As the server may announce a recipient's copy before it has stored the
 * next recipient's, "early" is common with several recipients; the time
 * from the transaction's first write to the EXISTS is reported beside it.
 *
 * One process; the per-user records are shared by the worker threads under
 * one mutex (a few thousand operations a second).
 */
#include "bench/ringmail_bench_conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DL_GREETING, DL_LHLO, DL_READY, DL_ENVELOPE, DL_CONTENT };

#define MAX_RCPTS 64
#define MSG_CAP (48 * 1024)          /* 40 KB and the headers; before dot-stuffing */

struct bench_deliver {
    int k;                           /* client index */
    uint64_t rng;
    int phase;
    int nrcpt, rcpt[MAX_RCPTS];
    int expect;                      /* replies of this write still due */
    int got;                         /* replies of this write received */
    int bad;                         /* a reply of this transaction was wrong */
    int inflight;                    /* counted in dl.inflight */
    uint64_t t0;                     /* the envelope's write */
    uint64_t n;                      /* messages this client began */
    char *msg;                       /* MSG_CAP */
    size_t msglen;
};

struct dl_user {
    uint64_t *t250, *tstart, *texists;   /* tstart: the transaction's first write */
    size_t n250, nexists, cap250, capstart, capexists;
};

static struct {
    pthread_mutex_t mu;
    struct dl_user *u;
    int nusers;
    _Atomic long inflight;
    _Atomic uint64_t first_ns;       /* the first transaction's write */
    _Atomic int reported;            /* bad replies printed on stderr */
} dl = { .mu = PTHREAD_MUTEX_INITIALIZER };

static uint64_t rnd(struct bench_deliver *d)
{
    uint64_t x = d->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return d->rng = x;
}

static void oom(void)
{
    fprintf(stderr, "ringmail-bench: out of memory\n");
    exit(1);
}

int bench_deliver_init(int nusers)
{
    dl.u = calloc((size_t)nusers, sizeof *dl.u);
    if (!dl.u)
        return -ENOMEM;
    dl.nusers = nusers;
    atomic_store(&dl.inflight, 0);
    atomic_store(&dl.first_ns, 0);
    atomic_store(&dl.reported, 0);
    return 0;
}

void bench_deliver_fini(void)
{
    for (int i = 0; dl.u && i < dl.nusers; i++) {
        free(dl.u[i].t250);
        free(dl.u[i].tstart);
        free(dl.u[i].texists);
    }
    free(dl.u);
    dl.u = NULL;
    dl.nusers = 0;
}

int bench_deliver_attach(struct bench_client *c, int k)
{
    struct bench_deliver *d = calloc(1, sizeof *d);
    if (!d || !(d->msg = malloc(MSG_CAP))) {
        free(d);
        return -ENOMEM;
    }
    d->k = k;
    /* splitmix64 of (seed, client): the same run twice sends the same mail */
    uint64_t z = bench_conn_config()->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    d->rng = (z ^ (z >> 31)) | 1;
    c->dl = d;
    return 0;
}

void bench_deliver_detach(struct bench_client *c)
{
    if (!c->dl)
        return;
    free(c->dl->msg);
    free(c->dl);
    c->dl = NULL;
}

void bench_deliver_reset(struct bench_client *c)
{
    struct bench_deliver *d = c->dl;
    if (d->inflight) {
        atomic_fetch_sub(&dl.inflight, 1);
        d->inflight = 0;
    }
    d->phase = DL_GREETING;
    d->expect = d->got = d->bad = 0;
}

/* ---- the messages ---- */

static const char *const words[] = {
    "the", "meeting", "report", "quarterly", "numbers", "please", "review", "attached",
    "server", "mailbox", "deadline", "project", "update", "thanks", "regards", "budget",
    "schedule", "customer", "release", "notes", "about", "tomorrow", "question", "and",
    "with", "for", "from", "our", "team", "will", "have", "been", "this", "that"
};
#define NWORDS (sizeof words / sizeof words[0])

struct mbuf {
    char *p;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3)))
static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n < b->cap - b->len ? (size_t)n : b->cap - b->len - 1;
}

/* Text lines of words up to about n bytes; one line in 12 begins with a
 * dot (a quoted ellipsis), which the sender must stuff. */
static void mb_text(struct bench_deliver *d, struct mbuf *b, size_t n, int html)
{
    size_t end = b->len + n, room = b->cap - 200;
    if (end > room)
        end = room;
    if (html)
        mb_printf(b, "<html><body><p>\r\n");
    while (b->len < end) {
        size_t line = 0;
        if (rnd(d) % 12 == 0) {
            mb_printf(b, "...");
            line = 3;
        }
        while (line < 66 && b->len < end) {
            const char *wd = words[rnd(d) % NWORDS];
            mb_printf(b, "%s%s", line ? " " : "", wd);
            line += strlen(wd) + 1;
        }
        mb_printf(b, html ? "<br>\r\n" : "\r\n");
    }
    if (html)
        mb_printf(b, "</p></body></html>\r\n");
}

/* n bytes of base64 (lines of 76), of made-up content. */
static void mb_base64(struct bench_deliver *d, struct mbuf *b, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t end = b->len + n, room = b->cap - 200;
    if (end > room)
        end = room;
    while (b->len + 78 <= end) {
        for (int i = 0; i < 76; i++)
            b->p[b->len++] = b64[rnd(d) & 63];
        b->p[b->len++] = '\r';
        b->p[b->len++] = '\n';
    }
}

/* The next message of d into d->msg (not stuffed). */
static void gen_message(struct bench_deliver *d, const struct bench_config *cfg)
{
    struct mbuf b = { d->msg, 0, MSG_CAP };
    size_t target = 4096 + (size_t)(rnd(d) % (36 * 1024));
    unsigned kind = (unsigned)(rnd(d) % 4);
    char date[64], user[128];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    mb_printf(&b, "Received: from mx.example.com by ringmail-bench with LMTP; %s\r\n", date);
    mb_printf(&b, "From: Sender %u <sender%u@example.com>\r\nTo: ", (unsigned)(rnd(d) % 1000),
              (unsigned)(rnd(d) % 1000));
    for (int i = 0; i < d->nrcpt; i++) {
        bench_user_name(cfg, d->rcpt[i], user, sizeof user);
        mb_printf(&b, "%s%s@%s", i ? ",\r\n    " : "", user, cfg->rcpt_domain);
    }
    mb_printf(&b, "\r\nSubject: %s %s %s #%" PRIu64 "\r\nDate: %s\r\n"
              "Message-ID: <%" PRIu64 ".%d.%" PRIu64 "@ringmail-bench>\r\nMIME-Version: 1.0\r\n",
              words[rnd(d) % NWORDS], words[rnd(d) % NWORDS], words[rnd(d) % NWORDS], d->n,
              date, cfg->seed, d->k, d->n);
    size_t body = target > b.len ? target - b.len : 1024;
    switch (kind) {
    case 0:
        mb_printf(&b, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
        mb_text(d, &b, body, 0);
        break;
    case 1:
        mb_printf(&b, "Content-Type: multipart/alternative; boundary=\"=alt%" PRIu64 "\"\r\n\r\n"
                  "--=alt%" PRIu64 "\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
                  d->n, d->n);
        mb_text(d, &b, body * 2 / 5, 0);
        mb_printf(&b, "--=alt%" PRIu64 "\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n",
                  d->n);
        mb_text(d, &b, body * 3 / 5, 1);
        mb_printf(&b, "--=alt%" PRIu64 "--\r\n", d->n);
        break;
    default:
        mb_printf(&b, "Content-Type: multipart/mixed; boundary=\"=mix%" PRIu64 "\"\r\n\r\n"
                  "This is a multi-part message in MIME format.\r\n\r\n--=mix%" PRIu64 "\r\n",
                  d->n, d->n);
        if (kind == 3) {
            mb_printf(&b, "Content-Type: multipart/alternative; boundary=\"=alt%" PRIu64
                      "\"\r\n\r\n--=alt%" PRIu64 "\r\nContent-Type: text/plain; "
                      "charset=us-ascii\r\n\r\n", d->n, d->n);
            mb_text(d, &b, body / 8, 0);
            mb_printf(&b, "--=alt%" PRIu64 "\r\nContent-Type: text/html; charset=us-ascii"
                      "\r\n\r\n", d->n);
            mb_text(d, &b, body / 8, 1);
            mb_printf(&b, "--=alt%" PRIu64 "--\r\n\r\n--=mix%" PRIu64 "\r\n", d->n, d->n);
        } else {
            mb_printf(&b, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
            mb_text(d, &b, body / 5, 0);
            mb_printf(&b, "\r\n--=mix%" PRIu64 "\r\n", d->n);
        }
        mb_printf(&b, "Content-Type: application/pdf; name=\"report-%" PRIu64 ".pdf\"\r\n"
                  "Content-Disposition: attachment; filename=\"report-%" PRIu64 ".pdf\"\r\n"
                  "Content-Transfer-Encoding: base64\r\n\r\n", d->n, d->n);
        mb_base64(d, &b, target > b.len ? target - b.len : 512);
        mb_printf(&b, "--=mix%" PRIu64 "--\r\n", d->n);
        break;
    }
    d->msglen = b.len;
}

/* The content into c's output, dot-stuffed (RFC 5321 section 4.5.2: "If
 * the first character is a period, one additional period is inserted at
 * the beginning of the line"), and the final ".". */
static void put_stuffed(struct bench_client *c, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - p) + 1 : n;
        if (p[i] == '.')
            bench_out_bytes(c, ".", 1);
        bench_out_bytes(c, p + i, e - i);
        i = e;
    }
    bench_out_bytes(c, ".\r\n", 3);
}

/* ---- the transaction ---- */

static void pick_rcpts(struct bench_deliver *d, const struct bench_config *cfg)
{
    int max = cfg->max_rcpts < cfg->nusers ? cfg->max_rcpts : cfg->nusers;
    if (max > MAX_RCPTS)
        max = MAX_RCPTS;
    d->nrcpt = 1 + (int)(rnd(d) % (uint64_t)max);
    for (int i = 0; i < d->nrcpt; i++) {
        int u, dup;
        do {
            u = (int)(rnd(d) % (uint64_t)cfg->nusers);
            dup = 0;
            for (int j = 0; j < i; j++)
                dup |= d->rcpt[j] == u;
        } while (dup);
        d->rcpt[i] = u;
    }
}

static void send_lhlo(struct bench_worker *w, struct bench_client *c)
{
    struct bench_deliver *d = c->dl;
    bench_out_printf(c, "LHLO ringmail-bench\r\n");
    d->phase = DL_LHLO;
    d->expect = 1;
    d->got = 0;
    c->cmd = BC_LHLO;
    c->state = ST_BUSY;
    c->t0 = bench_now_ns();
    bench_conn_flush(w, c);
}

int bench_deliver_next(struct bench_worker *w, struct bench_client *c)
{
    struct bench_deliver *d = c->dl;
    const struct bench_config *cfg = bench_conn_config();
    if (d->phase == DL_LHLO || d->phase == DL_GREETING) {
        send_lhlo(w, c);
        return 0;
    }
    if (!bench_conn_watchers_ready()) {
        c->wake_at = bench_now_ns() + 2000000ull;
        return -1;
    }
    pick_rcpts(d, cfg);
    gen_message(d, cfg);
    d->n++;
    char user[128];
    bench_out_printf(c, "MAIL FROM:<bench-%d@example.com>\r\n", d->k);
    for (int i = 0; i < d->nrcpt; i++) {
        bench_user_name(cfg, d->rcpt[i], user, sizeof user);
        bench_out_printf(c, "RCPT TO:<%s@%s>\r\n", user, cfg->rcpt_domain);
    }
    bench_out_printf(c, "DATA\r\n");
    d->phase = DL_ENVELOPE;
    d->expect = d->nrcpt + 2;
    d->got = 0;
    d->bad = 0;
    d->inflight = 1;
    atomic_fetch_add(&dl.inflight, 1);
    c->cmd = BC_DELIVER;
    c->state = ST_BUSY;
    c->t0 = d->t0 = bench_now_ns();
    uint64_t z = 0;
    atomic_compare_exchange_strong(&dl.first_ns, &z, d->t0);
    bench_conn_flush(w, c);
    return 0;
}

static void grow(uint64_t **a, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap * 2 : 1024;
    while (n < need)
        n *= 2;
    uint64_t *p = realloc(*a, n * sizeof *p);
    if (!p)
        oom();
    *a = p;
    *cap = n;
}

/* Every recipient of d's transaction got its 250 at now. */
static void delivered(struct bench_worker *w, struct bench_client *c, uint64_t now)
{
    struct bench_deliver *d = c->dl;
    struct bench_deliver_stats *s = &w->st->dl;
    bench_hist_add(&s->lat, now - d->t0);
    bench_hist_add(&w->st->hist[BC_DELIVER], now - d->t0);
    s->deliveries++;
    s->rcpts += (uint64_t)d->nrcpt;
    s->bytes += d->msglen;
    pthread_mutex_lock(&dl.mu);
    for (int i = 0; i < d->nrcpt; i++) {
        struct dl_user *u = &dl.u[d->rcpt[i]];
        grow(&u->t250, &u->cap250, u->n250 + 1);
        grow(&u->tstart, &u->capstart, u->n250 + 1);
        u->tstart[u->n250] = d->t0;
        u->t250[u->n250++] = now;
    }
    pthread_mutex_unlock(&dl.mu);
}

void bench_deliver_exists(int uix, long n)
{
    if (!dl.u || uix < 0 || uix >= dl.nusers || n <= 0)
        return;
    uint64_t now = bench_now_ns();
    pthread_mutex_lock(&dl.mu);
    struct dl_user *u = &dl.u[uix];
    if ((size_t)n > u->nexists) {
        grow(&u->texists, &u->capexists, (size_t)n);
        while (u->nexists < (size_t)n)
            u->texists[u->nexists++] = now;
    }
    pthread_mutex_unlock(&dl.mu);
}

long bench_deliver_outstanding(void)
{
    long n = atomic_load(&dl.inflight);
    if (!bench_conn_config()->watchers)
        return n;
    pthread_mutex_lock(&dl.mu);
    for (int i = 0; i < dl.nusers; i++)
        if (dl.u[i].n250 > dl.u[i].nexists)
            n += (long)(dl.u[i].n250 - dl.u[i].nexists);
    pthread_mutex_unlock(&dl.mu);
    return n;
}

void bench_deliver_collect(struct bench_deliver_stats *s, uint64_t stop_ns)
{
    pthread_mutex_lock(&dl.mu);
    for (int i = 0; i < dl.nusers; i++) {
        struct dl_user *u = &dl.u[i];
        size_t m = u->n250 < u->nexists ? u->n250 : u->nexists;
        s->exists_expected += u->n250;
        s->exists_seen += m;
        for (size_t k = 0; k < m; k++) {
            bench_hist_add(&s->start_exists_lat, u->texists[k] > u->tstart[k]
                                                 ? u->texists[k] - u->tstart[k] : 0);
            if (u->texists[k] < u->t250[k]) {
                s->exists_early++;
                bench_hist_add(&s->exists_lat, 0);
            } else {
                bench_hist_add(&s->exists_lat, u->texists[k] - u->t250[k]);
            }
        }
    }
    pthread_mutex_unlock(&dl.mu);
    uint64_t first = atomic_load(&dl.first_ns);
    s->elapsed_s = first && stop_ns > first ? (double)(stop_ns - first) / 1e9 : 0;
}

static void bad_reply(struct bench_worker *w, struct bench_client *c, int want,
                      const char *line, size_t len)
{
    struct bench_deliver *d = c->dl;
    w->st->dl.bad_replies++;
    d->bad = 1;
    if (atomic_fetch_add(&dl.reported, 1) < 5)
        fprintf(stderr, "ringmail-bench: LMTP client %d: expected %d, got \"%.*s\"\n", d->k,
                want, (int)(len > 200 ? 200 : len), line);
}

void bench_deliver_line(struct bench_worker *w, struct bench_client *c, const char *line,
                        size_t len)
{
    struct bench_deliver *d = c->dl;
    if (len < 3 || line[0] < '1' || line[0] > '5') {
        bad_reply(w, c, 0, line, len);
        bench_conn_fail(w, c);
        return;
    }
    if (len > 3 && line[3] == '-')       /* a multi-line reply goes on */
        return;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (c->state == ST_GREETING) {
        if (code != 220) {
            bad_reply(w, c, 220, line, len);
            bench_conn_fail(w, c);
            return;
        }
        bench_conn_greeted(w, c);
        d->phase = DL_LHLO;
        bench_conn_step(w, c);
        return;
    }
    if (c->state != ST_BUSY || d->got >= d->expect) {
        bad_reply(w, c, 0, line, len);  /* a reply nobody asked for */
        bench_conn_fail(w, c);
        return;
    }
    int i = d->got++;
    switch (d->phase) {
    case DL_LHLO:
        if (code != 250) {
            bad_reply(w, c, 250, line, len);
            bench_conn_fail(w, c);
            return;
        }
        bench_hist_add(&w->st->hist[BC_LHLO], bench_now_ns() - c->t0);
        d->phase = DL_READY;
        c->state = ST_READY;
        bench_conn_step(w, c);
        return;
    case DL_ENVELOPE: {
        int want = i == d->expect - 1 ? 354 : 250;
        if (code != want)
            bad_reply(w, c, want, line, len);
        if (d->got < d->expect)
            return;
        if (d->bad) {
            /* RFC 2033: a DATA refused needs nothing more; anything else
             * wrong: the connection is not to be trusted, start again */
            bench_conn_fail(w, c);
            return;
        }
        put_stuffed(c, d->msg, d->msglen);
        d->phase = DL_CONTENT;
        d->expect = d->nrcpt;
        d->got = 0;
        bench_conn_flush(w, c);
        return;
    }
    case DL_CONTENT:
        if (code != 250)
            bad_reply(w, c, 250, line, len);
        if (d->got < d->expect)
            return;
        if (d->bad) {
            bench_conn_fail(w, c);
            return;
        }
        delivered(w, c, bench_now_ns());
        d->inflight = 0;
        atomic_fetch_sub(&dl.inflight, 1);
        d->phase = DL_READY;
        c->state = ST_READY;
        bench_conn_step(w, c);
        return;
    default:
        bad_reply(w, c, 0, line, len);
        bench_conn_fail(w, c);
        return;
    }
}
