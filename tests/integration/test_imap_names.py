#!/usr/bin/env python3
"""ringmaild: mailbox names that round-trip exactly, and \\Noselect parents.

- Every name the RFC allows comes back byte for byte after the server
  restarts (leading, trailing and inner spaces, quotes, backslashes,
  non-ASCII, '%' and '*'); a name with a leading space does not collapse
  into another mailbox (RFC 3501 5.1, RFC 9051 5.1).
- '%' and '*' are valid in names (RFC 9051 5.1): CREATE, LIST (quoted, never
  an atom), SELECT, STATUS, APPEND, RENAME and DELETE work on them.
- DELETE of a mailbox with children removes its messages and keeps the name
  as \\Noselect (RFC 3501 6.3.4), as neomutt, alpine and offlineimap expect;
  the state survives a restart; CREATE makes the name a mailbox again.
  Every step matches what Dovecot 2.3 (mdbox) answers: SELECT/STATUS NO,
  APPEND NO [TRYCREATE], DELETE of the \\Noselect parent NO while it has
  children, RENAME moves it, it stays after its last child is deleted.

Clients are Python's imaplib, as a client program would drive it, and the
raw client of ringmail_server.py where the exact wire form matters.  Runs
once per io backend."""

import imaplib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


def msg(i, subject="test"):
    return ("From: Sender <s%d@example.com>\r\nTo: r@example.org\r\nSubject: %s\r\n"
            "Message-ID: <n%d@example.com>\r\n\r\nBody %d.\r\n" % (i, subject, i, i)).encode()


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<sep>[^"]*)"|NIL) (?P<name>.*)$')


def imap_unquote(raw):
    """The mailbox of a LIST line as imaplib hands it over: a quoted string
    (with \\" and \\\\ escapes), or an atom.  Returns (text, was_quoted)."""
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        return re.sub(rb'\\(.)', rb'\1', raw[1:-1]).decode(), True
    return raw.decode(), False


def imaplib_list(m, pattern='"*"'):
    """{name: (set of upper-case attributes, quoted?)} from imaplib's LIST.
    imaplib returns a literal mailbox as a (line, bytes) tuple."""
    typ, data = m.list('""', pattern)
    assert typ == "OK", (typ, data)
    out = {}
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, lit = item
            mt = LIST_RE.match(head.rstrip(b"\r\n").rsplit(b" {", 1)[0] + b" x")
            name, quoted = lit.decode(), True
        else:
            mt = LIST_RE.match(item)
            name, quoted = imap_unquote(mt.group("name"))
        attrs = set(a.upper() for a in mt.group("attrs").decode().split())
        out[name] = (attrs, quoted)
    return out


def imap_quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Names(rs.ServerTestCase):

    def imaplib_login(self):
        m = imaplib.IMAP4(self.server.host, self.server.port, timeout=rs.IO_TIMEOUT)
        m.login(self.user, self.password)
        return m

    def restart(self):
        self.assertEqual(self.server.stop(), 0, "ringmaild did not stop cleanly")
        self.server.start()

    def test_names_round_trip_across_restart(self):
        # UTF8=ACCEPT (RFC 6855): names travel as raw UTF-8, compared exactly.
        names = [" Work", "Work", "Work ", "  two  spaces  ", " ", "a \"quoted\" name",
                 "back\\slash", "per%cent", "st*r", "Caf\u00e9 \u65e5\u672c",
                 " INBOX", "x/ y /z "]
        c = self.login(enable="UTF8=ACCEPT")
        for i, n in enumerate(names):
            self.ok(c, "CREATE " + quote(n))
            self.append_msgs(c, n, [msg(i, "box-%d" % i)])
            self.ok(c, "SUBSCRIBE " + quote(n))
        want = set(names) | {"INBOX", "x", "x/ y "}

        def check(want):
            c = self.login(enable="UTF8=ACCEPT")
            got = [rs.s(r.items()[3]) for r in self.ok(c, 'LIST "" "*"').of("LIST")]
            self.assertEqual(sorted(got), sorted(want), "names changed")
            self.assertEqual(len(got), len(set(got)), "a name is listed twice: %r" % got)
            subs = set(rs.s(r.items()[3]) for r in self.ok(c, 'LSUB "" "*"').of("LSUB"))
            self.assertEqual(subs, set(names))
            for i, n in enumerate(names):
                if n not in want:
                    continue
                r = self.ok(c, "EXAMINE " + quote(n))
                self.assertEqual(r.numbers("EXISTS"), [1], n)
                f = self.ok(c, "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
                hdr = rs.s(list(f.fetches()[1].values())[0])
                self.assertEqual(hdr.strip(), "Subject: box-%d" % i,
                                 "mailbox %r holds another mailbox's message" % n)
            return c

        check(want)
        self.restart()
        c = check(want)
        # Deleting one of the look-alikes leaves the others and their mail.
        self.ok(c, "DELETE " + quote(" Work"))
        want.discard(" Work")
        self.restart()
        check(want)

    def test_wildcard_names_with_imaplib(self):
        m = self.imaplib_login()
        try:
            for name in ("100%", "a*b", "x%/y*"):
                typ, data = m.create(imap_quote(name))
                self.assertEqual(typ, "OK", (name, data))
            ls = imaplib_list(m)
            for name in ("100%", "a*b", "x%", "x%/y*"):
                self.assertIn(name, ls, ls)
                self.assertTrue(ls[name][1], "RFC 9051: %r is not an atom and must be "
                                "quoted in LIST: %r" % (name, ls))
            self.assertIn("\\HASCHILDREN", ls["x%"][0])
            # '%' in a pattern matches the name (as a wildcard does).
            self.assertIn("100%", imaplib_list(m, '"100%"'))
            typ, data = m.append(imap_quote("a*b"), None, None, msg(1))
            self.assertEqual(typ, "OK", data)
            typ, data = m.status(imap_quote("a*b"), "(MESSAGES)")
            self.assertEqual(typ, "OK", data)
            self.assertIn(b"MESSAGES 1", data[0])
            self.assertIn(b'"a*b"', data[0], "STATUS must quote the name: %r" % data)
            typ, data = m.select(imap_quote("a*b"))
            self.assertEqual((typ, data), ("OK", [b"1"]))
            m.close()
            typ, data = m.rename(imap_quote("a*b"), imap_quote("c%d*"))
            self.assertEqual(typ, "OK", data)
            typ, data = m.select(imap_quote("c%d*"), readonly=True)
            self.assertEqual((typ, data), ("OK", [b"1"]))
            m.close()
            typ, data = m.select(imap_quote("a*b"))
            self.assertEqual(typ, "NO")
            for name in ("c%d*", "100%", "x%/y*", "x%"):
                typ, data = m.delete(imap_quote(name))
                self.assertEqual(typ, "OK", (name, data))
            self.assertEqual(set(imaplib_list(m)), {"INBOX"})
        finally:
            m.logout()

    def test_delete_parent_keeps_noselect(self):
        m = self.imaplib_login()
        try:
            for name in ("Projects", "Projects/2024", "Projects/2025"):
                self.assertEqual(m.create(name)[0], "OK")
            m.append("Projects", None, None, msg(1))
            m.append("Projects", None, None, msg(2))
            m.append("Projects/2024", None, None, msg(3))
            typ, data = m.delete("Projects")
            self.assertEqual(typ, "OK", "RFC 3501 6.3.4: DELETE of a parent: %r" % data)
            ls = imaplib_list(m)
            self.assertIn("\\NOSELECT", ls["Projects"][0], ls)
            self.assertIn("\\HASCHILDREN", ls["Projects"][0], ls)
            self.assertNotIn("\\NOSELECT", ls["Projects/2024"][0], ls)
            # What a client may do with a \Noselect name, and what not.
            typ, data = m.select("Projects")
            self.assertEqual(typ, "NO")
            self.assertIn(b"NONEXISTENT", data[0])
            typ, data = m.status("Projects", "(MESSAGES)")
            self.assertEqual(typ, "NO")
            typ, data = m.append("Projects", None, None, msg(4))
            self.assertEqual(typ, "NO")
            self.assertIn(b"TRYCREATE", data[0])
            typ, data = m.delete("Projects")
            self.assertEqual(typ, "NO", "RFC 3501 6.3.4: a \\Noselect name with "
                             "inferiors cannot be deleted")
            self.assertIn(b"HASCHILDREN", data[0])
            # The children keep their mail.
            typ, data = m.select("Projects/2024", readonly=True)
            self.assertEqual((typ, data), ("OK", [b"1"]))
            m.close()
        finally:
            m.logout()
        # The \Noselect state is in the list file: it survives a restart.
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        m = self.imaplib_login()
        try:
            ls = imaplib_list(m)
            self.assertIn("\\NOSELECT", ls["Projects"][0], ls)
            typ, data = m.select("Projects")
            self.assertEqual(typ, "NO")
            # LIST "%" shows the parent; RENAME moves it with its children.
            self.assertEqual(m.rename("Projects", "Archive")[0], "OK")
            ls = imaplib_list(m)
            self.assertNotIn("Projects", ls)
            self.assertIn("\\NOSELECT", ls["Archive"][0], ls)
            self.assertIn("Archive/2024", ls)
            self.assertEqual(m.select("Archive/2024", readonly=True), ("OK", [b"1"]))
            m.close()
            # Deleting the last children leaves the \Noselect parent (as
            # Dovecot does); then it can go too.
            self.assertEqual(m.delete("Archive/2024")[0], "OK")
            self.assertEqual(m.delete("Archive/2025")[0], "OK")
            ls = imaplib_list(m)
            self.assertEqual(ls["Archive"][0], {"\\NOSELECT", "\\HASNOCHILDREN"}, ls)
            # CREATE makes it a mailbox again: empty, a new UIDVALIDITY.
            self.assertEqual(m.create("Archive")[0], "OK")
            ls = imaplib_list(m)
            self.assertNotIn("\\NOSELECT", ls["Archive"][0], ls)
            self.assertEqual(m.select("Archive"), ("OK", [b"0"]))
            self.assertEqual(m.append("Archive", None, None, msg(5))[0], "OK")
            m.close()
            self.assertEqual(m.delete("Archive")[0], "OK")
            self.assertEqual(set(imaplib_list(m)), {"INBOX"})
        finally:
            m.logout()

    def test_noselect_recreated_gets_new_uidvalidity(self):
        c = self.login()
        self.ok(c, "CREATE P/Q")
        r = self.ok(c, "SELECT P")
        uv = r.code_of("UIDVALIDITY")
        self.append_msgs(c, "P", [msg(1)])
        self.ok(c, "UNSELECT")
        self.ok(c, "DELETE P")
        r = c.cmd('LIST "" "P"')
        self.assertIn("\\NOSELECT", rs.upper(r.of("LIST")[0].items()[1]))
        self.ok(c, "SUBSCRIBE P")
        r = self.ok(c, 'LSUB "" "P"')
        self.assertIn("\\NOSELECT", rs.upper(r.of("LSUB")[0].items()[1]))
        self.ok(c, "CREATE P")
        r = self.ok(c, "SELECT P")
        self.assertEqual(r.numbers("EXISTS"), [0])
        self.assertNotEqual(r.code_of("UIDVALIDITY"), uv,
                            "a re-created mailbox needs a new UIDVALIDITY")
        self.expect(c.cmd("CREATE P"), "NO", "ALREADYEXISTS")


rs.parametrize(globals(), Names)

if __name__ == "__main__":
    rs.main()
