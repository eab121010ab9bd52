#!/usr/bin/env python3
"""SORT, THREAD and SEARCH answers of ringmaild next to Dovecot's, on the
same generated corpus of awkward messages (compare_sort.py: stacked
"Re: Fwd: [list]" subjects, encoded words in several charsets, missing and
malformed Dates, addresses with comments and groups, broken, cyclic and
duplicate Message-IDs and References).

A private Dovecot (apt's dovecot-imapd: setup-deps installs it without
starting the system's; here a config of its own in a temp dir, loopback
only) and a ringmaild get the same APPENDs, then every SORT key (with
REVERSE), both THREAD algorithms, their UID forms and a set of SEARCH
queries.  Every answer must be the same, except the commands in
DIFFERENCES, where ours follows the RFC sentence given there (and in the
code it names).  A difference listed that no longer shows is reported,
not failed: the peer may have changed.

Needs root (Dovecot's mail processes run as nobody) and /usr/sbin/dovecot.
"""

import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from compare_sort import answers, corpus, commands  # noqa: E402

QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"

SENT_WHY = (
    "RFC 9051 6.4.4 says only \"Messages whose [RFC5322] Date: header field (disregarding "
    "time and timezone) is earlier than the specified date\"; for a message whose Date: is "
    "missing or unparseable we use its INTERNALDATE, as RFC 5256 2.2 does for SORT (\"If the "
    "sent date cannot be determined (a Date: header is missing or cannot be parsed), the "
    "INTERNALDATE for that message is used as the sent date\"), so that SENTBEFORE agrees "
    "with SORT (DATE) (core/search/search.h)")

# The command (as sent, without tag) -> why ours differs from Dovecot's.
DIFFERENCES = {
    "SORT (DISPLAYFROM) UTF-8 ALL":
        "RFC 5957 4: the derived-addr comes from the ENVELOPE, whose addr-name is the "
        "comment when there is no phrase (\"(Ann) <a@b>\"); Dovecot uses the comment only "
        "for \"a@b (Ann)\" (core/search/sort.c, put_address)",
    "UID SORT (REVERSE DISPLAYFROM) UTF-8 ALL": "as SORT (DISPLAYFROM)",
    "SORT (DISPLAYTO) UTF-8 ALL": "as SORT (DISPLAYFROM)",
    "UID SORT (REVERSE DISPLAYTO) UTF-8 ALL": "as SORT (DISPLAYFROM)",
    "SORT (DATE) KOI8-R ALL":
        "RFC 5256 3: \"The US-ASCII and [UTF-8] charsets MUST be implemented.  All other "
        "charsets are optional.\"  We answer NO [BADCHARSET (UTF-8 US-ASCII)] as SEARCH "
        "does (core/server/cmd_sort.c)",
    "SELECT INBOX":
        "RFC 8474 4.2: with OBJECTID, SELECT answers \"* OK [MAILBOXID (...)]\"; "
        "Dovecot 2.3 has no OBJECTID",
    # A message without a Date: header, or with one that cannot be parsed:
    # Dovecot takes its sent date for 1970, we take its INTERNALDATE.
    "SEARCH SENTBEFORE 2-Jan-2024": SENT_WHY,
    "SEARCH SENTON 2-Jan-2024": SENT_WHY,
    "SEARCH SENTSINCE 3-Jan-2024": SENT_WHY,
}

SEARCHES = [
    "SEARCH SUBJECT meeting", "SEARCH SUBJECT \"re: meeting\"", "SEARCH SUBJECT hello",
    "SEARCH CHARSET UTF-8 SUBJECT \"caf\u00e9\"", "SEARCH SUBJECT CAF", "SEARCH FROM alpha", "SEARCH FROM anna",
    "SEARCH TO zulu", "SEARCH CC mike", "SEARCH HEADER Message-ID dup",
    "SEARCH HEADER References missing", "SEARCH HEADER In-Reply-To \"sent by\"",
    "SEARCH BODY xxxxxxxxxx", "SEARCH TEXT Meeting", "SEARCH LARGER 1500",
    "SEARCH SMALLER 200", "SEARCH SENTBEFORE 2-Jan-2024", "SEARCH SENTON 2-Jan-2024",
    "SEARCH SENTSINCE 3-Jan-2024", "SEARCH BEFORE 10-Jan-2024", "SEARCH ON 5-Jan-2024",
    "SEARCH SINCE 20-Jan-2024", "SEARCH OR SUBJECT hello FROM bob",
    "SEARCH NOT SUBJECT re", "UID SEARCH 100:200 SUBJECT meeting", "SEARCH SUBJECT \"\"",
    "SEARCH HEADER X-Nope \"\"", "SEARCH FROM ex.org NOT TO ex.org",
]


def report(text):
    print("  [figure] " + text, file=sys.stderr)


def generated_searches(n, seed=9051):
    """n SEARCH programs built from the keys above (not SENT*: listed),
    with AND, OR and NOT, and as UID SEARCH."""
    import random
    rng = random.Random(seed)
    atoms = ["SUBJECT meeting", "SUBJECT re", "SUBJECT \"\"", "FROM alpha", "FROM \"(\"",
             "TO zulu", "TO ex.org", "CC mike", "HEADER Message-ID dup", "BODY xxxxx",
             "TEXT hello", "LARGER 1000", "SMALLER 500", "BEFORE 12-Jan-2024",
             "SINCE 8-Jan-2024", "ON 3-Jan-2024", "SEEN", "UNSEEN", "1:100", "UID 50:250",
             "HEADER References \"\"", "HEADER In-Reply-To m1", "ALL"]

    def key(depth):
        r = rng.random()
        if depth < 2 and r < 0.2:
            return "OR %s %s" % (key(depth + 1), key(depth + 1))
        if depth < 2 and r < 0.3:
            return "NOT %s" % key(depth + 1)
        if depth < 2 and r < 0.4:
            return "(%s %s)" % (key(depth + 1), key(depth + 1))
        return rng.choice(atoms)
    return ["%sSEARCH %s %s" % (rng.choice(["", "UID "]), key(0), key(0)) for _ in range(n)]


class CompareSort(unittest.TestCase):
    N = 400 if QUICK else 2000

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("Dovecot's mail processes need root to start")
        if not shutil.which("dovecot"):
            raise AssertionError("dovecot is not installed (tools/setup-deps.sh installs it)")

    def test_same_answers(self):
        msgs = corpus(self.N)
        cmds = commands() + SEARCHES + generated_searches(150)
        runs = answers(msgs, cmds)
        differ, unexplained = [], []
        for (cmd, ours, _r1), (_c2, theirs, _r2) in zip(runs["ringmail"].log,
                                                          runs["dovecot"].log):
            sent = cmd.split(" ", 2)[2]         # "A: tNN SORT ..." -> "SORT ..."
            if ours == theirs:
                continue
            differ.append(sent)
            if sent not in DIFFERENCES:
                unexplained.append("%s\n  ringmail: %s\n  dovecot:  %s" % (
                    sent, " | ".join(x[:400] for x in ours),
                    " | ".join(x[:400] for x in theirs)))
        for sent in DIFFERENCES:
            if sent not in differ:
                report("listed difference not seen (the peer may have changed): " + sent)
        report("%d of %d commands answered alike; %d differ as listed" % (
            len(runs["ringmail"].log) - len(differ), len(runs["ringmail"].log),
            len(differ) - len(unexplained)))
        self.assertEqual(unexplained, [], "answers that differ from Dovecot's without a reason "
                         "in DIFFERENCES:\n" + "\n".join(unexplained))


if __name__ == "__main__":
    rs.main()
