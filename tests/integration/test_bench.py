#!/usr/bin/env python3
"""ringmail-bench (the IMAP load generator) against ringmaild: every
implemented workload runs 1-2 s with --json on each I/O engine (--io uring,
--io epoll; one server per engine) and must report zero errors,
plausible counts and ordered percentiles; --populate must create the
messages (checked with STATUS over imaplib) and skip users that have enough;
idle-hold must see every append in every session; resync's devices must
end every resync with the writer's state (by CONDSTORE and by full
listings); deliver's LMTP transactions must all get the right replies and
every copy must be announced by EXISTS to the user's IDLE watcher (and be
in the mailbox); --tls works against the
TLS listener; a dead server gives errors and exit 1, never a hang.  Timings decide
nothing."""

import imaplib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

BENCH = os.path.join(os.path.dirname(rs.RINGMAILD), "ringmail-bench") if rs.RINGMAILD else ""
NUSERS = 5
PASSWORD = "bench-secret"
POPULATE = 20


class BenchBase:
    IO = None

    @classmethod
    def setUpClass(cls):
        if not BENCH or not os.access(BENCH, os.X_OK):
            raise AssertionError("ringmail-bench not found next to ringmaild (%r)" % BENCH)
        users = {"user%d" % i: PASSWORD for i in range(1, NUSERS + 1)}
        cls.lmtp_dir = tempfile.mkdtemp(prefix="bench-lmtp-", dir="/tmp")
        cls.lmtp_sock = os.path.join(cls.lmtp_dir, "lmtp")
        cls.server = rs.Server("auto", users, name="bench-" + cls.IO, tls=True,
                               options={"listen_lmtp": cls.lmtp_sock})
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        tail = cls.server.stderr_tail()
        report = rs.sanitizer_report(cls.server.stderr_since(0, 10 ** 7))
        cls.server.cleanup()
        shutil.rmtree(cls.lmtp_dir, ignore_errors=True)
        if report:
            raise AssertionError("sanitizer report in ringmaild's stderr:\n" + report)
        if rc != 0:
            raise AssertionError("ringmaild exit status %r after SIGTERM\n%s" % (rc, tail))

    def bench(self, workload, clients, duration=1, extra=(), port=None, expect_rc=0,
              json_out=True):
        cmd = [BENCH, "--host", "127.0.0.1", "--port", str(port or self.server.port),
               "--users", "user%d", "--nusers", str(NUSERS), "--password", PASSWORD,
               "--clients", str(clients), "--duration", str(duration),
               "--workload", workload, "--io", self.IO] + (["--json"] if json_out else []) \
            + list(extra)
        p = subprocess.run(cmd, capture_output=True, timeout=duration + 60)
        out = p.stdout.decode(errors="replace")
        err = p.stderr.decode(errors="replace")
        self.assertNotIn("using epoll", err, "io_uring must work on this machine")
        self.assertEqual(p.returncode, expect_rc, "%s\nexit %d\nstdout: %s\nstderr: %s\n%s"
                         % (" ".join(cmd), p.returncode, out[-3000:], err[-3000:],
                            self.server.stderr_tail(3000)))
        if not json_out or expect_rc == 2:
            return out, err
        lines = [ln for ln in out.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, "--json must print exactly one object: %r" % out)
        return json.loads(lines[0])

    def check_result(self, r, workload, clients, must_have):
        self.assertEqual(r["workload"], workload)
        self.assertEqual(r["clients"], clients)
        self.assertEqual(r["errors"], 0, json.dumps(r, indent=1))
        self.assertGreater(r["duration_s"], 0)
        self.assertGreater(r["total_ops_per_sec"], 0)
        for name in must_have:
            self.assertIn(name, r["commands"], json.dumps(r, indent=1))
            self.assertGreater(r["commands"][name]["ops"], 0, name)
        for name, c in r["commands"].items():
            self.assertEqual(c["errors"], 0, name)
            self.assertGreaterEqual(c["ops_per_sec"], 0)
            self.assertLessEqual(c["p50_ms"], c["p99_ms"], name)
            self.assertLessEqual(c["p99_ms"], c["p999_ms"], name)
            self.assertLessEqual(c["p999_ms"], c["max_ms"], name)
            if c["ops"]:
                self.assertGreater(c["max_ms"], 0, name)

    def messages(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.server.port)
        try:
            m.login(user, PASSWORD)
            typ, data = m.status("INBOX", "(MESSAGES)")
            self.assertEqual(typ, "OK")
            return int(data[0].decode().split("MESSAGES")[1].strip(" )"))
        finally:
            m.logout()

    # The populate tests run first (test names sort), before workloads that
    # append or expunge.
    def test_0_populate_then_bodies(self):
        r = self.bench("bodies", 8, extra=["--populate", str(POPULATE)])
        self.check_result(r, "bodies", 8, ["LOGIN", "SELECT", "FETCH_BODY"])
        self.assertNotIn("APPEND", r["commands"], "bodies appends only into empty mailboxes")
        for i in range(1, NUSERS + 1):
            self.assertEqual(self.messages("user%d" % i), POPULATE, "user%d" % i)

    def test_1_populate_skips_full_users(self):
        r = self.bench("login", 4, duration=1, extra=["--populate", str(POPULATE // 2)])
        self.check_result(r, "login", 4, ["CONNECT", "LOGIN", "LOGOUT"])
        for i in range(1, NUSERS + 1):
            self.assertEqual(self.messages("user%d" % i), POPULATE, "user%d" % i)

    def test_2_headers(self):
        r = self.bench("headers", 6)
        self.check_result(r, "headers", 6, ["LOGIN", "SELECT", "FETCH_HEADERS"])

    def test_3_idle_hold(self):
        clients = 12
        r = self.bench("idle-hold", clients, duration=2)
        self.check_result(r, "idle-hold", clients, ["LOGIN", "SELECT", "IDLE", "APPEND"])
        f = r["fanout"]
        self.assertEqual(f["sessions"], clients, json.dumps(r, indent=1))
        self.assertGreaterEqual(f["appends"], 1, json.dumps(r, indent=1))
        self.assertEqual(f["appends"], f["appends_sent"],
                         "every append must reach every IDLE session: " + json.dumps(f))
        self.assertLessEqual(f["p50_ms"], f["p99_ms"])
        self.assertLessEqual(f["p99_ms"], f["max_ms"])
        self.assertEqual(r["commands"]["IDLE"]["ops"], clients)

    def test_4_login(self):
        r = self.bench("login", 20)
        self.check_result(r, "login", 20, ["CONNECT", "LOGIN", "LOGOUT"])

    def test_5_append(self):
        before = sum(self.messages("user%d" % i) for i in range(1, NUSERS + 1))
        r = self.bench("append", 4)
        self.check_result(r, "append", 4, ["LOGIN", "APPEND"])
        after = sum(self.messages("user%d" % i) for i in range(1, NUSERS + 1))
        n = r["commands"]["APPEND"]["ops"]
        # appends in flight when the run ended may land without being counted
        self.assertGreaterEqual(after - before, n)
        self.assertLessEqual(after - before, n + 4)

    def test_6_mixed(self):
        r = self.bench("mixed", 10)
        self.check_result(r, "mixed", 10, ["LOGIN", "SELECT", "FETCH_BODY", "STORE"])
        r = self.bench("mixed", 4, duration=1,
                       extra=["--weights", "login=0,select=1,list=1,status=1,headers=1,"
                              "body=1,store=1,append=2,expunge=1,logout=0"])
        self.check_result(r, "mixed", 4, ["LIST", "STATUS", "APPEND"])
        self.assertNotIn("LOGOUT", r["commands"])

    def test_6b_search_copy_bystander(self):
        # the first SEARCH BODY over the mailboxes the earlier workloads
        # filled also builds their search index (slow under ASan): give it
        # time to finish at least one
        for workload, cmd, secs in (("search-body", "SEARCH_BODY", 5), ("copy", "COPY", 1)):
            r = self.bench(workload, 2, duration=secs, extra=["--bystander", "2"])
            self.check_result(r, workload, 2, ["LOGIN", "SELECT", cmd])
            b = r["bystander"]
            self.assertEqual(b["sessions"], 2)
            self.assertGreater(b["ops"], 0, json.dumps(r, indent=1))
            self.assertEqual(b["errors"], 0)
            self.assertLessEqual(b["p50_ms"], b["p99_ms"])
            self.assertLessEqual(b["p99_ms"], b["max_ms"])
        self.assertIn("CREATE", r["commands"])
        out, _ = self.bench("headers", 1, duration=1, json_out=False,
                            extra=["--bystander", "1"])
        self.assertIn("bystander NOOP", out)
        self.bench("login", 1, extra=["--bystander", "1", "--tls"], expect_rc=2)

    def test_6c_resync(self):
        # every device's state must equal the writer's after every resync,
        # whatever the method: the server's best (auto: CONDSTORE, or QRESYNC
        # where offered), CONDSTORE forced, a full listing
        devices, changes = 2, 6
        for mode in ("auto", "condstore", "full"):
            r = self.bench("resync", 1, duration=1.5,
                           extra=["--devices", str(devices), "--changes", str(changes),
                                  "--resync-mode", mode])
            self.check_result(r, "resync", NUSERS * (devices + 1),
                              ["CONNECT", "LOGIN", "SELECT", "UID_FETCH_FLAGS", "UID_STORE",
                               "UID_EXPUNGE", "APPEND", "CAPABILITY"])
            s = r["resync"]
            dump = json.dumps(r, indent=1)
            self.assertEqual(s["mismatches"], 0, dump)
            self.assertEqual(s["mode_asked"], mode)
            self.assertEqual((s["users"], s["devices"], s["changes_per_round"]),
                             (NUSERS, devices, changes))
            self.assertEqual(s["first_syncs"], NUSERS * devices, dump)
            self.assertGreaterEqual(s["rounds"], 2 * NUSERS, dump)
            self.assertGreater(s["resyncs"], 0, dump)
            # a round's changes come before its resyncs; the last may be cut
            self.assertGreaterEqual(s["changes"], changes * s["resyncs"] // devices, dump)
            self.assertLessEqual(s["resyncs"], (s["rounds"] - NUSERS) * devices, dump)
            used = {k for k, v in s["modes"].items() if v}
            want = {"auto": {"condstore", "qresync"}, "condstore": {"condstore"},
                    "full": {"full"}}[mode]
            self.assertTrue(used and used <= want, dump)
            self.assertEqual(sum(s["modes"].values()), s["resyncs"])
            self.assertGreater(s["bytes_per_resync"], 0)
            self.assertAlmostEqual(s["resyncs_per_sec"], s["resyncs"] / r["duration_s"],
                                   delta=0.01 * s["resyncs"] + 1)
            self.assertLessEqual(s["p50_ms"], s["p99_ms"])
            self.assertLessEqual(s["p99_ms"], s["max_ms"])
            self.assertGreater(s["max_ms"], 0)
            if mode == "condstore":
                # the expunges are found by UID SEARCH (RFC 4549 4.3.1)
                self.assertIn("UID_SEARCH", r["commands"], dump)
        out, _ = self.bench("resync", 1, duration=1, json_out=False, extra=["--devices", "1"])
        self.assertRegex(out, r"resyncs/s, \d+ bytes received per resync")
        self.assertIn(" 0 mismatches", out)

    def test_6d_resync_sees_foreign_changes(self):
        # the check can fail: a client the writer knows nothing of flips
        # \Draft on user1's messages during the run; the devices see it, the
        # writer's truth does not: mismatches, exit 1
        m = imaplib.IMAP4("127.0.0.1", self.server.port)
        m.login("user1", PASSWORD)
        m.append("INBOX", None, None, b"Subject: foreign\r\n\r\nx\r\n")
        cmd = [BENCH, "--host", "127.0.0.1", "--port", str(self.server.port),
               "--users", "user%d", "--nusers", "1", "--password", PASSWORD,
               "--clients", "1", "--duration", "2.5", "--workload", "resync",
               "--devices", "2", "--io", self.IO, "--json"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            m.select("INBOX")
            flip = 0
            while p.poll() is None:
                m.store("1:*", "+FLAGS" if flip % 2 == 0 else "-FLAGS", "(\\Draft)")
                flip += 1
                time.sleep(0.05)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
            m.logout()
        self.assertEqual(p.returncode, 1, err.decode(errors="replace"))
        r = json.loads(out)
        self.assertGreater(r["resync"]["mismatches"], 0, json.dumps(r, indent=1))
        self.assertEqual(r["errors"], 0, json.dumps(r, indent=1))

    def test_6e_deliver(self):
        before = {u: self.messages(u) for u in ("user%d" % i for i in range(1, NUSERS + 1))}
        clients = 3
        r = self.bench("deliver", clients, duration=1.5,
                       extra=["--lmtp", self.lmtp_sock, "--max-rcpts", "3", "--seed", "7"])
        self.check_result(r, "deliver", clients, ["LOGIN", "SELECT", "IDLE", "LHLO", "DELIVER"])
        d = r["deliver"]
        js = json.dumps(r, indent=1)
        self.assertEqual(d["bad_replies"], 0, js)
        self.assertGreater(d["deliveries"], 0, js)
        self.assertEqual(d["deliveries"], r["commands"]["DELIVER"]["ops"], js)
        self.assertGreaterEqual(d["recipients"], d["deliveries"], js)
        self.assertLessEqual(d["recipients"], 3 * d["deliveries"], js)
        # 4-40 KB messages (and their headers)
        self.assertGreaterEqual(d["bytes"], 4096 * d["deliveries"], js)
        self.assertLessEqual(d["bytes"], 42 * 1024 * d["deliveries"], js)
        # every copy answered 250 was announced to its user's watcher
        self.assertEqual(d["exists_expected"], d["recipients"], js)
        self.assertEqual(d["exists_seen"], d["recipients"], js)
        self.assertEqual(r["commands"]["IDLE"]["ops"], NUSERS, js)
        self.assertLessEqual(d["p50_ms"], d["p99_ms"])
        self.assertLessEqual(d["p99_ms"], d["max_ms"])
        self.assertLessEqual(d["exists_p50_ms"], d["exists_p99_ms"])
        after = {u: self.messages(u) for u in before}
        self.assertEqual(sum(after.values()) - sum(before.values()), d["recipients"], js)
        # and over host:port with a table
        port = rs.free_port()
        srv = rs.Server("auto", {"user%d" % i: PASSWORD for i in range(1, NUSERS + 1)},
                        name="bench-lmtp-tcp-" + self.IO,
                        options={"listen_lmtp": "127.0.0.1:%d" % port})
        srv.start()
        try:
            out, err = self.bench("deliver", 2, duration=1, port=srv.port, json_out=False,
                                  extra=["--lmtp", "127.0.0.1:%d" % port, "--watchers", "0"])
            self.assertIn("deliveries/s", out)
            self.assertIn("0 bad replies", out)
        finally:
            srv.stop()
            srv.cleanup()

    def test_7_table_output(self):
        out, _ = self.bench("login", 2, duration=1, json_out=False)
        self.assertIn("LOGIN", out)
        self.assertIn("p99.9 ms", out)

    def test_8_tls(self):
        port = self.server.tls_port
        r = self.bench("login", 4, duration=1, extra=["--tls"], port=port)
        self.check_result(r, "login", 4, ["CONNECT", "LOGIN", "LOGOUT"])
        r = self.bench("mixed", 4, duration=1, extra=["--tls"], port=port)
        self.check_result(r, "mixed", 4, ["LOGIN", "SELECT", "FETCH_BODY"])
        # TLS to the plaintext port: handshake failures are errors, no hang
        r = self.bench("login", 2, duration=1, extra=["--tls"], expect_rc=1)
        self.assertGreater(r["commands"]["CONNECT"]["errors"], 0)

    def test_8b_procs_idle_hold(self):
        # two processes: sessions in both, the appenders in the first; every
        # session of both must see every append
        clients = 10
        r = self.bench("idle-hold", clients, duration=2, extra=["--procs", "2"])
        self.check_result(r, "idle-hold", clients, ["LOGIN", "SELECT", "IDLE", "APPEND"])
        self.assertEqual(r["procs"], 2)
        f = r["fanout"]
        self.assertEqual(f["sessions"], clients, json.dumps(r, indent=1))
        self.assertGreaterEqual(f["appends"], 1, json.dumps(r, indent=1))
        self.assertEqual(f["appends"], f["appends_sent"], json.dumps(f))
        self.assertEqual(r["commands"]["IDLE"]["ops"], clients)
        self.assertEqual(r["commands"]["SELECT"]["ops"], clients)
        self.assertEqual(r["commands"]["LOGIN"]["ops"], clients + NUSERS)  # + appenders
        self.assertEqual(r["connections_held"], clients + NUSERS)
        self.assertGreater(f["max_ms"], 0)

    def test_8c_procs_mixed_and_source_addrs(self):
        r = self.bench("mixed", 6, extra=["--procs", "2", "--source-addrs", "3"])
        self.check_result(r, "mixed", 6, ["LOGIN", "SELECT", "FETCH_BODY"])
        self.assertEqual(r["procs"], 2)
        self.assertLessEqual(r["connections_held"], 6)
        # every client's first CONNECT and LOGIN land in the merged counts
        self.assertGreaterEqual(r["commands"]["CONNECT"]["ops"], 6)
        self.assertGreaterEqual(r["commands"]["LOGIN"]["ops"], 6)
        total = sum(c["ops"] for c in r["commands"].values())
        self.assertAlmostEqual(r["total_ops_per_sec"], total / r["duration_s"],
                               delta=0.01 * total + 1)

    def test_9a_dead_server(self):
        port = rs.free_port()
        r = self.bench("headers", 4, duration=1, port=port, expect_rc=1)
        self.assertGreater(r["errors"], 0)
        self.assertGreater(r["commands"]["CONNECT"]["errors"], 0)

    def test_9b_server_dies_mid_run(self):
        srv = rs.Server("auto", {"user%d" % i: PASSWORD for i in range(1, NUSERS + 1)},
                        name="bench-dies")
        try:
            srv.start()
            cmd = [BENCH, "--host", "127.0.0.1", "--port", str(srv.port), "--users", "user%d",
                   "--nusers", str(NUSERS), "--password", PASSWORD, "--clients", "6",
                   "--duration", "3", "--workload", "mixed", "--json", "--io", self.IO]
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(1)
            srv.kill()
            out, err = p.communicate(timeout=30)
            self.assertLess(time.monotonic() - t0, 15)
            self.assertEqual(p.returncode, 1, err.decode(errors="replace"))
            r = json.loads(out)
            self.assertGreater(r["errors"], 0)
            self.assertGreater(r["commands"]["LOGIN"]["ops"], 0)
        finally:
            srv.cleanup()


class BenchUring(BenchBase, unittest.TestCase):
    IO = "uring"


class BenchEpoll(BenchBase, unittest.TestCase):
    IO = "epoll"


if __name__ == "__main__":
    rs.main()
