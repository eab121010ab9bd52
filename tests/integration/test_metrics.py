#!/usr/bin/env python3
"""Prometheus metrics (listen_metrics, GET /metrics): the text format
(promtool check metrics), each action moving exactly its family by the
right amount, gauges back to zero when sessions end, HTTP errors and
limits, and `processes = 2` seen whole in one scrape.  ColdPages: SEARCH,
SORT, THREAD and FETCH over a mailbox whose files the kernel dropped read them
in off the workers (ringmail_store_cold_reads_total) and answer as over
a warm one.

Environment: see ringmail_server.py (RINGMAILD, RINGMAIL_ADMIN, ...).
"""

import ctypes
import mmap
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, ((label, value), ...)): float} of every sample line."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = SAMPLE.match(ln)
        assert m, "not a sample line: %r" % ln
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def key(name, **labels):
    return (name, tuple(sorted(labels.items())))


def http(port, request, timeout=10):
    """Raw HTTP: (status, headers dict, body) of one request."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def msg(n, size=0):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: m%d\r\n"
            b"Message-ID: <m%d@example.org>\r\n\r\nbody %d\r\n" % (n, n, n)) + b"x" * size


class MetricsBase(rs.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.metrics_port, cls.metrics_hold = rs.reserve_port()
        cls.lmtp_port = rs.free_port()
        try:
            super().setUpClass()
        except Exception:
            cls.metrics_hold.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.metrics_hold.close()

    @classmethod
    def prepare_server(cls, server):
        server.options["listen_metrics"] = str(cls.metrics_port)     # bare: 127.0.0.1
        server.options["listen_lmtp"] = "127.0.0.1:%d" % cls.lmtp_port

    def scrape_text(self):
        status, headers, body = http(self.metrics_port,
                                     b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(headers.get("content-type"),
                         "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(int(headers["content-length"]), len(body))
        return body.decode()

    def scrape(self):
        """The metrics once they are settled: a worker counts the bytes
        of a send after the system call, and may be preempted by the
        client it just woke, which then scrapes before the count.  Two
        scrapes in a row that agree (a scrape itself counts nothing)."""
        deadline = time.monotonic() + 3.0
        last = parse(self.scrape_text())
        while True:
            time.sleep(0.03)
            now = parse(self.scrape_text())
            if now == last or time.monotonic() > deadline:
                return now
            last = now

    def delta(self, before, after):
        """The series that changed: {key: after - before}."""
        out = {}
        for k, v in after.items():
            d = v - before.get(k, 0.0)
            if d:
                out[k] = d
        return out

    def moved(self, before, after, ignore=()):
        """Changed series but the ones every action moves (bytes, accepted
        connections, sums of durations) and those named in ignore."""
        d = self.delta(before, after)
        skip = ("ringmail_received_bytes_total", "ringmail_sent_bytes_total",
                "ringmail_connections_accepted_total")
        return {k: v for k, v in d.items()
                if k[0] not in skip and not k[0].endswith("_sum")
                and not k[0].endswith("_bucket") and k[0] not in ignore}

    def wait_gauges(self, want, timeout=5.0):
        """Scrape until every ringmail_sessions series and the IDLE gauge
        equal want (a dict; missing: 0)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.scrape()
            got = {k: v for k, v in m.items()
                   if k[0] in ("ringmail_sessions", "ringmail_idle_sessions") and v}
            if got == want or time.monotonic() > deadline:
                self.assertEqual(got, want)
                return m
            time.sleep(0.05)

    def cmd_count(self, m, name):
        return m.get(key("ringmail_commands_total", command=name), 0)


class Metrics(MetricsBase):

    def test_format_and_promtool(self):
        text = self.scrape_text()
        # every family has HELP and TYPE, and every sample a declared family
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
        self.assertEqual(set(types), helps)
        for (name, _labels) in parse(text):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            self.assertTrue(name in types or types.get(base) == "histogram", name)
        for fam in ("ringmail_sessions", "ringmail_idle_sessions", "ringmail_logins_total",
                    "ringmail_commands_total", "ringmail_command_duration_seconds",
                    "ringmail_received_bytes_total", "ringmail_sent_bytes_total",
                    "ringmail_lmtp_deliveries_total",
                    "ringmail_store_appended_messages_total",
                    "ringmail_store_appended_bytes_total", "ringmail_store_flushes_total",
                    "ringmail_store_cold_reads_total", "ringmail_store_cold_read_bytes_total",
                    "ringmail_store_fsync_duration_seconds", "ringmail_auth_queue_jobs",
                    "ringmail_auth_queue_wait_seconds", "ringmail_compactions_total",
                    "ringmail_compaction_reclaimed_bytes_total",
                    "process_start_time_seconds"):
            self.assertIn(fam, types)
        m = parse(text)
        self.assertLess(abs(m[key("process_start_time_seconds")] - time.time()), 3600)
        self.assertEqual(m[key("ringmail_server_processes")], 1)
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool missing (tools/setup-deps.sh installs prometheus)")
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_login_good_and_bad(self):
        before = self.scrape()
        c = self.connect()
        self.expect(c.cmd("LOGIN %s %s" % (self.user, rs.quote("wrong"))), "NO")
        self.expect(c.cmd("LOGIN %s %s" % (self.user, rs.quote(self.password))), "OK")
        after = self.scrape()
        self.assertEqual(self.moved(before, after), {
            key("ringmail_logins_total", mechanism="login_command", result="failure"): 1,
            key("ringmail_logins_total", mechanism="login_command", result="success"): 1,
            key("ringmail_commands_total", command="LOGIN"): 2,
            key("ringmail_command_duration_seconds_count", command="LOGIN"): 2,
            key("ringmail_sessions", state="authenticated", tls="no"): 1,
            key("ringmail_auth_queue_wait_seconds_count"): 2,
        })

    def test_authenticate_plain(self):
        c = self.connect()
        before = self.scrape()
        import base64
        tok = base64.b64encode(b"\0" + self.user.encode() + b"\0" + self.password.encode())
        self.expect(c.cmd("AUTHENTICATE PLAIN " + tok.decode()), "OK")
        after = self.scrape()
        d = self.moved(before, after, ignore=("ringmail_sessions",
                                              "ringmail_auth_queue_wait_seconds_count"))
        self.assertEqual(d, {
            key("ringmail_logins_total", mechanism="plain", result="success"): 1,
            key("ringmail_commands_total", command="AUTHENTICATE"): 1,
            key("ringmail_command_duration_seconds_count", command="AUTHENTICATE"): 1,
        })

    def test_select_fetch(self):
        self.server.import_mbox(self.user, "INBOX", [msg(1), msg(2)])
        c = self.login()
        before = self.scrape()
        self.ok(c, "SELECT INBOX")
        mid = self.scrape()
        self.assertEqual(self.moved(before, mid), {
            key("ringmail_commands_total", command="SELECT"): 1,
            key("ringmail_command_duration_seconds_count", command="SELECT"): 1,
            key("ringmail_sessions", state="authenticated", tls="no"): -1,
            key("ringmail_sessions", state="selected", tls="no"): 1,
        })
        self.ok(c, "FETCH 1:* (FLAGS)")
        self.ok(c, "UID FETCH 1:* (UID RFC822.SIZE)")
        after = self.scrape()
        self.assertEqual(self.moved(mid, after), {
            key("ringmail_commands_total", command="FETCH"): 2,
            key("ringmail_command_duration_seconds_count", command="FETCH"): 2,
        })
        # the latency histogram: cumulative, +Inf equals the count
        b = after[key("ringmail_command_duration_seconds_bucket", command="FETCH", le="+Inf")]
        self.assertEqual(b, after[key("ringmail_command_duration_seconds_count",
                                      command="FETCH")])
        self.assertGreater(after[key("ringmail_command_duration_seconds_sum",
                                     command="FETCH")], 0)

    def test_bytes_exact(self):
        c = self.login()
        before = self.scrape()
        line = b"n1 NOOP\r\n"
        c.send(line)
        r = c.read()
        self.assertEqual(r.tag, "n1")
        after = self.scrape()
        d = self.delta(before, after)
        self.assertEqual(d[key("ringmail_received_bytes_total")], len(line))
        self.assertEqual(d[key("ringmail_sent_bytes_total")], len(r.raw) + 2)   # + CRLF

    def test_append(self):
        c = self.login()
        before = self.scrape()
        m = rs.crlf(msg(5, size=1000))
        self.expect(c.append("INBOX", m), "OK")
        after = self.scrape()
        self.assertEqual(self.moved(before, after, ignore=("ringmail_store_flushes_total",
                                                           "ringmail_store_fsync_duration_seconds_count")), {
            key("ringmail_commands_total", command="APPEND"): 1,
            key("ringmail_command_duration_seconds_count", command="APPEND"): 1,
            key("ringmail_store_appended_messages_total"): 1,
            key("ringmail_store_appended_bytes_total"): len(m),
        })

    def test_idle_gauge(self):
        c = self.login(select="INBOX")
        self.wait_gauges({key("ringmail_sessions", state="selected", tls="no"): 1})
        before = self.scrape()
        c.send("i1 IDLE\r\n")
        self.assertTrue(c.read().continuation)
        self.wait_gauges({key("ringmail_sessions", state="idle", tls="no"): 1,
                          key("ringmail_idle_sessions"): 1})
        c.send("DONE\r\n")
        r = c.read()
        self.assertEqual((r.tag, r.status()[0]), ("i1", "OK"))
        after = self.wait_gauges({key("ringmail_sessions", state="selected", tls="no"): 1})
        self.assertEqual(self.moved(before, after), {
            key("ringmail_commands_total", command="IDLE"): 1,
            key("ringmail_command_duration_seconds_count", command="IDLE"): 1,
        })

    def test_lmtp_delivery(self):
        u2 = "user%d" % type(self).next_user
        type(self).next_user += 1
        before = self.scrape()
        l = smtplib.LMTP("127.0.0.1", self.lmtp_port)
        try:
            l.ehlo("mx")
            refused = l.sendmail("s@example.org", [self.user + "@x", u2 + "@x"], msg(7))
        finally:
            l.close()
        self.assertEqual(refused, {})
        after = self.scrape()
        d = self.moved(before, after, ignore=("ringmail_store_flushes_total",
                                              "ringmail_store_fsync_duration_seconds_count"))
        self.assertGreater(d.pop(key("ringmail_store_appended_bytes_total")), 2 * len(msg(7)))
        self.assertEqual(d, {
            key("ringmail_lmtp_deliveries_total", result="delivered"): 2,
            key("ringmail_store_appended_messages_total"): 2,
        })

    def test_gauges_back_to_zero(self):
        self.wait_gauges({})
        a = self.connect()
        b = self.login()
        c = self.login(select="INBOX")
        self.wait_gauges({key("ringmail_sessions", state="not_authenticated", tls="no"): 1,
                          key("ringmail_sessions", state="authenticated", tls="no"): 1,
                          key("ringmail_sessions", state="selected", tls="no"): 1})
        c.send("i1 IDLE\r\n")
        self.assertTrue(c.read().continuation)
        self.wait_gauges({key("ringmail_sessions", state="not_authenticated", tls="no"): 1,
                          key("ringmail_sessions", state="authenticated", tls="no"): 1,
                          key("ringmail_sessions", state="idle", tls="no"): 1,
                          key("ringmail_idle_sessions"): 1})
        for x in (a, b, c):
            x.close()
        self.wait_gauges({})

    def test_http_errors_and_limits(self):
        status, _, _ = http(self.metrics_port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 404)
        status, headers, _ = http(self.metrics_port,
                                  b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 3\r\n\r\nabc")
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("allow"), "GET, HEAD")
        status, _, _ = http(self.metrics_port, b"DELETE /nope HTTP/1.1\r\n\r\n")
        self.assertEqual(status, 405)
        status, headers, body = http(self.metrics_port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        self.assertEqual((status, body), (200, b""))
        status, _, _ = http(self.metrics_port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200)
        big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
        status, _, _ = http(self.metrics_port, big)
        self.assertEqual(status, 431)
        # a stuck scraper (connected, sends half a request) costs IMAP
        # nothing, and is dropped after the timeout without an answer
        stuck = socket.create_connection(("127.0.0.1", self.metrics_port), timeout=15)
        self.addCleanup(stuck.close)
        stuck.sendall(b"GET /met")
        c = self.login()
        t0 = time.monotonic()
        for _ in range(20):
            self.ok(c, "NOOP")
        self.assertLess(time.monotonic() - t0, 2.0)
        t0 = time.monotonic()
        self.assertEqual(stuck.recv(100), b"")
        self.assertLess(time.monotonic() - t0, 8.0)
        self.scrape()   # and the listener serves the next one


class ConfigChecks(rs.ServerTestCase):
    """listen_metrics addresses: a wildcard must be written out."""

    def run_bad(self, spec):
        p = subprocess.run([rs.RINGMAILD, "-c", self.server.conf, "-o", "listen=127.0.0.1:0",
                            "-o", "listen_tls=", "-o", "listen_metrics=" + spec,
                            "-o", "mail_root=" + self.server.mail_root,
                            "-o", "passwd_file=" + self.server.passwd],
                           capture_output=True, timeout=30)
        return p

    def test_wildcard_refused(self):
        for spec in (":9", "*:9", "[]:9"):
            p = self.run_bad(spec)
            self.assertEqual(p.returncode, 1, spec)
            self.assertIn(b"write the address to listen on", p.stderr, spec)

    def test_bad_port(self):
        p = self.run_bad("127.0.0.1:99999")
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"bad port", p.stderr)

    def test_admin_config_lists_it(self):
        p = self.server.admin("config")
        self.assertIn(b"\nlisten_metrics =     # default\n", p.stdout)


def server_pids(supervisor):
    return rs.server_children(supervisor)


def socket_inodes(pid):
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(int(t[8:-1]))
    return out


def conn_inodes(port):
    """Inodes of the established server-side sockets of a local port."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for ln in f:
                parts = ln.split()
                lport = int(parts[1].split(":")[1], 16)
                if lport == port and parts[3] == "01":
                    out.add(int(parts[9]))
    return out


def drop_cached(root):
    """Every file under root written out and dropped from the page cache
    (the kernel drops clean pages nobody maps, as under memory pressure)."""
    for d, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(d, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def page_cache_drops(directory):
    """Whether a written page of a file here leaves memory when dropped
    (not on tmpfs, which holds every page)."""
    path = os.path.join(directory, "probe")
    with open(path, "wb") as f:
        f.write(b"x" * 65536)
        f.flush()
        os.fdatasync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, 65536, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return False
        vec = (ctypes.c_ubyte * 16)()
        rc = libc.mincore(addr, 65536, vec)
        libc.munmap(addr, 65536)
        return rc == 0 and not vec[15] & 1
    finally:
        os.close(fd)
        os.unlink(path)


def big_message(i):
    """About 6 KB; every 50th says "needle"."""
    word = b"needle" if i % 50 == 0 else b"haystack"
    body = b"".join(b"line %d of message %d: %s\r\n" % (k, i, word if k == 30 else b"hay")
                    for k in range(200))
    return (b"From: Sender %d <s%d@example.org>\r\nSubject: %s topic %d\r\n"
            b"Message-ID: <m%d@example.org>\r\n%s"
            b"Date: Mon, %d Feb 2022 21:52:25 -0800\r\n\r\n" %
            (i % 7, i % 7, b"Re:" if i % 3 else b"", i % 40, i,
             b"References: <m%d@example.org>\r\n" % (i - 40) if i >= 40 else b"",
             1 + i % 28)) + body


class ColdPages(MetricsBase):
    """A mailbox whose files are not in memory: SEARCH BODY, SORT, THREAD
    and FETCH stop before each stretch the kernel would have to read from
    the disk, have it read in on the sync pool (the worker serves other
    sessions meanwhile), and go on; their answers are those over the warm
    mailbox.  ringmail_store_cold_reads_total counts those reads."""
    users_per_class = 2

    # (query, drop the search index first): a search that builds the
    # index reads every body; a substring that is no whole word ("eedle")
    # is checked in the bodies the index leaves; SORT, THREAD and FETCH
    # ENVELOPE read the cache; FETCH of sections the messages' bytes (of
    # headers only: their start)
    QUERIES = [("UID SEARCH BODY needle", True),
               ("UID SEARCH BODY eedle", False),
               ("UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL", False),
               ("UID THREAD REFERENCES UTF-8 ALL", False),
               ("UID FETCH 1:* (ENVELOPE)", False),
               ("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", False),
               ("UID FETCH 1:* (BODY.PEEK[])", False)]

    def answer(self, c, q):
        r = self.ok(c, q)
        return [u.raw for u in r.untagged
                if u.kind() in ("SEARCH", "SORT", "THREAD", "FETCH")]

    def test_cold_mailbox_read_off_the_worker(self):
        if not page_cache_drops(self.server.mail_root):
            self.skipTest("the mail root's file system keeps every page in memory")
        c = self.login()
        for i in range(1, 601):
            self.expect(c.append("INBOX", rs.crlf(big_message(i))), "OK")
        self.ok(c, "SELECT INBOX")
        warm = {q: self.answer(c, q) for q, _ in self.QUERIES}
        needles = [b"%d" % i for i in range(50, 601, 50)]
        self.assertEqual(warm["UID SEARCH BODY needle"], [b"* SEARCH " + b" ".join(needles)])
        self.assertEqual(warm["UID SEARCH BODY eedle"], warm["UID SEARCH BODY needle"])
        c.close()
        for q, drop_index in self.QUERIES:
            # each on a server that has not read the mailbox since its
            # files left memory (a server keeps what it derived)
            self.assertEqual(self.server.stop(), 0)
            if drop_index:
                for d, _dirs, files in os.walk(self.server.mail_root):
                    for name in files:
                        if name.startswith("sindex."):
                            os.unlink(os.path.join(d, name))
            drop_cached(self.server.mail_root)
            self.server.start()
            before = self.scrape()
            c = self.login(select="INBOX")
            self.assertEqual(self.answer(c, q), warm[q], q)
            c.close()
            after = self.scrape()
            d = self.delta(before, after)
            self.assertGreater(d.get(key("ringmail_store_cold_reads_total"), 0), 0, q)
            self.assertGreater(d.get(key("ringmail_store_cold_read_bytes_total"), 0), 4096, q)


class TwoProcesses(MetricsBase):
    """processes = 2: sessions on both are in one scrape, whichever
    process answers it; a server killed and restarted keeps its counters
    and drops its gauges."""
    server_options = {"processes": "2"}

    def test_both_processes_counted(self):
        self.wait_gauges({})
        conns = []
        pids = server_pids(self.server.proc.pid)
        self.assertEqual(len(pids), 2)
        # open sessions until both servers hold some (SO_REUSEPORT spreads
        # them by the client port)
        holders = set()
        for _ in range(64):
            conns.append(self.login())
            time.sleep(0.01)
            inodes = conn_inodes(self.server.port)
            holders = {p for p in pids if socket_inodes(p) & inodes}
            if len(holders) == 2 and len(conns) >= 4:
                break
        self.assertEqual(len(holders), 2, "all sessions went to one process")
        n = len(conns)
        for _ in range(6):      # any process may answer: each sees all
            m = self.wait_gauges({key("ringmail_sessions", state="authenticated", tls="no"): n})
            self.assertEqual(m[key("ringmail_server_processes")], 2)
        before = self.scrape()
        for c in conns:
            self.ok(c, "NOOP")
        after = self.scrape()
        self.assertEqual(self.cmd_count(after, "NOOP") - self.cmd_count(before, "NOOP"), n)
        for c in conns:
            c.close()
        self.wait_gauges({})

    def test_restart_keeps_counters(self):
        self.wait_gauges({})
        pids = server_pids(self.server.proc.pid)
        victim = pids[0]
        conns = []
        for _ in range(64):     # until both hold sessions
            conns.append(self.login())
            time.sleep(0.01)
            inodes = conn_inodes(self.server.port)
            if all(socket_inodes(p) & inodes for p in pids):
                break
        self.assertTrue(socket_inodes(victim) & conn_inodes(self.server.port))
        before = self.scrape()
        logins = before[key("ringmail_logins_total", mechanism="login_command",
                            result="success")]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = server_pids(self.server.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        self.assertNotIn(victim, server_pids(self.server.proc.pid))
        time.sleep(0.5)
        # the sessions of the dead server are gone from the gauges, its
        # counters stay
        alive = 0
        for c in conns:
            try:
                c.cmd("NOOP", timeout=2)
                alive += 1
            except Exception:
                pass
        m = self.scrape()
        self.assertGreaterEqual(m[key("ringmail_logins_total", mechanism="login_command",
                                      result="success")], logins)
        self.assertEqual(m[key("ringmail_sessions", state="authenticated", tls="no")], alive)
        self.assertLess(alive, len(conns))
        self.assertEqual(m[key("ringmail_server_starts_total")], 3)
        for c in conns:
            c.close()
        self.wait_gauges({})


rs.parametrize(globals(), Metrics, TwoProcesses, ColdPages)
rs.parametrize(globals(), ConfigChecks)

if __name__ == "__main__":
    rs.main()
