"""What the ringmail-admin tests share: a scratch mail_root per test and a
runner that fails the test on an unexpected exit status.

Environment: RINGMAIL_ADMIN = the built ringmail-admin; RINGMAIL_TEST_TMP =
a scratch directory (else the system's temp dir)."""

import os
import shutil
import subprocess
import tempfile
import unittest

import gen_mbox

ADMIN = os.environ.get("RINGMAIL_ADMIN", "")


def parse_status(text):
    """`mailbox status` output as {key: int}."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = int(v)
    return out


class AdminCase(unittest.TestCase):
    prefix = "admin"

    def setUp(self):
        if not ADMIN or not os.access(ADMIN, os.X_OK):
            self.skipTest("RINGMAIL_ADMIN is not set to an executable")
        base = os.environ.get("RINGMAIL_TEST_TMP") or None
        if base:
            os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=self.prefix + ".", dir=base)
        self.root = os.path.join(self.tmp, "mail")
        self.extra = []         # more -o options for every run

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cmd(self, *args):
        return [ADMIN, "-o", "mail_root=" + self.root] + self.extra + list(args)

    def admin(self, *args, rc=0):
        p = subprocess.run(self.cmd(*args), capture_output=True, timeout=300)
        if rc is not None and p.returncode != rc:
            self.fail("ringmail-admin %s: exit %d (want %d)\nstdout: %s\nstderr: %s" % (
                " ".join(args), p.returncode, rc, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def status(self, user, name):
        return parse_status(self.admin("mailbox", "status", user, name).stdout.decode())

    def import_n(self, user, name, n, seed):
        path = os.path.join(self.tmp, "in-%d.mbox" % seed)
        with open(path, "wb") as f:
            gen_mbox.write_mbox(gen_mbox.generate(n, seed), f)
        self.admin("import", user, name, path)
