#!/usr/bin/env python3
"""LMTP delivery (RFC 2033 on RFC 5321, with RFC 1870 SIZE, RFC 2034
enhanced codes, RFC 3030 CHUNKING, RFC 6531 SMTPUTF8) into a running
ringmaild, spoken to by Python's smtplib.LMTP and by a raw client for the
corners: replies per recipient after the data, the order of pipelined
replies, refusals with their codes, dot-stuffing and bare LFs, BDAT,
limits, and what IMAP clients (IDLE among them) then see."""

import os
import smtplib
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402


class Lmtp:
    """A raw LMTP client: exact bytes out, replies parsed as (code, text)
    lists (a multi-line reply is one list)."""

    def __init__(self, path=None, port=None, timeout=10):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed; buffered %r" % self.buf)
            self.buf += chunk
        i = self.buf.index(b"\n")
        ln, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        assert ln.endswith(b"\r\n"), ln
        return ln[:-2].decode("utf-8", "replace")

    def reply(self):
        """One reply: [(code, text), ...] for its lines."""
        out = []
        while True:
            ln = self.line()
            out.append((int(ln[:3]), ln[4:]))
            if ln[3:4] != "-":
                return out

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def code(self, text):
        return self.cmd(text)[-1][0]

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self):
        self.sock.close()


MSG = (b"From: Sender <sender@example.org>\r\nTo: alice@example.org\r\n"
       b"Subject: delivery %d\r\nMessage-ID: <d%d@example.org>\r\n\r\nHello %d.\r\n")


def msg(i):
    return MSG % (i, i, i)


class LmtpBase(rs.ServerTestCase):
    users_per_class = 20

    @classmethod
    def setUpClass(cls):
        cls.sockdir = rs.tempfile.mkdtemp(prefix="lmtp-", dir="/tmp")
        cls.sock = os.path.join(cls.sockdir, "lmtp")
        cls.server_options = dict(cls.server_options)
        cls.server_options["listen_lmtp"] = cls.sock
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        try:
            os.unlink(cls.sock)
        except OSError:
            pass
        os.rmdir(cls.sockdir)

    @classmethod
    def prepare_server(cls, server):
        server.add_users({"Bob": "bob-secret", "carol": "carol-secret"})

    def other(self):
        """Another user nobody touched: (name, password)."""
        cls = type(self)
        n = cls.next_user
        cls.next_user += 1
        self.assertLessEqual(cls.next_user, cls.users_per_class, "raise users_per_class")
        return "user%d" % n, "pw%d-secret" % n

    def lmtp(self):
        c = Lmtp(self.sock)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0][0], 220)
        return c

    def imap(self, user, password):
        return self.server.login(user, password)

    def fetch_all(self, user, password, mailbox="INBOX"):
        """The mailbox's messages in UID order."""
        c = self.imap(user, password)
        got = rs.fetch_all(c, mailbox)
        c.close()
        return [got[uid][1] for uid in sorted(got)]

    def deliver(self, c, sender, rcpts, data):
        """A whole transaction on a raw client: the RCPT codes and the
        replies after the data (one per accepted recipient)."""
        self.assertEqual(c.code("MAIL FROM:<%s>" % sender), 250)
        codes = [c.code("RCPT TO:<%s>" % r) for r in rcpts]
        self.assertEqual(c.code("DATA"), 354)
        c.send(data + b".\r\n")
        return codes, [c.reply()[0] for _ in range(codes.count(250))]


class Delivery(LmtpBase):

    def test_lhlo_lists_the_extensions(self):
        c = self.lmtp()
        r = c.cmd("LHLO mx.example.org")
        self.assertTrue(all(code == 250 for code, _ in r))
        ext = {t.split()[0] for _, t in r[1:]}
        self.assertEqual(ext, {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8",
                               "CHUNKING", "SIZE"})
        self.assertIn("SIZE 67108864", [t for _, t in r])
        # RFC 2033 4.1: no positive reply to HELO or EHLO
        self.assertEqual(c.code("EHLO mx"), 500)
        self.assertEqual(c.code("HELO mx"), 500)
        self.assertEqual(c.code("NOOP"), 250)
        self.assertEqual(c.code("QUIT"), 221)
        self.assertTrue(c.closed())

    def test_smtplib_delivers(self):
        """Python's smtplib.LMTP reads one reply after the data, as SMTP
        does, so it is given one recipient per message; the raw client
        delivers to several."""
        u, pw = self.user, self.password
        l = smtplib.LMTP(self.sock)
        self.addCleanup(l.close)
        l.ehlo("mx.example.org")
        self.assertEqual(l.sendmail("sender@example.org", [u + "@example.org"], msg(1)), {})
        l.quit()
        u2, pw2 = self.other()
        c = self.lmtp()
        c.cmd("LHLO mx.example.org")
        codes, replies = self.deliver(c, "sender@example.org", [u2 + "@example.org"], msg(1))
        self.assertEqual([r[0] for r in replies], [250])
        for user, p in ((u, pw), (u2, pw2)):
            got = self.fetch_all(user, p)
            self.assertEqual(len(got), 1, user)
            m = got[0]
            self.assertTrue(m.endswith(msg(1)), m[-200:])
            head = m[:len(m) - len(msg(1))]
            self.assertTrue(head.startswith(b"Return-Path: <sender@example.org>\r\n"), head)
            self.assertIn(b"Delivered-To: %s@example.org\r\n" % user.encode(), head)
            self.assertIn(b"Received: from mx.example.org (unix)\r\n", head)
            self.assertIn(b"(Ringmail) with LMTP id ", head)

    def test_replies_per_recipient_after_the_data(self):
        """RFC 2033 4.2: one reply per successful RCPT after the final ".",
        in RCPT order; refused recipients get none."""
        c = self.lmtp()
        c.cmd("LHLO mx")
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>"), [(250, "2.1.0 Sender OK")])
        self.assertEqual(c.code("RCPT TO:<%s@example.org>" % self.user), 250)
        r = c.cmd("RCPT TO:<nobody@example.org>")
        self.assertEqual(r[0][0], 550)
        self.assertTrue(r[0][1].startswith("5.1.1 "), r)
        self.assertEqual(c.code("RCPT TO:<carol@example.org>"), 250)
        self.assertEqual(c.code("DATA"), 354)
        c.send(msg(2) + b".\r\n")
        r1, r2 = c.reply(), c.reply()
        self.assertEqual(r1[0][0], 250)
        self.assertIn("<%s@example.org>" % self.user, r1[0][1])
        self.assertTrue(r1[0][1].startswith("2.0.0 "))
        self.assertEqual(r2[0][0], 250)
        self.assertIn("<carol@example.org>", r2[0][1])
        # the session goes on with a new transaction
        self.assertEqual(c.code("MAIL FROM:<>"), 250)
        self.assertEqual(c.code("RSET"), 250)
        self.assertEqual(c.code("QUIT"), 221)

    def test_order_of_commands(self):
        c = self.lmtp()
        self.assertEqual(c.code("MAIL FROM:<a@b.c>"), 503)     # LHLO first
        c.cmd("LHLO mx")
        self.assertEqual(c.code("RCPT TO:<carol@x>"), 503)     # MAIL first
        self.assertEqual(c.code("DATA"), 503)
        self.assertEqual(c.code("MAIL FROM:<a@b.c>"), 250)
        self.assertEqual(c.code("MAIL FROM:<a@b.c>"), 503)     # nested
        # RFC 2033 4.2: DATA without a successful RCPT fails with 503
        self.assertEqual(c.code("RCPT TO:<nobody@x>"), 550)
        self.assertEqual(c.code("DATA"), 503)
        self.assertEqual(c.code("RSET"), 250)
        self.assertEqual(c.code("RCPT TO:<carol@x>"), 503)     # RSET ended it
        self.assertEqual(c.code("DATA extra"), 501)
        self.assertEqual(c.code("FROB"), 500)
        self.assertEqual(c.code("VRFY carol"), 252)
        self.assertEqual(c.code("STARTTLS"), 502)

    def test_pipelined_commands_answer_in_order(self):
        c = self.lmtp()
        c.send(b"LHLO mx\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<carol@x>\r\n"
               b"RCPT TO:<nobody@x>\r\nRCPT TO:<%s@x>\r\nDATA\r\n" % self.user.encode()
               + msg(3) + b".\r\nNOOP\r\nQUIT\r\n")
        codes = [c.reply()[-1][0] for _ in range(9)]
        self.assertEqual(codes, [250, 250, 250, 550, 250, 354, 250, 250, 250])
        self.assertEqual(c.reply()[0][0], 221)
        self.assertEqual(len(self.fetch_all(self.user, self.password)), 1)

    def test_dot_stuffing_and_bare_lf(self):
        """A stuffed dot is removed; only CRLF.CRLF ends the data, so a bare
        LF "." LF inside it is data (no SMTP smuggling)."""
        c = self.lmtp()
        c.cmd("LHLO mx")
        c.cmd("MAIL FROM:<s@example.org>")
        c.cmd("RCPT TO:<%s@x>" % self.user)
        self.assertEqual(c.code("DATA"), 354)
        c.send(b"Subject: dots\r\n\r\n..leading dot\r\nline\n.\nMAIL FROM:<evil@x>\r\n.\r\n")
        self.assertEqual(c.reply()[0][0], 250)
        self.assertEqual(c.code("NOOP"), 250)
        got = self.fetch_all(self.user, self.password)
        self.assertEqual(len(got), 1)
        # stored with CRLF line ends: the bare LFs became CRLF
        self.assertTrue(got[0].endswith(b"Subject: dots\r\n\r\n.leading dot\r\nline\r\n.\r\n"
                                        b"MAIL FROM:<evil@x>\r\n"), got[0][-120:])

    def test_bdat_chunks(self):
        c = self.lmtp()
        c.cmd("LHLO mx")
        body = msg(4)
        # BDAT before a transaction: 503, and its chunk is read, not taken
        # for commands
        c.send(b"BDAT 6\r\nQUIT\r\n")
        self.assertEqual(c.reply()[0][0], 503)
        self.assertEqual(c.code("MAIL FROM:<s@example.org>"), 250)
        self.assertEqual(c.code("RCPT TO:<%s@x>" % self.user), 250)
        self.assertEqual(c.code("RCPT TO:<carol@x>"), 250)
        c.send(b"BDAT %d\r\n" % 10 + body[:10])
        self.assertEqual(c.reply()[0][0], 250)
        rest = body[10:]
        c.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
        self.assertEqual([c.reply()[0][0] for _ in range(2)], [250, 250])
        got = self.fetch_all(self.user, self.password)
        self.assertTrue(got[0].endswith(body))
        # BDAT 0 LAST with nothing before it: an empty message is fine
        c.cmd("MAIL FROM:<>")
        c.cmd("RCPT TO:<carol@x>")
        self.assertEqual(c.code("BDAT 0 LAST"), 250)

    def test_recipient_delimiter_and_case(self):
        imap = self.imap("Bob", "bob-secret")
        imap.ok("CREATE Work")
        l = smtplib.LMTP(self.sock)
        self.addCleanup(l.close)
        l.ehlo("mx")
        self.assertEqual(l.sendmail("s@x", ["BOB+Work@example.org"], msg(5)), {})
        self.assertEqual(l.sendmail("s@x", ["bob+nosuch@example.org"], msg(6)), {})
        self.assertEqual(l.sendmail("s@x", ["bob@example.org"], msg(7)), {})
        l.quit()
        work = self.fetch_all("Bob", "bob-secret", "Work")
        inbox = self.fetch_all("Bob", "bob-secret")
        self.assertEqual(len(work), 1)
        self.assertTrue(work[0].endswith(msg(5)))
        self.assertEqual(len(inbox), 2)
        self.assertIn(b"Delivered-To: bob+nosuch@example.org\r\n", inbox[0])

    def test_bad_parameters_and_addresses(self):
        c = self.lmtp()
        c.cmd("LHLO mx")
        self.assertEqual(c.code("MAIL FROM:<s@x> RET=FULL"), 555)
        self.assertEqual(c.code("MAIL FROM:<s@x> BODY=BINARYMIME"), 555)
        self.assertEqual(c.code("MAIL FROM:<s@x> SIZE=abc"), 501)
        self.assertEqual(c.code("MAIL FROM:<s x@x>"), 501)
        # RFC 6531 3.4: a UTF-8 address needs SMTPUTF8
        self.assertEqual(c.code("MAIL FROM:<j\u00f6@x>"), 553)
        self.assertEqual(c.code("MAIL FROM:<j\u00f6@x> SMTPUTF8 BODY=8BITMIME"), 250)
        self.assertEqual(c.code("RCPT TO:<carol@x> NOTIFY=NEVER"), 555)
        self.assertEqual(c.code("RCPT TO:<carol@x>"), 250)
        self.assertEqual(c.code("RSET"), 250)
        self.assertEqual(c.code("MAIL FROM:<s@x>"), 250)
        self.assertEqual(c.code("RCPT TO:<j\u00f6@x>"), 553)

    def test_line_too_long_and_error_limit(self):
        c = self.lmtp()
        c.send(b"NOOP " + b"a" * 5000 + b"\r\n")
        r = c.reply()
        self.assertEqual(r[0][0], 500)
        self.assertTrue(r[0][1].startswith("5.5.2"))
        self.assertEqual(c.code("NOOP"), 250)
        for _ in range(19):
            self.assertEqual(c.code("FROB"), 500)
        self.assertEqual(c.code("FROB"), 500)
        r = c.reply()
        self.assertEqual(r[0][0], 421)
        self.assertTrue(c.closed())

    def test_idle_session_sees_the_delivery(self):
        imap = self.imap(self.user, self.password)
        imap.ok("SELECT INBOX")
        imap.send(b"i1 IDLE\r\n")
        self.assertTrue(imap.read().continuation)
        l = smtplib.LMTP(self.sock)
        self.addCleanup(l.close)
        l.ehlo("mx")
        t0 = time.monotonic()
        l.sendmail("s@x", [self.user + "@x"], msg(8))
        r = imap.read(timeout=5)
        waited = time.monotonic() - t0
        self.assertEqual(r.line, "* 1 EXISTS")
        self.assertLess(waited, 5)
        imap.send(b"DONE\r\n")
        imap.read_until_tag("i1")
        l.quit()


class Limits(LmtpBase):
    server_options = {"append_limit": "2048", "lmtp_max_recipients": "100",
                      "lmtp_timeout": "2"}

    def test_size(self):
        c = self.lmtp()
        r = c.cmd("LHLO mx")
        self.assertIn("SIZE 2048", [t for _, t in r])
        # RFC 1870: a declared size over the limit is refused at MAIL
        r = c.cmd("MAIL FROM:<s@x> SIZE=4096")
        self.assertEqual(r[0][0], 552)
        self.assertTrue(r[0][1].startswith("5.3.4"))
        self.assertEqual(c.code("MAIL FROM:<s@x> SIZE=100"), 250)
        c.cmd("RCPT TO:<carol@x>")
        c.cmd("RCPT TO:<%s@x>" % self.user)
        self.assertEqual(c.code("DATA"), 354)
        c.send(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n.\r\n")
        for _ in range(2):
            r = c.reply()
            self.assertEqual(r[0][0], 552)
            self.assertTrue(r[0][1].startswith("5.3.4"))
        self.assertEqual(self.fetch_all(self.user, self.password), [])
        # BDAT over the limit as well
        c.cmd("MAIL FROM:<s@x>")
        c.cmd("RCPT TO:<carol@x>")
        c.send(b"BDAT 3000 LAST\r\n" + b"y" * 3000)
        self.assertEqual(c.reply()[0][0], 552)
        self.assertEqual(c.code("NOOP"), 250)

    def test_recipients(self):
        c = self.lmtp()
        c.cmd("LHLO mx")
        c.cmd("MAIL FROM:<s@x>")
        for i in range(100):
            self.assertEqual(c.code("RCPT TO:<carol@x>"), 250)
        r = c.cmd("RCPT TO:<carol@x>")
        self.assertEqual(r[0][0], 452)
        self.assertTrue(r[0][1].startswith("4.5.3"))
        self.assertEqual(c.code("DATA"), 354)
        c.send(msg(9) + b".\r\n")
        codes = [c.reply()[0][0] for _ in range(100)]
        self.assertEqual(codes, [250] * 100)

    def test_commands_without_a_delivery(self):
        """A client that never delivers (NOOP, RSET, refused recipients
        over and over) is closed after max_recipients * 2 + 100 commands;
        a delivery starts the count again."""
        c = self.lmtp()
        c.cmd("LHLO mx")
        c.cmd("MAIL FROM:<s@x>")
        c.cmd("RCPT TO:<carol@x>")
        self.assertEqual(c.code("DATA"), 354)
        c.send(msg(11) + b".\r\n")
        self.assertEqual(c.reply()[0][0], 250)
        c.send(b"NOOP\r\n" * 300)
        codes = [c.reply()[0][0] for _ in range(300)]
        self.assertEqual(codes, [250] * 300)    # 300 <= 100 * 2 + 100
        c.send(b"NOOP\r\n" * 5)
        r = c.reply()
        self.assertEqual(r[0][0], 421, r)
        self.assertIn("without a delivery", r[0][1])
        self.assertTrue(c.closed())

    def test_silent_client_times_out(self):
        c = self.lmtp()
        c.cmd("LHLO mx")
        t0 = time.monotonic()
        r = c.reply()
        self.assertEqual(r[0][0], 421)
        self.assertGreater(time.monotonic() - t0, 1.0)
        self.assertTrue(c.closed())


class KeepDomain(LmtpBase):
    server_options = {"lmtp_user_domain": "keep", "recipient_delimiter": "-+"}

    @classmethod
    def prepare_server(cls, server):
        server.add_users({"dave@example.org": "dave-secret"})

    def test_domain_is_part_of_the_user(self):
        c = self.lmtp()
        c.cmd("LHLO mx")
        c.cmd("MAIL FROM:<s@x>")
        self.assertEqual(c.code("RCPT TO:<dave@example.org>"), 250)
        self.assertEqual(c.code("RCPT TO:<DAVE-list@Example.ORG>"), 250)
        self.assertEqual(c.code("RCPT TO:<dave@example.net>"), 550)
        self.assertEqual(c.code("RCPT TO:<dave>"), 501)     # RFC 5321: a domain is required
        c.cmd("DATA")
        c.send(msg(10) + b".\r\n")
        self.assertEqual([c.reply()[0][0] for _ in range(2)], [250, 250])
        self.assertEqual(len(self.fetch_all("dave@example.org", "dave-secret")), 2)


class TcpAndDurability(LmtpBase):
    """LMTP on host:port too, and fsync = batch: a copy answered 250 is on
    disk (it survives SIGKILL of the server)."""
    server_options = {"fsync": "batch"}

    @classmethod
    def setUpClass(cls):
        cls.lmtp_port = rs.free_port()
        cls.server_options = dict(cls.server_options)
        super().setUpClass()

    @classmethod
    def prepare_server(cls, server):
        LmtpBase.prepare_server.__func__(cls, server)
        server.options["listen_lmtp"] = "%s,127.0.0.1:%d" % (cls.sock, cls.lmtp_port)

    def test_tcp_then_kill(self):
        l = smtplib.LMTP("127.0.0.1", self.lmtp_port)
        self.addCleanup(l.close)
        l.ehlo("mx")
        u2, pw2 = self.other()
        c = Lmtp(port=self.lmtp_port)
        self.addCleanup(c.close)
        c.cmd("LHLO mx")
        for i in range(5):
            self.assertEqual(l.sendmail("s@x", [self.user + "@x"], msg(20 + i)), {})
            codes, replies = self.deliver(c, "s@x", [u2 + "@x", self.user + "@x"], msg(30 + i))
            self.assertEqual([r[0] for r in replies], [250, 250])
        self.server.kill()
        self.server.start()
        self.assertEqual(len(self.fetch_all(self.user, self.password)), 10)
        self.assertEqual(len(self.fetch_all(u2, pw2)), 5)


class SocketGroup(LmtpBase):
    """lmtp_socket_group: the socket belongs to that group with the mode
    given, so the MTA's user (Postfix: postfix) connects without the socket
    being open to everyone."""
    server_options = {"lmtp_socket_group": "nogroup", "lmtp_socket_mode": "0660"}

    def test_socket_group_and_mode(self):
        import grp
        import stat
        st = os.stat(self.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(st.st_gid, grp.getgrnam("nogroup").gr_gid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        c = self.lmtp()
        self.assertEqual(c.code("QUIT"), 221)

    def test_unknown_group_is_refused_at_start(self):
        import subprocess
        p = subprocess.run(self.server.command_line()[:1] + [
            "-c", self.server.conf, "-o", "listen=127.0.0.1:0", "-o", "listen_tls=",
            "-o", "passwd_file=" + self.server.passwd,
            "-o", "listen_lmtp=" + self.sock + ".2", "-o", "lmtp_socket_group=no-such-group-x"],
            capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"lmtp_socket_group: no group 'no-such-group-x'", p.stderr)


rs.parametrize(globals(), Delivery, Limits, KeepDomain, TcpAndDurability, SocketGroup)

if __name__ == "__main__":
    rs.main()
