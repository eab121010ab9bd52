/* tests/unit/test_thread.c — THREAD=REFERENCES and THREAD=ORDEREDSUBJECT
 * (RFC 5256 section 3) on crafted Message-ID graphs: loops, missing and
 * duplicate ids, dummy pruning and promotion, truncated References, subject
 * grouping and the sibling order.  The keys are built here as
 * imap_sort_set_add builds them from the cache (test_thread_store.c takes
 * them from a store). */
#include "core/search/sort.h"
#include "store/msgid.h"
#include "tests/unit/testutil.h"

static void put(imap_sort_set *s, imap_sort_msg *m, int which, const void *p, size_t n)
{
    m->off[which] = (uint32_t)s->pool.len;
    m->len[which] = (uint32_t)n;
    if (n)
        REQUIRE_OK(store_buf_append(&s->pool, p, n));
}

/* Message number seq (sent at `date`) with a raw Subject, Message-ID,
 * References and In-Reply-To (NULL: absent). */
static void add(imap_sort_set *s, int64_t date, const char *subject, const char *msgid,
                const char *refs, const char *irt)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->m = realloc(s->m, s->cap * sizeof *s->m);
        REQUIRE(s->m);
    }
    imap_sort_msg *m = &s->m[s->n];
    memset(m, 0, sizeof *m);
    m->seq = (uint32_t)s->n + 1;
    m->uid = m->seq + 100;
    m->date = date;
    store_buf b = {0}, c = {0};
    REQUIRE_OK(imap_base_subject(subject, strlen(subject), &b, &m->reply));
    REQUIRE_OK(imap_sort_casemap(b.data ? (const char *)b.data : "", b.len, &c));
    put(s, m, IMAP_SORT_S_SUBJECT, c.data, c.len);
    b.len = 0;
    size_t pos = 0;
    store_buf id = {0};
    int rc = msgid ? store_msgid_next(msgid, strlen(msgid), &pos, &id) : 0;
    pos = 0;
    while (refs && store_msgid_next(refs, strlen(refs), &pos, &b) == 1)
        REQUIRE_OK(store_buf_append(&b, "", 1));
    pos = 0;
    if (!b.len && irt && store_msgid_next(irt, strlen(irt), &pos, &b) == 1)
        REQUIRE_OK(store_buf_append(&b, "", 1));
    /* as imap_sort_set_add gives them, numbered by the set's own table */
    REQUIRE_OK(imap_sort_set_ids(s, m, NULL, (const char *)c.data, c.len,
                                 (const char *)id.data, rc == 1 ? id.len : 0,
                                 (const char *)b.data, b.len));
    free(id.data);
    free(b.data);
    free(c.data);
    s->n++;
}

static void thread_is(imap_sort_set *s, imap_thread_alg alg, bool uid, const char *want)
{
    imap_out o = {0};
    REQUIRE_OK(imap_thread_render(s, alg, uid, &o));
    bool ok = o.len == strlen(want) && (!o.len || !memcmp(o.p, want, o.len));
    if (!ok)
        fprintf(stderr, "thread: \"%.*s\", want \"%s\"\n", (int)o.len, o.p ? o.p : "", want);
    CHECK(ok);
    imap_out_free(&o);
}

#define REFS(s, want) thread_is((s), IMAP_THREAD_REFERENCES, false, (want))

static void test_chain_and_ids(void)
{
    imap_sort_set s = {0};
    add(&s, 10, "Hello", "<a@x>", NULL, NULL);
    add(&s, 20, "Re: Hello", "<b@x>", NULL, "<a@x> (sent by someone)");
    /* References wins over In-Reply-To; quoting does not matter */
    add(&s, 30, "Re: Hello", "<c@x>", "<\"a\"@x> <b@x>", "<zzz@x>");
    REFS(&s, " (1 2 3)");
    thread_is(&s, IMAP_THREAD_REFERENCES, true, " (101 102 103)");
    imap_sort_set_free(&s);

    /* nothing */
    thread_is(&s, IMAP_THREAD_REFERENCES, false, "");
    thread_is(&s, IMAP_THREAD_ORDEREDSUBJECT, false, "");
}

static void test_loops(void)
{
    /* A says B is its parent, B says A is: the second link would close a
     * loop and is not made */
    imap_sort_set s = {0};
    add(&s, 10, "x", "<a@x>", "<b@x>", NULL);
    add(&s, 20, "y", "<b@x>", "<a@x>", NULL);
    REFS(&s, " (2 1)");
    imap_sort_set_free(&s);

    /* a message among its own references */
    add(&s, 10, "x", "<a@x>", "<a@x>", NULL);
    add(&s, 20, "y", "<b@x>", "<a@x> <b@x> <a@x>", NULL);
    REFS(&s, " (1 2)");
    imap_sort_set_free(&s);

    /* a longer cycle through references */
    add(&s, 10, "p", "<a@x>", "<c@x> <b@x>", NULL);
    add(&s, 20, "q", "<b@x>", "<a@x> <c@x>", NULL);
    add(&s, 30, "r", "<c@x>", "<b@x> <a@x>", NULL);
    imap_out o = {0};
    REQUIRE_OK(imap_thread_render(&s, IMAP_THREAD_REFERENCES, false, &o));
    /* every message exactly once */
    int seen[4] = {0};
    for (size_t i = 0; i < o.len; i++)
        if (o.p[i] >= '1' && o.p[i] <= '3')
            seen[o.p[i] - '0']++;
    CHECK(seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    imap_out_free(&o);
    imap_sort_set_free(&s);
}

static void test_missing_parents(void)
{
    imap_sort_set s = {0};
    /* two children of a missing parent: the dummy stays at the top */
    add(&s, 10, "one", "<a@x>", "<gone@x>", NULL);
    add(&s, 20, "two", "<b@x>", NULL, "<gone@x>");
    REFS(&s, " ((1)(2))");
    imap_sort_set_free(&s);

    /* one child: promoted to the top */
    add(&s, 10, "one", "<a@x>", "<gone@x>", NULL);
    REFS(&s, " (1)");
    imap_sort_set_free(&s);

    /* a dummy in the middle of a chain: its child goes up a level */
    add(&s, 10, "one", "<a@x>", NULL, NULL);
    add(&s, 20, "two", "<c@x>", "<a@x> <gone@x>", NULL);
    REFS(&s, " (1 2)");
    imap_sort_set_free(&s);

    /* a dummy with two children under a message: both go up */
    add(&s, 10, "one", "<a@x>", NULL, NULL);
    add(&s, 30, "two", "<b@x>", "<a@x> <gone@x>", NULL);
    add(&s, 20, "three", "<c@x>", "<a@x> <gone@x>", NULL);
    REFS(&s, " (1 (3)(2))");
    imap_sort_set_free(&s);

    /* nested dummies at the top: the inner one is removed, its two
     * children stay under the outer */
    add(&s, 10, "one", "<a@x>", "<g1@x> <g2@x>", NULL);
    add(&s, 20, "two", "<b@x>", "<g1@x> <g2@x>", NULL);
    REFS(&s, " ((1)(2))");
    imap_sort_set_free(&s);
}

static void test_duplicates_and_truncation(void)
{
    imap_sort_set s = {0};
    /* the second <d@x> is another message; replies go to the first */
    add(&s, 10, "one", "<d@x>", NULL, NULL);
    add(&s, 20, "two", "<d@x>", NULL, NULL);
    add(&s, 30, "three", "<e@x>", "<d@x>", NULL);
    REFS(&s, " (1 3)(2)");
    imap_sort_set_free(&s);

    /* no or invalid Message-ID: a unique one */
    add(&s, 10, "one", NULL, NULL, NULL);
    add(&s, 20, "two", "<broken", NULL, NULL);
    add(&s, 30, "three", "<c@x>", "<broken>", NULL);
    REFS(&s, " (1)(2)(3)");
    imap_sort_set_free(&s);

    /* (1)(A) does not change an existing parent: 3's References say
     * a -> c, but c is already 2's child */
    add(&s, 10, "one", "<c@x>", "<b@x>", NULL);
    add(&s, 20, "two", "<b@x>", "<a@x>", NULL);
    add(&s, 30, "three", "<z@x>", "<a@x> <c@x>", NULL);
    REFS(&s, " (2 1 3)");
    imap_sort_set_free(&s);

    /* (1)(B) does: 2's References made <c@x> a child of 1 (message p);
     * message c itself says its parent is <q@x>, which wins */
    add(&s, 10, "one", "<p@x>", NULL, NULL);
    add(&s, 20, "two", "<m@x>", "<p@x> <c@x>", NULL);
    add(&s, 30, "three", "<c@x>", "<q@x>", NULL);
    REFS(&s, " (1)(3 2)");
    imap_sort_set_free(&s);
}

static void test_subjects(void)
{
    imap_sort_set s = {0};
    /* a reply without references joins the original */
    add(&s, 10, "Hello", "<a@x>", NULL, NULL);
    add(&s, 20, "Re: hello", "<b@x>", NULL, NULL);
    REFS(&s, " (1 2)");
    imap_sort_set_free(&s);

    /* the reply came first: the original still becomes the parent */
    add(&s, 10, "Re: X", "<a@x>", NULL, NULL);
    add(&s, 20, "X", "<b@x>", NULL, NULL);
    REFS(&s, " (2 1)");
    imap_sort_set_free(&s);

    /* two originals: siblings under a new dummy */
    add(&s, 10, "Hi", "<a@x>", NULL, NULL);
    add(&s, 20, "hi", "<b@x>", NULL, NULL);
    REFS(&s, " ((1)(2))");
    imap_sort_set_free(&s);

    /* two replies: the same */
    add(&s, 10, "Re: Hi", "<a@x>", NULL, NULL);
    add(&s, 20, "Fwd: hi", "<b@x>", NULL, NULL);
    REFS(&s, " ((1)(2))");
    imap_sort_set_free(&s);

    /* empty subjects are not grouped */
    add(&s, 10, "", "<a@x>", NULL, NULL);
    add(&s, 20, "Re:", "<b@x>", NULL, NULL);
    REFS(&s, " (1)(2)");
    imap_sort_set_free(&s);

    /* a dummy thread and a message thread with one subject: the message
     * goes under the dummy (a sibling of its children) */
    add(&s, 10, "Topic", "<a@x>", "<gone@x>", NULL);
    add(&s, 20, "Re: Topic", "<b@x>", "<gone@x>", NULL);
    add(&s, 5, "Topic", "<c@x>", NULL, NULL);
    REFS(&s, " ((3)(1)(2))");
    imap_sort_set_free(&s);

    /* two dummies with one subject: merged */
    add(&s, 10, "Topic", "<a@x>", "<g1@x>", NULL);
    add(&s, 20, "Topic", "<b@x>", "<g1@x>", NULL);
    add(&s, 15, "Re: Topic", "<c@x>", "<g2@x>", NULL);
    add(&s, 25, "Re: Topic", "<d@x>", "<g2@x>", NULL);
    REFS(&s, " ((1)(3)(2)(4))");
    imap_sort_set_free(&s);
}

static void test_order(void)
{
    imap_sort_set s = {0};
    /* siblings by sent date, ties by sequence number; threads by their
     * first message (a dummy by its first child) */
    add(&s, 50, "a", "<a@x>", NULL, NULL);
    add(&s, 40, "b", "<b@x>", "<a@x>", NULL);
    add(&s, 30, "c", "<c@x>", "<a@x>", NULL);
    add(&s, 30, "d", "<d@x>", "<a@x>", NULL);
    add(&s, 60, "e", "<e@x>", "<gone@x>", NULL);
    add(&s, 45, "f", "<f@x>", "<gone@x>", NULL);
    add(&s, 1, "g", "<g@x>", "<c@x>", NULL);
    REFS(&s, " ((6)(5))(1 (3 7)(4)(2))");
    imap_sort_set_free(&s);
}

static void test_orderedsubject(void)
{
    imap_sort_set s = {0};
    add(&s, 30, "Re: b", "<1@x>", NULL, NULL);
    add(&s, 20, "a", "<2@x>", NULL, NULL);
    add(&s, 10, "B", "<3@x>", NULL, NULL);
    add(&s, 40, "[list] a", "<4@x>", NULL, NULL);
    add(&s, 40, "Fwd: a", "<5@x>", NULL, NULL);
    add(&s, 5, "c", "<6@x>", NULL, NULL);
    /* A: 2 4 5 (4 and 5 tie: by sequence), B: 3 1, C: 6; threads by
     * their first message's date: 6 (5), 3 (10), 2 (20) */
    thread_is(&s, IMAP_THREAD_ORDEREDSUBJECT, false, " (6)(3 1)(2 (4)(5))");
    thread_is(&s, IMAP_THREAD_ORDEREDSUBJECT, true, " (106)(103 101)(102 (104)(105))");
    imap_sort_set_free(&s);
}

static void test_deep_chain(void)
{
    /* a long reply chain, each message naming only its parent: no
     * recursion per level (the output is one flat list) */
    imap_sort_set s = {0};
    char id[32], ref[32];
    unsigned n = test_quick() ? 2000 : 20000;
    for (unsigned i = 0; i < n; i++) {
        snprintf(id, sizeof id, "<%u@x>", i);
        snprintf(ref, sizeof ref, "<%u@x>", i ? i - 1 : 999999);
        add(&s, i, "chain", id, i ? ref : NULL, NULL);
    }
    imap_out o = {0};
    REQUIRE_OK(imap_thread_render(&s, IMAP_THREAD_REFERENCES, false, &o));
    CHECK(o.len > 2 && o.p[0] == ' ' && o.p[1] == '(' && o.p[o.len - 1] == ')');
    CHECK(memchr(o.p + 2, '(', o.len - 2) == NULL);
    imap_out_free(&o);
    imap_sort_set_free(&s);
}

static void test_empty_keys(void)
{
    /* every string empty: the pool holds nothing at all */
    imap_sort_set s = {0};
    add(&s, 20, "", NULL, NULL, NULL);
    add(&s, 10, "Re:", NULL, NULL, NULL);
    add(&s, 10, "", NULL, NULL, NULL);
    thread_is(&s, IMAP_THREAD_ORDEREDSUBJECT, false, " (2 (3)(1))");
    REFS(&s, " (2)(3)(1)");
    imap_sort_crit c[2] = {{IMAP_SORT_SUBJECT, false}, {IMAP_SORT_FROM, true}};
    uint32_t *o = NULL;
    REQUIRE_OK(imap_sort_order(&s, c, 2, &o));
    CHECK(o[0] == 0 && o[1] == 1 && o[2] == 2);
    free(o);
    imap_sort_set_free(&s);
}

/* Random id graphs (forward, backward, self and cyclic references,
 * duplicates, missing ids, shared subjects): every message once in the
 * answer, well nested, the same answer twice. */
static void test_random_graphs(void)
{
    unsigned seed = 12345;
    int rounds = test_quick() ? 100 : 400;
    for (int round = 0; round < rounds; round++) {
        imap_sort_set s = {0};
        seed = seed * 1103515245u + 12345u;
        unsigned n = 1 + (seed >> 16) % 40;
        static const char *const subj[] = {"a", "Re: a", "b", "Fwd: b", "", "[l] a", "a (fwd)"};
        for (unsigned i = 0; i < n; i++) {
            char id[32], refs[128] = "";
            seed = seed * 1103515245u + 12345u;
            snprintf(id, sizeof id, "<%u@x>", (seed >> 8) % (n + 3));
            for (unsigned k = (seed >> 20) % 4; k > 0; k--) {
                seed = seed * 1103515245u + 12345u;
                size_t l = strlen(refs);
                snprintf(refs + l, sizeof refs - l, "<%u@x> ", (seed >> 8) % (n + 5));
            }
            seed = seed * 1103515245u + 12345u;
            add(&s, (seed >> 12) % 7, subj[(seed >> 4) % 7], (seed & 7) ? id : NULL,
                refs[0] ? refs : NULL, NULL);
        }
        for (int alg = 0; alg < 2; alg++) {
            imap_out o = {0}, o2 = {0};
            REQUIRE_OK(imap_thread_render(&s, (imap_thread_alg)alg, false, &o));
            REQUIRE_OK(imap_thread_render(&s, (imap_thread_alg)alg, false, &o2));
            CHECK(o.len == o2.len && (!o.len || !memcmp(o.p, o2.p, o.len)));
            unsigned seen[64] = {0};
            int depth = 0;
            bool ok = true;
            for (size_t i = 0; i < o.len; i++) {
                if (o.p[i] == '(')
                    depth++;
                else if (o.p[i] == ')')
                    ok &= --depth >= 0;
                else if (o.p[i] >= '0' && o.p[i] <= '9') {
                    unsigned v = 0;
                    while (i < o.len && o.p[i] >= '0' && o.p[i] <= '9')
                        v = v * 10 + (unsigned)(o.p[i++] - '0');
                    i--;
                    ok &= v >= 1 && v <= n;
                    if (v < 64)
                        seen[v]++;
                }
            }
            ok &= depth == 0;
            for (unsigned v = 1; v <= n; v++)
                ok &= seen[v] == 1;
            if (!ok)
                fprintf(stderr, "round %d alg %d: \"%.*s\"\n", round, alg, (int)o.len, o.p);
            CHECK(ok);
            imap_out_free(&o);
            imap_out_free(&o2);
        }
        imap_sort_set_free(&s);
    }
}

int main(void)
{
    RUN(test_random_graphs);
    RUN(test_empty_keys);
    RUN(test_chain_and_ids);
    RUN(test_loops);
    RUN(test_missing_parents);
    RUN(test_duplicates_and_truncation);
    RUN(test_subjects);
    RUN(test_order);
    RUN(test_orderedsubject);
    RUN(test_deep_chain);
    return test_summary();
}
