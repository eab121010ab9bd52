#!/usr/bin/env python3
"""ringmaild with fsync = batch (the default): answers to writing commands
wait for their flush on the sync pool while the worker serves others.
Pipelined commands keep their order around a held answer; many sessions
writing at once all get their answers; what was acknowledged is there after
the server is killed (SIGKILL) and started again; a session that closes
while its flush is pending does not crash the server.  Runs once per io
backend."""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402


def message(i, size=300):
    body = ("line %d " % i).encode() * (size // 8 + 1)
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: durable %d\r\n"
            b"Message-ID: <d%d@example.com>\r\n\r\n" % (i, i)) + body[:size] + b"\r\n"


class Durable(rs.ServerTestCase):
    server_options = {"fsync": "batch"}

    def test_pipelined_order(self):
        """APPEND, STORE, FETCH, NOOP, EXPUNGE sent in one write: every
        answer comes, in order, and FETCH sees the STORE before it."""
        c = self.login(select="INBOX")
        self.append_msgs(c, "INBOX", [message(1), message(2)])
        c.ok("NOOP")
        m = message(3)
        tags = ["p%d" % i for i in range(6)]
        data = (("%s APPEND INBOX {%d+}\r\n" % (tags[0], len(m))).encode() + m + b"\r\n" +
                ("%s STORE 1 +FLAGS (\\Deleted)\r\n" % tags[1]).encode() +
                ("%s FETCH 1 (FLAGS)\r\n" % tags[2]).encode() +
                ("%s EXPUNGE\r\n" % tags[3]).encode() +
                ("%s FETCH 1:* (UID)\r\n" % tags[4]).encode() +
                ("%s NOOP\r\n" % tags[5]).encode())
        c.send(data)
        results = [rs.Result(t, *c.read_until_tag(t)) for t in tags]
        for t, r in zip(tags, results):
            self.assertEqual(r.status, "OK", "%s: %s" % (t, r.describe()))
        self.assertIsNotNone(results[0].code_of("APPENDUID"), results[0].describe())
        flags = results[2].fetches()[1]["FLAGS"]
        self.assertIn("\\Deleted", [str(f) for f in flags], results[2].describe())
        self.assertIn(1, results[3].numbers("EXPUNGE"), results[3].describe())
        self.assertEqual(len(results[4].fetches()), 2, results[4].describe())

    def test_many_writers_then_kill(self):
        """16 sessions append and flag at once; every acknowledged APPEND and
        STORE is there after SIGKILL and a restart."""
        user, password = self.user, self.password
        acked = []
        errors = []
        lock = threading.Lock()

        def writer(k):
            try:
                c = self.server.login(user, password, select="INBOX")
                for i in range(15):
                    n = k * 100 + i
                    r = c.append("INBOX", message(n))
                    if r.status != "OK":
                        raise AssertionError(r.describe())
                    uid = int(r.code_of("APPENDUID").split()[2])
                    r = c.cmd("UID STORE %d +FLAGS (\\Flagged)" % uid)
                    if r.status != "OK":
                        raise AssertionError(r.describe())
                    with lock:
                        acked.append((uid, n))
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append("writer %d: %r" % (k, e))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), 16 * 15)
        self.server.kill()
        self.server.start()
        c = self.login(select="INBOX")
        r = c.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        got = {}
        for d in r.fetches().values():
            subj = [v for k, v in d.items() if k.startswith("BODY[HEADER")][0]
            got[d["UID"]] = (bytes(subj), [str(x) for x in d["FLAGS"]])
        for uid, n in acked:
            self.assertIn(uid, got, "acknowledged UID %d lost" % uid)
            self.assertIn(b"durable %d\r\n" % n, got[uid][0])
            self.assertIn("\\Flagged", got[uid][1], "acknowledged STORE on %d lost" % uid)

    def test_close_while_flushing(self):
        """Sessions that vanish right after sending writes (answers pending)
        leave the server serving the others."""
        for k in range(20):
            c = self.login(select="INBOX")
            m = message(k)
            c.send(("a APPEND INBOX {%d+}\r\n" % len(m)).encode() + m + b"\r\n"
                   b"b STORE 1:* +FLAGS (\\Seen)\r\nc NOOP\r\n")
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.sock.close()
            c.closed = True
        c = self.login(select="INBOX")
        r = c.ok("STATUS INBOX (MESSAGES)")
        self.assertTrue(r.untagged, r.describe())
        self.assertTrue(self.server.alive())


rs.parametrize(globals(), Durable)

if __name__ == "__main__":
    rs.main()
