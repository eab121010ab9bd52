#!/usr/bin/env python3
"""Changes made by other processes reach IDLE sessions (inotify in
core/notify.c), and `processes = N` (several ringmaild processes sharing the
listening ports through SO_REUSEPORT, supervised by a parent).

Environment: see ringmail_server.py (RINGMAILD, RINGMAIL_ADMIN, ...).
"""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ringmail_server import (ServerTestCase, main, parametrize, quote)  # noqa: E402

PUSH_TIMEOUT = 5.0      # seconds an IDLE session may wait for a pushed update


def msg(n):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: m%d\r\n"
            b"Message-ID: <m%d@example.org>\r\n\r\nbody %d\r\n" % (n, n, n))


def start_idle(t, c):
    c.send("i1 IDLE\r\n")
    r = c.read()
    t.assertTrue(r.continuation, "IDLE not accepted: %r" % r)


def wait_for(t, c, pattern, what, timeout=PUSH_TIMEOUT):
    """Untagged responses until one matches pattern (bytes regex)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in c.pending(min(0.2, max(0.0, deadline - time.monotonic()))):
            seen.append(r.raw)
            if re.search(pattern, r.raw):
                return seen
    t.fail("%s: no %r within %.0f s while idling; got %r\n%s"
           % (what, pattern, timeout, seen, c.last()))


def end_idle(t, c):
    c.send("DONE\r\n")
    while True:
        r = c.read()
        if r.tag == "i1":
            t.assertEqual(r.status()[0], "OK", r.raw)
            return


class CrossProcessIdle(ServerTestCase):
    """ringmail-admin writes while the server holds IDLE sessions."""

    def test_admin_import_pushed(self):
        c = self.login(select="INBOX")
        start_idle(self, c)
        self.server.import_mbox(self.user, "INBOX", [msg(1), msg(2)])
        wait_for(self, c, rb"^\* 2 EXISTS", "import by ringmail-admin")
        end_idle(self, c)

    def test_admin_expunge_pushed(self):
        self.server.import_mbox(self.user, "INBOX", [msg(1), msg(2), msg(3)])
        c = self.login(select="INBOX")
        start_idle(self, c)
        self.server.admin("expunge", self.user, "INBOX", "2")
        wait_for(self, c, rb"^\* 2 EXPUNGE", "expunge by ringmail-admin")
        end_idle(self, c)
        r = self.ok(c, "UID SEARCH ALL")
        self.assertEqual(r.search(), [1, 3])

    def test_admin_compact_then_import(self):
        # Compaction swaps the mailbox's files (a new generation): the
        # watch is on the directory, so later changes still arrive.
        self.server.import_mbox(self.user, "INBOX", [msg(1), msg(2)])
        self.server.admin("expunge", self.user, "INBOX", "1")
        c = self.login(select="INBOX")
        start_idle(self, c)
        self.server.admin("compact", self.user, "INBOX")
        self.server.import_mbox(self.user, "INBOX", [msg(3)])
        wait_for(self, c, rb"^\* 2 EXISTS", "import after compaction")
        end_idle(self, c)

    def test_own_append_still_pushed_once(self):
        # The inotify echo of this process's own write must not produce a
        # second, wrong announcement.
        c = self.login(select="INBOX")
        start_idle(self, c)
        w = self.login()
        self.expect(w.append("INBOX", msg(1)), "OK")
        seen = wait_for(self, c, rb"^\* 1 EXISTS", "APPEND by another session")
        seen += [r.raw for r in c.pending(1.0)]
        self.assertEqual([s for s in seen if b"EXISTS" in s], [b"* 1 EXISTS"], seen)
        end_idle(self, c)

    def test_reselect_after_unwatch(self):
        # The last watcher going removes the inotify watch; a new SELECT
        # adds it again.
        c = self.login(select="INBOX")
        self.ok(c, "UNSELECT")
        self.ok(c, "SELECT INBOX")
        start_idle(self, c)
        self.server.import_mbox(self.user, "INBOX", [msg(1)])
        wait_for(self, c, rb"^\* 1 EXISTS", "import after re-SELECT")
        end_idle(self, c)


parametrize(globals(), CrossProcessIdle)

if __name__ == "__main__":
    main()
