#!/usr/bin/env python3
"""A real client against ringmaild: NeoMutt (Debian's neomutt, header cache
on) opens INBOX over IMAP on loopback, inside a private tmux server (its
own socket, a fixed 160x40 screen).  Another client (imaplib) then changes
flags, appends and expunges; NeoMutt must show the result while the mailbox
is open (its periodic check), and again after it quits and reopens INBOX
from its header cache.  What it shows is read off the screen (an index line
per message with its status flags, a status line with the counts) and
compared with what the server says over IMAP; its header cache (Tokyo
Cabinet, read with tcbmgr) must hold exactly the server's UIDs, its
UIDVALIDITY and UIDNEXT, and (with CONDSTORE) the HIGHESTMODSEQ it last saw.

Two configurations: imap_condstore and imap_qresync set (NeoMutt uses
QRESYNC where the server offers it, else CONDSTORE: the reopen must then
ask for CHANGEDSINCE or QRESYNC, seen in NeoMutt's debug log), and
NeoMutt's defaults (neither: the reopen must not use them).  Every wait is
for screen content (or a file), never a fixed sleep.  neomutt, tmux and
tcbmgr must be installed (tools/setup-deps.sh); a missing one is a failure.
Runs once per io backend."""

import imaplib
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "mutt", "mutt-secret"
NMSG = 12
WAIT = 30           # seconds for the screen to show what is expected


def message(i):
    return (b"From: Sender %d <s%d@example.org>\r\nTo: mutt@example.org\r\n"
            b"Subject: nm-%02d\r\nDate: Mon, 7 Dec 2026 10:%02d:00 +0000\r\n"
            b"Message-ID: <nm%d@example.org>\r\n\r\nBody %d.\r\n" % (i, i, i, i, i, i))


class NeomuttBase:
    users_per_class = 2
    CONDSTORE = True

    @classmethod
    def prepare_server(cls, server):
        server.add_users({USER: PASSWORD})
        server.import_mbox(USER, "INBOX", [message(i) for i in range(1, NMSG + 1)])

    def setUp(self):
        super().setUp()
        for prog in ("neomutt", "tmux", "tcbmgr"):
            rs.require_program(self, prog)
        self.dir = os.path.join(self.server.tmp, "neomutt-%s" % self.id().split(".")[-2])
        shutil.rmtree(self.dir, ignore_errors=True)
        self.hc = os.path.join(self.dir, "hcache")
        os.makedirs(self.hc)
        self.sock = "rm-neomutt-%d-%s" % (os.getpid(), self.backend)
        self.rc = os.path.join(self.dir, "neomuttrc")
        self.log = os.path.join(self.dir, "debug.log")
        url = "imap://%s@%s:%d/" % (USER, self.server.host, self.server.port)
        self.url = url
        lines = [
            'set folder="%s"' % url,
            'set spoolfile="+INBOX"',
            'set imap_user="%s"' % USER,
            'set imap_pass="%s"' % PASSWORD,
            "set ssl_starttls=no",
            "set ssl_force_tls=no",
            'set header_cache="%s/"' % self.hc,
            "set sort=mailbox-order",
            # one index line per message: "IDX <subject> [<%Z status flags>]"
            'set index_format="IDX %s [%Z] ~"',
            'set status_format="STATUS msgs=%m unread=%u flagged=%F ~"',
            "set mark_old=no",          # unseen messages show N, not O
            "set wait_key=no",
            "set beep=no",
            "set help=no",
            "set quit=yes",
            "set move=no",
            # poll the open mailbox every second (the in-session sync)
            "set timeout=1",
            "set mail_check=1",
        ]
        if self.CONDSTORE:
            lines += ["set imap_condstore=yes", "set imap_qresync=yes"]
        with open(self.rc, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.imap = imaplib.IMAP4(self.server.host, self.server.port)
        self.imap.login(USER, PASSWORD)

    def tearDown(self):
        self.tmux("kill-server", check=False)
        try:
            self.imap.logout()
        except Exception:
            pass
        super().tearDown()

    # -- tmux and the screen --

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null"] + list(args),
                              capture_output=True, check=check, timeout=20)

    def start(self):
        for f in os.listdir(self.dir):
            if f.startswith("debug.log"):
                os.unlink(os.path.join(self.dir, f))
        env = "HOME=%s TERM=xterm" % self.dir
        # -n: no system neomuttrc; -d 2 -l: the IMAP commands into a log
        self.tmux("new-session", "-d", "-s", "nm", "-x", "160", "-y", "40",
                  "%s neomutt -n -F %s -d 2 -l %s" % (env, self.rc, self.log))

    def screen(self):
        r = self.tmux("capture-pane", "-p", "-t", "nm", check=False)
        return r.stdout.decode(errors="replace") if r.returncode == 0 else ""

    def shown(self):
        """(status counts, {subject: (unread, flagged)}) from the screen."""
        text = self.screen()
        m = re.search(r"STATUS msgs=(\d+) unread=(\d+) flagged=(\d+) ~", text)
        counts = tuple(int(x) for x in m.groups()) if m else None
        rows = {}
        for line in text.splitlines():
            m = re.match(r"IDX (nm-\d\d) \[(.)(.)(.)\] ~", line)
            if m:
                rows[m.group(1)] = (m.group(2) == "N", m.group(4) == "!")
        return counts, rows

    def wait_shown(self, want, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.shown() == want:
                return
            if self.tmux("has-session", "-t", "nm", check=False).returncode:
                self.fail("%s: neomutt exited" % what)
            time.sleep(0.1)
        self.fail("%s: NeoMutt shows\n%s\nwant %r\ngot %r" % (what, self.screen(), want,
                                                              self.shown()))

    def quit(self):
        self.tmux("send-keys", "-t", "nm", "q")
        deadline = time.monotonic() + WAIT
        while self.tmux("has-session", "-t", "nm", check=False).returncode == 0:
            self.assertLess(time.monotonic(), deadline, "neomutt did not quit:\n" + self.screen())
            time.sleep(0.05)

    # -- the server's side --

    def server_state(self):
        """(status counts, {subject: (unread, flagged)}, uids, uidvalidity,
        uidnext, highestmodseq) over IMAP (EXAMINE: nothing changes)."""
        c = self.imap
        typ, _ = c.select("INBOX", readonly=True)
        self.assertEqual(typ, "OK")
        typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK")
        rows, uids = {}, []
        for item in data:
            if not isinstance(item, tuple):
                continue
            head = item[0].decode()
            uid = int(re.search(r"UID (\d+)", head).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
            subj = re.search(rb"Subject: (\S+)", item[1]).group(1).decode()
            rows[subj] = ("\\Seen" not in flags, "\\Flagged" in flags)
            uids.append(uid)
        typ, data = c.status("INBOX", "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)")
        st = dict(re.findall(r"(\w+) (\d+)", data[0].decode()))
        counts = (len(rows), sum(u for u, _ in rows.values()), sum(f for _, f in rows.values()))
        c.close()
        return (counts, rows, sorted(uids), int(st["UIDVALIDITY"]), int(st["UIDNEXT"]),
                int(st["HIGHESTMODSEQ"]))

    def hcache(self):
        """(uids, uidvalidity, uidnext, modseq or None) of NeoMutt's header
        cache of INBOX (keys "<url>INBOX/<uid>", "/UIDVALIDITY" etc., the
        numbers little-endian)."""
        files = [os.path.join(dp, f) for dp, _, fs in os.walk(self.hc) for f in fs
                 if f.startswith("INBOX")]
        self.assertEqual(len(files), 1, files)
        keys = subprocess.run(["tcbmgr", "list", files[0]], capture_output=True, check=True,
                              timeout=20).stdout.decode().split("\n")
        uids, meta = [], {}
        for k in keys:
            m = re.search(r"/INBOX/(\w+)$", k)
            if not m:
                continue
            if m.group(1).isdigit():
                uids.append(int(m.group(1)))
            else:
                v = subprocess.run(["tcbmgr", "get", "-px", files[0], k], capture_output=True,
                                   check=True, timeout=20).stdout.decode().split()
                meta[m.group(1)] = int.from_bytes(bytes(int(x, 16) for x in v), "little")
        return sorted(uids), meta.get("UIDVALIDITY"), meta.get("UIDNEXT"), meta.get("MODSEQ")

    def check_hcache(self, srv, what, modseq_exact, stale_ok=()):
        """The cache must hold the server's UIDs, UIDVALIDITY and UIDNEXT.
        NeoMutt drops a UID from it on EXPUNGE or VANISHED; a message it
        finds gone when it reopens by a listing (no QRESYNC) keeps its entry
        (never read again: UIDs are not reused), so those UIDs (stale_ok)
        may remain.
        Its MODSEQ must never be above the server's HIGHESTMODSEQ (changes
        in between would be skipped on the next resync); NeoMutt takes it
        from SELECT's HIGHESTMODSEQ, so after changes seen in a session it
        may be lower (safe: the resync asks for more), and right after a
        SELECT it is the server's."""
        uids, uidvalidity, uidnext, modseq = self.hcache()
        self.assertEqual(sorted(set(uids) - set(stale_ok)), srv[2],
                         what + ": the UIDs in the header cache")
        self.assertEqual(uidvalidity, srv[3], what + ": UIDVALIDITY in the header cache")
        self.assertEqual(uidnext, srv[4], what + ": UIDNEXT in the header cache")
        if self.CONDSTORE:
            self.assertIsNotNone(modseq, what + ": no MODSEQ in the header cache")
            if modseq_exact:
                self.assertEqual(modseq, srv[5], what + ": MODSEQ in the header cache")
            else:
                self.assertTrue(0 < modseq <= srv[5], "%s: MODSEQ %r in the header cache, the "
                                "server's HIGHESTMODSEQ %d" % (what, modseq, srv[5]))

    def commands_logged(self):
        """The commands NeoMutt sent, from its debug log (it writes
        <log>0, numbering old ones)."""
        out = []
        for f in sorted(os.listdir(self.dir)):
            if f.startswith("debug.log"):
                with open(os.path.join(self.dir, f), errors="replace") as fh:
                    out += [ln for ln in fh if re.search(r"\d> a\d{4} ", ln)]
        return out

    # -- the test --

    def test_open_change_reopen(self):
        c = self.imap
        self.start()
        srv = self.server_state()
        self.wait_shown(srv[:2], "first open")
        # seen by NeoMutt while open (its periodic check)
        c.select("INBOX")
        c.store("2", "+FLAGS", "(\\Flagged)")
        c.store("3", "+FLAGS", "(\\Seen)")
        c.append("INBOX", None, None, message(20))
        c.store("5", "+FLAGS", "(\\Deleted)")
        c.expunge()
        srv = self.server_state()
        self.assertEqual(srv[0][0], NMSG)
        self.wait_shown(srv[:2], "changes while open")
        self.quit()
        self.check_hcache(srv, "after the first session", False)
        # while NeoMutt is away: it must find these from its cache on reopen
        c.select("INBOX")
        c.store("1", "+FLAGS", "(\\Seen \\Flagged)")
        c.store("2", "-FLAGS", "(\\Flagged)")
        c.append("INBOX", "(\\Flagged)", None, message(21))
        typ, data = c.fetch("7:8", "(UID)")
        away = [int(x) for x in re.findall(rb"UID (\d+)", b" ".join(data))]
        self.assertEqual(len(away), 2)
        c.store("7:8", "+FLAGS", "(\\Deleted)")
        c.expunge()
        srv = self.server_state()
        self.start()
        self.wait_shown(srv[:2], "reopened from the header cache")
        sent = self.commands_logged()
        self.assertTrue(sent, "nothing in NeoMutt's debug log")
        resync = [ln for ln in sent if re.search(r"CHANGEDSINCE|QRESYNC", ln, re.I)]
        if self.CONDSTORE:
            self.assertTrue(resync, "imap_condstore: the reopen must resync by CONDSTORE or "
                                    "QRESYNC:\n" + "".join(sent))
        else:
            self.assertEqual(resync, [], "NeoMutt's defaults use neither")
        self.quit()
        self.check_hcache(srv, "after the reopen", True, stale_ok=away)


class NeomuttCondstore(NeomuttBase, rs.ServerTestCase):
    CONDSTORE = True


class NeomuttDefaults(NeomuttBase, rs.ServerTestCase):
    CONDSTORE = False


rs.parametrize(globals(), NeomuttCondstore, NeomuttDefaults)

if __name__ == "__main__":
    rs.main()
