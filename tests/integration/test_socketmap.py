#!/usr/bin/env python3
"""ringmaild's Postfix lookup tables (listen_socketmap; Postfix's socketmap
protocol, socketmap_table(5)): netstring requests "<map> <key>", replies
"OK <data>", "NOTFOUND ", "TEMP <reason>", "PERM <reason>".

SocketmapRaw speaks the protocol over a raw socket: the transport of users
routed by their record (host=, lmtp_port=) and of users kept here, NOTFOUND
for unknown users and for keys that are no address, many requests on one
connection (pipelined), a request cut into pieces, TEMP while the directory
cannot be read, malformed netstrings (the connection is closed), a request
over the size limit (PERM, then closed), the idle timeout, the connection
limit, trusted_networks, and IMAP sessions served while a lookup is stuck
in the directory.

PostfixRouting runs the private Postfix of the LMTP tests
(postfix_server.py) in front of three ringmaild backends that share one
passwd-file whose users carry host=127.0.0.1 lmtp_port=<their backend's
LMTP port>, and a fourth ringmaild serving the maps (transport_maps and
virtual_mailbox_maps, the lines of the README's "More than one machine"):
mail to users of every backend lands on that backend only, an unknown user
is refused at RCPT, and with the maps' server stopped mail is deferred
(smtpd's 451 at RCPT; queued local mail stays in the queue) and delivered,
once, when it is back."""

import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
import postfix_server as ps  # noqa: E402

DOMAIN = "example.org"
REQUEST_MAX = 4096      # SOCKETMAP_REQUEST_MAX in core/server/socketmap.h


def ns(data):
    if isinstance(data, str):
        data = data.encode()
    return b"%d:%s," % (len(data), data)


class Map:
    """A socketmap client: one connection, requests one at a time."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """The next reply netstring's string; None if the server closed."""
        while True:
            m = re.match(rb"(\d+):", self.buf)
            if m:
                n = int(m.group(1))
                end = m.end() + n
                if len(self.buf) > end:
                    assert self.buf[end:end + 1] == b",", self.buf[:end + 1]
                    out = self.buf[m.end():end]
                    self.buf = self.buf[end + 1:]
                    return out.decode()
            got = self.sock.recv(65536)
            if not got:
                assert not self.buf, "partial reply before close: %r" % self.buf
                return None
            self.buf += got

    def ask(self, req):
        self.send(ns(req))
        return self.reply()

    def closed(self, timeout=5):
        """True once the server has closed the connection (reading no
        reply meanwhile)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def passwd_line(name, password, extra=""):
    return "%s:{PLAIN}%s::::::%s\n" % (name, password, extra)


class SocketmapRaw(rs.ServerTestCase):
    """One ringmaild serving the maps (and IMAP); users: routed ones with
    host/lmtp_port fields, and the harness's userN kept here."""
    users_per_class = 10
    server_options = {"socketmap_timeout": "3", "log_level": "debug",
                      "auth_pool_threads": "2", "socketmap_domains": "example.org"}

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        cls.sm_port, cls.sm_hold = rs.reserve_port()
        cls.lmtp_port, cls.lmtp_hold = rs.reserve_port()
        cls.server_options = dict(cls.server_options,
                                  listen_socketmap="127.0.0.1:%d" % cls.sm_port,
                                  listen_lmtp="127.0.0.1:%d" % cls.lmtp_port)
        try:
            super().setUpClass()
        except BaseException:
            cls.sm_hold.close()
            cls.lmtp_hold.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sm_hold.close()
            cls.lmtp_hold.close()

    @classmethod
    def prepare_server(cls, server):
        with open(server.passwd, "a") as f:
            f.write(passwd_line("alice", "a", "host=127.0.0.1 port=10143 lmtp_port=10024"))
            f.write(passwd_line("Bob", "b", "userdb_host=10.0.0.2"))
            f.write(passwd_line("v6", "c", "host=::1 lmtp_port=2424"))
            f.write(passwd_line("broken", "d", "host=10.0.0.3 lmtp_port=0"))
        cls.passwd_text = open(server.passwd).read()

    def setUp(self):
        super().setUp()
        self.maps = []

    def tearDown(self):
        for m in self.maps:
            m.close()
        super().tearDown()

    def map(self):
        m = Map(self.sm_port)
        self.maps.append(m)
        return m

    def test_answers(self):
        """Each kind of answer, on one connection."""
        m = self.map()
        here = "OK lmtp:inet:127.0.0.1:%d" % self.lmtp_port
        for req, want in [
                ("transport alice@example.org", "OK lmtp:inet:127.0.0.1:10024"),
                # the detail after recipient_delimiter and the case do not matter
                ("transport alice+lists@example.org", "OK lmtp:inet:127.0.0.1:10024"),
                ("transport ALICE@Example.ORG", "OK lmtp:inet:127.0.0.1:10024"),
                # no lmtp_port: socketmap_lmtp_port (24)
                ("transport bob@example.org", "OK lmtp:inet:10.0.0.2:24"),
                ("transport v6@example.org", "OK lmtp:inet:[::1]:2424"),
                # no host: the mail is here, at the first listen_lmtp address
                ("transport %s@example.org" % self.user, here),
                ("transport nobody@example.org", "NOTFOUND "),
                # a remote recipient (Postfix asks about those too): not ours,
                # though its local part is a user's here
                ("transport alice@elsewhere.example", "NOTFOUND "),
                ("mailbox alice@elsewhere.example", "NOTFOUND "),
                # Postfix asks for the domain after the address: no user's
                ("transport example.org", "NOTFOUND "),
                ("mailbox alice+x@example.org", "OK alice"),
                ("mailbox BOB@example.org", "OK Bob"),
                ("mailbox nobody@example.org", "NOTFOUND "),
                ("transport broken@example.org", "PERM the record of broken has a bad "
                                                 "lmtp_port"),
                ("virtual alice@example.org", "PERM no map virtual here (transport, mailbox)"),
                ("transport", "PERM a request is \"map key\"")]:
            self.assertEqual(m.ask(req), want, req)

    def test_many_requests_pipelined(self):
        """500 requests sent at once on one connection: 500 replies, in the
        order asked (lookups run one at a time off the worker, the rest of
        the input waits)."""
        m = self.map()
        reqs, want = [], []
        for i in range(500):
            if i % 3 == 0:
                reqs.append("transport alice+%d@example.org" % i)
                want.append("OK lmtp:inet:127.0.0.1:10024")
            elif i % 3 == 1:
                reqs.append("mailbox nobody%d@example.org" % i)
                want.append("NOTFOUND ")
            else:
                reqs.append("mailbox user%d@example.org" % (i % 10))
                want.append("OK user%d" % (i % 10))
        m.send(b"".join(ns(r) for r in reqs))
        got = [m.reply() for _ in reqs]
        self.assertEqual(got, want)
        # and the connection serves on
        self.assertEqual(m.ask("mailbox alice@example.org"), "OK alice")

    def test_request_in_pieces(self):
        """A netstring cut anywhere (the length, the string, the comma)."""
        m = self.map()
        data = ns("transport alice@example.org") + ns("mailbox Bob@example.org")
        for i in range(len(data)):
            m.send(data[i:i + 1])
            if i % 7 == 0:
                time.sleep(0.01)
        self.assertEqual(m.reply(), "OK lmtp:inet:127.0.0.1:10024")
        self.assertEqual(m.reply(), "OK Bob")

    def test_directory_unreadable_is_temp(self):
        """A passwd-file that cannot be read: TEMP (Postfix defers), never
        NOTFOUND (Postfix would refuse or bounce the mail as unknown); once
        it is back, answers as before, on the same connection."""
        m = self.map()
        self.assertEqual(m.ask("mailbox alice@example.org"), "OK alice")
        path = self.server.passwd
        aside = path + ".aside"
        os.rename(path, aside)
        os.mkdir(path)      # root reads any mode: a directory cannot be read as a file
        try:
            for req in ("transport alice@example.org", "mailbox alice@example.org",
                        "mailbox nobody@example.org"):
                got = m.ask(req)
                self.assertTrue(got.startswith("TEMP "), "%s -> %r" % (req, got))
        finally:
            os.rmdir(path)
            os.rename(aside, path)
        self.assertEqual(m.ask("transport alice@example.org"), "OK lmtp:inet:127.0.0.1:10024")
        self.assertEqual(m.ask("mailbox nobody@example.org"), "NOTFOUND ")

    def test_bad_netstrings_close(self):
        """What is not a netstring cannot be resynchronised: the connection
        is closed without a reply, and the server serves the next one."""
        for bad in (b"abc:", b"05:hello,", b":x,", b"3:abcX", b"-1:",
                    b"transport alice@example.org\n"):
            m = self.map()
            m.send(bad)
            self.assertTrue(m.closed(), bad)
            self.assertEqual(m.buf, b"", bad)
        self.assertEqual(self.map().ask("mailbox alice@example.org"), "OK alice")
        self.assertIn("socketmap: not a netstring, closing",
                      self.server.stderr_since(self.log_offset))

    def test_oversize(self):
        """A request up to the limit is answered; a longer one gets PERM as
        soon as its length is read, then the connection is closed."""
        m = self.map()
        key = "a" * (REQUEST_MAX - len("transport ") - len("@example.org")) + "@example.org"
        self.assertEqual(len("transport " + key), REQUEST_MAX)
        self.assertEqual(m.ask("transport " + key), "NOTFOUND ")
        m.send(b"%d:" % (REQUEST_MAX + 1))      # the string itself never comes
        self.assertEqual(m.reply(), "PERM request too long")
        self.assertTrue(m.closed())
        for big in (b"100000000:transport", b"9999999999999999999999:"):
            m = self.map()
            m.send(big)
            self.assertEqual(m.reply(), "PERM request too long")
            self.assertTrue(m.closed())

    def test_idle_timeout(self):
        """socketmap_timeout (3 s here) of silence closes the connection;
        a connection that keeps asking stays."""
        busy, idle = self.map(), self.map()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            self.assertEqual(busy.ask("mailbox alice@example.org"), "OK alice")
            time.sleep(0.5)
        self.assertTrue(idle.closed(timeout=0.1))
        self.assertEqual(busy.ask("mailbox alice@example.org"), "OK alice")

    def test_imap_served_while_lookup_is_stuck(self):
        """A lookup that blocks in the directory (here: the passwd-file is a
        FIFO nobody writes, so reading it waits) holds a pool thread, not a
        worker: IMAP sessions on every worker go on being answered; the
        lookup answers once the directory does."""
        sessions = []
        for _ in range(4):      # over both workers
            c = self.login(select="INBOX")
            sessions.append(c)
        path = self.server.passwd
        aside = path + ".aside"
        os.rename(path, aside)
        os.mkfifo(path)
        writer = None
        try:
            m = self.map()
            m.send(ns("transport alice@example.org"))
            time.sleep(0.3)     # the lookup is on the pool, opening the FIFO
            t0 = time.monotonic()
            for _ in range(5):
                for c in sessions:
                    self.ok(c, "NOOP")
                    self.ok(c, "STATUS INBOX (MESSAGES UIDNEXT)")
            took = time.monotonic() - t0
            self.assertLess(took, 5.0)
            m.sock.settimeout(0.2)
            with self.assertRaises(socket.timeout):     # still stuck: no reply yet
                m.sock.recv(100)
            m.sock.settimeout(15)

            def write_fifo():
                with open(path, "w") as f:
                    f.write(self.passwd_text)
            writer = threading.Thread(target=write_fifo, daemon=True)
            writer.start()
            self.assertEqual(m.reply(), "OK lmtp:inet:127.0.0.1:10024")
        finally:
            if writer is None:
                # unblock the pool thread whatever happened
                writer = threading.Thread(target=lambda: open(path, "w").close(), daemon=True)
                writer.start()
            writer.join(10)
            os.unlink(path)
            os.rename(aside, path)
        self.assertEqual(self.map().ask("mailbox Bob@example.org"), "OK Bob")


class SocketmapLimits(unittest.TestCase):
    """socketmap_max_connections and trusted_networks, each on a server of
    its own."""
    backend = None

    def start(self, options):
        port, hold = rs.reserve_port()
        self.addCleanup(hold.close)
        opts = dict(options, listen_socketmap="127.0.0.1:%d" % port, socketmap_domains="x")
        srv = rs.Server(self.backend, {"alice": "a"}, opts, name="socketmap-limits")
        self.addCleanup(srv.cleanup)
        srv.start()
        self.addCleanup(srv.stop)
        return srv, port

    def test_max_connections(self):
        srv, port = self.start({"socketmap_max_connections": "2"})
        a, b = Map(port), Map(port)
        self.assertEqual(a.ask("mailbox alice@x"), "OK alice")
        self.assertEqual(b.ask("mailbox alice@x"), "OK alice")
        c = Map(port)
        self.assertTrue(c.closed())
        a.close()
        time.sleep(0.3)
        d = Map(port)
        self.assertEqual(d.ask("mailbox alice@x"), "OK alice")
        for m in (b, c, d):
            m.close()
        self.assertIn("socketmap_max_connections (2)", srv.stderr_tail())

    def test_processes(self):
        """processes = 2: both servers take socketmap connections on the
        shared port (SO_REUSEPORT), and every one is answered."""
        srv, port = self.start({"processes": "2", "workers": "1"})
        deadline = time.monotonic() + 10
        while len(rs.server_children(srv.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(rs.server_children(srv.proc.pid)), 2)
        for i in range(60):
            m = Map(port)
            self.assertEqual(m.ask("transport alice+%d@x" % i), "PERM alice has no host "
                             "and socketmap_lmtp_default is not set")
            m.close()

    def test_only_trusted_networks(self):
        """socketmap_table(5): "neither the connection nor the server are
        authenticated": loopback is not in trusted_networks here, so the
        connection is closed unanswered."""
        srv, port = self.start({"trusted_networks": "10.0.0.0/8"})
        m = Map(port)
        m.send(ns("mailbox alice@x"))
        self.assertTrue(m.closed())
        self.assertEqual(m.buf, b"")
        m.close()
        self.assertIn("not in trusted_networks", srv.stderr_tail())


# ---------------------------------------------------------------------------
# Postfix routing by the maps


def message(tag, to):
    return (b"From: Carol <carol@example.net>\r\nTo: %s\r\nSubject: routed %s\r\n"
            b"Message-ID: <%s.%d@example.org>\r\n\r\nHello %s.\r\n"
            % (to.encode(), tag.encode(), tag.encode(), os.getpid(), tag.encode()))


class PostfixRouting(unittest.TestCase):
    """Three backends (LMTP on TCP), one passwd-file, a fourth ringmaild
    serving the maps, and Postfix routing by them."""
    backend = None
    # user -> backend index (None: no host in the record, the maps
    # server's socketmap_lmtp_default, which is backend 0's LMTP)
    USERS = {"a0": 0, "a1": 0, "b0": 1, "b1": 1, "c0": 2, "c1": 2, "d0": None}

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        why = ps.available()
        if why:
            raise AssertionError("cannot run a private Postfix: " + why)
        cls.cleanups = []
        try:
            cls._setup()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def _setup(cls):
        cls.dir = tempfile.mkdtemp(prefix="socketmap-routing.", dir=rs.scratch_base())
        cls.cleanups.append(lambda: shutil.rmtree(cls.dir, ignore_errors=True)
                            if not rs.KEEP else None)
        cls.passwd = os.path.join(cls.dir, "passwd")
        cls.lmtp_ports = []
        for _ in range(3):
            port, hold = rs.reserve_port()
            cls.cleanups.append(hold.close)
            cls.lmtp_ports.append(port)
        lines = []
        for user, b in cls.USERS.items():
            extra = "" if b is None else "host=127.0.0.1 lmtp_port=%d" % cls.lmtp_ports[b]
            lines.append(passwd_line(user, user + "-pw", extra))
        with open(cls.passwd, "w") as f:
            f.write("".join(lines))
        pwusers = {u: u + "-pw" for u in cls.USERS}
        cls.backends = []
        for i in range(3):
            srv = rs.Server(cls.backend, pwusers, {
                "listen_lmtp": "127.0.0.1:%d" % cls.lmtp_ports[i], "fsync": "batch"},
                name="backend%d" % i)
            cls.cleanups.append(srv.cleanup)
            srv.passwd = cls.passwd     # the shared directory
            srv.start()
            cls.backends.append(srv)
        cls.sm_port, hold = rs.reserve_port()
        cls.cleanups.append(hold.close)
        cls.maps = rs.Server(cls.backend, pwusers, {
            "listen_socketmap": "127.0.0.1:%d" % cls.sm_port,
            "socketmap_domains": DOMAIN,
            "socketmap_lmtp_default": "lmtp:inet:127.0.0.1:%d" % cls.lmtp_ports[0],
            "log_level": "debug"},
            name="maps")
        cls.cleanups.append(cls.maps.cleanup)
        cls.maps.passwd = cls.passwd
        cls.maps.start()
        table = "socketmap:inet:127.0.0.1:%d" % cls.sm_port
        # What is not in the maps (only local submission gets that far:
        # smtpd refuses unknown users) bounces instead of going anywhere.
        cls.pf = ps.Postfix(DOMAIN, "error:5.1.1 User unknown", name="postfix." + cls.backend,
                            transport_maps=table + ":transport",
                            main_extra={"virtual_mailbox_maps": table + ":mailbox"})
        cls.cleanups.append(cls.pf.cleanup)
        cls.pf.start()

    @classmethod
    def _teardown(cls):
        errors = []
        for fn in reversed(cls.cleanups):
            try:
                fn()
            except Exception as e:     # every cleanup runs
                errors.append(e)
        cls.cleanups = []
        if errors:
            raise errors[0]

    @classmethod
    def tearDownClass(cls):
        servers = cls.backends + [cls.maps]
        bad = []
        for srv in servers:
            rc = srv.stop()
            report = rs.sanitizer_report(srv.stderr_since(0, 10 ** 7))
            if report or rc != 0:
                bad.append("%s: status %r\n%s\n%s" % (srv.tmp, rc, report, srv.stderr_tail()))
        cls._teardown()
        if bad:
            raise AssertionError("ringmaild at the end:\n" + "\n".join(bad))

    def setUp(self):
        self.pf_offset = self.pf.log_size()

    def tearDown(self):
        res = getattr(getattr(self, "_outcome", None), "result", None)
        if res is not None and (res.failures or res.errors):
            sys.stderr.write("\n--- maillog ---\n%s\n--- maps server ---\n%s\n" % (
                self.pf.log_text().encode()[self.pf_offset:].decode("utf-8", "replace")[-6000:],
                self.maps.stderr_tail(3000)))

    # helpers

    def backend_of(self, user):
        b = self.USERS[user]
        return 0 if b is None else b

    def inbox(self, srv, user):
        """Message-IDs in user's INBOX on backend srv."""
        c = srv.login(user, user + "-pw")
        try:
            got = rs.fetch_all(c, "INBOX")
        finally:
            c.logout()
        return [rs.header_value(got[uid][1], "Message-ID") for uid in sorted(got)]

    def wait_sent(self, qid, rcpt, timeout=30):
        return self.pf.wait_log(r"postfix/lmtp\[\d+\]: %s: to=<%s>, .*status=sent "
                                % (qid, re.escape(rcpt)), since=self.pf_offset,
                                timeout=timeout)

    def assert_landed(self, tag, users):
        """Each of users has the message `tag` on its own backend, once,
        and no other backend has it."""
        mid = "<%s.%d@example.org>" % (tag, os.getpid())
        for user in users:
            for i, srv in enumerate(self.backends):
                n = self.inbox(srv, user).count(mid)
                self.assertEqual(n, 1 if i == self.backend_of(user) else 0,
                                 "%s on backend %d: %d copies" % (user, i, n))

    # tests

    def test_each_user_to_its_backend(self):
        """One message to a user of each backend (one with +detail, one in
        capitals) and one kept at the default: every copy goes over LMTP to
        the backend the directory names, and only there."""
        rcpts = ["a0@example.org", "B0+news@example.org", "c1@example.org", "d0@example.org"]
        refused, qid = self.pf.submit("carol@example.net", rcpts, message("each", "list"))
        self.assertEqual(refused, {})
        users = ["a0", "b0", "c1", "d0"]
        for rcpt, user in zip(rcpts, users):
            ln = self.wait_sent(qid, rcpt)[0]
            port = self.lmtp_ports[self.backend_of(user)]
            self.assertRegex(ln, r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d," % port)
        self.assert_landed("each", users)
        # the others got nothing
        for user in ("a1", "b1", "c0"):
            self.assertEqual(self.inbox(self.backends[self.backend_of(user)], user), [])

    def test_unknown_user_refused(self):
        """A user the directory does not know: smtpd refuses it at RCPT
        (550 5.1.1, nothing queued, nothing to bounce); the known
        recipients of the same message are delivered."""
        refused, qid = self.pf.submit("carol@example.net",
                                      ["nobody@example.org", "b1@example.org"],
                                      message("unknown", "b1@example.org"))
        self.assertEqual(list(refused), ["nobody@example.org"])
        code, text = refused["nobody@example.org"]
        self.assertEqual(code, 550)
        self.assertIn("5.1.1", text)
        self.assertIn("Recipient address rejected: User unknown", text)
        # the maps said so (the transport map's NOTFOUND leaves the address
        # to virtual_transport, here error:5.1.1, which smtpd applies first)
        self.assertRegex(self.maps.stderr_tail(200000),
                         r"socketmap (transport|mailbox) nobody@example\.org: NOTFOUND")
        self.wait_sent(qid, "b1@example.org")
        self.assert_landed("unknown", ["b1"])

    def test_maps_down_defers(self):
        """The maps' server stopped: smtpd answers 451 4.3.0 at RCPT (the
        sender retries), and mail already queued (local submission) is
        deferred, never bounced; with the server back and the queue
        flushed, every message is delivered once, to the right backend."""
        self.maps.stop()
        try:
            refused, _qid = self.pf.submit("carol@example.net", ["a1@example.org"],
                                           message("down-smtp", "a1@example.org"))
            self.assertEqual(list(refused), ["a1@example.org"])
            code, text = refused["a1@example.org"]
            self.assertEqual(code, 451, text)
            self.assertIn("4.3.0", text)
            self.pf.sendmail("carol@example.net", ["a1@example.org", "c0@example.org"],
                             message("down-queued", "a1, c0"))
            self.pf.wait_log(r"to=<(a1|c0)@example\.org>, .*dsn=4\.3\.0, status=deferred "
                             r"\(address resolver failure\)", since=self.pf_offset, count=2)
            time.sleep(2)   # a retry or two while the maps are still down
            log = self.pf.log_text().encode()[self.pf_offset:].decode("utf-8", "replace")
            self.assertNotIn("status=bounced", log)
            self.assertNotIn("status=sent", log)
            q = self.pf.queue()
            self.assertEqual(len(q), 1, q)
            self.assertEqual(sorted(r["address"] for r in q[0]["recipients"]),
                             ["a1@example.org", "c0@example.org"])
            qid = q[0]["queue_id"]
        finally:
            self.maps.start()
        self.pf.flush()
        self.wait_sent(qid, "a1@example.org")
        self.wait_sent(qid, "c0@example.org")
        self.pf.wait_log(r"postfix/qmgr\[\d+\]: %s: removed" % qid, since=self.pf_offset)
        self.assertEqual(self.pf.queue(), [])
        self.assert_landed("down-queued", ["a1", "c0"])
        log = self.pf.log_text().encode()[self.pf_offset:].decode("utf-8", "replace")
        self.assertNotIn("status=bounced", log)

    def test_directory_down_defers(self):
        """The maps' server up but its directory unreadable: TEMP, so the
        queued mail is deferred (the same 4.3.0 as a map that does not
        answer), never bounced as unknown; with the directory back it is
        delivered, once, to the right backend."""
        aside = self.passwd + ".aside"
        os.rename(self.passwd, aside)
        os.mkdir(self.passwd)      # root reads any mode: a directory cannot be read as a file
        try:
            self.pf.sendmail("carol@example.net", ["b0@example.org", "d0@example.org"],
                             message("dir-down", "b0, d0"))
            self.pf.wait_log(r"to=<(b0|d0)@example\.org>, .*dsn=4\.3\.0, status=deferred "
                             r"\(address resolver failure\)", since=self.pf_offset, count=2)
            self.assertRegex(self.maps.stderr_tail(200000),
                             r"socketmap transport (b0|d0)@example\.org: TEMP ")
            q = self.pf.queue()
            self.assertEqual(len(q), 1, q)
            qid = q[0]["queue_id"]
        finally:
            os.rmdir(self.passwd)
            os.rename(aside, self.passwd)
        self.pf.flush()
        self.wait_sent(qid, "b0@example.org")
        self.wait_sent(qid, "d0@example.org")
        self.pf.wait_log(r"postfix/qmgr\[\d+\]: %s: removed" % qid, since=self.pf_offset)
        self.assert_landed("dir-down", ["b0", "d0"])
        log = self.pf.log_text().encode()[self.pf_offset:].decode("utf-8", "replace")
        self.assertNotIn("status=bounced", log)


rs.parametrize(globals(), SocketmapRaw, SocketmapLimits, PostfixRouting)

if __name__ == "__main__":
    rs.main()
