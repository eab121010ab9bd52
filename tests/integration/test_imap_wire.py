#!/usr/bin/env python3
"""ringmaild on the wire (raw sockets): commands in 1-byte and random pieces,
synchronizing literals and LITERAL+, pipelining, over-long lines, huge
literals, garbage, clients that vanish mid-command; IDLE (RFC 2177) with
EXISTS/FETCH/EXPUNGE from another session; when untagged EXPUNGE may and may
not be sent (RFC 3501 5.3, 7.4.1).  Runs once per io backend."""

import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


def msg(i, size=0):
    return (b"From: w%d@example.com\r\nSubject: wire %d\r\n\r\nbody %d\r\n" % (i, i, i)
            + b"x" * size + (b"\r\n" if size else b""))


class Wire(rs.ServerTestCase):

    def login_cmd(self):
        return "LOGIN %s %s" % (quote(self.user), quote(self.password))

    def read_tagged(self, c, tag, timeout=None):
        u, t, conts = c.read_until_tag(tag, timeout)
        return u, t, conts

    # -- framing --

    def send_bytewise(self, c, data):
        for i in range(len(data)):
            c.sock.send(data[i:i + 1])
            time.sleep(0.001)

    def test_one_byte_pieces(self):
        c = self.connect()
        data = ("a1 %s\r\na2 SELECT INBOX\r\n" % self.login_cmd()).encode()
        data += b"a3 APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg(1)), msg(1))
        self.send_bytewise(c, data)
        for tag in ("a1", "a2", "a3"):
            u, t, _ = self.read_tagged(c, tag)
            self.assertEqual(t.status()[0], "OK", t)
        self.send_bytewise(c, b"a4 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        u, t, _ = self.read_tagged(c, "a4")
        self.assertEqual(t.status()[0], "OK", t)
        self.assertIn(b"Subject: wire 1", b"".join(x.raw for x in u))

    def test_random_pieces(self):
        rnd = random.Random(7)
        c = self.connect()
        self.ok(c, self.login_cmd())
        self.ok(c, "SELECT INBOX")
        for i in range(25):
            m = msg(i, rnd.randint(0, 3000))
            data = b"p%d APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n" % (i, len(m), m)
            self.send_pieces(c, data, rnd)
            u, t, _ = self.read_tagged(c, "p%d" % i)
            self.assertEqual(t.status()[0], "OK", t)
            self.send_pieces(c, b"q%d FETCH %d (BODY.PEEK[] FLAGS)\r\n" % (i, i + 1), rnd)
            u, t, _ = self.read_tagged(c, "q%d" % i)
            self.assertEqual(t.status()[0], "OK", t)
            body = [rs.fetch_dict(x) for x in u if x.kind() == "FETCH"]
            self.assertEqual(bytes(body[-1]["BODY[]"]), m)

    def send_pieces(self, c, data, rnd):
        pos = 0
        while pos < len(data):
            n = rnd.choice([1, 2, 3, 7, 50, 500, 4096])
            c.sock.sendall(data[pos:pos + n])
            pos += n
            if rnd.random() < 0.3:
                time.sleep(0.002)

    def test_synchronizing_literal(self):
        c = self.connect()
        c.send(b"a1 LOGIN {%d}\r\n" % len(self.user))
        r = c.read()
        self.assertTrue(r.continuation, "synchronizing literal needs '+', got %r" % r)
        c.send(self.user.encode() + b" {%d}\r\n" % len(self.password))
        r = c.read()
        self.assertTrue(r.continuation, "second literal needs '+', got %r" % r)
        c.send(self.password.encode() + b"\r\n")
        u, t, _ = self.read_tagged(c, "a1")
        self.assertEqual(t.status()[0], "OK", t)
        # a literal of 0 bytes
        c.send(b"a2 SELECT {5}\r\n")
        self.assertTrue(c.read().continuation)
        c.send(b"INBOX\r\n")
        u, t, _ = self.read_tagged(c, "a2")
        self.assertEqual(t.status()[0], "OK", t)
        c.send(b"a3 STATUS {0}\r\n")
        r = c.read()
        if r.continuation:
            c.send(b" (MESSAGES)\r\n")
            u, t, _ = self.read_tagged(c, "a3")
        else:
            t = r
        self.assertIn(t.status()[0], ("NO", "BAD"), "STATUS of the empty name: %r" % t)

    def test_literal_plus_no_continuation(self):
        c = self.connect()
        caps = c.capabilities()
        if "LITERAL+" not in caps:
            self.skipTest("LITERAL+ not advertised (LITERAL- only)")
        c.send(b"a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(self.user), self.user.encode(),
                                                         len(self.password), self.password.encode()))
        u, t, conts = self.read_tagged(c, "a1")
        self.assertEqual(conts, [], "LITERAL+ must not get a continuation")
        self.assertEqual(t.status()[0], "OK", t)
        big = msg(1, 100000)
        c.send(b"a2 APPEND INBOX {%d+}\r\n%s\r\n" % (len(big), big))
        u, t, conts = self.read_tagged(c, "a2")
        self.assertEqual(conts, [])
        self.assertEqual(t.status()[0], "OK", t)

    def test_pipelining(self):
        c = self.connect()
        self.ok(c, self.login_cmd())
        c.send("b1 NOOP\r\nb2 CAPABILITY\r\nb3 SELECT INBOX\r\n")
        order = []
        u2 = None
        while len(order) < 3:
            r = c.read()
            if not r.untagged:
                order.append(r.tag)
                self.assertEqual(r.status()[0], "OK", r)
            elif r.kind() == "CAPABILITY":
                u2 = len(order)
        self.assertEqual(order, ["b1", "b2", "b3"])
        self.assertEqual(u2, 1, "CAPABILITY data must come between b1 and b2's OK")
        # a larger pipeline mixing writes and reads
        parts = []
        for i in range(30):
            m = msg(i)
            parts.append(b"w%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(m), m))
            parts.append(b"r%d UID SEARCH ALL\r\n" % i)
        c.send(b"".join(parts))
        for i in range(30):
            u, t, _ = self.read_tagged(c, "w%d" % i)
            self.assertEqual(t.status()[0], "OK", t)
            u, t, _ = self.read_tagged(c, "r%d" % i)
            self.assertEqual(t.status()[0], "OK", t)
            s = [x for x in u if x.kind() == "SEARCH"]
            self.assertEqual(len(s), 1, "pipelined commands must be answered in order "
                             "(design.md): r%d got %r" % (i, u))
            self.assertEqual(len(s[0].raw.split()) - 2, i + 1,
                             "SEARCH r%d must see the %d APPENDs before it" % (i, i + 1))

    def test_long_line(self):
        c = self.connect()
        self.ok(c, self.login_cmd())
        self.ok(c, "SELECT INBOX")
        line = b"a1 SEARCH " + b"ALL " * 40000 + b"ALL\r\n"      # ~160 KB
        c.send(line)
        got = []
        while True:
            try:
                r = c.read(timeout=10)
            except ConnectionError:
                self.fail("server closed the connection on an over-long line; documented "
                          "behaviour (core/imap/imap_args.h) is BAD and skip to the line end: %r"
                          % got)
            got.append(r)
            if r.tag in ("a1", "*") and r.status() and r.status()[0] in ("BAD", "NO", "BYE"):
                break
            self.assertFalse(r.tag == "a1" and r.status()[0] == "OK",
                             "160 KB line accepted; max_line is 64 KiB")
        self.assertEqual(got[-1].status()[0], "BAD", got)
        self.ok(c, "NOOP")
        self.ok(c, "SEARCH ALL")

    def literal_limit(self, c):
        for cap in c.capabilities():
            if cap.startswith("APPENDLIMIT="):
                return int(cap.split("=")[1])
        return 64 << 20

    def test_huge_sync_literal(self):
        c = self.connect()
        self.ok(c, self.login_cmd())
        lim = self.literal_limit(c)
        c.send(b"a1 APPEND INBOX {%d}\r\n" % (lim + 1))
        r = c.read()
        self.assertFalse(r.continuation, "a literal above the limit must not get '+'")
        self.assertEqual(r.tag, "a1", r)
        st = r.status()
        self.assertTrue(st[0] == "BAD" or (st[0] == "NO" and (st[1] or "").upper() == "TOOBIG"),
                        "want NO [TOOBIG] or BAD, got %r" % r)
        self.ok(c, "NOOP")
        c.send(b"a2 LOGIN {4000000000}\r\n")
        r = c.read()
        self.assertFalse(r.continuation)
        self.assertIn(r.status()[0], ("BAD", "NO"), r)
        self.ok(c, "NOOP")

    def test_huge_nonsync_literal(self):
        c = self.connect()
        self.ok(c, self.login_cmd())
        lim = self.literal_limit(c)
        if lim > 256 << 20:
            self.skipTest("APPENDLIMIT %d too large to exceed in a test" % lim)
        size = lim + 1
        c.send(b"a1 APPEND INBOX {%d+}\r\n" % size)
        chunk = b"X" * (1 << 20)
        sent = 0
        early = []
        c.sock.settimeout(30)
        try:
            while sent < size:
                n = min(len(chunk), size - sent)
                c.sock.sendall(chunk[:n])
                sent += n
                early += c.pending(0)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not c.closed:
            try:
                c.sock.sendall(b"\r\n")
            except OSError:
                pass
        got = early + c.pending(5)
        tagged = [r for r in got if r.tag == "a1"]
        bye = [r for r in got if r.untagged and r.status() and r.status()[0] == "BYE"]
        if bye:
            # RFC 7888 4 allows BYE and close
            self.assertTrue(c.closed or c.wait_closed(5), "BYE but the connection stays open")
            return
        self.assertEqual(len(tagged), 1, "no answer to an oversized LITERAL+ APPEND: %r" % got)
        st = tagged[0].status()
        self.assertTrue(st[0] == "BAD" or (st[0] == "NO" and (st[1] or "").upper() == "TOOBIG"),
                        "want NO [TOOBIG] or BAD, got %r" % tagged[0])
        r = self.ok(c, "NOOP")
        r = self.ok(c, "STATUS INBOX (MESSAGES)")
        self.assertIn(b"MESSAGES 0", r.of("STATUS")[0].raw)

    def test_garbage(self):
        c = self.connect()
        c.send(b"a1 NOOP\x00junk\r\n")
        r = c.read()
        self.assertEqual(r.status() and r.status()[0], "BAD", "NUL in a command: %r" % r)
        self.ok(c, "NOOP")
        # repeated binary garbage: BAD each time, or finally BYE and close
        rnd = random.Random(3)
        closed = False
        for i in range(200):
            junk = bytes(rnd.randrange(1, 256) for _ in range(rnd.randint(1, 200)))
            junk = junk.replace(b"\r", b"").replace(b"\n", b"").replace(b"{", b"")
            try:
                c.sock.sendall(junk + b"\r\n")
            except OSError:
                closed = True
                break
        got = c.pending(3)
        if closed or c.closed:
            self.assertTrue(any(r.status() and r.status()[0] == "BYE" for r in got),
                            "closed without BYE: %r" % got[-3:])
        else:
            self.assertTrue(all(r.status() and r.status()[0] in ("BAD", "BYE") for r in got),
                            [r for r in got if not r.status()][:5])
        # the server still serves others
        c2 = self.connect()
        self.ok(c2, self.login_cmd())

    def test_client_vanishes(self):
        c = self.connect()
        self.ok(c, self.login_cmd())
        c.send(b"a1 APPEND INBOX {100000+}\r\n" + b"x" * 5000)
        time.sleep(0.1)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        c2 = self.connect()
        self.ok(c2, self.login_cmd())
        r = self.ok(c2, "STATUS INBOX (MESSAGES)")
        self.assertIn(b"MESSAGES 0", r.of("STATUS")[0].raw, "half an APPEND must not be stored")
        big = msg(1, 3_000_000)
        self.expect(c2.append("INBOX", big), "OK")
        for i in range(5):
            c3 = self.connect()
            self.ok(c3, self.login_cmd())
            self.ok(c3, "SELECT INBOX")
            c3.send("f FETCH 1 BODY.PEEK[]\r\n")
            c3.close()
            c4 = self.connect()
            c4.send("i IDLE\r\n")
            c4.close()
        self.ok(c2, "NOOP")
        self.ok(c2, "SELECT INBOX")

    # -- IDLE --

    def start_idle(self, c, tag="i1"):
        c.send(tag + " IDLE\r\n")
        r = c.read()
        while r.untagged:
            r = c.read()
        self.assertTrue(r.continuation, "IDLE: want '+ idling', got %r" % r)

    def wait_for(self, c, pred, timeout=2.0):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            for r in c.pending(0.05):
                seen.append(r)
                if pred(r):
                    return r, seen
        self.fail("nothing matching within %.1f s; got %r" % (timeout, seen))

    def stop_idle(self, c, tag="i1"):
        c.send("DONE\r\n")
        u, t, _ = self.read_tagged(c, tag)
        self.assertEqual(t.status()[0], "OK", t)
        return u

    def test_idle_exists(self):
        a = self.login(select="INBOX")
        b = self.login()
        self.start_idle(a)
        self.expect(b.append("INBOX", msg(1)), "OK")
        r, _ = self.wait_for(a, lambda r: r.kind() == "EXISTS")
        self.assertEqual(r.number(), 1)
        self.expect(b.append("INBOX", msg(2)), "OK")
        self.expect(b.append("INBOX", msg(3)), "OK")
        r, _ = self.wait_for(a, lambda r: r.kind() == "EXISTS" and r.number() == 3)
        self.stop_idle(a)
        r = self.ok(a, "FETCH 1:* UID")
        self.assertEqual(len(r.of("FETCH")), 3)

    def test_idle_flags_and_expunge(self):
        a = self.login()
        self.append_msgs(a, "INBOX", [msg(1), msg(2), msg(3)])
        self.ok(a, "SELECT INBOX")
        b = self.login(select="INBOX")
        self.start_idle(a)
        self.ok(b, "STORE 1 +FLAGS.SILENT (\\Flagged)")
        r, _ = self.wait_for(a, lambda r: r.kind() == "FETCH")
        self.assertEqual(r.number(), 1)
        self.assertIn("\\FLAGGED", [f.upper() for f in rs.fetch_dict(r)["FLAGS"]])
        self.ok(b, "STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.ok(b, "EXPUNGE")
        r, _ = self.wait_for(a, lambda r: r.kind() == "EXPUNGE")
        self.assertEqual(r.number(), 2)
        self.stop_idle(a)
        r = self.ok(a, "FETCH 1:* FLAGS")
        self.assertEqual(sorted(r.fetches()), [1, 2])

    def test_idle_authenticated_state_and_errors(self):
        a = self.login()
        self.start_idle(a, "i1")
        self.assertEqual(a.pending(0.3), [])
        self.stop_idle(a, "i1")
        self.ok(a, "SELECT INBOX")
        self.start_idle(a, "i2")
        a.send("NOTDONE\r\n")
        u, t, _ = self.read_tagged(a, "i2")
        self.assertEqual(t.status()[0], "BAD", "RFC 2177: anything but DONE ends IDLE with BAD")
        self.ok(a, "NOOP")
        self.start_idle(a, "i3")
        a.send("done\r\n")        # case-insensitive
        u, t, _ = self.read_tagged(a, "i3")
        self.assertEqual(t.status()[0], "OK", t)
        self.expect(a.cmd("IDLE extra"), "BAD")

    def test_idle_two_watchers_other_user_untouched(self):
        a1 = self.login(select="INBOX")
        a2 = self.login(select="INBOX")
        other = self.login(user="user%d" % (self.users_per_class - 1),
                           password="pw%d-secret" % (self.users_per_class - 1), select="INBOX")
        for c in (a1, a2, other):
            self.start_idle(c)
        b = self.login()
        self.expect(b.append("INBOX", msg(1)), "OK")
        for c in (a1, a2):
            self.wait_for(c, lambda r: r.kind() == "EXISTS" and r.number() == 1)
        self.assertEqual(other.pending(0.5), [], "another user's IDLE got an event")
        for c in (a1, a2, other):
            self.stop_idle(c)

    # -- when updates may be sent --

    def test_not_idle_gets_exists_by_noop(self):
        a = self.login(select="INBOX")
        b = self.login()
        self.expect(b.append("INBOX", msg(1)), "OK")
        early = a.pending(1.0)          # allowed (RFC 3501 5.3) but not required
        for r in early:
            self.assertTrue(r.untagged and r.kind() in ("EXISTS", "RECENT", "FETCH"), r)
        r = self.ok(a, "NOOP")
        ex = [x.number() for x in early + r.untagged if x.kind() == "EXISTS"]
        self.assertEqual(ex[-1:], [1], "EXISTS must be reported by the end of NOOP")

    def test_no_unsolicited_expunge(self):
        a = self.login()
        self.append_msgs(a, "INBOX", [msg(1), msg(2), msg(3)])
        self.ok(a, "SELECT INBOX")
        b = self.login(select="INBOX")
        self.ok(b, "STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.ok(b, "EXPUNGE")
        early = a.pending(1.5)
        self.assertEqual([r for r in early if r.kind() == "EXPUNGE"], [],
                         "RFC 3501 5.3: EXPUNGE MUST NOT be sent when no command is in progress")
        r = self.ok(a, "NOOP")
        self.assertEqual(r.numbers("EXPUNGE"), [2], r.describe())

    def test_no_expunge_during_fetch_store_search(self):
        a = self.login()
        uids = self.append_msgs(a, "INBOX", [msg(1), msg(2), msg(3)])
        self.ok(a, "SELECT INBOX")
        b = self.login(select="INBOX")
        self.ok(b, "STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.ok(b, "EXPUNGE")
        time.sleep(0.3)
        r = a.cmd("FETCH 1:3 (UID FLAGS)")
        self.assertIn(r.status, ("OK", "NO"), r.describe())
        self.assertEqual(r.of("EXPUNGE"), [], "RFC 3501 7.4.1: no EXPUNGE during FETCH:\n"
                         + r.describe())
        got = r.fetches()
        self.assertEqual(got.get(1, {}).get("UID"), uids[0], r.describe())
        self.assertEqual(got.get(3, {}).get("UID"), uids[2],
                         "message 3 keeps its number until the EXPUNGE is reported:\n"
                         + r.describe())
        r = a.cmd("STORE 3 +FLAGS (\\Seen)")
        self.assertIn(r.status, ("OK", "NO"))
        self.assertEqual(r.of("EXPUNGE"), [], "no EXPUNGE during STORE:\n" + r.describe())
        self.assertEqual(r.fetches().get(3, {}).get("FLAGS") is not None, True, r.describe())
        r = a.cmd("SEARCH ALL")
        self.assertEqual(r.of("EXPUNGE"), [], "no EXPUNGE during SEARCH:\n" + r.describe())
        self.assertTrue(set(r.search()) in ({1, 2, 3}, {1, 3}), r.describe())
        r = a.cmd("FETCH 2 BODY[]")
        self.assertIn(r.status, ("OK", "NO"), "FETCH of a message expunged elsewhere")
        self.assertEqual(r.of("EXPUNGE"), [])
        r = self.ok(a, "NOOP")
        self.assertEqual(r.numbers("EXPUNGE"), [2], r.describe())
        r = self.ok(a, "FETCH 1:* (UID FLAGS)")
        f = r.fetches()
        self.assertEqual([f[i]["UID"] for i in sorted(f)], [uids[0], uids[2]])
        self.assertIn("\\SEEN", [x.upper() for x in f[2]["FLAGS"]])


rs.parametrize(globals(), Wire)

if __name__ == "__main__":
    rs.main()
