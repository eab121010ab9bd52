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
#include "store/msgid.h"

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

/* ---- THREADID ----
 * RFC 8474 5.2 leaves the grouping to the server, with three rules: the
 * same THREADID for the same EMAILID, the same one for related messages
 * across mailboxes (SHOULD), and never a change once reported (MUST NOT).
 * A thread here is named by its root: the first Message ID of the
 * message's References (RFC 5322 3.6.4: a reply's References is its
 * parent's followed by the parent's Message ID, so the first is the
 * thread's first message, which writers keep when they shorten the
 * field), else of its In-Reply-To, else its own Message ID.  Every reply
 * of a conversation started by one message names the same root, in
 * whatever mailbox it lies, and a copy has the same header, so the same
 * THREADID.  A message without any Message ID is a thread of its own,
 * named from its EMAILID.
 * Being a function of the message alone, the value needs no table that
 * could be lost or disagree between processes, and it cannot change once
 * reported: which also means this function is frozen; a better grouping
 * must be a new id kept with the message, not a change here.
 * Replies that name only their parent (In-Reply-To without References)
 * start a thread at that parent: a grouping coarser than THREAD
 * REFERENCES would make, never a wrong id. */

static uint64_t thread_hash(char kind, const void *p, size_t n)
{
    /* FNV-1a 64 over the kind byte and the bytes, then a finalizer so
     * that similar ids spread over all 64 bits. */
    uint64_t h = 0xcbf29ce484222325ull;
    h = (h ^ (uint8_t)kind) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h ? h : 1;
}

int store_threadid(const store_cache *c, const store_msg_ext *x, uint64_t *out)
{
    store_envelope env = {0};
    store_buf b = {0};
    int rc = 0, found = 0;
    if (store_cache_envelope_fields(c, 0, STORE_ENV_REFERENCES | STORE_ENV_IN_REPLY_TO |
                                              STORE_ENV_MESSAGE_ID, &env) == 0) {
        const store_str *order[3] = {&env.references, &env.in_reply_to, &env.message_id};
        for (int k = 0; k < 3 && !found; k++) {
            size_t pos = 0;
            if (order[k]->p && (found = store_msgid_next(order[k]->p, order[k]->len, &pos, &b)) < 0) {
                rc = found;
                goto out;
            }
        }
    }
    if (found) {
        *out = thread_hash('R', b.data, b.len);
    } else {
        char id[STORE_OBJECTID_MAX];
        store_emailid_format(x, id);
        *out = thread_hash('E', id, strlen(id));
    }
out:
    free(b.data);
    return rc;
}

/* "T" and 16 lower-case hex digits: never an EMAILID ("M...") (RFC 8474
 * 5.2: "MUST NOT use the same ObjectID value for both"). */
void store_threadid_format(uint64_t t, char *buf)
{
    snprintf(buf, STORE_OBJECTID_MAX, "T%016" PRIx64, t);
}

int store_threadid_parse(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s[0] != 'T' || strlen(s + 1) != 16)
        return -EINVAL;
    for (size_t i = 1; i <= 16; i++) {
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0'
              : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    if (!v)
        return -EINVAL;
    *out = v;
    return 0;
}
