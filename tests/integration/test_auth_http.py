#!/usr/bin/env python3
"""ringmaild's auth_http endpoint (listen_auth_http), asked directly the way
nginx's mail module asks it (ngx_mail_auth_http_module: a GET with
Auth-Method, Auth-User, Auth-Pass %-escaped, Auth-Protocol,
Auth-Login-Attempt, Client-IP), without nginx: the answer's Auth-Status,
Auth-Server (an address, resolved from the user's host= field), Auth-Port,
Auth-Wait after a failure (growing with failures from one Client-IP), none
from the tenth attempt on, a temporary error (never OK) when the directory
cannot be read, who may connect (trusted_networks only) and malformed
requests.  test_nginx_proxy.py runs the real nginx against it."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

# The test's HTTP client connects from here; trusted_networks is only this
# address, so a connection from 127.0.0.1 shows an untrusted peer.
TRUSTED_SRC = "127.0.0.2"


def ask(port, fields=None, src=TRUSTED_SRC, raw=None, timeout=15):
    """One request; (status code, {header: value}) of the answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    if raw is None:
        head = "GET /auth HTTP/1.0\r\nHost: localhost\r\n"
        for k, v in (fields or {}).items():
            head += "%s: %s\r\n" % (k, v)
        raw = (head + "\r\n").encode()
    s.sendall(raw)
    data = b""
    while True:
        try:
            b = s.recv(4096)
        except ConnectionResetError:
            break
        if not b:
            break
        data += b
    s.close()
    text = data.decode("latin-1")
    if not text:
        return None, {}
    lines = text.split("\r\n")
    code = int(lines[0].split()[1])
    hdr = {}
    for line in lines[1:]:
        if not line:
            break
        k, v = line.split(":", 1)
        hdr[k.strip()] = v.strip()
    return code, hdr


def login_fields(user, password, attempt=1, client="192.0.2.42"):
    return {"Auth-Method": "plain", "Auth-User": user, "Auth-Pass": password,
            "Auth-Protocol": "imap", "Auth-Login-Attempt": str(attempt),
            "Client-IP": client, "Client-Host": "[UNAVAILABLE]"}


def escape(s):
    """nginx's NGX_ESCAPE_MAIL_AUTH: %XX for blanks, '%' and controls."""
    return "".join("%%%02X" % ord(ch) if ch in " %" or ord(ch) < 0x20 or ord(ch) > 0x7e
                   else ch for ch in s)


class AuthHttpCase(rs.ServerTestCase):
    users_per_class = 16
    failure_delay = "0"
    extra_options = {}

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        cls.http_port, cls.http_hold = rs.reserve_port()
        cls.server_options = {"listen_auth_http": "127.0.0.1:%d" % cls.http_port,
                              "trusted_networks": TRUSTED_SRC + "/32",
                              "auth_failure_delay": cls.failure_delay}
        cls.server_options.update(cls.extra_options)
        super().setUpClass()
        # Records with routes (the passwd-file's extra fields, after the
        # 7th ':'), written once the server runs: it re-reads the file.
        with open(cls.server.passwd, "w") as f:
            f.write("routed:{PLAIN}routed-pw::::::host=127.0.0.1 port=10143\n")
            f.write("named:{PLAIN}named-pw::::::host=localhost port=20143\n")
            f.write("local:{PLAIN}local-pw\n")
            f.write("spaced:{PLAIN}a b%c+d::::::host=127.0.0.9 port=143\n")
            f.write("badport:{PLAIN}bad-pw::::::host=127.0.0.1 port=99999\n")
            f.write("crypt:{SHA512-CRYPT}%s::::::host=127.0.0.3 port=1143\n"
                    % rs.sha512_crypt("crypt-pw"))

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.http_hold.close()


class AuthHttp(AuthHttpCase):

    def test_ok_answers_the_users_backend(self):
        code, h = ask(self.http_port, login_fields("routed", "routed-pw"))
        self.assertEqual(code, 200)
        self.assertEqual(h.get("Auth-Status"), "OK")
        self.assertEqual(h.get("Auth-Server"), "127.0.0.1")
        self.assertEqual(h.get("Auth-Port"), "10143")
        code, h = ask(self.http_port, login_fields("crypt", "crypt-pw"))
        self.assertEqual((h.get("Auth-Status"), h.get("Auth-Server"), h.get("Auth-Port")),
                         ("OK", "127.0.0.3", "1143"))

    def test_host_name_is_resolved(self):
        """nginx takes an address only: a name in host= is resolved here."""
        code, h = ask(self.http_port, login_fields("named", "named-pw"))
        self.assertEqual(h.get("Auth-Status"), "OK")
        self.assertIn(h.get("Auth-Server"), ("127.0.0.1", "::1"))
        self.assertEqual(h.get("Auth-Port"), "20143")

    def test_no_host_is_this_server(self):
        code, h = ask(self.http_port, login_fields("local", "local-pw"))
        self.assertEqual(h.get("Auth-Status"), "OK")
        self.assertEqual(h.get("Auth-Server"), "127.0.0.1")
        self.assertEqual(h.get("Auth-Port"), str(self.server.port))

    def test_escaped_password(self):
        """nginx %-escapes Auth-Pass ("a b%c+d" arrives as a%20b%25c+d);
        '+' stays a plus."""
        code, h = ask(self.http_port, login_fields("spaced", escape("a b%c+d")))
        self.assertEqual(escape("a b%c+d"), "a%20b%25c+d")
        self.assertEqual(h.get("Auth-Status"), "OK")
        self.assertEqual(h.get("Auth-Server"), "127.0.0.9")
        code, h = ask(self.http_port, login_fields("spaced", "a b%c+d".replace(" ", "%20")))
        self.assertNotEqual(h.get("Auth-Status"), "OK", "a bare % must not decode")

    def test_wrong_password_and_unknown_user(self):
        for user, pw in (("routed", "nope"), ("nosuchuser", "nope")):
            code, h = ask(self.http_port, login_fields(user, pw))
            self.assertEqual(code, 200)
            self.assertIn("Invalid login or password", h.get("Auth-Status", ""))
            self.assertNotIn("Auth-Server", h)
            self.assertIn("Auth-Wait", h, "nginx closes the client without Auth-Wait")
            self.assertGreaterEqual(int(h["Auth-Wait"]), 1, "nginx takes 0 as none")

    def test_tenth_attempt_gets_no_wait(self):
        code, h = ask(self.http_port, login_fields("routed", "nope", attempt=10))
        self.assertIn("Invalid login", h.get("Auth-Status", ""))
        self.assertNotIn("Auth-Wait", h)

    def test_bad_route_is_a_temporary_error(self):
        code, h = ask(self.http_port, login_fields("badport", "bad-pw"))
        self.assertEqual(code, 200)
        self.assertIn("Temporary server problem", h.get("Auth-Status", ""))
        self.assertIn("Auth-Wait", h)

    def test_other_protocols_and_methods(self):
        f = login_fields("routed", "routed-pw")
        f["Auth-Protocol"] = "smtp"
        code, h = ask(self.http_port, f)
        self.assertNotEqual(h.get("Auth-Status"), "OK")
        self.assertNotIn("Auth-Wait", h)
        f = login_fields("routed", "routed-pw")
        f["Auth-Method"] = "cram-md5"
        code, h = ask(self.http_port, f)
        self.assertNotEqual(h.get("Auth-Status"), "OK")

    def test_only_trusted_networks(self):
        code, h = ask(self.http_port, login_fields("routed", "routed-pw"), src="127.0.0.1")
        self.assertEqual(code, 403)
        self.assertNotIn("Auth-Status", h)

    def test_malformed_requests(self):
        code, _ = ask(self.http_port, raw=b"NONSENSE\r\n\r\n")
        self.assertEqual(code, 400)
        code, _ = ask(self.http_port, raw=b"POST /auth HTTP/1.0\r\nAuth-User: x\r\n\r\n")
        self.assertEqual(code, 405)
        code, _ = ask(self.http_port, raw=b"GET /auth HTTP/1.0\r\nX-Big: " + b"a" * 9000)
        self.assertEqual(code, 431)
        many = b"".join(b"X-%d: y\r\n" % i for i in range(100))
        code, _ = ask(self.http_port, raw=b"GET /auth HTTP/1.0\r\n" + many + b"\r\n")
        self.assertEqual(code, 431)
        # the server still answers
        code, h = ask(self.http_port, login_fields("routed", "routed-pw"))
        self.assertEqual(h.get("Auth-Status"), "OK")

    def test_warm_cache_skips_the_hash(self):
        """The second login of the same credentials is answered from the
        auth cache (the log says so), still with the route."""
        off = self.server.stderr_size()
        for _ in range(2):
            code, h = ask(self.http_port, login_fields("crypt", "crypt-pw"))
            self.assertEqual(h.get("Auth-Port"), "1143")
        deadline = time.monotonic() + 5
        while "(cached)" not in self.server.stderr_since(off) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("(cached)", self.server.stderr_since(off))

    def test_directory_unreadable_is_never_ok(self):
        """A passwd-file that cannot be read: a temporary error with
        Auth-Wait, for right and wrong passwords alike."""
        saved = self.server.passwd + ".saved"
        os.rename(self.server.passwd, saved)
        try:
            for pw in ("routed-pw", "nope"):
                code, h = ask(self.http_port, login_fields("routed", pw + "x" * 0))
                self.assertEqual(code, 200)
                self.assertNotEqual(h.get("Auth-Status"), "OK")
                self.assertIn("Temporary server problem", h.get("Auth-Status", ""))
                self.assertIn("Auth-Wait", h)
        finally:
            os.rename(saved, self.server.passwd)
        code, h = ask(self.http_port, login_fields("routed", "routed-pw"))
        self.assertEqual(h.get("Auth-Status"), "OK")


class AuthHttpPenalty(AuthHttpCase):
    """auth_failure_delay = 1000: failures from one Client-IP, for any
    user, make the next Auth-Wait longer; another Client-IP is not held
    back by them."""
    failure_delay = "1000"

    def test_penalty_per_client_ip(self):
        waits = []
        for i in range(3):
            code, h = ask(self.http_port, login_fields("nosuch%d" % i, "x",
                                                        client="198.51.100.7"))
            self.assertIn("Invalid login", h.get("Auth-Status", ""))
            waits.append(int(h["Auth-Wait"]))
        self.assertGreaterEqual(waits[0], 1)
        self.assertGreater(waits[2], waits[0], waits)
        t0 = time.monotonic()
        code, h = ask(self.http_port, login_fields("local", "local-pw",
                                                    client="198.51.100.8"))
        self.assertEqual(h.get("Auth-Status"), "OK")
        self.assertLess(time.monotonic() - t0, 1.0)


SECRET = "proxies-only-7f3a9c1e"


def imap_from(port, src):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((src, 0))
    sock.settimeout(rs.IO_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    c = rs.Imap.__new__(rs.Imap)
    c.sock, c.timeout, c.buf, c.n, c.closed, c.transcript = sock, rs.IO_TIMEOUT, b"", 0, \
        False, []
    c.greeting = c.read()
    return c


class AuthHttpSecret(AuthHttpCase):
    """proxy_secret: auth_http's OK carries it as Auth-Pass (nginx logs in
    to the backend with it); a LOGIN with it is taken for any existing user,
    from trusted_networks only, without the user's password."""
    extra_options = {"proxy_secret": SECRET}

    def test_ok_carries_the_secret(self):
        code, h = ask(self.http_port, login_fields("routed", "routed-pw"))
        self.assertEqual(h.get("Auth-Status"), "OK")
        self.assertEqual(h.get("Auth-Pass"), SECRET)
        code, h = ask(self.http_port, login_fields("routed", "wrong"))
        self.assertNotIn("Auth-Pass", h)

    def test_secret_login_from_trusted_only(self):
        c = imap_from(self.server.port, TRUSTED_SRC)
        c.ok("LOGIN routed %s" % SECRET)
        c.logout()
        self.assertIn("proxy_secret accepted", self.server.stderr_since(self.log_offset))
        c = imap_from(self.server.port, TRUSTED_SRC)
        c.expect(c.cmd("LOGIN nosuchuser %s" % SECRET), "NO")
        c.logout()
        # 127.0.0.1 is loopback but not in trusted_networks here
        c = imap_from(self.server.port, "127.0.0.1")
        c.expect(c.cmd("LOGIN routed %s" % SECRET), "NO")
        c.ok("LOGIN routed routed-pw")
        c.logout()


rs.parametrize(globals(), AuthHttp, AuthHttpPenalty, AuthHttpSecret)

if __name__ == "__main__":
    rs.main()
