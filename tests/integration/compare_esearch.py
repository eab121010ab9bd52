#!/usr/bin/env python3
"""ESORT, PARTIAL, WITHIN and CONTEXT=SEARCH (RFC 5267, RFC 9394, RFC 5032)
answers of ringmaild next to Dovecot's.

The same sessions go to a ringmaild (RINGMAILD, as the integration tests)
and to a private Dovecot (compare_condstore.py's: apt's dovecot-imapd, a
config of its own in a temp dir, loopback only; never the system instance):
test_imap_sort.py's six messages and three with an INTERNALDATE some
seconds back, then ESORT with each return option, PARTIAL ranges for SEARCH
and SORT, OLDER/YOUNGER, and a context (RETURN (UPDATE)) while a second
session appends, stores and expunges.  Prints each command with both
answers, normalized as compare_condstore.py does; lines that differ are
marked "!".  Exit status 0 whatever differs: each difference where we keep
ours has the RFC sentence in the code.

    RINGMAILD=build/ringmaild python3 tests/integration/compare_esearch.py

Needs root (Dovecot's mail processes run as nobody) and /usr/sbin/dovecot."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_condstore import print_diffs, run_both  # noqa: E402
from test_imap_sort import MSGS  # noqa: E402


def imap_date(t):
    return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(t))


def script(run, now):
    a = run.s("A")
    run.do("A", "CREATE S")
    for raw, date in MSGS:
        a.expect(a.append("S", raw, None, date), "OK")
    for age in (1000, 5000, 400000):
        a.expect(a.append("S", b"Subject: within\r\n\r\nx\r\n", None,
                          imap_date(now - age)), "OK")
    run.do("A", "SELECT S")
    for crit in ("REVERSE DATE", "SUBJECT", "ARRIVAL", "REVERSE SIZE"):
        for opts in ("MIN", "MAX", "COUNT", "ALL", "", "MIN MAX COUNT ALL"):
            run.do("A", "SORT RETURN (%s) (%s) UTF-8 ALL" % (opts, crit))
            run.do("A", "UID SORT RETURN (%s) (%s) UTF-8 ALL" % (opts, crit))
    run.do("A", "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 SUBJECT nothing")
    run.do("A", "UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk")
    for rng in ("1:3", "3:1", "2:4", "5:20", "9:9", "10:20", "4294967295:1"):
        run.do("A", "SEARCH RETURN (PARTIAL %s) ALL" % rng)
        run.do("A", "UID SEARCH RETURN (PARTIAL %s MIN MAX COUNT) NOT 3" % rng)
        run.do("A", "SORT RETURN (PARTIAL %s) (REVERSE DATE) UTF-8 ALL" % rng)
    for rng in ("-1:-3", "-3:-1", "-9:-20"):
        run.do("A", "SEARCH RETURN (PARTIAL %s) ALL" % rng)
    for bad in ("ALL PARTIAL 1:2", "PARTIAL 0:2", "PARTIAL 1:*", "PARTIAL"):
        run.do("A", "SEARCH RETURN (%s) ALL" % bad)
    for keys in ("YOUNGER 3000", "OLDER 3000", "YOUNGER 10000", "OLDER 500000",
                 "UNSEEN YOUNGER 259200", "OLDER 0", "YOUNGER x"):
        run.do("A", "SEARCH " + keys)
    run.do("A", "SEARCH RETURN (CONTEXT COUNT) UNDELETED UNKEYWORD $Junk")
    # a context while another session changes the mailbox
    r = run.do("A", "UID SEARCH RETURN (UPDATE COUNT) FLAGGED")
    first = r.tagged.raw.split()[0].decode()
    run.do("A", "SEARCH RETURN (UPDATE) SUBJECT within")
    b = run.s("B")
    run.do("B", "SELECT S")
    run.do("B", "STORE 2,4 +FLAGS (\\Flagged)")
    run.do("A", "NOOP")
    b.expect(b.append("S", b"Subject: within again\r\n\r\nx\r\n", ["\\Flagged"]), "OK")
    run.do("A", "NOOP")
    run.do("B", "STORE 2,7 +FLAGS (\\Deleted)")
    run.do("B", "EXPUNGE")
    run.do("A", "NOOP")
    run.do("A", "STORE 1 +FLAGS (\\Flagged)")
    run.do("A", 'CANCELUPDATE "%s"' % first)
    run.do("B", "STORE 3 +FLAGS (\\Flagged)")
    run.do("A", "NOOP")


def main():
    now = int(time.time())
    print_diffs(run_both(lambda run: script(run, now)), 400)

if __name__ == "__main__":
    main()
