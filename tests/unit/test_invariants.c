/* tests/unit/test_invariants.c — the always-on invariants catch the misuse
 * they are there for, in the build under test (release too): a mailbox
 * handle closed twice, and a connection used off its worker's thread.
 * Each misuse runs in a child, which must die of SIGABRT with the
 * assertion's line on stderr. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "net/net.h"
#include "store/store.h"
#include "testutil.h"

/* Run fn() in a child with stderr going to a pipe.  *sig gets the signal
 * that ended it (0 if it exited), out its stderr. */
/* ---- the store: a handle closed twice ---- */

static const char *g_root;

static void close_twice(void *arg)
{
    (void)arg;
    store_user *u;
    store_mbox *mb;
    if (store_user_open(g_root, "alice", NULL, &u) < 0 ||
        store_mbox_open(u, "INBOX", &mb) < 0)
        _exit(3);
    store_mbox_close(mb);
    store_mbox_close(mb);       /* kept lingering, so no use after free */
    _exit(4);
}

static void close_once(void *arg)
{
    (void)arg;
    store_user *u;
    store_mbox *mb;
    if (store_user_open(g_root, "alice", NULL, &u) < 0 ||
        store_mbox_open(u, "INBOX", &mb) < 0)
        _exit(3);
    store_mbox_close(mb);
    store_user_close(u);
}

static void test_mbox_closed_twice(void)
{
    g_root = test_tmpdir("invariants");
    char out[1024];
    int sig = -1;
    REQUIRE_OK(test_run_child(close_once, NULL, &sig, out, sizeof out));
    CHECK_EQ(sig, 0);
    CHECK_EQ(strlen(out), 0);
    REQUIRE_OK(test_run_child(close_twice, NULL, &sig, out, sizeof out));
    CHECK_EQ(sig, SIGABRT);
    CHECK(strstr(out, ": store_mbox_close: assertion failed: ") != NULL);
}

/* ---- net: a connection touched from another thread ---- */

static _Atomic(net_conn *) g_conn;

static void *grab_open(net_conn *c)
{
    net_conn_send(c, "hi\r\n", 4);      /* on its worker: fine */
    atomic_store(&g_conn, c);
    return c;
}
static void nop_data(net_conn *c, void *u, const uint8_t *p, size_t n)
{
    (void)c; (void)u; (void)p; (void)n;
}
static void nop_close(net_conn *c, void *u) { (void)c; (void)u; }
static const net_conn_ops OPS = {.on_open = grab_open, .on_data = nop_data,
                                 .on_close = nop_close};

static void send_off_worker(void *arg)
{
    (void)arg;
    net_config cfg = {.workers = 1};
    net_server *s;
    if (net_server_new(&cfg, &OPS, &s) < 0 || net_server_listen(s, "127.0.0.1:0") < 0 ||
        net_server_start(s) < 0)
        _exit(3);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)net_server_port(s, 0))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        _exit(3);
    char b[4];
    size_t got = 0;
    while (got < sizeof b) {            /* the greeting: on_open has run */
        ssize_t r = read(fd, b + got, sizeof b - got);
        if (r <= 0)
            _exit(3);
        got += (size_t)r;
    }
    net_conn *c = atomic_load(&g_conn);
    if (!c)
        _exit(3);
    net_conn_send(c, "x", 1);           /* from the main thread: a bug */
    _exit(4);
}

static void test_conn_off_worker(void)
{
    char out[1024];
    int sig = -1;
    REQUIRE_OK(test_run_child(send_off_worker, NULL, &sig, out, sizeof out));
    CHECK_EQ(sig, SIGABRT);
    CHECK(strstr(out, ": net_conn_send: assertion failed: ") != NULL);
    CHECK(strstr(out, "connection used off its worker") != NULL);
}

int main(void)
{
    RUN(test_mbox_closed_twice);
    RUN(test_conn_off_worker);
    return test_summary();
}
