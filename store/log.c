/* store/log.c — the append-only log's record framing and validation.
 *
 * A record is valid only if its header is sane, it lies wholly inside the
 * file and its CRC32C matches; anything else at the tail is a torn write.
 * Transactions (LOGF_CONT chains) count only when their last record is
 * valid, so a multi-message APPEND is all or nothing across a crash. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "store/internal.h"

#define REC_MAX_PAYLOAD (1u << 31)

void store_log_rec_seal(struct log_rec *r, uint16_t type, uint16_t rflags,
                        uint32_t len)
{
    r->len = len;
    r->type = type;
    r->rflags = rflags;
    r->magic = LOG_REC_MAGIC;
    r->crc = store_crc32c(0, (const uint8_t *)r + 4, sizeof *r - 4 + len);
}

/* Validate the record at off (within size).  Returns its total aligned
 * length, 0 at a clean end, or -EBADMSG for a torn/corrupt record. */
int64_t store_log_rec_check(const uint8_t *base, uint64_t size, uint64_t off)
{
    if (off == size)
        return 0;
    if (off + sizeof(struct log_rec) > size)
        return -EBADMSG;
    struct log_rec r;
    memcpy(&r, base + off, sizeof r);
    if (r.magic != LOG_REC_MAGIC || r.len > REC_MAX_PAYLOAD ||
        r.type < LOG_MESSAGE || r.type > LOG_VANISHED)
        return -EBADMSG;
    uint64_t total = sizeof r + (uint64_t)r.len;
    if (off + total > size)
        return -EBADMSG;
    uint32_t crc = store_crc32c(0, base + off + 4, total - 4);
    if (crc != r.crc)
        return -EBADMSG;
    /* Per-type minimum sizes, so appliers can trust the payload. */
    const uint8_t *pl = base + off + sizeof r;
    switch (r.type) {
    case LOG_MESSAGE: {
        struct log_message m;
        if (r.len < sizeof m)
            return -EBADMSG;
        memcpy(&m, pl, sizeof m);
        if ((uint64_t)m.size + sizeof m + m.ext_len != r.len || m.hdr_len > m.size ||
            m.uid == 0 ||
            (m.ext_len && (m.ext_len < sizeof(struct log_msg_ext) ||
                           m.ext_len > LOG_MSG_EXT_MAX)))
            return -EBADMSG;
        if (m.ext_len) {
            struct log_msg_ext x;
            memcpy(&x, pl + sizeof m + m.size, sizeof x);
            if (x.email_uid == 0)
                return -EBADMSG;
        }
        break;
    }
    case LOG_FLAGS: {
        struct log_flags f;
        if (r.len < sizeof f)
            return -EBADMSG;
        memcpy(&f, pl, sizeof f);
        if (sizeof f + (uint64_t)f.nranges * sizeof(struct log_range) != r.len)
            return -EBADMSG;
        break;
    }
    case LOG_EXPUNGE: {
        struct log_expunge x;
        if (r.len < sizeof x)
            return -EBADMSG;
        memcpy(&x, pl, sizeof x);
        if (sizeof x + (uint64_t)x.nranges * sizeof(struct log_range) != r.len)
            return -EBADMSG;
        break;
    }
    case LOG_KEYWORD: {
        struct log_keyword k;
        if (r.len < sizeof k)
            return -EBADMSG;
        memcpy(&k, pl, sizeof k);
        if (sizeof k + (uint64_t)k.len != r.len || k.slot >= STORE_MAX_KEYWORDS ||
            k.len == 0 || k.len > STORE_MAX_KEYWORD_LEN)
            return -EBADMSG;
        break;
    }
    case LOG_VANISHED: {
        /* Runs sorted, disjoint, not adjacent and inside UID space: the
         * reader binary-searches them and never re-checks. */
        struct log_vanished v;
        if (r.len < sizeof v)
            return -EBADMSG;
        memcpy(&v, pl, sizeof v);
        if (sizeof v + (uint64_t)v.nruns * sizeof(struct log_vrun) != r.len)
            return -EBADMSG;
        uint64_t prev_hi = 0;
        for (uint32_t i = 0; i < v.nruns; i++) {
            struct log_vrun vr;
            memcpy(&vr, pl + sizeof v + (uint64_t)i * sizeof vr, sizeof vr);
            if (vr.lo == 0 || vr.lo > vr.hi || (i && vr.lo <= prev_hi + 1) || vr.modseq == 0)
                return -EBADMSG;
            prev_hi = vr.hi;
        }
        break;
    }
    }
    /* The padding belongs to the record: it was written by the same
     * pwrite, so a record whose padding is missing was torn too. */
    uint64_t aligned = ALIGN8(total);
    if (off + aligned > size)
        return -EBADMSG;
    return (int64_t)aligned;
}

/* The valid end of the log as store_log_scan_end(), and *stop = where the
 * run of valid records ends. */
static int log_scan(const uint8_t *base, uint64_t size, uint64_t from,
                    uint64_t *committed, uint64_t *stop)
{
    uint64_t off = from, c = from;
    for (;;) {
        int64_t n = store_log_rec_check(base, size, off);
        if (n <= 0)
            break;
        struct log_rec r;
        memcpy(&r, base + off, sizeof r);
        off += (uint64_t)n;
        if (!(r.rflags & LOGF_CONT))
            c = off;
    }
    *committed = c;
    *stop = off;
    return 0;
}

int store_log_scan_end(const uint8_t *base, uint64_t size, uint64_t from,
                       uint64_t *end)
{
    uint64_t stop;
    return log_scan(base, size, from, end, &stop);
}

uint64_t store_log_resync(const uint8_t *base, uint64_t size, uint64_t off)
{
    uint64_t p = ALIGN8(off + 1);
    while (p + sizeof(struct log_rec) <= size) {
        if (store_log_rec_check(base, size, p) > 0) {
            uint64_t c, stop;
            log_scan(base, size, p, &c, &stop);
            if (c > p)
                return p;
            /* Valid records that never complete a transaction: none of
             * them can start one either, so go on after them. */
            p = ALIGN8(stop + 1);
        } else {
            p += 8;
        }
    }
    return size;
}

void store_log_hdr_seal(struct log_file_hdr *h)
{
    h->crc = store_crc32c(0, h, offsetof(struct log_file_hdr, crc));
}

int store_log_hdr_check(const struct log_file_hdr *h)
{
    if (memcmp(h->magic, LOG_MAGIC, 8) != 0)
        return -EBADMSG;
    if (h->version != FMT_VERSION && h->version != LOG_VERSION_HIST &&
        h->version != LOG_VERSION_EXT)
        return -EPROTONOSUPPORT;
    if (h->hdr_size != LOG_HDR_SIZE ||
        h->crc != store_crc32c(0, h, offsetof(struct log_file_hdr, crc)))
        return -EBADMSG;
    return 0;
}
