#!/usr/bin/env python3
"""System calls per simple command, with strace -c on ringmaild.

    bench/server_syscalls.py BUILD_DIR [BACKEND [COMMANDS]]

One worker, one logged-in connection, COMMANDS (default 5000) NOOP round
trips while strace counts the server's system calls."""
import os, socket, subprocess, sys, tempfile, time

build, backend = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "io_uring")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
d = tempfile.mkdtemp(prefix="rm-sys.")
with open(d + "/passwd", "w") as f:
    f.write("u:{PLAIN}p\n")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = subprocess.Popen([build + "/ringmaild", "-o", "listen=127.0.0.1:%d" % port,
                        "-o", "mail_root=" + d + "/mail", "-o", "passwd_file=" + d + "/passwd",
                        "-o", "io_backend=" + backend, "-o", "workers=1", "-o", "log_level=error"],
                       stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            c = socket.create_connection(("127.0.0.1", port)); break
        except OSError:
            time.sleep(0.05)
    f = c.makefile("rb"); f.readline()
    c.sendall(b"a LOGIN u p\r\n"); f.readline()
    st = subprocess.Popen(["strace", "-c", "-f", "-o", d + "/strace.txt", "-p", str(srv.pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(1)
    for _ in range(n):
        c.sendall(b"n NOOP\r\n"); f.readline()
    time.sleep(0.5)
    st.terminate(); st.wait()
    print("%s: %d NOOP round trips" % (backend, n))
    for line in open(d + "/strace.txt").read().splitlines()[2:]:
        p = line.split()
        if len(p) >= 5 and p[3].isdigit():
            print("  %-16s %6.2f per command" % (p[-1], int(p[3]) / n))
finally:
    srv.terminate(); srv.wait()
    subprocess.run(["rm", "-rf", d])
