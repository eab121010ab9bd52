"""AUTHENTICATE with every mechanism (PLAIN, LOGIN, SCRAM-SHA-256 and, over
TLS, SCRAM-SHA-256-PLUS with tls-server-end-point channel binding), with and
without SASL-IR, and LOGIN with every password scheme the passwd-file
accepts.  The SCRAM client is written here from RFC 5802 / RFC 7677."""

import base64
import hashlib
import hmac
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402

SCHEMES = ["PLAIN", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "ARGON2ID", "SCRAM-SHA-256"]


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    return base64.b64decode(s)


class ScramClient:
    def __init__(self, user, password, cbind=None):
        self.user, self.password = user, password
        self.cbind = cbind      # (type, data) for -PLUS
        self.nonce = secrets.token_urlsafe(18)
        self.gs2 = ("p=%s,," % cbind[0]) if cbind else "n,,"
        self.first_bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"),
                                          self.nonce)

    def first(self):
        return (self.gs2 + self.first_bare).encode()

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce)
        salt, iters = unb64(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
        ck = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        sk = hashlib.sha256(ck).digest()
        cb = self.gs2.encode() + (self.cbind[1] if self.cbind else b"")
        without_proof = "c=%s,r=%s" % (b64(cb), attrs["r"])
        auth = ",".join([self.first_bare, server_first.decode(), without_proof]).encode()
        sig = hmac.new(sk, auth, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(ck, sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_v = b64(hmac.new(server_key, auth, hashlib.sha256).digest())
        return (without_proof + ",p=" + b64(proof)).encode()


class Sasl(rs.ServerTestCase):
    server_tls = True
    users_per_class = 40

    @classmethod
    def prepare_server(cls, server):
        # one user per password scheme, written by ringmail-admin itself
        for scheme in SCHEMES:
            user = "s-" + scheme.lower()
            server.admin("-o", "passwd_file=" + server.passwd, "user", "add", "--scheme",
                         scheme, user, input=("pw-" + user + "\n").encode())

    def sasl(self, c, mech, steps, ir=None):
        """Run AUTHENTICATE; steps(challenge bytes) -> response bytes."""
        tag = c.tag()
        c.send("%s AUTHENTICATE %s%s\r\n" % (tag, mech, (" " + (b64(ir) or "=")) if ir is not None
                                             else ""))
        while True:
            r = c.read()
            if r.tag == tag:
                return r
            self.assertTrue(r.continuation, r)
            challenge = unb64(r.raw[2:]) if len(r.raw) > 2 else b""
            c.send(b64(steps(challenge)) + "\r\n")

    def test_login_every_scheme(self):
        for scheme in SCHEMES:
            user = "s-" + scheme.lower()
            c = self.connect()
            self.ok(c, "LOGIN %s %s" % (quote(user), quote("pw-" + user)))
            c2 = self.connect()
            self.expect(c2.cmd("LOGIN %s wrong" % quote(user)), "NO", "AUTHENTICATIONFAILED")

    def test_plain_and_login_mechanisms(self):
        user, pw = self.user, self.password
        cred = b"\0" + user.encode() + b"\0" + pw.encode()
        r = self.sasl(self.connect(), "PLAIN", lambda ch: cred)
        self.assertEqual(r.status()[0], "OK", r)
        r = self.sasl(self.connect(), "PLAIN", None, ir=cred)
        self.assertEqual(r.status()[0], "OK", r)
        answers = iter([user.encode(), pw.encode()])
        r = self.sasl(self.connect(), "LOGIN", lambda ch: next(answers))
        self.assertEqual(r.status()[0], "OK", r)
        answers = iter([user.encode(), b"wrong"])
        r = self.sasl(self.connect(), "LOGIN", lambda ch: next(answers))
        self.assertEqual(r.status()[0], "NO", r)

    def scram(self, c, user, password, plus=None, ir=False):
        cl = ScramClient(user, password, plus)
        state = {"n": 0}

        def steps(ch):
            state["n"] += 1
            if state["n"] == 1 and not ir:
                return cl.first()
            if ch.startswith(b"r="):
                return cl.final(ch)
            if ch.startswith(b"v="):
                self.assertEqual(ch.decode()[2:], cl.expected_v, "server signature")
                return b""
            self.fail("unexpected challenge %r" % ch)
        return self.sasl(c, "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256", steps,
                         ir=cl.first() if ir else None)

    def test_scram(self):
        for scheme in ("PLAIN", "SCRAM-SHA-256"):
            user = "s-" + scheme.lower()
            for ir in (False, True):
                r = self.scram(self.connect(), user, "pw-" + user, ir=ir)
                self.assertEqual(r.status()[0], "OK", (scheme, ir, r))
            r = self.scram(self.connect(), user, "wrong")
            self.assertEqual(r.status()[0], "NO", r)
        # a one-way hash gives no SCRAM keys: authentication fails cleanly
        r = self.scram(self.connect(), "s-argon2id", "pw-s-argon2id")
        self.assertEqual(r.status()[0], "NO", r)
        r = self.scram(self.connect(), "nobody-here", "x")
        self.assertEqual(r.status()[0], "NO", r)

    def test_scram_plus_over_tls(self):
        c = self.connect()
        self.assertNotIn("AUTH=SCRAM-SHA-256-PLUS", c.capabilities())
        c = self.connect(tls=True)
        self.assertIn("AUTH=SCRAM-SHA-256-PLUS", c.capabilities())
        der = c.sock.getpeercert(binary_form=True)
        binding = hashlib.sha256(der).digest()      # RFC 5929 for an ECDSA-SHA256 cert
        user = "s-scram-sha-256"
        r = self.scram(c, user, "pw-" + user, plus=("tls-server-end-point", binding))
        self.assertEqual(r.status()[0], "OK", r)
        # wrong binding data (a man in the middle) fails
        c = self.connect(tls=True)
        r = self.scram(c, user, "pw-" + user, plus=("tls-server-end-point", b"\0" * 32))
        self.assertEqual(r.status()[0], "NO", r)

    def test_cancel_and_garbage(self):
        c = self.connect()
        tag = c.tag()
        c.send("%s AUTHENTICATE SCRAM-SHA-256\r\n" % tag)
        self.assertTrue(c.read().continuation)
        c.send("*\r\n")
        r = c.read()
        self.assertEqual((r.tag, r.status()[0]), (tag, "BAD"))
        self.expect(c.cmd("AUTHENTICATE SCRAM-SHA-256 !!notbase64"), "BAD")
        self.expect(c.cmd("AUTHENTICATE SCRAM-SHA-256 " + b64(b"x,,n=u,r=abc")), ("BAD", "NO"))
        self.expect(c.cmd("AUTHENTICATE CRAM-MD5"), "NO")
        self.ok(c, "NOOP")


rs.parametrize(globals(), Sasl)

if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
