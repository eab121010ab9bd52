"""ringmaild's abuse limits: each one gives a clear answer, and the server
keeps serving other sessions meanwhile.  Also plaintext_auth=no
(LOGINDISABLED), privilege dropping when started as root, and that no name
reaches another user's mail."""

import os
import pwd
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


def status_of(res):
    return res.status


class FailedLoginDelay(rs.ServerTestCase):
    server_options = {"auth_failure_delay": "300"}

    def test_delay_grows_and_others_are_served(self):
        c = self.connect()
        times = []
        for _ in range(3):
            t = time.monotonic()
            self.expect(c.cmd("LOGIN %s wrong" % quote(self.user), timeout=30), "NO",
                        "AUTHENTICATIONFAILED")
            times.append(time.monotonic() - t)
        # 300 ms, then 600 ms, then 1200 ms: lower bounds only
        self.assertGreaterEqual(times[0], 0.28, times)
        self.assertGreaterEqual(times[1], 0.58, times)
        self.assertGreaterEqual(times[2], 1.15, times)
        # the same user from another connection: the count follows the user
        c2 = self.connect()
        c2.send("a LOGIN %s wrong\r\nb NOOP\r\n" % quote(self.user))
        t = time.monotonic()
        # meanwhile another session is answered at once
        other = self.login(user="crypt", password="crypt-secret")
        self.ok(other, "NOOP")
        self.assertLess(time.monotonic() - t, 1.5)
        r = c2.read_until_tag("a")[1]
        self.assertEqual(r.status()[0], "NO")
        self.assertGreaterEqual(time.monotonic() - t, 2.3)     # fourth failure: 2.4 s
        # the pipelined NOOP is answered after the NO, in order
        self.assertEqual(c2.read_until_tag("b")[1].status()[0], "OK")
        # a success clears the count
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))
        c3 = self.connect()
        t = time.monotonic()
        self.expect(c3.cmd("LOGIN %s wrong" % quote(self.user)), "NO")
        self.assertLess(time.monotonic() - t, 1.0)


class ConnectionsPerIp(rs.ServerTestCase):
    # loopback is trusted only through trusted_networks: empty it to test
    server_options = {"max_connections_per_ip": "5", "trusted_networks": ""}

    def test_cap(self):
        conns = [self.connect() for _ in range(5)]
        s = socket.create_connection((self.server.host, self.server.port), timeout=10)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertTrue(data.startswith(b"* BYE"), data)
        self.assertEqual(s.recv(4096), b"")     # and closed
        s.close()
        for c in conns:
            self.ok(c, "NOOP")
        conns[0].close()
        self.conns.remove(conns[0])
        time.sleep(0.3)
        self.ok(self.connect(), "NOOP")          # a slot is free again


class TrustedNetworks(rs.ServerTestCase):
    server_options = {"max_connections_per_ip": "2", "trusted_networks": "127.0.0.0/8"}

    def test_trusted_exempt(self):
        for c in [self.connect() for _ in range(6)]:
            self.ok(c, "NOOP")


class ConnectionsPerUser(rs.ServerTestCase):
    server_options = {"max_connections_per_user": "3"}

    def test_cap(self):
        cs = [self.login() for _ in range(3)]
        c = self.connect()
        self.expect(c.cmd("LOGIN %s %s" % (quote(self.user), quote(self.password))), "NO",
                    "LIMIT")
        self.ok(c, "NOOP")                      # still connected, not logged in
        self.ok(self.login(user="crypt", password="crypt-secret"), "NOOP")
        cs[0].cmd("LOGOUT")
        time.sleep(0.3)
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))


class CommandsBeforeAuth(rs.ServerTestCase):
    server_options = {"max_commands_before_auth": "5"}

    def test_cap(self):
        c = self.connect()
        for _ in range(5):
            self.ok(c, "NOOP")
        c.send("x NOOP\r\n")
        r = c.read()
        self.assertTrue(r.untagged and r.status() and r.status()[0] == "BYE", r)
        self.ok(self.login(), "NOOP")


class LineAndLiteralLimits(rs.ServerTestCase):
    server_options = {"max_line_length": "2048", "append_limit": "10000"}

    def test_line(self):
        c = self.login()
        self.expect(c.cmd("a NOOP " + "x" * 5000), "BAD", "TOOBIG")
        self.ok(c, "NOOP")

    def test_literal(self):
        c = self.login()
        c.send("a APPEND INBOX {20000}\r\n")
        r = c.read_until_tag("a")[1]
        self.assertEqual(r.status()[0], "NO")
        self.assertIn("TOOBIG", repr(r))
        # LITERAL+: the bytes come anyway and are skipped
        c.send("b APPEND INBOX {20000+}\r\n" + "y" * 20000 + "\r\n")
        r = c.read_until_tag("b")[1]
        self.assertEqual(r.status()[0], "NO")
        self.assertIn("TOOBIG", repr(r))
        self.ok(c, "NOOP")
        self.assertIn("APPENDLIMIT=10000", c.capabilities())


class SearchAndSetLimits(rs.ServerTestCase):
    server_options = {"search_max_depth": "4", "search_max_keys": "20",
                      "max_seqset_ranges": "10"}

    def test_search(self):
        c = self.login(select="INBOX")
        self.ok(c, "SEARCH NOT NOT ALL")
        self.expect(c.cmd("SEARCH " + "NOT " * 10 + "ALL"), "NO", "LIMIT")
        self.expect(c.cmd("SEARCH " + "SEEN " * 30), "NO", "LIMIT")
        self.ok(c, "NOOP")

    def test_seqset(self):
        c = self.login(select="INBOX")
        self.ok(c, "UID FETCH 1,3,5 FLAGS")
        many = ",".join(str(i) for i in range(1, 40, 2))
        self.expect(c.cmd("UID FETCH %s FLAGS" % many), "NO", "LIMIT")
        self.ok(c, "UID FETCH 1:4294967295 FLAGS")       # one huge range is fine
        self.ok(c, "NOOP")


class BadNames(rs.ServerTestCase):
    def test_names(self):
        c = self.login()
        for name in ("a/../b", "..", "/lead", "a//b", "ctl\x01x", "&Jjo"):
            self.expect(c.cmd("CREATE " + quote(name)), ("NO", "BAD"), msg=repr(name))
        self.ok(c, "NOOP")


class Slowloris(rs.ServerTestCase):
    server_options = {"partial_command_timeout": "1"}

    def test_partial_line(self):
        idle = self.login()
        c = self.connect()
        c.send("a LOGIN %s" % quote(self.user))       # never finished
        t = time.monotonic()
        r = c.read(timeout=10)
        self.assertTrue(r.untagged and r.status()[0] == "BYE", r)
        self.assertGreaterEqual(time.monotonic() - t, 0.9)
        self.ok(idle, "NOOP")                            # an idle full session stays


class NonReadingClient(rs.ServerTestCase):
    server_options = {"max_output_buffer": "65536"}

    @classmethod
    def prepare_server(cls, server):
        big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 20000    # ~1.5 MB
        server.import_mbox("user0", "INBOX", [big])

    def rss(self):
        return rs.rss_kib(self.server.proc.pid)

    def test_bounded(self):
        # user0 got the big message (setUp hands out user0 first)
        self.assertEqual(self.user, "user0")
        c = self.login(select="INBOX")
        before = self.rss()
        s = socket.create_connection((self.server.host, self.server.port))
        s.settimeout(10)
        s.recv(4096)
        s.sendall(b"a LOGIN user0 %s\r\nb SELECT INBOX\r\n" % self.password.encode())
        # 400 fetches of 1.5 MB = 600 MB of answers, never read
        s.setblocking(False)
        sent = 0
        cmds = b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % i for i in range(400))
        deadline = time.monotonic() + 10
        while sent < len(cmds) and time.monotonic() < deadline:
            try:
                sent += s.send(cmds[sent:])
            except BlockingIOError:
                time.sleep(0.05)
        time.sleep(1)
        grown = self.rss() - before
        # the server stopped reading long before 600 MB were due
        self.assertLess(grown, 64 * 1024, "RSS grew by %d KiB" % grown)
        self.ok(c, "NOOP")
        s.close()


class PlaintextNo(rs.ServerTestCase):
    server_options = {"plaintext_auth": "no"}

    def test_logindisabled(self):
        c = self.connect()
        caps = c.capabilities()
        self.assertIn("LOGINDISABLED", caps)
        self.assertNotIn("AUTH=PLAIN", caps)
        self.expect(c.cmd("LOGIN %s %s" % (quote(self.user), quote(self.password))), "NO")
        self.expect(c.cmd("AUTHENTICATE PLAIN AHVzZXIAcGFzcw=="), "NO")


class BadCommandsBye(rs.ServerTestCase):
    server_options = {"max_bad_commands": "3"}

    def test_bye(self):
        c = self.connect()
        c.send("a XYZ\r\nb XYZ\r\nc XYZ\r\n")
        seen = []
        for _ in range(4):
            try:
                seen.append(c.read())
            except ConnectionError:
                break
        self.assertTrue(any(r.untagged and r.status() and r.status()[0] == "BYE"
                            for r in seen), seen)
        self.ok(self.connect(), "NOOP")


class OtherUsersMail(rs.ServerTestCase):
    def test_no_name_reaches_another_user(self):
        victim = self.login(user="crypt", password="crypt-secret")
        self.ok(victim, "CREATE Secret")
        c = self.login()
        for name in ("../crypt/INBOX", "~crypt/INBOX", "#shared/crypt/INBOX",
                     "/crypt/INBOX", "../../crypt", "..%2fcrypt", "crypt/INBOX",
                     "Secret", "../crypt/m/1"):
            r = c.cmd("SELECT " + quote(name))
            self.assertIn(r.status, ("NO", "BAD"), name)
        r = self.ok(c, 'LIST "" "*"')
        self.assertNotIn("Secret", repr(r))
        self.assertNotIn("crypt", repr(r))


rs.parametrize(globals(), FailedLoginDelay, ConnectionsPerIp, TrustedNetworks,
               ConnectionsPerUser, CommandsBeforeAuth, LineAndLiteralLimits,
               SearchAndSetLimits, BadNames, Slowloris, NonReadingClient, PlaintextNo,
               BadCommandsBye, OtherUsersMail)


class DropPrivileges(rs.ServerTestCase):
    backend = "auto"
    server_options = {"user": "nobody"}

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise AssertionError("this test needs root (CI runs as root)")
        super().setUpClass()

    @classmethod
    def prepare_server(cls, server):
        nobody = pwd.getpwnam("nobody")
        for d in (server.tmp, server.mail_root):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        os.chmod(server.passwd, 0o644)
        # nobody must be able to reach its directory: let it traverse
        d = os.path.dirname(server.tmp)
        while d != "/":
            mode = os.stat(d).st_mode
            if not mode & 0o001:
                os.chmod(d, (mode & 0o7777) | 0o001)
            d = os.path.dirname(d)

    def test_runs_as_nobody(self):
        nobody = pwd.getpwnam("nobody")
        # The listeners are bound (and the harness sees the port open)
        # before privileges are dropped; the workers that answer start
        # after.  So a login first: then the drop has happened.
        c = self.login()
        with open("/proc/%d/status" % self.server.proc.pid) as f:
            uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
        self.assertEqual(set(map(int, uids)), {nobody.pw_uid})
        self.ok(c, "CREATE Box")
        self.expect(c.append("Box", b"Subject: x\r\n\r\nhi\r\n"), "OK")
        for root, dirs, files in os.walk(self.server.mail_root):
            for name in dirs + files:
                st = os.stat(os.path.join(root, name))
                self.assertEqual(st.st_uid, nobody.pw_uid, name)
                want = 0o700 if name in dirs else 0o600
                self.assertEqual(st.st_mode & 0o777, want, os.path.join(root, name))


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
