"""ringmail-admin user add|passwd|del|list, and logging in to ringmaild with
every password scheme it writes (the passwd-file is re-read when it
changes, so no restart is needed)."""

import imaplib
import os
import unittest

from ringmail_server import Server


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


if __name__ == "__main__":
    unittest.main(verbosity=2)
