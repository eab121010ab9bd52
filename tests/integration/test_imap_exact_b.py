#!/usr/bin/env python3
"""ringmaild: exact answers of BINARY, SEARCH, FETCH and APPEND in the
corners where a conformance run found them wrong.  BINARY of a
message/rfc822 part, BINARY.SIZE and partial BINARY of encoded parts, a part
appended as binary data through literal8; UID sets with an explicit number
above every UID; SEARCH FROM with comments inside the address; the implicit
\\Seen of a FETCH whose set is not ascending; APPEND's date-time.  RFC 3516,
9051, 5322.  Runs once per io backend."""

import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402

INNER = (b"From: Inner Sender <inner@example.net>\r\n"
         b"Subject: the inner one\r\n"
         b"Content-Type: text/plain\r\n"
         b"\r\n"
         b"Inner body line 1\r\nInner body line 2\r\n")
FWD = (b"From: Bob <bob@example.org>\r\n"
       b"Subject: Fwd: budget\r\n"
       b"MIME-Version: 1.0\r\n"
       b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
       b"--b2\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
       b"--b2\r\nContent-Type: message/rfc822\r\n\r\n" + INNER + b"\r\n"
       b"--b2--\r\n")

THIRTY = b"0123456789abcdefghijklmnopqrst"          # 30 bytes: no base64 padding
TWENTYNINE = THIRTY[:29]                            # one "=" of padding
DATA5 = bytes(range(7, 107))                        # 100 bytes, part 5


def b64lines(data, width=76):
    e = base64.b64encode(data)
    return b"\r\n".join(e[i:i + width] for i in range(0, len(e), width)) + b"\r\n"


def part(ctype, cte, body):
    return (b"Content-Type: " + ctype + b"\r\nContent-Transfer-Encoding: " + cte +
            b"\r\n\r\n" + body)


FIVE = (b"Subject: five parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n'
        b"--q\r\n" + part(b"text/plain", b"base64", b64lines(THIRTY)) +
        b"--q\r\n" + part(b"application/octet-stream", b"base64", b64lines(TWENTYNINE)) +
        b"--q\r\n" + part(b"text/plain", b"quoted-printable", b"a=3Db=\r\nc\r\n") +
        b"--q\r\n" + part(b"text/plain", b"7bit", b"plain\r\n") +
        b"--q\r\n" + part(b"application/octet-stream", b"base64", b64lines(DATA5, 20)) +
        b"--q--\r\n")

BINPART = b"\x00\x01\x02binary\x00\r\nmore\xff\x00"
BINMSG = (b"Subject: binary part\r\nMIME-Version: 1.0\r\n"
          b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
          b"--z\r\n" + part(b"application/octet-stream", b"binary", BINPART) + b"\r\n"
          b"--z--\r\n")


class ExactB(rs.ServerTestCase):

    def box(self, msgs, name="M", enable="IMAP4rev2"):
        c = self.login(enable=enable)
        if name != "INBOX":
            self.ok(c, "CREATE " + quote(name))
        for m in msgs:
            self.expect(c.append(name, m), "OK")
        self.ok(c, "SELECT " + quote(name))
        return c

    def fetch1(self, c, cmd, n=1):
        r = self.ok(c, cmd)
        f = r.fetches()
        self.assertIn(n, f, r.describe())
        return f[n]

    # -- BINARY (RFC 3516, RFC 9051 6.4.5) --

    def test_binary_of_message_rfc822_part(self):
        c = self.box([FWD])
        f = self.fetch1(c, "FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
        self.assertEqual(bytes(f["BINARY[2]"]), INNER)
        self.assertEqual(f["BINARY.SIZE[2]"], len(INNER))
        f = self.fetch1(c, "FETCH 1 (BINARY.PEEK[2]<10.20> BINARY.PEEK[2.1])")
        self.assertEqual(bytes(f["BINARY[2]<10>"]), INNER[10:30])
        self.assertEqual(bytes(f["BINARY[2.1]"]), INNER[INNER.index(b"\r\n\r\n") + 4:])

    def test_binary_size_and_partial_of_encoded_parts(self):
        c = self.box([FIVE])
        f = self.fetch1(c, "FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[3] "
                           "BINARY.SIZE[4] BINARY.SIZE[5])")
        sizes = [f["BINARY.SIZE[%d]" % i] for i in range(1, 6)]
        f = self.fetch1(c, "FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3] "
                           "BINARY.PEEK[4] BINARY.PEEK[5])")
        got = [bytes(f["BINARY[%d]" % i]) for i in range(1, 6)]
        self.assertEqual(got, [THIRTY, TWENTYNINE, b"a=bc", b"plain", DATA5])
        self.assertEqual(sizes, [len(g) for g in got], "BINARY.SIZE = the BINARY length")
        for origin, count in ((10, 10), (0, 1), (95, 10), (99, 1), (100, 5), (3, 1000)):
            f = self.fetch1(c, "FETCH 1 BINARY.PEEK[5]<%d.%d>" % (origin, count))
            self.assertEqual(bytes(f["BINARY[5]<%d>" % origin]), DATA5[origin:origin + count],
                             "BINARY[5]<%d.%d>" % (origin, count))
        f = self.fetch1(c, "FETCH 1 BINARY.PEEK[1]<28.10>")
        self.assertEqual(bytes(f["BINARY[1]<28>"]), THIRTY[28:])

    def test_literal8_binary_part_reaches_the_client(self):
        c = self.login(enable="IMAP4rev2")
        self.ok(c, "CREATE B")
        r = c.cmd(b"APPEND B ~{%d}\r\n" % len(BINMSG) + BINMSG)
        self.expect(r, "OK")
        self.ok(c, "SELECT B")
        f = self.fetch1(c, "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BODYSTRUCTURE)")
        self.assertEqual(bytes(f["BINARY[1]"]), BINPART, "BINARY gives the data back")
        self.assertEqual(f["BINARY.SIZE[1]"], len(BINPART))
        bs = f["BODYSTRUCTURE"]
        leaf = bs[0]
        enc = rs.s(leaf[5]).upper()
        f = self.fetch1(c, "FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[] RFC822.SIZE)")
        body = bytes(f["BODY[1]"])
        self.assertNotIn(b"\x00", body, "BODY[] cannot carry NUL (RFC 9051 4.3)")
        self.assertNotIn(b"\x00", bytes(f["BODY[]"]))
        self.assertEqual(enc, "BASE64", "BODYSTRUCTURE describes what BODY[] sends")
        self.assertEqual(base64.b64decode(body), BINPART, "BODY[1] is the data, re-encoded")
        self.assertIn(b"content-transfer-encoding: base64", bytes(f["BODY[1.MIME]"]).lower())
        self.assertEqual(int(leaf[6]), len(body), "body size = octets of BODY[1]")
        self.assertEqual(f["RFC822.SIZE"], len(bytes(f["BODY[]"])))
        # the whole message fetched as BODY[] parses back to the same part
        import email
        m = email.message_from_bytes(bytes(f["BODY[]"]))
        self.assertEqual(m.get_payload()[0].get_payload(decode=True), BINPART)

    # -- SEARCH / UID sets (RFC 9051 seq-range) --

    def test_uid_set_above_every_uid_is_empty(self):
        c = self.box([b"Subject: a\r\n\r\nx\r\n"] * 3, enable=None)
        nxt = int(self.ok(c, "SELECT M").code_of("UIDNEXT").split()[1])
        self.assertEqual(self.ok(c, "UID SEARCH UID %d:4294967295" % nxt).search(), [])
        self.assertEqual(self.ok(c, "UID SEARCH UID 4294967295").search(), [])
        self.assertEqual(self.ok(c, "UID SEARCH UID %d:*" % nxt).search(), [nxt - 1],
                         "'*' is the largest UID in use")
        self.assertEqual(self.ok(c, "SEARCH UID 4294967295:%d" % nxt).search(), [])
        self.assertEqual(self.ok(c, "UID FETCH %d:4294967295 FLAGS" % nxt).of("FETCH"), [])
        self.assertEqual(self.ok(c, "UID SEARCH %d:4294967295" % nxt).search(), [],
                         "a bare sequence set with UID SEARCH")
        self.assertEqual(self.ok(c, "SEARCH 4:4294967295").search(), [])
        self.ok(c, "STORE 3 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.assertEqual(self.ok(c, "UID SEARCH UID %d:4294967295" % (nxt - 1)).search(), [],
                         "an expunged top UID")

    # -- SEARCH FROM and addresses with comments (RFC 5322 3.4, CFWS) --

    def test_search_address_with_comments(self):
        m1 = (b"From: <user-from (comment)@ (comment) domain.org>\r\n"
              b"To: Ann (the boss) <ann(x)@(y)example.com>\r\n"
              b"Cc: bob . smith @ example . net (Bob)\r\n"
              b"Subject: comments\r\n\r\nbody\r\n")
        m2 = b"From: other@domain.org\r\nSubject: plain\r\n\r\nbody\r\n"
        c = self.box([m1, m2], enable=None)
        self.assertEqual(self.ok(c, "SEARCH FROM user-from@domain.org").search(), [1])
        self.assertEqual(self.ok(c, "SEARCH FROM \"user-from@domain\"").search(), [1])
        self.assertEqual(self.ok(c, "SEARCH TO ann@example.com").search(), [1])
        self.assertEqual(self.ok(c, "SEARCH CC bob.smith@example.net").search(), [1])
        self.assertEqual(self.ok(c, "SEARCH FROM comment").search(), [],
                         "a comment is not part of the address")
        self.assertEqual(self.ok(c, "SEARCH FROM domain.org").search(), [1, 2])
        env = self.fetch1(c, "FETCH 1 ENVELOPE")["ENVELOPE"]
        frm = env[2][0]
        self.assertEqual((rs.s(frm[2]), rs.s(frm[3])), ("user-from", "domain.org"))
        to = env[5][0]
        self.assertEqual((rs.s(to[0]), rs.s(to[2]), rs.s(to[3])),
                         ("Ann", "ann", "example.com"))
        cc = env[6][0]
        self.assertEqual((rs.s(cc[2]), rs.s(cc[3])), ("bob.smith", "example.net"))

    # -- the implicit \Seen of FETCH (RFC 9051 6.4.5) --

    def test_implicit_seen_announced_in_any_order(self):
        msgs = [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(1, 7)]
        c = self.box(msgs, enable=None)
        other = self.login(select="M")
        for spec, want in (("5,1", {1, 5}), ("6,2:3", {2, 3, 6}), ("4,4", {4})):
            r = self.ok(c, "FETCH %s BODY[]" % spec)
            flagged = {n for n, d in r.fetch_list() if "FLAGS" in d and
                       "\\SEEN" in {str(x).upper() for x in d["FLAGS"]}}
            self.assertEqual(flagged, want, "FETCH %s: %s" % (spec, r.describe()))
            # and to the other session with the mailbox selected
            r = self.ok(other, "NOOP")
            seen = {n for n, d in r.fetch_list() if "FLAGS" in d and
                    "\\SEEN" in {str(x).upper() for x in d["FLAGS"]}}
            self.assertEqual(seen, want, "other session after FETCH %s: %s"
                             % (spec, r.describe()))

    # -- APPEND date-time (RFC 9051 date-time, case-insensitive literals) --

    def test_append_date_time(self):
        c = self.login()
        msg = b"Subject: d\r\n\r\nx\r\n"
        for d, want in (("01-jan-2024 10:00:00 +0000", "01-Jan-2024 10:00:00 +0000"),
                        ("01-JAN-2024 10:00:00 +0000", "01-Jan-2024 10:00:00 +0000"),
                        (" 1-Feb-2024 23:59:59 -0130", "01-Feb-2024 23:59:59 -0130"),
                        ("29-Feb-2024 00:00:00 +0100", "29-Feb-2024 00:00:00 +0100")):
            r = self.expect(c.append("INBOX", msg, date=d), "OK", msg=d)
            uid = r.code_of("APPENDUID").split()[2]
            self.ok(c, "EXAMINE INBOX")
            f = self.ok(c, "UID FETCH %s INTERNALDATE" % uid).fetch_list()[0][1]
            self.assertEqual(rs.s(f["INTERNALDATE"]), want)
            self.ok(c, "UNSELECT")
        for d in ("31-Feb-2024 10:00:00 +0000", "29-Feb-2023 10:00:00 +0000",
                  "31-Apr-2024 10:00:00 +0000", "1-Jan-2024 10:00:00 +0000",
                  "01-Jan-24 10:00:00 +0000", "01-Jan-2024 10:00:00 +000",
                  "01-Jan-2024 10:00:00 +0000x", "01-Jan-2024 1:00:00 +0000",
                  "01-Jan-2024 10:00:00 0000", "01-Jna-2024 10:00:00 +0000",
                  "01-January-2024 10:00:00 +0000", "01-Jan-2024 24:00:00 +0000"):
            c2 = self.login()
            self.expect(c2.append("INBOX", msg, date=d), "BAD", msg=d)
            c2.close()

    def test_search_dates_same_rules(self):
        c = self.box([(b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nSubject: s\r\n\r\nx\r\n")],
                     enable=None)
        self.assertEqual(self.ok(c, "SEARCH SENTON 01-jan-2024").search(), [1])
        self.assertEqual(self.ok(c, "SEARCH SENTON 1-JAN-2024").search(), [1])
        for d in ("31-Feb-2024", "30-Feb-2024", "01-Jan-24", "01-January-2024"):
            c2 = self.login(select="M")
            self.expect(c2.cmd("SEARCH SENTON " + d), "BAD", msg=d)
            c2.close()


rs.parametrize(globals(), ExactB)

if __name__ == "__main__":
    rs.main()
