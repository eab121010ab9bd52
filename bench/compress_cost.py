#!/usr/bin/env python3
"""What COMPRESS=DEFLATE costs and saves on ringmaild.

    bench/compress_cost.py BUILD_DIR [BACKEND [SESSIONS [MESSAGES]]]

Starts BUILD_DIR/ringmaild on a free loopback port with a throw-away store
and one user, then

1. memory: opens SESSIONS connections (default 10000), logs each in, turns
   COMPRESS DEFLATE on and sends a 33 KB command and a LIST (so both
   directions of the stream have been used, and the inflater's window is
   full, as in a session that has been running a while), leaves them idle, and
   prints the server's RSS growth per session; the same for SESSIONS plain
   sessions, for comparison;
2. a header listing: imports MESSAGES generated messages (default 3000,
   tests/integration/gen_mbox.py) and runs
   FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)])
   twenty times on a plain and on a compressed session, printing the bytes on
   the wire and the server's CPU time (utime + stime) for each; then 20,000
   NOOPs one at a time, for the CPU of many small compressed answers.
Needs an open-files limit above SESSIONS (the hard limit is used)."""
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import zlib

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
import gen_mbox  # noqa: E402

build = sys.argv[1]
backend = sys.argv[2] if len(sys.argv) > 2 else "io_uring"
nsess = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
nmsg = int(sys.argv[4]) if len(sys.argv) > 4 else 3000
ROUNDS = 20
NOOPS = 20000
LISTING = (b"FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)])")

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
d = tempfile.mkdtemp(prefix="rm-zcost.")
with open(d + "/passwd", "w") as f:
    f.write("u:{PLAIN}p\n")
conf = ["-o", "mail_root=" + d + "/mail", "-o", "passwd_file=" + d + "/passwd"]
with open(d + "/in.mbox", "wb") as f:
    gen_mbox.write_mbox(gen_mbox.generate(nmsg, seed=7), f)
subprocess.run([build + "/ringmail-admin"] + conf + ["import", "u", "INBOX", d + "/in.mbox"],
               check=True, stdout=subprocess.DEVNULL)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = subprocess.Popen([build + "/ringmaild", "-o", "listen=127.0.0.1:%d" % port,
                        "-o", "io_backend=" + backend, "-o", "log_level=error",
                        "-o", "workers=1", "-o", "max_connections_per_user=1000000",
                        "-o", "max_connections_per_ip=1000000"] + conf,
                       stderr=subprocess.DEVNULL)
TICK = os.sysconf("SC_CLK_TCK")


def rss():
    for line in open("/proc/%d/status" % srv.pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def cpu():
    f = open("/proc/%d/stat" % srv.pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.z = self.d = None
        self.wire_in = 0
        self.until(b"\r\n")

    def send(self, data):
        if self.z:
            data = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(data)

    def until(self, marker):
        while marker not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("server closed the connection; got %r" % self.buf[-200:])
            self.wire_in += len(chunk)
            self.buf += self.d.decompress(chunk) if self.d else chunk
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def cmd(self, tag, text):
        """Send a command, return its answer (up to the tagged line)."""
        self.send(tag + b" " + text + b"\r\n")
        out = b""
        while True:
            line = self.until(b"\r\n")
            out += line
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise SystemExit("%r failed: %r" % (text, line))
                return out

    def compress(self):
        self.send(b"c COMPRESS DEFLATE\r\n")
        # the answer is the last uncompressed line
        while b"c OK" not in self.buf or not self.buf.endswith(b"\r\n"):
            self.buf += self.s.recv(1)
            self.wire_in += 1
        self.buf = b""
        self.z = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.d = zlib.decompressobj(-15)


def sessions(compressed):
    socks = [Conn() for _ in range(nsess)]
    for c in socks:
        c.send(b"a LOGIN u p\r\n")
    for c in socks:
        c.until(b"a OK")
        c.until(b"\r\n")
        if compressed:
            c.compress()
            # a used session: 33 KB in (the inflater's 32 KiB window is
            # full; a NOOP with an argument gets a BAD), a LIST out
            c.send(b"x NOOP " + b"x" * 33000 + b"\r\nn LIST \"\" *\r\n")
    if compressed:
        for c in socks:
            c.until(b"n OK")
            c.until(b"\r\n")
    return socks


try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    warm = Conn(); warm.cmd(b"a", b"LOGIN u p"); warm.s.close()
    time.sleep(0.3)
    for compressed in (False, True):
        base = rss()
        socks = sessions(compressed)
        time.sleep(1)
        after = rss()
        print("%s: %d idle %s sessions: RSS %d KiB -> %d KiB, %.2f KiB each"
              % (backend, nsess, "compressed" if compressed else "plain", base, after,
                 (after - base) / nsess))
        for c in socks:
            c.s.close()
        del socks
        time.sleep(1)

    for compressed in (False, True):
        c = Conn()
        c.cmd(b"a", b"LOGIN u p")
        if compressed:
            c.compress()
        c.cmd(b"s", b"EXAMINE INBOX")
        plain_bytes = 0
        c.wire_in = 0
        t0 = cpu()
        for i in range(ROUNDS):
            plain_bytes += len(c.cmd(b"f%d" % i, LISTING))
        t1 = cpu()
        print("%s: header listing of %d messages, %s: %d bytes of IMAP, %d bytes on the wire "
              "per listing; server CPU %.1f ms per listing"
              % (backend, nmsg, "compressed" if compressed else "plain", plain_bytes // ROUNDS,
                 c.wire_in // ROUNDS, (t1 - t0) * 1000 / ROUNDS))
        # small answers: every one is a batch of its own (a new deflater,
        # primed with the last 2 KiB, then a flush)
        t0 = cpu()
        for i in range(NOOPS):
            c.cmd(b"n%d" % i, b"NOOP")
        t1 = cpu()
        print("%s: %d NOOPs one at a time, %s: server CPU %.1f us per NOOP"
              % (backend, NOOPS, "compressed" if compressed else "plain",
                 (t1 - t0) * 1e6 / NOOPS))
        c.s.close()
finally:
    srv.terminate(); srv.wait()
    subprocess.run(["rm", "-rf", d])
