#!/usr/bin/env python3
"""ringmaild compacts mailboxes itself (autocompact_dead_percent,
autocompact_min_dead; core/server/autocompact.c): an EXPUNGE that leaves
more dead log bytes than both thresholds starts a compaction (a new log
generation in the mailbox directory, the dead bytes gone, counted in the
metrics that `ringmail-admin stats` prints), while a session that stays
SELECTed goes on reading the same messages under the same UIDs; a mailbox
under either threshold is left alone, and autocompact_dead_percent = 0
turns it off.  Runs once per io backend."""

import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

BODY = b"".join(b"line %04d of a message that takes some room in the log\r\n" % i
                for i in range(70))        # about 4 KB


def msg(n):
    return b"Subject: m%d\r\nMessage-ID: <%d@ac>\r\n\r\n" % (n, n) + BODY


class AutocompactBase(rs.ServerTestCase):
    users_per_class = 6

    def box_dir(self, name):
        """The mailbox's directory: the one whose log holds its messages."""
        r = self.ok(self.c, "STATUS %s (MAILBOXID)" % name)
        mid = r.untagged[0].raw.decode().split("MAILBOXID (")[1].split(")")[0]
        self.ok(self.c, "SELECT " + name)
        # MAILBOXID is "F<uidvalidity>_<id>" in hex; the directory is m/<id>
        return os.path.join(self.server.mail_root, self.user, "m", str(int(mid.split("_")[1], 16)))

    def generations(self, d):
        return sorted(int(p.rsplit(".", 1)[1]) for p in glob.glob(os.path.join(d, "log.*"))
                      if p.rsplit(".", 1)[1].isdigit())

    def fill(self, name, n):
        self.ok(self.c, "CREATE " + name)
        for i in range(n):
            self.expect(self.c.append(name, msg(i)), "OK")

    def stats(self):
        out = {}
        for line in self.server.admin("stats").stdout.decode().splitlines():
            k, _, v = line.rpartition(" ")
            if k.startswith("ringmail_compaction"):
                out[k] = float(v)
        return out

    def bodies(self, c):
        r = self.ok(c, "UID FETCH 1:* (BODY.PEEK[])")
        return {int(d["UID"]): bytes(d["BODY[]"]) for _, d in r.fetch_list()}


class Autocompact(AutocompactBase):
    server_options = {"autocompact_min_dead": "65536", "autocompact_dead_percent": "50"}

    def test_compacts_past_both_thresholds(self):
        self.c = self.login()
        self.fill("Big", 60)                 # ~250 KB of log
        d = self.box_dir("Big")
        self.assertEqual(self.generations(d), [1])
        watcher = self.login(select="Big")
        before = self.stats()
        self.ok(self.c, "STORE 1:50 +FLAGS.SILENT (\\Deleted)")
        self.ok(self.c, "EXPUNGE")           # ~200 KB dead: 80% and over 64 KB
        deadline = time.monotonic() + 30
        while self.generations(d) == [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertNotEqual(self.generations(d), [1], "no compaction")
        while time.monotonic() < deadline:
            after = self.stats()
            if after.get("ringmail_compactions_total", 0) > before.get(
                    "ringmail_compactions_total", 0):
                break
            time.sleep(0.05)
        self.assertEqual(after["ringmail_compactions_total"]
                         - before.get("ringmail_compactions_total", 0), 1)
        self.assertGreater(after["ringmail_compaction_reclaimed_bytes_total"]
                           - before.get("ringmail_compaction_reclaimed_bytes_total", 0), 150000)
        # the session that stayed selected: the same ten messages
        self.ok(watcher, "NOOP")
        got = self.bodies(watcher)
        self.assertEqual(sorted(got), list(range(51, 61)))
        for uid, b in got.items():
            self.assertEqual(b, msg(uid - 1))
        self.assertEqual(self.bodies(self.c), got)
        # STATUS sees no dead bytes left: DELETED-STORAGE is not it, so
        # ask the store through ringmail-admin check
        p = self.server.admin("check", self.user, "Big")
        self.assertNotIn(b"PROBLEMS", p.stdout)

    def test_under_a_threshold_left_alone(self):
        self.c = self.login()
        self.fill("Small", 60)
        d = self.box_dir("Small")
        # 10 of 60: ~17% dead, under 50%
        self.ok(self.c, "STORE 1:10 +FLAGS.SILENT (\\Deleted)")
        self.ok(self.c, "EXPUNGE")
        self.fill("Tiny", 8)                 # ~33 KB of log
        t = self.box_dir("Tiny")
        # 7 of 8: ~88% dead, but under 64 KB
        self.ok(self.c, "STORE 1:7 +FLAGS.SILENT (\\Deleted)")
        self.ok(self.c, "EXPUNGE")
        # a compaction past both afterwards: once it is done, the two
        # before it would have been done too (one thread, in order)
        self.fill("Marker", 60)
        m = self.box_dir("Marker")
        self.ok(self.c, "STORE 1:50 +FLAGS.SILENT (\\Deleted)")
        self.ok(self.c, "EXPUNGE")
        deadline = time.monotonic() + 30
        while self.generations(m) == [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertNotEqual(self.generations(m), [1], "the marker was not compacted")
        self.assertEqual(self.generations(d), [1])
        self.assertEqual(self.generations(t), [1])


class AutocompactOff(AutocompactBase):
    server_options = {"autocompact_min_dead": "0", "autocompact_dead_percent": "0"}

    def test_off(self):
        self.c = self.login()
        self.fill("Big", 60)
        d = self.box_dir("Big")
        self.ok(self.c, "STORE 1:59 +FLAGS.SILENT (\\Deleted)")
        self.ok(self.c, "EXPUNGE")
        time.sleep(1.0)     # a compaction would take a few ms here
        self.assertEqual(self.generations(d), [1])
        self.assertEqual(self.stats().get("ringmail_compactions_total"), 0)
        # ringmail-admin compact still does it
        self.server.admin("compact", self.user, "Big")
        self.assertNotEqual(self.generations(d), [1])


rs.parametrize(globals(), Autocompact, AutocompactOff)

if __name__ == "__main__":
    rs.main()
