#!/usr/bin/env python3
"""ringmail-admin check and compact after crashes: a lost index after more
than 64 compactions, the directory of a DELETE that crashed after its commit
point, and compactions while other processes keep opening the mailbox.

Environment: RINGMAIL_ADMIN = the built ringmail-admin; RINGMAIL_TEST_TMP =
a scratch directory (else the system's temp dir).
"""

import glob
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from admin_case import AdminCase  # noqa: E402


class AdminRecovery(AdminCase):
    prefix = "admin-recovery"

    def export(self, user, name):
        out = os.path.join(self.tmp, "out.mbox")
        self.admin("export", user, name, out)
        with open(out, "rb") as f:
            return f.read()

    def test_lost_index_after_70_compactions(self):
        self.import_n("ann", "INBOX", 40, 7)
        self.admin("expunge", "ann", "INBOX", "3:5")
        for i in range(70):
            if i % 20 == 10:
                self.import_n("ann", "INBOX", 2, 100 + i)
            self.admin("compact", "ann", "INBOX")
        before = self.status("ann", "INBOX")
        exported = self.export("ann", "INBOX")
        index = glob.glob(os.path.join(self.root, "ann", "m", "*", "index"))
        inbox_dir = os.path.dirname(min(index))
        self.assertTrue(os.path.exists(os.path.join(inbox_dir, "log.71")))
        os.unlink(os.path.join(inbox_dir, "index"))
        p = self.admin("check", "ann", "--repair")
        self.assertIn("INBOX: ok", p.stdout.decode())
        self.admin("check", "ann")
        after = self.status("ann", "INBOX")
        for k in ("messages", "uidnext", "uidvalidity", "size", "unseen", "highestmodseq"):
            self.assertEqual(after[k], before[k], k)
        self.assertEqual(self.export("ann", "INBOX"), exported)

    def test_orphan_directory_of_a_crashed_delete(self):
        self.import_n("bob", "Old", 5, 1)
        self.import_n("bob", "Kept", 5, 2)
        mdir = os.path.join(self.root, "bob", "m")
        ids_before = set(os.listdir(mdir))
        kept = self.export("bob", "Kept")
        # The crash: DELETE saved the mailbox list, then died before it
        # removed the files.
        for d in ids_before:
            shutil.copytree(os.path.join(mdir, d), os.path.join(self.tmp, "copy-" + d))
        self.admin("mailbox", "delete", "bob", "Old")
        gone = ids_before - set(os.listdir(mdir))
        self.assertEqual(len(gone), 1)
        orphan = gone.pop()
        shutil.copytree(os.path.join(self.tmp, "copy-" + orphan), os.path.join(mdir, orphan))

        p = self.admin("check", "bob", rc=1)
        out = p.stdout.decode()
        self.assertIn("m/%s: orphan mailbox directory" % orphan, out)
        self.assertIn("run with --repair", out)
        self.assertTrue(os.path.isdir(os.path.join(mdir, orphan)))
        p = self.admin("check", "bob", "--repair")
        self.assertIn("m/%s: orphan mailbox directory (no mailbox names it): removed" % orphan,
                      p.stdout.decode())
        self.assertFalse(os.path.exists(os.path.join(mdir, orphan)))
        p = self.admin("check", "bob")
        self.assertNotIn("orphan", p.stdout.decode())
        self.assertEqual(self.export("bob", "Kept"), kept)

    def test_compact_while_other_processes_open(self):
        self.import_n("cat", "INBOX", 300, 3)
        self.admin("expunge", "cat", "INBOX", "1:10")
        exported = self.export("cat", "INBOX")
        # Two loops of `mailbox status` (each a new process: its open runs
        # recovery) beside a bounded number of compactions.
        script = ("for i in $(seq 1 400); do \"$@\" >/dev/null 2>&1 || true; done")
        churn = [subprocess.Popen(["sh", "-c", script, "churn"] +
                                  self.cmd("mailbox", "status", "cat", "INBOX"))
                 for _ in range(2)]
        failures = []
        try:
            for i in range(25):
                p = subprocess.run(self.cmd("compact", "cat", "INBOX"), capture_output=True,
                                   timeout=300)
                if p.returncode != 0:
                    failures.append(p.stderr.decode(errors="replace").strip())
        finally:
            for c in churn:
                c.kill()
                c.wait()
        self.assertEqual(failures, [])
        self.admin("check", "cat")
        self.assertEqual(self.export("cat", "INBOX"), exported)
        inbox = os.path.dirname(glob.glob(os.path.join(self.root, "cat", "m", "*", "index"))[0])
        stray = [n for n in os.listdir(inbox) if n.endswith(".tmp") or n == "index.compact"]
        self.assertEqual(stray, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
