#!/usr/bin/env python3
"""A real MTA end to end: a private Postfix (tests/integration/
postfix_server.py: its own config and queue under a temp dir, SMTP on a
loopback port) hands the mail of example.org to ringmaild's LMTP server
through virtual_transport, over the Unix socket (lmtp:unix:PATH) and over
TCP (lmtp:inet:127.0.0.1:PORT).  Mail is sent with smtplib to Postfix's
SMTP port; the tests check what each IMAP client sees, what an IDLE session
saw, and what Postfix logged for each recipient: status=sent through the
lmtp relay, status=bounced for an unknown user (ringmaild's 550 5.1.1 at
RCPT, then Postfix's bounce back to the sender), status=deferred while
ringmaild is down and one delivery after it is back and the queue is
flushed; also user+folder@, 8BITMIME and SMTPUTF8, a 3 MB message, a burst
over Postfix's parallel lmtp clients, SIGKILL of ringmaild in the middle of
one, and users listed in virtual_mailbox_maps.  Over quota runs once
ringmaild has QUOTA (the quota_messages key).  The README section
"Delivering mail: Postfix and LMTP" shows the same configuration lines."""

import os
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
import postfix_server as ps  # noqa: E402

DOMAIN = "example.org"


def addr(user):
    return "%s@%s" % (user, DOMAIN)


def message(n, sender="carol@example.org", to="undisclosed-recipients:;", extra=b"",
            body=None):
    return (b"From: Carol <%s>\r\nTo: %s\r\nSubject: delivery %d\r\n"
            b"Message-ID: <pf%d.%d@example.org>\r\n%s\r\n%s"
            % (sender.encode(), to.encode(), n, n, os.getpid(), extra,
               body if body is not None else b"Hello %d.\r\n" % n))


def ringmaild_knows(key):
    """True if ringmaild has configuration key `key` (ringmail-admin config
    lists every key)."""
    if not rs.ADMIN:
        return False
    p = subprocess.run([rs.ADMIN, "-o", "mail_root=/nonexistent", "config"],
                       capture_output=True, timeout=30)
    return re.search(rb"(?m)^\s*%s\b" % key.encode(), p.stdout) is not None


class PostfixCase(rs.ServerTestCase):
    """ringmaild with an LMTP Unix socket (and TCP port with transport
    "inet"), and a private Postfix whose virtual_transport points at it."""
    transport = "unix"
    users_per_class = 20
    # The socket's directory is root:postfix 0750, so only Postfix (and
    # root) can reach the socket whatever its mode; Postfix's lmtp client
    # runs as the postfix user, which does not own the socket.
    server_options = {"lmtp_socket_mode": "0666", "fsync": "batch"}

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        why = ps.available()
        if why:
            raise AssertionError("cannot run a private Postfix: " + why)
        cls.sockdir = ps.lmtp_socket_dir()
        cls.sock = os.path.join(cls.sockdir, "lmtp")
        listen = cls.sock
        if cls.transport == "unix":
            cls.relay = r"relay=[^ ]*\[%s\]" % re.escape(cls.sock)
            virtual_transport = "lmtp:unix:" + cls.sock
        else:
            cls.lmtp_port = rs.free_port()
            listen += ",127.0.0.1:%d" % cls.lmtp_port
            cls.relay = r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d" % cls.lmtp_port
            virtual_transport = "lmtp:inet:127.0.0.1:%d" % cls.lmtp_port
        cls.server_options = dict(cls.server_options, listen_lmtp=listen)
        try:
            super().setUpClass()
        except BaseException:
            shutil.rmtree(cls.sockdir, ignore_errors=True)
            raise
        cls.pf = ps.Postfix(DOMAIN, virtual_transport, name="postfix." + cls.backend)
        try:
            cls.pf.start()
        except BaseException:
            cls.pf.cleanup()
            super().tearDownClass()
            shutil.rmtree(cls.sockdir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.pf.cleanup()
        finally:
            try:
                super().tearDownClass()
            finally:
                shutil.rmtree(cls.sockdir, ignore_errors=True)

    @classmethod
    def prepare_server(cls, server):
        server.add_users({"carol": "carol-secret", "Bob": "bob-secret"})
        # dora: Dovecot's quota extra field (one message), for
        # test_over_quota_bounces
        with open(server.passwd, "a") as f:
            f.write("dora:{PLAIN}dora-secret::::::userdb_quota_rule=*:messages=1\n")

    def setUp(self):
        super().setUp()
        self.pf_offset = self.pf.log_size()

    def tearDown(self):
        if self._failures_so_far() != self._fail_count:
            sys.stderr.write("\n--- %s: Postfix's maillog during the test ---\n%s\n" % (
                self.id(), self.pf.log_text().encode()[self.pf_offset:]
                .decode("utf-8", "replace")[-8000:]))
        super().tearDown()

    # helpers

    def other(self):
        """Another fresh user: (name, password)."""
        cls = type(self)
        n = cls.next_user
        cls.next_user += 1
        self.assertLessEqual(cls.next_user, cls.users_per_class, "raise users_per_class")
        return "user%d" % n, "pw%d-secret" % n

    def mailbox(self, user, password, mailbox="INBOX"):
        """The mailbox's messages in UID order, as an IMAP client sees them."""
        c = self.server.login(user, password)
        try:
            got = rs.fetch_all(c, mailbox)
        finally:
            c.logout()
        return [got[uid][1] for uid in sorted(got)]

    def status(self, qid, rcpt, status, count=1):
        """Wait for Postfix's log line of one recipient's status; returns
        the lines (count of them)."""
        return self.pf.wait_log(r"postfix/\w+\[\d+\]: %s: to=<%s>, .*status=%s " % (
            qid, re.escape(rcpt), status), since=self.pf_offset, count=count)

    def removed(self, qid):
        """Wait until Postfix is done with the message (every recipient
        delivered or bounced)."""
        self.pf.wait_log(r"postfix/qmgr\[\d+\]: %s: removed" % qid, since=self.pf_offset)

    def assert_sent(self, qid, rcpt):
        """Postfix delivered qid to rcpt exactly once, through LMTP to
        ringmaild, and bounced nothing for it."""
        lines = self.pf.log_lines(r": %s: to=<%s>, " % (qid, re.escape(rcpt)), self.pf_offset)
        sent = [ln for ln in lines if "status=sent" in ln]
        self.assertEqual(len(sent), 1, lines)
        self.assertEqual([ln for ln in lines if "status=bounced" in ln], [])
        ln = sent[0]
        self.assertRegex(ln, r"postfix/lmtp\[\d+\]: ")
        self.assertRegex(ln, self.relay)
        self.assertRegex(ln, r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 <%s> "
                         % re.escape(rcpt))

    def delivered_copy(self, raw, sent, rcpt, sender="carol@example.org"):
        """raw is `sent` as ringmaild stored it for rcpt: its trace fields,
        Postfix's Received line, then the message unchanged."""
        self.assertTrue(raw.startswith(b"Return-Path: <%s>\r\nDelivered-To: %s\r\n"
                                       % (sender.encode(), rcpt.encode())), raw[:300])
        self.assertIn(b"\r\nReceived: from mx.ringmail.test (", raw)
        self.assertRegex(raw, rb"\r\nReceived: from client\.ringmail\.test \(unknown "
                         rb"\[127\.0\.0\.1\]\)\r\n\tby mx\.ringmail\.test \(Postfix\) "
                         rb"with (ESMTP|UTF8SMTP) id ")
        head = raw.split(b"\r\n\r\n", 1)[0]
        # Postfix adds a Date: field when the message has none; the rest
        # is the sender's message byte for byte
        self.assertTrue(raw.endswith(sent.split(b"\r\n\r\n", 1)[1]), raw[-300:])
        for field in sent.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            self.assertIn(b"\r\n" + field + b"\r\n", head + b"\r\n")

    # tests

    def test_several_recipients_one_unknown(self):
        """One message to three users and an unknown one: Postfix takes all
        four at SMTP (virtual_mailbox_maps is empty, so ringmaild decides),
        delivers three over LMTP (status=sent), and bounces the fourth on
        ringmaild's 550 5.1.1 with a notice to the sender, which arrives in
        the sender's INBOX the same way."""
        u2, pw2 = self.other()
        rcpts = [addr(self.user), addr(u2), "Bob@example.org", "nobody@example.org"]
        sent = message(1, to=", ".join(rcpts[:3]))
        refused, qid = self.pf.submit("carol@example.org", rcpts, sent)
        self.assertEqual(refused, {})
        self.pf.wait_log(r": %s: from=<carol@example\.org>, size=\d+, nrcpt=4 " % qid,
                         since=self.pf_offset)
        self.removed(qid)
        for r in rcpts[:3]:
            self.assert_sent(qid, r)
        bounced = self.status(qid, "nobody@example.org", "bounced")[0]
        self.assertRegex(bounced, self.relay)
        self.assertIn("dsn=5.1.1", bounced)
        self.assertIn("said: 550 5.1.1 <nobody@example.org>", bounced)
        self.assertIn("(in reply to RCPT TO command)", bounced)
        for user, pw, rcpt in ((self.user, self.password, rcpts[0]), (u2, pw2, rcpts[1]),
                               ("Bob", "bob-secret", rcpts[2])):
            got = self.mailbox(user, pw)
            self.assertEqual(len(got), 1, user)
            self.delivered_copy(got[0], sent, rcpt)
        # the non-delivery notice: from <>, to the sender, through LMTP
        bq = self.pf.wait_log(r": %s: sender non-delivery notification: (\w+)" % qid,
                              since=self.pf_offset)[0].rsplit(" ", 1)[1]
        self.status(bq, "carol@example.org", "sent")
        self.removed(bq)
        self.assert_sent(bq, "carol@example.org")
        notices = [m for m in self.mailbox("carol", "carol-secret")
                   if b"X-Postfix-Queue-ID: %s\r\n" % qid.encode() in m]
        self.assertEqual(len(notices), 1)
        n = notices[0]
        self.assertTrue(n.startswith(b"Return-Path: <>\r\nDelivered-To: carol@example.org\r\n"),
                        n[:200])
        self.assertIn(b"Final-Recipient: rfc822; nobody@example.org\r\n", n)
        self.assertIn(b"Status: 5.1.1\r\n", n)
        self.assertIn(b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>", n)
        self.assertNotIn(b"Final-Recipient: rfc822; %s" % rcpts[0].encode(), n)

    def test_listed_users_unknown_refused_in_smtp(self):
        """The README's advice for a public MX: with the users listed in
        virtual_mailbox_maps, Postfix refuses an unknown one during the SMTP
        session (550 5.1.1, so no bounce to a forged sender) and still
        takes user+folder@ and other case spellings of a listed user."""
        u, pw = self.other()
        u2, pw2 = self.other()
        users = os.path.join(self.pf.tmp, "virtual-users")
        with open(users, "w") as f:
            f.write("%s OK\n%s OK\n" % (addr(u), addr(u2)))
        os.chmod(users, 0o644)
        pf = ps.Postfix(DOMAIN, self.pf.transport, name="postfix-listed." + self.backend,
                        main_extra={"virtual_mailbox_maps": "texthash:" + users})
        self.addCleanup(pf.cleanup)
        pf.start()
        c = self.server.login(u, pw)
        c.ok("CREATE Lists")
        c.logout()
        sent = message(9)
        refused, qid = pf.submit("carol@example.org",
                                 [addr(u + "+Lists"), "nobody@example.org",
                                  "%s@Example.ORG" % u2.upper()],
                                 sent)
        self.assertEqual(list(refused), ["nobody@example.org"])
        code, text = refused["nobody@example.org"]
        self.assertEqual(code, 550)
        self.assertTrue(text.startswith("5.1.1 <nobody@example.org>"), text)
        pf.wait_log(r"postfix/qmgr\[\d+\]: %s: removed" % qid)
        self.assertEqual(len(pf.log_lines(r": %s: to=<.*status=sent" % qid)), 2,
                         pf.log_text()[-3000:])
        self.assertEqual(pf.log_lines(r"status=bounced|non-delivery"), [])
        self.assertEqual(len(self.mailbox(u, pw, "Lists")), 1)
        self.assertEqual(len(self.mailbox(u2, pw2)), 1)

    def test_user_plus_folder(self):
        """user+folder@ goes into that folder when it exists, else INBOX
        (recipient_delimiter = + on both sides); Postfix hands ringmaild the
        address as it was written."""
        u, pw = self.other()
        c = self.server.login(u, pw)
        c.ok("CREATE Lists")
        c.logout()
        sent = message(2)
        refused, qid = self.pf.submit("carol@example.org",
                                      [addr(u + "+Lists"), addr(u + "+nosuch")], sent)
        self.assertEqual(refused, {})
        self.removed(qid)
        self.assert_sent(qid, addr(u + "+Lists"))
        self.assert_sent(qid, addr(u + "+nosuch"))
        lists = self.mailbox(u, pw, "Lists")
        inbox = self.mailbox(u, pw)
        self.assertEqual(len(lists), 1)
        self.assertEqual(len(inbox), 1)
        self.delivered_copy(lists[0], sent, addr(u + "+Lists"))
        self.delivered_copy(inbox[0], sent, addr(u + "+nosuch"))
        self.assertRegex(self.pf.log_lines(r": %s: to=<%s>" % (qid, re.escape(addr(u + "+Lists"))),
                                           self.pf_offset)[0],
                         r"Saved as UID 1 in Lists\)")

    def test_8bit_and_smtputf8(self):
        """8-bit text (BODY=8BITMIME) and a UTF-8 sender address and header
        (SMTPUTF8, RFC 6531) pass through Postfix into the store byte for
        byte; ringmaild writes "with UTF8LMTP" (RFC 3848) in its Received
        line, which it does only when Postfix's MAIL FROM said SMTPUTF8."""
        body8 = "Grüße aus Köln, ½ € — ünïcödé.\r\n".encode()
        sent8 = message(3, body=body8)
        refused, q8 = self.pf.submit("carol@example.org", [addr(self.user)], sent8,
                                     mail_options=["BODY=8BITMIME"])
        self.assertEqual(refused, {})
        sender = "jörg@example.org"
        sentu = message(4, sender=sender,
                        extra="Subject-Note: Grüße, ünïcödé\r\n".encode(), body=body8)
        refused, qu = self.pf.submit(sender, [addr(self.user)], sentu,
                                     mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        self.assertEqual(refused, {})
        self.removed(q8)
        self.removed(qu)
        self.assert_sent(q8, addr(self.user))
        self.assert_sent(qu, addr(self.user))
        got = self.mailbox(self.user, self.password)
        self.assertEqual(len(got), 2)
        by_id = {rs.header_value(m, "Message-ID"): m for m in got}
        m8 = by_id["<pf3.%d@example.org>" % os.getpid()]
        mu = by_id["<pf4.%d@example.org>" % os.getpid()]
        self.delivered_copy(m8, sent8, addr(self.user))
        self.assertRegex(m8, rb"\(Ringmail\) with LMTP id ")
        self.delivered_copy(mu, sentu, addr(self.user), sender=sender)
        self.assertRegex(mu, rb"\(Ringmail\) with UTF8LMTP id ")
        self.assertRegex(mu, rb"by mx\.ringmail\.test \(Postfix\) with UTF8SMTP")

    def test_large_message_and_dots(self):
        """A 3 MB message for two users, with lines that start with dots
        (stuffed by smtplib, unstuffed and stuffed again by Postfix, unstuffed
        by ringmaild) and a lone "." line: stored byte for byte."""
        u2, pw2 = self.other()
        lines = [b".", b"..", b". leading dot", b"x" * 998]
        lines += [b"%07d %s" % (i, b"abcdefghij" * 7) for i in range(40000)]
        body = b"\r\n".join(lines) + b"\r\n.\r\n"
        sent = message(10, body=body)
        self.assertGreater(len(sent), 3 * 10 ** 6)
        refused, qid = self.pf.submit("carol@example.org", [addr(self.user), addr(u2)], sent)
        self.assertEqual(refused, {})
        self.removed(qid)
        self.assert_sent(qid, addr(self.user))
        self.assert_sent(qid, addr(u2))
        for user, pw in ((self.user, self.password), (u2, pw2)):
            got = self.mailbox(user, pw)
            self.assertEqual(len(got), 1)
            self.assertTrue(got[0].endswith(b"\r\n\r\n" + body), got[0][-200:])

    def test_burst_of_deliveries(self):
        """60 messages for the same two users in a row: Postfix delivers
        them over several LMTP connections at once (4-6 lmtp processes in
        its log here); every copy arrives once, UIDs 1..60 with none
        missing, and an IDLE session of one of them counts up to
        * 60 EXISTS."""
        u2, pw2 = self.other()
        imap = self.server.login(self.user, self.password)
        self.conns.append(imap)
        imap.ok("SELECT INBOX")
        imap.send(b"i1 IDLE\r\n")
        self.assertTrue(imap.read().continuation)
        n = 60
        s = self.pf.smtp()
        qids = []
        try:
            for i in range(n):
                s.mail("carol@example.org")
                for r in (addr(self.user), addr(u2)):
                    self.assertEqual(s.rcpt(r)[0], 250)
                code, resp = s.data(message(100 + i))
                self.assertEqual(code, 250, resp)
                qids.append(re.search(rb"queued as (\w+)", resp).group(1).decode())
            s.quit()
        finally:
            s.close()
        exists = 0
        while exists < n:
            r = imap.read(timeout=30)
            m = re.fullmatch(r"\* (\d+) EXISTS", r.line)
            if m:
                self.assertGreater(int(m.group(1)), exists)
                exists = int(m.group(1))
        self.assertEqual(exists, n)
        imap.send(b"DONE\r\n")
        imap.read_until_tag("i1")
        for q in qids:
            self.removed(q)
            self.assert_sent(q, addr(self.user))
            self.assert_sent(q, addr(u2))
        for user, pw in ((self.user, self.password), (u2, pw2)):
            c = self.server.login(user, pw)
            got = rs.fetch_all(c, "INBOX")
            c.logout()
            self.assertEqual(sorted(got), list(range(1, n + 1)))
            ids = sorted(rs.header_value(b, "Message-ID") for _, b in got.values())
            self.assertEqual(ids, sorted("<pf%d.%d@example.org>" % (100 + i, os.getpid())
                                         for i in range(n)))

    def test_kill_during_a_burst(self):
        """SIGKILL of ringmaild while Postfix delivers a burst of
        two-recipient messages, then a restart and `postqueue -f`: a
        recipient Postfix logged as sent before the kill has its copy, once;
        every other copy arrives once the queue is flushed, and twice only
        where Postfix logged that the connection broke after the data
        ("message may be sent more than once": the crash between
        ringmaild's write and Postfix reading the 250, which the README
        describes); Postfix logs one status=sent per recipient."""
        u2, pw2 = self.other()
        rcpts = (addr(self.user), addr(u2))
        n = 40
        filler = b"".join(b"%05d %s\r\n" % (i, b"k" * 90) for i in range(1000))
        s = self.pf.smtp()
        qids = []
        try:
            for i in range(n):
                s.mail("carol@example.org")
                for r in rcpts:
                    self.assertEqual(s.rcpt(r)[0], 250)
                code, resp = s.data(message(200 + i, body=filler))
                self.assertEqual(code, 250, resp)
                qids.append(re.search(rb"queued as (\w+)", resp).group(1).decode())
                if i == n // 4:
                    # kill once deliveries are under way
                    self.pf.wait_log(r"postfix/lmtp\[\d+\]: \w+: to=.*status=sent",
                                     since=self.pf_offset)
                    self.server.kill()
            s.quit()
        finally:
            s.close()
        before = self.pf.log_text().encode()[self.pf_offset:].decode("utf-8", "replace")
        sent_before = set(re.findall(r"postfix/lmtp\[\d+\]: (\w+): to=<([^>]+)>, .*status=sent",
                                     before))
        self.server.start()
        self.pf.flush()
        for q in qids:
            self.removed(q)
            for r in rcpts:
                self.assert_sent(q, r)
        twice = []
        for user, pw, r in ((self.user, self.password, rcpts[0]), (u2, pw2, rcpts[1])):
            c = self.server.login(user, pw)
            got = rs.fetch_all(c, "INBOX")
            c.logout()
            ids = [rs.header_value(b, "Message-ID") for _, b in got.values()]
            for i, q in enumerate(qids):
                copies = ids.count("<pf%d.%d@example.org>" % (200 + i, os.getpid()))
                if (q, r) in sent_before:
                    self.assertEqual(copies, 1, "%s for %s: sent before the kill" % (q, r))
                else:
                    self.assertIn(copies, (1, 2), "%s for %s" % (q, r))
                if copies == 2:
                    # Postfix knows this case: the connection broke after
                    # the data, before it read every reply
                    self.assertTrue(self.pf.log_lines(
                        r": %s: to=<%s>, .*status=deferred \(lost connection with .* while "
                        r"sending end of data -- message may be sent more than once\)"
                        % (q, re.escape(r)), self.pf_offset), "%s for %s: two copies" % (q, r))
                    twice.append((q, r))
        self.assertTrue(sent_before)
        if rs.VERBOSE:
            sys.stderr.write("sent before the kill: %d of %d; delivered twice: %d\n"
                             % (len(sent_before), 2 * n, len(twice)))

    def test_idle_session_sees_the_delivery(self):
        imap = self.server.login(self.user, self.password)
        self.conns.append(imap)
        imap.ok("SELECT INBOX")
        imap.send(b"i1 IDLE\r\n")
        self.assertTrue(imap.read().continuation)
        t0 = time.monotonic()
        refused, qid = self.pf.submit("carol@example.org", [addr(self.user)], message(5))
        self.assertEqual(refused, {})
        r = imap.read(timeout=15)
        waited = time.monotonic() - t0
        self.assertEqual(r.line, "* 1 EXISTS")
        imap.send(b"DONE\r\n")
        imap.read_until_tag("i1")
        self.status(qid, addr(self.user), "sent")
        self.assert_sent(qid, addr(self.user))
        if rs.VERBOSE:
            sys.stderr.write("SMTP submit to EXISTS in IDLE: %.1f ms\n" % (waited * 1000))
        r = imap.cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DELIVERED-TO)])")
        self.assertEqual(r.status, "OK")
        self.assertIn(b"Delivered-To: %s" % addr(self.user).encode(),
                      b"".join(u.raw for u in r.untagged))
        imap.logout()

    def test_deferred_then_flushed_once(self):
        """ringmaild down: Postfix cannot connect, logs status=deferred and
        keeps the message queued; with ringmaild back, `postqueue -f`
        delivers it, exactly once."""
        u2, pw2 = self.other()
        self.server.stop()
        try:
            refused, qid = self.pf.submit("carol@example.org", [addr(self.user), addr(u2)],
                                          message(6))
            self.assertEqual(refused, {})
            for r in (addr(self.user), addr(u2)):
                ln = self.status(qid, r, "deferred")[0]
                self.assertRegex(ln, r"postfix/lmtp\[\d+\]: ")
                self.assertIn("dsn=4.4.1", ln)     # cannot connect
            q = [m for m in self.pf.queue() if m["queue_id"] == qid]
            self.assertEqual(len(q), 1, self.pf.queue())
            self.assertEqual(q[0]["queue_name"], "deferred")
            self.assertEqual(sorted(r["address"] for r in q[0]["recipients"]),
                             sorted([addr(self.user), addr(u2)]))
        finally:
            self.server.start()
        self.pf.flush()
        self.removed(qid)
        self.assert_sent(qid, addr(self.user))
        self.assert_sent(qid, addr(u2))
        self.assertEqual([m["queue_id"] for m in self.pf.queue()], [])
        for user, pw in ((self.user, self.password), (u2, pw2)):
            got = self.mailbox(user, pw)
            self.assertEqual(len(got), 1, user)
            self.assertEqual(rs.header_value(got[0], "Message-ID"),
                             "<pf6.%d@example.org>" % os.getpid())

    @unittest.skipUnless(ringmaild_knows("quota_messages"),
                         "QUOTA (RFC 9208) is not in ringmaild yet: no quota_messages key")
    def test_over_quota_bounces(self):
        """A user at its message quota: ringmaild answers 552 5.2.2 (at RCPT
        or after the data) and Postfix bounces that recipient only; the
        others of the message get it, and the full mailbox is unchanged."""
        u2, pw2 = self.other()
        refused, q1 = self.pf.submit("carol@example.org", ["dora@example.org"], message(7))
        self.assertEqual(refused, {})
        self.removed(q1)
        self.assert_sent(q1, "dora@example.org")
        refused, qid = self.pf.submit("carol@example.org", ["dora@example.org", addr(u2)],
                                      message(8))
        self.assertEqual(refused, {})
        self.removed(qid)
        ln = self.status(qid, "dora@example.org", "bounced")[0]
        self.assertIn("dsn=5.2.2", ln)
        self.assertIn("said: 552 5.2.2 ", ln)
        self.assert_sent(qid, addr(u2))
        self.assertEqual(len(self.mailbox("dora", "dora-secret")), 1)
        self.assertEqual(len(self.mailbox(u2, pw2)), 1)


class PostfixUnix(PostfixCase):
    """virtual_transport = lmtp:unix:/path/to/ringmaild's socket"""
    transport = "unix"


class PostfixTcp(PostfixCase):
    """virtual_transport = lmtp:inet:127.0.0.1:PORT"""
    transport = "inet"


rs.parametrize(globals(), PostfixUnix, PostfixTcp)
globals().pop("PostfixCase")

if __name__ == "__main__":
    rs.main()
