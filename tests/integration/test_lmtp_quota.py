#!/usr/bin/env python3
"""LMTP and quotas: a recipient already at or over its quota is refused at
RCPT with 552 5.2.2 (452 4.2.2 with quota_full_tempfail = yes); one whose
copy would pass its quota gets that code after the data, and no copy is
left; the other recipients of the same message are not affected."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from test_lmtp import LmtpBase, msg  # noqa: E402
from test_imap_quota import set_rules  # noqa: E402


class LmtpQuota(LmtpBase):
    full = (552, "5.2.2")

    def count(self, user, pw, mailbox="INBOX"):
        c = self.imap(user, pw)
        r = c.cmd("STATUS %s (MESSAGES)" % mailbox)
        c.close()
        return int(r.of("STATUS")[0].items()[-1][1])

    def test_full_at_rcpt(self):
        u, pw = self.user, self.password
        set_rules(self.server, u, "userdb_quota_rule=*:messages=1")
        c = self.lmtp()
        c.cmd("LHLO mx")
        codes, replies = self.deliver(c, "s@example.org", [u + "@example.org"], msg(1))
        self.assertEqual(codes, [250])
        self.assertEqual([r[0] for r in replies], [250])
        # at the limit now: the next recipient check refuses
        self.assertEqual(c.code("MAIL FROM:<s@example.org>"), 250)
        r = c.cmd("RCPT TO:<%s@example.org>" % u)
        self.assertEqual((r[0][0], r[0][1].split()[0]), self.full, r)
        self.assertEqual(c.code("RCPT TO:<carol@example.org>"), 250)
        self.assertEqual(c.code("DATA"), 354)
        c.send(msg(2) + b".\r\n")
        self.assertEqual(c.reply()[0][0], 250)      # carol only: one reply
        self.assertEqual(c.code("NOOP"), 250)
        self.assertEqual(self.count(u, pw), 1)

    def test_copy_over_quota_after_data(self):
        u, pw = self.user, self.password
        u2, pw2 = self.other()
        small = msg(1)
        # room for the small one with its trace fields, not for a big one
        set_rules(self.server, u, "userdb_quota_rule=*:bytes=%d" % (len(small) + 2000))
        c = self.lmtp()
        c.cmd("LHLO mx")
        codes, replies = self.deliver(c, "s@example.org", [u + "@example.org"], small)
        self.assertEqual([r[0] for r in replies], [250])
        big = small + b"x" * 3000 + b"\r\n"
        codes, replies = self.deliver(c, "s@example.org",
                                      [u + "@example.org", u2 + "@example.org"], big)
        self.assertEqual(codes, [250, 250])         # not full at RCPT time
        self.assertEqual((replies[0][0], replies[0][1].split()[0]), self.full, replies)
        self.assertEqual(replies[1][0], 250)
        self.assertEqual(self.count(u, pw), 1)      # no copy left
        self.assertEqual(self.count(u2, pw2), 1)

    def test_folder_delivery_counts_all_mailboxes(self):
        u, pw = self.user, self.password
        c = self.imap(u, pw)
        self.ok(c, "CREATE lists")
        c.close()
        set_rules(self.server, u, "userdb_quota_rule=*:messages=2")
        l = self.lmtp()
        l.cmd("LHLO mx")
        for i in range(2):
            _, replies = self.deliver(l, "s@example.org", ["%s+lists@example.org" % u], msg(i))
            self.assertEqual(replies[0][0], 250)
        self.assertEqual(l.code("MAIL FROM:<s@example.org>"), 250)
        r = l.cmd("RCPT TO:<%s@example.org>" % u)
        self.assertEqual((r[0][0], r[0][1].split()[0]), self.full, r)
        l.code("RSET")
        # EXPUNGE frees at once
        c = self.imap(u, pw)
        self.ok(c, "SELECT lists")
        self.ok(c, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        c.close()
        _, replies = self.deliver(l, "s@example.org", [u + "@example.org"], msg(5))
        self.assertEqual(replies[0][0], 250)


class LmtpQuotaTempfail(LmtpQuota):
    server_options = {"quota_full_tempfail": "yes"}
    full = (452, "4.2.2")


rs.parametrize(globals(), LmtpQuota, LmtpQuotaTempfail)

if __name__ == "__main__":
    rs.main()
