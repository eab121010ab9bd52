#!/usr/bin/env python3
"""RSS of ringmaild per idle authenticated connection.

    bench/server_rss.py BUILD_DIR [BACKEND [CONNECTIONS]]

Starts BUILD_DIR/ringmaild on a free loopback port with a throw-away store
and one user, opens CONNECTIONS connections (default 10000), logs each in,
and prints the server's RSS before and after, divided by the connections.
Needs an open-files limit above CONNECTIONS (the hard limit is used)."""
import os, resource, socket, subprocess, sys, tempfile, time

build, backend = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "io_uring")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
d = tempfile.mkdtemp(prefix="rm-rss.")
with open(d + "/passwd", "w") as f:
    f.write("u:{PLAIN}p\n")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = subprocess.Popen([build + "/ringmaild", "-o", "listen=127.0.0.1:%d" % port,
                        "-o", "mail_root=" + d + "/mail", "-o", "passwd_file=" + d + "/passwd",
                        "-o", "io_backend=" + backend, "-o", "log_level=error"],
                       stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close(); break
        except OSError:
            time.sleep(0.05)

    def rss():
        for line in open("/proc/%d/status" % srv.pid):
            if line.startswith("VmRSS"):
                return int(line.split()[1])

    c = socket.create_connection(("127.0.0.1", port)); c.recv(4096)
    c.sendall(b"a LOGIN u p\r\n"); c.recv(4096); c.close()
    time.sleep(0.3)
    base = rss()
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for c in socks:
        c.sendall(b"a LOGIN u p\r\n")
    for c in socks:
        buf = b""
        while b"a OK" not in buf:
            buf += c.recv(65536)
    time.sleep(1)
    after = rss()
    print("%s: %d authenticated idle connections: RSS %d KiB -> %d KiB, %.2f KiB each"
          % (backend, n, base, after, (after - base) / n))
    for c in socks:
        c.close()
finally:
    srv.terminate(); srv.wait()
    subprocess.run(["rm", "-rf", d])
