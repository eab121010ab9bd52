"""Answers with a line per message are written in steps: STORE without
.SILENT over a big set, EXPUNGE of very many messages, and the updates a
session is told after another one flagged or expunged a whole mailbox
(NOOP, IDLE).  For each, a client that does not read cannot make the
server buffer much more than max_output_buffer, the answer is complete and
right once it reads (every sequence number valid as read), and a
bystander on the same worker is answered meanwhile.

RINGMAIL_TEST_QUICK=1 (the sanitizer run) uses smaller mailboxes; the
memory bound then has the sanitizer's slack."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from test_imap_slices import Raw  # noqa: E402

QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"
MAX_OUTPUT = 256 << 10
# flag answers: ~450 bytes a line (long keywords), ~27 MB for NFLAG
NFLAG = 15000 if QUICK else 60000
# EXPUNGE: the first half of NEXP messages is \Deleted (the survivors above
# each expunged one are what removing it in place would move)
NEXP = 40000 if QUICK else 400000
KEYWORDS = ["kw%d_%s" % (k, "x" * 46) for k in range(8)]
KWLIST = "(" + " ".join(KEYWORDS) + ")"
# what a non-reading client may cost: max_output_buffer, what one step
# writes past it, the view and allocator slack (under ASan, freed memory
# waits in its quarantine and counts too)
RSS_BOUND = (8 << 20) + ((56 << 20) if QUICK else 0)


def rss_anon_kib(pid):
    """Anonymous memory only: the mailbox files mapped by the server count
    in VmRSS as they are read, and are not what is measured here."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon")


def tiny(i, deleted=False):
    return b"Subject: m%d\r\n%s\r\nx\r\n" % (i, b"X-Status: D\r\n" if deleted else b"")


FETCH_RE = re.compile(rb"\* (\d+) FETCH \(FLAGS \(([^)]*)\)\)\r\n")
ANNOUNCE_RE = re.compile(rb"\* FLAGS \(([^)]*)\)\r\n\* OK \[PERMANENTFLAGS \([^)]*\)\] [^\r]*\r\n")


class Bulk(rs.ServerTestCase):
    server_options = {"workers": "1", "max_output_buffer": str(MAX_OUTPUT)}
    users_per_class = 8

    @classmethod
    def prepare_server(cls, server):
        server.import_mbox("user0", "INBOX", [tiny(i) for i in range(NFLAG)])
        server.import_mbox("user1", "INBOX", [tiny(i, i < NEXP // 2) for i in range(NEXP)])
        server.import_mbox("user2", "INBOX", [tiny(i, i % 2 == 0) for i in range(NFLAG)])

    def setUp(self):
        super().setUp()
        self.raws = []

    def tearDown(self):
        for r in self.raws:
            r.close()
        super().tearDown()

    def raw(self, user, select="INBOX"):
        r = Raw(self.server, user, "pw%s-secret" % user[4:], select=select)
        self.raws.append(r)
        return r

    def bounded_while_unread(self, send, before, what):
        """send() makes the server owe a big answer to a client that does
        not read; the server's memory stays near max_output_buffer and a
        bystander on the same worker is answered meanwhile."""
        by = self.login(user="user7", password="pw7-secret", select="INBOX")
        pid = self.server.proc.pid
        send()
        worst, n = 0.0, 0
        t_end = time.monotonic() + (3 if QUICK else 2)
        while time.monotonic() < t_end:
            t = time.monotonic()
            self.ok(by, "NOOP", timeout=60)
            worst = max(worst, time.monotonic() - t)
            n += 1
            time.sleep(0.01)
        grown = rss_anon_kib(pid) - before
        print("MEASURE", what, "worst %.3f s" % worst, "grown %d KiB" % grown, file=sys.stderr)
        self.assertLess(grown * 1024, RSS_BOUND,
                        "%s: server memory grew by %d KiB for a client that does not read"
                        % (what, grown))
        self.assertLess(worst, 2.0, "%s: a bystander's NOOP waited %.1f s" % (what, worst))
        self.assertGreater(n, 5)

    def check_flag_lines(self, data, want_seqs, keywords):
        # New keywords are announced first (FLAGS, PERMANENTFLAGS), once,
        # before the first FETCH that shows them.
        m = ANNOUNCE_RE.match(data)
        if m:
            self.assertEqual(set(keywords) - set(m.group(1).decode().split()), set())
            data = data[m.end():]
        else:
            self.assertNotRegex(data, rb"\* FLAGS ", "FLAGS announced after a FETCH")
        lines = FETCH_RE.findall(data)
        self.assertEqual(len(lines), len(want_seqs), data[:300])
        self.assertEqual([int(x) for x, _ in lines], want_seqs)
        for _, fl in lines:
            self.assertEqual(set(keywords) - set(fl.decode().split()), set())
        # nothing but these lines and the tagged answer
        self.assertEqual(len(data), sum(len(m.group(0)) for m in FETCH_RE.finditer(data))
                         + len(data.split(b"\r\n")[-2]) + 2, data[-300:])

    def test_store_answer_in_steps(self):
        slow = self.raw("user0")
        before = rss_anon_kib(self.server.proc.pid)
        self.bounded_while_unread(
            lambda: slow.s.sendall(b"a STORE 1:* +FLAGS %s\r\n" % KWLIST.encode()),
            before, "STORE")
        got = slow.tagged(b"a", timeout=120)
        self.assertTrue(got.endswith(b"a OK STORE completed\r\n"), got[-200:])
        self.check_flag_lines(got, list(range(1, NFLAG + 1)), KEYWORDS)
        # UID STORE: the same in steps, with the UIDs
        slow.s.sendall(b"u UID STORE 1:* -FLAGS (%s)\r\n" % KEYWORDS[0].encode())
        got = slow.tagged(b"u", timeout=120)
        uids = re.findall(rb"\* (\d+) FETCH \(FLAGS \([^)]*\) UID (\d+)\)\r\n", got)
        self.assertEqual(len(uids), NFLAG)
        self.assertEqual([int(a) for a, _ in uids], list(range(1, NFLAG + 1)))
        self.assertNotIn(KEYWORDS[0].encode(), got)
        # FETCH BODY[] sets \\Seen on every message first (a write as big
        # as the STORE), then answers in steps, showing it
        slow.s.sendall(b"b FETCH 1:* (BODY[TEXT])\r\n")
        got = slow.tagged(b"b", timeout=120)
        self.assertTrue(got.endswith(b"b OK FETCH completed\r\n"), got[-200:])
        seen = re.findall(rb"\* (\d+) FETCH \(FLAGS \([^)]*\\Seen[^)]*\) BODY\[TEXT\] \{3\}\r\nx\r\n\)",
                          got)
        self.assertEqual([int(x) for x in seen], list(range(1, NFLAG + 1)), got[:300])
        # a client that leaves mid-answer: freed (ASan), the server goes on
        gone = self.raw("user0")
        gone.s.sendall(b"g STORE 1:* FLAGS %s\r\n" % KWLIST.encode())
        time.sleep(0.3)
        gone.close()
        self.raws.remove(gone)
        self.ok(self.login(user="user6", password="pw6-secret"), "NOOP")

    def test_a_select_built_in_steps(self):
        # first (names sort): user1's mailbox is still whole.  The view of
        # a big mailbox is built in steps; the answer is the same
        c = self.raw("user1", select=None)
        c.s.sendall(b"x EXAMINE INBOX\r\n")
        got = c.tagged(b"x", timeout=60)
        self.assertIn(b"* %d EXISTS\r\n" % NEXP, got)
        self.assertIn(b"* OK [UNSEEN 1] ", got)
        self.assertIn(b"* OK [UIDNEXT %d] " % (NEXP + 1), got)
        self.assertTrue(got.endswith(b"x OK [READ-ONLY] EXAMINE completed\r\n"), got)
        c.s.sendall(b"f FETCH %d (UID)\r\n" % NEXP)
        self.assertIn(b"* %d FETCH (UID %d)\r\n" % (NEXP, NEXP), c.tagged(b"f"))
        # a session that leaves while its SELECT is being built: freed
        # (ASan), and the mailbox can be selected again
        for k in range(3):
            g = self.raw("user1", select=None)
            g.s.sendall(b"s EXAMINE INBOX\r\n")
            g.close()
            self.raws.remove(g)
        c.s.sendall(b"y EXAMINE INBOX\r\n")
        self.assertIn(b"* %d EXISTS\r\n" % NEXP, c.tagged(b"y", timeout=60))

    def test_expunge_in_steps(self):
        slow = self.raw("user1")
        before = rss_anon_kib(self.server.proc.pid)
        self.bounded_while_unread(lambda: slow.s.sendall(b"e EXPUNGE\r\n"), before, "EXPUNGE")
        got = slow.tagged(b"e", timeout=120)
        self.assertTrue(got.endswith(b"e OK EXPUNGE completed\r\n"), got[-200:])
        seqs = [int(x) for x in re.findall(rb"\* (\d+) EXPUNGE\r\n", got)]
        # from the top, so each number is valid when read
        self.assertEqual(seqs, list(range(NEXP // 2, 0, -1)))
        # the view is what the client thinks it is
        slow.s.sendall(b"f FETCH %d,%d (UID)\r\nc FETCH 1:* (UID)\r\n" % (1, NEXP // 2))
        got = slow.tagged(b"f")
        self.assertIn(b"* 1 FETCH (UID %d)\r\n" % (NEXP // 2 + 1), got)
        self.assertIn(b"* %d FETCH (UID %d)\r\n" % (NEXP // 2, NEXP), got)
        got = slow.tagged(b"c", timeout=120)
        self.assertEqual(re.findall(rb"\* (\d+) FETCH \(UID (\d+)\)", got),
                         [(b"%d" % (k + 1), b"%d" % (NEXP // 2 + k + 1))
                          for k in range(NEXP // 2)])
        # CLOSE expunges silently (on the pool, for a mailbox this big)
        slow.s.sendall(b"d STORE 1:1000 +FLAGS.SILENT (\\Deleted)\r\nz CLOSE\r\n"
                       b"x EXAMINE INBOX\r\n")
        got = slow.tagged(b"z", timeout=120)
        self.assertNotIn(b"EXPUNGE", got)
        self.assertTrue(got.endswith(b"z OK CLOSE completed\r\n"), got[-200:])
        self.assertIn(b"* %d EXISTS\r\n" % (NEXP // 2 - 1000), slow.tagged(b"x", timeout=60))

    def test_others_changes_in_steps(self):
        slow = self.raw("user2")
        idler = self.raw("user2")
        idler.s.sendall(b"i IDLE\r\n")
        idler.read_until(b"+ idling\r\n")
        idler.buf = b""
        other = self.login(user="user2", password="pw2-secret", select="INBOX")
        # flags: another session changes every message
        before = rss_anon_kib(self.server.proc.pid)

        def flag_all():
            self.ok(other, "STORE 1:* +FLAGS.SILENT %s" % KWLIST, timeout=120)
            slow.s.sendall(b"n NOOP\r\n")
        self.bounded_while_unread(flag_all, before, "flags changed by another session")
        got = slow.tagged(b"n", timeout=120)
        self.assertTrue(got.endswith(b"n OK NOOP completed\r\n"), got[-200:])
        self.check_flag_lines(got.replace(b" \\Recent", b"").replace(b"\\Deleted ", b""),
                              list(range(1, NFLAG + 1)), KEYWORDS)
        # a FETCH long enough to run in steps, then the updates before its
        # tagged answer (in steps of their own, after the FETCH's)
        self.ok(other, "STORE 1:* -FLAGS.SILENT (%s)" % KEYWORDS[0], timeout=120)
        slow.s.sendall(b"g FETCH 1:* (UID)\r\n")
        got = slow.tagged(b"g", timeout=120)
        self.assertTrue(got.endswith(b"g OK FETCH completed\r\n"), got[-200:])
        uids = re.findall(rb"\* (\d+) FETCH \(UID (\d+)\)\r\n", got)
        self.assertEqual(uids, [(b"%d" % k, b"%d" % k) for k in range(1, NFLAG + 1)])
        tail = got[got.index(b"* %d FETCH (UID %d)\r\n" % (NFLAG, NFLAG)):]
        flags = re.findall(rb"\* (\d+) FETCH \(FLAGS \(([^)]*)\)\)\r\n", tail)
        self.assertEqual([int(x) for x, _ in flags], list(range(1, NFLAG + 1)))
        self.assertFalse([f for _, f in flags if KEYWORDS[0].encode() in f])
        # the IDLE session was told the same, and ends its IDLE
        idler.read_until(b"* %d FETCH" % NFLAG, timeout=120)
        idler.read_until(b")\r\n", start=idler.buf.rindex(b"* %d FETCH" % NFLAG))
        idler.s.sendall(b"DONE\r\n")
        got = idler.tagged(b"i", timeout=60)
        self.assertTrue(got.endswith(b"i OK IDLE terminated\r\n"), got[-200:])
        self.assertEqual([int(x) for x in re.findall(rb"\* (\d+) FETCH", got)],
                         list(range(1, NFLAG + 1)) * 2)
        # expunges: the even-numbered ones were \Deleted
        idler.s.sendall(b"j IDLE\r\n")
        idler.read_until(b"+ idling\r\n")
        idler.buf = b""
        r = self.ok(other, "EXPUNGE", timeout=120)
        self.assertEqual(len(r.of("EXPUNGE")), NFLAG // 2)
        slow.s.sendall(b"x NOOP\r\n")
        got = slow.tagged(b"x", timeout=120)
        self.assertTrue(got.endswith(b"x OK NOOP completed\r\n"), got[-200:])
        seqs = [int(x) for x in re.findall(rb"\* (\d+) EXPUNGE\r\n", got)]
        self.assertEqual(seqs, list(range(NFLAG - 1, 0, -2)))
        slow.s.sendall(b"f FETCH 1:* (UID)\r\n")
        got = slow.tagged(b"f", timeout=120)
        self.assertEqual(re.findall(rb"\* (\d+) FETCH \(UID (\d+)\)", got),
                         [(b"%d" % (k + 1), b"%d" % (2 * k + 2)) for k in range(NFLAG // 2)])
        idler.read_until(b"* 1 EXPUNGE\r\n", timeout=120)
        idler.s.sendall(b"DONE\r\n")
        got = idler.tagged(b"j", timeout=60)
        self.assertEqual([int(x) for x in re.findall(rb"\* (\d+) EXPUNGE\r\n", got)],
                         list(range(NFLAG - 1, 0, -2)))
        self.assertTrue(got.endswith(b"j OK IDLE terminated\r\n"), got[-200:])


rs.parametrize(globals(), Bulk)

if __name__ == "__main__":
    rs.main()
