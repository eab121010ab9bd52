#!/usr/bin/env python3
"""ringmail-admin end to end: import, export, expunge, compact, check.

Environment: RINGMAIL_ADMIN = the built ringmail-admin; RINGMAIL_TEST_TMP =
a scratch directory (else the system's temp dir).  Set RINGMAIL_KEEP_TMP=1
to keep the mail root for a look after a failure.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402

ADMIN = os.environ.get("RINGMAIL_ADMIN", "")
COUNT = int(os.environ.get("RINGMAIL_ROUNDTRIP_COUNT", "3000"))
SEED = 20240611


def crlf_size(raw):
    """Size of a generated (LF, CR-free) message once stored with CRLF."""
    return len(raw) + raw.count(b"\n")


def parse_status(text):
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = int(v)
    return out


class AdminRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not ADMIN or not os.access(ADMIN, os.X_OK):
            raise unittest.SkipTest("RINGMAIL_ADMIN is not set to an executable")
        base = os.environ.get("RINGMAIL_TEST_TMP") or None
        if base:
            os.makedirs(base, exist_ok=True)
        cls.tmp = tempfile.mkdtemp(prefix="admin-roundtrip.", dir=base)
        cls.root = os.path.join(cls.tmp, "mail")
        cls.msgs = gen_mbox.generate(COUNT, SEED)
        cls.input = os.path.join(cls.tmp, "input.mbox")
        with open(cls.input, "wb") as f:
            gen_mbox.write_mbox(cls.msgs, f)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("RINGMAIL_KEEP_TMP"):
            print("kept", cls.tmp, file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ------------------------------------------------------------

    def admin(self, *args, rc=0, root=None):
        p = subprocess.run([ADMIN, "-o", "mail_root=" + (root or self.root)] + list(args),
                           capture_output=True, timeout=600)
        if rc is not None and p.returncode != rc:
            self.fail("ringmail-admin %s: exit %d (want %d)\nstdout: %s\nstderr: %s" % (
                " ".join(args)[:200], p.returncode, rc,
                p.stdout.decode(errors="replace")[:2000],
                p.stderr.decode(errors="replace")[:2000]))
        return p

    def status(self, user, mailbox):
        return parse_status(self.admin("mailbox", "status", user, mailbox).stdout.decode())

    def assert_same_mbox(self, got_path, want_bytes):
        with open(got_path, "rb") as f:
            got = f.read()
        if got == want_bytes:
            return
        # Say which message differs rather than dumping 40 MB.
        sep = re.compile(rb"^From MAILER-DAEMON ", re.M)
        g, w = sep.split(got), sep.split(want_bytes)
        for i, (a, b) in enumerate(zip(g, w)):
            if a != b:
                k = next(j for j in range(min(len(a), len(b)) + 1)
                         if j == min(len(a), len(b)) or a[j] != b[j])
                self.fail("export differs in message %d at byte %d:\n got  %r\n want %r" % (
                    i, k, a[max(0, k - 60):k + 60], b[max(0, k - 60):k + 60]))
        self.fail("export has %d messages, want %d (sizes %d, %d)" % (
            len(g) - 1, len(w) - 1, len(got), len(want_bytes)))

    def assert_one_error_line(self, p, *fragments):
        err = p.stderr.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0, "expected a failure: " + err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, "want one line on stderr, got: %r" % err)
        self.assertTrue(lines[0].startswith("ringmail-admin: "), lines[0])
        for f in fragments:
            self.assertIn(f, lines[0])

    # -- the tests ------------------------------------------------------------

    def test_1_import_export_expunge_compact(self):
        # What is stored: the Status:/X-Status: fields became flags.
        msgs = [gen_mbox.as_imported(m) for m in self.msgs]
        p = self.admin("import", "alice", "INBOX", self.input)
        self.assertIn("imported %d messages" % COUNT, p.stdout.decode())

        st = self.status("alice", "INBOX")
        self.assertEqual(st["messages"], COUNT)
        self.assertEqual(st["uidnext"], COUNT + 1)      # so the UIDs are 1..COUNT
        self.assertEqual(st["unseen"], sum(1 for m in msgs if "\\Seen" not in m.flags))
        self.assertEqual(st["deleted"], sum(1 for m in msgs if "\\Deleted" in m.flags))
        self.assertEqual(st["size"], sum(crlf_size(m.raw) for m in msgs))
        self.assertEqual(st["dead_bytes"], 0)

        out = os.path.join(self.tmp, "export.mbox")
        p = self.admin("export", "alice", "INBOX", out)
        self.assertIn("exported %d messages" % COUNT, p.stdout.decode())
        self.assertFalse(os.path.exists(out + ".tmp"))
        self.assert_same_mbox(out, b"".join(gen_mbox.mboxrd_entry(m) for m in msgs))

        # Expunge every other UID (2, 4, ...): those are input messages 1, 3, ...
        gone = list(range(2, COUNT + 1, 2))
        p = self.admin("expunge", "alice", "INBOX", ",".join(map(str, gone)))
        self.assertIn("expunged %d messages" % len(gone), p.stdout.decode())
        expunged_bytes = sum(crlf_size(msgs[u - 1].raw) for u in gone)
        kept = [m for i, m in enumerate(msgs) if (i + 1) % 2 == 1]

        before = self.status("alice", "INBOX")
        self.assertEqual(before["messages"], len(kept))
        self.assertEqual(before["size"], sum(crlf_size(m.raw) for m in kept))
        # Dead bytes are the expunged messages plus their record framing.
        slack = 0.02 * expunged_bytes + 256 * len(gone)
        self.assertGreaterEqual(before["dead_bytes"], expunged_bytes)
        self.assertLessEqual(before["dead_bytes"], expunged_bytes + slack)

        p = self.admin("compact", "alice", "INBOX")
        self.assertIn("compacted 'INBOX'", p.stdout.decode())
        after = self.status("alice", "INBOX")
        shrink = before["log_bytes"] - after["log_bytes"]
        self.assertGreaterEqual(shrink, expunged_bytes - slack,
                                "log shrank by %d, expunged %d" % (shrink, expunged_bytes))
        self.assertLessEqual(shrink, expunged_bytes + slack,
                             "log shrank by %d, expunged %d" % (shrink, expunged_bytes))
        self.assertEqual(after["dead_bytes"], 0)
        for k in ("messages", "unseen", "deleted", "uidnext", "uidvalidity", "size"):
            self.assertEqual(after[k], before[k], k)
        self.assertEqual(after["unseen"], sum(1 for m in kept if "\\Seen" not in m.flags))
        self.assertEqual(after["deleted"], sum(1 for m in kept if "\\Deleted" in m.flags))

        p = self.admin("check", "alice", "INBOX")
        line = p.stdout.decode().strip()
        m = re.match(r"INBOX: ok, (\d+) records, (\d+) messages$", line)
        self.assertTrue(m, line)
        self.assertEqual(int(m.group(2)), after["messages"])

        # stats agrees with status.
        rows = self.admin("stats", "alice").stdout.decode().splitlines()
        row = next(r.split() for r in rows if r.split()[0] == "INBOX")
        self.assertEqual(int(row[1]), after["messages"])
        self.assertEqual(int(row[2]), after["size"])
        self.assertEqual(int(row[3]), after["log_bytes"] - after["dead_bytes"])
        self.assertEqual(int(row[4]), after["dead_bytes"])
        self.assertEqual(int(row[5]), after["highestmodseq"])

        # The survivors export unchanged (and over the old export: atomic
        # replace of an existing file).
        p = self.admin("export", "alice", "INBOX", out)
        self.assert_same_mbox(out, b"".join(gen_mbox.mboxrd_entry(m) for m in kept))

        # A UID range with '*' expunges the rest; the mailbox is then empty.
        self.admin("expunge", "alice", "INBOX", "1:*")
        self.assertEqual(self.status("alice", "INBOX")["messages"], 0)
        self.admin("export", "alice", "INBOX", out)
        self.assertEqual(os.path.getsize(out), 0)
        self.admin("compact", "alice")
        self.admin("check", "alice", "--repair")

    def test_2_maildir(self):
        msgs = gen_mbox.generate(60, SEED + 1)
        md = os.path.join(self.tmp, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub))
        letters = ["", "S", "RS", "FS", "T", "D", "FRST", "P"]
        want_flags = []
        expect = []
        t0 = 1300000000
        for i, m in enumerate(msgs):
            info = letters[i % len(letters)]
            if i % 5 == 4:
                name = "new/%d.M%dP1.host" % (t0 + i, i)
                info = None
            else:
                name = "cur/%d.M%dP1.host:2,%s" % (t0 + i, i, info)
            raw = m.raw
            if i == 7:
                raw = raw.replace(b"\n", b"\r\n")     # CRLF files stay CRLF
            path = os.path.join(md, name)
            with open(path, "wb") as f:
                f.write(raw)
            # mtimes out of name order, to show that the import orders by mtime
            mtime = t0 + 86400 * ((i * 37) % len(msgs)) + 1
            os.utime(path, (mtime, mtime))
            want_flags.append(info or "")
            expect.append((mtime, gen_mbox.Message(m.raw, mtime, m.flags, m.kind)))
        # files a Maildir reader must skip
        with open(os.path.join(md, "tmp", "123.partial"), "wb") as f:
            f.write(b"Subject: half-delivered\n\n")
        with open(os.path.join(md, "cur", ".hidden"), "wb") as f:
            f.write(b"Subject: not mail\n\n")

        p = self.admin("import", "maria", "Archive/2011", md)
        self.assertIn("imported %d messages" % len(msgs), p.stdout.decode())
        names = self.admin("mailbox", "list", "maria").stdout.decode().splitlines()
        self.assertEqual(names, ["INBOX", "Archive", "Archive/2011"])
        st = self.status("maria", "Archive/2011")
        self.assertEqual(st["messages"], len(msgs))
        self.assertEqual(st["unseen"], sum(1 for f in want_flags if "S" not in f))
        self.assertEqual(st["deleted"], sum(1 for f in want_flags if "T" in f))

        out = os.path.join(self.tmp, "maildir.mbox")
        self.admin("export", "maria", "Archive/2011", out)
        expect.sort(key=lambda e: e[0])
        self.assert_same_mbox(out, b"".join(gen_mbox.mboxrd_entry(m) for _, m in expect))
        with open(out, "rb") as f:
            dates = re.findall(rb"^From MAILER-DAEMON (.*)$", f.read(), re.M)
        self.assertEqual([d.decode() for d in dates],
                         [gen_mbox.asctime_utc(t) for t, _ in expect])

    def damaged_mailbox(self, user, count):
        """Import `count` messages into user's INBOX and flip one byte in
        the middle of its log (layout per store.h: USER/m/ID/log.GEN)."""
        path = os.path.join(self.tmp, "damage-%s.mbox" % user)
        with open(path, "wb") as f:
            gen_mbox.write_mbox(gen_mbox.generate(count, SEED + 2), f)
        self.admin("import", user, "INBOX", path)
        self.admin("check", user)
        logs = glob.glob(os.path.join(self.root, user, "m", "*", "log.*"))
        self.assertEqual(len(logs), 1, logs)
        size = os.path.getsize(logs[0])
        with open(logs[0], "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0xFF]))

    def test_4_check_detects_damage(self):
        self.damaged_mailbox("gus", 600)
        p = self.admin("check", "gus", rc=1)
        out = p.stdout.decode().splitlines()
        self.assertEqual(len(out), 1, out)
        self.assertRegex(out[0], r"^INBOX: PROBLEMS, .*[1-9]\d* bad records.*\(run with --repair\)$")
        self.assertEqual(p.stderr, b"")

    def test_5_repair_keeps_intact_messages(self):
        self.damaged_mailbox("hal", 600)
        self.admin("check", "hal", "--repair", rc=None)
        self.admin("check", "hal")
        # At most the damaged append batch (256 messages) may be lost.
        self.assertGreaterEqual(self.status("hal", "INBOX")["messages"], 600 - 256)

    def test_3_errors(self):
        self.admin("mailbox", "create", "erin", "Box")
        cases = [
            (["mailbox", "status", "erin", "NoSuchBox"], 1,
             ["mailbox 'NoSuchBox' does not exist"]),
            (["mailbox", "status", "nobody", "INBOX"], 1, ["user 'nobody' does not exist"]),
            (["export", "erin", "Nope", os.path.join(self.tmp, "x.mbox")], 1, ["'Nope'"]),
            (["expunge", "erin", "Nope", "1"], 1, ["mailbox 'Nope' does not exist"]),
            (["expunge", "erin", "Box", "1:x"], 2, ["bad UID set '1:x'"]),
            (["expunge", "erin", "Box", "0"], 2, ["bad UID set"]),
            (["expunge", "erin", "Box", ""], 2, ["bad UID set"]),
            (["frobnicate", "erin"], 2, ["unknown command 'frobnicate'"]),
            (["mailbox", "frob", "erin"], 2, ["unknown sub-command 'frob'"]),
            (["mailbox", "create", "erin"], 2, ["usage: ringmail-admin mailbox create"]),
            (["stats", "erin", "extra"], 2, ["too many arguments"]),
            (["check", "erin", "--fix"], 2, ["unknown option '--fix'"]),
            (["-o", "no_such_key=1", "stats", "erin"], 1, ["unknown key 'no_such_key'"]),
            (["-o", "fsync=sometimes", "stats", "erin"], 1, ["'fsync'"]),
            (["-c", os.path.join(self.tmp, "missing.conf"), "stats", "erin"], 1,
             ["missing.conf"]),
            (["import", "erin", "Box", os.path.join(self.tmp, "nonexistent")], 1,
             ["nonexistent"]),
            (["mailbox", "create", "erin", "a//b"], 1, ["invalid mailbox name 'a//b'"]),
            (["mailbox", "status", "../etc", "INBOX"], 1, ["invalid user name"]),
        ]
        for args, rc, frags in cases:
            with self.subTest(args=args):
                p = self.admin(*args, rc=None)
                self.assertEqual(p.returncode, rc, p.stderr)
                self.assert_one_error_line(p, *frags)

        # Not an mbox: refused before any mailbox is created.
        junk = os.path.join(self.tmp, "junk.txt")
        with open(junk, "wb") as f:
            f.write(b"Subject: hello\n\nnot an mbox\n")
        p = self.admin("import", "erin", "Junk", junk, rc=1)
        self.assert_one_error_line(p, "not an mbox file")
        names = self.admin("mailbox", "list", "erin").stdout.decode().split()
        self.assertNotIn("Junk", names)

        # An unknown key in a file names the file and line.
        conf = os.path.join(self.tmp, "bad.conf")
        with open(conf, "w") as f:
            f.write("# test\nfsync = never\nmail_rot = /x\n")
        p = subprocess.run([ADMIN, "-c", conf, "stats", "erin"], capture_output=True)
        self.assert_one_error_line(p, "unknown key 'mail_rot' at %s:3" % conf)

        # A good file works, and -o overrides it.
        good = os.path.join(self.tmp, "good.conf")
        with open(good, "w") as f:
            f.write("mail_root = /nonexistent/ringmail\nfsync = never  # fast\n")
        p = self.admin("-c", good, "config")
        out = p.stdout.decode()
        self.assertIn("mail_root = %s    # -o" % self.root, out)
        self.assertIn("fsync = never    # %s:2" % good, out)
        self.assertIn("listen_tls = ", out)

        # A failed export leaves neither a file nor a temp file behind.
        target = os.path.join(self.tmp, "never.mbox")
        self.admin("export", "erin", "Nope", target, rc=1)
        self.assertFalse(os.path.exists(target))
        self.assertFalse(os.path.exists(target + ".tmp"))

        p = subprocess.run([ADMIN, "--help"], capture_output=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"usage: ringmail-admin", p.stdout)
        self.assertEqual(p.stderr, b"")
        p = subprocess.run([ADMIN], capture_output=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"usage: ringmail-admin", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
