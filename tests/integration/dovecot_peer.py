"""A private Dovecot (dovecot-imapd from apt) for the tests and scripts
that compare with it or read what it writes: its own configuration and
files in a directory of the system's temp dir, loopback ports only, never
the system's instance; stopped and removed afterwards (kept with
RINGMAIL_KEEP=1).  Needs root: its mail processes run as nobody.

The directory is in the system's temp dir, not the tests' scratch dir:
Dovecot's auth and mail processes run as other users and must traverse
every parent, and a checkout may sit under a 0700 directory (mktemp -d).

Each user of it gives the part of the configuration that is its own (the
mail location, namespaces, more passdbs); the rest is here."""

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import ringmail_server as rs

BASE_CONF = """
instance_name = ringmail-{tag}-{id}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
first_valid_gid = 1
mail_home = {d}/mail/%u
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
  default_fields = uid={uid} gid={gid} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
{imaps}
}}
"""


class PrivateDovecot:
    """Its directory (run, state, mail owned by nobody), a passwd-file for
    `users` ({name: password}), a certificate for localhost when tls (then
    STARTTLS on .port and implicit TLS on .sport), and `conf`: the user's
    part of the configuration, a format string that may name {d}, {uid},
    {gid}.  start() may be called again after stop()."""

    def __init__(self, tag, users, conf, tls=False, d=None):
        self.tag, self.conf_part, self.tls = tag, conf, tls
        self.uid = pwd.getpwnam("nobody").pw_uid
        self.gid = grp.getgrnam("nogroup").gr_gid
        self.d = d or tempfile.mkdtemp(prefix="dovecot-%s." % tag)
        self.cert = os.path.join(self.d, "cert.pem")
        self.port = self.sport = None
        if d is None:
            os.chmod(self.d, 0o755)
            for sub in ("run", "state", "mail"):
                os.makedirs(os.path.join(self.d, sub))
            os.chown(os.path.join(self.d, "mail"), self.uid, self.gid)
            if tls:
                rs.make_cert(self.cert, os.path.join(self.d, "key.pem"), "localhost")
            with open(os.path.join(self.d, "passwd"), "w") as f:
                for user, password in users.items():
                    f.write("%s:{PLAIN}%s:%d:%d::%s/mail/%s::\n" % (
                        user, password, self.uid, self.gid, self.d, user))

    def start(self):
        self.port, h1 = rs.reserve_port()
        self.sport, h2 = rs.reserve_port() if self.tls else (0, None)
        h1.close()
        if h2:
            h2.close()
        fmt = dict(tag=self.tag, id=os.getpid(), d=self.d, uid=self.uid, gid=self.gid,
                   port=self.port, sport=self.sport)
        fmt["ssl"] = ("ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem"
                      .format(d=self.d) if self.tls else "ssl = no")
        fmt["imaps"] = ("  inet_listener imaps {\n    address = 127.0.0.1\n    port = %d\n"
                        "    ssl = yes\n  }" % self.sport if self.tls
                        else "  inet_listener imaps {\n    port = 0\n  }")
        self.conf = os.path.join(self.d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(BASE_CONF.format(**fmt) + self.conf_part.format(**fmt))
        subprocess.run(["dovecot", "-c", self.conf], check=True)
        for _ in range(100):
            try:
                rs.Imap("127.0.0.1", self.port).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not listen on %d" % self.port)

    def stop(self):
        """SIGTERM to its master, and wait until it has gone."""
        try:
            with open(os.path.join(self.d, "run", "master.pid")) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 15)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except OSError:
            pass

    def cleanup(self):
        PrivateDovecot.stop(self)   # not a subclass's stop, which may clean up
        if os.environ.get("RINGMAIL_KEEP"):
            print("dovecot dir kept: %s" % self.d)
        else:
            shutil.rmtree(self.d, ignore_errors=True)
