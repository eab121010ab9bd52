#!/usr/bin/env python3
"""ringmaild: greeting, CAPABILITY, NOOP, LOGOUT, LOGIN, AUTHENTICATE PLAIN
(SASL-IR, continuation, cancel), commands in the wrong state, unknown
commands, ID, ENABLE, NAMESPACE, shutdown on SIGTERM.  RFC 3501, 9051, 4959,
4616, 2971, 5161, 2342, 5530.  Runs once per io backend."""

import base64
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402

REQUIRED_AUTHED = ["IMAP4REV1", "IMAP4REV2", "IDLE", "UIDPLUS", "MOVE", "ENABLE", "ID",
                   "NAMESPACE", "SPECIAL-USE", "ESEARCH", "UNSELECT", "CHILDREN"]


def b64(data):
    return base64.b64encode(data).decode()


class Basic(rs.ServerTestCase):

    # -- greeting and capabilities --

    def test_greeting_has_capability(self):
        c = self.connect()
        st = c.greeting.status()
        self.assertTrue(c.greeting.untagged and st and st[0] == "OK",
                        "greeting must be '* OK ...', got %r" % c.greeting)
        self.assertIsNotNone(st[1], "greeting has no [CAPABILITY ...] code: %r" % c.greeting)
        caps = st[1].upper().split()
        self.assertEqual(caps[0], "CAPABILITY", c.greeting)
        self.assertIn("IMAP4REV1", caps)
        self.assertIn("AUTH=PLAIN", caps)
        self.assertNotIn("LOGINDISABLED", caps,
                         "loopback with plaintext_auth=loopback must allow LOGIN")

    def test_capability_before_and_after_login(self):
        c = self.connect()
        pre = c.capabilities()
        for cap in ("IMAP4REV1", "IMAP4REV2", "AUTH=PLAIN", "SASL-IR", "ID", "ENABLE"):
            self.assertIn(cap, pre, "pre-login CAPABILITY lacks %s: %s" % (cap, pre))
        self.assertTrue("LITERAL+" in pre or "LITERAL-" in pre, pre)
        self.assertFalse("LITERAL+" in pre and "LITERAL-" in pre,
                         "RFC 7888: MUST NOT advertise both LITERAL+ and LITERAL-")
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))
        post = c.capabilities()
        for cap in REQUIRED_AUTHED:
            self.assertIn(cap, post, "CAPABILITY after login lacks %s: %s" % (cap, post))
        self.assertTrue("LITERAL+" in post or "LITERAL-" in post, post)
        # CAPABILITY takes no arguments
        self.expect(c.cmd("CAPABILITY IMAP4rev1"), "BAD")

    def test_noop(self):
        c = self.connect()
        r = self.ok(c, "NOOP")
        self.assertEqual(r.tagged.tag, "t1")
        self.expect(c.cmd("NOOP extra"), "BAD")
        c2 = self.login()
        self.ok(c2, "NOOP")
        self.ok(c2, "SELECT INBOX")
        self.ok(c2, "NOOP")

    def test_logout(self):
        for authed in (False, True):
            c = self.login() if authed else self.connect()
            r = c.cmd("LOGOUT")
            self.expect(r, "OK")
            byes = [u for u in r.untagged if u.status() and u.status()[0] == "BYE"]
            self.assertEqual(len(byes), 1, "LOGOUT must send exactly one untagged BYE:\n"
                             + r.describe())
            self.assertIs(r.untagged[-1], byes[0], "BYE must come before the tagged OK")
            self.assertTrue(c.wait_closed(5), "server did not close after LOGOUT")

    def test_logout_in_selected_state_and_pipelined(self):
        c = self.login(select="INBOX")
        c.send("a1 NOOP\r\na2 LOGOUT\r\na3 NOOP\r\n")
        u, t, _ = c.read_until_tag("a1")
        self.assertEqual(t.status()[0], "OK")
        u, t, _ = c.read_until_tag("a2")
        self.assertEqual(t.status()[0], "OK")
        self.assertTrue(any(x.status() and x.status()[0] == "BYE" for x in u), u)
        self.assertTrue(c.wait_closed(5), "server did not close after LOGOUT")
        self.assertNotIn(b"a3 ", c.buf, "command after LOGOUT must not be answered")

    # -- LOGIN --

    def test_login_good_and_bad(self):
        c = self.connect()
        r = c.cmd("LOGIN %s %s" % (quote(self.user), quote("wrong")))
        self.expect(r, "NO", "AUTHENTICATIONFAILED")
        # still not authenticated; same connection can retry
        self.expect(c.cmd("SELECT INBOX"), ("BAD", "NO"))
        r = c.cmd("LOGIN nosuchuser whatever")
        self.expect(r, "NO", "AUTHENTICATIONFAILED",
                    msg="unknown user must look like a wrong password")
        r = self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))
        self.ok(c, "SELECT INBOX")

    def test_login_atoms_and_literals(self):
        c = self.connect()
        # user names and passwords as atoms (no quotes)
        self.ok(c, "LOGIN %s %s" % (self.user, self.password))
        c2 = self.connect()
        r = c2.cmd_lit("LOGIN ", self.user.encode(), " ", self.password.encode(), "")
        self.expect(r, "OK")
        self.assertEqual(len(r.continuations), 2, "each synchronizing literal gets a '+'")

    def test_login_case_insensitive_command(self):
        c = self.connect()
        self.ok(c, "login %s %s" % (quote(self.user), quote(self.password)))
        self.ok(c, "select inbox")

    def test_login_bad_syntax(self):
        self.each(self.connect, ["LOGIN", "LOGIN %s" % self.user, "LOGIN a b c",
                                 'LOGIN "unterminated pw'], "BAD")
        c = self.connect()
        self.expect(c.cmd("LOGIN"), "BAD")
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))

    def test_login_sha512_crypt(self):
        c = self.connect()
        self.expect(c.cmd('LOGIN crypt "crypt-secreT"'), "NO", "AUTHENTICATIONFAILED")
        self.ok(c, 'LOGIN crypt "crypt-secret"')
        self.ok(c, "SELECT INBOX")

    def test_login_twice_is_refused(self):
        c = self.login()
        self.expect(c.cmd("LOGIN %s %s" % (quote(self.user), quote(self.password))),
                    ("BAD", "NO"))
        self.ok(c, "NOOP")

    def test_login_ok_may_carry_capability(self):
        c = self.connect()
        r = self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))
        if r.code and r.code_name() == "CAPABILITY":
            caps = r.code.upper().split()[1:]
            for cap in REQUIRED_AUTHED:
                self.assertIn(cap, caps, "LOGIN OK [CAPABILITY] lacks %s" % cap)

    # -- AUTHENTICATE PLAIN --

    def test_authenticate_plain_sasl_ir(self):
        c = self.connect()
        ir = b64(b"\0" + self.user.encode() + b"\0" + self.password.encode())
        r = self.ok(c, "AUTHENTICATE PLAIN " + ir)
        self.assertEqual(r.continuations, [], "SASL-IR: no continuation expected")
        self.ok(c, "SELECT INBOX")

    def test_authenticate_plain_authzid_same_user(self):
        c = self.connect()
        ir = b64(self.user.encode() + b"\0" + self.user.encode() + b"\0" + self.password.encode())
        self.ok(c, "AUTHENTICATE PLAIN " + ir)

    def test_authenticate_plain_other_authzid_refused(self):
        c = self.connect()
        ir = b64(b"user59\0" + self.user.encode() + b"\0" + self.password.encode())
        self.expect(c.cmd("AUTHENTICATE PLAIN " + ir), "NO")
        self.expect(c.cmd("SELECT INBOX"), ("BAD", "NO"))

    def test_authenticate_plain_continuation(self):
        c = self.connect()
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        r = c.read()
        self.assertTrue(r.continuation, "want '+ ' continuation, got %r" % r)
        self.assertIn(r.raw, (b"+ ", b"+"), "PLAIN's first challenge is empty: %r" % r)
        c.send(b64(b"\0" + self.user.encode() + b"\0" + self.password.encode()) + "\r\n")
        u, t, _ = c.read_until_tag("a1")
        self.assertEqual(t.status()[0], "OK", t)
        self.ok(c, "SELECT INBOX")

    def test_authenticate_cancel(self):
        c = self.connect()
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.read().continuation)
        c.send("*\r\n")
        u, t, _ = c.read_until_tag("a1")
        self.assertEqual(t.status()[0], "BAD", "RFC 3501 6.2.2: cancel '*' -> tagged BAD, got %r" % t)
        self.expect(c.cmd("SELECT INBOX"), ("BAD", "NO"))
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))

    def test_authenticate_bad_base64_and_bad_password(self):
        c = self.connect()
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.read().continuation)
        c.send("!!!not base64!!!\r\n")
        u, t, _ = c.read_until_tag("a1")
        self.assertEqual(t.status()[0], "BAD", "RFC 3501 6.2.2: invalid BASE64 -> BAD, got %r" % t)
        ir = b64(b"\0" + self.user.encode() + b"\0wrong")
        self.expect(c.cmd("AUTHENTICATE PLAIN " + ir), "NO", "AUTHENTICATIONFAILED")
        # PLAIN message without NULs
        c = self.connect()
        self.expect(c.cmd("AUTHENTICATE PLAIN " + b64(b"garbage")), ("NO", "BAD"))
        self.ok(c, "NOOP")

    def test_authenticate_unknown_mechanism(self):
        c = self.connect()
        self.expect(c.cmd("AUTHENTICATE X-NOSUCH-MECH"), "NO")
        self.expect(c.cmd("AUTHENTICATE"), "BAD")
        self.ok(c, "NOOP")

    def test_authenticate_after_login_refused(self):
        c = self.login()
        ir = b64(b"\0" + self.user.encode() + b"\0" + self.password.encode())
        self.expect(c.cmd("AUTHENTICATE PLAIN " + ir), ("BAD", "NO"))

    # -- states and unknown commands --

    def test_commands_before_login(self):
        self.each(self.connect,
                  ["SELECT INBOX", "EXAMINE INBOX", "CREATE foo", "DELETE foo",
                   "LIST \"\" *", "STATUS INBOX (MESSAGES)", "APPEND INBOX {1+}\r\nx",
                   "NAMESPACE", "IDLE", "FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)",
                   "SEARCH ALL", "EXPUNGE", "CLOSE", "UNSELECT", "UID FETCH 1 FLAGS",
                   "COPY 1 INBOX", "MOVE 1 INBOX", "CHECK"], ("BAD", "NO"), what="before login")
        c = self.connect()
        self.expect(c.cmd("SELECT INBOX"), ("BAD", "NO"))
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))

    def test_selected_state_commands_without_selection(self):
        self.each(self.login,
                  ["FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL",
                   "UID FETCH 1 FLAGS", "UID SEARCH ALL", "UID STORE 1 FLAGS ()",
                   "EXPUNGE", "UID EXPUNGE 1", "CLOSE", "UNSELECT", "COPY 1 INBOX",
                   "MOVE 1 INBOX", "CHECK"], "BAD", what="no mailbox selected")
        c = self.login()
        self.expect(c.cmd("FETCH 1 FLAGS"), "BAD")
        self.ok(c, "NOOP")

    def test_unknown_and_malformed_commands(self):
        self.each(self.connect, ["XYZZY", "XYZZY with args", "UID XYZZY 1"], "BAD")
        # a line with only a tag
        c = self.connect()
        c.send("lonely\r\n")
        r = c.read()
        self.assertIn(r.tag, ("lonely", "*"), r)
        self.assertEqual(r.status()[0], "BAD", r)
        self.ok(c, "NOOP")
        # an empty line
        c = self.connect()
        c.send("\r\n")
        r = c.read()
        self.assertEqual(r.status() and r.status()[0], "BAD", r)
        self.ok(c, "NOOP")
        # a tag with forbidden characters
        c = self.connect()
        c.send("a{b NOOP\r\n")
        r = c.read()
        self.assertEqual(r.status() and r.status()[0], "BAD", r)
        self.ok(c, "NOOP")

    # -- ID, ENABLE, NAMESPACE --

    def test_id(self):
        c = self.connect()
        r = self.ok(c, 'ID ("name" "ringmail-tests" "version" "1.0")')
        ids = r.of("ID")
        self.assertEqual(len(ids), 1, r.describe())
        val = ids[0].items()[1]
        self.assertTrue(val is None or isinstance(val, list), ids[0])
        if isinstance(val, list):
            self.assertEqual(len(val) % 2, 0, "ID list must be field/value pairs: %r" % ids[0])
        r = self.ok(c, "ID NIL")
        self.assertEqual(len(r.of("ID")), 1, r.describe())
        self.each(self.connect, ["ID", 'ID ("name")'], "BAD")
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))
        self.ok(c, "ID NIL")

    def test_enable(self):
        c = self.login()
        caps = c.capabilities()
        r = self.ok(c, "ENABLE IMAP4rev2")
        en = r.of("ENABLED")
        self.assertEqual(len(en), 1, r.describe())
        self.assertEqual([x.upper() for x in en[0].raw.decode().split()[2:]], ["IMAP4REV2"])
        r = self.ok(c, "ENABLE X-UNKNOWN-EXTENSION")
        for e in r.of("ENABLED"):
            self.assertNotIn("X-UNKNOWN-EXTENSION", e.raw.decode().upper())
        r = self.ok(c, "ENABLE UTF8=ACCEPT")
        got = [x.upper() for e in r.of("ENABLED") for x in e.raw.decode().split()[2:]]
        if "UTF8=ACCEPT" in caps:
            self.assertEqual(got, ["UTF8=ACCEPT"], r.describe())
        else:
            self.assertEqual(got, [], "UTF8=ACCEPT is not advertised but got ENABLED")
        self.expect(c.cmd("ENABLE"), "BAD")

    def test_enable_before_login(self):
        c = self.connect()
        self.expect(c.cmd("ENABLE IMAP4rev2"), ("BAD", "NO"))

    def test_namespace(self):
        c = self.login()
        r = self.ok(c, "NAMESPACE")
        ns = r.of("NAMESPACE")
        self.assertEqual(len(ns), 1, r.describe())
        it = ns[0].items()
        self.assertEqual(len(it), 4, ns[0])
        personal = it[1]
        self.assertIsInstance(personal, list, ns[0])
        self.assertGreaterEqual(len(personal), 1)
        self.assertEqual(rs.s(personal[0][0]), "", "personal prefix: %r" % ns[0])
        self.assertEqual(rs.s(personal[0][1]), "/", "hierarchy delimiter: %r" % ns[0])
        self.expect(c.cmd("NAMESPACE x"), "BAD")

    # -- shutdown --

    def test_sigterm_says_bye_and_exits_0(self):
        srv = rs.Server(self.backend, {"u": "p"}, name="sigterm")
        try:
            srv.start()
            a = srv.login("u", select="INBOX")
            b = srv.connect()
            c = srv.login("u")
            c.send("i1 IDLE\r\n")
            self.assertTrue(c.read().continuation)
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            for conn in (a, b, c):
                got = conn.pending(5)
                self.assertTrue(any(r.status() and r.status()[0] == "BYE" for r in got),
                                "no '* BYE' on SIGTERM, got %r" % got)
                self.assertTrue(conn.closed or conn.wait_closed(5))
            rc = srv.proc.wait(10)
            self.assertEqual(rc, 0, "exit status after SIGTERM\n" + srv.stderr_tail())
            for conn in (a, b, c):
                conn.close()
        finally:
            srv.stop()
            srv.cleanup()


rs.parametrize(globals(), Basic)

if __name__ == "__main__":
    rs.main()
