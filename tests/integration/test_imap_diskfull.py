#!/usr/bin/env python3
"""ringmaild on a full disk.

mail_root is a small file system the test makes under the server's temp
dir, once a loop-mounted ext4 image (what the bug was found on) and once a
tmpfs; each is skipped, saying why, only if it cannot be mounted (it needs
root and, for ext4, a loop device).  The disk is then filled
and the server must:

- stay alive (it died of SIGBUS: the index grew sparsely and was written
  through a shared mapping), also across a restart while the disk is full;
- answer every write it cannot do with NO [OVERQUOTA] (RFC 5530; not
  "[LIMIT] Too many keywords") and log it;
- keep nothing of a write it answered NO: after a restart exactly the
  acknowledged messages are there (a refused APPEND was stored anyway, so a
  retry duplicated it);
- keep reading: SELECT, EXAMINE, FETCH, SEARCH, LIST, STATUS work;
- write again once there is room.

Runs once per io backend."""

import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

FS_SIZE_MB = 16


def run(*cmd):
    return subprocess.run(list(cmd), capture_output=True, timeout=60)


def mount_small_fs(kind, tmp, where):
    """Mount a FS_SIZE_MB file system of `kind` ("ext4" on a loop device, or
    "tmpfs") at `where`, or raise unittest.SkipTest with the reason."""
    reasons = []
    img = os.path.join(tmp, "fs.img")
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    if kind != "ext4":
        pass
    elif os.path.exists(mkfs):
        with open(img, "wb") as f:
            f.truncate(FS_SIZE_MB << 20)
        # -m 0: no blocks reserved for root (the server runs as root here).
        p = run(mkfs, "-q", "-F", "-m", "0", img)
        if p.returncode == 0:
            p = run("mount", "-o", "loop", img, where)
            if p.returncode == 0:
                return "ext4"
        reasons.append("ext4 on a loop device: " + p.stderr.decode(errors="replace").strip())
        os.unlink(img)
    else:
        reasons.append("no mkfs.ext4 (apt-get install e2fsprogs)")
    if kind == "tmpfs":
        p = run("mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % FS_SIZE_MB,
                "ringmail-test", where)
        if p.returncode == 0:
            return "tmpfs"
        reasons.append("tmpfs: " + p.stderr.decode(errors="replace").strip())
    raise unittest.SkipTest("cannot mount a small %s file system (needs root): %s"
                            % (kind, "; ".join(reasons)))


def unmount(where):
    for _ in range(50):
        if not os.path.ismount(where) or run("umount", where).returncode == 0:
            return
        time.sleep(0.1)
    run("umount", "-l", where)


def msg(i):
    return ("From: a@example.com\r\nTo: b@example.org\r\nSubject: m%d\r\n"
            "Message-ID: <full%d@example.com>\r\n\r\nBody of m%d.\r\n" % (i, i, i)).encode()


class DiskFull(rs.ServerTestCase):
    """Abstract: fs_kind is set by the subclasses."""

    fs_kind = None

    @classmethod
    def prepare_server(cls, server):
        try:
            mount_small_fs(cls.fs_kind, server.tmp, server.mail_root)
        except unittest.SkipTest:
            server.cleanup()
            raise
        plain_cleanup = server.cleanup

        def cleanup():
            # Always unmount, and before the temp dir is removed.
            server.kill()
            try:
                unmount(server.mail_root)
            finally:
                plain_cleanup()
        server.cleanup = cleanup

    def fill(self):
        """Fill the file system; returns the filler's path."""
        path = os.path.join(self.server.mail_root, "filler")
        chunk = 1 << 20
        with open(path, "wb", buffering=0) as f:
            while chunk >= 512:
                try:
                    f.write(b"\0" * chunk)
                except OSError:
                    chunk //= 2
            try:
                os.fsync(f.fileno())
            except OSError:
                pass
        return path

    def subjects(self, c, box, examine=True):
        r = self.ok(c, "%s %s" % ("EXAMINE" if examine else "SELECT", box))
        n = r.numbers("EXISTS")[-1]
        if not n:
            return []
        f = self.ok(c, "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = []
        for seq, d in sorted(f.fetches().items()):
            v = [x for k, x in d.items() if k.startswith("BODY")][0]
            out.append(rs.s(v).strip().split(": ", 1)[1])
        return out

    def test_full_disk(self):
        c = self.login()
        self.ok(c, "CREATE Box")
        # 60 messages: the index (64 entries at first) must grow while the
        # disk is full, which is what raised SIGBUS.
        inbox = ["m%d" % i for i in range(60)]
        self.append_msgs(c, "INBOX", [msg(i) for i in range(60)])
        box = ["m1000", "m1001"]
        self.append_msgs(c, "Box", [msg(1000), msg(1001)])
        reader = self.login(select="INBOX")
        filler = self.fill()
        off = self.server.stderr_size()

        # Writes until the disk turns every one down.
        refused = 0
        i = 100
        codes = set()
        while refused < 20 and i < 3000:
            r = c.append("INBOX", msg(i))
            if r.status == "OK":
                inbox.append("m%d" % i)
                refused = 0
            else:
                self.expect(r, "NO", "OVERQUOTA", msg="APPEND on a full disk")
                refused += 1
            codes.add(r.status)
            if i % 5 == 0:
                # COPY: all or nothing as well.
                r = c.cmd("SELECT INBOX")
                r = c.cmd("COPY 1 Box")
                if r.status == "OK":
                    box.append(inbox[0])
                else:
                    self.expect(r, "NO", "OVERQUOTA", msg="COPY on a full disk")
                r = c.cmd("STORE 2 +FLAGS (kw%d)" % (i % 40))
                if r.status != "OK":
                    self.expect(r, "NO", "OVERQUOTA", msg="STORE on a full disk")
                c.cmd("UNSELECT")
            i += 1
        self.assertEqual(refused, 20, "the disk never filled up")
        sys.stderr.write("\n  %s: %d appends stored on the full disk, then refused; "
                         "%d copies in Box\n" % (self.fs_kind, len(inbox) - 60, len(box) - 2))
        self.assertTrue(self.server.alive(), "ringmaild died on the full disk:\n" +
                        self.server.stderr_tail())
        log = self.server.stderr_since(off)
        self.assertIn("append failed: No space left on device", log,
                      "a disk-full refusal must be logged")
        self.assertNotIn("Too many keywords", log)

        # Reading goes on: the session that had INBOX selected, and new ones.
        self.ok(reader, "NOOP")
        f = self.ok(reader, "FETCH 1:* (FLAGS)")
        self.assertEqual(len(f.fetches()), len(inbox))
        self.assertEqual(len(self.ok(reader, "SEARCH ALL").search()), len(inbox))
        c2 = self.login()
        names = set(rs.s(x.items()[3]) for x in self.ok(c2, 'LIST "" "*"').of("LIST"))
        self.assertEqual(names, {"INBOX", "Box"})
        st = self.ok(c2, "STATUS INBOX (MESSAGES UIDNEXT)")
        self.assertIn("MESSAGES %d" % len(inbox), st.of("STATUS")[0].raw.decode())
        self.assertEqual(self.subjects(c2, "INBOX", examine=False), inbox)
        self.assertEqual(self.subjects(c2, "Box"), box)
        self.expect(c2.cmd("CREATE New"), "NO", "OVERQUOTA", msg="CREATE on a full disk")

        # A restart while the disk is full: still alive, still readable,
        # and exactly what was acknowledged is there.
        for conn in (c, c2, reader):
            conn.close()
        self.assertEqual(self.server.stop(), 0, "ringmaild did not stop cleanly")
        self.server.start()
        c = self.login()
        self.assertEqual(self.subjects(c, "INBOX", examine=False), inbox,
                         "after a restart on the full disk")
        self.assertEqual(self.subjects(c, "Box"), box)
        self.ok(c, "SELECT INBOX")
        self.ok(c, "SEARCH BODY m5")
        self.ok(c, "FETCH 1 BODY[]")
        self.expect(c.append("INBOX", msg(5000)), "NO", "OVERQUOTA")
        self.assertTrue(self.server.alive())

        # Room again: writes work, and the refused messages stay away.
        os.unlink(filler)
        self.expect(c.append("INBOX", msg(5001)), "OK")
        inbox.append("m5001")
        self.ok(c, "CREATE New")
        c.close()
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        c = self.login()
        self.assertEqual(self.subjects(c, "INBOX"), inbox, "after room was made")
        self.assertEqual(self.subjects(c, "Box"), box)


class DiskFullExt4(DiskFull):
    """ext4 allocates by 1 KiB block here: a log record that crosses into a
    new block is refused at once, so most writes end at the log."""
    fs_kind = "ext4"


class DiskFullTmpfs(DiskFull):
    """tmpfs allocates by page: records fit in the last page of the log and
    cache while the index needs a new one, the path that raised SIGBUS."""
    fs_kind = "tmpfs"


del DiskFull
rs.parametrize(globals(), DiskFullExt4, DiskFullTmpfs)

if __name__ == "__main__":
    rs.main()
