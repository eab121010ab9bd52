/* tests/unit/test_userdb.c — the directory of users over a passwd-file:
 * verify and lookup give the record, extra fields are found with or
 * without Dovecot's "userdb_" prefix, and a record's route (host, port)
 * is read and checked. */
#include "core/auth/userdb.h"
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
    REQUIRE_OK(userdb_open(&(userdb_params){.passwd_file = path}, &db));
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

/* userdb_set_route rewrites host= and port= and keeps the rest of the
 * line, including extra fields with ':' in them and other users' lines;
 * lookups see the new route at once (the file is read again). */
static void t_set_route(void)
{
    const char *dir = test_tmpdir("userdb-route");
    char path[600];
    snprintf(path, sizeof path, "%s/passwd", dir);
    test_write_file(path, "# users\n"
                    "alice:{PLAIN}a:1:2::/home/a::userdb_quota_rule=*:storage=1G "
                    "userdb_host=10.0.0.1 port=143 x=y\n"
                    "bob:{PLAIN}b\n");
    userdb *db;
    REQUIRE_OK(userdb_open(&(userdb_params){.passwd_file = path}, &db));
    REQUIRE_OK(userdb_set_route(db, "alice", "10.0.0.2", 1143));
    REQUIRE_OK(userdb_set_route(db, "bob", "127.0.0.1", 10143));
    CHECK_EQ(userdb_set_route(db, "carol", "127.0.0.1", 10143), -ENOENT);
    CHECK_EQ(userdb_set_route(db, "bob", "a b", 10143), -EINVAL);
    CHECK_EQ(userdb_set_route(db, "bob", "h", 0), -EINVAL);
    userdb_rec r = {0};
    REQUIRE_OK(userdb_lookup(db, "alice", false, &r));
    CHECK(r.extra && !strcmp(r.extra, "userdb_quota_rule=*:storage=1G x=y "
                             "host=10.0.0.2 port=1143"));
    char *h;
    unsigned port;
    REQUIRE_OK(userdb_route(&r, &h, &port));
    CHECK(!strcmp(h, "10.0.0.2") && port == 1143);
    free(h);
    userdb_rec_free(&r);
    REQUIRE_OK(userdb_verify(db, "alice", "a", &r, NULL));
    userdb_rec_free(&r);
    REQUIRE_OK(userdb_verify(db, "bob", "b", &r, NULL));
    CHECK(r.extra && !strcmp(r.extra, "host=127.0.0.1 port=10143"));
    userdb_rec_free(&r);
    FILE *f = fopen(path, "r");
    char buf[512] = "";
    REQUIRE(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    CHECK(!strcmp(buf, "# users\n"
                  "alice:{PLAIN}a:1:2::/home/a::userdb_quota_rule=*:storage=1G x=y "
                  "host=10.0.0.2 port=1143\n"
                  "bob:{PLAIN}b::::::host=127.0.0.1 port=10143\n"));
    userdb_close(db);
}

int main(void)
{
    RUN(t_set_route);
    RUN(t_fields);
    RUN(t_route);
    RUN(t_passwd_backend);
    return test_summary();
}
