#!/usr/bin/env python3
"""ringmaild: OBJECTID (RFC 8474) and SAVEDATE (RFC 8514).  MAILBOXID in
CREATE, SELECT/EXAMINE, STATUS and LIST-STATUS, kept by RENAME (and by the
new name of a renamed INBOX, whose own id is new) and a restart; EMAILID the
same after COPY and MOVE and across compaction, check --repair and a
restart; THREADID the same for the messages of one conversation across
mailboxes and for copies, different for others, kept by a restart, and
SEARCH THREADID; SEARCH EMAILID;
SAVEDATE the time of saving (APPEND, COPY, MOVE), never the internal date,
SEARCH SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED.  Runs once per io
backend."""

import datetime
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

OBJECTID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,254}$")


def msg(n):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: m%d\r\n"
            b"Message-ID: <%d@example.org>\r\n\r\nbody %d\r\n" % (n, n, n))


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def make_older_format(box_dir):
    """Rewrite a mailbox's log as a version without EMAILID and save dates
    wrote it (docs/store-format.md: log version 1, MESSAGE records with
    ext_len 0) and drop its index, so that it is rebuilt from the log."""
    logs = [f for f in os.listdir(box_dir) if re.match(r"log\.\d+$", f)]
    assert len(logs) == 1, logs
    path = os.path.join(box_dir, logs[0])
    with open(path, "rb") as f:
        b = f.read()
    hdr = bytearray(b[:64])
    struct.pack_into("<I", hdr, 8, 1)                       # version 1
    struct.pack_into("<I", hdr, 60, crc32c(bytes(hdr[:60])))
    out = bytearray(hdr)
    off = 64
    while off < len(b):
        _crc, ln, typ, rfl, magic = struct.unpack_from("<IIHHI", b, off)
        payload = bytearray(b[off + 16:off + 16 + ln])
        if typ == 1:                                        # MESSAGE
            ext_len = struct.unpack_from("<I", payload, 44)[0]
            payload = payload[:ln - ext_len]
            struct.pack_into("<I", payload, 44, 0)
        rec = bytearray(struct.pack("<IIHHI", 0, len(payload), typ, rfl, magic)) + payload
        struct.pack_into("<I", rec, 0, crc32c(bytes(rec[4:])))
        rec += b"\0" * ((8 - len(rec) % 8) % 8)
        out += rec
        off += (16 + ln + 7) & ~7
    with open(path + ".tmp", "wb") as f:
        f.write(out)
    os.rename(path + ".tmp", path)
    os.unlink(os.path.join(box_dir, "index"))


def imap_day(d):
    return "%d-%s-%d" % (d.day, d.strftime("%b"), d.year)


def parse_date(text):
    return datetime.datetime.strptime(text, "%d-%b-%Y %H:%M:%S %z")


class ObjectIdCase(rs.ServerTestCase):
    users_per_class = 12

    def fetch(self, c, cmd):
        """{uid: fetch_dict} of a UID FETCH."""
        r = self.ok(c, cmd)
        out = {}
        for u in r.untagged:
            if u.kind() == "FETCH":
                d = rs.fetch_dict(u)
                out[d["UID"]] = d
        return out

    def ids(self, c, box):
        self.ok(c, "SELECT " + box)
        f = self.fetch(c, "UID FETCH 1:* (EMAILID THREADID SAVEDATE)")
        return {uid: (rs.s(d["EMAILID"][0]), d["THREADID"], d["SAVEDATE"])
                for uid, d in f.items()}

    def mailboxid(self, c, box):
        r = self.ok(c, "STATUS %s (MAILBOXID)" % box)
        lines = [u.raw.decode() for u in r.untagged if u.kind() == "STATUS"]
        self.assertEqual(len(lines), 1, r.describe())
        m = re.search(r"\(MAILBOXID \(([^()]*)\)\)", lines[0])
        self.assertTrue(m, lines[0])
        return m.group(1)

    def uids(self, c, cmd):
        r = self.ok(c, cmd)
        return r.search()

    def restart(self):
        self.assertEqual(self.server.stop(), 0)
        self.server.start()

    def test_capability(self):
        c = self.login()
        caps = c.capabilities()
        self.assertIn("OBJECTID", caps)
        self.assertIn("SAVEDATE", caps)

    def test_mailboxid(self):
        c = self.login()
        r = self.ok(c, "CREATE foo")
        m = re.match(r"MAILBOXID \(([^()]*)\)$", r.code or "")
        self.assertTrue(m, r.describe())
        foo = m.group(1)
        self.assertRegex(foo, OBJECTID)
        self.assertEqual(self.mailboxid(c, "foo"), foo)
        inbox = self.mailboxid(c, "INBOX")
        self.assertNotEqual(inbox, foo)
        for cmd in ("SELECT foo", "EXAMINE foo"):
            r = self.ok(c, cmd)
            self.assertEqual(r.code_of("MAILBOXID"), "MAILBOXID (%s)" % foo, r.describe())
        self.ok(c, "UNSELECT")
        # RFC 8474 4: kept by RENAME; a new mailbox under the old name is
        # a new id, and so is one created again after DELETE.
        self.ok(c, "RENAME foo bar")
        self.assertEqual(self.mailboxid(c, "bar"), foo)
        r = self.ok(c, "CREATE foo")
        foo2 = self.mailboxid(c, "foo")
        self.assertNotIn(foo2, (foo, inbox))
        self.assertEqual(r.code, "MAILBOXID (%s)" % foo2)
        self.ok(c, "DELETE foo")
        self.ok(c, "CREATE foo")
        self.assertNotIn(self.mailboxid(c, "foo"), (foo, foo2, inbox))
        # LIST-STATUS.
        r = self.ok(c, 'LIST "" bar RETURN (STATUS (MAILBOXID MESSAGES))')
        st = [u.raw.decode() for u in r.untagged if u.kind() == "STATUS"]
        self.assertEqual(st, ['* STATUS "bar" (MESSAGES 0 MAILBOXID (%s))' % foo], r.describe())
        # RENAME INBOX: the messages (and UIDVALIDITY) move to the new name
        # with the id; INBOX is a new mailbox with a new one.
        self.expect(c.append("INBOX", msg(1)), "OK")
        self.ok(c, "RENAME INBOX old")
        self.assertEqual(self.mailboxid(c, "old"), inbox)
        inbox2 = self.mailboxid(c, "INBOX")
        self.assertNotIn(inbox2, (inbox, foo, foo2))
        before = {b: self.mailboxid(c, b) for b in ("INBOX", "old", "bar", "foo")}
        c.close()
        self.restart()
        c = self.login()
        self.assertEqual({b: self.mailboxid(c, b) for b in before}, before)

    def test_emailid(self):
        c = self.login()
        for n in range(1, 5):
            self.expect(c.append("INBOX", msg(n)), "OK")
        self.ok(c, "CREATE A")
        ids = self.ids(c, "INBOX")
        self.assertEqual(sorted(ids), [1, 2, 3, 4])
        eids = [ids[u][0] for u in (1, 2, 3, 4)]
        self.assertEqual(len(set(eids)), 4)
        for e in eids:
            self.assertRegex(e, OBJECTID)
        # Each its own Message-ID and no reply fields: four threads.
        tids = [rs.s(ids[u][1][0]) for u in (1, 2, 3, 4)]
        self.assertEqual(len(set(tids) | set(eids)), 8)
        # Same EMAILID for the COPYUID pairs of COPY and MOVE (RFC 8474 5.1).
        r = self.ok(c, "UID COPY 1 A")
        self.assertRegex(r.code, r"^COPYUID \d+ 1 1$")
        r = self.ok(c, "UID MOVE 2 A")
        self.assertRegex(r.code_of("COPYUID"), r"^COPYUID \d+ 2 2$")
        # A move within the mailbox (new UID) keeps it too.
        r = self.ok(c, "UID MOVE 3 INBOX")
        self.assertRegex(r.code_of("COPYUID"), r"^COPYUID \d+ 3 5$")
        ids = self.ids(c, "INBOX")
        self.assertEqual({u: ids[u][0] for u in ids}, {1: eids[0], 4: eids[3], 5: eids[2]})
        a = self.ids(c, "A")
        self.assertEqual({u: a[u][0] for u in a}, {1: eids[0], 2: eids[1]})
        # SEARCH EMAILID / THREADID.
        self.assertEqual(self.uids(c, "UID SEARCH EMAILID %s" % eids[1]), [2])
        self.assertEqual(self.uids(c, "UID SEARCH OR EMAILID %s EMAILID %s"
                                   % (eids[0], eids[2])), [1])
        self.assertEqual(self.uids(c, "UID SEARCH EMAILID %s" % eids[2]), [])
        self.assertEqual(self.uids(c, "UID SEARCH EMAILID Mnot_ours"), [])
        self.assertEqual(self.uids(c, "UID SEARCH THREADID T1"), [])
        self.assertEqual(self.uids(c, "UID SEARCH NOT THREADID T1"), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH THREADID %s" % tids[1]), [2])
        self.expect(c.cmd("SEARCH EMAILID M1!"), "BAD")
        self.expect(c.cmd("SEARCH EMAILID"), "BAD")
        # Compaction (after an expunge), a restart and check --repair keep them.
        self.ok(c, "SELECT INBOX")
        self.ok(c, "UID STORE 4 +FLAGS (\\Deleted)")
        self.ok(c, "EXPUNGE")
        want = {b: self.ids(c, b) for b in ("INBOX", "A")}
        c.close()
        self.server.admin("compact", self.user, "INBOX")
        self.server.admin("compact", self.user, "A")
        c = self.login()
        self.assertEqual({b: self.ids(c, b) for b in want}, want)
        c.close()
        self.assertEqual(self.server.stop(), 0)
        p = self.server.admin("check", self.user, "--repair")
        self.assertNotIn(b"PROBLEMS", p.stdout)
        self.server.start()
        c = self.login()
        self.assertEqual({b: self.ids(c, b) for b in want}, want)
        self.assertEqual(self.uids(c, "UID SEARCH EMAILID %s" % eids[0]), [1])

    def test_threadid(self):
        """RFC 8474 5.2: related messages get the same THREADID, in
        whatever mailbox (SHOULD); the same EMAILID the same THREADID
        (MUST); never a change once reported (MUST NOT); never an EMAILID's
        value."""
        def m(subject, mid=None, irt=None, refs=None):
            h = b"From: a@example.org\r\nSubject: %s\r\n" % subject.encode()
            if mid:
                h += b"Message-ID: %s\r\n" % mid.encode()
            if irt:
                h += b"In-Reply-To: %s\r\n" % irt.encode()
            if refs:
                h += b"References: %s\r\n" % refs.encode()
            return h + b"\r\nbody\r\n"
        c = self.login()
        self.ok(c, "CREATE Sent")
        inbox = [m("root", "<r1@example.org>"),
                 m("Re: root", "<a2@example.org>", "<r1@example.org>", "<r1@example.org>"),
                 m("other", "<o1@example.org>"),
                 m("no id"),
                 m("no id")]
        sent = [m("Re: Re: root", "<a3@example.org>", "<a2@example.org>",
                  "<r1@example.org> (a comment) <a2@example.org>"),
                # the same Message ID however quoted (RFC 5256 3)
                m("Re: root", "<a4@example.org>", None, '<"r1"@example.org>'),
                # only In-Reply-To: the parent names the thread
                m("Re: root", "<a5@example.org>", "<r1@example.org>"),
                m("Re: other", "<o2@example.org>", "<o1@example.org>")]
        for b in inbox:
            self.expect(c.append("INBOX", b), "OK")
        for b in sent:
            self.expect(c.append("Sent", b), "OK")

        def tids(box):
            return {u: rs.s(v[1][0]) for u, v in self.ids(c, box).items()}
        ti, ts = tids("INBOX"), tids("Sent")
        for t in list(ti.values()) + list(ts.values()):
            self.assertRegex(t, r"^T[0-9a-f]{16}$")
        root, other = ti[1], ti[3]
        self.assertEqual(ti[2], root)
        self.assertEqual([ts[u] for u in (1, 2, 3)], [root] * 3)
        self.assertEqual(ts[4], other)
        self.assertNotEqual(root, other)
        # No Message ID at all: a thread of its own each, even for the
        # same bytes (two EMAILIDs)...
        self.assertEqual(len({root, other, ti[4], ti[5]}), 4)
        # ...and a copy, which has the original's EMAILID, has its THREADID.
        self.ok(c, "SELECT INBOX")
        r = self.ok(c, "UID COPY 4 Sent")
        self.assertRegex(r.code, r"^COPYUID \d+ 4 5$")
        self.assertEqual(tids("Sent")[5], ti[4])
        # SEARCH THREADID in each mailbox.
        self.ok(c, "SELECT INBOX")
        self.assertEqual(self.uids(c, "UID SEARCH THREADID %s" % root), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH THREADID %s" % ti[4]), [4])
        self.assertEqual(self.uids(c, "UID SEARCH NOT THREADID %s" % root), [3, 4, 5])
        self.assertEqual(self.uids(c, "UID SEARCH THREADID %s" % root.upper()), [])
        self.ok(c, "SELECT Sent")
        self.assertEqual(self.uids(c, "UID SEARCH THREADID %s" % root), [1, 2, 3])
        self.assertEqual(self.uids(c, "UID SEARCH OR THREADID %s THREADID %s"
                                   % (other, ti[4])), [4, 5])
        # Kept by a restart and compaction.
        want = {"INBOX": tids("INBOX"), "Sent": tids("Sent")}
        c.close()
        self.server.admin("compact", self.user, "Sent")
        self.restart()
        c = self.login()
        self.assertEqual({b: tids(b) for b in want}, want)

    def test_savedate(self):
        c = self.login()
        t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        # An internal date in the past: SAVEDATE is not it (RFC 8514 3).
        self.expect(c.append("INBOX", msg(1), date="01-Jan-2001 10:00:00 +0200"), "OK")
        self.expect(c.append("INBOX", msg(2)), "OK")
        self.ok(c, "SELECT INBOX")
        f = self.fetch(c, "UID FETCH 1:* (SAVEDATE INTERNALDATE)")
        s1 = parse_date(rs.s(f[1]["SAVEDATE"]))
        self.assertEqual(rs.s(f[1]["INTERNALDATE"]), "01-Jan-2001 10:00:00 +0200")
        t1 = datetime.datetime.now(datetime.timezone.utc)
        self.assertTrue(t0 <= s1 <= t1, (t0, s1, t1))
        today = imap_day(s1)
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDON %s" % today), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDSINCE %s" % today), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDBEFORE %s" % today), [])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDBEFORE 1-Jan-2002"), [])
        self.assertEqual(self.uids(c, "UID SEARCH BEFORE 1-Jan-2002"), [1])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDATESUPPORTED"), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH NOT SAVEDATESUPPORTED"), [])
        self.expect(c.cmd("SEARCH SAVEDON 32-Dec-2026"), "BAD")
        # COPY and MOVE: the copy's save date is the time of the copy; the
        # original keeps its own.
        time.sleep(1.2)
        self.ok(c, "CREATE B")
        self.ok(c, "UID COPY 1 B")
        self.ok(c, "UID MOVE 2 B")
        f2 = self.fetch(c, "UID FETCH 1 SAVEDATE")
        self.assertEqual(parse_date(rs.s(f2[1]["SAVEDATE"])), s1)
        self.ok(c, "SELECT B")
        fb = self.fetch(c, "UID FETCH 1:* (SAVEDATE INTERNALDATE)")
        self.assertEqual(sorted(fb), [1, 2])
        for u in (1, 2):
            self.assertGreater(parse_date(rs.s(fb[u]["SAVEDATE"])), s1)
        self.assertEqual(rs.s(fb[1]["INTERNALDATE"]), "01-Jan-2001 10:00:00 +0200")
        # ringmail-admin import saves too (and gives new EMAILIDs).
        self.server.import_mbox(self.user, "Imported", [msg(7), msg(8)])
        imp = self.ids(c, "Imported")
        self.assertEqual(sorted(imp), [1, 2])
        for u in imp:
            self.assertGreaterEqual(parse_date(rs.s(imp[u][2])), s1)
        self.assertEqual(len({imp[u][0] for u in imp} | {v[0] for v in self.ids(c, "B").values()}),
                         4)
        want = {b: self.ids(c, b) for b in ("INBOX", "B", "Imported")}
        c.close()
        self.server.admin("compact", self.user, "B")
        self.restart()
        c = self.login()
        self.assertEqual({b: self.ids(c, b) for b in want}, want)

    def test_older_format(self):
        """Messages saved by a version without EMAILID and save dates: the
        EMAILID an append would have given them, their THREADID, SAVEDATE
        NIL and SAVED*
        by their internal date (RFC 8514 4.2, 4.3); new messages in the
        same mailbox, and copies of the old ones, get both."""
        c = self.login()
        for n in (1, 2):
            self.expect(c.append("INBOX", msg(n), date="01-Jan-2001 10:00:00 +0000"), "OK")
        self.ok(c, "CREATE X")
        uv, mbid = [int(x, 16) for x in self.mailboxid(c, "INBOX")[1:].split("_")]
        pre = "M%x_%x_" % (uv, mbid)
        threads = {u: v[1] for u, v in self.ids(c, "INBOX").items()}
        c.close()
        self.assertEqual(self.server.stop(), 0)
        make_older_format(os.path.join(self.server.mail_root, self.user, "m", str(mbid)))
        p = self.server.admin("check", self.user, "INBOX")
        self.assertIn(b"2 message records of the older format", p.stdout)
        self.server.start()
        c = self.login()
        ids = self.ids(c, "INBOX")
        # THREADID is made from the message itself: the same as before.
        self.assertEqual(ids, {1: (pre + "1", threads[1], None), 2: (pre + "2", threads[2], None)})
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDBEFORE 2-Jan-2001"), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDON 1-Jan-2001"), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDATESUPPORTED"), [1, 2])
        self.assertEqual(self.uids(c, "UID SEARCH EMAILID %s2" % pre), [2])
        # A new message in the old log, and a copy of an old one.
        self.expect(c.append("INBOX", msg(3), date="01-Jan-2001 10:00:00 +0000"), "OK")
        self.ok(c, "UID COPY 1 X")
        ids = self.ids(c, "INBOX")
        self.assertEqual(ids[3][0], pre + "3")
        self.assertIsNotNone(ids[3][2])
        self.assertEqual(self.uids(c, "UID SEARCH SAVEDBEFORE 2-Jan-2001"), [1, 2])
        x = self.ids(c, "X")
        self.assertEqual(x[1][0], pre + "1")
        self.assertIsNotNone(x[1][2])
        want = self.ids(c, "INBOX")
        c.close()
        self.server.admin("compact", self.user, "INBOX")
        self.restart()
        c = self.login()
        self.assertEqual(self.ids(c, "INBOX"), want)


rs.parametrize(globals(), ObjectIdCase)

if __name__ == "__main__":
    rs.main()
