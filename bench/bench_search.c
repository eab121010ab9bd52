/* bench/bench_search.c — SEARCH (core/search/) over a large mailbox.
 *
 *   search/unseen/msgs:N           UNSEEN                  (index only)
 *   search/from/msgs:N             FROM "fischer"          (envelope cache)
 *   search/since/msgs:N            SINCE <date>            (index only;
 *                                  ~10 % of the mailbox is newer)
 *   search/or_not/msgs:N           OR FLAGGED NOT (SEEN FROM "fischer")
 *                                  (index, then the cache for the seen ones)
 *   search/body/msgs:M             BODY "qx-7731"          (every text part
 *                                  decoded; ~1 % match; search_index off)
 *   search/body_indexed/msgs:M     the same with the search index, built by
 *                                  untimed runs first and kept beside the
 *                                  mailbox (in a --data-dir too)
 *   search/body_word_indexed/msgs:M BODY "friday" with the index: a word
 *                                  in most bodies (answered from the
 *                                  index's word lists; checked against
 *                                  the scan)
 *   sort/date/msgs:N               SORT (DATE) UTF-8 ALL   (the Date: header
 *                                  of every message from the cache)
 *   sort/subject/msgs:N            SORT (SUBJECT) UTF-8 ALL (base subjects)
 *   thread/references/msgs:N       THREAD REFERENCES UTF-8 ALL
 *
 * For sort/ and thread/, one iteration is the whole command without the
 * output: search, key extraction from the cache (what the server does in
 * slices), then the order or the thread tree (what it does in one go);
 * the counter order_ms is the average time of that last step alone.
 *
 * N is --search-size (default 10^5), M --search-body-size (default 10^5).
 * One iteration = one command as the server runs it: tokenize "t SEARCH
 * ...", imap_search_parse, a snapshot, imap_search_run over a view of all
 * live messages, free.  items_per_second = messages searched/s.
 *
 * The mailbox is bench_mail.c's (realistic messages, one in five
 * multipart/alternative, UID gaps).  A first run is checked against the
 * UIDs the generator's record says must match, in order.
 */
#include "bench/bench.h"
#include "core/search/search.h"
#include "core/search/sort.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FISCHER 5   /* bench_mail_last_names[5] */

typedef enum kind { K_UNSEEN, K_FROM, K_SINCE, K_OR_NOT, K_BODY, K_BODY_IX, K_WORD_IX,
                    K_SORT_DATE,
                    K_SORT_SUBJECT, K_THREAD_REFS, K_COUNT } kind;

typedef struct search_arg {
    kind k;
    uint64_t n;
} search_arg;

static search_arg g_args[K_COUNT];

/* The SINCE date: the midnight (UTC) after 90 % of the messages. */
static int64_t since_midnight(const bench_mail *m, char *buf, size_t cap)
{
    int64_t t = m->info[m->ninfo * 9 / 10].internal_date;
    t -= t % 86400;
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(buf, cap, "%d-%s-%d", tm.tm_mday, store_month_abbr(tm.tm_mon),
             tm.tm_year + 1900);
    return t;
}

static bool expect(kind k, const bench_mail_info *mi, int64_t since)
{
    bool seen = mi->flags & STORE_F_SEEN, fischer = mi->from_last == FISCHER;
    switch (k) {
    case K_UNSEEN: return !seen;
    case K_FROM: return fischer;
    case K_SINCE: return mi->internal_date >= since;
    case K_OR_NOT: return (mi->flags & STORE_F_FLAGGED) || !(seen && fischer);
    case K_BODY:
    case K_BODY_IX: return mi->marker;
    default: return false;
    }
}

/* One SEARCH command, start to end.  Returns 0 or -errno. */
static int run_search(const bench_mail *m, const char *line, imap_search_result *res,
                      const char **err)
{
    imap_args *a = NULL;
    imap_search_prog *p = NULL;
    const char *tag, *name;
    size_t taglen, nargs;
    imap_arg *args;
    int r = imap_args_parse((const uint8_t *)line, strlen(line), &a, &tag, &taglen,
                            &name, &args, &nargs, err);
    if (r == 0)
        r = imap_search_parse(args, nargs, NULL, &p, err);
    if (r == 0) {
        store_snap *snap = store_snap_get(m->mb);
        if (!snap) {
            r = -ENOMEM;
        } else {
            imap_search_view v = {.snap = snap, .uids = m->live, .count = m->nlive};
            r = imap_search_run(p, &v, res);
            store_snap_put(snap);
        }
    }
    imap_search_free(p);
    imap_args_free(a);
    return r;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One SORT or THREAD command (without writing the answer).  *order_ms gets
 * the time of the final step. */
static int run_sort(const bench_mail *m, kind k, imap_sort_set *set, uint32_t **order,
                    imap_out *thr, double *order_ms)
{
    imap_search_result res = {0};
    imap_search_prog *p = NULL;
    imap_args *a = NULL;
    const char *tag, *name, *err;
    size_t taglen, nargs;
    imap_arg *args;
    static const char line[] = "t SEARCH ALL";
    int r = imap_args_parse((const uint8_t *)line, strlen(line), &a, &tag, &taglen,
                            &name, &args, &nargs, &err);
    if (r == 0)
        r = imap_search_parse_keys(args, nargs, NULL, &p, &err);
    imap_sort_crit crit = {k == K_SORT_DATE ? IMAP_SORT_DATE : IMAP_SORT_SUBJECT, false};
    imap_sort_set_free(set);
    set->need = k == K_THREAD_REFS ? imap_thread_need(IMAP_THREAD_REFERENCES)
                                   : imap_sort_need(&crit, 1);
    store_snap *snap = r == 0 ? store_snap_get(m->mb) : NULL;
    if (r == 0 && !snap)
        r = -ENOMEM;
    if (r == 0) {
        imap_search_view v = {.snap = snap, .uids = m->live, .count = m->nlive};
        r = imap_search_run(p, &v, &res);
        store_cursor cur;
        store_cursor_init(&cur, snap);
        for (size_t i = 0; r == 0 && i < res.n; i++)
            r = imap_sort_set_add(set, &cur, res.seqs[i], res.uids[i]);
    }
    if (r == 0) {
        double t0 = now_ms();
        free(*order);
        *order = NULL;
        thr->len = 0;
        if (k == K_THREAD_REFS)
            r = imap_thread_render(set, IMAP_THREAD_REFERENCES, false, thr);
        else
            r = imap_sort_order(set, &crit, 1, order);
        *order_ms = now_ms() - t0;
    }
    if (snap)
        store_snap_put(snap);
    imap_search_result_free(&res);
    imap_search_free(p);
    imap_args_free(a);
    return r;
}

static void bm_sort(bench_state *st, const search_arg *a, const bench_mail *m)
{
    imap_sort_set set = {0};
    uint32_t *order = NULL;
    imap_out thr = {0};
    double ms = 0, total = 0;
    int r = run_sort(m, a->k, &set, &order, &thr, &ms);
    if (r < 0 || set.n != m->nlive) {
        bench_error(st, "sort: %s (%zu of %u)", strerror(-r), set.n, m->nlive);
        goto out;
    }
    /* checked against the prepared keys: ascending */
    for (size_t i = 1; order && i < set.n; i++) {
        const imap_sort_msg *x = &set.m[order[i - 1]], *y = &set.m[order[i]];
        bool ok = a->k != K_SORT_DATE || x->date < y->date ||
                  (x->date == y->date && x->seq < y->seq);
        if (!ok) {
            bench_error(st, "sort: not in order at %zu", i);
            goto out;
        }
    }
    while (bench_keep_running(st)) {
        if ((r = run_sort(m, a->k, &set, &order, &thr, &ms)) < 0) {
            bench_error(st, "sort: %s", strerror(-r));
            goto out;
        }
        total += ms;
    }
    bench_set_items_processed(st, bench_iterations(st) * (int64_t)m->nlive);
    bench_set_counter(st, "order_ms", bench_iterations(st) ? total / (double)bench_iterations(st)
                                                           : 0, BENCH_COUNTER_PLAIN);
out:
    imap_sort_set_free(&set);
    free(order);
    imap_out_free(&thr);
}

static void bm_search(bench_state *st, void *arg)
{
    const search_arg *a = arg;
    const bench_mail *m = bench_mail_get(st, a->n);
    if (!m)
        return;
    if (a->k >= K_SORT_DATE) {
        bm_sort(st, a, m);
        return;
    }
    char date[32], line[256];
    int64_t since = since_midnight(m, date, sizeof date);
    switch (a->k) {
    case K_UNSEEN: snprintf(line, sizeof line, "t SEARCH UNSEEN"); break;
    case K_FROM: snprintf(line, sizeof line, "t SEARCH FROM \"fischer\""); break;
    case K_SINCE: snprintf(line, sizeof line, "t SEARCH SINCE %s", date); break;
    case K_OR_NOT:
        snprintf(line, sizeof line, "t SEARCH OR FLAGGED NOT (SEEN FROM \"fischer\")");
        break;
    case K_WORD_IX: snprintf(line, sizeof line, "t SEARCH BODY \"friday\""); break;
    default:
        snprintf(line, sizeof line, "t SEARCH BODY \"%s\"", BENCH_MAIL_MARKER);
        for (char *c = strchr(line, '"'); *c; c++)   /* case folding at work */
            *c = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
        break;
    }

    imap_search_result res = {0};
    const char *err = NULL;
    bool ix = a->k == K_BODY_IX || a->k == K_WORD_IX;
    int r = 0;
    size_t want = 0;
    uint32_t *scan = NULL;
    if (a->k == K_WORD_IX) {
        /* the generator keeps no record of this word: the scan is the
         * oracle */
        imap_search_set_index(false);
        if ((r = run_search(m, line, &res, &err)) == 0 &&
            (scan = malloc((res.n + 1) * sizeof *scan)) != NULL) {
            memcpy(scan, res.uids, res.n * sizeof *scan);
            want = res.n;
        } else if (r == 0)
            r = -ENOMEM;
    }
    imap_search_set_index(ix);
    /* a search indexes a quarter of a large mailbox: these build it */
    for (int i = 0; ix && r == 0 && i < 4; i++)
        r = run_search(m, line, &res, &err);
    if (r == 0)
        r = run_search(m, line, &res, &err);
    if (r < 0) {
        bench_error(st, "%s: %s (%s)", line, strerror(-r), err ? err : "");
        goto out;
    }
    if (scan && (res.n != want || memcmp(res.uids, scan, want * sizeof *scan))) {
        bench_error(st, "%s: %zu found with the index, %zu by the scan", line, res.n, want);
        goto out;
    }
    for (uint64_t i = 0; !scan && i < m->ninfo; i++) {
        const bench_mail_info *mi = &m->info[i];
        if (!mi->live || !expect(a->k, mi, since))
            continue;
        if (want >= res.n || res.uids[want] != mi->uid) {
            bench_error(st, "%s: result differs from the generator's at match %zu "
                        "(%zu found)", line, want, res.n);
            goto out;
        }
        want++;
    }
    if (want != res.n || want == 0) {
        bench_error(st, "%s: %zu found, %zu expected", line, res.n, want);
        goto out;
    }
    while (bench_keep_running(st)) {
        if ((r = run_search(m, line, &res, &err)) < 0 || res.n != want) {
            bench_error(st, "%s: %s", line, r < 0 ? strerror(-r) : "count changed");
            goto out;
        }
    }
    bench_set_items_processed(st, bench_iterations(st) * (int64_t)m->nlive);
    bench_set_counter(st, "matches", (double)want, BENCH_COUNTER_PLAIN);
out:
    free(scan);
    imap_search_set_index(true);
    imap_search_result_free(&res);
}

int bench_suite_search_register(const bench_opts *o)
{
    static const char *const names[K_COUNT] = {"unseen", "from", "since", "or_not", "body",
                                               "body_indexed", "body_word_indexed",
                                               "date", "subject",
                                               "references"};
    char name[96];
    for (int k = 0; k < K_COUNT; k++) {
        search_arg *a = &g_args[k];
        a->k = (kind)k;
        a->n = k == K_BODY || k == K_BODY_IX || k == K_WORD_IX ? o->search_body_size
                                                               : o->search_size;
        snprintf(name, sizeof name, "%s/%s/msgs:%" PRIu64,
                 k == K_THREAD_REFS ? "thread" : k >= K_SORT_DATE ? "sort" : "search",
                 names[k], a->n);
        bench_bm *b = bench_register(name, bm_search, a);
        if (!b)
            return -ENOMEM;
        bench_bm_unit(b, BENCH_MS);
    }
    return 0;
}

void bench_suite_search_teardown(void)
{
}
