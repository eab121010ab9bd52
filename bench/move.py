#!/usr/bin/env python3
"""bench/move.py: the time and the downtime of `ringmail-admin user move`
for a big user, between two ringmaild backends on this machine.

    python3 bench/move.py [--messages N] [--load RATE] [--io uring|epoll]
                          [--out FILE.md] [--keep]

Makes a user of N generated messages (tests/integration/gen_mbox.py, 4-40
KB and MIME of every kind; 60 % INBOX, 30 % Archive, 10 % Sent) with
ringmail-admin import, starts a source and a target ringmaild (fsync =
batch, loopback, temp dir, one passwd-file naming the source), and moves the
user while, with --load, an LMTP client delivers RATE messages a second to
whichever backend the passwd-file names (a 4xx retried after 50 ms, as an
MTA would) and a client keeps an IDLE on the source.  Reports what the
mover prints (rounds, bytes, total time, downtime = freeze to directory
change), the longest time a delivery waited (its first 451 to its 250),
and the first SELECT of the INBOX on the target (whether the shipped index
was trusted or had to be rebuilt).  Appends the figures as Markdown to
--out (default bench/move-results.md).  Defaults: 100000 messages, load
20/s, io_uring.
"""

import argparse
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import gen_mbox  # noqa: E402

BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
RINGMAILD = os.path.join(BUILD, "ringmaild")
ADMIN = os.path.join(BUILD, "ringmail-admin")
USER, PASSWORD, SECRET = "big", "big-pw", "bench-move-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def imap_cmd(sock, tag, line, until=None):
    sock.sendall(("%s %s\r\n" % (tag, line)).encode())
    buf = b""
    while not re.search(rb"(^|\r\n)%s (OK|NO|BAD)" % tag.encode(), buf):
        ch = sock.recv(65536)
        if not ch:
            raise RuntimeError("closed: %r" % buf[-300:])
        buf += ch
    return buf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--load", type=float, default=20.0)
    ap.add_argument("--io", default="uring", choices=["uring", "epoll"])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "move-results.md"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ringmail-move-bench.")
    procs = []
    try:
        passwd = os.path.join(tmp, "passwd")
        backends = {}
        for name in ("src", "tgt"):
            d = os.path.join(tmp, name)
            os.makedirs(os.path.join(d, "mail"))
            b = {"dir": d, "mail": os.path.join(d, "mail"), "imap": free_port(),
                 "lmtp": free_port(), "conf": os.path.join(d, "ringmail.conf")}
            opts = {"mail_root": b["mail"], "passwd_file": passwd, "fsync": "batch",
                    "listen": "127.0.0.1:%d" % b["imap"], "listen_tls": "",
                    "listen_lmtp": "127.0.0.1:%d" % b["lmtp"], "plaintext_auth": "loopback",
                    "auth_failure_delay": "0",
                    "io_backend": "io_uring" if a.io == "uring" else "epoll"}
            if name == "tgt":
                b["move"] = free_port()
                opts.update({"listen_move": "127.0.0.1:%d" % b["move"],
                             "move_secret": SECRET})
            with open(b["conf"], "w") as f:
                for k, v in opts.items():
                    f.write("%s = %s\n" % (k, v))
            backends[name] = b
        src, tgt = backends["src"], backends["tgt"]
        with open(passwd, "w") as f:
            f.write("%s:{PLAIN}%s::::::host=127.0.0.1 port=%d\n" % (USER, PASSWORD, src["imap"]))

        t0 = time.monotonic()
        split = [("INBOX", 0.6), ("Archive", 0.3), ("Sent", 0.1)]
        seed, total_bytes = 1, 0
        for box, share in split:
            n = int(a.messages * share)
            path = os.path.join(tmp, "import.mbox")
            done = 0
            while done < n:
                k = min(20000, n - done)
                msgs = gen_mbox.generate(k, seed)
                seed += 1
                total_bytes += sum(len(m.raw) for m in msgs)
                with open(path, "wb") as f:
                    gen_mbox.write_mbox(msgs, f)
                subprocess.run([ADMIN, "-c", src["conf"], "import", USER, box, path],
                               check=True, capture_output=True)
                done += k
            os.unlink(path)
        print("populated %d messages (%.0f MB) in %.0f s" % (
            a.messages, total_bytes / 1e6, time.monotonic() - t0), flush=True)
        subprocess.run(["sync"])

        for b in (src, tgt):
            log = open(os.path.join(b["dir"], "stderr"), "wb")
            p = subprocess.Popen([RINGMAILD, "-c", b["conf"]], stdout=log, stderr=log,
                                 start_new_session=True)
            procs.append(p)
            for _ in range(600):
                try:
                    socket.create_connection(("127.0.0.1", b["imap"]), 1).close()
                    break
                except OSError:
                    if p.poll() is not None:
                        with open(os.path.join(b["dir"], "stderr")) as f:
                            raise SystemExit("ringmaild did not start:\n" + f.read()[-2000:])
                    time.sleep(0.05)

        def route():
            with open(passwd) as f:
                return int(re.search(r"port=(\d+)", f.read()).group(1))

        # an IDLE session on the source
        idle = socket.create_connection(("127.0.0.1", src["imap"]))
        idle.recv(4096)
        imap_cmd(idle, "a", "LOGIN %s %s" % (USER, PASSWORD))
        imap_cmd(idle, "b", "SELECT INBOX")
        idle.sendall(b"c IDLE\r\n")

        stop = threading.Event()
        waits, delivered = [], [0]

        def load():
            i = 0
            while not stop.is_set():
                i += 1
                msg = ("From: load@example.com\r\nSubject: load %d\r\nMessage-ID: "
                       "<load-%d@bench>\r\n\r\nbody\r\n" % (i, i))
                first_defer = None
                while not stop.is_set():
                    port = src["lmtp"] if route() == src["imap"] else tgt["lmtp"]
                    try:
                        with smtplib.LMTP("127.0.0.1", port, timeout=30) as l:
                            l.sendmail("load@example.com", [USER + "@example.com"], msg)
                        delivered[0] += 1
                        if first_defer is not None:
                            waits.append(time.monotonic() - first_defer)
                        break
                    except (smtplib.SMTPException, OSError):
                        if first_defer is None:
                            first_defer = time.monotonic()
                        time.sleep(0.05)
                time.sleep(1.0 / a.load)

        th = None
        if a.load > 0:
            th = threading.Thread(target=load, daemon=True)
            th.start()
            time.sleep(2)
        t1 = time.monotonic()
        p = subprocess.run([ADMIN, "-c", src["conf"], "-o", "move_secret=" + SECRET, "user",
                            "move", USER, "--to", "127.0.0.1:%d" % tgt["move"]],
                           capture_output=True, text=True)
        wall = time.monotonic() - t1
        time.sleep(2)
        stop.set()
        if th:
            th.join(60)
        out = p.stdout + p.stderr
        print(out)
        if p.returncode != 0:
            raise SystemExit("the move failed")
        idle.settimeout(5)
        try:
            bye = idle.recv(4096).decode(errors="replace").strip()
        except OSError:
            bye = "(nothing)"
        # the first SELECT on the target
        c = socket.create_connection(("127.0.0.1", tgt["imap"]))
        c.recv(4096)
        imap_cmd(c, "a", "LOGIN %s %s" % (USER, PASSWORD))
        ts = time.monotonic()
        sel = imap_cmd(c, "b", "SELECT INBOX").decode(errors="replace")
        select_ms = (time.monotonic() - ts) * 1000
        exists = re.search(r"\* (\d+) EXISTS", sel).group(1)
        c.close()
        rounds = re.findall(r"round (\d+): (\d+) files, (\d+) bytes in ([\d.]+) s", out)
        final = re.search(r"final round: (\d+) files, (\d+) bytes in ([\d.]+) s", out)
        summ = re.search(r": (\d+) bytes, ([\d.]+) s in all, writes refused for ([\d.]+) s", out)
        row = {
            "messages": a.messages, "mb": total_bytes / 1e6, "io": a.io, "load": a.load,
            "rounds": len(rounds) + 1,
            "round1": "%s MB in %s s" % (int(rounds[0][2]) // 1000000, rounds[0][3]),
            "final": "%d KB in %s s" % (int(final.group(2)) // 1000, final.group(3)),
            "total": float(summ.group(2)), "downtime": float(summ.group(3)),
            "deliveries": delivered[0],
            "maxwait": max(waits) if waits else 0.0, "deferred": len(waits),
            "select_ms": select_ms, "exists": exists, "bye": bye[:60], "wall": wall,
        }
        print(row)
        new = not os.path.exists(a.out)
        with open(a.out, "a") as f:
            if new:
                f.write("# Moving a user: `ringmail-admin user move` (bench/move.py)\n\n"
                        "| messages | MB | io | load/s | rounds | round 1 | final round "
                        "(frozen) | total s | downtime s | deliveries | deferred (longest "
                        "wait s) | first SELECT on target ms |\n"
                        "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
            f.write("| %(messages)d | %(mb).0f | %(io)s | %(load).0f | %(rounds)d | %(round1)s "
                    "| %(final)s | %(total).2f | %(downtime).2f | %(deliveries)d | "
                    "%(deferred)d (%(maxwait).2f) | %(select_ms).0f |\n" % row)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)


if __name__ == "__main__":
    main()
