"""Long commands run in slices and stop for slow readers: a client that does
not read cannot make the server buffer more than about max_output_buffer,
a bystander on the same worker is answered while another session runs a
heavy pipeline, and an answer produced in many steps (the client reading
slowly, the output queue filling and draining) is byte for byte the one a
client reading eagerly gets, and the one the messages give one by one.

RINGMAIL_TEST_QUICK=1 (the sanitizer run) uses a smaller mailbox."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"
NMSG = 1000 if QUICK else 3000
MAX_OUTPUT = 1 << 20
NMBOX = 300 if QUICK else 1000
NTINY = 5000 if QUICK else 20000


def message(i):
    """About 6 KB of header (copied into the answer, not sent by reference)
    and 2 KB of body; every 97th message has the word "needle"."""
    hdr = [b"From: Sender %d <s%d@example.org>" % (i, i),
           b"To: rcpt%d@example.net" % (i % 13),
           b"Subject: message number %d" % i,
           b"Date: Mon, 7 Feb 2022 21:52:25 -0800",
           b"Message-ID: <m%d@example.org>" % i]
    hdr += [b"X-Filler-%d: %s" % (k, (b"%d-" % i) * 20) for k in range(60)]
    word = b"needle" if i % 97 == 0 else b"haystack"
    body = b"".join(b"line %d of %d says %s\r\n" % (k, i, word if k == 40 else b"hay")
                    for k in range(80))
    return b"\r\n".join(hdr) + b"\r\n\r\n" + body


class Raw:
    """A raw connection whose reading the test controls."""

    def __init__(self, server, user, password, select="INBOX"):
        self.s = socket.create_connection((server.host, server.port), timeout=30)
        self.buf = b""
        self.read_until(b"\r\n")
        self.s.sendall(b"l LOGIN %s %s\r\n" % (user.encode(), password.encode()))
        self.read_until(b"l OK")
        self.read_until(b"\r\n", start=self.buf.index(b"l OK"))
        if select:
            self.s.sendall(b"s SELECT %s\r\n" % select.encode())
            self.read_until(b"s OK")
            self.read_until(b"\r\n", start=self.buf.index(b"s OK"))
        self.buf = b""

    def read_until(self, marker, start=0, timeout=60):
        deadline = time.monotonic() + timeout
        while self.buf.find(marker, start) < 0:
            self.s.settimeout(max(0.1, deadline - time.monotonic()))
            d = self.s.recv(1 << 20)
            if not d:
                raise AssertionError("connection closed; got %r" % self.buf[-300:])
            self.buf += d
            if time.monotonic() > deadline:
                raise AssertionError("timeout waiting for %r" % marker)
        return self.buf

    def tagged(self, tag, timeout=60):
        """Everything up to and including the tagged line of tag."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf.startswith(tag + b" "):
                i = -2
            else:
                i = self.buf.find(b"\r\n" + tag + b" ")
            if i != -1 or self.buf.startswith(tag + b" "):
                j = self.buf.find(b"\r\n", i + 2)
                if j >= 0:
                    out, self.buf = self.buf[:j + 2], self.buf[j + 2:]
                    return out
            self.s.settimeout(max(0.1, deadline - time.monotonic()))
            d = self.s.recv(1 << 20)
            if not d:
                raise AssertionError("connection closed; got %r" % self.buf[-300:])
            self.buf += d
            if time.monotonic() > deadline:
                raise AssertionError("timeout waiting for %r" % tag)

    def close(self):
        self.s.close()


def split_answers(data, tags):
    out = []
    for t in tags:
        m = b"\r\n" + t + b" "
        i = data.index(m) if not data.startswith(t + b" ") else -2
        j = data.index(b"\r\n", i + 2) + 2
        out.append(data[:j])
        data = data[j:]
    assert data == b"", data[:200]
    return out


class Slices(rs.ServerTestCase):
    # fsync = batch: a FETCH that sets \\Seen holds its answer until the flag
    # is on disk, then goes on in slices
    server_options = {"workers": "1", "max_output_buffer": str(MAX_OUTPUT), "fsync": "batch"}
    users_per_class = 8

    @classmethod
    def prepare_server(cls, server):
        server.import_mbox("user0", "INBOX", [message(i) for i in range(NMSG)])
        server.import_mbox("user1", "INBOX", [b"Subject: m%d\r\n\r\nx\r\n" % i
                                              for i in range(NTINY)])

    def setUp(self):
        super().setUp()
        self.user, self.password = "user0", "pw0-secret"
        self.raws = []

    def tearDown(self):
        for r in self.raws:
            r.close()
        super().tearDown()

    def raw(self, **kw):
        r = Raw(self.server, self.user, self.password, **kw)
        self.raws.append(r)
        return r

    FETCH = b"FETCH 1:* (UID ENVELOPE BODY.PEEK[HEADER])"

    def test_non_reading_client_is_bounded_and_answer_complete(self):
        # the reference answer, read eagerly (also maps the mailbox's files,
        # which count in RSS, before the baseline is taken)
        eager = self.raw()
        eager.s.sendall(b"r " + self.FETCH + b"\r\n")
        ref = eager.tagged(b"r")
        self.assertTrue(ref.endswith(b"r OK FETCH completed\r\n"), ref[-200:])
        self.assertEqual(ref.count(b" FETCH (UID "), NMSG)
        self.assertGreater(len(ref), 4 * MAX_OUTPUT)
        # one by one: the big answer is the concatenation of the small ones
        eager.s.sendall(b"".join(b"o%d FETCH %d (UID ENVELOPE BODY.PEEK[HEADER])\r\n"
                                 % (i, i) for i in range(1, NMSG + 1)))
        ones = b"".join(eager.tagged(b"o%d" % i)[:-len(b"o%d OK FETCH completed\r\n" % i)]
                        for i in range(1, NMSG + 1))
        self.assertEqual(ones + b"r OK FETCH completed\r\n", ref)

        pid = self.server.proc.pid
        before = rs.rss_kib(pid)
        slow = self.raw()
        tags = [b"f%d" % k for k in range(4)]
        slow.s.sendall(b"".join(t + b" " + self.FETCH + b"\r\n" for t in tags))
        # give the server time to produce whatever it is going to buffer
        time.sleep(3 if QUICK else 2)
        grown = rs.rss_kib(pid) - before
        # 4 answers of len(ref) bytes were asked for; about max_output_buffer
        # may wait for the client (plus one message and allocator slack)
        self.assertLess(grown * 1024, 8 * MAX_OUTPUT + (24 << 20 if QUICK else 0),
                        "server RSS grew by %d KiB for a client that does not read "
                        "(answers: %d KiB)" % (grown, 4 * len(ref) // 1024))
        # meanwhile another session is served
        self.ok(self.login(), "NOOP")
        # now read: every answer complete and identical to the eager one
        for t in tags:
            got = slow.tagged(t, timeout=120)
            self.assertEqual(got, ref.replace(b"r OK FETCH", t + b" OK FETCH"))
        # a client that goes away in the middle of a FETCH (waiting for it
        # to read, snapshot pinned) and one in the middle of a SEARCH: their
        # state is freed (ASan's leak check when the class ends)
        gone = self.raw()
        gone.s.sendall(b"g " + self.FETCH + b"\r\n")
        gone2 = self.raw()
        gone2.s.sendall(b"".join(b"g%d SEARCH TEXT needle\r\n" % i for i in range(50)))
        time.sleep(0.5)
        for g in (gone, gone2):
            g.close()
            self.raws.remove(g)
        self.ok(self.login(), "NOOP")

    def test_bystander_answered_during_heavy_pipeline(self):
        heavy = self.raw()
        by = self.login()       # before the pipeline: logging in is measured too
        k = 60 if QUICK else 400
        heavy.s.sendall(b"".join(b"h%d SEARCH BODY needle\r\n" % i for i in range(k)))
        stop = threading.Event()
        got = []

        def drain():
            heavy.s.settimeout(0.5)
            while not stop.is_set():
                try:
                    d = heavy.s.recv(1 << 20)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                got.append(d)
        th = threading.Thread(target=drain)
        th.start()
        try:
            worst = 0.0
            t_end = time.monotonic() + (4 if QUICK else 3)
            n = 0
            while time.monotonic() < t_end:
                t = time.monotonic()
                self.ok(by, "NOOP", timeout=60)
                worst = max(worst, time.monotonic() - t)
                n += 1
                time.sleep(0.01)
        finally:
            stop.set()
            th.join()
        self.assertLess(worst, 2.0, "a NOOP waited %.1f s behind another session" % worst)
        self.assertGreater(n, 10)
        data = b"".join(got)
        # the heavy session made progress meanwhile, with correct answers
        want = b" ".join(b"%d" % (i + 1) for i in range(NMSG) if i % 97 == 0)
        self.assertIn(b"* SEARCH " + want + b"\r\nh0 OK SEARCH completed\r\n", data)
        # disconnecting mid-pipeline frees everything (ASan's leak check at
        # the end of the class), and the server goes on
        heavy.close()
        self.raws.remove(heavy)
        self.ok(self.login(), "NOOP")

    def test_bystander_answered_during_big_copies(self):
        self.user, self.password = "user1", "pw1-secret"
        heavy = self.raw()
        by = self.login(user="user2", password="pw2-secret")
        heavy.s.sendall(b"c CREATE Target\r\n")
        self.assertIn(b"c OK", heavy.tagged(b"c"))
        k = 20 if QUICK else 60
        heavy.s.sendall(b"".join(b"h%d COPY 1:* Target\r\n" % i for i in range(k)))
        worst, n = 0.0, 0
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            t = time.monotonic()
            self.ok(by, "NOOP", timeout=120)
            worst = max(worst, time.monotonic() - t)
            n += 1
            time.sleep(0.01)
        self.assertLess(worst, 2.0, "a NOOP waited %.1f s behind another session's COPY" % worst)
        # every copy answered so far is complete and atomic
        got = heavy.tagged(b"h0", timeout=120)
        self.assertEqual(got, b"h0 OK [COPYUID %s 1:%d 1:%d] COPY completed\r\n"
                         % (got.split()[3], NTINY, NTINY))
        # leave with copies still running or queued: freed (ASan), counted
        heavy.close()
        self.raws.remove(heavy)
        c = self.login()
        r = self.ok(c, "STATUS Target (MESSAGES)")
        m = int(r.untagged[0].raw.split(b"MESSAGES ")[1].split(b")")[0])
        self.assertEqual(m % NTINY, 0, "a COPY was acknowledged or stored in part: %d" % m)
        self.assertGreaterEqual(m, NTINY)

    def test_z_fetch_setting_seen_in_slices(self):
        # last (names sort): it changes user0's flags
        slow = self.raw()
        slow.s.sendall(b"f FETCH 1:* (FLAGS BODY[HEADER.FIELDS (SUBJECT)])\r\n"
                       b"n NOOP\r\n")
        time.sleep(1)
        got = slow.tagged(b"f", timeout=120)
        self.assertTrue(got.endswith(b"\r\nf OK FETCH completed\r\n"), got[-200:])
        self.assertEqual(got.count(b" FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {"),
                         NMSG)
        for i in range(NMSG):
            self.assertIn(b"* %d FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n"
                          b"Subject: message number %d\r\n\r\n)\r\n"
                          % (i + 1, len(b"Subject: message number %d\r\n\r\n" % i), i), got)
        self.assertTrue(slow.tagged(b"n").startswith(b"n OK"))
        c = self.login(select="INBOX")
        self.assertEqual(c.cmd("SEARCH UNSEEN").search(), [])

    def test_slow_reader_search_identical(self):
        # a result big enough for many slices and a full output queue
        cmds = [b"a SEARCH ALL", b"b UID SEARCH RETURN (ALL COUNT MIN MAX) NOT BODY needle",
                b"c SEARCH RETURN (ALL) OR BODY needle UID 1:%d" % (NMSG // 2),
                b"d SEARCH TEXT needle"]
        eager = self.raw()
        eager.s.sendall(b"".join(c + b"\r\n" for c in cmds * 30))
        ref = [eager.tagged(c.split()[0]) for c in cmds]
        self.assertIn(b"* SEARCH 1 2 3 ", ref[0])
        for c in cmds * 29:
            self.assertEqual(eager.tagged(c.split()[0]), ref[cmds.index(c)])
        # expected by rule
        self.assertEqual(ref[0], b"* SEARCH " + b" ".join(b"%d" % i for i in range(1, NMSG + 1))
                         + b"\r\na OK SEARCH completed\r\n")
        slow = self.raw()
        slow.s.sendall(b"".join(c + b"\r\n" for c in cmds * 30))
        time.sleep(1)
        for c in cmds * 30:
            self.assertEqual(slow.tagged(c.split()[0]), ref[cmds.index(c)])


class ListSlices(rs.ServerTestCase):
    server_options = {"workers": "1", "max_output_buffer": "65536"}
    users_per_class = 4

    def test_list_status_identical(self):
        c = self.login()
        names = ["box%04d/sub%d" % (i // 3, i % 3) for i in range(NMBOX)]
        c.send("".join("c%d CREATE %s\r\n" % (i, n) for i, n in enumerate(names)).encode())
        for i in range(len(names)):
            r = c.read_until_tag("c%d" % i)[1]
            self.assertEqual(r.status()[0], "OK", r)
        for i in range(0, len(names), 7):
            self.ok(c, "SUBSCRIBE %s" % names[i])
        cmds = [b'a LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UNSEEN) SUBSCRIBED)',
                b'b LSUB "" "*"', b'd LIST (SUBSCRIBED) "" "box*"']
        eager = Raw(self.server, self.user, self.password, select=None)
        try:
            eager.s.sendall(b"".join(x + b"\r\n" for x in cmds))
            ref = [eager.tagged(x.split()[0]) for x in cmds]
        finally:
            eager.close()
        parents = {n.split("/")[0] for n in names}
        self.assertEqual(ref[0].count(b"* STATUS "), NMBOX + len(parents) + 1)
        subscribed = {names[i] for i in range(0, len(names), 7)}
        for line in ref[0].split(b"\r\n"):
            if line.startswith(b"* LIST "):
                name = line.rsplit(b" ", 1)[1].decode().strip('"')
                attrs = line.split(b"(")[1].split(b")")[0].split()
                self.assertEqual(b"\\HasChildren" in attrs, name in parents, line)
                self.assertEqual(b"\\HasNoChildren" in attrs, name not in parents, line)
                self.assertEqual(b"\\Subscribed" in attrs, name in subscribed, line)
        # one by one
        one = Raw(self.server, self.user, self.password, select=None)
        try:
            lines = []
            for n in ["INBOX"] + sorted(set(names) | parents):
                one.s.sendall(b'x LIST "" "%s" RETURN (STATUS (MESSAGES UIDNEXT UNSEEN) '
                              b'SUBSCRIBED)\r\n' % n.encode())
                lines.append(one.tagged(b"x")[:-len(b"x OK LIST completed\r\n")])
        finally:
            one.close()
        self.assertEqual(b"".join(lines) + b"a OK LIST completed\r\n", ref[0])
        # one answer of a few times max_output_buffer, then a command sent
        # only once the server has stopped for the client: both answered
        slow = Raw(self.server, self.user, self.password, select=None)
        try:
            slow.s.sendall(cmds[0] + b"\r\n")
            time.sleep(0.5)
            slow.s.sendall(b"n NOOP\r\n")
            time.sleep(0.5)
            self.assertEqual(slow.tagged(b"a", timeout=20), ref[0])
            self.assertTrue(slow.tagged(b"n", timeout=20).startswith(b"n OK"))
        finally:
            slow.close()
        slow = Raw(self.server, self.user, self.password, select=None)
        try:
            slow.s.sendall(b"".join(x + b"\r\n" for x in cmds * 5))
            time.sleep(1)
            for x in cmds * 5:
                self.assertEqual(slow.tagged(x.split()[0]), ref[cmds.index(x)])
        finally:
            slow.close()


rs.parametrize(globals(), Slices, ListSlices)

if __name__ == "__main__":
    rs.main()
