#!/usr/bin/env python3
"""ringmaild: ESORT (RFC 5267 3), PARTIAL (RFC 5267 4.4, RFC 9394) for SEARCH
and SORT, WITHIN (RFC 5032: OLDER / YOUNGER), and CONTEXT=SEARCH (RFC 5267
4: RETURN (UPDATE), ADDTO / REMOVEFROM after other sessions' APPEND,
STORE and EXPUNGE and the session's own, CANCELUPDATE, NOUPDATE).

The mailbox is test_imap_sort.py's: six messages whose sort orders are
worked out by hand there (SORTS), after one expunged message so that UIDs
are sequence numbers + 1.  ESORT answers with MIN/MAX the first/last message
in sort order and ALL in sort order; PARTIAL counts positions in the
answer's order (mailbox order for SEARCH, sort order for SORT), negative
ranges from the end.  WITHIN appends messages with an INTERNALDATE some
seconds in the past.  Runs once per io backend."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from test_imap_sort import MSGS, SORTS, msg  # noqa: E402

ORDER = dict(SORTS)


def imap_date(t):
    return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(t))


class EsearchCase(rs.ServerTestCase):
    users_per_class = 20

    def box(self):
        c = self.login()
        self.ok(c, "CREATE S")
        self.expect(c.append("S", msg([b"Subject: gone"], 100)), "OK")
        for raw, date in MSGS:
            self.expect(c.append("S", raw, None, date), "OK")
        self.ok(c, "SELECT S")
        self.ok(c, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        return c

    def es(self, c, cmd):
        """The one ESEARCH response's data after its correlator, which must
        carry the command's tag."""
        r = self.ok(c, cmd)
        lines = [u.raw.decode() for u in r.untagged if u.raw.startswith(b"* ESEARCH")]
        self.assertEqual(len(lines), 1, r.describe())
        self.assertEqual(r.of("SORT") + r.of("SEARCH"), [], r.describe())
        m = re.match(r'\* ESEARCH \(TAG "([^"]+)"\)(.*)$', lines[0])
        self.assertTrue(m, lines[0])
        self.assertEqual(m.group(1), r.tagged.raw.split()[0].decode())
        return m.group(2).strip()

    def test_capability(self):
        c = self.login()
        caps = c.capabilities()
        for cap in ("ESORT", "PARTIAL", "WITHIN", "SORT", "ESEARCH"):
            self.assertIn(cap, caps)

    # ---- ESORT ----------------------------------------------------------

    def test_esort_options(self):
        c = self.box()
        # REVERSE DATE: 3 6 1 2 4 5 (UIDs one more)
        self.assertEqual(ORDER["REVERSE DATE"], [3, 6, 1, 2, 4, 5])
        for opts, want, uwant in [
                ("MIN", "MIN 3", "MIN 4"),
                ("MAX", "MAX 5", "MAX 6"),
                ("COUNT", "COUNT 6", "COUNT 6"),
                # RFC 5267 3.2: ranges only where the numbers ascend
                ("ALL", "ALL 3,6,1:2,4:5", "ALL 4,7,2:3,5:6"),
                ("", "ALL 3,6,1:2,4:5", "ALL 4,7,2:3,5:6"),
                ("MIN MAX", "MIN 3 MAX 5", "MIN 4 MAX 6"),
                ("COUNT MAX ALL MIN", "MIN 3 MAX 5 ALL 3,6,1:2,4:5 COUNT 6",
                 "MIN 4 MAX 6 ALL 4,7,2:3,5:6 COUNT 6")]:
            self.assertEqual(self.es(c, "SORT RETURN (%s) (REVERSE DATE) UTF-8 ALL" % opts),
                             want, opts)
            self.assertEqual(self.es(c, "UID SORT RETURN (%s) (REVERSE DATE) UTF-8 ALL" % opts),
                             "UID " + uwant, "UID " + opts)
        # every sort key: ALL is the SORT answer, MIN/MAX its ends
        for crit, want in SORTS:
            got = self.es(c, "SORT RETURN (MIN MAX ALL COUNT) (%s) UTF-8 ALL" % crit)
            m = re.match(r"MIN (\d+) MAX (\d+) ALL (\S+) COUNT (\d+)$", got)
            self.assertTrue(m, got)
            nums = []
            for part in m.group(3).split(","):
                a, _, b = part.partition(":")
                self.assertTrue(not b or int(a) < int(b), "3.2: no descending range: " + got)
                nums += range(int(a), int(b or a) + 1)
            self.assertEqual(nums, want, crit)
            self.assertEqual((int(m.group(1)), int(m.group(2)), int(m.group(4))),
                             (want[0], want[-1], len(want)), crit)
        # search keys narrow it; an empty result has COUNT 0 and nothing else
        self.assertEqual(self.es(c, "SORT RETURN (ALL MIN) (SUBJECT) UTF-8 SUBJECT hello"),
                         "MIN 1 ALL 1:2,4")
        self.assertEqual(self.es(c, "SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 "
                                    "SUBJECT nothing"), "COUNT 0")
        self.assertEqual(self.es(c, "SORT RETURN (MIN) (DATE) UTF-8 SUBJECT nothing"), "")
        # without RETURN, SORT is unchanged
        r = self.ok(c, "SORT (REVERSE DATE) UTF-8 ALL")
        self.assertEqual(r.of("ESEARCH"), [])
        self.assertEqual([u.raw for u in r.of("SORT")], [b"* SORT 3 6 1 2 4 5"])

    def test_esort_modseq(self):
        """RFC 7162 3.1.5 with RFC 4731 3.2's rule: MIN or MAX alone report
        that message's MODSEQ (here the first/last in sort order), other
        options the highest of all."""
        c = self.box()
        self.ok(c, "STORE 3 +FLAGS (\\Flagged)")     # 3 gets the highest modseq
        r = self.ok(c, "FETCH 1:* (MODSEQ)")
        ms = {n: int(d["MODSEQ"][0]) for n, d in r.fetches().items()}
        # REVERSE DATE: 3 6 1 2 4 5
        self.assertEqual(self.es(c, "SORT RETURN (MAX) (REVERSE DATE) UTF-8 MODSEQ 1"),
                         "MAX 5 MODSEQ %d" % ms[5])
        self.assertEqual(self.es(c, "SORT RETURN (MIN) (REVERSE DATE) UTF-8 MODSEQ 1"),
                         "MIN 3 MODSEQ %d" % ms[3])
        self.assertEqual(self.es(c, "SORT RETURN (COUNT) (DATE) UTF-8 MODSEQ 1"),
                         "COUNT 6 MODSEQ %d" % max(ms.values()))

    def test_esort_rfc_example(self):
        """RFC 5267 3.3: "UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED
        UNKEYWORD $Junk"."""
        c = self.box()
        self.ok(c, "STORE 2 +FLAGS ($Junk)")
        self.ok(c, "STORE 4 +FLAGS (\\Deleted)")
        # REVERSE DATE 3 6 1 2 4 5 without 2 and 4, as UIDs
        self.assertEqual(self.es(c, "UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED "
                                    "UNKEYWORD $Junk"), "UID ALL 4,7,2,6")

    def test_esort_errors(self):
        self.box()
        mk = lambda: self.login(select="S")  # noqa: E731
        self.each(mk, ["SORT RETURN (ALL PARTIAL 1:2) (DATE) UTF-8 ALL",
                       "SORT RETURN (PARTIAL 1:2 PARTIAL 3:4) (DATE) UTF-8 ALL",
                       "SORT RETURN (SAVE) (DATE) UTF-8 ALL",
                       "SORT RETURN (NOSUCH) (DATE) UTF-8 ALL",
                       "SORT RETURN (PARTIAL 0:2) (DATE) UTF-8 ALL",
                       "SORT RETURN (PARTIAL 1:-2) (DATE) UTF-8 ALL",
                       "SORT RETURN (DATE) UTF-8 ALL", "SORT RETURN () (DATE) UTF-8",
                       "SORT RETURN MIN (DATE) UTF-8 ALL", "SORT RETURN",
                       "SORT RETURN (MIN)"], "BAD")
        self.each(mk, ["SORT RETURN (MIN) (DATE) KOI8-R ALL"], "NO", "BADCHARSET")

    # ---- PARTIAL ----------------------------------------------------------

    def test_partial_search(self):
        c = self.box()
        for rng, seqs in [("1:2", "1:2"), ("2:1", "1:2"), ("5:100", "5:6"), ("6:6", "6"),
                          ("7:10", "NIL"), ("4294967295:4294967295", "NIL"),
                          ("-1:-2", "5:6"), ("-2:-1", "5:6"), ("-6:-6", "1"),
                          ("-3:-100", "1:4"), ("-7:-9", "NIL")]:
            # RFC 5267 4.4: "the original range and a potentially missing
            # set of results"
            self.assertEqual(self.es(c, "SEARCH RETURN (PARTIAL %s) ALL" % rng),
                             "PARTIAL (%s %s)" % (rng, seqs), rng)
        self.assertEqual(self.es(c, "UID SEARCH RETURN (PARTIAL -1:-2) ALL"),
                         "UID PARTIAL (-1:-2 6:7)")
        # mailbox order, the gaps of the result included
        self.assertEqual(self.es(c, "UID SEARCH RETURN (PARTIAL 2:4) NOT 3"),
                         "UID PARTIAL (2:4 3,5:6)")
        # RFC 5267 4.1: no interaction with the other options: MIN, MAX and
        # COUNT are of the whole result
        self.assertEqual(self.es(c, "SEARCH RETURN (MIN MAX COUNT PARTIAL 2:3) ALL"),
                         "MIN 1 MAX 6 PARTIAL (2:3 2:3) COUNT 6")
        self.assertEqual(self.es(c, "SEARCH RETURN (PARTIAL 1:5) SUBJECT nothing"),
                         "PARTIAL (1:5 NIL)")

    def test_partial_rfc_example(self):
        """RFC 5267 4.4's A02-A04 on a mailbox of 30 results: a range that
        spans the end, one from the start, one beyond the end."""
        c = self.login()
        self.ok(c, "CREATE P")
        for i in range(32):
            self.expect(c.append("P", b"Subject: m%d\r\n\r\nx\r\n" % i,
                                 ["$Junk"] if i in (3, 17) else None), "OK")
        self.ok(c, "SELECT P")
        keys = "UNDELETED UNKEYWORD $Junk"
        self.assertEqual(self.es(c, "SEARCH RETURN (COUNT) " + keys), "COUNT 30")
        self.assertEqual(self.es(c, "UID SEARCH RETURN (PARTIAL 25:40) " + keys),
                         "UID PARTIAL (25:40 27:32)")
        self.assertEqual(self.es(c, "UID SEARCH RETURN (PARTIAL 1:5) " + keys),
                         "UID PARTIAL (1:5 1:3,5:6)")
        self.assertEqual(self.es(c, "UID SEARCH RETURN (PARTIAL 31:40) " + keys),
                         "UID PARTIAL (31:40 NIL)")
        # RFC 9394: the last results, newest first in the range's spelling
        self.assertEqual(self.es(c, "UID SEARCH RETURN (PARTIAL -1:-3) " + keys),
                         "UID PARTIAL (-1:-3 30:32)")

    def test_partial_save(self):
        """SAVE with PARTIAL keeps the page in $ (as MIN/MAX keep theirs,
        RFC 5182 2.4); FETCH $ shows it."""
        c = self.box()
        r = self.ok(c, "UID SEARCH RETURN (SAVE PARTIAL -2:-3) ALL")
        self.assertEqual([u.raw for u in r.of("ESEARCH")][0].split(b")", 1)[1].strip(),
                         b"UID PARTIAL (-2:-3 5:6)")
        r = self.ok(c, "UID FETCH $ (UID)")
        self.assertEqual(sorted(d["UID"] for d in r.fetches().values()), [5, 6])
        r = self.ok(c, "UID SEARCH RETURN (SAVE PARTIAL 10:12) ALL")
        self.assertEqual(self.es(c, "SEARCH RETURN (COUNT) $"), "COUNT 0")

    def test_partial_sort(self):
        c = self.box()
        # REVERSE DATE 3 6 1 2 4 5: positions in the sort order
        for rng, want in [("1:2", "3,6"), ("2:3", "6,1"), ("3:4", "1:2"), ("4:10", "2,4:5"),
                          ("7:8", "NIL"), ("-1:-2", "4:5"), ("-6:-6", "3"),
                          ("-3:-4", "1:2"), ("-5:-100", "3,6")]:
            self.assertEqual(self.es(c, "SORT RETURN (PARTIAL %s) (REVERSE DATE) UTF-8 ALL"
                                     % rng), "PARTIAL (%s %s)" % (rng, want), rng)
        self.assertEqual(self.es(c, "UID SORT RETURN (PARTIAL 1:2 MIN COUNT) (REVERSE DATE) "
                                    "UTF-8 ALL"), "UID MIN 4 PARTIAL (1:2 4,7) COUNT 6")

    def test_partial_errors(self):
        self.box()
        mk = lambda: self.login(select="S")  # noqa: E731
        self.each(mk, ["SEARCH RETURN (PARTIAL) ALL", "SEARCH RETURN (PARTIAL 0:1) ALL",
                       "SEARCH RETURN (PARTIAL 1:0) ALL", "SEARCH RETURN (PARTIAL -1:2) ALL",
                       "SEARCH RETURN (PARTIAL 1:*) ALL", "SEARCH RETURN (PARTIAL 3) ALL",
                       "SEARCH RETURN (PARTIAL 1:4294967296) ALL",
                       "SEARCH RETURN (PARTIAL \"1:2\") ALL",
                       # RFC 5267 4.4: "either one PARTIAL, one ALL, or neither"
                       "SEARCH RETURN (ALL PARTIAL 1:2) ALL",
                       "SEARCH RETURN (PARTIAL 1:2 PARTIAL 1:2) ALL"], "BAD")

    # ---- WITHIN -----------------------------------------------------------

    def test_within(self):
        c = self.login()
        self.ok(c, "CREATE W")
        now = int(time.time())
        # 1: 1000 s old, 2: 5000 s old (\Seen), 3: 2020, 4: 5 days old
        for age, flags in [(1000, None), (5000, ["\\Seen"]), (now - 1577836800, None),
                           (5 * 86400, None)]:
            self.expect(c.append("W", b"Subject: w\r\n\r\nx\r\n", flags,
                                 imap_date(now - age)), "OK")
        self.ok(c, "SELECT W")
        # a few seconds pass between the appends and the searches: every
        # bound is hundreds of seconds from a message
        for keys, want in [("YOUNGER 3000", [1]), ("OLDER 3000", [2, 3, 4]),
                           ("YOUNGER 10000", [1, 2]), ("OLDER 100", [1, 2, 3, 4]),
                           ("YOUNGER 500", []), ("OLDER 500000", [3]),
                           ("OLDER 1000000", [3]), ("NOT YOUNGER 10000", [3, 4]),
                           ("OLDER 3000 YOUNGER 500000", [2, 4]),
                           ("OR YOUNGER 3000 OLDER 1000000", [1, 3]),
                           ("younger 4294967295", [1, 2, 3, 4])]:
            self.assertEqual(self.ok(c, "SEARCH " + keys).search(), want, keys)
        # RFC 5032 4: "SEARCH UNSEEN YOUNGER 259200"
        self.assertEqual(self.ok(c, "SEARCH UNSEEN YOUNGER 259200").search(), [1])
        self.assertEqual(self.ok(c, "UID SEARCH YOUNGER 3000").search(), [1])
        self.assertEqual(self.es(c, "SEARCH RETURN (COUNT) OLDER 3000"), "COUNT 3")
        r = self.ok(c, "SORT (ARRIVAL) UTF-8 OLDER 3000")
        self.assertEqual([u.raw for u in r.of("SORT")], [b"* SORT 3 4 2"])
        # a message appended now is younger than a minute
        self.expect(c.append("W", b"Subject: w\r\n\r\nx\r\n"), "OK")
        self.ok(c, "NOOP")
        self.assertEqual(self.ok(c, "SEARCH YOUNGER 60").search(), [5])
        mk = lambda: self.login(select="W")  # noqa: E731
        self.each(mk, ["SEARCH OLDER 0", "SEARCH YOUNGER", "SEARCH OLDER -5",
                       "SEARCH YOUNGER 4294967296", "SEARCH OLDER x",
                       'SEARCH YOUNGER "60"'], "BAD")


def plain(n):
    return b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n)


class ContextCase(rs.ServerTestCase):
    users_per_class = 30

    def setup_box(self, n=6):
        c = self.login()
        self.ok(c, "CREATE C")
        for i in range(1, n + 1):
            self.expect(c.append("C", plain(i)), "OK")
        self.ok(c, "SELECT C")
        return c

    def start(self, c, cmd):
        """Run a searching command; its tag and its ESEARCH data."""
        r = self.ok(c, cmd)
        tag = r.tagged.raw.split()[0].decode()
        lines = [u.raw.decode() for u in r.of("ESEARCH")]
        self.assertEqual(len(lines), 1, r.describe())
        return tag, lines[0].split(")", 1)[1].strip()

    def updates(self, res_or_list, tag):
        """The ADDTO/REMOVEFROM data of tag's ESEARCH responses, in order."""
        items = res_or_list.untagged if hasattr(res_or_list, "untagged") else res_or_list
        out = []
        for u in items:
            m = re.match(r'\* ESEARCH \(TAG "([^"]+)"\)(.*)$', u.raw.decode())
            if m and m.group(1) == tag:
                out.append(m.group(2).strip())
        return out

    def test_capability(self):
        c = self.login()
        self.assertIn("CONTEXT=SEARCH", c.capabilities())
        self.assertIn("CONTEXT=SORT", c.capabilities())

    def test_rfc_examples(self):
        c = self.setup_box()
        self.ok(c, "STORE 2,4 +FLAGS ($Junk)")
        self.ok(c, "STORE 4:5 +FLAGS (\\Deleted)")
        # 4.2: "SEARCH RETURN (CONTEXT COUNT) UNDELETED UNKEYWORD $Junk"
        self.assertEqual(self.start(c, "SEARCH RETURN (CONTEXT COUNT) UNDELETED "
                                       "UNKEYWORD $Junk")[1], "COUNT 3")
        # 4.3: "B01 UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk",
        # then "B01 SORT RETURN (UPDATE) FLAGGED" is "BAD Tag reuse"
        c.send(b"B01 UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk\r\n")
        untagged, tagged, _ = c.read_until_tag("B01")
        self.assertEqual(tagged.status()[0], "OK")
        self.assertEqual([u.raw for u in untagged], [b'* ESEARCH (TAG "B01") UID COUNT 1'])
        for again in (b"B01 SEARCH RETURN (UPDATE) FLAGGED", b"B01 UID SEARCH RETURN "
                      b"(UPDATE COUNT) ALL", b"B01 SORT RETURN (UPDATE) (DATE) UTF-8 FLAGGED"):
            c.send(again + b"\r\n")
            untagged, tagged, _ = c.read_until_tag("B01")
            self.assertEqual(tagged.status()[0], "BAD", tagged.raw)
        # without UPDATE the tag may be used again
        c.send(b"B01 SEARCH RETURN (COUNT) ALL\r\n")
        self.assertEqual(c.read_until_tag("B01")[1].status()[0], "OK")
        # 4.3.3: messages 1 and 3 (UIDs 1, 3) get \Deleted and $Junk
        r = self.ok(c, "STORE 1,3 +FLAGS (\\Deleted $Junk)")
        self.assertEqual(self.updates(r, "B01"), ["UID ADDTO (0 1,3)"])
        # 4.3.4: "S: * ESEARCH (TAG "B01") UID REMOVEFROM (0 32768)" before the EXPUNGE
        r = self.ok(c, "EXPUNGE")
        raws = [u.raw for u in r.untagged]
        self.assertEqual(raws[0], b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 1,3:4)', raws)
        self.assertEqual([x for x in raws[1:] if x.endswith(b"EXPUNGE")],
                         [b"* 5 EXPUNGE", b"* 4 EXPUNGE", b"* 3 EXPUNGE", b"* 1 EXPUNGE"])
        # 4.3.5 "C: B04 CANCELUPDATE "B01"" / "S: B04 OK"
        self.ok(c, 'CANCELUPDATE "B01"')
        r = self.ok(c, "STORE 1:* +FLAGS (\\Deleted $Junk)")
        self.assertEqual(r.of("ESEARCH"), [])

    def test_other_session_append(self):
        a = self.setup_box(4)
        b = self.login(select="C")
        tag, data = self.start(a, "UID SEARCH RETURN (UPDATE) SUBJECT hot")
        self.assertEqual(data, "UID")          # UPDATE alone asks for no data
        seqtag, data = self.start(a, "SEARCH RETURN (UPDATE ALL) OR SUBJECT hot SUBJECT m2")
        self.assertEqual(data, "ALL 2")
        for subj in (b"hot one", b"cold", b"hot two"):
            self.expect(b.append("C", b"Subject: " + subj + b"\r\n\r\nx\r\n"), "OK")
        r = self.ok(a, "NOOP")
        raws = [u.raw for u in r.untagged]
        self.assertIn(b"* 7 EXISTS", raws)
        exists = raws.index(b"* 7 EXISTS")
        self.assertEqual(self.updates(r, tag), ["UID ADDTO (0 5,7)"])
        self.assertEqual(self.updates(r, seqtag), ["ADDTO (0 5,7)"])
        # 4.3.3: ADDTO for appended messages "MUST be sent after the EXISTS"
        for t in (tag, seqtag):
            pos = [i for i, x in enumerate(raws) if x.startswith(b'* ESEARCH (TAG "%s")'
                                                                   % t.encode())]
            self.assertTrue(pos and pos[0] > exists, raws)
        # nothing twice
        self.assertEqual(self.updates(self.ok(a, "NOOP"), tag), [])

    def test_other_session_store_and_expunge(self):
        a = self.setup_box(6)
        b = self.login(select="C")
        self.ok(b, "STORE 2 +FLAGS (\\Flagged)")
        tag, data = self.start(a, "SEARCH RETURN (UPDATE MIN) FLAGGED")
        self.assertEqual(data, "MIN 2")
        utag, _ = self.start(a, "UID SEARCH RETURN (UPDATE) UNDELETED")
        self.ok(b, "STORE 4,5 +FLAGS (\\Flagged)")
        self.ok(b, "STORE 2 -FLAGS (\\Flagged)")
        self.ok(b, "STORE 1 +FLAGS (\\Seen)")        # no change of the match
        r = self.ok(a, "NOOP")
        self.assertEqual(self.updates(r, tag), ["REMOVEFROM (0 2) ADDTO (0 4:5)"])
        self.assertEqual(self.updates(r, utag), [])
        # another session expunges 3 and 4: REMOVEFROM before the EXPUNGEs,
        # numbered as the client still knows them
        self.ok(b, "STORE 3:4 +FLAGS (\\Deleted)")
        self.ok(b, "EXPUNGE")
        r = self.ok(a, "NOOP")
        raws = [u.raw for u in r.untagged]
        self.assertEqual(self.updates(r, tag), ["REMOVEFROM (0 4)"])
        self.assertEqual(self.updates(r, utag), ["UID REMOVEFROM (0 3:4)"])
        first_expunge = min(i for i, x in enumerate(raws) if x.endswith(b"EXPUNGE"))
        for t in (tag, utag):
            pos = [i for i, x in enumerate(raws) if x.startswith(b'* ESEARCH (TAG "%s")'
                                                                   % t.encode())]
            self.assertTrue(pos[0] < first_expunge, raws)
        # a FETCH holds expunges back: the REMOVEFROM may come first, the
        # EXPUNGE with a later command
        self.ok(b, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(b, "EXPUNGE")
        r = self.ok(a, "FETCH 1 (UID)")
        self.assertEqual([u.raw for u in r.untagged if u.raw.endswith(b"EXPUNGE")], [])
        self.assertEqual(self.updates(r, utag), ["UID REMOVEFROM (0 1)"])
        r = self.ok(a, "NOOP")
        self.assertIn(b"* 1 EXPUNGE", [u.raw for u in r.untagged])
        self.assertEqual(self.updates(r, utag), [])
        # now: 2 5 6 (seq 1 2 3), 5 flagged
        self.assertEqual(self.start(a, "SEARCH RETURN (ALL) FLAGGED")[1], "ALL 2")
        self.assertEqual(self.start(a, "UID SEARCH RETURN (ALL) UNDELETED")[1],
                         "UID ALL 2,5:6")

    def test_own_changes(self):
        a = self.setup_box(3)
        tag, _ = self.start(a, "UID SEARCH RETURN (UPDATE) KEYWORD $x")
        r = self.ok(a, "STORE 2 +FLAGS.SILENT ($x)")
        self.assertEqual(self.updates(r, tag), ["UID ADDTO (0 2)"])
        r = self.ok(a, "UID STORE 2 -FLAGS ($x)")
        self.assertEqual(self.updates(r, tag), ["UID REMOVEFROM (0 2)"])
        # the APPEND's own answer announces the EXISTS, and the ADDTO after it
        r = self.expect(a.append("C", plain(9), ["$x"]), "OK")
        raws = [u.raw for u in r.untagged]
        self.assertEqual(self.updates(r, tag), ["UID ADDTO (0 4)"])
        self.assertLess(raws.index(b"* 4 EXISTS"),
                        raws.index(b'* ESEARCH (TAG "%s") UID ADDTO (0 4)' % tag.encode()))
        self.assertEqual(self.updates(self.ok(a, "NOOP"), tag), [])
        # MOVE out of the mailbox removes it
        self.ok(a, "CREATE D")
        r = self.ok(a, "UID MOVE 4 D")
        self.assertEqual(self.updates(r, tag), ["UID REMOVEFROM (0 4)"])

    def test_sorted_context(self):
        """CONTEXT=SORT: positions in the sort order (RFC 5267 4.3.3,
        4.3.4), removals counted after the ones before them."""
        a = self.login()
        self.ok(a, "CREATE C")
        # SUBJECT order: alpha 2, bravo 4, charlie 6, delta 1, echo 3, foxtrot 5
        for subj in (b"delta", b"alpha", b"echo", b"bravo", b"foxtrot", b"charlie"):
            self.expect(a.append("C", b"Subject: " + subj + b"\r\n\r\nx\r\n"), "OK")
        self.ok(a, "SELECT C")
        b = self.login(select="C")
        tag, data = self.start(a, "UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 FLAGGED")
        self.assertEqual(data, "UID")
        stag, data = self.start(a, "SORT RETURN (UPDATE ALL) (REVERSE SUBJECT) UTF-8 UNSEEN")
        self.assertEqual(data, "ALL 5,3,1,6,4,2")
        self.ok(b, "STORE 1,4 +FLAGS (\\Flagged)")
        r = self.ok(a, "NOOP")
        self.assertEqual(self.updates(r, tag), ["UID ADDTO (1 4 2 1)"])
        self.ok(b, "STORE 6 +FLAGS (\\Flagged)")
        self.ok(b, "STORE 3,6 +FLAGS (\\Seen)")
        r = self.ok(a, "NOOP")
        self.assertEqual(self.updates(r, tag), ["UID ADDTO (2 6)"])
        # 5 3 1 6 4 2 without 3 (position 2) and 6 (position 4, then 3)
        self.assertEqual(self.updates(r, stag), ["REMOVEFROM (2 3 3 6)"])
        self.expect(b.append("C", b"Subject: aardvark\r\n\r\nx\r\n", ["\\Flagged"]), "OK")
        r = self.ok(a, "NOOP")
        self.assertEqual(self.updates(r, tag), ["UID ADDTO (1 7)"])
        self.assertEqual(self.updates(r, stag), ["ADDTO (5 7)"])
        self.ok(b, "STORE 4 -FLAGS (\\Flagged)")
        r = self.ok(a, "NOOP")
        self.assertEqual(self.updates(r, tag), ["UID REMOVEFROM (2 4)"])
        # 7 6 1: 1 and 7 expunged: 7 at 1, then 1 at 3 - 1; and 5 1 4 2 7:
        # 1 at 2, then 7 at 5 - 1
        self.ok(b, "STORE 1,7 +FLAGS (\\Deleted)")
        self.ok(b, "EXPUNGE")
        r = self.ok(a, "NOOP")
        raws = [u.raw for u in r.untagged]
        self.assertEqual(self.updates(r, tag), ["UID REMOVEFROM (1 7 2 1)"])
        self.assertEqual(self.updates(r, stag), ["REMOVEFROM (2 1 4 7)"])
        self.assertLess(raws.index(b'* ESEARCH (TAG "%s") UID REMOVEFROM (1 7 2 1)'
                                   % tag.encode()), raws.index(b"* 7 EXPUNGE"))
        self.assertEqual(self.start(a, "UID SORT RETURN (ALL) (SUBJECT) UTF-8 FLAGGED")[1],
                         "UID ALL 6")
        self.assertEqual(self.start(a, "SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 UNSEEN")[1],
                         "ALL 4,3,1")
        self.ok(a, 'CANCELUPDATE "%s" "%s"' % (tag, stag))
        self.expect(a.cmd("THREAD RETURN (UPDATE) REFERENCES UTF-8 ALL"), "NO")

    def test_frozen_sequence_numbers(self):
        """RFC 5267 4.3: "any message sequence numbers used in the search
        program are evaluated at the time the command is received"."""
        a = self.setup_box(5)
        b = self.login(select="C")
        tag, data = self.start(a, "SEARCH RETURN (UPDATE COUNT) 2:* FLAGGED")
        self.assertEqual(data, "COUNT 0")
        ltag, _ = self.start(a, "UID SEARCH RETURN (UPDATE) UID 4:* FLAGGED")
        self.ok(b, "STORE 1 +FLAGS (\\Flagged)")
        self.ok(b, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(b, "EXPUNGE")
        self.expect(b.append("C", plain(6), ["\\Flagged"]), "OK")
        # 2:* still names UIDs 2..5, not the new 6, and "*" of the UID set
        # was 5; the ADDTO comes before the EXPUNGE of 1, so it numbers
        # them 2:5 (after the EXPUNGE they are 1:4)
        self.ok(b, "STORE 1:* +FLAGS (\\Flagged)")
        r = self.ok(a, "NOOP")
        raws = [u.raw for u in r.untagged]
        self.assertEqual(self.updates(r, tag), ["ADDTO (0 2:5)"])
        self.assertEqual(self.updates(r, ltag), ["UID ADDTO (0 4:5)"])
        self.assertLess(raws.index(b'* ESEARCH (TAG "%s") ADDTO (0 2:5)' % tag.encode()),
                        raws.index(b"* 1 EXPUNGE"))
        self.assertEqual(self.start(a, "SEARCH RETURN (ALL) FLAGGED")[1], "ALL 1:5")

    def test_idle(self):
        a = self.setup_box(2)
        b = self.login(select="C")
        tag, _ = self.start(a, "UID SEARCH RETURN (UPDATE) SEEN")
        a.send(b"i1 IDLE\r\n")
        self.assertTrue(a.read().continuation)
        self.ok(b, "STORE 2 +FLAGS (\\Seen)")
        got = []
        deadline = time.monotonic() + 10
        while not self.updates(got, tag) and time.monotonic() < deadline:
            got += a.pending(0.2)
        self.assertEqual(self.updates(got, tag), ["UID ADDTO (0 2)"])
        a.send(b"DONE\r\n")
        self.assertEqual(a.read_until_tag("i1")[1].status()[0], "OK")

    def test_cancel_and_limits(self):
        a = self.setup_box(2)
        mk = lambda: self.login(select="C")  # noqa: E731
        self.each(mk, ["CANCELUPDATE", 'CANCELUPDATE "nosuch"', "CANCELUPDATE tag",
                       "CANCELUPDATE {1+}\r\nx"], "BAD")
        # 4.3.1: "Servers MUST provide at least one updating context per
        # client"; past the limit, "* NO [NOUPDATE "tag"]" and the other
        # options still honoured
        tags = [self.start(a, "UID SEARCH RETURN (UPDATE) SEEN")[0] for _ in range(16)]
        r = self.ok(a, "UID SEARCH RETURN (UPDATE COUNT) SEEN")
        t17 = r.tagged.raw.split()[0].decode()
        self.assertEqual([u.raw for u in r.untagged],
                         [b'* ESEARCH (TAG "%s") UID COUNT 0' % t17.encode(),
                          b'* NO [NOUPDATE "%s"] Too many contexts' % t17.encode()])
        # a bad tag among good ones cancels none
        self.expect(a.cmd('CANCELUPDATE "%s" "nosuch"' % tags[0]), "BAD")
        self.ok(a, 'CANCELUPDATE "%s" "%s"' % (tags[0], tags[1]))
        self.expect(a.cmd('CANCELUPDATE "%s"' % tags[0]), "BAD")
        r = self.ok(a, "STORE 1 +FLAGS (\\Seen)")
        self.assertEqual(sorted(t for t in tags if self.updates(r, t)), sorted(tags[2:]))
        # closing the mailbox ends them all
        self.ok(a, "SELECT C")
        self.expect(a.cmd('CANCELUPDATE "%s"' % tags[5]), "BAD")
        r = self.ok(a, "STORE 2 +FLAGS (\\Seen)")
        self.assertEqual(r.of("ESEARCH"), [])
        self.ok(a, "UNSELECT")
        self.expect(a.cmd('CANCELUPDATE "%s"' % tags[5]), "BAD")


def expand(text):
    """'4,7,2:3' -> [4, 7, 2, 3] (the order kept; a:b ascending)."""
    out = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        a, b = int(a), int(b or a)
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


class Client:
    """A client's copy of its contexts' results, kept up to date from the
    updates alone (RFC 5267 4.3.2: "The client MUST process ADDTO and
    REMOVEFROM return data items in the order they appear") and from
    EXPUNGE for sequence numbers."""

    def __init__(self, tc):
        self.tc = tc
        self.lists = {}         # tag -> [numbers in the context's order]
        self.seqs = set()       # tags numbered by sequence numbers
        self.pairs = {}         # (kind, positioned) -> pairs processed
        self.expunges = 0

    def take(self, responses):
        for u in responses:
            raw = u.raw.decode()
            m = re.match(r"\* (\d+) EXPUNGE$", raw)
            if m:
                n = int(m.group(1))
                self.expunges += 1
                for t in self.seqs:
                    self.tc.assertNotIn(n, self.lists[t], "REMOVEFROM before EXPUNGE")
                    self.lists[t] = [x - 1 if x > n else x for x in self.lists[t]]
                continue
            m = re.match(r'\* ESEARCH \(TAG "([^"]+)"\)(?: UID)?((?: (?:ADDTO|REMOVEFROM) '
                         r'\([^)]*\))+)$', raw)
            if not m or m.group(1) not in self.lists:
                continue
            lst = self.lists[m.group(1)]
            for kind, body in re.findall(r"(ADDTO|REMOVEFROM) \(([^)]*)\)", m.group(2)):
                toks = body.split()
                self.tc.assertEqual(len(toks) % 2, 0, raw)
                for pos, st in zip(toks[0::2], toks[1::2]):
                    pos, nums = int(pos), expand(st)
                    key = (kind, pos > 0)
                    self.pairs[key] = self.pairs.get(key, 0) + 1
                    if kind == "ADDTO" and pos == 0:
                        lst.extend(nums)
                        lst.sort()
                    elif kind == "ADDTO":
                        self.tc.assertLessEqual(pos, len(lst) + 1, raw)
                        lst[pos - 1:pos - 1] = nums
                    elif pos == 0:
                        for x in nums:
                            self.tc.assertIn(x, lst, raw)
                            lst.remove(x)
                    else:
                        self.tc.assertEqual(lst[pos - 1:pos - 1 + len(nums)], nums, raw)
                        del lst[pos - 1:pos - 1 + len(nums)]


class ContextModelCase(rs.ServerTestCase):
    """Random changes by two sessions; after each round the results a
    client keeps from the updates equal a fresh search, for SEARCH and
    SORT contexts, by UID and by sequence number."""
    users_per_class = 4
    WORDS = ["delta", "alpha", "echo", "bravo", "foxtrot", "charlie", "Re: alpha", "golf"]

    def test_random_rounds(self):
        import random
        rng = random.Random(5267)
        a = self.login()
        self.ok(a, "CREATE M")
        for i in range(12):
            self.expect(a.append("M", b"Subject: %s\r\n\r\nx\r\n"
                                 % rng.choice(self.WORDS).encode(),
                                 ["\\Flagged"] if i % 3 == 0 else None), "OK")
        self.ok(a, "SELECT M")
        b = self.login(select="M")
        client = Client(self)
        queries = [
            ("UID SEARCH", "FLAGGED", None),
            ("SEARCH", "UNSEEN", None),
            ("UID SORT", "OR FLAGGED SUBJECT alpha", "(SUBJECT)"),
            ("SORT", "UNSEEN", "(REVERSE SUBJECT)"),
            ("UID SORT", "NOT FLAGGED", "(REVERSE ARRIVAL SUBJECT)"),
        ]

        def fresh(cmd, keys, crit):
            if crit:
                r = self.ok(a, "%s RETURN (ALL) %s UTF-8 %s" % (cmd, crit, keys))
            else:
                r = self.ok(a, "%s RETURN (ALL) %s" % (cmd, keys))
            client.take(r.untagged)
            m = re.search(r" ALL (\S+)", r.of("ESEARCH")[0].raw.decode())
            return expand(m.group(1)) if m else []

        tags = []
        for cmd, keys, crit in queries:
            line = ("%s RETURN (UPDATE ALL) %s UTF-8 %s" % (cmd, crit, keys) if crit
                    else "%s RETURN (UPDATE ALL) %s" % (cmd, keys))
            r = self.ok(a, line)
            tag = r.tagged.raw.split()[0].decode()
            m = re.search(r" ALL (\S+)", r.of("ESEARCH")[0].raw.decode())
            client.lists[tag] = expand(m.group(1)) if m else []
            if not cmd.startswith("UID"):
                client.seqs.add(tag)
            tags.append(tag)
        for rnd in range(25):
            who = b if rnd % 4 else a
            r = self.ok(b, "SEARCH ALL")
            count = len(r.search() or [])
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(5)
                if op <= 1 and count:
                    msgs = ",".join(str(rng.randrange(1, count + 1))
                                    for _ in range(rng.randrange(1, 4)))
                    flag = rng.choice(["\\Flagged", "\\Seen"])
                    res = self.ok(who, "STORE %s %sFLAGS (%s)" % (msgs, rng.choice("+-"), flag))
                    if who is a:
                        client.take(res.untagged)
                elif op == 2:
                    flags = rng.choice([None, ["\\Flagged"], ["\\Seen"]])
                    res = self.expect(who.append("M", b"Subject: %s\r\n\r\nx\r\n"
                                                 % rng.choice(self.WORDS).encode(), flags),
                                      "OK")
                    if who is a:
                        client.take(res.untagged)
                elif op == 3 and count > 3:
                    res = self.ok(b, "STORE %d +FLAGS (\\Deleted)" % rng.randrange(1, count + 1))
                    self.ok(b, "EXPUNGE")
                    count -= 1
            client.take(self.ok(a, "NOOP").untagged)
            for tag, (cmd, keys, crit) in zip(tags, queries):
                self.assertEqual(client.lists[tag], fresh(cmd, keys, crit),
                                 "round %d: %s %s %s" % (rnd, cmd, crit or "", keys))
        # every kind of update was exercised
        for key in (("ADDTO", False), ("ADDTO", True), ("REMOVEFROM", False),
                    ("REMOVEFROM", True)):
            self.assertGreater(client.pairs.get(key, 0), 3, (key, client.pairs))
        self.assertGreater(client.expunges, 3)


class ContextBigCase(rs.ServerTestCase):
    """Past 16384 changed messages a context evaluates the whole view, in
    slices within the sync: the same updates, and a bystander is answered
    meanwhile."""
    users_per_class = 4
    N = 17000

    def test_change_of_everything(self):
        self.server.import_mbox(self.user, "INBOX", [
            b"Subject: %s %d\r\n\r\nx\r\n" % (b"odd" if i % 2 else b"even", i)
            for i in range(1, self.N + 1)])
        a = self.login(select="INBOX")
        b = self.login(select="INBOX")
        r = self.ok(a, "UID SEARCH RETURN (UPDATE COUNT) FLAGGED SUBJECT odd")
        tag = r.tagged.raw.split()[0].decode()
        r = self.ok(a, "SEARCH RETURN (UPDATE COUNT) NOT FLAGGED")
        stag = r.tagged.raw.split()[0].decode()
        self.ok(b, "STORE 1:* +FLAGS.SILENT (\\Flagged)", timeout=120)
        self.ok(b, "STORE 2 -FLAGS.SILENT (\\Flagged)")
        a.send(b"n1 NOOP\r\n")
        self.ok(self.login(), "NOOP")
        untagged, tagged, _ = a.read_until_tag("n1", 120)
        ups = {}
        for u in untagged:
            m = re.match(r'\* ESEARCH \(TAG "([^"]+)"\) (.*)$', u.raw.decode())
            if m:
                ups.setdefault(m.group(1), []).append(m.group(2))
        odd = ",".join("%d" % i for i in range(1, self.N + 1, 2))
        self.assertEqual(ups[tag], ["UID ADDTO (0 %s)" % odd])
        self.assertEqual(ups[stag], ["REMOVEFROM (0 1,3:%d)" % self.N])


rs.parametrize(globals(), EsearchCase, ContextCase, ContextModelCase, ContextBigCase)

if __name__ == "__main__":
    rs.main()
