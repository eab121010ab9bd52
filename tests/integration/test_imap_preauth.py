#!/usr/bin/env python3
"""Before login a client gets little: literals of a few KB at most (a bigger
non-synchronizing one is answered with BYE and the connection closed, as
RFC 7888 4 allows; a bigger synchronizing one gets NO [TOOBIG] and no
continuation), and login_timeout counts from the connection's start, so
neither trickling a command byte by byte, nor NOOPs, nor STARTTLS keep an
unauthenticated connection open (slowloris)."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402

PREAUTH_LITERAL = 8192      # core/server/server.h PREAUTH_MAX_LITERAL


class PreauthLiterals(rs.ServerTestCase):
    def test_big_nonsync_literals_keep_rss_small(self):
        """10 clients announce LOGIN {67108864+} (the default APPENDLIMIT)
        and send 16 MiB each: the server must not buffer them."""
        bystander = self.login()
        before = rs.rss_kib(self.server.proc.pid)
        socks = []
        for _ in range(10):
            s = socket.create_connection((self.server.host, self.server.port), timeout=10)
            s.recv(4096)                                    # greeting
            s.setblocking(False)
            socks.append([s, memoryview(b"a LOGIN {67108864+}\r\n" + b"x" * (16 << 20))])
        deadline = time.monotonic() + 30
        while any(len(d) for _, d in socks) and time.monotonic() < deadline:
            for item in socks:
                s, data = item
                if not len(data):
                    continue
                try:
                    n = s.send(data[:1 << 20])
                    item[1] = data[n:]
                except BlockingIOError:
                    pass
                except OSError:                             # closed by the server
                    item[1] = data[:0]
            time.sleep(0.001)
        time.sleep(0.5)
        grown = rs.rss_kib(self.server.proc.pid) - before
        for s, _ in socks:
            s.close()
        # 10 x 16 MiB were offered; a few MiB of slack for the allocator
        self.assertLess(grown, 24 * 1024, "RSS grew by %d KiB" % grown)
        self.ok(bystander, "NOOP")

    def test_nonsync_over_limit_bye(self):
        c = self.connect()
        c.send(b"a LOGIN {%d+}\r\n" % (PREAUTH_LITERAL + 1))
        r = c.read()
        self.assertTrue(r.untagged and r.status()[0] == "BYE", r)
        self.assertEqual(r.status()[1], "TOOBIG", r)
        self.assertTrue(c.wait_closed(10), "connection not closed after BYE")

    def test_sync_over_limit_no(self):
        c = self.connect()
        c.send(b"a LOGIN {67108864}\r\n")
        r = c.read()
        self.assertFalse(r.continuation, "no '+' for a literal over the limit")
        self.assertEqual(r.tag, "a", r)
        self.assertEqual(r.status()[:2], ("NO", "TOOBIG"), r)
        # the connection goes on; small literals log in
        user, pw = self.user.encode(), self.password.encode()
        r = c.cmd_lit("LOGIN ", user, " ", pw, "")
        self.assertEqual(r.status, "OK", r.describe())

    def test_limit_is_inclusive_and_lifted_after_login(self):
        c = self.connect()
        big = b"p" * PREAUTH_LITERAL
        # exactly the limit: read, and an ordinary failed login
        r = c.cmd(b"LOGIN %s {%d+}\r\n%s" % (quote(self.user).encode(), len(big), big))
        self.assertEqual(r.status, "NO", r.describe())
        self.assertNotEqual(r.code_name(), "TOOBIG", r.describe())
        # after login the full APPENDLIMIT applies again, also to a command
        # pipelined right behind the LOGIN
        msg = b"Subject: big\r\n\r\n" + b"y" * 100000 + b"\r\n"
        c.send(b"b LOGIN %s %s\r\nc APPEND INBOX {%d+}\r\n%s\r\n" % (
            quote(self.user).encode(), quote(self.password).encode(), len(msg), msg))
        self.assertEqual(c.read_until_tag("b")[1].status()[0], "OK")
        r = c.read_until_tag("c")[1]
        self.assertEqual(r.status()[0], "OK", r)


class LoginDeadline(rs.ServerTestCase):
    server_options = {"login_timeout": "3"}      # partial_command_timeout stays 60
    server_tls = True
    LIMIT = 15.0    # generous: the deadline is 3 s; only a stall fails

    def closed_within(self, c, step, limit):
        """Call step() every 0.5 s until the server closes the connection;
        returns (seconds, what the server sent) or fails after `limit`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            try:
                step()
            except (OSError, ConnectionError):
                break
            if c.wait_closed(0.5):
                break
        else:
            self.fail("connection still open after %.0f s (login_timeout=3)" % limit)
        return time.monotonic() - t0, c.buf

    def test_trickled_command(self):
        c = self.connect()
        data = iter(b"a LOGIN %s %s" % (self.user.encode(), b"x" * 100))
        _, got = self.closed_within(c, lambda: c.send(bytes([next(data)])), self.LIMIT)
        self.assertIn(b"BYE Login timeout", got)

    def test_noops(self):
        c = self.connect()
        n = iter(range(1000))
        _, got = self.closed_within(c, lambda: c.send("n%d NOOP\r\n" % next(n)), self.LIMIT)
        self.assertIn(b"BYE Login timeout", got)

    def test_starttls_does_not_restart_it(self):
        c = self.connect()
        self.ok(c, "STARTTLS")
        c.starttls(self.server.client_context())
        n = iter(range(1000))
        _, got = self.closed_within(c, lambda: c.send("n%d NOOP\r\n" % next(n)), self.LIMIT)
        self.assertIn(b"BYE Login timeout", got)

    def test_logged_in_stays(self):
        c = self.login()
        time.sleep(4)                                    # past the login deadline
        self.ok(c, "NOOP")


rs.parametrize(globals(), PreauthLiterals, LoginDeadline)

if __name__ == "__main__":
    rs.main()
