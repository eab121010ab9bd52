"""Private directory servers for the tests: an OpenLDAP slapd and a
PostgreSQL cluster, each in its own temp dir, on a free loopback port,
started and stopped by the test (never the system's instance, nothing
under /etc is written; the system's schema files are read).

    ldap = Slapd(users).start()      # ldap.uri, ldap.base, ldap.bind_dn, ...
    pg = Postgres(users).start()     # pg.conninfo
    ... ldap.stop() / ldap.kill() / ldap.pause() / ldap.resume() / ldap.stop_for_good()

users: {name: dict(password=SECRET_AS_STORED, host=..., port=..., quota=...)}
where SECRET_AS_STORED is the userPassword / password column value, e.g.
"{SSHA}..." (ssha()), "{SHA512-CRYPT}$6$..." or "{PLAIN}x" (LDAP: the
passwords for ldap_auth = bind are whatever slapd can check: {SSHA}).

The LDAP schema the README describes: inetOrgPerson entries under
ou=people,dc=example,dc=org with uid, userPassword and the auxiliary class
ringmailUser (mailHost, mailPort, mailQuota; private OIDs).  The SQL:
users(name, password, host, port, quota_rule).
"""

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
PG_BIN = "/usr/lib/postgresql/15/bin"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

BASE = "dc=example,dc=org"
BIND_DN = "cn=ringmail," + BASE
BIND_PW = "service-secret"


def ssha(password, salt=b"s4lt!"):
    """{SSHA} as slappasswd writes it."""
    h = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(h + salt).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_process(pid, timeout=5.0):
    """SIGSTOP pid and wait until every one of its threads is stopped: the
    signal is only queued when kill() returns, and a test that goes on at
    once may still be answered by a thread that has not stopped yet."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = []
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            return
        if all(st in ("T", "t") for st in states):
            return
        time.sleep(0.005)
    raise RuntimeError("process %d did not stop" % pid)


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def slapd_missing():
    """None if a private slapd can run here, else why not."""
    for p in (SLAPD, SLAPADD, os.path.join(SCHEMA_DIR, "inetorgperson.ldif"),
              os.path.join(MODULE_DIR, "back_mdb.so")):
        if not os.path.exists(p):
            return "%s missing (apt-get install slapd)" % p
    return None


def postgres_missing():
    for p in ("initdb", "pg_ctl", "postgres", "psql"):
        if not os.path.exists(os.path.join(PG_BIN, p)) and not shutil.which(p):
            return "%s missing (apt-get install postgresql)" % p
    return None


RINGMAIL_SCHEMA = """dn: cn=ringmail,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: ringmail
olcAttributeTypes: ( 1.3.6.1.4.1.99999.42.1.1 NAME 'mailHost' DESC 'IMAP backend holding the user' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.42.1.2 NAME 'mailPort' DESC 'its IMAP port' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.42.1.3 NAME 'mailQuota' DESC 'Dovecot quota rule, e.g. *:storage=1G' EQUALITY caseExactIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.99999.42.2.1 NAME 'ringmailUser' DESC 'a mail user' SUP top AUXILIARY MAY ( mailHost $ mailPort $ mailQuota ) )
"""


class Slapd:
    def __init__(self, users, tmp_base=None):
        self.users = users
        self.dir = tempfile.mkdtemp(prefix="slapd-", dir=tmp_base)
        self.conf_dir = os.path.join(self.dir, "slapd.d")
        self.db_dir = os.path.join(self.dir, "db")
        os.makedirs(self.conf_dir)
        os.makedirs(self.db_dir)
        self.port = free_port()
        self.uri = "ldap://127.0.0.1:%d/" % self.port
        self.base = BASE
        self.bind_dn = BIND_DN
        self.bind_pw = BIND_PW
        self.proc = None
        self.log = os.path.join(self.dir, "slapd.log")
        self._configure()

    def _run(self, args, data=None):
        p = subprocess.run(args, input=data, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                     p.stderr))

    def _configure(self):
        schemas = ""
        for name in ("core", "cosine", "inetorgperson"):
            with open(os.path.join(SCHEMA_DIR, name + ".ldif")) as f:
                schemas += "\n" + f.read().strip() + "\n"
        config = """dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {dir}/slapd.pid

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {mods}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema
{schemas}
{ringmail}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {base}
olcDbDirectory: {db}
olcRootDN: cn=admin,{base}
olcRootPW: admin-secret
olcDbMaxSize: 16777216
olcAccess: {{0}}to attrs=userPassword by dn.exact="{bind}" read by anonymous auth by * none
olcAccess: {{1}}to attrs=mailHost,mailPort by dn.exact="{bind}" write by * read
olcAccess: {{2}}to * by dn.exact="{bind}" read by anonymous read by self read by * none
""".format(dir=self.dir, mods=MODULE_DIR, schemas=schemas, ringmail=RINGMAIL_SCHEMA,
           base=BASE, db=self.db_dir, bind=BIND_DN)
        # slapadd wants each entry once, blank-line separated
        self._run([SLAPADD, "-n", "0", "-F", self.conf_dir], config)
        data = """dn: {base}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{base}
objectClass: organizationalUnit
ou: people

dn: {bind}
objectClass: person
objectClass: simpleSecurityObject
cn: ringmail
sn: service
userPassword: {bindpw}
""".format(base=BASE, bind=BIND_DN, bindpw=ssha(BIND_PW))
        for name, u in self.users.items():
            data += "\ndn: uid=%s,ou=people,%s\n" % (name, BASE)
            data += "objectClass: inetOrgPerson\nobjectClass: ringmailUser\n"
            data += "uid: %s\ncn: %s\nsn: %s\n" % (name, name, name)
            if u.get("password"):
                data += "userPassword: %s\n" % u["password"]
            for attr, key in (("mailHost", "host"), ("mailPort", "port"), ("mailQuota", "quota")):
                if u.get(key) is not None:
                    data += "%s: %s\n" % (attr, u[key])
        self._run([SLAPADD, "-n", "1", "-F", self.conf_dir], data)

    def start(self):
        self.proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-h", self.uri, "-F", self.conf_dir],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        if not wait_port(self.port, self.proc):
            self.stop()
            with open(self.log, errors="replace") as f:
                raise RuntimeError("slapd did not start:\n" + f.read()[-3000:])
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM and wait (its data stays: start() again serves it)."""
        if self.running():
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        """SIGKILL: the directory dies mid-way."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self):
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        if self.running():
            stop_process(self.proc.pid)

    def resume(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGCONT)

    def modify(self, ldif):
        """ldapmodify as the root DN."""
        self._run(["ldapmodify", "-x", "-H", self.uri, "-D", "cn=admin," + BASE,
                   "-w", "admin-secret"], ldif)

    def search(self, filt, *attrs):
        p = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.uri, "-D", "cn=admin," + BASE,
                            "-w", "admin-secret", "-b", BASE, filt] + list(attrs),
                           capture_output=True, text=True, timeout=30)
        return p.stdout

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _as_postgres():
    """The command prefix that runs a program as postgres (initdb and the
    server refuse root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class Postgres:
    """A private cluster: initdb in a temp dir, trust authentication on
    loopback only, a Unix socket in the same dir."""

    TABLE = ("CREATE TABLE users (name text PRIMARY KEY, password text, host text, "
             "port integer, quota_rule text)")

    def __init__(self, users, tmp_base=None):
        self.users = users
        # /tmp (not the tests' scratch dir): the postgres user must reach it
        self.dir = tempfile.mkdtemp(prefix="pg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.proc_log = os.path.join(self.dir, "pg.log")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._pg(["initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = off\n"
                    "shared_buffers = 16MB\nmax_connections = 40\n" % (self.port, self.dir))
        self.conninfo = "host=127.0.0.1 port=%d dbname=postgres user=postgres" % self.port
        self.pid = None
        self._loaded = False

    def _pg(self, args, check=True):
        exe = os.path.join(PG_BIN, args[0])
        p = subprocess.run(_as_postgres() + [exe] + args[1:], capture_output=True, text=True,
                           timeout=120, cwd=self.dir)
        if check and p.returncode != 0:
            raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                     p.stderr))
        return p

    def psql(self, sql):
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-At",
                            "-c", sql], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("psql: %s\n%s" % (sql, p.stderr))
        return p.stdout

    def start(self):
        self._pg(["pg_ctl", "-D", self.data, "-l", self.proc_log, "-w", "-t", "60", "start"])
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        if not self._loaded:
            self.psql(self.TABLE)
            for name, u in self.users.items():
                self.insert(name, u)
            self._loaded = True
        return self

    @staticmethod
    def _lit(v):
        if v is None:
            return "NULL"
        if isinstance(v, int):
            return str(v)
        return "'" + str(v).replace("'", "''") + "'"

    def insert(self, name, u):
        self.psql("INSERT INTO users VALUES (%s, %s, %s, %s, %s)" % tuple(
            self._lit(x) for x in (name, u.get("password"), u.get("host"), u.get("port"),
                                   u.get("quota"))))

    def stop(self):
        if self.pid:
            self.resume()
            self._pg(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"], check=False)
        self.pid = None

    def pause(self):
        if self.pid:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self):
        if self.pid:
            os.kill(self.pid, signal.SIGCONT)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
