"""TLS: implicit TLS (993-style listener) and STARTTLS, with Python's ssl
module and openssl s_client; protocol versions and ALPN; LOGINDISABLED
before TLS; the STARTTLS command-injection attack (CVE-2011-0411); and
certificates reloaded on SIGHUP without dropping sessions."""

import imaplib
import os
import signal
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


class Tls(rs.ServerTestCase):
    server_tls = True
    server_options = {"plaintext_auth": "no"}

    def login_cmd(self):
        return "LOGIN %s %s" % (quote(self.user), quote(self.password))

    def test_implicit_tls(self):
        c = self.connect(tls=True)
        self.assertEqual(c.sock.version() in ("TLSv1.2", "TLSv1.3"), True, c.sock.version())
        caps = c.capabilities()
        self.assertNotIn("STARTTLS", caps)
        self.assertNotIn("LOGINDISABLED", caps)
        self.assertIn("AUTH=PLAIN", caps)
        self.ok(c, self.login_cmd())
        self.ok(c, "SELECT INBOX")
        # a real client library too
        M = imaplib.IMAP4_SSL(self.server.host, self.server.tls_port,
                              ssl_context=self.server.client_context())
        M.login(self.user, self.password)
        self.assertEqual(M.select("INBOX")[0], "OK")
        M.logout()

    def test_versions_and_alpn(self):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = self.server.client_context(minimum_version=version, maximum_version=version)
            ctx.set_alpn_protocols(["imap"])
            c = rs.Imap(self.server.host, self.server.tls_port, ssl_context=ctx)
            self.assertEqual(c.sock.selected_alpn_protocol(), "imap")
            self.ok(c, "NOOP")
            c.close()
        old = self.server.client_context()
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            old.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            rs.Imap(self.server.host, self.server.tls_port, ssl_context=old)
        # plain IMAP spoken to the TLS port gets nowhere, and the server lives
        s = __import__("socket").create_connection((self.server.host, self.server.tls_port),
                                                   timeout=10)
        s.sendall(b"a LOGIN x y\r\n")
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        self.assertNotIn(b"OK", data)
        s.close()
        self.ok(self.connect(tls=True), "NOOP")

    def test_starttls_and_logindisabled(self):
        c = self.connect()
        caps = c.capabilities()
        self.assertIn("STARTTLS", caps)
        self.assertIn("LOGINDISABLED", caps)
        self.assertNotIn("AUTH=PLAIN", caps)
        self.expect(c.cmd(self.login_cmd()), "NO")
        self.expect(c.cmd("AUTHENTICATE PLAIN AHVzZXIAcGFzcw=="), "NO")
        self.ok(c, "STARTTLS")
        c.starttls(self.server.client_context())
        caps = c.capabilities()
        self.assertNotIn("STARTTLS", caps)
        self.assertNotIn("LOGINDISABLED", caps)
        self.expect(c.cmd("STARTTLS"), "BAD")
        self.ok(c, self.login_cmd())
        self.ok(c, "SELECT INBOX")
        M = imaplib.IMAP4(self.server.host, self.server.port)
        M.starttls(ssl_context=self.server.client_context())
        M.login(self.user, self.password)
        M.logout()

    def test_starttls_injection(self):
        """Plaintext pipelined behind STARTTLS must be discarded, not run
        inside the TLS session (CVE-2011-0411)."""
        c = self.connect()
        c.send("a STARTTLS\r\nb " + self.login_cmd() + "\r\nc CREATE Injected\r\n")
        r = c.read()
        self.assertEqual((r.tag, r.status()[0]), ("a", "OK"), r)
        c.buf = b""     # anything the server sent after its OK would be a bug, see below
        c.starttls(self.server.client_context())
        # the next answer on the TLS session is to our own command
        r = c.cmd("NOOP")
        self.assertEqual(r.status, "OK", r.describe())
        self.assertFalse(r.untagged, r.describe())
        # and we are not logged in: b never ran
        self.expect(c.cmd("SELECT INBOX"), "BAD")
        self.ok(c, self.login_cmd())
        r = self.ok(c, 'LIST "" "*"')
        self.assertNotIn("Injected", r.describe())

    def test_openssl_s_client(self):
        p = subprocess.run(["openssl", "s_client", "-quiet", "-connect",
                            "%s:%d" % (self.server.host, self.server.tls_port),
                            "-CAfile", self.server.cert, "-verify_return_error"],
                           input=b"a " + self.login_cmd().encode() + b"\r\nb LOGOUT\r\n",
                           capture_output=True, timeout=30)
        self.assertIn(b"a OK", p.stdout, p.stdout + p.stderr)
        self.assertIn(b"* BYE", p.stdout)
        p = subprocess.run(["openssl", "s_client", "-quiet", "-starttls", "imap", "-connect",
                            "%s:%d" % (self.server.host, self.server.port),
                            "-CAfile", self.server.cert, "-verify_return_error"],
                           input=b"a " + self.login_cmd().encode() + b"\r\nb LOGOUT\r\n",
                           capture_output=True, timeout=30)
        self.assertIn(b"a OK", p.stdout, p.stdout + p.stderr)

    def test_reload_on_sighup(self):
        old = self.connect(tls=True)
        self.ok(old, self.login_cmd())
        first = old.sock.getpeercert(binary_form=True)
        # a new certificate for the same name, then SIGHUP
        rs.make_cert(self.server.cert + ".new", self.server.key + ".new", "localhost")
        os.replace(self.server.key + ".new", self.server.key)
        os.replace(self.server.cert + ".new", self.server.cert)
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        anyone = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anyone.check_hostname = False
        anyone.verify_mode = ssl.CERT_NONE
        while time.monotonic() < deadline:
            c = rs.Imap(self.server.host, self.server.tls_port, ssl_context=anyone)
            now = c.sock.getpeercert(binary_form=True)
            c.close()
            if now != first:
                break
            time.sleep(0.2)
        self.assertNotEqual(now, first, "the new certificate was not served after SIGHUP")
        c = self.connect(tls=True)      # verifies against the new certificate
        self.ok(c, "NOOP")
        self.ok(old, "NOOP")        # the session from before the reload goes on
        self.ok(old, "SELECT INBOX")
        self.assertIn("reloaded", self.server.stderr_since(self.log_offset))


rs.parametrize(globals(), Tls)

if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
