#!/usr/bin/env python3
"""Moving a user online: `ringmail-admin user move USER --to HOST:PORT`
between two ringmaild backends sharing one passwd-file (the user's line
carries host=/port=, the directory of the scale-out setup).

While the move runs the user keeps working: an IDLE client on the source,
mbsync (default settings) syncing again and again, a delivery stream over
LMTP (to the backend the passwd-file names at that moment; a 4xx answer is
retried as an MTA would) and flag changes (likewise retried after NO
[UNAVAILABLE], against the current route).  Afterwards: every acknowledged
delivery and flag change is on the target, exactly once; every mailbox's
UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and every message's UID, flags, MODSEQ
and EMAILID equal the source's as frozen; the IDLE client got BYE
[UNAVAILABLE]; mbsync pointed at the target downloads nothing; the
passwd-file names the target; logins and deliveries at the source are
refused.  Also: a wrong secret is refused and leaves the source alone; a
target that dies mid-way leaves the source thawed and serving, and a run
again resumes.  Runs once per io backend."""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mbox  # noqa: E402
import ringmail_server as rs  # noqa: E402

USER, PASSWORD = "mover", "move-secret-pw"
SECRET = "s3cret-of-the-backends"
MAILBOXES = {"INBOX": 1500, "Work": 600, "Lists/ietf": 400, "Archive": 300}




class MoveCase(rs.ServerTestCase):
    """Not the harness's single server: two, made per test."""

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self._fail_count = self._failures_so_far()
        self.servers = []
        self.holds = []
        self.threads = []
        self.stop_ev = threading.Event()

    def tearDown(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)
        failed = self._failures_so_far() != self._fail_count
        reports = []
        for s in self.servers:
            if failed or rs.VERBOSE:
                sys.stderr.write("--- %s stderr ---\n%s\n" % (s.tmp, s.stderr_tail(4000)))
            s.stop()
            rep = rs.sanitizer_report(s.stderr_tail(400000))
            if rep:
                reports.append(rep)
            s.cleanup()
        for h in self.holds:
            h.close()
        if reports:
            self.fail("sanitizer report in ringmaild's stderr:\n" + reports[0])

    # ---- the two backends ----

    def port(self):
        """A loopback port held (SO_REUSEPORT, not listening) until the
        test ends, so that no test running beside this one is given it."""
        port, hold = rs.reserve_port()
        self.holds.append(hold)
        return port

    def make_backends(self, populate=True, src_options=None):
        lmtp_s, lmtp_t = self.port(), self.port()
        self.move_port = self.port()
        src = rs.Server(self.backend, name="move-src",
                        options=dict({"listen_lmtp": "127.0.0.1:%d" % lmtp_s},
                                     **(src_options or {})))
        tgt = rs.Server(self.backend, name="move-tgt",
                        options={"listen_lmtp": "127.0.0.1:%d" % lmtp_t,
                                 "listen_move": "127.0.0.1:%d" % self.move_port,
                                 "move_secret": SECRET})
        self.servers += [src, tgt]
        src.lmtp_port, tgt.lmtp_port = lmtp_s, lmtp_t
        # one passwd-file, the directory of both
        tgt.passwd = src.passwd
        if populate:
            seed = 7
            for mbox, n in MAILBOXES.items():
                src.import_mbox(USER, mbox, gen_mbox.generate(n, seed))
                seed += 1
        src.start()
        tgt.start()
        self.src, self.tgt = src, tgt
        self.set_route(src.port)
        return src, tgt

    def set_route(self, port):
        with open(self.src.passwd + ".tmp", "w") as f:
            f.write("%s:{PLAIN}%s::::::host=127.0.0.1 port=%d\n" % (USER, PASSWORD, port))
        os.replace(self.src.passwd + ".tmp", self.src.passwd)

    def route(self):
        with open(self.src.passwd) as f:
            line = f.read()
        m = re.search(r"host=(\S+) port=(\d+)", line)
        return m.group(1), int(m.group(2))

    def routed_server(self):
        _, port = self.route()
        return self.src if port == self.src.port else self.tgt

    def move(self, *extra, secret=SECRET, check=True, popen=False):
        sf = os.path.join(self.src.tmp, "move.secret")
        with open(sf, "w") as f:
            f.write(secret + "\n")
        args = [rs.ADMIN, "-c", self.src.conf, "-o", "mail_root=" + self.src.mail_root,
                "-o", "passwd_file=" + self.src.passwd, "user", "move", USER,
                "--to", "127.0.0.1:%d" % self.move_port, "--secret-file", sf] + list(extra)
        if popen:
            return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        p = subprocess.run(args, capture_output=True, timeout=600)
        out = (p.stdout + p.stderr).decode(errors="replace")
        rep = rs.sanitizer_report(out)
        if rep:
            self.fail("sanitizer report from ringmail-admin user move:\n" + rep)
        if check and p.returncode != 0:
            self.fail("user move exited %d:\n%s" % (p.returncode, out))
        return p.returncode, out

    # ---- reading a mailbox's state ----

    def state(self, server, mailboxes=None):
        """{mailbox: (status dict, {uid: (flags, modseq, emailid)})}"""
        c = server.login(USER, PASSWORD)
        c.ok("ENABLE CONDSTORE")
        names = mailboxes or list(MAILBOXES)
        out = {}
        for name in names:
            r = c.cmd("STATUS %s (UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES)" % rs.quote(name))
            self.assertEqual(r.status, "OK", r.describe())
            st = r.of("STATUS")[0].items()[2]
            status = {str(st[i]).upper(): int(st[i + 1]) for i in range(0, len(st), 2)}
            c.ok("EXAMINE %s" % rs.quote(name))
            msgs = {}
            if status["MESSAGES"]:
                r = c.cmd("UID FETCH 1:* (UID FLAGS MODSEQ EMAILID)", timeout=120)
                self.assertEqual(r.status, "OK", r.describe())
                for _, d in r.fetch_list():
                    msgs[d["UID"]] = (frozenset(str(f) for f in d["FLAGS"]) - {"\\Recent"},
                                      int(d["MODSEQ"][0]), str(d["EMAILID"][0]))
            out[name] = (status, msgs)
        c.logout()
        return out

    def frozen_source_state(self, mailboxes=None):
        """The source's copy as the move froze it, read over IMAP by a
        server of its own on a copy (the source refuses logins now)."""
        chk = rs.Server(self.backend, name="move-chk")
        self.servers.append(chk)
        shutil.copytree(os.path.join(self.src.mail_root, USER),
                        os.path.join(chk.mail_root, USER))
        os.unlink(os.path.join(chk.mail_root, USER, "frozen"))
        chk.add_users({USER: PASSWORD})
        chk.start()
        try:
            return self.state(chk, mailboxes)
        finally:
            chk.stop()

    def message_ids(self, server, mailbox="INBOX"):
        c = server.login(USER, PASSWORD)
        c.ok("EXAMINE %s" % rs.quote(mailbox))
        r = c.cmd("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", timeout=120)
        self.assertEqual(r.status, "OK", r.describe())
        ids = []
        for _, d in r.fetch_list():
            raw = bytes(d["BODY[HEADER.FIELDS (MESSAGE-ID)]"])
            m = re.search(rb"<([^>]*)>", raw)
            ids.append(m.group(1).decode() if m else None)
        c.logout()
        return ids

    # ---- the user at work ----

    def deliver_stream(self, acked, log):
        i = 0
        while not self.stop_ev.is_set():
            i += 1
            mid = "stream-%d@move.test" % i
            msg = ("From: stream@example.com\r\nTo: %s@example.com\r\nSubject: delivery %d\r\n"
                   "Message-ID: <%s>\r\n\r\nbody %d\r\n" % (USER, i, mid, i))
            while True:       # as an MTA: a 4xx is retried, at the route of the moment
                srv = self.routed_server()
                try:
                    with smtplib.LMTP("127.0.0.1", srv.lmtp_port, timeout=30) as l:
                        l.ehlo("mta.test")
                        refused = l.sendmail("stream@example.com", [USER + "@example.com"], msg)
                    if not refused:
                        acked.append(mid)
                        break
                    log.append(("refused", refused))
                except smtplib.SMTPRecipientsRefused as e:
                    code = list(e.recipients.values())[0][0]
                    log.append(("rcpt", code))
                    if code // 100 != 4:
                        return
                except smtplib.SMTPDataError as e:
                    log.append(("data", e.smtp_code))
                    if e.smtp_code // 100 != 4:
                        return
                except (OSError, smtplib.SMTPException) as e:
                    log.append(("error", repr(e)))
                if self.stop_ev.is_set():
                    return
                time.sleep(0.05)
            time.sleep(0.01)

    def flag_stream(self, acked, log):
        """\\Flagged on INBOX UIDs 1, 2, 3, ... one STORE each; acked gets
        the UIDs whose STORE was answered OK."""
        uid = 0
        c = None
        while not self.stop_ev.is_set():
            uid += 1
            while not self.stop_ev.is_set():
                try:
                    if c is None:
                        c = self.routed_server().login(USER, PASSWORD, select="INBOX")
                    r = c.cmd("UID STORE %d +FLAGS.SILENT (\\Flagged)" % uid)
                    if r.status == "OK":
                        acked.append(uid)
                        break
                    log.append(("store", str(r.tagged)))
                except (OSError, ConnectionError, rs.ImapError, AssertionError) as e:
                    log.append(("conn", repr(e)[:200]))
                try:
                    if c is not None:
                        c.close()
                except Exception:
                    pass
                c = None
                time.sleep(0.05)
            time.sleep(0.02)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def write_mbsync(self, port):
        d = os.path.join(self.src.tmp, "mbsync")
        self.mail = os.path.join(d, "Mail")
        os.makedirs(self.mail, exist_ok=True)
        self.mbsync_conf = os.path.join(d, "mbsyncrc")
        with open(self.mbsync_conf, "w") as f:
            f.write("IMAPAccount ring\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\n"
                    "SSLType None\nTimeout 60\n\nIMAPStore ring-far\nAccount ring\n\n"
                    "MaildirStore ring-near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                    "Channel ring\nFar :ring-far:\nNear :ring-near:\nPatterns *\n"
                    "Create Both\nExpunge Both\nSync All\nSyncState *\n"
                    % (port, USER, PASSWORD, self.mail, self.mail))

    def run_mbsync(self):
        exe = rs.require_program(self, "mbsync")
        p = subprocess.run([exe, "-c", self.mbsync_conf, "-a"], capture_output=True,
                           timeout=600, cwd=self.src.tmp)
        return p.returncode, (p.stdout + p.stderr).decode(errors="replace")

    def mbsync_stream(self, log):
        while not self.stop_ev.is_set():
            rc, out = self.run_mbsync()
            log.append(rc)
            time.sleep(0.1)

    def local_files(self):
        n = 0
        for root, _dirs, files in os.walk(self.mail):
            if os.path.basename(root) in ("cur", "new"):
                n += len(files)
        return n

    def start(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)
        return t


class UserMove(MoveCase):

    def test_move_while_working(self):
        rs.require_program(self, "mbsync")
        src, tgt = self.make_backends()
        # mbsync has the mailbox before the move starts
        self.write_mbsync(src.port)
        rc, out = self.run_mbsync()
        self.assertEqual(rc, 0, out)
        # an IDLE client on the source
        idle = src.login(USER, PASSWORD, select="INBOX")
        idle.send(b"i1 IDLE\r\n")
        self.assertTrue(idle.read().continuation)
        delivered, dlog, flagged, flog, mlog = [], [], [], [], []
        self.start(self.deliver_stream, delivered, dlog)
        self.start(self.flag_stream, flagged, flog)
        self.start(self.mbsync_stream, mlog)
        time.sleep(1.5)
        rc, out = self.move("--quiet", "65536")
        if rs.VERBOSE:
            print(out, len(delivered), dlog[-10:], len(flagged), flog[-10:], mlog)
        time.sleep(1.0)        # the user keeps working at the target
        self.stop_ev.set()
        for t in self.threads:
            t.join(120)
        self.threads = []
        self.assertIn("moved %s to 127.0.0.1:%d" % (USER, tgt.port), out)
        self.assertRegex(out, r"froze %s" % USER)
        # the directory names the target
        self.assertEqual(self.route(), ("127.0.0.1", tgt.port))
        # the IDLE client was told, and why
        got = idle.pending(5.0)
        byes = [r for r in got if r.kind() == "BYE"]
        self.assertTrue(byes, "no BYE to the IDLE client: %r" % got)
        self.assertEqual(byes[0].status()[1], "UNAVAILABLE", byes[0])
        idle.close()
        # the work went on during the move, and met the freeze or the new route
        self.assertGreater(len(delivered), 5, dlog[-5:])
        self.assertGreater(len(flagged), 5, flog[-5:])
        self.assertTrue(mlog, "mbsync never ran during the move")
        # every acknowledged delivery is on the target, once
        ids = self.message_ids(tgt)
        for mid in delivered:
            self.assertEqual(ids.count(mid), 1, "%s on the target %d times" % (mid, ids.count(mid)))
        # the source as frozen is the target, but for what was written after
        frozen = self.frozen_source_state()
        after = self.state(tgt)
        for name in MAILBOXES:
            fst, fmsgs = frozen[name]
            ast, amsgs = after[name]
            self.assertEqual(fst["UIDVALIDITY"], ast["UIDVALIDITY"], name)
            for uid, v in fmsgs.items():
                self.assertIn(uid, amsgs, "%s UID %d lost" % (name, uid))
                # flags and MODSEQ change only by the writes after the move
                if amsgs[uid][1] == v[1]:
                    self.assertEqual(amsgs[uid], v, "%s UID %d" % (name, uid))
                self.assertEqual(amsgs[uid][2], v[2], "EMAILID of %s UID %d" % (name, uid))
            self.assertGreaterEqual(ast["UIDNEXT"], fst["UIDNEXT"], name)
            self.assertGreaterEqual(ast["HIGHESTMODSEQ"], fst["HIGHESTMODSEQ"], name)
            if name != "INBOX":     # nobody wrote there: equal
                self.assertEqual(fst, ast, name)
        # acknowledged flag changes are there
        inbox, finbox = after["INBOX"][1], frozen["INBOX"][1]
        for uid in flagged:
            if uid not in inbox:
                # mbsync (Expunge Both) expunges what the mbox import marked
                # \Deleted: gone then, and only such a message
                self.assertTrue(uid not in finbox or "\\Deleted" in finbox[uid][0], uid)
                continue
            self.assertIn("\\Flagged", inbox[uid][0], "UID %d lost its \\Flagged" % uid)
        # the source refuses the user now
        c = src.connect()
        r = c.cmd("LOGIN %s %s" % (USER, PASSWORD))
        self.assertEqual((r.status, r.code_name()), ("NO", "UNAVAILABLE"), r.describe())
        c.close()
        with smtplib.LMTP("127.0.0.1", src.lmtp_port, timeout=30) as l:
            l.ehlo("mta.test")
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                l.sendmail("x@example.com", [USER + "@example.com"],
                           "Subject: late\r\n\r\nlate\r\n")
            self.assertEqual(cm.exception.smtp_code, 451)
        # mbsync re-pointed at the target: nothing downloaded
        before = self.local_files()
        self.write_mbsync(tgt.port)
        rc, out = self.run_mbsync()     # picks up what came after its last run
        self.assertEqual(rc, 0, out)
        settled = self.local_files()
        rc, out = self.run_mbsync()
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.local_files(), settled, out)
        m = re.search(r"far: \+(\d+)", out) or re.search(r"Near.*?\+(\d+)", out)
        # no re-download: what the target adds over the freeze is at most the
        # deliveries and nothing of the thousands already held
        self.assertLess(settled - before, len(delivered) + 20,
                        "mbsync downloaded the mailbox again (%d -> %d)" % (before, settled))
        del m
        # the old copy stays until --cleanup
        self.assertTrue(os.path.isdir(os.path.join(src.mail_root, USER)))
        p = src.admin("user", "move", USER, "--cleanup")
        self.assertIn("removed the old copy", p.stdout.decode())
        self.assertFalse(os.path.exists(os.path.join(src.mail_root, USER)))

    def test_wrong_secret(self):
        src, tgt = self.make_backends(populate=False)
        src.import_mbox(USER, "INBOX", gen_mbox.generate(5, 3))
        rc, out = self.move(secret="not-the-secret", check=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("wrong secret", out)
        self.assertFalse(os.path.exists(os.path.join(src.mail_root, USER, "frozen")))
        self.assertFalse(os.path.exists(os.path.join(tgt.mail_root, USER + ".moving")))
        self.assertEqual(self.route(), ("127.0.0.1", src.port))
        c = src.login(USER, PASSWORD)
        self.assertEqual(c.append("INBOX", b"Subject: still here\r\n\r\nx\r\n").status, "OK")
        c.logout()

    def test_target_dies_midway(self):
        src, tgt = self.make_backends(populate=False)
        # enough to take a while: ~60 MB
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2000
        src.import_mbox(USER, "INBOX", [big] * 30)
        src.import_mbox(USER, "Work", gen_mbox.generate(200, 9))
        work_dir = None
        with open(os.path.join(src.mail_root, USER, "mailboxes")) as f:
            work_dir = re.search(r"(?m)^M (\d+) \d+ \d+ Work$", f.read()).group(1)
        src_work = os.path.join(src.mail_root, USER, "m", work_dir)
        old_log = [n for n in os.listdir(src_work) if n.startswith("log.")][0]
        # --quiet 0: rounds go on (empty) until the target is gone
        p = self.move("--quiet", "0", "--rounds", "1000", popen=True)
        staged = os.path.join(tgt.mail_root, USER + ".moving")
        staged_log = os.path.join(staged, "m", work_dir, old_log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                os.path.exists(staged_log) and
                os.path.getsize(staged_log) == os.path.getsize(os.path.join(src_work, old_log))):
            time.sleep(0.01)
        tgt.kill()
        out = p.communicate(timeout=120)[0].decode(errors="replace")
        self.assertEqual(p.returncode, 1, out)
        self.assertIn("served here", out)
        self.assertFalse(os.path.exists(os.path.join(src.mail_root, USER, "frozen")), out)
        self.assertEqual(self.route(), ("127.0.0.1", src.port))
        c = src.login(USER, PASSWORD)
        self.assertEqual(c.append("INBOX", b"Subject: after\r\n\r\nx\r\n").status, "OK")
        c.logout()
        # meanwhile the source compacts Work: a new generation of its log,
        # which the run again must send whole (and drop the old one there)
        c = src.login(USER, PASSWORD, select="Work")
        c.ok("STORE 1:50 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.logout()
        self.assertTrue(os.path.exists(staged_log), "the old generation was not shipped")
        before = sorted(n for n in os.listdir(os.path.join(src.mail_root, USER, "m", work_dir))
                        if n.startswith("log."))
        src.admin("compact", USER, "Work")
        after = sorted(n for n in os.listdir(os.path.join(src.mail_root, USER, "m", work_dir))
                       if n.startswith("log."))
        self.assertNotEqual(before, after)
        # a run again resumes with what the target holds
        tgt.start()
        rc, out = self.move()
        self.assertIn("resuming", out)
        self.assertEqual(self.route(), ("127.0.0.1", tgt.port))
        st = self.state(tgt, ["INBOX", "Work"])
        self.assertEqual(st["INBOX"][0]["MESSAGES"], 31)
        self.assertLessEqual(st["Work"][0]["MESSAGES"], 150)
        self.assertEqual(sorted(n for n in os.listdir(os.path.join(tgt.mail_root, USER, "m",
                                                                   work_dir))
                                if n.startswith("log.")), after)
        self.assertEqual(self.frozen_source_state(["INBOX", "Work"]),
                         self.state(tgt, ["INBOX", "Work"]))

    def test_interrupted_after_freeze_thaws(self):
        """SIGINT while frozen: the user is thawed and served here."""
        src, tgt = self.make_backends(populate=False)
        big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 2000
        src.import_mbox(USER, "INBOX", [big] * 30)
        # one round, then the freeze and the final round: stop it there
        p = self.move("--rounds", "1", "--quiet", "0", popen=True)
        seen = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and b"froze" not in seen:
            ch = p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(1)
            if not ch:
                break
            seen += ch
        p.send_signal(signal.SIGINT)
        out = (seen + p.communicate(timeout=120)[0]).decode(errors="replace")
        if p.returncode == 0:
            self.skipTest("the move finished before the signal")
        self.assertIn("thawed", out)
        self.assertFalse(os.path.exists(os.path.join(src.mail_root, USER, "frozen")), out)
        self.assertEqual(self.route(), ("127.0.0.1", src.port))
        c = src.login(USER, PASSWORD)
        self.assertEqual(c.append("INBOX", b"Subject: after\r\n\r\nx\r\n").status, "OK")
        c.logout()

    def test_freeze_seen_by_every_process(self):
        """processes = 2: the control socket's freeze stops the writes of
        both servers (IMAP NO [UNAVAILABLE], LMTP 451) and thaw lets them
        in again; reading goes on meanwhile."""
        src, _tgt = self.make_backends(populate=False, src_options={"processes": "2"})
        src.import_mbox(USER, "INBOX", gen_mbox.generate(3, 5))
        conns = [src.login(USER, PASSWORD, select="INBOX") for _ in range(8)]
        p = src.admin("ctl", "freeze", USER, "moving", "127.0.0.1:1")
        out = p.stdout.decode()
        self.assertEqual(out.count("frozen"), 2, out)
        self.assertTrue(os.path.exists(os.path.join(src.mail_root, USER, "frozen")))
        for c in conns:
            r = c.cmd("STORE 1 +FLAGS (\\Flagged)")
            self.assertEqual((r.status, r.code_name()), ("NO", "UNAVAILABLE"), r.describe())
            r = c.cmd("FETCH 1:* (FLAGS)")
            self.assertEqual(r.status, "OK", r.describe())
            r = c.append("INBOX", b"Subject: frozen\r\n\r\nx\r\n")
            self.assertEqual((r.status, r.code_name()), ("NO", "UNAVAILABLE"), r.describe())
        for _ in range(4):
            with smtplib.LMTP("127.0.0.1", src.lmtp_port, timeout=30) as l:
                l.ehlo("mta.test")
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    l.sendmail("x@example.com", [USER + "@example.com"],
                               "Subject: frozen\r\n\r\nx\r\n")
                self.assertEqual(cm.exception.smtp_code, 451)
        p = src.admin("ctl", "thaw", USER)
        self.assertEqual(p.stdout.decode().count("thawed"), 2, p.stdout)
        for c in conns:
            self.assertEqual(c.cmd("STORE 1 +FLAGS (\\Flagged)").status, "OK")
            c.logout()
        self.assertEqual(src.admin("ctl", "freeze", USER, "gone", "x:1", check=False).returncode,
                         1)

    def test_target_protocol_guards(self):
        """The target refuses what it must: no secret, a path outside the
        user's directory, an append not at the end, a user that exists, a
        commit whose numbers do not match (nothing renamed), and an
        address outside trusted_networks."""
        src, tgt = self.make_backends(populate=False)

        def conn():
            sk = socket.create_connection(("127.0.0.1", self.move_port), timeout=10)
            return sk, sk.makefile("rb")

        def ask(sk, f, line, data=b""):
            sk.sendall(line.encode() + b"\n" + data)
            return f.readline().decode().rstrip("\n")

        sk, f = conn()
        self.assertTrue(ask(sk, f, "USER x").startswith("ERR"))
        sk.close()
        sk, f = conn()
        self.assertEqual(ask(sk, f, "HELLO 1 " + SECRET), "OK 127.0.0.1 %d" % tgt.port)
        self.assertEqual(ask(sk, f, "USER newbie"), "OK new")
        staged = os.path.join(tgt.mail_root, "newbie.moving")
        for bad in ("../x", "m/../../x", "/etc/x", ".hidden", "a/b/c/d", "m/5/log.1.part"):
            self.assertTrue(ask(sk, f, "PUT %s 3" % bad, b"abc").startswith("ERR"), bad)
        self.assertFalse(os.path.exists(os.path.join(tgt.mail_root, "x")))
        self.assertEqual(ask(sk, f, "PUT m/5/log.1 3", b"abc"), "OK")
        self.assertTrue(ask(sk, f, "WRITE m/5/log.1 1 2", b"zz").startswith("ERR"))
        self.assertEqual(ask(sk, f, "WRITE m/5/log.1 3 2", b"de"), "OK")
        with open(os.path.join(staged, "m", "5", "log.1"), "rb") as fh:
            self.assertEqual(fh.read(), b"abcde")
        self.assertRegex(ask(sk, f, "LIST"), r"^F 5 [0-9a-f]{8} m/5/log.1$")
        self.assertEqual(f.readline().decode().strip(), "OK")
        # a commit whose files do not open as a store: refused, nothing renamed
        r = ask(sk, f, "COMMIT 1 1", b"5 m/5/log.1\nM 1 1 1 0 INBOX\n")
        self.assertTrue(r.startswith("ERR"), r)
        self.assertFalse(os.path.exists(os.path.join(tgt.mail_root, "newbie")))
        self.assertTrue(os.path.isdir(staged))
        sk.close()
        # a user the target has already
        os.makedirs(os.path.join(tgt.mail_root, "there"))
        sk, f = conn()
        ask(sk, f, "HELLO 1 " + SECRET)
        self.assertIn("exists", ask(sk, f, "USER there"))
        sk.close()
        # from outside trusted_networks
        tgt.stop()
        tgt.options["trusted_networks"] = "10.0.0.0/8"
        tgt.start()
        sk, f = conn()
        self.assertIn("not allowed", f.readline().decode())
        sk.close()


rs.parametrize(globals(), UserMove)

if __name__ == "__main__":
    rs.main()
