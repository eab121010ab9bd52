#!/usr/bin/env python3
"""What nginx's mail proxy in front of ringmaild costs.

    bench/proxy_cost.py BUILD_DIR [BACKEND [SECONDS [CLIENTS [PROXY_BUFFER]]]]

Starts the setup of tests/integration/test_nginx_proxy.py with one backend
(tests/integration/nginx_proxy.py: a private nginx with libnginx-mod-mail,
auth_http served by the backend, PROXY protocol on), users bench1..bench20
with {ARGON2ID} passwords (ringmail-admin user add's default), and runs
BUILD_DIR/ringmail-bench (SECONDS each, default 5; CLIENTS, default 8)
against the backend directly and through nginx:

1. `login` (connect, LOGIN, LOGOUT again and again) with the auth cache
   warm (auth_cache_ttl = 60: after each user's first login no hash) and
   cold (auth_cache_ttl = 0: every login hashes; through nginx twice, once
   for auth_http and once for the proxied LOGIN);
2. `mixed` (the default command mix in logged-in sessions): the cost per
   command once the session runs;
3. `login` cold again with proxy_secret set (nginx logs in to the backend
   with it: one hash per login through nginx).

Prints ops/s and each command's median and p99 latency, direct and
through nginx, with the ratios; PROXY_BUFFER sets nginx's proxy_buffer
(default: nginx's, one memory page).  Everything runs on this machine (nginx,
ringmaild and the load generator share its cores)."""
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))

build = os.path.abspath(sys.argv[1])
backend = sys.argv[2] if len(sys.argv) > 2 else "io_uring"
seconds = sys.argv[3] if len(sys.argv) > 3 else "5"
clients = sys.argv[4] if len(sys.argv) > 4 else "8"
# nginx's proxy_buffer (its default: one memory page)
proxy_buffer = sys.argv[5] if len(sys.argv) > 5 else None
os.environ.setdefault("RINGMAILD", os.path.join(build, "ringmaild"))
os.environ.setdefault("RINGMAIL_ADMIN", os.path.join(build, "ringmail-admin"))
import nginx_proxy as npx  # noqa: E402

NUSERS = 20
PASSWORD = "bench-secret"


def argon2_secrets():
    """{ARGON2ID} secrets as ringmail-admin user add writes them."""
    import tempfile
    d = tempfile.mkdtemp(prefix="proxy_cost.")
    pw = os.path.join(d, "passwd")
    out = {}
    for i in range(1, NUSERS + 1):
        subprocess.run([os.environ["RINGMAIL_ADMIN"], "-o", "passwd_file=" + pw,
                        "-o", "mail_root=" + d, "user", "add", "bench%d" % i],
                       input=(PASSWORD + "\n").encode(), check=True, capture_output=True)
    with open(pw) as f:
        for line in f:
            name, secret = line.rstrip("\n").split(":")[:2]
            out[name] = secret
    return out


def bench(port, workload, extra=()):
    p = subprocess.run([os.path.join(build, "ringmail-bench"), "--host", "127.0.0.1",
                        "--port", str(port), "--users", "bench%d", "--nusers", str(NUSERS),
                        "--password", PASSWORD, "--clients", clients, "--duration", seconds,
                        "--workload", workload, "--json"] + list(extra),
                       capture_output=True, timeout=600)
    if p.returncode != 0:
        sys.exit("ringmail-bench failed:\n" + (p.stdout + p.stderr).decode(errors="replace"))
    return json.loads(p.stdout)


def show(title, direct, proxied):
    print("\n## %s (%s clients, %s s, %s backend, nginx proxy_buffer %s)"
          % (title, clients, seconds, backend, proxy_buffer or "default"))
    print("| | direct | through nginx | ratio |")
    print("| --- | ---: | ---: | ---: |")
    d, n = direct["total_ops_per_sec"], proxied["total_ops_per_sec"]
    print("| ops/s | %.0f | %.0f | %.2f |" % (d, n, n / d if d else 0))
    for cmd in sorted(direct["commands"]):
        a, b = direct["commands"][cmd], proxied["commands"].get(cmd)
        if not b or not a["ops"]:
            continue
        for q in ("p50_ms", "p99_ms"):
            print("| %s %s (ms) | %.3f | %.3f | %.2f |" % (
                cmd, q[:-3], a[q], b[q], b[q] / a[q] if a[q] else 0))


def run(ttl, workloads, extra=None):
    secrets = argon2_secrets()
    users = {name: (secret, 0) for name, secret in secrets.items()}
    opts = {"auth_cache_ttl": str(ttl), "auth_failure_delay": "0"}
    opts.update(extra or {})
    c = npx.Cluster(backend, users, n=1, options=opts, proxy_buffer=proxy_buffer)
    c.start()
    try:
        res = {}
        for w, extra in workloads:
            res[w] = (bench(c.servers[0].port, w, extra), bench(c.nginx.port, w, extra))
        return res
    finally:
        c.stop()
        c.cleanup()


warm = run(60, [("login", ()), ("mixed", ("--populate", "200"))])
show("login, auth cache warm", *warm["login"])
show("mixed commands in logged-in sessions", *warm["mixed"])
cold = run(0, [("login", ())])
show("login, auth cache cold (every login hashes Argon2id)", *cold["login"])
cold = run(0, [("login", ())], {"proxy_secret": "bench-proxy-secret-0123"})
show("login, auth cache cold, proxy_secret (one hash per login through nginx)",
     *cold["login"])
