/* core/fetch/fetch_engine.c — FETCH requests and one message's response
 * (contract in core/fetch/fetch_engine.h).
 *
 * A header listing (FLAGS, UID, RFC822.SIZE, INTERNALDATE, ENVELOPE,
 * BODYSTRUCTURE) reads only the index and the cache.  Message bytes are
 * read only for body sections, and large ones are not copied when the
 * caller can send them by reference into the store's mapping. */
#include "core/fetch/fetch_engine.h"

#include "core/fetch/preview.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void imap_fetch_req_free(imap_fetch_req *r)
{
    for (size_t i = 0; i < r->nsecs; i++)
        imap_section_free(&r->secs[i]);
    free(r->secs);
    memset(r, 0, sizeof *r);
}

static int add_section(imap_fetch_req *r, const char *spec, size_t len, const char **err)
{
    imap_section *n = realloc(r->secs, (r->nsecs + 1) * sizeof *n);
    if (!n)
        return -ENOMEM;
    r->secs = n;
    imap_section *sec = &n[r->nsecs];
    memset(sec, 0, sizeof *sec);
    int rc = imap_section_parse(spec, len, sec);
    if (rc < 0) {
        *err = rc == -E2BIG ? "Part number too deep" : "Bad section";
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    if (!sec->peek)
        r->sets_seen = true;
    r->nsecs++;
    return 0;
}

static int parse_att(imap_fetch_req *r, const imap_arg *a, bool in_list, const char **err)
{
    if (a->type != IMAP_ARG_ATOM) {
        *err = "Fetch attribute expected";
        return -EINVAL;
    }
    const char *s = a->s;
    enum { NMACRO_FIRST = 12 };     /* ALL, FAST and FULL follow */
    static const struct { const char *name; unsigned bits; } simple[] = {
        {"UID", IMAP_FETCH_UID}, {"FLAGS", IMAP_FETCH_FLAGS},
        {"INTERNALDATE", IMAP_FETCH_INTERNALDATE}, {"RFC822.SIZE", IMAP_FETCH_SIZE},
        {"ENVELOPE", IMAP_FETCH_ENVELOPE}, {"BODY", IMAP_FETCH_BODY},
        {"BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE}, {"MODSEQ", IMAP_FETCH_MODSEQ},
        {"PREVIEW", IMAP_FETCH_PREVIEW},
        {"EMAILID", IMAP_FETCH_EMAILID}, {"THREADID", IMAP_FETCH_THREADID},
        {"SAVEDATE", IMAP_FETCH_SAVEDATE},
        {"ALL", IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE |
                    IMAP_FETCH_ENVELOPE},
        {"FAST", IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE},
        {"FULL", IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE |
                     IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY},
    };
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
        if (!strcasecmp(s, simple[i].name)) {
            if (in_list && i >= NMACRO_FIRST) {
                *err = "ALL, FAST and FULL cannot be in a list";
                return -EINVAL;
            }
            r->simple |= simple[i].bits;
            return 0;
        }
    if (strchr(s, '[') || !strncasecmp(s, "RFC822", 6))
        return add_section(r, s, a->len, err);
    *err = "Unknown fetch attribute";
    return -EINVAL;
}

/* RFC 8970 6: fetch-att =/ "PREVIEW" [SP "(" preview-mod *(SP
 * preview-mod) ")"], preview-mod = "LAZY". */
static bool preview_mods(const imap_arg *mods)
{
    if (mods->type != IMAP_ARG_LIST || !mods->nlist)
        return false;
    for (size_t i = 0; i < mods->nlist; i++)
        if (!imap_arg_is(&mods->list[i], "LAZY"))
            return false;
    return true;
}

bool imap_fetch_is_preview_mod(const imap_arg *att, const imap_arg *mods)
{
    return imap_arg_is(att, "PREVIEW") && preview_mods(mods);
}

int imap_fetch_parse_preview(const imap_arg *mods, imap_fetch_req *req, const char **err)
{
    memset(req, 0, sizeof *req);
    if (!preview_mods(mods)) {
        *err = "Unknown PREVIEW modifier";
        return -EINVAL;
    }
    req->simple = IMAP_FETCH_PREVIEW;
    req->preview_lazy = true;
    return 0;
}

int imap_fetch_parse(const imap_arg *att, imap_fetch_req *req, const char **err)
{
    memset(req, 0, sizeof *req);
    int rc = 0;
    bool lazy = false;
    if (att->type == IMAP_ARG_LIST) {
        /* RFC 9051 9: "(" fetch-att *(SP fetch-att) ")" names at least one,
         * and "* n FETCH ()" would be no msg-att either. */
        if (!att->nlist) {
            *err = "Empty fetch attribute list";
            return -EINVAL;
        }
        for (size_t i = 0; i < att->nlist && rc == 0; i++) {
            const imap_arg *a = &att->list[i];
            if (imap_arg_is(a, "PREVIEW") && i + 1 < att->nlist &&
                att->list[i + 1].type == IMAP_ARG_LIST) {
                if (!preview_mods(&att->list[i + 1])) {
                    *err = "Unknown PREVIEW modifier";
                    rc = -EINVAL;
                    break;
                }
                req->simple |= IMAP_FETCH_PREVIEW;
                lazy = true;
                i++;
                continue;
            }
            if (imap_arg_is(a, "PREVIEW"))
                req->preview_eager_ = true;
            rc = parse_att(req, a, true, err);
        }
    } else {
        if (imap_arg_is(att, "PREVIEW"))
            req->preview_eager_ = true;
        rc = parse_att(req, att, false, err);
    }
    /* asked both with and without LAZY: the one without decides (a NIL
     * would break RFC 8970 3.2, "A server MUST NOT return NIL to a FETCH
     * PREVIEW request made without the LAZY modifier") */
    req->preview_lazy = lazy && !req->preview_eager_;
    if (rc < 0)
        imap_fetch_req_free(req);
    return rc;
}

void imap_fetch_flags(imap_out *o, const store_snap *snap, uint32_t flags, uint64_t keywords,
                      bool recent)
{
    static const struct { uint32_t bit; const char *name; } sys[] = {
        {STORE_F_SEEN, "\\Seen"}, {STORE_F_ANSWERED, "\\Answered"},
        {STORE_F_FLAGGED, "\\Flagged"}, {STORE_F_DELETED, "\\Deleted"},
        {STORE_F_DRAFT, "\\Draft"},
    };
    imap_out_add(o, "(", 1);
    size_t start = o->len;
    for (size_t i = 0; i < sizeof sys / sizeof *sys; i++)
        if (flags & sys[i].bit) {
            if (o->len != start)
                imap_out_add(o, " ", 1);
            imap_out_add(o, sys[i].name, strlen(sys[i].name));
        }
    for (unsigned k = 0; k < STORE_MAX_KEYWORDS && keywords; k++) {
        if (!(keywords & (1ull << k)))
            continue;
        const char *kw = store_snap_keyword(snap, k);
        if (kw) {
            if (o->len != start)
                imap_out_add(o, " ", 1);
            imap_out_add(o, kw, strlen(kw));
        }
    }
    if (recent) {
        if (o->len != start)
            imap_out_add(o, " ", 1);
        imap_out_lit(o, "\\Recent");
    }
    imap_out_add(o, ")", 1);
}

void imap_fetch_ctx_init(imap_fetch_ctx *x, store_snap *snap, bool utf8, uint32_t recent_first)
{
    memset(x, 0, sizeof *x);
    store_cursor_init(&x->cur, snap);
    x->utf8 = utf8;
    x->recent_first = recent_first;
}

/* "dd-Mon-yyyy hh:mm:ss +zzzz" in the message's own zone. */
static void internaldate(imap_out *o, int64_t t, int16_t tz)
{
    time_t local = (time_t)(t + tz * 60);
    struct tm tm;
    gmtime_r(&local, &tm);
    int z = tz < 0 ? -tz : tz;
    imap_out_printf(o, "\"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", tm.tm_mday,
                    store_month_abbr(tm.tm_mon), tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                    tz < 0 ? '-' : '+', z / 60, z % 60);
}

/* The sections of one message, after the simple items.  Returns 0 or the
 * code for the command's answer (imap_fetch_one).  *sent is set once part
 * of the response has gone out by reference (o was emptied then).  A
 * failed append to o stops here: o is cut back to the end of the last
 * whole item, o->err cleared and *cut set, so the caller can close or
 * withdraw the response; -ENOMEM. */
static int sections(imap_fetch_ctx *x, imap_out *o, const imap_fetch_req *req,
                    const store_cache *cache, const char *raw, size_t rawlen, const char *sp,
                    bool *sent, bool *cut)
{
    int result = 0;
    for (size_t i = 0; i < req->nsecs; i++) {
        const imap_section *sec = &req->secs[i];
        size_t mark = o->len;
        if (o->err)
            break;
        imap_section_data d;
        int rc = imap_section_fetch(sec, cache, raw, rawlen, &d);
        imap_out_add(o, sp, strlen(sp));
        sp = " ";
        imap_section_echo(o, sec);
        imap_out_add(o, " ", 1);
        if (rc == -ENOMEM) {
            imap_out_lit(o, "NIL");
            result = rc;
            continue;
        }
        if (rc < 0) {
            /* A part that does not exist or does not fit the section:
             * NIL for BODY; BINARY makes the command fail (RFC 3516). */
            imap_out_lit(o, "NIL");
            if (sec->item != IMAP_ITEM_BODY)
                result = rc == -ENOTSUP ? -ENOTSUP : -ENOENT;
            continue;
        }
        if (sec->item == IMAP_ITEM_BINARY_SIZE) {
            imap_out_uint(o, d.size);
        } else if (d.nul) {
            imap_out_printf(o, "~{%zu}\r\n", d.len);
            imap_out_add(o, d.p, d.len);
        } else if (d.len >= IMAP_FETCH_ZERO_COPY_MIN && !d.buf.data && x->send) {
            imap_out_printf(o, "{%zu}\r\n", d.len);
            if (!o->err) {      /* never a cut-off head before the bytes */
                x->send(x->send_arg, o, d.p, d.len);
                *sent = true;
            }
        } else {
            imap_out_printf(o, "{%zu}\r\n", d.len);
            imap_out_add(o, d.p, d.len);
        }
        imap_section_data_free(&d);
        if (o->err) {
            o->len = mark;
            o->err = 0;
            *cut = true;
            return -ENOMEM;
        }
    }
    return result;
}

/* PREVIEW's value: the one made at append, kept in the cache blob; for a
 * blob of an older parser, computed from the message now, or NIL under
 * LAZY (RFC 8970 4.1: "If this modifier is used, and the server is unable
 * to return preview data without undue delay, the server MUST return NIL
 * as the preview response"; reading the body is that delay).  Dovecot 2.3
 * answers NIL under LAZY until a FETCH without it has put the preview in
 * its cache; ours is made at append, so LAZY gets it.  Returns 0,
 * or -EIO (NIL written) if the bytes cannot be read; -ENOMEM leaves
 * o->err set. */
static int preview(imap_fetch_ctx *x, imap_out *o, const imap_fetch_req *req,
                   const store_cache *cache)
{
    store_str pv;
    if (store_cache_preview(cache, &pv)) {
        imap_out_string(o, pv.p, pv.len, x->utf8);
        return 0;
    }
    if (req->preview_lazy) {
        imap_out_lit(o, "NIL");
        return 0;
    }
    const char *raw;
    size_t rawlen;
    if (store_cursor_bytes(&x->cur, 0, SIZE_MAX, &raw, &rawlen) < 0) {
        imap_out_lit(o, "NIL");
        return -EIO;
    }
    store_buf b = { 0 };
    if (imap_preview(cache, raw, rawlen, &b) < 0) {
        o->err = -ENOMEM;
        return -ENOMEM;
    }
    imap_out_string(o, b.data ? (const char *)b.data : "", b.len, x->utf8);
    free(b.data);
    return 0;
}

/* Items rendered from the cache blob (as imap_fetch_one reads it). */
#define FROM_CACHE \
    (IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY | IMAP_FETCH_BODYSTRUCTURE | IMAP_FETCH_PREVIEW | \
     IMAP_FETCH_THREADID)

static bool headers_only(const imap_fetch_req *req)
{
    for (size_t i = 0; i < req->nsecs; i++) {
        const imap_section *sec = &req->secs[i];
        if (sec->npath || (sec->text != IMAP_SECTION_HEADER &&
                           sec->text != IMAP_SECTION_HEADER_FIELDS &&
                           sec->text != IMAP_SECTION_HEADER_FIELDS_NOT))
            return false;
    }
    return true;
}

int imap_fetch_resident(imap_fetch_ctx *x, const imap_fetch_req *req, uint32_t uid,
                        unsigned skip, store_fault **f, unsigned *what)
{
    *f = NULL;
    bool cache = (req->simple & FROM_CACHE) || req->nsecs, body = req->nsecs > 0;
    if (!cache && !body)
        return 0;       /* FLAGS, UID, sizes and dates: the index alone */
    store_msg m;
    if (store_cursor_seek(&x->cur, uid, &m) < 0)
        return 0;       /* imap_fetch_one says so */
    int rc = 0;
    if (cache && !(skip & (1u << STORE_RA_CACHE))) {
        *what = STORE_RA_CACHE;
        rc = store_cursor_resident(&x->cur, STORE_RA_CACHE, STORE_ALL_BYTES, &x->res_cache, f);
    }
    if (rc == 0 && body && !(skip & (1u << STORE_RA_BODY))) {
        *what = STORE_RA_BODY;
        rc = store_cursor_resident(&x->cur, STORE_RA_BODY,
                                   headers_only(req) ? IMAP_FETCH_HEADER_BYTES : STORE_ALL_BYTES,
                                   &x->res_body, f);
    }
    return rc;
}

int imap_fetch_one(imap_fetch_ctx *x, imap_out *o, const imap_fetch_req *req, uint32_t seq,
                   uint32_t uid, bool uidcmd, bool flags_changed)
{
    store_msg m;
    if (o->err)
        return o->err;          /* nothing more can be written to o */
    int live = store_cursor_seek(&x->cur, uid, &m);
    if (live < 0)
        return -ENOENT;
    /* CHANGEDSINCE asks for flag changes: a message expunged since (its
     * tombstone's modseq is above n) has none to report, and is told as
     * gone by VANISHED (EARLIER) in the same answer (RFC 7162 3.2.6) or by
     * the next EXPUNGE/VANISHED; a FETCH line for it after that would
     * bring back a UID the client was just told is gone */
    if (req->changedsince && (m.modseq <= req->changedsince || !live))
        return 0;
    if (x->keywords) {
        /* may write an untagged FLAGS first: it is not this response's to
         * take back below */
        m.keywords = x->keywords(x->keywords_arg, o, m.keywords);
        if (o->err)
            return o->err;
    }
    /* Every way out leaves o well-formed: the whole response; or, when an
     * append to o fails (a section too large to copy, a renderer's
     * scratch buffer), nothing of it (o back at start, o->err cleared); or,
     * once part of it went out by reference and cannot be taken back, the
     * response closed after its last whole item.  A client never sees a
     * "* n FETCH (" line that does not end. */
    size_t start = o->len;
    bool sent = false, cut = false;
    imap_out_lit(o, "* ");
    imap_out_uint(o, seq);
    imap_out_lit(o, " FETCH (");
    const char *sp = "";
    if (uidcmd || (req->simple & IMAP_FETCH_UID) || (flags_changed && x->qresync)) {
        imap_out_lit(o, "UID ");
        imap_out_uint(o, uid);
        sp = " ";
    }
    bool flags = (req->simple & IMAP_FETCH_FLAGS) || flags_changed;
    if ((req->simple & IMAP_FETCH_MODSEQ) || (flags && x->condstore)) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "MODSEQ (");
        imap_out_uint(o, m.modseq);
        imap_out_lit(o, ")");
        sp = " ";
    }
    if (flags) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "FLAGS ");
        imap_fetch_flags(o, x->cur.snap, m.flags, m.keywords, uid >= x->recent_first);
        sp = " ";
    }
    if (req->simple & IMAP_FETCH_INTERNALDATE) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "INTERNALDATE ");
        internaldate(o, m.internal_date, m.tz_min);
        sp = " ";
    }
    if (req->simple & IMAP_FETCH_SIZE) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "RFC822.SIZE ");
        imap_out_uint(o, m.size);
        sp = " ";
    }
    if (req->simple & (IMAP_FETCH_EMAILID | IMAP_FETCH_SAVEDATE)) {
        store_msg_ext ext;
        if (store_cursor_ext(&x->cur, &ext) < 0) {
            o->len = start;     /* nothing of this response went out yet */
            o->err = 0;
            return -EIO;
        }
        if (req->simple & IMAP_FETCH_EMAILID) {
            char id[STORE_OBJECTID_MAX];
            store_emailid_format(&ext, id);
            imap_out_add(o, sp, strlen(sp));
            imap_out_printf(o, "EMAILID (%s)", id);
            sp = " ";
        }
        if (req->simple & IMAP_FETCH_SAVEDATE) {
            /* RFC 8514 4.2 gives NIL where "the underlying mailbox storage
             * does not support the save date"; so for a message saved
             * before the store kept save dates. */
            imap_out_add(o, sp, strlen(sp));
            imap_out_lit(o, "SAVEDATE ");
            if (ext.save_date)
                internaldate(o, ext.save_date, 0);
            else
                imap_out_lit(o, "NIL");
            sp = " ";
        }
    }
    if (req->simple & IMAP_FETCH_THREADID) {
        /* RFC 8474 5.2; how a thread is named: store_threadid. */
        store_msg_ext ext;
        store_cache tc;
        uint64_t t;
        int rc = store_cursor_ext(&x->cur, &ext);
        if (rc == 0)
            rc = store_cursor_cache(&x->cur, &tc);
        if (rc == 0)
            rc = store_threadid(&tc, &ext, &t);
        if (rc < 0) {
            o->len = start;     /* nothing of this response went out yet */
            o->err = 0;
            return -EIO;
        }
        char id[STORE_OBJECTID_MAX];
        store_threadid_format(t, id);
        imap_out_add(o, sp, strlen(sp));
        imap_out_printf(o, "THREADID (%s)", id);
        sp = " ";
    }
    int result = 0;
    if (!(req->simple & FROM_CACHE & ~IMAP_FETCH_THREADID) && !req->nsecs)
        goto close;
    store_cache cache;
    if (store_cursor_cache(&x->cur, &cache) < 0) {
        result = -EIO;
        goto close;
    }
    if (req->simple & IMAP_FETCH_ENVELOPE) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "ENVELOPE ");
        imap_render_envelope(o, &cache, 0, x->utf8);
        sp = " ";
    }
    if (req->simple & IMAP_FETCH_BODY) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "BODY ");
        imap_render_body(o, &cache, false, x->utf8);
        sp = " ";
    }
    if (req->simple & IMAP_FETCH_BODYSTRUCTURE) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "BODYSTRUCTURE ");
        imap_render_body(o, &cache, true, x->utf8);
        sp = " ";
    }
    if ((req->simple & IMAP_FETCH_PREVIEW) && !o->err) {
        imap_out_add(o, sp, strlen(sp));
        imap_out_lit(o, "PREVIEW ");
        sp = " ";
        result = preview(x, o, req, &cache);
    }
    if (req->nsecs && !o->err && result != -EIO) {
        const char *raw;
        size_t rawlen;
        if (store_cursor_bytes(&x->cur, 0, SIZE_MAX, &raw, &rawlen) < 0)
            result = -EIO;
        else
            result = sections(x, o, req, &cache, raw, rawlen, sp, &sent, &cut);
    }
close:
    if (o->err || cut) {
        if (!sent) {
            o->len = start;     /* withdrawn whole */
            o->err = 0;
            return -ENOMEM;
        }
        result = -ENOMEM;       /* sections() cut o back to a whole item */
    }
    imap_out_lit(o, ")\r\n");
    return o->err ? o->err : result;
}
