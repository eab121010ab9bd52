#!/usr/bin/env python3
"""QUOTA (RFC 9208) over IMAP: the capability, GETQUOTA, GETQUOTAROOT and
SETQUOTA as the RFC's examples show them, STATUS DELETED and
DELETED-STORAGE, APPEND/COPY refused with NO [OVERQUOTA] and nothing
written, MOVE never refused, EXPUNGE freeing at once, usage summed over
mailboxes and kept across processes (ringmail-admin), limits from the
passwd-file line (Dovecot's userdb_quota_rule) and from the defaults."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402


def msg(i, pad=0):
    body = "Hello %d.\r\n" % i + "x" * pad + ("\r\n" if pad else "")
    return ("From: a@example.org\r\nSubject: q %d\r\nMessage-ID: <q%d@example.org>\r\n\r\n%s"
            % (i, i, body)).encode()


def set_rules(server, user, extra):
    """Give user's passwd-file line these extra fields (the file is re-read
    when it changes)."""
    with open(server.passwd) as f:
        lines = f.read().splitlines()
    out = []
    for ln in lines:
        name, rest = ln.split(":", 1)
        if name == user:
            secret = rest.split(":", 1)[0]
            ln = "%s:%s::::::%s" % (name, secret, extra) if extra else "%s:%s" % (name, secret)
        out.append(ln)
    tmp = server.passwd + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, server.passwd)


def quota_of(res):
    """{resource: (usage, limit)} of the one QUOTA response for root ""."""
    q = res.of("QUOTA")
    assert len(q) == 1, res.describe()
    m = re.match(r'\* QUOTA "" \((.*)\)$', q[0].line)
    assert m, q[0]
    f = m.group(1).split()
    return {f[i].upper(): (int(f[i + 1]), int(f[i + 2])) for i in range(0, len(f), 3)}


class Quota(rs.ServerTestCase):

    def limited(self, extra):
        c = self.login()
        set_rules(self.server, self.user, extra)
        return c

    def status(self, c, box, items):
        r = self.ok(c, "STATUS %s (%s)" % (box, items))
        st = r.of("STATUS")[0].items()[-1]
        return {str(st[i]).upper(): int(st[i + 1]) for i in range(0, len(st), 2)}

    def test_capability_after_login(self):
        c = self.connect()
        caps = self.ok(c, "CAPABILITY").of("CAPABILITY")[0].line
        self.assertNotIn(" QUOTA", caps)    # RFC 9208 8: nothing to anonymous users
        c = self.login()
        caps = self.ok(c, "CAPABILITY").of("CAPABILITY")[0].line.split()
        for cap in ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"):
            self.assertIn(cap, caps)
        self.assertNotIn("QUOTASET", caps)

    def test_no_limit_is_an_empty_list(self):
        c = self.login()
        self.append_msgs(c, "INBOX", [msg(1)])
        r = self.ok(c, "GETQUOTAROOT INBOX")
        # the mailbox is a string, quoted or an atom (RFC 9208 4.2.2 example)
        self.assertIn([x.line for x in r.of("QUOTAROOT")],
                      (['* QUOTAROOT INBOX ""'], ['* QUOTAROOT "INBOX" ""']))
        self.assertEqual(quota_of(r), {})
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""')), {})

    def test_getquota_and_getquotaroot(self):
        c = self.limited("userdb_quota_rule=*:storage=1M userdb_quota_rule2=*:messages=1000")
        self.append_msgs(c, "INBOX", [msg(i, 3000) for i in range(3)])
        size = sum(len(msg(i, 3000)) for i in range(3))
        want = {"STORAGE": ((size + 1023) // 1024, 1024), "MESSAGE": (3, 1000)}
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""')), want)
        # RFC 9208 4.1.2: any name, existing or not, has the user's root
        for box in ("INBOX", "nonexistent", '"a b"'):
            r = self.ok(c, "GETQUOTAROOT %s" % box)
            self.assertEqual(len(r.of("QUOTAROOT")), 1)
            self.assertTrue(r.of("QUOTAROOT")[0].line.endswith(' ""'))
            self.assertEqual(quota_of(r), want)
        self.expect(c.cmd('GETQUOTA "#user/other"'), "NO")
        self.expect(c.cmd("GETQUOTA"), "BAD")
        self.expect(c.cmd("GETQUOTAROOT"), "BAD")

    def test_setquota_is_refused(self):
        c = self.limited("userdb_quota_rule=*:messages=5")
        self.expect(c.cmd('SETQUOTA "" (STORAGE 512)'), "NO", "NOPERM")
        self.expect(c.cmd('SETQUOTA "" ()'), "NO", "NOPERM")
        self.expect(c.cmd('SETQUOTA "" (STORAGE)'), "BAD")
        self.expect(c.cmd('SETQUOTA ""'), "BAD")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (0, 5))

    def test_append_over_message_limit(self):
        c = self.limited("userdb_quota_rule=*:messages=3")
        self.append_msgs(c, "INBOX", [msg(i) for i in range(3)])   # reaching it is allowed
        r = self.expect(c.append("INBOX", msg(9)), "NO", "OVERQUOTA")
        self.assertEqual(self.status(c, "INBOX", "MESSAGES")["MESSAGES"], 3)
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (3, 3))
        del r

    def test_multiappend_all_or_nothing(self):
        c = self.limited("quota_rule=*:messages=4")
        self.append_msgs(c, "INBOX", [msg(1), msg(2)])
        m = [msg(10 + i) for i in range(3)]
        r = c.cmd_lit("APPEND INBOX ", m[0], " ", m[1], " ", m[2], "")
        self.expect(r, "NO", "OVERQUOTA")
        self.assertEqual(self.status(c, "INBOX", "MESSAGES")["MESSAGES"], 2)
        r = c.cmd_lit("APPEND INBOX ", m[0], " ", m[1], "")
        self.expect(r, "OK")
        self.assertEqual(self.status(c, "INBOX", "MESSAGES")["MESSAGES"], 4)

    def test_storage_limit_in_bytes(self):
        one = len(msg(0, 1000))
        c = self.limited("userdb_quota_rule=*:bytes=%d" % (3 * one))
        self.append_msgs(c, "INBOX", [msg(i, 1000) for i in range(3)])
        self.expect(c.append("INBOX", msg(3, 1000)), "NO", "OVERQUOTA")
        self.expect(c.append("INBOX", b"x"), "NO", "OVERQUOTA")
        self.assertEqual(self.status(c, "INBOX", "MESSAGES SIZE"),
                         {"MESSAGES": 3, "SIZE": 3 * one})

    def test_usage_spans_mailboxes_and_expunge_frees(self):
        c = self.limited("userdb_quota_rule=*:messages=4")
        self.ok(c, "CREATE a")
        self.ok(c, "CREATE b/c")
        self.append_msgs(c, "a", [msg(1), msg(2)])
        self.append_msgs(c, "b/c", [msg(3)])
        self.append_msgs(c, "INBOX", [msg(4)])
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (4, 4))
        self.expect(c.append("b/c", msg(5)), "NO", "OVERQUOTA")
        self.ok(c, "SELECT a")
        self.ok(c, "STORE 1 +FLAGS (\\Deleted)")
        st = self.status(c, "a", "MESSAGES DELETED DELETED-STORAGE")
        self.assertEqual(st, {"MESSAGES": 2, "DELETED": 1,
                              "DELETED-STORAGE": (len(msg(1)) + 1023) // 1024})
        self.ok(c, "EXPUNGE")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (3, 4))
        self.append_msgs(c, "b/c", [msg(5)])
        self.ok(c, "UNSELECT")
        self.ok(c, "DELETE b/c")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (2, 4))

    def test_copy_refused_move_allowed(self):
        c = self.limited("userdb_quota_rule=*:messages=3")
        self.ok(c, "CREATE dst")
        self.append_msgs(c, "INBOX", [msg(1), msg(2)])
        self.ok(c, "SELECT INBOX")
        self.expect(c.cmd("COPY 1:2 dst"), "NO", "OVERQUOTA")
        self.assertEqual(self.status(c, "dst", "MESSAGES")["MESSAGES"], 0)
        self.ok(c, "COPY 1 dst")       # 3 of 3
        self.expect(c.cmd("COPY 2 dst"), "NO", "OVERQUOTA")
        # at the limit, a MOVE changes no usage and is not refused
        self.ok(c, "MOVE 1:* dst")
        self.assertEqual(self.status(c, "dst", "MESSAGES")["MESSAGES"], 3)
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (3, 3))
        # a COPY of messages that are gone adds nothing: not refused
        self.ok(c, "UID COPY 1000:2000 dst")

    def test_status_deleted_items(self):
        c = self.login()
        self.append_msgs(c, "INBOX", [(msg(1, 3000), ["\\Deleted"]), msg(2), (msg(3), ["\\Deleted"])])
        st = self.status(c, "INBOX", "DELETED DELETED-STORAGE MESSAGES")
        self.assertEqual(st["DELETED"], 2)
        self.assertEqual(st["DELETED-STORAGE"], (len(msg(1, 3000)) + len(msg(3)) + 1023) // 1024)
        self.assertEqual(self.status(c, "INBOX", "DELETED-STORAGE"), {"DELETED-STORAGE": st["DELETED-STORAGE"]})

    def test_other_process_writes_count_at_once(self):
        c = self.limited("userdb_quota_rule=*:messages=5")
        self.append_msgs(c, "INBOX", [msg(1)])
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (1, 5))
        # ringmail-admin, another process, imports into the user's mailboxes
        self.server.import_mbox(self.user, "INBOX", [msg(i) for i in range(10, 14)])
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (5, 5))
        self.expect(c.append("INBOX", msg(20)), "NO", "OVERQUOTA")
        out = self.server.admin("quota", self.user).stdout.decode().splitlines()
        self.assertEqual(out[0].split(), ["user", self.user])
        self.assertTrue(out[1].startswith("storage ") and out[1].endswith("no limit"), out)
        self.assertEqual(out[2], "messages  5 of 5, 100.0% (full)")
        self.server.admin("expunge", self.user, "INBOX", "1:2")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (3, 5))
        self.append_msgs(c, "INBOX", [msg(21)])

    def test_admin_quota(self):
        c = self.limited("userdb_quota_rule=*:storage=1M:messages=10")
        self.append_msgs(c, "INBOX", [msg(1, 2000)])
        size = len(msg(1, 2000))
        out = self.server.admin("quota", self.user).stdout.decode().splitlines()
        self.assertEqual(out, ["user      %s" % self.user,
                               "storage   %.1f KiB (%d bytes) of 1.0 MiB (1048576 bytes), %.1f%%"
                               % (size / 1024, size, 100.0 * size / 1048576),
                               "messages  1 of 10, 10.0%"])
        # case folded as LMTP and LOGIN find users
        self.assertEqual(self.server.admin("quota", self.user.upper()).stdout.decode()
                         .splitlines()[0], "user      %s" % self.user)
        p = self.server.admin("quota", "nobody-here", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"does not exist", p.stderr)
        # a user of the passwd-file with no mail yet
        u, pw = "user%d" % type(self).next_user, None
        type(self).next_user += 1
        out = self.server.admin("quota", u).stdout.decode().splitlines()
        self.assertEqual(out[1:], ["storage   0 bytes, no limit", "messages  0, no limit"])
        del pw

    def test_two_writers_overshoot_at_most_one_command(self):
        """Each writer's check sees every write finished before it, so two
        sessions appending at once pass the limit by at most one APPEND."""
        limit = 30
        c1 = self.limited("userdb_quota_rule=*:messages=%d" % limit)
        c2 = self.login(self.user, self.password)
        import threading
        refused = []

        def run(c, base):
            for i in range(limit * 2):
                r = c.append("INBOX", msg(base + i))
                if r.status != "OK":
                    refused.append(r.code_name())
                    return

        ts = [threading.Thread(target=run, args=(c, k * 1000)) for k, c in ((0, c1), (1, c2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(refused, ["OVERQUOTA", "OVERQUOTA"])
        n = self.status(c1, "INBOX", "MESSAGES")["MESSAGES"]
        self.assertIn(n, (limit, limit + 1))

    def test_limit_change_applies_at_once(self):
        c = self.limited("userdb_quota_rule=*:messages=1")
        self.append_msgs(c, "INBOX", [msg(1)])
        self.expect(c.append("INBOX", msg(2)), "NO", "OVERQUOTA")
        set_rules(self.server, self.user, "userdb_quota_rule=*:messages=2")
        self.append_msgs(c, "INBOX", [msg(2)])
        set_rules(self.server, self.user, "")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""')), {})


class QuotaDefaults(rs.ServerTestCase):
    server_options = {"quota_messages": "2", "quota_storage": "1M"}

    def test_defaults_and_line_rules_replace_them(self):
        c = self.login()
        self.append_msgs(c, "INBOX", [msg(1), msg(2)])
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""')),
                         {"STORAGE": ((len(msg(1)) + len(msg(2)) + 1023) // 1024, 1024),
                          "MESSAGE": (2, 2)})
        self.expect(c.append("INBOX", msg(3)), "NO", "OVERQUOTA")
        # a whole-user rule on the line replaces the defaults as a whole
        set_rules(self.server, self.user, "userdb_quota_rule=*:storage=2M")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""')),
                         {"STORAGE": ((len(msg(1)) + len(msg(2)) + 1023) // 1024, 2048)})
        self.append_msgs(c, "INBOX", [msg(3)])
        # a rule for one mailbox only leaves the defaults in force
        set_rules(self.server, self.user, "userdb_quota_rule=Trash:storage=+100M")
        self.assertEqual(quota_of(self.ok(c, 'GETQUOTA ""'))["MESSAGE"], (3, 2))


rs.parametrize(globals(), Quota, QuotaDefaults)

if __name__ == "__main__":
    rs.main()
