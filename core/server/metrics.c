/* core/server/metrics.c — the shared counter region and its Prometheus text
 * (see metrics.h). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/server/metrics.h"
#include "core/server/session.h"
#include "store/assert.h"

/* One worker's counters: written by that worker only.  Aligned so that no
 * two workers' blocks share a cache line. */
typedef struct mworker {
    _Alignas(64) net_stats net;
    /* sessions by metrics_state_index; a worker's own count never goes
     * below zero (a session stays on its worker), kept as uint64_t that
     * the decrement wraps and the sum unwraps */
    _Atomic uint64_t sessions[METRICS_NSTATES * 2];
    _Atomic uint64_t logins[METRICS_NMECHS][METRICS_NRESULTS];
    _Atomic uint64_t lmtp[METRICS_NLMTP];
    store_hist cmd[CMD_COUNT];
} mworker;

/* One server process's part. */
typedef struct mslot {
    _Alignas(64) _Atomic int32_t pid;   /* 0: none runs in it */
    _Atomic uint64_t starts;            /* servers that took the slot */
    _Alignas(64) store_stats store;     /* written by any of its threads */
    _Alignas(64) authpool_stats auth;
    mworker w[];
} mslot;

#define MREGION_MAGIC 0x52696e676d657472ull    /* "Ringmetr" */

typedef struct mregion {
    uint64_t magic;
    unsigned nslots, nworkers;
    size_t slot_size, size;
    double start_time;          /* seconds since the epoch */
} mregion;

#define HDR_SIZE 4096           /* the header's page; slots follow */

static mregion *R;
/* This process's slot and how many worker blocks it has (0: no hooks). */
static mslot *mine;
static unsigned mine_nw;

static mslot *slot_at(unsigned i)
{
    return (mslot *)((char *)R + HDR_SIZE + (size_t)i * R->slot_size);
}

static unsigned cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int metrics_map(unsigned nslots, unsigned nworkers)
{
    if (R)
        return -EALREADY;
    if (!nslots)
        return -EINVAL;
    if (!nworkers)
        nworkers = cpus();      /* what net_server_new does with workers = 0 */
    size_t slot = sizeof(mslot) + (size_t)nworkers * sizeof(mworker);
    slot = (slot + 4095) & ~(size_t)4095;
    size_t size = HDR_SIZE + (size_t)nslots * slot;
    /* MAP_SHARED before the fork: every server process writes its slot of
     * the same pages, and any of them reads them all. */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    R = p;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *R = (mregion){.magic = MREGION_MAGIC, .nslots = nslots, .nworkers = nworkers,
                   .slot_size = slot, .size = size,
                   .start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9};
    return 0;
}

int metrics_attach(unsigned slot, net_server *net, authpool *ap)
{
    int rc;
    if (!R && (rc = metrics_map(1, net ? net_server_workers(net) : 0)) < 0)
        return rc;
    if (slot >= R->nslots)
        return -EINVAL;
    mslot *s = slot_at(slot);
    /* Gauges describe the server now running: what a dead predecessor
     * left in them is gone with it.  Counters go on. */
    for (unsigned w = 0; w < R->nworkers; w++)
        for (unsigned i = 0; i < METRICS_NSTATES * 2; i++)
            atomic_store(&s->w[w].sessions[i], 0);
    atomic_store(&s->auth.queued, 0);
    atomic_store(&s->store.compact_done, 0);
    atomic_store(&s->store.compact_total, 0);
    atomic_store(&s->pid, (int32_t)getpid());
    atomic_fetch_add(&s->starts, 1);
    unsigned nw = R->nworkers;
    if (net) {
        if (net_server_workers(net) < nw)
            nw = net_server_workers(net);
        for (unsigned w = 0; w < nw; w++)
            if ((rc = net_server_set_stats(net, w, &s->w[w].net)) < 0)
                return rc;
    }
    mine = s;
    mine_nw = nw;
    store_stats_attach(&s->store);
    if (ap)
        authpool_set_stats(ap, &s->auth);
    return 0;
}

void metrics_detach(void)
{
    if (!mine)
        return;
    store_stats_attach(NULL);
    for (unsigned w = 0; w < R->nworkers; w++)
        for (unsigned i = 0; i < METRICS_NSTATES * 2; i++)
            atomic_store(&mine->w[w].sessions[i], 0);
    atomic_store(&mine->auth.queued, 0);
    atomic_store(&mine->pid, 0);
    mine_nw = 0;
}

/* ---- hooks ---------------------------------------------------------------- */

static inline mworker *wk(unsigned w)
{
    return w < mine_nw ? &mine->w[w] : NULL;
}

void metrics_session_state(unsigned w, unsigned from, unsigned to)
{
    mworker *b = wk(w);
    if (!b || from == to)
        return;
    if (from < METRICS_NSTATES * 2)
        store_stat_inc_own(&b->sessions[from], (uint64_t)-1);
    if (to < METRICS_NSTATES * 2)
        store_stat_inc_own(&b->sessions[to], 1);
}

void metrics_command(unsigned w, unsigned cmd, uint64_t ns)
{
    mworker *b = wk(w);
    if (b && cmd < CMD_COUNT)
        store_hist_add_own(&b->cmd[cmd], ns);
}

void metrics_login(unsigned w, metrics_mech mech, metrics_result r)
{
    mworker *b = wk(w);
    if (b && mech < METRICS_NMECHS && r < METRICS_NRESULTS)
        store_stat_inc_own(&b->logins[mech][r], 1);
}

metrics_mech metrics_mech_of_sasl(const char *name)
{
    if (!name)
        return METRICS_MECH_OTHER;
    if (!strcasecmp(name, "PLAIN"))
        return METRICS_MECH_PLAIN;
    if (!strcasecmp(name, "LOGIN"))
        return METRICS_MECH_LOGIN;
    if (!strcasecmp(name, "SCRAM-SHA-256"))
        return METRICS_MECH_SCRAM_SHA_256;
    if (!strcasecmp(name, "SCRAM-SHA-256-PLUS"))
        return METRICS_MECH_SCRAM_SHA_256_PLUS;
    return METRICS_MECH_OTHER;
}

void metrics_lmtp(unsigned w, int code)
{
    mworker *b = wk(w);
    if (b)
        store_stat_inc_own(&b->lmtp[code >= 500 ? METRICS_LMTP_PERMFAIL
                                    : code >= 400 ? METRICS_LMTP_TEMPFAIL
                                    : METRICS_LMTP_DELIVERED], 1);
}

/* ---- the text format -------------------------------------------------------- */

/* "label_value can be any sequence of UTF-8 characters, but the backslash
 * (\), double-quote ("), and line feed (\n) characters have to be escaped
 * as \\, \", and \n, respectively" (the exposition format, 0.0.4). */
static void put_escaped(FILE *f, const char *v, bool quote)
{
    for (; *v; v++) {
        if (*v == '\\')
            fputs("\\\\", f);
        else if (*v == '\n')
            fputs("\\n", f);
        else if (*v == '"' && quote)
            fputs("\\\"", f);
        else
            fputc(*v, f);
    }
}

void metrics_write_family(FILE *f, const char *name, const char *type, const char *help)
{
    /* HELP: "backslash and line feed characters have to be escaped" */
    fprintf(f, "# HELP %s ", name);
    put_escaped(f, help, false);
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

static void put_labels(FILE *f, const char *const *labels, size_t n, const char *le)
{
    if (!n && !le)
        return;
    fputc('{', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "", labels[2 * i]);
        put_escaped(f, labels[2 * i + 1], true);
        fputc('"', f);
    }
    if (le)
        fprintf(f, "%sle=\"%s\"", n ? "," : "", le);
    fputc('}', f);
}

static void put_value(FILE *f, double v)
{
    if (v >= 0 && v < 9007199254740992.0 && (double)(uint64_t)v == v)
        fprintf(f, " %.0f\n", v);
    else
        fprintf(f, " %.15g\n", v);
}

void metrics_write_sample(FILE *f, const char *name, const char *const *labels,
                          size_t nlabels, double value)
{
    fputs(name, f);
    put_labels(f, labels, nlabels, NULL);
    put_value(f, value);
}

void metrics_write_hist(FILE *f, const char *name, const char *const *labels,
                        size_t nlabels, const uint64_t *bucket, uint64_t sum_ns)
{
    static const uint64_t bounds[STORE_HIST_BOUNDS] = STORE_HIST_BOUNDS_NS;
    uint64_t cum = 0;
    for (unsigned i = 0; i <= STORE_HIST_BOUNDS; i++) {
        char le[32];
        cum += bucket[i];
        if (i < STORE_HIST_BOUNDS)
            snprintf(le, sizeof le, "%g", (double)bounds[i] / 1e9);
        else
            snprintf(le, sizeof le, "+Inf");
        fprintf(f, "%s_bucket", name);
        put_labels(f, labels, nlabels, le);
        put_value(f, (double)cum);
    }
    fprintf(f, "%s_sum", name);
    put_labels(f, labels, nlabels, NULL);
    put_value(f, (double)sum_ns / 1e9);
    fprintf(f, "%s_count", name);
    put_labels(f, labels, nlabels, NULL);
    put_value(f, (double)cum);
}

/* ---- summing and rendering ---------------------------------------------------- */

typedef struct hsum {
    uint64_t b[STORE_HIST_BOUNDS + 1];
    uint64_t sum_ns;
} hsum;

typedef struct totals {
    uint64_t bytes_in, bytes_out, accepted;
    int64_t sessions[METRICS_NSTATES * 2];
    uint64_t logins[METRICS_NMECHS][METRICS_NRESULTS];
    uint64_t lmtp[METRICS_NLMTP];
    hsum cmd[CMD_COUNT];
    uint64_t appended, appended_bytes, flushes, cold_reads, cold_read_bytes;
    hsum fsync;
    uint64_t compactions, reclaimed, compact_done, compact_total;
    uint64_t auth_queued;
    hsum auth_wait;
    uint64_t starts;
    unsigned running;
} totals;

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void hist_sum(hsum *d, const store_hist *h)
{
    for (unsigned i = 0; i <= STORE_HIST_BOUNDS; i++)
        d->b[i] += LD(h->bucket[i]);
    d->sum_ns += LD(h->sum_ns);
}

static void sum_all(totals *t)
{
    for (unsigned i = 0; i < R->nslots; i++) {
        mslot *s = slot_at(i);
        int32_t pid = LD(s->pid);
        if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM))
            t->running++;
        t->starts += LD(s->starts);
        for (unsigned w = 0; w < R->nworkers; w++) {
            mworker *b = &s->w[w];
            t->bytes_in += LD(b->net.bytes_in);
            t->bytes_out += LD(b->net.bytes_out);
            t->accepted += LD(b->net.accepted);
            for (unsigned k = 0; k < METRICS_NSTATES * 2; k++)
                t->sessions[k] += (int64_t)LD(b->sessions[k]);
            for (unsigned m = 0; m < METRICS_NMECHS; m++)
                for (unsigned r = 0; r < METRICS_NRESULTS; r++)
                    t->logins[m][r] += LD(b->logins[m][r]);
            for (unsigned k = 0; k < METRICS_NLMTP; k++)
                t->lmtp[k] += LD(b->lmtp[k]);
            for (unsigned c = 0; c < CMD_COUNT; c++)
                hist_sum(&t->cmd[c], &b->cmd[c]);
        }
        t->appended += LD(s->store.appended);
        t->appended_bytes += LD(s->store.appended_bytes);
        t->flushes += LD(s->store.flushes);
        t->cold_reads += LD(s->store.faults_moved);
        t->cold_read_bytes += LD(s->store.faults_moved_bytes);
        hist_sum(&t->fsync, &s->store.fsync);
        t->compactions += LD(s->store.compactions);
        t->reclaimed += LD(s->store.compact_reclaimed);
        t->compact_done += LD(s->store.compact_done);
        t->compact_total += LD(s->store.compact_total);
        t->auth_queued += LD(s->auth.queued);
        hist_sum(&t->auth_wait, &s->auth.wait);
    }
    /* A gauge read while a worker moves a session between two of its
     * entries may see the decrement without the increment; never below 0. */
    for (unsigned k = 0; k < METRICS_NSTATES * 2; k++)
        if (t->sessions[k] < 0)
            t->sessions[k] = 0;
}

static const char *const state_names[METRICS_NSTATES] = {
    "not_authenticated", "authenticated", "selected", "idle", "logout"};
static const char *const mech_names[METRICS_NMECHS] = {
    "login_command", "plain", "login", "scram-sha-256", "scram-sha-256-plus", "other"};
static const char *const result_names[METRICS_NRESULTS] = {"success", "failure",
                                                           "unavailable"};
static const char *const lmtp_names[METRICS_NLMTP] = {"delivered", "tempfail", "permfail"};

static void one(FILE *f, const char *name, const char *type, const char *help, double v)
{
    metrics_write_family(f, name, type, help);
    metrics_write_sample(f, name, NULL, 0, v);
}

static void render(FILE *f, const totals *t)
{
    metrics_write_family(f, "ringmail_sessions", "gauge",
                         "IMAP sessions by state and whether the connection is encrypted");
    for (unsigned st = 0; st < METRICS_NSTATES; st++)
        for (unsigned tls = 0; tls < 2; tls++) {
            const char *l[] = {"state", state_names[st], "tls", tls ? "yes" : "no"};
            metrics_write_sample(f, "ringmail_sessions", l, 2,
                                 (double)t->sessions[metrics_state_index(st, tls)]);
        }
    one(f, "ringmail_idle_sessions", "gauge", "IMAP sessions in IDLE",
        (double)(t->sessions[metrics_state_index(METRICS_IDLE, false)] +
                 t->sessions[metrics_state_index(METRICS_IDLE, true)]));
    metrics_write_family(f, "ringmail_logins_total", "counter",
                         "Login attempts (LOGIN and AUTHENTICATE) by mechanism and result");
    for (unsigned m = 0; m < METRICS_NMECHS; m++)
        for (unsigned r = 0; r < METRICS_NRESULTS; r++) {
            const char *l[] = {"mechanism", mech_names[m], "result", result_names[r]};
            metrics_write_sample(f, "ringmail_logins_total", l, 2, (double)t->logins[m][r]);
        }
    metrics_write_family(f, "ringmail_commands_total", "counter",
                         "IMAP commands run, by name (UID forms under their command)");
    for (unsigned c = 0; c < CMD_COUNT; c++) {
        uint64_t n = 0;
        for (unsigned i = 0; i <= STORE_HIST_BOUNDS; i++)
            n += t->cmd[c].b[i];
        const char *l[] = {"command", cmd_table[c].name};
        metrics_write_sample(f, "ringmail_commands_total", l, 1, (double)n);
    }
    metrics_write_family(f, "ringmail_command_duration_seconds", "histogram",
                         "Time from reading a command to its tagged answer");
    for (unsigned c = 0; c < CMD_COUNT; c++) {
        const char *l[] = {"command", cmd_table[c].name};
        metrics_write_hist(f, "ringmail_command_duration_seconds", l, 1, t->cmd[c].b,
                           t->cmd[c].sum_ns);
    }
    one(f, "ringmail_received_bytes_total", "counter",
        "Bytes received on IMAP and LMTP connections, as on the wire", (double)t->bytes_in);
    one(f, "ringmail_sent_bytes_total", "counter",
        "Bytes sent on IMAP and LMTP connections, as on the wire", (double)t->bytes_out);
    one(f, "ringmail_connections_accepted_total", "counter",
        "Connections accepted (IMAP and LMTP)", (double)t->accepted);
    metrics_write_family(f, "ringmail_lmtp_deliveries_total", "counter",
                         "LMTP recipients of a delivered message, by the reply: delivered "
                         "(2xx), tempfail (4xx), permfail (5xx)");
    for (unsigned k = 0; k < METRICS_NLMTP; k++) {
        const char *l[] = {"result", lmtp_names[k]};
        metrics_write_sample(f, "ringmail_lmtp_deliveries_total", l, 1, (double)t->lmtp[k]);
    }
    one(f, "ringmail_store_appended_messages_total", "counter",
        "Messages written into mailboxes (APPEND, COPY, MOVE, LMTP)", (double)t->appended);
    one(f, "ringmail_store_appended_bytes_total", "counter",
        "Bytes of the messages written into mailboxes", (double)t->appended_bytes);
    one(f, "ringmail_store_flushes_total", "counter",
        "fdatasync calls on mailbox logs (one flush serves every writer waiting)",
        (double)t->flushes);
    metrics_write_family(f, "ringmail_store_fsync_duration_seconds", "histogram",
                         "Time one fdatasync of a mailbox log took");
    metrics_write_hist(f, "ringmail_store_fsync_duration_seconds", NULL, 0, t->fsync.b,
                       t->fsync.sum_ns);
    one(f, "ringmail_store_cold_reads_total", "counter",
        "Store pages not in memory that SEARCH, SORT or THREAD had read in off the workers "
        "(one count per read of a stretch)", (double)t->cold_reads);
    one(f, "ringmail_store_cold_read_bytes_total", "counter",
        "Bytes of those reads", (double)t->cold_read_bytes);
    one(f, "ringmail_auth_queue_jobs", "gauge",
        "Password checks queued for the hashing threads (penalty waits included)",
        (double)t->auth_queued);
    metrics_write_family(f, "ringmail_auth_queue_wait_seconds", "histogram",
                         "Time a password check waited for a hashing thread");
    metrics_write_hist(f, "ringmail_auth_queue_wait_seconds", NULL, 0, t->auth_wait.b,
                       t->auth_wait.sum_ns);
    one(f, "ringmail_compactions_total", "counter",
        "Mailbox compactions finished by the server processes", (double)t->compactions);
    one(f, "ringmail_compaction_reclaimed_bytes_total", "counter",
        "Log bytes those compactions freed", (double)t->reclaimed);
    one(f, "ringmail_compaction_copied_bytes", "gauge",
        "Message bytes copied so far by the compactions running now", (double)t->compact_done);
    one(f, "ringmail_compaction_size_bytes", "gauge",
        "Message bytes the compactions running now copy in all", (double)t->compact_total);
    one(f, "ringmail_server_processes", "gauge", "Server processes running",
        (double)t->running);
    one(f, "ringmail_server_starts_total", "counter",
        "Server processes started (a restart after a crash counts)", (double)t->starts);
    one(f, "process_start_time_seconds", "gauge",
        "Start time of the service since the Unix epoch in seconds", R->start_time);
}

int metrics_render(char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!R)
        return -ENODEV;
    totals *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    sum_all(t);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    int rc = -ENOMEM;
    if (!f)
        goto out;
    render(f, t);
    if (fclose(f) != 0 || !buf) {
        free(buf);
        goto out;
    }
    *out = buf;
    *len = n;
    rc = 0;
out:
    free(t);
    return rc;
}
