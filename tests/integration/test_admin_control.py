#!/usr/bin/env python3
"""The control socket (admin_socket, core/server/control.c) and the
ringmail-admin commands that use it: who, kick, reload, flush-auth-cache,
stats; its permissions; processes = 2 (the supervisor relays to both
servers, core/server/control_relay.c).

Environment: see ringmail_server.py (RINGMAILD, RINGMAIL_ADMIN, ...).
"""

import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import ServerTestCase, main, parametrize  # noqa: E402

SETTLE = 5.0        # seconds for closed sessions to leave the registry


def who_rows(out):
    """ringmail-admin who's output -> list of dicts (the header skipped)."""
    lines = out.decode().splitlines()
    assert lines and lines[0].startswith("USER\tADDRESS"), lines
    rows = []
    for l in lines[1:]:
        f = l.split("\t")
        assert len(f) == 10, l
        rows.append({"user": f[0], "addr": f[1], "tls": f[2], "compress": f[3],
                     "state": f[4], "mailbox": f[5], "idle_s": int(f[6]), "idle": f[7],
                     "proc": f[8], "age_s": int(f[9])})
    return rows


METRIC_PREFIXES = ("ringmail_", "process_")


def stats_dict(out):
    """The "name value" lines of stats; the metrics samples among them
    ("ringmail_...{labels} value") keep their labels in the name."""
    d = {}
    for l in out.decode().splitlines():
        if l.startswith(("process ", "worker ")):
            continue
        k, v = l.rsplit(" ", 1)
        d[k] = float(v) if k.startswith(METRIC_PREFIXES) else int(v)
    return d


def metric_sum(st, name):
    """The sum of a metrics family's samples in a stats answer."""
    return sum(v for k, v in st.items() if k == name or k.startswith(name + "{"))


def local_addr(sock):
    h, p = sock.getsockname()[:2]
    return "%s:%d" % (h, p)


def imaplib_sock(m):
    return m.socket()


class ControlBase(ServerTestCase):
    server_other_users = True   # test_permissions and the service user: nobody

    def ctl(self, *args, check=True):
        p = self.server.admin(*args, check=False)
        if check and p.returncode != 0:
            self.fail("ringmail-admin %s: exit %d\n%s%s" % (
                " ".join(args), p.returncode, p.stdout.decode(), p.stderr.decode()))
        return p

    def who(self, *args):
        return who_rows(self.ctl("who", *args).stdout)

    def wait_sessions(self, want, what=""):
        """stats until `sessions` is want (sessions of earlier tests close
        asynchronously); returns the last stats."""
        deadline = time.monotonic() + SETTLE
        while True:
            st = stats_dict(self.ctl("stats").stdout)
            if st["sessions"] == want or time.monotonic() > deadline:
                self.assertEqual(st["sessions"], want, "%s: %r" % (what, st))
                return st
            time.sleep(0.05)

    def imaplib_login(self, user, password, starttls=False, select=None):
        m = imaplib.IMAP4(self.server.host, self.server.port, timeout=rs.IO_TIMEOUT)
        if starttls:
            m.starttls(ssl_context=self.server.client_context())
        m.login(user, password)
        if select:
            m.select(select)
        self.addCleanup(self.close_imaplib, m)
        return m

    @staticmethod
    def close_imaplib(m):
        try:
            m.logout()
        except Exception:
            try:
                m.shutdown()
            except Exception:
                pass

    def new_user(self):
        cls = type(self)
        u, p = "user%d" % cls.next_user, "pw%d-secret" % cls.next_user
        cls.next_user += 1
        return u, p

    def read_bye(self, c):
        """Read until the server's BYE and the close; returns the BYE line."""
        bye = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                r = c.read(timeout=max(0.1, deadline - time.monotonic()))
            except (rs.ImapError, OSError, EOFError):
                break
            if r is None:
                break
            if r.raw.startswith(b"* BYE"):
                bye = r.raw
        return bye


BULK_USER, BULK_PW = "user59", "pw59-secret"     # never handed out by setUp
BULK_N, BULK_SIZE = 800, 25000      # 20 MB: far more than the socket buffers hold


def bulk_msg(i):
    head = b"From: a@example.org\r\nSubject: bulk %d\r\n\r\n" % i
    return head + (b"x" * 78 + b"\r\n") * ((BULK_SIZE - len(head)) // 80)


class Control(ControlBase):
    server_tls = True
    # a command that answers a lot stays running while the client does not
    # read (core/server/session.c: max_output_buffer)
    server_options = {"max_output_buffer": "65536"}

    @classmethod
    def prepare_server(cls, server):
        server.import_mbox(BULK_USER, "INBOX", [bulk_msg(i) for i in range(BULK_N)])

    def test_kick_after_command(self):
        """A session kicked while its command runs gets the whole answer,
        then the BYE."""
        c = self.login(BULK_USER, BULK_PW, select="INBOX")
        c.send("f1 FETCH 1:* BODY.PEEK[]\r\n")
        time.sleep(0.5)     # the server is now waiting for us to read
        self.assertEqual(self.ctl("kick", BULK_USER).stdout.decode().split(), ["kicked", "1"])
        fetched = 0
        while True:
            r = c.read(timeout=30)
            if r.tag == "f1":
                self.assertTrue(r.raw.startswith(b"f1 OK"), r.raw[:200])
                break
            self.assertFalse(r.raw.startswith(b"* BYE"), "BYE in the middle of FETCH")
            if b" FETCH (" in r.raw[:40]:
                fetched += 1
        self.assertEqual(fetched, BULK_N)
        bye = self.read_bye(c)
        self.assertIsNotNone(bye, c.last())
        self.assertTrue(bye.startswith(b"* BYE [UNAVAILABLE]"), bye)
        self.assertTrue(c.wait_closed())

    def test_who(self):
        self.wait_sessions(0, "no session at the start")
        ua, pa = self.user, self.password
        ub, pb = self.new_user()
        uc, pc = self.new_user()
        a = self.imaplib_login(ua, pa, select="INBOX")
        b = self.imaplib_login(ub, pb, starttls=True)
        c = self.login(uc, pc)
        c.send("i1 IDLE\r\n")
        self.assertTrue(c.read().continuation)
        pre = self.connect()                # not logged in
        rows = self.who()
        self.assertEqual([r["user"] for r in rows], sorted(r["user"] for r in rows))
        by = {r["addr"]: r for r in rows}
        ra = by[local_addr(imaplib_sock(a))]
        self.assertEqual((ra["user"], ra["tls"], ra["state"], ra["mailbox"], ra["idle"]),
                         (ua, "-", "selected", "INBOX", "-"))
        rb = by[local_addr(imaplib_sock(b))]
        self.assertEqual((rb["user"], rb["tls"], rb["state"], rb["mailbox"], rb["idle"]),
                         (ub, "tls", "auth", "-", "-"))
        rc = by[local_addr(c.sock)]
        self.assertEqual((rc["user"], rc["tls"], rc["state"], rc["idle"]), (uc, "-", "auth", "idle"))
        rp = by[local_addr(pre.sock)]
        self.assertEqual((rp["user"], rp["state"]), ("-", "noauth"))
        self.assertEqual(len(rows), 4, rows)
        for r in rows:
            self.assertTrue(r["proc"].startswith("0."), r)
            self.assertLess(r["age_s"], 60)
        # the idle time is the time since the last command
        time.sleep(1.2)
        a.noop()
        t = time.monotonic()
        rows = {r["addr"]: r for r in self.who()}
        since = time.monotonic() - t       # a loaded machine may take a while
        self.assertLessEqual(rows[local_addr(imaplib_sock(a))]["idle_s"], int(since + 0.05))
        self.assertGreaterEqual(rows[local_addr(imaplib_sock(b))]["idle_s"], 1)
        # one user's sessions
        only = self.who(ub)
        self.assertEqual([(r["user"], r["tls"]) for r in only], [(ub, "tls")])
        self.assertEqual(self.who("nobody-here"), [])
        c.send("DONE\r\n")

    def test_kick(self):
        ua, pa = self.user, self.password
        ub, pb = self.new_user()
        a1 = self.login(ua, pa, select="INBOX")
        a2 = self.login(ua, pa)
        a2.send("i1 IDLE\r\n")
        self.assertTrue(a2.read().continuation)
        b = self.login(ub, pb, select="INBOX")
        bi = self.imaplib_login(ub, pb)
        p = self.ctl("kick", ua)
        self.assertEqual(p.stdout.decode().split(), ["kicked", "2"])
        for c in (a1, a2):
            bye = self.read_bye(c)
            self.assertIsNotNone(bye, c.last())
            self.assertTrue(bye.startswith(b"* BYE [UNAVAILABLE]"), bye)
            self.assertTrue(c.wait_closed(), "a kicked session stays open")
        self.ok(b, "NOOP")          # the other user's sessions go on
        self.assertEqual(bi.noop()[0], "OK")
        self.assertEqual(b.pending(0.2), [])
        deadline = time.monotonic() + SETTLE
        while self.who(ua) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.who(ua), [])
        self.assertEqual([r["user"] for r in self.who(ub)], [ub, ub])
        # a name is exact: a prefix kicks nobody
        self.assertEqual(self.ctl("kick", ub[:-1] + "x").stdout.decode().split(),
                         ["kicked", "0"])
        self.ok(b, "NOOP")
        # and the kicked user may log in again
        self.ok(self.login(ua, pa), "NOOP")

    def test_reload(self):
        anyone = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anyone.check_hostname = False
        anyone.verify_mode = ssl.CERT_NONE
        old = rs.Imap(self.server.host, self.server.tls_port, ssl_context=anyone)
        first = old.sock.getpeercert(binary_form=True)
        old.close()
        rs.make_cert(self.server.cert + ".new", self.server.key + ".new", "localhost")
        os.replace(self.server.key + ".new", self.server.key)
        os.replace(self.server.cert + ".new", self.server.cert)
        p = self.ctl("reload")
        self.assertEqual(p.stdout.decode().strip(), "certificates reloaded")
        # reload answers once done: the next handshake has the new certificate
        c = rs.Imap(self.server.host, self.server.tls_port, ssl_context=anyone)
        now = c.sock.getpeercert(binary_form=True)
        c.close()
        self.assertNotEqual(now, first, "the new certificate was not served after reload")
        self.ok(self.connect(tls=True), "NOOP")    # verifies against the new one
        # a broken certificate: an error, exit 1, and the old one stays
        with open(self.server.cert, "rb") as f:
            good = f.read()
        with open(self.server.cert, "w") as f:
            f.write("not a certificate\n")
        try:
            p = self.ctl("reload", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"certificates not reloaded", p.stderr)
            c = rs.Imap(self.server.host, self.server.tls_port, ssl_context=anyone)
            self.assertEqual(c.sock.getpeercert(binary_form=True), now)
            c.close()
        finally:
            with open(self.server.cert, "wb") as f:
                f.write(good)

    def test_flush_auth_cache(self):
        self.ok(self.login(), "NOOP")
        st = stats_dict(self.ctl("stats").stdout)
        self.assertGreaterEqual(st["auth_cache_entries"], 1)
        p = self.ctl("flush-auth-cache")
        words = p.stdout.decode().split()
        self.assertEqual(words[0], "flushed")
        self.assertEqual(int(words[1]), st["auth_cache_entries"])
        self.assertEqual(stats_dict(self.ctl("stats").stdout)["auth_cache_entries"], 0)
        self.assertEqual(self.ctl("flush-auth-cache").stdout.decode().split(),
                         ["flushed", "0"])
        self.ok(self.login(), "NOOP")       # a login after it works (checked again)
        self.assertEqual(stats_dict(self.ctl("stats").stdout)["auth_cache_entries"], 1)

    def test_stats(self):
        self.wait_sessions(0, "no session at the start")
        ua, pa = self.user, self.password
        ub, pb = self.new_user()
        self.login(ua, pa, select="INBOX")
        self.login(ua, pa)
        self.imaplib_login(ub, pb, starttls=True, select="INBOX")
        c = self.login(ub, pb, select="INBOX")
        c.send("i1 IDLE\r\n")
        self.assertTrue(c.read().continuation)
        self.connect()
        self.connect()
        st = self.wait_sessions(6)
        want = {"processes": 1, "sessions": 6, "sessions_noauth": 2, "sessions_auth": 1,
                "sessions_selected": 3, "sessions_logout": 0, "sessions_tls": 1,
                "sessions_compressed": 0, "sessions_idle": 1, "users": 2}
        self.assertEqual({k: st[k] for k in want}, want)
        self.assertGreaterEqual(st["uptime_seconds"], 0)
        # The metrics counters end the answer (core/server/metrics.c).
        self.assertEqual(metric_sum(st, "ringmail_sessions"), 6)
        self.assertEqual(st["ringmail_idle_sessions"], 1)
        self.assertGreaterEqual(metric_sum(st, "ringmail_logins_total"), 4)
        lines = self.ctl("stats").stdout.decode().splitlines()
        procs = [l for l in lines if l.startswith("process ")]
        self.assertEqual(len(procs), 1)
        self.assertIn(" sessions 6 ", procs[0] + " ")
        workers = [l for l in lines if l.startswith("worker ")]
        self.assertEqual(sum(int(l.split()[-1]) for l in workers), 6)
        # COMPRESS shows
        c.send("DONE\r\n")
        self.assertEqual(c.read().tag, "i1")
        self.ok(c, "COMPRESS DEFLATE")
        st = stats_dict(self.ctl("stats").stdout)
        self.assertEqual(st["sessions_compressed"], 1)
        self.assertEqual([r["compress"] for r in self.who(ub) if r["tls"] == "-"],
                         ["deflate"])

    def test_permissions(self):
        path = os.path.join(self.server.mail_root, "admin.sock")
        st = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, os.geteuid())
        if os.geteuid() != 0:
            self.skipTest("running as another uid needs root")
        nobody = pwd.getpwnam("nobody")
        # connect needs write permission on the socket itself: let nobody
        # traverse the test's directories (for this test only), so that the
        # socket's own mode is what refuses, then the server's uid check
        dirs = [self.server.tmp, self.server.mail_root]
        base = os.path.dirname(self.server.tmp)
        modes = {d: stat.S_IMODE(os.stat(d).st_mode) for d in dirs + [base]}
        copy = os.path.join(tempfile.mkdtemp(prefix="ctl-admin."), "ringmail-admin")
        shutil.copy(rs.ADMIN, copy)
        os.chmod(os.path.dirname(copy), 0o755)
        try:
            for d in dirs + [base]:
                os.chmod(d, modes[d] | 0o111)

            def as_nobody(*args):
                return subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid,
                                       "--regid=%d" % nobody.pw_gid, "--clear-groups",
                                       copy, "-c", "/dev/null",
                                       "-o", "mail_root=" + self.server.mail_root] + list(args),
                                      capture_output=True, timeout=30)
            p = as_nobody("who")
            self.assertEqual(p.returncode, 1, p)
            self.assertIn(b"permission denied", p.stderr)
            self.assertEqual(len(p.stderr.decode().strip().splitlines()), 1, p.stderr)
            # with the file mode opened, the server itself refuses the uid
            os.chmod(path, 0o666)
            try:
                p = as_nobody("who")
                self.assertEqual(p.returncode, 1, p)
                self.assertIn(b"permission denied: uid %d" % nobody.pw_uid, p.stderr)
                self.assertEqual(p.stdout, b"")     # not even the header
                p = as_nobody("kick", self.user)
                self.assertEqual(p.returncode, 1, p)
            finally:
                os.chmod(path, 0o600)
        finally:
            for d in dirs + [base]:
                os.chmod(d, modes[d])
            shutil.rmtree(os.path.dirname(copy), ignore_errors=True)
        self.ctl("who")     # root still may

    def test_stop_with_admin_connected(self):
        """An admin connection that sends nothing does not hold up a
        graceful stop (the server shuts it down)."""
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(self.server.mail_root, "admin.sock"))
        time.sleep(0.2)
        t0 = time.monotonic()
        self.assertEqual(self.server.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5)
        s.close()
        # the socket goes with the server
        self.assertFalse(os.path.exists(os.path.join(self.server.mail_root, "admin.sock")))
        p = self.ctl("who", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no server running", p.stderr)
        self.server.start()
        self.ctl("who")

    def test_errors(self):
        p = self.ctl("ctl", "bogus", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"unknown command", p.stderr)
        p = self.ctl("ctl", "kick", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"usage: kick USER", p.stderr)
        for args in (["kick"], ["who", "a", "b"], ["reload", "x"], ["flush-auth-cache", "x"]):
            p = self.ctl(*args, check=False)
            self.assertEqual(p.returncode, 2, (args, p))
        # the protocol itself: a request too long, none in time
        path = os.path.join(self.server.mail_root, "admin.sock")
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"who " + b"x" * 2000 + b"\n")
        self.assertEqual(s.makefile("rb").read(), b"ERR request too long\n")
        s.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"stats\n")
        ans = s.makefile("rb").read().decode().splitlines()
        self.assertEqual(ans[-1], "OK")
        s.close()
        # many admin clients at once
        socks = []
        for _ in range(20):
            t = socket.socket(socket.AF_UNIX)
            t.connect(path)
            socks.append(t)
        for t in socks:
            t.sendall(b"who\n")
        for t in socks:
            self.assertTrue(t.makefile("rb").read().endswith(b"OK\n"))
            t.close()
        # no server: a socket nobody answers on, a path that does not exist
        d = tempfile.mkdtemp(dir=self.server.tmp)
        stale = os.path.join(d, "stale.sock")
        t = socket.socket(socket.AF_UNIX)
        t.bind(stale)
        t.close()
        for sock, what in ((stale, b"refuses connections"),
                           (os.path.join(d, "none.sock"), b"does not exist")):
            p = subprocess.run([rs.ADMIN, "-c", self.server.conf,
                                "-o", "mail_root=" + self.server.mail_root,
                                "-o", "admin_socket=" + sock, "who"],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1, p)
            self.assertIn(b"no server running", p.stderr)
            self.assertIn(what, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        p = subprocess.run([rs.ADMIN, "-c", self.server.conf, "-o",
                            "mail_root=" + self.server.mail_root, "-o", "admin_socket=", "stats"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(b"admin_socket is empty", p.stderr)


class ControlProcesses(ControlBase):
    """processes = 2: every command covers the sessions of both servers."""
    server_options = {"processes": "2"}

    def spread(self, users, want_each=2, limit=60):
        """Log in as users in turn until each user has sessions in both
        processes (the kernel spreads connections over them); returns
        {user: [conn]}."""
        conns = {u: [] for u, _ in users}
        for i in range(limit):
            u, p = users[i % len(users)]
            conns[u].append(self.login(u, p))
            rows = self.who()
            ok = all(sum(1 for r in rows if r["user"] == u and r["proc"].startswith(pre))
                     >= want_each for u, _ in users for pre in ("0.", "1."))
            if ok:
                return conns, rows
        self.fail("sessions did not reach both processes: %r" % self.who())

    def test_who_kick_stats(self):
        self.wait_sessions(0, "no session at the start")
        ua, pa = self.user, self.password
        ub, pb = self.new_user()
        conns, rows = self.spread([(ua, pa), (ub, pb)], want_each=1)
        self.assertEqual([r["user"] for r in rows], sorted(r["user"] for r in rows))
        n = {u: len(c) for u, c in conns.items()}
        self.assertEqual(len(rows), n[ua] + n[ub])
        st = self.wait_sessions(n[ua] + n[ub])
        self.assertEqual(st["processes"], 2)
        self.assertEqual(st["users"], 2)
        lines = self.ctl("stats").stdout.decode().splitlines()
        procs = [l for l in lines if l.startswith("process ")]
        self.assertEqual([l.split()[1] for l in procs], ["0", "1"])
        self.assertEqual(sum(int(l.split()[7]) for l in procs), n[ua] + n[ub])
        # The shared counters once for the whole server, not once per process.
        self.assertEqual(metric_sum(st, "ringmail_sessions"), n[ua] + n[ub])
        # kick reaches both processes, and only ua
        p = self.ctl("kick", ua)
        self.assertEqual(p.stdout.decode().split(), ["kicked", str(n[ua])])
        for c in conns[ua]:
            bye = self.read_bye(c)
            self.assertIsNotNone(bye, c.last())
            self.assertTrue(bye.startswith(b"* BYE [UNAVAILABLE]"), bye)
        for c in conns[ub]:
            self.ok(c, "NOOP")
        self.wait_sessions(n[ub])
        self.assertEqual({r["user"] for r in self.who()}, {ub})
        p = self.ctl("flush-auth-cache")
        self.assertEqual(p.stdout.decode().split()[0], "flushed")
        p = self.ctl("reload")
        self.assertEqual(sorted(p.stdout.decode().splitlines()),
                         ["process 0: no TLS configured, nothing to reload",
                          "process 1: no TLS configured, nothing to reload"])
        st = os.stat(os.path.join(self.server.mail_root, "admin.sock"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def pids(self):
        lines = self.ctl("stats").stdout.decode().splitlines()
        return {int(l.split()[1]): int(l.split()[3]) for l in lines if l.startswith("process ")}

    def test_restarting_process_skipped(self):
        """A server that is not running is left out with a note; the
        others answer."""
        ua, pa = self.user, self.password
        conns, _ = self.spread([(ua, pa)], want_each=1)
        old = self.pids()
        self.assertEqual(sorted(old), [0, 1])
        # a server killed soon after it started is restarted after a
        # back-off (core/server/main_ringmaild.c): kill slot 1, then its
        # successor at once, and ask during the back-off
        os.kill(old[1], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            p = self.ctl("stats")
            now = self.pids()
            if now.get(1, old[1]) != old[1] and not p.stderr:
                break
            self.assertLess(time.monotonic(), deadline, "slot 1 was not restarted")
            time.sleep(0.02)
        os.kill(now[1], signal.SIGKILL)
        p = self.ctl("who")
        self.assertIn(b"note: process 1 ", p.stderr)
        self.assertEqual(p.stderr.count(b"\n"), 1, p.stderr)
        rows = who_rows(p.stdout)
        self.assertTrue(rows)
        self.assertTrue(all(r["proc"].startswith("0.") for r in rows), rows)
        self.assertEqual({r["user"] for r in rows}, {ua})
        st = self.ctl("stats")
        self.assertIn(b"note: process 1 ", st.stderr)
        self.assertEqual(stats_dict(st.stdout)["processes"], 1)
        # and back
        deadline = time.monotonic() + 15
        while True:
            p = self.ctl("who")
            if not p.stderr:
                break
            self.assertLess(time.monotonic(), deadline, "slot 1 did not come back")
            time.sleep(0.05)
        self.assertEqual(stats_dict(self.ctl("stats").stdout)["processes"], 2)

    def test_relay_restarted(self):
        """The supervisor's control relay (a process of its own) is started
        again when it dies, on the same path."""
        sup = self.server.proc.pid

        def relays():
            with open("/proc/%d/task/%d/children" % (sup, sup)) as f:
                kids = [int(x) for x in f.read().split()]
            out = []
            for k in kids:
                try:
                    with open("/proc/%d/comm" % k) as f:
                        if f.read().strip() == "ringmaild-ctl":
                            out.append(k)
                except OSError:
                    pass
            return out
        first = relays()
        self.assertEqual(len(first), 1, first)
        self.ctl("who")
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            p = self.ctl("who", check=False)
            if p.returncode == 0:
                break
            self.assertLess(time.monotonic(), deadline, p.stderr)
            time.sleep(0.05)
        now = relays()
        self.assertEqual(len(now), 1, now)
        self.assertNotEqual(now, first)
        self.assertEqual(stats_dict(self.ctl("stats").stdout)["processes"], 2)
        self.assertIn("control socket's process", self.server.stderr_since(self.log_offset))

    def test_errors(self):
        p = self.ctl("ctl", "bogus", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"unknown command", p.stderr)
        p = self.ctl("ctl", "who", "a", "b", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"usage: who [USER]", p.stderr)


class ControlServiceUser(ControlBase):
    """Started as root with user = nobody: the socket belongs to nobody,
    which may use it (as may root); the supervisor's relay runs as nobody
    too."""
    server_options = {"user": "nobody"}

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (to start ringmaild as root)")
        super().setUpClass()

    @classmethod
    def prepare_server(cls, server):
        nobody = pwd.getpwnam("nobody")
        for d in (os.path.dirname(server.tmp), server.tmp):
            os.chmod(d, stat.S_IMODE(os.stat(d).st_mode) | 0o111)
        os.chown(server.mail_root, nobody.pw_uid, nobody.pw_gid)
        os.chmod(server.passwd, 0o644)

    def uids(self, pid):
        with open("/proc/%d/status" % pid) as f:
            return [int(x) for l in f if l.startswith("Uid:") for x in l.split()[1:]]

    def test_owner_and_users(self):
        nobody = pwd.getpwnam("nobody")
        path = os.path.join(self.server.mail_root, "admin.sock")
        st = os.stat(path)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (nobody.pw_uid, 0o600))
        self.ok(self.login(), "NOOP")
        rows = self.who()
        self.assertEqual([r["user"] for r in rows], [self.user])
        # the service user may use the socket
        copy = os.path.join(tempfile.mkdtemp(prefix="ctl-admin."), "ringmail-admin")
        shutil.copy(rs.ADMIN, copy)
        os.chmod(os.path.dirname(copy), 0o755)
        try:
            p = subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid,
                                "--regid=%d" % nobody.pw_gid, "--clear-groups", copy,
                                "-c", "/dev/null", "-o", "mail_root=" + self.server.mail_root,
                                "who"], capture_output=True, timeout=30)
        finally:
            shutil.rmtree(os.path.dirname(copy), ignore_errors=True)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(len(who_rows(p.stdout)), 1)
        # no process of the server, the relay included, runs as root
        sup = self.server.proc.pid
        with open("/proc/%d/task/%d/children" % (sup, sup)) as f:
            kids = [int(x) for x in f.read().split()]
        # processes = 2: two servers and the relay; else the server itself
        self.assertEqual(len(kids), 3 if "processes" in self.server_options else 0)
        for k in kids or [sup]:
            self.assertEqual(set(self.uids(k)), {nobody.pw_uid}, k)


class ControlServiceUserProcesses(ControlServiceUser):
    server_options = {"user": "nobody", "processes": "2"}


parametrize(globals(), Control, ControlProcesses, ControlServiceUser, ControlServiceUserProcesses)

if __name__ == "__main__":
    main()
