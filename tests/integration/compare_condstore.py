#!/usr/bin/env python3
"""CONDSTORE and QRESYNC (RFC 7162 sections 3.1 and 3.2) answers of ringmaild
next to Dovecot's.

Runs the same sessions against a ringmaild (RINGMAILD, as the integration
tests) and a private Dovecot (dovecot-imapd from apt, a config of its own in
a temp dir, listening on loopback only; never the system instance), then
prints each command with both answers, normalized: modseq values, UIDVALIDITY
and the human-readable text after a status are left out, the items of a
FETCH response are in name order, tags are the same.
Lines that differ are marked with "!".  Exit status 0 whatever differs: the
differences are read, and each one where we keep ours has the RFC sentence
in the code.

    RINGMAILD=build/ringmaild python3 tests/integration/compare_condstore.py

Needs root (Dovecot's mail processes run as nobody) and /usr/sbin/dovecot."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot_peer  # noqa: E402
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "cmpuser", "cmp-password"

class Dovecot(dovecot_peer.PrivateDovecot):
    """USER's account in mdbox, started at once; stop() removes it."""

    def __init__(self):
        super().__init__("condstore", {USER: PASSWORD}, "mail_location = mdbox:~/mdbox\n")
        self.start()

    def connect(self):
        return rs.Imap("127.0.0.1", self.port)

    def stop(self):
        self.cleanup()


def norm(line):
    line = re.sub(r"MODSEQ \(\d+\)", "MODSEQ (m)", line)
    line = re.sub(r"HIGHESTMODSEQ \d+", "HIGHESTMODSEQ h", line)
    line = re.sub(r"(UNCHANGEDSINCE|CHANGEDSINCE) \d+", r"\1 n", line)
    line = re.sub(r"MODSEQ \d+", "MODSEQ m", line)
    line = re.sub(r"UIDVALIDITY \d+", "UIDVALIDITY v", line)
    line = re.sub(r"QRESYNC \(\d+ \d+", "QRESYNC (v h", line)
    line = re.sub(r"^(\S+ (?:OK|NO|BAD)(?: \[[^\]]*\])?).*$", r"\1", line)
    line = re.sub(r"^(\* (?:OK|NO|BAD|BYE)(?: \[[^\]]*\])?).*$", r"\1", line)
    line = re.sub(r"^\* CAPABILITY .*", "* CAPABILITY ...", line)
    line = re.sub(r"\(\\Recent\)|\\Recent ?| \\Recent", "", line)
    line = re.sub(r"PERMANENTFLAGS \([^)]*\)", "PERMANENTFLAGS (...)", line)
    line = re.sub(r'STATUS "?INBOX"?', "STATUS INBOX", line)
    return line


def fetch_sorted(u):
    """A FETCH response with its items in name order (the order is free:
    RFC 9051 7.5.2), MODSEQ values left out; other responses as they are."""
    if u.kind() != "FETCH":
        return u.line
    d = rs.fetch_dict(u)
    out = []
    for k in sorted(d):
        v = d[k]
        if k == "MODSEQ":
            v = "(m)"
        elif isinstance(v, list):
            v = "(%s)" % " ".join(map(str, v))
        out.append("%s %s" % (k, v))
    return "* %d FETCH (%s)" % (u.number(), " ".join(out))


class Run:
    """One server's sessions, and everything they were answered."""

    def __init__(self, connect):
        self.connect = connect
        self.sess = {}
        self.log = []

    def s(self, name):
        if name not in self.sess:
            c = self.connect()
            # [UNAVAILABLE] is a temporary failure (RFC 5530): Dovecot gives
            # it while its auth process is still starting on a busy machine;
            # a client tries again
            for attempt in range(10):
                r = c.cmd("LOGIN %s %s" % (USER, PASSWORD))
                if r.status != "NO" or b"[UNAVAILABLE]" not in r.tagged.raw or attempt == 9:
                    break
                time.sleep(0.5)
            c.expect(r, "OK")
            self.sess[name] = c
        return self.sess[name]

    def do(self, name, cmd):
        c = self.s(name)
        r = c.cmd(cmd)
        lines = [fetch_sorted(u) for u in r.untagged] + [r.tagged.line]
        self.log.append(("%s: %s" % (name, r.command), [norm(x) for x in lines], r))
        return r

    def modseq_of(self, r, n):
        for num, f in r.fetch_list():
            if num == n and "MODSEQ" in f:
                return int(f["MODSEQ"][0])
        raise AssertionError("no MODSEQ for %d in %s" % (n, r.describe()))

    def hms(self, r):
        m = re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(u.raw for u in r.untagged))
        return int(m.group(1))


def msg(i):
    return b"Subject: m%d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n" % (i, i)


def script(run):
    a = run.s("A")
    for i in range(1, 10):
        a.expect(a.append("INBOX", msg(i)), "OK")
    run.do("A", "CAPABILITY")
    run.do("A", "SELECT INBOX")
    run.do("B", "SELECT INBOX (CONDSTORE)")
    run.do("C", "SELECT INBOX")
    h0 = run.hms(run.do("P", "STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)"))
    run.do("A", "FETCH 1:3 (MODSEQ)")                    # first enabling: HIGHESTMODSEQ
    run.do("A", "FETCH 2 (FLAGS)")
    run.do("A", "STORE 7 +FLAGS.SILENT (\\Deleted)")     # Example 14
    run.do("B", "NOOP")
    run.do("C", "NOOP")
    run.do("A", "STORE 7 +FLAGS.SILENT (\\Deleted)")     # no change
    run.do("A", "STORE 6 +FLAGS (\\Answered)")
    run.do("A", "UID STORE 5 +FLAGS (\\Answered)")
    run.do("B", "NOOP")
    run.do("B", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0)   # Example 12
    run.do("B", "FETCH 1:* (UID) (CHANGEDSINCE %d)" % run.hms(
        run.do("P", "STATUS INBOX (HIGHESTMODSEQ)")))
    base = run.hms(run.do("P", "STATUS INBOX (HIGHESTMODSEQ)"))
    run.do("C", "STORE 8 +FLAGS (\\Seen)")
    run.do("C", "STORE 9 +FLAGS (\\Answered)")
    run.do("A", "STORE 8,4,9 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % base)  # Ex. 6
    run.do("A", "UID STORE 8,4,9 (UNCHANGEDSINCE %d) +FLAGS.SILENT ($x)" % base)
    run.do("A", "STORE 3 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)")             # Ex. 8
    run.do("C", "STORE 2 (UNCHANGEDSINCE %d) -FLAGS.SILENT (\\Deleted)" % base)     # Ex. 5
    run.do("C", "STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % base)
    m1 = run.modseq_of(run.do("A", "FETCH 1 (MODSEQ)"), 1)
    run.do("A", "STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT (\\Seen $a)" % m1)
    run.do("B", "STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT ($b)" % m1)
    top = run.hms(run.do("P", "STATUS INBOX (HIGHESTMODSEQ)"))
    run.do("A", "SEARCH MODSEQ %d" % base)
    run.do("A", 'SEARCH MODSEQ "/flags/\\\\draft" all %d' % base)                  # Ex. 15
    run.do("A", "SEARCH MODSEQ %d" % (top + 1))                                     # Ex. 16
    run.do("A", "SEARCH RETURN (ALL) MODSEQ %d" % base)                             # Ex. 19
    run.do("A", "FETCH 1:* (FLAGS) (CHANGEDSINCE 0)")
    run.do("A", "FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    run.do("D", "ENABLE CONDSTORE")
    run.do("D", "ENABLE CONDSTORE")
    run.do("D", "EXAMINE INBOX")
    run.do("E", "SELECT INBOX")
    run.do("E", "STORE 3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Draft)" % top)


def qresync_script(run):
    """RFC 7162 3.2: the same QRESYNC sequence on both servers, in a
    mailbox of its own (its UIDs start at 1 on both)."""
    a = run.s("A")
    run.do("A", "CREATE QR")
    for i in range(1, 13):
        a.expect(a.append("QR", msg(i)), "OK")
    run.do("Q", "ENABLE QRESYNC")
    run.do("Q", "ENABLE QRESYNC CONDSTORE")
    run.do("F", "ENABLE QRESYNC CONDSTORE")
    run.do("G", "ENABLE CONDSTORE QRESYNC")
    run.do("Q", "SELECT INBOX")
    r = run.do("Q", "SELECT QR")                        # [CLOSED]
    uv = int(r.code_of("UIDVALIDITY").split()[1])
    h0 = run.hms(r)
    run.do("A", "SELECT QR")
    run.do("A", "UID STORE 3,7 +FLAGS ($Fwd \\Answered)")
    run.do("A", "UID STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
    run.do("A", "EXPUNGE")
    a.expect(a.append("QR", msg(13)), "OK")
    run.do("Q", "NOOP")                                 # VANISHED, FETCH with UID
    run.do("R", "ENABLE QRESYNC")
    run.do("R", "SELECT QR (QRESYNC (%d %d))" % (uv, h0))           # 3.2.5.1
    run.do("R", "EXAMINE QR (QRESYNC (%d %d 1:4))" % (uv, h0))      # [CLOSED], known-uids
    run.do("R", "EXAMINE QR (QRESYNC (%d %d 1:12 (1,3 1,4)))" % (uv, h0))  # 3.2.5.2
    run.do("R", "EXAMINE QR (QRESYNC (%d %d 1:12 (2 2)))" % (uv, h0))
    run.do("R", "SELECT QR (QRESYNC (67890007 %d 1:12))" % h0)      # UIDVALIDITY mismatch
    run.do("R", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)   # 3.2.6
    run.do("R", "UID FETCH 4:12 (FLAGS) (VANISHED CHANGEDSINCE %d)" % h0)
    run.do("R", "UID FETCH 1:* (FLAGS) (VANISHED)")                 # errors
    run.do("R", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    run.do("A", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    run.do("A", "SELECT QR (QRESYNC (%d %d))" % (uv, h0))
    run.do("A", "SELECT QR")
    run.do("R", "UID STORE 8,9 +FLAGS.SILENT (\\Deleted)")
    run.do("R", "EXPUNGE")                               # 3.2.7: VANISHED, HIGHESTMODSEQ
    run.do("R", "UID STORE 1,6 +FLAGS.SILENT (\\Deleted)")
    run.do("R", "UID EXPUNGE 6")                         # 3.2.9
    run.do("R", "UID MOVE 10 INBOX")                     # RFC 6851 4.4
    run.do("R", "STORE 1 +FLAGS ($Seen2)")               # 3.2.4: UID in the echo
    run.do("R", "UID STORE 12:13 +FLAGS.SILENT (\\Deleted)")
    run.do("R", "UID EXPUNGE 12:13")
    run.do("R", "UID FETCH 11:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)   # '*'
    run.do("R", "UID FETCH 11:20 (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    run.do("A", "NOOP")
    run.do("Q", "NOOP")
    run.do("R", "CLOSE")
    run.do("Q", "SELECT INBOX")


def run_both(script):
    """script(run) against a ringmaild and a private Dovecot, in turn:
    {"ringmail": Run, "dovecot": Run}, their sessions closed."""
    rm = rs.Server(users={USER: PASSWORD})
    rm.start()
    runs = {}
    try:
        dv = Dovecot()
        try:
            for name, connect in (("ringmail", rm.connect), ("dovecot", dv.connect)):
                run = Run(connect)
                script(run)
                runs[name] = run
                for c in run.sess.values():
                    c.close()
        finally:
            dv.stop()
    finally:
        rm.stop()
        rm.cleanup()
    return runs


def print_diffs(runs, width):
    """Each command, "=" when both answered alike, else "!" and both
    answers (each line cut at width); then the count."""
    ndiff = 0
    for (cmd, ours, _r1), (_c2, theirs, _r2) in zip(runs["ringmail"].log, runs["dovecot"].log):
        if ours == theirs:
            print("= %s" % cmd)
            continue
        ndiff += 1
        print("! %s" % cmd)
        for x in ours:
            print("    R %s" % x[:width])
        for x in theirs:
            print("    D %s" % x[:width])
    print("%d of %d commands answered differently" % (ndiff, len(runs["ringmail"].log)))


def main():
    runs = run_both(lambda run: (script(run), qresync_script(run)))
    ndiff = 0
    for (cmd, ours, _r1), (_c2, theirs, _r2) in zip(runs["ringmail"].log, runs["dovecot"].log):
        print("C %s" % cmd)
        if ours == theirs:
            for x in ours:
                print("    = %s" % x)
            continue
        ndiff += 1
        for x in ours:
            print("  %s R %s" % (" " if x in theirs else "!", x))
        for x in theirs:
            print("  %s D %s" % (" " if x in ours else "!", x))
    print("%d of %d commands answered differently" % (ndiff, len(runs["ringmail"].log)))


if __name__ == "__main__":
    main()
