/* store/objid.c — object ids (RFC 8474) and save dates (RFC 8514).
 *
 * Both live in the message's LOG_MESSAGE record, after the message bytes
 * (struct log_msg_ext), so compaction, repair and every rebuild of the
 * index keep them without knowing of them: the index entry (64 bytes, full)
 * does not hold them, and a reader finds them through the entry's log
 * offset.  A record written before the extension existed has none: its
 * EMAILID is then the one an append would have given it (this mailbox's
 * id and UIDVALIDITY and the message's UID, all of which compaction keeps)
 * and its save date is not known. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

int store_snap_entry_ext(const store_snap *s, const struct idx_entry *e, store_msg_ext *out)
{
    const struct idx_hdr *h = store_gen_hdr(s->g);
    uint64_t applied = __atomic_load_n(&h->log_applied, __ATOMIC_ACQUIRE);
    uint64_t moff = e->log_off + sizeof(struct log_rec);
    if (moff + sizeof(struct log_message) > applied)
        return -EBADMSG;
    const uint8_t *p = store_mapchain_get(&s->g->log, moff, sizeof(struct log_message));
    if (!p)
        return -ENOMEM;
    struct log_message m;
    memcpy(&m, p, sizeof m);
    if (m.uid != e->uid || m.size != e->size)
        return -EBADMSG;
    *out = (store_msg_ext){.email_mbox = s->mb->id, .email_uid = e->uid,
                           .email_uv = h->uidvalidity};
    if (!m.ext_len)
        return 0;
    uint64_t xoff = moff + sizeof m + m.size;
    if (m.ext_len < sizeof(struct log_msg_ext) || xoff + sizeof(struct log_msg_ext) > applied)
        return -EBADMSG;
    if (!(p = store_mapchain_get(&s->g->log, xoff, sizeof(struct log_msg_ext))))
        return -ENOMEM;
    struct log_msg_ext x;
    memcpy(&x, p, sizeof x);
    if (!x.email_uid)
        return -EBADMSG;
    out->email_mbox = x.email_mbox;
    out->email_uid = x.email_uid;
    out->email_uv = x.email_uv;
    out->save_date = x.save_date;
    return 0;
}

int store_snap_msg_ext(const store_snap *s, uint32_t uid, store_msg_ext *out)
{
    int64_t p = store_gen_find(s->g, s->count, uid);
    if (p < 0)
        return -ENOENT;
    const struct idx_entry *e = store_gen_entry(s->g, (uint32_t)p);
    if (!store_snap_entry_sound(s, e))
        return -EBADMSG;
    return store_snap_entry_ext(s, e, out);
}

/* "M<uidvalidity>_<mailbox id>_<uid>", in lower-case hex: a letter first
 * and no two ids differing only by case (RFC 8474 8.1: "prefix every ID with a
 * single alphabetical character", avoid "IDs that differ only by ASCII
 * case"). */
void store_emailid_format(const store_msg_ext *x, char *buf)
{
    snprintf(buf, STORE_OBJECTID_MAX, "M%" PRIx32 "_%" PRIx64 "_%" PRIx32, x->email_uv,
             x->email_mbox, x->email_uid);
}

static int hexnum(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 16 || (n > 1 && s[0] == '0'))
        return -EINVAL;     /* one spelling per number: ids compare as text */
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0'
              : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int store_emailid_parse(const char *s, store_msg_ext *out)
{
    if (s[0] != 'M')
        return -EINVAL;
    const char *a = strchr(s + 1, '_'), *b = a ? strchr(a + 1, '_') : NULL;
    uint64_t v, m, u;
    if (!b || hexnum(s + 1, (size_t)(a - s - 1), UINT32_MAX, &v) < 0 ||
        hexnum(a + 1, (size_t)(b - a - 1), UINT64_MAX, &m) < 0 ||
        hexnum(b + 1, strlen(b + 1), UINT32_MAX, &u) < 0 || u == 0)
        return -EINVAL;
    *out = (store_msg_ext){.email_mbox = m, .email_uid = (uint32_t)u, .email_uv = (uint32_t)v};
    return 0;
}

/* "F<uidvalidity>_<id>" in hex: the id alone is unique within the user's
 * store; the UIDVALIDITY makes a store created again from nothing (ids
 * from 1 again) give different MAILBOXIDs too. */
void store_mailboxid_format(uint64_t id, uint32_t uidvalidity, char *buf)
{
    snprintf(buf, STORE_OBJECTID_MAX, "F%" PRIx32 "_%" PRIx64, uidvalidity, id);
}
