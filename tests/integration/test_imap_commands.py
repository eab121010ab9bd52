#!/usr/bin/env python3
"""The command table (core/server/session.c) on the wire: the states each
command is valid in, which commands have a UID form, which ones are refused
on a mailbox opened with EXAMINE, and which updates a command may announce
before its tagged answer (EXPUNGE never during FETCH, STORE and SEARCH:
RFC 9051 7.5.1).  The answers are compared byte for byte: they are what
clients see.  Runs once per io backend."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402


def msg(i):
    return b"From: c%d@example.com\r\nSubject: table %d\r\n\r\nbody %d\r\n" % (i, i, i)


class Commands(rs.ServerTestCase):

    def tagged(self, c, text):
        """The tagged line of the answer to text, as sent (without CRLF)."""
        r = c.cmd(text)
        return r.tagged.raw.decode("utf-8", "replace").split(" ", 1)[1]

    def test_states(self):
        c = self.connect()
        for cmd in ("SELECT INBOX", "FETCH 1 FLAGS", "UID SEARCH ALL", "IDLE", "ENABLE IMAP4rev2"):
            self.assertEqual(self.tagged(c, cmd), "BAD Log in first", cmd)
        self.assertTrue(self.tagged(c, "NOOP").startswith("OK "), "NOOP in any state")
        c = self.login()
        for cmd in ("LOGIN a b", "AUTHENTICATE PLAIN", "STARTTLS"):
            self.assertEqual(self.tagged(c, cmd), "BAD Already logged in", cmd)
        for cmd in ("FETCH 1 FLAGS", "UID STORE 1 +FLAGS (\\Seen)", "CHECK", "CLOSE",
                    "UNSELECT", "EXPUNGE", "COPY 1 INBOX", "MOVE 1 INBOX"):
            self.assertEqual(self.tagged(c, cmd), "BAD Select a mailbox first", cmd)
        self.ok(c, "SELECT INBOX")
        for cmd in ("LOGIN a b", "STARTTLS"):
            self.assertEqual(self.tagged(c, cmd), "BAD Already logged in", cmd)
        # what an authenticated session may do stays allowed once selected
        for cmd in ("NAMESPACE", "STATUS INBOX (MESSAGES)", 'LIST "" INBOX', "CREATE S1"):
            self.assertTrue(self.tagged(c, cmd).startswith("OK "), cmd)

    def test_no_arguments(self):
        """The commands the table declares argument-less answer BAD naming
        themselves, in every state they are valid in, and run without."""
        c = self.connect()
        for cmd in ("CAPABILITY", "NOOP", "STARTTLS"):
            self.assertEqual(self.tagged(c, cmd + " x"), "BAD %s takes no arguments" % cmd)
        c = self.login(select="INBOX")
        for cmd in ("CAPABILITY", "NOOP", "NAMESPACE", "IDLE", "CHECK", "EXPUNGE",
                    "UNSELECT", "CLOSE", "LOGOUT"):
            self.assertEqual(self.tagged(c, cmd + " (a b)"), "BAD %s takes no arguments" % cmd)
        # CHECK is a NOOP (RFC 9051 removed it; RFC 3501 6.4.1) and says so by its name
        self.assertEqual(self.tagged(c, "CHECK"), "OK CHECK completed")
        self.assertEqual(self.tagged(c, "NOOP"), "OK NOOP completed")
        self.assertEqual(self.tagged(c, "UNSELECT"), "OK UNSELECT completed")

    def test_uid_forms(self):
        c = self.login(select="INBOX")
        self.append_msgs(c, "INBOX", [msg(1)])
        for cmd in ("UID NOOP", "UID CAPABILITY", "UID SELECT INBOX", "UID XYZZY 1",
                    "UID LIST \"\" *", "UID CHECK", "UID CLOSE", "UID APPEND INBOX {1+}\r\nx"):
            self.assertEqual(self.tagged(c, cmd), "BAD Unknown command", cmd)
        self.assertEqual(self.tagged(c, "UID"), "BAD UID what?")
        self.assertEqual(self.tagged(c, "UID (FETCH)"), "BAD UID what?")
        for cmd in ("UID FETCH 1:* FLAGS", "uid search all", "UID STORE 1:* +FLAGS (\\Seen)",
                    "UID COPY 1:* INBOX", "UID EXPUNGE 1:*"):
            self.assertTrue(self.tagged(c, cmd).startswith("OK "), cmd)
        self.ok(c, "CREATE U1")
        self.assertTrue(self.tagged(c, "UID MOVE 1:* U1").startswith("OK "))
        self.assertEqual(self.tagged(c, "UID EXPUNGE"), "BAD UID EXPUNGE takes a UID set")
        self.assertEqual(self.tagged(c, "EXPUNGE 1"), "BAD EXPUNGE takes no arguments")

    def test_read_only_refusals(self):
        c = self.login()
        self.ok(c, "CREATE R")
        self.ok(c, "CREATE R2")
        self.append_msgs(c, "R", [(msg(1), ["\\Deleted"]), msg(2)])
        self.ok(c, "EXAMINE R")
        ro = "NO [READ-ONLY] Mailbox is read-only"
        for cmd in ("STORE 1 +FLAGS (\\Seen)", "UID STORE 1:* -FLAGS (\\Deleted)", "EXPUNGE",
                    "UID EXPUNGE 1:*", "MOVE 1 R2", "UID MOVE 1:* R2"):
            self.assertEqual(self.tagged(c, cmd), ro, cmd)
        # a malformed command is BAD first, read-only or not
        self.assertEqual(self.tagged(c, "STORE 1 +FLAGS (\\Recent)"), "BAD Bad flags")
        self.assertEqual(self.tagged(c, "EXPUNGE now"), "BAD EXPUNGE takes no arguments")
        self.assertEqual(self.tagged(c, "UID EXPUNGE"), "BAD UID EXPUNGE takes a UID set")
        self.assertEqual(self.tagged(c, "MOVE 1"), "BAD MOVE takes a set and a mailbox")
        # reading, and writing elsewhere, is allowed
        self.assertEqual(self.tagged(c, "COPY 1:* R2")[:2], "OK")
        self.assertEqual(self.tagged(c, "FETCH 1 BODY[]"), "OK FETCH completed")
        self.assertEqual(self.tagged(c, "SEARCH ALL"), "OK SEARCH completed")
        f = self.ok(c, "FETCH 1:* FLAGS").fetches()
        self.assertEqual([[x.upper() for x in f[i]["FLAGS"]] for i in sorted(f)],
                         [["\\DELETED"], []], "nothing changed in R")
        # CLOSE on EXAMINE closes without expunging
        self.assertEqual(self.tagged(c, "CLOSE"), "OK CLOSE completed")
        self.assertEqual(self.status(c, "R", "MESSAGES")["MESSAGES"], 2)
        # once SELECTed the same commands write
        self.ok(c, "SELECT R")
        self.assertEqual(self.tagged(c, "STORE 2 +FLAGS.SILENT (\\Seen)"), "OK STORE completed")
        r = self.ok(c, "EXPUNGE")
        self.assertEqual(r.numbers("EXPUNGE"), [1], r.describe())

    def status(self, c, mbox, items):
        r = self.ok(c, "STATUS %s (%s)" % (mbox, items))
        it = r.of("STATUS")[0].items()[2]
        return {str(k).upper(): int(v) for k, v in zip(it[::2], it[1::2])}

    def test_updates_each_command_may_send(self):
        a = self.login()
        self.append_msgs(a, "INBOX", [msg(1), msg(2), msg(3)])
        self.ok(a, "SELECT INBOX")
        self.ok(a, "CREATE OTHER")
        b = self.login(select="INBOX")

        def expunge_2_elsewhere():
            # both views alike, then the second message goes
            self.append_msgs(b, "INBOX", [msg(4), msg(5)])
            self.ok(b, "NOOP")
            self.ok(a, "NOOP")
            self.ok(b, "STORE 2 +FLAGS.SILENT (\\Deleted)")
            self.ok(b, "EXPUNGE")
            time.sleep(0.2)

        # announce nothing at all
        expunge_2_elsewhere()
        for cmd in ("CAPABILITY", "STATUS INBOX (MESSAGES)", 'LIST "" INBOX', "NAMESPACE",
                    "APPEND OTHER {3+}\r\nx\r\n"):
            r = self.ok(a, cmd)
            self.assertEqual([u for u in r.untagged if u.kind() in ("EXPUNGE", "EXISTS")], [],
                             r.describe())
        # announce all but EXPUNGE (UID forms included)
        for cmd in ("FETCH 1 UID", "UID FETCH 1:* UID", "SEARCH ALL", "UID SEARCH ALL",
                    "STORE 1 +FLAGS.SILENT (\\Flagged)", "UID STORE 1 -FLAGS.SILENT (\\Flagged)"):
            r = self.ok(a, cmd)
            self.assertEqual(r.of("EXPUNGE"), [], r.describe())
        # announce everything: NOOP, CHECK, COPY, EXPUNGE, MOVE, IDLE
        r = self.ok(a, "CHECK")
        self.assertEqual(r.numbers("EXPUNGE"), [2], r.describe())
        self.assertEqual(r.tagged.raw.split(b" ", 1)[1], b"OK CHECK completed")
        for cmd in ("NOOP", "COPY 1 INBOX", "EXPUNGE", "APPEND INBOX {3+}\r\nx\r\n"):
            expunge_2_elsewhere()
            r = self.ok(a, cmd)
            self.assertEqual(r.numbers("EXPUNGE"), [2], cmd + "\n" + r.describe())
        self.ok(a, "CREATE MV")
        expunge_2_elsewhere()
        r = self.ok(a, "MOVE 1 MV")
        self.assertEqual(r.numbers("EXPUNGE"), [1, 1], r.describe())
        expunge_2_elsewhere()
        a.send("i1 IDLE\r\n")
        got = []
        while not any(x.kind() == "EXPUNGE" for x in got):
            got.append(a.read())
        self.assertEqual(got[0].raw, b"+ idling")
        self.assertEqual([x.number() for x in got if x.kind() == "EXPUNGE"], [2])
        a.send("DONE\r\n")
        _, t, _ = a.read_until_tag("i1")
        self.assertEqual(t.raw, b"i1 OK IDLE terminated")


rs.parametrize(globals(), Commands)

if __name__ == "__main__":
    rs.main()
