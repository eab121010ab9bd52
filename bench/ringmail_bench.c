/* ringmail-bench: command line, the populate and measuring phases, and the
 * report (a table, or exactly one JSON object with --json).
 *
 * Exit status: 0 clean run, 1 errors were counted (or nothing got done),
 * 2 usage error or a feature that is not implemented. */
#include "bench/ringmail_bench.h"

#include <getopt.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SOCKETS_PER_PROC 18000   /* under the usual 20000-descriptor hard limit */
#define CONNS_PER_SOURCE 25000   /* of the 28232 ephemeral ports per 4-tuple */

static const unsigned default_weights[OP_N] = {
    /* login select list status headers body store append expunge logout */
    1, 5, 2, 5, 10, 20, 10, 5, 1, 1
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ringmail-bench --host H --port P [--tls] --users PATTERN --nusers N\n"
            "         --password PW --clients N --duration S --workload W [--json]\n"
            "         [--weights login=1,select=5,...] [--populate N] [--threads N]\n"
            "         [--io uring|epoll] [--procs N] [--source-addrs N]\n"
            "         [--bystander N] [--devices D] [--changes K]\n"
            "         [--resync-mode auto|qresync|condstore|full]\n"
            "         [--lmtp PATH|HOST:PORT] [--rcpt-domain D] [--watchers N]\n"
            "         [--max-rcpts N] [--seed S]\n"
            "workloads: login headers bodies append idle-hold mixed search-body copy store\n"
            "  resync deliver sort thread sort-fresh thread-fresh\n"
            "  search-body: SEARCH BODY for a word no message has (every body is read);\n"
            "  sort: SORT (REVERSE DATE) UTF-8 ALL; thread: THREAD REFERENCES UTF-8 ALL\n"
            "  sort-fresh, thread-fresh: the same over UID N:*, N = 1, 2, ... 997 in turn,\n"
            "    so that no two queries in a row select the same messages (nothing a\n"
            "    server kept from the last answer applies)\n"
            "  copy: COPY 1:* into a mailbox of the client's own, again and again\n"
            "  store: STORE 1:* +FLAGS (\\Flagged), then -FLAGS, again and again (not\n"
            "  .SILENT: a FETCH line per message in every answer)\n"
            "  resync: every user (--nusers; --clients is not used) has a writer and D\n"
            "  devices (--devices, 3); each round the writer changes K messages of the\n"
            "  INBOX (--changes, 10: flag changes, appends, expunges), then each device\n"
            "  reconnects, resyncs (QRESYNC, else CONDSTORE, else a full listing, as\n"
            "  the server's CAPABILITY allows, or --resync-mode) and checks its state\n"
            "  against the writer's: mismatches must be 0\n"
            "  deliver: --clients LMTP clients deliver to --lmtp (a Unix socket path or\n"
            "  host:port) message after message (4-40 KB, varied MIME, from --seed),\n"
            "  each to 1..--max-rcpts (5) users as <user@--rcpt-domain> (example.org),\n"
            "  MAIL/RCPT/DATA in one write (PIPELINING), every reply checked; --watchers\n"
            "  (1) IDLE sessions per user time the last 250 until the EXISTS\n"
            "--bystander N: N more sessions (the last users) send NOOP after NOOP beside\n"
            "  the workload; their round trips are reported as \"bystander NOOP\"\n"
            "PATTERN: user%%d is expanded for 1..N; clients go to users round robin.\n"
            "mixed weights (default): login=1 select=5 list=2 status=5 headers=10 body=20\n"
            "  store=10 append=5 expunge=1 logout=1\n"
            "--io: the I/O engine, io_uring by default (epoll if io_uring is unavailable)\n"
            "--procs: processes sharing the clients (0, default: one per %d sockets)\n"
            "--source-addrs: spread the clients over 127.0.0.1..N (loopback servers; by\n"
            "  default when more than %d connections go to one address)\n"
            "exit: 0 ok, 1 errors counted, 2 usage / not implemented\n",
            SOCKETS_PER_PROC, CONNS_PER_SOURCE);
}

/* --lmtp: a path (it has a '/') is a Unix socket, else HOST:PORT. */
static int parse_lmtp(struct bench_config *cfg)
{
    const char *s = cfg->lmtp;
    if (!s) {
        fprintf(stderr, "ringmail-bench: deliver needs --lmtp PATH|HOST:PORT\n");
        return -1;
    }
    if (strchr(s, '/')) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&cfg->lmtp_addr;
        if (strlen(s) >= sizeof sun->sun_path) {
            fprintf(stderr, "ringmail-bench: --lmtp: path too long\n");
            return -1;
        }
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, s);
        cfg->lmtp_addrlen = (socklen_t)sizeof *sun;
        return 0;
    }
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1]) {
        fprintf(stderr, "ringmail-bench: --lmtp PATH|HOST:PORT\n");
        return -1;
    }
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int gai = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gai) {
        fprintf(stderr, "ringmail-bench: --lmtp %s: %s\n", s, gai_strerror(gai));
        return -1;
    }
    memcpy(&cfg->lmtp_addr, ai->ai_addr, ai->ai_addrlen);
    cfg->lmtp_addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static int parse_weights(const char *s, unsigned *w)
{
    char *dup = strdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            rc = -1;
            break;
        }
        *eq = 0;
        int found = 0;
        for (int i = 0; i < OP_N; i++) {
            if (!strcmp(tok, bench_op_name[i]) ||
                (i == OP_HEADERS && !strcmp(tok, "fetch_headers")) ||
                (i == OP_BODY && !strcmp(tok, "fetch_body"))) {
                char *end;
                long v = strtol(eq + 1, &end, 10);
                if (*end || v < 0 || v > 1000000) {
                    rc = -1;
                    break;
                }
                w[i] = (unsigned)v;
                found = 1;
            }
        }
        if (!found || rc) {
            fprintf(stderr, "ringmail-bench: bad weight '%s'\n", tok);
            rc = -1;
            break;
        }
    }
    free(dup);
    return rc;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static uint64_t total_errors(const struct bench_result *r)
{
    uint64_t e = 0;
    for (int k = 0; k < BC_NCMD; k++)
        e += r->st.errors[k];
    return e;
}

static void report_table(const struct bench_config *cfg, const struct bench_result *r)
{
    uint64_t ops = 0;
    for (int k = 0; k < BC_NCMD; k++)
        ops += r->st.hist[k].count;
    printf("workload %s: %d clients, %.1f s, %.0f ops/s total, %llu errors, "
           "connections held %ld (%ld at the end)\n",
           cfg->workload_name, cfg->clients, r->elapsed_s, (double)ops / r->elapsed_s,
           (unsigned long long)total_errors(r), r->conns_peak, r->conns_end);
    printf("%-14s %9s %10s %9s %9s %9s %9s %7s\n", "command", "ops", "ops/s", "p50 ms",
           "p99 ms", "p99.9 ms", "max ms", "errors");
    for (int k = 0; k < BC_NCMD; k++) {
        const bench_hist *h = &r->st.hist[k];
        if (!h->count && !r->st.errors[k])
            continue;
        printf("%-14s %9llu %10.1f %9.3f %9.3f %9.3f %9.3f %7llu\n", bench_cmd_name[k],
               (unsigned long long)h->count, (double)h->count / r->elapsed_s,
               ms(bench_hist_quantile(h, 0.5)), ms(bench_hist_quantile(h, 0.99)),
               ms(bench_hist_quantile(h, 0.999)), ms(h->max),
               (unsigned long long)r->st.errors[k]);
    }
    if (cfg->bystanders)
        printf("%-14s %9llu %10.1f %9.3f %9.3f %9.3f %9.3f %7llu   (%d sessions beside the "
               "workload)\n", "bystander NOOP", (unsigned long long)r->bystander.count,
               (double)r->bystander.count / r->elapsed_s,
               ms(bench_hist_quantile(&r->bystander, 0.5)),
               ms(bench_hist_quantile(&r->bystander, 0.99)),
               ms(bench_hist_quantile(&r->bystander, 0.999)), ms(r->bystander.max),
               (unsigned long long)r->bystander_errors, cfg->bystanders);
    if (cfg->workload == BW_RESYNC) {
        const struct bench_resync_stats *s = &r->st.rs;
        double n = s->resyncs ? (double)s->resyncs : 1;
        printf("resync: %d users x %d devices, %d changes a round (%llu rounds, %llu changes): "
               "%llu resyncs, %.1f resyncs/s, %.0f bytes received per resync (%.1f per "
               "change), p50 %.3f ms, p99 %.3f ms, max %.3f ms; %llu mismatches\n",
               cfg->nusers, cfg->devices, cfg->changes, (unsigned long long)s->rounds,
               (unsigned long long)s->changes, (unsigned long long)s->resyncs,
               (double)s->resyncs / r->elapsed_s, (double)s->bytes / n,
               cfg->changes ? (double)s->bytes / n / cfg->changes : 0.0,
               ms(bench_hist_quantile(&s->lat, 0.5)), ms(bench_hist_quantile(&s->lat, 0.99)),
               ms(s->lat.max), (unsigned long long)s->mismatches);
        printf("resync modes: qresync %llu, condstore %llu, full %llu; first syncs %llu "
               "(%.0f bytes each)\n", (unsigned long long)s->by_mode[RESYNC_QRESYNC],
               (unsigned long long)s->by_mode[RESYNC_CONDSTORE],
               (unsigned long long)s->by_mode[RESYNC_FULL], (unsigned long long)s->initial,
               s->initial ? (double)s->initial_bytes / (double)s->initial : 0.0);
    }
    if (cfg->workload == BW_DELIVER) {
        const struct bench_deliver_stats *d = &r->st.dl;
        double el = d->elapsed_s > 0 ? d->elapsed_s : r->elapsed_s;
        printf("deliver: %llu deliveries (%llu recipients, %.1f KB average) in %.2f s: "
               "%.1f deliveries/s, %.1f recipients/s; delivery p50 %.3f ms, p99 %.3f ms, "
               "max %.3f ms; %llu bad replies\n",
               (unsigned long long)d->deliveries, (unsigned long long)d->rcpts,
               d->deliveries ? (double)d->bytes / (double)d->deliveries / 1024 : 0.0, el,
               (double)d->deliveries / el, (double)d->rcpts / el,
               ms(bench_hist_quantile(&d->lat, 0.5)), ms(bench_hist_quantile(&d->lat, 0.99)),
               ms(d->lat.max), (unsigned long long)d->bad_replies);
        printf("250 -> EXISTS (%d watcher(s) a user): %llu of %llu copies seen; p50 %.3f ms, "
               "p99 %.3f ms, max %.3f ms; %llu EXISTS before the 250\n", cfg->watchers,
               (unsigned long long)d->exists_seen, (unsigned long long)d->exists_expected,
               ms(bench_hist_quantile(&d->exists_lat, 0.5)),
               ms(bench_hist_quantile(&d->exists_lat, 0.99)), ms(d->exists_lat.max),
               (unsigned long long)d->exists_early);
        printf("MAIL written -> EXISTS: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
               ms(bench_hist_quantile(&d->start_exists_lat, 0.5)),
               ms(bench_hist_quantile(&d->start_exists_lat, 0.99)),
               ms(d->start_exists_lat.max));
    }
    if (cfg->workload == BW_IDLE)
        printf("fanout (APPEND until every IDLE session saw EXISTS): %ld of %ld appends seen "
               "by all %ld sessions; p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
               r->appends_seen, r->appends_sent, r->sessions,
               ms(bench_hist_quantile(&r->fanout, 0.5)),
               ms(bench_hist_quantile(&r->fanout, 0.99)), ms(r->fanout.max));
}

static void report_json(const struct bench_config *cfg, const struct bench_result *r)
{
    uint64_t ops = 0;
    for (int k = 0; k < BC_NCMD; k++)
        ops += r->st.hist[k].count;
    printf("{\"workload\": \"%s\", \"clients\": %d, \"duration_s\": %.3f, "
           "\"total_ops_per_sec\": %.1f, \"errors\": %llu, \"connections_held\": %ld, "
           "\"connections_peak\": %ld, \"connections_at_end\": %ld, \"procs\": %d, "
           "\"io\": \"%s\", \"commands\": {",
           cfg->workload_name, cfg->clients, r->elapsed_s, (double)ops / r->elapsed_s,
           (unsigned long long)total_errors(r), r->conns_peak, r->conns_peak, r->conns_end,
           cfg->procs, cfg->io == BENCH_IO_EPOLL ? "epoll" : "uring");
    int first = 1;
    for (int k = 0; k < BC_NCMD; k++) {
        const bench_hist *h = &r->st.hist[k];
        if (!h->count && !r->st.errors[k])
            continue;
        printf("%s\"%s\": {\"ops\": %llu, \"ops_per_sec\": %.1f, \"p50_ms\": %.3f, "
               "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"errors\": %llu}",
               first ? "" : ", ", bench_cmd_name[k], (unsigned long long)h->count,
               (double)h->count / r->elapsed_s, ms(bench_hist_quantile(h, 0.5)),
               ms(bench_hist_quantile(h, 0.99)), ms(bench_hist_quantile(h, 0.999)),
               ms(h->max), (unsigned long long)r->st.errors[k]);
        first = 0;
    }
    printf("}");
    if (cfg->workload == BW_IDLE)
        printf(", \"fanout\": {\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
               "\"appends\": %ld, \"appends_sent\": %ld, \"sessions\": %ld}",
               ms(bench_hist_quantile(&r->fanout, 0.5)),
               ms(bench_hist_quantile(&r->fanout, 0.99)), ms(r->fanout.max),
               r->appends_seen, r->appends_sent, r->sessions);
    if (cfg->populate > 0)
        printf(", \"populate\": %ld", cfg->populate);
    if (cfg->workload == BW_RESYNC) {
        const struct bench_resync_stats *s = &r->st.rs;
        double n = s->resyncs ? (double)s->resyncs : 1;
        printf(", \"resync\": {\"users\": %d, \"devices\": %d, \"changes_per_round\": %d, "
               "\"rounds\": %llu, \"changes\": %llu, \"resyncs\": %llu, "
               "\"resyncs_per_sec\": %.1f, \"bytes_per_resync\": %.1f, "
               "\"bytes_per_change\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
               "\"max_ms\": %.3f, \"mismatches\": %llu, \"modes\": {\"qresync\": %llu, "
               "\"condstore\": %llu, \"full\": %llu}, \"mode_asked\": \"%s\", "
               "\"first_syncs\": %llu, \"bytes_per_first_sync\": %.1f}",
               cfg->nusers, cfg->devices, cfg->changes, (unsigned long long)s->rounds,
               (unsigned long long)s->changes, (unsigned long long)s->resyncs,
               (double)s->resyncs / r->elapsed_s, (double)s->bytes / n,
               cfg->changes ? (double)s->bytes / n / cfg->changes : 0.0,
               ms(bench_hist_quantile(&s->lat, 0.5)), ms(bench_hist_quantile(&s->lat, 0.99)),
               ms(s->lat.max), (unsigned long long)s->mismatches,
               (unsigned long long)s->by_mode[RESYNC_QRESYNC],
               (unsigned long long)s->by_mode[RESYNC_CONDSTORE],
               (unsigned long long)s->by_mode[RESYNC_FULL],
               bench_resync_mode_name[cfg->resync_mode], (unsigned long long)s->initial,
               s->initial ? (double)s->initial_bytes / (double)s->initial : 0.0);
    }
    if (cfg->workload == BW_DELIVER) {
        const struct bench_deliver_stats *d = &r->st.dl;
        double el = d->elapsed_s > 0 ? d->elapsed_s : r->elapsed_s;
        printf(", \"deliver\": {\"deliveries\": %llu, \"recipients\": %llu, "
               "\"bytes\": %llu, \"elapsed_s\": %.3f, \"deliveries_per_sec\": %.1f, "
               "\"recipients_per_sec\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
               "\"max_ms\": %.3f, \"bad_replies\": %llu, \"watchers_per_user\": %d, "
               "\"exists_expected\": %llu, \"exists_seen\": %llu, \"exists_early\": %llu, "
               "\"exists_p50_ms\": %.3f, \"exists_p99_ms\": %.3f, \"exists_max_ms\": %.3f, "
               "\"start_exists_p50_ms\": %.3f, \"start_exists_p99_ms\": %.3f, "
               "\"start_exists_max_ms\": %.3f, \"seed\": %llu}",
               (unsigned long long)d->deliveries, (unsigned long long)d->rcpts,
               (unsigned long long)d->bytes, el, (double)d->deliveries / el,
               (double)d->rcpts / el, ms(bench_hist_quantile(&d->lat, 0.5)),
               ms(bench_hist_quantile(&d->lat, 0.99)), ms(d->lat.max),
               (unsigned long long)d->bad_replies, cfg->watchers,
               (unsigned long long)d->exists_expected, (unsigned long long)d->exists_seen,
               (unsigned long long)d->exists_early,
               ms(bench_hist_quantile(&d->exists_lat, 0.5)),
               ms(bench_hist_quantile(&d->exists_lat, 0.99)), ms(d->exists_lat.max),
               ms(bench_hist_quantile(&d->start_exists_lat, 0.5)),
               ms(bench_hist_quantile(&d->start_exists_lat, 0.99)), ms(d->start_exists_lat.max),
               (unsigned long long)cfg->seed);
    }
    if (cfg->bystanders)
        printf(", \"bystander\": {\"sessions\": %d, \"ops\": %llu, \"p50_ms\": %.3f, "
               "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"errors\": %llu}",
               cfg->bystanders, (unsigned long long)r->bystander.count,
               ms(bench_hist_quantile(&r->bystander, 0.5)),
               ms(bench_hist_quantile(&r->bystander, 0.99)),
               ms(bench_hist_quantile(&r->bystander, 0.999)), ms(r->bystander.max),
               (unsigned long long)r->bystander_errors);
    printf("}\n");
}

int main(int argc, char **argv)
{
    struct bench_config cfg = { .host = NULL, .port = 0, .nusers = 1, .password = NULL,
                                .clients = 1, .duration = 10, .devices = 3, .changes = 10,
                                .rcpt_domain = "example.org", .watchers = 1, .max_rcpts = 5,
                                .seed = 1 };
    const char *workload = NULL, *weights = NULL;
    memcpy(cfg.weights, default_weights, sizeof cfg.weights);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.threads = ncpu > 0 ? (int)ncpu : 1;
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'h' },
        { "port", required_argument, NULL, 'p' },
        { "tls", no_argument, NULL, 't' },
        { "users", required_argument, NULL, 'u' },
        { "nusers", required_argument, NULL, 'n' },
        { "password", required_argument, NULL, 'P' },
        { "clients", required_argument, NULL, 'c' },
        { "duration", required_argument, NULL, 'd' },
        { "workload", required_argument, NULL, 'w' },
        { "json", no_argument, NULL, 'j' },
        { "weights", required_argument, NULL, 'W' },
        { "populate", required_argument, NULL, 'o' },
        { "threads", required_argument, NULL, 'T' },
        { "io", required_argument, NULL, 'I' },
        { "procs", required_argument, NULL, 'R' },
        { "source-addrs", required_argument, NULL, 'S' },
        { "bystander", required_argument, NULL, 'B' },
        { "devices", required_argument, NULL, 'D' },
        { "changes", required_argument, NULL, 'K' },
        { "resync-mode", required_argument, NULL, 'M' },
        { "lmtp", required_argument, NULL, 'L' },
        { "rcpt-domain", required_argument, NULL, 'r' },
        { "watchers", required_argument, NULL, 'A' },
        { "max-rcpts", required_argument, NULL, 'x' },
        { "seed", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 }
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': cfg.host = optarg; break;
        case 'p': cfg.port = atoi(optarg); break;
        case 't': cfg.tls = 1; break;
        case 'u': cfg.users = optarg; break;
        case 'n': cfg.nusers = atoi(optarg); break;
        case 'P': cfg.password = optarg; break;
        case 'c': cfg.clients = atoi(optarg); break;
        case 'd': cfg.duration = atof(optarg); break;
        case 'w': workload = optarg; break;
        case 'j': cfg.json = 1; break;
        case 'W': weights = optarg; break;
        case 'o': cfg.populate = atol(optarg); break;
        case 'T': cfg.threads = atoi(optarg); break;
        case 'R': cfg.procs = atoi(optarg); break;
        case 'S': cfg.source_addrs = atoi(optarg); break;
        case 'B': cfg.bystanders = atoi(optarg); break;
        case 'D': cfg.devices = atoi(optarg); break;
        case 'K': cfg.changes = atoi(optarg); break;
        case 'L': cfg.lmtp = optarg; break;
        case 'r': cfg.rcpt_domain = optarg; break;
        case 'A': cfg.watchers = atoi(optarg); break;
        case 'x': cfg.max_rcpts = atoi(optarg); break;
        case 's': cfg.seed = strtoull(optarg, NULL, 0); break;
        case 'M': {
            int m = -1;
            for (int i = 0; i < RESYNC_NMODES; i++)
                if (!strcmp(optarg, bench_resync_mode_name[i]))
                    m = i;
            if (m < 0) {
                fprintf(stderr, "ringmail-bench: --resync-mode auto|qresync|condstore|full\n");
                return 2;
            }
            cfg.resync_mode = (enum bench_resync_mode)m;
            break;
        }
        case 'I':
            if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring")) {
                cfg.io = BENCH_IO_URING;
            } else if (!strcmp(optarg, "epoll")) {
                cfg.io = BENCH_IO_EPOLL;
            } else {
                fprintf(stderr, "ringmail-bench: --io uring|epoll\n");
                return 2;
            }
            break;
        case 'H': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !cfg.host || cfg.port <= 0 || cfg.port > 65535 || !cfg.users ||
        !cfg.password || !workload || cfg.nusers < 1 || cfg.clients < 1 ||
        cfg.duration <= 0 || cfg.populate < 0 || cfg.threads < 1 || cfg.procs < 0 ||
        cfg.source_addrs < 0 || cfg.source_addrs > 254 || cfg.bystanders < 0 ||
        cfg.bystanders > 1000 || cfg.devices < 1 || cfg.devices > 1000 || cfg.changes < 0 ||
        cfg.watchers < 0 || cfg.watchers > 100 || cfg.max_rcpts < 1 || cfg.max_rcpts > 64) {
        usage(stderr);
        return 2;
    }
    static const char *const names[] = { "login", "headers", "bodies", "append", "idle-hold",
                                         "mixed", "search-body", "copy", "store", "resync",
                                         "deliver", "sort", "thread", "sort-fresh",
                                         "thread-fresh" };
    int found = -1;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(workload, names[i]))
            found = i;
    if (found < 0) {
        fprintf(stderr, "ringmail-bench: unknown workload '%s'\n", workload);
        usage(stderr);
        return 2;
    }
    cfg.workload = (enum bench_workload)found;
    if (cfg.workload == BW_DELIVER && parse_lmtp(&cfg) < 0)
        return 2;
    cfg.workload_name = names[found];
    if (weights && parse_weights(weights, cfg.weights) < 0)
        return 2;
    if (cfg.bystanders && cfg.tls) {
        fprintf(stderr, "ringmail-bench: --bystander is not implemented with --tls\n");
        return 2;
    }
    unsigned wsum = 0;
    for (int i = 0; i < OP_N; i++)
        wsum += cfg.weights[i];
    if (wsum == 0) {
        fprintf(stderr, "ringmail-bench: all weights are zero\n");
        return 2;
    }

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg.port);
    int gai = getaddrinfo(cfg.host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "ringmail-bench: %s: %s\n", cfg.host, gai_strerror(gai));
        return 2;
    }
    memcpy(&cfg.addr, ai->ai_addr, ai->ai_addrlen);
    cfg.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    /* Sockets: as many as the hard limit allows, in enough processes. */
    struct rlimit rl;
    long per_proc = SOCKETS_PER_PROC;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur - 100 < per_proc)
            per_proc = (long)rl.rlim_cur > 200 ? (long)rl.rlim_cur - 100 : 100;
    }
    long sockets = cfg.clients + (cfg.workload == BW_IDLE ? cfg.nusers : 0) +
                   (cfg.workload == BW_DELIVER ? (long)cfg.nusers * cfg.watchers : 0);
    if (cfg.procs == 0)
        cfg.procs = (int)((sockets + per_proc - 1) / per_proc);
    if (cfg.procs > cfg.clients)
        cfg.procs = cfg.clients;
    int loopback = cfg.addr.ss_family == AF_INET &&
                   (ntohl(((struct sockaddr_in *)&cfg.addr)->sin_addr.s_addr) >> 24) == 127;
    if (cfg.source_addrs > 0 && !loopback) {
        fprintf(stderr, "ringmail-bench: --source-addrs only for a 127.x server, ignored\n");
        cfg.source_addrs = 0;
    } else if (cfg.source_addrs == 0 && loopback && sockets > CONNS_PER_SOURCE) {
        cfg.source_addrs = (int)((sockets + CONNS_PER_SOURCE - 1) / CONNS_PER_SOURCE);
    }

    int progress = isatty(2);
    if (cfg.populate > 0) {
        struct bench_result *pr = calloc(1, sizeof *pr);
        if (!pr || bench_run(&cfg, BW_POPULATE, cfg.nusers, 600, progress, pr) < 0) {
            fprintf(stderr, "ringmail-bench: cannot start the populate phase\n");
            return 1;
        }
        uint64_t perr = total_errors(pr);
        if (pr->populate_done < cfg.nusers || perr) {
            fprintf(stderr, "ringmail-bench: populate failed: %ld of %d users done, "
                    "%llu errors\n", pr->populate_done, cfg.nusers,
                    (unsigned long long)perr);
            return 1;
        }
        if (!cfg.json)
            printf("populated: %d users with >= %ld messages (%llu appended)\n", cfg.nusers,
                   cfg.populate, (unsigned long long)pr->st.hist[BC_APPEND].count);
        free(pr);
    }

    struct bench_result *r = calloc(1, sizeof *r);
    if (!r)
        return 1;
    struct bench_bystanders *by = NULL;
    if (cfg.bystanders) {
        int brc = bench_bystander_start(&cfg, cfg.bystanders, &by);
        if (brc < 0) {
            fprintf(stderr, "ringmail-bench: bystander sessions: %s\n", strerror(-brc));
            return 1;
        }
    }
    int nclients = cfg.clients;
    if (cfg.workload == BW_RESYNC)
        nclients = cfg.clients = cfg.nusers * (cfg.devices + 1);
    if (bench_run(&cfg, cfg.workload, nclients, cfg.duration, progress, r) < 0) {
        fprintf(stderr, "ringmail-bench: cannot start the worker threads\n");
        return 1;
    }
    if (by)
        bench_bystander_stop(by, r);
    if (cfg.json)
        report_json(&cfg, r);
    else
        report_table(&cfg, r);
    uint64_t ops = 0;
    for (int k = 0; k < BC_NCMD; k++)
        ops += r->st.hist[k].count;
    int rc = total_errors(r) || r->bystander_errors || ops == 0 ? 1 : 0;
    if (cfg.workload == BW_RESYNC && (r->st.rs.mismatches || !r->st.rs.resyncs))
        rc = 1;
    /* deliver: every copy answered 250 must be announced (when watched) */
    if (cfg.workload == BW_DELIVER &&
        (r->st.dl.bad_replies || !r->st.dl.deliveries ||
         (cfg.watchers && r->st.dl.exists_seen < r->st.dl.exists_expected)))
        rc = 1;
    free(r);
    return rc;
}
