"""A private nginx mail proxy in front of ringmaild backends, for
test_nginx_proxy.py and bench/proxy_cost.py.

Debian's nginx with libnginx-mod-mail (tools/setup-deps.sh), run as
`nginx -p TMP -c TMP/nginx.conf -e TMP/error.log -g 'daemon off;'`: its own
configuration, pid file, logs and ports under a temp dir, on loopback; the
system's nginx and /etc/nginx are never used.  The configuration is the one
README "More than one machine" shows:

    load_module /usr/lib/nginx/modules/ngx_mail_module.so;
    mail {
        auth_http 127.0.0.1:AUTH/auth;      # ringmaild's listen_auth_http
        proxy_pass_error_message on;
        proxy_protocol on;                  # the backends' listen_proxy
        ssl_certificate ...; ssl_certificate_key ...;
        server { listen 127.0.0.1:X; protocol imap; starttls on; }
        server { listen 127.0.0.1:Y ssl; protocol imap; }
    }
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import ringmail_server as rs

MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


def nginx_binary():
    """The nginx program, or None (with why) when it or its mail module is
    missing."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                    else None)
    if not exe:
        return None, "nginx is not installed (Debian package nginx; tools/setup-deps.sh)"
    if not os.path.exists(MAIL_MODULE):
        return None, ("%s is missing (Debian package libnginx-mod-mail; "
                      "tools/setup-deps.sh)" % MAIL_MODULE)
    return exe, None


class Nginx:
    """One nginx mail proxy: IMAP with STARTTLS on self.port, IMAPS on
    self.tls_port, asking auth_http at 127.0.0.1:auth_port."""

    def __init__(self, auth_port, proxy_protocol=True, name="nginx", proxy_buffer=None):
        self.exe, why = nginx_binary()
        if not self.exe:
            raise rs.ServerError(why)
        self.tmp = tempfile.mkdtemp(prefix=name + ".", dir=rs.scratch_base())
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        rs.make_cert(self.cert, self.key, "localhost")
        self.auth_port = auth_port
        self.proxy_protocol = proxy_protocol
        self.proxy_buffer = proxy_buffer
        self.conf = os.path.join(self.tmp, "nginx.conf")
        self.error_log = os.path.join(self.tmp, "error.log")
        self.proc = None
        self.port = self.tls_port = None
        self.holds = []

    def write_conf(self):
        with open(self.conf, "w") as f:
            f.write("""# written by tests/integration/nginx_proxy.py
load_module %(module)s;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log info;
events { worker_connections 4096; }
mail {
    server_name localhost;
    auth_http 127.0.0.1:%(auth)d/auth;
    auth_http_timeout 30s;
    proxy_pass_error_message on;
    %(pp)s
    %(pb)s
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    server {
        listen 127.0.0.1:%(port)d;
        protocol imap;
        starttls on;
    }
    server {
        listen 127.0.0.1:%(tls_port)d ssl;
        protocol imap;
    }
}
""" % {"module": MAIL_MODULE, "tmp": self.tmp, "auth": self.auth_port,
       "pp": "proxy_protocol on;" if self.proxy_protocol else "",
       "pb": "proxy_buffer %s;" % self.proxy_buffer if self.proxy_buffer else "",
       "cert": self.cert, "key": self.key, "port": self.port, "tls_port": self.tls_port})

    def start(self):
        for h in self.holds:
            h.close()
        self.port, self.tls_port = rs.free_port(), rs.free_port()
        self.write_conf()
        self.log = open(os.path.join(self.tmp, "nginx.stderr"), "ab")
        self.proc = subprocess.Popen([self.exe, "-p", self.tmp + "/", "-c", self.conf,
                                      "-e", self.error_log, "-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise rs.ServerError("nginx exited with %d at start:\n%s"
                                     % (self.proc.returncode, self.logs()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise rs.ServerError("nginx did not listen within 10 s:\n" + self.logs())

    def logs(self, limit=6000):
        out = ""
        for p in (os.path.join(self.tmp, "nginx.stderr"), self.error_log):
            try:
                with open(p, "rb") as f:
                    out += f.read()[-limit:].decode(errors="replace")
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGQUIT)    # graceful
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait()
        self.proc = None
        self.log.close()

    def cleanup(self):
        self.stop()
        if not rs.KEEP:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Cluster:
    """n ringmaild backends sharing one passwd-file whose users carry
    host=127.0.0.1 port=<their backend's port>; backend 0 also serves
    listen_auth_http; nginx in front.  users: {name: (password, backend
    index)}; scheme: the passwd-file's hash scheme (PLAIN, or a line's
    secret as written when it starts with '{')."""

    def __init__(self, backend, users, n=3, proxy_protocol=True, options=None,
                 auth_options=None, proxy_buffer=None):
        self.proxy_buffer = proxy_buffer
        self.users = dict(users)
        self.proxy_protocol = proxy_protocol
        self.auth_port, self.auth_hold = rs.reserve_port()
        self.servers = []
        self.proxy_ports = []
        self.shared_dir = tempfile.mkdtemp(prefix="cluster.", dir=rs.scratch_base())
        self.passwd = os.path.join(self.shared_dir, "passwd")
        with open(self.passwd, "w") as f:
            f.write("")
        for i in range(n):
            opts = {"max_connections_per_user": "1000"}
            opts.update(options or {})
            if proxy_protocol:
                # nginx's connections to a backend start with a PROXY
                # header: a listener of their own (listen_proxy), only
                # from nginx's address (proxy_protocol_from)
                pport, hold = rs.reserve_port()
                self.proxy_ports.append((pport, hold))
                opts.update({"listen_proxy": "127.0.0.1:%d" % pport,
                             "proxy_protocol_from": "127.0.0.1/32"})
            if i == 0:
                opts["listen_auth_http"] = "127.0.0.1:%d" % self.auth_port
                opts.update(auth_options or {})
            s = rs.Server(backend, {}, opts, name="backend%d" % i)
            s.passwd = self.passwd
            self.servers.append(s)
        self.nginx = None

    def imap_port(self, i):
        """The port nginx is to send backend i's users to."""
        return self.proxy_ports[i][0] if self.proxy_protocol else self.servers[i].port

    def write_passwd(self):
        lines = []
        for name, (pw, i) in sorted(self.users.items()):
            secret = pw if pw.startswith("{") else "{PLAIN}" + pw
            lines.append("%s:%s::::::host=127.0.0.1 port=%d" % (name, secret,
                                                                self.imap_port(i)))
        tmp = self.passwd + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.passwd)

    def start(self):
        try:
            for s in self.servers:
                s.start()
            self.write_passwd()
            self.nginx = Nginx(self.auth_port, self.proxy_protocol,
                               proxy_buffer=self.proxy_buffer).start()
        except Exception:
            self.cleanup()
            raise
        return self

    def backend_of(self, user):
        return self.servers[self.users[user][1]]

    def stop(self):
        rcs = [s.stop() for s in self.servers]
        if self.nginx:
            self.nginx.stop()
        return rcs

    def cleanup(self):
        if self.nginx:
            self.nginx.cleanup()
        for s in self.servers:
            s.cleanup()
        self.auth_hold.close()
        for _, h in self.proxy_ports:
            h.close()
        if not rs.KEEP:
            shutil.rmtree(self.shared_dir, ignore_errors=True)
