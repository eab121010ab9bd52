#!/usr/bin/env python3
"""ringmaild: message commands.  APPEND (flags, date, APPENDUID, TRYCREATE,
MULTIAPPEND), FETCH (every data item, sections, partials, BINARY, macros,
implicit \\Seen), STORE, COPY/MOVE (COPYUID), EXPUNGE, UID EXPUNGE, SEARCH
(keys, CHARSET, decoded bodies), ESEARCH, bad sequence sets.  RFC 3501, 9051,
4315, 6851, 4731, 3516, 3502.  Runs once per io backend."""

import base64
import email.utils
import os
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote, upper  # noqa: E402

# ---------------------------------------------------------------------------
# Test messages (CRLF, exact)

SIMPLE_BODY = b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\nBye.\r\n"
SIMPLE = (b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
          b"From: Terry Gray <gray@cac.washington.edu>\r\n"
          b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
          b"To: imap@cac.washington.edu\r\n"
          b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
          b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
          b"\r\n" + SIMPLE_BODY)
SIMPLE_HEADER = SIMPLE[:SIMPLE.index(b"\r\n\r\n") + 4]

BIN_DATA = bytes(range(256)) * 2
_b64 = base64.b64encode(BIN_DATA).decode()
BIN_B64 = "\r\n".join(_b64[i:i + 76] for i in range(0, len(_b64), 76)).encode()
PART1_MIME = (b"Content-Type: text/plain; charset=UTF-8\r\n"
              b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
PART1_BODY = b"Gr=C3=BC=C3=9Fe aus M=C3=BCnchen, der Bericht kommt.\r\nZweite Zeile\r\n"
PART1_TEXT = "Grüße aus München, der Bericht kommt.\r\nZweite Zeile\r\n".encode()
PART2_MIME = (b'Content-Type: application/octet-stream; name="data.bin"\r\n'
              b"Content-Transfer-Encoding: base64\r\n"
              b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n')
MIXED_HEADER = (b"From: Alice Example <alice@example.com>\r\n"
                b"To: Bob <bob@example.org>\r\n"
                b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= report\r\n"
                b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
                b"Message-ID: <mixed-1@example.com>\r\n"
                b"X-Custom: value-42\r\n"
                b"MIME-Version: 1.0\r\n"
                b'Content-Type: multipart/mixed; boundary="XyZ"\r\n\r\n')
MIXED_TEXT = (b"This is a MIME message.\r\n"
              b"--XyZ\r\n" + PART1_MIME + PART1_BODY + b"\r\n"
              b"--XyZ\r\n" + PART2_MIME + BIN_B64 + b"\r\n"
              b"--XyZ--\r\n")
MIXED = MIXED_HEADER + MIXED_TEXT

INNER = (b"From: Inner Sender <inner@example.net>\r\n"
         b"Subject: the inner one\r\n"
         b"Date: Tue, 2 Jan 2024 08:00:00 +0100\r\n"
         b"\r\n"
         b"Inner body line 1\r\nInner body line 2\r\n")
FWD = (b"From: Bob <bob@example.org>\r\n"
       b"To: Alice Example <alice@example.com>\r\n"
       b"Subject: Fwd: budget\r\n"
       b"Date: Wed, 1 Jan 2020 12:00:00 +0000\r\n"
       b"MIME-Version: 1.0\r\n"
       b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
       b"--b2\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
       b"--b2\r\nContent-Type: message/rfc822\r\n\r\n" + INNER + b"\r\n"
       b"--b2--\r\n")

B64TEXT = (b"From: Carol <carol@example.org>\r\n"
           b"To: alice@example.com\r\n"
           b"Subject: lunch\r\n"
           b"Date: Mon, 15 Mar 2021 12:00:00 +0000\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.b64encode("Ein smörgåsbord für alle, heute um zwölf.\r\n".encode()) + b"\r\n")

BIG = (b"From: Dave <dave@example.com>\r\nTo: alice@example.com\r\nSubject: big one\r\n"
       b"Date: Wed, 1 Jun 2022 12:00:00 +0000\r\n\r\n"
       + b"".join(b"line %05d of the big message, padding padding padding\r\n" % i
                  for i in range(400)))

LATIN1 = (b"From: Eve <eve@example.com>\r\nTo: alice@example.com\r\nSubject: Reise\r\n"
          b"Date: Thu, 1 Sep 2022 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=iso-8859-1\r\n"
          b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
          b"Wir fahren nach K=F6ln und Z=FCrich.\r\n")


def date_of(internaldate):
    return datetime.strptime(rs.s(internaldate), "%d-%b-%Y %H:%M:%S %z")


def flagset(v):
    return {str(f).upper() for f in v} - {"\\RECENT"}


def lines(b):
    return b.count(b"\r\n") + (0 if b.endswith(b"\r\n") or not b else 1)


class Messages(rs.ServerTestCase):

    def setup_box(self, msgs, name="M", enable=None):
        """APPEND msgs to a fresh mailbox of a fresh user and SELECT it.
        Returns (conn, uids)."""
        c = self.login(enable=enable)
        if name != "INBOX":
            self.ok(c, "CREATE " + quote(name))
        uids = []
        for m in msgs:
            flags, date = None, None
            if isinstance(m, tuple):
                m, flags, date = (m + (None,))[:3]
            r = self.expect(c.append(name, m, flags, date), "OK")
            au = r.code_of("APPENDUID")
            self.assertIsNotNone(au, "APPEND OK lacks [APPENDUID]: %r" % r.tagged)
            uids.append(int(au.split()[2]))
        self.ok(c, "SELECT " + quote(name))
        return c, uids

    def fetch1(self, c, cmd, n=1):
        r = self.ok(c, cmd)
        f = r.fetches()
        self.assertIn(n, f, r.describe())
        return f[n]

    # -- APPEND --

    def test_append_flags_date_appenduid(self):
        c = self.login()
        r = self.expect(c.append("INBOX", SIMPLE, ["\\Seen", "\\Flagged", "$Forwarded", "Work"],
                                 "17-Jul-1996 02:44:25 -0700"), "OK", "APPENDUID")
        _, uidv, uid = r.code.split()
        r2 = self.expect(c.append("INBOX", MIXED, plus=False), "OK", "APPENDUID")
        self.assertEqual(r2.code.split()[1], uidv, "UIDVALIDITY changed between APPENDs")
        self.assertGreater(int(r2.code.split()[2]), int(uid))
        sel = self.ok(c, "SELECT INBOX")
        codes = {x.split()[0].upper(): x for x in sel.codes()}
        self.assertEqual(codes["UIDVALIDITY"].split()[1], uidv)
        f = self.fetch1(c, "FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(f["UID"], int(uid))
        self.assertEqual(flagset(f["FLAGS"]), {"\\SEEN", "\\FLAGGED", "$FORWARDED", "WORK"})
        self.assertEqual(date_of(f["INTERNALDATE"]),
                         datetime(1996, 7, 17, 9, 44, 25, tzinfo=timezone.utc))
        self.assertEqual(f["RFC822.SIZE"], len(SIMPLE))
        self.assertEqual(bytes(f["BODY[]"]), SIMPLE)
        f = self.fetch1(c, "FETCH 2 (FLAGS INTERNALDATE BODY.PEEK[])", 2)
        self.assertEqual(bytes(f["BODY[]"]), MIXED)
        self.assertEqual(flagset(f["FLAGS"]), set())
        age = abs(time.time() - date_of(f["INTERNALDATE"]).timestamp())
        self.assertLess(age, 300, "INTERNALDATE of an APPEND without date must be now")

    def test_append_trycreate_and_errors(self):
        c = self.login()
        self.expect(c.append("Nope", SIMPLE), "NO", "TRYCREATE")
        self.expect(c.append("Nope", SIMPLE, plus=False), "NO", "TRYCREATE")
        for args in (("INBOX", SIMPLE, None, "31-Foo-2020 00:00:00 +0000"),
                     ("INBOX", SIMPLE, None, "1-Jan-2020")):
            c = self.login()
            self.expect(c.append(*args), "BAD")
        self.each(self.login, [b"APPEND INBOX (\\Seen {5+}\r\nhello", b"APPEND INBOX",
                               b'APPEND INBOX "not a literal"'], "BAD")
        self.ok(c, "NOOP")
        r = self.ok(c, "STATUS INBOX (MESSAGES)")
        self.assertIn(b"MESSAGES 0", r.of("STATUS")[0].raw)

    def test_append_to_selected_mailbox_reports_exists(self):
        c, _ = self.setup_box([SIMPLE], "INBOX")
        r = self.expect(c.append("INBOX", MIXED), "OK")
        ex = r.numbers("EXISTS") + self.ok(c, "NOOP").numbers("EXISTS")
        self.assertEqual(ex[-1:], [2], "EXISTS for the own APPEND by the next command")

    def test_append_large_sync_literal(self):
        c = self.login()
        big = b"Subject: large\r\n\r\n" + b"".join(
            b"%07d abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n" % i
            for i in range(70000))
        r = c.cmd_lit("APPEND INBOX ", big, "", timeout=60)
        self.expect(r, "OK")
        self.assertEqual(len(r.continuations), 1)
        self.ok(c, "SELECT INBOX")
        f = self.fetch1(c, "FETCH 1 (RFC822.SIZE BODY.PEEK[]<4000000.1000>)")
        self.assertEqual(f["RFC822.SIZE"], len(big))
        self.assertEqual(bytes(f["BODY[]<4000000>"]), big[4000000:4001000])
        f = self.fetch1(c, "FETCH 1 BODY.PEEK[]", )
        self.assertEqual(bytes(f["BODY[]"]), big)

    def test_append_bare_lf_is_consistent(self):
        c = self.login()
        m = b"Subject: lf only\nFrom: x@example.com\n\nline one\nline two\n"
        self.expect(c.append("INBOX", m), "OK")
        self.ok(c, "SELECT INBOX")
        f = self.fetch1(c, "FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(f["RFC822.SIZE"], len(f["BODY[]"]), "RFC822.SIZE != length of BODY[]")
        self.assertIn(bytes(f["BODY[]"]), (m, rs.crlf(m)))
        self.assertEqual(bytes(f["BODY[HEADER.FIELDS (SUBJECT)]"]).replace(b"\r", b""),
                         b"Subject: lf only\n\n")

    def test_multiappend(self):
        c = self.login()
        if "MULTIAPPEND" not in c.capabilities():
            self.skipTest("MULTIAPPEND not advertised")
        r = self.ok(c, b"APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s"
                    % (len(SIMPLE), SIMPLE, len(MIXED), MIXED))
        code = r.code_of("APPENDUID")
        self.assertIsNotNone(code, r.describe())
        self.assertEqual(len(rs.seqset(code.split()[2])), 2, code)
        self.ok(c, "SELECT INBOX")
        f = self.ok(c, "FETCH 1:2 (FLAGS BODY.PEEK[])").fetches()
        self.assertEqual(bytes(f[1]["BODY[]"]), SIMPLE)
        self.assertEqual(bytes(f[2]["BODY[]"]), MIXED)
        self.assertEqual(flagset(f[2]["FLAGS"]), {"\\FLAGGED"})
        # one bad message: none is appended
        r = c.cmd(b"APPEND INBOX {%d+}\r\n%s (\\Bad Syntax {3+}\r\nabc" % (len(SIMPLE), SIMPLE))
        self.expect(r, "BAD")
        self.assertEqual(self.ok(c, "NOOP").numbers("EXISTS"), [])

    # -- FETCH --

    def test_fetch_envelope(self):
        c, _ = self.setup_box([SIMPLE, MIXED])
        f = self.fetch1(c, "FETCH 1 ENVELOPE")
        gray = [["TERRY GRAY", None, "GRAY", "CAC.WASHINGTON.EDU"]]
        want = ["WED, 17 JUL 1996 02:23:25 -0700 (PDT)",
                "IMAP4REV1 WG MTG SUMMARY AND MINUTES",
                gray, gray, gray,
                [[None, None, "IMAP", "CAC.WASHINGTON.EDU"]],
                [[None, None, "MINUTES", "CNRI.RESTON.VA.US"],
                 ["JOHN KLENSIN", None, "KLENSIN", "MIT.EDU"]],
                None, None, "<B27397-0100000@CAC.WASHINGTON.EDU>"]
        self.assertEqual(upper(f["ENVELOPE"]), want)
        f = self.fetch1(c, "FETCH 2 ENVELOPE", 2)
        env = f["ENVELOPE"]
        self.assertEqual(rs.s(env[1]), "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= report",
                         "ENVELOPE subject is the raw header (no decoding in IMAP4rev1)")
        self.assertEqual(upper(env[2]), [["ALICE EXAMPLE", None, "ALICE", "EXAMPLE.COM"]])
        self.assertEqual(rs.s(env[9]), "<mixed-1@example.com>")

    def test_fetch_bodystructure_simple(self):
        c, _ = self.setup_box([SIMPLE])
        f = self.fetch1(c, "FETCH 1 (BODY BODYSTRUCTURE)")
        basic = ["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT",
                 len(SIMPLE_BODY), lines(SIMPLE_BODY)]
        self.assertEqual(upper(f["BODY"]), basic, "BODY (non-extensible)")
        bs = upper(f["BODYSTRUCTURE"])
        self.assertEqual(bs[:8], basic)
        for ext in bs[8:]:
            self.assertIn(ext, (None, []), "extension data of a plain part: %r" % bs)

    def test_fetch_bodystructure_multipart(self):
        c, _ = self.setup_box([MIXED, FWD])
        bs = upper(self.fetch1(c, "FETCH 1 BODYSTRUCTURE")["BODYSTRUCTURE"])
        p1, p2 = bs[0], bs[1]
        self.assertEqual(p1[:8], ["TEXT", "PLAIN", ["CHARSET", "UTF-8"], None, None,
                                  "QUOTED-PRINTABLE", len(PART1_BODY), lines(PART1_BODY)])
        self.assertEqual(p2[:7], ["APPLICATION", "OCTET-STREAM", ["NAME", "DATA.BIN"], None,
                                  None, "BASE64", len(BIN_B64)])
        # extension data: md5, disposition
        self.assertEqual(p2[7], None)
        self.assertEqual(p2[8], ["ATTACHMENT", ["FILENAME", "DATA.BIN"]])
        self.assertEqual(bs[2], "MIXED")
        self.assertEqual(bs[3], ["BOUNDARY", "XYZ"])
        body = upper(self.fetch1(c, "FETCH 1 BODY")["BODY"])
        self.assertEqual(body, [p1[:8], p2[:7], "MIXED"], "BODY has no extension data")
        # message/rfc822 part: type subtype params id desc enc size envelope body lines
        bs = upper(self.fetch1(c, "FETCH 2 BODYSTRUCTURE", 2)["BODYSTRUCTURE"])
        m = bs[1]
        self.assertEqual(m[:2], ["MESSAGE", "RFC822"])
        self.assertEqual(m[6], len(INNER))
        self.assertEqual(m[7][1], "THE INNER ONE")
        self.assertEqual(m[8][:2], ["TEXT", "PLAIN"])
        self.assertEqual(m[9], lines(INNER))

    def test_fetch_sections(self):
        c, _ = self.setup_box([SIMPLE, MIXED, FWD])
        f = self.fetch1(c, "FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] "
                        "BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT DATE)])")
        self.assertEqual(bytes(f["BODY[]"]), SIMPLE)
        self.assertEqual(bytes(f["BODY[HEADER]"]), SIMPLE_HEADER)
        self.assertEqual(bytes(f["BODY[TEXT]"]), SIMPLE_BODY)
        self.assertEqual(bytes(f["BODY[1]"]), SIMPLE_BODY, "part 1 of a non-multipart message")
        self.assertEqual(bytes(f["BODY[HEADER.FIELDS (SUBJECT)]"]),
                         b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n\r\n")
        notf = bytes(f["BODY[HEADER.FIELDS.NOT (SUBJECT DATE)]"])
        self.assertNotIn(b"Subject:", notf)
        self.assertNotIn(b"Date:", notf)
        self.assertTrue(notf.startswith(b"From: Terry Gray") and notf.endswith(b"\r\n\r\n"), notf)
        # header field names match case-insensitively; the field as stored
        f = self.fetch1(c, "FETCH 1 BODY.PEEK[HEADER.FIELDS (cc message-id)]")
        v = [v for k, v in f.items() if k.startswith("BODY[HEADER.FIELDS")][0]
        self.assertEqual(bytes(v), b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>"
                         b"\r\nMessage-Id: <B27397-0100000@cac.washington.edu>\r\n\r\n")
        f = self.fetch1(c, "FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] "
                        "BODY.PEEK[TEXT] BODY.PEEK[HEADER])", 2)
        self.assertEqual(bytes(f["BODY[1]"]), PART1_BODY)
        self.assertEqual(bytes(f["BODY[1.MIME]"]), PART1_MIME)
        self.assertEqual(bytes(f["BODY[2]"]), BIN_B64)
        self.assertEqual(bytes(f["BODY[2.MIME]"]), PART2_MIME)
        self.assertEqual(bytes(f["BODY[TEXT]"]), MIXED_TEXT)
        self.assertEqual(bytes(f["BODY[HEADER]"]), MIXED_HEADER)
        f = self.fetch1(c, "FETCH 3 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2] "
                        "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.1])", 3)
        self.assertEqual(bytes(f["BODY[2]"]), INNER)
        self.assertEqual(bytes(f["BODY[2.HEADER]"]), INNER[:INNER.index(b"\r\n\r\n") + 4])
        self.assertEqual(bytes(f["BODY[2.TEXT]"]), INNER[INNER.index(b"\r\n\r\n") + 4:])
        self.assertEqual(bytes(f["BODY[2.1]"]), INNER[INNER.index(b"\r\n\r\n") + 4:])
        self.assertEqual(bytes(f["BODY[2.HEADER.FIELDS (SUBJECT)]"]),
                         b"Subject: the inner one\r\n\r\n")

    def test_fetch_partial(self):
        c, _ = self.setup_box([SIMPLE])
        f = self.fetch1(c, "FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<6.3> BODY.PEEK[]<5.100000>)")
        self.assertEqual(bytes(f["BODY[]<0>"]), SIMPLE[:10])
        self.assertEqual(bytes(f["BODY[TEXT]<6>"]), SIMPLE_BODY[6:9])
        self.assertEqual(bytes(f["BODY[]<5>"]), SIMPLE[5:])
        f = self.fetch1(c, "FETCH 1 BODY.PEEK[]<100000.10>")
        self.assertEqual(bytes(f["BODY[]<100000>"]), b"", "partial beyond the end: empty string")

    def test_fetch_binary(self):
        c, _ = self.setup_box([MIXED, SIMPLE], enable="IMAP4rev2")
        f = self.fetch1(c, "FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1] BINARY.SIZE[1])")
        self.assertEqual(bytes(f["BINARY[2]"]), BIN_DATA, "decoded base64 part")
        self.assertEqual(f["BINARY.SIZE[2]"], len(BIN_DATA))
        self.assertEqual(bytes(f["BINARY[1]"]), PART1_TEXT, "decoded quoted-printable part")
        self.assertEqual(f["BINARY.SIZE[1]"], len(PART1_TEXT))
        self.assertIsInstance(f["BINARY[2]"], rs.Literal, "binary data needs a literal8")
        f = self.fetch1(c, "FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1]<6.5>)", 2)
        self.assertEqual(bytes(f["BINARY[1]<6>"]), SIMPLE_BODY[6:11])
        self.assertEqual(bytes(f["BINARY[1]"]), SIMPLE_BODY)
        self.assertEqual(f["BINARY.SIZE[1]"], len(SIMPLE_BODY))
        # BINARY of a multipart as a whole is not allowed: BAD? RFC 3516 -> the
        # section must be a leaf; unknown encodings give NO [UNKNOWN-CTE]
        self.expect(c.cmd("FETCH 1 BINARY[HEADER]"), "BAD")
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), set(),
                         "BINARY.PEEK must not set \\Seen")
        self.fetch1(c, "FETCH 1 BINARY[1]")
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), {"\\SEEN"},
                         "BINARY[] sets \\Seen")

    def test_fetch_binary_unknown_cte(self):
        m = (b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-weird\r\n\r\n"
             b"data\r\n")
        c, _ = self.setup_box([m], enable="IMAP4rev2")
        self.expect(c.cmd("FETCH 1 BINARY.PEEK[1]"), "NO", "UNKNOWN-CTE")

    def test_fetch_rfc822_items(self):
        c, _ = self.setup_box([SIMPLE, SIMPLE])
        f = self.fetch1(c, "FETCH 1 RFC822.HEADER")
        self.assertEqual(bytes(f["RFC822.HEADER"]), SIMPLE_HEADER)
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), set(),
                         "RFC822.HEADER must not set \\Seen")
        f = self.fetch1(c, "FETCH 1 RFC822.TEXT")
        self.assertEqual(bytes(f["RFC822.TEXT"]), SIMPLE_BODY)
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), {"\\SEEN"},
                         "RFC822.TEXT sets \\Seen")
        f = self.fetch1(c, "FETCH 2 (RFC822 RFC822.SIZE)", 2)
        self.assertEqual(bytes(f["RFC822"]), SIMPLE)
        self.assertEqual(f["RFC822.SIZE"], len(SIMPLE))
        self.assertEqual(flagset(self.fetch1(c, "FETCH 2 FLAGS", 2)["FLAGS"]), {"\\SEEN"})

    def test_fetch_macros(self):
        c, uids = self.setup_box([SIMPLE])
        keys = lambda cmd: {k.upper() for k in self.fetch1(c, cmd)}  # noqa: E731
        self.assertEqual(keys("FETCH 1 ALL"), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"})
        self.assertEqual(keys("FETCH 1 FAST"), {"FLAGS", "INTERNALDATE", "RFC822.SIZE"})
        self.assertEqual(keys("FETCH 1 FULL"),
                         {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})
        f = self.fetch1(c, "UID FETCH %d FLAGS" % uids[0])
        self.assertEqual(f["UID"], uids[0], "UID FETCH responses must include UID")
        self.expect(c.cmd("FETCH 1 (ALL)"), "BAD", msg="macros cannot be in a list")

    def test_seen_set_by_body_not_by_peek(self):
        c, _ = self.setup_box([SIMPLE, SIMPLE, SIMPLE])
        self.fetch1(c, "FETCH 1 BODY.PEEK[]")
        self.fetch1(c, "FETCH 1 BODY.PEEK[TEXT]<0.5>")
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), set())
        r = self.ok(c, "FETCH 2 BODY[]")
        merged = r.fetches()[2]
        if "FLAGS" not in merged:
            merged = self.fetch1(c, "FETCH 2 FLAGS", 2)
        self.assertEqual(flagset(merged["FLAGS"]), {"\\SEEN"})
        self.fetch1(c, "FETCH 3 BODY[TEXT]<0.5>", 3)
        self.assertEqual(flagset(self.fetch1(c, "FETCH 3 FLAGS", 3)["FLAGS"]), {"\\SEEN"},
                         "a partial BODY[] sets \\Seen too")
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), set())

    def test_fetch_errors(self):
        c, _ = self.setup_box([SIMPLE, SIMPLE])
        for cmd in ("FETCH 1 (FLAGS", "FETCH 1 NOSUCHITEM", "FETCH 1 BODY[HEADER.FIELDS]",
                    "FETCH 1 BODY[]<10>", "FETCH 1 BODY[NOSUCH]", "FETCH 1 BODY[0]",
                    "FETCH 1", "FETCH FLAGS", "FETCH 0 FLAGS", "FETCH 3 FLAGS",
                    "FETCH 1:3 FLAGS", "FETCH 1,,2 FLAGS", "FETCH 1: FLAGS", "FETCH a FLAGS",
                    "FETCH -1 FLAGS", "FETCH 1:0 FLAGS", "FETCH 4294967296 FLAGS",
                    "UID FETCH 0 FLAGS", "UID FETCH x FLAGS", "FETCH 1 BODY[1.0]"):
            c = self.login(select="M")
            self.expect(c.cmd(cmd), "BAD", msg=cmd)
        r = self.ok(c, "UID FETCH 999 FLAGS")
        self.assertEqual(r.of("FETCH"), [], "UID FETCH of a missing UID: no data, OK")
        r = self.ok(c, "UID FETCH 1:4294967295 UID")
        self.assertEqual(len(r.of("FETCH")), 2)
        r = self.ok(c, "FETCH 2:1 UID")
        self.assertEqual(sorted(r.fetches()), [1, 2], "2:1 is the same as 1:2")
        r = self.ok(c, "FETCH *:1,1 UID")
        self.assertEqual(sorted(r.fetches()), [1, 2])

    def test_fetch_many_messages_in_order(self):
        msgs = [(b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i)) for i in range(60)]
        c, uids = self.setup_box(msgs)
        r = self.ok(c, "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        got = r.fetch_list()
        self.assertEqual([n for n, _ in got], list(range(1, 61)))
        self.assertEqual([d["UID"] for _, d in got], uids)
        for i, (_, d) in enumerate(got):
            self.assertEqual(bytes(d["BODY[HEADER.FIELDS (SUBJECT)]"]), b"Subject: n%d\r\n\r\n" % i)

    # -- STORE --

    def test_store(self):
        c, uids = self.setup_box([SIMPLE, SIMPLE, SIMPLE])
        r = self.ok(c, "STORE 1 +FLAGS (\\Flagged)")
        self.assertEqual(flagset(r.fetches()[1]["FLAGS"]), {"\\FLAGGED"}, r.describe())
        r = self.ok(c, "STORE 1 +FLAGS (\\Seen $Label1)")
        self.assertEqual(flagset(r.fetches()[1]["FLAGS"]), {"\\FLAGGED", "\\SEEN", "$LABEL1"})
        r = self.ok(c, "STORE 1 -FLAGS (\\Flagged)")
        self.assertEqual(flagset(r.fetches()[1]["FLAGS"]), {"\\SEEN", "$LABEL1"})
        r = self.ok(c, "STORE 1 FLAGS (\\Answered)")
        self.assertEqual(flagset(r.fetches()[1]["FLAGS"]), {"\\ANSWERED"})
        r = self.ok(c, "STORE 1 FLAGS ()")
        self.assertEqual(flagset(r.fetches()[1]["FLAGS"]), set())
        r = self.ok(c, "STORE 2:3 +FLAGS.SILENT (\\Draft)")
        self.assertEqual(r.of("FETCH"), [], ".SILENT: no FETCH responses")
        f = self.ok(c, "FETCH 1:3 FLAGS").fetches()
        self.assertEqual([flagset(f[i]["FLAGS"]) for i in (1, 2, 3)],
                         [set(), {"\\DRAFT"}, {"\\DRAFT"}])
        self.ok(c, "STORE 2 -FLAGS.SILENT (\\Draft)")
        self.ok(c, "STORE 3 FLAGS.SILENT (\\Deleted)")
        r = self.ok(c, "STORE 1 +FLAGS \\Seen")
        self.assertEqual(flagset(r.fetches()[1]["FLAGS"]), {"\\SEEN"}, "flags without parens")
        r = self.ok(c, "UID STORE %d +FLAGS (\\Flagged)" % uids[1])
        d = r.fetches()[2]
        self.assertEqual(d.get("UID"), uids[1], "UID STORE responses must include UID:\n"
                         + r.describe())
        f = self.ok(c, "FETCH 1:3 FLAGS").fetches()
        self.assertEqual([flagset(f[i]["FLAGS"]) for i in (1, 2, 3)],
                         [{"\\SEEN"}, {"\\FLAGGED"}, {"\\DELETED"}])
        # keywords persist across sessions and show in PERMANENTFLAGS/FLAGS
        self.ok(c, "STORE 1 +FLAGS (Work $Forwarded)")
        c2 = self.login()
        sel = self.ok(c2, "SELECT M")
        fl = {x.upper() for x in sel.of("FLAGS")[0].items()[1]}
        self.assertTrue({"WORK", "$FORWARDED"} <= fl, "FLAGS must list keywords in use: %s" % fl)
        f = self.fetch1(c2, "FETCH 1 FLAGS")
        self.assertEqual(flagset(f["FLAGS"]), {"\\SEEN", "WORK", "$FORWARDED"})

    def test_store_errors(self):
        c, _ = self.setup_box([SIMPLE])
        sel = lambda: self.login(select="M")  # noqa: E731
        self.each(sel, ["STORE 1 BADITEM (\\Seen)", "STORE 1 +FLAGS (\\Seen", "STORE 1 +FLAGS",
                        "STORE 2 +FLAGS (\\Seen)", "STORE 1 +FLAGS (bad(keyword)"], "BAD")
        self.each(sel, ["STORE 1 +FLAGS (\\Recent)", "STORE 1 +FLAGS (\\NoSuchSystemFlag)"],
                  ("BAD", "NO"))
        r = self.ok(c, "UID STORE 999 +FLAGS (\\Seen)")
        self.assertEqual(r.of("FETCH"), [])
        self.assertEqual(flagset(self.fetch1(c, "FETCH 1 FLAGS")["FLAGS"]), set())

    # -- COPY / MOVE --

    def test_copy(self):
        c, uids = self.setup_box([(SIMPLE, ["\\Seen", "Work"]), MIXED, FWD])
        self.ok(c, "CREATE Dest")
        r = self.expect(c.cmd("COPY 1:2 Dest"), "OK", "COPYUID")
        _, v, src, dst = r.code.split()
        self.assertEqual(rs.seqset(src), uids[:2])
        self.assertEqual(len(rs.seqset(dst)), 2)
        self.assertEqual(r.of("EXPUNGE"), [])
        st = self.ok(c, "STATUS Dest (MESSAGES UIDVALIDITY)").of("STATUS")[0].items()[2]
        st = {str(k).upper(): int(x) for k, x in zip(st[::2], st[1::2])}
        self.assertEqual(st["MESSAGES"], 2)
        self.assertEqual(st["UIDVALIDITY"], int(v))
        c2 = self.login(select="Dest")
        f = self.ok(c2, "UID FETCH 1:* (UID FLAGS BODY.PEEK[])").fetches()
        self.assertEqual([f[i]["UID"] for i in (1, 2)], rs.seqset(dst))
        self.assertEqual(flagset(f[1]["FLAGS"]), {"\\SEEN", "WORK"}, "COPY keeps flags")
        self.assertEqual(bytes(f[1]["BODY[]"]), SIMPLE)
        self.assertEqual(bytes(f[2]["BODY[]"]), MIXED)
        # UID COPY, and copying into the same mailbox
        r = self.expect(c.cmd("UID COPY %d M" % uids[2]), "OK", "COPYUID")
        self.assertEqual(rs.seqset(r.code.split()[2]), [uids[2]])
        self.assertGreater(rs.seqset(r.code.split()[3])[0], uids[2])
        ex = r.numbers("EXISTS") + self.ok(c, "NOOP").numbers("EXISTS")
        self.assertEqual(ex[-1:], [4])
        # errors
        self.expect(c.cmd("COPY 1 Nope"), "NO", "TRYCREATE")
        self.expect(c.cmd("COPY 9 Dest"), "BAD")
        self.expect(c.cmd("COPY 1"), "BAD")
        r = self.ok(c, "UID COPY 999 Dest")
        self.assertIsNone(r.code_of("COPYUID"), "nothing copied: no COPYUID")

    def test_move(self):
        c, uids = self.setup_box([SIMPLE, MIXED, FWD, B64TEXT])
        self.ok(c, "CREATE Dest")
        r = self.expect(c.cmd("MOVE 2:3 Dest"), "OK")
        code = r.code_of("COPYUID")
        self.assertIsNotNone(code, "MOVE must report COPYUID (RFC 6851 4.3):\n" + r.describe())
        self.assertEqual(sorted(rs.seqset(code.split()[2])), uids[1:3])
        # the untagged OK [COPYUID] comes before the EXPUNGEs
        cu = [i for i, u in enumerate(r.untagged)
              if u.status() and (u.status()[1] or "").upper().startswith("COPYUID")]
        ex = [i for i, u in enumerate(r.untagged) if u.kind() == "EXPUNGE"]
        if cu:
            self.assertLess(cu[0], ex[0], "RFC 6851: untagged OK [COPYUID] before the "
                            "EXPUNGEs:\n" + r.describe())
        # EXPUNGE responses: apply them to the view, 2 and 3 must be gone
        view = list(uids)
        for n in r.numbers("EXPUNGE"):
            del view[n - 1]
        self.assertEqual(view, [uids[0], uids[3]], r.describe())
        f = self.ok(c, "FETCH 1:* UID").fetches()
        self.assertEqual([f[i]["UID"] for i in sorted(f)], view)
        c2 = self.login(select="Dest")
        f = self.ok(c2, "FETCH 1:* BODY.PEEK[]").fetches()
        self.assertEqual([bytes(f[i]["BODY[]"]) for i in (1, 2)], [MIXED, FWD])
        # UID MOVE
        r = self.expect(c.cmd("UID MOVE %d Dest" % uids[3]), "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [2], r.describe())
        # errors: nothing is expunged
        r = self.expect(c.cmd("MOVE 1 Nope"), "NO", "TRYCREATE")
        self.assertEqual(r.of("EXPUNGE"), [])
        self.expect(c.cmd("MOVE 5 Dest"), "BAD")
        self.assertEqual(len(self.ok(c, "FETCH 1:* UID").of("FETCH")), 1)
        self.ok(c, "EXAMINE M")
        self.expect(c.cmd("MOVE 1 Dest"), "NO", msg="MOVE from a read-only mailbox")

    def test_expunge(self):
        c, uids = self.setup_box([SIMPLE] * 6)
        self.ok(c, "STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
        r = self.ok(c, "EXPUNGE")
        view = list(uids)
        for n in r.numbers("EXPUNGE"):
            self.assertTrue(1 <= n <= len(view), r.describe())
            del view[n - 1]
        self.assertEqual(view, [uids[0], uids[2], uids[5]], r.describe())
        f = self.ok(c, "FETCH 1:* UID").fetches()
        self.assertEqual([f[i]["UID"] for i in sorted(f)], view)
        r = self.ok(c, "EXPUNGE")
        self.assertEqual(r.of("EXPUNGE"), [])
        self.expect(c.cmd("EXPUNGE 1"), "BAD")

    def test_uid_expunge(self):
        c, uids = self.setup_box([SIMPLE] * 4)
        self.ok(c, "STORE 2:3 +FLAGS.SILENT (\\Deleted)")
        r = self.ok(c, "UID EXPUNGE %d" % uids[2])
        self.assertEqual(r.numbers("EXPUNGE"), [3], r.describe())
        f = self.ok(c, "FETCH 1:* (UID FLAGS)").fetches()
        self.assertEqual([f[i]["UID"] for i in sorted(f)], [uids[0], uids[1], uids[3]])
        self.assertIn("\\DELETED", flagset(f[2]["FLAGS"]))
        r = self.ok(c, "UID EXPUNGE %d:%d" % (uids[0], uids[0]))
        self.assertEqual(r.of("EXPUNGE"), [], "UID EXPUNGE of a message without \\Deleted")
        self.expect(c.cmd("UID EXPUNGE"), "BAD")
        self.expect(c.cmd("UID EXPUNGE x"), "BAD")

    # -- SEARCH --

    def search_box(self, enable=None):
        return self.setup_box([
            (SIMPLE, ["\\Seen"], "17-Jul-1996 12:00:00 +0000"),
            (MIXED, ["\\Flagged"], "07-Feb-1994 12:00:00 +0000"),
            (FWD, ["$Work"], "01-Jan-2020 12:00:00 +0000"),
            (B64TEXT, ["\\Seen", "\\Answered"], "15-Mar-2021 12:00:00 +0000"),
            (BIG, ["\\Deleted"], "01-Jun-2022 12:00:00 +0000"),
            (LATIN1, [], "01-Sep-2022 12:00:00 +0000"),
        ], enable=enable)

    def s(self, c, criteria, uid=False):
        r = self.ok(c, ("UID " if uid else "") + "SEARCH " + criteria)
        got = r.search()
        self.assertIsNotNone(got, "no * SEARCH response:\n" + r.describe())
        return sorted(got)

    def test_search_keys(self):
        c, uids = self.search_box()
        cases = [
            ("ALL", [1, 2, 3, 4, 5, 6]),
            ("UNSEEN", [2, 3, 5, 6]), ("SEEN", [1, 4]),
            ("FLAGGED", [2]), ("UNFLAGGED", [1, 3, 4, 5, 6]),
            ("DELETED", [5]), ("UNDELETED", [1, 2, 3, 4, 6]),
            ("ANSWERED", [4]), ("UNANSWERED", [1, 2, 3, 5, 6]),
            ("DRAFT", []), ("KEYWORD $Work", [3]), ("UNKEYWORD $Work", [1, 2, 4, 5, 6]),
            ("RECENT", [1, 2, 3, 4, 5, 6]), ("NEW", [2, 3, 5, 6]), ("OLD", []),
            ('FROM "terry"', [1]), ('FROM "ALICE@EXAMPLE"', [2]), ("FROM bob", [3]),
            ('TO "alice@example.com"', [3, 4, 5, 6]),
            ('CC "klensin"', [1]),
            ('SUBJECT "mtg summary"', [1]), ("SUBJECT budget", [3]),
            ('SUBJECT "REPORT"', [2]),
            ('BODY "3:30 tomorrow"', [1]), ('BODY "see below"', [3]),
            ('TEXT "value-42"', [2]), ('TEXT "Bericht"', [2]),
            ('HEADER X-Custom "value-42"', [2]), ('HEADER X-Custom ""', [2]),
            ('HEADER Message-ID "mixed-1"', [2]),
            ("LARGER 10000", [5]), ("SMALLER 600", [1, 3, 4, 6]),
            ("SINCE 1-Jan-2020", [3, 4, 5, 6]), ("BEFORE 1-Jan-1995", [2]),
            ("ON 17-Jul-1996", [1]), ("SINCE 17-Jul-1996 BEFORE 18-Jul-1996", [1]),
            ("SENTBEFORE 1-Jan-1995", [2]), ("SENTON 15-Mar-2021", [4]),
            ("SENTSINCE 1-Jun-2022", [5, 6]),
            ("2:4", [2, 3, 4]), ("*", [6]), ("2:4 NOT 3", [2, 4]),
            ("UID %d:%d" % (uids[1], uids[2]), [2, 3]),
            ("NOT SEEN", [2, 3, 5, 6]), ("OR FLAGGED ANSWERED", [2, 4]),
            ("OR (FROM alice SUBJECT report) KEYWORD $Work", [2, 3]),
            ("(SEEN ANSWERED)", [4]), ("NOT (OR SEEN FLAGGED)", [3, 5, 6]),
            ("OR OR FLAGGED ANSWERED DELETED", [2, 4, 5]),
        ]
        for crit, want in cases:
            self.assertEqual(self.s(c, crit), want, "SEARCH " + crit)
        # UID SEARCH answers UIDs
        self.assertEqual(self.s(c, "FLAGGED", uid=True), [uids[1]])
        self.assertEqual(self.s(c, "UID %d" % uids[5], uid=True), [uids[5]])

    def test_search_decoded_and_charset(self):
        c, uids = self.search_box()
        cases = [
            ("smörgåsbord", [4], "base64 body"),
            ("heute um zwölf", [4], "base64 body"),
            ("Grüße aus München", [2], "quoted-printable UTF-8 body"),
        ]
        for text, want, why in cases:
            b = text.encode()
            r = self.ok(c, b"SEARCH CHARSET UTF-8 BODY {%d+}\r\n%s" % (len(b), b))
            self.assertEqual(sorted(r.search() or []), want, "BODY %s (%s)" % (text, why))
        b = "grüße".encode()
        r = self.ok(c, b"SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n%s" % (len(b), b))
        self.assertEqual(r.search(), [2], "SUBJECT matches the decoded encoded-word, "
                         "case-insensitively")
        r = self.ok(c, "SEARCH CHARSET US-ASCII FROM terry")
        self.assertEqual(r.search(), [1])
        self.expect(c.cmd("SEARCH CHARSET X-NO-SUCH-CHARSET FROM x"), "NO", "BADCHARSET")

    def test_search_latin1_body(self):
        c, uids = self.search_box()
        b = "Köln und Zürich".encode()
        r = self.ok(c, b"SEARCH CHARSET UTF-8 BODY {%d+}\r\n%s" % (len(b), b))
        self.assertEqual(r.search(), [6], "ISO-8859-1 quoted-printable body, searched in UTF-8")

    def test_search_errors(self):
        c, _ = self.search_box()
        sel = lambda: self.login(select="M")  # noqa: E731
        self.each(sel, ["SEARCH " + crit for crit in (
            "NOSUCHKEY", "FROM", "SINCE 32-Foo-2020", "LARGER x", "(SEEN", "OR SEEN", "UID",
            "HEADER X-Custom", "0:2", "1,,2", "KEYWORD")] + ["SEARCH"], "BAD")
        # deep nesting (within the 64 KiB line limit): any clean answer, no crash
        self.each(sel, ["SEARCH " + "NOT " * 15000 + "ALL",
                        "SEARCH " + "(" * 30000 + "ALL" + ")" * 30000,
                        "SEARCH " + "OR ALL " * 9000 + "ALL"], ("BAD", "NO", "OK"))
        self.ok(c, "NOOP")

    def test_esearch(self):
        c, uids = self.search_box()
        if "ESEARCH" not in c.capabilities():
            self.fail("ESEARCH not advertised")
        r = self.ok(c, "SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
        e = r.esearch()
        self.assertEqual(r.search(), None, "RETURN given: no * SEARCH")
        self.assertIsNotNone(e, r.describe())
        self.assertEqual(e.get("TAG"), r.tagged.tag)
        self.assertNotIn("UID", e)
        self.assertEqual((e["MIN"], e["MAX"], e["COUNT"]), (2, 6, 4), e)
        self.assertEqual(rs.seqset(e["ALL"]), [2, 3, 5, 6])
        e = self.ok(c, "SEARCH RETURN (COUNT) DELETED").esearch()
        self.assertEqual(e.get("COUNT"), 1)
        self.assertNotIn("ALL", e)
        e = self.ok(c, "SEARCH RETURN () FLAGGED").esearch()
        self.assertEqual(rs.seqset(e.get("ALL")), [2], "RETURN () is RETURN (ALL)")
        e = self.ok(c, "SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD nosuch").esearch()
        self.assertEqual(e.get("COUNT"), 0, "COUNT is always returned")
        for k in ("MIN", "MAX", "ALL"):
            self.assertNotIn(k, e, "no matches: no %s" % k)
        r = self.ok(c, "UID SEARCH RETURN (ALL MIN) SEEN")
        e = r.esearch()
        self.assertTrue(e.get("UID"), "UID SEARCH: ESEARCH with the UID indicator")
        self.assertEqual(rs.seqset(e["ALL"]), [uids[0], uids[3]])
        self.assertEqual(e["MIN"], uids[0])
        self.expect(c.cmd("SEARCH RETURN (NOSUCH) ALL"), "BAD")

    def test_search_rev2_gives_esearch(self):
        c, uids = self.search_box(enable="IMAP4rev2")
        r = self.ok(c, "SEARCH UNSEEN")
        self.assertEqual(r.of("SEARCH"), [], "IMAP4rev2: no * SEARCH response")
        e = r.esearch()
        self.assertIsNotNone(e, r.describe())
        self.assertEqual(rs.seqset(e["ALL"]), [2, 3, 5, 6])
        e = self.ok(c, "UID SEARCH SEEN").esearch()
        self.assertTrue(e.get("UID"))
        self.assertEqual(rs.seqset(e["ALL"]), [uids[0], uids[3]])


rs.parametrize(globals(), Messages)

if __name__ == "__main__":
    rs.main()
