#!/usr/bin/env python3
"""Users in a directory server (userdb = ldap | pgsql) against a private
slapd and a private PostgreSQL cluster (directory_servers.py): LOGIN with
the right password, a wrong one, an unknown user, for both backends and
both ldap_auth modes; quota from the directory (GETQUOTAROOT); LMTP
delivery to a directory user; SCRAM not offered; LDAP filter injection
finds nobody.  Outages: a cached user still logs in while the directory
is stopped, an uncached one gets NO [UNAVAILABLE] and the log says why;
the directory killed mid-way and back; a hung directory (SIGSTOP) is
answered within directory_timeout while the worker keeps serving others;
LMTP answers 451 4.3.0 for an uncached recipient while the directory is
down and delivers to a cached one."""

import os
import re
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
import directory_servers as ds  # noqa: E402
from test_lmtp import Lmtp, msg  # noqa: E402

# libldap and liblber have no frame pointers: ASan's fast unwinder stops at
# their first frame, and the sanitized server's suppression of libldap's
# own leak (core/server/main_sanitize.c) could not tell its allocations
# from ours.  The slow unwinder sees whole stacks; it makes every
# allocation dearer, so only this test's servers use it.
os.environ["ASAN_OPTIONS"] = ":".join(
    o for o in (os.environ.get("ASAN_OPTIONS", ""), "fast_unwind_on_malloc=0") if o)


def users():
    """The directory's users: name -> password in the clear, and what the
    directory stores."""
    return {
        "alice": ("alice-pw", dict(password=ds.ssha("alice-pw"), host="10.1.2.3", port=10143,
                                   quota="*:storage=1M")),
        "bob": ("bob-pw", dict(password=ds.ssha("bob-pw"), quota="*:messages=5")),
        "carol": ("carol-pw", dict(password=ds.ssha("carol-pw"))),
        "dave": ("dave-pw", dict(password=ds.ssha("dave-pw"))),
        "erin": ("erin-pw", dict(password=ds.ssha("erin-pw"))),
        "frank": ("frank-pw", dict(password=ds.ssha("frank-pw"))),
        "grace": ("grace-pw", dict(password=ds.ssha("grace-pw"))),
        "heidi": ("heidi-pw", dict(password=ds.ssha("heidi-pw"))),
        "ivan": ("ivan-pw", dict(password=ds.ssha("ivan-pw"))),
        "judy": ("judy-pw", dict(password=ds.ssha("judy-pw"))),
    }


PASSWORDS = {k: v[0] for k, v in users().items()}


def hung_login(case, busy):
    """With the directory stopped: a LOGIN gets NO [UNAVAILABLE] within a
    few directory_timeouts, and a NOOP on the logged-in session `busy` is
    answered meanwhile, not after it."""
    c = case.connect()
    t0 = time.monotonic()
    tag = c.tag()
    c.send("%s LOGIN grace grace-pw\r\n" % tag)
    # meanwhile the worker answers another session at once
    time.sleep(0.2)
    t1 = time.monotonic()
    case.ok(busy, "NOOP")
    noop = time.monotonic() - t1
    r = rs.Result(tag + " LOGIN", *c.read_until_tag(tag, timeout=10))
    took = time.monotonic() - t0
    # the NOOP came back while the LOGIN still waited for the directory
    # (1000 ms at least), not after it
    case.assertLess(noop, 0.8, "NOOP took %.2f s" % noop)
    case.assertLess(noop + 0.2, took)
    case.expect(r, "NO", "UNAVAILABLE")
    # directory_timeout = 1000 ms: a connect, a bind or a search may each
    # take it, never more than a few
    case.assertLess(took, 4.5, "answered after %.1f s" % took)


class DirectoryBase(rs.ServerTestCase):
    """A ringmaild whose users come from a private directory server; the
    passwd-file holds other users, who must not log in."""
    users_per_class = 12
    directory = None        # "ldap" or "pgsql"
    extra_options = {}

    @classmethod
    def make_directory(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        why = ds.slapd_missing() if cls.directory == "ldap" else ds.postgres_missing()
        if why:
            raise unittest.SkipTest(why)
        cls.sockdir = rs.tempfile.mkdtemp(prefix="lmtp-", dir="/tmp")
        cls.sock = os.path.join(cls.sockdir, "lmtp")
        cls.dir = cls.make_directory()
        try:
            cls.dir.start()
        except Exception:
            cls.dir.cleanup()
            raise
        cls.server_options = dict(cls.dir_options(), listen_lmtp=cls.sock, **cls.extra_options)
        try:
            super().setUpClass()
        except Exception:
            cls.dir.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.dir.cleanup()
            try:
                os.unlink(cls.sock)
            except OSError:
                pass
            os.rmdir(cls.sockdir)

    @classmethod
    def prepare_server(cls, server):
        # ringmail-admin reads the same directory settings
        with open(server.conf, "a") as f:
            for k, v in cls.dir_options().items():
                f.write("%s = %s\n" % (k, v))

    def show(self, user):
        p = self.server.admin("user", "show", user, check=False)
        out = p.stdout.decode()
        m = re.search(r"^backend +(.*)$", out, re.M)
        return p.returncode, (m.group(1) if m else p.stderr.decode())

    def login_as(self, user, password=None):
        c = self.connect()
        if password is None:
            password = PASSWORDS[user]
        return c, c.cmd("LOGIN %s %s" % (rs.quote(user), rs.quote(password)))

    def log_since(self):
        return self.server.stderr_since(self.log_offset)

    def deliver(self, rcpt):
        """One LMTP transaction to rcpt: (RCPT reply, DATA replies)."""
        c = Lmtp(self.sock)
        self.addCleanup(c.close)
        c.cmd("LHLO mx")
        self.assertEqual(c.code("MAIL FROM:<s@example.org>"), 250)
        r = c.cmd("RCPT TO:<%s@example.org>" % rcpt)
        if r[0][0] != 250:
            return r[0], []
        self.assertEqual(c.code("DATA"), 354)
        c.send(msg(1) + b".\r\n")
        return r[0], [c.reply()[0]]


class Basics:
    """What every directory answers."""

    def test_login_ok(self):
        c, r = self.login_as("alice")
        self.expect(r, "OK")
        self.ok(c, "SELECT INBOX")

    def test_wrong_password(self):
        _, r = self.login_as("bob", "not-bob")
        self.expect(r, "NO", "AUTHENTICATIONFAILED")

    def test_unknown_user(self):
        _, r = self.login_as("nobody", "x")
        self.expect(r, "NO", "AUTHENTICATIONFAILED")
        self.assertIn("no such user", self.log_since())

    def test_passwd_file_users_are_not_users(self):
        _, r = self.login_as(self.user, self.password)
        self.expect(r, "NO", "AUTHENTICATIONFAILED")

    def test_quota_from_directory(self):
        c, r = self.login_as("alice")
        self.expect(r, "OK")
        r = self.ok(c, "GETQUOTAROOT INBOX")
        self.assertIn('* QUOTA "" (STORAGE 0 1024)', [u.line for u in r.untagged])
        c, r = self.login_as("carol")
        self.expect(r, "OK")
        r = self.ok(c, "GETQUOTAROOT INBOX")
        self.assertIn('* QUOTA "" ()', [u.line for u in r.untagged])

    def test_lmtp_delivery(self):
        rcpt, data = self.deliver("judy")
        self.assertEqual(rcpt[0], 250, rcpt)
        self.assertEqual([d[0] for d in data], [250])
        rcpt, _ = self.deliver("nosuchuser")
        self.assertEqual(rcpt[0], 550, rcpt)
        c, r = self.login_as("judy")
        self.expect(r, "OK")
        r = self.ok(c, "STATUS INBOX (MESSAGES)")
        self.assertIn("MESSAGES 1", r.untagged[0].line)

    def test_case_of_names(self):
        # the directory matches "IVAN" (LDAP's uid ignores case; the SQL
        # compares lower()): delivery goes to ivan's mailbox, and a login
        # must spell the name as the directory does, as with a passwd-file
        rcpt, data = self.deliver("IVAN")
        self.assertEqual([rcpt[0]] + [d[0] for d in data], [250, 250])
        _, r = self.login_as("IVAN", "ivan-pw")
        self.expect(r, "NO", "AUTHENTICATIONFAILED")
        c, r = self.login_as("ivan")
        self.expect(r, "OK")
        r = self.ok(c, "STATUS INBOX (MESSAGES)")
        self.assertIn("MESSAGES 1", r.untagged[0].line)
        self.assertEqual(self.show("IVAN"), (0, "here"))
        self.assertFalse(os.path.exists(os.path.join(self.server.mail_root, "IVAN")))

    def test_scram_not_offered(self):
        c = self.connect()
        caps = c.capabilities()
        self.assertNotIn("AUTH=SCRAM-SHA-256", caps)
        self.assertIn("AUTH=PLAIN", caps)
        # and AUTHENTICATE PLAIN checks against the directory
        import base64
        ir = base64.b64encode(b"\0heidi\0heidi-pw").decode()
        self.expect(c.cmd("AUTHENTICATE PLAIN " + ir), "OK")


    def test_route_shown_and_set(self):
        self.assertEqual(self.show("alice"), (0, "10.1.2.3:10143"))
        self.assertEqual(self.show("carol"), (0, "here"))
        self.server.admin("user", "route", "carol", "10.9.9.9:1143")
        self.assertEqual(self.show("carol"), (0, "10.9.9.9:1143"))
        self.server.admin("user", "route", "carol", "b2.example")
        self.assertEqual(self.show("carol"), (0, "b2.example"))
        self.server.admin("user", "route", "carol", "here")
        self.assertEqual(self.show("carol"), (0, "here"))
        self.server.admin("user", "route", "carol", "10.9.9.8:2143")
        self.assertEqual(self.show("carol"), (0, "10.9.9.8:2143"))
        self.assertIn("10.9.9.8", self.directory_says("carol"))
        p = self.server.admin("user", "route", "nosuchuser", "h:1", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("does not exist", p.stderr.decode())
        p = self.server.admin("user", "route", "carol", "h:99999", check=False)
        self.assertEqual(p.returncode, 2)
        # quota through the same directory
        p = self.server.admin("quota", "alice")
        self.assertRegex(p.stdout.decode(), r"storage .* of .*\(1048576 bytes\)")
        # the password still works after the record changed
        _, r = self.login_as("carol")
        self.expect(r, "OK")


class LdapBase(DirectoryBase):
    directory = "ldap"
    ldap_auth = "search"

    @classmethod
    def make_directory(cls):
        return ds.Slapd({k: v[1] for k, v in users().items()}, rs.scratch_base())

    def directory_says(self, user):
        return self.dir.search("(uid=%s)" % user, "mailHost", "mailPort")

    @classmethod
    def dir_options(cls):
        d = cls.dir
        return {"userdb": "ldap", "ldap_uri": d.uri, "ldap_base": "ou=people," + d.base,
                "ldap_bind_dn": d.bind_dn, "ldap_bind_password": d.bind_pw,
                "ldap_filter": "(&(objectClass=inetOrgPerson)(uid=%u))",
                "ldap_auth": cls.ldap_auth,
                "ldap_attrs": "uid=user,mailHost=host,mailPort=port,mailQuota=quota_rule"}


class LdapSearch(Basics, LdapBase):
    """ldap_auth = search: userPassword compared by ringmaild."""

    def test_filter_injection_finds_nobody(self):
        # escaped per RFC 4515: "*" and ")(" are literal characters of a
        # uid that does not exist, never a wildcard or a second clause
        for name in ("*", "al*", "alice)(uid=*", "*)(|(uid=*"):
            _, r = self.login_as(name, "alice-pw")
            self.expect(r, "NO", "AUTHENTICATIONFAILED", msg=name)


class LdapBind(Basics, LdapBase):
    """ldap_auth = bind: slapd checks the password."""
    ldap_auth = "bind"

    def test_empty_password_is_no_login(self):
        # RFC 4513 5.1.2: a DN with an empty password is an anonymous
        # bind that a server may accept: never a login
        _, r = self.login_as("carol", "")
        self.expect(r, "NO", "AUTHENTICATIONFAILED")


class LdapBindAnonymous(Basics, LdapBase):
    """ldap_auth = bind with anonymous searches (no ldap_bind_dn): after a
    user's bind, the connection is made anonymous again for the next
    search."""
    ldap_auth = "bind"

    @classmethod
    def dir_options(cls):
        o = super().dir_options()
        o.update(ldap_bind_dn="", ldap_bind_password="")
        return o

    def test_searches_stay_anonymous(self):
        # a user sees only its own entry (the test's ACL): were the next
        # search made as the user bound last, it would find nobody else
        for user in ("carol", "dave", "erin", "frank", "carol"):
            _, r = self.login_as(user)
            self.expect(r, "OK", msg=user)

    def test_route_shown_and_set(self):
        # anonymous may not write (slapd: "Strong(er) authentication
        # required"): refused, and the directory's words are said
        p = self.server.admin("user", "route", "carol", "10.9.9.9:1143", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr.decode(), r"user directory: ldap .*: modify uid=carol,")
        self.assertEqual(self.show("carol"), (0, "here"))


class LdapNoCache(LdapBase):
    """auth_cache_ttl = 0: every login and every lookup asks the
    directory; the workers still have the last answer for quota."""
    extra_options = {"auth_cache_ttl": "0"}

    def test_quota_and_append_without_cache(self):
        c, r = self.login_as("bob")                  # *:messages=5
        self.expect(r, "OK")
        r = self.ok(c, "GETQUOTAROOT INBOX")
        self.assertIn('* QUOTA "" (MESSAGE 0 5)', [u.line for u in r.untagged])
        for i in range(5):
            self.expect(c.append("INBOX", msg(i)), "OK")
        self.expect(c.append("INBOX", msg(9)), "NO", "OVERQUOTA")
        rcpt, _ = self.deliver("bob")              # full: refused at RCPT
        self.assertEqual(rcpt[0], 552, rcpt)
        self.dir.stop()
        try:
            _, r = self.login_as("bob")              # nothing remembered
            self.expect(r, "NO", "UNAVAILABLE")
            # a record past the TTL is not a delivery's answer: 451, retried
            rcpt, _ = self.deliver("bob")
            self.assertEqual((rcpt[0], rcpt[1].split()[0]), (451, "4.3.0"), rcpt)
            # the session's quota still has the last answer (the worker
            # cannot ask): the limit holds
            self.expect(c.append("INBOX", msg(10)), "NO", "OVERQUOTA")
        finally:
            self.dir.start()


class PgBase(DirectoryBase):
    directory = "pgsql"

    @classmethod
    def make_directory(cls):
        u = {k: v[1] for k, v in users().items()}
        u["bob"] = dict(u["bob"], password="{SHA512-CRYPT}" + rs.sha512_crypt("bob-pw"))
        u["carol"] = dict(u["carol"], password="{PLAIN}carol-pw")
        return ds.Postgres(u)

    def directory_says(self, user):
        return self.dir.psql("SELECT host, port FROM users WHERE name = '%s'" % user)

    @classmethod
    def dir_options(cls):
        return {"userdb": "pgsql", "pgsql_connect": cls.dir.conninfo,
                "pgsql_password_query":
                    'SELECT password, name AS "user", host, port, quota_rule FROM users '
                    'WHERE lower(name) = lower($1)',
                "pgsql_user_query": 'SELECT name AS "user", host, port, quota_rule FROM users '
                                    'WHERE lower(name) = lower($1)',
                "pgsql_route_query": "UPDATE users SET host = $2, port = $3 WHERE name = $1"}


class Pgsql(Basics, PgBase):

    def test_each_scheme(self):
        for user in ("alice", "bob", "carol"):     # {SSHA}, {SHA512-CRYPT}, {PLAIN}
            _, r = self.login_as(user)
            self.expect(r, "OK", msg=user)

    def test_name_is_a_parameter(self):
        _, r = self.login_as("x' OR '1'='1", "alice-pw")
        self.expect(r, "NO", "AUTHENTICATIONFAILED")


class Outage:
    """The directory goes away and comes back (each class has its own)."""
    extra_options = {"directory_timeout": "1000", "auth_cache_ttl": "300",
                     "auth_pool_threads": "2"}

    def restart(self):
        self.dir.start()

    def test_1_cached_user_survives_uncached_unavailable(self):
        c, r = self.login_as("alice")
        self.expect(r, "OK")
        rcpt, data = self.deliver("alice")          # the record is cached too
        self.assertEqual([rcpt[0]] + [d[0] for d in data], [250, 250])
        self.dir.stop()
        try:
            c2, r = self.login_as("alice")
            self.expect(r, "OK")                      # verified within the TTL
            self.expect(c2.cmd("GETQUOTAROOT INBOX"), "OK")
            rcpt, data = self.deliver("alice")      # the record: no directory needed
            self.assertEqual([rcpt[0]] + [d[0] for d in data], [250, 250])
            _, r = self.login_as("bob")
            self.expect(r, "NO", "UNAVAILABLE")
            rcpt, _ = self.deliver("carol")
            self.assertEqual((rcpt[0], rcpt[1].split()[0]), (451, "4.3.0"), rcpt)
            log = self.log_since()
            self.assertRegex(log, r"user directory unavailable: (ldap|pgsql)")
            self.assertIn("recipient lookup failed for <carol@example.org>", log)
            # a wrong password for the cached user is not let through
            _, r = self.login_as("alice", "guess")
            self.expect(r, "NO", "UNAVAILABLE")
        finally:
            self.restart()
        _, r = self.login_as("bob")
        self.expect(r, "OK")

    def test_2_killed_mid_way_and_back(self):
        _, r = self.login_as("carol")               # pooled connections exist now
        self.expect(r, "OK")
        self.kill()
        try:
            for user in ("dave", "erin"):
                _, r = self.login_as(user)
                self.expect(r, "NO", "UNAVAILABLE", msg=user)
            self.assertTrue(self.server.alive())
            c = self.connect()
            self.ok(c, "NOOP")
        finally:
            self.restart()
        for user in ("dave", "erin"):
            _, r = self.login_as(user)
            self.expect(r, "OK", msg=user)

    def test_3_hung_directory(self):
        busy, r = self.login_as("frank")
        self.expect(r, "OK")
        self.dir.pause()
        try:
            hung_login(self, busy)
            self.assertTrue(self.server.alive())
        finally:
            self.dir.resume()
        _, r = self.login_as("grace")
        self.expect(r, "OK")

    def test_4_flush_forgets(self):
        _, r = self.login_as("heidi")
        self.expect(r, "OK")
        self.dir.stop()
        try:
            self.server.admin("flush-auth-cache")
            _, r = self.login_as("heidi")
            self.expect(r, "NO", "UNAVAILABLE")
        finally:
            self.restart()
        _, r = self.login_as("heidi")
        self.expect(r, "OK")


    def test_5_restarted_while_idle(self):
        # the pooled connections are dead when the next login comes: it is
        # answered on a new one, not with NO [UNAVAILABLE]
        for user in ("ivan", "judy"):
            _, r = self.login_as(user)
            self.expect(r, "OK", msg=user)
        self.server.admin("flush-auth-cache")
        self.dir.stop()
        self.restart()
        for user in ("ivan", "judy"):
            _, r = self.login_as(user)
            self.expect(r, "OK", msg=user)


class LdapOutage(Outage, LdapBase):

    def kill(self):
        self.dir.kill()


class PgOutage(Outage, PgBase):

    def kill(self):
        self.dir.stop()       # pg_ctl -m immediate: the postmaster quits at once

    def test_3_hung_directory(self):
        # the same, with PostgreSQL's postmaster and its backends stopped
        busy, r = self.login_as("frank")
        self.expect(r, "OK")
        pids = [self.dir.pid] + [int(p) for p in os.listdir("/proc") if p.isdigit() and
                                 _ppid(int(p)) == self.dir.pid]
        for p in pids:
            ds.stop_process(p)      # SIGSTOP, and every thread stopped
        try:
            hung_login(self, busy)
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        _, r = self.login_as("grace")
        self.expect(r, "OK")


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


rs.parametrize(globals(), LdapSearch, LdapBind, LdapBindAnonymous, LdapNoCache, Pgsql, LdapOutage, PgOutage)

if __name__ == "__main__":
    rs.main()
