/* tests/unit/test_userdb.c — the directory of users over a passwd-file:
 * verify and lookup give the record, extra fields are found with or
 * without Dovecot's "userdb_" prefix, and a record's route (host, port)
 * is read and checked. */
#include "core/auth/userdb.h"
#include "core/auth/userdb_dir.h"
#include "testutil.h"

static void t_fields(void)
{
    size_t n;
    const char *v = userdb_field("host=10.0.0.2 userdb_port=1143  x=", "port", &n);
    CHECK(v && n == 4 && !strncmp(v, "1143", 4));
    v = userdb_field("host=10.0.0.2 userdb_port=1143  x=", "host", &n);
    CHECK(v && n == 8 && !strncmp(v, "10.0.0.2", 8));
    v = userdb_field("host=10.0.0.2 userdb_port=1143  x=", "x", &n);
    CHECK(v && n == 0);
    CHECK(userdb_field("hostname=a", "host", &n) == NULL);   /* whole key only */
    CHECK(userdb_field("ghost=a", "host", &n) == NULL);
    CHECK(userdb_field(NULL, "host", &n) == NULL);
    CHECK(userdb_field("", "host", &n) == NULL);
}

static void t_route(void)
{
    char *h;
    unsigned port;
    userdb_rec r = {.extra = "userdb_quota_rule=*:storage=1G host=b2.example port=10143"};
    REQUIRE_OK(userdb_route(&r, &h, &port));
    CHECK(h && !strcmp(h, "b2.example") && port == 10143);
    free(h);
    r.extra = NULL;
    REQUIRE_OK(userdb_route(&r, &h, &port));
    CHECK(h == NULL && port == 0);
    const char *bad[] = {"port=0", "port=65536", "port=12a", "port=", "port=123456"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r.extra = (char *)bad[i];
        CHECK_EQ(userdb_route(&r, &h, &port), -EINVAL);
    }
}

static void t_passwd_backend(void)
{
    const char *dir = test_tmpdir("userdb");
    char path[600];
    snprintf(path, sizeof path, "%s/passwd", dir);
    test_write_file(path, "alice:{PLAIN}a::::::host=127.0.0.1 port=1143\n"
                     "Bob:{PLAIN}b\n");
    userdb *db;
    REQUIRE_OK(userdb_open(&(userdb_params){.passwd_file = path}, &db, NULL));
    userdb_rec r = {0};
    unsigned delay = 7;
    REQUIRE_OK(userdb_verify(db, "alice", "a", &r, &delay));
    CHECK(delay == 0 && !strcmp(r.name, "alice"));
    CHECK(r.extra && !strcmp(r.extra, "host=127.0.0.1 port=1143"));
    userdb_rec_free(&r);
    CHECK_EQ(userdb_verify(db, "alice", "b", &r, &delay), -EACCES);
    CHECK(r.name == NULL);
    CHECK_EQ(userdb_verify(db, "nobody", "x", NULL, &delay), -EACCES);
    REQUIRE_OK(userdb_lookup(db, "bob", true, &r));
    CHECK(!strcmp(r.name, "Bob") && r.extra == NULL);
    userdb_rec_free(&r);
    CHECK_EQ(userdb_lookup(db, "bob", false, &r), -ENOENT);
    CHECK(userdb_passwd(db) != NULL);
    userdb_close(db);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    static char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

/* userdb_set_route on the passwd-file: the route fields change (with or
 * without Dovecot's prefix), everything else on the line stays, a short
 * line grows the empty fields it lacked, other users are untouched. */
static void t_set_route(void)
{
    const char *dir = test_tmpdir("userdb-route");
    char path[600];
    snprintf(path, sizeof path, "%s/passwd", dir);
    test_write_file(path, "# users\n"
                    "alice:{PLAIN}a:1:2:Alice:/h:/sh:userdb_quota_rule=*:storage=1G "
                    "userdb_host=10.0.0.1 port=143 x=y\n"
                    "bob:{PLAIN}b\n"
                    "carol:{PLAIN}c::::::host=h3\n");
    userdb *db;
    REQUIRE_OK(userdb_open(&(userdb_params){.passwd_file = path}, &db, NULL));
    REQUIRE_OK(userdb_set_route(db, "alice", "10.0.0.2", 10143));
    REQUIRE_OK(userdb_set_route(db, "bob", "b.example", 0));
    REQUIRE_OK(userdb_set_route(db, "carol", NULL, 0));
    CHECK(!strcmp(slurp(path), "# users\n"
              "alice:{PLAIN}a:1:2:Alice:/h:/sh:userdb_quota_rule=*:storage=1G x=y "
              "host=10.0.0.2 port=10143\n"
              "bob:{PLAIN}b::::::host=b.example\n"
              "carol:{PLAIN}c::::::\n"));
    userdb_rec r = {0};
    char *h;
    unsigned port;
    REQUIRE_OK(userdb_verify(db, "alice", "a", &r, NULL));
    REQUIRE_OK(userdb_route(&r, &h, &port));
    CHECK(h && !strcmp(h, "10.0.0.2") && port == 10143);
    free(h);
    userdb_rec_free(&r);
    REQUIRE_OK(userdb_lookup(db, "bob", false, &r));
    REQUIRE_OK(userdb_route(&r, &h, &port));
    CHECK(h && !strcmp(h, "b.example") && port == 0);
    free(h);
    userdb_rec_free(&r);
    REQUIRE_OK(userdb_verify(db, "bob", "b", NULL, NULL));
    CHECK_EQ(userdb_set_route(db, "dave", "h", 1), -ENOENT);
    CHECK_EQ(userdb_set_route(db, "bob", "a b", 1), -EINVAL);
    CHECK_EQ(userdb_set_route(db, "bob", "", 1), -EINVAL);
    CHECK_EQ(userdb_set_route(db, "bob", "h", 65536), -EINVAL);
    userdb_close(db);
}

/* RFC 4515 3: '*', '(', ')', '\\' (and NUL) in an assertion value are
 * written as a backslash and two hex digits; nothing else changes. */
static void t_ldap_filter(void)
{
    char *f = NULL;
    REQUIRE_OK(userdb_ldap_filter("(&(objectClass=inetOrgPerson)(uid=%u))", "alice", &f));
    CHECK(!strcmp(f, "(&(objectClass=inetOrgPerson)(uid=alice))"));
    free(f);
    REQUIRE_OK(userdb_ldap_filter("(uid=%u)", "*)(|(uid=*", &f));
    CHECK(!strcmp(f, "(uid=\\2a\\29\\28|\\28uid=\\2a)"));
    free(f);
    REQUIRE_OK(userdb_ldap_filter("(uid=%u)", "a\\b", &f));
    CHECK(!strcmp(f, "(uid=a\\5cb)"));
    free(f);
    /* UTF-8 stays as it is (RFC 4515's UTFMB), %% is a percent sign, %u
     * may come twice */
    REQUIRE_OK(userdb_ldap_filter("(|(uid=%u)(mail=%u@x%%))", "j\xc3\xbcrgen", &f));
    CHECK(!strcmp(f, "(|(uid=j\xc3\xbcrgen)(mail=j\xc3\xbcrgen@x%))"));
    free(f);
    CHECK_EQ(userdb_ldap_filter("(uid=%s)", "a", &f), -EINVAL);
    CHECK(f == NULL);
    CHECK_EQ(userdb_ldap_filter("(uid=%", "a", &f), -EINVAL);
}

/* Directory settings are checked at open (nothing is contacted). */
static void t_directory_settings(void)
{
    const char *dir = test_tmpdir("userdb-dir");
    char path[600];
    snprintf(path, sizeof path, "%s/passwd", dir);
    test_write_file(path, "");
    userdb *db = NULL;
    const char *why = NULL;
    userdb_params p = {.passwd_file = path, .kind = "ldap", .ldap_uri = "ldap://127.0.0.1:1/",
                       .ldap_base = "dc=x", .ldap_filter = "(uid=%u)",
                       .ldap_attrs = "mailHost=host, mailPort=port"};
    REQUIRE_OK(userdb_open(&p, &db, &why));
    CHECK(userdb_is_directory(db));
    /* nothing cached: a worker hears "ask on the pool" */
    CHECK_EQ(userdb_lookup_cached(db, "a", false, NULL), -EWOULDBLOCK);
    /* nobody listens on port 1: the directory cannot answer */
    CHECK_EQ(userdb_lookup(db, "a", false, NULL), -EAGAIN);
    CHECK(strstr(userdb_error(), "ldap://127.0.0.1:1/") != NULL);
    CHECK_EQ(userdb_verify(db, "a", "pw", NULL, NULL), -EAGAIN);
    uint64_t g = userdb_generation(db);
    userdb_flush(db);
    CHECK(userdb_generation(db) != g);
    userdb_close(db);
    struct { const char *key; userdb_params p; } bad[] = {
        {"userdb", {.passwd_file = path, .kind = "nis"}},
        {"ldap_uri", {.passwd_file = path, .kind = "ldap", .ldap_uri = "http://x/",
                      .ldap_filter = "(uid=%u)"}},
        {"ldap_filter", {.passwd_file = path, .kind = "ldap", .ldap_uri = "ldap://x/",
                         .ldap_filter = "(uid=alice)"}},
        {"ldap_auth", {.passwd_file = path, .kind = "ldap", .ldap_uri = "ldap://x/",
                       .ldap_filter = "(uid=%u)", .ldap_auth = "compare"}},
        {"ldap_attrs", {.passwd_file = path, .kind = "ldap", .ldap_uri = "ldap://x/",
                        .ldap_filter = "(uid=%u)", .ldap_attrs = "mailHost"}},
        {"pgsql_connect", {.passwd_file = path, .kind = "pgsql",
                           .pgsql_connect = "host=x sslmode=require",
                           .pgsql_password_query = "SELECT p FROM u WHERE n = $1",
                           .pgsql_user_query = "SELECT h FROM u WHERE n = $1"}},
        {"pgsql_password_query", {.passwd_file = path, .kind = "pgsql",
                                  .pgsql_connect = "host=x",
                                  .pgsql_password_query = "SELECT p FROM u",
                                  .pgsql_user_query = "SELECT h FROM u WHERE n = $1"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why = NULL;
        db = NULL;
        CHECK_EQ(userdb_open(&bad[i].p, &db, &why), -EINVAL);
        CHECK(db == NULL);
        CHECK(why && strstr(why, bad[i].key) == why);
    }
    /* PostgreSQL that nobody serves: -EAGAIN, with libpq's reason */
    p = (userdb_params){.passwd_file = path, .kind = "pgsql", .timeout_ms = 500,
                        .pgsql_connect = "host=127.0.0.1 port=1 dbname=x",
                        .pgsql_password_query = "SELECT p FROM u WHERE n = $1",
                        .pgsql_user_query = "SELECT h FROM u WHERE n = $1"};
    REQUIRE_OK(userdb_open(&p, &db, &why));
    CHECK_EQ(userdb_lookup(db, "a", false, NULL), -EAGAIN);
    CHECK(strstr(userdb_error(), "pgsql") == userdb_error());
    CHECK(strchr(userdb_error(), '\n') == NULL);
    userdb_close(db);
}

int main(void)
{
    RUN(t_fields);
    RUN(t_route);
    RUN(t_passwd_backend);
    RUN(t_set_route);
    RUN(t_ldap_filter);
    RUN(t_directory_settings);
    return test_summary();
}
