#!/usr/bin/env python3
"""`ringmail-admin import USER --dovecot-maildir DIR` against a real Dovecot.

Once per run: a private Dovecot (dovecot-imapd from apt, its own config in
a temp dir, loopback only, STARTTLS with a self-signed certificate,
mail_location = maildir:~/Maildir, the special-use names of its stock
conf.d/15-mailboxes.conf) gets an account over IMAP: nested and
non-ASCII folders, a few hundred messages APPENDed with dates and flags,
keywords, expunges that leave UID gaps, subscriptions.  Dovecot is
stopped and files are dropped into new/ as an MDA would (Dovecot has not
given them UIDs yet); that Maildir is what is imported.  Dovecot is
started again on it and mbsync (isync, its defaults apart from host,
port, user, password, paths and certificate; Patterns * and Create Near so
that every folder comes down) syncs a local Maildir against it; then every
folder's LIST, LSUB, STATUS (UIDVALIDITY UIDNEXT MESSAGES) and UID FETCH
1:* (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]) are recorded.

Per io backend: the Maildir is imported into a ringmaild's store, which
must answer the same for every folder, and mbsync re-pointed at it must
download nothing.  Also: the same account under Dovecot's LAYOUT=fs
(`--layout fs`) and with CONTROL= (`--control`), an incremental second import (the Maildir grew under
Dovecot), a target mailbox with another UIDVALIDITY (error, left
alone), and bad input (no uidlist, corrupt uidlist, unreadable file,
non-UTF-8 folder name, S=/W= disagreeing with the file, keyword letters).

Needs root (Dovecot's mail processes run as nobody), /usr/sbin/dovecot and
mbsync: missing programs are failures (tools/setup-deps.sh installs them)."""

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402
import dovecot_peer  # noqa: E402
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "dove", "dove-secret"

# Not UTC: Dovecot shows a Maildir message's received date in its local
# time zone (TZ is in its default import_environment), and the import must
# give INTERNALDATE the same zone.  Dovecot, ringmail-admin and ringmaild
# inherit it from here.
os.environ["TZ"] = "Europe/Paris"
time.tzset()

# Dovecot's part of the configuration (tests/integration/dovecot_peer.py
# has the rest): Maildir, "/" as separator, the special-use names of its
# stock conf.d/15-mailboxes.conf.
DOVECOT_CONF = """
mail_location = maildir:~/Maildir{layout}
namespace inbox {{{{
  inbox = yes
  separator = /
  mailbox Drafts {{{{
    special_use = \\Drafts
  }}}}
  mailbox Junk {{{{
    special_use = \\Junk
  }}}}
  mailbox Trash {{{{
    special_use = \\Trash
  }}}}
  mailbox Sent {{{{
    special_use = \\Sent
  }}}}
  mailbox "Sent Messages" {{{{
    special_use = \\Sent
  }}}}
}}}}
"""

# Folders made over IMAP (parents first: Dovecot's Maildir++ lists a parent
# it has no directory for as \Noselect, Ringmail makes it a mailbox), with
# how many messages each gets.
FOLDERS = [("INBOX", 220), ("Archive", 10), ("Archive/2024", 60), ("Work", 5),
           ("Work/Projects", 0), ("Work/Projects/Ringmail", 30),
           ("Éléments envoyés", 25), ("日本語", 3), ("日本語/子", 12), ("Trash", 8),
           ("Sent", 6), ("Junk", 0)]
SUBSCRIBED = ["INBOX", "Archive", "Archive/2024", "Work/Projects/Ringmail",
              "Éléments envoyés", "日本語/子"]
KEYWORDS = ["$Forwarded", "$Junk", "Work", "todo", "$label1"]
FLAG_SETS = [[], ["\\Seen"], ["\\Seen", "\\Answered"], ["\\Flagged"], ["\\Draft"],
             ["\\Seen", "\\Flagged"], ["\\Deleted", "\\Seen"]]


def q(name):
    return rs.quote(rs.mutf7_encode(name))


def imap_date(ts):
    return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(ts))


class Dovecot(dovecot_peer.PrivateDovecot):
    """A private Dovecot over a directory that outlives it (restartable)."""

    def __init__(self, layout=""):
        super().__init__("maildir", {USER: PASSWORD}, DOVECOT_CONF.format(layout=layout),
                         tls=True)
        self.maildir = os.path.join(self.d, "mail", USER, "Maildir")

    def login(self):
        c = rs.Imap("127.0.0.1", self.port)
        for attempt in range(10):
            r = c.cmd("LOGIN %s %s" % (USER, PASSWORD))
            if r.status == "OK":
                return c
            time.sleep(0.5)     # [UNAVAILABLE] while its auth process starts
        raise RuntimeError("dovecot LOGIN: %s" % r.describe())


def ok(c, cmd, **kw):
    r = c.cmd(cmd, **kw)
    if r.status != "OK":
        raise AssertionError("%s: %s" % (cmd, r.describe()))
    return r


def build_account(dv):
    """The account over IMAP: folders, messages, keywords, expunges,
    subscriptions.  Returns nothing: what counts is what Dovecot answers."""
    c = dv.login()
    for name, _ in FOLDERS:
        if name != "INBOX":
            ok(c, "CREATE " + q(name))
    for name in SUBSCRIBED:
        ok(c, "SUBSCRIBE " + q(name))
    seed = 7000
    for fi, (name, n) in enumerate(FOLDERS):
        msgs = gen_mbox.generate(n, seed + fi) if n else []
        for i, m in enumerate(msgs):
            flags = FLAG_SETS[(i + fi) % len(FLAG_SETS)]
            if i % 5 == 2:
                flags = flags + [KEYWORDS[(i // 5) % len(KEYWORDS)]]
            if i % 11 == 3:
                flags = flags + KEYWORDS[2:4]
            raw = rs.crlf(gen_mbox.as_imported(m).raw)
            ok(c, "NOOP")
            r = c.append(rs.mutf7_encode(name), raw, flags, imap_date(m.date))
            if r.status != "OK":
                raise AssertionError("APPEND: %s" % r.describe())
        if n:
            ok(c, "SELECT " + q(name))
            # UID gaps: expunge every 7th message (and those APPENDed
            # \Deleted, all but a few kept to show \Deleted survives).
            if n >= 4:
                ok(c, "UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(
                    str(u) for u in range(4, n + 1, 7)))
            ok(c, "UID STORE %d -FLAGS.SILENT (\\Deleted)" % n)
            ok(c, "UID STORE 1 +FLAGS.SILENT ($Forwarded)")
            ok(c, "EXPUNGE")
            ok(c, "UID STORE 2 +FLAGS.SILENT (\\Deleted)")
            ok(c, "UNSELECT")       # not CLOSE: UID 2 stays \\Deleted
    # The last message of Archive/2024 expunged: its UID is not given again.
    ok(c, "SELECT " + q("Archive/2024"))
    ok(c, "UID STORE 59:* +FLAGS.SILENT (\\Deleted)")
    ok(c, "EXPUNGE")
    c.cmd("LOGOUT")
    c.close()


# Files an MDA drops while Dovecot does not run: no UID yet.  Dovecot
# numbers them by the time in the name, then the microseconds, then the
# name; the mtimes (their INTERNALDATE) need not follow.
DROPPED = {
    "INBOX": [("1700000100.M10P7.mx", 1690000000), ("1700000100.M9P7.mx", 1690000500),
              ("999999999.M1P1.old", 1600000000), ("1700000100.M9P7.mw", 1700000000)],
    "Archive/2024": [("1800000000.M1P1.mx,S=%d", 1700000001)],
}


def drop_files(maildir, uid, gid):
    rng = 0
    for folder, files in DROPPED.items():
        d = maildir if folder == "INBOX" else os.path.join(
            maildir, "." + ".".join(rs.mutf7_encode(x) for x in folder.split("/")))
        for name, mtime in files:
            rng += 1
            body = ("From: mda@example.org\nTo: dove@example.org\nSubject: dropped %d\n"
                    "Message-ID: <dropped-%d@example.org>\n\nDelivered without Dovecot.\n"
                    % (rng, rng)).encode()
            if "%d" in name:
                name = name % len(body)
            p = os.path.join(d, "new", name)
            with open(p, "wb") as f:
                f.write(body)
            os.utime(p, (mtime, mtime))
            os.chown(p, uid, gid)


def parse_list(r, kind):
    """{name: (sorted attributes, delimiter)}.  \\Marked and \\Unmarked
    are left out: hints a server gives where it is "feasible for the server
    to determine" them (RFC 3501 7.2.2); Dovecot gives \\Unmarked for an
    empty Maildir, ringmaild neither."""
    out = {}
    for u in r.untagged:
        if u.kind() != kind:
            continue
        items = u.items()
        attrs = sorted(str(a).lower() for a in items[1]
                       if str(a).lower() not in ("\\marked", "\\unmarked"))
        name = rs.mutf7_decode(rs.s(items[3]))
        out[name] = (attrs, rs.s(items[2]))
    return out


def record(connect, folders):
    """Everything compared, as plain data: LIST, LSUB, and per folder
    STATUS and the UID FETCH answers."""
    c = connect()
    out = {"LIST": parse_list(ok(c, 'LIST "" "*"'), "LIST"),
           "LSUB": parse_list(ok(c, 'LSUB "" "*"'), "LSUB")}
    for name in folders:
        r = ok(c, "STATUS %s (UIDVALIDITY UIDNEXT MESSAGES)" % q(name))
        st = [u for u in r.untagged if u.kind() == "STATUS"][0].items()[-1]
        st = dict(zip([rs.s(x).upper() for x in st[0::2]], [int(x) for x in st[1::2]]))
        r = ok(c, "STATUS %s (HIGHESTMODSEQ)" % q(name))
        hms = [u for u in r.untagged if u.kind() == "STATUS"][0].items()[-1]
        out.setdefault("HIGHESTMODSEQ", {})[name] = int(hms[1])
        ok(c, "EXAMINE " + q(name))
        r = ok(c, "UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", timeout=120)
        msgs = {}
        for _, d in r.fetch_list():
            msgs[int(d["UID"])] = (
                sorted({str(f) for f in d["FLAGS"]} - {"\\Recent"}, key=str.lower),
                rs.s(d["INTERNALDATE"]), int(d["RFC822.SIZE"]), bytes(d["BODY[]"]))
        out[name] = (st, msgs)
        ok(c, "UNSELECT")
    c.cmd("LOGOUT")
    c.close()
    return out


MBSYNCRC = """IMAPAccount acct
Host localhost
Port %(port)d
User %(user)s
Pass %(pw)s
CertificateFile %(cert)s

IMAPStore far
Account acct

MaildirStore near
Path %(mail)s/
Inbox %(mail)s/INBOX
SubFolders Verbatim

Channel ch
Far :far:
Near :near:
Patterns *
Create Near
SyncState *
"""


def run_mbsync(home, port, cert):
    conf = os.path.join(home, "mbsyncrc")
    with open(conf, "w") as f:
        f.write(MBSYNCRC % {"port": port, "user": USER, "pw": PASSWORD, "cert": cert,
                            "mail": os.path.join(home, "Mail")})
    exe = shutil.which("mbsync")
    if not exe:
        raise AssertionError("mbsync is not installed (Debian package isync; "
                             "tools/setup-deps.sh installs it)")
    p = subprocess.run([exe, "-c", conf, "-a"], capture_output=True, timeout=600, cwd=home)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if p.returncode != 0:
        raise AssertionError("mbsync exited %d:\n%s" % (p.returncode, out[-6000:]))
    return out


def tree(path):
    """Every file under path with its size (the near Maildir's messages)."""
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if "/cur" in p or "/new" in p or "/tmp" in p:
                out[os.path.relpath(p, path)] = os.path.getsize(p)
    return out


class Fixture:
    """Built once per run, shared by both backends."""
    made = None

    @classmethod
    def get(cls):
        if cls.made is None:
            if os.geteuid() != 0:
                raise unittest.SkipTest("needs root: Dovecot's mail processes run as nobody")
            if not shutil.which("dovecot"):
                raise AssertionError("dovecot is not installed (dovecot-imapd; "
                                     "tools/setup-deps.sh installs it)")
            cls.made = cls()
        return cls.made

    def __init__(self):
        self.dv = Dovecot()
        self.tmp = tempfile.mkdtemp(prefix="import-maildir.", dir=rs.scratch_base())
        try:
            self.dv.start()
            build_account(self.dv)
            self.dv.stop()
            drop_files(self.dv.maildir, self.dv.uid, self.dv.gid)
            self.snapshot = os.path.join(self.tmp, "Maildir")
            shutil.copytree(self.dv.maildir, self.snapshot, symlinks=True)
            self.dv.start()
            self.near = os.path.join(self.tmp, "near")
            os.makedirs(os.path.join(self.near, "Mail"))
            self.mbsync_first = run_mbsync(self.near, self.dv.port,
                                           os.path.join(self.dv.d, "cert.pem"))
            self.folders = [n for n, _ in FOLDERS]
            self.want = record(self.dv.login, self.folders)
        except BaseException:
            self.dv.cleanup()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.dv.stop()

    def grow(self):
        """A copy of the Dovecot account that grew: a new Dovecot over a
        copy of the Maildir, some APPENDs and flag changes, stopped.
        Returns (Dovecot, its answers)."""
        dv = Dovecot()
        dst = dv.maildir
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copytree(self.dv.maildir, dst, symlinks=True)
        for dirpath, dirs, files in os.walk(os.path.dirname(dst)):
            for x in dirs + files:
                os.lchown(os.path.join(dirpath, x), dv.uid, dv.gid)
        os.chown(os.path.dirname(dst), dv.uid, dv.gid)
        dv.start()
        try:
            c = dv.login()
            for i, m in enumerate(gen_mbox.generate(6, 9100)):
                box = ["INBOX", "日本語/子"][i % 2]
                r = c.append(rs.mutf7_encode(box), rs.crlf(gen_mbox.as_imported(m).raw),
                             ["\\Seen", "todo"] if i % 3 == 0 else [], imap_date(m.date))
                if r.status != "OK":
                    raise AssertionError(r.describe())
            c.cmd("LOGOUT")
            c.close()
            want = record(dv.login, self.folders)
        except BaseException:
            dv.cleanup()
            raise
        dv.stop()
        return dv, want

    @classmethod
    def cleanup(cls):
        if cls.made is not None:
            cls.made.dv.cleanup()
            shutil.rmtree(cls.made.tmp, ignore_errors=True)
            cls.made = None


class OtherFixture:
    """The same account under another mail_location of Dovecot's
    (":LAYOUT=fs": folders as nested directories without dots;
    ":CONTROL=~/control": uidlists and keywords in another tree), each
    recorded once."""
    made = {}

    @classmethod
    def get(cls, location):
        Fixture.get()           # the checks for root and dovecot
        if location not in cls.made:
            cls.made[location] = cls(location)
        return cls.made[location]

    def __init__(self, location):
        self.dv = Dovecot(layout=location)
        try:
            self.dv.start()
            build_account(self.dv)
            self.folders = [n for n, _ in FOLDERS]
            self.want = record(self.dv.login, self.folders)
        except BaseException:
            self.dv.cleanup()
            raise
        self.dv.stop()

    @classmethod
    def cleanup(cls):
        for fx in cls.made.values():
            fx.dv.cleanup()
        cls.made.clear()


def tearDownModule():
    Fixture.cleanup()
    OtherFixture.cleanup()


class ImportMaildir(rs.ServerTestCase):
    users_per_class = 14
    server_tls = True

    @classmethod
    def prepare_server(cls, server):
        cls.fx = Fixture.get()
        server.add_users({USER: PASSWORD})
        p = server.admin("import", USER, "--dovecot-maildir", cls.fx.snapshot,
                         "--stock-special-use")
        cls.first_out = p.stdout.decode() + p.stderr.decode()

    def dlogin(self, user=USER, password=PASSWORD):
        c = self.connect()
        self.expect(c.cmd("LOGIN %s %s" % (rs.quote(user), rs.quote(password))), "OK")
        return c

    def assert_same(self, want, got, what):
        self.assertEqual(got["LIST"], want["LIST"], what + ": LIST")
        self.assertEqual(got["LSUB"], want["LSUB"], what + ": LSUB")
        for name in self.fx.folders:
            wst, wm = want[name]
            gst, gm = got[name]
            self.assertEqual(gst, wst, "%s: STATUS %s" % (what, name))
            self.assertEqual(sorted(gm), sorted(wm), "%s: UIDs of %s" % (what, name))
            for uid in wm:
                for k, item in enumerate(("FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY[]")):
                    if gm[uid][k] != wm[uid][k]:
                        self.fail("%s: %s UID %d: %s is %r, Dovecot said %r" % (
                            what, name, uid, item, gm[uid][k][:300], wm[uid][k][:300]))

    def test_same_answers_as_dovecot(self):
        self.assertIn("INBOX: ", self.first_out)
        got = record(self.dlogin, self.fx.folders)
        self.assert_same(self.fx.want, got, "after import")
        # Not the same by design: every mod-sequence here is above any a
        # client may hold from Dovecot (tools/admin_import_dovecot.c).
        for name in self.fx.folders:
            self.assertGreater(got["HIGHESTMODSEQ"][name], self.fx.want["HIGHESTMODSEQ"][name],
                               name)
            self.assertGreaterEqual(got["HIGHESTMODSEQ"][name], 1 << 32, name)
        # The account is what the test meant it to be.
        st, msgs = self.fx.want["INBOX"]
        self.assertGreater(st["UIDNEXT"], st["MESSAGES"] + 1, "no UID gaps")
        zones = {m[1][-5:] for m in msgs.values()}
        self.assertEqual(zones, {"+0100", "+0200"}, "Dovecot's INTERNALDATE zones")
        self.assertTrue(any("todo" in m[0] for m in msgs.values()), "no keywords")
        self.assertIn("Éléments envoyés", self.fx.want["LIST"])
        self.assertIn("\\trash", self.fx.want["LIST"]["Trash"][0])
        total = sum(self.fx.want[n][0]["MESSAGES"] for n in self.fx.folders)
        self.assertGreater(total, 250)
        # Files dropped without Dovecot: the UIDs it gave them, in its order.
        drops = sorted((u for u, m in msgs.items() if b"Delivered without Dovecot" in m[3]))
        self.assertEqual(len(drops), 4)
        subj = [re.search(rb"Subject: dropped (\d+)", msgs[u][3]).group(1) for u in drops]
        self.assertEqual(subj, [b"3", b"4", b"2", b"1"])
        a_st, _ = self.fx.want["Archive/2024"]
        self.assertEqual(a_st["UIDNEXT"], 62, "the expunged last UIDs 59 and 60 are "
                         "not given to the dropped file")

    def test_mbsync_downloads_nothing(self):
        home = os.path.join(self.server.tmp, "near")
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(self.fx.near, home, symlinks=True)
        before = tree(os.path.join(home, "Mail"))
        self.assertGreater(len(before), 250)
        c = self.dlogin()
        st0 = {n: ok(c, "STATUS %s (MESSAGES UIDNEXT)" % q(n)).untagged[0].line
               for n in self.fx.folders}
        out = run_mbsync(home, self.server.port, self.server.cert)
        after = tree(os.path.join(home, "Mail"))
        self.assertEqual(sorted(after), sorted(before),
                         "mbsync changed the local Maildir:\n%s" % out[-3000:])
        self.assertEqual(after, before)
        st1 = {n: ok(c, "STATUS %s (MESSAGES UIDNEXT)" % q(n)).untagged[0].line
               for n in self.fx.folders}
        self.assertEqual(st1, st0, "mbsync uploaded to ringmaild")

    def test_second_import_adds_what_grew(self):
        user = "grown"
        self.server.add_users({user: "grown-secret"})
        self.server.admin("import", user, "--dovecot-maildir", self.fx.snapshot)
        dv, want = self.fx.grow()
        try:
            p = self.server.admin("import", user, "--dovecot-maildir", dv.maildir)
            out = p.stdout.decode()
            self.assertIn("INBOX: 3 messages imported", out)
            self.assertIn("日本語/子: 3 messages imported", out)
            self.assertIn("Archive: 0 messages imported", out)
            got = record(lambda: self.dlogin(user, "grown-secret"), self.fx.folders)
            # Flags changed in Dovecot after the first import are not
            # carried by a second one: only new UIDs are (compare those).
            for name in self.fx.folders:
                self.assertEqual(got[name][0], want[name][0], "STATUS " + name)
                self.assertEqual(sorted(got[name][1]), sorted(want[name][1]), name)
            p = self.server.admin("import", user, "--dovecot-maildir", dv.maildir)
            self.assertIn("INBOX: 0 messages imported", p.stdout.decode())
        finally:
            dv.cleanup()

    def test_layout_fs(self):
        fx = OtherFixture.get(":LAYOUT=fs")
        self.assertTrue(os.path.isdir(os.path.join(fx.dv.maildir, "Work", "Projects",
                                                   "Ringmail", "cur")))
        user = "fs"
        self.server.add_users({user: "fs-secret"})
        p = self.server.admin("import", user, "--dovecot-maildir", fx.dv.maildir,
                              "--layout", "fs", "--stock-special-use")
        self.assertNotIn("warning", p.stderr.decode())
        got = record(lambda: self.dlogin(user, "fs-secret"), fx.folders)
        self.assert_same(fx.want, got, "LAYOUT=fs")
        # Without --layout fs only INBOX is taken, with a warning that says why.
        user = "fs2"
        self.server.add_users({user: "fs-secret"})
        p = self.server.admin("import", user, "--dovecot-maildir", fx.dv.maildir)
        self.assertIn("give --layout fs", p.stderr.decode())
        self.assertIn("into 1 mailboxes", p.stdout.decode())

    def test_control_dir(self):
        fx = OtherFixture.get(":CONTROL=~/control")
        control = os.path.join(os.path.dirname(fx.dv.maildir), "control")
        self.assertTrue(os.path.exists(os.path.join(control, ".INBOX", "dovecot-uidlist")))
        self.assertFalse(os.path.exists(os.path.join(fx.dv.maildir, "dovecot-uidlist")))
        user = "ctl"
        self.server.add_users({user: "ctl-secret"})
        p = self.server.admin("import", user, "--dovecot-maildir", fx.dv.maildir,
                              "--control", control, "--stock-special-use")
        self.assertNotIn("warning", p.stderr.decode())
        got = record(lambda: self.dlogin(user, "ctl-secret"), fx.folders)
        self.assert_same(fx.want, got, "CONTROL=")

    def test_other_uidvalidity_left_alone(self):
        user = "clash"
        self.server.add_users({user: "clash-secret"})
        msgs = gen_mbox.generate(3, 31)
        self.server.import_mbox(user, "INBOX", msgs)
        self.server.import_mbox(user, "Work", msgs[:1])
        before = self.server.admin("mailbox", "status", user, "INBOX").stdout
        p = self.server.admin("import", user, "--dovecot-maildir", self.fx.snapshot,
                              check=False)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertNotIn("Sanitizer", err)
        self.assertRegex(err, r"mailbox 'INBOX' exists with UIDVALIDITY \d+ and holds or "
                         r"held messages; the Maildir '[^']*' has UIDVALIDITY \d+: left alone")
        self.assertIn("mailbox 'Work' exists with UIDVALIDITY", err)
        self.assertEqual(self.server.admin("mailbox", "status", user, "INBOX").stdout, before)
        # the other folders were imported all the same
        c = self.dlogin(user, "clash-secret")
        got = record(lambda: c, ["Archive/2024"])
        self.assertEqual(got["Archive/2024"], self.fx.want["Archive/2024"])

    def test_rerun_after_delivery_here(self):
        """Mail delivered to ringmaild after the first import takes UIDs the
        Maildir may give to other messages later: a re-run says so instead
        of skipping them as imported."""
        user = "both"
        self.server.add_users({user: "both-secret"})
        root = os.path.join(self.server.tmp, "both-maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        msg = b"Subject: y\nFrom: a@example.org\n\nbody\n"
        w = len(msg) + msg.count(b"\n")
        names = ["%d.M1P1.h,S=%d,W=%d" % (i, len(msg), w) for i in (1, 2)]
        for n in names:
            with open(os.path.join(root, "cur", n + ":2,S"), "wb") as f:
                f.write(msg)
        with open(os.path.join(root, "dovecot-uidlist"), "w") as f:
            f.write("3 V500 N3\n1 :%s\n2 :%s\n" % tuple(names))
        self.server.admin("import", user, "--dovecot-maildir", root)
        c = self.dlogin(user, "both-secret")
        self.expect(c.append("INBOX", b"Subject: here\r\n\r\ndelivered to ringmaild\r\n"),
                    "OK", "APPENDUID")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.ok(c, "LOGOUT")
        self.server.admin("compact", user, "INBOX")
        # Meanwhile Dovecot gave UID 3 to another message.
        big = msg + b"x" * 100 + b"\n"
        n3 = "3.M1P1.h,S=%d,W=%d" % (len(big), len(big) + big.count(b"\n"))
        with open(os.path.join(root, "new", n3), "wb") as f:
            f.write(big)
        with open(os.path.join(root, "dovecot-uidlist"), "a") as f:
            f.write("3 :%s\n" % n3)
        p = self.server.admin("import", user, "--dovecot-maildir", root, check=False)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("mailbox 'INBOX' gave its UID 3 to another message", err)
        self.assertIn("1 messages of '%s' not imported" % root, err)
        self.assertIn("1 messages of '%s' have UIDs below the UIDNEXT" % root, err)
        self.assertIn("INBOX: 0 messages imported, UIDVALIDITY 500, UIDNEXT 4",
                      p.stdout.decode())

    def test_bad_input(self):
        user = "bad"
        self.server.add_users({user: "bad-secret"})
        root = os.path.join(self.server.tmp, "bad-maildir")
        shutil.rmtree(root, ignore_errors=True)

        def folder(rel):
            d = os.path.join(root, rel) if rel else root
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            return d

        def put(d, sub, name, data, mtime=1700000000):
            p = os.path.join(d, sub, name)
            with open(p, "wb") as f:
                f.write(data)
            os.utime(p, (mtime, mtime))
            return p

        msg = b"Subject: x\nFrom: a@example.org\n\nline one\nline two\n"
        inbox = folder("")
        with open(os.path.join(inbox, "dovecot-uidlist"), "w") as f:
            # 101 is listed twice: its last line counts, as for Dovecot
            f.write("3 V4242 N20 Gabc\n2 :101.M1P1.h,S=7,W=8\n5 :100.M1P1.h,S=%d,W=%d\n"
                    "9 W9999 :101.M1P1.h,S=7,W=8\n" % (len(msg), len(msg) + 5))
        with open(os.path.join(inbox, "dovecot-keywords"), "w") as f:
            f.write("0 $Forwarded\n1 bad keyword\n2 todo\nnot a line\n")
        put(inbox, "cur", "100.M1P1.h,S=%d,W=%d:2,RSac" % (len(msg), len(msg) + 5), msg, 1500)
        put(inbox, "cur", "101.M1P1.h,S=7,W=8:2,FPb", msg, 1600)     # sizes disagree
        put(inbox, "new", "102.M1P1.h", msg, 1700)                    # not listed yet
        v1 = folder(".V1")         # Dovecot 1.0's (and Courier's) format
        with open(os.path.join(v1, "dovecot-uidlist"), "w") as f:
            f.write("1 77 5\n3 3.a:2,S\n")
        put(v1, "cur", "3.a:2,S", msg)
        nolist = folder(".NoList")
        put(nolist, "cur", "200.M2P1.h:2,T", msg, 1800)
        put(nolist, "new", "100.M2P1.h", msg, 1900)
        corrupt = folder(".Corrupt")
        with open(os.path.join(corrupt, "dovecot-uidlist"), "w") as f:
            f.write("3 V77 N3\n1 :a\n2 Sx :b\n")
        put(corrupt, "cur", "a:2,S", msg)
        folder(".caf\xe9".encode("latin-1").decode("utf-8", "surrogateescape"))
        unread = folder(".Unreadable")
        with open(os.path.join(unread, "dovecot-uidlist"), "w") as f:
            f.write("3 V88 N4\n1 :1.a\n2 :2.b\n3 :3.c\n")
        put(unread, "cur", "1.a:2,", msg)
        locked = put(unread, "cur", "2.b:2,", msg)
        put(unread, "cur", "3.c:2,", msg)
        with open(os.path.join(root, "subscriptions"), "w") as f:
            f.write("V\t2\n\nNoList\nCorrupt\n&Jjo\n")
        os.chmod(locked, 0)
        nobody = pwd.getpwnam("nobody")
        for dirpath, dirs, files in os.walk(self.server.tmp):
            for x in dirs + files:
                os.lchown(os.path.join(dirpath, x), nobody.pw_uid, nobody.pw_gid)
        os.chown(self.server.tmp, nobody.pw_uid, nobody.pw_gid)
        # As another user than root, so that a mode-0 file cannot be read.
        cmd = [rs.ADMIN, "-c", self.server.conf, "-o", "mail_root=" + self.server.mail_root,
               "import", user, "--dovecot-maildir", root]

        def as_nobody():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        p = subprocess.run(cmd, capture_output=True, timeout=120, preexec_fn=as_nobody)
        out, err = p.stdout.decode(), p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 1, out + err)
        self.assertNotIn("Sanitizer", err)
        self.assertIn("INBOX: 3 messages imported, UIDVALIDITY 4242, UIDNEXT 21", out)
        self.assertIn("V1: 1 messages imported, UIDVALIDITY 77, UIDNEXT 5", out)
        self.assertIn("'bad keyword' is not an IMAP keyword", err)
        self.assertIn("line 4 is not \"<index> <keyword>\"", err)
        self.assertIn("1 messages of '%s' have S= or W= sizes" % root, err)
        self.assertIn("keyword letters that dovecot-keywords does not name", err)
        self.assertIn("'%s/.NoList' has no dovecot-uidlist" % root, err)
        self.assertRegex(err, r"'%s/.Corrupt/dovecot-uidlist' line 3: .*'2 Sx :b'"
                         % re.escape(root))
        self.assertRegex(err, r"folder '%s/.caf.' has no valid mailbox name" % re.escape(root))
        self.assertIn("cannot read '%s': Permission denied" % locked, err)
        self.assertIn("mailbox 'Unreadable' was imported up to UID 1", err)
        self.assertIn("cannot subscribe '&Jjo'", err)
        c = self.dlogin(user, "bad-secret")
        got = record(lambda: c, ["INBOX", "NoList", "Unreadable", "V1"])
        self.assertEqual(sorted(got["V1"][1]), [3])
        self.assertNotIn("Corrupt", got["LIST"])
        self.assertEqual(sorted(got["LSUB"]), ["Corrupt", "NoList"])
        st, msgs = got["INBOX"]
        self.assertEqual(st, {"UIDVALIDITY": 4242, "UIDNEXT": 21, "MESSAGES": 3})
        self.assertEqual(sorted(msgs), [5, 9, 20])
        want_body = msg.replace(b"\n", b"\r\n")
        self.assertEqual(msgs[5], (["$Forwarded", "\\Answered", "\\Seen", "todo"],
                                   "01-Jan-1970 01:25:00 +0100", len(want_body), want_body))
        self.assertEqual(msgs[9][0], ["\\Flagged"])     # P: no IMAP flag; b: left out
        self.assertEqual(msgs[9][2], len(want_body))    # the content, not W=9999 or W=8
        self.assertEqual(msgs[20][1], "01-Jan-1970 01:28:20 +0100")
        st, msgs = got["NoList"]
        self.assertEqual(st["MESSAGES"], 2)
        self.assertEqual(sorted(msgs), [1, 2])
        self.assertEqual(msgs[1][0], [])                # 100.M2P1.h: by name first
        self.assertEqual(msgs[2][0], ["\\Deleted"])
        st, msgs = got["Unreadable"]
        self.assertEqual((st["UIDVALIDITY"], st["UIDNEXT"], sorted(msgs)), (88, 2, [1]))
        # Readable again: the import goes on where it stopped.
        os.chmod(locked, 0o600)
        os.chown(locked, nobody.pw_uid, nobody.pw_gid)
        p = subprocess.run(cmd, capture_output=True, timeout=120, preexec_fn=as_nobody)
        self.assertIn("Unreadable: 2 messages imported, UIDVALIDITY 88, UIDNEXT 4",
                      p.stdout.decode(), p.stderr.decode(errors="replace"))
        self.assertIn("INBOX: 0 messages imported", p.stdout.decode())


rs.parametrize(globals(), ImportMaildir)

if __name__ == "__main__":
    rs.main()
