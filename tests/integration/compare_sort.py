#!/usr/bin/env python3
"""SORT and THREAD (RFC 5256, RFC 5957) answers of ringmaild next to Dovecot's.

A generated corpus of awkward messages (stacked "Re: Fwd: [list]" subjects,
encoded words in several charsets, "(fwd)" trailers and "[fwd: ...]"
wrappers, missing, malformed and zone-shifted Dates, addresses with
comments, groups and encoded display names, threads with broken, cyclic and
truncated References, duplicate and missing Message-IDs) is appended to a
ringmaild (RINGMAILD) and to a private Dovecot (apt's dovecot-imapd, a
config of its own in a temp dir, loopback only; never the system instance),
then every SORT key (with REVERSE), both THREAD algorithms and their UID
forms are sent to both.  Prints each command whose answers differ and a
count; exit status 0 whatever differs.

    RINGMAILD=build/ringmaild python3 tests/integration/compare_sort.py [N]

Needs root (Dovecot's mail processes run as nobody) and /usr/sbin/dovecot."""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from compare_condstore import print_diffs, run_both  # noqa: E402

SUBJECTS = ["Hello", "hello world", "Meeting", "[list] Meeting", "Re: Meeting",
            "RE: re: Meeting", "Fwd: Meeting", "Re: [list] Re: Meeting", "[fwd: Meeting]",
            "Meeting (fwd)", "[list] [other] Meeting", "[list]", "Re:", "",
            "=?UTF-8?Q?Re=3A_caf=C3=A9?=", "=?ISO-8859-1?Q?caf=E9?=", "Café",
            "=?UTF-8?B?w4l0w6k=?=", "été", "Été", "_under", "zeta", "Zeta",
            "[Fwd: Re: [list] Hello (fwd)]", "Fw: Hello", "Re [2]: Hello",
            "=?KOI8-R?B?8NLJ18XU?=", "Привет", "  spaced   out  ", "Re:Hello"]
NAMES = ["", "Anna", '"Zed, Z."', "=?UTF-8?Q?B=C3=A9a?=", "bob", "(comment)", "Émile"]
LOCALS = ["alpha", "Zulu", "mike", "bea", "charlie", "_x", "ALPHA", "delta"]
DATES = ["Tue, 2 Jan 2024 12:00:00 +0000", "Tue, 2 Jan 2024 13:00:00 +0100",
         "2 Jan 2024 11:59:59 -0000", "Mon, 1 Jan 2024 00:00:00 -0800",
         "1 Jan 2024 08:00:00 GMT", "garbage", None, "3 Jan 24 10:00 EST",
         "31 Dec 2000 16:01:33 -0800", "Wed, 3 Jan 2024 00:00:00 +0000 (UTC)"]


def address(rng):
    r = rng.random()
    local = rng.choice(LOCALS)
    name = rng.choice(NAMES)
    if r < 0.1:
        return "undisclosed-recipients:;"
    if r < 0.2:
        return "%s@ex.org (%s)" % (local, rng.choice(["Cmt", "zz", ""]))
    if r < 0.3:
        return "%s@ex.org, %s@ex.org" % (local, rng.choice(LOCALS))
    if r < 0.4:
        return "grp: %s@ex.org;" % local
    if not name:
        return "%s@ex.org" % local
    return "%s <%s@ex.org>" % (name, local)


def corpus(n, seed=5256):
    rng = random.Random(seed)
    msgs = []
    for i in range(n):
        h = []
        if rng.random() > 0.05:
            h.append("From: " + address(rng))
        if rng.random() > 0.2:
            h.append("To: " + address(rng))
        if rng.random() > 0.6:
            h.append("Cc: " + address(rng))
        h.append("Subject: " + rng.choice(SUBJECTS))
        d = rng.choice(DATES)
        if d:
            h.append("Date: " + d)
        r = rng.random()
        if r < 0.05:
            pass                                        # no Message-ID
        elif r < 0.1:
            h.append("Message-ID: <dup@ex>")            # duplicates
        else:
            h.append("Message-ID: <m%d@ex>" % i)
        # references: to earlier, later (forward), missing and cyclic ids
        refs = []
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            k = rng.randrange(n + 5)
            refs.append("<m%d@ex>" % k if k < n else "<missing%d@ex>" % (k - n))
        if refs and rng.random() < 0.7:
            h.append("References: " + " ".join(refs))
        elif refs:
            h.append("In-Reply-To: %s (sent by someone)" % refs[-1])
        body = "x" * rng.randrange(10, 3000)
        raw = ("\r\n".join(h) + "\r\n\r\n" + body + "\r\n").encode()
        date = "%02d-Jan-2024 %02d:00:00 +0000" % (1 + rng.randrange(28), rng.randrange(24))
        msgs.append((raw, date))
    return msgs


KEYS = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"]


def commands():
    out = []
    for k in KEYS:
        out.append("SORT (%s) UTF-8 ALL" % k)
        out.append("UID SORT (REVERSE %s) UTF-8 ALL" % k)
    out += ["SORT (SUBJECT DATE) UTF-8 ALL", "SORT (FROM REVERSE SIZE) UTF-8 ALL",
            "SORT (DATE) UTF-8 SUBJECT meeting", "SORT (SUBJECT) US-ASCII 1:50",
            "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL",
            "UID THREAD REFERENCES UTF-8 ALL", "THREAD REFERENCES UTF-8 1:100",
            "SORT (BOGUS) UTF-8 ALL", "SORT (DATE) KOI8-R ALL", "SORT () UTF-8 ALL"]
    return out


def answers(msgs, cmds):
    """The same APPENDs and commands against a ringmaild and a private
    Dovecot: {"ringmail": Run, "dovecot": Run}."""
    def script(run):
        a = run.s("A")
        for raw, date in msgs:
            a.expect(a.append("INBOX", raw, None, date), "OK")
        run.do("A", "SELECT INBOX")
        for cmd in cmds:
            run.do("A", cmd)
    return run_both(script)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    runs = answers(corpus(n), commands())
    print_diffs(runs, 3000)

if __name__ == "__main__":
    main()
