/* store/message.c — the message parser and the cache blob (contract in
 * store/message.h).
 *
 * Blob format, version 4.  All integers are little-endian and nothing is
 * aligned, so a blob can be copied or mapped anywhere (readers use byte
 * loads).
 *
 *   header, 44 bytes (40 before version 4)
 *      0  magic "RMcb"
 *      4  u16 version (4; 1 to 3 are still read: 1 had no field 36,
 *         2's rendered envelope came from an older rendering, so it
 *         is ignored and envelope 0 is rendered at fetch time, and 1 to
 *         3 have no field 40)
 *      6  u16 header size (44; 40 for versions 1 to 3)
 *      8  u32 total blob length, header included
 *     12  u32 CRC32C (Castagnoli, as in the log) over bytes [0,12) and
 *         [16,total): the whole blob without this field
 *     16  u32 length of the message that was parsed
 *     20  u32 nparts (1..STORE_MIME_MAX_PARTS)
 *     24  u32 nenvelopes (>= 1)
 *     28  u32 nparams
 *     32  u32 pool length
 *     36  u32 pool ref of envelope 0 already rendered as IMAP ENVELOPE, or
 *         NIL: listings copy it instead of parsing addresses (only set
 *         when the text is the same for every client: 7-bit, no literal)
 *     40  u32 pool ref of the message's preview (RFC 8970 FETCH PREVIEW,
 *         UTF-8, made by the registered previewer), or NIL when none was
 *         made: the reader then computes it from the message
 *   parts      nparts x 88 bytes, depth-first order
 *   envelopes  nenvelopes x 44 bytes (11 string refs, in store_envelope order)
 *   params     nparams x 8 bytes (name ref, value ref)
 *   pool       strings
 *
 *   part record: 9 string refs (type, subtype, id, description, encoding,
 *   md5, disposition, language, location), then u32 hdr_off, hdr_len,
 *   body_off, body_len, lines, param_first, nparams, ndisp_params, parent,
 *   first_child, next_sibling, nchildren, i32 envelope.  A part's
 *   Content-Type parameters are params[param_first ..+nparams], its
 *   Content-Disposition parameters follow them directly.
 *
 *   A string ref is a u32 offset into the pool, or 0xffffffff for NIL.  At
 *   that offset the pool holds a u32 length and then the bytes.  Short
 *   strings are interned, so "text", "plain", "base64", "charset" ... are
 *   stored once per blob.
 *
 * store_cache_open() checks everything an accessor or store_cache_find()
 * will later rely on — the checksum, every count against the length, every
 * string ref, every parameter range, the tree links (parent before child,
 * siblings increasing, nchildren equal to the sibling chain, depth at most
 * STORE_MIME_MAX_DEPTH), every offset within the parent and the message, and
 * the type invariants below — because a checksum only catches accidents and
 * the accessors must stay in bounds even on a blob built to pass it.
 *
 * Tree invariants the parser guarantees (and the validator enforces), so
 * that BODYSTRUCTURE can be written without special cases:
 *   - a part of type multipart/ has at least one child;
 *   - a part of type message/rfc822 or message/global has exactly one child
 *     (the embedded message's root) and an envelope index; envelopes are
 *     numbered in part order;
 *   - every other part is a leaf with envelope -1.
 * A multipart or message part that we do not split is therefore recorded as
 * application/octet-stream (its parameters kept): a multipart without a
 * boundary parameter or in which no delimiter line occurs, a message part
 * with a Content-Transfer-Encoding other than 7bit/8bit/binary (RFC 2046
 * 5.2.1 forbids it; its body is not a readable message), and a container
 * that would exceed STORE_MIME_MAX_DEPTH or STORE_MIME_MAX_PARTS.  Clients
 * can still fetch its bytes as that section.
 *
 * Parsing choices the header leaves open:
 *   - A delimiter line is "--" boundary, optionally "--", then only spaces
 *     or tabs up to the line end (RFC 2046); a plain prefix match would cut
 *     a part at an inner boundary that extends the outer one.  After a close
 *     delimiter ("--boundary--") trailing junk on the line is tolerated.
 *     Lines after the close delimiter are epilogue and are not searched.
 *   - The line end before a delimiter belongs to the delimiter; a
 *     delimiter line directly after the previous one gives an empty part.
 *   - A part's header runs to the first empty line; lines that are not
 *     fields (no colon) are part of it, as in Dovecot.  A part starting
 *     with an empty line has a header of just that line (hdr_len 2 or 1);
 *     hdr_len is 0 only for an empty part.
 *   - lines counts LF bytes plus one for a final line without LF.
 *   - Content-* fields: first occurrence wins, as for envelope fields.  An
 *     unparseable Content-Type yields the default type (parameters after
 *     the first ';' are still read).  A Content-Disposition with no token is
 *     NIL and its parameters are dropped.
 *   - RFC 2231: name*0, name*1... are joined from 0 up to the first gap; the
 *     joined parameter takes the place of name*0.  If name*0* is extended
 *     the result is "name*" and unextended segments are percent-encoded
 *     into it; otherwise extended segments are percent-decoded.  Segments
 *     that cannot be joined (gaps, duplicates, no segment 0) are kept under
 *     their own names.
 *   - At most MAX_PARAMS parameters are read per header field; the rest are
 *     dropped.
 *   - Header values keep NUL and 8-bit bytes; whoever sends them to a client
 *     must cope (a store_str has a length).  They are not truncated.
 *
 * Cost: each container scans its own body once for its boundary (memmem)
 * and text/message bodies are scanned once for line ends, so the work is
 * at most (STORE_MIME_MAX_DEPTH + 1) passes over the message, never
 * quadratic in the number of parts or header lines.  Recursion is bounded by
 * STORE_MIME_MAX_DEPTH.
 */
#include "store/message.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"  /* store_cache_reopen */
#include "store/store.h"    /* store_crc32c: one CRC32C for records and blobs */

#define BLOB_MAGIC "RMcb"
#define BLOB_VERSION 4
#define HDR_SIZE 44
#define HDR_SIZE_V3 40  /* versions 1 to 3: no preview field */
#define PART_SIZE 88
#define ENV_SIZE 44
#define PARAM_SIZE 8
#define NIL_REF UINT32_MAX
#define INTERN_MAX 64   /* strings up to this long are deduplicated */
/* Parameters read per Content-Type or Content-Disposition.  Real mail has a
 * handful; the cap keeps a hostile header from costing a sort of millions
 * and a blob of tens of MB. */
#define MAX_PARAMS 256

enum { PS_TYPE, PS_SUBTYPE, PS_ID, PS_DESC, PS_ENC, PS_MD5, PS_DISP,
       PS_LANG, PS_LOC, NPSTR };

/* Header fields we keep.  The first NENV are the envelope's, in the order
 * of store_envelope. */
enum { H_DATE, H_SUBJECT, H_FROM, H_SENDER, H_REPLY_TO, H_TO, H_CC, H_BCC,
       H_IN_REPLY_TO, H_MESSAGE_ID, H_REFERENCES, NENV = H_REFERENCES + 1,
       H_CTYPE = NENV, H_CID, H_CDESC, H_CTE, H_CMD5, H_CDISP, H_CLANG,
       H_CLOC, NHF };

static const struct { const char *name; size_t len; } hf_names[NHF] = {
#define N(s) { s, sizeof(s) - 1 }
    N("date"), N("subject"), N("from"), N("sender"), N("reply-to"), N("to"),
    N("cc"), N("bcc"), N("in-reply-to"), N("message-id"), N("references"),
    N("content-type"), N("content-id"), N("content-description"),
    N("content-transfer-encoding"), N("content-md5"),
    N("content-disposition"), N("content-language"), N("content-location"),
#undef N
};

/* ------------------------------------------------------------------ */
/* Byte order and checksum                                             */

static inline uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t blob_crc(const uint8_t *b, uint32_t total)
{
    uint32_t crc = store_crc32c(0, b, 12);
    return store_crc32c(crc, b + 16, total - 16);
}

/* ------------------------------------------------------------------ */
/* Buffers                                                             */

int store_buf_reserve(store_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX - b->len)
        return -ENOMEM;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int store_buf_append(store_buf *b, const void *p, size_t n)
{
    int r = store_buf_reserve(b, n);
    if (r)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Grow the array whose pointer is at arrp (a T **) to hold at least need
 * elements.  The pointer is moved with memcpy so that no T * is accessed
 * as a void *. */
static int grow(void *arrp, uint32_t *cap, size_t need, size_t elsize)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    if (n > UINT32_MAX || n > SIZE_MAX / elsize)
        return -ENOMEM;
    void *arr;
    memcpy(&arr, arrp, sizeof arr);
    void *p = realloc(arr, n * elsize);
    if (!p)
        return -ENOMEM;
    memcpy(arrp, &p, sizeof p);
    *cap = (uint32_t)n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The parser                                                          */

typedef struct bpart {
    uint32_t str[NPSTR];
    uint32_t hdr_off, hdr_len, body_off, body_len, lines;
    uint32_t param_first, nparams, ndisp;
    uint32_t parent, first_child, next_sibling, nchildren;
    int32_t envelope;
} bpart;

typedef struct benv { uint32_t str[NENV]; } benv;
typedef struct bparam { uint32_t name, value; } bparam;

/* A parameter as read, before RFC 2231 joining; offsets into parser.tmp2. */
typedef struct rparam {
    uint32_t name, name_len, val, val_len;
    uint32_t base_len;      /* name without "*N" and trailing '*' */
    uint32_t order;
    int32_t seg;            /* continuation number, -1 if none */
    uint8_t ext;            /* name ended in '*' */
    uint8_t emit;           /* 0 as is, 1 joined head, 2 folded into head */
    const char *nm;         /* valid only while sorting */
} rparam;

typedef struct parser {
    const char *msg;
    size_t len;
    bpart *parts;
    uint32_t nparts, cap_parts;
    benv *envs;
    uint32_t nenvs, cap_envs;
    bparam *params;
    uint32_t nparams, cap_params;
    store_buf pool;
    uint32_t *itab;             /* intern table: pool offset + 1, 0 free */
    uint32_t itab_cap, itab_used;
    store_buf tmp;              /* an unfolded header value */
    store_buf tmp2;             /* parameter names and values */
    rparam *rp;
    uint32_t nrp, cap_rp;
    rparam **rps;
    uint32_t cap_rps;
    bool full;                  /* part limit hit: split nothing more */
    uint32_t rendered;          /* pool ref of the rendered envelope, or NIL */
    uint32_t preview;           /* pool ref of the preview, or NIL */
} parser;

typedef struct fields {
    size_t start[NHF], end[NHF];    /* value range; start SIZE_MAX = absent */
} fields;

static inline char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != b[i])
            return false;
    return true;
}

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int intern_grow(parser *P)
{
    uint32_t ncap = P->itab_cap ? P->itab_cap * 2 : 64;
    uint32_t *t = calloc(ncap, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (uint32_t i = 0; i < P->itab_cap; i++) {
        uint32_t e = P->itab[i];
        if (!e)
            continue;
        const uint8_t *s = P->pool.data + e - 1;
        uint32_t h = hash_bytes((const char *)s + 4, ld32(s)) & (ncap - 1);
        while (t[h])
            h = (h + 1) & (ncap - 1);
        t[h] = e;
    }
    free(P->itab);
    P->itab = t;
    P->itab_cap = ncap;
    return 0;
}

/* Add a string to the pool and return its ref.  s may be NULL if n == 0. */
static int pool_add(parser *P, const char *s, size_t n, uint32_t *ref)
{
    uint32_t *slot = NULL;
    if (n <= INTERN_MAX) {
        if (P->itab_used * 2 >= P->itab_cap && intern_grow(P))
            return -ENOMEM;
        uint32_t h = hash_bytes(s, n) & (P->itab_cap - 1);
        for (;;) {
            uint32_t e = P->itab[h];
            if (!e) {
                slot = &P->itab[h];
                break;
            }
            const uint8_t *q = P->pool.data + e - 1;
            if (ld32(q) == n && (n == 0 || !memcmp(q + 4, s, n))) {
                *ref = e - 1;
                return 0;
            }
            h = (h + 1) & (P->itab_cap - 1);
        }
    }
    /* Offsets must stay below NIL_REF and the whole blob below 4 GiB. */
    if (n > UINT32_MAX - 8 || P->pool.len > UINT32_MAX - 8 - n)
        return -EFBIG;
    if (store_buf_reserve(&P->pool, 4 + n))
        return -ENOMEM;
    uint32_t off = (uint32_t)P->pool.len;
    st32(P->pool.data + off, (uint32_t)n);
    if (n)
        memcpy(P->pool.data + off + 4, s, n);
    P->pool.len += 4 + n;
    if (slot) {
        *slot = off + 1;
        P->itab_used++;
    }
    *ref = off;
    return 0;
}

static int pool_lit(parser *P, const char *s, uint32_t *ref)
{
    return pool_add(P, s, strlen(s), ref);
}

/* Add a lowercased copy (for type, subtype, disposition). */
static int pool_add_lower(parser *P, const char *s, size_t n, uint32_t *ref)
{
    P->tmp2.len = 0;
    if (store_buf_reserve(&P->tmp2, n))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        P->tmp2.data[i] = (uint8_t)lower(s[i]);
    return pool_add(P, (const char *)P->tmp2.data, n, ref);
}

/* Index just past the line starting at or containing pos, within end. */
static size_t next_line(const parser *P, size_t pos, size_t end)
{
    const char *nl = memchr(P->msg + pos, '\n', end - pos);
    return nl ? (size_t)(nl - P->msg) + 1 : end;
}

/* The number of '\n' bytes in [p, p+n). */
static uint64_t count_lf(const char *p, size_t n)
{
    uint64_t c = 0;
    size_t i = 0;
    /* Eight bytes at a time: each matching byte yields an exact 0x01 in
     * acc, whose bytes are summed before they can overflow. */
    while (n - i >= 8) {
        uint64_t acc = 0;
        for (int k = 0; k < 255 && n - i >= 8; k++, i += 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            uint64_t x = w ^ 0x0a0a0a0a0a0a0a0aull;
            uint64_t t = ((x & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | x;
            acc += (~t & 0x8080808080808080ull) >> 7;
        }
        c += (acc * 0x0101010101010101ull) >> 56;
    }
    for (; i < n; i++)
        c += p[i] == '\n';
    return c;
}

static uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Body lines: LFs, plus a last line that has none. */
static uint32_t count_lines(const char *p, size_t n)
{
    return clamp32(count_lf(p, n) + (n && p[n - 1] != '\n'));
}

static int field_index(const char *name, size_t n)
{
    if (n < 2 || n > 25)
        return -1;
    for (int i = 0; i < NHF; i++)
        if (hf_names[i].len == n && ieq(name, n, hf_names[i].name))
            return i;
    return -1;
}

/* Read the header of the entity at [start, end): remember the first
 * occurrence of each field we keep, and find where the header ends (after
 * the empty line, or at end if there is none). */
static size_t scan_header(const parser *P, size_t start, size_t end, fields *f)
{
    const char *m = P->msg;
    for (int i = 0; i < NHF; i++)
        f->start[i] = SIZE_MAX;
    size_t pos = start;
    for (;;) {
        if (pos >= end)
            return end;
        if (m[pos] == '\n')
            return pos + 1;
        if (m[pos] == '\r' && pos + 1 < end && m[pos + 1] == '\n')
            return pos + 2;
        size_t first = next_line(P, pos, end);
        size_t fe = first;
        while (fe < end && (m[fe] == ' ' || m[fe] == '\t'))
            fe = next_line(P, fe, end);
        const char *colon = memchr(m + pos, ':', first - pos);
        if (colon) {
            size_t ne = (size_t)(colon - m);
            while (ne > pos && (m[ne - 1] == ' ' || m[ne - 1] == '\t'))
                ne--;
            int k = field_index(m + pos, ne - pos);
            if (k >= 0 && f->start[k] == SIZE_MAX) {
                f->start[k] = (size_t)(colon - m) + 1;
                f->end[k] = fe;
            }
        }
        pos = fe;
    }
}

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Unfold the value of field k into P->tmp and trim it. */
static int unfold(parser *P, const fields *f, int k, const char **out,
                  size_t *outn)
{
    size_t s = f->start[k], e = f->end[k];
    P->tmp.len = 0;
    if (store_buf_reserve(&P->tmp, e - s + 1))
        return -ENOMEM;
    char *d = (char *)P->tmp.data;
    size_t n = 0;
    const char *p = P->msg + s, *pe = P->msg + e;
    while (p < pe) {
        const char *nl = memchr(p, '\n', (size_t)(pe - p));
        size_t chunk = (size_t)((nl ? nl : pe) - p);
        size_t keep = chunk;
        if (nl && keep && p[keep - 1] == '\r')
            keep--;
        memcpy(d + n, p, keep);
        n += keep;
        if (!nl)
            break;
        p = nl + 1;
    }
    size_t a = 0;
    while (a < n && is_ws(d[a]))
        a++;
    while (n > a && is_ws(d[n - 1]))
        n--;
    *out = d + a;
    *outn = n - a;
    return 0;
}

/* Unfold field k into the pool; NIL if absent. */
static int field_to_pool(parser *P, const fields *f, int k, uint32_t *ref)
{
    if (f->start[k] == SIZE_MAX) {
        *ref = NIL_REF;
        return 0;
    }
    const char *s;
    size_t n;
    int r = unfold(P, f, k, &s, &n);
    return r ? r : pool_add(P, s, n, ref);
}

/* Skip whitespace and RFC 822 comments (nested, with quoted pairs). */
static size_t skip_cfws(const char *s, size_t i, size_t n)
{
    while (i < n) {
        if (is_ws(s[i])) {
            i++;
        } else if (s[i] == '(') {
            int depth = 0;
            for (; i < n; i++) {
                if (s[i] == '\\' && i + 1 < n)
                    i++;
                else if (s[i] == '(')
                    depth++;
                else if (s[i] == ')' && --depth == 0) {
                    i++;
                    break;
                }
            }
        } else {
            break;
        }
    }
    return i;
}

/* A token for type/subtype/disposition: lenient, stops at whitespace, a
 * comment, ';', and '/' if slash_stops. */
static size_t token_end(const char *s, size_t i, size_t n, bool slash_stops)
{
    while (i < n && !is_ws(s[i]) && s[i] != '(' && s[i] != ';' &&
           !(slash_stops && s[i] == '/'))
        i++;
    return i;
}

static int rp_cmp(const void *a, const void *b)
{
    const rparam *x = *(rparam *const *)a, *y = *(rparam *const *)b;
    size_t n = x->base_len < y->base_len ? x->base_len : y->base_len;
    int c = memcmp(x->nm, y->nm, n);
    if (c)
        return c;
    if (x->base_len != y->base_len)
        return x->base_len < y->base_len ? -1 : 1;
    if (x->seg != y->seg)
        return x->seg < y->seg ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* RFC 2231 attribute-char: what may stand unencoded in an extended value. */
static bool attr_char(uint8_t c)
{
    if (c <= ' ' || c >= 0x7f)
        return false;
    return !strchr("*'%()<>@,;:\\\"/[]?=", c);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Join the continuation segments segs[0..nseg) (in order) into one
 * parameter, written to the end of tmp2; the head (segs[0]) gets the result. */
static int join_segments(parser *P, rparam **segs, uint32_t nseg)
{
    rparam *head = segs[0];
    size_t need = head->base_len + 1;
    for (uint32_t i = 0; i < nseg; i++)
        need += (size_t)segs[i]->val_len * 3;
    if (need > UINT32_MAX - P->tmp2.len)
        return -EFBIG;
    if (store_buf_reserve(&P->tmp2, need))
        return -ENOMEM;
    uint8_t *t = P->tmp2.data;
    size_t o = P->tmp2.len;
    uint32_t name = (uint32_t)o;
    memmove(t + o, t + head->name, head->base_len);
    o += head->base_len;
    if (head->ext)
        t[o++] = '*';
    uint32_t name_len = (uint32_t)(o - name), val = (uint32_t)o;
    static const char hex[] = "0123456789ABCDEF";
    for (uint32_t i = 0; i < nseg; i++) {
        const uint8_t *v = t + segs[i]->val;
        uint32_t n = segs[i]->val_len;
        if (head->ext && !segs[i]->ext) {
            for (uint32_t j = 0; j < n; j++) {
                if (attr_char(v[j])) {
                    t[o++] = v[j];
                } else {
                    t[o++] = '%';
                    t[o++] = (uint8_t)hex[v[j] >> 4];
                    t[o++] = (uint8_t)hex[v[j] & 15];
                }
            }
        } else if (!head->ext && segs[i]->ext) {
            for (uint32_t j = 0; j < n; j++) {
                int h, l;
                if (v[j] == '%' && j + 2 < n &&
                    (h = hexval((char)v[j + 1])) >= 0 &&
                    (l = hexval((char)v[j + 2])) >= 0) {
                    t[o++] = (uint8_t)(h << 4 | l);
                    j += 2;
                } else {
                    t[o++] = v[j];
                }
            }
        } else {
            memmove(t + o, v, n);
            o += n;
        }
    }
    head->name = name;
    head->name_len = name_len;
    head->val = val;
    head->val_len = (uint32_t)(o - val);
    P->tmp2.len = o;
    return 0;
}

/* Copy the value at s[i..n) to t + *o: a quoted-string without its quotes
 * and escapes, or a token.  Returns the index after it. */
static size_t copy_value(const char *s, size_t i, size_t n, uint8_t *t,
                         size_t *o)
{
    if (i < n && s[i] == '"') {
        for (i++; i < n && s[i] != '"'; i++) {
            if (s[i] == '\\' && i + 1 < n)
                i++;
            t[(*o)++] = (uint8_t)s[i];
        }
        if (i < n)
            i++;
    } else {
        while (i < n && s[i] != ';' && s[i] != ' ' && s[i] != '\t' &&
               s[i] != '(')
            t[(*o)++] = (uint8_t)s[i++];
    }
    return i;
}

/* Classify p's name (in t): name, name*, name*N, name*N*.  True for an
 * RFC 2231 continuation segment (name*N, name*N*). */
static bool classify_param(const uint8_t *t, rparam *p)
{
    const char *nm = (const char *)t + p->name;
    size_t L = p->name_len;
    if (L > 1 && nm[L - 1] == '*') {
        p->ext = 1;
        L--;
    }
    size_t k = L;
    while (k > 0 && nm[k - 1] >= '0' && nm[k - 1] <= '9')
        k--;
    p->seg = -1;
    p->base_len = (uint32_t)L;
    if (k < L && k > 1 && nm[k - 1] == '*' && L - k <= 6 &&
        !(L - k > 1 && nm[k] == '0')) {
        int32_t seg = 0;
        for (size_t d = k; d < L; d++)
            seg = seg * 10 + (nm[d] - '0');
        p->seg = seg;
        p->base_len = (uint32_t)(k - 1);
        return true;
    }
    return false;
}

/* Read "; name=value; ..." into P->rp as written, values and lowercased
 * names into P->tmp2; *nseg counts the continuation segments among them. */
static int scan_params(parser *P, const char *s, size_t n, uint32_t *nseg)
{
    int r;
    P->tmp2.len = 0;
    P->nrp = 0;
    if (n > UINT32_MAX / 2)
        return -EFBIG;
    if (store_buf_reserve(&P->tmp2, n + 1))
        return -ENOMEM;
    uint8_t *t = P->tmp2.data;
    size_t o = 0, i = 0;
    while (P->nrp < MAX_PARAMS) {
        i = skip_cfws(s, i, n);
        if (i >= n)
            break;
        if (s[i] != ';') {
            /* Junk after a value: resynchronise at the next ';'. */
            const char *q = memchr(s + i, ';', n - i);
            if (!q)
                break;
            i = (size_t)(q - s);
        }
        i = skip_cfws(s, i + 1, n);
        size_t ns = i;
        while (i < n && !is_ws(s[i]) && s[i] != '=' && s[i] != ';' &&
               s[i] != '(' && s[i] != '"')
            i++;
        size_t ne = i;
        i = skip_cfws(s, i, n);
        if (i >= n || s[i] != '=')
            continue;
        i = skip_cfws(s, i + 1, n);
        size_t vo = o;
        i = copy_value(s, i, n, t, &o);
        if (ne == ns) {
            o = vo;
            continue;
        }
        if ((r = grow(&P->rp, &P->cap_rp, (size_t)P->nrp + 1, sizeof *P->rp)))
            return r;
        rparam *p = &P->rp[P->nrp];
        memset(p, 0, sizeof *p);
        p->val = (uint32_t)vo;
        p->val_len = (uint32_t)(o - vo);
        p->name = (uint32_t)o;
        for (size_t k = ns; k < ne; k++)
            t[o++] = (uint8_t)lower(s[k]);
        p->name_len = (uint32_t)(ne - ns);
        p->order = P->nrp++;
        if (classify_param(t, p))
            (*nseg)++;
    }
    P->tmp2.len = o;
    return 0;
}

/* RFC 2231: join each name's segments 0, 1, 2 ... (the first of
 * duplicates, up to a gap) into its head; the others are marked folded. */
static int join_continuations(parser *P, uint32_t nseg)
{
    int r;
    if ((r = grow(&P->rps, &P->cap_rps, nseg, sizeof *P->rps)))
        return r;
    uint32_t m = 0;
    for (uint32_t j = 0; j < P->nrp; j++) {
        if (P->rp[j].seg >= 0) {
            P->rp[j].nm = (const char *)P->tmp2.data + P->rp[j].name;
            P->rps[m++] = &P->rp[j];
        }
    }
    qsort(P->rps, m, sizeof *P->rps, rp_cmp);
    for (uint32_t g = 0; g < m;) {
        /* Not ->nm: an earlier join may have moved tmp2. */
        const uint8_t *t2 = P->tmp2.data;
        uint32_t h = g + 1;
        while (h < m && P->rps[h]->base_len == P->rps[g]->base_len &&
               !memcmp(t2 + P->rps[h]->name, t2 + P->rps[g]->name,
                       P->rps[g]->base_len))
            h++;
        /* Take segments 0, 1, 2 ... (first of duplicates) up to a gap;
         * compact them to the front of the group. */
        int32_t expect = 0;
        uint32_t used = 0;
        for (uint32_t k = g; k < h; k++) {
            rparam *e = P->rps[k];
            if (e->seg == expect) {
                e->emit = expect ? 2 : 1;
                P->rps[g + used++] = e;
                expect++;
            } else if (e->seg > expect) {
                break;
            }
        }
        if (used && (r = join_segments(P, P->rps + g, used)))
            return r;
        g = h;
    }
    return 0;
}

/* Append the parameters that were not folded into a head to P->params,
 * in the order written. */
static int emit_params(parser *P, uint32_t *count)
{
    int r;
    for (uint32_t j = 0; j < P->nrp; j++) {
        rparam *p = &P->rp[j];
        if (p->emit == 2)
            continue;
        if ((r = grow(&P->params, &P->cap_params, (size_t)P->nparams + 1,
                      sizeof *P->params)))
            return r;
        bparam *bp = &P->params[P->nparams];
        const char *base = (const char *)P->tmp2.data;
        if ((r = pool_add(P, base + p->name, p->name_len, &bp->name)) ||
            (r = pool_add(P, base + p->val, p->val_len, &bp->value)))
            return r;
        P->nparams++;
        (*count)++;
    }
    return 0;
}

/* Parse "; name=value; ..." and append the parameters to P->params. */
static int parse_params(parser *P, const char *s, size_t n, uint32_t *count)
{
    uint32_t nseg = 0;
    int r;
    *count = 0;
    if ((r = scan_params(P, s, n, &nseg)) ||
        (nseg && (r = join_continuations(P, nseg))))
        return r;
    return emit_params(P, count);
}

static bool pool_eq(const parser *P, uint32_t ref, const char *lit)
{
    if (ref == NIL_REF)
        return false;
    const uint8_t *q = P->pool.data + ref;
    size_t n = strlen(lit);
    return ld32(q) == n && !memcmp(q + 4, lit, n);
}

typedef struct ctinfo {
    bool multipart, message, text, digest;
    char *needle;           /* "\n--" boundary, malloc'd; NULL if none */
    size_t needle_len;
} ctinfo;

/* Content-Type of part idx: type, subtype, parameters, boundary. */
static int do_content_type(parser *P, uint32_t idx, const fields *f,
                           bool digest_child, ctinfo *ci)
{
    int r;
    uint32_t type = NIL_REF, subtype = NIL_REF, np = 0;
    P->parts[idx].param_first = P->nparams;
    if (f->start[H_CTYPE] != SIZE_MAX) {
        const char *s;
        size_t n;
        if ((r = unfold(P, f, H_CTYPE, &s, &n)))
            return r;
        size_t i = skip_cfws(s, 0, n);
        size_t ts = i, te = token_end(s, i, n, true);
        i = skip_cfws(s, te, n);
        size_t ss = 0, se = 0;
        bool ok = false;
        if (te > ts && i < n && s[i] == '/') {
            ss = skip_cfws(s, i + 1, n);
            se = token_end(s, ss, n, false);
            ok = se > ss;
            i = se;
        }
        if (ok) {
            if ((r = pool_add_lower(P, s + ts, te - ts, &type)) ||
                (r = pool_add_lower(P, s + ss, se - ss, &subtype)))
                return r;
        } else {
            const char *q = memchr(s, ';', n);
            i = q ? (size_t)(q - s) : n;
        }
        /* s points into P->tmp, which parse_params leaves alone. */
        if ((r = parse_params(P, s + i, n - i, &np)))
            return r;
    }
    if (type == NIL_REF) {
        if ((r = pool_lit(P, digest_child ? "message" : "text", &type)) ||
            (r = pool_lit(P, digest_child ? "rfc822" : "plain", &subtype)))
            return r;
    }
    bpart *p = &P->parts[idx];
    p->str[PS_TYPE] = type;
    p->str[PS_SUBTYPE] = subtype;
    p->nparams = np;
    ci->multipart = pool_eq(P, type, "multipart");
    ci->digest = ci->multipart && pool_eq(P, subtype, "digest");
    ci->message = pool_eq(P, type, "message") &&
                  (pool_eq(P, subtype, "rfc822") || pool_eq(P, subtype, "global"));
    ci->text = pool_eq(P, type, "text");
    if (ci->multipart) {
        for (uint32_t j = p->param_first; j < p->param_first + np; j++) {
            if (!pool_eq(P, P->params[j].name, "boundary"))
                continue;
            const uint8_t *v = P->pool.data + P->params[j].value;
            uint32_t vl = ld32(v);
            if (!vl)
                break;
            ci->needle = malloc((size_t)vl + 3);
            if (!ci->needle)
                return -ENOMEM;
            memcpy(ci->needle, "\n--", 3);
            memcpy(ci->needle + 3, v + 4, vl);
            ci->needle_len = (size_t)vl + 3;
            break;
        }
    }
    return 0;
}

static int do_disposition(parser *P, uint32_t idx, const fields *f)
{
    int r;
    uint32_t disp = NIL_REF, np = 0;
    if (f->start[H_CDISP] != SIZE_MAX) {
        const char *s;
        size_t n;
        if ((r = unfold(P, f, H_CDISP, &s, &n)))
            return r;
        size_t ts = skip_cfws(s, 0, n), te = token_end(s, ts, n, false);
        if (te > ts) {
            if ((r = pool_add_lower(P, s + ts, te - ts, &disp)) ||
                (r = parse_params(P, s + te, n - te, &np)))
                return r;
        }
    }
    P->parts[idx].str[PS_DISP] = disp;
    P->parts[idx].ndisp = np;
    return 0;
}

/* Is there a delimiter line for needle (= "\n--" boundary) starting at ls?
 * On success *after is the start of the next line. */
static bool delim_at(const parser *P, const ctinfo *ci, size_t ls, size_t end,
                     bool *close, size_t *after)
{
    const char *m = P->msg;
    size_t blen = ci->needle_len - 1;       /* "--" boundary */
    if (end - ls < blen || memcmp(m + ls, ci->needle + 1, blen))
        return false;
    size_t pos = ls + blen;
    if (end - pos >= 2 && m[pos] == '-' && m[pos + 1] == '-') {
        *close = true;
        *after = next_line(P, pos, end);
        return true;
    }
    *close = false;
    while (pos < end && (m[pos] == ' ' || m[pos] == '\t'))
        pos++;
    if (pos == end) {
        *after = end;
        return true;
    }
    if (m[pos] == '\n') {
        *after = pos + 1;
        return true;
    }
    if (m[pos] == '\r' && (pos + 1 == end || m[pos + 1] == '\n')) {
        *after = pos + 1 == end ? end : pos + 2;
        return true;
    }
    return false;
}

/* Find the next delimiter line whose preceding '\n' is at or after from. */
static bool find_delim(const parser *P, const ctinfo *ci, size_t from,
                       size_t end, size_t *ls, bool *close, size_t *after)
{
    while (from < end) {
        const char *q = memmem(P->msg + from, end - from, ci->needle,
                               ci->needle_len);
        if (!q)
            return false;
        size_t nl = (size_t)(q - P->msg);
        if (delim_at(P, ci, nl + 1, end, close, after)) {
            *ls = nl + 1;
            return true;
        }
        from = nl + 1;
    }
    return false;
}

static int make_opaque(parser *P, uint32_t idx, ctinfo *ci)
{
    int r;
    uint32_t t, s;
    if ((r = pool_lit(P, "application", &t)) ||
        (r = pool_lit(P, "octet-stream", &s)))
        return r;
    P->parts[idx].str[PS_TYPE] = t;
    P->parts[idx].str[PS_SUBTYPE] = s;
    ci->multipart = ci->message = ci->text = ci->digest = false;
    return 0;
}

/* RFC 2046 5.2.1: a message body may only be 7bit, 8bit or binary.
 * Returns 1 if it is, 0 if not, or -ENOMEM. */
static int identity_encoding(parser *P, const fields *f)
{
    if (f->start[H_CTE] == SIZE_MAX)
        return 1;
    const char *s;
    size_t n;
    int r = unfold(P, f, H_CTE, &s, &n);
    if (r)
        return r;
    size_t ts = skip_cfws(s, 0, n), te = token_end(s, ts, n, false);
    return te == ts || ieq(s + ts, te - ts, "7bit") ||
           ieq(s + ts, te - ts, "8bit") || ieq(s + ts, te - ts, "binary");
}

static int parse_entity(parser *P, size_t start, size_t end, uint32_t depth,
                        uint32_t parent, bool digest_child, bool root,
                        uint32_t *out_idx, int32_t *out_env);

/* Split the body of multipart part idx into children. */
static int split_multipart(parser *P, uint32_t idx, uint32_t depth,
                           size_t bs, size_t be, ctinfo *ci)
{
    int r;
    size_t ls, after;
    bool close;
    bool found = delim_at(P, ci, bs, be, &close, &after);
    if (found)
        ls = bs;
    else
        found = find_delim(P, ci, bs, be, &ls, &close, &after);
    if (!found)
        return make_opaque(P, idx, ci);
    uint32_t prev = 0;
    while (!close) {
        if (P->nparts >= STORE_MIME_MAX_PARTS) {
            P->full = true;
            break;
        }
        size_t ps = after, nls = 0, nafter = 0, pe;
        bool nclose = false;
        /* The '\n' ending our delimiter line may start the next one. */
        size_t from = ps > ls ? ps - 1 : ps;
        bool more = ps < be && find_delim(P, ci, from, be, &nls, &nclose, &nafter);
        if (more) {
            pe = nls - 1;
            if (pe > ps && P->msg[pe - 1] == '\r')
                pe--;
            if (pe < ps)
                pe = ps;
        } else {
            pe = be;
        }
        uint32_t child;
        int32_t env;
        if ((r = parse_entity(P, ps, pe, depth + 1, idx, ci->digest, false,
                              &child, &env)))
            return r;
        if (prev)
            P->parts[prev].next_sibling = child;
        else
            P->parts[idx].first_child = child;
        P->parts[idx].nchildren++;
        prev = child;
        if (!more || P->full)
            break;
        ls = nls;
        close = nclose;
        after = nafter;
    }
    /* Only a close delimiter: no parts, which IMAP cannot express. */
    if (!P->parts[idx].nchildren)
        return make_opaque(P, idx, ci);
    return 0;
}

/* Record the entity at [start, end) and, recursively, its parts.  The caller
 * has checked that there is room for one more part. */
static int parse_entity(parser *P, size_t start, size_t end, uint32_t depth,
                        uint32_t parent, bool digest_child, bool root,
                        uint32_t *out_idx, int32_t *out_env)
{
    int r;
    fields f;
    ctinfo ci = {0};
    size_t hdr_end = scan_header(P, start, end, &f);

    if ((r = grow(&P->parts, &P->cap_parts, (size_t)P->nparts + 1,
                  sizeof *P->parts)))
        return r;
    uint32_t idx = P->nparts++;
    bpart *p = &P->parts[idx];
    memset(p, 0, sizeof *p);
    for (int i = 0; i < NPSTR; i++)
        p->str[i] = NIL_REF;
    p->parent = parent;
    p->hdr_off = (uint32_t)start;
    p->hdr_len = (uint32_t)(hdr_end - start);
    p->body_off = (uint32_t)hdr_end;
    p->body_len = (uint32_t)(end - hdr_end);
    p->envelope = -1;
    *out_idx = idx;
    *out_env = -1;

    if (root) {
        if ((r = grow(&P->envs, &P->cap_envs, (size_t)P->nenvs + 1,
                      sizeof *P->envs)))
            return r;
        uint32_t e = P->nenvs++;
        for (int k = 0; k < NENV; k++)
            if ((r = field_to_pool(P, &f, k, &P->envs[e].str[k])))
                return r;
        *out_env = (int32_t)e;
    }

    static const struct { int h, s; } simple[] = {
        { H_CID, PS_ID }, { H_CDESC, PS_DESC }, { H_CTE, PS_ENC },
        { H_CMD5, PS_MD5 }, { H_CLANG, PS_LANG }, { H_CLOC, PS_LOC },
    };
    for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++) {
        uint32_t ref;
        if ((r = field_to_pool(P, &f, simple[k].h, &ref)))
            return r;
        P->parts[idx].str[simple[k].s] = ref;
    }
    if ((r = do_content_type(P, idx, &f, digest_child, &ci)) ||
        (r = do_disposition(P, idx, &f)))
        goto out;

    /* Room for the container's first child?  A container needs one. */
    bool room = depth + 1 <= STORE_MIME_MAX_DEPTH && !P->full &&
                P->nparts < STORE_MIME_MAX_PARTS;
    if (ci.multipart) {
        if (!ci.needle || !room) {
            if (P->nparts >= STORE_MIME_MAX_PARTS)
                P->full = true;
            r = make_opaque(P, idx, &ci);
        } else {
            r = split_multipart(P, idx, depth, hdr_end, end, &ci);
        }
    } else if (ci.message) {
        int ident = identity_encoding(P, &f);
        if (ident < 0) {
            r = ident;
        } else if (!room || !ident) {
            if (P->nparts >= STORE_MIME_MAX_PARTS)
                P->full = true;
            r = make_opaque(P, idx, &ci);
        } else {
            uint32_t child;
            int32_t env;
            r = parse_entity(P, hdr_end, end, depth + 1, idx, false, true,
                             &child, &env);
            if (!r) {
                P->parts[idx].first_child = child;
                P->parts[idx].nchildren = 1;
                P->parts[idx].envelope = env;
            }
        }
    }
    if (r)
        goto out;
    if (ci.message) {
        /* The embedded root's lines, if counted, are the tail of ours: count
         * only its header, so nested messages do not rescan the body. */
        const bpart *ch = &P->parts[P->parts[idx].first_child];
        if (ch->body_len && ch->lines)
            P->parts[idx].lines = clamp32(ch->lines +
                count_lf(P->msg + hdr_end, ch->body_off - hdr_end));
        else
            P->parts[idx].lines = count_lines(P->msg + hdr_end, end - hdr_end);
    } else if (ci.text) {
        P->parts[idx].lines = count_lines(P->msg + hdr_end, end - hdr_end);
    }
out:
    free(ci.needle);
    return r;
}

static int emit_blob(parser *P, store_buf *out)
{
    uint64_t total = HDR_SIZE + (uint64_t)P->nparts * PART_SIZE +
                     (uint64_t)P->nenvs * ENV_SIZE +
                     (uint64_t)P->nparams * PARAM_SIZE + P->pool.len;
    if (total > UINT32_MAX)
        return -EFBIG;
    int r = store_buf_reserve(out, (size_t)total);
    if (r)
        return r;
    uint8_t *b = out->data + out->len, *w = b + HDR_SIZE;
    memcpy(b, BLOB_MAGIC, 4);
    b[4] = BLOB_VERSION;
    b[5] = 0;
    b[6] = HDR_SIZE;
    b[7] = 0;
    st32(b + 8, (uint32_t)total);
    st32(b + 16, (uint32_t)P->len);
    st32(b + 20, P->nparts);
    st32(b + 24, P->nenvs);
    st32(b + 28, P->nparams);
    st32(b + 32, (uint32_t)P->pool.len);
    st32(b + 36, P->rendered);
    st32(b + 40, P->preview);
    for (uint32_t i = 0; i < P->nparts; i++, w += PART_SIZE) {
        const bpart *p = &P->parts[i];
        for (int k = 0; k < NPSTR; k++)
            st32(w + 4 * k, p->str[k]);
        const uint32_t v[] = { p->hdr_off, p->hdr_len, p->body_off,
                               p->body_len, p->lines, p->param_first,
                               p->nparams, p->ndisp, p->parent,
                               p->first_child, p->next_sibling, p->nchildren,
                               (uint32_t)p->envelope };
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
            st32(w + 4 * NPSTR + 4 * k, v[k]);
    }
    for (uint32_t i = 0; i < P->nenvs; i++, w += ENV_SIZE)
        for (int k = 0; k < NENV; k++)
            st32(w + 4 * k, P->envs[i].str[k]);
    for (uint32_t i = 0; i < P->nparams; i++, w += PARAM_SIZE) {
        st32(w, P->params[i].name);
        st32(w + 4, P->params[i].value);
    }
    if (P->pool.len)
        memcpy(w, P->pool.data, P->pool.len);
    st32(b + 12, blob_crc(b, (uint32_t)total));
    out->len += (size_t)total;
    return 0;
}

static store_envelope_renderer *renderer;
static store_previewer *previewer;

void store_msg_set_renderer(store_envelope_renderer *fn)
{
    renderer = fn;
}

void store_msg_set_previewer(store_previewer *fn)
{
    previewer = fn;
}

/* The blob is at out[old..]: render its envelope and make its preview
 * through the hooks, and emit the blob again with what they gave in the
 * pool.  The envelope text is kept only if it is client-independent (7-bit,
 * no literal, so UTF8=ACCEPT does not change it).  A hook that fails
 * leaves its field NIL: the blob is as good, only slower to read. */
static int decorate(parser *P, store_buf *out, size_t old)
{
    store_cache c;
    store_buf txt = { 0 };
    bool changed = false;
    if (store_cache_open(out->data + old, out->len - old, &c) < 0)
        return 0;
    if (renderer && renderer(&c, &txt) == 0) {
        bool ok = txt.len <= UINT32_MAX / 2;
        for (size_t i = 0; ok && i < txt.len; i++)
            if (txt.data[i] >= 0x80 || txt.data[i] == '\r' || txt.data[i] == '\n')
                ok = false;
        uint32_t ref;
        if (ok && pool_add(P, (const char *)txt.data, txt.len, &ref) == 0) {
            P->rendered = ref;
            changed = true;
        }
    }
    txt.len = 0;
    if (previewer && previewer(&c, P->msg, P->len, &txt) == 0 &&
        txt.len <= STORE_PREVIEW_MAX) {
        uint32_t ref;
        if (pool_add(P, txt.data ? (const char *)txt.data : "", txt.len, &ref) == 0) {
            P->preview = ref;
            changed = true;
        }
    }
    free(txt.data);
    if (!changed)
        return 0;
    out->len = old;
    return emit_blob(P, out);
}

static _Atomic uint64_t parses;

uint64_t store_msg_parses(void)
{
    return atomic_load_explicit(&parses, memory_order_relaxed);
}

int store_msg_parse(const char *raw, size_t len, store_buf *out)
{
    if (len > UINT32_MAX)
        return -EFBIG;
    atomic_fetch_add_explicit(&parses, 1, memory_order_relaxed);
    parser P;
    memset(&P, 0, sizeof P);
    P.msg = raw && len ? raw : "";
    P.len = len;
    P.rendered = NIL_REF;
    P.preview = NIL_REF;
    uint32_t idx;
    int32_t env;
    size_t old = out->len;
    int r = parse_entity(&P, 0, len, 0, 0, false, true, &idx, &env);
    if (!r)
        r = emit_blob(&P, out);
    if (!r && (renderer || previewer))
        r = decorate(&P, out, old);
    if (r)
        out->len = old;
    free(P.parts);
    free(P.envs);
    free(P.params);
    free(P.pool.data);
    free(P.itab);
    free(P.tmp.data);
    free(P.tmp2.data);
    free(P.rp);
    free(P.rps);
    return r;
}

/* ------------------------------------------------------------------ */
/* Reading a blob                                                      */

static inline const uint8_t *part_rec(const store_cache *c, uint32_t i)
{
    return c->parts_ + (size_t)i * PART_SIZE;
}

/* Field k (0-based u32 index) of part i's record. */
static inline uint32_t pf(const store_cache *c, uint32_t i, int k)
{
    return ld32(part_rec(c, i) + 4 * k);
}

enum { PF_HDR_OFF = NPSTR, PF_HDR_LEN, PF_BODY_OFF, PF_BODY_LEN, PF_LINES,
       PF_PARAM_FIRST, PF_NPARAMS, PF_NDISP, PF_PARENT, PF_FIRST_CHILD,
       PF_NEXT_SIBLING, PF_NCHILDREN, PF_ENVELOPE };

static store_str get_str(const store_cache *c, uint32_t ref)
{
    store_str s = { NULL, 0 };
    if (ref != NIL_REF) {
        s.len = ld32(c->pool_ + ref);
        s.p = (const char *)c->pool_ + ref + 4;
    }
    return s;
}

static bool ref_ok(const store_cache *c, uint32_t ref, bool nil_ok)
{
    if (ref == NIL_REF)
        return nil_ok;
    if (ref > c->pool_len_ || c->pool_len_ - ref < 4)
        return false;
    return ld32(c->pool_ + ref) <= c->pool_len_ - ref - 4;
}

static bool str_is(const store_cache *c, uint32_t ref, const char *lit)
{
    store_str s = get_str(c, ref);
    size_t n = strlen(lit);
    return s.p && s.len == n && !memcmp(s.p, lit, n);
}

enum { K_LEAF, K_MULTIPART, K_MESSAGE };

static int part_kind(const store_cache *c, uint32_t i)
{
    if (str_is(c, pf(c, i, PS_TYPE), "multipart"))
        return K_MULTIPART;
    if (str_is(c, pf(c, i, PS_TYPE), "message") &&
        (str_is(c, pf(c, i, PS_SUBTYPE), "rfc822") ||
         str_is(c, pf(c, i, PS_SUBTYPE), "global")))
        return K_MESSAGE;
    return K_LEAF;
}

/* The O(1) part of opening a blob: the header, the counts against the
 * length, and the views into it.  Everything a later accessor relies on
 * beyond that is checked by blob_walk. */
static int cache_layout(const uint8_t *b, size_t len, store_cache *v)
{
    if (!b || len < HDR_SIZE_V3 || memcmp(b, BLOB_MAGIC, 4))
        return -EBADMSG;
    uint16_t version = ld16(b + 4);
    uint32_t hsize = version == BLOB_VERSION ? HDR_SIZE : HDR_SIZE_V3;
    if (version < 1 || version > BLOB_VERSION || ld16(b + 6) != hsize || len < hsize)
        return -EBADMSG;
    /* version 2's rendered text came from an older rendering */
    uint32_t rendered = version >= 3 ? ld32(b + 36) : NIL_REF;
    uint32_t preview = version >= 4 ? ld32(b + 40) : NIL_REF;
    uint32_t total = ld32(b + 8);
    uint32_t nparts = ld32(b + 20), nenvs = ld32(b + 24);
    uint32_t nparams = ld32(b + 28), pool_len = ld32(b + 32);
    if (total < hsize || total > len || (version == 1 && ld32(b + 36) != 0) || nparts == 0 ||
        nparts > STORE_MIME_MAX_PARTS || nenvs == 0 || nenvs > nparts)
        return -EBADMSG;
    uint64_t need = hsize + (uint64_t)nparts * PART_SIZE +
                    (uint64_t)nenvs * ENV_SIZE +
                    (uint64_t)nparams * PARAM_SIZE + pool_len;
    if (need != total)
        return -EBADMSG;

    memset(v, 0, sizeof *v);
    v->blob = b;
    v->len = total;
    v->nparts = nparts;
    v->nenvelopes = nenvs;
    v->parts_ = b + hsize;
    v->envs_ = v->parts_ + (size_t)nparts * PART_SIZE;
    v->params_ = v->envs_ + (size_t)nenvs * ENV_SIZE;
    v->pool_ = v->params_ + (size_t)nparams * PARAM_SIZE;
    v->nparams_total_ = nparams;
    v->pool_len_ = pool_len;
    v->rendered_ = rendered;
    v->preview_ = preview;
    return 0;
}

/* The header's string references, checked by store_cache_open only: each
 * is a read in the pool, far from the header (a cache miss per message of
 * a listing), and reopen trusts what open checked (seen.c). */
static bool header_refs_ok(const store_cache *v)
{
    return ref_ok(v, v->rendered_, true) && ref_ok(v, v->preview_, true) &&
           (v->preview_ == NIL_REF || ld32(v->pool_ + v->preview_) <= STORE_PREVIEW_MAX);
}

int store_cache_reopen(const void *blob, size_t len, store_cache *c)
{
    return cache_layout(blob, len, c);
}

int store_cache_open(const void *blob, size_t len, store_cache *c)
{
    store_cache v;
    int rc = cache_layout(blob, len, &v);
    if (rc < 0)
        return rc;
    const uint8_t *b = blob;
    if (ld32(b + 12) != blob_crc(b, v.len) || !header_refs_ok(&v))
        return -EBADMSG;
    uint32_t msg_len = ld32(b + 16);
    uint32_t nparts = v.nparts, nenvs = v.nenvelopes, nparams = v.nparams_total_;

    for (uint32_t i = 0; i < nenvs; i++)
        for (int k = 0; k < NENV; k++)
            if (!ref_ok(&v, ld32(v.envs_ + (size_t)i * ENV_SIZE + 4 * k), true))
                return -EBADMSG;
    for (uint32_t i = 0; i < nparams; i++)
        if (!ref_ok(&v, ld32(v.params_ + (size_t)i * PARAM_SIZE), false) ||
            !ref_ok(&v, ld32(v.params_ + (size_t)i * PARAM_SIZE + 4), false))
            return -EBADMSG;

    uint64_t children = 0;
    uint32_t next_env = 1;
    for (uint32_t i = 0; i < nparts; i++) {
        for (int k = 0; k < NPSTR; k++)
            if (!ref_ok(&v, pf(&v, i, k), k != PS_TYPE && k != PS_SUBTYPE))
                return -EBADMSG;
        uint64_t ho = pf(&v, i, PF_HDR_OFF), hl = pf(&v, i, PF_HDR_LEN);
        uint64_t bo = pf(&v, i, PF_BODY_OFF), bl = pf(&v, i, PF_BODY_LEN);
        uint32_t parent = pf(&v, i, PF_PARENT), fc = pf(&v, i, PF_FIRST_CHILD);
        uint32_t ns = pf(&v, i, PF_NEXT_SIBLING), nch = pf(&v, i, PF_NCHILDREN);
        int32_t env = (int32_t)pf(&v, i, PF_ENVELOPE);
        if (bo != ho + hl || bo + bl > msg_len || pf(&v, i, PF_LINES) > bl)
            return -EBADMSG;
        uint64_t pfirst = pf(&v, i, PF_PARAM_FIRST);
        if (pfirst + pf(&v, i, PF_NPARAMS) + pf(&v, i, PF_NDISP) > nparams)
            return -EBADMSG;
        if (i == 0) {
            if (parent != 0 || ho != 0 || ns != 0 || bo + bl != msg_len)
                return -EBADMSG;
        } else {
            if (parent >= i)
                return -EBADMSG;
            uint64_t pbo = pf(&v, parent, PF_BODY_OFF);
            uint64_t pbl = pf(&v, parent, PF_BODY_LEN);
            if (ho < pbo || bo + bl > pbo + pbl)
                return -EBADMSG;
            /* Depth: parents have lower indexes, so this ends. */
            uint32_t d = 0;
            for (uint32_t q = i; q != 0; q = pf(&v, q, PF_PARENT))
                if (++d > STORE_MIME_MAX_DEPTH)
                    return -EBADMSG;
        }
        if ((fc == 0) != (nch == 0))
            return -EBADMSG;
        if (fc && (fc <= i || fc >= nparts || pf(&v, fc, PF_PARENT) != i))
            return -EBADMSG;
        if (ns && (ns <= i || ns >= nparts || pf(&v, ns, PF_PARENT) != parent))
            return -EBADMSG;
        /* Each part is on exactly one chain (its parent's), so these walks
         * cost O(nparts) in total. */
        uint32_t count = 0;
        for (uint32_t q = fc, prev = i; q; prev = q, q = pf(&v, q, PF_NEXT_SIBLING))
            if (q <= prev || q >= nparts || pf(&v, q, PF_PARENT) != i ||
                ++count > nch)
                return -EBADMSG;
        if (count != nch)
            return -EBADMSG;
        children += nch;
        switch (part_kind(&v, i)) {
        case K_MULTIPART:
            if (nch == 0 || env != -1)
                return -EBADMSG;
            break;
        case K_MESSAGE:
            if (nch != 1 || env < 1 || (uint32_t)env != next_env++)
                return -EBADMSG;
            break;
        default:
            if (nch != 0 || env != -1)
                return -EBADMSG;
        }
    }
    if (children != nparts - 1 || next_env != nenvs)
        return -EBADMSG;
    *c = v;
    return 0;
}

uint32_t store_cache_msg_len(const store_cache *c)
{
    return ld32(c->blob + 16);
}

bool store_cache_is_current(const store_cache *c)
{
    return ld16(c->blob + 4) == BLOB_VERSION &&
           (c->preview_ != NIL_REF || !previewer);
}

bool store_cache_preview(const store_cache *c, store_str *out)
{
    *out = get_str(c, c->preview_);
    return out->p != NULL;
}

bool store_msg_prefix_safe(const char *raw, size_t len)
{
    if (len == 0 || raw[0] == '\n' || (len >= 2 && raw[0] == '\r' && raw[1] == '\n'))
        return true;
    /* field-name = 1*ftext, ftext = %d33-57 / %d59-126 (RFC 5322 3.6.8) */
    size_t i = 0;
    while (i < len && raw[i] >= 33 && raw[i] <= 126 && raw[i] != ':')
        i++;
    return i > 0 && i < len && raw[i] == ':';
}

int store_msg_prefixed(const void *blob, size_t len, size_t prefix, store_buf *out)
{
    store_cache c;
    int rc = store_cache_open(blob, len, &c);
    if (rc < 0)
        return rc;
    const uint8_t *b = blob;
    uint64_t msg_len = ld32(b + 16);
    if (msg_len + prefix > UINT32_MAX)
        return -EFBIG;
    size_t old = out->len;
    if ((rc = store_buf_append(out, blob, c.len)) < 0)
        return rc;
    uint8_t *nb = (uint8_t *)out->data + old;
    uint32_t k = (uint32_t)prefix;
    st32(nb + 16, (uint32_t)msg_len + k);
    uint8_t *parts = nb + (c.parts_ - c.blob);
    for (uint32_t i = 0; i < c.nparts; i++) {
        uint8_t *rec = parts + (size_t)i * PART_SIZE;
        if (i == 0) {
            /* the new fields belong to the root's header */
            st32(rec + 4 * PF_HDR_LEN, ld32(rec + 4 * PF_HDR_LEN) + k);
        } else {
            st32(rec + 4 * PF_HDR_OFF, ld32(rec + 4 * PF_HDR_OFF) + k);
        }
        st32(rec + 4 * PF_BODY_OFF, ld32(rec + 4 * PF_BODY_OFF) + k);
    }
    st32(nb + 12, blob_crc(nb, (uint32_t)c.len));
    return 0;
}

store_str store_cache_envelope_text(const store_cache *c)
{
    return get_str(c, c->rendered_);
}

int store_cache_envelope_fields(const store_cache *c, uint32_t i, unsigned fields,
                                store_envelope *out)
{
    _Static_assert(STORE_ENV_ALL == (1u << NENV) - 1, "one bit per envelope field");
    if (i >= c->nenvelopes)
        return -ERANGE;
    const uint8_t *e = c->envs_ + (size_t)i * ENV_SIZE;
    store_str *f[NENV] = {
        &out->date, &out->subject, &out->from, &out->sender, &out->reply_to,
        &out->to, &out->cc, &out->bcc, &out->in_reply_to, &out->message_id,
        &out->references,
    };
    for (int k = 0; k < NENV; k++)
        if (fields & (1u << k))
            *f[k] = get_str(c, ld32(e + 4 * k));
    return 0;
}

int store_cache_envelope(const store_cache *c, uint32_t i, store_envelope *out)
{
    return store_cache_envelope_fields(c, i, STORE_ENV_ALL, out);
}

int store_cache_part(const store_cache *c, uint32_t i, store_part *out)
{
    if (i >= c->nparts)
        return -ERANGE;
    out->type = get_str(c, pf(c, i, PS_TYPE));
    out->subtype = get_str(c, pf(c, i, PS_SUBTYPE));
    out->id = get_str(c, pf(c, i, PS_ID));
    out->description = get_str(c, pf(c, i, PS_DESC));
    out->encoding = get_str(c, pf(c, i, PS_ENC));
    out->md5 = get_str(c, pf(c, i, PS_MD5));
    out->disposition = get_str(c, pf(c, i, PS_DISP));
    out->language = get_str(c, pf(c, i, PS_LANG));
    out->location = get_str(c, pf(c, i, PS_LOC));
    out->hdr_off = pf(c, i, PF_HDR_OFF);
    out->hdr_len = pf(c, i, PF_HDR_LEN);
    out->body_off = pf(c, i, PF_BODY_OFF);
    out->body_len = pf(c, i, PF_BODY_LEN);
    out->lines = pf(c, i, PF_LINES);
    out->nparams = pf(c, i, PF_NPARAMS);
    out->ndisp_params = pf(c, i, PF_NDISP);
    out->parent = pf(c, i, PF_PARENT);
    out->first_child = pf(c, i, PF_FIRST_CHILD);
    out->next_sibling = pf(c, i, PF_NEXT_SIBLING);
    out->nchildren = pf(c, i, PF_NCHILDREN);
    out->envelope = (int32_t)pf(c, i, PF_ENVELOPE);
    return 0;
}

int store_cache_param(const store_cache *c, uint32_t i, int disp, uint32_t j,
                      store_str *name, store_str *value)
{
    if (i >= c->nparts)
        return -ERANGE;
    uint32_t np = pf(c, i, PF_NPARAMS), nd = pf(c, i, PF_NDISP);
    if (j >= (disp ? nd : np))
        return -ERANGE;
    uint32_t k = pf(c, i, PF_PARAM_FIRST) + (disp ? np : 0) + j;
    const uint8_t *rec = c->params_ + (size_t)k * PARAM_SIZE;
    *name = get_str(c, ld32(rec));
    *value = get_str(c, ld32(rec + 4));
    return 0;
}

/* The k-th (1-based) child of part i. */
static int nth_child(const store_cache *c, uint32_t i, uint32_t k)
{
    if (k == 0)
        return -ENOENT;
    uint32_t q = pf(c, i, PF_FIRST_CHILD);
    while (q && --k)
        q = pf(c, q, PF_NEXT_SIBLING);
    return q ? (int)q : -ENOENT;
}

/* Section k of the message whose root is part root. */
static int msg_section(const store_cache *c, uint32_t root, uint32_t k)
{
    if (part_kind(c, root) == K_MULTIPART)
        return nth_child(c, root, k);
    return k == 1 ? (int)root : -ENOENT;
}

int store_cache_find(const store_cache *c, const uint32_t *path, size_t n)
{
    if (n == 0)
        return 0;
    int cur = msg_section(c, 0, path[0]);
    for (size_t i = 1; i < n && cur >= 0; i++) {
        switch (part_kind(c, (uint32_t)cur)) {
        case K_MULTIPART:
            cur = nth_child(c, (uint32_t)cur, path[i]);
            break;
        case K_MESSAGE:
            cur = msg_section(c, pf(c, (uint32_t)cur, PF_FIRST_CHILD), path[i]);
            break;
        default:
            cur = -ENOENT;
        }
    }
    return cur < 0 ? -ENOENT : cur;
}
