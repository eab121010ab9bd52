#!/usr/bin/env python3
"""What a client may hand the server, and what is stored:

- a message APPENDed with bare LF line ends (raw literal, and a real
  `curl -T file imap://...` upload) is stored with CRLF, so BODY[],
  RFC822.SIZE, BODYSTRUCTURE sizes and lines and BINARY.SIZE agree;
  APPENDLIMIT bounds the stored (converted) size;
- NUL octets are refused in a plain literal (BAD) and accepted in a
  literal8 ~{n} (BINARY);
- SELECT/EXAMINE parameters the server does not support (QRESYNC is not
  offered yet) are refused with BAD, as RFC 4466 says; CONDSTORE is taken.

curl must be installed (tools/setup-deps.sh); a missing binary is a failure.
Python's imaplib cannot be used for the upload: its append() turns bare LF
into CRLF itself."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402

BARE_LF = re.compile(rb"(?<!\r)\n")

# LF only: a two-part message whose first part has a known number of lines.
MULTIPART = (b"From: Alice <alice@example.com>\n"
             b"To: bob@example.com\n"
             b"Subject: bare LF upload\n"
             b"MIME-Version: 1.0\n"
             b'Content-Type: multipart/mixed; boundary="XX"\n'
             b"\n"
             b"preamble\n"
             b"--XX\n"
             b"Content-Type: text/plain; charset=us-ascii\n"
             b"\n"
             b"line one\n"
             b"line two\n"
             b"\n"
             b"line four\n"
             b"--XX\n"
             b"Content-Type: application/octet-stream\n"
             b"Content-Transfer-Encoding: base64\n"
             b"\n"
             b"aGVsbG8gd29ybGQK\n"
             b"--XX--\n")


def crlf(data):
    return BARE_LF.sub(b"\r\n", data)


class StoredAsCrlf(rs.ServerTestCase):
    def check_stored(self, c, uid, sent):
        """The message with this UID is `sent` with CRLF line ends, and every
        size the server reports is the size of those bytes."""
        want = crlf(sent)
        r = self.ok(c, "UID FETCH %d (RFC822.SIZE BINARY.SIZE[] BODY.PEEK[] BODY.PEEK[1] "
                       "BINARY.SIZE[1] BODYSTRUCTURE)" % uid)
        (_, d), = r.fetch_list()
        body = bytes(d["BODY[]"])
        self.assertEqual(body, want)
        self.assertIsNone(BARE_LF.search(body), "a bare LF went out in BODY[]")
        self.assertEqual(d["RFC822.SIZE"], len(want))
        self.assertEqual(d["BINARY.SIZE[]"], len(want))
        part1 = bytes(d["BODY[1]"])
        self.assertIsNone(BARE_LF.search(part1))
        self.assertEqual(part1, b"line one\r\nline two\r\n\r\nline four")
        self.assertEqual(d["BINARY.SIZE[1]"], len(part1))
        bs = d["BODYSTRUCTURE"]
        text = bs[0]
        self.assertEqual(rs.upper(text[:2]), ["TEXT", "PLAIN"], bs)
        self.assertEqual(int(text[6]), len(part1), "body-fld-octets of part 1: %r" % bs)
        # RFC 3501: body-fld-lines is the size in text lines: CRLFs of the
        # part's content plus the last, unterminated line.
        self.assertEqual(int(text[7]), part1.count(b"\r\n") + 1, bs)
        app = bs[1]
        self.assertEqual(rs.upper(app[:2]), ["APPLICATION", "OCTET-STREAM"], bs)
        # the CRLF before "--XX--" belongs to the delimiter (RFC 2046 5.1.1)
        self.assertEqual(int(app[6]), len(b"aGVsbG8gd29ybGQK"), bs)

    def uid_of(self, res):
        code = res.code_of("APPENDUID")
        self.assertTrue(code, res.describe())
        return int(code.split()[2])

    def test_bare_lf_append(self):
        c = self.login()
        # synchronizing and non-synchronizing literals, both bare LF
        u1 = self.uid_of(self.expect(c.append("INBOX", MULTIPART, plus=False), "OK"))
        u2 = self.uid_of(self.expect(c.append("INBOX", MULTIPART, plus=True), "OK"))
        self.ok(c, "SELECT INBOX")
        self.check_stored(c, u1, MULTIPART)
        self.check_stored(c, u2, MULTIPART)

    def test_mixed_line_ends(self):
        """CRLF lines stay CRLF (never CRCRLF); a lone CR is kept."""
        msg = (b"Subject: mixed\r\nX-A: 1\n\r\nfirst\r\nsecond\nthird\rstill third\n")
        c = self.login()
        u = self.uid_of(self.expect(c.append("INBOX", msg), "OK"))
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "UID FETCH %d (RFC822.SIZE BODY.PEEK[])" % u)
        (_, d), = r.fetch_list()
        want = b"Subject: mixed\r\nX-A: 1\r\n\r\nfirst\r\nsecond\r\nthird\rstill third\r\n"
        self.assertEqual(bytes(d["BODY[]"]), want)
        self.assertEqual(d["RFC822.SIZE"], len(want))

    def test_multiappend_each_converted(self):
        c = self.login()
        a = b"Subject: one\n\nbody one\n"
        b = b"Subject: two\r\n\r\nbody two\r\n"
        r = self.expect(c.cmd(b"APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s" % (len(a), a, len(b), b)),
                        "OK")
        self.assertRegex(r.code_of("APPENDUID") or "", r"^APPENDUID \d+ \d+:\d+$")
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "FETCH 1:* (RFC822.SIZE BODY.PEEK[])")
        got = [(d["RFC822.SIZE"], bytes(d["BODY[]"])) for _, d in r.fetch_list()]
        self.assertEqual(got, [(len(crlf(a)), crlf(a)), (len(b), b)])

    def test_curl_upload(self):
        curl = rs.require_program(self, "curl")
        path = os.path.join(self.server.tmp, "upload-%s.eml" % self.user)
        with open(path, "wb") as f:
            f.write(MULTIPART)
        url = "imap://%s:%s@%s:%d/INBOX" % (self.user, self.password, self.server.host,
                                           self.server.port)
        p = subprocess.run([curl, "-sS", "-T", path, url], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        c = self.login(select="INBOX")
        r = self.ok(c, "UID SEARCH ALL")
        uids = r.search()
        self.assertEqual(len(uids), 1, r.describe())
        self.check_stored(c, uids[0], MULTIPART)

    def test_nul_needs_literal8(self):
        c = self.login()
        msg = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
        # RFC 3516 4.4 / RFC 9051 literal = *CHAR8: no NUL in a plain literal
        self.expect(c.append("INBOX", msg, plus=True), "BAD")
        self.expect(c.append("INBOX", msg, plus=False), "BAD")
        st = self.ok(c, "STATUS INBOX (MESSAGES)")
        self.assertIn("MESSAGES 0", st.untagged[0].line)
        # literal8 (BINARY is offered): accepted; the body holding the NUL is
        # stored as base64 (RFC 3516 4.4 allows a lossless CTE change), so
        # BODY[] carries no NUL and BINARY[1] gives the octets back (a bare
        # LF of this text part as CRLF, RFC 9051 6.4.5).
        bin_msg = b"Subject: nul\r\n\r\nbefore\x00after\nend\r\n"
        r = self.expect(c.cmd(b"APPEND INBOX ~{%d+}\r\n%s" % (len(bin_msg), bin_msg)), "OK")
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "UID FETCH %d (RFC822.SIZE BODY.PEEK[] BINARY.PEEK[1])" % self.uid_of(r))
        (_, d), = r.fetch_list()
        self.assertEqual(d["RFC822.SIZE"], len(bytes(d["BODY[]"])))
        self.assertNotIn(b"\x00", bytes(d["BODY[]"]))
        self.assertEqual(bytes(d["BINARY[1]"]), b"before\x00after\r\nend\r\n")
        self.ok(c, "NOOP")


class LimitOnStoredSize(rs.ServerTestCase):
    server_options = {"append_limit": "2048"}

    def test_limit_counts_crlf(self):
        c = self.login()
        self.assertIn("APPENDLIMIT=2048", c.capabilities())
        # 1500 bytes sent, 1500 + 502 stored: fits
        fits = b"Subject: fits\n\n" + b"x\n" * 500
        fits += b"y" * (1500 - len(fits))
        self.assertEqual((len(fits), len(crlf(fits))), (1500, 2002))
        u = self.expect(c.append("INBOX", fits), "OK").code_of("APPENDUID").split()[2]
        # 1500 bytes sent, 1500 + 602 stored: over the limit
        over = b"Subject: over\n\n" + b"x\n" * 600
        over += b"y" * (1500 - len(over))
        self.assertEqual((len(over), len(crlf(over))), (1500, 2102))
        self.expect(c.append("INBOX", over), "NO", "TOOBIG")
        self.expect(c.append("INBOX", over, plus=False), "NO", "TOOBIG")
        st = self.ok(c, "STATUS INBOX (MESSAGES)")
        self.assertIn("MESSAGES 1", st.untagged[0].line)
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "UID FETCH %s RFC822.SIZE" % u)
        self.assertEqual(r.fetch_list()[0][1]["RFC822.SIZE"], 2002)


class SelectParameters(rs.ServerTestCase):
    def test_unknown_parameters_bad(self):
        c = self.login()
        # QRESYNC is offered, but its parameter without ENABLE QRESYNC is
        # BAD too (RFC 7162 3.2.5), as is QRESYNC without its value
        self.assertIn("QRESYNC", c.capabilities())
        for cmd in ("SELECT INBOX (BLURDYBLOOP)", "SELECT INBOX (QRESYNC (1 1))",
                    "SELECT INBOX ()", "SELECT INBOX (\"CONDSTORE\")",
                    "SELECT INBOX (CONDSTORE 1)", "EXAMINE INBOX (CONDSTORE QRESYNC)"):
            self.expect(c.cmd(cmd), "BAD", msg=cmd)
            self.ok(c, "NOOP")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "EXAMINE " + quote("INBOX"))
        self.ok(c, "EXAMINE INBOX (CONDSTORE)")


rs.parametrize(globals(), StoredAsCrlf, LimitOnStoredSize, SelectParameters)

if __name__ == "__main__":
    rs.main()
