"""ringmail-admin user add|passwd|del|list, and logging in to ringmaild with
every password scheme it writes (the passwd-file is re-read when it
changes, so no restart is needed)."""

import imaplib
import os
import unittest

from ringmail_server import Imap, Server, quote


class AdminUser(unittest.TestCase):
    def setUp(self):
        self.srv = Server(backend="auto", users={}, name="admin-user")
        # ringmail_server writes the passwd-file itself; start from none.
        os.unlink(self.srv.passwd)

    def tearDown(self):
        self.srv.cleanup()

    def admin(self, *args, password=None, rc=0):
        p = self.srv.admin("-o", "passwd_file=" + self.srv.passwd, *args, check=False,
                           input=None if password is None else (password + "\n").encode())
        self.assertEqual(p.returncode, rc, (args, p.stdout, p.stderr))
        if rc:
            lines = p.stderr.decode().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("ringmail-admin: "), lines)
        return p

    def entries(self):
        with open(self.srv.passwd) as f:
            return dict(l.rstrip("\n").split(":", 1) for l in f if l.strip())

    def login_ok(self, user, password):
        M = imaplib.IMAP4(self.srv.host, self.srv.port)
        try:
            M.login(user, password)
            return True
        except imaplib.IMAP4.error:
            return False
        finally:
            try:
                M.logout()
            except Exception:
                pass

    def test_schemes_add_list_passwd_del(self):
        schemes = {"ann": "SHA512-CRYPT", "bob": "SHA256-CRYPT", "cy": "BLF-CRYPT",
                   "dee": "PLAIN", "fay": "ARGON2ID", "gus": "SCRAM-SHA-256"}
        for user, scheme in schemes.items():
            self.admin("user", "add", "--scheme", scheme, user, password="pw-" + user)
        self.admin("user", "add", "eve", password="pw-eve")     # the default scheme
        e = self.entries()
        self.assertTrue(e["ann"].startswith("{SHA512-CRYPT}$6$"), e)
        self.assertTrue(e["bob"].startswith("{SHA256-CRYPT}$5$"), e)
        self.assertTrue(e["cy"].startswith("{BLF-CRYPT}$2"), e)
        self.assertEqual(e["dee"], "{PLAIN}pw-dee")
        self.assertTrue(e["fay"].startswith("{ARGON2ID}$argon2id$"), e)
        self.assertRegex(e["gus"], r"^\{SCRAM-SHA-256\}\d+,[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]+,"
                         r"[A-Za-z0-9+/=]+$")
        # the strong default: ARGON2ID
        self.assertTrue(e["eve"].startswith("{ARGON2ID}$argon2id$"), e)
        self.assertNotIn("pw-eve", open(self.srv.passwd).read().replace("pw-dee", ""))
        listed = self.admin("user", "list").stdout.decode().split()
        self.assertEqual(sorted(listed), sorted(list(schemes) + ["eve"]))

        self.srv.start()
        for user in list(schemes) + ["eve"]:
            self.assertTrue(self.login_ok(user, "pw-" + user), user)
            self.assertFalse(self.login_ok(user, "wrong"), user)
        self.assertFalse(self.login_ok("nobody", "pw-ann"))

        # a new password works at once, the old one no longer
        self.admin("user", "passwd", "ann", password="new-ann")
        self.assertTrue(self.login_ok("ann", "new-ann"))
        self.assertFalse(self.login_ok("ann", "pw-ann"))
        # deleted users cannot log in
        self.admin("user", "del", "bob")
        self.assertFalse(self.login_ok("bob", "pw-bob"))
        self.assertNotIn("bob", self.admin("user", "list").stdout.decode().split())
        self.assertEqual(self.srv.stop(), 0)

    def test_errors(self):
        self.admin("user", "add", "ann", password="x")
        self.admin("user", "add", "ann", password="y", rc=1)             # exists
        self.admin("user", "passwd", "zed", password="y", rc=1)          # no such user
        self.admin("user", "del", "zed", rc=1)
        self.admin("user", "add", "--scheme", "MD4", "bob", password="y", rc=1)
        self.admin("user", "add", "bad:name", password="y", rc=1)
        self.admin("user", "add", "carl", password="", rc=1)             # empty password
        self.admin("user", "add", rc=2)                                  # usage
        self.assertEqual(sorted(self.entries()), ["ann"])

    def test_names_that_cannot_log_in_are_refused(self):
        bad = {
            "#x": "comment",                # would become a comment line
            "a\tb": "control character",    # TAB
            "a\x01b": "control character",
            "a:b": "':'",
            "a/b": "'/'",
            "..": "mail directory",
            "x" * 256: "longer than 255",
            os.fsdecode(b"bad\xffname"): "not UTF-8",
        }
        for name, why in bad.items():
            p = self.admin("user", "add", name, password="pw", rc=1)
            err = p.stderr.decode(errors="replace")
            self.assertIn("invalid user name", err, name)
            self.assertIn(why, err, name)
        self.assertFalse(os.path.exists(self.srv.passwd) and self.entries(),
                         "a refused name reached the passwd-file")
        # what the rules allow logs in: 255 bytes, UTF-8, a space, a '#' inside
        good = ["u" * 255, "jos\u00e9", "a b", "x#y"]
        for name in good:
            self.admin("user", "add", "--scheme", "SHA512-CRYPT", name, password="pw-good")
        self.assertEqual(sorted(self.entries()), sorted(good))
        self.srv.start()
        for name in good:
            c = Imap(self.srv.host, self.srv.port)
            try:
                r = c.cmd("LOGIN %s %s" % (quote(name), quote("pw-good")))
                self.assertEqual(r.status, "OK", (name, r.describe()))
            finally:
                c.close()
        self.assertEqual(self.srv.stop(), 0)

    def mail_count(self, user, password):
        M = imaplib.IMAP4(self.srv.host, self.srv.port)
        try:
            M.login(user, password)
            typ, data = M.select("INBOX")
            self.assertEqual(typ, "OK")
            return int(data[0])
        finally:
            M.logout()

    def test_del_keeps_mail_and_says_so_purge_removes_it(self):
        self.admin("user", "add", "--scheme", "PLAIN", "ann", password="pw-ann")
        self.srv.start()
        M = imaplib.IMAP4(self.srv.host, self.srv.port)
        M.login("ann", "pw-ann")
        self.assertEqual(M.append("INBOX", None, None,
                                  b"From: a@example.com\r\nSubject: private\r\n\r\nold mail\r\n")[0],
                         "OK")
        M.logout()
        mail = os.path.join(self.srv.mail_root, "ann")
        self.assertTrue(os.path.isdir(mail))
        out = self.admin("user", "del", "ann").stdout.decode()
        # the operator is told that the mail stays, who would read it, and how not
        self.assertIn("kept", out)
        self.assertIn("same name would read it", out)
        self.assertIn("--purge", out)
        self.assertTrue(os.path.isdir(mail))
        # as said: a new ann reads the old ann's mail
        self.admin("user", "add", "--scheme", "PLAIN", "ann", password="pw-new")
        self.assertEqual(self.mail_count("ann", "pw-new"), 1)
        # --purge removes the mail as well
        self.assertEqual(self.srv.stop(), 0)
        out = self.admin("user", "del", "--purge", "ann").stdout.decode()
        self.assertIn("its mail", out)
        self.assertFalse(os.path.exists(mail))
        self.assertEqual([n for n in os.listdir(self.srv.mail_root) if n.startswith("ann")], [])
        self.assertNotIn("ann", self.entries())
        self.srv.start()
        self.admin("user", "add", "--scheme", "PLAIN", "ann", password="pw-third")
        self.assertEqual(self.mail_count("ann", "pw-third"), 0)
        # a user without mail: purged all the same
        self.admin("user", "add", "--scheme", "PLAIN", "bob", password="pw-bob")
        out = self.admin("user", "del", "--purge", "bob").stdout.decode()
        self.assertIn("no mail", out)
        self.admin("user", "del", "--purge", "bob", rc=1)                # gone
        self.assertEqual(self.srv.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
