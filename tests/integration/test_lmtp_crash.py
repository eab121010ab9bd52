#!/usr/bin/env python3
"""LMTP delivery survives SIGKILL of ringmaild (fsync = batch).

Several LMTP clients deliver multi-recipient messages at once (MAIL, the
RCPTs and DATA pipelined, RFC 2920), among them recipients that do not
exist (refused at RCPT) and messages over append_limit (refused after the
data, RFC 1870 / RFC 2033: one reply per recipient).  At a random moment
the server is killed with SIGKILL, then started again; several rounds.
After each restart, every copy is looked up by its Message-ID (unique per
message) in its recipient's INBOX:

  - a recipient answered 250 after the data has the copy exactly once
    (RFC 2033 section 4.2: the 250 says the message was delivered to it;
    fsync = batch answers only once the copy is durable);
  - a recipient answered 4xx/5xx (at RCPT or after the data) has none;
  - a recipient whose reply never came (in flight at the kill) may have it
    or not, but never twice: those are counted and printed.

No Message-ID may appear that the clients did not send."""

import os
import random
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

QUICK = bool(os.environ.get("RINGMAIL_TEST_QUICK"))
ROUNDS = 3 if QUICK else 6
CLIENTS = 4
NUSERS = 8                  # user0..user7 receive
LIMIT = 20000               # append_limit: a "too big" message is over it
MSGID_RE = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.I | re.M)


class Conn:
    """A raw LMTP client over the Unix socket; raises OSError when the
    server goes away."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.buf = b""

    def reply(self):
        """The code of one (possibly multi-line) reply."""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            i = self.buf.index(b"\r\n")
            ln, self.buf = self.buf[:i], self.buf[i + 2:]
            if ln[3:4] != b"-":
                return int(ln[:3])

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def message(msgid, size, rng):
    head = ("From: Crash Test <crash@example.com>\r\nTo: many@example.org\r\n"
            "Subject: crash test %s\r\nMessage-ID: <%s>\r\n\r\n" % (msgid, msgid)).encode()
    body = []
    n = len(head)
    while n < size:
        ln = ("." if rng.random() < 0.05 else "") + " ".join(
            rng.choice(("alpha", "beta", "gamma", "delta", "mail", "crash")) for _ in range(10))
        body.append(ln.encode() + b"\r\n")
        n += len(body[-1])
    data = head + b"".join(body)
    # dot-stuffing (RFC 5321 section 4.5.2)
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


class Client(threading.Thread):
    """Delivers until the server dies (or stop is set); records per
    (Message-ID, user): "ok", "refused" or "noreply"."""

    def __init__(self, path, tag, seed, stop):
        super().__init__(daemon=True)
        self.path, self.tag, self.rng, self.stop = path, tag, random.Random(seed), stop
        self.outcome = {}
        self.n = 0
        self.error = None

    def transaction(self, c):
        self.n += 1
        msgid = "%s.%d@crash.test" % (self.tag, self.n)
        users = self.rng.sample(range(NUSERS), self.rng.randint(1, 4))
        rcpts = ["user%d" % u for u in users]
        unknown = self.rng.random() < 0.25
        if unknown:
            rcpts.insert(self.rng.randrange(len(rcpts) + 1), "nosuch%d" % self.n)
        big = self.rng.random() < 0.1
        data = message(msgid, LIMIT + 5000 if big else self.rng.randint(500, 8000), self.rng)
        for r in rcpts:
            self.outcome[(msgid, r)] = "noreply"
        c.send(b"MAIL FROM:<crash@example.com>\r\n" +
               b"".join(b"RCPT TO:<%s@example.org>\r\n" % r.encode() for r in rcpts) +
               b"DATA\r\n")
        if c.reply() != 250:
            raise AssertionError("MAIL refused")
        accepted = []
        for r in rcpts:
            code = c.reply()
            if code == 250:
                accepted.append(r)
            else:
                if not r.startswith("nosuch"):
                    raise AssertionError("RCPT %s refused: %d" % (r, code))
                self.outcome[(msgid, r)] = "refused"
        code = c.reply()
        if code != 354:
            raise AssertionError("DATA: %d" % code)
        c.send(data)
        for r in accepted:
            code = c.reply()
            if code == 250:
                if big:
                    raise AssertionError("a message over append_limit was taken")
                self.outcome[(msgid, r)] = "ok"
            elif 400 <= code < 600:
                self.outcome[(msgid, r)] = "refused"
            else:
                raise AssertionError("reply %d after the data" % code)

    def run(self):
        try:
            while not self.stop.is_set():
                c = Conn(self.path)
                try:
                    if c.reply() != 220:
                        raise AssertionError("greeting")
                    c.send(b"LHLO crash\r\n")
                    if c.reply() != 250:
                        raise AssertionError("LHLO")
                    for _ in range(self.rng.randint(5, 30)):
                        if self.stop.is_set():
                            break
                        self.transaction(c)
                finally:
                    c.close()
        except (OSError, ConnectionError):
            pass                      # the server was killed
        except Exception as e:        # noqa: BLE001 - reported by the test
            self.error = e


class LmtpCrash(rs.ServerTestCase):
    server_options = {"fsync": "batch", "append_limit": str(LIMIT)}
    users_per_class = NUSERS + 2

    @classmethod
    def setUpClass(cls):
        cls.sockdir = rs.tempfile.mkdtemp(prefix="lmtpk-", dir="/tmp")
        cls.sock = os.path.join(cls.sockdir, "lmtp")
        cls.server_options = dict(cls.server_options)
        cls.server_options["listen_lmtp"] = cls.sock
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        rs.shutil.rmtree(cls.sockdir, ignore_errors=True)

    def mailbox_ids(self, user):
        """{Message-ID: copies} of user's INBOX."""
        c = self.server.login(user, "pw%s-secret" % user[4:])
        try:
            got = rs.fetch_all(c, "INBOX")
        finally:
            c.close()
        ids = {}
        for _flags, body in got.values():
            m = MSGID_RE.search(body)
            self.assertIsNotNone(m, body[:300])
            k = m.group(1).decode()
            ids[k] = ids.get(k, 0) + 1
        return ids

    def test_sigkill_during_deliveries(self):
        rng = random.Random(int(os.environ.get("RINGMAIL_CRASH_SEED", "12")))
        outcome = {}
        totals = {"ok": 0, "refused": 0, "noreply": 0, "noreply_present": 0}
        for rnd in range(ROUNDS):
            stop = threading.Event()
            clients = [Client(self.sock, "r%dc%d" % (rnd, i), rng.random(), stop)
                       for i in range(CLIENTS)]
            for t in clients:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5))
            self.server.kill()
            stop.set()
            for t in clients:
                t.join(30)
                self.assertFalse(t.is_alive(), "an LMTP client hangs after the kill")
                self.assertIsNone(t.error, "client %s: %r" % (t.tag, t.error))
                outcome.update(t.outcome)
            self.server.start()
            present = {}
            for u in range(NUSERS):
                for k, n in self.mailbox_ids("user%d" % u).items():
                    present[(k, "user%d" % u)] = n
            round_ok = sum(st == "ok" for t in clients for st in t.outcome.values())
            for key, st in outcome.items():
                n = present.get(key, 0)
                if st == "ok":
                    self.assertEqual(n, 1, "%s answered 250: %d copies (round %d)"
                                     % (key, n, rnd))
                elif st == "refused":
                    self.assertEqual(n, 0, "%s refused: %d copies" % (key, n))
                else:
                    self.assertLessEqual(n, 1, "%s (no reply): %d copies" % (key, n))
            for key in present:
                self.assertIn(key, outcome, "a copy nobody sent: %r" % (key,))
            self.assertGreater(round_ok, 0, "nothing was delivered before the kill (round %d)"
                               % rnd)
        for key, st in outcome.items():
            totals[st] += 1
            if st == "noreply" and present.get(key):
                totals["noreply_present"] += 1
        print("\n%s: %d rounds: %d copies answered 250 (all there once), %d refused (none "
              "there), %d without a reply at the kill (%d of them there)"
              % (self.backend, ROUNDS, totals["ok"], totals["refused"], totals["noreply"],
                 totals["noreply_present"]), file=sys.stderr)
        self.assertGreater(totals["refused"], 0, "no refusal was exercised")


rs.parametrize(globals(), LmtpCrash)

if __name__ == "__main__":
    rs.main()
