#!/usr/bin/env python3
"""ringmaild as a systemd service (dist/).

- sd_notify: ringmaild started with NOTIFY_SOCKET pointing at a datagram
  socket of the test's says READY=1 once the IMAP port answers (a connection
  made right after READY gets its greeting), RELOADING=1 then READY=1 around
  SIGHUP, STOPPING=1 on SIGTERM; with processes = 2 only the supervisor (the
  service's main PID) speaks, and only once both servers are up.
- The unit passes `systemd-analyze verify`, and its privilege model works:
  ringmaild as an unprivileged user whose one capability is
  CAP_NET_BIND_SERVICE binds a port below 1024 (setpriv(1) stands in for
  systemd, which this machine does not run).
- The man pages render with `man -l` without a warning, and stay true:
  every key `ringmail-admin config` lists is in ringmail.conf(5) and in the
  commented dist/ringmail.conf (with its default), every command of
  ringmail-admin's usage is in ringmail-admin(8), every option of
  ringmaild -h and ringmail-bench's usage in their pages.
- The Debian package (CPack, from the build directory of the programs
  tested): its files (`dpkg-deb -c`), control fields (`dpkg-deb -I`),
  maintainer scripts, and lintian without an error.

Nothing is installed and nothing under /etc or of the system's services is
touched: the package is built into a temp dir and only inspected.
"""
import array
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
DIST = os.path.join(SRC, "dist")
BUILD = os.path.dirname(rs.RINGMAILD) if rs.RINGMAILD else ""
MAN_PAGES = ["ringmaild.8", "ringmail-admin.8", "ringmail.conf.5", "ringmail-bench.1"]


class NotifySocket:
    """A datagram socket standing in for systemd's: every message with the
    pid that sent it (SCM_CREDENTIALS, as systemd reads them)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout):
        """(pid, {field: value}) of the next message, or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, blob in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", blob[:12])[0]
        fields = {}
        for line in data.decode().split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        return pid, fields

    def close(self):
        self.sock.close()


class SdNotify:
    """The notifications of one ringmaild (processes = self.processes)."""

    processes = 1
    backend = None

    def setUp(self):
        if self.backend is None:
            raise unittest.SkipTest("abstract")
        self.srv = rs.Server(self.backend, {"svc": "svc-secret"},
                             {"processes": str(self.processes), "workers": "1"},
                             name="service", tls=True)
        self.addCleanup(self.srv.cleanup)
        self.notify = NotifySocket(os.path.join(self.srv.tmp, "notify"))
        self.addCleanup(self.notify.close)
        self.msgs = []

    def start(self):
        srv = self.srv
        srv.port, hold = rs.reserve_port()
        srv.tls_port, hold2 = rs.reserve_port()
        srv.port_holds = [hold, hold2]
        srv.log = open(srv.log_path, "ab")
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        srv.proc = subprocess.Popen(srv.command_line(), stdin=subprocess.DEVNULL,
                                    stdout=srv.log, stderr=srv.log, env=env,
                                    start_new_session=True)
        self.addCleanup(srv.kill)

    def wait_for(self, field, timeout=20.0):
        """Messages until one with field; returns it.  Every message must
        come from the process started (systemd's MAINPID: NotifyAccess=main)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            got = self.notify.recv(max(left, 0.01)) if left > 0 else None
            if got is None:
                self.fail("no %s= within %.0f s; got %r\n%s" % (
                    field, timeout, self.msgs, self.srv.stderr_tail()))
            pid, fields = got
            self.msgs.append(fields)
            self.assertEqual(pid, self.srv.proc.pid,
                             "a notification from pid %r, not the main pid %d: %r"
                             % (pid, self.srv.proc.pid, fields))
            if field in fields:
                return fields

    def greeting(self):
        """Connect and read the greeting (no retry: the port must answer)."""
        with socket.create_connection((self.srv.host, self.srv.port), timeout=10) as s:
            s.settimeout(10)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
        return data

    def test_ready_reload_stopping(self):
        self.start()
        ready = self.wait_for("READY")
        self.assertEqual(ready["READY"], "1")
        # Right after READY=1: no retry, the listener and the workers are up.
        self.assertTrue(self.greeting().startswith(b"* OK"), self.srv.stderr_tail())
        self.assertIn("STATUS", ready, "READY=1 comes with a STATUS= line")
        self.assertFalse(any("READY" in m for m in self.msgs[:-1]), self.msgs)
        log = self.srv.stderr_tail(100000)
        # Every server had logged its start (before telling the supervisor).
        self.assertEqual(len(re.findall(r"ringmaild started:", log)), self.processes, log)
        if self.processes > 1:
            self.assertEqual(len(rs_children(self.srv.proc.pid)), self.processes)

        self.srv.proc.send_signal(signal.SIGHUP)
        rel = self.wait_for("RELOADING")
        self.assertEqual(rel["RELOADING"], "1")
        self.assertRegex(rel.get("MONOTONIC_USEC", ""), r"^\d+$")
        again = self.wait_for("READY")
        self.assertEqual(again["READY"], "1")
        # READY=1 once every server has reloaded (under a supervisor, each
        # tells it over the handoff socket after logging its outcome).
        self.assertEqual(self.srv.stderr_tail(100000).count("SIGHUP: certificates reloaded"),
                         self.processes, self.srv.stderr_tail())
        self.assertTrue(self.greeting().startswith(b"* OK"))

        self.srv.proc.send_signal(signal.SIGTERM)
        stop = self.wait_for("STOPPING")
        self.assertEqual(stop["STOPPING"], "1")
        self.assertEqual(self.srv.proc.wait(20), 0, self.srv.stderr_tail())
        self.srv.proc = None
        self.srv.release_ports()
        self.srv.log.close()
        with open(self.srv.log_path, "rb") as f:
            self.assertIsNone(rs.sanitizer_report(f.read().decode(errors="replace")))


def rs_children(ppid):
    return rs.server_children(ppid)


class SdNotifyOne(SdNotify, unittest.TestCase):
    processes = 1


class SdNotifyTwo(SdNotify, unittest.TestCase):
    processes = 2


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise AssertionError("missing tools %s (tools/setup-deps.sh installs them)" % missing)


def program(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is not built (RINGMAILD=%r)" % (path, rs.RINGMAILD))
    return path


def render(page, width=80):
    """(text, stderr) of man -l with every groff warning on."""
    p = run(["man", "--warnings=w", "-l", os.path.join(DIST, "man", page)],
            env=dict(os.environ, MANWIDTH=str(width), MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8"))
    return p.stdout, p.stderr, p.returncode


def tags(text):
    """The rendered tag lines (.TP headings, 7 spaces in) of a man page."""
    return [ln.strip() for ln in text.splitlines() if re.match(r"^ {7}\S", ln)]


def config_defaults():
    """{key: default} from ringmail-admin config with an empty file."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        env = dict(os.environ)
        env.pop("RINGMAIL_CONFIG", None)
        p = run([program("ringmail-admin"), "-c", f.name, "config"], env=env)
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(\w+) = (.*?)\s*# default$", line)
        assert m, "unexpected line of ringmail-admin config: %r" % line
        out[m.group(1)] = m.group(2).strip()
    assert len(out) > 40, out
    return out


class ManPages(unittest.TestCase):
    """The man pages render cleanly and say what the programs do."""

    def test_render_without_warnings(self):
        need("man")
        for page in MAN_PAGES:
            text, err, rc = render(page)
            self.assertEqual(rc, 0, "%s: man exit %d: %s" % (page, rc, err))
            self.assertEqual(err, "", "%s: groff warnings:\n%s" % (page, err))
            self.assertIn("NAME", text)
            self.assertIn("SEE ALSO", text)

    def test_conf_page_has_every_key_with_its_default(self):
        # From the source: a short .TP heading shares its line with the text.
        with open(os.path.join(DIST, "man", "ringmail.conf.5")) as f:
            have = {m.group(1).replace("\\-", "-").strip()
                    for m in re.finditer(r"(?m)^\.B (\w+ =.*)$", f.read())}
        missing = ["%s = %s" % kv for kv in sorted(config_defaults().items())
                   if ("%s = %s" % kv).strip() not in have]
        self.assertEqual(missing, [], "keys of ringmail-admin config missing from "
                         "ringmail.conf(5) (or with another default)")

    def test_admin_page_has_every_command(self):
        p = run([program("ringmail-admin"), "--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        cmds = set()
        for line in p.stdout.splitlines():
            m = re.match(r"^  ([a-z][a-z-]*(?: [a-z][a-z-]*)*)(?: |$)", line)
            if m:
                cmds.add(m.group(1))
        self.assertTrue({"mailbox list", "user add", "config", "import"} <= cmds, cmds)
        text, _, _ = render("ringmail-admin.8", 400)
        heads = tags(text)
        missing = sorted(c for c in cmds
                         if not any(h == c or h.startswith(c + " ") for h in heads))
        self.assertEqual(missing, [], "commands of ringmail-admin's usage missing from "
                         "ringmail-admin(8)")

    def test_ringmaild_page_has_every_option(self):
        p = run([program("ringmaild"), "-h"])
        self.assertEqual(p.returncode, 0, p.stderr)
        opts = set(re.findall(r"^\s+(-\w)", p.stdout, re.M))
        opts |= set(re.findall(r"(--[a-z-]+)", p.stdout))
        self.assertTrue({"-c", "-o", "-h", "--help"} <= opts, opts)
        text, _, _ = render("ringmaild.8", 400)
        heads = " ".join(h for h in tags(text) if h.startswith("-"))
        for o in sorted(opts):
            self.assertRegex(heads, r"(^|[ ,])%s\b" % re.escape(o), "ringmaild(8) lacks " + o)

    def test_bench_page_has_every_option_and_workload(self):
        p = run([program("ringmail-bench"), "--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        opts = set(re.findall(r"(--[a-z][a-z-]*)", p.stdout))
        m = re.search(r"^workloads: (.*)\n((?:  \S.*\n)*?)", p.stdout, re.M)
        work = set(m.group(1).split())
        nxt = p.stdout[m.end():].split("\n", 1)[0]
        if not re.match(r"^  \S+:", nxt):      # the list goes on on the next line
            work |= set(nxt.split())
        self.assertTrue({"--host", "--workload", "--json"} <= opts, opts)
        self.assertTrue({"login", "headers", "sort", "thread"} <= work, work)
        text, _, _ = render("ringmail-bench.1", 400)
        heads = tags(text)
        first = {h.split()[0] for h in heads if h}
        self.assertEqual(sorted(opts - first), [], "options missing from ringmail-bench(1)")
        self.assertEqual(sorted(work - first), [], "workloads missing from ringmail-bench(1)")


class CommentedConf(unittest.TestCase):
    """dist/ringmail.conf: every key, commented out with its default,
    but the service's paths; and ringmail-admin accepts it."""

    SERVICE = {"mail_root": "/var/lib/ringmail/mail", "passwd_file": "/var/lib/ringmail/passwd"}

    def test_every_key_with_its_default(self):
        with open(os.path.join(DIST, "ringmail.conf")) as f:
            conf = f.read()
        bad = []
        for k, v in sorted(config_defaults().items()):
            if k in self.SERVICE:
                want = r"^%s = %s$" % (k, re.escape(self.SERVICE[k]))
            else:
                want = r"^#%s =[ \t]*%s[ \t]*$" % (k, re.escape(v))
            if not re.search(want, conf, re.M):
                bad.append(k)
        self.assertEqual(bad, [], "keys missing from dist/ringmail.conf (or with a "
                         "default other than ringmail-admin config's)")

    def test_accepted(self):
        p = run([program("ringmail-admin"), "-c", os.path.join(DIST, "ringmail.conf"),
                 "config"])
        self.assertEqual(p.returncode, 0, p.stderr)
        for k, v in self.SERVICE.items():
            self.assertRegex(p.stdout, r"(?m)^%s = %s +# .*ringmail\.conf:\d+$"
                             % (k, re.escape(v)))


class Unit(unittest.TestCase):
    """dist/ringmail.service says what the service needs and passes
    systemd-analyze verify (on a copy whose ExecStart is the built
    ringmaild: verify wants the binary to exist; the Documentation= pages
    are looked up in dist/man through MANPATH)."""

    def test_verify(self):
        need("systemd-analyze", "man")
        with open(os.path.join(DIST, "ringmail.service")) as f:
            unit = f.read()
        for line in ["Type=notify",
                     "ExecStart=/usr/sbin/ringmaild -c /etc/ringmail/ringmail.conf",
                     "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                     "User=ringmail", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ProtectHome=yes", "PrivateTmp=yes", "RuntimeDirectory=ringmail",
                     "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                     "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                     "ReadWritePaths=/var/lib/ringmail /run/ringmail",
                     "WantedBy=multi-user.target"]:
            self.assertRegex(unit, r"(?m)^%s$" % re.escape(line))
        m = re.search(r"(?m)^LimitNOFILE=(\d+)$", unit)
        self.assertTrue(m and int(m.group(1)) >= 500000, "LimitNOFILE for many connections")
        tmp = tempfile.mkdtemp(prefix="unit.", dir=rs.scratch_base())
        self.addCleanup(shutil.rmtree, tmp, True)
        for sec in ("5", "8"):
            os.makedirs(os.path.join(tmp, "man", "man" + sec))
        for page in MAN_PAGES:
            sec = page.rsplit(".", 1)[1]
            if sec in ("5", "8"):
                shutil.copy(os.path.join(DIST, "man", page),
                            os.path.join(tmp, "man", "man" + sec, page))
        path = os.path.join(tmp, "ringmail.service")
        with open(path, "w") as f:
            f.write(unit.replace("ExecStart=/usr/sbin/ringmaild",
                                 "ExecStart=" + program("ringmaild")))
        p = run(["systemd-analyze", "verify", path],
                env=dict(os.environ, MANPATH=os.path.join(tmp, "man"), SYSTEMD_LOG_LEVEL="info"))
        about = [ln for ln in (p.stdout + p.stderr).splitlines() if "ringmail" in ln]
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(about, [], "systemd-analyze verify says about the unit")
        # Without the pages the same check fails: it really looked them up.
        p = run(["systemd-analyze", "verify", path],
                env=dict(os.environ, MANPATH=os.path.join(tmp, "none")))
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)


class Privileges(unittest.TestCase):
    """The unit's way of giving ringmaild ports 143 and 993: an unprivileged
    user with CAP_NET_BIND_SERVICE as its only (ambient) capability and no
    new privileges, as setpriv(1) sets it up here (the unit:
    User=, AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges=).
    Without the capability the same start fails."""

    def test_unprivileged_user_binds_low_port(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to switch users")
        need("setpriv")
        import pwd
        nobody = pwd.getpwnam("nobody")
        # The system's temp dir, not RINGMAIL_TEST_TMP: the checkout may be
        # under a directory nobody cannot enter.
        tmp = tempfile.mkdtemp(prefix="ringmail-caps.")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
        prog = os.path.join(tmp, "ringmaild")
        shutil.copy(program("ringmaild"), prog)
        os.chmod(tmp, 0o755)
        port = None
        for cand in range(700, 1000):           # a free privileged port on loopback
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", cand))
                except OSError:
                    continue
            port = cand
            break
        self.assertIsNotNone(port)
        base = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                "--clear-groups", "--no-new-privs"]
        caps = ["--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service",
                "--bounding-set=-all,+net_bind_service"]
        cmd = [prog, "-o", "listen=127.0.0.1:%d" % port, "-o", "listen_tls=",
               "-o", "mail_root=" + os.path.join(tmp, "mail"),
               "-o", "passwd_file=" + os.path.join(tmp, "passwd"), "-o", "workers=1"]
        p = run(base + cmd, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Permission denied", p.stderr)
        notify = NotifySocket(os.path.join(tmp, "notify"))
        self.addCleanup(notify.close)
        os.chown(notify.path, nobody.pw_uid, nobody.pw_gid)
        proc = subprocess.Popen(base + caps + cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(os.environ, NOTIFY_SOCKET=notify.path))
        try:
            got = notify.recv(20)
            self.assertIsNotNone(got, "no READY=1 from ringmaild as nobody")
            self.assertEqual(got[1].get("READY"), "1")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.settimeout(10)
                self.assertTrue(c.recv(100).startswith(b"* OK"))
            with open("/proc/%d/status" % got[0]) as f:
                status = f.read()
            self.assertRegex(status, r"(?m)^Uid:\s+%d\s" % nobody.pw_uid)
            self.assertRegex(status, r"(?m)^CapEff:\s+0+400$")    # CAP_NET_BIND_SERVICE only
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(20), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out = proc.stdout.read().decode(errors="replace")
            proc.stdout.close()
        self.assertIsNone(rs.sanitizer_report(out), out)


def sanitized_build():
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            return "RINGMAIL_SANITIZE:BOOL=ON" in f.read()
    except OSError:
        return False


class Package(unittest.TestCase):
    """The Debian package CPack makes from the build directory."""

    FILES = {
        "usr/sbin/ringmaild": 0o755,
        "usr/bin/ringmail-admin": 0o755,
        "usr/bin/ringmail-migrate": 0o755,
        "usr/bin/ringmail-bench": 0o755,
        "lib/systemd/system/ringmail.service": 0o644,
        "etc/ringmail/ringmail.conf": 0o644,
        "usr/share/man/man8/ringmaild.8.gz": 0o644,
        "usr/share/man/man8/ringmail-admin.8.gz": 0o644,
        "usr/share/man/man5/ringmail.conf.5.gz": 0o644,
        "usr/share/man/man1/ringmail-bench.1.gz": 0o644,
        "usr/share/doc/ringmail/copyright": 0o644,
        "usr/share/doc/ringmail/changelog.gz": 0o644,
        "usr/share/lintian/overrides/ringmail": 0o644,
    }

    @classmethod
    def setUpClass(cls):
        need("cpack", "dpkg-deb", "dpkg-shlibdeps", "lintian")
        cls.tmp = tempfile.mkdtemp(prefix="package.", dir=rs.scratch_base())
        t0 = time.monotonic()
        p = run(["cpack", "-G", "DEB", "-B", cls.tmp, "--config",
                 os.path.join(BUILD, "CPackConfig.cmake")], cwd=cls.tmp)
        cls.seconds = time.monotonic() - t0
        debs = [f for f in os.listdir(cls.tmp) if f.endswith(".deb")]
        if p.returncode != 0 or len(debs) != 1:
            shutil.rmtree(cls.tmp, True)
            raise AssertionError("cpack failed (exit %d): %s\n%s" % (p.returncode, p.stdout,
                                                                     p.stderr))
        cls.deb = os.path.join(cls.tmp, debs[0])
        print("\npackage %s built in %.1f s" % (debs[0], cls.seconds), file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        if not rs.KEEP:
            shutil.rmtree(cls.tmp, True)

    def field(self, name):
        p = run(["dpkg-deb", "-f", self.deb, name])
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def test_contents(self):
        p = run(["dpkg-deb", "-c", self.deb])
        self.assertEqual(p.returncode, 0, p.stderr)
        files = {}
        for line in p.stdout.splitlines():
            perm, owner, _size, _d, _t, name = line.split(None, 5)
            self.assertEqual(owner, "root/root", line)
            if not perm.startswith("d"):
                mode = sum(0o400 >> i for i, c in enumerate(perm[1:]) if c != "-")
                files[name[2:] if name.startswith("./") else name] = mode
        self.assertEqual(files, self.FILES)

    def test_control(self):
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        self.assertEqual(self.field("Package"), "ringmail")
        self.assertEqual(self.field("Architecture"), arch)
        self.assertRegex(self.field("Version"), r"^\d+\.\d+\.\d+$")
        self.assertEqual(self.field("Section"), "mail")
        self.assertEqual(self.field("Priority"), "optional")
        self.assertRegex(self.field("Maintainer"), r"^[^<>]+ <[^@\s]+@[^>\s]+>$")
        desc = self.field("Description").split("\n")
        self.assertTrue(len(desc) > 2 and len(desc[0]) < 80, desc)
        deps = [d.split()[0] for d in self.field("Depends").split(", ")]
        # adduser and deb-systemd-helper for the scripts; the rest computed by
        # dpkg-shlibdeps from the programs
        for d in ["adduser", "init-system-helpers", "libc6", "libsystemd0", "liburing2",
                  "android-libboringssl", "zlib1g", "libsodium23"]:
            self.assertIn(d, deps)
        if not sanitized_build():
            self.assertIn("libjemalloc2", deps)

    def test_control_files(self):
        tmp = os.path.join(self.tmp, "control")
        p = run(["dpkg-deb", "-e", self.deb, tmp])
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(tmp, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/ringmail/ringmail.conf"])
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(tmp, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            self.assertEqual(run(["sh", "-n", path]).returncode, 0, script)
        with open(os.path.join(tmp, "postinst")) as f:
            post = f.read()
        self.assertRegex(post, r"adduser --system --group .*\n?.*ringmail")
        self.assertIn("/var/lib/ringmail/mail", post)
        self.assertIn("deb-systemd-helper update-state ringmail.service", post)

    def test_installed_tree(self):
        """The files as installed: the unit and the configuration are the
        tree's, the pages gunzip to their sources, the programs run."""
        root = os.path.join(self.tmp, "root")
        p = run(["dpkg-deb", "-x", self.deb, root])
        self.assertEqual(p.returncode, 0, p.stderr)
        for inst, src in [("lib/systemd/system/ringmail.service", "ringmail.service"),
                          ("etc/ringmail/ringmail.conf", "ringmail.conf")]:
            with open(os.path.join(root, inst), "rb") as a, \
                    open(os.path.join(DIST, src), "rb") as b:
                self.assertEqual(a.read(), b.read(), inst)
        import gzip
        for page in MAN_PAGES:
            sec = page.rsplit(".", 1)[1]
            with gzip.open(os.path.join(root, "usr/share/man/man%s/%s.gz" % (sec, page))) as a, \
                    open(os.path.join(DIST, "man", page), "rb") as b:
                self.assertEqual(a.read(), b.read(), page)
        p = run([os.path.join(root, "usr/sbin/ringmaild"), "-h"])
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run([os.path.join(root, "usr/bin/ringmail-admin"), "--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        # `ringmail-admin migrate` runs the ringmail-migrate installed beside
        # it: its own usage error, not "cannot run".
        p = run([os.path.join(root, "usr/bin/ringmail-admin"), "migrate"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--from", p.stderr)
        # The unit runs what the package installs, on the file it installs.
        with open(os.path.join(root, "lib/systemd/system/ringmail.service")) as f:
            m = re.search(r"(?m)^ExecStart=(\S+) -c (\S+)$", f.read())
        self.assertTrue(os.path.isfile(os.path.join(root, m.group(1).lstrip("/"))))
        self.assertTrue(os.path.isfile(os.path.join(root, m.group(2).lstrip("/"))))

    def test_lintian(self):
        t0 = time.monotonic()
        p = run(["lintian", "--display-level", ">=pedantic", "--show-overrides", self.deb])
        out = p.stdout + p.stderr
        print("lintian (%.1f s):\n%s" % (time.monotonic() - t0, out), file=sys.stderr)
        errors = [ln for ln in out.splitlines() if ln.startswith("E:")]
        self.assertEqual(errors, [], "lintian errors")
        self.assertNotIn("lintian: error", out.lower())
        # Only the one tag README explains is overridden.
        overridden = {ln.split()[2] for ln in out.splitlines() if ln.startswith("O:")}
        self.assertLessEqual(overridden, {"custom-library-search-path"})


rs.parametrize(globals(), SdNotifyOne, SdNotifyTwo)

if __name__ == "__main__":
    rs.main()
