#!/usr/bin/env python3
"""ringmaild: FETCH PREVIEW and PREVIEW (LAZY) (RFC 8970).  Previews of
plain, HTML, quoted-printable, base64, Shift_JIS, alternative and
attachment-only messages; 8-bit previews as literals, or quoted under
UTF8=ACCEPT; LAZY inside and outside a list, with FETCH modifiers after it;
the errors; COPY and APPEND of the same message; the preview after a
restart; and a mailbox whose cache was written by the previous parser
(version 3 blobs, made from this server's by the fixture below): FETCH
PREVIEW computes the text, PREVIEW (LAZY) answers NIL, `check` counts the
entries as stale and `check --repair` rebuilds them with previews.  Runs
once per io backend."""

import glob
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from test_lmtp import LmtpBase  # noqa: E402


def m(hdrs, body):
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body.replace(b"\n", b"\r\n")


KANJI = "\u6f22" * 300
MSGS = [
    (m(["Subject: plain"], b"Hello   there,\n\n  how are\tyou?\n> quoted\n"),
     "Hello there, how are you? > quoted"),
    (m(["Subject: html", "Content-Type: text/html; charset=utf-8"],
       b"<html><head><style>p {}</style></head><body><p>Big&nbsp;<b>news</b></p>"
       b"<div>caf&eacute; &amp; tea</div></body></html>\n"),
     "Big news caf\u00e9 & tea"),
    (m(["Subject: qp", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable"], b"Caf=C3=A9 cr=C3=A8me=\n br=C3=BBl=C3=A9e\n"),
     "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"),
    (m(["Subject: b64", "Content-Transfer-Encoding: base64"], b"SGVsbG8gYmFzZTY0\n"),
     "Hello base64"),
    (m(["Subject: sjis", "Content-Type: text/plain; charset=Shift_JIS"],
       "\u3053\u3093\u306b\u3061\u306f".encode("shift_jis") + b"\n"),
     "\u3053\u3093\u306b\u3061\u306f"),
    (m(["Subject: alt", "Content-Type: multipart/alternative; boundary=b"],
       b"--b\nContent-Type: text/html\n\n<p>the html</p>\n--b\nContent-Type: text/plain\n\n"
       b"the plain\n--b--\n"), "the plain"),
    (m(["Subject: attachment only", "Content-Type: multipart/mixed; boundary=b"],
       b"--b\nContent-Type: application/pdf\nContent-Disposition: attachment\n\n%PDF\n--b--\n"),
     ""),
    (m(["Subject: cjk", "Content-Type: text/plain; charset=utf-8"], KANJI.encode() + b"\n"),
     KANJI[:200]),
]


def text(v):
    """A PREVIEW value (bytes from a quoted string or literal, None for
    NIL) as str."""
    return None if v is None else bytes(v).decode("utf-8")


def crc32c(data, crc=0):
    table = crc32c.table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    crc32c.table.append(_c)


def blob_to_v3(b):
    """A version 4 blob as the previous parser wrote it (version 3, a
    40-byte header without the preview field), of the same length: the
    pool gains 4 unused bytes at its end, so every offset of the cache file
    and index stays."""
    assert b[:4] == b"RMcb" and struct.unpack_from("<HH", b, 4) == (4, 44), b[:8]
    total = len(b)
    nb = bytearray(b[:40] + b[44:] + b"\0\0\0\0")
    struct.pack_into("<HH", nb, 4, 3, 40)
    struct.pack_into("<I", nb, 32, struct.unpack_from("<I", nb, 32)[0] + 4)
    struct.pack_into("<I", nb, 12, crc32c(bytes(nb[16:total]), crc32c(bytes(nb[:12]))))
    return bytes(nb)


def downgrade_cache(path):
    """Rewrite every blob of a cache file as version 3; returns how many."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        off, n = 64, 0
        while off + 8 <= len(data):
            ln, _crc = struct.unpack_from("<II", data, off)
            if ln == 0:
                break
            blob = blob_to_v3(bytes(data[off + 8:off + 8 + ln]))
            data[off + 8:off + 8 + ln] = blob
            struct.pack_into("<I", data, off + 4, crc32c(blob))
            off += (8 + ln + 7) & ~7
            n += 1
        f.seek(0)
        f.write(data)
    return n


class PreviewCase(rs.ServerTestCase):
    users_per_class = 20

    def box(self, c, name="P"):
        self.ok(c, "CREATE %s" % name)
        for raw, _want in MSGS:
            self.expect(c.append(name, raw), "OK")
        self.ok(c, "SELECT %s" % name)

    def previews(self, c, cmd):
        r = self.ok(c, cmd)
        return {n: text(d.get("PREVIEW")) for n, d in r.fetches().items()}

    def test_capability(self):
        c = self.connect()
        self.assertIn("PREVIEW", c.capabilities())
        c = self.login()
        self.assertIn("PREVIEW", c.capabilities())

    def test_previews(self):
        c = self.login()
        self.box(c)
        got = self.previews(c, "FETCH 1:* (PREVIEW)")
        self.assertEqual(got, {n + 1: w for n, (_r, w) in enumerate(MSGS)})
        # 8-bit text goes out as a literal without UTF8=ACCEPT ...
        r = self.ok(c, "FETCH 3 (PREVIEW)")
        self.assertIn(b"PREVIEW {", r.untagged[0].raw)
        # ... and quoted with it
        c2 = self.login(enable="UTF8=ACCEPT")
        self.ok(c2, "SELECT P")
        r = self.ok(c2, "FETCH 3 (PREVIEW)")
        self.assertIn('PREVIEW "Caf\u00e9'.encode(), r.untagged[0].raw)
        self.assertEqual(self.previews(c2, "FETCH 1:* PREVIEW"), got)
        # the empty preview is "" (RFC 8970 3.2), never NIL
        r = self.ok(c, "FETCH 7 (PREVIEW)")
        self.assertIn(b'PREVIEW "")', r.untagged[0].raw)

    def test_lazy(self):
        c = self.login()
        self.box(c)
        want = {n + 1: w for n, (_r, w) in enumerate(MSGS)}
        # made at append: LAZY answers them all
        self.assertEqual(self.previews(c, "FETCH 1:* (UID PREVIEW (LAZY))"), want)
        self.assertEqual(self.previews(c, "FETCH 1:* PREVIEW (LAZY)"), want)
        self.assertEqual(self.previews(c, "UID FETCH 1:* (PREVIEW (LAZY) PREVIEW FLAGS)"), want)
        r = self.ok(c, "FETCH 1 (PREVIEW (LAZY LAZY) RFC822.SIZE)")
        self.assertEqual(text(r.fetches()[1]["PREVIEW"]), MSGS[0][1])
        # FETCH modifiers after the attribute's own list
        self.ok(c, "STORE 1:2 +FLAGS (\\Flagged)")
        r = self.ok(c, "FETCH 1:2 PREVIEW (LAZY) (CHANGEDSINCE 1)")
        self.assertEqual({n: text(d["PREVIEW"]) for n, d in r.fetches().items()},
                         {1: want[1], 2: want[2]})
        self.assertTrue(all("MODSEQ" in d for d in r.fetches().values()))

    def test_errors(self):
        c = self.login()
        self.box(c)
        for cmd in ("FETCH 1 (PREVIEW (FOO))", "FETCH 1 (PREVIEW ())", "FETCH 1 PREVIEW (FOO)",
                    "FETCH 1 (PREVIEW (LAZY) (LAZY))", "FETCH 1 PREVIEW (LAZY) (LAZY)",
                    "FETCH 1 PREVIEWS"):
            self.expect(c.cmd(cmd), "BAD")
        self.ok(c, "NOOP")

    def test_copy_and_restart(self):
        c = self.login()
        self.box(c)
        self.ok(c, "CREATE Q")
        self.ok(c, "COPY 1:* Q")
        self.ok(c, "SELECT Q")
        want = {n + 1: w for n, (_r, w) in enumerate(MSGS)}
        self.assertEqual(self.previews(c, "FETCH 1:* (PREVIEW (LAZY))"), want)
        self.server.stop()
        self.server.start()
        c = self.login()
        for box in ("P", "Q"):
            self.ok(c, "SELECT %s" % box)
            self.assertEqual(self.previews(c, "FETCH 1:* (PREVIEW (LAZY))"), want)

    def test_old_cache(self):
        """A mailbox whose cache an older parser wrote (version 3 blobs)."""
        c = self.login()
        self.box(c)
        user = self.user
        c.close()
        self.conns.remove(c)
        self.server.stop()
        caches = glob.glob(os.path.join(self.server.mail_root, user, "m", "*", "cache.*"))
        n = sum(downgrade_cache(p) for p in caches if not p.endswith(".tmp"))
        self.assertEqual(n, len(MSGS))
        self.server.start()
        want = {n + 1: w for n, (_r, w) in enumerate(MSGS)}
        c = self.login(select="P")
        # LAZY: not without reading the bodies, so NIL; without: computed
        self.assertEqual(self.previews(c, "FETCH 1:* (PREVIEW (LAZY))"),
                         {n: None for n in want})
        self.assertEqual(self.previews(c, "FETCH 1:* (PREVIEW)"), want)
        # the rest of the cache is read as it was
        r = self.ok(c, "FETCH 2 (ENVELOPE BODYSTRUCTURE)")
        self.assertIn(b'"html"', r.untagged[0].raw)
        # a COPY of an old entry gets a preview in the target
        self.ok(c, "CREATE R")
        self.ok(c, "COPY 1:* R")
        self.ok(c, "SELECT R")
        self.assertEqual(self.previews(c, "FETCH 1:* (PREVIEW (LAZY))"), want)
        c.close()
        self.conns.remove(c)
        # check counts the old entries, --repair rebuilds them
        self.server.stop()
        out = self.server.admin("check", user).stdout.decode()
        self.assertIn("P: %d cache entries of an older version" % len(MSGS), out)
        self.assertNotIn("R: ", out.replace("R: ok", ""))
        out = self.server.admin("check", user, "--repair").stdout.decode()
        self.assertIn("rebuilt", out)
        out = self.server.admin("check", user).stdout.decode()
        self.assertNotIn("older version", out)
        # compaction rewrites the cache with this parser too
        n = sum(downgrade_cache(p) for p in
                glob.glob(os.path.join(self.server.mail_root, user, "m", "*", "cache.*")))
        self.assertGreaterEqual(n, len(MSGS))
        out = self.server.admin("check", user).stdout.decode()
        self.assertIn("cache entries of an older version", out)
        self.server.admin("compact", user, "P")
        out = self.server.admin("check", user, "P").stdout.decode()
        self.assertNotIn("older version", out)
        self.server.start()
        c = self.login(select="P")
        self.assertEqual(self.previews(c, "FETCH 1:* (PREVIEW (LAZY))"), want)


class PreviewDeliveryCase(LmtpBase):
    """Previews made by ringmail-admin import and by LMTP delivery (one
    parse for several recipients, the trace fields put before it)."""

    @classmethod
    def prepare_server(cls, server):
        super().prepare_server(server)
        server.import_mbox("carol", "INBOX", [m(["Subject: imported"], b"Imported   text\n")])

    def test_import(self):
        c = self.server.login("carol", "carol-secret", select="INBOX")
        r = c.ok("FETCH 1 (PREVIEW (LAZY))")
        self.assertEqual(text(r.fetches()[1]["PREVIEW"]), "Imported text")

    def test_lmtp(self):
        users = [self.other(), self.other()]
        c = self.lmtp()
        c.cmd("LHLO mx.example.org")
        data = m(["Subject: delivered", "Content-Type: text/html"], b"<p>Delivered&nbsp;text</p>\n")
        codes, replies = self.deliver(c, "a@example.org", [u + "@example.org" for u, _p in users], data)
        self.assertEqual((codes, [r[0] for r in replies]), ([250, 250], [250, 250]))
        for user, password in users:
            i = self.server.login(user, password, select="INBOX")
            r = i.ok("FETCH 1 (PREVIEW (LAZY))")
            self.assertEqual(text(r.fetches()[1]["PREVIEW"]), "Delivered text")
            i.close()


rs.parametrize(globals(), PreviewCase, PreviewDeliveryCase)

if __name__ == "__main__":
    rs.main()
