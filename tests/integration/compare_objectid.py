#!/usr/bin/env python3
"""OBJECTID (RFC 8474) and SAVEDATE (RFC 8514) answers of ringmaild next to
Dovecot's (apt's dovecot-imapd, a private config in a temp dir, loopback
only; never the system instance).  The same session is run against both;
object ids and dates are replaced by placeholders that keep which ids are
equal, so what is compared is the shape of each answer and which messages
share an id.  Prints each command whose answers differ and a count; exit
status 0 whatever differs.

    RINGMAILD=build/ringmaild python3 tests/integration/compare_objectid.py

Needs root (Dovecot's mail processes run as nobody) and /usr/sbin/dovecot.

Dovecot 2.3.19 (Debian 12) does not implement OBJECTID: no MAILBOXID code,
BAD for STATUS (MAILBOXID), FETCH EMAILID and SEARCH EMAILID/THREADID.
Its SAVEDATE answers have the shapes of ours (FETCH SAVEDATE a date-time,
SAVEDATESUPPORTED all messages, SAVED* keys by save date)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from compare_condstore import run_both  # noqa: E402


def msg(n):
    return (b"From: a@example.org\r\nSubject: m%d\r\nMessage-ID: <%d@ex>\r\n%s\r\nbody\r\n"
            % (n, n, b"References: <1@ex>\r\n" if n == 2 else b""))


def session(run):
    a = run.s("A")
    for n in (1, 2, 3):
        a.expect(a.append("INBOX", msg(n), None, "01-Jan-2001 10:00:00 +0200"), "OK")
    run.do("A", "CREATE Other")
    run.do("A", "STATUS Other (MAILBOXID MESSAGES)")
    run.do("A", "SELECT INBOX")
    run.do("A", "FETCH 1:* (EMAILID THREADID)")
    run.do("A", "FETCH 1 (SAVEDATE INTERNALDATE)")
    time.sleep(1.1)
    run.do("A", "UID COPY 1 Other")
    run.do("A", "UID MOVE 2 Other")
    run.do("A", "SEARCH SAVEDATESUPPORTED")
    run.do("A", "SEARCH SAVEDBEFORE 1-Jan-2002")
    run.do("A", "SEARCH BEFORE 1-Jan-2002")
    run.do("A", "SEARCH SAVEDSINCE 1-Jan-2002")
    run.do("A", "SEARCH THREADID T1")
    run.do("A", "SEARCH EMAILID M1")
    run.do("A", 'SEARCH EMAILID "a b"')
    run.do("A", "SELECT Other")
    run.do("A", "FETCH 1:* (EMAILID THREADID SAVEDATE)")
    run.do("A", "RENAME Other Renamed")
    run.do("A", "STATUS Renamed (MAILBOXID)")
    run.do("A", "STATUS INBOX (MAILBOXIDS)")
    run.do("A", "FETCH 1 EMAILID.PEEK")


def placeholders(logs):
    """Ids to E1, E2...; dates to D; per server, in order of appearance."""
    out = []
    for log in logs:
        seen = {}

        def sub(m):
            return "%s(%s)" % (m.group(1), seen.setdefault(m.group(2), "id%d" % (len(seen) + 1)))
        lines = []
        for cmd, ls, _r in log:
            ls = [re.sub(r"(MAILBOXID |EMAILID |THREADID )\(([A-Za-z0-9_-]+)\)", sub, x)
                  for x in ls]
            ls = [re.sub(r"SAVEDATE b?['\"][^'\"]*['\"]", 'SAVEDATE d', x) for x in ls]
            ls = [re.sub(r"COPYUID \d+", "COPYUID v", x) for x in ls]
            lines.append((cmd, ls))
        out.append(lines)
    return out


def main():
    runs = run_both(session)
    ours, theirs = placeholders([runs["ringmail"].log, runs["dovecot"].log])
    ndiff = 0
    for (cmd, a), (_c, b) in zip(ours, theirs):
        if a == b:
            print("= %s" % cmd)
            continue
        ndiff += 1
        print("! %s" % cmd)
        print("    ringmail: %s" % "\n              ".join(a))
        print("    dovecot:  %s" % "\n              ".join(b))
    print("%d of %d commands differ" % (ndiff, len(ours)))


if __name__ == "__main__":
    main()
