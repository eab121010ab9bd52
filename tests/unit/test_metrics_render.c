/* tests/unit/test_metrics_render.c — the Prometheus text of core/server/metrics.c:
 * label escaping, histogram lines (cumulative buckets, +Inf, _sum,
 * _count), and the registry summed over workers and process slots. */
#include <stdint.h>
#include <sys/wait.h>

#include "core/server/metrics.h"
#include "core/server/session.h"
#include "testutil.h"

static char *capture_begin(FILE **f, char **buf, size_t *n)
{
    *buf = NULL;
    *n = 0;
    *f = open_memstream(buf, n);
    return *buf;
}

static void t_escape(void)
{
    FILE *f;
    char *buf;
    size_t n;
    capture_begin(&f, &buf, &n);
    const char *l[] = {"a", "back\\slash", "b", "quote\"d", "c", "new\nline"};
    metrics_write_sample(f, "x_total", l, 3, 7);
    metrics_write_family(f, "y", "gauge", "help with \\ and\nnewline \"kept\"");
    fclose(f);
    CHECK(strstr(buf, "x_total{a=\"back\\\\slash\",b=\"quote\\\"d\",c=\"new\\nline\"} 7\n"));
    /* HELP escapes backslash and newline only */
    CHECK(strstr(buf, "# HELP y help with \\\\ and\\nnewline \"kept\"\n# TYPE y gauge\n"));
    free(buf);
}

static void t_values(void)
{
    FILE *f;
    char *buf;
    size_t n;
    capture_begin(&f, &buf, &n);
    metrics_write_sample(f, "a", NULL, 0, 0);
    metrics_write_sample(f, "b", NULL, 0, 12345678901234.0);
    metrics_write_sample(f, "c", NULL, 0, 0.25);
    fclose(f);
    CHECK(!strcmp(buf, "a 0\nb 12345678901234\nc 0.25\n"));
    free(buf);
}

static void t_hist(void)
{
    uint64_t b[STORE_HIST_BOUNDS + 1] = {0};
    b[0] = 2;                       /* <= 50us */
    b[4] = 1;                       /* <= 1ms */
    b[STORE_HIST_BOUNDS] = 3;       /* > 10s */
    FILE *f;
    char *buf;
    size_t n;
    capture_begin(&f, &buf, &n);
    const char *l[] = {"command", "FETCH"};
    metrics_write_hist(f, "d_seconds", l, 1, b, 1500000000ull);
    fclose(f);
    CHECK(strstr(buf, "d_seconds_bucket{command=\"FETCH\",le=\"5e-05\"} 2\n"));
    CHECK(strstr(buf, "d_seconds_bucket{command=\"FETCH\",le=\"0.0005\"} 2\n"));
    CHECK(strstr(buf, "d_seconds_bucket{command=\"FETCH\",le=\"0.001\"} 3\n"));
    CHECK(strstr(buf, "d_seconds_bucket{command=\"FETCH\",le=\"10\"} 3\n"));
    CHECK(strstr(buf, "d_seconds_bucket{command=\"FETCH\",le=\"+Inf\"} 6\n"));
    CHECK(strstr(buf, "d_seconds_sum{command=\"FETCH\"} 1.5\n"));
    CHECK(strstr(buf, "d_seconds_count{command=\"FETCH\"} 6\n"));
    /* 17 bounds and +Inf, in increasing order, each once */
    int lines = 0;
    for (char *p = buf; (p = strstr(p, "_bucket{")); p++)
        lines++;
    CHECK_EQ(lines, STORE_HIST_BOUNDS + 1);
    CHECK(strstr(buf, "le=\"5e-05\"") < strstr(buf, "le=\"0.0001\""));
    CHECK(strstr(buf, "le=\"10\"") < strstr(buf, "le=\"+Inf\""));
    /* no labels: le alone */
    free(buf);
    capture_begin(&f, &buf, &n);
    metrics_write_hist(f, "e_seconds", NULL, 0, b, 0);
    fclose(f);
    CHECK(strstr(buf, "e_seconds_bucket{le=\"+Inf\"} 6\ne_seconds_sum 0\ne_seconds_count 6\n"));
    free(buf);
}

static long long sample(const char *text, const char *series)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = strstr(text, want);
    return p ? atoll(p + strlen(want)) : -1;
}

/* The registry: two slots (as a supervisor of two servers maps it), the
 * hooks of workers of both, one render with the sums.  In a child: the
 * region is once per process. */
static void t_registry(void)
{
    REQUIRE_OK(metrics_map(2, 2));
    CHECK_EQ(metrics_map(2, 2), -EALREADY);
    pid_t pid = fork();
    if (pid == 0) {
        /* server 1 (another process): one FETCH, one session */
        if (metrics_attach(1, NULL, NULL) < 0)
            _exit(2);
        metrics_command(0, CMD_FETCH, 1000);
        metrics_session_state(1, METRICS_NO_STATE, metrics_state_index(METRICS_AUTH, false));
        _exit(0);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* server 0 (this process): one FETCH */
    REQUIRE_OK(metrics_attach(0, NULL, NULL));
    metrics_command(1, CMD_FETCH, 1000);
    char *text;
    size_t len;
    REQUIRE_OK(metrics_render(&text, &len));
    CHECK(strlen(text) == len);
    CHECK_EQ(sample(text, "ringmail_commands_total{command=\"FETCH\"}"), 2);
    /* the other exited without metrics_detach (a crash): its gauge stays
     * until a successor takes the slot */
    CHECK_EQ(sample(text, "ringmail_sessions{state=\"authenticated\",tls=\"no\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_server_starts_total"), 2);
    CHECK_EQ(sample(text, "ringmail_server_processes"), 1);    /* it exited */
    free(text);
    REQUIRE_OK(metrics_attach(1, NULL, NULL));  /* its successor */
    REQUIRE_OK(metrics_render(&text, &len));
    CHECK_EQ(sample(text, "ringmail_sessions{state=\"authenticated\",tls=\"no\"}"), 0);
    CHECK_EQ(sample(text, "ringmail_commands_total{command=\"FETCH\"}"), 2);
    free(text);
}

/* With a real net server the worker blocks exist: sessions, commands,
 * logins and LMTP results land in the sums. */
static void *nop_open(net_conn *c) { (void)c; return NULL; }
static void nop_data(net_conn *c, void *u, const uint8_t *p, size_t n) { (void)c; (void)u; (void)p; (void)n; }
static void nop_close(net_conn *c, void *u) { (void)c; (void)u; }
static void nop_shutdown(net_conn *c, void *u) { (void)u; net_conn_close(c); }
static const net_conn_ops OPS = {.on_open = nop_open, .on_data = nop_data,
                                 .on_close = nop_close, .on_shutdown = nop_shutdown};

static void t_hooks(void)
{
    net_config nc = {.workers = 2, .backend = NET_BACKEND_EPOLL};
    net_server *net;
    REQUIRE_OK(net_server_new(&nc, &OPS, &net));
    REQUIRE_OK(metrics_attach(0, net, NULL));
    unsigned sel = metrics_state_index(METRICS_SELECTED, false);
    unsigned idle_tls = metrics_state_index(METRICS_IDLE, true);
    metrics_session_state(0, METRICS_NO_STATE, sel);
    metrics_session_state(1, METRICS_NO_STATE, sel);
    metrics_session_state(1, METRICS_NO_STATE, idle_tls);
    metrics_command(0, CMD_FETCH, 40000);           /* <= 50us */
    metrics_command(1, CMD_FETCH, 2000000);         /* <= 2.5ms */
    metrics_command(1, CMD_NOOP, 20000000000ull);   /* > 10s */
    metrics_login(0, METRICS_MECH_LOGIN_COMMAND, METRICS_SUCCESS);
    metrics_login(1, metrics_mech_of_sasl("SCRAM-SHA-256"), METRICS_FAILURE);
    metrics_lmtp(0, 250);
    metrics_lmtp(1, 452);
    metrics_lmtp(1, 550);
    metrics_command(7, CMD_FETCH, 1);               /* no such worker: ignored */
    char *text;
    size_t len;
    REQUIRE_OK(metrics_render(&text, &len));
    CHECK_EQ(sample(text, "ringmail_sessions{state=\"selected\",tls=\"no\"}"), 2);
    CHECK_EQ(sample(text, "ringmail_sessions{state=\"idle\",tls=\"yes\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_idle_sessions"), 1);
    CHECK_EQ(sample(text, "ringmail_commands_total{command=\"FETCH\"}"), 2);
    CHECK_EQ(sample(text, "ringmail_command_duration_seconds_bucket{command=\"FETCH\","
                          "le=\"5e-05\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_command_duration_seconds_bucket{command=\"FETCH\","
                          "le=\"0.0025\"}"), 2);
    CHECK_EQ(sample(text, "ringmail_command_duration_seconds_bucket{command=\"NOOP\","
                          "le=\"10\"}"), 0);
    CHECK_EQ(sample(text, "ringmail_command_duration_seconds_bucket{command=\"NOOP\","
                          "le=\"+Inf\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_command_duration_seconds_sum{command=\"NOOP\"}"), 20);
    CHECK_EQ(sample(text, "ringmail_logins_total{mechanism=\"login_command\","
                          "result=\"success\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_logins_total{mechanism=\"scram-sha-256\","
                          "result=\"failure\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_lmtp_deliveries_total{result=\"delivered\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_lmtp_deliveries_total{result=\"tempfail\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_lmtp_deliveries_total{result=\"permfail\"}"), 1);
    CHECK_EQ(sample(text, "ringmail_server_processes"), 1);
    /* every family has its HELP and TYPE before its samples */
    CHECK(strstr(text, "# HELP ringmail_sessions ") < strstr(text, "# TYPE ringmail_sessions "));
    CHECK(strstr(text, "# TYPE process_start_time_seconds gauge\n"));
    free(text);
    /* sessions end: the gauges go back to zero */
    metrics_session_state(0, sel, METRICS_NO_STATE);
    metrics_session_state(1, sel, METRICS_NO_STATE);
    metrics_session_state(1, idle_tls, METRICS_NO_STATE);
    REQUIRE_OK(metrics_render(&text, &len));
    CHECK_EQ(sample(text, "ringmail_sessions{state=\"selected\",tls=\"no\"}"), 0);
    CHECK_EQ(sample(text, "ringmail_idle_sessions"), 0);
    free(text);
    /* a new server in the slot: counters go on, gauges restart */
    metrics_session_state(0, METRICS_NO_STATE, sel);
    metrics_detach();
    REQUIRE_OK(metrics_attach(0, NULL, NULL));
    REQUIRE_OK(metrics_render(&text, &len));
    CHECK_EQ(sample(text, "ringmail_sessions{state=\"selected\",tls=\"no\"}"), 0);
    CHECK_EQ(sample(text, "ringmail_commands_total{command=\"FETCH\"}"), 2);
    CHECK_EQ(sample(text, "ringmail_server_starts_total"), 2);
    free(text);
    metrics_detach();
    net_server_free(net);
}

int main(void)
{
    RUN(t_escape);
    RUN(t_values);
    RUN(t_hist);
    RUN_ISOLATED(t_registry, 30);
    RUN_ISOLATED(t_hooks, 30);
    return test_summary();
}
