"""COMPRESS=DEFLATE (RFC 4978), with a client that deflates and inflates
itself (zlib, raw deflate): offered only after login; the tagged OK is the
last uncompressed byte; a second COMPRESS and unknown mechanisms; a large
FETCH (sent in slices) arrives intact; pipelined commands in one compressed
write; a client that deflates with a small window; a compression bomb meets
the same line limit as plain input; clients that go away mid-stream or send
garbage.  On cleartext and TLS connections, both io backends.

RINGMAIL_TEST_QUICK=1 (the sanitizer run) uses a smaller mailbox."""

import os
import socket
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402

QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"
NMSG = 150 if QUICK else 600
BOMB_MB = 16 if QUICK else 64
MAX_LINE = 4096


class ZSock:
    """A socket that speaks raw deflate both ways (what rs.Imap uses of a
    socket: sendall, recv, settimeout, setblocking, close)."""

    def __init__(self, raw, wbits=-15, level=6):
        self.raw = raw
        self.z = zlib.compressobj(level, zlib.DEFLATED, wbits)
        self.d = zlib.decompressobj(-15)    # any window the server picks
        self.sent_raw = 0
        self.got_raw = 0

    def deflate(self, data):
        return self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)

    def sendall(self, data):
        out = self.deflate(data)
        self.sent_raw += len(out)
        self.raw.sendall(out)

    def recv(self, n):
        while True:
            chunk = self.raw.recv(n)
            if not chunk:
                return b""
            self.got_raw += len(chunk)
            out = self.d.decompress(chunk)
            if self.d.unused_data:
                raise AssertionError("bytes after the end of the server's stream")
            if out:
                return out

    def __getattr__(self, k):
        return getattr(self.raw, k)


def message(i):
    hdr = [b"From: Sender %d <s%d@example.org>" % (i, i),
           b"To: rcpt%d@example.net" % (i % 13),
           b"Subject: compressible message number %d" % i,
           b"Date: Mon, 7 Feb 2022 21:52:25 -0800",
           b"Message-ID: <c%d@example.org>" % i]
    body = b"".join(b"line %d of message %d: %s\r\n" % (k, i, os.urandom(6).hex().encode())
                    for k in range(60))
    return b"\r\n".join(hdr) + b"\r\n\r\n" + body


class Compress(rs.ServerTestCase):
    # a small output limit: the large FETCH goes out in many slices
    server_options = {"max_line_length": str(MAX_LINE), "append_limit": "1000000",
                      "max_output_buffer": "65536",
                      "workers": "1"}
    users_per_class = 20
    use_tls = False

    @classmethod
    def prepare_server(cls, server):
        server.import_mbox("user0", "INBOX", [message(i) for i in range(NMSG)])
        server.import_mbox("user19", "INBOX", gen_mbox.generate(20, 1978))

    def connect(self, **kw):
        if self.use_tls:
            c = rs.Imap(self.server.host, self.server.tls_port,
                        ssl_context=self.server.client_context())
            self.conns.append(c)
            return c
        return super().connect(**kw)

    def logged_in(self, user=None):
        c = self.connect()
        self.ok(c, "LOGIN %s %s" % (quote(user or self.user),
                                    quote(self.password if not user else "pw0-secret")))
        return c

    def compress(self, c, wbits=-15):
        t = c.tag()
        c.send("%s COMPRESS DEFLATE\r\n" % t)
        # the tagged OK is the last thing sent in the clear: read it from
        # the raw socket, byte by byte, so nothing after it is consumed
        self.assertEqual(c.buf, b"")
        line = b""
        while not line.endswith(b"\r\n"):
            b = c.sock.recv(1)
            self.assertTrue(b, "closed before the COMPRESS answer")
            line += b
        self.assertTrue(line.startswith(t.encode() + b" OK"), line)
        c.sock = ZSock(c.sock, wbits=wbits)
        return c

    # -- tests --

    def test_capability_and_state(self):
        c = self.connect()
        self.assertNotIn("COMPRESS=DEFLATE", c.capabilities())
        self.expect(c.cmd("COMPRESS DEFLATE"), "BAD")      # command-auth only
        self.ok(c, "LOGIN %s %s" % (quote(self.user), quote(self.password)))
        self.assertIn("COMPRESS=DEFLATE", c.capabilities())
        self.expect(c.cmd("COMPRESS GZIP"), "BAD")
        self.expect(c.cmd("COMPRESS"), "BAD")
        self.expect(c.cmd('COMPRESS "DEFLATE"'), "BAD")
        # after those, still uncompressed
        self.ok(c, "NOOP")
        self.compress(c)
        self.assertIn("COMPRESS=DEFLATE", c.capabilities())
        self.expect(c.cmd("COMPRESS DEFLATE"), "NO", "COMPRESSIONACTIVE")
        self.expect(c.cmd("compress deflate"), "NO", "COMPRESSIONACTIVE")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "NOOP")
        # LOGOUT's BYE and OK arrive compressed
        r = c.cmd("LOGOUT")
        self.assertEqual(r.status, "OK")
        self.assertTrue(c.sock.got_raw > 0)

    def test_large_fetch_intact(self):
        ref = self.logged_in("user0")
        z = self.compress(self.logged_in("user0"))
        cmd = "FETCH 1:* (UID FLAGS ENVELOPE BODY.PEEK[])"
        for c in (ref, z):
            self.ok(c, "EXAMINE INBOX")
        want = ref.cmd(cmd)
        got = z.cmd(cmd)
        self.assertEqual(want.status, "OK")
        self.assertEqual(len(got.untagged), NMSG)
        self.assertEqual([u.raw for u in got.untagged], [u.raw for u in want.untagged])
        plain_bytes = sum(len(u.raw) for u in want.untagged)
        # the bodies are half random hex: a real saving, but not a miracle
        self.assertLess(z.sock.got_raw, plain_bytes * 0.8)
        self.ok(z, "NOOP")

    def test_pipelined_in_one_write(self):
        c = self.compress(self.logged_in())
        c.send(b"p1 NOOP\r\np2 CAPABILITY\r\np3 SELECT INBOX\r\np4 STATUS INBOX (MESSAGES)\r\n"
               b"p5 LIST \"\" INBOX\r\n")
        for t in ("p1", "p2", "p3", "p4", "p5"):
            _, r, _ = c.read_until_tag(t)
            self.assertEqual(r.status()[0], "OK", r)

    def test_long_pipeline_paused_midway(self):
        # 400 commands (22 KB inflated: two inflate steps) whose answers
        # overrun the output limit: the session stops reading halfway, the
        # compressed rest waits, and every answer comes, in order, the same
        # as on a plain connection
        ref = self.logged_in("user0")
        z = self.compress(self.logged_in("user0"))
        cmds = b"".join(b"q%03d UID FETCH %d:%d (UID RFC822.SIZE BODY.PEEK[])\r\n"
                        % (i, i % NMSG + 1, i % NMSG + 5) for i in range(400))
        answers = []
        for c in (ref, z):
            self.ok(c, "EXAMINE INBOX")
            c.send(cmds)
            got = []
            for i in range(400):
                u, r, _ = c.read_until_tag("q%03d" % i, timeout=120)
                self.assertEqual(r.status()[0], "OK", r)
                got.append([x.raw for x in u])
            answers.append(got)
        self.assertEqual(answers[0], answers[1])
        self.ok(z, "NOOP")

    def test_command_right_after_compress(self):
        # RFC 4978 3: the client must wait for the answer; one that does not
        # but compresses what follows is still understood, in order
        c = self.logged_in()
        zc = zlib.compressobj(6, zlib.DEFLATED, -15)
        c.send(b"z COMPRESS DEFLATE\r\n" + zc.compress(b"n1 NOOP\r\nn2 NOOP\r\n") +
               zc.flush(zlib.Z_SYNC_FLUSH))
        line = b""
        while not line.endswith(b"\r\n"):
            b = c.sock.recv(1)
            self.assertTrue(b)
            line += b
        self.assertTrue(line.startswith(b"z OK"), line)
        zs = ZSock(c.sock)
        zs.z = zc
        c.sock = zs
        for t in ("n1", "n2"):
            self.assertEqual(c.read_until_tag(t)[1].status()[0], "OK")
        self.ok(c, "NOOP")

    def test_small_window_client(self):
        for wbits in (-9, -10, -12):
            c = self.compress(self.logged_in(), wbits=wbits)
            self.ok(c, "SELECT INBOX")
            names = ["box%d-%s" % (wbits, "w" * k) for k in range(1, 30)]
            for n in names:
                self.ok(c, "CREATE %s" % n)
            r = self.ok(c, 'LIST "" "box%d-*"' % wbits)
            self.assertEqual(len(r.untagged), len(names))
            c.close()
            self.conns.remove(c)

    def test_bomb_meets_line_limit(self):
        # the same over-long line, plain and compressed: the same answers
        want = []
        for zip_it in (False, True):
            c = self.logged_in()
            if zip_it:
                self.compress(c)
            r = c.cmd("a NOOP " + "x" * (MAX_LINE * 3))
            self.assertEqual(r.status, "BAD", r.describe())
            self.assertEqual(r.code_name(), "TOOBIG")
            want.append(r.tagged.raw.split(b" ", 1)[1])
            self.ok(c, "NOOP")
        self.assertEqual(want[0], want[1])
        # a few tens of KB that inflate to BOMB_MB MB: answered, never buffered
        c = self.compress(self.logged_in())
        before = rs.rss_kib(self.server.proc.pid)
        zc = c.sock.z
        data = zc.compress(b"b NOOP ")
        block = b"y" * (1 << 20)
        for _ in range(BOMB_MB):
            data += zc.compress(block)
        data += zc.compress(b"\r\nb2 NOOP\r\n") + zc.flush(zlib.Z_SYNC_FLUSH)
        self.assertLess(len(data), 1 << 20)
        c.sock.raw.sendall(data)
        _, r, _ = c.read_until_tag("b", timeout=120)
        self.assertEqual(r.status()[0], "BAD")
        self.assertEqual(c.read_until_tag("b2")[1].status()[0], "OK")
        grew = rs.rss_kib(self.server.proc.pid) - before
        self.assertLess(grew, 32 * 1024, "RSS grew by %d KiB" % grew)
        # and as a literal: NO [TOOBIG] as for plain input
        data = zc.compress(b"l APPEND INBOX {%d+}\r\n" % (BOMB_MB << 20))
        for _ in range(BOMB_MB):
            data += zc.compress(block)
        data += zc.compress(b"\r\nl2 NOOP\r\n") + zc.flush(zlib.Z_SYNC_FLUSH)
        c.sock.raw.sendall(data)
        _, r, _ = c.read_until_tag("l", timeout=120)
        self.assertIn(r.status()[0], ("NO", "BAD"))
        self.assertIn("TOOBIG", repr(r))
        self.assertEqual(c.read_until_tag("l2")[1].status()[0], "OK")

    def test_peer_goes_away(self):
        # half a compressed command, then gone
        c = self.compress(self.logged_in())
        zc = c.sock.z
        data = zc.compress(b"h NOOP\r\n" * 50) + zc.flush(zlib.Z_SYNC_FLUSH)
        c.sock.raw.sendall(data[:len(data) // 2])
        c.sock.raw.close()
        # gone in the middle of a large compressed answer
        c = self.compress(self.logged_in("user0"))
        self.ok(c, "EXAMINE INBOX")
        c.send("f FETCH 1:* BODY.PEEK[]\r\n")
        c.sock.raw.recv(1000)
        c.sock.raw.close()
        # a final deflate block, then more: not IMAP any more
        c = self.compress(self.logged_in())
        zf = zlib.compressobj(6, zlib.DEFLATED, -15)
        c.sock.raw.sendall(zf.compress(b"e NOOP\r\n") + zf.flush(zlib.Z_FINISH) + b"junk")
        # garbage that is not deflate at all
        g = self.compress(self.logged_in())
        g.sock.raw.sendall(b"\xff" * 64)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if not g.sock.raw.recv(100):
                    break
            except (ConnectionError, socket.timeout):
                break
        else:
            self.fail("the server kept a connection that sent garbage")
        self.assertTrue(self.server.alive())
        self.ok(self.compress(self.logged_in()), "NOOP")

    def test_mbsync_compresses(self):
        # a real client with its defaults: mbsync turns COMPRESS on when it
        # is offered, and its sync comes out whole
        exe = rs.require_program(self, "mbsync")
        d = os.path.join(self.server.tmp, "mbsync-z")
        os.makedirs(os.path.join(d, "Mail"), exist_ok=True)
        with open(os.path.join(d, "rc"), "w") as f:
            f.write("IMAPAccount a\nHost %s\nPort %d\nUser user19\nPass pw19-secret\n%s\n"
                    "Timeout 60\n\nIMAPStore far\nAccount a\n\nMaildirStore near\n"
                    "Path %s/Mail/\nInbox %s/Mail/INBOX\n\nChannel c\nFar :far:\n"
                    "Near :near:\nPatterns *\nCreate Both\nSyncState *\n"
                    % ("localhost" if self.use_tls else self.server.host,
                       self.server.tls_port if self.use_tls else self.server.port,
                       ("SSLType IMAPS\nCertificateFile %s" % self.server.cert)
                       if self.use_tls else "SSLType None", d, d))
        p = subprocess.run([exe, "-Dn", "-c", os.path.join(d, "rc"), "-a"],
                           capture_output=True, timeout=300, cwd=d)
        out = (p.stdout + p.stderr).decode(errors="replace")
        self.assertEqual(p.returncode, 0, out[-3000:])
        self.assertRegex(out, r"\n\d+ OK DEFLATE active", "mbsync did not compress")
        got = os.listdir(os.path.join(d, "Mail", "INBOX", "cur")) + \
            os.listdir(os.path.join(d, "Mail", "INBOX", "new"))
        # no Expunge in the channel: \Deleted messages come along too
        self.assertEqual(len(got), 20)


class CompressTls(Compress):
    server_tls = True
    use_tls = True


rs.parametrize(globals(), Compress, CompressTls)

if __name__ == "__main__":
    rs.main()
