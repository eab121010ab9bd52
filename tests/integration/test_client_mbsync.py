#!/usr/bin/env python3
"""A real client against ringmaild: mbsync (isync) pulls 50 varied messages
(plus two more folders) into a Maildir, byte for byte with the right flags;
then changes on both sides (local flag change, local delete, local new
message, server-side APPEND and flag change) are synced both ways and checked
over IMAP.  mbsync runs with its defaults (AuthMechs *: the best mechanism
the server offers, SCRAM-SHA-256 where offered, without falling back) against
a user made by `ringmail-admin user add` with its defaults; a second case
has every user SCRAM-capable, so SCRAM is offered and used.  mbsync must be
installed (tools/setup-deps.sh); a missing binary is a failure, not a skip.
Runs once per io backend."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "sync", "sync-secret"
INBOX_MSGS = gen_mbox.generate(50, 4242)
ARCHIVE_MSGS = gen_mbox.generate(5, 4343)
PROJECT_MSGS = gen_mbox.generate(3, 4444)
# ringmail-admin import keeps or drops mbox Status:/X-Status: (they become
# flags); compare without them, and without mbsync's own X-TUID.
IGNORE = ["Status", "X-Status", "X-TUID"]




class Mbsync(rs.SyncClientCase):
    USER, PASSWORD = USER, PASSWORD
    INBOX_MSGS, ARCHIVE_MSGS, PROJECT_MSGS = INBOX_MSGS, ARCHIVE_MSGS, PROJECT_MSGS
    IGNORE = IGNORE

    def write_config(self):
        d = os.path.join(self.server.tmp, "mbsync")
        self.mail = os.path.join(d, "Mail")
        os.makedirs(self.mail, exist_ok=True)
        self.conf = os.path.join(d, "mbsyncrc")
        with open(self.conf, "w") as f:
            f.write("""IMAPAccount ring
Host %(host)s
Port %(port)d
User %(user)s
Pass %(pw)s
%(ssl)s
Timeout 60

IMAPStore ring-far
Account ring

MaildirStore ring-near
Path %(mail)s/
Inbox %(mail)s/INBOX
SubFolders Verbatim

Channel ring
Far :ring-far:
Near :ring-near:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
""" % {"host": "localhost" if self.use_tls else self.server.host,
       "port": self.server.tls_port if self.use_tls else self.server.port,
       "ssl": ("SSLType IMAPS\nCertificateFile %s" % self.server.cert) if self.use_tls
       else "SSLType None",
       "user": USER, "pw": PASSWORD, "mail": self.mail})

    def run_mbsync(self, step):
        exe = rs.require_program(self, "mbsync")
        p = subprocess.run([exe, "-c", self.conf, "-a"], capture_output=True, timeout=600,
                           cwd=self.server.tmp)
        out = (p.stdout + p.stderr).decode(errors="replace")
        if p.returncode != 0:
            self.fail("mbsync (%s) exited %d:\n%s\n--- server stderr ---\n%s" % (
                step, p.returncode, out[-6000:], self.server.stderr_since(self.log_offset)))
        return out

    def test_mbsync_two_way(self):
        rs.require_program(self, "mbsync")
        self.write_config()
        # ---- 1: first pull
        self.run_mbsync("first sync")
        live = [m for m in INBOX_MSGS if "\\Deleted" not in m.flags]
        want_inbox = self.by_msgid([(m.raw, m.flags) for m in live])
        self.compare("INBOX", want_inbox, "first sync")
        self.compare("Archive", self.by_msgid([(m.raw, m.flags) for m in ARCHIVE_MSGS
                                          if "\\Deleted" not in m.flags]), "first sync")
        self.compare(os.path.join("Work", "Projects"),
                     self.by_msgid([(m.raw, m.flags) for m in PROJECT_MSGS
                               if "\\Deleted" not in m.flags]), "first sync")

        # ---- 2: changes on both sides
        files = self.local("INBOX")
        plain = [(p, raw) for p, raw, fl in files if not fl]
        self.assertGreaterEqual(len(plain), 3, "need unflagged messages to work with")
        (p_flag, raw_flag), (p_del, raw_del), (_, raw_srvflag) = plain[:3]
        mid_flag = rs.header_value(raw_flag, "Message-ID")
        mid_del = rs.header_value(raw_del, "Message-ID")
        mid_srvflag = rs.header_value(raw_srvflag, "Message-ID")
        rs.maildir_set_flags(p_flag, "FS")
        os.unlink(p_del)
        new_local = (b"From: Near Side <near@example.com>\nTo: sync@example.com\n"
                     b"Subject: written in the Maildir\nMessage-ID: <near-1@example.com>\n"
                     b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\nnew on the near side\n")
        inbox_dir = rs.maildir_folders(self.mail)["INBOX"]
        rs.maildir_deliver(inbox_dir, new_local, "1700000000.near1.test")
        new_server = (b"From: Far Side <far@example.com>\r\nTo: sync@example.com\r\n"
                      b"Subject: appended on the server\r\nMessage-ID: <far-1@example.com>\r\n"
                      b"Date: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\nnew on the far side\r\n")
        c = self.login(USER, PASSWORD)
        self.expect(c.append("INBOX", new_server, ["\\Answered"]), "OK")
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, 'UID SEARCH HEADER Message-ID "%s"' % mid_srvflag.strip("<>"))
        self.assertEqual(len(r.search()), 1, r.describe())
        self.ok(c, "UID STORE %d +FLAGS (\\Flagged)" % r.search()[0])
        self.ok(c, "LOGOUT")

        self.run_mbsync("second sync")

        # ---- 3: the server has the local changes
        c = self.login(USER, PASSWORD)
        srv = self.server_view(c, "INBOX")
        self.assertIn(mid_flag, srv)
        self.assertEqual(srv[mid_flag][1], {"\\Seen", "\\Flagged"} | set(), "local F+S flags")
        self.assertNotIn(mid_del, srv, "message deleted in the Maildir still on the server")
        self.assertIn("<near-1@example.com>", srv, "message written in the Maildir not uploaded")
        self.assertEqual(srv["<near-1@example.com>"][0], self.norm(new_local))
        self.assertIn("<far-1@example.com>", srv)
        self.assertEqual(len(srv), len(live) - 1 + 2)
        # ---- 4: the Maildir has the server's changes
        loc = self.by_msgid([(raw, fl) for _, raw, fl in self.local("INBOX")])
        self.assertIn("<far-1@example.com>", loc, "server APPEND not pulled")
        self.assertEqual(loc["<far-1@example.com>"], (self.norm(new_server), {"\\Answered"}))
        self.assertIn("\\Flagged", loc[mid_srvflag][1], "server flag change not pulled")
        self.assertEqual(sorted(loc), sorted(srv))

        # ---- 5: a third run changes nothing
        self.run_mbsync("third sync")
        loc2 = self.by_msgid([(raw, fl) for _, raw, fl in self.local("INBOX")])
        self.assertEqual(loc2, loc)
        srv2 = self.server_view(c, "INBOX")
        self.assertEqual(srv2, srv)


class MbsyncTls(Mbsync):
    """The same over implicit TLS, trusting the server's certificate."""
    server_tls = True
    use_tls = True


class MbsyncScram(Mbsync):
    """Every user has SCRAM-capable credentials: AUTH=SCRAM-SHA-256 is
    offered, mbsync picks it, and logs in with it."""
    SCHEME = "SCRAM-SHA-256"

    @classmethod
    def prepare_server(cls, server):
        super().prepare_server(server)
        # the harness's users: {PLAIN} ones can serve SCRAM, its one
        # SHA512-CRYPT user cannot
        server.users.pop("crypt", None)
        with open(server.passwd) as f:
            lines = [l for l in f if not l.startswith("crypt:")]
        with open(server.passwd, "w") as f:
            f.writelines(lines)

    test_mbsync_two_way = None

    def test_mbsync_scram(self):
        rs.require_program(self, "mbsync")
        self.assertIn("AUTH=SCRAM-SHA-256", self.connect().capabilities())
        self.write_config()
        self.run_mbsync("sync with SCRAM")
        self.compare("INBOX", self.by_msgid([(m.raw, m.flags) for m in INBOX_MSGS
                                             if "\\Deleted" not in m.flags]), "SCRAM sync")
        self.assertIn("login (SCRAM-SHA-256)", self.server.stderr_since(self.log_offset))


rs.parametrize(globals(), Mbsync, MbsyncTls, MbsyncScram)

if __name__ == "__main__":
    rs.main()
