#!/usr/bin/env python3
"""listen_proxy: IMAP connections that start with a PROXY protocol header
(HAProxy's proxy-protocol.txt, v1 and v2), as nginx's mail proxy sends with
`proxy_protocol on;`, accepted only from proxy_protocol_from.  The carried
client address is the one logged, counted against max_connections_per_ip
and named in failed-login lines; no greeting before the header; a missing
or broken header, or a connection from outside proxy_protocol_from, is
closed.  test_nginx_proxy.py runs the real nginx."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402


def v1(src, sport=40000):
    return b"PROXY TCP4 %s 127.0.0.1 %d 143\r\n" % (src.encode(), sport)


def v2(src, sport=40000):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 143)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


class ProxyProtocol(rs.ServerTestCase):
    users_per_class = 12

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise rs.unittest.SkipTest("abstract")
        cls.pport, cls.phold = rs.reserve_port()
        cls.server_options = {"listen_proxy": "127.0.0.1:%d" % cls.pport,
                              "proxy_protocol_from": "127.0.0.1/32",
                              "max_connections_per_ip": "2"}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.phold.close()

    def proxied(self, header, src="127.0.0.1"):
        """rs.Imap on listen_proxy after sending header (from src)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((src, 0))
        sock.settimeout(rs.IO_TIMEOUT)
        sock.connect(("127.0.0.1", self.pport))
        sock.sendall(header)
        c = rs.Imap.__new__(rs.Imap)
        c.sock, c.timeout, c.buf, c.n, c.closed, c.transcript = sock, rs.IO_TIMEOUT, b"", 0, \
            False, []
        self.conns.append(c)
        c.greeting = c.read()
        return c

    def closed_without_greeting(self, sock):
        data = b""
        try:
            while True:
                b = sock.recv(4096)
                if not b:
                    break
                data += b
        except (ConnectionResetError, socket.timeout):
            pass
        sock.close()
        return data

    def test_v1_address_is_logged(self):
        c = self.proxied(v1("192.0.2.10", 41000))
        self.assertIn(b"OK", c.greeting.raw)
        c.ok("LOGIN %s %s" % (self.user, self.password))
        c.logout()
        log = self.server.stderr_since(self.log_offset)
        self.assertRegex(log, r"connect from 192\.0\.2\.10:41000 via proxy 127\.0\.0\.1:\d+")
        self.assertIn("login (LOGIN) from 192.0.2.10:41000", log)

    def test_v2_address_is_logged(self):
        c = self.proxied(v2("192.0.2.11", 42000))
        c.ok("LOGIN %s %s" % (self.user, self.password))
        c.logout()
        self.assertIn("login (LOGIN) from 192.0.2.11:42000",
                      self.server.stderr_since(self.log_offset))

    def test_failed_login_names_the_client(self):
        c = self.proxied(v1("192.0.2.12"))
        c.expect(c.cmd("LOGIN %s wrong" % self.user), "NO")
        self.assertIn("from 192.0.2.12:", self.server.stderr_since(self.log_offset))

    def test_per_ip_limit_counts_the_carried_address(self):
        """max_connections_per_ip = 2: a third connection carrying the same
        client address is refused, another address is not (the proxy's
        own connections are from one address for all)."""
        a = self.proxied(v1("192.0.2.20"))
        b = self.proxied(v1("192.0.2.20"))
        c = self.proxied(v1("192.0.2.20"))
        self.assertIn(b"BYE", c.greeting.raw)
        d = self.proxied(v1("192.0.2.21"))
        self.assertIn(b"OK", d.greeting.raw)
        for x in (a, b, d):
            x.ok("NOOP")
        a.logout()
        time.sleep(0.2)
        e = self.proxied(v1("192.0.2.20"))
        self.assertIn(b"OK", e.greeting.raw)

    def test_no_greeting_before_the_header(self):
        sock = socket.create_connection(("127.0.0.1", self.pport), timeout=1)
        try:
            sock.recv(100)
            self.fail("greeted before the PROXY header")
        except socket.timeout:
            pass
        sock.settimeout(rs.IO_TIMEOUT)
        sock.sendall(v1("192.0.2.30"))
        self.assertTrue(sock.recv(100).startswith(b"* OK"))
        sock.close()

    def test_bad_or_missing_header_closes(self):
        for first in (b"a1 LOGIN x y\r\n", b"PROXY TCP4 1.2.3 127.0.0.1 1 143\r\n",
                      b"PROXY TCP4 192.0.2.1 127.0.0.1 1 143\n"):
            sock = socket.create_connection(("127.0.0.1", self.pport), timeout=rs.IO_TIMEOUT)
            sock.sendall(first)
            self.assertEqual(self.closed_without_greeting(sock), b"", first)
        self.assertIn("sent no valid PROXY protocol header",
                      self.server.stderr_since(self.log_offset))

    def test_only_proxy_protocol_from(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.3", 0))
        sock.settimeout(rs.IO_TIMEOUT)
        sock.connect(("127.0.0.1", self.pport))
        sock.sendall(v1("192.0.2.40"))
        self.assertEqual(self.closed_without_greeting(sock), b"")
        self.assertIn("not in proxy_protocol_from", self.server.stderr_since(self.log_offset))

    def test_plain_listener_takes_no_header(self):
        """The ordinary listener never reads a header: a PROXY line there
        is a bad command, and the connection keeps its own address."""
        c = self.server.connect()
        r = c.cmd("PROXY TCP4 192.0.2.50 127.0.0.1 1 143")
        self.assertEqual(r.tagged.raw.split()[1], b"BAD")
        c.ok("LOGIN %s %s" % (self.user, self.password))
        log = self.server.stderr_since(self.log_offset)
        self.assertNotIn("192.0.2.50", log)


rs.parametrize(globals(), ProxyProtocol)

if __name__ == "__main__":
    rs.main()
