"""A private Postfix for the integration tests: Debian's Postfix (installed
unconfigured by tools/setup-deps.sh) run with its own config_directory,
queue_directory and data_directory under a temp dir, listening for SMTP on
one loopback port and handing every address of the test domain to an LMTP
server (ringmaild) through virtual_transport.  The system instance (the
files in /etc/postfix, /var/spool/postfix) is never read for configuration,
started or stopped.

    pf = Postfix("example.org", "lmtp:unix:/run/x/lmtp")
    pf.start()            # postfix -c DIR check, then postfix -c DIR start
    qid = pf.submit("a@example.org", ["b@example.org"], raw)[1]
    pf.wait_log(r"%s: to=<b@example.org>.*status=sent" % qid)
    pf.stop()             # postfix -c DIR stop

With transport_maps (a Postfix table, e.g. ringmaild's
"socketmap:inet:127.0.0.1:PORT:transport"), each recipient goes where the
table says and `transport` serves only the addresses it does not know.

Postfix's programs run as root here (the tests do); its daemons run as
mail_owner (the "postfix" user the package made), so everything they must
reach (the temp dir, the LMTP socket) has to be open to that user.  What
Postfix logs goes to maillog_file (written by its postlogd), which the
tests read to see each recipient's status=sent/deferred/bounced.
"""

import json
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time

import ringmail_server as rs

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
SENDMAIL = "/usr/sbin/sendmail"

# A loopback-only Postfix with no local delivery: mail for `domain` goes to
# `transport`, mail for any other domain is refused (no relaying), and
# deferred mail is retried within seconds instead of minutes.
MAIN_CF = """\
# written by tests/integration/postfix_server.py
compatibility_level = 3.6
queue_directory = {tmp}/queue
data_directory = {tmp}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = {hostname}
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# no local(8) delivery: this Postfix is final destination only for the
# virtual mailbox domain, which it hands to the LMTP server
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery here
alias_maps =
alias_database =
virtual_mailbox_domains = {domain}
# empty: every address of the domain is accepted by smtpd and the LMTP
# server decides (an unknown user is its 550 5.1.1, then Postfix's bounce)
virtual_mailbox_maps =
virtual_transport = {transport}
recipient_delimiter = +
# short retry times: a deferred message is retried within seconds
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
# no DNS anywhere: the client's name is not looked up
smtpd_peername_lookup = no
smtputf8_enable = yes
biff = no
maillog_file = {tmp}/maillog
maillog_file_prefixes = {tmp}
"""

# Only the services this setup uses; no chroot (the LMTP socket path is then
# the real path, not one under queue_directory).
MASTER_CF = """\
# written by tests/integration/postfix_server.py
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n  -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

START_TIMEOUT = 30.0


class PostfixError(Exception):
    pass


def available():
    """None if a private Postfix can run here, else why not."""
    if not os.access(POSTFIX, os.X_OK):
        return "Postfix is not installed (tools/setup-deps.sh installs it)"
    if os.geteuid() != 0:
        return "a private Postfix must be started as root (its daemons become mail_owner)"
    try:
        import pwd
        pwd.getpwnam("postfix")
    except KeyError:
        return "no user 'postfix' (the Debian package makes it)"
    return None


def open_to_postfix(path):
    """Postfix's daemons run as the postfix user: every directory above
    path must be searchable by it."""
    p = os.path.abspath(path)
    while True:
        st = os.stat(p)
        if not st.st_mode & 0o001:
            raise PostfixError("%s is not searchable by others (mode %o): Postfix's "
                               "daemons (user postfix) cannot reach %s"
                               % (p, st.st_mode & 0o777, path))
        if p == "/":
            return
        p = os.path.dirname(p)


class Postfix:
    """One private Postfix instance: config, queue and log under its own
    temp dir; SMTP on a free loopback port."""

    def __init__(self, domain, transport, hostname="mx.ringmail.test", name="postfix",
                 main_extra=None, transport_maps=None):
        self.domain = domain
        self.transport = transport
        self.hostname = hostname
        self.main_extra = dict(main_extra or {})
        if transport_maps:
            self.main_extra["transport_maps"] = transport_maps
        self.tmp = tempfile.mkdtemp(prefix=name + ".", dir=rs.scratch_base())
        os.chmod(self.tmp, 0o755)
        try:
            open_to_postfix(self.tmp)
        except PostfixError:
            # a private scratch dir: Postfix's own files go to /tmp instead
            os.rmdir(self.tmp)
            self.tmp = tempfile.mkdtemp(prefix=name + ".", dir="/tmp")
            os.chmod(self.tmp, 0o755)
        self.config_dir = os.path.join(self.tmp, "etc")
        self.queue_dir = os.path.join(self.tmp, "queue")
        self.maillog = os.path.join(self.tmp, "maillog")
        os.mkdir(self.config_dir, 0o755)
        # Postfix chdirs into the queue before it creates what is missing in
        # it (`postfix check` makes the subdirectories with their owners)
        os.mkdir(self.queue_dir, 0o755)
        self.port = None
        self.running = False

    # -- configuration --

    def write_config(self):
        main = MAIN_CF.format(tmp=self.tmp, hostname=self.hostname, domain=self.domain,
                              transport=self.transport)
        for k, v in self.main_extra.items():
            # replace the template's line (Postfix warns about a parameter
            # set twice, and `check` must be clean), else add one
            line = "%s = %s" % (k, v)
            main, n = re.subn(r"(?m)^%s =.*$" % re.escape(k), lambda _m: line, main)
            if not n:
                main += line + "\n"
        for name, text in (("main.cf", main), ("master.cf", MASTER_CF.format(port=self.port))):
            with open(os.path.join(self.config_dir, name), "w") as f:
                f.write(text)

    def run(self, *args, check=True, timeout=60):
        p = subprocess.run(list(args), capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        out = (p.stdout + p.stderr).decode(errors="replace")
        if check and p.returncode != 0:
            raise PostfixError("%s: exit %d\n%s\n--- maillog ---\n%s" % (
                " ".join(args), p.returncode, out, self.log_text()[-4000:]))
        return out

    def postfix(self, *args, check=True):
        return self.run(POSTFIX, "-c", self.config_dir, *args, check=check)

    def check(self):
        """`postfix check`: creates the missing queue directories with their
        owners and reports what is wrong.  Passing means exit status 0 and
        not one warning."""
        out = self.postfix("check")
        bad = [ln for ln in out.splitlines() if re.search(r"\b(warning|fatal|error):", ln)]
        if bad:
            raise PostfixError("postfix -c %s check: %s" % (self.config_dir, "\n".join(bad)))
        return out

    # -- process --

    def master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        last = None
        for _attempt in range(3):            # a picked port can be taken meanwhile
            self.port = rs.free_port()
            self.write_config()
            self.check()
            log_at = len(self.log_text())
            out = self.postfix("start", check=False)
            if self.master_pid() is None or "fatal" in out.lower():
                last = out
                self.running = True         # stop whatever did start
                self.stop()
                if "address already in use" in self.log_text().lower():
                    continue
                raise PostfixError("postfix start failed:\n%s\n--- maillog ---\n%s"
                                   % (out, self.log_text()[-4000:]))
            self.running = True
            deadline = time.monotonic() + START_TIMEOUT
            taken = False
            while time.monotonic() < deadline:
                try:
                    s = smtplib.SMTP("127.0.0.1", self.port, timeout=5)
                    s.quit()
                    return self
                except (OSError, smtplib.SMTPException) as e:
                    last = e
                    # the master took the port only after `postfix start`
                    # returned, and someone else had it by then: pick again
                    if "address already in use" in self.log_text()[log_at:].lower():
                        taken = True
                        break
                    time.sleep(0.05)
            self.stop()
            if taken:
                continue
            raise PostfixError("Postfix's smtpd did not answer on port %d: %s\n%s"
                               % (self.port, last, self.log_text()[-4000:]))
        raise PostfixError("Postfix could not bind a free port: %s" % last)

    def stop(self):
        """`postfix stop`, then wait for the master to be gone."""
        if not self.running:
            return
        pid = self.master_pid()
        self.postfix("stop", check=False)
        self.running = False
        deadline = time.monotonic() + 15
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        if pid:
            raise PostfixError("Postfix's master (pid %d) still runs after postfix stop" % pid)

    def cleanup(self):
        try:
            self.stop()
        finally:
            if not rs.KEEP:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the queue --

    def flush(self):
        """`postqueue -f`: deliver the deferred mail now (the queue manager
        also forgets which destinations it found dead)."""
        return self.run(POSTQUEUE, "-c", self.config_dir, "-f")

    def queue(self):
        """The queue as `postqueue -j` lists it: one dict per message."""
        out = self.run(POSTQUEUE, "-c", self.config_dir, "-j")
        return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]

    def sendmail(self, sender, rcpts, data):
        """Local submission (sendmail -> postdrop -> pickup): the message is
        queued without smtpd's recipient checks, so what happens to it is
        decided by the queue manager and the address resolver."""
        p = subprocess.run([SENDMAIL, "-C", self.config_dir, "-i", "-f", sender, "--"]
                           + list(rcpts), input=data, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise PostfixError("sendmail: exit %d: %s" % (
                p.returncode, (p.stdout + p.stderr).decode(errors="replace")))

    # -- the log --

    def log_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log_lines(self, pattern, since=0):
        """The maillog lines (from byte offset since) that match pattern."""
        text = self.log_text().encode()[since:].decode("utf-8", "replace")
        rx = re.compile(pattern)
        return [ln for ln in text.splitlines() if rx.search(ln)]

    def wait_log(self, pattern, since=0, count=1, timeout=20.0):
        """Wait until count lines match pattern; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.log_lines(pattern, since)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("Postfix logged %d of %d lines matching %r within "
                                     "%.0f s; maillog since the test began:\n%s"
                                     % (len(got), count, pattern, timeout,
                                        self.log_text().encode()[since:][-6000:]
                                        .decode("utf-8", "replace")))
            time.sleep(0.02)

    # -- SMTP --

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.ringmail.test",
                         timeout=30)
        s.ehlo()
        return s

    def submit(self, sender, rcpts, data, mail_options=()):
        """One SMTP transaction: ({rcpt: (code, text)} of the refused
        recipients, Postfix's queue id from its 250 after the data)."""
        s = self.smtp()
        try:
            code, resp = s.mail(sender, list(mail_options))
            if code != 250:
                raise PostfixError("MAIL FROM: %d %s" % (code, resp))
            refused = {}
            for r in rcpts:
                code, resp = s.rcpt(r)
                if code not in (250, 251):
                    refused[r] = (code, resp.decode(errors="replace"))
            if len(refused) == len(rcpts):
                return refused, None
            code, resp = s.data(data)
            if code != 250:
                raise PostfixError("DATA: %d %s" % (code, resp))
            m = re.search(rb"queued as ([0-9A-Za-z]+)", resp)
            if not m:
                raise PostfixError("no queue id in %r" % resp)
            s.quit()
            return refused, m.group(1).decode()
        finally:
            s.close()


def lmtp_socket_dir():
    """A directory for ringmaild's LMTP socket that Postfix (group postfix)
    may enter and nobody else: root:postfix, mode 0750."""
    import grp
    d = tempfile.mkdtemp(prefix="lmtp-postfix-", dir="/tmp")
    os.chown(d, 0, grp.getgrnam("postfix").gr_gid)
    os.chmod(d, 0o750)
    return d

