/* core/search/sindex.c — the search index: trigram posting lists per
 * mailbox, narrowing BODY and TEXT to candidate messages.
 *
 * Why trigrams.  SEARCH BODY/TEXT is a substring match (search.h): the
 * needle may start and end inside words, so a word index would miss
 * matches or need the whole text anyway.  A trigram index keeps substring
 * semantics exactly: if the needle occurs in a message's text, every run of
 * three consecutive bytes of the needle occurs in it too, so the messages
 * holding all the needle's trigrams are a superset of the matches.  The
 * evaluator then checks each candidate as it always does, so every answer
 * is the scan's answer; the index only skips messages that cannot match.
 * Needles shorter than three bytes (and any with a NUL byte, which the
 * index leaves out) get no narrowing: the scan.
 *
 * What the trigrams are taken from.  Exactly the bytes the evaluator
 * searches: search_eval.c builds the decoded (RFC 2047 words, transfer
 * encodings, charsets to UTF-8), case-folded (srch_fold) text of the body
 * and of the headers, and hands those same buffers to sindex_add; the
 * needle is folded by the same srch_fold.  Trigrams are of bytes of that
 * folded UTF-8, not of characters: a multibyte character spreads over
 * several trigrams, all of which a matching text has too, so no folding
 * beyond the evaluator's is needed and none is allowed (folding more here,
 * e.g. accents, would only add candidates; folding less would lose
 * matches).  Body and header text go into one set per message: BODY gets
 * the candidates of TEXT, a few more to check, one set to store.
 * Trigrams holding a NUL byte are left out (the evaluator separates parts
 * with NUL; an IMAP string has none).
 *
 * Certain matches.  Trigrams only rule messages out: a word that most
 * messages hold leaves most of them as candidates, each decoded and
 * checked (a word in 75 % of 10^6 messages: 2 s).  So a segment also
 * keeps word entries (sindex_words.h): for each word of the body texts
 * (a maximal run of letters, digits and multibyte characters, 3 to 32
 * bytes) that at least 1 in 64 of its messages hold, the list of those
 * messages.  A needle that equals such a word is then certainly in their
 * bodies, because the word is a run of the very bytes the evaluator
 * searches (sindex_state: SINDEX_BODY_HAS), and BODY and TEXT match them
 * without reading them.  Substring semantics are untouched: the list
 * says yes only where memmem would, other needles (pieces of words,
 * several words) get the trigrams alone, and rarer words are left out
 * because their few candidates are cheap to check.  Header text gives no
 * word entries: BODY must not match a word of the headers only.  Words
 * are keyed by a hash above every trigram key, in the same table; the
 * entry holds the word itself, checked on every use, and two words of a
 * segment whose keys collide are both left out.
 *
 * Files, in the mailbox directory beside the store's: `sindex.<lo>.<hi>`,
 * immutable segments, each indexing some messages with UIDs in [lo, hi];
 * `sindex.lock`, flock()ed by the one builder; `sindex-new.*`, a segment
 * being written (renamed into place when complete; a builder removes stale
 * ones).  Segments never overlap; one that does (a crash between a merge's
 * rename and its unlink) is ignored.  The store removes them with the
 * directory.  Layout of a segment (little-endian, as the store's files):
 *
 *   header (64 bytes): "RMSIDX\0\1", u32 version (1, or 2 with word
 *     entries), u32 header size 64,
 *     u32 uidvalidity, u32 lo, u32 hi, u32 ndocs, u32 nterms, u32 docs_len,
 *     u64 post_len, u32 docs_crc, 16 bytes zero, u32 CRC32C of bytes 0..59
 *   docs: the UIDs indexed, ascending, as varint deltas (docs_len bytes)
 *   table: nterms entries of 32 bytes sorted by trigram: u32 trigram
 *     (b0 << 16 | b1 << 8 | b2), u32 count, u64 offset into the postings,
 *     u32 length, u32 CRC32C of the list, u32 the entry's position, u32
 *     CRC32C of the entry's first 28 bytes
 *   postings: per trigram, its messages' UIDs ascending as varint deltas;
 *     per word entry (version 2; keys >= SWORD_KEY_BASE, after every
 *     trigram), a length byte and the word, then the UIDs the same way
 *
 * Trust.  A damaged index must never give a wrong answer, and a wrong
 * answer here is a missing candidate or a word list naming a message
 * that lacks the word.  So: the header's CRC, the file's
 * size against the header's sizes, the docs' CRC and uidvalidity are
 * checked when a segment is first used; every table entry the binary
 * search touches is checked (its CRC includes its position, so entries
 * moved by damage fail too); every posting list is checked before use,
 * and its UIDs must ascend within [lo, hi] and number count.  Anything
 * that fails makes the segment "damaged": its messages are scanned, and a
 * builder removes the file so that the next search rebuilds it.  A
 * message that a segment's range holds but its docs do not (not readable
 * when it was built, or an expunged message another snapshot still shows)
 * is scanned too: only a UID in docs whose text lacks a trigram is skipped.
 * Segments are not fsynced: a crash may leave a torn file, which fails
 * these checks and is rebuilt.
 *
 * Updates.  Messages never change and UIDs are never reused, so a segment
 * stays true for ever: appends need no work here (new messages are in no
 * segment: they are scanned, and indexed by the next body search that
 * walks over them); compaction keeps UIDs, so it needs no work either.
 * Expunged messages' UIDs stay in the lists until a builder's walk finds a
 * segment (below the view's last message) of which fewer than half are
 * still in the view: it writes it again with those only, or removes it if
 * none is (anyone who still sees one of them scans it), so the index
 * shrinks with the mailbox.  A small last segment is merged with the new
 * messages when the next one is written, so searches after single appends
 * do not pile up tiny files.
 *
 * Building is done by the searches themselves, over the messages they
 * walk (at most a budget per search: search_eval.c gives a quarter of a
 * large mailbox), a segment at a time (at most SINDEX_MAX_PAIRS postings,
 * SINDEX_MAX_DOCS messages), and a full segment is written in steps while
 * the next fills, so it all runs in the command's slices. */
#include "core/search/sindex.h"
#include "core/search/sindex_words.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SINDEX_MAGIC "RMSIDX\0\1"
#define SINDEX_VERSION 2u     /* 1: no word entries (still read) */
#define SINDEX_HDR 64u
#define SINDEX_ENTRY 32u
#define SINDEX_MAX_PAIRS (1u << 20)     /* postings per segment while building */
static size_t max_pairs = SINDEX_MAX_PAIRS;
#define SINDEX_MAX_DOCS 65536u
#define SINDEX_ABSORB_BYTES (128u << 10) /* a smaller last segment is merged
                                           (decoded in one go: ~2 ms) */

/* ---- little-endian helpers ------------------------------------------ */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}
static size_t put_varint(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}
/* Returns bytes read, 0 on a truncated or overlong varint. */
static size_t get_varint(const uint8_t *p, const uint8_t *end, uint32_t *v)
{
    uint32_t r = 0;
    for (size_t i = 0; i < 5 && p + i < end; i++) {
        r |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i == 4 && p[i] > 0x0f)
                return 0;
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

/* Decode count ascending UIDs in [lo, hi] from [p, p + len).  Returns 0 or
 * -EBADMSG. */
static int decode_list(const uint8_t *p, size_t len, uint32_t count, uint32_t lo,
                       uint32_t hi, uint32_t *out)
{
    const uint8_t *end = p + len;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t d;
        size_t k = get_varint(p, end, &d);
        if (!k || (i && !d) || d > UINT32_MAX - prev)
            return -EBADMSG;
        p += k;
        prev += d;
        if (prev < lo || prev > hi)
            return -EBADMSG;
        out[i] = prev;
    }
    return p == end ? 0 : -EBADMSG;
}

/* ---- segments ------------------------------------------------------- */

typedef struct seg {
    uint32_t lo, hi;
    char name[48];
    int state;              /* 0 not loaded, 1 usable, -1 damaged */
    struct segfile *f;      /* while loaded: the checked file (below) */
    bool live_checked;      /* a builder looked at how much of it is live */
    uint64_t fsize;
    uint32_t *docs;
    uint32_t ndocs, nterms;
    const uint8_t *table, *post;
    uint64_t post_len;
} seg;

struct sindex {
    char *dir;
    uint32_t uidvalidity;
    seg *segs;              /* sorted by lo, disjoint */
    size_t nsegs;
    int lock_fd;            /* >= 0: the builder */
    sindex_stats st;

    /* building */
    bool building;          /* false once a builder step failed */
    uint32_t last_uid;      /* highest UID started */
    uint32_t *bdocs;
    size_t nbdocs, capbdocs;
    uint64_t *pairs;        /* trigram << 32 | uid, in the order added */
    size_t npairs, cappairs;
    struct dslot { uint32_t key1, doc; } *dset;   /* this message's trigrams */
    uint32_t dcap, dn;
    size_t doc_start;       /* its first pair */
    uint32_t limit_lo;      /* lo of the next segment above the pending
                               messages: they must stay below it */
    seg *absorbed;          /* merged into the pending messages */
    unsigned nq;            /* queries made on it */
    uint32_t doc_budget;    /* messages this handle may index (0: any) */
    uint32_t ndocs_run;     /* messages it indexed */
    struct sindex_job *job; /* a sealed segment being written */
    bool want_seal;         /* seal what was added once the job is done */
    bool flushed;           /* wrote a segment: the listing's last one may
                               be gone (absorbed), absorb no more */
    swords *words;          /* the pending messages' body words */
};

struct sindex_q {
    sindex *x;
    uint32_t *tri;
    size_t ntri;
    size_t cur;             /* segment of the cached candidates, or SIZE_MAX */
    uint32_t *cand;
    size_t ncand, pos;
    size_t dpos;            /* in the segment's docs, for ascending UIDs */
    bool cand_ok;           /* cand is usable for segs[cur] */
    uint8_t *word;          /* the needle, if it is a word (else NULL) */
    size_t wlen;
    uint32_t wkey;
    uint32_t *sure;         /* segs[cur]'s messages whose body has the word */
    size_t nsure, spos;
};

/* ---- the process's checked segments ---------------------------------
 * Checking a segment (its header, its docs' CRC, decoding the docs) and
 * mapping it costs more than a query of it: a search over 10^6 messages
 * meets hundreds of segments.  So the process keeps the segments it
 * checked, mapped, by file identity (device, inode, size, mtime and ctime
 * to the nanosecond, UIDVALIDITY): a file changed in place or replaced is
 * a new entry, checked again.  Up to SINDEX_CACHE_MAX, least recently used
 * first out; one found damaged later is dropped when its last user lets
 * go. */
#define SINDEX_CACHE_MAX 4096u
#define SINDEX_CACHE_BUCKETS 1024u

typedef struct segfile {
    struct segfile *next;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
    uint32_t uidvalidity;
    unsigned refs;
    bool bad;
    uint64_t used;
    uint8_t *map;
    size_t len;
    uint32_t *docs;
    uint32_t ndocs, nterms;
    const uint8_t *table, *post;
    uint64_t post_len;
} segfile;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static segfile *cache_tab[SINDEX_CACHE_BUCKETS];
static unsigned cache_n;
static uint64_t cache_clock;

static void segfile_free(segfile *f)
{
    if (f->map)
        munmap(f->map, f->len);
    free(f->docs);
    free(f);
}

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static bool segfile_is(const segfile *f, const struct stat *st, uint32_t uidvalidity)
{
    return !f->bad && f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
           f->mtime_ns == ts_ns(st->st_mtim) && f->ctime_ns == ts_ns(st->st_ctim) &&
           f->uidvalidity == uidvalidity;
}

/* Unlink f from the table (cache_mu held). */
static void cache_remove(segfile *f)
{
    segfile **pp = &cache_tab[(size_t)f->ino % SINDEX_CACHE_BUCKETS];
    while (*pp && *pp != f)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = f->next;
        cache_n--;
    }
}

static void cache_evict(void)
{
    while (cache_n > SINDEX_CACHE_MAX) {
        segfile *old = NULL;
        for (size_t b = 0; b < SINDEX_CACHE_BUCKETS; b++)
            for (segfile *f = cache_tab[b]; f; f = f->next)
                if (!f->refs && (!old || f->used < old->used))
                    old = f;
        if (!old)
            return;
        cache_remove(old);
        segfile_free(old);
    }
}

static void segfile_put(segfile *f, bool damaged)
{
    pthread_mutex_lock(&cache_mu);
    if (damaged && !f->bad) {
        f->bad = true;
        cache_remove(f);
    }
    bool drop = --f->refs == 0 && f->bad;
    pthread_mutex_unlock(&cache_mu);
    if (drop)
        segfile_free(f);
}

static void seg_fields(seg *s, const segfile *f)
{
    s->fsize = (uint64_t)f->size;
    s->docs = f->docs;
    s->ndocs = f->ndocs;
    s->nterms = f->nterms;
    s->table = f->table;
    s->post = f->post;
    s->post_len = f->post_len;
}

static void seg_unload(seg *s)
{
    if (s->f)
        segfile_put(s->f, false);
    s->f = NULL;
    s->docs = NULL;
}

/* Unmap a usable segment that no query needs any more; it loads (and is
 * checked) again if one does. */
static void seg_unload_ok(seg *s)
{
    if (s->state == 1) {
        seg_unload(s);
        s->state = 0;
    }
}

static int seg_path(const sindex *x, const char *name, char *p, size_t n)
{
    return (size_t)snprintf(p, n, "%s/%s", x->dir, name) < n ? 0 : -ENAMETOOLONG;
}

/* Map and check a segment (see "Trust" above), or find it checked in the
 * process's cache.  Returns 0 or -errno. */
static int seg_load(sindex *x, seg *s)
{
    if (s->state)
        return s->state > 0 ? 0 : -EBADMSG;
    char path[PATH_MAX];
    int rc = seg_path(x, s->name, path, sizeof path);
    int fd = rc ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    struct stat stt;
    segfile *f = NULL;
    if (fd < 0 || fstat(fd, &stt) < 0 || stt.st_size < (off_t)SINDEX_HDR) {
        rc = fd < 0 ? -errno : -EBADMSG;
        goto bad;
    }
    pthread_mutex_lock(&cache_mu);
    for (f = cache_tab[(size_t)stt.st_ino % SINDEX_CACHE_BUCKETS]; f; f = f->next)
        if (segfile_is(f, &stt, x->uidvalidity))
            break;
    if (f) {
        f->refs++;
        f->used = ++cache_clock;
    }
    pthread_mutex_unlock(&cache_mu);
    if (f) {
        close(fd);
        if (f->docs[0] != s->lo || f->docs[f->ndocs - 1] != s->hi) {
            segfile_put(f, false);      /* another name for the file */
            f = NULL;
            rc = -EBADMSG;
            fd = -1;
            goto bad;
        }
        s->f = f;
        seg_fields(s, f);
        s->state = 1;
        return 0;
    }
    if (!(f = calloc(1, sizeof *f))) {
        rc = -ENOMEM;
        goto bad;
    }
    f->dev = stt.st_dev;
    f->ino = stt.st_ino;
    f->size = stt.st_size;
    f->mtime_ns = ts_ns(stt.st_mtim);
    f->ctime_ns = ts_ns(stt.st_ctim);
    f->uidvalidity = x->uidvalidity;
    f->len = (size_t)stt.st_size;
    f->map = mmap(NULL, f->len, PROT_READ, MAP_SHARED, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = -errno;
        goto bad;
    }
    close(fd);
    fd = -1;
    const uint8_t *h = f->map;
    rc = -EBADMSG;
    if (memcmp(h, SINDEX_MAGIC, 8) || get32(h + 8) < 1 || get32(h + 8) > SINDEX_VERSION ||
        get32(h + 12) != SINDEX_HDR || get32(h + 60) != store_crc32c(0, h, 60) ||
        get32(h + 16) != x->uidvalidity || get32(h + 20) != s->lo ||
        get32(h + 24) != s->hi)
        goto bad;
    f->ndocs = get32(h + 28);
    f->nterms = get32(h + 32);
    uint32_t docs_len = get32(h + 36);
    f->post_len = get64(h + 40);
    if ((uint64_t)SINDEX_HDR + docs_len + (uint64_t)f->nterms * SINDEX_ENTRY +
        f->post_len != (uint64_t)f->size || !f->ndocs || f->ndocs > s->hi - s->lo + 1)
        goto bad;
    const uint8_t *docs = h + SINDEX_HDR;
    if (get32(h + 48) != store_crc32c(0, docs, docs_len))
        goto bad;
    if (!(f->docs = malloc((size_t)f->ndocs * sizeof *f->docs))) {
        rc = -ENOMEM;
        goto bad;
    }
    if (decode_list(docs, docs_len, f->ndocs, s->lo, s->hi, f->docs) < 0 ||
        f->docs[0] != s->lo || f->docs[f->ndocs - 1] != s->hi)
        goto bad;
    f->table = docs + docs_len;
    f->post = f->table + (size_t)f->nterms * SINDEX_ENTRY;
    f->refs = 1;
    pthread_mutex_lock(&cache_mu);
    f->used = ++cache_clock;
    size_t bkt = (size_t)f->ino % SINDEX_CACHE_BUCKETS;
    f->next = cache_tab[bkt];
    cache_tab[bkt] = f;
    cache_n++;
    cache_evict();
    pthread_mutex_unlock(&cache_mu);
    s->f = f;
    seg_fields(s, f);
    s->state = 1;
    return 0;
bad:
    if (fd >= 0)
        close(fd);
    if (f)
        segfile_free(f);
    s->state = -1;
    x->st.bad++;
    if (x->lock_fd >= 0 && (rc == -EBADMSG || rc == 0)) {
        /* the builder removes it: the next search indexes its messages */
        char p[PATH_MAX];
        if (!seg_path(x, s->name, p, sizeof p))
            unlink(p);
    }
    return rc < 0 ? rc : -EBADMSG;
}

/* Damage found after loading (a table entry or a list): scan its
 * messages; a builder removes it so that the next search rebuilds it. */
static void seg_damaged(sindex *x, seg *s)
{
    if (s->f)
        segfile_put(s->f, true);
    s->f = NULL;
    s->docs = NULL;
    s->state = -1;
    x->st.bad++;
    char p[PATH_MAX];
    if (x->lock_fd >= 0 && !seg_path(x, s->name, p, sizeof p))
        unlink(p);
}

/* The table entry of trigram key: 1 found (*e set), 0 absent, -EBADMSG. */
static int seg_find(const seg *s, uint32_t key, const uint8_t **e)
{
    size_t lo = 0, hi = s->nterms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint8_t *p = s->table + mid * SINDEX_ENTRY;
        if (get32(p + 24) != mid || get32(p + 28) != store_crc32c(0, p, 28))
            return -EBADMSG;
        uint32_t k = get32(p);
        if (k == key) {
            *e = p;
            return 1;
        }
        if (k < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* A checked posting list: count and bytes. */
static int seg_list(const seg *s, const uint8_t *e, const uint8_t **p, size_t *len,
                    uint32_t *count)
{
    uint64_t off = get64(e + 8);
    uint32_t l = get32(e + 16);
    *count = get32(e + 4);
    if (off > s->post_len || l > s->post_len - off || !*count || *count > s->ndocs ||
        get32(e + 20) != store_crc32c(0, s->post + off, l))
        return -EBADMSG;
    *p = s->post + off;
    *len = l;
    return 0;
}

/* A checked word entry (key >= SWORD_KEY_BASE): its list is the word's
 * length byte, the word, then the UIDs as a trigram's are. */
static int word_list(const seg *s, const uint8_t *e, const uint8_t **w, size_t *wlen,
                     const uint8_t **p, size_t *len, uint32_t *count)
{
    const uint8_t *b;
    size_t l;
    int rc = seg_list(s, e, &b, &l, count);
    if (rc < 0)
        return rc;
    if (!l || b[0] < SWORD_MIN || b[0] > SWORD_MAX || (size_t)b[0] + 1 > l ||
        swords_key(b + 1, b[0]) != get32(e))
        return -EBADMSG;
    *w = b + 1;
    *wlen = b[0];
    *p = b + 1 + b[0];
    *len = l - 1 - b[0];
    return 0;
}

static int name_parse(const char *n, uint32_t *lo, uint32_t *hi)
{
    unsigned long a, b;
    char *end;
    if (strncmp(n, "sindex.", 7) || n[7] < '0' || n[7] > '9')
        return -1;
    errno = 0;
    a = strtoul(n + 7, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9')
        return -1;
    b = strtoul(end + 1, &end, 10);
    if (*end || errno || a > UINT32_MAX || b > UINT32_MAX || a < 1 || a > b)
        return -1;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
    return 0;
}

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return x->hi > y->hi ? -1 : x->hi < y->hi;
}

/* List the segments: sorted, overlapping ones dropped.  A builder removes
 * stale temporary files. */
static int list_segments(sindex *x)
{
    DIR *d = opendir(x->dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        uint32_t lo, hi;
        if (x->lock_fd >= 0 && !strncmp(de->d_name, "sindex-new.", 11)) {
            char p[PATH_MAX];
            if (!seg_path(x, de->d_name, p, sizeof p))
                unlink(p);
            continue;
        }
        if (name_parse(de->d_name, &lo, &hi) < 0 || strlen(de->d_name) >= sizeof x->segs->name)
            continue;
        if (x->nsegs == cap) {
            cap = cap ? cap * 2 : 16;
            seg *n = realloc(x->segs, cap * sizeof *n);
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            x->segs = n;
        }
        seg *s = &x->segs[x->nsegs++];
        memset(s, 0, sizeof *s);
        s->lo = lo;
        s->hi = hi;
        strcpy(s->name, de->d_name);
    }
    closedir(d);
    if (rc < 0)
        return rc;
    if (x->nsegs > 1)
        qsort(x->segs, x->nsegs, sizeof *x->segs, seg_cmp);
    size_t w = 0;
    for (size_t i = 0; i < x->nsegs; i++)
        if (!w || x->segs[i].lo > x->segs[w - 1].hi)
            x->segs[w++] = x->segs[i];
    x->nsegs = w;
    x->st.segments = w;
    return 0;
}

sindex *sindex_open(const char *dir, uint32_t uidvalidity, bool build)
{
    sindex *x = calloc(1, sizeof *x);
    if (!x || !(x->dir = strdup(dir))) {
        free(x);
        return NULL;
    }
    x->uidvalidity = uidvalidity;
    x->lock_fd = -1;
    if (build) {
        char p[PATH_MAX];
        int fd = seg_path(x, "sindex.lock", p, sizeof p) ? -1
                 : open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
            x->lock_fd = fd;
        else if (fd >= 0)
            close(fd);
        x->building = x->lock_fd >= 0;
    }
    if (list_segments(x) < 0) {
        /* no listing: no segments; do not build over ones we cannot see */
        x->nsegs = 0;
        x->building = false;
    }
    x->limit_lo = UINT32_MAX;
    return x;
}

static void builder_reset(sindex *x)
{
    free(x->bdocs);
    free(x->pairs);
    free(x->dset);
    x->bdocs = NULL;
    x->pairs = NULL;
    x->dset = NULL;
    x->nbdocs = x->capbdocs = x->npairs = x->cappairs = 0;
    x->dcap = x->dn = 0;
    x->absorbed = NULL;
    x->limit_lo = UINT32_MAX;
    swords_free(x->words);
    x->words = NULL;
}

static int job_run(sindex *x, unsigned steps);
static void job_free(struct sindex_job *j);
static int seal(sindex *x);

void sindex_close(sindex *x)
{
    if (!x)
        return;
    (void)job_run(x, 0);        /* a sealed segment is finished */
    job_free(x->job);
    builder_reset(x);
    for (size_t i = 0; i < x->nsegs; i++)
        seg_unload(&x->segs[i]);
    free(x->segs);
    if (x->lock_fd >= 0)
        close(x->lock_fd);      /* releases the flock */
    free(x->dir);
    free(x);
}

void sindex_get_stats(const sindex *x, sindex_stats *st)
{
    *st = x->st;
}

/* The segment whose range holds uid, or SIZE_MAX. */
static size_t seg_of(const sindex *x, uint32_t uid)
{
    size_t lo = 0, hi = x->nsegs;
    while (lo < hi) {       /* first segment with lo > uid */
        size_t mid = lo + (hi - lo) / 2;
        if (x->segs[mid].lo <= uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo && uid <= x->segs[lo - 1].hi ? lo - 1 : SIZE_MAX;
}

static bool in_sorted(const uint32_t *v, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

/* ---- building --------------------------------------------------------- */

static void stop_building(sindex *x)
{
    x->building = false;
    builder_reset(x);
}

bool sindex_wants(const sindex *x, uint32_t uid)
{
    return x->building && uid > x->last_uid &&
           (!x->doc_budget || x->ndocs_run < x->doc_budget) && seg_of(x, uid) == SIZE_MAX;
}

void sindex_set_budget(sindex *x, uint32_t n)
{
    x->doc_budget = n;
}

static int add_pair(sindex *x, uint32_t key, uint32_t uid)
{
    if (x->npairs == x->cappairs) {
        size_t c = x->cappairs ? x->cappairs * 2 : 1u << 16;
        uint64_t *a = realloc(x->pairs, c * sizeof *a);
        if (!a)
            return -ENOMEM;
        x->pairs = a;
        x->cappairs = c;
    }
    x->pairs[x->npairs++] = (uint64_t)key << 32 | uid;
    return 0;
}

static uint32_t dhash(uint32_t key1, uint32_t cap)
{
    return (key1 * 2654435761u) >> 8 & (cap - 1);
}

/* The set of the current message's trigrams (small: it stays in the CPU's
 * cache, which a table of every trigram of a segment does not): doc tells
 * which message a slot belongs to, so it needs no clearing. */
static int dset_grow(sindex *x)
{
    uint32_t ncap = x->dcap ? x->dcap * 2 : 4096;
    struct dslot *n = calloc(ncap, sizeof *n);
    if (!n)
        return -ENOMEM;
    free(x->dset);
    x->dset = n;
    x->dcap = ncap;
    /* the message's trigrams so far are its pairs since doc_start */
    uint32_t doc = (uint32_t)x->nbdocs;
    for (size_t i = x->doc_start; i < x->npairs; i++) {
        uint32_t key1 = (uint32_t)(x->pairs[i] >> 32) + 1;
        uint32_t h = dhash(key1, ncap);
        while (n[h].doc == doc && n[h].key1 != key1)
            h = (h + 1) & (ncap - 1);
        n[h].key1 = key1;
        n[h].doc = doc;
    }
    return 0;
}

/* Record trigram key for the current message, once. */
static int add_trigram(sindex *x, uint32_t key, uint32_t uid)
{
    uint32_t key1 = key + 1, doc = (uint32_t)x->nbdocs;
    uint32_t h = dhash(key1, x->dcap);
    while (x->dset[h].doc == doc) {
        if (x->dset[h].key1 == key1)
            return 0;
        h = (h + 1) & (x->dcap - 1);
    }
    x->dset[h].key1 = key1;
    x->dset[h].doc = doc;
    if (add_pair(x, key, uid) < 0)
        return -ENOMEM;
    if (++x->dn * 2 > x->dcap)
        return dset_grow(x);
    return 0;
}

static int add_doc_uid(sindex *x, uint32_t uid)
{
    if (x->nbdocs == x->capbdocs) {
        size_t c = x->capbdocs ? x->capbdocs * 2 : 1024;
        uint32_t *a = realloc(x->bdocs, c * sizeof *a);
        if (!a)
            return -ENOMEM;
        x->bdocs = a;
        x->capbdocs = c;
    }
    x->bdocs[x->nbdocs++] = uid;
    return 0;
}

/* Merge a small last segment below uid into the pending messages, so the
 * next flush replaces it by one segment. */
static int absorb_tail(sindex *x, uint32_t uid)
{
    if (!x->nsegs || x->flushed)
        return 0;
    seg *s = &x->segs[x->nsegs - 1];
    if (s->hi >= uid || seg_load(x, s) < 0 || s->fsize > SINDEX_ABSORB_BYTES)
        return 0;
    uint32_t *tmp = malloc((size_t)s->ndocs * sizeof *tmp);
    if (!tmp)
        return -ENOMEM;
    int rc = 0;
    for (uint32_t d = 0; d < s->ndocs && !rc; d++)
        rc = add_doc_uid(x, s->docs[d]);
    for (uint32_t i = 0; i < s->nterms && !rc; i++) {
        const uint8_t *e = s->table + (size_t)i * SINDEX_ENTRY, *p;
        size_t len;
        uint32_t count;
        const uint8_t *w = NULL;
        size_t wlen = 0;
        bool word = get32(e) >= SWORD_KEY_BASE;
        if (get32(e + 24) != i || get32(e + 28) != store_crc32c(0, e, 28) ||
            (i && get32(e) <= get32(e - SINDEX_ENTRY)) ||
            (word ? word_list(s, e, &w, &wlen, &p, &len, &count)
                  : seg_list(s, e, &p, &len, &count)) < 0 ||
            decode_list(p, len, count, s->lo, s->hi, tmp) < 0) {
            rc = -EBADMSG;
            break;
        }
        if (word && !x->words && !(x->words = swords_new()))
            rc = -ENOMEM;
        for (uint32_t k = 0; k < count && !rc; k++)
            rc = word ? swords_add(x->words, w, wlen, tmp[k]) : add_pair(x, get32(e), tmp[k]);
    }
    free(tmp);
    if (rc == -EBADMSG) {
        /* damaged: start afresh without it (its messages get scanned) */
        seg_damaged(x, s);
        builder_reset(x);
        return 0;
    }
    if (rc == 0)
        x->absorbed = s;
    return rc;
}

int sindex_doc(sindex *x, uint32_t uid)
{
    int rc = 0;
    if (!x->building)
        return -EINVAL;
    /* A full segment, or the next message beyond a segment above the
     * pending ones (segments must not overlap): write what is pending. */
    if (x->nbdocs && (x->npairs >= max_pairs || x->nbdocs >= SINDEX_MAX_DOCS ||
                      uid > x->limit_lo))
        rc = seal(x);
    else if (x->job)
        rc = job_run(x, 1);     /* the sealed one goes on, a step a message */
    if (rc > 0)
        rc = 0;
    if (!x->building)
        return rc < 0 ? rc : -EIO;
    if (rc == 0 && !x->nbdocs) {
        /* the first segment above uid bounds this one */
        size_t lo = 0, hi = x->nsegs;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (x->segs[mid].lo <= uid)
                lo = mid + 1;
            else
                hi = mid;
        }
        x->limit_lo = lo < x->nsegs ? x->segs[lo].lo : UINT32_MAX;
        if (lo == x->nsegs)
            rc = absorb_tail(x, uid);
    }
    if (rc == 0)
        rc = add_doc_uid(x, uid);
    /* the set's slots of earlier messages now count as empty (doc is
     * the message's number, 1-based) */
    x->dn = 0;
    x->doc_start = x->npairs;
    x->ndocs_run++;
    if (rc == 0 && !x->dset)
        rc = dset_grow(x);
    if (rc < 0) {
        stop_building(x);
        return rc;
    }
    x->last_uid = uid;
    return 0;
}

int sindex_add(sindex *x, const void *text, size_t len)
{
    if (!x->building || !x->nbdocs)
        return -EINVAL;
    const uint8_t *b = text;
    uint32_t uid = x->bdocs[x->nbdocs - 1];
    for (size_t i = 0; i + 3 <= len; i++) {
        if (!b[i + 2]) {
            i += 2;             /* the next two windows hold this NUL too */
            continue;
        }
        if (!b[i] || !b[i + 1])
            continue;
        uint32_t key = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        if (add_trigram(x, key, uid) < 0) {
            stop_building(x);
            return -ENOMEM;
        }
    }
    return 0;
}

int sindex_add_body(sindex *x, const void *text, size_t len)
{
    int rc = sindex_add(x, text, len);
    if (rc < 0)
        return rc;
    if ((!x->words && !(x->words = swords_new())) ||
        swords_add_text(x->words, x->bdocs[x->nbdocs - 1], text, len) < 0) {
        stop_building(x);
        return -ENOMEM;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- writing a segment, in steps -------------------------------------
 * Writing a segment is a stable radix sort of its (trigram, UID) pairs on
 * the 24 trigram bits, the encoding, and one write: for 10^6 pairs some
 * 20 ms, too long to hold a worker.  So a full segment is sealed into a
 * job that later calls advance by SINDEX_STEP pairs at a time (a fraction
 * of a millisecond) while the next one fills. */
#define SINDEX_STEP 32768u

enum { J_LOAD, J_HIST, J_PASS0, J_PASS1, J_PASS2, J_LAYOUT, J_TERMS, J_WRITE, J_DONE };

struct sindex_job {
    int phase;
    size_t at;
    uint32_t *docs;
    size_t ndocs;
    uint64_t *pairs, *tmp;  /* the sort goes pairs -> tmp -> pairs -> tmp */
    size_t npairs;
    size_t cnt[3][257];
    char absorbed[48];      /* the segment this one replaces, or "" */
    uint8_t *buf, *table, *post, *q;
    uint32_t nterms, t, docs_len;
    seg src;                /* J_LOAD: the segment to shrink (a reference) */
    uint32_t src_t, *src_list;
    size_t cap;
    swords *words;          /* the messages' body words */
    sword_out *wout;        /* those written (J_LAYOUT on) */
    size_t nwout;
    uint32_t ntri;          /* trigram entries: the word entries follow */
};

static void job_free(struct sindex_job *j)
{
    if (!j)
        return;
    free(j->docs);
    free(j->pairs);
    free(j->tmp);
    free(j->buf);
    free(j->src_list);
    free(j->wout);
    swords_free(j->words);
    if (j->src.f)
        segfile_put(j->src.f, false);
    free(j);
}

static unsigned pass_shift(int pass) { return 32u + 8u * (unsigned)pass; }

/* Words in fewer of a segment's messages than this get no entry: their
 * candidates are few, so checking them costs little, and the index stays
 * small.  A word in 1 in 64 messages of 10^6 costs ~16,000 checks. */
static uint32_t word_min(size_t ndocs)
{
    return ndocs / 64 > 8 ? (uint32_t)(ndocs / 64) : 8;
}

/* The next table entry: key's list (count UIDs) is from ls to j->q. */
static void put_entry(struct sindex_job *j, uint32_t key, uint32_t count, const uint8_t *ls)
{
    uint8_t *e = j->table + (size_t)j->t * SINDEX_ENTRY;
    put32(e, key);
    put32(e + 4, count);
    put64(e + 8, (uint64_t)(ls - j->post));
    put32(e + 16, (uint32_t)(j->q - ls));
    put32(e + 20, store_crc32c(0, ls, (size_t)(j->q - ls)));
    put32(e + 24, j->t);
    put32(e + 28, store_crc32c(0, e, 28));
    j->t++;
}

/* One step of the job.  Returns 1 more to do, 0 done, -errno. */
static int job_step(sindex *x, struct sindex_job *j)
{
    size_t end = j->at + SINDEX_STEP < j->npairs ? j->at + SINDEX_STEP : j->npairs;
    switch (j->phase) {
    case J_LOAD: {
        /* the lists of the segment being shrunk, without the UIDs no
         * longer live: read in trigram order, so already sorted */
        const seg *src = &j->src;
        size_t done = 0;
        while (j->src_t < src->nterms && done < SINDEX_STEP) {
            const uint8_t *e = src->table + (size_t)j->src_t * SINDEX_ENTRY, *p, *w = NULL;
            size_t len, wlen = 0;
            uint32_t count;
            bool word = get32(e) >= SWORD_KEY_BASE;
            if (get32(e + 24) != j->src_t || get32(e + 28) != store_crc32c(0, e, 28) ||
                (j->src_t && get32(e) <= get32(e - SINDEX_ENTRY)) ||
                (word ? word_list(src, e, &w, &wlen, &p, &len, &count)
                      : seg_list(src, e, &p, &len, &count)) < 0 ||
                decode_list(p, len, count, src->lo, src->hi, j->src_list) < 0)
                return -EBADMSG;
            if (word && !j->words && !(j->words = swords_new()))
                return -ENOMEM;
            for (uint32_t k = 0; k < count; k++)
                if (word) {
                    if (in_sorted(j->docs, j->ndocs, j->src_list[k]) &&
                        swords_add(j->words, w, wlen, j->src_list[k]) < 0)
                        return -ENOMEM;
                } else if (in_sorted(j->docs, j->ndocs, j->src_list[k])) {
                    if (j->npairs == j->cap) {
                        size_t c = j->cap ? j->cap * 2 : 1u << 16;
                        uint64_t *a = realloc(j->pairs, c * sizeof *a);
                        if (!a)
                            return -ENOMEM;
                        j->pairs = a;
                        j->cap = c;
                    }
                    j->pairs[j->npairs++] = (uint64_t)get32(e) << 32 | j->src_list[k];
                }
            done += count;
            j->src_t++;
        }
        if (j->src_t < src->nterms)
            return 1;
        j->tmp = j->pairs;      /* sorted: no passes */
        j->pairs = NULL;
        j->phase = J_LAYOUT;
        return 1;
    }
    case J_HIST:
        for (size_t i = j->at; i < end; i++)
            for (int k = 0; k < 3; k++)
                j->cnt[k][((j->pairs[i] >> pass_shift(k)) & 0xff) + 1]++;
        if ((j->at = end) < j->npairs)
            return 1;
        for (int k = 0; k < 3; k++)
            for (int v = 0; v < 256; v++)
                j->cnt[k][v + 1] += j->cnt[k][v];
        if (!(j->tmp = malloc((j->npairs + 1) * sizeof *j->tmp)))
            return -ENOMEM;
        j->phase = J_PASS0;
        j->at = 0;
        return 1;
    case J_PASS0:
    case J_PASS1:
    case J_PASS2: {
        int k = j->phase - J_PASS0;
        const uint64_t *src = k == 1 ? j->tmp : j->pairs;
        uint64_t *dst = k == 1 ? j->pairs : j->tmp;
        size_t *c = j->cnt[k];
        for (size_t i = j->at; i < end; i++)
            dst[c[(src[i] >> pass_shift(k)) & 0xff]++] = src[i];
        if ((j->at = end) < j->npairs)
            return 1;
        j->phase++;
        j->at = 0;
        return 1;
    }
    case J_LAYOUT: {
        const uint64_t *v = j->tmp;         /* sorted */
        for (size_t i = 0; i < j->npairs; i++)
            j->nterms += !i || v[i] >> 32 != v[i - 1] >> 32;
        j->ntri = j->nterms;
        size_t wbytes = 0;
        if (j->words && swords_finish(j->words, word_min(j->ndocs), &j->wout, &j->nwout) < 0)
            return -ENOMEM;
        for (size_t i = 0; i < j->nwout; i++)
            wbytes += 1 + j->wout[i].len + (size_t)j->wout[i].n * 5;
        j->nterms += (uint32_t)j->nwout;
        size_t max = SINDEX_HDR + j->ndocs * 5 + (size_t)j->nterms * SINDEX_ENTRY +
                     j->npairs * 5 + wbytes;
        if (!(j->buf = malloc(max)))
            return -ENOMEM;
        memset(j->buf, 0, SINDEX_HDR);
        uint8_t *p = j->buf + SINDEX_HDR;
        uint32_t prev = 0;
        for (size_t i = 0; i < j->ndocs; i++) {
            p += put_varint(p, j->docs[i] - prev);
            prev = j->docs[i];
        }
        j->docs_len = (uint32_t)(p - (j->buf + SINDEX_HDR));
        j->table = p;
        j->q = j->post = p + (size_t)j->nterms * SINDEX_ENTRY;
        j->phase = J_TERMS;
        j->at = 0;
        return 1;
    }
    case J_TERMS: {
        const uint64_t *v = j->tmp;
        size_t i = j->at;
        while (j->t < j->ntri && i < end) {
            uint32_t key = (uint32_t)(v[i] >> 32), count = 0, prev = 0;
            uint8_t *ls = j->q;
            for (; i < j->npairs && (uint32_t)(v[i] >> 32) == key; i++, count++) {
                j->q += put_varint(j->q, (uint32_t)v[i] - prev);
                prev = (uint32_t)v[i];
            }
            put_entry(j, key, count, ls);
        }
        j->at = i;
        if (j->t < j->ntri)
            return 1;
        /* the word entries after the trigrams' (their keys are above):
         * a few thousand short lists at most, one step */
        for (size_t k = 0; k < j->nwout; k++) {
            const sword_out *o = &j->wout[k];
            uint8_t *ls = j->q;
            *j->q++ = o->len;
            memcpy(j->q, o->word, o->len);
            j->q += o->len;
            uint32_t prev = 0;
            for (uint32_t u = 0; u < o->n; u++) {
                j->q += put_varint(j->q, o->uids[u] - prev);
                prev = o->uids[u];
            }
            put_entry(j, o->key, o->n, ls);
        }
        j->phase = J_WRITE;
        return 1;
    }
    case J_WRITE: {
        uint8_t *buf = j->buf;
        uint32_t lo = j->docs[0], hi = j->docs[j->ndocs - 1];
        memcpy(buf, SINDEX_MAGIC, 8);
        put32(buf + 8, SINDEX_VERSION);
        put32(buf + 12, SINDEX_HDR);
        put32(buf + 16, x->uidvalidity);
        put32(buf + 20, lo);
        put32(buf + 24, hi);
        put32(buf + 28, (uint32_t)j->ndocs);
        put32(buf + 32, j->nterms);
        put32(buf + 36, j->docs_len);
        put64(buf + 40, (uint64_t)(j->q - j->post));
        put32(buf + 48, store_crc32c(0, buf + SINDEX_HDR, j->docs_len));
        put32(buf + 60, store_crc32c(0, buf, 60));

        static unsigned seq;
        char name[64], tmp[PATH_MAX], path[PATH_MAX];
        snprintf(name, sizeof name, "sindex-new.%ld.%u", (long)getpid(),
                 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
        int rc = seg_path(x, name, tmp, sizeof tmp);
        snprintf(name, sizeof name, "sindex.%" PRIu32 ".%" PRIu32, lo, hi);
        if (rc == 0)
            rc = seg_path(x, name, path, sizeof path);
        if (rc < 0)
            return rc;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        rc = write_all(fd, buf, (size_t)(j->q - buf));
        close(fd);
        if (rc == 0 && rename(tmp, path) < 0)
            rc = -errno;
        if (rc < 0) {
            unlink(tmp);
            return rc;
        }
        if (j->absorbed[0] && strcmp(j->absorbed, name)) {
            char old[PATH_MAX];
            if (!seg_path(x, j->absorbed, old, sizeof old))
                unlink(old);
        }
        x->st.written++;
        j->phase = J_DONE;
        return 0;
    }
    default:
        return 0;
    }
}

/* Run the pending job for up to steps steps (0: to its end).  Returns 1 if
 * work is left, 0 or -errno (the builder then stops). */
static int job_run(sindex *x, unsigned steps)
{
    int rc = 0;
    while (x->job) {
        rc = job_step(x, x->job);
        if (rc <= 0) {
            job_free(x->job);
            x->job = NULL;
            if (rc < 0) {
                stop_building(x);
                return rc;
            }
            if (!x->want_seal)
                return 0;
            /* the messages added meanwhile are next */
            x->want_seal = false;
            if ((rc = seal(x)) < 0 || !x->job)
                return rc;
            rc = 1;
        }
        if (steps && !--steps)
            return 1;
    }
    return rc;
}

/* Seal what was added into a job (after finishing the previous one). */
static int seal(sindex *x)
{
    if (!x->building || !x->nbdocs)
        return 0;
    int rc = job_run(x, 0);
    if (rc < 0 || !x->building)
        return rc;
    struct sindex_job *j = calloc(1, sizeof *j);
    if (!j) {
        stop_building(x);
        return -ENOMEM;
    }
    j->phase = J_HIST;
    j->docs = x->bdocs;
    j->ndocs = x->nbdocs;
    j->pairs = x->pairs;
    j->npairs = x->npairs;
    j->words = x->words;
    x->words = NULL;
    if (x->absorbed)
        snprintf(j->absorbed, sizeof j->absorbed, "%s", x->absorbed->name);
    x->bdocs = NULL;
    x->pairs = NULL;
    x->job = j;
    x->flushed = true;
    builder_reset(x);
    return 0;
}

/* A builder met segment s of the view uids[0..count): if fewer than half
 * of its messages are still in the view (expunged, compacted away), write
 * it again with only those (a job, in steps), so that the index shrinks
 * with the mailbox.  The last segment is left to absorb_tail. */
static void maybe_shrink(sindex *x, seg *s, const uint32_t *uids, uint32_t count)
{
    s->live_checked = true;
    /* only below the view's last message: above it, messages may be
     * newer than the view rather than gone */
    if (x->lock_fd < 0 || !x->building || x->job || !count || s->hi > uids[count - 1] ||
        s == &x->segs[x->nsegs - 1] || s->state < 0)
        return;
    size_t a = 0, b = count;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (uids[mid] < s->lo)
            a = mid + 1;
        else
            b = mid;
    }
    size_t first = a;
    b = count;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (uids[mid] <= s->hi)
            a = mid + 1;
        else
            b = mid;
    }
    size_t live = a - first;
    if (!live) {
        /* nothing of it is live: its messages are scanned if anyone
         * still sees them */
        char p[PATH_MAX];
        if (!seg_path(x, s->name, p, sizeof p))
            unlink(p);
        return;
    }
    if (s->state != 1 || live * 2 >= s->ndocs)
        return;
    struct sindex_job *j = calloc(1, sizeof *j);
    if (!j || !(j->docs = malloc((live + 1) * sizeof *j->docs)) ||
        !(j->src_list = malloc((size_t)s->ndocs * sizeof *j->src_list))) {
        job_free(j);
        return;
    }
    for (size_t i = first; i < first + live; i++)
        if (in_sorted(s->docs, s->ndocs, uids[i]))
            j->docs[j->ndocs++] = uids[i];
    if (!j->ndocs) {
        job_free(j);
        return;
    }
    pthread_mutex_lock(&cache_mu);
    s->f->refs++;
    pthread_mutex_unlock(&cache_mu);
    j->src = *s;
    j->phase = J_LOAD;
    snprintf(j->absorbed, sizeof j->absorbed, "%s", s->name);
    x->job = j;
}

void sindex_test_max_pairs(size_t n)
{
    max_pairs = n ? n : SINDEX_MAX_PAIRS;
}

int sindex_flush(sindex *x)
{
    int rc = seal(x);
    return rc < 0 ? rc : job_run(x, 0);
}

int sindex_seal(sindex *x, unsigned steps)
{
    if (x->job && x->building && x->nbdocs) {
        /* not now: finishing the job at once could take ~20 ms */
        x->want_seal = true;
        return job_run(x, steps);
    }
    int rc = seal(x);
    return rc < 0 ? rc : job_run(x, steps);
}

int sindex_work(sindex *x, unsigned steps)
{
    return x->job ? job_run(x, steps) : 0;
}

/* ---- querying -------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

sindex_q *sindex_query(sindex *x, const char *needle, size_t len)
{
    if (!x || len < 3 || memchr(needle, 0, len))
        return NULL;
    sindex_q *q = calloc(1, sizeof *q);
    if (!q || !(q->tri = malloc((len - 2) * sizeof *q->tri))) {
        free(q);
        return NULL;
    }
    const uint8_t *b = (const uint8_t *)needle;
    for (size_t i = 0; i + 3 <= len; i++)
        q->tri[q->ntri++] = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
    qsort(q->tri, q->ntri, sizeof *q->tri, cmp_u32);
    if (swords_is_word(b, len) && (q->word = malloc(len))) {
        memcpy(q->word, needle, len);
        q->wlen = len;
        q->wkey = swords_key(b, len);
    }
    size_t w = 0;
    for (size_t i = 0; i < q->ntri; i++)
        if (!w || q->tri[i] != q->tri[w - 1])
            q->tri[w++] = q->tri[i];
    q->ntri = w;
    q->x = x;
    q->cur = SIZE_MAX;
    x->nq++;
    return q;
}

void sindex_query_free(sindex_q *q)
{
    if (!q)
        return;
    free(q->tri);
    free(q->cand);
    free(q->word);
    free(q->sure);
    free(q);
}

/* Keep in a[0..*na) the UIDs that list l (count, bytes) holds too. */
static int intersect(uint32_t *a, size_t *na, const uint8_t *p, size_t len,
                     uint32_t count, const seg *s)
{
    const uint8_t *end = p + len;
    uint32_t prev = 0, v = 0;
    size_t w = 0, i = 0;
    uint32_t k = 0;
    bool have = false;
    while (i < *na) {
        if (!have) {
            if (k == count)
                break;
            uint32_t d;
            size_t n = get_varint(p, end, &d);
            if (!n || (k && !d) || d > UINT32_MAX - prev)
                return -EBADMSG;
            p += n;
            v = prev += d;
            k++;
            if (v < s->lo || v > s->hi)
                return -EBADMSG;
            have = true;
        }
        if (a[i] < v)
            i++;
        else if (a[i] > v)
            have = false;
        else {
            a[w++] = a[i++];
            have = false;
        }
    }
    *na = w;
    return 0;
}

/* The messages of segment s whose body certainly has the needle: the
 * word's list, if the needle is a word that s has an entry for. */
static int load_sure(sindex_q *q, const seg *s)
{
    const uint8_t *e, *w, *p;
    size_t wlen, len;
    uint32_t count;
    int rc = seg_find(s, q->wkey, &e);
    if (rc <= 0)
        return rc;
    if ((rc = word_list(s, e, &w, &wlen, &p, &len, &count)) < 0)
        return rc;
    if (wlen != q->wlen || memcmp(w, q->word, wlen))
        return 0;           /* another word with the same key */
    uint32_t *a = realloc(q->sure, count * sizeof *a);
    if (!a)
        return -ENOMEM;
    q->sure = a;
    if ((rc = decode_list(p, len, count, s->lo, s->hi, q->sure)) < 0)
        return rc;
    q->nsure = count;
    return 0;
}

/* The candidates of segment i: the UIDs of its docs that hold every
 * trigram of the needle.  Returns 0 or -errno (-EBADMSG: damaged). */
static int load_cands(sindex_q *q, size_t i)
{
    seg *s = &q->x->segs[i];
    if (q->cur != SIZE_MAX && q->x->nq == 1 && q->cur != i)
        seg_unload_ok(&q->x->segs[q->cur]);    /* passed: free the map */
    q->cur = i;
    q->cand_ok = false;
    q->ncand = q->pos = q->dpos = 0;
    q->nsure = q->spos = 0;
    int rc = seg_load(q->x, s);
    if (rc < 0)
        return rc;
    const uint8_t **ents = malloc(q->ntri * sizeof *ents);
    if (!ents)
        return -ENOMEM;
    size_t best = 0;
    for (size_t t = 0; t < q->ntri; t++) {
        rc = seg_find(s, q->tri[t], &ents[t]);
        if (rc <= 0)
            goto out;           /* absent: no candidate (rc 0), or damage */
        if (get32(ents[t] + 4) < get32(ents[best] + 4))
            best = t;
    }
    const uint8_t *p;
    size_t len;
    uint32_t count;
    if ((rc = seg_list(s, ents[best], &p, &len, &count)) < 0)
        goto out;
    free(q->cand);
    if (!(q->cand = malloc(count * sizeof *q->cand))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = decode_list(p, len, count, s->lo, s->hi, q->cand)) < 0)
        goto out;
    q->ncand = count;
    for (size_t t = 0; t < q->ntri && q->ncand; t++) {
        if (t == best)
            continue;
        if ((rc = seg_list(s, ents[t], &p, &len, &count)) < 0 ||
            (rc = intersect(q->cand, &q->ncand, p, len, count, s)) < 0)
            goto out;
    }
    rc = q->ncand && q->word ? load_sure(q, s) : 0;
out:
    free(ents);
    if (rc == 0)
        q->cand_ok = true;
    else
        q->ncand = 0;
    if (rc == -EBADMSG)
        seg_damaged(q->x, s);
    return rc;
}

/* Is uid among the docs of the current segment?  Ascending UIDs walk
 * forward; others search. */
static bool in_docs(sindex_q *q, const seg *s, uint32_t uid)
{
    if (q->dpos < s->ndocs && s->docs[q->dpos] <= uid) {
        while (q->dpos < s->ndocs && s->docs[q->dpos] < uid)
            q->dpos++;
        return q->dpos < s->ndocs && s->docs[q->dpos] == uid;
    }
    return in_sorted(s->docs, s->ndocs, uid);
}

static bool in_cands(sindex_q *q, uint32_t uid)
{
    if (q->pos < q->ncand && q->cand[q->pos] <= uid) {
        while (q->pos < q->ncand && q->cand[q->pos] < uid)
            q->pos++;
        return q->pos < q->ncand && q->cand[q->pos] == uid;
    }
    return in_sorted(q->cand, q->ncand, uid);
}

/* The segment of uid with its candidates ready: the segment, or NULL when
 * uid is not covered (or its segment unusable: scan). */
static const seg *seg_ready(sindex_q *q, uint32_t uid)
{
    size_t i = q->cur;
    if (i == SIZE_MAX || uid < q->x->segs[i].lo || uid > q->x->segs[i].hi) {
        i = seg_of(q->x, uid);
        if (i == SIZE_MAX || load_cands(q, i) < 0)
            return NULL;
    }
    const seg *s = &q->x->segs[i];
    return q->cand_ok && s->state == 1 ? s : NULL;
}

static bool in_sure(sindex_q *q, uint32_t uid)
{
    if (q->spos < q->nsure && q->sure[q->spos] <= uid) {
        while (q->spos < q->nsure && q->sure[q->spos] < uid)
            q->spos++;
        return q->spos < q->nsure && q->sure[q->spos] == uid;
    }
    return in_sorted(q->sure, q->nsure, uid);
}

int sindex_state(sindex_q *q, uint32_t uid)
{
    const seg *s = seg_ready(q, uid);
    if (!s || !in_docs(q, s, uid))
        return SINDEX_MAYBE;
    if (!in_cands(q, uid))
        return SINDEX_NO;
    return in_sure(q, uid) ? SINDEX_BODY_HAS : SINDEX_MAYBE;
}

int sindex_maybe(sindex_q *q, uint32_t uid)
{
    return sindex_state(q, uid) != SINDEX_NO;
}

uint32_t sindex_next(sindex_q *q, const uint32_t *uids, uint32_t count, uint32_t seq,
                     unsigned *budget)
{
    while (seq >= 1 && seq <= count) {
        uint32_t uid = uids[seq - 1];
        size_t before = q->cur;
        const seg *s;
        if (q->cur == SIZE_MAX || uid < q->x->segs[q->cur].lo ||
            uid > q->x->segs[q->cur].hi) {
            if (!*budget)
                return seq;     /* the caller comes back */
            --*budget;
        }
        if (!(s = seg_ready(q, uid)))
            return seq;
        if (q->x->lock_fd >= 0 && q->cur != before) {
            /* a builder: the segments passed over hold no message of the
             * view, this one may hold few */
            for (size_t k = before == SIZE_MAX || before > q->cur ? 0 : before + 1;
                 k <= q->cur; k++)
                if (!q->x->segs[k].live_checked)
                    maybe_shrink(q->x, &q->x->segs[k], uids, count);
        }
        /* through the view's UIDs in this segment: stop at one that is a
         * candidate or that the segment did not index */
        while (seq <= count && (uid = uids[seq - 1]) <= s->hi) {
            if (!in_docs(q, s, uid) || in_cands(q, uid))
                return seq;
            seq++;
        }
    }
    return seq;
}
