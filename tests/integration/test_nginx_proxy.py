#!/usr/bin/env python3
"""Debian's nginx mail proxy in front of three ringmaild backends
(tests/integration/nginx_proxy.py: a private nginx with libnginx-mod-mail,
its own config and ports under a temp dir).  The backends share one
passwd-file whose users carry host=127.0.0.1 port=<their backend>; backend
0 also serves listen_auth_http, which nginx asks for every login; nginx
sends each backend a PROXY protocol header (proxy_protocol on), read on the
backends' listen_proxy listeners.

Checked: every user lands on its backend (mail APPENDed through nginx is in
that backend's mail_root only); STARTTLS and implicit TLS terminate at nginx
(imaplib); IDLE through the proxy sees an EXISTS from an APPEND made on
another connection; a wrong password gets NO and the client may try again on
the same connection (Auth-Wait); the backends log the client's own address
(from the PROXY header), not nginx's; mbsync (STARTTLS, default
authentication) syncs through nginx; ringmail-bench runs through nginx; and,
last, stopping one backend fails only its users' logins.  nginx and its mail
module must be installed (tools/setup-deps.sh); missing, the test fails."""

import imaplib
import os
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_proxy as npx  # noqa: E402
import ringmail_server as rs  # noqa: E402

# user -> (password, backend index)
USERS = {"alice": ("alice-pw", 0), "bob": ("bob-pw", 1), "carol": ("carol-pw", 2),
         "dave": ("dave-pw", 0), "erin": ("erin-pw", 1), "frank": ("frank-pw", 2),
         "sync": ("sync-pw", 1), "idler": ("idler-pw", 2),
         "bench1": ("bench-pw", 0), "bench2": ("bench-pw", 1), "bench3": ("bench-pw", 2)}
# A client address other than nginx's own (127.0.0.1): what the backends
# must log when the PROXY header carries it.
CLIENT_SRC = "127.0.0.5"


def msg(subject, n=0):
    return (b"From: Test <t@example.org>\r\nTo: u@example.org\r\nSubject: %s\r\n"
            b"Message-ID: <%s.%d@example.org>\r\n\r\nbody %d\r\n"
            % (subject.encode(), subject.encode(), n, n))


class NginxProxy(unittest.TestCase):
    backend = None
    options = None      # every backend's extra settings

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        exe, why = npx.nginx_binary()
        if not exe:
            raise AssertionError(why)
        cls.cluster = npx.Cluster(cls.backend, USERS, options=cls.options).start()
        cls.nginx = cls.cluster.nginx
        cls.stopped = {}

    @classmethod
    def tearDownClass(cls):
        c = getattr(cls, "cluster", None)
        if c is None:
            return
        problems = []
        for i, s in enumerate(c.servers):
            rc = cls.stopped[i] if i in cls.stopped else s.stop()
            report = rs.sanitizer_report(s.stderr_since(0, 10 ** 7))
            if report:
                problems.append("backend %d: sanitizer report:\n%s" % (i, report))
            if rc != 0:
                problems.append("backend %d did not exit with 0 after SIGTERM: %r\n%s"
                                % (i, rc, s.stderr_tail()))
        c.cleanup()
        if problems:
            raise AssertionError("\n".join(problems))

    def setUp(self):
        self.offsets = [s.stderr_size() for s in self.cluster.servers]

    def tearDown(self):
        result = getattr(self._outcome, "result", None)
        bad = result and any(t is self for t, _ in result.failures + result.errors)
        if rs.VERBOSE or bad:
            for i, s in enumerate(self.cluster.servers):
                sys.stderr.write("--- backend %d stderr ---\n%s\n"
                                 % (i, s.stderr_since(self.offsets[i])))
            sys.stderr.write("--- nginx ---\n%s\n" % self.nginx.logs())

    # -- helpers --

    def tls_context(self):
        return ssl.create_default_context(cafile=self.nginx.cert)

    def starttls_client(self):
        m = imaplib.IMAP4("127.0.0.1", self.nginx.port, timeout=30)
        m.starttls(self.tls_context())
        return m

    def direct(self, user):
        """A session on the user's backend itself, not through nginx."""
        s = self.cluster.backend_of(user)
        c = s.connect()
        c.ok("LOGIN %s %s" % (user, USERS[user][0]))
        return c

    def raw_via_nginx(self, user, src=None):
        """rs.Imap through nginx's plaintext port, logged in."""
        if src:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((src, 0))
            sock.settimeout(30)
            sock.connect(("127.0.0.1", self.nginx.port))
            c = rs.Imap.__new__(rs.Imap)
            c.sock, c.timeout, c.buf, c.n, c.closed, c.transcript = sock, 30, b"", 0, False, []
            c.greeting = c.read()
        else:
            c = rs.Imap("127.0.0.1", self.nginx.port, timeout=30)
        c.ok("LOGIN %s %s" % (user, USERS[user][0]))
        return c

    def wait_log(self, i, text, timeout=5):
        s = self.cluster.servers[i]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = s.stderr_since(self.offsets[i])
            if text in log:
                return log
            time.sleep(0.05)
        self.fail("backend %d never logged %r:\n%s" % (i, text, s.stderr_since(self.offsets[i])))

    # -- tests --

    def test_users_land_on_their_backends(self):
        for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
            m = self.starttls_client()
            typ, _ = m.login(user, USERS[user][0])
            self.assertEqual(typ, "OK")
            typ, data = m.append("INBOX", None, None, msg("landing-" + user))
            self.assertEqual(typ, "OK", data)
            m.logout()
        for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
            home = USERS[user][1]
            for i, s in enumerate(self.cluster.servers):
                there = os.path.isdir(os.path.join(s.mail_root, user))
                self.assertEqual(there, i == home, "%s's mail on backend %d: %s"
                                 % (user, i, there))
            c = self.direct(user)
            c.ok("SELECT INBOX")
            r = c.ok('SEARCH SUBJECT "landing-%s"' % user)
            self.assertEqual(len(r.search()), 1, r.describe())
            c.logout()

    def test_implicit_tls(self):
        c = self.direct("dave")
        self.assertEqual(c.append("INBOX", msg("tls-check")).status, "OK")
        c.logout()
        m = imaplib.IMAP4_SSL("127.0.0.1", self.nginx.tls_port, ssl_context=self.tls_context(),
                              timeout=30)
        self.assertEqual(m.login("dave", "dave-pw")[0], "OK")
        typ, data = m.select("INBOX")
        self.assertEqual(typ, "OK")
        typ, data = m.search(None, 'SUBJECT "tls-check"')
        self.assertEqual(len(data[0].split()), 1)
        typ, data = m.fetch(data[0].split()[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertIn(b"tls-check", data[0][1])
        m.logout()

    def test_idle_sees_append_from_another_connection(self):
        a = self.raw_via_nginx("idler")
        a.ok("SELECT INBOX")
        a.send("i1 IDLE\r\n")
        r = a.read()
        self.assertTrue(r.continuation, r.raw)
        b = self.raw_via_nginx("idler")
        self.assertEqual(b.append("INBOX", msg("idle-news")).status, "OK")
        b.logout()
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline and not any(b"EXISTS" in x.raw for x in seen):
            seen += a.pending(0.2)
        self.assertTrue(any(b"EXISTS" in x.raw for x in seen), [x.raw for x in seen])
        a.send("DONE\r\n")
        _, tagged, _ = a.read_until_tag("i1")
        self.assertTrue(tagged.raw.startswith(b"i1 OK"), tagged.raw)
        a.logout()

    def test_append_in_two_writes_is_not_held_back(self):
        """nginx's mail proxy sends with Nagle's algorithm on: the literal of
        an APPEND that arrives after its command line waits until the
        backend acknowledges the line.  The backend acknowledges at once
        (TCP_QUICKACK on listen_proxy), not after the ~40 ms delayed-ACK
        timer."""
        c = self.raw_via_nginx("dave")
        body = msg("two-writes") + b"x" * 8000 + b"\r\n"
        times = []
        for _ in range(12):
            tag = c.tag()
            t0 = time.monotonic()
            c.send(b"%s APPEND INBOX {%d+}\r\n" % (tag.encode(), len(body)))
            time.sleep(0.002)       # a second write, as a client's literal is
            c.send(body + b"\r\n")
            _, tagged, _ = c.read_until_tag(tag)
            times.append(time.monotonic() - t0 - 0.002)
            self.assertIn(b" OK", tagged.raw)
        c.logout()
        times.sort()
        self.assertLess(times[len(times) // 2], 0.030,
                        "median APPEND through nginx %.1f ms: delayed ACKs?"
                        % (times[len(times) // 2] * 1000))

    def test_wrong_password_then_right_one(self):
        m = self.starttls_client()
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            m.login("erin", "not-her-password")
        self.assertIn("Invalid login or password", str(cm.exception))
        # nginx keeps the connection (Auth-Wait) and asks again
        self.assertEqual(m.login("erin", "erin-pw")[0], "OK")
        m.logout()
        with self.assertRaises(imaplib.IMAP4.error):
            m2 = self.starttls_client()
            m2.login("nosuchuser", "x")

    def test_backends_log_the_client_address(self):
        """The PROXY header carries the client's address: the backend logs
        it (and counts it), with nginx's as the proxy."""
        c = self.raw_via_nginx("frank", src=CLIENT_SRC)
        c.ok("NOOP")
        c.logout()
        log = self.wait_log(2, "user=frank login (LOGIN) from %s:" % CLIENT_SRC)
        self.assertRegex(log, r"connect from %s:\d+ via proxy 127\.0\.0\.1:\d+"
                         % CLIENT_SRC.replace(".", r"\."))

    def test_listen_proxy_refuses_a_missing_header(self):
        """A client (or a proxy without proxy_protocol on) that speaks IMAP
        to listen_proxy at once is closed, without a greeting."""
        port = self.cluster.imap_port(0)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"a LOGIN alice alice-pw\r\n")
        data = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        self.assertNotIn(b"OK", data)

    def test_mbsync_through_nginx(self):
        exe = rs.require_program(self, "mbsync")
        c = self.direct("sync")
        for n in range(5):
            self.assertEqual(c.append("INBOX", msg("sync-%d" % n, n)).status, "OK")
        c.logout()
        d = os.path.join(self.nginx.tmp, "mbsync")
        mail = os.path.join(d, "Mail")
        os.makedirs(mail, exist_ok=True)
        conf = os.path.join(d, "mbsyncrc")
        with open(conf, "w") as f:
            f.write("""IMAPAccount ring
Host localhost
Port %d
User sync
Pass sync-pw
SSLType STARTTLS
CertificateFile %s
Timeout 60

IMAPStore ring-far
Account ring

MaildirStore ring-near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel ring
Far :ring-far:
Near :ring-near:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
""" % (self.nginx.port, self.nginx.cert, mail, mail))
        for step in ("first", "second"):
            p = subprocess.run([exe, "-c", conf, "-a"], capture_output=True, timeout=300,
                               cwd=d)
            self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode(errors="replace")
                             + self.nginx.logs())
            if step == "first":
                inbox = rs.maildir_folders(mail)["INBOX"]
                got = []
                for sub in ("cur", "new"):
                    for name in os.listdir(os.path.join(inbox, sub)):
                        with open(os.path.join(inbox, sub, name), "rb") as fh:
                            got.append(rs.header_value(fh.read(), "Subject"))
                self.assertEqual(sorted(got), ["sync-%d" % n for n in range(5)])
                rs.maildir_deliver(inbox, b"From: n@example.org\nSubject: from-near\n"
                                   b"Message-ID: <near@example.org>\n\nnear\n",
                                   "1700000000.near.test")
        c = self.direct("sync")
        c.ok("SELECT INBOX")
        self.assertEqual(len(c.ok('SEARCH SUBJECT "from-near"').search()), 1)
        c.logout()

    def test_ringmail_bench_through_nginx(self):
        bench = os.path.join(os.path.dirname(rs.RINGMAILD), "ringmail-bench")
        p = subprocess.run([bench, "--host", "127.0.0.1", "--port", str(self.nginx.port),
                            "--users", "bench%d", "--nusers", "3", "--password", "bench-pw",
                            "--clients", "6", "--duration", "2", "--workload", "mixed",
                            "--populate", "20", "--json"],
                           capture_output=True, timeout=300)
        out = (p.stdout + p.stderr).decode(errors="replace")
        self.assertEqual(p.returncode, 0, out + self.nginx.logs())
        for i in range(3):
            self.assertTrue(os.path.isdir(os.path.join(self.cluster.servers[i].mail_root,
                                                       "bench%d" % (i + 1))), out)

    def test_zz_one_backend_down(self):
        """Runs last: backend 2 stops; its users cannot log in through
        nginx, the others' can."""
        self.stopped[2] = self.cluster.servers[2].stop()
        for user in ("carol", "frank"):
            with self.assertRaises((imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError)):
                m = self.starttls_client()
                m.login(user, USERS[user][0])
                m.select("INBOX")
        for user in ("alice", "bob", "dave", "erin"):
            m = self.starttls_client()
            self.assertEqual(m.login(user, USERS[user][0])[0], "OK")
            self.assertEqual(m.select("INBOX")[0], "OK")
            m.logout()


class NginxProxySecret(NginxProxy):
    """proxy_secret on every backend: auth_http hands it to nginx as
    Auth-Pass, nginx logs in to the backends with it, and they take it
    (nginx is in trusted_networks) without checking the password again."""
    options = {"proxy_secret": "shared-by-the-backends-42"}

    def test_backends_take_the_secret(self):
        for user in ("alice", "bob", "carol"):
            m = self.starttls_client()
            self.assertEqual(m.login(user, USERS[user][0])[0], "OK")
            typ, data = m.append("INBOX", None, None, msg("secret-" + user))
            self.assertEqual(typ, "OK", data)
            m.logout()
            self.wait_log(USERS[user][1], "user=%s proxy_secret accepted" % user)
        m = self.starttls_client()
        with self.assertRaises(imaplib.IMAP4.error):
            m.login("alice", "shared-by-the-backends-42")   # not through nginx


# Only the secret's own test for the second class.
for _name in [n for n in dir(NginxProxy) if n.startswith("test_")]:
    setattr(NginxProxySecret, _name, None)
del _name

rs.parametrize(globals(), NginxProxy, NginxProxySecret)

if __name__ == "__main__":
    rs.main()
