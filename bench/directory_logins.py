#!/usr/bin/env python3
"""Logins/s with the user directory's cache cold and warm, per backend.

    python3 bench/directory_logins.py [--users N] [--clients N] [--duration S]
                                      [--backends passwd-file,ldap-search,ldap-bind,pgsql]

Starts a private slapd and a private PostgreSQL cluster
(tests/integration/directory_servers.py: temp dirs, loopback) holding the
same users (user1..userN, one password, {SSHA} everywhere, so the hash
costs the same and what differs is the directory), then for each backend
runs ringmaild twice (tests/integration/ringmail_server.py) and
ringmail-bench's login workload (connect, LOGIN, LOGOUT, again) against it:
cold = auth_cache_ttl 0 (every LOGIN asks the directory, on the auth pool),
warm = auth_cache_ttl 600 (after the first LOGIN of each user, the worker
answers from the auth cache).  Prints one Markdown table.

Needs build/ringmaild, build/ringmail-admin, build/ringmail-bench (or
RINGMAILD, RINGMAIL_ADMIN, RINGMAIL_BENCH) and, run as root, runuser for
PostgreSQL.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("RINGMAILD", os.path.join(ROOT, "build", "ringmaild"))
os.environ.setdefault("RINGMAIL_ADMIN", os.path.join(ROOT, "build", "ringmail-admin"))
BENCH = os.environ.get("RINGMAIL_BENCH", os.path.join(ROOT, "build", "ringmail-bench"))

import ringmail_server as rs  # noqa: E402
import directory_servers as ds  # noqa: E402

PASSWORD = "bench-pw"


def options(kind, ldap, pg):
    if kind == "passwd-file":
        return {}
    if kind.startswith("ldap"):
        return {"userdb": "ldap", "ldap_uri": ldap.uri, "ldap_base": "ou=people," + ldap.base,
                "ldap_bind_dn": ldap.bind_dn, "ldap_bind_password": ldap.bind_pw,
                "ldap_filter": "(&(objectClass=inetOrgPerson)(uid=%u))",
                "ldap_auth": kind.split("-")[1],
                "ldap_attrs": "uid=user,mailHost=host,mailPort=port,mailQuota=quota_rule"}
    return {"userdb": "pgsql", "pgsql_connect": pg.conninfo,
            "pgsql_password_query":
                'SELECT password, name AS "user", host, port, quota_rule FROM users '
                "WHERE name = $1",
            "pgsql_user_query":
                'SELECT name AS "user", host, port, quota_rule FROM users WHERE name = $1'}


def run(kind, ttl, args, ldap, pg, secret):
    opts = dict(options(kind, ldap, pg), auth_cache_ttl=str(ttl),
                auth_pool_threads=str(args.pool), log_level="warn")
    srv = rs.Server("auto", {}, opts, name="dirbench")
    # passwd-file users with the same {SSHA} secret as the directories'
    with open(srv.passwd, "w") as f:
        for i in range(1, args.users + 1):
            f.write("user%d:%s\n" % (i, secret))
    srv.start()
    try:
        p = subprocess.run([BENCH, "--host", "127.0.0.1", "--port", str(srv.port),
                            "--users", "user%d", "--nusers", str(args.users), "--password",
                            PASSWORD, "--clients", str(args.clients), "--duration",
                            str(args.duration), "--workload", "login", "--json"],
                           capture_output=True, text=True, timeout=args.duration + 120)
        if p.returncode not in (0, 1):
            raise RuntimeError("ringmail-bench: %s" % p.stderr)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        login = r["commands"].get("LOGIN", {})
        return login.get("ops_per_sec", 0.0), login.get("p50_ms", 0.0), \
            login.get("p99_ms", 0.0), login.get("errors", 0) + r.get("errors", 0)
    finally:
        srv.stop()
        srv.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--pool", type=int, default=2, help="auth_pool_threads")
    ap.add_argument("--backends", default="passwd-file,ldap-search,ldap-bind,pgsql")
    args = ap.parse_args()
    secret = ds.ssha(PASSWORD)
    users = {"user%d" % i: dict(password=secret) for i in range(1, args.users + 1)}
    kinds = args.backends.split(",")
    ldap = pg = None
    try:
        if any(k.startswith("ldap") for k in kinds):
            ldap = ds.Slapd(users, rs.scratch_base()).start()
        if "pgsql" in kinds:
            pg = ds.Postgres(users).start()
        rows = []
        for kind in kinds:
            for label, ttl in (("cold", 0), ("warm", 600)):
                ops, p50, p99, err = run(kind, ttl, args, ldap, pg, secret)
                rows.append((kind, label, ops, p50, p99, err))
                print("%-12s %-5s %8.0f logins/s  p50 %.2f ms  p99 %.2f ms  errors %d"
                      % (kind, label, ops, p50, p99, err), file=sys.stderr)
    finally:
        if ldap:
            ldap.cleanup()
        if pg:
            pg.cleanup()
    print("| userdb | cache | logins/s | LOGIN p50 ms | LOGIN p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for kind, label, ops, p50, p99, err in rows:
        print("| %s | %s | %.0f | %.2f | %.2f | %d |" % (kind, label, ops, p50, p99, err))
    print("\n%d users, %d clients (connect, LOGIN, LOGOUT), %d s each, auth_pool_threads %d, "
          "{SSHA} everywhere; cold: auth_cache_ttl 0, warm: 600." % (
              args.users, args.clients, args.duration, args.pool))


if __name__ == "__main__":
    main()
