#!/usr/bin/env python3
"""ringmaild: QRESYNC (RFC 7162 section 3.2), from the RFC's examples and
rules.  ENABLE QRESYNC (and CONDSTORE with it); SELECT/EXAMINE (QRESYNC
...) with VANISHED (EARLIER) and the FETCH of what changed, the UIDVALIDITY
mismatch, known-uids and seq-match-data; UID FETCH (CHANGEDSINCE n
VANISHED) and its errors; VANISHED instead of EXPUNGE for EXPUNGE, UID
EXPUNGE, MOVE and other sessions' expunges (IDLE included), never during
FETCH/STORE/SEARCH; HIGHESTMODSEQ in the tagged OK of EXPUNGE; [CLOSED];
a "device" that keeps its state across disconnections, another session's
changes, compaction and a server restart, and ends with what a full
resync gives; a resync of a few changes in a big mailbox costs bytes in
proportion to the changes.  Runs once per io backend."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"


def msg(i):
    return b"Subject: m%d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n" % (i, i)


def uidset(text):
    """'1:3,7' -> [1, 2, 3, 7]"""
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":")
            a, b = int(a), int(b)
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def vanished(r, earlier):
    """The UIDs of the VANISHED responses of a result, with or without
    (EARLIER)."""
    out = []
    for u in r.untagged:
        m = re.match(rb"\* VANISHED (\(EARLIER\) )?([0-9:,]+)\r?\n?$", u.raw)
        if u.raw.upper().startswith(b"* VANISHED"):
            assert m, u.raw
            if bool(m.group(1)) == earlier:
                out.extend(uidset(m.group(2).decode()))
    return out


def flagset(f):
    return frozenset(str(x).lower() for x in f["FLAGS"] if str(x).lower() != "\\recent")


class QresyncBase(rs.ServerTestCase):

    def box(self, n, name="INBOX", c=None):
        c = c or self.login()
        for i in range(n):
            self.expect(c.append(name, msg(i + 1)), "OK")
        return c

    def qlogin(self):
        c = self.login()
        r = self.ok(c, "ENABLE QRESYNC")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED QRESYNC"])
        return c

    def code_value(self, r, name):
        v = r.code_of(name)
        return int(v.split()[1]) if v else None

    def state(self, c, name="INBOX"):
        """(uidvalidity, highestmodseq, {uid: flags}) by a full resync."""
        r = self.ok(c, "EXAMINE " + name)
        uv = self.code_value(r, "UIDVALIDITY")
        hms = self.code_value(r, "HIGHESTMODSEQ")
        r = self.ok(c, "UID FETCH 1:* (FLAGS)")
        flags = {int(f["UID"]): flagset(f) for num, f in r.fetch_list()}
        return uv, hms, flags


class Qresync(QresyncBase):

    # -- 3.2.2, 3.2.3 --

    def test_capability_and_enable(self):
        c = self.login()
        caps = c.capabilities()
        self.assertIn("QRESYNC", caps)
        self.assertIn("CONDSTORE", caps)
        r = self.ok(c, "ENABLE QRESYNC")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED QRESYNC"])
        # QRESYNC implies CONDSTORE: HIGHESTMODSEQ on SELECT
        r = self.ok(c, "SELECT INBOX")
        self.assertIsNotNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())
        # enabled once: a second ENABLE lists nothing
        r = self.ok(c, "ENABLE QRESYNC CONDSTORE")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED"])
        # "ENABLE QRESYNC CONDSTORE" names both, in any order
        for cmd, want in (("ENABLE QRESYNC CONDSTORE", b"* ENABLED QRESYNC CONDSTORE"),
                          ("ENABLE CONDSTORE QRESYNC", b"* ENABLED CONDSTORE QRESYNC")):
            c = self.login()
            r = self.ok(c, cmd)
            self.assertEqual([u.raw for u in r.of("ENABLED")], [want])
        # selected: the first enabling command says HIGHESTMODSEQ
        c = self.box(1)
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "ENABLE QRESYNC")
        self.assertIsNotNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())
        # a BAD ENABLE enables nothing
        c = self.login()
        self.expect(c.cmd('ENABLE QRESYNC "x"'), "BAD")
        self.expect(c.cmd("SELECT INBOX (QRESYNC (1 1))"), "BAD")

    # -- 3.2.5: errors --

    def test_select_qresync_errors(self):
        c = self.box(3)
        uv = self.code_value(self.ok(c, "STATUS INBOX (UIDVALIDITY)"), "UIDVALIDITY")
        uv = uv or int(re.search(rb"UIDVALIDITY (\d+)",
                                 self.ok(c, "STATUS INBOX (UIDVALIDITY)").of("STATUS")[0].raw)
                       .group(1))
        # without ENABLE QRESYNC, even with CONDSTORE enabled: BAD, and the
        # selected mailbox stays as it was
        c = self.login()
        self.ok(c, "ENABLE CONDSTORE")
        self.ok(c, "SELECT INBOX")
        self.expect(c.cmd("SELECT INBOX (QRESYNC (%d 1))" % uv), "BAD")
        self.ok(c, "FETCH 1 FLAGS")
        bad = ["SELECT INBOX (QRESYNC)", "SELECT INBOX (QRESYNC ())",
               "SELECT INBOX (QRESYNC (%d))" % uv, "SELECT INBOX (QRESYNC (0 1))",
               "SELECT INBOX (QRESYNC (%d 0))" % uv, "SELECT INBOX (QRESYNC (%d x))" % uv,
               "SELECT INBOX (QRESYNC (%d 1 1:*))" % uv,
               "SELECT INBOX (QRESYNC (%d 1 1:3 (1:2 1:3)))" % uv,
               "SELECT INBOX (QRESYNC (%d 1 1:3 (1:* 1:3)))" % uv,
               "SELECT INBOX (QRESYNC (%d 1 1:3 (1 2) x))" % uv,
               "SELECT INBOX (QRESYNC (%d 1 1:3 (1)))" % uv,
               "SELECT INBOX (QRESYNC (%d 1) QRESYNC (%d 1))" % (uv, uv),
               "EXAMINE INBOX (QRESYNC (%d 1 0))" % uv]
        self.each(self.qlogin, bad, "BAD")

    # -- 3.2.5: UIDVALIDITY mismatch: a plain SELECT --

    def test_uidvalidity_mismatch(self):
        c = self.box(4)
        self.ok(c, "SELECT INBOX")
        self.ok(c, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.ok(c, "STORE 2 +FLAGS (\\Flagged)")
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX (QRESYNC (67890007 1 1:10))")
        uv = self.code_value(r, "UIDVALIDITY")
        self.assertNotEqual(uv, 67890007)
        self.assertEqual(r.of("VANISHED"), [], r.describe())
        self.assertEqual(r.fetch_list(), [], r.describe())
        self.assertEqual(r.numbers("EXISTS"), [3])
        self.assertEqual(r.code_name(), "READ-WRITE")

    # -- 3.2.5.1: VANISHED (EARLIER) then FETCH of what changed --

    def test_select_qresync(self):
        c = self.box(10)
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX")
        uv = self.code_value(r, "UIDVALIDITY")
        h0 = self.code_value(r, "HIGHESTMODSEQ")
        self.ok(q, "UNSELECT")
        # changes: flags on 3 and 7, expunge 2, 4, 5, a new message 11
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 3,7 +FLAGS ($Fwd \\Answered)")
        self.ok(c, "UID STORE 2,4,5 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.expect(c.append("INBOX", msg(11)), "OK")
        r = self.ok(q, "SELECT INBOX (QRESYNC (%d %d))" % (uv, h0))
        # the usual responses first, VANISHED (EARLIER) before the FETCHes
        kinds = [u.kind() for u in r.untagged]
        self.assertIn("EXISTS", kinds)
        vi = [i for i, u in enumerate(r.untagged) if u.raw.startswith(b"* VANISHED")]
        fi = [i for i, u in enumerate(r.untagged) if u.kind() == "FETCH"]
        self.assertEqual(len(vi), 1, r.describe())
        self.assertTrue(all(i > max(vi) for i in fi), r.describe())
        self.assertTrue(all(i > kinds.index("EXISTS") for i in vi + fi), r.describe())
        self.assertEqual(vanished(r, True), [2, 4, 5])
        self.assertEqual(vanished(r, False), [])
        got = {int(f["UID"]): (num, flagset(f), f.get("MODSEQ")) for num, f in r.fetch_list()}
        # 3, 7 changed and 11 is new (its modseq is above h0 too): "as if
        # the client has specified 1:<maxuid>" with maxuid = UIDNEXT - 1
        self.assertEqual(sorted(got), [3, 7, 11], r.describe())
        self.assertEqual(got[3][0], 2)      # 1, 3 -> seq 2
        self.assertEqual(got[7][0], 4)      # 1, 3, 6, 7
        self.assertEqual(got[3][1], frozenset({"$fwd", "\\answered"}))
        self.assertTrue(all(v[2] for v in got.values()), r.describe())
        # every FETCH line carries UID (3.2.5.1: "MUST contain UIDs")
        self.assertTrue(all(re.match(rb"\* \d+ FETCH \(UID \d+ FLAGS", u.raw)
                            for u in r.of("FETCH")), r.describe())
        h1 = self.code_value(r, "HIGHESTMODSEQ")
        # nothing changed since h1: nothing but the usual responses
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d))" % (uv, h1))
        self.assertEqual(r.of("VANISHED"), [], r.describe())
        self.assertEqual(r.fetch_list(), [], r.describe())
        self.assertEqual(r.code_name(), "READ-ONLY")
        # known-uids restrict both the expunges and the flag changes
        r = self.ok(q, "SELECT INBOX (QRESYNC (%d %d 1:4))" % (uv, h0))
        self.assertEqual(vanished(r, True), [2, 4])
        self.assertEqual(sorted(int(f["UID"]) for n, f in r.fetch_list()), [3])
        r = self.ok(q, "SELECT INBOX (QRESYNC (%d %d 5:7,9))" % (uv, h0))
        self.assertEqual(vanished(r, True), [5])
        self.assertEqual(sorted(int(f["UID"]) for n, f in r.fetch_list()), [7])

    # -- 3.2.5.2: seq-match-data --

    def test_seq_match_data(self):
        c = self.box(12)
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX")
        uv = self.code_value(r, "UIDVALIDITY")
        h0 = self.code_value(r, "HIGHESTMODSEQ")
        self.ok(q, "UNSELECT")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 2,6,10 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        # now: seq 1..9 = uids 1,3,4,5,7,8,9,11,12
        # (1,3 -> 1,4): seq 3 is uid 4 -> matched: nothing <= 4 reported
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d 1:12 (1,3 1,4)))" % (uv, h0))
        self.assertEqual(vanished(r, True), [6, 10])
        # the second pair does not match (seq 7 is uid 9, not 8): the
        # lowest UID reported is the last match's + 1
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d 1:12 (3,7 4,8)))" % (uv, h0))
        self.assertEqual(vanished(r, True), [6, 10])
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d 1:12 (5,7 7,9)))" % (uv, h0))
        self.assertEqual(vanished(r, True), [10])
        # the first pair does not match: everything
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d 1:12 (2 2)))" % (uv, h0))
        self.assertEqual(vanished(r, True), [2, 6, 10])
        # a sequence number past the end does not match
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d 1:12 (1,30 1,40)))" % (uv, h0))
        self.assertEqual(vanished(r, True), [2, 6, 10])
        # seq-match-data restricts the expunges only, not the flag changes
        self.ok(c, "UID STORE 1 +FLAGS (\\Seen)")
        r = self.ok(q, "EXAMINE INBOX (QRESYNC (%d %d 1:12 (9 12)))" % (uv, h0))
        self.assertEqual(vanished(r, True), [])
        self.assertIn(1, [int(f["UID"]) for n, f in r.fetch_list()])

    # -- 3.2.6: UID FETCH (CHANGEDSINCE n VANISHED) --

    def test_uid_fetch_vanished(self):
        c = self.box(12)
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX")
        h0 = self.code_value(r, "HIGHESTMODSEQ")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 3,11,12 +FLAGS (\\Deleted)")
        self.ok(c, "UID EXPUNGE 3,11,12")
        self.ok(c, "UID STORE 4,8 +FLAGS (\\Seen)")
        # the other session's expunges have not been announced to q yet
        # (no command that may announce them ran): VANISHED (EARLIER) for
        # the set, then the FETCHes
        r = self.ok(q, "UID FETCH 2:12 (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
        self.assertEqual(vanished(r, True), [3, 11, 12])
        self.assertEqual(vanished(r, False), [])
        self.assertTrue(r.untagged[0].raw.startswith(b"* VANISHED (EARLIER)"), r.describe())
        # (the FETCH answers, then the same changes as this session's
        # updates)
        self.assertEqual(sorted(set(int(f["UID"]) for n, f in r.fetch_list())), [4, 8])
        self.assertTrue(all("MODSEQ" in f for n, f in r.fetch_list()))
        # the modifiers in any order; '*' reaches the expunged UIDs above
        # the last message
        r = self.ok(q, "UID FETCH 5:* (FLAGS) (VANISHED CHANGEDSINCE %d)" % h0)
        self.assertEqual(vanished(r, True), [11, 12])
        # a set outside the changes: nothing
        # (but the HIGHESTMODSEQ below the held expunges: 3.2)
        r = self.ok(q, "UID FETCH 1:2 (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
        self.assertEqual([u.raw for u in r.untagged],
                         [b"* OK [HIGHESTMODSEQ %d] Expunges pending" % h0], r.describe())
        # NOOP now announces them as VANISHED (not EARLIER)
        r = self.ok(q, "NOOP")
        self.assertEqual(vanished(r, False), [3, 11, 12])

    def test_uid_fetch_vanished_errors(self):
        self.box(3)

        def cs():
            c = self.login()
            self.ok(c, "ENABLE CONDSTORE")
            self.ok(c, "SELECT INBOX")
            return c

        def qs():
            c = self.qlogin()
            self.ok(c, "SELECT INBOX")
            return c
        # no ENABLE QRESYNC (CONDSTORE is not enough)
        self.each(cs, ["UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"], "BAD")
        # VANISHED with FETCH, without CHANGEDSINCE, twice, CHANGEDSINCE 0
        self.each(qs, ["FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
                       "UID FETCH 1:* (FLAGS) (VANISHED)",
                       "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED VANISHED)",
                       "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0 VANISHED)",
                       "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)",
                       "UID FETCH 1:* (FLAGS) ()"], "BAD")

    # -- 3.2.7, 3.2.9, 3.2.10: VANISHED instead of EXPUNGE --

    def test_expunge_vanished(self):
        q = self.box(11, c=self.qlogin())
        self.ok(q, "SELECT INBOX")
        # RFC 7162 3.2.10.2's example: 505,507,510,625 -> here 3,4,7,11
        self.ok(q, "UID STORE 3,4,7,11 +FLAGS.SILENT (\\Deleted)")
        r = self.ok(q, "EXPUNGE")
        self.assertEqual([u.raw for u in r.untagged if u.raw.startswith(b"* VANISHED")],
                         [b"* VANISHED 3:4,7,11"], r.describe())
        self.assertEqual(r.of("EXPUNGE"), [])
        # "MUST send the updated per-mailbox modification sequence using
        # the HIGHESTMODSEQ response code ... in the tagged OK"
        h = self.code_value(r, "HIGHESTMODSEQ")
        self.assertIsNotNone(h, r.describe())
        self.assertEqual(r.code_name(), "HIGHESTMODSEQ")
        c = self.login()
        st = self.ok(c, "STATUS INBOX (HIGHESTMODSEQ)").of("STATUS")[0].raw
        self.assertIn(b"HIGHESTMODSEQ %d" % h, st)
        # then 2 and 5: only what this EXPUNGE removed
        self.ok(q, "UID STORE 2,5 +FLAGS.SILENT (\\Deleted)")
        r = self.ok(q, "EXPUNGE")
        self.assertEqual(vanished(r, False), [2, 5])
        # nothing expunged: no HIGHESTMODSEQ
        r = self.ok(q, "EXPUNGE")
        self.assertIsNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())
        # UID EXPUNGE
        self.ok(q, "UID STORE 1,6,8 +FLAGS.SILENT (\\Deleted)")
        r = self.ok(q, "UID EXPUNGE 6:8")
        self.assertEqual(vanished(r, False), [6, 8])
        self.assertIsNotNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())
        r = self.ok(q, "FETCH 1:* (UID)")
        self.assertEqual([int(f["UID"]) for n, f in r.fetch_list()], [1, 9, 10])

    def test_move_vanished(self):
        q = self.box(5, c=self.qlogin())
        self.ok(q, "CREATE Other")
        self.ok(q, "SELECT INBOX")
        r = self.ok(q, "UID MOVE 2,4 Other")
        self.assertEqual(vanished(r, False), [2, 4], r.describe())
        self.assertEqual(r.of("EXPUNGE"), [])
        # RFC 6851 4.4: HIGHESTMODSEQ in the tagged or an untagged OK
        self.assertIsNotNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())
        r = self.ok(q, "MOVE 1 Other")
        self.assertEqual(vanished(r, False), [1], r.describe())
        # without QRESYNC: EXPUNGE as before
        c = self.login()
        self.ok(c, "SELECT Other")
        r = self.ok(c, "MOVE 1 INBOX")
        self.assertEqual(r.numbers("EXPUNGE"), [1])
        self.assertEqual(r.of("VANISHED"), [])

    def test_others_expunges(self):
        """Another session's expunges reach a QRESYNC session as VANISHED,
        never during FETCH, STORE or SEARCH (3.2.10.2), and only for
        messages it was told of."""
        c = self.box(6)
        q = self.qlogin()
        self.ok(q, "SELECT INBOX")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 2,3 +FLAGS.SILENT (\\Deleted)")
        self.ok(c, "EXPUNGE")
        for cmd in ("FETCH 1:* (FLAGS)", "STORE 1 +FLAGS.SILENT (\\Seen)", "SEARCH ALL",
                    "UID FETCH 1:* (FLAGS)", "UID SEARCH ALL"):
            r = self.ok(q, cmd)
            self.assertEqual(r.of("VANISHED"), [], cmd + "\n" + r.describe())
        # a message appended and expunged before q was told of it is not
        # announced (not "visible to the client")
        self.expect(c.append("INBOX", msg(7)), "OK")
        self.ok(c, "NOOP")
        self.ok(c, "UID STORE 7 +FLAGS.SILENT (\\Deleted)")
        self.ok(c, "UID EXPUNGE 7")
        r = self.ok(q, "NOOP")
        self.assertEqual(vanished(r, False), [2, 3], r.describe())
        self.assertEqual(r.of("EXPUNGE"), [])
        # the flag change seen by q carries UID and MODSEQ (3.2.4)
        self.ok(c, "UID STORE 4 +FLAGS (\\Flagged)")
        r = self.ok(q, "NOOP")
        (num, f), = r.fetch_list()
        self.assertEqual((num, int(f["UID"])), (2, 4))
        self.assertIn("MODSEQ", f)
        # and in IDLE
        self.ok(c, "UID STORE 5 +FLAGS.SILENT (\\Deleted)")
        q.send(b"i1 IDLE\r\n")
        self.assertTrue(q.read().continuation)
        self.ok(c, "EXPUNGE")
        line = q.read(timeout=10)
        if b" FETCH " in line.raw:    # the \Deleted, first
            self.assertIn(b"UID 5 ", line.raw)
            line = q.read(timeout=10)
        self.assertEqual(line.raw.rstrip(b"\r\n"), b"* VANISHED 5")
        q.send(b"DONE\r\n")
        self.assertEqual(q.read_until_tag("i1")[1].status()[0], "OK")

    def test_highestmodseq_below_held_expunges(self):
        """3.2: MODSEQ values shown while an expunge is held back come with
        a HIGHESTMODSEQ below the expunge's, so that a client that goes
        away then and resyncs from that value still learns of it."""
        c = self.box(6)
        q = self.qlogin()
        self.ok(q, "SELECT INBOX")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.ok(c, "UID STORE 5 +FLAGS (\\Flagged)")
        r = self.ok(q, "FETCH 1:* (FLAGS MODSEQ)")
        self.assertEqual(r.of("VANISHED"), [])
        top = max(int(f["MODSEQ"][0]) for n, f in r.fetch_list())
        h = self.code_value(r, "HIGHESTMODSEQ")
        self.assertIsNotNone(h, r.describe())
        self.assertLess(h, top)
        uv = self.code_value(self.ok(q, "EXAMINE INBOX"), "UIDVALIDITY")
        q2 = self.qlogin()
        r = self.ok(q2, "SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
        self.assertEqual(vanished(r, True), [2])
        # once announced, no more of it
        q = self.qlogin()
        self.ok(q, "SELECT INBOX")
        r = self.ok(q, "FETCH 1:* (FLAGS MODSEQ)")
        self.assertIsNone(self.code_value(r, "HIGHESTMODSEQ"), r.describe())

    def test_untagged_fetch_has_uid_and_modseq(self):
        """3.2.4: once enabled, UID and MODSEQ in every FETCH response the
        client did not ask for: a STORE's, an implicit \\Seen's, another
        session's change."""
        q = self.box(3, c=self.qlogin())
        self.ok(q, "SELECT INBOX")
        for cmd in ("STORE 2 +FLAGS (\\Answered)", "FETCH 3 (BODY[TEXT])",
                    "STORE 1 +FLAGS.SILENT (\\Flagged)"):
            r = self.ok(q, cmd)
            (num, f), = [(n, f) for n, f in r.fetch_list() if "UID" in f or "FLAGS" in f or
                         "MODSEQ" in f]
            self.assertEqual(int(f["UID"]), num, r.describe())
            self.assertIn("MODSEQ", f, r.describe())

    # -- 3.2.11: [CLOSED] --

    def test_closed(self):
        self.box(1)
        for enable in (None, "CONDSTORE", "QRESYNC"):
            c = self.login(enable=enable)
            r = self.ok(c, "SELECT INBOX")
            self.assertEqual([x for x in r.codes() if x.startswith("CLOSED")], [])
            r = self.ok(c, "EXAMINE INBOX")
            # "whether or not a CONDSTORE enabling command was issued";
            # before anything of the new mailbox
            closed = [i for i, u in enumerate(r.untagged) if b"[CLOSED]" in u.raw]
            self.assertEqual(closed, [0], r.describe())
            # a failed SELECT closes too
            r = self.expect(c.cmd("SELECT Nonexistent"), "NO")
            self.assertIn(b"[CLOSED]", r.untagged[0].raw, r.describe())
            # not after UNSELECT/CLOSE
            self.ok(c, "SELECT INBOX")
            r = self.ok(c, "CLOSE")
            self.assertEqual(r.untagged, [])


class QresyncDevice(QresyncBase):
    """A device that holds its state (UIDVALIDITY, HIGHESTMODSEQ, UID ->
    flags), goes away, and comes back with SELECT (QRESYNC): the state it
    ends with must be exactly what a full resync gives, whatever happened
    meanwhile (flag changes, appends, expunges, compaction, a restart)."""

    users_per_class = 4

    def resync(self, dev):
        q = self.qlogin()
        uv, hms, flags = dev
        known = ",".join(str(u) for u in sorted(flags)) if flags else None
        if known:
            r = self.ok(q, "SELECT INBOX (QRESYNC (%d %d %s))" % (uv, hms, known))
        else:
            r = self.ok(q, "SELECT INBOX (QRESYNC (%d %d))" % (uv, hms))
        nuv = self.code_value(r, "UIDVALIDITY")
        self.assertEqual(nuv, uv)
        flags = dict(flags)
        for u in vanished(r, True):
            flags.pop(u, None)
        for num, f in r.fetch_list():
            flags[int(f["UID"])] = flagset(f)
        # the messages it does not know yet: UIDs above its highest
        top = max(flags) if flags else 0
        r2 = self.ok(q, "UID FETCH %d:* (FLAGS)" % (top + 1))
        for num, f in r2.fetch_list():
            if int(f["UID"]) > top:
                flags[int(f["UID"])] = flagset(f)
        q.close()
        return uv, self.code_value(r, "HIGHESTMODSEQ"), flags

    def full(self):
        c = self.qlogin()
        st = self.state(c)
        c.close()
        return st

    def test_device_roundtrip(self):
        c = self.box(30)
        dev = self.full()
        self.ok(c, "SELECT INBOX")
        rounds = [
            ["UID STORE 1:5 +FLAGS (\\Seen)", "UID STORE 7 +FLAGS ($Label1)"],
            ["UID STORE 2,9,10 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "APPEND"],
            ["UID STORE 1 -FLAGS (\\Seen)", "UID STORE 20:25 +FLAGS (\\Deleted)",
             "UID EXPUNGE 20:22", "APPEND", "APPEND"],
            ["COMPACT", "UID STORE 23 -FLAGS (\\Deleted)", "UID STORE 30 +FLAGS (\\Flagged)"],
            ["UID STORE 24,25 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "COMPACT", "RESTART",
             "UID STORE 4 +FLAGS (\\Answered)"],
            ["RESTART", "APPEND", "UID STORE 1:* +FLAGS.SILENT (\\Deleted)", "EXPUNGE",
             "APPEND"],
        ]
        for rnd in rounds:
            for cmd in rnd:
                if cmd == "APPEND":
                    self.expect(c.append("INBOX", msg(99)), "OK")
                elif cmd == "COMPACT":
                    self.server.admin("compact", self.user, "INBOX")
                elif cmd == "RESTART":
                    self.assertEqual(self.server.stop(), 0)
                    self.server.start()
                    c = self.login()
                    self.ok(c, "SELECT INBOX")
                else:
                    self.ok(c, cmd)
            dev = self.resync(dev)
            want = self.full()
            self.assertEqual(dev[2], want[2], "after %r" % rnd)
            self.assertEqual(dev[0], want[0])
            self.assertEqual(dev[1], want[1])


class QresyncBig(QresyncBase):
    """A resync of a few changes in a big mailbox costs what changed, not
    what the mailbox holds (bytes sent)."""

    users_per_class = 2
    N = 2000 if QUICK else 20000

    def test_resync_bytes(self):
        n = self.N
        self.server.import_mbox(self.user, "INBOX", [msg(i + 1) for i in range(n)])
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX", timeout=120)
        uv = self.code_value(r, "UIDVALIDITY")
        h0 = self.code_value(r, "HIGHESTMODSEQ")
        base = len(b"".join(u.raw for u in r.untagged))
        self.ok(q, "UNSELECT")
        c = self.login()
        self.ok(c, "SELECT INBOX", timeout=120)
        for u in (5, n // 3, n // 2, n - 7, n - 1):
            self.ok(c, "UID STORE %d +FLAGS (\\Flagged)" % u)
        for u in (17, n // 4, n // 2 + 1, n - 3, n):
            self.ok(c, "UID STORE %d +FLAGS.SILENT (\\Deleted)" % u)
        self.ok(c, "EXPUNGE")
        r = self.ok(q, "SELECT INBOX (QRESYNC (%d %d))" % (uv, h0), timeout=120)
        self.assertEqual(vanished(r, True), sorted([17, n // 4, n // 2 + 1, n - 3, n]))
        self.assertEqual(sorted(int(f["UID"]) for _, f in r.fetch_list()),
                         sorted([5, n // 3, n // 2, n - 7, n - 1]))
        size = len(b"".join(u.raw for u in r.untagged))
        # the usual responses plus ~60 bytes per change
        self.assertLess(size, base + 10 * 120, r.describe())
        # the same through UID FETCH (CHANGEDSINCE VANISHED)
        r = self.ok(q, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0, timeout=120)
        self.assertEqual(len(r.fetch_list()), 5)
        self.assertLess(len(b"".join(u.raw for u in r.untagged)), 10 * 120, r.describe())

    def test_resync_many_changes(self):
        """An answer of many lines (VANISHED (EARLIER) over several lines,
        a FETCH per changed message) written in steps is whole and exact:
        every sequence number is the message's rank among the survivors.
        Unless QUICK, more survivors change than a SELECT or FETCH lists at
        once (SESS_CHANGES_MAX, 16384, core/server/session.h): they are
        found by walking the view, and the answer must be the same."""
        n = self.N if QUICK else 26000
        self.server.import_mbox(self.user, "INBOX", [msg(i + 1) for i in range(n)])
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX", timeout=120)
        uv = self.code_value(r, "UIDVALIDITY")
        h0 = self.code_value(r, "HIGHESTMODSEQ")
        self.ok(q, "UNSELECT")
        c = self.login()
        self.ok(c, "SELECT INBOX", timeout=120)
        gone = [u for u in range(1, n + 1) if u % 3 == 0]
        changed = [u for u in range(1, n + 1) if u % 2 == 1 and u % 3]
        self.ok(c, "UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, gone)),
                timeout=120)
        self.ok(c, "EXPUNGE", timeout=120)
        self.ok(c, "UID STORE 1:* +FLAGS.SILENT ($odd)", timeout=120)
        self.ok(c, "UID STORE %s -FLAGS.SILENT ($odd)" %
                ",".join(str(u) for u in range(2, n + 1, 2) if u % 3), timeout=120)
        r = r0 = self.ok(q, "SELECT INBOX (QRESYNC (%d %d))" % (uv, h0), timeout=120)
        self.assertEqual(vanished(r, True), gone)
        lines = [u for u in r.untagged if u.raw.startswith(b"* VANISHED")]
        self.assertEqual(len(lines), (len(gone) + 1023) // 1024)
        live = [u for u in range(1, n + 1) if u % 3]
        rank = {u: i + 1 for i, u in enumerate(live)}
        got = [(num, int(f["UID"]), flagset(f)) for num, f in r.fetch_list()]
        # every survivor changed (the $odd store touched them all)
        self.assertEqual([u for _, u, _ in got], live)
        self.assertTrue(all(num == rank[u] for num, u, _ in got))
        self.assertEqual([u for _, u, fl in got if "$odd" in fl], changed)
        # FETCH CHANGEDSINCE over the whole view gives the same
        r = self.ok(q, "FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)" % h0, timeout=120)
        got = [(num, int(f["UID"]), flagset(f)) for num, f in r.fetch_list()]
        self.assertEqual([u for _, u, _ in got], live)
        self.assertTrue(all(num == rank[u] for num, u, _ in got))
        self.assertEqual([u for _, u, fl in got if "$odd" in fl], changed)
        # and nothing changed since the highest modseq the SELECT gave
        h1 = self.code_value(r0, "HIGHESTMODSEQ")
        r = self.ok(q, "FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)" % h1, timeout=120)
        self.assertEqual(r.fetch_list(), [])


class QresyncSlow(QresyncBase):
    """A QRESYNC SELECT with a long answer to a client that does not read:
    the worker's other sessions are served meanwhile, and the answer, read
    late, is byte for byte the one an eager client gets."""

    server_options = {"workers": "1", "max_output_buffer": str(64 << 10)}
    users_per_class = 2
    N = 4000 if QUICK else 20000

    def raw(self):
        sk = socket.create_connection((self.server.host, self.server.port), timeout=60)
        self.conns_raw.append(sk)
        buf = b""
        for cmd in (None, b"l LOGIN %s %s\r\n" % (self.user.encode(), self.password.encode()),
                    b"e ENABLE QRESYNC\r\n"):
            if cmd:
                sk.sendall(cmd)
            want = b"\r\n" if cmd is None else cmd.split(b" ")[0] + b" OK"
            while want not in buf or not buf.endswith(b"\r\n"):
                buf += sk.recv(1 << 16)
            buf = b""
        return sk

    def read_tagged(self, sk, tag, timeout=120):
        buf = b""
        deadline = time.monotonic() + timeout
        while not re.search(rb"(^|\r\n)" + tag + rb" [^\r]*\r\n$", buf):
            self.assertLess(time.monotonic(), deadline, buf[-300:])
            d = sk.recv(1 << 20)
            self.assertTrue(d, buf[-300:])
            buf += d
        return buf

    def test_slow_reader(self):
        self.conns_raw = []
        n = self.N
        self.server.import_mbox(self.user, "INBOX", [msg(i + 1) for i in range(n)])
        q = self.qlogin()
        r = self.ok(q, "SELECT INBOX", timeout=120)
        uv = self.code_value(r, "UIDVALIDITY")
        h0 = self.code_value(r, "HIGHESTMODSEQ")
        self.ok(q, "UID STORE 1:* +FLAGS.SILENT ($all)", timeout=120)
        self.ok(q, "UID STORE %s +FLAGS.SILENT (\\Deleted)" %
                ",".join(str(u) for u in range(1, n + 1, 5)), timeout=120)
        self.ok(q, "EXPUNGE", timeout=120)
        cmd = b"s SELECT INBOX (QRESYNC (%d %d))\r\n" % (uv, h0)
        try:
            eager = self.raw()
            eager.sendall(cmd)
            ref = self.read_tagged(eager, b"s")
            self.assertGreater(len(ref), 2 * (64 << 10))
            self.assertEqual(ref.count(b" FETCH (UID "), n - n // 5)
            slow = self.raw()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            slow.sendall(cmd)
            time.sleep(0.5)
            # the worker's only thread serves another session meanwhile
            t0 = time.monotonic()
            self.ok(self.login(), "NOOP")
            self.assertLess(time.monotonic() - t0, 5)
            self.assertEqual(self.read_tagged(slow, b"s"), ref)
            # one that goes away in the middle (its state is freed: ASan)
            gone = self.raw()
            gone.sendall(cmd)
            time.sleep(0.2)
            gone.close()
            self.ok(self.login(), "NOOP")
        finally:
            for sk in self.conns_raw:
                sk.close()


rs.parametrize(globals(), Qresync, QresyncDevice, QresyncBig, QresyncSlow)

if __name__ == "__main__":
    rs.main()
