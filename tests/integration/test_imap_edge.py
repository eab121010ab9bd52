#!/usr/bin/env python3
"""ringmaild: the corners where servers usually break.  Quoting of odd
strings in responses (mailbox names, ENVELOPE, BODYSTRUCTURE parameters),
8-bit data for clients that did not ENABLE UTF8=ACCEPT, unusual message
shapes (no body, no header, group addresses, deep MIME nesting, missing
final boundary), UID ranges with '*', SEARCHRES ($), LIST-STATUS, COPY
keeping INTERNALDATE, concurrent writers, a 3,000-message mailbox, and
another session's changes reaching a selected session in a consistent view.
Runs once per io backend."""

import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote, upper  # noqa: E402


def m(subject="x", body=b"body\r\n", extra=b""):
    return (b"From: a@example.com\r\nSubject: " + subject.encode() + b"\r\n" + extra
            + b"\r\n" + body)


INTERNALDATE_RE = re.compile(r"^[ \d]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}$")


class Edge(rs.ServerTestCase):

    def box(self, msgs, name="INBOX", enable=None):
        c = self.login(enable=enable)
        if name != "INBOX":
            self.ok(c, "CREATE " + quote(name))
        uids = self.append_msgs(c, name, msgs)
        self.ok(c, "SELECT " + quote(name))
        return c, uids

    def one(self, c, cmd, n=1):
        r = self.ok(c, cmd)
        f = r.fetches()
        self.assertIn(n, f, r.describe())
        return f[n]

    # -- quoting --

    def test_mailbox_names_with_quotes_and_backslashes(self):
        c = self.login()
        names = ['say "hi"', "back\\slash", "semi;colon",
                 "brace{5}", "paren (x)", "star*", "percent%"]
        created = []
        for n in names:
            r = c.cmd("CREATE " + quote(n))
            if n in ("star*", "percent%") and r.status == "NO":
                continue       # a server may refuse wildcards in names
            self.expect(r, "OK", msg=n)
            created.append(n)
        got = set()
        for u in self.ok(c, 'LIST "" *').of("LIST"):
            got.add(rs.s(u.items()[3]))
        for n in created:
            self.assertIn(n, got, "LIST must give back %r exactly" % n)
            st = self.ok(c, "STATUS %s (MESSAGES)" % quote(n)).of("STATUS")
            self.assertEqual(rs.s(st[0].items()[1]), n)
        self.ok(c, "SELECT " + quote('say "hi"'))

    def test_envelope_quoting_and_groups(self):
        msg = (b'From: "Doe, John \\"JD\\"" <john.doe@example.com>\r\n'
               b"To: undisclosed-recipients:;\r\n"
               b"Cc: Team: a@example.com, B <b@example.com>;, solo@example.net\r\n"
               b'Subject: He said "hi" \\ and left\r\n'
               b"Reply-To: <noreply@example.com>\r\n"
               b"Message-ID: <q@example.com>\r\n\r\nx\r\n")
        c, _ = self.box([msg])
        env = self.one(c, "FETCH 1 ENVELOPE")["ENVELOPE"]
        self.assertEqual(rs.s(env[1]), 'He said "hi" \\ and left')
        self.assertEqual(rs.s(env[2]), [['Doe, John "JD"', None, "john.doe", "example.com"]])
        self.assertEqual(rs.s(env[4]), [[None, None, "noreply", "example.com"]])
        self.assertEqual(rs.s(env[5]), [[None, None, "undisclosed-recipients", None],
                                        [None, None, None, None]],
                         "RFC 3501 7.4.2: group syntax in ENVELOPE")
        self.assertEqual(rs.s(env[6]), [[None, None, "Team", None],
                                        [None, None, "a", "example.com"],
                                        ["B", None, "b", "example.com"],
                                        [None, None, None, None],
                                        [None, None, "solo", "example.net"]])

    def test_bodystructure_parameter_quoting(self):
        msg = (b"From: a@example.com\r\nSubject: att\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="=_x"\r\n\r\n'
               b"--=_x\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nhi\r\n"
               b"--=_x\r\nContent-Type: application/octet-stream;\r\n"
               b' name="a \\"quoted\\" name.bin"\r\n'
               b"Content-Transfer-Encoding: base64\r\n"
               b"Content-ID: <cid-1@example.com>\r\n"
               b"Content-Description: the \\ file\r\n"
               b"Content-Disposition: attachment; filename*=UTF-8''%C3%BC.bin\r\n\r\n"
               b"AAEC\r\n--=_x--\r\n")
        c, _ = self.box([msg])
        bs = self.one(c, "FETCH 1 BODYSTRUCTURE")["BODYSTRUCTURE"]
        p2 = bs[1]
        self.assertEqual(upper(p2[:2]), ["APPLICATION", "OCTET-STREAM"])
        self.assertEqual(rs.s(p2[2][0]).upper(), "NAME")
        self.assertEqual(rs.s(p2[2][1]), 'a "quoted" name.bin')
        self.assertEqual(rs.s(p2[3]), "<cid-1@example.com>")
        self.assertEqual(rs.s(p2[4]), "the \\ file")
        self.assertEqual(upper(p2[5]), "BASE64")
        self.assertEqual(int(p2[6]), 4)

    def test_8bit_header_without_utf8_accept(self):
        msg = "From: Jürgen <j@example.de>\r\nSubject: Grüße\r\n\r\nx\r\n".encode()
        c, _ = self.box([msg])
        r = self.ok(c, "FETCH 1 ENVELOPE")
        raw = r.of("FETCH")[0].raw
        # RFC 3501 4.3: quoted strings are 7-bit; 8-bit text needs a literal
        # (or the server must not send it)
        for q in re.findall(rb'"((?:[^"\\]|\\.)*)"', re.sub(rb"\{\d+\}\r\n", b"", raw)):
            self.assertTrue(all(b < 0x80 for b in q),
                            "8-bit bytes in a quoted string to a client without "
                            "UTF8=ACCEPT: %r" % raw)
        env = rs.fetch_dict(r.of("FETCH")[0])["ENVELOPE"]
        self.assertIn(rs.s(env[1]), ("Grüße", "=?UTF-8?B?R3LDvMOfZQ==?=", "=?utf-8?b?R3LDvMOfZQ==?="),
                      env[1])

    UTF8_MSG = "From: Jürgen <j@example.de>\r\nSubject: Grüße\r\n\r\nx\r\n".encode()

    def utf8_session(self):
        c = self.login()
        if "UTF8=ACCEPT" not in c.capabilities():
            self.skipTest("no UTF8=ACCEPT")
        self.ok(c, "ENABLE UTF8=ACCEPT")
        return c

    def test_utf8_accept_envelope(self):
        c = self.utf8_session()
        self.expect(c.append("INBOX", self.UTF8_MSG), "OK")
        self.ok(c, "SELECT INBOX")
        env = self.one(c, "FETCH 1 ENVELOPE")["ENVELOPE"]
        self.assertEqual(rs.s(env[1]), "Grüße")
        self.assertEqual(rs.s(env[2][0][0]), "Jürgen")

    def test_utf8_accept_append_utf8_literal(self):
        c = self.utf8_session()
        msg = self.UTF8_MSG
        r = c.cmd(b"APPEND INBOX UTF8 (~{%d+}\r\n%s)" % (len(msg), msg))
        self.expect(r, "OK", msg="RFC 6855 4: append-data =/ \"UTF8\" SP \"(\" literal8 \")\"")
        self.ok(c, "SELECT INBOX")
        f = self.one(c, "FETCH 1 BODY.PEEK[]")
        self.assertEqual(bytes(f["BODY[]"]), msg)

    def test_utf8_accept_search_charset_is_bad(self):
        c = self.utf8_session()
        self.ok(c, "SELECT INBOX")
        self.expect(c.cmd("SEARCH CHARSET UTF-8 ALL"), "BAD",
                    msg="RFC 6855 3: SEARCH with CHARSET after ENABLE UTF8=ACCEPT SHOULD be BAD")

    def test_utf8_accept_invalid_utf8_is_bad(self):
        c = self.utf8_session()
        # A bad tail byte, an overlong "/", a surrogate, U+110000: RFC 3629
        # UTF-8 is what the mailbox names must be, checked where they arrive.
        for bad in (b"bad\xc3\x28utf8", b"a\xc0\xafb", b"a\xe0\x80\xafb",
                    b"sur\xed\xa0\x80", b"big\xf4\x90\x80\x80"):
            self.expect(c.cmd(b'CREATE "%s"' % bad), "BAD",
                        msg="RFC 6855 3: invalid UTF-8 in a quoted string MUST be BAD: %r" % bad)
        self.ok(c, b'CREATE "ok\xf4\x8f\xbf\xbf"')

    # -- unusual message shapes --

    def test_header_only_and_body_only_messages(self):
        hdr_only = b"From: a@example.com\r\nSubject: no body\r\n"
        no_hdr = b"\r\njust a body\r\n"
        c, _ = self.box([hdr_only, no_hdr])
        f = self.one(c, "FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
                        "BODYSTRUCTURE)")
        self.assertEqual(bytes(f["BODY[]"]), hdr_only)
        self.assertEqual(f["RFC822.SIZE"], len(hdr_only))
        self.assertEqual(bytes(f["BODY[HEADER]"]) + bytes(f["BODY[TEXT]"]), hdr_only,
                         "HEADER + TEXT must be the whole message")
        self.assertEqual(bytes(f["BODY[TEXT]"]), b"")
        f = self.one(c, "FETCH 2 (BODY.PEEK[HEADER] BODY.PEEK[TEXT] ENVELOPE)", 2)
        self.assertEqual(bytes(f["BODY[HEADER]"]), b"\r\n")
        self.assertEqual(bytes(f["BODY[TEXT]"]), b"just a body\r\n")
        self.assertEqual(f["ENVELOPE"][:2], [None, None])
        # RFC 3501 6.4.5: the blank line is always included in header fetches,
        # except for a message with no body and no blank line
        f = self.one(c, "FETCH 1 BODY.PEEK[HEADER.FIELDS (X-NOT-THERE)]")
        self.assertIn(bytes(list(f.values())[0]), (b"", b"\r\n"))
        f = self.one(c, "FETCH 2 BODY.PEEK[HEADER.FIELDS (X-NOT-THERE)]", 2)
        self.assertEqual(bytes(list(f.values())[0]), b"\r\n",
                         "no matching field: just the blank line")

    def test_folded_header_fields(self):
        msg = (b"From: a@example.com\r\nSubject: first part\r\n\tsecond part\r\n"
               b"X-A: 1\r\nx-a: 2\r\n\r\nbody\r\n")
        c, _ = self.box([msg])
        f = self.one(c, "FETCH 1 (ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT X-A)])")
        self.assertEqual(bytes(f["BODY[HEADER.FIELDS (SUBJECT X-A)]"]),
                         b"Subject: first part\r\n\tsecond part\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
        self.assertEqual(rs.s(f["ENVELOPE"][1]), "first part\tsecond part")

    def test_deep_mime_nesting(self):
        def mp(b, parts):
            out = b"Content-Type: multipart/mixed; boundary=%s\r\n\r\n" % b
            for p in parts:
                out += b"--" + b + b"\r\n" + p + b"\r\n"
            return out + b"--" + b + b"--\r\n"
        leaf = lambda t: b"Content-Type: text/plain\r\n\r\n" + t  # noqa: E731
        inner = mp(b"c", [leaf(b"deep one"), leaf(b"deep two")])
        mid = mp(b"b", [leaf(b"mid one"), inner])
        msg = b"From: a@example.com\r\nSubject: nest\r\nMIME-Version: 1.0\r\n" + mp(b"a", [leaf(b"top"), mid])
        c, _ = self.box([msg])
        f = self.one(c, "FETCH 1 (BODY.PEEK[2.2.2] BODY.PEEK[2.2.1] BODY.PEEK[2.1] BODY.PEEK[1] "
                        "BODY.PEEK[2.2.MIME] BODYSTRUCTURE)")
        self.assertEqual(bytes(f["BODY[2.2.2]"]), b"deep two")
        self.assertEqual(bytes(f["BODY[2.2.1]"]), b"deep one")
        self.assertEqual(bytes(f["BODY[2.1]"]), b"mid one")
        self.assertEqual(bytes(f["BODY[1]"]), b"top")
        self.assertEqual(bytes(f["BODY[2.2.MIME]"]),
                         b"Content-Type: multipart/mixed; boundary=c\r\n\r\n")
        bs = upper(f["BODYSTRUCTURE"])
        self.assertEqual(bs[1][1][2], "MIXED")
        self.assertEqual(bs[1][1][1][:2], ["TEXT", "PLAIN"])
        # a part that does not exist
        r = c.cmd("FETCH 1 BODY.PEEK[3]")
        self.assertIn(r.status, ("OK", "NO"), r.describe())
        if r.status == "OK":
            v = list(r.fetches()[1].values())
            self.assertIn(v[0], (None, b"", rs.Literal(b"")), r.describe())

    def test_missing_final_boundary(self):
        msg = (b"From: a@example.com\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
               b"--zz\r\nContent-Type: text/plain\r\n\r\npart one\r\n"
               b"--zz\r\nContent-Type: text/plain\r\n\r\npart two, never closed\r\n")
        c, _ = self.box([msg])
        f = self.one(c, "FETCH 1 (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2])")
        self.assertEqual(bytes(f["BODY[1]"]), b"part one")
        self.assertIn(bytes(f["BODY[2]"]), (b"part two, never closed\r\n",
                                           b"part two, never closed"))

    def test_internaldate_format(self):
        c, _ = self.box([m("a")])
        self.ok(c, 'APPEND INBOX "07-Feb-1994 21:52:25 -0800" {%d+}\r\n%s' % (len(m("b")),
                                                                              m("b").decode()))
        self.ok(c, 'APPEND INBOX " 7-Feb-1994 21:52:25 -0800" {%d+}\r\n%s' % (len(m("c")),
                                                                              m("c").decode()))
        r = self.ok(c, "FETCH 1:* INTERNALDATE")
        for n, d in r.fetch_list():
            self.assertRegex(rs.s(d["INTERNALDATE"]), INTERNALDATE_RE)
        f = self.ok(c, "FETCH 2:3 INTERNALDATE").fetches()
        for n in (2, 3):
            d = rs.s(f[n]["INTERNALDATE"])
            self.assertRegex(d, INTERNALDATE_RE)
            self.assertTrue(d.replace(" ", "0", 1).startswith("07-Feb-1994") or
                            d.startswith(" 7-Feb-1994") or "Feb-1994" in d, d)

    def test_internaldate_month_any_case(self):
        # RFC 9051 9 / RFC 5234 2.3: date-month's strings ("Jan") are
        # case-insensitive, so "jan" and "FEB" are valid in APPEND.
        c, _ = self.box([m("a")])
        self.ok(c, 'APPEND INBOX "07-jan-1994 21:52:25 -0800" {%d+}\r\n%s' % (len(m("b")),
                                                                              m("b").decode()))
        self.ok(c, 'APPEND INBOX "07-FEB-1994 21:52:25 +0000" {%d+}\r\n%s' % (len(m("c")),
                                                                              m("c").decode()))
        self.expect(c.cmd('APPEND INBOX "07-Jax-1994 21:52:25 +0000" {%d+}\r\n%s'
                          % (len(m("d")), m("d").decode())), "BAD")
        f = self.ok(c, "FETCH 2:3 INTERNALDATE").fetches()
        self.assertEqual(rs.s(f[2]["INTERNALDATE"]), "07-Jan-1994 21:52:25 -0800")
        self.assertEqual(rs.s(f[3]["INTERNALDATE"]), "07-Feb-1994 21:52:25 +0000")

    # -- sequence sets --

    def test_uid_star_ranges(self):
        c, uids = self.box([m(str(i)) for i in range(5)])
        top = uids[-1]
        r = self.ok(c, "UID FETCH %d:* UID" % (top + 100))
        got = [d["UID"] for _, d in r.fetch_list()]
        self.assertEqual(got, [top], "RFC 3501 6.4.8: n:* with n > max UID still matches "
                         "the message with the highest UID")
        r = self.ok(c, "UID SEARCH UID %d:*" % (top + 100))
        self.assertEqual(r.search(), [top])
        r = self.ok(c, "UID FETCH * UID")
        self.assertEqual([d["UID"] for _, d in r.fetch_list()], [top])
        r = self.ok(c, "UID FETCH %d,%d:%d UID" % (uids[0], uids[3], uids[1]))
        self.assertEqual(sorted(d["UID"] for _, d in r.fetch_list()), sorted(uids[:4]))
        r = self.ok(c, "SEARCH *:4")
        self.assertEqual(r.search(), [4, 5])

    def test_explicit_4294967295_is_not_star(self):
        # RFC 9051 9: "*" is the largest number in use; 4294967295 is an
        # nz-number like any other, here a UID that does not exist.
        c, uids = self.box([m(str(i)) for i in range(3)])
        r = self.ok(c, "UID FETCH 4294967295 UID")
        self.assertEqual(r.fetch_list(), [], r.describe())
        r = self.ok(c, "UID SEARCH UID 4294967295")
        self.assertEqual(r.search(), [])
        self.ok(c, "UID STORE 4294967295 +FLAGS (\\Deleted)")
        self.ok(c, "STORE 1:* +FLAGS (\\Deleted)")
        self.ok(c, "UID EXPUNGE 4294967295")
        r = self.ok(c, "UID SEARCH ALL")
        self.assertEqual(r.search(), uids, "UID EXPUNGE 4294967295 must expunge nothing")
        r = self.ok(c, "UID FETCH 4294967295:* UID")
        self.assertEqual([d["UID"] for _, d in r.fetch_list()], [uids[-1]],
                         "4294967295:* is the last UID up to 4294967295")

    def test_repeated_ranges_are_merged(self):
        c, uids = self.box([m(str(i)) for i in range(4)])
        spec = ",".join(["1:*"] * 2000)
        r = self.ok(c, "FETCH %s (UID FLAGS)" % spec)
        self.assertEqual([n for n, _ in r.fetch_list()], [1, 2, 3, 4],
                         "each message once, in order, however often the set names it")
        r = self.ok(c, "UID FETCH %d,%d,%d:%d,%d UID" % (uids[3], uids[0], uids[1], uids[2],
                                                       uids[0]))
        self.assertEqual([n for n, _ in r.fetch_list()], [1, 2, 3, 4])

    def test_searchres(self):
        c, uids = self.box([m("a"), m("b"), m("c"), m("d")])
        if "SEARCHRES" not in c.capabilities():
            self.skipTest("SEARCHRES not advertised")
        self.ok(c, "STORE 2,4 +FLAGS.SILENT (\\Flagged)")
        r = self.ok(c, "SEARCH RETURN (SAVE) FLAGGED")
        self.assertEqual(r.of("SEARCH") + r.of("ESEARCH"), [],
                         "RFC 5182: RETURN (SAVE) alone gives no search response")
        f = self.ok(c, "FETCH $ UID").fetches()
        self.assertEqual(sorted(f), [2, 4])
        r = self.ok(c, "UID SEARCH RETURN (SAVE MIN) UID $")
        r = self.ok(c, "UID FETCH $ FLAGS")
        self.assertEqual([d["UID"] for _, d in r.fetch_list()], [uids[1]])

    # -- LIST-STATUS, COPY dates --

    def test_list_status(self):
        c = self.login()
        if "LIST-STATUS" not in c.capabilities():
            self.skipTest("LIST-STATUS not advertised")
        self.ok(c, "CREATE A")
        self.append_msgs(c, "A", [m("1"), (m("2"), ["\\Seen"])])
        r = self.ok(c, 'LIST "" * RETURN (STATUS (MESSAGES UNSEEN))')
        st = {rs.s(u.items()[1]): u.items()[2] for u in r.of("STATUS")}
        self.assertIn("A", st, r.describe())
        d = dict(zip([str(x).upper() for x in st["A"][::2]], [int(x) for x in st["A"][1::2]]))
        self.assertEqual(d, {"MESSAGES": 2, "UNSEEN": 1})
        self.assertIn("INBOX", st)
        seq = [(u.kind(), rs.s(u.items()[3] if u.kind() == "LIST" else u.items()[1]))
               for u in r.untagged if u.kind() in ("LIST", "STATUS")]
        self.assertLess(seq.index(("LIST", "A")), seq.index(("STATUS", "A")),
                        "RFC 5819: STATUS follows the mailbox's LIST")

    def test_copy_keeps_internaldate(self):
        c = self.login()
        self.ok(c, "CREATE D")
        self.expect(c.append("INBOX", m("old"), None, "01-Jan-2001 10:00:00 +0000"), "OK")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "COPY 1 D")
        self.ok(c, "MOVE 1 D")
        self.ok(c, "SELECT D")
        f = self.ok(c, "FETCH 1:2 INTERNALDATE").fetches()
        for n in (1, 2):
            self.assertIn("01-Jan-2001", rs.s(f[n]["INTERNALDATE"]),
                          "COPY/MOVE SHOULD keep INTERNALDATE (RFC 3501 6.4.7)")

    # -- concurrency and views --

    def test_concurrent_appenders(self):
        c = self.login()
        errors = []
        uids = []
        lock = threading.Lock()

        def writer(k):
            try:
                w = self.server.connect()
                w.ok("LOGIN %s %s" % (quote(self.user), quote(self.password)))
                parts = []
                for i in range(40):
                    b = m("w%d-%d" % (k, i))
                    parts.append(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(b), b))
                w.send(b"".join(parts))
                for i in range(40):
                    u, t, _ = w.read_until_tag("a%d" % i)
                    st = t.status()
                    if st[0] != "OK":
                        errors.append(repr(t))
                        continue
                    with lock:
                        uids.append(int(st[1].split()[2]))
                w.close()
            except Exception as e:  # noqa: BLE001
                errors.append("writer %d: %r" % (k, e))
        ths = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(uids), 240)
        self.assertEqual(len(set(uids)), 240, "APPENDUIDs repeat")
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        got = r.fetch_list()
        self.assertEqual(sorted(d["UID"] for _, d in got), sorted(uids))
        subjects = sorted(bytes(d["BODY[HEADER.FIELDS (SUBJECT)]"]) for _, d in got)
        self.assertEqual(len(set(subjects)), 240)
        self.assertEqual([d["UID"] for _, d in got], sorted(d["UID"] for _, d in got),
                         "sequence numbers must follow UID order")

    def test_view_stays_consistent_under_changes(self):
        a, uids = self.box([m("v%d" % i) for i in range(10)])
        b = self.login(select="INBOX")
        view = list(uids)
        for rnd in range(6):
            # b: expunge two, add three, flag one
            self.ok(b, "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
            self.ok(b, "EXPUNGE")
            self.append_msgs(b, "INBOX", [m("n%d-%d" % (rnd, i)) for i in range(3)])
            self.ok(b, "STORE 2 +FLAGS.SILENT (\\Flagged)")
            r = self.ok(a, "NOOP")
            for u in r.untagged:
                if u.kind() == "EXPUNGE":
                    n = u.number()
                    self.assertTrue(1 <= n <= len(view), r.describe())
                    del view[n - 1]
            ex = r.numbers("EXISTS")
            self.assertTrue(ex, "EXISTS missing after APPENDs:\n" + r.describe())
            f = self.ok(a, "FETCH 1:* UID").fetch_list()
            got = [d["UID"] for _, d in f]
            self.assertEqual(got[:len(view)], view, "old messages keep their order")
            self.assertEqual(len(got), ex[-1])
            view = got
            truth = self.ok(b, "UID SEARCH ALL").search()
            self.assertEqual(sorted(truth), view)
        f = self.ok(a, "FETCH 2 FLAGS").fetches()[2]["FLAGS"]
        self.assertIn("\\FLAGGED", [x.upper() for x in f])

    def test_big_mailbox(self):
        c = self.login()
        n = 3000
        parts = []
        for i in range(n):
            b = m("big %d" % i, b"line %d\r\n" % i)
            parts.append(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(b), b))
        c.send(b"".join(parts))
        for i in range(n):
            u, t, _ = c.read_until_tag("a%d" % i, timeout=120)
            self.assertEqual(t.status()[0], "OK", t)
        r = self.ok(c, "SELECT INBOX")
        self.assertEqual(r.numbers("EXISTS"), [n])
        r = self.ok(c, "FETCH 1:* (UID FLAGS RFC822.SIZE)", timeout=120)
        self.assertEqual(len(r.of("FETCH")), n)
        r = self.ok(c, 'SEARCH BODY "line 2999"', timeout=120)
        self.assertEqual(r.search(), [3000])
        r = self.ok(c, "STORE 1:* +FLAGS.SILENT (\\Deleted)", timeout=120)
        self.ok(c, "STORE 1:10 -FLAGS.SILENT (\\Deleted)")
        r = self.ok(c, "EXPUNGE", timeout=120)
        self.assertEqual(len(r.of("EXPUNGE")), n - 10)
        r = self.ok(c, "FETCH 1:* BODY.PEEK[TEXT]")
        self.assertEqual(sorted(bytes(d["BODY[TEXT]"]) for _, d in r.fetch_list()),
                         sorted(b"line %d\r\n" % i for i in range(10)))

    def test_delete_selected_mailbox_elsewhere(self):
        a = self.login()
        self.ok(a, "CREATE Gone")
        self.append_msgs(a, "Gone", [m("1"), m("2")])
        self.ok(a, "SELECT Gone")
        b = self.login()
        r = b.cmd("DELETE Gone")
        self.assertIn(r.status, ("OK", "NO"), r.describe())
        try:
            r = a.cmd("NOOP")
            self.assertIn(r.status, ("OK", "NO", "BAD"), r.describe())
            r = a.cmd("FETCH 1:* UID")
            self.assertIn(r.status, ("OK", "NO", "BAD"), r.describe())
        except ConnectionError:
            pass            # BYE and close is acceptable
        c = self.login()
        self.ok(c, "NOOP")

    # -- output pressure --

    def test_slow_reader_gets_everything(self):
        c = self.login()
        import random as _r
        rnd = _r.Random(5)
        bodies = []
        for i in range(25):
            body = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(76))
            body = (body + b"\r\n") * (rnd.randint(2000, 5000))
            bodies.append(m("slow %d" % i, body))
        self.append_msgs(c, "INBOX", bodies)
        self.ok(c, "SELECT INBOX")
        c.send("f1 FETCH 1:* BODY.PEEK[]\r\n")
        import time as _t
        got = bytearray()
        deadline = _t.monotonic() + 120
        tail = re.compile(rb"\r\nf1 [^\r\n]*\r\n$")
        while not tail.search(got[-300:]):
            self.assertLess(_t.monotonic(), deadline, "slow reader: stalled after %d bytes" % len(got))
            c.sock.settimeout(30)
            chunk = c.sock.recv(16384)
            self.assertTrue(chunk, "server closed on a slow reader after %d bytes" % len(got))
            got += chunk
            _t.sleep(0.002)
        c.buf = bytes(got)
        u, tagged, _ = c.read_until_tag("f1")
        self.assertEqual(tagged.status()[0], "OK", tagged)
        f = [rs.fetch_dict(x) for x in u if x.kind() == "FETCH"]
        self.assertEqual(len(f), 25)
        for i, d in enumerate(f):
            self.assertEqual(bytes(d["BODY[]"]), bodies[i], "message %d corrupted" % (i + 1))

    def test_flood_of_pipelined_commands(self):
        c = self.login(select="INBOX")
        self.append_msgs(c, "INBOX", [m("flood")])
        n = 20000
        data = b"".join(b"n%d FETCH 1 (UID FLAGS BODY.PEEK[HEADER])\r\n" % i for i in range(n))
        err = []

        def sender():
            try:
                c.sock.sendall(data)
            except OSError as e:
                err.append(e)
        th = threading.Thread(target=sender)
        th.start()
        for i in range(n):
            u, tagged, _ = c.read_until_tag("n%d" % i, timeout=60)
            self.assertEqual(tagged.status()[0], "OK", tagged)
            self.assertEqual(len(u), 1)
        th.join(60)
        self.assertEqual(err, [])
        self.ok(c, "NOOP")

    # -- keywords --

    def test_many_keywords(self):
        c, _ = self.box([m("k")])
        kws = ["kw%03d" % i for i in range(100)]
        r = c.cmd("STORE 1 +FLAGS (%s)" % " ".join(kws))
        f = self.one(c, "FETCH 1 FLAGS")["FLAGS"]
        have = {str(x) for x in f}
        if r.status == "OK":
            self.assertTrue(set(kws) <= have, "STORE OK but keywords lost: %d of 100 kept"
                            % len(set(kws) & have))
        else:
            self.expect(r, "NO")
            self.assertFalse(set(kws) & have, "a refused STORE must change nothing")
        c2 = self.login(select="INBOX")
        f2 = self.one(c2, "FETCH 1 FLAGS")["FLAGS"]
        self.assertEqual({str(x) for x in f2}, have - {"\\Recent"} | ({"\\Recent"} & {str(x) for x in f2}))

    def test_idle_sees_expunge_and_exists_in_order(self):
        a, uids = self.box([m("i%d" % i) for i in range(6)])
        b = self.login(select="INBOX")
        a.send("i1 IDLE\r\n")
        r = a.read()
        self.assertTrue(r.continuation, r)
        self.ok(b, "STORE 2,5 +FLAGS.SILENT (\\Deleted)")
        self.ok(b, "EXPUNGE")
        new = self.append_msgs(b, "INBOX", [m("late1"), m("late2")])
        view = list(uids)
        import time as _t
        deadline = _t.monotonic() + 5
        while _t.monotonic() < deadline:
            for x in a.pending(0.1):
                if x.kind() == "EXPUNGE":
                    del view[x.number() - 1]
                elif x.kind() == "EXISTS":
                    view += [None] * (x.number() - len(view))
            if len(view) == 6 and view[:4] == [uids[0], uids[2], uids[3], uids[5]]:
                break
        a.send("DONE\r\n")
        u, tagged, _ = a.read_until_tag("i1")
        for x in u:
            if x.kind() == "EXPUNGE":
                del view[x.number() - 1]
            elif x.kind() == "EXISTS":
                view += [None] * (x.number() - len(view))
        self.assertEqual(view[:4], [uids[0], uids[2], uids[3], uids[5]])
        got = [d["UID"] for _, d in self.ok(a, "FETCH 1:* UID").fetch_list()]
        self.assertEqual(got, [uids[0], uids[2], uids[3], uids[5]] + new)
        self.assertEqual(len(view), len(got), "EXISTS/EXPUNGE during IDLE don't add up")

    # -- other processes and restarts --

    def test_admin_changes_reach_a_selected_session(self):
        a, uids = self.box([m("a1"), m("a2")])
        self.server.import_mbox(self.user, "INBOX", [m("from admin %d" % i) for i in range(3)])
        r = self.ok(a, "NOOP")
        ex = r.numbers("EXISTS")
        if not ex:
            import time as _t
            _t.sleep(1)
            ex = self.ok(a, "NOOP").numbers("EXISTS")
        self.assertEqual(ex[-1:], [5], "messages imported by ringmail-admin while the mailbox "
                         "is selected must show at the next NOOP:\n" + r.describe())
        self.server.admin("expunge", self.user, "INBOX", "%d" % uids[0])
        r = self.ok(a, "NOOP")
        exp = r.numbers("EXPUNGE")
        if not exp:
            import time as _t
            _t.sleep(1)
            exp = self.ok(a, "NOOP").numbers("EXPUNGE")
        self.assertEqual(exp, [1], "ringmail-admin expunge must reach the session")
        self.assertEqual(len(self.ok(a, "FETCH 1:* UID").of("FETCH")), 4)

    def test_state_survives_sigkill_and_restart(self):
        srv = rs.Server(self.backend, {"u": "p"}, {"fsync": "always"}, name="restart")
        try:
            srv.start()
            c = srv.login("u")
            c.ok("CREATE Keep")
            c.ok("SUBSCRIBE Keep")
            uids = []
            for i in range(30):
                r = c.append("Keep", m("keep %d" % i), ["\\Seen"] if i % 3 == 0 else None)
                uids.append(int(r.code_of("APPENDUID").split()[2]))
            c.ok("SELECT Keep")
            c.ok("STORE 2 +FLAGS (\\Flagged $Important)")
            c.ok("STORE 4:6 +FLAGS.SILENT (\\Deleted)")
            c.ok("EXPUNGE")
            before = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])").fetch_list()
            st1 = c.ok("STATUS Keep (UIDVALIDITY UIDNEXT MESSAGES)").of("STATUS")[0].items()[2]
            os.killpg(srv.proc.pid, 9)
            srv.proc.wait()
            srv.proc = None
            srv.start()
            c = srv.login("u")
            st2 = c.ok("STATUS Keep (UIDVALIDITY UIDNEXT MESSAGES)").of("STATUS")[0].items()[2]
            self.assertEqual(st2, st1, "UIDVALIDITY/UIDNEXT/MESSAGES changed by a restart")
            c.ok("SELECT Keep")
            after = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])").fetch_list()
            norm = lambda fl: [(n, d["UID"], sorted(str(x) for x in d["FLAGS"] if str(x) != "\\Recent"),
                                d["RFC822.SIZE"], bytes(d["BODY[]"])) for n, d in fl]  # noqa: E731
            self.assertEqual(norm(after), norm(before))
            lsub = [rs.s(u.items()[3]) for u in c.ok('LSUB "" *').of("LSUB")]
            self.assertEqual(lsub, ["Keep"])
            r = c.append("Keep", m("after restart"))
            self.assertEqual(int(r.code_of("APPENDUID").split()[2]), uids[-1] + 1)
            c.close()
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.stop()
            srv.cleanup()


rs.parametrize(globals(), Edge)

if __name__ == "__main__":
    rs.main()
