/* core/search/sort.c — SORT's criteria, the keys SORT and THREAD read from the
 * cache, and the SORT order (contract in core/search/sort.h). */
#include "core/fetch/fetch_render.h"
#include "core/fetch/mime_decode.h"
#include "core/search/search_internal.h"
#include "core/search/sort.h"
#include "store/assert.h"
#include "store/msgid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- criteria ---------------------------------------------------------- */

static const struct { const char *name; imap_sort_key key; } sort_keys[] = {
    {"ARRIVAL", IMAP_SORT_ARRIVAL}, {"CC", IMAP_SORT_CC},
    {"DATE", IMAP_SORT_DATE}, {"FROM", IMAP_SORT_FROM},
    {"SIZE", IMAP_SORT_SIZE}, {"SUBJECT", IMAP_SORT_SUBJECT},
    {"TO", IMAP_SORT_TO}, {"DISPLAYFROM", IMAP_SORT_DISPLAYFROM},
    {"DISPLAYTO", IMAP_SORT_DISPLAYTO},
};

int imap_sort_parse_criteria(const imap_arg *list, imap_sort_crit *out,
                             size_t max, const char **err)
{
    if (list->type != IMAP_ARG_LIST) {
        *err = "Sort criteria must be a parenthesized list";
        return -EINVAL;
    }
    if (!list->nlist) {
        /* sort-criteria = "(" sort-criterion *(SP sort-criterion) ")" */
        *err = "Empty sort criteria";
        return -EINVAL;
    }
    size_t n = 0;
    for (size_t i = 0; i < list->nlist; i++) {
        bool rev = false;
        if (imap_arg_is(&list->list[i], "REVERSE")) {
            rev = true;
            if (++i == list->nlist) {
                *err = "REVERSE without a sort key";
                return -EINVAL;
            }
        }
        size_t k = 0;
        while (k < sizeof sort_keys / sizeof sort_keys[0] &&
               !imap_arg_is(&list->list[i], sort_keys[k].name))
            k++;
        if (k == sizeof sort_keys / sizeof sort_keys[0]) {
            *err = "Unknown sort key";
            return -EINVAL;
        }
        if (n == max) {
            *err = "Too many sort criteria";
            return -EINVAL;
        }
        out[n++] = (imap_sort_crit){ sort_keys[k].key, rev };
    }
    return (int)n;
}

int imap_thread_parse_alg(const imap_arg *a, imap_thread_alg *out)
{
    if (imap_arg_is(a, "ORDEREDSUBJECT"))
        *out = IMAP_THREAD_ORDEREDSUBJECT;
    else if (imap_arg_is(a, "REFERENCES"))
        *out = IMAP_THREAD_REFERENCES;
    else
        return -EINVAL;
    return 0;
}

unsigned imap_sort_need(const imap_sort_crit *c, size_t n)
{
    unsigned need = 0;
    for (size_t i = 0; i < n; i++) {
        switch (c[i].key) {
        case IMAP_SORT_CC: need |= IMAP_SORT_NEED_CC; break;
        case IMAP_SORT_DATE: need |= IMAP_SORT_NEED_DATE; break;
        case IMAP_SORT_FROM: need |= IMAP_SORT_NEED_FROM; break;
        case IMAP_SORT_SUBJECT: need |= IMAP_SORT_NEED_SUBJECT; break;
        case IMAP_SORT_TO: need |= IMAP_SORT_NEED_TO; break;
        case IMAP_SORT_DISPLAYFROM: need |= IMAP_SORT_NEED_DFROM; break;
        case IMAP_SORT_DISPLAYTO: need |= IMAP_SORT_NEED_DTO; break;
        case IMAP_SORT_ARRIVAL: case IMAP_SORT_SIZE: break;
        }
    }
    return need;
}

unsigned imap_thread_need(imap_thread_alg alg)
{
    return IMAP_SORT_NEED_SUBJECT | IMAP_SORT_NEED_DATE |
           (alg == IMAP_THREAD_REFERENCES ? IMAP_SORT_NEED_IDS : 0);
}

/* ---- sent date ---------------------------------------------------------- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static unsigned num(const char *s, size_t n, size_t *i, unsigned max_digits,
                    unsigned *nd)
{
    unsigned v = 0;
    *nd = 0;
    while (*i < n && is_digit(s[*i]) && *nd < max_digits) {
        v = v * 10 + (unsigned)(s[*i] - '0');
        (*i)++;
        (*nd)++;
    }
    return v;
}

/* obs-zone of RFC 5322 4.3: minutes east of UTC; military zones and
 * unknown names are "-0000", i.e. UTC, which is also what RFC 5256 2.2
 * says for an invalid zone. */
static int obs_zone(const char *s, size_t n)
{
    static const struct { const char *z; int min; } zones[] = {
        {"UT", 0}, {"GMT", 0}, {"EST", -300}, {"EDT", -240}, {"CST", -360},
        {"CDT", -300}, {"MST", -420}, {"MDT", -360}, {"PST", -480},
        {"PDT", -420},
    };
    for (size_t k = 0; k < sizeof zones / sizeof zones[0]; k++)
        if (strlen(zones[k].z) == n && strncasecmp(zones[k].z, s, n) == 0)
            return zones[k].min;
    return 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned dm[12] = { 31, 28, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int imap_sort_parse_date(const char *s, size_t n, int64_t *secs)
{
    size_t i = store_skip_cfws(s, n, 0), nd;
    unsigned ndu;
    /* [day-of-week ","] */
    if (i < n && is_alpha(s[i])) {
        while (i < n && is_alpha(s[i]))
            i++;
        i = store_skip_cfws(s, n, i);
        if (i < n && s[i] == ',')
            i++;
        i = store_skip_cfws(s, n, i);
    }
    unsigned d = num(s, n, &i, 3, &ndu);
    nd = ndu;
    if (!nd || nd > 2)
        return -EINVAL;
    i = store_skip_cfws(s, n, i);
    if (i < n && s[i] == '-')
        i++;
    i = store_skip_cfws(s, n, i);
    size_t ms = i;
    while (i < n && is_alpha(s[i]))
        i++;
    int m = store_month_parse(s + ms, i - ms);
    if (m < 0)
        return -EINVAL;
    m++;
    i = store_skip_cfws(s, n, i);
    if (i < n && s[i] == '-')
        i++;
    i = store_skip_cfws(s, n, i);
    unsigned y = num(s, n, &i, 5, &ndu);
    if (ndu < 2 || ndu > 4 || (i < n && is_digit(s[i])))
        return -EINVAL;
    /* RFC 5322 4.3 obs-year */
    if (ndu == 2)
        y += y < 50 ? 2000 : 1900;
    else if (ndu == 3)
        y += 1900;
    if (d < 1 || d > days_in_month(y, (unsigned)m))
        return -EINVAL;
    int64_t t = srch_days_from_civil(y, (unsigned)m, d) * 86400;

    /* time-of-day: "If the time is also invalid, the time SHOULD be
     * treated as 00:00:00" (and then the zone is moot). */
    i = store_skip_cfws(s, n, i);
    unsigned hh = num(s, n, &i, 2, &ndu), mm = 0, ss = 0;
    if (!ndu || i >= n || s[i] != ':')
        goto done;
    i++;
    mm = num(s, n, &i, 2, &ndu);
    if (ndu != 2)
        goto done;
    if (i < n && s[i] == ':') {
        i++;
        ss = num(s, n, &i, 2, &ndu);
        if (ndu != 2)
            goto done;
    }
    if (hh > 23 || mm > 59 || ss > 60)
        goto done;
    t += (int64_t)hh * 3600 + mm * 60 + ss;
    /* zone: "If the time zone is invalid, the date and time SHOULD be
     * treated as UTC." */
    i = store_skip_cfws(s, n, i);
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1;
        size_t zi = i + 1;
        unsigned z = num(s, n, &zi, 4, &ndu);
        if (ndu == 4 && z / 100 <= 23 && z % 100 <= 59)
            t -= sign * (int64_t)((z / 100) * 60 + z % 100) * 60;
    } else if (i < n && is_alpha(s[i])) {
        size_t zs = i;
        while (i < n && is_alpha(s[i]))
            i++;
        t -= (int64_t)obs_zone(s + zs, i - zs) * 60;
    }
done:
    *secs = t;
    return 0;
}

/* ---- extraction ---------------------------------------------------------- */

static int pool_put(imap_sort_set *s, imap_sort_msg *m, int which,
                    const void *p, size_t n)
{
    if (s->pool.len + n > UINT32_MAX)
        return -E2BIG;
    m->off[which] = (uint32_t)s->pool.len;
    m->len[which] = (uint32_t)n;
    return store_buf_append(&s->pool, p, n);
}

/* Decode (RFC 2047), case-map and keep a string key. */
static int put_mapped(imap_sort_set *s, imap_sort_msg *m, int which,
                      const char *p, size_t n, bool decode)
{
    int rc;
    s->t2.len = 0;
    if (decode) {
        s->t1.len = 0;
        if ((rc = mime_decode_header(p, n, &s->t1)) < 0)
            return rc;
        p = (const char *)s->t1.data;
        n = s->t1.len;
    }
    if ((rc = imap_sort_casemap(p, n, &s->t2)) < 0)
        return rc;
    return pool_put(s, m, which, s->t2.data, s->t2.len);
}

/* FROM / TO / CC: "[IMAP] addr-mailbox of the first ... address" (RFC
 * 5256); DISPLAYFROM / DISPLAYTO: the DISPLAY sort value of RFC 5957 3. */
static int put_address(imap_sort_set *s, imap_sort_msg *m, int which,
                       store_str v, bool display)
{
    imap_address_parts *a = s->addr;
    int rc = imap_first_address(v, a);
    if (rc < 0)
        return rc;
    if (!a->found)
        return pool_put(s, m, which, "", 0);
    if (!display)
        return put_mapped(s, m, which, a->local.p, a->local.len, false);
    /* RFC 5957 4: "A 'derived-addr' value is created from the [IMAP]
     * envelope structure resulting from a FETCH ENVELOPE on the message":
     * our ENVELOPE gives a comment as addr-name when there is no phrase
     * ("(Ann) <a@b>", "a@b (Ann)"), so DISPLAYFROM sorts that as "Ann".
     * Dovecot does so for "a@b (Ann)" only and sorts "(Ann) <a@b>" as
     * "a@b".
     * "If the address structure's [IMAP] addr-name is non-NIL, apply the
     * procedure from [RFC5255], Section 4.6 (... decode any [RFC2047]
     * encoded-words ...).  If the resulting octet string is not the empty
     * string, use it" */
    if (a->name.len) {
        s->t1.len = 0;
        if ((rc = mime_decode_header(a->name.p, a->name.len, &s->t1)) < 0)
            return rc;
        if (s->t1.len) {
            s->t2.len = 0;
            if ((rc = imap_sort_casemap((const char *)s->t1.data, s->t1.len, &s->t2)) < 0)
                return rc;
            return pool_put(s, m, which, s->t2.data, s->t2.len);
        }
    }
    /* "Otherwise, if the address structure's [IMAP] addr-mailbox and
     * [IMAP] addr-host are both non-NIL, the sort value for the address
     * is addr-mailbox@addr-host."  ENVELOPE sends a missing host as ""
     * rather than NIL; "user@" would be no address, so an empty host
     * counts as NIL here. */
    s->t1.len = 0;
    if ((rc = store_buf_append(&s->t1, a->local.p, a->local.len)) < 0)
        return rc;
    if (a->domain.len &&
        ((rc = store_buf_append(&s->t1, "@", 1)) < 0 ||
         (rc = store_buf_append(&s->t1, a->domain.p, a->domain.len)) < 0))
        return rc;
    s->t2.len = 0;
    if ((rc = imap_sort_casemap((const char *)s->t1.data, s->t1.len, &s->t2)) < 0)
        return rc;
    return pool_put(s, m, which, s->t2.data, s->t2.len);
}

/* ---- Message-IDs as numbers ------------------------------------------ */

static int ids_room(imap_sort_set *s, size_t more)
{
    if (s->nids + more > UINT32_MAX)
        return -E2BIG;
    return srch_grow(&s->ids, &s->capids, s->nids + more, sizeof *s->ids, 1024);
}

static void ids_push(imap_sort_set *s, uint32_t num)
{
    RM_ASSERT(s->nids < s->capids);
    s->ids[s->nids++] = num;
    if (num != IMAP_SORT_NO_ID && num >= s->id_bound)
        s->id_bound = num + 1;
}

/* From the store's numbers to the set's own: the store's memo budget is
 * spent, so a string it has not numbered gets no number there, and the
 * set's numbers must all come from one table.  The numbers so far are
 * given again by their bytes. */
static int ids_go_local(imap_sort_set *s, const store_cursor *cur)
{
    if (!(s->local = calloc(1, sizeof *s->local)))
        return -ENOMEM;
    s->ids_local = true;
    s->id_bound = 0;
    for (size_t i = 0; i < s->nids; i++) {
        const uint8_t *p;
        size_t len;
        if (s->ids[i] == IMAP_SORT_NO_ID)
            continue;
        if (!cur || !store_cursor_memo_named(cur, s->ids[i], &p, &len))
            return -EBADMSG;    /* cannot be: the store gave the number */
        int rc = store_names_find(s->local, p, len, true, &s->ids[i]);
        if (rc < 0)
            return rc;
        if (s->ids[i] >= s->id_bound)
            s->id_bound = s->ids[i] + 1;
    }
    return 0;
}

/* The number of an ID's bytes, from the store's table or the set's. */
static int id_number(imap_sort_set *s, const store_cursor *cur, const void *p, size_t len,
                     uint32_t *num)
{
    int rc;
    if (!s->ids_local) {
        if (cur && (rc = store_cursor_memo_name(cur, p, len, num)) != -ENOSPC)
            return rc;
        if ((rc = ids_go_local(s, cur)) < 0)
            return rc;
    }
    return store_names_find(s->local, p, len, true, num);
}

int imap_sort_set_ids(imap_sort_set *s, imap_sort_msg *m, const store_cursor *cur,
                      const char *subj, size_t subj_len, const char *msgid,
                      size_t msgid_len, const char *refs, size_t refs_len)
{
    size_t nrefs = 0;
    for (size_t at = 0; at < refs_len; at += strlen(refs + at) + 1)
        nrefs++;
    int rc = ids_room(s, 2 + nrefs);
    if (rc < 0)
        return rc;
    uint32_t num = IMAP_SORT_NO_ID;
    m->ids_at = (uint32_t)s->nids;
    m->nrefs = (uint32_t)nrefs;
    if (subj_len && (rc = id_number(s, cur, subj, subj_len, &num)) < 0)
        return rc;
    ids_push(s, num);
    num = IMAP_SORT_NO_ID;
    if (msgid_len && (rc = id_number(s, cur, msgid, msgid_len, &num)) < 0)
        return rc;
    ids_push(s, num);
    for (size_t at = 0; at < refs_len; at += strlen(refs + at) + 1) {
        if ((rc = id_number(s, cur, refs + at, strlen(refs + at), &num)) < 0)
            return rc;
        ids_push(s, num);
    }
    return 0;
}

/* THREAD's keys remembered per message (store/memo.c): for REFERENCES,
 * all it needs as u32s: [reply][the store's numbers of the subject,
 * Message-ID and references] (imap_sort_msg.ids_at); the subject for the
 * others as [reply][base subject, case-mapped]. */
#define MEMO_IDS_MIN (3 * sizeof(uint32_t))

static void memo_ids(imap_sort_set *s, const imap_sort_msg *m, const store_cursor *cur)
{
    if (s->ids_local)       /* numbers of the set's own mean nothing later */
        return;
    uint32_t reply = m->reply;
    size_t n = (2 + (size_t)m->nrefs) * sizeof(uint32_t);
    s->t1.len = 0;
    if (store_buf_append(&s->t1, &reply, sizeof reply) == 0 &&
        store_buf_append(&s->t1, s->ids + m->ids_at, n) == 0)
        store_cursor_memo_put_bytes(cur, STORE_MEMO_IDS, s->t1.data, s->t1.len);
}

/* A message's THREAD keys from their remembered numbers. */
static int put_memo_ids(imap_sort_set *s, imap_sort_msg *m, const store_cursor *cur,
                        const uint8_t *rec, size_t n)
{
    uint32_t reply;
    memcpy(&reply, rec, sizeof reply);
    m->reply = reply != 0;
    rec += sizeof reply;
    size_t k = n / sizeof(uint32_t) - 1;
    int rc = ids_room(s, k);
    if (rc < 0)
        return rc;
    m->ids_at = (uint32_t)s->nids;
    m->nrefs = (uint32_t)(k - 2);
    for (size_t i = 0; i < k; i++) {
        uint32_t num;
        memcpy(&num, rec + i * sizeof num, sizeof num);
        if (s->ids_local && num != IMAP_SORT_NO_ID) {
            const uint8_t *p;
            size_t len;
            if (!store_cursor_memo_named(cur, num, &p, &len))
                return -EBADMSG;    /* cannot be: the store gave the number */
            if ((rc = store_names_find(s->local, p, len, true, &num)) < 0)
                return rc;
        }
        ids_push(s, num);
    }
    return 0;
}

static int memo_subject(imap_sort_set *s, const imap_sort_msg *m, const store_cursor *cur)
{
    uint8_t r = m->reply;
    s->t1.len = 0;
    int rc = store_buf_append(&s->t1, &r, 1);
    if (rc == 0)
        rc = store_buf_append(&s->t1, s->pool.data + m->off[IMAP_SORT_S_SUBJECT],
                              m->len[IMAP_SORT_S_SUBJECT]);
    if (rc == 0)
        store_cursor_memo_put_bytes(cur, STORE_MEMO_SUBJECT, s->t1.data, s->t1.len);
    return rc;
}

/* The keys found remembered (NULL: not). */
static int put_memoed(imap_sort_set *s, imap_sort_msg *m, const store_cursor *cur,
                      const uint8_t *ids, size_t ids_n, const uint8_t *subj, size_t subj_n)
{
    int rc = 0;
    if (ids && (rc = put_memo_ids(s, m, cur, ids, ids_n)) < 0)
        return rc;
    if (subj) {
        m->reply = subj[0] != 0;
        rc = pool_put(s, m, IMAP_SORT_S_SUBJECT, subj + 1, subj_n - 1);
    }
    return rc;
}

/* The references of RFC 5256's REFERENCES algorithm: the Message IDs of
 * References if it has a valid one, else the first valid one of
 * In-Reply-To, else none; into s->t1, each followed by NUL. */
static int get_refs(imap_sort_set *s, const store_envelope *env)
{
    int rc;
    size_t pos = 0;
    s->t1.len = 0;
    if (env->references.p) {
        while ((rc = store_msgid_next(env->references.p, env->references.len, &pos, &s->t1)) == 1)
            if ((rc = store_buf_append(&s->t1, "", 1)) < 0)
                return rc;
        if (rc < 0)
            return rc;
    }
    if (!s->t1.len && env->in_reply_to.p) {
        pos = 0;
        rc = store_msgid_next(env->in_reply_to.p, env->in_reply_to.len, &pos, &s->t1);
        if (rc < 0)
            return rc;
        if (rc == 1 && (rc = store_buf_append(&s->t1, "", 1)) < 0)
            return rc;
    }
    return 0;
}

/* The envelope fields the keys in `need` are made from: only those are
 * read from the cache (each is a string elsewhere in the blob). */
static unsigned env_fields(unsigned need)
{
    unsigned f = 0;
    if (need & IMAP_SORT_NEED_SUBJECT)
        f |= STORE_ENV_SUBJECT;
    if (need & (IMAP_SORT_NEED_FROM | IMAP_SORT_NEED_DFROM))
        f |= STORE_ENV_FROM;
    if (need & (IMAP_SORT_NEED_TO | IMAP_SORT_NEED_DTO))
        f |= STORE_ENV_TO;
    if (need & IMAP_SORT_NEED_CC)
        f |= STORE_ENV_CC;
    if (need & IMAP_SORT_NEED_DATE)
        f |= STORE_ENV_DATE;
    if (need & IMAP_SORT_NEED_IDS)
        f |= STORE_ENV_MESSAGE_ID | STORE_ENV_REFERENCES | STORE_ENV_IN_REPLY_TO;
    return f;
}

/* After this many messages the pool's size is estimated for the set. */
#define POOL_SAMPLE 256

int imap_sort_set_add(imap_sort_set *s, store_cursor *cur, uint32_t seq,
                      uint32_t uid)
{
    int rc;
    if (!s->addr && !(s->addr = calloc(1, sizeof(imap_address_parts))))
        return -ENOMEM;
    if (s->n == s->cap) {
        size_t c = s->cap ? s->cap * 2 : 256;
        imap_sort_msg *p = realloc(s->m, c * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->m = p;
        s->cap = c;
    }
    if (s->n == POOL_SAMPLE && s->expect > 2 * POOL_SAMPLE) {
        /* the first messages' average, a quarter more, for the strings
         * and for THREAD's numbers: growing either later copies it whole */
        size_t per = s->pool.len / POOL_SAMPLE + 1, want = per * (s->expect - s->n);
        want += want / 4;
        if (want < (size_t)UINT32_MAX && (rc = store_buf_reserve(&s->pool, want)) < 0)
            return rc;
        per = s->nids / POOL_SAMPLE + 1;
        want = per * (s->expect - s->n);
        if ((s->need & IMAP_SORT_NEED_IDS) && (rc = ids_room(s, want + want / 4)) < 0)
            return rc;
    }
    imap_sort_msg *m = &s->m[s->n];
    memset(m, 0, sizeof *m);
    m->seq = seq;
    m->uid = uid;
    for (int k = 0; k < IMAP_SORT_NSTR; k++)
        m->off[k] = (uint32_t)s->pool.len;

    store_msg e;
    store_cache cache;
    store_envelope env;
    memset(&env, 0, sizeof env);
    unsigned need = s->need;
    bool found = store_cursor_seek(cur, uid, &e) >= 0, cache_ok = false;
    /* A sent date derived before (store/memo.c): then SORT (DATE) alone
     * reads no cache blob. */
    bool date_known = found && (need & IMAP_SORT_NEED_DATE) && store_cursor_memo_get(cur, &m->date);
    if (date_known)
        need &= ~(unsigned)IMAP_SORT_NEED_DATE;
    /* THREAD's keys too: the normalized IDs, the base subject */
    const uint8_t *ids = NULL, *subj = NULL;
    size_t ids_n = 0, subj_n = 0;
    if (found && (need & IMAP_SORT_NEED_IDS) &&
        store_cursor_memo_bytes(cur, STORE_MEMO_IDS, &ids, &ids_n) &&
        ids_n >= MEMO_IDS_MIN && ids_n % 4 == 0)
        /* the subject comes as its number: its bytes are not needed */
        need &= ~(unsigned)(IMAP_SORT_NEED_IDS | IMAP_SORT_NEED_SUBJECT);
    else
        ids = NULL;
    if (found && (need & IMAP_SORT_NEED_SUBJECT) &&
        store_cursor_memo_bytes(cur, STORE_MEMO_SUBJECT, &subj, &subj_n) && subj_n >= 1)
        need &= ~(unsigned)IMAP_SORT_NEED_SUBJECT;
    else
        subj = NULL;
    if (found && need) {
        if (cur->pos >= s->ra_pos) {
            /* keys not remembered are read from the cache in order */
            uint32_t n = store_cursor_readahead(cur, STORE_RA_CACHE, STORE_RA_WINDOW);
            s->ra_pos = cur->pos + (n > 1 ? n / 2 : 1);
        }
        if (s->io_yield && cur->pos != s->fault_pos) {
            /* nothing of this message is in the set yet: it can stop */
            RM_ASSERT(!s->fault);
            if ((rc = store_cursor_resident(cur, STORE_RA_CACHE, STORE_ALL_BYTES,
                                            &s->res_cache, &s->fault)) < 0) {
                if (rc == -EWOULDBLOCK)
                    s->fault_pos = cur->pos;
                return rc;
            }
        }
    }
    if ((rc = put_memoed(s, m, cur, ids, ids_n, subj, subj_n)) < 0)
        return rc;
    if (found) {
        m->size = e.size;
        m->arrival = e.internal_date;
        if (!date_known)
            m->date = e.internal_date;
        if (need && store_cursor_cache(cur, &cache) == 0 &&
            store_cache_envelope_fields(&cache, 0, env_fields(need), &env) == 0)
            cache_ok = true;
    }
    /* else: gone (compacted away) or unreadable: empty strings, as for
     * absent headers ("it is treated as the empty string") */

    if (need & (IMAP_SORT_NEED_SUBJECT)) {
        s->t2.len = 0;
        s->t1.len = 0;
        if (env.subject.p &&
            (rc = imap_base_subject(env.subject.p, env.subject.len, &s->t1, &m->reply)) < 0)
            return rc;
        if ((rc = put_mapped(s, m, IMAP_SORT_S_SUBJECT, (const char *)s->t1.data,
                             s->t1.len, false)) < 0)
            return rc;
        if (cache_ok && (rc = memo_subject(s, m, cur)) < 0)
            return rc;
    }
    if ((need & IMAP_SORT_NEED_FROM) &&
        (rc = put_address(s, m, IMAP_SORT_S_FROM, env.from, false)) < 0)
        return rc;
    if ((need & IMAP_SORT_NEED_TO) &&
        (rc = put_address(s, m, IMAP_SORT_S_TO, env.to, false)) < 0)
        return rc;
    if ((need & IMAP_SORT_NEED_CC) &&
        (rc = put_address(s, m, IMAP_SORT_S_CC, env.cc, false)) < 0)
        return rc;
    if ((need & IMAP_SORT_NEED_DFROM) &&
        (rc = put_address(s, m, IMAP_SORT_S_DFROM, env.from, true)) < 0)
        return rc;
    if ((need & IMAP_SORT_NEED_DTO) &&
        (rc = put_address(s, m, IMAP_SORT_S_DTO, env.to, true)) < 0)
        return rc;
    if (need & IMAP_SORT_NEED_DATE) {
        int64_t t;
        /* "If the sent date cannot be determined (a Date: header is missing
         * or cannot be parsed), the INTERNALDATE for that message is used" */
        if (env.date.p && imap_sort_parse_date(env.date.p, env.date.len, &t) == 0)
            m->date = t;
        if (cache_ok)           /* a failed read is not remembered */
            store_cursor_memo_put(cur, m->date);
    }
    if (need & IMAP_SORT_NEED_IDS) {
        size_t pos = 0;
        s->t2.len = 0;
        rc = env.message_id.p
             ? store_msgid_next(env.message_id.p, env.message_id.len, &pos, &s->t2) : 0;
        if (rc < 0)
            return rc;
        size_t ml = rc == 1 ? s->t2.len : 0;
        if ((rc = get_refs(s, &env)) < 0 ||
            (rc = imap_sort_set_ids(s, m, cur,
                                    (const char *)s->pool.data + m->off[IMAP_SORT_S_SUBJECT],
                                    m->len[IMAP_SORT_S_SUBJECT], (const char *)s->t2.data, ml,
                                    (const char *)s->t1.data, s->t1.len)) < 0)
            return rc;
        if (cache_ok)
            memo_ids(s, m, cur);
    }
    s->n++;
    return 0;
}

int imap_sort_set_expect(imap_sort_set *s, size_t n)
{
    s->expect = n;

    if (n <= s->cap)
        return 0;
    imap_sort_msg *p = realloc(s->m, n * sizeof *p);
    if (!p)
        return -ENOMEM;
    s->m = p;
    s->cap = n;
    return 0;
}

void imap_sort_set_yield_io(imap_sort_set *s, bool on)
{
    s->io_yield = on;
    s->fault_pos = UINT32_MAX;
}

store_fault *imap_sort_set_take_fault(imap_sort_set *s)
{
    store_fault *f = s->fault;
    RM_ASSERT(f);       /* after an add that returned -EWOULDBLOCK */
    s->fault = NULL;
    return f;
}

void imap_sort_set_free(imap_sort_set *s)
{
    store_fault_free(s->fault);
    free(s->m);
    free(s->pool.data);
    free(s->t1.data);
    free(s->t2.data);
    free(s->ids);
    if (s->local) {
        store_names_free(s->local);
        free(s->local);
    }
    if (s->addr) {
        imap_address_parts *a = s->addr;
        imap_out_free(&a->name);
        imap_out_free(&a->local);
        imap_out_free(&a->domain);
        free(a);
    }
    memset(s, 0, sizeof *s);
}

/* ---- ordering ----------------------------------------------------------- */

typedef struct sort_ctx {
    const imap_sort_set *s;
    const imap_sort_crit *c;
    size_t n;
} sort_ctx;

static int cmp_str(const imap_sort_set *s, const imap_sort_msg *a,
                   const imap_sort_msg *b, int which)
{
    uint32_t la = a->len[which], lb = b->len[which], n = la < lb ? la : lb;
    if (n) {
        int r = memcmp(s->pool.data + a->off[which], s->pool.data + b->off[which], n);
        if (r)
            return r;
    }
    return la < lb ? -1 : la > lb;
}

#define CMP3(x, y) ((x) < (y) ? -1 : (x) > (y))

static int cmp_key(const imap_sort_set *s, const imap_sort_msg *a,
                   const imap_sort_msg *b, imap_sort_key k)
{
    switch (k) {
    case IMAP_SORT_ARRIVAL: return CMP3(a->arrival, b->arrival);
    case IMAP_SORT_DATE: return CMP3(a->date, b->date);
    case IMAP_SORT_SIZE: return CMP3(a->size, b->size);
    case IMAP_SORT_CC: return cmp_str(s, a, b, IMAP_SORT_S_CC);
    case IMAP_SORT_FROM: return cmp_str(s, a, b, IMAP_SORT_S_FROM);
    case IMAP_SORT_TO: return cmp_str(s, a, b, IMAP_SORT_S_TO);
    case IMAP_SORT_SUBJECT: return cmp_str(s, a, b, IMAP_SORT_S_SUBJECT);
    case IMAP_SORT_DISPLAYFROM: return cmp_str(s, a, b, IMAP_SORT_S_DFROM);
    case IMAP_SORT_DISPLAYTO: return cmp_str(s, a, b, IMAP_SORT_S_DTO);
    }
    return 0;
}

static int cmp_order(const void *x, const void *y, void *arg)
{
    const sort_ctx *c = arg;
    const imap_sort_msg *a = &c->s->m[*(const uint32_t *)x];
    const imap_sort_msg *b = &c->s->m[*(const uint32_t *)y];
    for (size_t i = 0; i < c->n; i++) {
        int r = cmp_key(c->s, a, b, c->c[i].key);
        if (r)
            return c->c[i].reverse ? -r : r;
    }
    /* "REVERSE only reverses a single criterion, and does not affect the
     * implicit 'sequence number' sort criterion" */
    return CMP3(a->seq, b->seq);
}

static bool numeric_key(imap_sort_key k)
{
    return k == IMAP_SORT_ARRIVAL || k == IMAP_SORT_DATE || k == IMAP_SORT_SIZE;
}

static int64_t numeric_value(const imap_sort_msg *m, imap_sort_key k)
{
    return k == IMAP_SORT_ARRIVAL ? m->arrival : k == IMAP_SORT_DATE ? m->date
                                                                      : (int64_t)m->size;
}

/* A single numeric criterion (DATE, ARRIVAL, SIZE; REVERSE or not), the
 * webmail folder view's sort: an LSD radix sort of 64-bit keys, eight
 * bits a pass, passes where every key has the same byte skipped.  It is
 * stable, so equal keys keep the set's order, which is sequence order: the
 * implicit last criterion ("REVERSE only reverses a single criterion, and
 * does not affect the implicit 'sequence number' sort criterion").  O(n)
 * instead of O(n log n) comparisons through a function pointer. */
static int order_numeric(const imap_sort_set *s, const imap_sort_crit *c, uint32_t *o)
{
    size_t n = s->n;
    uint64_t *k = malloc(n * sizeof *k), *k2 = malloc(n * sizeof *k2);
    uint32_t *o2 = malloc(n * sizeof *o2);
    size_t (*cnt)[256] = calloc(8, sizeof *cnt);
    int rc = k && k2 && o2 && cnt ? 0 : -ENOMEM;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            int64_t v = numeric_value(&s->m[i], c->key);
            /* ~v reverses the order of every int64; flipping the sign bit
             * makes the signed order the unsigned one */
            uint64_t u = (uint64_t)(c->reverse ? ~v : v) ^ (1ull << 63);
            k[i] = u;
            o[i] = (uint32_t)i;
            for (int b = 0; b < 8; b++)
                cnt[b][(u >> (8 * b)) & 0xff]++;
        }
        uint64_t *ks = k, *kd = k2;
        uint32_t *os = o, *od = o2;
        for (int b = 0; b < 8; b++) {
            if (cnt[b][(ks[0] >> (8 * b)) & 0xff] == n)
                continue;       /* one value in this byte: the pass moves nothing */
            size_t at = 0;
            for (int v = 0; v < 256; v++) {
                size_t x = cnt[b][v];
                cnt[b][v] = at;
                at += x;
            }
            for (size_t i = 0; i < n; i++) {
                size_t d = cnt[b][(ks[i] >> (8 * b)) & 0xff]++;
                kd[d] = ks[i];
                od[d] = os[i];
            }
            uint64_t *tk = ks;
            ks = kd;
            kd = tk;
            uint32_t *to = os;
            os = od;
            od = to;
        }
        if (os != o)
            memcpy(o, os, n * sizeof *o);
    }
    free(k);
    free(k2);
    free(o2);
    free(cnt);
    return rc;
}

int imap_sort_cmp(const imap_sort_set *s, const imap_sort_crit *c, size_t ncrit,
                  uint32_t a, uint32_t b)
{
    sort_ctx ctx = { s, c, ncrit };
    return cmp_order(&a, &b, &ctx);
}

int imap_sort_order(const imap_sort_set *s, const imap_sort_crit *c,
                    size_t ncrit, uint32_t **order)
{
    uint32_t *o = malloc((s->n ? s->n : 1) * sizeof *o);
    if (!o)
        return -ENOMEM;
    if (ncrit == 1 && numeric_key(c[0].key) && s->n > 1) {
        int rc = order_numeric(s, c, o);
        if (rc < 0) {
            free(o);
            return rc;
        }
        *order = o;
        return 0;
    }
    for (size_t i = 0; i < s->n; i++)
        o[i] = (uint32_t)i;
    sort_ctx ctx = { s, c, ncrit };
    qsort_r(o, s->n, sizeof *o, cmp_order, &ctx);
    *order = o;
    return 0;
}
