#!/usr/bin/env python3
"""ringmaild: SORT, UID SORT, THREAD and UID THREAD (RFC 5256) with
DISPLAYFROM/DISPLAYTO (RFC 5957): every sort key and REVERSE on a crafted
mailbox whose expected orders are worked out by hand in the comments, both
threading algorithms, the search keys before them, and the errors.  With
RINGMAIL_TEST_DOVECOT=1 and Dovecot installed, the same commands are also
sent to a private Dovecot on loopback and the answers compared.  Runs once
per io backend."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


def msg(hdrs, pad):
    body = b"".join(b"%04d padding line\r\n" % k for k in range(pad // 20))
    return b"\r\n".join(h for h in hdrs) + b"\r\n\r\n" + body


# Message n (sequence number n after the mailbox is set up; UID n + 1).
MSGS = [
    # 1: base subject HELLO WORLD; sent 2 Jan 12:00 UTC
    (msg([b'From: "Zed" <alpha@ex.org>', b"To: beta@ex.org",
          b"Subject: Hello world", b"Date: Tue, 2 Jan 2024 12:00:00 +0000",
          b"Message-ID: <1@t>"], 6000), "05-Jan-2024 00:00:00 +0000"),
    # 2: a reply to 1; sent 2 Jan 12:00 UTC too (tie with 1: by sequence)
    (msg([b"From: Anna <zulu@ex.org>", b'To: "Yves" <alpha@ex.org>',
          b"Cc: cc2@ex.org", b"Subject: Re: hello world",
          b"Date: Tue, 2 Jan 2024 13:00:00 +0100", b"In-Reply-To: <1@t>",
          b"Message-ID: <2@t>"], 1000), "04-Jan-2024 00:00:00 +0000"),
    # 3: encoded subject "été"; no Date: its INTERNALDATE, 3 Jan 00:00
    (msg([b"From: mike@ex.org", b"Cc: aaa@ex.org",
          b"Subject: =?UTF-8?Q?=C3=A9t=C3=A9?=", b"Message-ID: <3@t>",
          b"References: <1@t> <\"2\"@t>"], 3000), "03-Jan-2024 00:00:00 +0000"),
    # 4: "[fwd: ...]" around HELLO WORLD (a forward); sent 1 Jan 08:00 UTC
    (msg([b"From: =?UTF-8?B?QsOpYQ==?= <bea@ex.org>", b"To: Xavier <xray@ex.org>",
          b"Subject: [fwd: Hello World]", b"Date: Mon, 1 Jan 2024 00:00:00 -0800",
          b"Message-ID: <4@t>"], 5000), "06-Jan-2024 00:00:00 +0000"),
    # 5: "Fwd: [blob] été (fwd)" is été; bad Date: INTERNALDATE (2023)
    (msg([b"From: charlie@ex.org", b"To: delta@ex.org",
          b"Subject: Fwd: [blob] =?ISO-8859-1?Q?=E9t=E9?= (fwd)",
          b"Date: not a date", b"Message-ID: <5@t>",
          b"In-Reply-To: <missing@t>"], 2000), "01-Jan-2023 00:00:00 +0000"),
    # 6: no From, a reference to the same missing parent; 3 Jan 00:00 UTC
    (msg([b"Subject: Other", b"Date: Wed, 3 Jan 2024 00:00:00 +0000",
          b"Message-ID: <6@t>", b"References: <missing@t>"], 4000),
     "02-Jan-2024 00:00:00 +0000"),
]

SORTS = [
    # keys (i;unicode-casemap, RFC 5051): 3 and 5 "E\u0301TE\u0301" (été
    # decomposed), 1 2 4 "HELLO WORLD", 6 "OTHER"
    ("SUBJECT", [3, 5, 1, 2, 4, 6]),
    ("REVERSE SUBJECT", [6, 1, 2, 4, 3, 5]),
    # 5 (2023), 4 (1 Jan), 1 = 2 (2 Jan 12:00), 3 = 6 (3 Jan 00:00)
    ("DATE", [5, 4, 1, 2, 3, 6]),
    ("REVERSE DATE", [3, 6, 1, 2, 4, 5]),
    ("ARRIVAL", [5, 6, 3, 2, 1, 4]),
    ("REVERSE ARRIVAL", [4, 1, 2, 3, 6, 5]),
    # addr-mailbox: "" alpha bea charlie mike zulu
    ("FROM", [6, 1, 4, 5, 3, 2]),
    ("REVERSE FROM", [2, 3, 5, 4, 1, 6]),
    # "" "" alpha beta delta xray
    ("TO", [3, 6, 2, 1, 5, 4]),
    ("CC", [1, 4, 5, 6, 3, 2]),
    ("SIZE", [2, 5, 3, 6, 4, 1]),
    ("REVERSE SIZE", [1, 4, 6, 3, 5, 2]),
    # "" Anna Béa charlie@ex.org mike@ex.org Zed
    ("DISPLAYFROM", [6, 2, 4, 5, 3, 1]),
    # "" "" beta@ex.org delta@ex.org Xavier Yves
    ("DISPLAYTO", [3, 6, 1, 5, 4, 2]),
    ("REVERSE DISPLAYTO", [2, 4, 5, 1, 3, 6]),
    ("SUBJECT DATE", [5, 3, 4, 1, 2, 6]),
    ("SUBJECT REVERSE DATE", [3, 5, 1, 2, 4, 6]),
    ("REVERSE SUBJECT REVERSE ARRIVAL", [6, 4, 1, 2, 3, 5]),
]


class SortCase(rs.ServerTestCase):
    users_per_class = 20

    def box(self):
        """The messages in a fresh mailbox after one expunged message, so
        that UIDs are sequence numbers + 1."""
        c = self.login()
        self.ok(c, "CREATE S")
        self.expect(c.append("S", msg([b"Subject: gone"], 100)), "OK")
        for raw, date in MSGS:
            self.expect(c.append("S", raw, None, date), "OK")
        self.ok(c, "SELECT S")
        self.ok(c, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        return c

    def sort(self, c, cmd):
        r = self.ok(c, cmd)
        lines = [u.raw for u in r.untagged if re.match(rb"\* SORT\b", u.raw)]
        self.assertEqual(len(lines), 1, r.describe())
        return [int(x) for x in lines[0].split()[2:]]

    def thread(self, c, cmd):
        r = self.ok(c, cmd)
        lines = [u.raw for u in r.untagged if re.match(rb"\* THREAD\b", u.raw)]
        self.assertEqual(len(lines), 1, r.describe())
        return lines[0].decode()

    def test_capability(self):
        c = self.login()
        caps = c.capabilities()
        for cap in ("SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"):
            self.assertIn(cap, caps)

    def test_sort_keys(self):
        c = self.box()
        for crit, want in SORTS:
            self.assertEqual(self.sort(c, "SORT (%s) UTF-8 ALL" % crit), want, crit)
            self.assertEqual(self.sort(c, "UID SORT (%s) US-ASCII ALL" % crit),
                             [n + 1 for n in want], "UID " + crit)

    def test_sort_search_keys(self):
        c = self.box()
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 NOT FROM zulu"), [5, 4, 1, 3, 6])
        self.assertEqual(self.sort(c, "SORT (SUBJECT) UTF-8 SUBJECT hello"), [1, 2, 4])
        self.assertEqual(self.sort(c, "SORT (SUBJECT) UTF-8 OR SUBJECT hello SUBJECT other"),
                         [1, 2, 4, 6])
        self.assertEqual(self.sort(c, 'SORT (SIZE) "UTF-8" 2:4'), [2, 3, 4])
        # UID SORT's search keys are SEARCH's: a sequence set is sequence numbers
        self.assertEqual(self.sort(c, "UID SORT (SIZE) UTF-8 2:4"), [3, 4, 5])
        self.assertEqual(self.sort(c, "UID SORT (SIZE) UTF-8 UID 2:4"), [3, 4, 2])
        self.assertEqual(self.sort(c, 'SORT (FROM) UTF-8 TEXT "not in mailbox"'), [])
        b = "été".encode()
        self.assertEqual(self.sort(c, b"SORT (ARRIVAL) UTF-8 SUBJECT {%d+}\r\n%s" % (len(b), b)),
                         [5, 3])

    def test_thread(self):
        c = self.box()
        # by (base subject, sent date): 4 1 2 | 6 | 5 3; threads by their
        # first message's sent date: 5 (2023), 4 (1 Jan), 6 (3 Jan)
        self.assertEqual(self.thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL"),
                         "* THREAD (5 3)(4 (1)(2))(6)")
        # 1 <- 2 <- 3 by references; 5 and 6 under a dummy <missing@t> (kept
        # at the top: two children); 4, a forward with 1's base subject, is
        # put under 1, which is not a reply; siblings by sent date
        self.assertEqual(self.thread(c, "THREAD REFERENCES UTF-8 ALL"),
                         "* THREAD ((5)(6))(1 (4)(2 3))")
        self.assertEqual(self.thread(c, "UID THREAD REFERENCES UTF-8 ALL"),
                         "* THREAD ((6)(7))(2 (5)(3 4))")
        self.assertEqual(self.thread(c, "UID THREAD ORDEREDSUBJECT UTF-8 ALL"),
                         "* THREAD (6 4)(5 (2)(3))(7)")
        # without 1, 2 is under a dummy for <1@t>: promoted at the top, as
        # the only child; 4 then joins it by subject under a new dummy
        self.assertEqual(self.thread(c, "THREAD REFERENCES UTF-8 NOT 1"),
                         "* THREAD ((5)(6))((4)(2 3))")
        self.assertEqual(self.thread(c, "THREAD REFERENCES UTF-8 SUBJECT nothing"),
                         "* THREAD")
        self.assertEqual(self.thread(c, "THREAD REFERENCES UTF-8 6"), "* THREAD (6)")

    def test_repeated_answers_follow_changes(self):
        """A SORT or THREAD asked again over the same messages may be
        answered from the last answer (core/server/qmemo.c); every change
        that matters must still show: new and expunged messages, shifted
        sequence numbers, flags a search key looks at, another mailbox with
        the same UIDs, another criterion, UID or not, another session."""
        c = self.box()
        queries = ["SORT (DATE) UTF-8 ALL", "SORT (REVERSE DATE) UTF-8 ALL",
                   "UID SORT (DATE) UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL",
                   "SORT (DATE) UTF-8 UNSEEN", "THREAD REFERENCES UTF-8 ALL",
                   "UID THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL"]

        def answers(conn):
            out = []
            for q in queries:
                r = self.ok(conn, q)
                out.append([u.raw for u in r.untagged
                            if re.match(rb"\* (SORT|THREAD)\b", u.raw)])
            return out
        first = answers(c)
        self.assertEqual(answers(c), first)
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 ALL"), [5, 4, 1, 2, 3, 6])
        # A new message, dated first: at the front.
        self.expect(c.append("S", msg([b"Subject: early", b"Date: 1 Jan 2000 00:00:00 +0000",
                                       b"Message-ID: <7@t>", b"In-Reply-To: <6@t>"], 100)),
                    "OK")
        self.ok(c, "NOOP")
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 ALL"), [7, 5, 4, 1, 2, 3, 6])
        self.assertIn("(6 7)", self.thread(c, "THREAD REFERENCES UTF-8 ALL"))
        # A flag that a search key looks at.
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 UNSEEN"), [7, 5, 4, 1, 2, 3, 6])
        self.ok(c, "STORE 4 +FLAGS (\\Seen)")
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 UNSEEN"), [7, 5, 1, 2, 3, 6])
        # An expunge shifts the sequence numbers (UIDs stay).
        uid_before = self.sort(c, "UID SORT (DATE) UTF-8 ALL")
        self.ok(c, "STORE 1 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 ALL"), [6, 4, 3, 1, 2, 5])
        self.assertEqual(self.sort(c, "UID SORT (DATE) UTF-8 ALL"),
                         [u for u in uid_before if u != 2])
        # Another mailbox, the same UIDs and sequence numbers, other messages.
        def dated_box(name, days):
            self.ok(c, "CREATE " + name)
            for d in days:
                self.expect(c.append(name, msg([b"Subject: %d" % d,
                                                b"Date: %d Jan 2024 00:00:00 +0000" % d], 10)),
                            "OK")
            self.ok(c, "SELECT " + name)
        dated_box("T", [2, 1])
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 ALL"), [2, 1])
        dated_box("U", [1, 2])
        self.assertEqual(self.sort(c, "SORT (DATE) UTF-8 ALL"), [1, 2])
        self.assertEqual(self.sort(c, "SORT (REVERSE DATE) UTF-8 ALL"), [2, 1])
        # Another session, the same mailbox: the same answers.
        c2 = self.login(select="U")
        self.assertEqual(self.sort(c2, "SORT (DATE) UTF-8 ALL"), [1, 2])

    def test_errors(self):
        c = self.box()
        mk = lambda: self.login(select="S")  # noqa: E731
        self.each(mk, ["SORT (NOSUCHKEY) UTF-8 ALL", "SORT () UTF-8 ALL",
                       "SORT (REVERSE) UTF-8 ALL", "SORT DATE UTF-8 ALL",
                       "SORT (DATE) UTF-8", "SORT (DATE)", "SORT",
                       "THREAD REFERENCES UTF-8", "THREAD (REFERENCES) UTF-8 ALL",
                       "SORT (DATE) UTF-8 NOSUCHSEARCHKEY"], "BAD")
        self.each(mk, ["SORT (DATE) KOI8-R ALL", "THREAD REFERENCES X-UNKNOWN ALL",
                       "UID SORT (DATE) ISO-8859-1 ALL"], "NO", "BADCHARSET")
        self.each(mk, ["THREAD NOSUCHALG UTF-8 ALL"], "NO")
        # not selected
        c2 = self.login()
        self.expect(c2.cmd("SORT (DATE) UTF-8 ALL"), "BAD")
        self.expect(c2.cmd("THREAD REFERENCES UTF-8 ALL"), "BAD")
        self.ok(c, "NOOP")


QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"


class SortBigCase(rs.ServerTestCase):
    """Past SORT_POOL_MIN (2000) messages the order step runs on the sync
    pool: the same answers, and a client that leaves meanwhile."""
    users_per_class = 6
    N = 21000 if QUICK else 30000

    def big(self):
        import random
        rng = random.Random(7)
        self.keys = []
        msgs = []
        for i in range(self.N):
            k = rng.randrange(5000)
            pre = rng.choice(["", "Re: ", "[list] ", "Fwd: Re: "])
            day = rng.randrange(1, 28)
            self.keys.append(("TOPIC-%05d" % k, day))
            msgs.append(b"From: a%d@ex.org\r\nSubject: %stopic-%05d\r\n"
                        b"Date: %d Jan 2024 10:00:00 +0000\r\nMessage-ID: <b%d@ex>\r\n"
                        b"References: <b%d@ex>\r\n\r\nx\r\n"
                        % (i, pre.encode(), k, day, i, rng.randrange(self.N)))
        self.server.import_mbox(self.user, "INBOX", msgs)
        return self.login(select="INBOX")

    def test_pool_order(self):
        c = self.big()
        r = self.ok(c, "SORT (SUBJECT) UTF-8 ALL", timeout=120)
        got = [int(x) for u in r.untagged if u.raw.startswith(b"* SORT")
               for x in u.raw.split()[2:]]
        want = sorted(range(1, self.N + 1), key=lambda n: (self.keys[n - 1][0], n))
        self.assertEqual(got, want)
        r = self.ok(c, "SORT (REVERSE DATE) UTF-8 ALL", timeout=120)
        got = [int(x) for u in r.untagged if u.raw.startswith(b"* SORT")
               for x in u.raw.split()[2:]]
        want = sorted(range(1, self.N + 1), key=lambda n: (-self.keys[n - 1][1], n))
        self.assertEqual(got, want)
        r = self.ok(c, "THREAD REFERENCES UTF-8 ALL", timeout=120)
        line = [u.raw for u in r.untagged if u.raw.startswith(b"* THREAD")][0]
        nums = [int(x) for x in re.findall(rb"\d+", line)]
        self.assertEqual(sorted(nums), list(range(1, self.N + 1)))
        self.assertEqual(line.count(b"("), line.count(b")"))
        # a bystander on the server is answered meanwhile
        b = self.login()
        self.ok(b, "NOOP")

    def test_pool_answers_kept(self):
        """A big answer is kept on the pool (qmemo_put runs there): asked
        again it is the same, and a new message still shows."""
        c = self.big()

        def ask(q):
            r = self.ok(c, q, timeout=120)
            return [u.raw for u in r.untagged if re.match(rb"\* (SORT|THREAD)\b", u.raw)]
        qs = ["SORT (REVERSE DATE) UTF-8 ALL", "UID THREAD REFERENCES UTF-8 ALL",
              "SORT (SUBJECT) UTF-8 1:5000"]
        first = [ask(q) for q in qs]
        self.assertEqual([ask(q) for q in qs], first)
        self.expect(c.append("INBOX", b"Subject: topic-00001\r\nMessage-ID: <new@ex>\r\n"
                             b"Date: 28 Jan 2024 12:00:00 +0000\r\nReferences: <b1@ex>\r\n"
                             b"\r\nx\r\n"), "OK")
        self.ok(c, "NOOP")
        again = [ask(q) for q in qs]
        self.assertEqual(again[0][0].split()[2], str(self.N + 1).encode())
        self.assertIn(b" %d" % (self.N + 1), again[1][0].replace(b"(", b" "))
        self.assertEqual(again[2], first[2])

    def test_leave_while_pooled(self):
        c = self.big()
        for cmd in ("THREAD REFERENCES UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL"):
            c.send(("x1 %s\r\n" % cmd).encode())
            c.close()
            self.conns.remove(c)
            c = self.login(select="INBOX")
        self.ok(c, "SORT (ARRIVAL) UTF-8 1:3")
        self.assertTrue(self.server.alive())


rs.parametrize(globals(), SortCase, SortBigCase)

if __name__ == "__main__":
    rs.main()
