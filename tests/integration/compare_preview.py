#!/usr/bin/env python3
"""FETCH PREVIEW (RFC 8970) of ringmaild next to Dovecot's.

The messages of test_imap_preview.py and a few more (quoted replies, a
signature, a forwarded message, HTML with a long <style>, long text) are
appended to a ringmaild (RINGMAILD) and to a private Dovecot (apt's
dovecot-imapd, a config of its own in a temp dir, loopback only; never the
system instance), then FETCH PREVIEW and PREVIEW (LAZY) are sent to both.
Prints each message's two previews and whether they differ; exit status 0
whatever differs.

    RINGMAILD=build/ringmaild python3 tests/integration/compare_preview.py

Needs root (Dovecot's mail processes run as nobody) and /usr/sbin/dovecot."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from compare_condstore import Dovecot, USER, PASSWORD  # noqa: E402
from test_imap_preview import MSGS, m  # noqa: E402

MORE = [
    m(["Subject: reply"], b"Sounds good.\n\nOn Monday Ann wrote:\n> Shall we meet?\n> At ten?\n"
      b"\n-- \nBob\n"),
    m(["Subject: fwd", "Content-Type: multipart/mixed; boundary=b"],
      b"--b\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner text\n--b--\n"),
    m(["Subject: style", "Content-Type: text/html"],
      b"<html><head><style>" + b"td { color: red }\n" * 2000 + b"</style></head>"
      b"<body><table><tr><td>cell one</td><td>cell two</td></tr></table></body></html>\n"),
    m(["Subject: long"], b"word " * 300 + b"\n"),
    m(["Subject: ctrl", "Content-Type: text/plain; charset=utf-8"],
      b"tab\there\x01ctl \xc2\xa0nbsp \xe2\x80\x8bzw\n"),
    m(["Subject: latin1", "Content-Type: text/plain; charset=iso-8859-1"], b"\xe9t\xe9 \xe0 Paris\n"),
    m(["Subject: pgp", "Content-Type: multipart/encrypted; boundary=b; "
       "protocol=\"application/pgp-encrypted\""],
      b"--b\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--b\n"
      b"Content-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n--b--\n"),
]


def previews(c, cmd):
    r = c.cmd(cmd)
    out = {}
    for n, d in r.fetches().items():
        v = d.get("PREVIEW")
        out[n] = None if v is None else bytes(v).decode("utf-8", "replace")
    return r.tagged.line, out


def main():
    msgs = [raw for raw, _w in MSGS] + MORE
    rm = rs.Server(users={USER: PASSWORD})
    rm.start()
    dv = Dovecot()
    res = {}
    try:
        for name, connect in (("ringmail", rm.connect), ("dovecot", dv.connect)):
            c = connect()
            c.ok("LOGIN %s %s" % (USER, PASSWORD))
            caps = c.cmd("CAPABILITY")
            print("%s: %s" % (name, [u.raw for u in caps.untagged]))
            for raw in msgs:
                c.append("INBOX", raw)
            c.ok("SELECT INBOX")
            res[name] = (previews(c, "FETCH 1:* (PREVIEW (LAZY))"),
                         previews(c, "FETCH 1:* (PREVIEW)"))
            c.close()
    finally:
        dv.stop()
        rm.stop()
        rm.cleanup()
    ndiff = 0
    for which, label in ((0, "LAZY"), (1, "PREVIEW")):
        (t1, a), (t2, b) = res["ringmail"][which], res["dovecot"][which]
        print("== %s: ringmail %s / dovecot %s" % (label, t1, t2))
        for n in range(1, len(msgs) + 1):
            same = a.get(n) == b.get(n)
            ndiff += not same
            print("%s %2d R %r" % ("=" if same else "!", n, a.get(n)))
            if not same:
                print("     D %r" % b.get(n))
    print("%d previews differ" % ndiff)


if __name__ == "__main__":
    main()
