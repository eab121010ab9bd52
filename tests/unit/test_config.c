/* tests/unit/test_config.c — the configuration file, -o overrides and
 * validation. */
#include "core/base/config.h"
#include "store/store.h"
#include "testutil.h"

#include <stdbool.h>

static char dir[512];

/* Write text to a fresh file under the test dir; returns a static path. */
static const char *write_conf(const char *name, const char *text)
{
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    test_write_file(path, text);
    return path;
}

static void test_defaults(void)
{
    config c = { 0 };
    REQUIRE_OK(config_init(&c));
    CHECK(strcmp(config_get(&c, "mail_root"), "./ringmail-data") == 0);
    CHECK(strcmp(config_get(&c, "fsync"), "batch") == 0);
    CHECK(strcmp(config_get(&c, "hierarchy_separator"), "/") == 0);
    CHECK(strcmp(config_source(&c, "fsync"), "default") == 0);
    CHECK(config_get(&c, "no_such_key") == NULL);
    CHECK(config_source(&c, "no_such_key") == NULL);
    long long w = -1;
    CHECK_EQ(config_get_int(&c, "workers", &w), 0);
    CHECK_EQ(w, 0);
    bool b = true;
    CHECK_EQ(config_get_bool(&c, "log_commands", &b), 0);
    CHECK(!b);
    CHECK_EQ(config_get_int(&c, "nope", &w), -ENOENT);
    CHECK_EQ(config_get_int(&c, "mail_root", &w), -EINVAL);
    CHECK_EQ(config_get_bool(&c, "mail_root", &b), -EINVAL);

    /* Every reserved key has a default that passes its own validation. */
    size_t n;
    const config_key *k = config_keys(&n);
    CHECK(n >= 11);
    for (size_t i = 0; i < n; i++) {
        char kv[256], err[256];
        snprintf(kv, sizeof kv, "%s=%s", k[i].name, k[i].def);
        CHECK_EQ(config_set(&c, kv, err, sizeof err), 0);
    }
    const char *reserved[] = { "listen", "listen_tls", "passwd_file", "workers",
                               "io_backend", "log_level", "tls_cert", "tls_key" };
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        CHECK(config_get(&c, reserved[i]) != NULL);
    config_free(&c);
    config_free(&c);        /* idempotent */
}

static void test_file(void)
{
    config c = { 0 };
    char err[512] = "";
    REQUIRE_OK(config_init(&c));
    const char *p = write_conf("ok.conf",
        "# a comment\n"
        "\n"
        "   mail_root   =   /var/mail/ring   \n"
        "fsync=always\n"
        "workers = 4   # one per core\n"
        "passwd_file = /etc/pw#1\n"
        "tls_cert = \"/etc/with space # not a comment\"  # a comment\n"
        "tls_key = \"a\\\"b\\\\c\"\n"
        "log_level = debug\n"
        "log_level = warn\n"          /* later wins */
        "log_commands = Yes\n"
        "listen =\n"                  /* empty string is a value */
        "hierarchy_separator = .\n"
        "\t# indented comment\n"
        "io_backend = epoll");        /* no final newline */
    int r = config_load_file(&c, p, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "error: %s\n", err);
    REQUIRE_OK(r);
    CHECK(strcmp(config_get(&c, "mail_root"), "/var/mail/ring") == 0);
    CHECK(strcmp(config_get(&c, "fsync"), "always") == 0);
    CHECK(strcmp(config_get(&c, "passwd_file"), "/etc/pw#1") == 0);
    CHECK(strcmp(config_get(&c, "tls_cert"), "/etc/with space # not a comment") == 0);
    CHECK(strcmp(config_get(&c, "tls_key"), "a\"b\\c") == 0);
    CHECK(strcmp(config_get(&c, "log_level"), "warn") == 0);
    CHECK(strcmp(config_get(&c, "listen"), "") == 0);
    CHECK(strcmp(config_get(&c, "io_backend"), "epoll") == 0);
    long long w = 0;
    CHECK_EQ(config_get_int(&c, "workers", &w), 0);
    CHECK_EQ(w, 4);
    bool b = false;
    CHECK_EQ(config_get_bool(&c, "log_commands", &b), 0);
    CHECK(b);

    char want[700];
    snprintf(want, sizeof want, "%s:3", p);
    CHECK(strcmp(config_source(&c, "mail_root"), want) == 0);
    snprintf(want, sizeof want, "%s:10", p);
    CHECK(strcmp(config_source(&c, "log_level"), want) == 0);

    store_opts o;
    REQUIRE_OK(config_store_opts(&c, &o));
    CHECK(o.fsync == STORE_FSYNC_ALWAYS);
    CHECK_EQ(o.separator, '.');

    /* -o after the file wins and is recorded as such. */
    CHECK_EQ(config_set(&c, "mail_root=/tmp/x y", err, sizeof err), 0);
    CHECK(strcmp(config_get(&c, "mail_root"), "/tmp/x y") == 0);
    CHECK(strcmp(config_source(&c, "mail_root"), "-o") == 0);
    CHECK_EQ(config_set(&c, " workers =7", err, sizeof err), 0);
    CHECK_EQ(config_get_int(&c, "workers", &w), 0);
    CHECK_EQ(w, 7);
    CHECK_EQ(config_set(&c, "tls_cert=a # b", err, sizeof err), 0);
    CHECK(strcmp(config_get(&c, "tls_cert"), "a # b") == 0);   /* literal */
    config_free(&c);
}

/* A bad file must fail with the key or value and path:line in the message. */
static void expect_file_error(const char *text, const char *fragment, int line)
{
    config c = { 0 };
    char err[512] = "";
    if (config_init(&c) < 0) {
        CHECK(0);
        return;
    }
    const char *p = write_conf("bad.conf", text);
    CHECK_EQ(config_load_file(&c, p, err, sizeof err), -EINVAL);
    char at[700];
    snprintf(at, sizeof at, "at %s:%d", p, line);
    if (!strstr(err, fragment) || !strstr(err, at)) {
        fprintf(stderr, "  got '%s', want '%s' ... '%s'\n", err, fragment, at);
        CHECK(0);
    }
    CHECK(strchr(err, '\n') == NULL);
    config_free(&c);
}

static void test_file_errors(void)
{
    expect_file_error("mail_root = /x\nmail_rot = /y\n", "unknown key 'mail_rot'", 2);
    expect_file_error("\n\nworkers = many\n", "invalid value 'many' for 'workers'", 3);
    expect_file_error("workers = -1\n", "from 0 to 4096", 1);
    expect_file_error("workers = 99999999999999999999999\n", "'workers'", 1);
    expect_file_error("workers = 4x\n", "'workers'", 1);
    expect_file_error("workers =\n", "'workers'", 1);
    expect_file_error("fsync = sometimes\n", "always|batch|never", 1);
    expect_file_error("fsync = Batch\n", "'fsync'", 1);
    expect_file_error("log_commands = maybe\n", "yes or no", 1);
    expect_file_error("hierarchy_separator = :\n", "'hierarchy_separator'", 1);
    expect_file_error("# ok\njust words\n", "expected 'key = value'", 2);
    expect_file_error(" = value\n", "expected 'key = value'", 1);
    expect_file_error("tls_cert = \"unterminated\n", "bad quoted value", 1);
    expect_file_error("tls_cert = \"a\" b\n", "bad quoted value", 1);

    config c = { 0 };
    char err[512] = "";
    REQUIRE_OK(config_init(&c));
    char missing[700];
    snprintf(missing, sizeof missing, "%s/does-not-exist.conf", dir);
    CHECK_EQ(config_load_file(&c, missing, err, sizeof err), -ENOENT);
    CHECK(strstr(err, "does-not-exist.conf") != NULL);
    CHECK_EQ(config_load_file(&c, dir, NULL, 0) < 0, 1);  /* a directory */
    /* A failed file leaves earlier good lines applied but nothing else. */
    const char *p = write_conf("half.conf", "log_level = debug\nbogus = 1\nfsync = never\n");
    CHECK_EQ(config_load_file(&c, p, err, sizeof err), -EINVAL);
    CHECK(strcmp(config_get(&c, "log_level"), "debug") == 0);
    CHECK(strcmp(config_get(&c, "fsync"), "batch") == 0);
    config_free(&c);
}

static void test_override_errors(void)
{
    config c = { 0 };
    char err[512] = "";
    REQUIRE_OK(config_init(&c));
    CHECK_EQ(config_set(&c, "mail_root", err, sizeof err), -EINVAL);
    CHECK(strstr(err, "expected key=value") != NULL);
    CHECK_EQ(config_set(&c, "x=1", err, sizeof err), -EINVAL);
    CHECK(strstr(err, "unknown key 'x'") != NULL);
    CHECK(strstr(err, "-o 'x=1'") != NULL);
    CHECK_EQ(config_set(&c, "=1", err, sizeof err), -EINVAL);
    CHECK_EQ(config_set(&c, "workers=", err, sizeof err), -EINVAL);
    CHECK_EQ(config_set(&c, "workers= 3", err, sizeof err), -EINVAL);
    CHECK_EQ(config_set(&c, "mail_root=a\tb", err, sizeof err), -EINVAL);
    CHECK(strstr(err, "control character") != NULL);
    CHECK_EQ(config_set(&c, "io_backend=uring", NULL, 0), -EINVAL);   /* err optional */
    /* A tiny buffer is truncated, not overrun. */
    char small[8];
    CHECK_EQ(config_set(&c, "nope=1", small, sizeof small), -EINVAL);
    CHECK_EQ(strlen(small), 7);
    CHECK(strcmp(config_get(&c, "io_backend"), "auto") == 0);
    config_free(&c);
}

static void test_load_sequence(void)
{
    config c = { 0 };
    char err[512] = "";
    REQUIRE_OK(config_init(&c));
    const char *p = write_conf("seq.conf", "mail_root = /from/file\nworkers = 2\n");
    const char *ov[] = { "workers=3", "fsync=never" };
    REQUIRE_OK(config_load(&c, p, ov, 2, err, sizeof err));
    CHECK(strcmp(config_get(&c, "mail_root"), "/from/file") == 0);
    CHECK(strcmp(config_get(&c, "workers"), "3") == 0);
    CHECK(strcmp(config_get(&c, "fsync"), "never") == 0);
    config_free(&c);

    /* $RINGMAIL_CONFIG is used when no path is given. */
    REQUIRE_OK(config_init(&c));
    setenv("RINGMAIL_CONFIG", p, 1);
    REQUIRE_OK(config_load(&c, NULL, NULL, 0, err, sizeof err));
    CHECK(strcmp(config_get(&c, "mail_root"), "/from/file") == 0);
    config_free(&c);

    /* A named file that is missing is an error; so is a bad override. */
    REQUIRE_OK(config_init(&c));
    char missing[700];
    snprintf(missing, sizeof missing, "%s/nope.conf", dir);
    CHECK_EQ(config_load(&c, missing, NULL, 0, err, sizeof err), -ENOENT);
    const char *bad[] = { "nokey=1" };
    CHECK_EQ(config_load(&c, p, bad, 1, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "unknown key 'nokey'") != NULL);
    unsetenv("RINGMAIL_CONFIG");
    config_free(&c);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s", test_tmpdir("config"));
    RUN(test_defaults);
    RUN(test_file);
    RUN(test_file_errors);
    RUN(test_override_errors);
    RUN(test_load_sequence);
    return test_summary();
}
