#!/usr/bin/env python3
"""ringmaild against the formal syntax of RFC 9051 / RFC 3501 (section 9)
and the examples of every extension it advertises: table-driven, one table
per area, over a socket.

Each row names the command and the answer the RFC fixes: the tagged status
(OK / NO / BAD, with the response code where the RFC names one) and, where
the RFC fixes them, the untagged responses.  The expectations come from the
RFC text, not from what the server answers today; where the RFC leaves a
choice the row says which one Ringmail takes (and what Dovecot 2.3 answers).

Areas:
- NAMES: every printable ASCII character in a mailbox name, as a quoted
  string, a synchronizing literal, a LITERAL+ literal and (where the
  character is an ASTRING-CHAR) an atom, through CREATE, LIST, SELECT
  (an empty mailbox), STATUS, RENAME and DELETE; atom-specials in atom
  form are BAD.
- NIL: NIL where the grammar has an astring (it is the atom "NIL": a
  mailbox, a keyword, a search string, a header name, a charset), where it
  has an nstring (ID), and where neither (BAD).
- LITERALS: synchronizing and LITERAL+ literals in every astring position;
  a literal8 anywhere but APPEND's message is BAD (RFC 3516 9, RFC 9051 9:
  literal8 is only append-data).
- SEQUENCE SETS: 0, 4294967295, 4294967296, reversed ranges, '*', sets with
  gaps in the UIDs, an empty mailbox.
- ARGUMENT COUNTS: each command with its arguments, one fewer and one more.
- EXTENSIONS: the examples of ENABLE, ID, NAMESPACE, UNSELECT, UIDPLUS,
  MOVE, CHILDREN, SPECIAL-USE, CREATE-SPECIAL-USE, LIST-EXTENDED,
  LIST-STATUS, ESEARCH, SEARCHRES, STATUS=SIZE, BINARY, UTF8=ACCEPT,
  MULTIAPPEND, APPENDLIMIT, SASL-IR, IDLE, IMAP4rev2.
- CONDSTORE (RFC 7162 3.1): ENABLE, SELECT/EXAMINE (CONDSTORE), FETCH
  MODSEQ, CHANGEDSINCE, STORE UNCHANGEDSINCE with [MODIFIED], SEARCH MODSEQ
  with entry names, STATUS HIGHESTMODSEQ, and bad syntax of each.
- QRESYNC (RFC 7162 3.2): ENABLE, SELECT/EXAMINE (QRESYNC ...) with every
  form of uidvalidity, mod-sequence, known-uids and seq-match-data, UID
  FETCH (CHANGEDSINCE n VANISHED) and its errors, VANISHED instead of
  EXPUNGE after EXPUNGE, UID EXPUNGE and MOVE, [CLOSED], HIGHESTMODSEQ in
  the tagged OK.
- COMPRESS (RFC 4978): before authentication, twice, unknown mechanisms,
  on cleartext and inside TLS.
- QUOTA (RFC 9208 4, 7): GETQUOTA, GETQUOTAROOT, SETQUOTA without QUOTASET,
  STATUS DELETED and DELETED-STORAGE, and bad syntax of each.
- OBJECTID (RFC 8474) and SAVEDATE (RFC 8514): MAILBOXID in CREATE,
  SELECT/EXAMINE and STATUS, FETCH EMAILID/THREADID/SAVEDATE, their SEARCH
  keys, against section 7 and section 5 of the RFCs, and bad syntax of each
  (stability: test_imap_objectid.py).

Runs once per io backend."""

import base64
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


def msg(subject="test", extra=b"", body=b"Body.\r\n"):
    return (b"From: Sender <s@example.com>\r\nTo: r@example.org\r\nSubject: "
            + subject.encode() + b"\r\n" + extra + b"Message-ID: <c@example.com>\r\n\r\n" + body)


# RFC 9051 9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials; ASTRING-CHAR = ATOM-CHAR / resp-specials.
# '%', '*' (list-wildcards) and '\' (quoted-specials) are accepted in atoms
# by Ringmail, as by Dovecot 2.3: see docs/server-design-notes.md, "Known
# deviations"; they are left out of the atom rows.
ATOM_BAD = set('(){ "')
ATOM_LENIENT = set('%*\\')

# Hierarchy delimiter (NAMESPACE, LIST): a '/' in a name makes a child.
DELIM = "/"


def literal_form(text, plus):
    data = text.encode("utf-8")
    return b"{%d%s}\r\n" % (len(data), b"+" if plus else b"") + data


class Conn:
    """Sends commands whose arguments may be synchronizing literals: the
    parts of `cmd` alternate text and literal data (bytes); a literal is
    sent after the server's continuation."""

    def __init__(self, case, c):
        self.case = case
        self.c = c

    def run(self, *parts):
        if len(parts) == 1:
            return self.c.cmd(parts[0])
        return self.c.cmd_lit(*parts)


def status_items(res):
    """{ITEM: number} of the one STATUS response (RFC 9051 7.3.4 fixes no
    order)."""
    st = res.of("STATUS")
    assert len(st) == 1, res.describe()
    v = rs.upper(st[0].items()[2])
    return dict(zip(v[::2], v[1::2]))


STATUS_RE = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: (\[[^\]]*(?:\[[^\]]*\][^\]]*)*\])?(.*))?$",
                       re.I | re.S)


def response_problems(transcript):
    """What the RFC 3501 9 response grammar rejects in a transcript: a
    status response without text (resp-text = ["[" resp-text-code "]" SP]
    text, and text = 1*TEXT-CHAR), and a FETCH without a msg-att."""
    out = []
    for line in transcript:
        if not line.startswith(b"S: ") or len(line) >= 500:
            continue
        raw = line[3:]
        m = STATUS_RE.match(raw)
        if m:
            text = m.group(4) or b""
            if m.group(3) and not text.startswith(b" "):
                out.append("no SP after the response code: %r" % raw)
            elif not text.strip():
                out.append("no text in a status response: %r" % raw)
        if re.match(rb"^\* \d+ FETCH \(\)", raw):
            out.append("FETCH without a msg-att: %r" % raw)
    return out


class Base(rs.ServerTestCase):

    def tearDown(self):
        problems = []
        for c in self.conns:
            problems += response_problems(c.transcript)
        super().tearDown()
        self.assertEqual(problems, [], "responses outside the grammar")

    def check(self, res, status, code=None, what=""):
        return self.expect(res, status, code, msg=what)

    def untagged_of(self, res, kind):
        return [r for r in res.untagged if r.kind() == kind]

    def list_names(self, res):
        out = []
        for r in self.untagged_of(res, "LIST"):
            out.append(rs.s(r.items()[3]))
        return out


# ---------------------------------------------------------------------------
# NAMES

class Names(Base):

    def name_forms(self, name):
        """(label, parts for run()) of every way to send the astring name."""
        forms = [("quoted", (quote(name),)),
                 ("literal+", (literal_form(name, True),)),
                 ("literal", ("", name.encode("utf-8"), ""))]
        if not (set(name) & (ATOM_BAD | ATOM_LENIENT)):
            forms.append(("atom", (name,)))
        return forms

    def send(self, c, verb, form, after=""):
        """verb + one mailbox argument in the given form + after."""
        parts = form[1]
        if len(parts) == 1:
            p = parts[0]
            if isinstance(p, str):
                p = p.encode("utf-8")
            return c.cmd(verb.encode() + b" " + p + after.encode())
        return c.cmd_lit(verb + " ", parts[1], after)

    def test_every_printable_character(self):
        """RFC 9051 5.1: any printable ASCII character may be in a name
        ('&' as "&-", RFC 3501 5.1.3); '/' is the hierarchy delimiter.
        Each form of the astring reaches the same mailbox."""
        c = self.login()
        chars = [chr(o) for o in range(0x20, 0x7F) if chr(o) != DELIM]
        for ch in chars:
            name = "n" + ("&-" if ch == "&" else ch) + "x"
            for label, parts in self.name_forms(name):
                form = (label, parts)
                what = "%s name %r" % (label, name)
                self.check(self.send(c, "CREATE", form), "OK", what=what)
                r = self.check(c.cmd("LIST \"\" " + quote(name)), "OK", what=what)
                self.assertEqual(self.list_names(r), [name], what)
                r = self.check(self.send(c, "SELECT", form), "OK", what=what)
                self.assertEqual(r.numbers("EXISTS"), [0], what)
                self.assertEqual(r.code, "READ-WRITE", what)
                self.check(c.cmd("UNSELECT"), "OK", what=what)
                r = self.check(self.send(c, "STATUS", form, " (MESSAGES UIDNEXT)"), "OK",
                               what=what)
                st = self.untagged_of(r, "STATUS")
                self.assertEqual(len(st), 1, what)
                self.assertEqual(rs.s(st[0].items()[1]), name, what)
                self.assertEqual(status_items(r), {"MESSAGES": 0, "UIDNEXT": 1}, what)
                self.check(self.send(c, "DELETE", form), "OK", what=what)
                r = self.check(c.cmd("LIST \"\" " + quote(name)), "OK", what=what)
                self.assertEqual(self.list_names(r), [], what)

    def test_atom_specials_in_atoms_are_bad(self):
        """RFC 9051 9: an atom has no atom-specials; "CREATE n(x" is not a
        command (a space splits it into two arguments)."""
        c = self.login()
        for ch in sorted(ATOM_BAD):
            self.check(c.cmd("CREATE n%sx" % ch), "BAD", what="atom with %r" % ch)
            self.check(c.cmd("NOOP"), "OK")
        r = self.check(c.cmd("LIST \"\" *"), "OK")
        self.assertEqual(self.list_names(r), ["INBOX"])

    def test_rename_between_forms(self):
        """RENAME takes two astrings: any form for either (RFC 9051 6.3.6)."""
        c = self.login()
        self.check(c.cmd('CREATE "a b]c"'), "OK")
        self.check(c.cmd_lit("RENAME ", b"a b]c", " ", b"d(e)f", ""), "OK")
        self.check(c.cmd(b"RENAME {5+}\r\nd(e)f a]b"), "OK")
        r = self.check(c.cmd('LIST "" *'), "OK")
        self.assertEqual(sorted(self.list_names(r)), ["INBOX", "a]b"])

    def test_non_ascii_names(self):
        """RFC 3501 5.1.3: non-ASCII names travel in modified UTF-7; after
        ENABLE UTF8=ACCEPT (RFC 6855 3) as UTF-8 quoted strings, and a
        modified UTF-7 name that is not canonical is refused."""
        c = self.login()
        self.check(c.cmd('CREATE "caf&AOk-"'), "OK")
        r = self.check(c.cmd('LIST "" "caf*"'), "OK")
        self.assertEqual(self.list_names(r), ["caf&AOk-"])
        self.check(c.cmd('CREATE "n&x"'), ("NO", "BAD"))
        c2 = self.login(enable="UTF8=ACCEPT")
        r = self.check(c2.cmd('LIST "" "caf*"'), "OK")
        self.assertEqual(self.list_names(r), ["café"])
        r = self.check(c2.cmd('SELECT "café"'), "OK")
        self.assertEqual(r.numbers("EXISTS"), [0])


# ---------------------------------------------------------------------------
# NIL

NIL_MSG = msg("NIL", extra=b"NIL: yes\r\n")

# (command, status, response code or None, check(res) or None, why)
NIL_ROWS = [
    # astring: NIL is the atom "NIL" (RFC 9051 9: astring = 1*ASTRING-CHAR / string)
    ("SEARCH SUBJECT NIL", "OK", None, lambda t, r: t.assertEqual(r.search(), [1]),
     "search-key SUBJECT astring"),
    ("SEARCH HEADER NIL yes", "OK", None, lambda t, r: t.assertEqual(r.search(), [1]),
     "search-key HEADER header-fld-name"),
    ("SEARCH HEADER Subject NIL", "OK", None, lambda t, r: t.assertEqual(r.search(), [1]),
     "search-key HEADER value"),
    ("SEARCH CHARSET NIL ALL", "NO", "BADCHARSET", None,
     "charset astring; RFC 9051 6.4.4: an unsupported charset is NO [BADCHARSET]"),
    ("FETCH 1 BODY.PEEK[HEADER.FIELDS (NIL)]", "OK", None,
     lambda t, r: t.assertEqual(bytes(r.fetches()[1]["BODY[HEADER.FIELDS (NIL)]"]),
                                b"NIL: yes\r\n\r\n"),
     "header-list of astrings"),
    ("STORE 1 +FLAGS (NIL)", "OK", None,
     lambda t, r: t.assertIn(None, r.fetches()[1]["FLAGS"]), "flag-keyword atom NIL"),
    ("STORE 1 -FLAGS NIL", "OK", None,
     lambda t, r: t.assertNotIn(None, r.fetches()[1]["FLAGS"]), "flag without a list"),
    ("CREATE NIL", "OK", None, None, "mailbox astring"),
    ('LIST "" NIL', "OK", None, lambda t, r: t.assertEqual(t.list_names(r), ["NIL"]),
     "list-mailbox"),
    ("LIST NIL NIL", "OK", None, lambda t, r: t.assertEqual(t.list_names(r), []),
     "reference and pattern astrings: \"NILNIL\" names nothing"),
    ("STATUS NIL (MESSAGES)", "OK", None, None, "mailbox astring"),
    ("RENAME NIL nil2", "OK", None, None, "mailbox astring"),
    ("DELETE nil2", "OK", None, None, ""),
    ("SELECT NIL", "NO", "NONEXISTENT", None, "RFC 5530: NONEXISTENT"),
    ("SELECT INBOX", "OK", None, None, ""),
    # nstring: NIL is "no value"
    ("ID NIL", "OK", None, lambda t, r: t.assertEqual(len(r.of("ID")), 1),
     "RFC 2971: id-params-list / nil"),
    ('ID ("name" NIL)', "OK", None, lambda t, r: t.assertEqual(len(r.of("ID")), 1),
     "RFC 2971: string SP nstring"),
    ("ENABLE NIL", "OK", None,
     lambda t, r: t.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED"]),
     "RFC 5161 3.1: an unknown capability is ignored"),
    # neither: BAD
    ("FETCH NIL FLAGS", "BAD", None, None, "sequence-set"),
    ("FETCH 1 NIL", "BAD", None, None, "fetch-att"),
    ("FETCH 1 (NIL)", "BAD", None, None, "fetch-att"),
    ("STORE NIL +FLAGS (\\Seen)", "BAD", None, None, "sequence-set"),
    ("STORE 1 NIL (\\Seen)", "BAD", None, None, "store-att-flags"),
    ("COPY NIL INBOX", "BAD", None, None, "sequence-set"),
    ("SEARCH NIL", "BAD", None, None, "search-key"),
    ("SEARCH SINCE NIL", "BAD", None, None, "date"),
    ("SEARCH LARGER NIL", "BAD", None, None, "number"),
    ("STATUS INBOX NIL", "BAD", None, None, "status-att list"),
    ("STATUS INBOX (NIL)", "BAD", None, None, "status-att"),
    ("UID NIL 1", "BAD", None, None, "UID command"),
    ('LIST "" * RETURN NIL', "BAD", None, None, "list-return-opts"),
    ("FETCH 1 ()", "BAD", None, None,
     "RFC 9051 9: \"(\" fetch-att *(SP fetch-att) \")\": an empty list is no fetch-att "
     "(and \"* 1 FETCH ()\" is no msg-att)"),
]


class Nil(Base):

    def test_nil_table(self):
        c = self.login()
        self.check(c.append("INBOX", NIL_MSG), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        for cmd, status, code, fn, why in NIL_ROWS:
            r = self.check(c.cmd(cmd), status, code, what="%s (%s)" % (cmd, why))
            if fn:
                fn(self, r)
        self.check(c.cmd(b"APPEND INBOX NIL {5+}\r\nx: y\r\n"), "BAD",
                   what="APPEND: NIL is neither a flag-list nor a date-time")

    def test_login_nil(self):
        """LOGIN userid/password are astrings: NIL is the name "NIL"."""
        self.server.add_users({"NIL": "nil-secret"})
        c = self.connect()
        self.check(c.cmd('LOGIN NIL "nil-secret"'), "OK")

    def test_envelope_nil(self):
        """RFC 9051 7.5.2: absent fields are NIL; Sender and Reply-To absent
        take the From value."""
        c = self.login()
        self.check(c.append("INBOX", b"From: a@b.c\r\n\r\nx\r\n"), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        r = self.check(c.cmd("FETCH 1 ENVELOPE"), "OK")
        env = rs.s(r.fetches()[1]["ENVELOPE"])
        addr = [[None, None, "a", "b.c"]]
        self.assertEqual(env, [None, None, addr, addr, addr, None, None, None, None, None])


    def test_envelope_groups(self):
        """RFC 9051 7.5.2: a group is an address with NIL host (its name in
        the mailbox field), ended by (NIL NIL NIL NIL); a display name with
        a comma stays one string; encoded words are sent as they are."""
        c = self.login()
        m = (b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nFrom: \"Doe, John\" <j@d.com>\r\n"
             b"To: undisclosed-recipients:;\r\nCc: grp: a@b.c, d@e.f;, x@y.z\r\n"
             b"Subject: =?utf-8?q?caf=C3=A9?=\r\nIn-Reply-To: <a@b>\r\n"
             b"Message-ID: <m@d.com>\r\n\r\nhi\r\n")
        self.check(c.append("INBOX", m), "OK")
        self.check(c.cmd("EXAMINE INBOX"), "OK")
        r = self.check(c.cmd("FETCH 1 ENVELOPE"), "OK")
        env = rs.s(r.fetches()[1]["ENVELOPE"])
        john = [["Doe, John", None, "j", "d.com"]]
        end = [None, None, None, None]
        self.assertEqual(env, [
            "Mon, 1 Jan 2024 12:00:00 +0000", "=?utf-8?q?caf=C3=A9?=", john, john, john,
            [[None, None, "undisclosed-recipients", None], end],
            [[None, None, "grp", None], [None, None, "a", "b.c"], [None, None, "d", "e.f"], end,
             [None, None, "x", "y.z"]],
            None, "<a@b>", "<m@d.com>"])


# ---------------------------------------------------------------------------
# LITERALS

# Rows: (before, astring text, after, status, code, state); the astring is
# sent as a synchronizing literal, a LITERAL+ literal and a literal8.
# state: "auth" (logged in, nothing selected) or "sel" (INBOX selected, one
# message with Subject "lit").
LIT_ROWS = [
    ("SELECT ", "INBOX", "", "OK", None, "auth"),
    ("EXAMINE ", "INBOX", "", "OK", None, "auth"),
    ("STATUS ", "INBOX", " (MESSAGES)", "OK", None, "auth"),
    ("SUBSCRIBE ", "INBOX", "", "OK", None, "auth"),
    ("UNSUBSCRIBE ", "INBOX", "", "OK", None, "auth"),
    ("LIST ", "", " *", "OK", None, "auth"),
    ("LIST \"\" ", "INBOX", "", "OK", None, "auth"),
    ("LSUB \"\" ", "*", "", "OK", None, "auth"),
    ("CREATE ", "lit-a", "", "OK", None, "auth"),
    ("RENAME lit-a ", "lit-b", "", "OK", None, "auth"),
    ("DELETE ", "lit-b", "", "OK", None, "auth"),
    ("SEARCH SUBJECT ", "lit", "", "OK", None, "sel"),
    ("SEARCH HEADER ", "Subject", " lit", "OK", None, "sel"),
    ("SEARCH HEADER Subject ", "lit", "", "OK", None, "sel"),
    ("SEARCH CHARSET ", "UTF-8", " ALL", "OK", None, "sel"),
    ("SEARCH TEXT ", "Body", "", "OK", None, "sel"),
    ("FETCH 1 BODY.PEEK[HEADER.FIELDS (", "Subject", ")]", "OK", None, "sel"),
    ("ID (", "name", " NIL)", "OK", None, "auth"),
    ("COPY 1 ", "INBOX", "", "OK", None, "sel"),
]


# A string (literal or quoted) where the grammar has an atom, a number, a
# sequence set or a date: BAD (RFC 9051 9).  INBOX selected, one message.
NOT_A_STRING = [
    b"FETCH {1+}\r\n1 FLAGS", b"FETCH 1 {5+}\r\nFLAGS", b"FETCH 1 ({5+}\r\nFLAGS)",
    b'FETCH 1 "FLAGS"', b"STATUS INBOX ({8+}\r\nMESSAGES)", b"SEARCH {3+}\r\nALL",
    b'SEARCH "ALL"', b"STORE 1 {6+}\r\n+FLAGS (\\Seen)", b"STORE 1 +FLAGS ({5+}\r\n\\Seen)",
    b"UID {5+}\r\nFETCH 1 FLAGS", b"{4+}\r\nNOOP", b"ENABLE {11+}\r\nUTF8=ACCEPT",
    b'ENABLE "UTF8=ACCEPT"', b'LIST "" * RETURN ({8+}\r\nCHILDREN)',
    b"SEARCH SINCE {10+}\r\n1-Jan-2020", b"SEARCH UID {1+}\r\n1", b"COPY {1+}\r\n1 INBOX",
    b'SEARCH LARGER "1"', b'FETCH "1" FLAGS',
]


class Literals(Base):

    def test_strings_where_atoms_belong(self):
        c = self.prepared("sel")
        for cmd in NOT_A_STRING:
            self.check(c.cmd(cmd), "BAD", what=cmd.decode())
        self.check(c.cmd("NOOP"), "OK")

    def prepared(self, state):
        c = self.login()
        if state == "sel":
            self.check(c.append("INBOX", msg("lit")), "OK")
            self.check(c.cmd("SELECT INBOX"), "OK")
        return c

    def run_rows(self, kind):
        conns = {}
        for before, text, after, status, code, state in LIT_ROWS:
            if state not in conns:
                conns[state] = self.prepared(state)
            c = conns[state]
            data = text.encode()
            what = "%s%s%s as %s" % (before, text, after, kind)
            if kind == "sync":
                r = c.cmd_lit(before, data, after)
                self.assertEqual(len(r.continuations), 1, what)
            elif kind == "plus":
                r = c.cmd(before.encode() + b"{%d+}\r\n" % len(data) + data + after.encode())
            else:
                r = c.cmd(before.encode() + b"~{%d+}\r\n" % len(data) + data + after.encode())
            self.check(r, status, code, what=what)
            if kind == "sync" and before.startswith("SEARCH SUBJECT"):
                self.assertEqual(r.search(), [1], what)
            if kind != "literal8" and "HEADER.FIELDS" in before:
                f = r.fetches()[1]
                self.assertEqual(bytes(list(f.values())[0]), b"Subject: lit\r\n\r\n", what)
        return conns

    def test_synchronizing_literals(self):
        """RFC 9051 4.3: a literal is a string wherever a string may be."""
        self.run_rows("sync")

    def test_literal_plus(self):
        """RFC 7888 4: {n+} is a literal wherever a literal may be."""
        self.run_rows("plus")

    def test_literal8_only_in_append(self):
        """RFC 3516 9 and RFC 9051 9: literal8 is append-data only; an
        astring is never one (Dovecot 2.3: "literal8 not allowed here").  The
        literal is still read, so the next command is understood."""
        global LIT_ROWS
        rows = LIT_ROWS
        try:
            LIT_ROWS = [(b, t, a, "BAD", None, st) for b, t, a, _, _, st in rows
                        if not b.startswith("RENAME") and not b.startswith("DELETE")]
            conns = self.run_rows("literal8")
        finally:
            LIT_ROWS = rows
        for c in conns.values():
            self.check(c.cmd("NOOP"), "OK")
        c = conns["auth"]
        r = self.check(c.cmd(b"APPEND INBOX ~{10+}\r\nSubject: b"), "OK",
                       what="literal8 as APPEND's message")
        self.check(c.cmd(b"APPEND ~{5+}\r\nINBOX {10+}\r\nSubject: b"), "BAD",
                   what="literal8 as APPEND's mailbox")
        self.assertIsNotNone(r.code_of("APPENDUID"))
        # RFC 6855 4: append-data =/ "UTF8" SP "(" literal8 ")"
        self.check(c.cmd("ENABLE UTF8=ACCEPT"), "OK")
        m = "Subject: café\r\n\r\nx\r\n".encode()
        r = self.check(c.cmd(b"APPEND INBOX (\\Seen) UTF8 (~{%d+}\r\n%s)" % (len(m), m)), "OK",
                       what="UTF8 (literal8)")
        self.check(c.cmd(b"APPEND INBOX UTF8 (~{1+}\r\nx ~{1+}\r\ny)"), "BAD",
                   what="two literal8 in UTF8 (...)")
        self.check(c.cmd(b"APPEND INBOX (~{1+}\r\nx) {5+}\r\nx: y\r\n"), "BAD",
                   what="literal8 in the flag list")
        # a synchronizing literal8 gets its continuation, then BAD
        r = c.cmd_lit("SELECT ~", b"INBOX", "")
        self.assertEqual(len(r.continuations), 1)
        self.check(r, "BAD", what="SELECT ~{5}")

    def test_login_literals(self):
        """LOGIN userid and password are astrings (RFC 9051 6.2.3)."""
        c = self.connect()
        self.check(c.cmd_lit("LOGIN ", self.user.encode(), " ", self.password.encode(), ""),
                   "OK")
        c = self.connect()
        u, p = self.user.encode(), self.password.encode()
        self.check(c.cmd(b"LOGIN {%d+}\r\n%s {%d+}\r\n%s" % (len(u), u, len(p), p)), "OK")
        c = self.connect()
        self.check(c.cmd(b"LOGIN ~{%d+}\r\n%s %s" % (len(u), u, p)), "BAD")


# ---------------------------------------------------------------------------
# SEQUENCE SETS
#
# The mailbox: UIDs 1, 3, 4 (2 expunged) at sequence numbers 1, 2, 3.
# (command, status, expected FETCH (msn, uid) pairs / SEARCH list / None, why)

SEQ_ROWS = [
    ("FETCH 1 UID", "OK", [(1, 1)], ""),
    ("FETCH 3:1 UID", "OK", [(1, 1), (2, 3), (3, 4)], "RFC 9051 9: 4:2 is 2:4"),
    ("FETCH * UID", "OK", [(3, 4)], "* is the number of messages"),
    ("FETCH *:2 UID", "OK", [(2, 3), (3, 4)], ""),
    ("FETCH 2,1,2 UID", "OK", [(1, 1), (2, 3)], "each message once"),
    ("FETCH 0 UID", "BAD", None, "nz-number"),
    ("FETCH 0:1 UID", "BAD", None, "nz-number"),
    ("FETCH 4 UID", "BAD", None, "RFC 9051 9: BAD for a number above the count"),
    ("FETCH 1:4 UID", "BAD", None, "same"),
    ("FETCH 4294967295 UID", "BAD", None, "same"),
    ("FETCH 4294967296 UID", "BAD", None, "number > 2^32-1"),
    ("FETCH 1: UID", "BAD", None, "seq-range"),
    ("FETCH :1 UID", "BAD", None, "seq-range"),
    ("FETCH 1,,2 UID", "BAD", None, "sequence-set"),
    ("FETCH 1, UID", "BAD", None, "sequence-set"),
    ("FETCH 01 UID", "BAD", None, "nz-number = digit-nz *DIGIT"),
    ("FETCH -1 UID", "BAD", None, ""),
    ("FETCH 1:2:3 UID", "BAD", None, ""),
    ("UID FETCH 1:* UID", "OK", [(1, 1), (2, 3), (3, 4)], ""),
    ("UID FETCH 2 UID", "OK", [], "RFC 9051 6.4.9: a non-existent UID is ignored"),
    ("UID FETCH 5:* UID", "OK", [(3, 4)],
     "RFC 9051 6.4.9: 559:* includes the last message"),
    ("UID FETCH 4294967295 UID", "OK", [], "an explicit 4294967295 is not *"),
    ("UID FETCH 4294967295:* UID", "OK", [(3, 4)], "4:4294967295"),
    ("UID FETCH 4294967295:1 UID", "OK", [(1, 1), (2, 3), (3, 4)], ""),
    ("UID FETCH * UID", "OK", [(3, 4)], ""),
    ("UID FETCH 0 UID", "BAD", None, "nz-number"),
    ("UID FETCH 4294967296 UID", "BAD", None, "number"),
    ("UID SEARCH UID 5:4294967295", "OK", [], "explicit numbers, no *"),
    ("UID SEARCH UID 4294967295", "OK", [], ""),
    ("UID SEARCH UID *", "OK", [4], ""),
    ("UID SEARCH UID 2:3", "OK", [3], ""),
    ("SEARCH 3:*", "OK", [3], ""),
    ("SEARCH *:*", "OK", [3], ""),
    ("SEARCH 2:1", "OK", [1, 2], ""),
    ("SEARCH UID 4294967296", "BAD", None, "number"),
    ("UID STORE 4294967295 +FLAGS (\\Seen)", "OK", [], "non-existent UID ignored"),
    ("UID COPY 4294967295 INBOX", "OK", None, ""),
    ("UID EXPUNGE 4294967295", "OK", None, ""),
    ("STORE 4 +FLAGS (\\Seen)", "BAD", None, ""),
    ("COPY 4 INBOX", "BAD", None, ""),
]

# The same on an empty mailbox (UIDNEXT 1).
EMPTY_ROWS = [
    ("FETCH 1:* UID", "BAD", None, "RFC 9051 9: \"This includes * if the selected mailbox "
     "is empty\""),
    ("FETCH * UID", "BAD", None, "same"),
    ("FETCH 1 UID", "BAD", None, ""),
    ("STORE 1:* +FLAGS (\\Seen)", "BAD", None, ""),
    ("COPY 1:* INBOX", "BAD", None, ""),
    ("UID FETCH 1:* UID", "OK", [], "* is UIDNEXT: no message"),
    ("UID FETCH * UID", "OK", [], ""),
    ("UID STORE 1:* +FLAGS (\\Seen)", "OK", [], ""),
    ("UID SEARCH UID *", "OK", [], ""),
    ("SEARCH ALL", "OK", [], ""),
    ("UID EXPUNGE 1:*", "OK", None, ""),
    ("EXPUNGE", "OK", None, ""),
    ("CHECK", "OK", None, ""),
]


class SeqSets(Base):

    def run_rows(self, c, rows):
        for cmd, status, want, why in rows:
            r = self.check(c.cmd(cmd), status, what="%s (%s)" % (cmd, why))
            if want is None or status != "OK":
                continue
            if "SEARCH" in cmd:
                self.assertEqual(r.search(), want, cmd)
            else:
                got = sorted((n, d["UID"]) for n, d in r.fetch_list())
                self.assertEqual(got, want, cmd)

    def test_sequence_sets(self):
        c = self.login()
        for i in range(4):
            self.check(c.append("INBOX", msg("s%d" % i)), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        self.check(c.cmd("UID STORE 2 +FLAGS.SILENT (\\Deleted)"), "OK")
        r = self.check(c.cmd("UID EXPUNGE 2"), "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [2])
        self.run_rows(c, SEQ_ROWS)
        # COPY of 4294967295 copied nothing: still 3 messages
        r = self.check(c.cmd("NOOP"), "OK")
        self.assertEqual(r.numbers("EXISTS"), [])

    def test_empty_mailbox(self):
        c = self.login()
        self.check(c.cmd("CREATE Empty"), "OK")
        r = self.check(c.cmd("SELECT Empty"), "OK")
        self.assertEqual(r.numbers("EXISTS"), [0])
        self.assertEqual(r.code_of("UIDNEXT"), "UIDNEXT 1")
        self.assertIsNone(r.code_of("UNSEEN"), "RFC 3501 7.3.1: no first unseen")
        self.run_rows(c, EMPTY_ROWS)
        r = self.check(c.cmd("SEARCH RETURN (MIN MAX ALL COUNT) ALL"), "OK")
        es = r.esearch()
        self.assertEqual(es, {"TAG": r.tagged.tag, "COUNT": 0},
                         "RFC 4731 3.1: no MIN, MAX or ALL for no match; COUNT always")
        r = self.check(c.cmd("STATUS Empty (MESSAGES UIDNEXT UNSEEN SIZE DELETED)"), "OK")
        self.assertEqual(status_items(r), {"MESSAGES": 0, "UIDNEXT": 1, "UNSEEN": 0, "SIZE": 0,
                                           "DELETED": 0})
        self.check(c.cmd("CLOSE"), "OK")
        self.check(c.cmd("EXAMINE Empty"), "OK")
        self.check(c.cmd("UNSELECT"), "OK")
        self.check(c.cmd("DELETE Empty"), "OK")


# ---------------------------------------------------------------------------
# ARGUMENT COUNTS: (state, the command, one argument fewer, one more)
# state: "noauth", "auth", "sel" (INBOX selected with one message).

ARGC_ROWS = [
    ("noauth", "CAPABILITY", None, "CAPABILITY x"),
    ("noauth", "NOOP", None, "NOOP x"),
    ("auth", "SELECT INBOX", "SELECT", "SELECT INBOX x"),
    ("auth", "EXAMINE INBOX", "EXAMINE", "EXAMINE INBOX x"),
    ("auth", "CREATE argc1", "CREATE", "CREATE argc2 x"),
    ("auth", "RENAME argc1 argc3", "RENAME argc3", "RENAME argc3 argc4 x"),
    ("auth", "DELETE argc3", "DELETE", "DELETE argc3 x"),
    ("auth", "SUBSCRIBE INBOX", "SUBSCRIBE", "SUBSCRIBE INBOX x"),
    ("auth", "UNSUBSCRIBE INBOX", "UNSUBSCRIBE", "UNSUBSCRIBE INBOX x"),
    ("auth", 'LIST "" *', 'LIST ""', 'LIST "" * x'),
    ("auth", 'LSUB "" *', 'LSUB ""', 'LSUB "" * x'),
    ("auth", "STATUS INBOX (MESSAGES)", "STATUS INBOX", "STATUS INBOX (MESSAGES) x"),
    ("auth", "NAMESPACE", None, "NAMESPACE x"),
    ("auth", "ENABLE X-NONE", "ENABLE", None),
    ("auth", "ID NIL", "ID", "ID NIL x"),
    ("sel", "CHECK", None, "CHECK x"),
    ("sel", "FETCH 1 FLAGS", "FETCH 1", "FETCH 1 FLAGS x"),
    ("sel", "STORE 1 +FLAGS (\\Seen)", "STORE 1 +FLAGS", "STORE 1 +FLAGS (\\Seen) x"),
    ("sel", "COPY 1 INBOX", "COPY 1", "COPY 1 INBOX x"),
    ("sel", "SEARCH ALL", "SEARCH", "SEARCH ALL x"),
    ("sel", "UID FETCH 1 FLAGS", "UID FETCH 1", "UID FETCH 1 FLAGS x"),
    ("sel", "UID SEARCH ALL", "UID SEARCH", None),
    ("sel", "UID STORE 1 +FLAGS (\\Seen)", "UID STORE 1", "UID STORE 1 FLAGS (\\Seen) x"),
    ("sel", "UID COPY 1 INBOX", "UID COPY 1", "UID COPY 1 INBOX x"),
    ("sel", "UID EXPUNGE 9", "UID EXPUNGE", "UID EXPUNGE 9 x"),
    ("sel", "MOVE 1 INBOX", "MOVE 1", "MOVE 1 INBOX x"),
    ("sel", "UID MOVE 9 INBOX", "UID MOVE 9", "UID MOVE 9 INBOX x"),
    ("noauth", None, "AUTHENTICATE", "AUTHENTICATE PLAIN AGFAYg== x"),
    ("sel", "EXPUNGE", None, "EXPUNGE x"),
    ("sel", "UNSELECT", None, "UNSELECT x"),
]


class ArgCounts(Base):

    def make(self, state):
        if state == "noauth":
            return self.connect()
        c = self.login()
        if state == "sel":
            self.check(c.cmd("SELECT INBOX"), "OK")
        return c

    def test_argument_counts(self):
        c = self.login()
        self.check(c.append("INBOX", msg("argc")), "OK")
        conns = {}
        for state, good, fewer, more in ARGC_ROWS:
            for cmd, status in ((fewer, "BAD"), (more, "BAD"), (good, "OK")):
                if cmd is None:
                    continue
                if state not in conns or conns[state].closed:
                    conns[state] = self.make(state)
                c = conns[state]
                self.check(c.cmd(cmd), status, what=cmd)
                if cmd == "UNSELECT" or cmd.startswith("SELECT") or cmd.startswith("EXAMINE"):
                    conns.pop(state)     # the state changed: a fresh session next
        c = self.connect()
        self.check(c.cmd("LOGIN %s" % self.user), "BAD", what="LOGIN, one argument")
        self.check(c.cmd("LOGIN %s %s x" % (self.user, self.password)), "BAD",
                   what="LOGIN, three arguments")
        self.check(c.cmd("LOGIN %s %s" % (self.user, self.password)), "OK")
        c = self.login()
        self.check(c.cmd(b"APPEND INBOX"), "BAD", what="APPEND without a message")
        self.check(c.cmd(b"APPEND INBOX {6+}\r\nx: y\r\n x"), "BAD",
                   what="APPEND, a word after the message")
        self.check(c.cmd("IDLE x"), "BAD")
        self.check(c.cmd("LOGOUT x"), "BAD")
        self.check(c.cmd("CLOSE"), "BAD", what="CLOSE outside the selected state")


# ---------------------------------------------------------------------------
# GRAMMAR of tags, search keys, fetch attributes, date-time, and the errors
# RFC 9051 6 fixes for mailbox commands.

# RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">; a bad tag gets an
# untagged BAD (7.1.3: "* BAD" when the tag cannot be found).
TAG_ROWS = [("a]b", True), ("a[b", True), ("a!#$&'", True), ("~a", True), ("A.1-_", True),
            ("a%b", False), ("a*b", False), ("a+b", False), ("+a", False), ("a{b", False),
            ("a\\b", False), ('a"b', False), ("a(b", False), ("a)b", False)]

# One message: Subject "hello", From a@b.c, body "body", flags \Flagged $Fwd.
# (key, matches?) -- every search-key of RFC 9051 9 / RFC 3501 9.
SEARCH_KEYS = [
    ("ALL", True), ("ANSWERED", False), ("BCC x", False), ("BEFORE 1-Jan-2030", True),
    ("BODY body", True), ("CC x", False), ("DELETED", False), ("DRAFT", False),
    ("FLAGGED", True), ("FROM a", True), ("HEADER Subject hello", True),
    ("KEYWORD $Fwd", True), ("LARGER 1", True), ("NOT ALL", False),
    ("ON 1-Jan-2030", False), ("OR ALL ALL", True), ("SEEN", False),
    ("SENTBEFORE 1-Jan-2030", True), ("SENTON 1-Jan-2030", False),
    ("SENTON 1-Jan-2024", True), ("SENTSINCE 2-Jan-2024", False),
    ("SENTSINCE 1-Jan-2000", True), ("SINCE 1-Jan-2000", True), ("SMALLER 1000", True),
    ("SUBJECT hello", True), ("TEXT body", True), ("TO x", False), ("UID 1", True),
    ("UNANSWERED", True), ("UNDELETED", True), ("UNDRAFT", True), ("UNFLAGGED", False),
    ("UNKEYWORD $Fwd", False), ("UNSEEN", True), ("1", True), ("1:*", True),
    ("(ALL)", True), ("(ALL FLAGGED)", True), ('BEFORE "1-Jan-2030"', True),
    ("ALL FLAGGED UNSEEN", True), ("CHARSET UTF-8 ALL", True), ("RETURN () ALL", True),
    ("RETURN (MIN) CHARSET UTF-8 ALL", True),
]
# Each key with an argument missing, and other non-keys: BAD.
SEARCH_BAD = [
    "BCC", "BEFORE", "BODY", "CC", "FROM", "HEADER Subject", "HEADER", "KEYWORD", "LARGER",
    "NOT", "ON", "OR ALL", "SENTBEFORE", "SENTON", "SENTSINCE", "SINCE", "SMALLER",
    "SUBJECT", "TEXT", "TO", "UID", "UNKEYWORD", "()", "(ALL", "ALL)", "LARGER -1",
    "LARGER x", "BEFORE 1-Jan-30", "BEFORE 1-Foo-2030", "BEFORE 32-Jan-2030", "UID 0",
    "UID x", "X-UNKNOWN", "CHARSET", "CHARSET UTF-8", "RETURN (X-UNKNOWN) ALL",
    "RETURN MIN ALL", "CHARSET UTF-8 RETURN () ALL", "ALL RETURN (MIN)", "KEYWORD (a)",
]

# FETCH attributes (RFC 9051 9 fetch-att, RFC 3516 section-binary) of a
# one-part message "Subject: a\r\nFrom: a@b.c\r\n\r\nhi\r\n".
FETCH_GOOD = [
    ("BODY[]<0.5>", "BODY[]<0>", b"Subje"), ("BODY.PEEK[HEADER]<0.3>", "BODY[HEADER]<0>", b"Sub"),
    ("BODY.PEEK[TEXT]", "BODY[TEXT]", b"hi\r\n"), ("BODY.PEEK[1]", "BODY[1]", b"hi\r\n"),
    ("BODY.PEEK[1.MIME]", "BODY[1.MIME]", None),
    ("body.peek[header.fields (subject)]", None, b"Subject: a\r\n\r\n"),
    ("BODY.PEEK[HEADER.FIELDS.NOT (Subject)]", None, b"From: a@b.c\r\n\r\n"),
    ('BODY.PEEK[HEADER.FIELDS ("Subject")]', None, b"Subject: a\r\n\r\n"),
    ("BINARY.PEEK[1]", "BINARY[1]", b"hi\r\n"), ("BINARY.PEEK[1]<1.1>", "BINARY[1]<1>", b"i"),
    ("BINARY.SIZE[1]", "BINARY.SIZE[1]", 4), ("BINARY.PEEK[]", "BINARY[]", None),
    ("RFC822.HEADER", "RFC822.HEADER", b"Subject: a\r\nFrom: a@b.c\r\n\r\n"),
    ("RFC822.SIZE", "RFC822.SIZE", 31),
    ("BODY.PEEK[1]<0.4294967296>", "BODY[1]<0>", b"hi\r\n"),   # RFC 9051: nz-number64
]
FETCH_BAD = [
    "BODY[]<0.0>", "BODY[]<5>", "BODY[0]", "BODY[1.0]", "BODY[MIME]", "BODY[HEADER.FIELDS]",
    "BODY[HEADER.FIELDS ()]", "BODY[TEXT ]", "BODY[ TEXT]", "BODY [TEXT]", "BODY[TEXT",
    "BINARY[1.MIME]", "BINARY[TEXT]", "BINARY[HEADER]", "BINARY.SIZE[1]<0.2>",
    "RFC822.PEEK", "X-UNKNOWN", "(FLAGS (UID))", "(ALL)", "(FAST)", "(FULL)", "FLAGS UID",
    "BODY[1]<0.18446744073709551616>",
]

# STORE (RFC 9051 9: store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP
# (flag-list / (flag *(SP flag))); flag-list = "(" [flag *(SP flag)] ")").
# (command, status, the FLAGS of the FETCH it answers with or None for none)
STORE_ROWS = [
    ("store 1 flags.silent (\\seen)", "OK", None),
    ("STORE 1 -FLAGS.SILENT (\\Seen)", "OK", None),
    ("STORE 1 +FLAGS ($MDNSent \\Seen \\Seen)", "OK", {"\\SEEN", "$MDNSENT"}),
    ("STORE 1 +FLAGS ()", "OK", {"\\SEEN", "$MDNSENT"}),
    ("STORE 1 +flags \\Answered \\Draft", "OK", {"\\SEEN", "$MDNSENT", "\\ANSWERED", "\\DRAFT"}),
    ("STORE 1 FLAGS ()", "OK", set()),
    ("STORE 1 +FLAGS (\\Seen", "BAD", None),
    ("STORE 1 FLAGS.SILENT", "BAD", None),
    ("STORE 1 +FLAGS.LOUD (\\Seen)", "BAD", None),
    ("STORE 1 FLAGS (\\Answered) (\\Seen)", "BAD", None),
    ("STORE 1 +FLAGS (\\*)", "BAD", None),          # \* is flag-perm only
    ('STORE 1 +FLAGS ("quoted")', "BAD", None),       # flag-keyword is an atom
    ("STORE 1 +FLAGS (a]b)", "BAD", None),            # "]" is no ATOM-CHAR
    ("STORE 1 +FLAGS (a%b)", "BAD", None),
    ("STORE 1 +FLAGS ((a))", "BAD", None),
]

# APPEND's date-time (RFC 9051 9: DQUOTE date-day-fixed "-" date-month "-"
# date-year SP time SP zone DQUOTE; month names case-insensitive as every
# literal string of the grammar, RFC 9051 9 note 3).
DATE_ROWS = [
    ('"01-Jan-2024 00:00:00 +0000"', "OK"), ('"01-jan-2024 00:00:00 +0000"', "OK"),
    ('" 1-Jan-2024 00:00:00 +0000"', "OK"), ('"31-Dec-1999 23:59:59 -1200"', "OK"),
    ('"1-Jan-2024 00:00:00 +0000"', "BAD"), ('"31-Feb-2024 00:00:00 +0000"', "BAD"),
    ('"01-Jan-2024 24:00:00 +0000"', "BAD"), ('"01-Jan-2024 00:00:00 0000"', "BAD"),
    ('"01-Jan-2024 00:00:00"', "BAD"), ('"01-Foo-2024 00:00:00 +0000"', "BAD"),
    ("01-Jan-2024", "BAD"),
]

# (state, command, status, code): the errors RFC 9051 6 names.
MAILBOX_ROWS = [
    ("noauth", "SELECT INBOX", "BAD", None),          # 6.3: authenticated state only
    ("noauth", "LIST \"\" *", "BAD", None),
    ("auth", "FETCH 1 FLAGS", "BAD", None),           # 6.4: selected state only
    ("auth", "CLOSE", "BAD", None),
    ("auth", "LOGIN a b", "BAD", None),               # 6.2: not authenticated only
    ("auth", "CREATE INBOX", "NO", None),             # 6.3.4 "error to create INBOX"
    ("auth", "DELETE INBOX", "NO", None),             # 6.3.5 "error to delete INBOX"
    ("auth", "DELETE nosuch", "NO", None),
    ("auth", "RENAME nosuch other", "NO", None),      # 6.3.6
    ("auth", "SELECT nosuch", "NO", None),
    ("auth", "STATUS nosuch (MESSAGES)", "NO", None),
    ("auth", "APPEND nosuch {5+}\r\nx: y\r\n", "NO", "TRYCREATE"),   # 6.3.12
    ("auth", "CREATE dup", "OK", None),
    ("auth", "CREATE dup", "NO", None),               # 6.3.4 "error to create ... exists"
    ("auth", "RENAME dup INBOX", "NO", None),         # 6.3.6 "to a name that exists"
    ("auth", "CREATE trail/", "OK", None),            # 6.3.4 trailing delimiter
    ("sel", "COPY 1 nosuch", "NO", "TRYCREATE"),      # 6.4.7
    ("sel", "MOVE 1 nosuch", "NO", "TRYCREATE"),      # RFC 6851 3.3 as COPY
]


class Grammar(Base):

    def test_tags(self):
        for tag, good in TAG_ROWS:
            c = self.connect()
            c.send(tag.encode() + b" NOOP\r\n")
            r = c.read()
            if good:
                self.assertEqual((r.tag, r.status()[0]), (tag, "OK"), tag)
            else:
                self.assertEqual((r.tag, r.status()[0]), ("*", "BAD"), tag)
            c.close()
            self.conns.remove(c)

    def test_search_keys(self):
        c = self.login()
        m = b"Subject: hello\r\nFrom: a@b.c\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nbody"
        self.check(c.append("INBOX", m, flags=["\\Flagged", "$Fwd"]), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        for key, match in SEARCH_KEYS:
            r = self.check(c.cmd("SEARCH " + key), "OK", what="SEARCH " + key)
            if key.startswith("RETURN"):
                got = bool(r.esearch().get("ALL") or r.esearch().get("MIN"))
            else:
                got = r.search() == [1]
            self.assertEqual(got, match, "SEARCH " + key)
        for key in SEARCH_BAD:
            self.check(c.cmd("SEARCH " + key), "BAD", what="SEARCH " + key)
        self.check(c.cmd("SEARCH CHARSET X-UNKNOWN ALL"), "NO", "BADCHARSET")

    def test_fetch_attributes(self):
        c = self.login()
        self.check(c.append("INBOX", b"Subject: a\r\nFrom: a@b.c\r\n\r\nhi\r\n"), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        for att, key, want in FETCH_GOOD:
            r = self.check(c.cmd("FETCH 1 " + att), "OK", what="FETCH " + att)
            f = r.fetches()[1]
            f.pop("FLAGS", None)
            self.assertEqual(len(f), 1, att)
            k, v = list(f.items())[0]
            if key:
                self.assertEqual(k, key, att)
            if want is not None:
                self.assertEqual(v if isinstance(want, int) else bytes(v), want, att)
        for att in FETCH_BAD:
            self.check(c.cmd("FETCH 1 " + att), "BAD", what="FETCH " + att)

    def test_store(self):
        c = self.login()
        self.check(c.append("INBOX", msg("st")), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        for cmd, status, want in STORE_ROWS:
            r = self.check(c.cmd(cmd), status, what=cmd)
            f = r.fetches()
            if want is None:
                self.assertEqual(f, {}, cmd)
            else:
                got = {str(x).upper() for x in f[1]["FLAGS"]} - {"\\RECENT"}
                self.assertEqual(got, want, cmd)

    def test_append_date_time(self):
        c = self.login()
        for date, status in DATE_ROWS:
            self.check(c.cmd(b"APPEND INBOX " + date.encode() + b" {5+}\r\nx: y\r\n"),
                       status, what="APPEND date " + date)
        self.check(c.cmd("EXAMINE INBOX"), "OK")
        r = self.check(c.cmd("FETCH 1:4 INTERNALDATE"), "OK")
        # date-day-fixed is " 1" or "01" in a response
        got = [rs.s(d["INTERNALDATE"]).replace(" ", "0", 1) if rs.s(d["INTERNALDATE"])[0] == " "
               else rs.s(d["INTERNALDATE"]) for _, d in sorted(r.fetch_list())]
        self.assertEqual(got, ["01-Jan-2024 00:00:00 +0000"] * 3 + ["31-Dec-1999 23:59:59 -1200"])

    def test_mailbox_errors(self):
        c = self.login()
        self.check(c.append("INBOX", msg("e")), "OK")
        conns = {"noauth": self.connect(), "auth": c}
        for state, cmd, status, code in MAILBOX_ROWS:
            if state not in conns:
                conns[state] = self.login(select="INBOX")
            r = conns[state].cmd(cmd.encode())
            self.check(r, status, code, what=cmd)
        r = self.check(c.cmd('LIST "" trail*'), "OK")
        self.assertEqual(self.list_names(r), ["trail"])
        r = self.check(c.cmd('LIST "" ""'), "OK")
        self.assertEqual([rs.s(u.items()[2:]) for u in r.of("LIST")], [["/", ""]],
                         "RFC 9051 6.3.9: \"\" asks for the delimiter and root")


# Where the RFC leaves a choice: Ringmail's (docs/server-design-notes.md,
# "Grammar: known deviations and the choices the RFCs leave"; Dovecot 2.3
# answers the same except where noted there).  INBOX selected, three
# messages, the third without a Date: field.
CHOICE_ROWS = [
    ("SEARCH 4", "OK", None, []),
    ("SEARCH 4294967295", "OK", None, []),
    ("SEARCH 2:7", "OK", None, [2, 3]),
    # no Date: the INTERNALDATE (today) stands in, as RFC 5256 2.2 says for SORT
    ("SEARCH SENTBEFORE 1-Jan-1990", "OK", None, []),
    ("SEARCH SENTSINCE 1-Jan-1990", "OK", None, [1, 2, 3]),
    ("SEARCH SENTBEFORE 2-Jan-2024", "OK", None, [1, 2]),
    ("SEARCH SENTSINCE 2-Jan-2024", "OK", None, [3]),
    ("SEARCH SINCE 31-Feb-2024", "BAD", None, None),
    ("APPEND INBOX {0+}\r\n", "NO", "CANNOT", None),
    ("APPEND INBOX (\\Recent) {5+}\r\nx: y\r\n", "BAD", None, None),
    ("APPEND INBOX (\\X-Future) {5+}\r\nx: y\r\n", "BAD", None, None),
    ("STORE 1 +FLAGS (\\Recent)", "BAD", None, None),
    ("STORE 1 +FLAGS (\\X-Future)", "BAD", None, None),
    ("ENABLE UTF8=ACCEPT", "OK", None, None),
]


class RenameInbox(Base):

    def test_rename_inbox(self):
        """RFC 9051 6.3.6: RENAME of INBOX moves its messages to the new
        name and leaves INBOX empty; INBOX's UIDs are never reused under
        one UIDVALIDITY (2.3.1.1)."""
        c = self.login()
        for i in range(2):
            self.check(c.append("INBOX", msg("r%d" % i)), "OK")
        before = status_items(self.check(c.cmd("STATUS INBOX (UIDVALIDITY UIDNEXT)"), "OK"))
        self.check(c.cmd("RENAME INBOX Old"), "OK")
        after = status_items(self.check(c.cmd("STATUS INBOX (MESSAGES UIDVALIDITY UIDNEXT)"),
                                        "OK"))
        self.assertEqual(after["MESSAGES"], 0)
        self.assertTrue(after["UIDVALIDITY"] != before["UIDVALIDITY"] or
                        after["UIDNEXT"] >= before["UIDNEXT"], (before, after))
        old = status_items(self.check(c.cmd("STATUS Old (MESSAGES)"), "OK"))
        self.assertEqual(old["MESSAGES"], 2)
        r = self.check(c.cmd('LIST "" *'), "OK")
        self.assertEqual(sorted(self.list_names(r)), ["INBOX", "Old"])


class Choices(Base):

    def test_choices(self):
        c = self.login()
        dated = b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nSubject: d\r\n\r\nx\r\n"
        for m in (dated, dated, b"Subject: no date\r\n\r\nx\r\n"):
            self.check(c.append("INBOX", m), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        for cmd, status, code, want in CHOICE_ROWS:
            r = self.check(c.cmd(cmd.encode()), status, code, what=cmd)
            if want is not None:
                self.assertEqual(r.search(), want, cmd)
        self.check(c.cmd("CREATE Empty"), "OK")
        self.check(c.cmd("SELECT Empty"), "OK")
        r = self.check(c.cmd("SEARCH *"), "OK")
        self.assertEqual(r.search(), [])


# ---------------------------------------------------------------------------
# EXTENSIONS: the examples of the RFCs of every advertised capability


class Extensions(Base):

    def test_capabilities_are_known(self):
        """Every capability advertised has a row in this file."""
        c = self.login()
        known = {"IMAP4REV1", "IMAP4REV2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE",
                 "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE",
                 "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH",
                 "SEARCHRES", "STATUS=SIZE", "BINARY", "UTF8=ACCEPT", "MULTIAPPEND",
                 "CONDSTORE", "QRESYNC", "COMPRESS=DEFLATE", "QUOTA", "QUOTA=RES-STORAGE",
                 "QUOTA=RES-MESSAGE", "OBJECTID", "SAVEDATE"}
        # SORT and THREAD (RFC 5256, RFC 5957): tests/integration/test_imap_sort.py
        elsewhere = {"SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
                     # ESORT, PARTIAL, WITHIN: tests/integration/test_imap_esearch.py
                     "ESORT", "PARTIAL", "WITHIN", "CONTEXT=SEARCH",
                     "CONTEXT=SORT"}
        elsewhere |= {"PREVIEW"}     # RFC 8970: tests/integration/test_imap_preview.py
        caps = c.capabilities()
        for cap in caps:
            if cap.startswith("APPENDLIMIT=") or cap.startswith("AUTH="):
                continue
            self.assertIn(cap, known | elsewhere, "a capability without a conformance row")

    def test_enable(self):
        """RFC 5161 3.1 example: unknown names are ignored; ENABLED lists
        only what was enabled, only advertised names."""
        c = self.login()
        caps = c.capabilities()
        r = self.check(c.cmd("ENABLE X-GOOD-IDEA"), "OK")
        self.assertEqual([u.raw for u in r.of("ENABLED")], [b"* ENABLED"])
        r = self.check(c.cmd("ENABLE UTF8=ACCEPT X-GOOD-IDEA"), "OK")
        self.assertEqual([u.raw.upper() for u in r.of("ENABLED")], [b"* ENABLED UTF8=ACCEPT"])
        self.check(c.cmd("CAPABILITY"), "OK")
        self.assertEqual(c.capabilities(), caps, "RFC 5161 3.1: CAPABILITY does not change")

    def test_id(self):
        """RFC 2971 3.3 example."""
        c = self.login()
        r = self.check(c.cmd('ID ("name" "sodr" "version" "19.34" "vendor" '
                             '"Pink Floyd Music Limited")'), "OK")
        ids = r.of("ID")
        self.assertEqual(len(ids), 1)
        v = ids[0].items()[1]
        self.assertTrue(v is None or (isinstance(v, list) and len(v) % 2 == 0))

    def test_namespace(self):
        """RFC 2342 5 / RFC 9051 6.3.10: three namespace lists or NIL."""
        c = self.login()
        r = self.check(c.cmd("NAMESPACE"), "OK")
        ns = r.of("NAMESPACE")[0].items()[1:]
        self.assertEqual(len(ns), 3)
        self.assertEqual(rs.s(ns[0]), [["", "/"]])

    def test_unselect_keeps_deleted(self):
        """RFC 3691 2: UNSELECT does not expunge."""
        c = self.login()
        self.check(c.append("INBOX", msg("u"), flags=["\\Deleted"]), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        r = self.check(c.cmd("UNSELECT"), "OK")
        self.assertEqual(r.of("EXPUNGE"), [])
        r = self.check(c.cmd("STATUS INBOX (MESSAGES)"), "OK")
        self.assertEqual(rs.upper(r.of("STATUS")[0].items()[2]), ["MESSAGES", 1])

    def test_uidplus_and_move(self):
        """RFC 4315 3 / 4 and RFC 6851 4.1 examples."""
        c = self.login()
        r = self.check(c.cmd("STATUS INBOX (UIDVALIDITY)"), "OK")
        uv = r.of("STATUS")[0].items()[2][1]
        self.check(c.cmd("CREATE foo"), "OK")
        for i in range(3):
            r = self.check(c.append("INBOX", msg("m%d" % i)), "OK")
            self.assertEqual(r.code_of("APPENDUID"), "APPENDUID %s %d" % (uv, i + 1))
        self.check(c.cmd("SELECT INBOX"), "OK")
        r = self.check(c.cmd("UID COPY 1:2 foo"), "OK")
        code = r.code_of("COPYUID")
        self.assertRegex(code, r"^COPYUID \d+ 1:2 1:2$")
        r = self.check(c.cmd("UID MOVE 2:3 foo"), "OK")
        ok = [u for u in r.untagged if u.status() and u.status()[1]
              and u.status()[1].startswith("COPYUID")]
        self.assertEqual(len(ok), 1, "RFC 6851 4.3: COPYUID in an untagged OK")
        self.assertRegex(ok[0].status()[1], r"^COPYUID \d+ 2:3 3:4$")
        self.assertTrue(ok[0].status()[2], "resp-text after the code")
        msns = [1, 2, 3]
        for n in r.numbers("EXPUNGE"):     # each EXPUNGE renumbers the rest
            del msns[n - 1]
        self.assertEqual(msns, [1], "RFC 9051 7.4.1: the moved messages are expunged")
        self.assertLess(r.untagged.index(ok[0]), r.untagged.index(r.of("EXPUNGE")[0]),
                        "RFC 6851 4.3: COPYUID before the expunges")
        self.check(c.cmd("UID STORE 1 +FLAGS.SILENT (\\Deleted)"), "OK")
        r = self.check(c.cmd("UID EXPUNGE 2:9"), "OK")
        self.assertEqual(r.of("EXPUNGE"), [], "RFC 4315 2.1: only the UIDs given")
        r = self.check(c.cmd("UID EXPUNGE 1"), "OK")
        self.assertEqual(r.numbers("EXPUNGE"), [1])

    def test_list_extended(self):
        """RFC 5258 examples: several patterns, REMOTE (defined by
        LIST-EXTENDED itself, so accepted), RECURSIVEMATCH alone is BAD,
        an unknown option is BAD, CHILDREN (RFC 3348)."""
        c = self.login()
        for name in ("Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Vegetable",
                     "Vegetable/Broccoli", "Vegetable/Corn"):
            self.check(c.cmd("CREATE " + name), "OK")
        for name in ("Fruit/Banana", "Vegetable", "Vegetable/Broccoli"):
            self.check(c.cmd("SUBSCRIBE " + name), "OK")
        r = self.check(c.cmd('LIST "" ("Fruit" "Tofu")'), "OK")
        self.assertEqual(self.list_names(r), ["Fruit", "Tofu"])
        r = self.check(c.cmd('LIST (REMOTE) "" "%" RETURN (CHILDREN)'), "OK")
        got = {rs.s(u.items()[3]): set(a.upper() for a in rs.s(u.items()[1]))
               for u in r.of("LIST")}
        self.assertEqual(got, {"INBOX": {"\\HASNOCHILDREN"},
                               "Fruit": {"\\HASCHILDREN"}, "Tofu": {"\\HASNOCHILDREN"},
                               "Vegetable": {"\\HASCHILDREN"}})
        r = self.check(c.cmd('LIST (SUBSCRIBED) "" "*"'), "OK")
        self.assertEqual(sorted(self.list_names(r)),
                         ["Fruit/Banana", "Vegetable", "Vegetable/Broccoli"])
        for u in r.of("LIST"):
            self.assertIn("\\SUBSCRIBED", [a.upper() for a in rs.s(u.items()[1])])
        r = self.check(c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)'), "OK")
        got = {rs.s(u.items()[3]) for u in r.of("LIST")}
        self.assertEqual(got, {"Fruit", "Vegetable"})
        self.check(c.cmd('LIST (RECURSIVEMATCH) "" "*"'), "BAD")
        self.check(c.cmd('LIST (X-UNKNOWN) "" "*"'), "BAD")
        self.check(c.cmd('LIST "" "*" RETURN (X-UNKNOWN)'), "BAD")

    def test_list_status(self):
        """RFC 5819 example: STATUS after each LIST; none for \\Noselect."""
        c = self.login()
        self.check(c.append("INBOX", msg("ls")), "OK")
        self.check(c.cmd("CREATE a/b"), "OK")
        self.check(c.cmd("DELETE a"), ("OK", "NO"))
        r = self.check(c.cmd('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))'), "OK")
        seq = [(u.kind(), rs.s(u.items()[3] if u.kind() == "LIST" else u.items()[1]))
               for u in r.untagged]
        self.assertIn(("LIST", "INBOX"), seq)
        i = seq.index(("LIST", "INBOX"))
        self.assertEqual(seq[i + 1], ("STATUS", "INBOX"))
        st = rs.upper(r.untagged[i + 1].items()[2])
        self.assertEqual(dict(zip(st[::2], st[1::2])), {"MESSAGES": 1, "UNSEEN": 1})

    def test_special_use(self):
        """RFC 6154 5.2/5.3 examples: several attributes on CREATE; an
        unknown one is NO [USEATTR]; the LIST (SPECIAL-USE) selection."""
        c = self.login()
        self.check(c.cmd("CREATE MySpecial (USE (\\Drafts \\Sent))"), "OK")
        self.check(c.cmd("CREATE Other (USE (\\X-Unknown))"), "NO", "USEATTR")
        r = self.check(c.cmd('LIST "" MySpecial RETURN (SPECIAL-USE)'), "OK")
        attrs = {a.upper() for a in rs.s(r.of("LIST")[0].items()[1])}
        self.assertTrue({"\\DRAFTS", "\\SENT"} <= attrs)
        r = self.check(c.cmd('LIST (SPECIAL-USE) "" "*"'), "OK")
        self.assertEqual(self.list_names(r), ["MySpecial"])

    def test_esearch_and_searchres(self):
        """RFC 4731 examples; RFC 5182: $ is the saved result, empty
        before any SAVE."""
        c = self.login()
        for i in range(3):
            self.check(c.append("INBOX", msg("e%d" % i), flags=["\\Flagged"] if i else None),
                       "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        r = self.check(c.cmd("FETCH $ UID"), "OK")
        self.assertEqual(r.of("FETCH"), [])
        r = self.check(c.cmd('SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 '
                             'NOT FROM "Smith"'), "OK")
        self.assertEqual(r.esearch(), {"TAG": r.tagged.tag, "MIN": 2, "COUNT": 2})
        r = self.check(c.cmd("UID SEARCH RETURN (ALL) FLAGGED"), "OK")
        self.assertEqual(r.esearch(), {"TAG": r.tagged.tag, "UID": True, "ALL": "2:3"})
        r = self.check(c.cmd("SEARCH RETURN () ALL"), "OK",
                       )
        self.assertEqual(r.esearch()["ALL"], "1:3", "RFC 4731 3.1: () means ALL")
        r = self.check(c.cmd("SEARCH RETURN (SAVE) FLAGGED"), "OK")
        self.assertEqual(r.of("ESEARCH") + r.of("SEARCH"), [],
                         "RFC 5182 2.1: SAVE alone returns nothing")
        r = self.check(c.cmd("FETCH $ UID"), "OK")
        self.assertEqual(sorted(r.fetches()), [2, 3])
        r = self.check(c.cmd("SEARCH $ SUBJECT e2"), "OK")
        self.assertEqual(r.search(), [3])

    def test_status_size_binary_multiappend_limit(self):
        """RFC 8438 (SIZE), RFC 3516 4.2 (BINARY[1], BINARY.SIZE[1]),
        RFC 3502 (MULTIAPPEND: one APPENDUID with a set), RFC 7889
        (APPENDLIMIT: NO [TOOBIG] before the data is sent)."""
        c = self.login()
        m1 = msg("b", extra=b"Content-Transfer-Encoding: base64\r\n",
                 body=base64.b64encode(b"binary\x01data") + b"\r\n")
        r = self.check(c.cmd(b"APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s"
                             % (len(m1), m1, len(m1), m1)), "OK")
        self.assertRegex(r.code_of("APPENDUID"), r"^APPENDUID \d+ 1:2$")
        r = self.check(c.cmd("STATUS INBOX (SIZE MESSAGES)"), "OK")
        self.assertEqual(status_items(r), {"SIZE": 2 * len(m1), "MESSAGES": 2})
        self.check(c.cmd("EXAMINE INBOX"), "OK")
        r = self.check(c.cmd("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])"), "OK")
        f = r.fetches()[1]
        self.assertEqual(bytes(f["BINARY[1]"]), b"binary\x01data")
        self.assertEqual(f["BINARY.SIZE[1]"], len(b"binary\x01data"))
        limit = [x for x in c.capabilities() if x.startswith("APPENDLIMIT=")]
        self.assertEqual(len(limit), 1)
        n = int(limit[0].split("=")[1])
        tag = c.tag()
        c.send("%s APPEND INBOX {%d}\r\n" % (tag, n + 1))
        _, t, conts = c.read_until_tag(tag)
        self.assertEqual(conts, [])
        self.assertEqual(t.status()[:2], ("NO", "TOOBIG"))

    def test_sasl_ir_idle_imap4rev2(self):
        """RFC 4959 (initial response), RFC 2177 example, RFC 9051: after
        ENABLE IMAP4rev2 no RECENT (RFC 9051 E.(6): \\Recent is gone)."""
        c = self.connect()
        ir = base64.b64encode(b"\0" + self.user.encode() + b"\0" + self.password.encode())
        self.check(c.cmd(b"AUTHENTICATE PLAIN " + ir), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        tag = c.tag()
        c.send(tag + " IDLE\r\n")
        self.assertTrue(c.read().continuation)
        c.send("DONE\r\n")
        _, t, _ = c.read_until_tag(tag)
        self.assertEqual(t.status()[0], "OK")
        c = self.login(enable="IMAP4rev2")
        r = self.check(c.cmd("SELECT INBOX"), "OK")
        self.assertEqual(r.of("RECENT"), [])


# ---------------------------------------------------------------------------
# CONDSTORE (RFC 7162 section 3.1, its examples and section 7's grammar) and
# COMPRESS (RFC 4978).
#
# A row: (state, command, status, code, check[, xfail]).  state: "noauth",
# "auth" (logged in), "sel" (SELECT INBOX without CONDSTORE: the row's
# command is the first enabling command), "cs" (SELECT INBOX (CONDSTORE)),
# "en0" (ENABLE CONDSTORE), "en" (ENABLE CONDSTORE, then SELECT INBOX).  Each row gets a session of
# its own.  The command may name {hms} (the mailbox's HIGHESTMODSEQ), {min}
# (the lowest mod-sequence of its messages), {hms1} (hms + 1) and {uids};
# these are read again before every row (EXAMINE (CONDSTORE) and FETCH
# MODSEQ on another session).  check(case, result, ctx) looks further.
# xfail: the RFC sentence a row holds ringmaild to where it does not yet
# comply; such a row must keep failing (a pass means: drop the mark).
#
# The mailbox: four messages appended, the first expunged, so message
# numbers 1..3 are UIDs 2..4 (the [MODIFIED] of UID STORE is in UIDs).

MAX_MODSEQ = 9223372036854775807       # 7: "(1 <= n <= 9,223,372,036,854,775,807)"


def fetch_modseqs(r):
    """{msn: mod-sequence} of the FETCH responses; MODSEQ is "(" n ")"."""
    out = {}
    for n, f in r.fetch_list():
        if "MODSEQ" in f:
            v = f["MODSEQ"]
            assert isinstance(v, list) and len(v) == 1, r.describe()
            out[n] = int(v[0])
    return out


def untagged_hms(r):
    """The HIGHESTMODSEQ of an untagged OK (3.1.2.1), or None."""
    for u in r.untagged:
        st = u.status()
        if st and st[1] and st[1].upper().startswith("HIGHESTMODSEQ "):
            return int(st[1].split()[1])
    return None


def modified_set(r):
    v = r.code_of("MODIFIED")
    return None if v is None else set(rs.seqset(v.split()[1]))


def search_modseq(r):
    """The (MODSEQ n) at the end of the SEARCH response, or None."""
    u = r.of("SEARCH")
    m = re.search(rb"\(MODSEQ (\d+)\)\s*$", u[0].raw) if u else None
    return int(m.group(1)) if m else None


def ck_hms(t, r, x):
    t.assertEqual(untagged_hms(r), x["hms"], "3.1.2.1: HIGHESTMODSEQ in an untagged OK")


def ck_all_modseq(t, r, x):
    f = r.fetch_list()
    t.assertTrue(f, "no FETCH")
    t.assertEqual(len(fetch_modseqs(r)), len(f), "3.1: every FETCH carries MODSEQ once enabled")


def ck_modseqs(t, r, x):
    t.assertEqual(fetch_modseqs(r), x["ms"])


def ck_first_enabling(t, r, x):
    # 3.1: "A first CONDSTORE enabling command executed in the session with
    # a mailbox selected MUST cause the server to return HIGHESTMODSEQ"
    t.assertEqual(untagged_hms(r), x["hms"], "3.1: the first enabling command")
    ck_all_modseq(t, r, x)


def ck_changedsince_min(t, r, x):
    # 3.1.4.1: "only returned for messages that have a mod-sequence bigger
    # than <mod-sequence>"; it "implicitly adds the MODSEQ FETCH message data
    # item"; UID FETCH adds UID
    want = {n for n, m in x["ms"].items() if m > x["min"]}
    t.assertEqual(set(fetch_modseqs(r)), want)
    for n, f in r.fetch_list():
        t.assertEqual(int(f["UID"]), x["uid"][n])
        t.assertIn("FLAGS", f)


def ck_no_fetch(t, r, x):
    t.assertEqual(r.fetch_list(), [])


def ck_store_all_pass(t, r, x):
    # 3.1.3: "An untagged FETCH response MUST be sent, even if the .SILENT
    # suffix is specified, and the response MUST include the MODSEQ"
    t.assertIsNone(r.code_of("MODIFIED"))
    got = fetch_modseqs(r)
    t.assertEqual(set(got), set(x["ms"]))
    t.assertTrue(all(m > x["hms"] for m in got.values()), got)
    t.assertEqual({int(f["UID"]) for _, f in r.fetch_list()}, set(x["uid"].values()))


def ck_example5(t, r, x):
    ck_first_enabling(t, r, x)
    t.assertEqual(set(fetch_modseqs(r)), {3})


def ck_modified_msn(t, r, x):
    # 3.1.3 Example 6: the message set of the messages that failed
    t.assertEqual(modified_set(r), {n for n, m in x["ms"].items() if m > x["min"]})
    t.assertEqual({n for n in fetch_modseqs(r) if n not in modified_set(r)},
                  {n for n, m in x["ms"].items() if m <= x["min"]})


def ck_modified_uid(t, r, x):
    # 3.1.3: "the message set (for STORE) or set of UIDs (for UID STORE)"
    t.assertEqual(modified_set(r), {x["uid"][n] for n, m in x["ms"].items() if m > x["min"]})


def ck_modified_1(t, r, x):
    # 3.1.3: "UNCHANGEDSINCE with a mod-sequence of 0 always fails if the
    # metadata item exists.  A system flag MUST always be considered existent"
    t.assertEqual(modified_set(r), {1})


def ck_search_min(t, r, x):
    # 3.1.5: messages with mod-sequences "equal to or greater than" the
    # value; the server "MUST also append ... the highest mod-sequence for
    # all messages being returned"; entry names are ignored by a server that
    # keeps one mod-sequence per message
    want = sorted(n for n, m in x["ms"].items() if m >= x["min"])
    t.assertEqual(r.search(), want)
    t.assertEqual(search_modseq(r), max(x["ms"][n] for n in want))


def ck_uid_search_min(t, r, x):
    want = sorted(x["uid"][n] for n, m in x["ms"].items() if m >= x["min"])
    t.assertEqual(r.search(), want)
    t.assertEqual(search_modseq(r), x["hms_msgs"])


def ck_search_all(t, r, x):
    t.assertEqual(r.search(), [1, 2, 3])
    t.assertEqual(search_modseq(r), x["hms_msgs"])


def ck_search_empty(t, r, x):
    # 3.1.6: "mod-sequence value (omitted if no match)"
    t.assertEqual(r.search(), [])
    t.assertIsNone(search_modseq(r))


def ck_search_first_enabling(t, r, x):
    t.assertEqual(untagged_hms(r), x["hms"], "3.1: the first enabling command")
    ck_search_min(t, r, x)


def ck_esearch_min(t, r, x):
    # 3.1.10 Example 19: ESEARCH "containing the MODSEQ result option"
    e = r.esearch()
    want = [n for n, m in x["ms"].items() if m >= x["min"]]
    t.assertEqual(sorted(rs.seqset(str(e["ALL"]))), sorted(want))
    t.assertEqual(e.get("MODSEQ"), max(x["ms"][n] for n in want))


def ck_status(t, r, x):
    # 3.1.7 Example 17: "the same value that is returned ... in the
    # HIGHESTMODSEQ response code"
    st = status_items(r)
    t.assertEqual(st["HIGHESTMODSEQ"], x["hms"])
    t.assertEqual(st.get("MESSAGES", 3), 3)


def ck_enabled(t, r, x):
    t.assertEqual([u.raw.upper() for u in r.of("ENABLED")], [b"* ENABLED CONDSTORE"])


CONDSTORE_ROWS = [
    # ENABLE (3.1 "an ENABLE command containing CONDSTORE"; RFC 5161 3.1
    # "only valid in the authenticated state"; 4: "ENABLE" 1*(SP capability))
    ("auth", "ENABLE CONDSTORE", "OK", None, ck_enabled),
    ("auth", "enable condstore", "OK", None, ck_enabled),
    ("noauth", "ENABLE CONDSTORE", "BAD", None, None),
    ("auth", "ENABLE", "BAD", None, None),
    ("en", "FETCH 1:3 (FLAGS)", "OK", None, ck_all_modseq),
    # SELECT / EXAMINE: 3.1.2.1 (HIGHESTMODSEQ with every SELECT of a mailbox
    # with persistent mod-sequences), 3.1.8 Example 18, RFC 4466 2.1
    # ("select-params = SP "(" select-param *(SP select-param) ")"; "Any
    # parameter not defined by extensions that the server supports must be
    # rejected with a BAD response")
    # (3.1.2.1 "Once a CONDSTORE enabling command is issued"; before that
    # HIGHESTMODSEQ is the server's choice: the note after it)
    ("auth", "SELECT INBOX", "OK", "READ-WRITE", None),
    ("en0", "SELECT INBOX", "OK", "READ-WRITE", ck_hms),
    ("en0", "EXAMINE INBOX", "OK", "READ-ONLY", ck_hms),
    ("auth", "SELECT INBOX (CONDSTORE)", "OK", "READ-WRITE", ck_hms),
    ("auth", "select inbox (condstore)", "OK", "READ-WRITE", ck_hms),
    ("auth", "EXAMINE INBOX (CONDSTORE)", "OK", "READ-ONLY", ck_hms),
    ("auth", "SELECT INBOX (CONDSTORE", "BAD", None, None),
    ("auth", "SELECT INBOX CONDSTORE", "BAD", None, None),
    ("auth", "SELECT INBOX ()", "BAD", None, None),
    ("auth", "SELECT INBOX (BLURDYBLOOP)", "BAD", None, None),
    ("auth", "EXAMINE INBOX (CONDSTORE) x", "BAD", None, None),
    ("cs", "FETCH 1:3 (FLAGS)", "OK", None, ck_all_modseq),
    # FETCH MODSEQ (3.1.4.2 Example 13; fetch-mod-resp = "MODSEQ" SP "("
    # permsg-modsequence ")")
    ("cs", "FETCH 1:3 (MODSEQ)", "OK", None, ck_modseqs),
    ("cs", "FETCH 1:3 MODSEQ", "OK", None, ck_modseqs),
    ("cs", "fetch 1:3 (modseq)", "OK", None, ck_modseqs),
    ("sel", "FETCH 1:3 (MODSEQ)", "OK", None, ck_first_enabling),
    ("cs", "FETCH 1 (MODSEQ 1)", "BAD", None, None),
    ("cs", "FETCH 1 (MODSEQ (1))", "BAD", None, None),
    # CHANGEDSINCE (3.1.4.1 Example 12; chgsince-fetch-mod = "CHANGEDSINCE"
    # SP mod-sequence-value, a positive 63-bit number; RFC 4466
    # fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")")
    ("cs", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {min})", "OK", None, ck_changedsince_min),
    ("cs", "UID FETCH 1:* (FLAGS) (changedsince {min})", "OK", None, ck_changedsince_min),
    ("sel", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {min})", "OK", None,
     lambda t, r, x: (ck_changedsince_min(t, r, x), t.assertEqual(untagged_hms(r), x["hms"]))),
    ("cs", "FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})", "OK", None, ck_no_fetch),
    ("cs", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % MAX_MODSEQ, "OK", None, ck_no_fetch),
    ("cs", "FETCH 1 (FLAGS) (CHANGEDSINCE)", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) (CHANGEDSINCE x)", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) (CHANGEDSINCE -1)", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) (CHANGEDSINCE 0)", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) (CHANGEDSINCE %d)" % (MAX_MODSEQ + 1), "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) (CHANGEDSINCE 1", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) CHANGEDSINCE 1", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) ()", "BAD", None, None),
    ("cs", "FETCH 1 (FLAGS) (X-UNKNOWN 1)", "BAD", None, None),
    # STORE UNCHANGEDSINCE (3.1.3 Examples 3, 5, 6, 8; store-modifier =
    # "UNCHANGEDSINCE" SP mod-sequence-valzer, "Only a single
    # UNCHANGEDSINCE may be specified in a STORE operation")
    ("cs", "UID STORE {uids} (UNCHANGEDSINCE {hms}) +FLAGS.SILENT ($Processed)", "OK", None,
     ck_store_all_pass),
    ("sel", "STORE 3 (UNCHANGEDSINCE {hms}) -FLAGS.SILENT ($Processed)", "OK", None,
     ck_example5),
    ("cs", "STORE 1:3 (UNCHANGEDSINCE {min}) +FLAGS.SILENT ($Row1)", "OK", "MODIFIED",
     ck_modified_msn),
    ("cs", "UID STORE {uids} (UNCHANGEDSINCE {min}) +FLAGS.SILENT ($Row2)", "OK", "MODIFIED",
     ck_modified_uid),
    ("cs", "STORE 1 (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Seen)", "OK", "MODIFIED",
     ck_modified_1),
    ("cs", "STORE 1 (unchangedsince 0) +FLAGS.SILENT (\\Seen)", "OK", "MODIFIED",
     ck_modified_1),
    ("cs", "STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % (MAX_MODSEQ + 1), "BAD", None, None),
    ("cs", "STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 UNCHANGEDSINCE 1 +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 () +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 (X-UNKNOWN 1) +FLAGS (\\Seen)", "BAD", None, None),
    ("cs", "STORE 1 (UNCHANGEDSINCE 1)", "BAD", None, None),
    # SEARCH MODSEQ (3.1.5 Examples 15, 16; 3.1.6; 3.1.10 Example 19;
    # search-modsequence = "MODSEQ" [SP entry-name SP entry-type-req] SP
    # mod-sequence-valzer; entry-flag-name = DQUOTE "/flags/" attr-flag
    # DQUOTE; entry-type-req = "priv" / "shared" / "all")
    ("cs", 'SEARCH MODSEQ "/flags/\\\\draft" all {min}', "OK", None, ck_search_min),
    ("cs", "SEARCH MODSEQ {min}", "OK", None, ck_search_min),
    ("cs", "search modseq {min}", "OK", None, ck_search_min),
    ("cs", 'SEARCH MODSEQ "/flags/$mdnsent" priv {min}', "OK", None, ck_search_min),
    ("cs", 'SEARCH MODSEQ "/flags/\\\\seen" shared {min}', "OK", None, ck_search_min),
    ("cs", "UID SEARCH MODSEQ {min}", "OK", None, ck_uid_search_min),
    ("cs", "SEARCH MODSEQ 0", "OK", None, ck_search_all),
    ("cs", "SEARCH MODSEQ {hms1}", "OK", None, ck_search_empty),
    ("cs", "SEARCH OR NOT MODSEQ 1 LARGER 50000", "OK", None, ck_search_empty),
    ("cs", "SEARCH RETURN (ALL) MODSEQ {min}", "OK", None, ck_esearch_min),
    ("sel", "SEARCH MODSEQ {min}", "OK", None, ck_search_first_enabling),
    ("cs", "SEARCH MODSEQ", "BAD", None, None),
    ("cs", "SEARCH MODSEQ x", "BAD", None, None),
    ("cs", "SEARCH MODSEQ -1", "BAD", None, None),
    ("cs", "SEARCH MODSEQ %d" % (MAX_MODSEQ + 1), "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/flags/\\\\seen" 1', "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/flags/\\\\seen" other 1', "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/flags/\\\\seen" all', "BAD", None, None),
    # RFC 7162 7: entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE
    ("cs", "SEARCH MODSEQ /flags/x all 1", "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/other/x" all 1', "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/flags/" all 1', "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/flags/a b" all 1', "BAD", None, None),
    ("cs", 'SEARCH MODSEQ "/flags/$Junk" shared 1', "OK", None, ck_search_all),
    ("cs", 'SEARCH MODSEQ {{12+}}\r\n/flags/\\Seen all 1', "OK", None, ck_search_all),
    # STATUS (3.1.7 Example 17; status-att =/ "HIGHESTMODSEQ")
    ("auth", "STATUS INBOX (UIDNEXT MESSAGES HIGHESTMODSEQ)", "OK", None, ck_status),
    ("auth", "status inbox (highestmodseq)", "OK", None, ck_status),
    ("sel", "STATUS INBOX (HIGHESTMODSEQ)", "OK", None, ck_status),
    ("auth", "STATUS INBOX (HIGHESTMODSEQ 1)", "BAD", None, None),
    ("auth", "STATUS INBOX (HIGHESTMODSEQS)", "BAD", None, None),
    ("auth", "STATUS INBOX HIGHESTMODSEQ", "BAD", None, None),
]


class RowRunner:
    """Runs rows of (state, command, status, code, check[, xfail]); returns
    the problems: rows that fail, and xfail rows that pass."""

    def drop(self, c):
        c.close()
        self.conns.remove(c)

    def run_rows(self, rows, session, ctx_of):
        problems = []
        for row in rows:
            state, cmd, status, code, check = row[:5]
            xfail = row[5] if len(row) > 5 else None
            ctx = ctx_of()
            text = cmd.format(**ctx)
            err = None
            before = list(self.conns)
            try:
                c = session(state)
                r = c.cmd(text)
                self.check(r, status, code, what=text)
                if check:
                    check(self, r, ctx)
            except AssertionError as e:
                err = str(e).splitlines()[:12]
            for c in [c for c in self.conns if c not in before]:
                problems += response_problems(c.transcript)
                self.drop(c)            # one session a row: the per-user limit
            if xfail and not err:
                problems.append("%s: passes now, drop its xfail (%s)" % (text, xfail))
            elif err and not xfail:
                problems.append("%s [%s]:\n    %s" % (text, state, "\n    ".join(err)))
        return problems


class Condstore(Base, RowRunner):

    def ctx(self):
        r = self.check(self.peek.cmd("EXAMINE INBOX (CONDSTORE)"), "OK")
        hms = untagged_hms(r)
        r = self.check(self.peek.cmd("FETCH 1:* (UID MODSEQ)"), "OK")
        ms = fetch_modseqs(r)
        uid = {n: int(f["UID"]) for n, f in r.fetch_list()}
        return {"hms": hms, "hms1": hms + 1, "ms": ms, "uid": uid, "min": min(ms.values()),
                "hms_msgs": max(ms.values()),
                "uids": ",".join(str(uid[n]) for n in sorted(uid))}

    def session(self, state):
        if state == "noauth":
            return self.connect()
        if state in ("en", "en0"):
            c = self.login(enable="CONDSTORE")
            if state == "en":
                self.check(c.cmd("SELECT INBOX"), "OK")
            return c
        c = self.login()
        if state in ("sel", "cs"):
            self.check(c.cmd("SELECT INBOX" + (" (CONDSTORE)" if state == "cs" else "")), "OK")
        return c

    def test_condstore_rows(self):
        c = self.login()
        for i in range(4):
            self.check(c.append("INBOX", msg("cs%d" % i)), "OK")
        self.check(c.cmd("SELECT INBOX"), "OK")
        self.check(c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"), "OK")
        self.check(c.cmd("EXPUNGE"), "OK")
        self.check(c.cmd("STORE 2 +FLAGS.SILENT (\\Flagged)"), "OK")
        self.check(c.cmd("CLOSE"), "OK")
        self.peek = self.login()
        problems = self.run_rows(CONDSTORE_ROWS, self.session, self.ctx)
        self.assertEqual(problems, [], "\n" + "\n".join(problems))


# COMPRESS (RFC 4978).  States: "noauth", "auth", "z" (COMPRESS DEFLATE
# done), each on a cleartext or a TLS connection.
#   3 "Result: ... BAD Command unknown, invalid or unknown argument, or
#   COMPRESS already active", and section 5: command-auth =/ compress, so
#   before LOGIN it is a command in the wrong state (BAD, RFC 9051 6);
#   compress = "COMPRESS" SP algorithm, algorithm = "DEFLATE".
#   A second COMPRESS DEFLATE is both "COMPRESS already active" (BAD) and
#   "the same mechanism is active already" (NO [COMPRESSIONACTIVE]); Ringmail
#   answers NO with the code, as Dovecot 2.3 does (core/server/cmd_any.c).
#   Over TLS: no TLS compression here (BoringSSL has none), so COMPRESS is
#   accepted and deflate runs inside TLS (3: "first COMPRESS ... finally
#   TLS").
COMPRESS_ROWS = [
    ("noauth", "COMPRESS DEFLATE", "BAD", None),
    ("noauth", "compress deflate", "BAD", None),
    ("auth", "COMPRESS GZIP", "BAD", None),
    ("auth", "COMPRESS", "BAD", None),
    ("auth", "COMPRESS DEFLATE DEFLATE", "BAD", None),
    ("auth", 'COMPRESS "DEFLATE"', "BAD", None),
    ("auth", "COMPRESS DEFLATE", "OK", None),
    ("auth", "compress Deflate", "OK", None),
    ("z", "COMPRESS DEFLATE", ("NO", "BAD"), None),
    ("z", "COMPRESS DEFLATE", "NO", "COMPRESSIONACTIVE"),
    ("z", "COMPRESS GZIP", "BAD", None),
]


class Compress(Base, RowRunner):
    server_tls = True

    def open(self, tls):
        if not tls:
            return self.connect()
        c = rs.Imap(self.server.host, self.server.tls_port,
                    ssl_context=self.server.client_context())
        self.conns.append(c)
        return c

    def compress(self, c, text="COMPRESS DEFLATE"):
        """Sends COMPRESS; on OK the socket deflates from the byte after
        the tagged OK's CRLF (RFC 4978 3)."""
        from test_imap_compress import ZSock
        t = c.tag()
        c.send("%s %s\r\n" % (t, text))
        self.assertEqual(c.buf, b"")
        line = b""
        while not line.endswith(b"\r\n"):
            b = c.sock.recv(1)
            self.assertTrue(b, "closed before the COMPRESS answer")
            line += b
        r = rs.Response(line[:-2])
        if r.status() and r.status()[0] == "OK":
            c.sock = ZSock(c.sock)
        return r

    def test_compress_rows(self):
        for tls in (False, True):
            for state, cmd, status, code in COMPRESS_ROWS:
                c = self.open(tls)
                if state != "noauth":
                    self.check(c.cmd("LOGIN %s %s" % (quote(self.user), quote(self.password))),
                               "OK")
                if state == "z":
                    self.assertEqual(self.compress(c).status()[0], "OK")
                what = "%s (%s, %s)" % (cmd, state, "TLS" if tls else "cleartext")
                if status == "OK":
                    st = self.compress(c, cmd).status()
                    self.assertEqual(st[0], "OK", what)
                else:
                    self.check(c.cmd(cmd), status, code, what=what)
                # the session goes on, compressed exactly when it was OK'd
                if state != "noauth":
                    r = self.check(c.cmd("SELECT INBOX"), "OK", what=what + ", then SELECT")
                    self.assertTrue(r.of("EXISTS"), what)
                self.check(c.cmd("LOGOUT"), "OK", what=what + ", then LOGOUT")
                self.assertEqual(response_problems(c.transcript), [], what)
                self.drop(c)


# QRESYNC (RFC 7162 section 3.2, its examples and section 7's grammar).
#
# The mailbox (INBOX): UIDs 1..8 appended ({h0} after the last), UIDs 2 and
# 5 expunged together ({hx} after the expunge), then flags set on UIDs 3
# and 7 ({hms} after that).  Message numbers 1..6 are UIDs 1,3,4,6,7,8.  An
# empty mailbox "Empty" that never held a message ({euv} its UIDVALIDITY).
# States: "noauth", "auth" (logged in), "cs" (ENABLE CONDSTORE, SELECT
# INBOX), "q0" (ENABLE QRESYNC), "q" (ENABLE QRESYNC, SELECT INBOX), "sel"
# (SELECT INBOX, nothing enabled); and, for the rows that expunge, a fresh
# mailbox {box} of five messages, UIDs 2 and 4 \Deleted, selected after
# ENABLE QRESYNC ("qm") or ENABLE CONDSTORE ("cm").
#
# The awkward forms follow section 7: uidvalidity = nz-number (so 0 and
# 2^32 are not one); mod-sequence-value = 1*DIGIT, "1 <= n <=
# 9,223,372,036,854,775,807"; known-uids, known-sequence-set and
# known-uid-set are sequence-sets where '"*" is not allowed'; seq-match-data
# = "(" known-sequence-set SP known-uid-set ")" pairs the Nth number with
# the Nth UID, so sets of different sizes are not seq-match-data (Ringmail
# answers BAD); a range may be written either way round (RFC 9051 9: "2:4
# and 4:2 are equivalent").  Section 7 also lets seq-match-data follow
# the modseq without known-uids ([SP known-uids] [SP seq-match-data]).
#
# VANISHED (EARLIER) may name UIDs that never existed (3.2.10.2: "any of
# these UIDs can easily be referenced by the VANISHED (EARLIER)
# response"): the checks require exactly the expunged UIDs among 1..8 and
# allow other UIDs of the known set that are not in the mailbox.
#
# Dovecot 2.3.19 passes the OK rows of SELECT/EXAMINE, UID FETCH and the
# expunges with their checks (VANISHED, FETCH, [CLOSED], HIGHESTMODSEQ in
# the tagged OK) but the seq-match-data ones, and answers OK where many of
# these rows want BAD; where it differs, Ringmail keeps to the RFC:
# - ENABLE before LOGIN: "OK ENABLE ignored in non-authenticated state"
#   (RFC 5161 3.1: "only valid in the authenticated state");
# - ENABLE names again what is already enabled ("* ENABLED QRESYNC
#   QRESYNC"; RFC 5161 3.1: each ENABLED response "SHOULD only contain
#   extensions enabled by the corresponding ENABLE command");
# - SELECT (QRESYNC ...) without ENABLE QRESYNC with a mailbox selected:
#   [CLOSED] before the BAD (Ringmail: a BAD command changes nothing);
# - uidvalidity 0, mod-sequence 0 and 2^63, QRESYNC twice, QRESYNC outside
#   the parentheses, VANISHED twice, CHANGEDSINCE 0 VANISHED, and VANISHED
#   in a second modifier list: OK (section 7's grammar has none of them);
# - seq-match-data: it reports the expunges below a matching pair too (it
#   remembers every expunge); 3.2.5.2: "If a pair matches ... it will not
#   include that range in the VANISHED response".

QR_UIDS = list(range(1, 9))
QR_GONE = (2, 5)
QR_FLAGGED = (3, 7)


def qr_vanished(r, earlier):
    """The UIDs of the VANISHED responses, with (EARLIER) or without."""
    out = []
    for u in r.untagged:
        if not u.raw.upper().startswith(b"* VANISHED"):
            continue
        m = re.match(rb"\* VANISHED (\(EARLIER\) )?([0-9:,]+)$", u.raw, re.I)
        assert m, "10.2: expunged-resp = \"VANISHED\" [SP \"(EARLIER)\"] SP known-uids: %r" % u.raw
        if bool(m.group(1)) == earlier:
            out += rs.seqset(m.group(2).decode())
    return out


def qr_known(text, x):
    """The UIDs of a known-uids argument (None: 1:<UIDNEXT-1>)."""
    if text is None:
        return set(range(1, x["uidnext"]))
    return set(rs.seqset(text))


def ck_qresync(m="h0", known=None, low=1, closed=False, ro=False, sel=True):
    """A SELECT/EXAMINE (QRESYNC) (sel) or a UID FETCH (CHANGEDSINCE
    VANISHED) (not sel) from mod-sequence x[m] with these known UIDs; low:
    the lowest UID seq-match-data leaves to VANISHED.  m=None: the
    UIDVALIDITY did not match, nothing but the usual responses."""

    def check(t, r, x):
        kinds = [u.kind() for u in r.untagged]
        vi = [i for i, u in enumerate(r.untagged) if u.raw.upper().startswith(b"* VANISHED")]
        fi = [i for i, k in enumerate(kinds) if k == "FETCH"]
        if sel:
            t.assertEqual(r.numbers("EXISTS"), [len(x["live"])], r.describe())
            t.assertEqual(untagged_hms(r), x["hms"], "3.1.2.1: HIGHESTMODSEQ")
            t.assertEqual(r.code_name(), "READ-ONLY" if ro else "READ-WRITE", r.describe())
            cl = [i for i, u in enumerate(r.untagged) if b"[CLOSED]" in u.raw]
            # 3.2.11: "a boundary between responses for the previously
            # opened mailbox ... and the newly selected mailbox"
            t.assertEqual(cl, [0] if closed else [], "3.2.11 [CLOSED]\n" + r.describe())
            # 3.2.5: "the server MUST send all untagged responses as
            # specified in Sections 6.3.1 and 6.3.2 of [RFC3501]" first
            t.assertTrue(all(i > kinds.index("EXISTS") for i in vi + fi), r.describe())
        # 3.2.6: "Any VANISHED (EARLIER) responses MUST be returned before
        # any FETCH responses"
        t.assertTrue(not vi or not fi or max(vi) < min(fi), r.describe())
        t.assertLessEqual(len(vi), 1, r.describe())
        t.assertEqual(qr_vanished(r, False), [], "3.2.10: EARLIER, not a live expunge")
        got_v = qr_vanished(r, True)
        if m is None:
            t.assertEqual(got_v, [], "3.2.5: UIDVALIDITY mismatch\n" + r.describe())
            t.assertEqual(r.fetch_list(), [], "3.2.5: UIDVALIDITY mismatch\n" + r.describe())
            return
        since = x[m] if isinstance(m, str) else m
        known_set = qr_known(known, x)
        want_v = sorted(u for u in QR_GONE if u in known_set and u >= low and x["hx"] > since)
        t.assertEqual(sorted(u for u in got_v if u in QR_UIDS), want_v,
                      "3.2.5.1 / 3.2.5.2 VANISHED (EARLIER)\n" + r.describe())
        t.assertTrue(set(got_v) <= known_set, "VANISHED outside the known UIDs")
        t.assertFalse(set(got_v) & set(x["live"]), "VANISHED names a message that is there")
        # 3.2.5.1: "flag changes (using FETCH responses that MUST contain
        # UIDs)"; seq-match-data restricts the expunges only
        want_f = {u for u in x["live"] if u in known_set and x["ms"][u] > since}
        got = {}
        for n, f in r.fetch_list():
            t.assertIn("UID", f, "3.2.5.1: FETCH responses that MUST contain UIDs")
            t.assertIn("FLAGS", f, r.describe())
            u = int(f["UID"])
            t.assertEqual(n, x["live"].index(u) + 1, "message number of UID %d" % u)
            t.assertEqual(int(f["MODSEQ"][0]), x["ms"][u], r.describe())
            got[u] = f
        t.assertEqual(set(got), want_f, "3.2.5.1 FETCH of what changed\n" + r.describe())
    return check


def ck_enabled_q(*names):
    def check(t, r, x):
        want = b" ".join([b"* ENABLED"] + [n.encode() for n in names])
        t.assertEqual([u.raw.upper() for u in r.of("ENABLED")], [want], r.describe())
    return check


def ck_enabled_implies_condstore(t, r, x):
    # 3.2.3: "the presence of the "QRESYNC" capability implies support for
    # the CONDSTORE IMAP extension": HIGHESTMODSEQ on the next SELECT
    ck_enabled_q("QRESYNC")(t, r, x)
    s = t.cur
    rr = t.check(s.cmd("SELECT INBOX"), "OK")
    t.assertEqual(untagged_hms(rr), x["hms"], "3.2.3: QRESYNC implies CONDSTORE")


def ck_first_enabling_q(t, r, x):
    # 3.1: "A first CONDSTORE enabling command executed in the session with
    # a mailbox selected MUST cause the server to return HIGHESTMODSEQ"
    ck_enabled_q("QRESYNC")(t, r, x)
    t.assertEqual(untagged_hms(r), x["hms"], "3.1: the first enabling command")


def ck_still_selected(t, r, x):
    # 3.2.5: "If any parameter is not syntactically valid, the server
    # returns the tagged BAD response, and the mailbox remains unselected"
    # (Ringmail: a BAD SELECT leaves the selection as it was, without
    # [CLOSED]: the command was not carried out)
    t.assertEqual([u for u in r.untagged if b"[CLOSED]" in u.raw], [], r.describe())
    rr = t.cur.cmd("FETCH 1 (UID)")
    t.assertEqual(rr.status, "OK", rr.describe())


def ck_not_selected(t, r, x):
    rr = t.cur.cmd("FETCH 1 (UID)")
    t.assertEqual(rr.status, "BAD", "3.2.5: the mailbox remains unselected\n" + rr.describe())


def ck_empty(t, r, x):
    # 3.2.5.1: "If the mailbox is empty and never had any messages in it,
    # then lack of the list of UIDs is interpreted as an empty set of UIDs"
    t.assertEqual(r.numbers("EXISTS"), [0])
    t.assertEqual(r.of("VANISHED"), [], r.describe())
    t.assertEqual(r.fetch_list(), [], r.describe())


def qr_status_hms(t, box):
    return status_items(t.check(t.peek.cmd("STATUS %s (HIGHESTMODSEQ)" % quote(box)), "OK"))[
        "HIGHESTMODSEQ"]


def ck_expunged(uids, vanished=True, hms_in_tagged=True):
    """An expunge in {box}: VANISHED (no EARLIER) instead of EXPUNGE once
    QRESYNC is enabled (3.2.10.2), and the new HIGHESTMODSEQ in the tagged
    OK (3.2.7, 3.2.9) or, after MOVE, in the tagged or an untagged OK (RFC
    6851 4.4)."""

    def check(t, r, x):
        if vanished:
            t.assertEqual(r.of("EXPUNGE"), [], "3.2.10.2: VANISHED instead of EXPUNGE")
            t.assertEqual(qr_vanished(r, True), [],
                          "3.2.10.2: \"MUST NOT contain the EARLIER tag\"")
            t.assertEqual(sorted(qr_vanished(r, False)), sorted(uids), r.describe())
            t.assertLessEqual(len(r.of("VANISHED")), 1, r.describe())
        else:
            t.assertEqual(r.of("VANISHED"), [], r.describe())
            # the messages 1..5 have UIDs 1..5; each "* n EXPUNGE" renumbers
            # the ones after n (RFC 9051 7.5.1), in whatever order they come
            left = list(range(1, 6))
            gone = [left.pop(n - 1) for n in r.numbers("EXPUNGE")]
            t.assertEqual(sorted(gone), sorted(uids), r.describe())
        hms = qr_status_hms(t, x["box"])
        if not uids:
            t.assertEqual(r.of("VANISHED") + r.of("EXPUNGE"), [], r.describe())
            return
        t.assertGreater(hms, x["box_hms"], "3.2: \"MUST increment the per-mailbox mod-sequence\"")
        if hms_in_tagged is None:
            return
        v = r.code if hms_in_tagged else r.code_of("HIGHESTMODSEQ")
        t.assertTrue(v and v.upper().startswith("HIGHESTMODSEQ "),
                     "3.2.7: \"MUST send the updated per-mailbox modification sequence using "
                     "the HIGHESTMODSEQ response code ... in the tagged OK\"\n" + r.describe())
        t.assertEqual(int(v.split()[1]), hms)
    return check


def ck_close_q(t, r, x):
    # 3.2.8: "No untagged EXPUNGE (or VANISHED) responses are sent"; "MUST
    # NOT send the updated per-mailbox modification sequence using the
    # HIGHESTMODSEQ response code ... in the tagged OK"
    t.assertEqual(r.untagged, [], r.describe())
    t.assertIsNone(r.code_of("HIGHESTMODSEQ"), r.describe())
    st = status_items(t.check(t.peek.cmd("STATUS %s (MESSAGES HIGHESTMODSEQ)" % quote(x["box"])),
                              "OK"))
    t.assertEqual(st["MESSAGES"], 3)
    t.assertGreater(st["HIGHESTMODSEQ"], x["box_hms"], "3.2.8: \"MUST increment\"")


def ck_nothing_gone(t, r, x):
    t.assertEqual(r.of("VANISHED") + r.of("EXPUNGE"), [], r.describe())
    t.assertEqual(qr_status_hms(t, x["box"]), x["box_hms"], "nothing left {box}")


def ck_move_then_resync(t, r, x):
    # 3.2: MOVE associates "the incremented mod-sequence with the UIDs of
    # the expunged messages": a resync from before it names them
    ck_expunged([2, 3], hms_in_tagged=False)(t, r, x)
    s = t.login(enable="QRESYNC")
    rr = t.check(s.cmd("EXAMINE %s (QRESYNC (%d %d))" % (quote(x["box"]), x["box_uv"],
                                                       x["box_hms"])), "OK")
    t.assertEqual(sorted(qr_vanished(rr, True)), [2, 3], rr.describe())


def ck_move_to_self(t, r, x):
    ck_expunged([1], hms_in_tagged=False)(t, r, x)
    t.assertEqual(r.numbers("EXISTS"), [5], r.describe())


QRESYNC_ROWS = [
    # ENABLE (3.2.3: "REQUIRED to support "ENABLE QRESYNC" and "ENABLE
    # QRESYNC CONDSTORE" ... the order of parameters is not significant";
    # RFC 5161 3.1 "each corresponding ENABLED response SHOULD only contain
    # extensions enabled by the corresponding ENABLE command")
    ("auth", "ENABLE QRESYNC", "OK", None, ck_enabled_implies_condstore),
    ("auth", "enable qresync", "OK", None, ck_enabled_q("QRESYNC")),
    ("auth", "ENABLE QRESYNC CONDSTORE", "OK", None, ck_enabled_q("QRESYNC", "CONDSTORE")),
    ("auth", "ENABLE CONDSTORE QRESYNC", "OK", None, ck_enabled_q("CONDSTORE", "QRESYNC")),
    ("auth", "ENABLE QRESYNC QRESYNC", "OK", None, ck_enabled_q("QRESYNC")),
    ("auth", "ENABLE QRESYNC X-UNKNOWN", "OK", None, ck_enabled_q("QRESYNC")),
    ("q0", "ENABLE QRESYNC", "OK", None, ck_enabled_q()),
    ("q0", "ENABLE CONDSTORE", "OK", None, ck_enabled_q()),
    ("cs", "ENABLE QRESYNC", "OK", None, ck_enabled_q("QRESYNC")),
    ("sel", "ENABLE QRESYNC", "OK", None, ck_first_enabling_q),
    ("noauth", "ENABLE QRESYNC", "BAD", None, None),
    ("auth", "ENABLE (QRESYNC)", "BAD", None, None),
    # SELECT/EXAMINE (QRESYNC ...) without ENABLE QRESYNC (3.2.5: "MUST
    # respond with a tagged BAD response if the Quick Resynchronization
    # parameter ... is specified and the client hasn't issued "ENABLE
    # QRESYNC"")
    ("auth", "SELECT INBOX (QRESYNC ({uv} {h0}))", "BAD", None, None),
    ("cs", "SELECT INBOX (QRESYNC ({uv} {h0}))", "BAD", None, ck_still_selected),
    ("sel", "EXAMINE INBOX (QRESYNC ({uv} {h0}))", "BAD", None, ck_still_selected),
    # 3.2.5.1 and its example: VANISHED (EARLIER) of the expunged, then the
    # FETCH of what changed, "as if the client has specified 1:<maxuid>"
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0}))", "OK", "READ-WRITE", ck_qresync()),
    ("q0", "select inbox (qresync ({uv} {h0}))", "OK", "READ-WRITE", ck_qresync()),
    ("q0", "EXAMINE INBOX (QRESYNC ({uv} {h0}))", "OK", "READ-ONLY", ck_qresync(ro=True)),
    ("q", "SELECT INBOX (QRESYNC ({uv} {h0}))", "OK", "READ-WRITE", ck_qresync(closed=True)),
    ("q", "EXAMINE INBOX (QRESYNC ({uv} {h0}))", "OK", "READ-ONLY",
     ck_qresync(closed=True, ro=True)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {hx}))", "OK", None, ck_qresync("hx")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {hms}))", "OK", None, ck_qresync("hms")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} 1))", "OK", None, ck_qresync(1)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {hms1}))", "OK", None, ck_qresync("hms1")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} %d))" % MAX_MODSEQ, "OK", None, ck_qresync(MAX_MODSEQ)),
    ("q0", "SELECT Empty (QRESYNC ({euv} 1))", "OK", None, ck_empty),
    ("q0", "SELECT Empty (QRESYNC ({euv} 1 1:5 (1 1)))", "OK", None, ck_empty),
    ("q0", "SELECT {{5+}}\r\nINBOX (QRESYNC ({uv} {h0}))", "OK", None, ck_qresync()),
    ("q0", 'EXAMINE "INBOX" (QRESYNC ({uv} {h0} 1:8))', "OK", None,
     ck_qresync(known="1:8", ro=True)),
    # uidvalidity (3.2.5: "If the provided UIDVALIDITY doesn't match ...
    # MUST ignore the remaining parameters and behave as if no dynamic
    # message data changed"; uidvalidity = nz-number)
    ("q0", "SELECT INBOX (QRESYNC ({uv1} {h0}))", "OK", "READ-WRITE", ck_qresync(None)),
    ("q0", "SELECT INBOX (QRESYNC ({uv1} {h0} 1:8 (1 1)))", "OK", None, ck_qresync(None)),
    ("q0", "SELECT INBOX (QRESYNC (4294967295 {h0}))", "OK", None, ck_qresync(None)),
    ("q0", "SELECT INBOX (QRESYNC (0 {h0}))", "BAD", None, ck_not_selected),
    # (3.2.5: the arguments are checked "Before opening the specified
    # mailbox", so a syntax error is BAD even where the UIDVALIDITY would
    # not match)
    ("q0", "SELECT INBOX (QRESYNC ({uv1} 0))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv1} {h0} 1:*))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv1} {h0} 1:8 (1:2 1)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC (4294967296 {h0}))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC (-1 {h0}))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC (x {h0}))", "BAD", None, None),
    # the mod-sequence (mod-sequence-value: 1 .. 2^63-1; not optional)
    ("q0", "SELECT INBOX (QRESYNC ({uv} 0))", "BAD", None, ck_not_selected),
    ("q0", "SELECT INBOX (QRESYNC ({uv} %d))" % (MAX_MODSEQ + 1), "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} 99999999999999999999999))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv}))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} x))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} -1))", "BAD", None, None),
    # the parameter itself (RFC 4466 2.1 select-params; "QRESYNC" SP "("
    # ... ")"; once, and with CONDSTORE)
    ("q0", "SELECT INBOX (QRESYNC)", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ())", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC {uv} {h0})", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0})", "BAD", None, None),
    ("q0", "SELECT INBOX QRESYNC ({uv} {h0})", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC({uv} {h0}))", "BAD", None, None),
    # (an extra space inside the parentheses: Ringmail's list parser skips
    # it here as in every parenthesized list, FETCH and STORE included)
    ("q0", "SELECT INBOX (QRESYNC ( {uv} {h0}))", "OK", None, ck_qresync()),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} ))", "OK", None, ck_qresync()),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0}) QRESYNC ({uv} {h0}))", "BAD", None, None),
    ("q", "SELECT INBOX (QRESYNC ({uv} {h0}) QRESYNC ({uv} {h0}))", "BAD", None,
     ck_still_selected),
    ("q0", "SELECT INBOX (CONDSTORE QRESYNC ({uv} {h0}))", "OK", None, ck_qresync()),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0}) CONDSTORE)", "OK", None, ck_qresync()),
    ("q0", "EXAMINE INBOX (condstore qresync ({uv} {hx}))", "OK", "READ-ONLY",
     ck_qresync("hx", ro=True)),
    ("cs", "SELECT INBOX (CONDSTORE QRESYNC ({uv} {h0}))", "BAD", None, ck_still_selected),
    # known-uids (a sequence-set of UIDs, '"*" is not allowed')
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8))", "OK", None, ck_qresync(known="1:8")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 8:1))", "OK", None, ck_qresync(known="1:8")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:4))", "OK", None, ck_qresync(known="1:4")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 5:8))", "OK", None, ck_qresync(known="5:8")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 2,5))", "OK", None, ck_qresync(known="2,5")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 3,7))", "OK", None, ck_qresync(known="3,7")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1,1,2,2:1))", "OK", None,
     ck_qresync(known="1,2")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:100))", "OK", None, ck_qresync(known="1:100")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 9:4294967295))", "OK", None,
     ck_qresync(known="9:20")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 4294967295))", "OK", None,
     ck_qresync(known="4294967295")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {hx} 1:8))", "OK", None, ck_qresync("hx", known="1:8")),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:*))", "BAD", None, ck_not_selected),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} *))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1,*))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 0))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 0:3))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 4294967296))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1,,2))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} x))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 1:8))", "BAD", None, None),
    # seq-match-data (3.2.5.2: "If a pair matches, then the client knows
    # of any expunges up to, and including, the message"; the first pair
    # that does not match ends the matching; it restricts the expunges, not
    # the flag changes).  Now: 1 2 3 4 5 6 = UIDs 1 3 4 6 7 8.
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1:3 1,3,4)))", "OK", None,
     ck_qresync(known="1:8", low=5)),
    # (a range is the same written either way round, RFC 9051 9; "Both
    # MUST be provided in ascending order" binds the client)
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (2:1 1,3)))", "OK", None,
     ck_qresync(known="1:8", low=4)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1,2 1,4)))", "OK", None,
     ck_qresync(known="1:8", low=2)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (2,4 3,6)))", "OK", None,
     ck_qresync(known="1:8", low=7)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (6 8)))", "OK", None,
     ck_qresync(known="1:8", low=9)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (3 5)))", "OK", None,
     ck_qresync(known="1:8", low=1)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1,30 1,40)))", "OK", None,
     ck_qresync(known="1:8", low=2)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (4294967295 4294967295)))", "OK", None,
     ck_qresync(known="1:8", low=1)),
    ("q0", "EXAMINE INBOX (QRESYNC ({uv} {h0} 1:8 (1:3 1,3,4)))", "OK", "READ-ONLY",
     ck_qresync(known="1:8", low=5, ro=True)),
    # [SP known-uids] [SP seq-match-data]: seq-match-data alone
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} (1:3 1,3,4)))", "OK", None, ck_qresync(low=5)),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1:2 1,3,4)))", "BAD", None, ck_not_selected),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1:3 1,3)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1:* 1:3)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1:3 1:*)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (0 1)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1 0)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 ()))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1 1 1)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1 1) (1 1)))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 (1 1)x))", "BAD", None, None),
    ("q0", "SELECT INBOX (QRESYNC ({uv} {h0} 1:8 1 1))", "BAD", None, None),
    # UID FETCH (CHANGEDSINCE n VANISHED) (3.2.6 and its Example 1: the
    # expunged UIDs of the set "whose associated mod-sequence is larger",
    # as VANISHED (EARLIER) before any FETCH)
    ("q", "UID FETCH 1:8 (FLAGS) (CHANGEDSINCE {h0} VANISHED)", "OK", None,
     ck_qresync(known="1:8", sel=False)),
    ("q", "UID FETCH 1:* (FLAGS) (VANISHED CHANGEDSINCE {h0})", "OK", None,
     ck_qresync(sel=False)),
    ("q", "uid fetch 1:* (flags) (changedsince {h0} vanished)", "OK", None,
     ck_qresync(sel=False)),
    ("q", "UID FETCH 8:1 FLAGS (CHANGEDSINCE {h0} VANISHED)", "OK", None,
     ck_qresync(known="1:8", sel=False)),
    ("q", "UID FETCH 2 (FLAGS) (CHANGEDSINCE {h0} VANISHED)", "OK", None,
     ck_qresync(known="2", sel=False)),
    ("q", "UID FETCH 3:4 (FLAGS) (CHANGEDSINCE {h0} VANISHED)", "OK", None,
     ck_qresync(known="3:4", sel=False)),
    ("q", "UID FETCH 1:100 (FLAGS) (CHANGEDSINCE {h0} VANISHED)", "OK", None,
     ck_qresync(known="1:100", sel=False)),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hx} VANISHED)", "OK", None,
     ck_qresync("hx", sel=False)),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms} VANISHED)", "OK", None,
     ck_qresync("hms", sel=False)),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "OK", None,
     ck_qresync(1, sel=False)),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % MAX_MODSEQ, "OK", None,
     ck_qresync(MAX_MODSEQ, sel=False)),
    # its errors: "NOT allowed with a FETCH command"; "MUST only be
    # specified together with the CHANGEDSINCE UID FETCH modifier"; BAD
    # "if ... the client hasn't issued "ENABLE QRESYNC"" (CONDSTORE is not
    # enough); rexpunges-fetch-mod = "VANISHED" (no value)
    ("q", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", None, None),
    ("q", "FETCH 1:* (FLAGS) (VANISHED)", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (VANISHED)", "BAD", None, None),
    ("q", "uid fetch 1:* (flags) (vanished)", "BAD", None, None),
    ("cs", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", None, None),
    ("sel", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED VANISHED)", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED 1)", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 (VANISHED))", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0 VANISHED)", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE VANISHED)", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED", "BAD", None, None),
    ("q", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1) (VANISHED)", "BAD", None, None),
    # VANISHED instead of EXPUNGE (3.2.7, 3.2.9, 3.2.10.2 and its example;
    # RFC 6851 4.4 for MOVE); {box}: UIDs 1..5, 2 and 4 \Deleted
    ("qm", "EXPUNGE", "OK", "HIGHESTMODSEQ", ck_expunged([2, 4])),
    ("qm", "expunge", "OK", "HIGHESTMODSEQ", ck_expunged([2, 4])),
    ("qm", "UID EXPUNGE 1:3", "OK", "HIGHESTMODSEQ", ck_expunged([2])),
    ("qm", "UID EXPUNGE 4:*", "OK", "HIGHESTMODSEQ", ck_expunged([4])),
    ("qm", "UID EXPUNGE 1,3,5", "OK", None, ck_expunged([])),
    ("qm", "MOVE 2:3 Other", "OK", None, ck_move_then_resync),
    ("qm", "UID MOVE 4,5 Other", "OK", None, ck_expunged([4, 5], hms_in_tagged=False)),
    ("qm", "UID MOVE 9 Other", "OK", None, ck_nothing_gone),
    ("qm", "COPY 2 Other", "OK", None, ck_nothing_gone),
    # (RFC 6851 allows a MOVE to the selected mailbox: a new UID, the old
    # one vanishes)
    ("qm", "UID MOVE 1 {box}", "OK", None, ck_move_to_self),
    ("qm", "CLOSE", "OK", None, ck_close_q),
    ("qm", "UNSELECT", "OK", None, ck_nothing_gone),
    # (without QRESYNC: EXPUNGE responses; HIGHESTMODSEQ "is optional in
    # this case", Ringmail leaves it out of the check)
    ("cm", "EXPUNGE", "OK", None, ck_expunged([2, 4], vanished=False, hms_in_tagged=None)),
    ("cm", "UID EXPUNGE 4", "OK", None, ck_expunged([4], vanished=False, hms_in_tagged=None)),
    ("cm", "MOVE 2 Other", "OK", None, ck_expunged([2], vanished=False, hms_in_tagged=None)),
]


class Qresync(Base, RowRunner):

    def ctx(self):
        self.nbox += 1
        x = dict(self.base)
        x["box"] = "Q%d" % self.nbox
        return x

    def session(self, state):
        x = self.cur_ctx
        if state == "noauth":
            c = self.connect()
        elif state in ("qm", "cm"):
            s = self.peek
            self.check(s.cmd("CREATE " + x["box"]), "OK")
            for u in range(1, 6):
                self.check(s.append(x["box"], msg("m%d" % u),
                                    flags=["\\Deleted"] if u in (2, 4) else None), "OK")
            st = status_items(self.check(
                s.cmd("STATUS %s (UIDVALIDITY HIGHESTMODSEQ)" % x["box"]), "OK"))
            x["box_uv"], x["box_hms"] = st["UIDVALIDITY"], st["HIGHESTMODSEQ"]
            c = self.login(enable="QRESYNC" if state == "qm" else "CONDSTORE")
            self.check(c.cmd("SELECT " + x["box"]), "OK")
        else:
            enable = {"cs": "CONDSTORE", "q0": "QRESYNC", "q": "QRESYNC"}.get(state)
            c = self.login(enable=enable)
            if state in ("cs", "q", "sel"):
                self.check(c.cmd("SELECT INBOX"), "OK")
        self.cur = c
        return c

    def hms_of(self, c, box="INBOX"):
        return status_items(self.check(c.cmd("STATUS %s (HIGHESTMODSEQ)" % box), "OK"))[
            "HIGHESTMODSEQ"]

    def test_qresync_rows(self):
        c = self.login()
        for i in QR_UIDS:
            self.check(c.append("INBOX", msg("q%d" % i)), "OK")
        self.check(c.cmd("CREATE Empty"), "OK")
        self.check(c.cmd("CREATE Other"), "OK")
        h0 = self.hms_of(c)
        self.check(c.cmd("SELECT INBOX"), "OK")
        self.check(c.cmd("UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, QR_GONE))),
                   "OK")
        self.check(c.cmd("EXPUNGE"), "OK")
        hx = self.hms_of(c)
        for u in QR_FLAGGED:
            self.check(c.cmd("UID STORE %d +FLAGS.SILENT ($Row%d)" % (u, u)), "OK")
        self.check(c.cmd("CLOSE"), "OK")
        self.peek = self.login()
        r = self.check(self.peek.cmd("EXAMINE INBOX (CONDSTORE)"), "OK")
        uv = int(r.code_of("UIDVALIDITY").split()[1])
        hms = untagged_hms(r)
        uidnext = int(r.code_of("UIDNEXT").split()[1])
        r = self.check(self.peek.cmd("FETCH 1:* (UID MODSEQ)"), "OK")
        ms = {int(f["UID"]): int(f["MODSEQ"][0]) for _, f in r.fetch_list()}
        live = [int(f["UID"]) for _, f in r.fetch_list()]
        self.assertEqual(live, [1, 3, 4, 6, 7, 8])
        self.assertTrue(h0 < hx < hms, (h0, hx, hms))
        r = self.check(self.peek.cmd("STATUS Empty (UIDVALIDITY)"), "OK")
        euv = status_items(r)["UIDVALIDITY"]
        self.check(self.peek.cmd("UNSELECT"), "OK")
        self.base = {"uv": uv, "uv1": uv % 4294967294 + 1, "h0": h0, "hx": hx, "hms": hms,
                     "hms1": hms + 1, "ms": ms, "live": live, "uidnext": uidnext, "euv": euv}
        self.nbox = 0

        def ctx_of():
            self.cur_ctx = self.ctx()
            return self.cur_ctx
        problems = self.run_rows(QRESYNC_ROWS, self.session, ctx_of)
        self.assertEqual(problems, [], "\n" + "\n".join(problems))


class Continuations(Base):
    """Lines that answer a continuation: IDLE's DONE (RFC 2177 3: case
    does not matter in ABNF strings; anything else ends IDLE with BAD) and
    AUTHENTICATE's responses (RFC 9051 6.2.2: "*" or invalid base64 MUST
    get a tagged BAD; Dovecot 2.3 answers NO to invalid base64)."""

    ROWS = [
        ("sel", [b"a IDLE", b"done"], [("+", None), ("a", "OK")]),
        ("sel", [b"a IDLE", b"FOO", b"b NOOP"], [("+", None), ("a", "BAD"), ("b", "OK")]),
        ("noauth", [b"a AUTHENTICATE PLAIN", b"*", b"b NOOP"],
         [("+", None), ("a", "BAD"), ("b", "OK")]),
        ("noauth", [b"a AUTHENTICATE PLAIN", b"!!!", b"b NOOP"],
         [("+", None), ("a", "BAD"), ("b", "OK")]),
    ]

    def test_continuation_lines(self):
        for state, lines, want in self.ROWS:
            c = self.login(select="INBOX") if state == "sel" else self.connect()
            got = []
            for line in lines:          # each line gets exactly one response
                c.send(line + b"\r\n")
                r = c.read()
                got.append((r.tag, None if r.continuation else r.status()[0]))
            self.assertEqual(got, want, lines)


# QUOTA (RFC 9208): the examples of section 4 and section 7's grammar, for
# a user without limits (usage and limits: test_imap_quota.py).  A row:
# (state, command, status, code); each gets a session of its own.
QUOTA_ROWS = [
    # 4.1.1 GETQUOTA: "NO - getquota error: no such quota root"
    ("auth", 'GETQUOTA ""', "OK", None),
    ("auth", 'getquota ""', "OK", None),
    ("auth", "GETQUOTA \"!partition/sda4\"", "NO", None),
    ("auth", "GETQUOTA", "BAD", None),
    ("auth", 'GETQUOTA "" x', "BAD", None),
    ("noauth", 'GETQUOTA ""', "BAD", None),
    # 4.1.2 GETQUOTAROOT: "the mailbox name parameter doesn't have to
    # reference an existing mailbox"
    ("auth", "GETQUOTAROOT INBOX", "OK", None),
    ("auth", "GETQUOTAROOT comp.mail.mime", "OK", None),
    ("sel", "GETQUOTAROOT INBOX", "OK", None),
    ("auth", "GETQUOTAROOT", "BAD", None),
    ("auth", "GETQUOTAROOT INBOX x", "BAD", None),
    # 4.1.3 SETQUOTA without QUOTASET: "NO - setquota error: can't set
    # that data"; "BAD - command unknown or arguments invalid"
    ("auth", "SETQUOTA \"\" (STORAGE 510)", "NO", "NOPERM"),
    ("auth", "SETQUOTA \"#user/alice\" (STORAGE 512 MESSAGE 1000)", "NO", "NOPERM"),
    ("auth", 'SETQUOTA "" ()', "NO", "NOPERM"),
    ("auth", 'SETQUOTA "" (STORAGE)', "BAD", None),
    ("auth", 'SETQUOTA "" STORAGE 510', "BAD", None),
    ("auth", 'SETQUOTA "" (STORAGE x)', "BAD", None),
    ("auth", 'SETQUOTA ""', "BAD", None),
    # 4.1.4 STATUS DELETED and DELETED-STORAGE
    ("auth", "STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)", "OK", None),
    ("auth", "STATUS INBOX (deleted-storage)", "OK", None),
    ("auth", "STATUS INBOX (DELETED-STORAGES)", "BAD", None),
]


class Quota(Base):

    def test_quota_rows(self):
        for state, cmd, status, code in QUOTA_ROWS:
            c = (self.connect() if state == "noauth" else
                 self.login(select="INBOX") if state == "sel" else self.login())
            r = self.check(c.cmd(cmd), status, code, what="%s (%s)" % (cmd, state))
            if status == "OK" and cmd.upper().startswith("GETQUOTA"):
                # 4.2.1: "an empty list means there are no administrative
                # resource limits in the quota root"
                self.assertEqual([q.raw for q in r.of("QUOTA")], [b'* QUOTA "" ()'], cmd)
            if cmd.upper().startswith("GETQUOTAROOT") and status == "OK":
                self.assertEqual(len(r.of("QUOTAROOT")), 1, cmd)
                self.assertTrue(r.of("QUOTAROOT")[0].raw.endswith(b' ""'), cmd)
            if cmd.upper().startswith("STATUS") and status == "OK":
                items = r.of("STATUS")[0].items()[-1]
                self.assertTrue(any(str(i).upper() == "DELETED-STORAGE" for i in items), cmd)
            self.assertEqual(response_problems(c.transcript), [], cmd)
            c.close()
            self.conns.remove(c)


# OBJECTID (RFC 8474 4-7) and SAVEDATE (RFC 8514 4-5).  A row: (state,
# command, status, code, pattern): state "auth" or "sel" (INBOX selected,
# one message); pattern, where given, must match one untagged response (or
# the tagged one's code, for CREATE).
OBJID = r"[A-Za-z0-9_-]{1,255}"     # 7: objectid = 1*255(ALPHA / DIGIT / "_" / "-")
DATE_TIME = r'"[ 0-9]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"'
OBJECTID_ROWS = [
    # 4.1: "MUST include the MAILBOXID response code in the tagged OK
    # response to all successful CREATE commands"
    ("auth", "CREATE objid-box", "OK", "MAILBOXID", r"MAILBOXID \(%s\)$" % OBJID),
    # 4.2: "an untagged OK response with the MAILBOXID response code on all
    # successful SELECT and EXAMINE commands"
    ("auth", "SELECT INBOX", "OK", "READ-WRITE", r"\* OK \[MAILBOXID \(%s\)\] " % OBJID),
    ("auth", "EXAMINE INBOX", "OK", "READ-ONLY", r"\* OK \[MAILBOXID \(%s\)\] " % OBJID),
    # 4.3: status-att-val =/ "MAILBOXID" SP "(" objectid ")"
    ("auth", "STATUS INBOX (MAILBOXID)", "OK", None,
     r'\* STATUS "?INBOX"? \(MAILBOXID \(%s\)\)$' % OBJID),
    ("auth", "STATUS INBOX (mailboxid MESSAGES)", "OK", None,
     r"\(MAILBOXID \(%s\) MESSAGES 1\)$|\(MESSAGES 1 MAILBOXID \(%s\)\)$" % (OBJID, OBJID)),
    ("auth", "STATUS INBOX (MAILBOXIDS)", "BAD", None, None),
    ("auth", "STATUS INBOX MAILBOXID", "BAD", None, None),
    # 5.3: fetch-emailid-resp, fetch-threadid-resp = "THREADID" SP
    # ( "(" objectid ")" / nil ); NIL where THREADID is not supported
    ("sel", "FETCH 1 (EMAILID THREADID)", "OK", None,
     r"\* 1 FETCH \(EMAILID \(%s\) THREADID (\(%s\)|NIL)\)$" % (OBJID, OBJID)),
    ("sel", "UID FETCH 1:* emailid", "OK", None, r"\* 1 FETCH \(UID \d+ EMAILID \(%s\)\)$" % OBJID),
    ("sel", "FETCH 1 THREADID", "OK", None, r"\* 1 FETCH \(THREADID (\(%s\)|NIL)\)$" % OBJID),
    ("sel", "FETCH 1 EMAILID.PEEK", "BAD", None, None),
    ("auth", "FETCH 1 EMAILID", "BAD", None, None),
    # 6: search-key =/ "EMAILID" SP objectid / "THREADID" SP objectid
    ("sel", "SEARCH EMAILID M0_1", "OK", None, r"\* SEARCH$"),
    ("sel", "SEARCH EMAILID x-y_z", "OK", None, r"\* SEARCH$"),
    # 5.2: an id the server never gave (T1) matches no message
    ("sel", "SEARCH THREADID T1", "OK", None, r"\* SEARCH$"),
    ("sel", "SEARCH NOT THREADID T1", "OK", None, r"\* SEARCH 1$"),
    ("sel", "SEARCH EMAILID", "BAD", None, None),
    ("sel", 'SEARCH EMAILID "a b"', "BAD", None, None),
    ("sel", "SEARCH EMAILID a.b", "BAD", None, None),
    ("sel", "SEARCH EMAILID " + "a" * 256, "BAD", None, None),
    ("sel", "SEARCH THREADID", "BAD", None, None),
    # RFC 8514 4.2, 5: msg-att-static =/ "SAVEDATE" SP (date-time / nil)
    ("sel", "FETCH 1 SAVEDATE", "OK", None, r"\* 1 FETCH \(SAVEDATE (%s|NIL)\)$" % DATE_TIME),
    ("sel", "fetch 1 (savedate uid)", "OK", None,
     r"\* 1 FETCH \(UID \d+ SAVEDATE (%s|NIL)\)$" % DATE_TIME),
    # 4.3: search-key =/ "SAVEDBEFORE" SP date / "SAVEDON" SP date /
    # "SAVEDSINCE" SP date / "SAVEDATESUPPORTED"
    ("sel", "SEARCH SAVEDBEFORE 1-Jan-2000", "OK", None, r"\* SEARCH$"),
    ("sel", "SEARCH SAVEDON 1-Jan-2000", "OK", None, r"\* SEARCH$"),
    ("sel", 'SEARCH SAVEDSINCE "01-Jan-2000"', "OK", None, r"\* SEARCH 1$"),
    ("sel", "SEARCH SAVEDATESUPPORTED", "OK", None, r"\* SEARCH 1$"),
    ("sel", "SEARCH SAVEDON", "BAD", None, None),
    ("sel", "SEARCH SAVEDON 1-Foo-2000", "BAD", None, None),
    ("sel", "SEARCH SAVEDATESUPPORTED 1-Jan-2000", "BAD", None, None),
]


class ObjectId(Base):

    def test_objectid_rows(self):
        c0 = self.login()
        self.check(c0.append("INBOX", msg()), "OK")
        for state, cmd, status, code, pat in OBJECTID_ROWS:
            c = self.login(select="INBOX") if state == "sel" else self.login()
            r = self.check(c.cmd(cmd), status, code, what="%s (%s)" % (cmd, state))
            if pat:
                lines = [u.raw.decode() for u in r.untagged] + [r.code or ""]
                self.assertTrue(any(re.search(pat, x) for x in lines),
                                "%s: no response matches %s\n%s" % (cmd, pat, r.describe()))
            self.assertEqual(response_problems(c.transcript), [], cmd)
            c.close()
            self.conns.remove(c)


rs.parametrize(globals(), Names, Nil, Literals, SeqSets, ArgCounts, Grammar, RenameInbox, Choices, Continuations,
               Extensions, Condstore, Qresync, Compress, Quota, ObjectId)

if __name__ == "__main__":
    rs.main()
