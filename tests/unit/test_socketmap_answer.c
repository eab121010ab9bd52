/* tests/unit/test_socketmap_answer.c — the answers of the socketmap lookup
 * tables (core/server/socketmap.c) over a passwd-file directory: a
 * recipient's user found as LMTP finds it (delimiter, lmtp_user_domain,
 * case), the transport from the record's host and lmtp_port or the
 * defaults, NOTFOUND for unknown users and keys that are no address, TEMP
 * when the directory cannot be read, PERM for a bad record or request; and
 * the settings (socketmap_lmtp_default from listen_lmtp).  (The name is not
 * test_socketmap: that is tests/integration/test_socketmap.py's.) */
#include "core/server/lmtp.h"
#include "core/server/socketmap.h"
#include "tests/unit/testutil.h"

static socketmap_conf sc;
static lmtp_conf lc;
static userdb *db;
static char reply[SOCKETMAP_REPLY_MAX];

/* The reply to request `req` as a string. */
static const char *ask(const char *req)
{
    size_t n = socketmap_answer(&sc, &lc, db, req, strlen(req), reply, sizeof reply);
    reply[n] = '\0';
    return reply;
}

#define ANSWER(req, want) do { const char *got_ = ask(req); if (strcmp(got_, want)) { \
    fprintf(stderr, "%s:%d: %s -> \"%s\", want \"%s\"\n", __FILE__, __LINE__, req, got_, \
            want); test_failures_++; } } while (0)

static int conf(const char *const *kv, size_t n, char *err, size_t errlen)
{
    config cfg = {0};
    if (config_init(&cfg) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (config_set(&cfg, kv[i], err, errlen) < 0) {
            config_free(&cfg);
            return -EINVAL;
        }
    int rc = socketmap_conf_init(&sc, &cfg, err, errlen);
    config_free(&cfg);
    return rc;
}

static char passwd[600];

static void open_db(const char *text)
{
    const char *dir = test_tmpdir("socketmap");
    snprintf(passwd, sizeof passwd, "%s/passwd", dir);
    test_write_file(passwd, text);
    if (userdb_open(&(userdb_params){.passwd_file = passwd}, &db, NULL) < 0) {
        fprintf(stderr, "userdb_open %s failed\n", passwd);
        exit(2);
    }
}

static const char users[] =
    "alice:{PLAIN}a::::::host=127.0.0.1 port=10143 lmtp_port=10024\n"
    "Bob:{PLAIN}b::::::userdb_host=b2.example.org\n"
    "carol:{PLAIN}c\n"
    "dan:{PLAIN}d::::::host=2001:db8::7 lmtp_port=2424\n"
    "erin:{PLAIN}e::::::host=10.0.0.9 lmtp_port=70000\n"
    "frank:{PLAIN}f::::::host=10.0.0.9 port=0\n"
    "gina@example.org:{PLAIN}g::::::host=10.0.0.3\n"
    "hugo:{PLAIN}h::::::host=a-backend-with-a-rather-long-name.datacenter-one.example.org\n";

static void t_transport(void)
{
    static const char *const kv[] = {"socketmap_lmtp_default=lmtp:unix:/run/rm/lmtp",
                                     "socketmap_lmtp_port=2400",
                                     "listen_socketmap=127.0.0.1:2425",
                                     "socketmap_domains=example.org, Example.NET"};
    char err[300];
    REQUIRE_OK(conf(kv, 4, err, sizeof err));
    memset(&lc, 0, sizeof lc);
    strcpy(lc.delimiters, "+");
    open_db(users);
    ANSWER("transport alice@example.org", "OK lmtp:inet:127.0.0.1:10024");
    /* the detail after the delimiter, and the case, do not matter */
    ANSWER("transport alice+lists@example.org", "OK lmtp:inet:127.0.0.1:10024");
    ANSWER("transport ALICE@EXAMPLE.ORG", "OK lmtp:inet:127.0.0.1:10024");
    /* no lmtp_port: socketmap_lmtp_port; "userdb_" prefix as Dovecot's */
    ANSWER("transport bob@example.org", "OK lmtp:inet:b2.example.org:2400");
    /* no host: the mail is here */
    ANSWER("transport carol@example.org", "OK lmtp:unix:/run/rm/lmtp");
    /* an IPv6 address in lmtp(8)'s brackets */
    ANSWER("transport dan@example.org", "OK lmtp:inet:[2001:db8::7]:2424");
    /* records that cannot be used: PERM (Postfix defers, logs the table) */
    ANSWER("transport erin@example.org", "PERM the record of erin has a bad lmtp_port");
    ANSWER("transport frank@example.org", "PERM the record of frank has a bad host or port");
    /* unknown users and keys that are no address */
    ANSWER("transport nobody@example.org", "NOTFOUND ");
    ANSWER("transport example.org", "NOTFOUND ");
    ANSWER("transport .example.org", "NOTFOUND ");
    ANSWER("transport @example.org", "NOTFOUND ");
    ANSWER("transport alice@", "NOTFOUND ");
    ANSWER("transport ", "NOTFOUND ");
    ANSWER("transport +alice@example.org", "NOTFOUND ");
    /* the domain is after the last "@" (a quoted local part may hold one) */
    ANSWER("transport alice@x@example.org", "NOTFOUND ");
    /* a control character (a NUL would cut the name to "alice") */
    size_t n = socketmap_answer(&sc, &lc, db, "transport alice\0x@example.org", 29, reply,
                                sizeof reply);
    CHECK(n == 9 && !memcmp(reply, "NOTFOUND ", 9));
    ANSWER("transport alice\t@example.org", "NOTFOUND ");
    /* an answer that does not fit is no answer (a cut one could name
     * another host) */
    n = socketmap_answer(&sc, &lc, db, "transport hugo@example.org", 26, reply, 64);
    reply[n] = '\0';
    CHECK(!strcmp(reply, "PERM the answer is longer than 63 bytes"));
    ANSWER("transport hugo@example.org",
           "OK lmtp:inet:a-backend-with-a-rather-long-name.datacenter-one.example.org:2400");
    /* lmtp_user_domain = strip: gina@example.org is not "gina" */
    ANSWER("transport gina@example.org", "NOTFOUND ");
    /* only addresses of socketmap_domains (any case) are users: Postfix
     * asks about remote recipients too, and alice@elsewhere is not ours */
    ANSWER("transport alice@example.net", "OK lmtp:inet:127.0.0.1:10024");
    ANSWER("transport alice@EXAMPLE.ORG", "OK lmtp:inet:127.0.0.1:10024");
    ANSWER("transport alice@elsewhere.example", "NOTFOUND ");
    ANSWER("transport alice@sub.example.org", "NOTFOUND ");
    ANSWER("transport alice@example.org.evil", "NOTFOUND ");
    ANSWER("mailbox alice@elsewhere.example", "NOTFOUND ");
    userdb_close(db);
}

static void t_keep_domain(void)
{
    char err[300];
    REQUIRE_OK(conf(NULL, 0, err, sizeof err));
    memset(&lc, 0, sizeof lc);
    lc.keep_domain = true;
    strcpy(lc.delimiters, "+-");
    open_db(users);
    ANSWER("transport gina@example.org", "OK lmtp:inet:10.0.0.3:24");
    ANSWER("transport Gina-x@Example.ORG", "OK lmtp:inet:10.0.0.3:24");
    ANSWER("transport gina@example.net", "NOTFOUND ");
    ANSWER("transport alice@example.org", "NOTFOUND ");
    ANSWER("mailbox gina+y@example.org", "OK gina@example.org");
    userdb_close(db);
}

static void t_mailbox_and_requests(void)
{
    char err[300];
    REQUIRE_OK(conf(NULL, 0, err, sizeof err));
    memset(&lc, 0, sizeof lc);
    strcpy(lc.delimiters, "+");
    open_db(users);
    ANSWER("mailbox alice+x@example.org", "OK alice");
    ANSWER("mailbox BOB@example.org", "OK Bob");
    ANSWER("mailbox erin@example.org", "OK erin");   /* exists, whatever its route */
    ANSWER("mailbox nobody@example.org", "NOTFOUND ");
    ANSWER("mailbox example.org", "NOTFOUND ");
    /* no socketmap_lmtp_default and no listen_lmtp: a user whose mail is
     * here cannot be routed */
    ANSWER("transport carol@example.org",
           "PERM carol has no host and socketmap_lmtp_default is not set");
    ANSWER("virtual alice@example.org", "PERM no map virtual here (transport, mailbox)");
    ANSWER("Transport alice@example.org", "PERM no map Transport here (transport, mailbox)");
    ANSWER("transport", "PERM a request is \"map key\"");
    ANSWER("", "PERM a request is \"map key\"");
    userdb_close(db);
}

/* A directory that cannot be read: TEMP, never NOTFOUND (Postfix would
 * refuse the recipient, or bounce it, as unknown). */
static void t_directory_down(void)
{
    char err[300];
    REQUIRE_OK(conf(NULL, 0, err, sizeof err));
    memset(&lc, 0, sizeof lc);
    open_db(users);
    ANSWER("mailbox alice@example.org", "OK alice");
    /* the passwd-file replaced by something that cannot be read as one
     * (chmod does not stop root, who runs the tests) */
    REQUIRE(unlink(passwd) == 0 && mkdir(passwd, 0700) == 0);
    const char *got = ask("transport alice@example.org");
    CHECK(!strncmp(got, "TEMP ", 5));
    got = ask("mailbox nobody@example.org");
    CHECK(!strncmp(got, "TEMP ", 5));
    rmdir(passwd);
    userdb_close(db);
}

static void t_settings(void)
{
    char err[300];
    static const char *const unix_kv[] = {"listen_lmtp=/run/rm/lmtp,127.0.0.1:24"};
    REQUIRE_OK(conf(unix_kv, 1, err, sizeof err));
    CHECK(!strcmp(sc.local, "lmtp:unix:/run/rm/lmtp"));
    static const char *const inet_kv[] = {"listen_lmtp=10.0.0.5:2424, /x"};
    REQUIRE_OK(conf(inet_kv, 1, err, sizeof err));
    CHECK(!strcmp(sc.local, "lmtp:inet:10.0.0.5:2424"));
    static const char *const v6_kv[] = {"listen_lmtp=[2001:db8::1]:24"};
    REQUIRE_OK(conf(v6_kv, 1, err, sizeof err));
    CHECK(!strcmp(sc.local, "lmtp:inet:[2001:db8::1]:24"));
    /* a wildcard is no address to deliver to */
    static const char *const wild_kv[] = {"listen_lmtp=0.0.0.0:24"};
    REQUIRE_OK(conf(wild_kv, 1, err, sizeof err));
    CHECK(!strcmp(sc.local, ""));
    static const char *const wild6_kv[] = {"listen_lmtp=[::]:24"};
    REQUIRE_OK(conf(wild6_kv, 1, err, sizeof err));
    CHECK(!strcmp(sc.local, ""));
    /* an explicit default wins */
    static const char *const both_kv[] = {"listen_lmtp=/run/rm/lmtp",
                                          "socketmap_lmtp_default=lmtp:inet:10.1.1.1:24"};
    REQUIRE_OK(conf(both_kv, 2, err, sizeof err));
    CHECK(!strcmp(sc.local, "lmtp:inet:10.1.1.1:24"));
    static const char *const bad[] = {"socketmap_lmtp_default=lmtp",
                                      "socketmap_lmtp_default=:x",
                                      "socketmap_lmtp_default=lmtp:inet:a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ(conf(&bad[i], 1, err, sizeof err), -EINVAL);
    /* serving the maps with lmtp_user_domain = strip needs the domains */
    static const char *const strip_kv[] = {"listen_socketmap=127.0.0.1:2425"};
    CHECK_EQ(conf(strip_kv, 1, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "socketmap_domains") != NULL);
    static const char *const keep_kv[] = {"listen_socketmap=127.0.0.1:2425",
                                          "lmtp_user_domain=keep"};
    REQUIRE_OK(conf(keep_kv, 2, err, sizeof err));
    CHECK(!strcmp(sc.domains, ""));
    static const char *const dom_kv[] = {"listen_socketmap=127.0.0.1:2425",
                                         "socketmap_domains= a.example,b.example  c.example, "};
    REQUIRE_OK(conf(dom_kv, 2, err, sizeof err));
    CHECK(!strcmp(sc.domains, "a.example b.example c.example"));
    static const char *const baddom_kv[] = {"socketmap_domains=a@b.example"};
    CHECK_EQ(conf(baddom_kv, 1, err, sizeof err), -EINVAL);
    static const char *const lim_kv[] = {"socketmap_timeout=5",
                                         "socketmap_max_connections=7"};
    REQUIRE_OK(conf(lim_kv, 2, err, sizeof err));
    CHECK_EQ(sc.timeout_ms, 5000);
    CHECK_EQ(sc.max_conn, 7);
    CHECK_EQ(sc.lmtp_port, 24);
}

int main(void)
{
    RUN(t_transport);
    RUN(t_keep_domain);
    RUN(t_mailbox_and_requests);
    RUN(t_directory_down);
    RUN(t_settings);
    return test_summary();
}
