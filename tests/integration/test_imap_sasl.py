"""AUTHENTICATE with every mechanism (PLAIN, LOGIN, SCRAM-SHA-256 and, over
TLS, SCRAM-SHA-256-PLUS with tls-server-end-point channel binding), with and
without SASL-IR, and LOGIN with every password scheme the passwd-file
accepts.  AUTH=SCRAM-SHA-256 is offered only while every user's
credentials can serve it (a client offered SCRAM may not fall back), and a
failed SASL login logs the names the client sent.  The SCRAM client is
written here from RFC 5802 / RFC 7677."""

import base64
import hashlib
import hmac
import os
import secrets
import sys
import time

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

    def test_scram_not_offered_with_one_way_hashes(self):
        # users stored with one-way hashes (ARGON2ID, crypt) cannot pass
        # SCRAM: it is not offered, with or without TLS
        for tls in (False, True):
            caps = self.connect(tls=tls).capabilities()
            self.assertNotIn("AUTH=SCRAM-SHA-256", caps)
            self.assertNotIn("AUTH=SCRAM-SHA-256-PLUS", caps)
        # a client that tries it anyway: works where the credentials allow
        for scheme in ("PLAIN", "SCRAM-SHA-256"):
            user = "s-" + scheme.lower()
            r = self.scram(self.connect(), user, "pw-" + user)
            self.assertEqual(r.status()[0], "OK", (scheme, r))
        # a one-way hash gives no SCRAM keys: authentication fails cleanly
        r = self.scram(self.connect(), "s-argon2id", "pw-s-argon2id")
        self.assertEqual(r.status()[0], "NO", r)

    def test_failed_sasl_login_logs_the_names_sent(self):
        checks = []
        r = self.sasl(self.connect(), "PLAIN", None, ir=b"\0s-plain\0wrong-pw")
        self.assertEqual(r.status()[0], "NO", r)
        checks.append("user=s-plain ")
        answers = iter([b"s-sha512-crypt", b"wrong"])
        r = self.sasl(self.connect(), "LOGIN", lambda ch: next(answers))
        self.assertEqual(r.status()[0], "NO", r)
        checks.append("user=s-sha512-crypt ")
        r = self.scram(self.connect(), "s-scram-sha-256", "wrong")
        self.assertEqual(r.status()[0], "NO", r)
        checks.append("user=s-scram-sha-256 ")
        r = self.scram(self.connect(), "nobody-at-all", "x")
        self.assertEqual(r.status()[0], "NO", r)
        checks.append("user=nobody-at-all ")
        # an authorization identity that is another user: both names
        r = self.sasl(self.connect(), "PLAIN", None, ir=b"boss\0s-plain\0pw-s-plain")
        self.assertEqual(r.status()[0], "NO", r)
        self.assertIn(b"AUTHORIZATIONFAILED", r.raw)
        checks.append("authzid boss")
        log = self.server.stderr_since(self.log_offset)
        for want in checks:
            self.assertIn(want, log, "the log does not name the user (%r):\n%s" % (want, log))
        self.assertNotIn("user= ", log)


class SaslScram(Sasl):
    """Every user has SCRAM-capable credentials ({PLAIN} or {SCRAM-SHA-256}):
    SCRAM is offered, and works for every user it is offered to."""

    @classmethod
    def prepare_server(cls, server):
        for scheme in ("PLAIN", "SCRAM-SHA-256"):
            user = "s-" + scheme.lower()
            server.admin("-o", "passwd_file=" + server.passwd, "user", "add", "--scheme",
                         scheme, user, input=("pw-" + user + "\n").encode())
        # the harness's one-way-hashed user would keep SCRAM from being offered
        server.users.pop("crypt", None)
        with open(server.passwd) as f:
            lines = [l for l in f if not l.startswith("crypt:")]
        with open(server.passwd, "w") as f:
            f.writelines(lines)

    test_login_every_scheme = None
    test_scram_not_offered_with_one_way_hashes = None
    test_failed_sasl_login_logs_the_names_sent = None

    def test_scram_plus_over_tls(self):
        self.check_scram_plus_over_tls()

    def test_scram(self):
        caps = self.connect().capabilities()
        self.assertIn("AUTH=SCRAM-SHA-256", caps)
        for scheme in ("PLAIN", "SCRAM-SHA-256"):
            user = "s-" + scheme.lower()
            for ir in (False, True):
                r = self.scram(self.connect(), user, "pw-" + user, ir=ir)
                self.assertEqual(r.status()[0], "OK", (scheme, ir, r))
            r = self.scram(self.connect(), user, "wrong")
            self.assertEqual(r.status()[0], "NO", r)
        r = self.scram(self.connect(), "nobody-here", "x")
        self.assertEqual(r.status()[0], "NO", r)
        # every user of the file passes SCRAM (the harness's users are {PLAIN})
        r = self.scram(self.connect(), self.user, self.password)
        self.assertEqual(r.status()[0], "OK", r)

    def test_offer_follows_the_passwd_file(self):
        self.assertIn("AUTH=SCRAM-SHA-256", self.connect().capabilities())
        # `user add` with the defaults (ARGON2ID): SCRAM could not serve the
        # new user, so it is no longer offered (the file is re-read at once)
        self.server.admin("-o", "passwd_file=" + self.server.passwd, "user", "add", "argon",
                          input=b"pw-argon\n")
        try:
            caps = None
            for _ in range(50):
                caps = self.connect().capabilities()
                if "AUTH=SCRAM-SHA-256" not in caps:
                    break
                time.sleep(0.1)
            self.assertNotIn("AUTH=SCRAM-SHA-256", caps)
            # and the new user logs in with what is offered
            self.ok(self.connect(), "LOGIN argon pw-argon")
        finally:
            self.server.admin("-o", "passwd_file=" + self.server.passwd, "user", "del",
                              "argon")
        for _ in range(50):
            caps = self.connect().capabilities()
            if "AUTH=SCRAM-SHA-256" in caps:
                break
            time.sleep(0.1)
        self.assertIn("AUTH=SCRAM-SHA-256", caps)

    def check_scram_plus_over_tls(self):
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


rs.parametrize(globals(), Sasl, SaslScram)

if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
