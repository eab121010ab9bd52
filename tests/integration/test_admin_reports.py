#!/usr/bin/env python3
"""ringmail-admin: what import stores and what stats and check report.

- import of an mbox turns Status:/X-Status: into flags and drops those
  header fields (only there: the same lines in a body stay);
- stats pads the MAILBOX column by display width, so non-ASCII names line
  up whatever the caller's locale;
- check reports live messages, as stats does, not every message the log
  ever held.

Environment: RINGMAIL_ADMIN = the built ringmail-admin; RINGMAIL_TEST_TMP =
a scratch directory (else the system's temp dir).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402

ADMIN = os.environ.get("RINGMAIL_ADMIN", "")


def display_width(text):
    """Terminal columns, computed independently of the C code: East Asian
    wide and fullwidth characters take two, combining marks none."""
    w = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


class AdminReports(unittest.TestCase):
    def setUp(self):
        if not ADMIN or not os.access(ADMIN, os.X_OK):
            self.fail("RINGMAIL_ADMIN is not set to an executable (got %r)" % ADMIN)
        base = os.environ.get("RINGMAIL_TEST_TMP") or None
        if base:
            os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="admin-reports.", dir=base)
        self.root = os.path.join(self.tmp, "mail")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def admin(self, *args, env=None):
        p = subprocess.run([ADMIN, "-o", "mail_root=" + self.root] + list(args),
                           capture_output=True, timeout=120, env=env)
        if p.returncode != 0:
            self.fail("ringmail-admin %s: exit %d\nstdout: %s\nstderr: %s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p.stdout.decode("utf-8")

    def status(self, user, mailbox):
        out = {}
        for line in self.admin("mailbox", "status", user, mailbox).splitlines():
            k, _, v = line.partition(":")
            out[k.strip()] = int(v)
        return out

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_import_drops_status_fields(self):
        mbox = (
            # flags from both fields; the same lines in the body stay
            b"From MAILER-DAEMON Thu Jan  1 00:00:01 1970\n"
            b"Subject: one\n"
            b"Status: RO\n"
            b"X-Status: AF\n"
            b"To: a@example.com\n"
            b"\n"
            b"Status: RO\n"
            b"X-Status: D\n"
            b"\n"
            # CRLF entry, lower case, a folded X-Status: all of it goes
            b"From MAILER-DAEMON Thu Jan  1 00:00:02 1970\n"
            b"status: O\r\n"
            b"Subject: two\r\n"
            b"x-status: D\r\n"
            b"\tT\r\n"
            b"\r\n"
            b"body two\r\n"
            b"\n"
            # look-alikes are not those fields
            b"From MAILER-DAEMON Thu Jan  1 00:00:03 1970\n"
            b"X-Status-Note: keep\n"
            b"Subject: Status: R\n"
            b"\n"
            b"body three\n"
            b"\n")
        self.admin("import", "ann", "INBOX", self.write("in.mbox", mbox))
        st = self.status("ann", "INBOX")
        self.assertEqual(st["messages"], 3)
        self.assertEqual(st["unseen"], 2)       # only the first is \Seen
        self.assertEqual(st["deleted"], 1)      # the second (X-Status: D)
        out = os.path.join(self.tmp, "out.mbox")
        self.admin("export", "ann", "INBOX", out)
        with open(out, "rb") as f:
            got = f.read()
        want = (
            b"From MAILER-DAEMON Thu Jan  1 00:00:01 1970\n"
            b"Subject: one\n"
            b"To: a@example.com\n"
            b"\n"
            b"Status: RO\n"
            b"X-Status: D\n"
            b"\n"
            b"From MAILER-DAEMON Thu Jan  1 00:00:02 1970\n"
            b"Subject: two\n"
            b"\n"
            b"body two\n"
            b"\n"
            b"From MAILER-DAEMON Thu Jan  1 00:00:03 1970\n"
            b"X-Status-Note: keep\n"
            b"Subject: Status: R\n"
            b"\n"
            b"body three\n"
            b"\n")
        self.assertEqual(got, want)

    def test_import_generated_mail(self):
        """Every generated message, as stored, is the input without those
        fields, and its flags come from them."""
        msgs = gen_mbox.generate(120, 777)
        self.assertTrue(any(b"\nStatus: " in m.raw for m in msgs))
        path = os.path.join(self.tmp, "gen.mbox")
        with open(path, "wb") as f:
            gen_mbox.write_mbox(msgs, f)
        self.admin("import", "bea", "INBOX", path)
        out = os.path.join(self.tmp, "gen-out.mbox")
        self.admin("export", "bea", "INBOX", out)
        with open(out, "rb") as f:
            got = f.read()
        stored = [gen_mbox.as_imported(m) for m in msgs]
        self.assertEqual(got, b"".join(gen_mbox.mboxrd_entry(m) for m in stored))
        for m in stored:
            head = m.raw.split(b"\n\n", 1)[0]
            self.assertIsNone(re.search(rb"(?im)^(x-)?status:", head), head)
        st = self.status("bea", "INBOX")
        self.assertEqual(st["unseen"], sum(1 for m in msgs if "\\Seen" not in m.flags))

    def test_stats_pads_by_display_width(self):
        names = ["日本語", "Überweisungen", "Cafe\u0301", "Ελληνικά", "Work", "emoji 🙂"]
        for n in names:
            self.admin("mailbox", "create", "cat", n)
        self.admin("import", "cat", "日本語", self.write("one.mbox", (
            b"From MAILER-DAEMON Thu Jan  1 00:00:01 1970\nSubject: x\n\nhi\n\n")))
        for env in (None, dict(os.environ, LC_ALL="C", LANG="C")):
            out = self.admin("stats", "cat", env=env)
            lines = out.splitlines()
            self.assertEqual(len(lines), len(names) + 3, out)   # header, INBOX, total
            widths = {display_width(line) for line in lines}
            self.assertEqual(len(widths), 1, "rows differ in width:\n" + out)
            # and the numbers start in the same column: the name column is
            # as wide as the widest name
            for line, name in ((l, l.split("  ")[0].rstrip()) for l in lines[1:-1]):
                self.assertIn(name, names + ["INBOX"], line)
            row = next(l for l in lines if l.startswith("日本語"))
            self.assertEqual(row.split()[1], "1", row)

    def test_check_counts_live_messages(self):
        msgs = gen_mbox.generate(10, 99)
        path = os.path.join(self.tmp, "ten.mbox")
        with open(path, "wb") as f:
            gen_mbox.write_mbox(msgs, f)
        self.admin("import", "dan", "INBOX", path)
        self.admin("expunge", "dan", "INBOX", "2,4,6,8")
        self.assertEqual(self.status("dan", "INBOX")["messages"], 6)
        line = self.admin("check", "dan", "INBOX").strip()
        m = re.match(r"INBOX: ok, (\d+) records, (\d+) messages$", line)
        self.assertTrue(m, line)
        self.assertEqual(int(m.group(2)), 6, line)
        row = next(r.split() for r in self.admin("stats", "dan").splitlines()
                   if r.split()[0] == "INBOX")
        self.assertEqual(int(row[1]), 6)
        # after compaction the log holds only the live ones: still 6
        self.admin("compact", "dan", "INBOX")
        line = self.admin("check", "dan", "INBOX").strip()
        self.assertTrue(line.endswith(" 6 messages"), line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
