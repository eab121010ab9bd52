#!/usr/bin/env python3
"""ringmaild: SEARCH (and SORT) with the search index (search_index = yes)
answers exactly as without it (no), on one mailbox of generated messages (plain,
base64 and quoted-printable bodies in UTF-8 and Latin-1, RFC 2047 headers,
multipart with an embedded message; multibyte and mixed-case needles):
the search that builds the index, the ones that use it, after a restart,
after appends (not yet indexed), after expunge and after compaction by
ringmail-admin, and after a segment file is damaged.  With search_index =
no no index file is written.  Runs once per io backend."""

import glob
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

QUICK = os.environ.get("RINGMAIL_TEST_QUICK") == "1"

WORDS = ["apple", "Banana", "cherry", "Dattel", "STRASSE", "Straße", "Übermut",
         "übermut", "Привет", "пРИВЕТ", "ΣΟΦΙΑ", "σοφια", "ẞig", "café", "CAFÉ",
         "meeting", "Budget", "qx-7731", "zeta", "Quartal", "naïve", "mañana", "日本語"]


def b64(data):
    import base64
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def qp(text):
    import quopri
    return quopri.encodestring(text.encode("latin-1")).replace(b"\n", b"\r\n")


def body_words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "\r\n"


def make_msg(rng, i):
    k = i % 5
    text = body_words(rng, rng.randrange(3, 30))
    if k == 0:
        return ("From: a@ex.org\r\nSubject: %s plain %d\r\n\r\n%s"
                % (rng.choice(WORDS), i, text)).encode()
    if k == 1:
        return (b"From: b@ex.org\r\nSubject: b64\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(text.encode()))
    if k == 2:
        latin = " ".join(rng.choice(["Übermut", "Straße", "café", "naïve", "mañana",
                                     "apple", "CAFÉ"]) for _ in range(8))
        return (b"From: c@ex.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(latin) + b"\r\n")
    if k == 3:
        inner = body_words(rng, 5)
        return ("From: d@ex.org\r\nSubject: multi\r\nMIME-Version: 1.0\r\n"
                "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
                "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s"
                "--XX\r\nContent-Type: message/rfc822\r\n\r\n"
                "Subject: inner %s\r\n\r\n%s--XX--\r\n"
                % (text, rng.choice(WORDS), inner)).encode()
    subj = rng.choice(WORDS).encode()
    return (b"From: =?UTF-8?B?" + b64(subj).strip() + b"?= <f@ex.org>\r\n"
            b"Subject: =?ISO-8859-1?Q?caf=E9_Quartal?=\r\n\r\n" + text.encode())


NEEDLES = ["apple", "APPLE", "banana cherry", "straße", "STRASSE", "übermut", "ÜBERMUT",
           "привет", "σοφια", "ΣΟΦΊΑ", "ßig", "café quartal", "qx-7731", "inner",
           "日本", "mañana", "zzzz", "ee", "a", "rmut", "ana m", "eting bud"]


def arg(text):
    """A quoted string, or for 8-bit text a LITERAL+ literal."""
    data = text.encode()
    if all(b < 0x80 for b in data):
        return rs.quote(text)
    return "{%d+}\r\n%s" % (len(data), text)


class SearchIndexCase(rs.ServerTestCase):
    users_per_class = 4
    N = 600 if QUICK else 2500

    def commands(self):
        rng = random.Random(5)
        cmds = []
        for n in NEEDLES:
            cmds.append("SEARCH CHARSET UTF-8 BODY %s" % arg(n))
            cmds.append("UID SEARCH CHARSET UTF-8 TEXT %s" % arg(n))
        for _ in range(12):
            a, b = rng.choice(NEEDLES), rng.choice(NEEDLES)
            cmds.append("SEARCH CHARSET UTF-8 OR BODY %s NOT TEXT %s" % (arg(a), arg(b)))
            cmds.append("UID SEARCH CHARSET UTF-8 SUBJECT %s BODY %s" % (arg(a), arg(b)))
        for n in ("apple", "übermut", "café quartal", "zzzz"):
            cmds.append("SORT (REVERSE SUBJECT) UTF-8 BODY %s" % arg(n))
            cmds.append("UID SORT (ARRIVAL) UTF-8 NOT TEXT %s" % arg(n))
        return cmds

    def answers(self):
        c = self.login(select="INBOX")
        out = []
        for cmd in self.commands():
            r = self.ok(c, cmd, timeout=120)
            if "SORT" in cmd:
                nums = [int(x) for u in r.untagged if u.raw.startswith(b"* SORT")
                        for x in u.raw.split()[2:]]
            else:
                nums = sorted(r.search())
            out.append((cmd, nums))
        return out

    def restart(self, index):
        self.assertEqual(self.server.stop(), 0)
        self.server.options["search_index"] = "yes" if index else "no"
        self.server.start()

    def box_dir(self):
        """The directory of the user's INBOX: the one with the largest log."""
        logs = glob.glob(os.path.join(self.server.mail_root, self.user, "m", "*", "log.*"))
        self.assertTrue(logs)
        return os.path.dirname(max(logs, key=os.path.getsize))

    def check_phase(self, what):
        """The answers with the index (building it, then using it) equal the
        answers without."""
        self.restart(True)
        built = self.answers()
        used = self.answers()
        self.restart(False)
        scan = self.answers()
        self.restart(True)
        for (cmd, a), (_, b), (_, s) in zip(built, used, scan):
            self.assertEqual(a, s, "%s: %s (building)" % (what, cmd))
            self.assertEqual(b, s, "%s: %s (indexed)" % (what, cmd))
        return scan

    def test_same_answers(self):
        rng = random.Random(11)
        self.server.import_mbox(self.user, "INBOX", [make_msg(rng, i) for i in range(self.N)])
        scan = self.check_phase("fresh")
        self.assertTrue(any(len(s) > 10 for _, s in scan))
        self.assertTrue(any(len(s) == 0 for _, s in scan))
        d = self.box_dir()
        self.assertTrue(glob.glob(os.path.join(d, "sindex.*.*")), os.listdir(d))

        # appends (scanned until a search indexes them) and expunge
        c = self.login(select="INBOX")
        for i in range(20):
            self.expect(c.append("INBOX", make_msg(rng, self.N + i)), "OK")
        self.ok(c, "STORE 1:50,300:400 +FLAGS.SILENT (\\Deleted)")
        self.ok(c, "EXPUNGE")
        self.check_phase("appended and expunged")

        # compaction keeps UIDs: the index stays true
        self.assertEqual(self.server.stop(), 0)
        self.server.admin("compact", self.user, "INBOX")
        self.server.start()
        self.check_phase("compacted")

        # a damaged segment: answers stay exact, it is built again
        segs = sorted(glob.glob(os.path.join(d, "sindex.*.*")))
        self.assertTrue(segs)
        with open(segs[0], "r+b") as f:
            f.seek(-7, os.SEEK_END)
            b = f.read(1)
            f.seek(-7, os.SEEK_END)
            f.write(bytes([b[0] ^ 0x55]))
            f.seek(70)
            b = f.read(1)
            f.seek(70)
            f.write(bytes([b[0] ^ 0x55]))
        self.check_phase("damaged")

    def test_off_writes_nothing(self):
        rng = random.Random(3)
        self.server.import_mbox(self.user, "INBOX", [make_msg(rng, i) for i in range(300)])
        self.restart(False)
        try:
            c = self.login(select="INBOX")
            r = self.ok(c, "SEARCH BODY apple")
            self.assertTrue(r.search())
            self.assertEqual(glob.glob(os.path.join(self.box_dir(), "sindex.*")), [])
        finally:
            self.restart(True)


rs.parametrize(globals(), SearchIndexCase)

if __name__ == "__main__":
    rs.main()
