#!/usr/bin/env python3
"""A real client against ringmaild: offlineimap does a full two-way sync with
a local Maildir.  The server's messages (three folders) arrive byte for byte
with their flags; a message added locally appears on the server, one APPENDed
on the server appears locally, flag changes and deletions travel both ways.
offlineimap must be installed (tools/setup-deps.sh); a missing binary is a
failure, not a skip.  Runs once per io backend."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "oi", "oi-secret"
INBOX_MSGS = gen_mbox.generate(40, 5151)
ARCHIVE_MSGS = gen_mbox.generate(4, 5252)
PROJECT_MSGS = gen_mbox.generate(3, 5353)
IGNORE = ["Status", "X-Status", "X-OfflineIMAP"]




class OfflineImap(rs.SyncClientCase):
    USER, PASSWORD = USER, PASSWORD
    INBOX_MSGS, ARCHIVE_MSGS, PROJECT_MSGS = INBOX_MSGS, ARCHIVE_MSGS, PROJECT_MSGS
    IGNORE = IGNORE

    def write_config(self):
        d = os.path.join(self.server.tmp, "offlineimap")
        self.mail = os.path.join(d, "Maildir")
        self.meta = os.path.join(d, "meta")
        os.makedirs(self.mail, exist_ok=True)
        os.makedirs(self.meta, exist_ok=True)
        self.conf = os.path.join(d, "offlineimaprc")
        with open(self.conf, "w") as f:
            f.write("""[general]
accounts = Test
metadata = %(meta)s
ui = basic
maxsyncaccounts = 1

[Account Test]
localrepository = Local
remoterepository = Remote

[Repository Local]
type = Maildir
localfolders = %(mail)s
sep = /

[Repository Remote]
type = IMAP
remotehost = %(host)s
remoteport = %(port)d
remoteuser = %(user)s
remotepass = %(pw)s
%(ssl)s
maxconnections = 2
expunge = yes
""" % {"host": "localhost" if self.use_tls else self.server.host,
       "port": self.server.tls_port if self.use_tls else self.server.port,
       "ssl": ("ssl = yes\nsslcacertfile = %s\nstarttls = no" % self.server.cert)
       if self.use_tls else "ssl = no\nstarttls = no",
       "user": USER, "pw": PASSWORD, "mail": self.mail, "meta": self.meta})

    def run_offlineimap(self, step):
        exe = rs.require_program(self, "offlineimap")
        p = subprocess.run([exe, "-c", self.conf, "-o", "-u", "basic"], capture_output=True,
                           timeout=600, cwd=self.server.tmp)
        out = (p.stdout + p.stderr).decode(errors="replace")
        bad = [l for l in out.splitlines() if "ERROR" in l or "Traceback" in l]
        if p.returncode != 0 or bad:
            self.fail("offlineimap (%s) exited %d, errors %s:\n%s\n--- server stderr ---\n%s" % (
                step, p.returncode, bad[:5], out[-6000:],
                self.server.stderr_since(self.log_offset)))
        return out

    def test_offlineimap_two_way(self):
        rs.require_program(self, "offlineimap")
        self.write_config()
        # ---- 1: first sync pulls everything.  offlineimap copies \Deleted
        # messages too (as T), so every message is expected.
        self.run_offlineimap("first sync")
        self.compare("INBOX", self.by_msgid([(m.raw, m.flags) for m in INBOX_MSGS]), "first sync")
        self.compare("Archive", self.by_msgid([(m.raw, m.flags) for m in ARCHIVE_MSGS]), "first sync")
        self.compare(os.path.join("Work", "Projects"),
                     self.by_msgid([(m.raw, m.flags) for m in PROJECT_MSGS]), "first sync")

        # ---- 2: changes on both sides
        files = self.local("INBOX")
        plain = [(p, raw) for p, raw, fl in files if not fl]
        self.assertGreaterEqual(len(plain), 3)
        (p_flag, raw_flag), (p_del, raw_del), (_, raw_srv) = plain[:3]
        mid_flag = rs.header_value(raw_flag, "Message-ID")
        mid_del = rs.header_value(raw_del, "Message-ID")
        mid_srv = rs.header_value(raw_srv, "Message-ID")
        rs.maildir_set_flags(p_flag, "FS")
        os.unlink(p_del)
        new_local = (b"From: Local <local@example.com>\nTo: oi@example.com\n"
                     b"Subject: written locally\nMessage-ID: <local-1@example.com>\n"
                     b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\nnew on the local side\n")
        rs.maildir_deliver(rs.maildir_folders(self.mail)["INBOX"], new_local,
                           "1700000000.local1.test:2,")
        new_server = (b"From: Remote <remote@example.com>\r\nTo: oi@example.com\r\n"
                      b"Subject: appended on the server\r\nMessage-ID: <remote-1@example.com>\r\n"
                      b"Date: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\nnew on the server\r\n")
        c = self.login(USER, PASSWORD)
        self.expect(c.append("INBOX", new_server, ["\\Flagged"]), "OK")
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, 'UID SEARCH HEADER Message-ID "%s"' % mid_srv.strip("<>"))
        self.assertEqual(len(r.search()), 1, r.describe())
        self.ok(c, "UID STORE %d +FLAGS (\\Answered)" % r.search()[0])
        self.ok(c, "LOGOUT")

        self.run_offlineimap("second sync")

        c = self.login(USER, PASSWORD)
        srv = self.server_view(c, "INBOX")
        self.assertEqual(srv.get(mid_flag, (None, None))[1], {"\\Seen", "\\Flagged"},
                         "local flag change not on the server")
        self.assertNotIn(mid_del, srv, "local deletion not on the server")
        self.assertIn("<local-1@example.com>", srv, "local message not uploaded")
        self.assertEqual(srv["<local-1@example.com>"][0], self.norm(new_local))
        loc = self.by_msgid([(raw, fl) for _, raw, fl in self.local("INBOX")])
        self.assertIn("<remote-1@example.com>", loc, "server APPEND not downloaded")
        self.assertEqual(loc["<remote-1@example.com>"], (self.norm(new_server), {"\\Flagged"}))
        self.assertIn("\\Answered", loc[mid_srv][1], "server flag change not downloaded")
        # offlineimap (expunge = yes) expunged the server's \Deleted messages
        # after the first sync; its Maildir keeps them (flag T) until a later run
        loc = {k: v for k, v in loc.items() if "\\Deleted" not in v[1]}
        self.assertEqual([k for k, v in srv.items() if "\\Deleted" in v[1]], [])
        self.assertEqual(sorted(loc), sorted(srv))
        for mid in srv:
            self.assertEqual(loc[mid], srv[mid], "local and server differ for %s" % mid)

        # ---- 3: a message deleted on the server disappears locally
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, 'UID SEARCH HEADER Message-ID "remote-1@example.com"')
        self.ok(c, "UID STORE %d +FLAGS.SILENT (\\Deleted)" % r.search()[0])
        self.ok(c, "EXPUNGE")
        self.ok(c, "LOGOUT")
        self.run_offlineimap("third sync")
        loc = self.by_msgid([(raw, fl) for _, raw, fl in self.local("INBOX")])
        self.assertNotIn("<remote-1@example.com>", loc, "server expunge not applied locally")


class OfflineImapTls(OfflineImap):
    """The same over implicit TLS, trusting the server's certificate."""
    server_tls = True
    use_tls = True


rs.parametrize(globals(), OfflineImap, OfflineImapTls)

if __name__ == "__main__":
    rs.main()
