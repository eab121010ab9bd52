"""Shared harness of the IMAP integration tests (tests/integration/test_imap_*.py,
test_client_*.py): start and stop ringmaild, write users, preload mail, and a
small raw IMAP client whose answers can be asserted exactly.

Everything that depends on how ringmaild is started lives here, so one edit
adapts every test:

    ringmaild -c CONF -o listen=127.0.0.1:PORT -o mail_root=DIR
              -o passwd_file=FILE -o io_backend=BACKEND -o fsync=never ...

Environment: RINGMAILD (the server), RINGMAIL_ADMIN (ringmail-admin),
RINGMAIL_TEST_TMP (scratch directory; else the system's temp dir),
RINGMAIL_TEST_BACKENDS (default "io_uring,epoll": each test class runs once per
backend), RINGMAIL_TEST_KEEP=1 keeps the temp dirs, RINGMAIL_TEST_VERBOSE=1
prints the server's stderr after every test.
"""

import base64
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

RINGMAILD = os.environ.get("RINGMAILD", "")
ADMIN = os.environ.get("RINGMAIL_ADMIN", "")
BACKENDS = [b for b in os.environ.get("RINGMAIL_TEST_BACKENDS", "io_uring,epoll").split(",") if b]
KEEP = os.environ.get("RINGMAIL_TEST_KEEP") == "1"
VERBOSE = os.environ.get("RINGMAIL_TEST_VERBOSE") == "1"

# Settings every test server gets (on top of listen/mail_root/passwd_file/
# io_backend).  The TLS listener is turned off: tests speak plain IMAP on
# loopback, where plaintext LOGIN/AUTHENTICATE must be allowed.
BASE_OPTIONS = {
    "listen_tls": "",
    "plaintext_auth": "loopback",
    "auth_failure_delay": "0",
    "fsync": "never",
    "workers": "2",
    "log_level": "info",
}

START_TIMEOUT = 10.0     # seconds until the port must accept connections
STOP_TIMEOUT = 10.0      # seconds from SIGTERM until the process must be gone
IO_TIMEOUT = 15.0        # default timeout of one read from the server


def scratch_base():
    base = os.environ.get("RINGMAIL_TEST_TMP") or None
    if base:
        os.makedirs(base, exist_ok=True)
    return base


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def reserve_port():
    """A free loopback port and a socket that keeps it: bound with
    SO_REUSEPORT but never listening, so ringmaild (same uid, SO_REUSEPORT)
    can still bind it while no other test's bind(0) is handed the same
    number.  A port picked and closed could be picked again by a test
    running beside this one, and two servers sharing a port through
    SO_REUSEPORT steal each other's connections (a refused connect when the
    other one stops).  Close the socket when the server is gone."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1], s


def rss_kib(pid):
    """A process's resident set (VmRSS) in KiB, for the tests that bound
    what the server keeps."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def server_children(ppid):
    """Live (not zombie) server processes whose parent is ppid: under a
    supervisor, its servers, not its control socket relay
    ("ringmaild-ctl"). Sorted pids."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if st[st.index("(") + 1:st.rindex(")")] == "ringmaild-ctl":
            continue
        if int(fields[1]) == ppid and fields[0] != "Z":
            out.append(int(d))
    return sorted(out)


def raise_nofile(want):
    """Raise RLIMIT_NOFILE of this process (and so of the servers it starts)
    to at least `want` if the hard limit allows; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new < want and os.geteuid() == 0:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
                return want
            except (ValueError, OSError):
                pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def sha512_crypt(password):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def make_cert(cert, key, cn):
    """A self-signed P-256 certificate for cn (and 127.0.0.1)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % cn,
                    "-keyout", key, "-out", cert], check=True, capture_output=True)


def write_passwd(path, users):
    """users: {name: password} or {name: (password, scheme)}; scheme PLAIN
    (default) or SHA512-CRYPT."""
    lines = []
    for name, pw in users.items():
        scheme = "PLAIN"
        if isinstance(pw, tuple):
            pw, scheme = pw
        if scheme == "SHA512-CRYPT":
            lines.append("%s:{SHA512-CRYPT}%s" % (name, sha512_crypt(pw)))
        else:
            lines.append("%s:{PLAIN}%s" % (name, pw))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def crlf(data):
    """LF or CRLF line ends -> CRLF."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def lf(data):
    return data.replace(b"\r\n", b"\n")


# ---------------------------------------------------------------------------
# The server process


class ServerError(Exception):
    pass


class Server:
    """One ringmaild with its own temp dir, users and mail_root."""

    def __init__(self, backend="auto", users=None, options=None, name="ringmaild", tls=False,
                 other_users=False):
        """other_users: its files are reached by another user too (the
        server or ringmail-admin run as nobody), so its directory is in the
        system's temp dir, mode 0755: the tests' scratch dir may sit under
        a 0700 directory (a checkout in mktemp -d) that nobody cannot
        traverse."""
        if not RINGMAILD or not os.access(RINGMAILD, os.X_OK):
            raise ServerError("RINGMAILD is not set to an executable (got %r)" % RINGMAILD)
        self.backend = backend
        self.tmp = tempfile.mkdtemp(prefix=name + "." + backend + ".",
                                    dir=None if other_users else scratch_base())
        if other_users:
            os.chmod(self.tmp, 0o755)
        self.mail_root = os.path.join(self.tmp, "mail")
        os.makedirs(self.mail_root)
        self.passwd = os.path.join(self.tmp, "passwd")
        self.conf = os.path.join(self.tmp, "ringmail.conf")
        self.log_path = os.path.join(self.tmp, "ringmaild.stderr")
        self.users = dict(users or {})
        self.options = dict(BASE_OPTIONS)
        self.options.update(options or {})
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.log = None
        write_passwd(self.passwd, self.users)
        self.tls = tls
        self.tls_port = None
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        if tls:
            make_cert(self.cert, self.key, "localhost")
            self.options.update({"tls_cert": self.cert, "tls_key": self.key})
        with open(self.conf, "w") as f:
            f.write("# written by tests/integration/ringmail_server.py\n")
            f.write("mail_root = %s\npasswd_file = %s\n" % (self.mail_root, self.passwd))

    # -- users and mail (write before the user first logs in) --

    def add_users(self, users):
        self.users.update(users)
        write_passwd(self.passwd, self.users)

    def admin(self, *args, check=True, input=None):
        if not ADMIN or not os.access(ADMIN, os.X_OK):
            raise ServerError("RINGMAIL_ADMIN is not set to an executable (got %r)" % ADMIN)
        p = subprocess.run([ADMIN, "-c", self.conf, "-o", "mail_root=" + self.mail_root]
                           + [str(a) for a in args], capture_output=True, timeout=300,
                           input=input)
        if check and p.returncode != 0:
            raise ServerError("ringmail-admin %s: exit %d\nstdout: %s\nstderr: %s" % (
                " ".join(map(str, args)), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def import_mbox(self, user, mailbox, messages):
        """messages: list of gen_mbox.Message (or raw bytes, dated now)."""
        import gen_mbox
        msgs = []
        for m in messages:
            if isinstance(m, (bytes, bytearray)):
                m = gen_mbox.Message(bytes(m), int(time.time()), frozenset(), "raw")
            msgs.append(m)
        fd, path = tempfile.mkstemp(suffix=".mbox", dir=self.tmp)
        with os.fdopen(fd, "wb") as f:
            gen_mbox.write_mbox(msgs, f)
        try:
            self.admin("import", user, mailbox, path)
        finally:
            os.unlink(path)

    # -- process --

    def command_line(self):
        cmd = [RINGMAILD, "-c", self.conf,
               "-o", "listen=%s:%d" % (self.host, self.port),
               "-o", "mail_root=" + self.mail_root,
               "-o", "passwd_file=" + self.passwd,
               "-o", "io_backend=" + self.backend]
        for k, v in self.options.items():
            cmd += ["-o", "%s=%s" % (k, v)]
        if self.tls:
            cmd += ["-o", "listen_tls=%s:%d" % (self.host, self.tls_port)]
        return cmd

    def start(self):
        last = None
        for _attempt in range(3):        # a picked port can be taken meanwhile
            self.release_ports()
            self.port, hold = reserve_port()
            self.port_holds.append(hold)
            self.tls_port = None
            if self.tls:
                self.tls_port, hold = reserve_port()
                self.port_holds.append(hold)
            if self.log:            # an earlier attempt's, or a start without a stop
                self.log.close()
            self.log = open(self.log_path, "ab")
            self.log.write(("=== start: %s\n" % " ".join(self.command_line())).encode())
            self.log.flush()
            self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log,
                                         start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection((self.host, self.port), timeout=1).close()
                    self.check_backend()
                    return self
                except OSError as e:
                    last = e
                    time.sleep(0.05)
            rc = self.proc.poll()
            if rc is None:
                self.kill()
                raise ServerError("ringmaild did not accept connections on port %d within "
                                  "%.0f s (%s)\n%s" % (self.port, START_TIMEOUT, last,
                                                      self.stderr_tail()))
            if "in use" not in self.stderr_tail(2000).lower():
                raise ServerError("ringmaild exited with status %d at start\n%s"
                                  % (rc, self.stderr_tail()))
        raise ServerError("ringmaild could not bind a free port\n" + self.stderr_tail())

    def check_backend(self):
        """A test asked for io_uring must not silently run on epoll (or the
        reverse): ringmaild logs "started: BACKEND backend" at start."""
        if self.backend not in ("io_uring", "epoll"):
            return
        text = self.stderr_tail(20000)
        m = re.findall(r"started: (\S+) backend", text)
        if m and m[-1] != self.backend:
            self.kill()
            raise ServerError("asked for io_backend=%s but ringmaild runs %s\n%s"
                              % (self.backend, m[-1], text[-3000:]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                rc = None
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait()

    def release_ports(self):
        for h in getattr(self, "port_holds", []):
            h.close()
        self.port_holds = []

    def cleanup(self):
        self.kill()
        self.release_ports()
        if not KEEP:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stderr_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def stderr_since(self, offset, limit=20000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return ""
        if len(data) > limit:
            data = b"[...]\n" + data[-limit:]
        return data.decode(errors="replace")

    def stderr_tail(self, limit=6000):
        return self.stderr_since(0, limit)

    def connect(self, timeout=IO_TIMEOUT, tls=False):
        if tls:
            return Imap(self.host, self.tls_port, timeout=timeout,
                        ssl_context=self.client_context())
        return Imap(self.host, self.port, timeout=timeout)

    def client_context(self, **kw):
        """A client TLS context that trusts this server's certificate."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def password_of(self, user):
        pw = self.users[user]
        return pw[0] if isinstance(pw, tuple) else pw

    def login(self, user, password=None, select=None, enable=None):
        c = self.connect()
        c.ok("LOGIN %s %s" % (quote(user), quote(password or self.password_of(user))))
        if enable:
            c.ok("ENABLE " + enable)
        if select:
            c.ok("SELECT " + quote(select))
        return c


# ---------------------------------------------------------------------------
# IMAP data: a tokenizer for server responses


class Atom(str):
    """An atom (or number/flag/section spec) as opposed to a string."""


class Literal(bytes):
    """A literal ({n} or ~{n}) as opposed to a quoted string."""


def parse_data(data, pos=0, end_char=None):
    """Parse IMAP data (bytes, literals inline as {n}CRLF<bytes>) into a list
    of Atom / bytes (strings and literals) / None (NIL) / list.  Quoted
    strings become bytes too.  Returns (items, pos)."""
    out = []
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
            continue
        if c == b")":
            if end_char == b")":
                return out, pos + 1
            raise ValueError("unbalanced ')' at %d in %r" % (pos, data[:200]))
        if c == b"(":
            sub, pos = parse_data(data, pos + 1, b")")
            out.append(sub)
            continue
        if c == b'"':
            buf = bytearray()
            pos += 1
            while True:
                if pos >= n:
                    raise ValueError("unterminated string in %r" % data[:200])
                ch = data[pos]
                if ch == 0x5C:
                    buf.append(data[pos + 1])
                    pos += 2
                elif ch == 0x22:
                    pos += 1
                    break
                else:
                    buf.append(ch)
                    pos += 1
            out.append(bytes(buf))
            continue
        m = re.compile(rb"~?\{(\d+)\+?\}\r\n").match(data, pos)
        if m:
            ln = int(m.group(1))
            out.append(Literal(data[m.end():m.end() + ln]))
            pos = m.end() + ln
            continue
        # atom; brackets keep their content (BODY[HEADER.FIELDS (A B)]<0>)
        start = pos
        depth = 0
        while pos < n:
            ch = data[pos:pos + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth <= 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
                break
            pos += 1
        if pos == start:
            raise ValueError("cannot parse at %d in %r" % (pos, data[:200]))
        word = data[start:pos].decode("utf-8", "replace")
        out.append(None if word.upper() == "NIL" else Atom(word))
    if end_char:
        raise ValueError("unterminated list in %r" % data[:200])
    return out, pos


def parse(data):
    return parse_data(data)[0]


def s(x):
    """bytes/Atom/None -> str (UTF-8) for comparisons."""
    if x is None:
        return None
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", "replace")
    if isinstance(x, list):
        return [s(i) for i in x]
    return str(x)


def upper(x):
    """Normalise a parsed structure for case-insensitive comparison."""
    if x is None:
        return None
    if isinstance(x, list):
        return [upper(i) for i in x]
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", "replace").upper()
    if isinstance(x, str) and re.fullmatch(r"\d+", x):
        return int(x)
    return str(x).upper()


def quote(text):
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Modified UTF-7 (RFC 3501 5.1.3)

def mutf7_encode(name):
    out, buf = [], []

    def flush():
        if buf:
            b = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name):
    def dec(m):
        t = m.group(1)
        if not t:
            return "&"
        t = t.replace(",", "/")
        t += "=" * (-len(t) % 4)
        return base64.b64decode(t).decode("utf-16-be")
    return re.sub(r"&([^-]*)-", dec, name)


# ---------------------------------------------------------------------------
# Responses


class Response:
    """One server response: raw bytes (with literals, without the final CRLF)."""

    def __init__(self, raw):
        self.raw = raw
        self._parsed = None
        m = re.match(rb"(\S+) ", raw + b" ")
        self.tag = m.group(1).decode("utf-8", "replace") if m else ""

    @property
    def line(self):
        return self.raw.decode("utf-8", "replace")

    def __repr__(self):
        r = self.raw if len(self.raw) < 300 else self.raw[:300] + b"..."
        return "<%s>" % r.decode("utf-8", "replace")

    __str__ = __repr__

    @property
    def untagged(self):
        return self.tag == "*"

    @property
    def continuation(self):
        return self.tag == "+"

    def status(self):
        """(STATUS, CODE, text) for a status response, else None; CODE is
        the response code's text inside [] or None."""
        rest = self.raw[len(self.tag) + 1:] if self.tag else self.raw
        m = re.match(rb"(OK|NO|BAD|BYE|PREAUTH)(?: (.*))?$", rest, re.S | re.I)
        if not m:
            return None
        text = m.group(2) or b""
        code = None
        if text.startswith(b"["):
            depth, i = 0, 0
            while i < len(text):
                if text[i:i + 1] == b"[":
                    depth += 1
                elif text[i:i + 1] == b"]":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            code = text[1:i].decode("utf-8", "replace")
            text = text[i + 1:].lstrip()
        return (m.group(1).decode().upper(), code, text.decode("utf-8", "replace"))

    def items(self):
        """The untagged response parsed after '* '."""
        if self._parsed is None:
            self._parsed = parse(self.raw[2:]) if self.untagged else parse(self.raw)
        return self._parsed

    def kind(self):
        """'EXISTS', 'FETCH', 'LIST', 'OK', ... of an untagged response."""
        it = self.raw[2:].split(b" ", 2)
        if it and re.fullmatch(rb"\d+", it[0]) and len(it) > 1:
            return it[1].decode().upper().rstrip("\r\n")
        return it[0].decode(errors="replace").upper() if it else ""

    def number(self):
        it = self.raw[2:].split(b" ", 1)
        return int(it[0]) if it and it[0].isdigit() else None


class Result:
    """The answer to one command: its untagged responses and tagged status."""

    def __init__(self, command, untagged, tagged, continuations):
        self.command = command
        self.untagged = untagged
        self.tagged = tagged
        self.continuations = continuations
        st = tagged.status() if tagged else None
        self.status, self.code, self.text = st if st else (None, None, None)

    def __repr__(self):
        return "%s -> %s (%d untagged)" % (self.command, self.tagged, len(self.untagged))

    def describe(self):
        lines = ["C: %s" % self.command]
        for r in self.untagged[:40]:
            lines.append("S: %r" % r)
        if len(self.untagged) > 40:
            lines.append("S: ... %d more" % (len(self.untagged) - 40))
        lines.append("S: %r" % self.tagged)
        return "\n".join(lines)

    def code_name(self):
        return self.code.split(" ", 1)[0].upper() if self.code else None

    def of(self, kind):
        return [r for r in self.untagged if r.kind() == kind.upper()]

    def fetches(self):
        """{msn: {ITEM: value}} from the FETCH responses (later ones merge)."""
        out = {}
        for r in self.of("FETCH"):
            out.setdefault(r.number(), {}).update(fetch_dict(r))
        return out

    def fetch_list(self):
        return [(r.number(), fetch_dict(r)) for r in self.of("FETCH")]

    def numbers(self, kind):
        return [r.number() for r in self.of(kind)]

    def search(self):
        """The numbers of the SEARCH response(s); None if there was none."""
        rs = self.of("SEARCH")
        if not rs:
            return None
        out = []
        for r in rs:
            out += [int(x) for x in r.raw[2:].split()[1:] if x.isdigit()]
        return out

    def esearch(self):
        """{'TAG': tag, 'UID': True, 'MIN': n, 'ALL': 'seqset', ...}"""
        rs = self.of("ESEARCH")
        if not rs:
            return None
        items = rs[0].items()[1:]
        out = {}
        i = 0
        if i < len(items) and isinstance(items[i], list):
            corr = items[i]
            if len(corr) == 2 and str(corr[0]).upper() == "TAG":
                out["TAG"] = s(corr[1])
            i += 1
        while i < len(items):
            k = str(items[i]).upper()
            if k == "UID":
                out["UID"] = True
                i += 1
                continue
            v = items[i + 1] if i + 1 < len(items) else None
            out[k] = int(v) if isinstance(v, str) and v.isdigit() else s(v)
            i += 2
        return out

    def codes(self):
        """Response codes of the untagged OK/NO/BAD responses."""
        out = []
        for r in self.untagged:
            st = r.status()
            if st and st[1]:
                out.append(st[1])
        return out

    def code_of(self, name):
        for c in self.codes() + ([self.code] if self.code else []):
            if c.split(" ", 1)[0].upper() == name.upper():
                return c
        return None


def fetch_dict(resp):
    """'* 3 FETCH (FLAGS (\\Seen) UID 7 BODY[] {5}...)' -> {'FLAGS': [...], ...}"""
    items = resp.items()
    if len(items) < 3 or not isinstance(items[2], list):
        raise ValueError("malformed FETCH response %r" % resp)
    lst = items[2]
    if len(lst) % 2:
        raise ValueError("odd number of items in FETCH response %r" % resp)
    d = {}
    for k in range(0, len(lst), 2):
        key = str(lst[k])
        # upper-case the item name but keep the section as sent
        m = re.match(r"([A-Za-z0-9.]+)(.*)$", key, re.S)
        key = (m.group(1).upper() + m.group(2)) if m else key
        val = lst[k + 1]
        if key in ("UID", "RFC822.SIZE") or key.startswith("BINARY.SIZE"):
            val = int(val)
        d[key] = val
    return d


def seqset(text):
    """'1,3:5' -> [1, 3, 4, 5]"""
    out = []
    if not text:
        return out
    for part in str(text).split(","):
        if ":" in part:
            a, b = part.split(":")
            a, b = int(a), int(b)
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


# ---------------------------------------------------------------------------
# The client


class ImapError(AssertionError):
    pass


class Imap:
    """A raw IMAP client: what is sent and received is exactly what the test
    says.  Every read has a timeout; a silent server is an error."""

    def __init__(self, host, port, timeout=IO_TIMEOUT, read_greeting=True, ssl_context=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname="localhost")
        self.timeout = timeout
        self.buf = b""
        self.n = 0
        self.closed = False
        self.transcript = []
        self.greeting = self.read() if read_greeting else None

    # -- low level --

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append(b"C: " + data[:500])
        self.sock.sendall(data)

    def starttls(self, ssl_context):
        """After the server's OK to STARTTLS: run the handshake."""
        if self.buf:
            raise ImapError("bytes after the STARTTLS answer in the clear: %r" % self.buf)
        self.sock = ssl_context.wrap_socket(self.sock, server_hostname="localhost")

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise ImapError("timeout (%.1f s) waiting for the server; buffered: %r\n"
                            "last exchange:\n%s" % (timeout, self.buf[:300], self.last()))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            raise ConnectionError("server closed the connection; buffered: %r\n"
                                  "last exchange:\n%s" % (self.buf[:300], self.last()))
        self.buf += chunk

    def last(self, n=12):
        return "\n".join(t.decode("utf-8", "replace")[:300].rstrip() for t in self.transcript[-n:])

    def read(self, timeout=None):
        """One complete response (a line plus its literals)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pos = 0
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i < 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ImapError("timeout waiting for a response line; buffered %r"
                                    % self.buf[:300])
                self._fill(left)
                continue
            m = re.search(rb"~?\{(\d+)\}$", self.buf[pos:i])
            if m and not self.buf[:i].startswith(b"+ "):
                need = i + 2 + int(m.group(1))
                while len(self.buf) < need:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ImapError("timeout inside a literal")
                    self._fill(left)
                pos = need
                continue
            raw = self.buf[:i]
            self.buf = self.buf[i + 2:]
            r = Response(raw)
            self.transcript.append(b"S: " + raw[:500])
            return r

    def pending(self, wait=0.0):
        """Responses that arrive within `wait` seconds without a command."""
        out = []
        deadline = time.monotonic() + wait
        while True:
            if b"\r\n" in self.buf:
                out.append(self.read())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                self.sock.setblocking(False)
                try:
                    chunk = self.sock.recv(1 << 16)
                    if not chunk:
                        self.closed = True
                        return out
                    self.buf += chunk
                    continue
                except (BlockingIOError, InterruptedError):
                    return out
                finally:
                    self.sock.setblocking(True)
            try:
                self._fill(left)
            except ImapError:
                return out
            except ConnectionError:
                return out

    def tag(self):
        self.n += 1
        return "t%d" % self.n

    def read_until_tag(self, tag, timeout=None):
        untagged, conts = [], []
        while True:
            r = self.read(timeout)
            if r.tag == tag:
                return untagged, r, conts
            if r.continuation:
                conts.append(r)
            elif r.untagged:
                untagged.append(r)
            else:
                raise ImapError("unexpected response while waiting for %s: %r" % (tag, r))

    # -- commands --

    def cmd(self, text, timeout=None):
        """Send one command line (str or bytes; literals must be LITERAL+
        or given with cmd_lit) and read up to its tagged answer."""
        tag = self.tag()
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.send(tag.encode() + b" " + text + b"\r\n")
        untagged, tagged, conts = self.read_until_tag(tag, timeout)
        return Result(tag + " " + text.decode("utf-8", "replace")[:200], untagged, tagged, conts)

    def cmd_lit(self, *parts, timeout=None):
        """A command with synchronizing literals: parts alternate text, literal
        bytes, text, ...  ("APPEND INBOX (\\Seen)", msg, "")."""
        tag = self.tag()
        untagged = []
        conts = []
        head = tag.encode() + b" "
        desc = tag
        for i, p in enumerate(parts):
            if isinstance(p, str):
                p = p.encode("utf-8")
            if i % 2 == 0:
                head += p
                desc += " " + p.decode("utf-8", "replace")[:80]
            else:
                self.send(head + b"{%d}\r\n" % len(p))
                while True:
                    r = self.read(timeout)
                    if r.continuation:
                        conts.append(r)
                        break
                    if r.tag == tag:
                        return Result(desc, untagged, r, conts)
                    untagged.append(r)
                self.send(p)
                head = b""
                desc += " {%d}" % len(p)
        self.send(head + b"\r\n")
        u2, tagged, c2 = self.read_until_tag(tag, timeout)
        return Result(desc, untagged + u2, tagged, conts + c2)

    def expect(self, res, status, code=None):
        if res.status != status:
            raise ImapError("expected %s%s, got:\n%s" % (
                status, " [%s]" % code if code else "", res.describe()))
        if code and res.code_name() != code.upper():
            raise ImapError("expected %s [%s], got:\n%s" % (status, code, res.describe()))
        return res

    def ok(self, text, **kw):
        return self.expect(self.cmd(text, **kw), "OK")

    def append(self, mailbox, msg, flags=None, date=None, plus=True):
        args = "APPEND %s" % quote(mailbox)
        if flags is not None:
            args += " (%s)" % " ".join(flags)
        if date:
            args += ' "%s"' % date
        if plus:
            return self.cmd(args.encode() + b" {%d+}\r\n" % len(msg) + msg)
        return self.cmd_lit(args + " ", msg, "")

    def capabilities(self):
        r = self.ok("CAPABILITY")
        caps = []
        for u in r.of("CAPABILITY"):
            caps += u.raw.decode().split()[2:]
        return [c.upper() for c in caps]

    def logout(self):
        try:
            self.cmd("LOGOUT", timeout=5)
        except (ImapError, ConnectionError, OSError):
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def wait_closed(self, timeout=5):
        """True if the server closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False


# ---------------------------------------------------------------------------
# Test case base: one server per class and backend, one fresh user per test


def sanitizer_report(text):
    """The first ASan/UBSan/LSan report in a server's stderr, or None."""
    for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                "WARNING: ThreadSanitizer"):
        i = text.find(pat)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 200)) + 1
            return text[start:start + 6000]
    return None


class ServerTestCase(unittest.TestCase):
    """Subclass and call parametrize(globals(), Class).  Each test gets
    self.server (shared by the class), self.user / self.password (a fresh
    user nobody touched) and self.c (a connection logged in as it, created
    lazily by self.login())."""

    backend = None          # set by parametrize
    server_options = {}
    server_tls = False      # also a TLS listener with a self-signed certificate
    server_other_users = False  # Server(other_users=): nobody reaches its files
    users_per_class = 60

    @classmethod
    def setUpClass(cls):
        if cls.backend is None:
            raise unittest.SkipTest("abstract")
        users = {"user%d" % i: "pw%d-secret" % i for i in range(cls.users_per_class)}
        users["crypt"] = ("crypt-secret", "SHA512-CRYPT")
        cls.server = Server(cls.backend, users, cls.server_options,
                            name=cls.__name__.lower(), tls=cls.server_tls,
                            other_users=cls.server_other_users)
        cls.next_user = 0
        cls.prepare_server(cls.server)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def prepare_server(cls, server):
        """Hook: preload mail before the server starts."""

    @classmethod
    def tearDownClass(cls):
        srv = getattr(cls, "server", None)
        if srv is None:
            return
        rc = srv.stop()
        tail = srv.stderr_tail()
        report = sanitizer_report(srv.stderr_since(0, 10 ** 7))
        srv.cleanup()
        if report:
            raise AssertionError("sanitizer report in ringmaild's stderr (%s):\n%s"
                                 % (cls.backend, report))
        if rc != 0:
            raise AssertionError("ringmaild (%s) did not exit with status 0 after SIGTERM: "
                                 "%r\n--- server stderr ---\n%s" % (cls.backend, rc, tail))

    def setUp(self):
        if not self.server.alive():
            # a crash in an earlier test was reported there; start again
            self.server.start()
        self.log_offset = self.server.stderr_size()
        self.conns = []
        self._fail_count = self._failures_so_far()
        cls = type(self)
        self.user = "user%d" % cls.next_user
        self.password = "pw%d-secret" % cls.next_user
        cls.next_user += 1
        if cls.next_user > cls.users_per_class:
            raise AssertionError("raise users_per_class")

    def tearDown(self):
        for c in self.conns:
            c.close()
        failed = self._failures_so_far() != self._fail_count
        crashed = not self.server.alive()
        sanitizer = sanitizer_report(self.server.stderr_since(self.log_offset, 200000))
        if failed or crashed or VERBOSE:
            sys.stderr.write("\n--- %s: ringmaild stderr during the test (%s) ---\n%s\n"
                             % (self.id(), self.backend, self.server.stderr_since(self.log_offset)))
            if failed:
                for c in self.conns[-3:]:
                    sys.stderr.write("--- client transcript (last lines) ---\n%s\n" % c.last(20))
        if crashed:
            rc = self.server.proc.poll()
            self.server.stop()
            self.fail("ringmaild died during the test (status %r)" % rc)
        if sanitizer:
            self.fail("sanitizer report in ringmaild's stderr:\n" + sanitizer)

    def _failures_so_far(self):
        # Python 3.11 records a failure in the result as soon as the test
        # method raises, before tearDown runs.
        res = getattr(getattr(self, "_outcome", None), "result", None)
        if res is None:
            return 0
        return len(getattr(res, "failures", [])) + len(getattr(res, "errors", []))

    # helpers

    def connect(self, **kw):
        c = self.server.connect(**kw)
        self.conns.append(c)
        return c

    def login(self, user=None, password=None, select=None, enable=None):
        c = self.connect()
        self.expect(c.cmd("LOGIN %s %s" % (quote(user or self.user),
                                           quote(password or self.password))), "OK")
        if enable:
            r = self.expect(c.cmd("ENABLE " + enable), "OK")
        if select:
            self.expect(c.cmd("SELECT " + quote(select)), "OK")
        return c

    def expect(self, res, status, code=None, msg=None):
        if isinstance(status, str):
            status = (status,)
        if res.status not in status:
            self.fail("%swant %s%s, got:\n%s" % (msg + ": " if msg else "",
                                                  "|".join(status),
                                                  " [%s]" % code if code else "",
                                                  res.describe()))
        if code is not None:
            codes = (code,) if isinstance(code, str) else code
            if res.code_name() not in [c.upper() for c in codes]:
                self.fail("%swant %s [%s], got:\n%s" % (msg + ": " if msg else "",
                                                         "|".join(status), "|".join(codes),
                                                         res.describe()))
        return res

    def ok(self, c, text, **kw):
        return self.expect(c.cmd(text, **kw), "OK")

    def each(self, make, cmds, status, code=None, what=""):
        """Send each command on a fresh connection from make() and expect
        status: servers may end a session after a few bad commands in a row
        (ringmaild: "repeated garbage gets a BYE"), so errors are not
        piled up on one connection."""
        for cmd in cmds:
            c = make()
            self.expect(c.cmd(cmd), status, code, msg=(what + ": " if what else "") +
                        (cmd.decode("utf-8", "replace") if isinstance(cmd, bytes) else cmd)[:120])
            c.close()
            self.conns.remove(c)

    def append_msgs(self, c, mailbox, msgs):
        """APPEND each (raw, flags) or raw; returns the UIDs (APPENDUID)."""
        uids = []
        for m in msgs:
            flags = None
            if isinstance(m, tuple):
                m, flags = m
            r = self.expect(c.append(mailbox, m, flags), "OK")
            code = r.code_of("APPENDUID")
            uids.append(int(code.split()[2]) if code else None)
        return uids


def parametrize(namespace, *classes):
    """For each class, make one concrete unittest.TestCase per backend
    (Name_io_uring, Name_epoll) and remove the abstract one from the module
    so unittest does not collect it."""
    for cls in classes:
        for b in BACKENDS:
            name = "%s_%s" % (cls.__name__, b)
            namespace[name] = type(name, (cls,), {"backend": b, "__module__": cls.__module__})
        namespace.pop(cls.__name__, None)


class SummaryResult(unittest.TextTestResult):
    pass


def main():
    """unittest.main with a one-line summary at the end; exit 1 on failure."""
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    print("SUMMARY %s: %d run, %d failures, %d errors, %d skipped" % (
        os.path.basename(sys.argv[0]), r.testsRun, len(r.failures), len(r.errors),
        len(r.skipped)))
    for t, _ in r.failures + r.errors:
        print("  FAILED:", t.id())
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


# ---------------------------------------------------------------------------
# Helpers of the real-client tests (mbsync, offlineimap)

MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                 "T": "\\Deleted"}


def maildir_folders(root):
    """Every Maildir (a dir with cur/ new/ tmp/) under root: {relpath: path}."""
    out = {}
    for dirpath, dirnames, _ in os.walk(root):
        if "cur" in dirnames and "new" in dirnames:
            out[os.path.relpath(dirpath, root)] = dirpath
    return out


def maildir_messages(folder):
    """[(path, bytes, flags set)] of one Maildir folder (new/ and cur/)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(folder, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            flags = set()
            if ":2," in name:
                flags = {MAILDIR_FLAGS[ch] for ch in name.split(":2,", 1)[1] if ch in MAILDIR_FLAGS}
            with open(p, "rb") as f:
                out.append((p, f.read(), flags))
    return out


def maildir_set_flags(path, letters):
    """Move a Maildir message to cur/ with exactly these flag letters."""
    folder = os.path.dirname(os.path.dirname(path))
    base = os.path.basename(path).split(":2,", 1)[0]
    new = os.path.join(folder, "cur", base + ":2," + "".join(sorted(letters)))
    os.rename(path, new)
    return new


def maildir_deliver(folder, data, name):
    tmp = os.path.join(folder, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    dst = os.path.join(folder, "new", name)
    os.rename(tmp, dst)
    return dst


def header_value(raw, name):
    """The first value of a header field (unfolded), or None."""
    head = lf(raw).split(b"\n\n", 1)[0]
    m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*(.*(?:\n[ \t].*)*)", head)
    return m.group(1).replace(b"\n", b"").strip().decode("utf-8", "replace") if m else None


def strip_headers(raw, names):
    """Remove header fields (e.g. X-TUID, Status) from the header block."""
    raw = lf(raw)
    head, sep, body = raw.partition(b"\n\n")
    out, skip = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and skip:
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skip = name in [n.lower().encode() for n in names]
        if not skip:
            out.append(line)
    return b"\n".join(out) + sep + body


def fetch_all(conn, mailbox):
    """{uid: (flags set, body bytes)} of a mailbox, read with EXAMINE."""
    res = conn.cmd("EXAMINE " + quote(mailbox))
    if res.status != "OK":
        raise ImapError("EXAMINE %s: %s" % (mailbox, res.describe()))
    r = conn.cmd("UID FETCH 1:* (UID FLAGS BODY.PEEK[])", timeout=120)
    if r.status != "OK":
        raise ImapError(r.describe())
    out = {}
    for _, d in r.fetch_list():
        out[d["UID"]] = ({str(f) for f in d["FLAGS"]} - {"\\Recent"}, bytes(d["BODY[]"]))
    conn.cmd("CLOSE")
    return out


def require_program(testcase, name):
    path = shutil.which(name)
    if not path:
        testcase.fail("%s is not installed: tools/setup-deps.sh must install it "
                      "(Debian package %s)" % (name, {"mbsync": "isync"}.get(name, name)))
    return path


class SyncClientCase(ServerTestCase):
    """What the real-client sync tests (mbsync, offlineimap) share: a user
    with three preloaded folders, and message-by-message comparison of a
    local Maildir with the expected messages or the server.  Subclasses set
    USER, PASSWORD, INBOX_MSGS, ARCHIVE_MSGS, PROJECT_MSGS, IGNORE (headers
    the client or the import may add or drop) and self.mail (the Maildir)."""
    users_per_class = 1
    use_tls = False
    IGNORE = []

    # The user is made as an operator makes one: `ringmail-admin user add`
    # with its defaults (SCHEME None), so the client meets the capabilities
    # and password scheme of a default setup.
    SCHEME = None

    @classmethod
    def prepare_server(cls, server):
        add = ["user", "add"] + (["--scheme", cls.SCHEME] if cls.SCHEME else []) + [cls.USER]
        server.admin("-o", "passwd_file=" + server.passwd, *add,
                     input=(cls.PASSWORD + "\n").encode())
        server.import_mbox(cls.USER, "INBOX", cls.INBOX_MSGS)
        server.import_mbox(cls.USER, "Archive", cls.ARCHIVE_MSGS)
        server.import_mbox(cls.USER, "Work/Projects", cls.PROJECT_MSGS)

    def norm(self, raw):
        raw = lf(raw)
        if raw and not raw.endswith(b"\n"):
            raw += b"\n"
        return strip_headers(raw, self.IGNORE)

    def by_msgid(self, items):
        out = {}
        for raw, flags in items:
            mid = header_value(raw, "Message-ID")
            assert mid not in out, "duplicate Message-ID %s" % mid
            out[mid] = (self.norm(raw), set(flags))
        return out

    def local(self, folder):
        path = maildir_folders(self.mail).get(folder)
        self.assertIsNotNone(path, "Maildir folder %s missing; have %s"
                             % (folder, sorted(maildir_folders(self.mail))))
        return maildir_messages(path)

    def compare(self, folder, want, step):
        got = self.by_msgid([(raw, flags) for _, raw, flags in self.local(folder)])
        self.assertEqual(sorted(got), sorted(want),
                         "%s: %s has other messages than expected" % (step, folder))
        for mid, (raw, flags) in want.items():
            graw, gflags = got[mid]
            if graw != raw:
                i = next((k for k in range(min(len(raw), len(graw))) if raw[k] != graw[k]),
                         min(len(raw), len(graw)))
                self.fail("%s: %s message %s differs at byte %d (len %d vs %d):\n"
                          "want %r\ngot  %r" % (step, folder, mid, i, len(raw), len(graw),
                                                raw[max(0, i - 60):i + 60],
                                                graw[max(0, i - 60):i + 60]))
            self.assertEqual(gflags, flags, "%s: flags of %s in %s" % (step, mid, folder))

    def server_view(self, c, mailbox):
        return self.by_msgid([(body, flags) for flags, body in fetch_all(c, mailbox).values()])
