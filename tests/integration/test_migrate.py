#!/usr/bin/env python3
"""ringmail-admin migrate against a real Dovecot (a private instance on
loopback ports: IMAPS with a self-signed certificate, plain IMAP, a master
user) holding a realistic account: nested folders with Dovecot's '.'
separator, non-ASCII names (modified UTF-7 there, UTF-8 here), more than
10,000 messages with flags, keywords ($Junk and others), internal dates,
expunges leaving UID gaps, special-use folders and subscriptions.

Steps, in order (one Dovecot and one ringmaild per class):
  a  mbsync syncs a local Maildir against Dovecot; the account is migrated
     (over IMAPS, certificate verified with --ca) while a session is
     SELECTed on the copy's INBOX at ringmaild and sees the messages arrive;
     UIDVALIDITY, UIDs, UIDNEXT, flags, keywords, dates, special-use and
     subscriptions are compared over IMAP with Dovecot's; --check says exact;
     mbsync pointed at ringmaild (same Maildir, same sync state) syncs
     without an error (a changed UIDVALIDITY is one) and adds no file;
  b  changes at Dovecot (new messages, flag changes, expunges, a new folder,
     a renamed folder, a deleted folder): a second run copies only those
     (counted FETCH commands and bytes), then --check exact; a change on one
     side makes --check exit 1; the master user's login works;
  c  errors: bad password, nothing listening, UIDVALIDITY changed at the
     source (the mailbox named, exit 1, the copy untouched);
  d  killed midway (SIGKILL), run again: --check exact;
  e  cut-over: mbsync's and offlineimap's last sync with Dovecot, a last
     run, mbsync and offlineimap against ringmaild add no file (a changed
     UIDVALIDITY would be an error for both), --check=full exact; a new
     message at Ringmail and a flag set in the Maildir then sync as usual;
  f  hierarchy_separator = . keeps Dovecot's names; the progress bar on a
     terminal (script(1)).
RINGMAIL_MIGRATE_MESSAGES sets the size of the big account (default 10,200).
"""

import imaplib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot_peer  # noqa: E402
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "migr", "migr-secret"
MASTER, MASTER_PW = "admin", "master-secret"
TOTAL = int(os.environ.get("RINGMAIL_MIGRATE_MESSAGES",
                           "1200" if os.environ.get("RINGMAIL_TEST_QUICK") else "10200"))

# Dovecot's part of the configuration (tests/integration/dovecot_peer.py
# has the rest): Maildir, "." as separator, special-use, a master user
# ("user*master" logins).
DOVECOT_CONF = r"""
auth_master_user_separator = *
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = .
  mailbox Sent {{
    special_use = \Sent
  }}
  mailbox Drafts {{
    special_use = \Drafts
  }}
  mailbox Trash {{
    special_use = \Trash
  }}
  mailbox Junk {{
    special_use = \Junk
  }}
  mailbox Archive {{
    special_use = \Archive
  }}
}}
passdb {{
  driver = passwd-file
  args = {d}/master-users
  master = yes
}}
"""

# (Dovecot folder name in UTF-8, '.'-separated; share of the messages)
FOLDERS = [("INBOX", 0.70), ("Work", 0.02), ("Work.Projects", 0.12),
           ("Work.Projects.2024", 0.04), ("Été", 0.03), ("Été.Réunions 日本", 0.02),
           ("Sent", 0.03), ("Drafts", 0.005), ("Trash", 0.01), ("Junk", 0.01),
           ("Archive", 0.025)]
SUBSCRIBED = ["INBOX", "Work", "Work.Projects", "Été.Réunions 日本", "Sent", "Trash"]
KEYWORDS = ["$Junk", "$Forwarded", "Work", "$label1"]


def ours(name):
    return name.replace(".", "/")


def message(i, size=0):
    body = ("Line %d of a message for the migration test.\r\n" % i) * (8 + i % 40)
    if size:
        body = ("x" * 998 + "\r\n") * (size // 1000)
    return ("From: Sender %d <s%d@example.com>\r\nTo: migr@example.com\r\n"
            "Subject: message %d\r\nMessage-ID: <m%d@example.com>\r\n"
            "Date: Mon, 1 Jul 2024 12:00:00 +0000\r\n\r\n%s" % (i, i % 97, i, i, body)
            ).encode()


class Dovecot(dovecot_peer.PrivateDovecot):
    """A private Dovecot holding USER's account as a Maildir written here."""

    def __init__(self):
        super().__init__("migrate", {USER: PASSWORD}, DOVECOT_CONF, tls=True)
        with open(os.path.join(self.d, "master-users"), "w") as f:
            f.write("%s:{PLAIN}%s\n" % (MASTER, MASTER_PW))
        self.maildir = os.path.join(self.d, "mail", USER, "Maildir")

    def folder_dir(self, name):
        if name == "INBOX":
            return self.maildir
        return os.path.join(self.maildir, "." + rs.mutf7_encode(name))

    def build(self, total):
        """Messages as Maildir files: flags in the name, keywords through
        dovecot-keywords, the internal date as the file's mtime."""
        n = 0
        big = 0
        for fi, (name, share) in enumerate(FOLDERS):
            d = self.folder_dir(name)
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            with open(os.path.join(d, "dovecot-keywords"), "w") as f:
                for k, kw in enumerate(KEYWORDS):
                    f.write("%d %s\n" % (k, kw))
            count = max(3, int(total * share))
            for i in range(count):
                n += 1
                flags = ""
                if n % 3 == 0:
                    flags += "R" if n % 6 == 0 else ""
                if n % 7 == 0:
                    flags += "F"
                if n % 2 == 0:
                    flags += "S"
                if n % 23 == 0:
                    flags += "T"
                kw = "".join(chr(ord("a") + k) for k in range(len(KEYWORDS)) if n % (11 + k) == 0)
                flags = "".join(sorted(flags)) + kw
                size = 0
                if name == "Work.Projects" and i in (5, 6):
                    size = 3 << 20      # two 3 MB messages
                    big += 1
                path = os.path.join(d, "cur", "%d.M%dP1.migtest:2,%s" % (1700000000 + n, n, flags))
                with open(path, "wb") as f:
                    f.write(message(n, size))
                t = 1600000000 + n * 3607
                os.utime(path, (t, t))
        subprocess.run(["chown", "-R", "%d:%d" % (self.uid, self.gid),
                        os.path.join(self.d, "mail")], check=True)
        return n

    def imap(self, login=USER, password=PASSWORD):
        for attempt in range(20):
            c = imaplib.IMAP4("127.0.0.1", self.port)
            try:
                c.login(login, password)
                return c
            except imaplib.IMAP4.error as e:
                # [UNAVAILABLE] while its auth process starts (RFC 5530)
                if "UNAVAILABLE" not in str(e) or attempt == 19:
                    raise
                c.shutdown()
                time.sleep(0.3)


def q(name):
    """A mailbox name for imaplib: modified UTF-7, quoted."""
    return '"%s"' % rs.mutf7_encode(name).replace("\\", "\\\\").replace('"', '\\"')


def highestmodseq(c, name):
    typ, data = c.status(q(name), "(HIGHESTMODSEQ)")
    m = re.search(rb"HIGHESTMODSEQ (\d+)", data[0])
    return int(m.group(1))


def snapshot(c, names):
    """{name: (uidvalidity, uidnext, {uid: (flags, internaldate, size)})}
    over IMAP, names as the server spells them (its separator)."""
    out = {}
    for name in names:
        typ, data = c.select(q(name), readonly=True)
        assert typ == "OK", (name, data)
        uv = int(c.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])
        un = int(c.untagged_responses.get("UIDNEXT", [b"0"])[-1])
        msgs = {}
        if int(data[0]) > 0:
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
            for item in data:
                line = item.decode() if isinstance(item, bytes) else item[0].decode()
                m = re.search(r"UID (\d+)", line)
                f = re.search(r"FLAGS \(([^)]*)\)", line)
                d = re.search(r'INTERNALDATE "([^"]+)"', line)
                s = re.search(r"RFC822\.SIZE (\d+)", line)
                flags = frozenset(x.lower() for x in f.group(1).split() if x != "\\Recent")
                msgs[int(m.group(1))] = (flags, imaplib.Internaldate2tuple(
                    ('INTERNALDATE "%s"' % d.group(1)).encode()), int(s.group(1)))
        out[name] = (uv, un, msgs)
    return out


def list_names(c):
    typ, data = c.list('""', "*")
    names = {}
    for item in data:
        line = item.decode() if isinstance(item, bytes) else item[0].decode() + item[1].decode()
        m = re.match(r'\(([^)]*)\) (?:"(.)"|NIL) (.*)$', line)
        raw = m.group(3)
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        attrs = set(a.lower() for a in m.group(1).split())
        names[rs.mutf7_decode(raw)] = attrs
    return names


def subscribed(c):
    typ, data = c.lsub('""', "*")
    out = set()
    for item in data:
        line = item.decode() if isinstance(item, bytes) else item[0].decode() + item[1].decode()
        raw = re.match(r'\([^)]*\) (?:"."|NIL) (.*)$', line).group(1)
        if raw.startswith('"'):
            raw = raw[1:-1]
        out.add(rs.mutf7_decode(raw))
    return out


SPECIAL = {"\\sent", "\\drafts", "\\trash", "\\junk", "\\archive"}


class Migrate(rs.ServerTestCase):
    server_tls = True
    users_per_class = 10

    @classmethod
    def prepare_server(cls, server):
        server.add_users({USER: PASSWORD})

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dove = Dovecot()
        try:
            cls.count = cls.dove.build(TOTAL)
            cls.dove.start()
            c = cls.dove.imap()
            for name in SUBSCRIBED:
                c.subscribe(q(name))
            # expunges leaving UID gaps (Dovecot numbered the files at the
            # first SELECT), and a folder deleted later
            c.select("INBOX")
            c.uid("STORE", "10:19,200,300:302", "+FLAGS.SILENT", "(\\Deleted)")
            c.uid("EXPUNGE", "10:19,200,300:302")
            c.select(q("Work.Projects"))
            c.uid("STORE", "1,50:60", "+FLAGS.SILENT", "(\\Deleted)")
            c.uid("EXPUNGE", "1,50:60")
            c.create(q("Old"))
            c.append(q("Old"), "(\\Seen)", None, message(999999))
            c.create(q("Renamed"))
            c.append(q("Renamed"), "(\\Flagged)", None, message(999998))
            c.logout()
        except Exception:
            cls.dove.cleanup()
            raise
        cls.tmp = tempfile.mkdtemp(dir=cls.server.tmp)
        cls.pwfile = os.path.join(cls.tmp, "pw")
        with open(cls.pwfile, "w") as f:
            f.write(PASSWORD + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.dove.cleanup()
        super().tearDownClass()

    # -- helpers --

    def migrate(self, *extra, check=False, url=None, login=USER, pwfile=None):
        args = ["migrate", USER, "--from", url or "imaps://localhost:%d" % self.dove.sport,
                "--login", login, "--password-file", pwfile or self.pwfile,
                "--ca", self.dove.cert] + list(extra)
        t = time.time()
        p = self.server.admin(*args, check=False)
        p.seconds = time.time() - t
        p.out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        if check:
            self.assertEqual(p.returncode, 0, p.out)
        return p

    def ring(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.port)
        c.login(USER, PASSWORD)
        return c

    def compare(self):
        """Both servers, over IMAP: names, special-use, subscriptions, and
        every mailbox's UIDVALIDITY, UIDNEXT and messages."""
        d = self.dove.imap()
        r = self.ring()
        try:
            dn = list_names(d)
            rn = list_names(r)
            dsel = sorted(n for n, a in dn.items() if "\\noselect" not in a
                          and "\\nonexistent" not in a)
            self.assertEqual(sorted(ours(n) for n in dsel),
                             sorted(n for n, a in rn.items() if "\\noselect" not in a))
            for n in dsel:
                self.assertEqual(dn[n] & SPECIAL, rn[ours(n)] & SPECIAL, n)
            self.assertEqual(set(ours(n) for n in subscribed(d)), subscribed(r))
            ds = snapshot(d, dsel)
            rsn = snapshot(r, [ours(n) for n in dsel])
            for n in dsel:
                self.assertEqual(ds[n][0], rsn[ours(n)][0], "UIDVALIDITY of " + n)
                self.assertEqual(ds[n][1], rsn[ours(n)][1], "UIDNEXT of " + n)
                self.assertEqual(sorted(ds[n][2]), sorted(rsn[ours(n)][2]), "UIDs of " + n)
                self.assertEqual(ds[n][2], rsn[ours(n)][2], "messages of " + n)
                # a client that synchronised with Dovecot asks for the
                # changes since Dovecot's HIGHESTMODSEQ: ours is never lower
                self.assertGreaterEqual(highestmodseq(r, ours(n)), highestmodseq(d, n),
                                        "HIGHESTMODSEQ of " + n)
            return sum(len(v[2]) for v in ds.values())
        finally:
            d.logout()
            r.logout()

    def mbsync(self, port, cert, step):
        """mbsync with its defaults but for what a configuration must name,
        into the same Maildir and sync state whichever server it talks to."""
        d = os.path.join(self.tmp, "mbsync")
        os.makedirs(os.path.join(d, "Mail"), exist_ok=True)
        conf = os.path.join(d, "mbsyncrc")
        with open(conf, "w") as f:
            f.write("IMAPAccount acct\nHost localhost\nPort %d\nUser %s\nPass %s\n"
                    "SSLType IMAPS\nCertificateFile %s\n\n"
                    "IMAPStore far\nAccount acct\n\n"
                    "MaildirStore near\nPath %s/Mail/\nInbox %s/Mail/INBOX\n"
                    "SubFolders Verbatim\n\n"
                    "Channel ch\nFar :far:\nNear :near:\nPatterns *\nCreate Both\n"
                    "SyncState *\n" % (port, USER, PASSWORD, cert, d, d))
        p = subprocess.run([rs.require_program(self, "mbsync"), "-c", conf, "-a"],
                           capture_output=True, timeout=600, cwd=d)
        out = (p.stdout + p.stderr).decode(errors="replace")
        self.assertEqual(p.returncode, 0, "mbsync (%s):\n%s" % (step, out[-4000:]))
        return out

    def offlineimap(self, port, cert, step):
        """offlineimap with the same local Maildir and metadata (its UID
        and UIDVALIDITY records) whichever server it talks to; the three
        biggest folders left out to keep the run short."""
        d = os.path.join(self.tmp, "offlineimap")
        os.makedirs(os.path.join(d, "Mail"), exist_ok=True)
        conf = os.path.join(d, "offlineimaprc")
        with open(conf, "w") as f:
            f.write("[general]\naccounts = A\nmetadata = %s/meta\nui = basic\n\n"
                    "[Account A]\nlocalrepository = Local\nremoterepository = Remote\n\n"
                    "[Repository Local]\ntype = Maildir\nlocalfolders = %s/Mail\nsep = /\n\n"
                    "[Repository Remote]\ntype = IMAP\nremotehost = localhost\n"
                    "remoteport = %d\nremoteuser = %s\nremotepass = %s\nssl = yes\n"
                    "sslcacertfile = %s\nstarttls = no\nexpunge = no\n"
                    "folderfilter = lambda f: f.replace('/', '.') not in "
                    "('INBOX', 'Bulk', 'Work.Projects')\n"
                    % (d, d, port, USER, PASSWORD, cert))
        p = subprocess.run([rs.require_program(self, "offlineimap"), "-c", conf, "-o", "-u",
                            "basic"], capture_output=True, timeout=600, cwd=d)
        out = (p.stdout + p.stderr).decode(errors="replace")
        bad = [x for x in out.splitlines() if "ERROR" in x or "Traceback" in x]
        self.assertFalse(p.returncode or bad, "offlineimap (%s):\n%s" % (step, out[-4000:]))
        return out

    def maildir_files(self, client="mbsync"):
        out = set()
        for root, _dirs, files in os.walk(os.path.join(self.tmp, client, "Mail")):
            if os.path.basename(root) in ("cur", "new"):
                out.update(os.path.join(root, f.split(",")[0].split(":")[0]) for f in files)
        return out

    # -- the steps --

    def test_a_first_run(self):
        # mbsync holds a copy of the account from Dovecot, with its UIDs
        t = time.time()
        self.mbsync(self.dove.sport, self.dove.cert, "against Dovecot")
        print("\nmbsync's first sync with Dovecot: %.1f s" % (time.time() - t), file=sys.stderr)
        files = self.maildir_files()
        self.assertGreater(len(files), 1000)
        # a session on the copy's INBOX (empty, made at its first login)
        # while the migration runs: that INBOX is replaced by one with the
        # source's UIDVALIDITY; the session's next SELECT sees it
        watcher = self.ring()
        typ, data = watcher.select("INBOX")
        self.assertEqual(int(data[0]), 0)
        p = self.migrate(check=True)
        print("\nfirst run: %s (%.2f s)" % (p.stdout.decode().strip(), p.seconds),
              file=sys.stderr)
        watcher.noop()
        typ, data = watcher.select("INBOX")
        self.assertGreater(int(data[0]), 500)
        watcher.logout()
        n = self.compare()
        self.assertGreaterEqual(n, 10000 if TOTAL >= 10200 else 1000)
        p = self.migrate("--check")
        self.assertEqual(p.returncode, 0, p.out)
        self.assertIn("exact", p.out)
        # mbsync now syncs against Ringmail: same UIDVALIDITY and UIDs, so
        # nothing to download, nothing to upload, no file added
        out = self.mbsync(self.server.tls_port, self.server.cert, "against Ringmail")
        self.assertNotRegex(out, r"UIDVALIDITY|[Ee]rror", out)
        self.assertEqual(self.maildir_files(), files)

    def flagged_at_ringmail(self):
        r = self.ring()
        r.select("INBOX", readonly=True)
        typ, data = r.uid("SEARCH", "FLAGGED")
        r.logout()
        return set(int(x) for x in data[0].split())

    def test_b_incremental(self):
        # a device connected to Ringmail during the run sees the changes
        watcher = self.ring()
        typ, data = watcher.select("INBOX")
        exists = int(data[0])
        d = self.dove.imap()
        d.select("INBOX")
        for i in range(5):
            d.append("INBOX", "(\\Seen $Forwarded)", None, message(500000 + i))
        d.uid("STORE", "30:39", "+FLAGS", "(\\Flagged $Junk)")
        d.uid("STORE", "40:44", "-FLAGS", "(\\Seen)")
        d.uid("STORE", "100:104", "+FLAGS.SILENT", "(\\Deleted)")
        d.uid("EXPUNGE", "100:104")
        d.create(q("Nouveau.Été"))
        d.append(q("Nouveau.Été"), None, None, message(600000))
        d.rename(q("Renamed"), q("Work.Moved"))
        d.delete(q("Old"))
        d.logout()
        p = self.migrate(check=True)
        out = p.stdout.decode()
        print("second run: %s (%.2f s)" % (out.strip(), p.seconds), file=sys.stderr)
        m = re.search(r"copied (\d+) messages .*?(\d+) flag changes, (\d+) expunged; "
                      r"(\d+) FETCH", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), 6, out)     # 5 in INBOX, 1 in the new folder
        # 15 messages touched, those whose flags really changed count
        self.assertTrue(0 < int(m.group(2)) <= 15, out)
        self.assertEqual(int(m.group(3)), 5, out)
        # only the new messages were fetched, and only changed mailboxes
        # listed: INBOX (what changed since its HIGHESTMODSEQ, then the new
        # messages), the new folder (a full listing, then its message); the
        # renamed one and the rest are unchanged (HIGHESTMODSEQ)
        self.assertEqual(int(m.group(4)), 4, out)
        self.assertRegex(out, r"13 mailboxes \(11 unchanged, 1 listed from changes\)")
        self.assertIn("renamed at the source: 'Renamed' -> 'Work/Moved'", out)
        self.assertIn("deleted at the source: 'Old'", out)
        watcher.noop()
        self.assertEqual(len(watcher.untagged_responses.get("EXPUNGE", [])), 5)
        self.assertEqual(int(watcher.untagged_responses["EXISTS"][-1]), exists - 5 + 5)
        typ, data = watcher.uid("SEARCH", "FLAGGED KEYWORD $Junk UID 30:39")
        self.assertEqual(len(data[0].split()), 10)
        watcher.logout()
        self.compare()
        self.assertEqual(self.migrate("--check").returncode, 0)
        # a third run with nothing changed copies nothing
        p = self.migrate(check=True)
        self.assertIn("copied 0 messages", p.stdout.decode())
        # a change at one side: --check exits 1 and names it
        r = self.ring()
        r.select("INBOX")
        r.uid("STORE", "20", "+FLAGS", "(\\Answered)")
        r.logout()
        p = self.migrate("--check")
        self.assertEqual(p.returncode, 1, p.out)
        self.assertRegex(p.out, r"INBOX: UID 20: flags .* here")
        p = self.migrate(check=True)
        self.assertEqual(self.migrate("--check").returncode, 0)
        # Dovecot's master user: "user*master" is just the login name
        mpw = os.path.join(self.tmp, "mpw")
        with open(mpw, "w") as f:
            f.write(MASTER_PW + "\n")
        p = self.migrate("--check", login="%s*%s" % (USER, MASTER), pwfile=mpw)
        self.assertEqual(p.returncode, 0, p.out)
        # plain IMAP with STARTTLS, certificate checked the same way
        p = self.migrate("--check", "--starttls", url="imap://localhost:%d" % self.dove.port)
        self.assertEqual(p.returncode, 0, p.out)

    def test_c_errors(self):
        bad = os.path.join(self.tmp, "bad")
        with open(bad, "w") as f:
            f.write("wrong\n")
        p = self.migrate(pwfile=bad)
        self.assertEqual(p.returncode, 1)
        self.assertIn("refused the login", p.out)
        port, hold = rs.reserve_port()
        hold.close()
        p = self.migrate(url="imaps://localhost:%d" % port)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot connect", p.out)
        # a certificate nobody vouched for
        p = self.server.admin("migrate", USER, "--from", "imaps://localhost:%d" % self.dove.sport,
                              "--login", USER, "--password-file", self.pwfile, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not trusted", p.stderr.decode())
        # UIDVALIDITY changed at the source: Dovecot gives a new one when a
        # folder is deleted and made again under the same name
        d = self.dove.imap()
        d.delete(q("Junk"))
        d.create(q("Junk"))
        d.append(q("Junk"), None, None, message(700000))
        d.logout()
        r = self.ring()
        before = snapshot(r, ["Junk"])
        r.logout()
        p = self.migrate()
        self.assertEqual(p.returncode, 1, p.out)
        self.assertIn("mailbox 'Junk': UIDVALIDITY changed at the source", p.out)
        r = self.ring()
        self.assertEqual(snapshot(r, ["Junk"]), before)
        r.logout()
        p = self.migrate("--reset-mailbox", "Junk", check=True)
        self.compare()

    def test_d_interrupted(self):
        d = self.dove.imap()
        d.create(q("Bulk"))
        d.logout()
        # a mailbox big enough to be midway when killed
        with open(os.path.join(self.dove.folder_dir("Bulk"), "dovecot-keywords"), "w"):
            pass
        cur = os.path.join(self.dove.folder_dir("Bulk"), "cur")
        for i in range(3000):
            with open(os.path.join(cur, "%d.M%dP2.migtest:2,S" % (1800000000 + i, i)), "wb") as f:
                f.write(message(800000 + i))
        subprocess.run(["chown", "-R", "%d:%d" % (self.dove.uid, self.dove.gid), cur], check=True)
        args = [rs.ADMIN, "-c", self.server.conf, "-o", "mail_root=" + self.server.mail_root,
                "migrate", USER, "--from", "imaps://localhost:%d" % self.dove.sport,
                "--login", USER, "--password-file", self.pwfile, "--ca", self.dove.cert]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        state = os.path.join(self.server.mail_root, USER, "migrate.state")
        deadline = time.time() + 30
        killed = False
        while time.time() < deadline and proc.poll() is None:
            try:
                with open(state) as f:
                    if re.search(r" Bulk$", f.read(), re.M):
                        proc.send_signal(signal.SIGKILL)
                        killed = True
                        break
            except OSError:
                pass
            time.sleep(0.005)
        proc.communicate()
        self.assertTrue(killed, "the migration ended before it could be killed")
        p = self.migrate("--check")
        self.assertEqual(p.returncode, 1)       # midway: Bulk incomplete
        self.migrate(check=True)
        p = self.migrate("--check")
        self.assertEqual(p.returncode, 0, p.out)
        self.compare()

    def test_d_sigint_and_users(self):
        # SIGINT: stops after the batch in hand, says so, exits 1; a re-run
        # finishes; --users runs several accounts, two at once
        args = [rs.ADMIN, "-c", self.server.conf, "-o", "mail_root=" + self.server.mail_root,
                "migrate", "other1", "--from", "imaps://localhost:%d" % self.dove.sport,
                "--login", USER, "--password-file", self.pwfile, "--ca", self.dove.cert]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        state = os.path.join(self.server.mail_root, "other1", "migrate.state")
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None and not os.path.exists(state):
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
        if proc.returncode == 0:            # it may have finished first on a fast machine
            self.assertNotIn(b"interrupted", err)
        else:
            self.assertEqual(proc.returncode, 1, err)
            self.assertIn(b"interrupted: everything copied so far is kept", err)
        print("SIGINT: %s" % ("finished first" if proc.returncode == 0 else "interrupted"),
              file=sys.stderr)
        users = os.path.join(self.tmp, "users")
        with open(users, "w") as f:
            f.write("# user login password-file\nother1 %s %s\nother2 %s %s\n"
                    % (USER, self.pwfile, USER, self.pwfile))
        p = self.server.admin("migrate", "--users", users, "--parallel", "2", "--from",
                              "imaps://localhost:%d" % self.dove.sport, "--ca", self.dove.cert,
                              check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.server.admin("migrate", "--users", users, "--check", "--from",
                              "imaps://localhost:%d" % self.dove.sport, "--ca", self.dove.cert,
                              check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.decode().count("exact"), 2, p.stdout)

    def test_e_cutover(self):
        # the final sequence: the client last synced with Dovecot, a last
        # run, the client pointed at Ringmail downloads nothing.  (The
        # folders deleted or re-made at Dovecot above go from the Maildir
        # too, as a client would follow them.)
        for gone in ("Junk", "Old", "Renamed"):
            shutil.rmtree(os.path.join(self.tmp, "mbsync", "Mail", gone), ignore_errors=True)
        self.mbsync(self.dove.sport, self.dove.cert, "last sync with Dovecot")
        t = time.time()
        self.offlineimap(self.dove.sport, self.dove.cert, "last sync with Dovecot")
        print("offlineimap's sync with Dovecot: %.1f s" % (time.time() - t), file=sys.stderr)
        files = self.maildir_files()
        ofiles = self.maildir_files("offlineimap")
        self.assertGreater(len(ofiles), 200)
        self.migrate(check=True)
        self.assertEqual(self.migrate("--check").returncode, 0)
        p = self.migrate("--check=full")
        self.assertEqual(p.returncode, 0, p.out)
        self.mbsync(self.server.tls_port, self.server.cert, "first sync with Ringmail")
        self.assertEqual(self.maildir_files(), files)
        self.offlineimap(self.server.tls_port, self.server.cert, "first sync with Ringmail")
        self.assertEqual(self.maildir_files("offlineimap"), ofiles)
        # changes on either side sync as usual
        r = self.ring()
        r.append("INBOX", "(\\Flagged)", None, message(900000))
        r.logout()
        inbox = os.path.join(self.tmp, "mbsync", "Mail", "INBOX", "cur")
        victim = sorted(f for f in os.listdir(inbox) if "F" not in f.rpartition(":2,")[2])[0]
        base, _, fl = victim.rpartition(":2,")
        os.rename(os.path.join(inbox, victim),
                  os.path.join(inbox, base + ":2," + "".join(sorted(fl + "F"))))
        before = self.flagged_at_ringmail()
        self.mbsync(self.server.tls_port, self.server.cert, "a change on each side")
        self.assertEqual(len(self.maildir_files()), len(files) + 1)
        after = self.flagged_at_ringmail()
        self.assertEqual(len(after - before), 1)


    def test_f_dot_separator_and_tty(self):
        # hierarchy_separator = . keeps Dovecot's names as they are; on a
        # terminal the progress bar shows messages, rate and ETA
        cmd = [rs.ADMIN, "-c", self.server.conf, "-o", "mail_root=" + self.server.mail_root,
               "-o", "hierarchy_separator=.", "migrate", "dotted", "--from",
               "imaps://localhost:%d" % self.dove.sport, "--login", USER, "--password-file",
               self.pwfile, "--ca", self.dove.cert]
        p = subprocess.run(["script", "-qec", " ".join("'%s'" % a for a in cmd), "/dev/null"],
                           capture_output=True, timeout=300)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out[-3000:])
        self.assertRegex(out, r"\r\S.* \[[#.]+\] +\d+%.* msgs")
        p = self.server.admin("-o", "hierarchy_separator=.", "mailbox", "list", "dotted")
        names = p.stdout.decode().split("\n")
        self.assertIn("Work.Projects.2024", [n.split("\t")[0] for n in names])
        self.assertIn("Été.Réunions 日本", [n.split("\t")[0] for n in names])
        p = self.server.admin("-o", "hierarchy_separator=.", "migrate", "dotted", "--check",
                              "--from", "imaps://localhost:%d" % self.dove.sport, "--login", USER,
                              "--password-file", self.pwfile, "--ca", self.dove.cert, check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


rs.parametrize(globals(), Migrate)

if __name__ == "__main__":
    rs.main()
