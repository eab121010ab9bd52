#!/usr/bin/env python3
"""ringmaild: CONDSTORE (RFC 7162 section 3), from the RFC's examples and
rules.  ENABLE and the implicit enabling commands; HIGHESTMODSEQ in
SELECT/EXAMINE and STATUS; the MODSEQ fetch item, FETCH (CHANGEDSINCE) and
MODSEQ with every FETCH of flags once enabled, unsolicited ones included;
STORE (UNCHANGEDSINCE) with [MODIFIED] in message numbers or UIDs, .SILENT
answered with MODSEQ, atomic against other sessions storing at the same
moment; SEARCH MODSEQ with the result's (MODSEQ n) and ESEARCH's MODSEQ.
Runs once per io backend."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402


def msg(i):
    return b"Subject: m%d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n" % (i, i)


def modseq(f):
    """The value of a FETCH item MODSEQ (n)."""
    v = f["MODSEQ"]
    assert isinstance(v, list) and len(v) == 1, v
    return int(v[0])


class CondstoreBase(rs.ServerTestCase):

    def box(self, n, enable=None, name="INBOX"):
        c = self.login(enable=enable)
        for i in range(n):
            self.expect(c.append(name, msg(i + 1)), "OK")
        return c

    def hms(self, c=None, name="INBOX"):
        """The mailbox's HIGHESTMODSEQ, asked on a connection of its own
        (STATUS (HIGHESTMODSEQ) enables CONDSTORE where it is sent)."""
        if getattr(self, "_peek", None) is None:
            self._peek = self.login()
        r = self.ok(self._peek, "STATUS %s (HIGHESTMODSEQ)" % name)
        m = re.search(rb"HIGHESTMODSEQ (\d+)", r.of("STATUS")[0].raw)
        return int(m.group(1))

    def code_value(self, r, name):
        v = r.code_of(name)
        return int(v.split()[1]) if v else None


class Condstore(CondstoreBase):

    # -- advertising and enabling (3.1, 3.1.1, RFC 5161) --

    def test_capability_and_enable(self):
        c = self.login()
        self.assertIn("CONDSTORE", c.capabilities())
        # a BAD ENABLE enables nothing
        self.expect(c.cmd('ENABLE CONDSTORE "x"'), "BAD")
        r = self.ok(c, "EXAMINE INBOX")
        self.assertIsNone(r.code_of("HIGHESTMODSEQ"), r.describe())
        r = self.ok(c, "ENABLE CONDSTORE condstore")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED CONDSTORE"])
        # selected: the first enabling command says HIGHESTMODSEQ
        self.assertIsNotNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())
        self.ok(c, "UNSELECT")
        c = self.login()
        r = self.ok(c, "ENABLE CONDSTORE")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED CONDSTORE"])
        r = self.ok(c, "ENABLE CONDSTORE")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED"])
        # after ENABLE, every SELECT/EXAMINE says HIGHESTMODSEQ (3.1.2.1)
        for cmd in ("SELECT INBOX", "EXAMINE INBOX"):
            r = self.ok(c, cmd)
            self.assertIsNotNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())

    def test_no_highestmodseq_before_enabling(self):
        c = self.box(1)
        r = self.ok(c, "SELECT INBOX")
        self.assertIsNone(r.code_of("HIGHESTMODSEQ"), r.describe())
        self.ok(c, "STORE 1 +FLAGS (\\Seen)")
        c2 = self.login(select="INBOX")
        self.ok(c2, "STORE 1 +FLAGS (\\Flagged)")
        r = self.ok(c, "NOOP")
        f = r.fetches()[1]
        self.assertNotIn("MODSEQ", f, r.describe())

    def test_select_condstore(self):
        c = self.box(3)
        h = self.hms(c)
        self.assertGreater(h, 0)
        c2 = self.login()
        r = self.ok(c2, "SELECT INBOX (CONDSTORE)")
        self.assertEqual(self.code_value(r, "HIGHESTMODSEQ"), h, r.describe())
        # the HIGHESTMODSEQ response is an untagged OK (Example 18)
        self.assertTrue(any(u.status() and u.status()[1].startswith("HIGHESTMODSEQ")
                            for u in r.untagged), r.describe())
        # it enabled CONDSTORE: the next SELECT says it too, unasked
        r = self.ok(c2, "EXAMINE INBOX")
        self.assertEqual(self.code_value(r, "HIGHESTMODSEQ"), h, r.describe())

    def test_enable_while_selected_sends_highestmodseq(self):
        # 3.1: "A first CONDSTORE enabling command executed in the session
        # with a mailbox selected MUST cause the server to return
        # HIGHESTMODSEQ"; each kind of enabling command in turn
        for cmd in ("ENABLE CONDSTORE", "FETCH 1 (MODSEQ)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
                    "SEARCH MODSEQ 1", "STORE 1 (UNCHANGEDSINCE 1000000) +FLAGS (x)",
                    "STATUS INBOX (HIGHESTMODSEQ)"):
            c = self.box(1)
            self.ok(c, "SELECT INBOX")
            h = self.hms(self.login())
            r = self.ok(c, cmd)
            self.assertEqual(self.code_value(r, "HIGHESTMODSEQ"), h, r.describe())
            # only the first one
            r = self.ok(c, cmd)
            self.assertIsNone(r.code_of("HIGHESTMODSEQ"), r.describe())
            r = self.ok(c, "FETCH 1 FLAGS")
            self.assertIn("MODSEQ", r.fetches()[1], r.describe())
            c.close()

    # -- STATUS (3.1.7) --

    def test_status_highestmodseq(self):
        c = self.box(2)
        h0 = self.hms(c)
        r = self.ok(c, "STATUS INBOX (HIGHESTMODSEQ)")
        self.assertEqual(r.of("STATUS")[0].line, '* STATUS "INBOX" (HIGHESTMODSEQ %d)' % h0)
        self.ok(c, "SELECT INBOX")
        self.ok(c, "STORE 1 +FLAGS (\\Seen)")
        h1 = self.hms(c)
        self.assertGreater(h1, h0)
        self.ok(c, "STORE 1 +FLAGS (\\Seen)")    # no change: same modseq (3.1.11)
        self.assertEqual(self.hms(c), h1)
        r = self.ok(c, "STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)")
        self.assertEqual(r.of("STATUS")[0].line,
                         '* STATUS "INBOX" (MESSAGES 2 UIDNEXT 3 HIGHESTMODSEQ %d)' % h1)

    # -- FETCH MODSEQ and CHANGEDSINCE (3.1.4) --

    def test_fetch_modseq(self):
        c = self.box(3)
        self.ok(c, "SELECT INBOX")
        self.ok(c, "STORE 2 +FLAGS (\\Answered)")
        r = self.ok(c, "FETCH 1:3 (MODSEQ)")
        f = r.fetches()
        self.assertEqual(sorted(f), [1, 2, 3])
        for n in f:
            self.assertEqual(list(f[n]), ["MODSEQ"], r.describe())
        self.assertGreater(modseq(f[2]), modseq(f[3]))
        self.assertEqual(modseq(f[2]), self.hms(c))
        # enabled now: FLAGS comes with MODSEQ unasked
        r = self.ok(c, "FETCH 2 (FLAGS)")
        self.assertEqual(modseq(r.fetches()[2]), modseq(f[2]))
        # an implicit \Seen is answered with its new MODSEQ (3.1)
        r = self.ok(c, "FETCH 3 (BODY[TEXT])")
        f3 = r.fetches()[3]
        self.assertIn("\\Seen", f3["FLAGS"])
        self.assertEqual(modseq(f3), self.hms(c))

    def test_changedsince(self):
        c = self.box(4)
        self.ok(c, "SELECT INBOX")
        h = self.hms(c)
        c2 = self.login(select="INBOX")
        self.ok(c2, "STORE 2 +FLAGS (\\Flagged)")
        self.ok(c2, "STORE 3 +FLAGS (\\Seen)")
        self.ok(c2, "STORE 3 -FLAGS (\\Seen)")    # changed back: still changed
        self.expect(c2.append("INBOX", msg(5)), "OK")
        self.ok(c, "NOOP")      # the others' changes, announced before
        # Example 12
        r = self.ok(c, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h)
        got = {f["UID"]: f for n, f in r.fetch_list() if "MODSEQ" in f}
        self.assertEqual(sorted(got), [2, 3, 5], r.describe())
        self.assertIn("\\Flagged", got[2]["FLAGS"])
        for f in got.values():
            self.assertGreater(modseq(f), h)
        # nothing changed since the latest
        r = self.ok(c, "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % self.hms(c))
        self.assertEqual(r.fetches(), {}, r.describe())
        # the sequence set still limits it
        r = self.ok(c, "FETCH 1:2 (UID) (CHANGEDSINCE %d)" % h)
        self.assertEqual(sorted(r.fetches()), [2], r.describe())
        # mod-sequence-value is nonzero; VANISHED is QRESYNC's (not offered)
        for cmd in ("FETCH 1:* (FLAGS) (CHANGEDSINCE 0)", "FETCH 1:* (FLAGS) (CHANGEDSINCE x)",
                    "FETCH 1:* (FLAGS) (CHANGEDSINCE)", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
                    "FETCH 1:* (FLAGS) (CHANGEDSINCE 9223372036854775808)",
                    "FETCH 1:* (FLAGS) (BLURDYBLOOP 1)"):
            self.expect(c.cmd(cmd), "BAD", msg=cmd)

    # -- unsolicited FETCH (3.1, Example 14) --

    def test_unsolicited_fetch_carries_modseq(self):
        c1 = self.box(7, enable="CONDSTORE")
        self.ok(c1, "SELECT INBOX")
        c2 = self.login(enable="CONDSTORE", select="INBOX")
        c3 = self.login(select="INBOX")        # not CONDSTORE-aware
        r = self.ok(c1, "STORE 7 +FLAGS.SILENT (\\Deleted)")
        f = r.fetches()
        self.assertEqual(list(f), [7], r.describe())
        self.assertEqual(list(f[7]), ["MODSEQ"], r.describe())
        m = modseq(f[7])
        self.assertEqual(m, self.hms(c1))
        r = self.ok(c2, "NOOP")
        f = r.fetches()[7]
        self.assertEqual(modseq(f), m, r.describe())
        self.assertIn("\\Deleted", f["FLAGS"])
        r = self.ok(c3, "NOOP")
        f = r.fetches()[7]
        self.assertNotIn("MODSEQ", f, r.describe())
        # STORE without .SILENT: FETCH FLAGS with MODSEQ; UID STORE adds UID
        r = self.ok(c1, "UID STORE 6 +FLAGS (\\Answered)")
        f = r.fetches()[6]
        self.assertEqual(f["UID"], 6)
        self.assertIn("\\Answered", f["FLAGS"])
        self.assertEqual(modseq(f), self.hms(c1))
        # a .SILENT STORE that changes nothing sends nothing
        r = self.ok(c1, "STORE 7 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(r.fetches(), {}, r.describe())
        # without CONDSTORE, .SILENT says no MODSEQ (what it says at all
        # is the others' changes)
        r = self.ok(c3, "STORE 5 +FLAGS.SILENT (\\Seen)")
        for n, f in r.fetch_list():
            self.assertNotIn("MODSEQ", f, r.describe())

    def test_store_echo_said_once(self):
        # another session changed messages 2 and 3 before this STORE:
        # message 2's line (FLAGS and MODSEQ from one moment) comes once,
        # message 3's as the others' change
        for enable in ("CONDSTORE", None):
            c = self.box(3, enable=enable)
            self.ok(c, "SELECT INBOX")
            c2 = self.login(select="INBOX")
            self.ok(c2, "STORE 2:3 +FLAGS (\\Flagged)")
            r = self.ok(c, "STORE 1:2 +FLAGS (\\Seen)")
            self.assertEqual(sorted(n for n, f in r.fetch_list()), [1, 2, 3], r.describe())
            f = r.fetches()
            self.assertEqual(sorted(x for x in map(str, f[2]["FLAGS"]) if x != "\\Recent"),
                             ["\\Flagged", "\\Seen"])
            if enable:
                self.assertEqual(modseq(f[2]), self.hms())
            c.close()
            c2.close()
            self.ok(self.login(select="INBOX"), "STORE 1:* -FLAGS (\\Seen \\Flagged)")

    # -- STORE (UNCHANGEDSINCE) (3.1.3) --

    def test_unchangedsince_example_6(self):
        c = self.box(9, enable="CONDSTORE")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "STORE 5 +FLAGS (\\Seen)")
        base = self.hms(c)
        c2 = self.login(select="INBOX")
        self.ok(c2, "STORE 7 +FLAGS (\\Seen)")
        self.ok(c2, "STORE 9 +FLAGS (\\Answered)")
        r = self.expect(c.cmd("STORE 7,5,9 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % base),
                        "OK", code="MODIFIED")
        self.assertEqual(rs.seqset(r.code.split()[1]), [7, 9])
        # the one that passed has its FETCH with MODSEQ even though .SILENT
        mine = {n: f for n, f in r.fetch_list() if "FLAGS" not in f}
        self.assertEqual(list(mine), [5], r.describe())
        self.assertGreater(modseq(mine[5]), base)
        r = self.ok(c, "FETCH 5,7,9 (FLAGS)")
        f = r.fetches()
        self.assertIn("\\Deleted", f[5]["FLAGS"])
        self.assertNotIn("\\Deleted", f[7]["FLAGS"])
        self.assertNotIn("\\Deleted", f[9]["FLAGS"])
        # UID STORE lists UIDs: expunge 1 so message numbers and UIDs differ
        self.ok(c, "STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.ok(c, "UID EXPUNGE 1")
        self.ok(c2, "STORE 7 +FLAGS (\\Flagged)")     # now seq 6, UID 7
        b2 = self.hms(c) - 1
        r = self.expect(c.cmd("STORE 6 (UNCHANGEDSINCE %d) +FLAGS.SILENT ($y)" % b2),
                        "OK", code="MODIFIED")
        self.assertEqual(r.code, "MODIFIED 6")
        r = self.expect(c.cmd("UID STORE 6:8 (UNCHANGEDSINCE %d) +FLAGS.SILENT ($x)" % b2),
                        "OK", code="MODIFIED")
        self.assertEqual(r.code, "MODIFIED 7")
        self.assertEqual(sorted(f["UID"] for n, f in r.fetch_list() if list(f) == ["MODSEQ", "UID"]
                                or set(f) == {"MODSEQ", "UID"}), [6, 8], r.describe())

    def test_unchangedsince_zero_always_fails(self):
        # Example 8: "Use of UNCHANGEDSINCE with a modification sequence of
        # 0 always fails if the metadata item exists"
        c = self.box(3)
        self.ok(c, "SELECT INBOX")
        h = self.hms(c)
        r = self.expect(c.cmd("STORE 2:3 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)"),
                        "OK", code="MODIFIED")
        self.assertEqual(rs.seqset(r.code.split()[1]), [2, 3])
        self.assertEqual(r.fetches(), {}, r.describe())
        self.assertEqual(self.hms(c), h)
        r = self.ok(c, "FETCH 1:3 FLAGS")
        for f in r.fetches().values():
            self.assertNotIn("$MDNSent", f["FLAGS"])

    def test_unchangedsince_all_pass(self):
        # Example 5
        c = self.box(3)
        self.ok(c, "SELECT INBOX")
        h = self.hms(c)
        r = self.ok(c, "STORE 2 (UNCHANGEDSINCE %d) -FLAGS.SILENT (\\Deleted)" % h)
        self.assertIsNone(r.code, r.describe())
        self.assertEqual(self.code_value(r, "HIGHESTMODSEQ"), h, r.describe())
        f = r.fetches()
        self.assertEqual(list(f), [2], r.describe())
        # nothing to remove: the modseq stays (3.1.11), and is still sent
        self.assertLessEqual(modseq(f[2]), h)
        self.assertEqual(self.hms(c), h)
        # non-silent: FETCH FLAGS with MODSEQ
        r = self.ok(c, "STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % self.hms(c))
        f = r.fetches()
        self.assertEqual(sorted(f), [1, 2], r.describe())
        for n in (1, 2):
            self.assertIn("\\Flagged", f[n]["FLAGS"])
            self.assertEqual(modseq(f[n]), self.hms(c))
        for cmd in ("STORE 1 (UNCHANGEDSINCE x) +FLAGS (a)", "STORE 1 (UNCHANGEDSINCE) +FLAGS (a)",
                    "STORE 1 (UNCHANGEDSINCE 9223372036854775808) +FLAGS (a)",
                    "STORE 1 (CHANGEDSINCE 1) +FLAGS (a)"):
            self.expect(c.cmd(cmd), "BAD", msg=cmd)

    def test_unchangedsince_read_after_other_session(self):
        # two clients read the same modseq; the first conditional STORE
        # wins, the second is told MODIFIED and changes nothing
        c1 = self.box(1, enable="CONDSTORE")
        self.ok(c1, "SELECT INBOX")
        c2 = self.login(enable="CONDSTORE", select="INBOX")
        m = modseq(self.ok(c1, "FETCH 1 MODSEQ").fetches()[1])
        self.assertEqual(modseq(self.ok(c2, "FETCH 1 MODSEQ").fetches()[1]), m)
        self.ok(c1, "STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT (\\Seen $a)" % m)
        r = self.expect(c2.cmd("STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT ($b)" % m), "OK",
                        code="MODIFIED")
        self.assertEqual(r.code, "MODIFIED 1")
        # the failure told c2 what changed, with the new MODSEQ
        f = r.fetches()[1]
        self.assertIn("$a", f["FLAGS"])
        self.assertGreater(modseq(f), m)
        flags = self.ok(c1, "FETCH 1 FLAGS").fetches()[1]["FLAGS"]
        self.assertIn("$a", flags)
        self.assertNotIn("$b", flags)

    def test_unchangedsince_concurrent(self):
        # N sessions send the same conditional STORE before any answer is
        # read: exactly one may win (the test and the write are one step
        # under the store's writer lock)
        n = 8
        for rnd in range(3):
            conns = [self.login(select="INBOX") for _ in range(n)]
            if rnd == 0:
                self.expect(conns[0].append("INBOX", msg(1)), "OK")
                for c in conns:
                    self.ok(c, "NOOP")
            m = modseq(self.ok(conns[0], "FETCH 1 MODSEQ").fetches()[1])
            tags = []
            for i, c in enumerate(conns):
                t = c.tag()
                tags.append(t)
                c.send("%s STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT ($r%d_%d)\r\n" % (t, m, rnd, i))
            won = []
            for i, (c, t) in enumerate(zip(conns, tags)):
                untagged, tagged, _ = c.read_until_tag(t)
                st = tagged.status()
                self.assertEqual(st[0], "OK", tagged)
                if st[1] is None:
                    won.append(i)
                else:
                    self.assertEqual(st[1], "MODIFIED 1")
            self.assertEqual(len(won), 1, "round %d: winners %r" % (rnd, won))
            flags = self.ok(conns[0], "FETCH 1 FLAGS").fetches()[1]["FLAGS"]
            kws = [str(x) for x in flags if str(x).startswith("$r")]
            self.assertEqual(kws, ["$r%d_%d" % (rnd, won[0])])
            for c in conns:
                c.close()

    # -- SEARCH MODSEQ (3.1.5, 3.1.6, 3.1.10) --

    def test_search_modseq(self):
        c = self.box(6)
        self.ok(c, "SELECT INBOX")
        h = self.hms(c)
        self.ok(c, "STORE 2 +FLAGS (\\Draft)")
        self.ok(c, "STORE 5 +FLAGS (\\Draft)")
        top = self.hms(c)
        r = self.ok(c, 'SEARCH MODSEQ "/flags/\\\\draft" all %d' % (h + 1))
        self.assertEqual(r.search(), [2, 5])
        self.assertTrue(r.of("SEARCH")[0].line.endswith(" (MODSEQ %d)" % top), r.describe())
        # Example 16: nothing found, no MODSEQ
        r = self.ok(c, "SEARCH MODSEQ %d" % (top + 1))
        self.assertEqual(r.of("SEARCH")[0].line, "* SEARCH")
        # the MODSEQ is that of the matches, not of the mailbox
        r = self.ok(c, "SEARCH MODSEQ 1 NOT DRAFT")
        self.assertLess(int(re.search(r"\(MODSEQ (\d+)\)", r.of("SEARCH")[0].line).group(1)), top)
        # Example 19
        r = self.ok(c, "SEARCH RETURN (ALL) MODSEQ %d" % (h + 1))
        self.assertRegex(r.of("ESEARCH")[0].line, r" ALL 2,5 MODSEQ %d$" % top)
        # a search without MODSEQ has none
        r = self.ok(c, "SEARCH DRAFT")
        self.assertEqual(r.of("SEARCH")[0].line, "* SEARCH 2 5")


class CondstoreBig(CondstoreBase):
    """A STORE of more than 16384 messages runs on the sync pool: the same
    answers from there."""
    users_per_class = 2
    N = 17000

    @classmethod
    def prepare_server(cls, server):
        server.import_mbox("user0", "INBOX", [b"Subject: m%d\r\n\r\nx\r\n" % i
                                              for i in range(cls.N)])

    def test_big_conditional_store(self):
        n = self.N
        c = self.login()
        r = self.ok(c, "SELECT INBOX (CONDSTORE)")
        h = int(r.code_of("HIGHESTMODSEQ").split()[1])
        c2 = self.login(select="INBOX")
        self.ok(c2, "STORE 100,16999 +FLAGS.SILENT (\\Seen)")
        r = self.expect(c.cmd("STORE 1:* (UNCHANGEDSINCE %d) +FLAGS.SILENT ($big)" % h,
                              timeout=120), "OK", code="MODIFIED")
        self.assertEqual(r.code, "MODIFIED 100,16999")
        mine = [num for num, f in r.fetch_list() if list(f) == ["MODSEQ"]]
        self.assertEqual(len(mine), n - 2)
        self.assertNotIn(100, mine)
        # the others' change, with its MODSEQ, after the echo
        others = {num: f for num, f in r.fetch_list() if "FLAGS" in f}
        self.assertEqual(sorted(others), [100, 16999], r.describe())
        # UID STORE from the pool: UIDs in MODIFIED (UIDs are 1..n here)
        h2 = modseq(self.ok(c, "FETCH 1 MODSEQ").fetches()[1])
        self.ok(c2, "STORE 5 +FLAGS.SILENT (\\Answered)")
        r = self.expect(c.cmd("UID STORE 1:* (UNCHANGEDSINCE %d) +FLAGS.SILENT ($big2)" % h2,
                              timeout=120), "OK", code="MODIFIED")
        self.assertEqual(r.code, "MODIFIED 5")
        self.assertEqual(len([f for num, f in r.fetch_list() if set(f) == {"UID", "MODSEQ"}]),
                         n - 1)
        h3 = self.hms()
        r = self.ok(c, "FETCH 1:* (UID) (CHANGEDSINCE %d)" % h2, timeout=120)
        self.assertEqual(len(r.fetch_list()), n, r.describe())
        r = self.ok(c, "FETCH 1:* (UID) (CHANGEDSINCE %d)" % h3, timeout=120)
        self.assertEqual(r.fetch_list(), [], r.describe())


rs.parametrize(globals(), Condstore, CondstoreBig)

if __name__ == "__main__":
    rs.main()
