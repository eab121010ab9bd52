#!/usr/bin/env python3
"""ringmaild with 2,000 simultaneous sessions: all log in, half IDLE on the
same INBOX; one more session APPENDs and every IDLE session must receive
"* 1 EXISTS"; then all leave cleanly (DONE, LOGOUT -> BYE, OK, close).
One thread, non-blocking sockets (selectors).  Runs once per io backend.

RINGMAIL_MANY_CONNS overrides the count (default 2000)."""

import errno
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

N = int(os.environ.get("RINGMAIL_MANY_CONNS", "2000"))
USER, PASSWORD = "many", "many-secret"
PHASE_TIMEOUT = 60.0     # each phase (connect+login, events, logout)
EVENT_TIMEOUT = 30.0     # APPEND -> every IDLE session has its EXISTS


class Conn:
    __slots__ = ("i", "sock", "buf", "state", "idle", "got_exists", "error", "t_exists",
                 "closed", "bye")

    def __init__(self, i, idle):
        self.i = i
        self.idle = idle
        self.buf = b""
        self.state = "connecting"
        self.got_exists = False
        self.error = None
        self.t_exists = None
        self.closed = False
        self.bye = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)

    def send(self, data):
        try:
            n = self.sock.send(data)
            if n != len(data):
                self.sock.setblocking(True)
                self.sock.sendall(data[n:])
                self.sock.setblocking(False)
        except OSError as e:
            self.fail("send: %s" % e)

    def fail(self, why):
        if self.error is None:
            self.error = "conn %d (%s, state %s): %s" % (
                self.i, "idle" if self.idle else "plain", self.state, why)


class Many(rs.ServerTestCase):
    users_per_class = 1
    server_options = {"log_level": "warn", "max_connections_per_user": "0"}

    @classmethod
    def setUpClass(cls):
        rs.raise_nofile(max(8192, 2 * N + 512))
        super().setUpClass()

    @classmethod
    def prepare_server(cls, server):
        server.add_users({USER: PASSWORD})

    def on_line(self, c, line, now):
        st = c.state
        if line.startswith(b"* BYE"):
            c.bye = True
            if st != "logout":
                c.fail("unexpected BYE: %r" % line)
            return
        if st == "greeting":
            if not line.startswith(b"* OK"):
                return c.fail("bad greeting %r" % line)
            c.state = "login"
            c.send(b"a LOGIN %s %s\r\n" % (USER.encode(), PASSWORD.encode()))
        elif st == "login":
            if line.startswith(b"a "):
                if not line.startswith(b"a OK"):
                    return c.fail("LOGIN: %r" % line)
                if c.idle:
                    c.state = "select"
                    c.send(b"b SELECT INBOX\r\n")
                else:
                    c.state = "ready"
        elif st == "select":
            if line.startswith(b"b "):
                if not line.startswith(b"b OK"):
                    return c.fail("SELECT: %r" % line)
                c.state = "idle-start"
                c.send(b"c IDLE\r\n")
        elif st == "idle-start":
            if line.startswith(b"+"):
                c.state = "idling"
            elif not line.startswith(b"* "):
                return c.fail("IDLE: %r" % line)
        elif st == "idling":
            parts = line.split()
            if len(parts) >= 3 and parts[0] == b"*" and parts[2].upper() == b"EXISTS":
                if parts[1] == b"1":
                    c.got_exists = True
                    c.t_exists = now
                else:
                    c.fail("wrong EXISTS %r" % line)
            elif parts[:1] != [b"*"]:
                c.fail("during IDLE: %r" % line)
        elif st == "done":
            if line.startswith(b"c "):
                if not line.startswith(b"c OK"):
                    return c.fail("DONE: %r" % line)
                c.state = "ready"
        elif st == "logout":
            if line.startswith(b"z "):
                if not line.startswith(b"z OK"):
                    return c.fail("LOGOUT: %r" % line)
                if not c.bye:
                    return c.fail("LOGOUT OK without a BYE before it")
                c.state = "logged-out"
        elif st == "ready":
            if not line.startswith(b"* "):
                c.fail("unexpected while ready: %r" % line)
        elif st == "logged-out":
            c.fail("data after LOGOUT OK: %r" % line)

    def pump(self, sel, conns, until, timeout, what):
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                states = {}
                for c in conns:
                    states[c.state] = states.get(c.state, 0) + 1
                errs = [c.error for c in conns if c.error][:10]
                self.fail("%s: timeout after %.0f s; states %s; errors %s\n%s" % (
                    what, timeout, states, errs, self.server.stderr_tail(3000)))
            for key, _ in sel.select(min(left, 0.5)):
                c = key.data
                now = time.monotonic()
                if c.state == "connecting":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        c.fail("connect: %s" % os.strerror(err))
                        sel.unregister(c.sock)
                        c.closed = True
                        continue
                    c.state = "greeting"
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    data = b""
                    if c.state != "logged-out":
                        c.fail("recv: %s" % e)
                if not data:
                    sel.unregister(c.sock)
                    c.closed = True
                    if c.state != "logged-out":
                        c.fail("server closed the connection")
                    continue
                c.buf += data
                while b"\r\n" in c.buf:
                    line, c.buf = c.buf.split(b"\r\n", 1)
                    self.on_line(c, line, now)
            errs = [c.error for c in conns if c.error]
            if errs:
                self.fail("%s: %d sessions failed, first: %s\n%s" % (
                    what, len(errs), errs[:5], self.server.stderr_tail(3000)))

    def test_2000_sessions_idle_exists(self):
        soft, _ = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
        self.assertGreaterEqual(soft, 2 * N + 100, "RLIMIT_NOFILE too low for the test")
        t_start = time.monotonic()
        sel = selectors.DefaultSelector()
        conns = []
        # connect in batches so the listen backlog never overflows
        for i in range(N):
            c = Conn(i, idle=(i % 2 == 0))
            rc = c.sock.connect_ex((self.server.host, self.server.port))
            if rc not in (0, errno.EINPROGRESS):
                self.fail("connect %d: %s" % (i, os.strerror(rc)))
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            conns.append(c)
            if len(conns) % 100 == 0:
                self.pump_connected(sel, conns)
        self.pump_connected(sel, conns)
        want_ready = lambda: all(c.state == ("idling" if c.idle else "ready")  # noqa: E731
                                 for c in conns)
        self.pump(sel, conns, want_ready, PHASE_TIMEOUT, "login/select/idle")
        t_ready = time.monotonic()
        rss = self.server_rss()
        print("\n%d sessions ready in %.1f s; server RSS %s" % (N, t_ready - t_start, rss))

        # one more session delivers a message
        writer = self.server.connect()
        self.conns.append(writer)
        writer.ok("LOGIN %s %s" % (USER, PASSWORD))
        t0 = time.monotonic()
        self.expect(writer.append("INBOX", b"Subject: to everyone\r\n\r\nhello all\r\n"), "OK")
        idlers = [c for c in conns if c.idle]
        self.pump(sel, conns, lambda: all(c.got_exists for c in idlers), EVENT_TIMEOUT,
                  "EXISTS to every IDLE session")
        lat = sorted(c.t_exists - t0 for c in idlers)
        print("EXISTS reached %d IDLE sessions: median %.3f s, max %.3f s"
              % (len(lat), lat[len(lat) // 2], lat[-1]))
        # non-IDLE sessions must not have been disturbed by anything but
        # untagged data (checked in on_line); now everyone leaves
        for c in idlers:
            c.state = "done"
            c.send(b"DONE\r\n")
        self.pump(sel, conns, lambda: all(c.state == "ready" for c in conns), PHASE_TIMEOUT,
                  "DONE")
        for c in conns:
            c.state = "logout"
            c.send(b"z LOGOUT\r\n")
        self.pump(sel, conns, lambda: all(c.closed for c in conns), PHASE_TIMEOUT,
                  "LOGOUT and close")
        for c in conns:
            c.sock.close()
        sel.close()
        writer.ok("NOOP")
        print("total %.1f s" % (time.monotonic() - t_start))

    def pump_connected(self, sel, conns):
        """Switch sockets whose connect finished from write to read interest."""
        deadline = time.monotonic() + PHASE_TIMEOUT
        pending = [c for c in conns if c.state == "connecting"]
        while pending and time.monotonic() < deadline:
            for key, ev in sel.select(0.5):
                c = key.data
                if c.state == "connecting" and ev & selectors.EVENT_WRITE:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self.fail("connect %d: %s" % (c.i, os.strerror(err)))
                    c.state = "greeting"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                if ev & selectors.EVENT_READ and c.state != "connecting":
                    try:
                        data = c.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        self.fail("recv %d: %s" % (c.i, e))
                    if not data:
                        self.fail("conn %d closed by the server at %s\n%s"
                                  % (c.i, c.state, self.server.stderr_tail(3000)))
                    c.buf += data
                    while b"\r\n" in c.buf:
                        line, c.buf = c.buf.split(b"\r\n", 1)
                        self.on_line(c, line, time.monotonic())
            pending = [c for c in conns if c.state == "connecting"]
        if pending:
            self.fail("%d connections did not complete within %.0f s"
                      % (len(pending), PHASE_TIMEOUT))

    def server_rss(self):
        try:
            with open("/proc/%d/status" % self.server.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"


rs.parametrize(globals(), Many)

if __name__ == "__main__":
    rs.main()
