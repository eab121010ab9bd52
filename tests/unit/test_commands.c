/* tests/unit/test_commands.c — the command table and the answers that
 * follow from it (core/server/commands.c): lookup by name, what each
 * command declares, the read-only refusal and the tagged answer.  The same
 * rules on the wire: tests/integration/test_imap_commands.py. */
#include <stdbool.h>

#include "core/server/session.h"
#include "tests/unit/testutil.h"

static bool named(const cmd_def *d, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(d->name, *names))
            return true;
    return false;
}

static void test_find(void)
{
    for (size_t i = 0; i < CMD_COUNT; i++) {
        /* every slot of the table filled, each name found at its slot */
        REQUIRE(cmd_table[i].name && cmd_table[i].fn);
        CHECK(cmd_find(cmd_table[i].name) == &cmd_table[i]);
        CHECK(cmd_table[i].states && !(cmd_table[i].states & ~CMD_IN_ANY));
    }
    CHECK(cmd_find("fetch") == &cmd_table[CMD_FETCH]);
    CHECK(cmd_find("Uid") == NULL);     /* a prefix, not a command */
    CHECK(cmd_find("FETCHX") == NULL);
    CHECK(cmd_find("FETC") == NULL);
    CHECK(cmd_find("") == NULL);
    CHECK(!strcmp(cmd_table[CMD_IDLE].name, "IDLE"));
    CHECK(!strcmp(cmd_table[CMD_SEARCH].name, "SEARCH"));
}

/* What the RFCs say, against what the table declares. */
static void test_declarations(void)
{
    static const char *const uid[] = {"COPY", "MOVE", "EXPUNGE", "STORE", "FETCH",
                                      "SEARCH", "SORT", "THREAD", NULL};
                                      /* RFC 9051 6.4.9, RFC 5256 (UID SORT, UID THREAD) */
    static const char *const writes[] = {"EXPUNGE", "STORE", "MOVE", NULL};
    static const char *const no_expunge[] = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD",
                                             NULL};
    /* the RFC 9051 grammar gives these no arguments ("capability", "noop",
     * "logout", "starttls", "namespace", "idle", "close", "unselect",
     * "expunge" without UID; RFC 3501's "check") */
    static const char *const no_args[] = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS",
                                          "NAMESPACE", "IDLE", "CHECK", "CLOSE",
                                          "UNSELECT", "EXPUNGE", NULL};
    static const char *const noauth[] = {"STARTTLS", "LOGIN", "AUTHENTICATE", NULL};
    static const char *const any[] = {"CAPABILITY", "NOOP", "LOGOUT", "ID", NULL};
    /* RFC 5267 4.3.5: CANCELUPDATE is a command-select */
    static const char *const selected[] = {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "STORE",
                                           "COPY", "MOVE", "FETCH", "SEARCH", "SORT",
                                           "THREAD", "CANCELUPDATE", NULL};
    for (size_t i = 0; i < CMD_COUNT; i++) {
        const cmd_def *d = &cmd_table[i];
        CHECK(d->uid == named(d, uid));
        CHECK(d->writes == named(d, writes));
        CHECK(d->no_args == named(d, no_args));
        CHECK((d->updates == CMD_UPD_NO_EXPUNGE) == named(d, no_expunge));
        unsigned want = named(d, noauth) ? CMD_IN_NOAUTH : named(d, any) ? CMD_IN_ANY
                      : named(d, selected) ? CMD_IN_SELECTED : CMD_IN_AUTHED;
        if (d->states != want)
            fprintf(stderr, "%s: states %u, want %u\n", d->name, d->states, want);
        CHECK_EQ(d->states, want);
    }
}

/* A session with no connection and no mailbox: enough for the answers,
 * which only write to s->out. */
static session *bare_session(bool readonly)
{
    session *s = calloc(1, sizeof *s);
    if (s) {
        s->state = ST_SELECTED;
        s->readonly = readonly;
    }
    return s;
}

static bool out_is(session *s, const char *want)
{
    bool ok = s->out.len == strlen(want) && !memcmp(s->out.p, want, s->out.len);
    if (!ok)
        fprintf(stderr, "out: %.*s, want %s\n", (int)s->out.len, s->out.p ? s->out.p : "",
                want);
    s->out.len = 0;
    return ok;
}

static void test_read_only(void)
{
    session *s = bare_session(true);
    REQUIRE(s);
    imap_cmd c = {.s = s, .tag = "a1", .def = &cmd_table[CMD_STORE]};
    CHECK(cmd_read_only(&c));
    CHECK(out_is(s, "a1 NO [READ-ONLY] Mailbox is read-only\r\n"));
    c.def = &cmd_table[CMD_MOVE];
    CHECK(cmd_read_only(&c));
    CHECK(out_is(s, "a1 NO [READ-ONLY] Mailbox is read-only\r\n"));
    /* COPY and FETCH do not write the selected mailbox: not refused */
    c.def = &cmd_table[CMD_COPY];
    CHECK(!cmd_read_only(&c));
    CHECK(out_is(s, ""));
    c.def = &cmd_table[CMD_FETCH];
    CHECK(!cmd_read_only(&c));
    CHECK(out_is(s, ""));
    /* SELECTed: nothing is refused */
    s->readonly = false;
    c.def = &cmd_table[CMD_EXPUNGE];
    CHECK(!cmd_read_only(&c));
    CHECK(out_is(s, ""));
    imap_out_free(&s->out);
    free(s);
}

static void test_done(void)
{
    /* Without a mailbox there is nothing to announce: the tagged line
     * alone, the same bytes whatever the command declares. */
    session *s = bare_session(false);
    REQUIRE(s);
    s->state = ST_AUTH;
    cmd_done(s, &cmd_table[CMD_CAPABILITY], "t1", "OK", "CAPABILITY completed");
    CHECK(out_is(s, "t1 OK CAPABILITY completed\r\n"));
    cmd_done(s, &cmd_table[CMD_NOOP], "t2", "OK", "%s completed", "NOOP");
    CHECK(out_is(s, "t2 OK NOOP completed\r\n"));
    cmd_done(s, &cmd_table[CMD_FETCH], "t3", "NO", "[CANNOT] No such part for %s", "BINARY");
    CHECK(out_is(s, "t3 NO [CANNOT] No such part for BINARY\r\n"));
    cmd_sync(s, &cmd_table[CMD_IDLE]);
    CHECK(out_is(s, ""));
    sess_update_req u = {0};
    imap_out_printf(&u.tail, "t4 OK STORE completed\r\n");
    cmd_update(s, &cmd_table[CMD_STORE], &u);
    CHECK(out_is(s, "t4 OK STORE completed\r\n"));
    CHECK(u.tail.p == NULL);    /* taken over */
    imap_out_free(&s->out);
    free(s);
}

int main(void)
{
    RUN(test_find);
    RUN(test_declarations);
    RUN(test_read_only);
    RUN(test_done);
    return test_summary();
}
