#!/usr/bin/env python3
"""ringmaild: mailbox commands.  CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LSUB, LIST (patterns, references, LIST-EXTENDED selection and
return options, CHILDREN, SPECIAL-USE), modified UTF-7 and UTF-8 names,
STATUS, SELECT/EXAMINE, CLOSE, UNSELECT, CHECK.  RFC 3501, 9051, 5258, 6154,
5530, 3348.  Runs once per io backend."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmail_server as rs  # noqa: E402
from ringmail_server import quote  # noqa: E402


def msg(i, subject="test", body="Hello.\r\n"):
    return ("From: Sender %d <sender%d@example.com>\r\nTo: rcpt@example.org\r\n"
            "Subject: %s\r\nDate: Mon, 1 Jan 2024 10:00:%02d +0000\r\n"
            "Message-ID: <m%d@example.com>\r\n\r\n%s" % (i, i, subject, i % 60, i, body)).encode()


def listing(res, kind="LIST"):
    """{name: (attrs (upper-case set), delimiter, extended items)} from LIST/LSUB."""
    out = {}
    for r in res.of(kind):
        it = r.items()
        attrs, delim, name = it[1], it[2], it[3]
        name = rs.s(name)
        out[name] = (set(a.upper() for a in attrs), rs.s(delim), it[4:])
    return out


class Mailbox(rs.ServerTestCase):

    def names(self, c, ref="", pat="*"):
        return set(listing(self.ok(c, "LIST %s %s" % (quote(ref), quote(pat)))))

    # -- CREATE --

    def test_create_and_list(self):
        c = self.login()
        self.assertEqual(self.names(c), {"INBOX"})
        self.ok(c, "CREATE Work")
        self.ok(c, 'CREATE "Two Words"')
        self.assertEqual(self.names(c), {"INBOX", "Work", "Two Words"})
        self.ok(c, "SELECT Work")
        self.ok(c, 'SELECT "Two Words"')
        self.expect(c.cmd("CREATE"), "BAD")
        self.expect(c.cmd("CREATE a b"), "BAD")

    def test_create_nested_creates_parents(self):
        c = self.login()
        self.ok(c, "CREATE A/B/C")
        ls = listing(self.ok(c, 'LIST "" *'))
        self.assertTrue({"A", "A/B", "A/B/C"} <= set(ls), ls)
        for parent in ("A", "A/B"):
            attrs = ls[parent][0]
            if "\\NOSELECT" not in attrs:
                self.ok(c, "SELECT " + parent)
            self.assertIn("\\HASCHILDREN", attrs, (parent, attrs))
        self.assertIn("\\HASNOCHILDREN", ls["A/B/C"][0])
        self.assertEqual(ls["A/B/C"][1], "/")
        self.ok(c, "SELECT A/B/C")

    def test_create_trailing_separator(self):
        c = self.login()
        self.ok(c, 'CREATE "Trail/"')
        names = self.names(c)
        self.assertIn("Trail", names)
        self.assertNotIn("Trail/", names)

    def test_create_existing(self):
        c = self.login()
        self.ok(c, "CREATE Work")
        self.expect(c.cmd("CREATE Work"), "NO", "ALREADYEXISTS")
        self.expect(c.cmd("CREATE INBOX"), "NO")
        self.expect(c.cmd("CREATE inbox"), "NO", msg="INBOX is case-insensitive")
        self.expect(c.cmd("CREATE InBoX"), "NO", msg="INBOX is case-insensitive")
        self.assertEqual(self.names(c), {"INBOX", "Work"})

    def test_create_invalid_names(self):
        c = self.login()
        for name in ('""', '"/Lead"', '"a//b"', '"a/../b"', '"../x"', '"a/./b"'):
            c = self.login()
            r = c.cmd("CREATE " + name)
            if r.status != "BAD":
                self.expect(r, "NO", "CANNOT", msg="invalid name %s" % name)
        r = c.cmd_lit("CREATE ", b"ctl\x01char", "")
        self.expect(r, ("NO", "BAD"), msg="control character in a name")
        self.assertEqual(self.names(c), {"INBOX"})

    def test_create_invalid_mutf7(self):
        c = self.login()
        for name in ("&Jjo!", "bad&name", "&U,BTFw-&ZeVnLIqe-", "&AGE-"):
            c = self.login()
            self.expect(c.cmd("CREATE " + quote(name)), ("NO", "BAD"),
                        msg="RFC 3501 5.1.3: invalid modified UTF-7 %r" % name)
        self.assertEqual(self.names(c), {"INBOX"})

    # -- DELETE --

    def test_delete(self):
        c = self.login()
        self.expect(c.cmd("DELETE Nope"), "NO", "NONEXISTENT")
        self.expect(c.cmd("DELETE INBOX"), "NO")
        self.expect(c.cmd("DELETE inbox"), "NO")
        self.ok(c, "CREATE Work")
        c.append("Work", msg(1))
        self.ok(c, "DELETE Work")
        self.assertEqual(self.names(c), {"INBOX"})
        self.expect(c.cmd("SELECT Work"), "NO", "NONEXISTENT")
        self.expect(c.cmd("DELETE"), "BAD")

    def test_delete_parent_with_children(self):
        c = self.login()
        self.ok(c, "CREATE P/Q")
        r = c.cmd("DELETE P")
        if r.status == "NO":
            self.assertEqual(r.code_name(), "HASCHILDREN",
                             "RFC 9051 6.3.4: NO SHOULD carry [HASCHILDREN]:\n" + r.describe())
            self.assertEqual(self.names(c), {"INBOX", "P", "P/Q"})
        else:
            self.expect(r, "OK")
            ls = listing(self.ok(c, 'LIST "" *'))
            self.assertIn("P/Q", ls)
            self.assertIn("\\NOSELECT", ls.get("P", (set(),))[0],
                          "deleted parent must stay as \\Noselect: %r" % ls)
        # the leaf goes, then the parent
        self.ok(c, "DELETE P/Q")
        if "P" in self.names(c):
            self.ok(c, "DELETE P")
        self.assertEqual(self.names(c), {"INBOX"})

    def test_delete_recreate_uids_do_not_repeat(self):
        c = self.login()
        self.ok(c, "CREATE X")
        uids = self.append_msgs(c, "X", [msg(1), msg(2), msg(3)])
        v1 = self.ok(c, "STATUS X (UIDVALIDITY)").of("STATUS")[0].items()[2]
        self.ok(c, "DELETE X")
        self.ok(c, "CREATE X")
        v2 = self.ok(c, "STATUS X (UIDVALIDITY MESSAGES)").of("STATUS")[0].items()[2]
        d1 = dict(zip(v1[::2], v1[1::2]))
        d2 = dict(zip(v2[::2], v2[1::2]))
        self.assertEqual(int(d2["MESSAGES"]), 0)
        new = self.append_msgs(c, "X", [msg(4)])
        if d1["UIDVALIDITY"] == d2["UIDVALIDITY"]:
            self.assertGreater(new[0], max(uids),
                               "RFC 3501 6.3.4: same UIDVALIDITY after DELETE+CREATE "
                               "but UIDs restart")

    # -- RENAME --

    def test_rename_moves_children_and_messages(self):
        c = self.login()
        for n in ("Work", "Work/Projects", "Work/Projects/2024"):
            self.ok(c, "CREATE " + n)
        self.append_msgs(c, "Work/Projects", [msg(1), msg(2)])
        self.append_msgs(c, "Work", [msg(3)])
        self.ok(c, "RENAME Work Jobs")
        self.assertEqual(self.names(c), {"INBOX", "Jobs", "Jobs/Projects", "Jobs/Projects/2024"})
        st = self.ok(c, "STATUS Jobs/Projects (MESSAGES)").of("STATUS")[0].items()[2]
        self.assertEqual(int(st[1]), 2)
        st = self.ok(c, "STATUS Jobs (MESSAGES)").of("STATUS")[0].items()[2]
        self.assertEqual(int(st[1]), 1)
        r = self.ok(c, "SELECT Jobs/Projects")
        self.assertEqual(r.numbers("EXISTS"), [2])
        self.expect(c.cmd("SELECT Work"), "NO", "NONEXISTENT")

    def test_rename_errors(self):
        c = self.login()
        self.ok(c, "CREATE A")
        self.ok(c, "CREATE B")
        self.expect(c.cmd("RENAME Nope C"), "NO", "NONEXISTENT")
        self.expect(c.cmd("RENAME A B"), "NO", "ALREADYEXISTS")
        self.expect(c.cmd("RENAME A INBOX"), "NO")
        self.expect(c.cmd("RENAME A A/Sub"), ("NO", "BAD"), msg="rename into itself")
        self.each(self.login, ["RENAME A", "RENAME"], "BAD")
        self.assertEqual(self.names(c), {"INBOX", "A", "B"})

    def test_rename_creates_new_parents(self):
        c = self.login()
        self.ok(c, "CREATE Leaf")
        self.ok(c, "RENAME Leaf Deep/Er/Leaf")
        names = self.names(c)
        self.assertTrue({"Deep", "Deep/Er", "Deep/Er/Leaf"} <= names, names)
        self.assertNotIn("Leaf", names)

    def test_rename_inbox_moves_messages(self):
        c = self.login()
        self.append_msgs(c, "INBOX", [msg(1), msg(2), msg(3)])
        self.ok(c, "RENAME INBOX Old")
        names = self.names(c)
        self.assertTrue({"INBOX", "Old"} <= names, names)
        st = dict(zip(*[iter(self.ok(c, "STATUS Old (MESSAGES)").of("STATUS")[0].items()[2])] * 2))
        self.assertEqual(int(st["MESSAGES"]), 3)
        st = dict(zip(*[iter(self.ok(c, "STATUS INBOX (MESSAGES)").of("STATUS")[0].items()[2])] * 2))
        self.assertEqual(int(st["MESSAGES"]), 0, "INBOX must be empty after RENAME INBOX")
        self.append_msgs(c, "INBOX", [msg(4)])
        r = self.ok(c, "SELECT INBOX")
        self.assertEqual(r.numbers("EXISTS"), [1])

    # -- subscriptions --

    def test_subscribe_lsub_list_subscribed(self):
        c = self.login()
        self.ok(c, "CREATE Work")
        self.ok(c, "CREATE Personal")
        self.ok(c, "SUBSCRIBE Work")
        ls = listing(self.ok(c, 'LSUB "" *'), "LSUB")
        self.assertEqual(set(ls), {"Work"}, ls)
        ls = listing(self.ok(c, 'LIST (SUBSCRIBED) "" *'))
        self.assertEqual(set(ls), {"Work"}, ls)
        self.assertIn("\\SUBSCRIBED", ls["Work"][0])
        ls = listing(self.ok(c, 'LIST "" * RETURN (SUBSCRIBED)'))
        self.assertEqual(set(ls), {"INBOX", "Work", "Personal"})
        self.assertIn("\\SUBSCRIBED", ls["Work"][0])
        self.assertNotIn("\\SUBSCRIBED", ls["Personal"][0])
        self.ok(c, "UNSUBSCRIBE Work")
        self.assertEqual(listing(self.ok(c, 'LSUB "" *'), "LSUB"), {})
        self.assertEqual(listing(self.ok(c, 'LIST (SUBSCRIBED) "" *')), {})
        self.expect(c.cmd("SUBSCRIBE"), "BAD")

    def test_subscription_survives_new_session(self):
        c = self.login()
        self.ok(c, "CREATE Keep")
        self.ok(c, "SUBSCRIBE Keep")
        c.logout()
        c2 = self.login()
        self.assertEqual(set(listing(self.ok(c2, 'LSUB "" *'), "LSUB")), {"Keep"})

    # -- LIST --

    def make_tree(self, c):
        for n in ("Work/Projects/2024", "Personal", "Work/Old"):
            self.ok(c, "CREATE " + n)

    def test_list_patterns(self):
        c = self.login()
        self.make_tree(c)
        every = {"INBOX", "Work", "Work/Projects", "Work/Projects/2024", "Work/Old", "Personal"}
        self.assertEqual(self.names(c, "", "*"), every)
        self.assertEqual(self.names(c, "", "%"), {"INBOX", "Work", "Personal"})
        self.assertEqual(self.names(c, "", "Work/%"), {"Work/Projects", "Work/Old"})
        self.assertEqual(self.names(c, "", "Work/*"),
                         {"Work/Projects", "Work/Projects/2024", "Work/Old"})
        self.assertEqual(self.names(c, "", "%/%"), {"Work/Projects", "Work/Old"})
        self.assertEqual(self.names(c, "", "W*"),
                         {"Work", "Work/Projects", "Work/Projects/2024", "Work/Old"})
        self.assertEqual(self.names(c, "", "*2024"), {"Work/Projects/2024"})
        self.assertEqual(self.names(c, "", "Nope*"), set())
        self.assertEqual(self.names(c, "", "Work"), {"Work"})
        self.assertEqual(self.names(c, "", "work"), set(), "names other than INBOX are case-sensitive")

    def test_list_inbox_case_insensitive(self):
        c = self.login()
        for pat in ("INBOX", "inbox", "InBox", "inb*", "IN%"):
            self.assertEqual(self.names(c, "", pat), {"INBOX"}, pat)

    def test_list_reference(self):
        c = self.login()
        self.make_tree(c)
        self.assertEqual(self.names(c, "Work/", "%"), {"Work/Projects", "Work/Old"})
        self.assertEqual(self.names(c, "Work/", "*"),
                         {"Work/Projects", "Work/Projects/2024", "Work/Old"})
        self.assertEqual(self.names(c, "Work/Projects/", "%"), {"Work/Projects/2024"})

    def test_list_empty_pattern_gives_delimiter(self):
        c = self.login()
        r = self.ok(c, 'LIST "" ""')
        ls = r.of("LIST")
        self.assertEqual(len(ls), 1, r.describe())
        it = ls[0].items()
        self.assertIn("\\NOSELECT", [a.upper() for a in it[1]], ls[0])
        self.assertEqual(rs.s(it[2]), "/", ls[0])
        self.assertEqual(rs.s(it[3]), "", ls[0])

    def test_list_children_attributes(self):
        c = self.login()
        self.make_tree(c)
        ls = listing(self.ok(c, 'LIST "" *'))
        want = {"Work": "\\HASCHILDREN", "Work/Projects": "\\HASCHILDREN",
                "Work/Projects/2024": "\\HASNOCHILDREN", "Personal": "\\HASNOCHILDREN",
                "Work/Old": "\\HASNOCHILDREN", "INBOX": "\\HASNOCHILDREN"}
        for name, attr in want.items():
            self.assertIn(attr, ls[name][0], (name, ls[name]))
            other = "\\HASNOCHILDREN" if attr == "\\HASCHILDREN" else "\\HASCHILDREN"
            self.assertNotIn(other, ls[name][0], (name, ls[name]))
        # RETURN (CHILDREN) is the same on LIST-EXTENDED
        ls = listing(self.ok(c, 'LIST "" "%" RETURN (CHILDREN)'))
        self.assertIn("\\HASCHILDREN", ls["Work"][0])
        # delete the only child: the parent has no children any more
        self.ok(c, "DELETE Work/Old")
        self.ok(c, "DELETE Work/Projects/2024")
        ls = listing(self.ok(c, 'LIST "" *'))
        self.assertIn("\\HASNOCHILDREN", ls["Work/Projects"][0])

    def test_list_bad_syntax(self):
        self.each(self.login, ['LIST ""', "LIST", 'LIST "" * RETURN', 'LIST "" * extra',
                               'LIST (NOSUCHOPTION) "" *'], "BAD")

    def test_list_bad_syntax_answers(self):
        # the first fault in the order of the arguments names the answer
        c = self.login()
        for cmd, want in [
                ('LIST (SUBSCRIBED NOSUCH) "" *', "BAD Unknown LIST selection option"),
                ('LIST (RECURSIVEMATCH) "" *', "BAD RECURSIVEMATCH needs another selection option"),
                ('LIST (NOSUCH) ""', "BAD Unknown LIST selection option"),
                ('LIST (SUBSCRIBED) ""', "BAD LIST takes a reference and a pattern"),
                ('LSUB ""', "BAD LSUB takes a reference and a pattern"),
                ('LSUB "" * RETURN (CHILDREN)', "BAD Too many arguments"),
                ('LIST "" * RETURN', "BAD Bad LIST return options"),
                ('LIST "" * RETURN (CHILDREN) x', "BAD Bad LIST return options"),
                ('LIST "" * RETURN (NOSUCH)', "BAD Unknown LIST return option"),
                ('LIST "" * RETURN (STATUS (NOSUCH))', "BAD Unknown LIST return option"),
                ('LIST "" * extra', "BAD Bad LIST return options"),
                ('LIST () (a) *', "BAD Bad reference name"),
                ('LSUB (a) *', "BAD Bad reference name"),
                ('LIST () "" (INBOX (x))', "BAD Mailbox name expected")]:
            r = c.cmd(cmd)
            self.assertEqual(r.tagged.raw.split(b" ", 1)[1].decode(), want, r.describe())
        r = self.ok(c, 'LIST (SUBSCRIBED) "" (INBOX nosuch) RETURN (CHILDREN STATUS (MESSAGES))')
        self.assertEqual(r.tagged.raw.split(b" ", 1)[1], b"OK LIST completed")

    def test_list_multiple_patterns(self):
        c = self.login()
        self.make_tree(c)
        self.assertEqual(set(listing(self.ok(c, 'LIST "" (INBOX Personal)'))),
                         {"INBOX", "Personal"})

    # -- SPECIAL-USE --

    def test_special_use(self):
        c0 = self.login(user="crypt", password="crypt-secret")
        caps = c0.capabilities()
        c0.logout()
        if "CREATE-SPECIAL-USE" in caps:
            c = self.login()
            self.ok(c, 'CREATE "Sent Items" (USE (\\Sent))')
            self.ok(c, "CREATE Bin (USE (\\Trash))")
            self.expect(c.cmd("CREATE Bogus (USE (\\NoSuchUse))"), "NO", "USEATTR")
        else:
            # self.user has not logged in yet: its store is free for the tool
            self.server.admin("mailbox", "create", self.user, "Sent Items", "--special", "sent")
            self.server.admin("mailbox", "create", self.user, "Bin", "--special", "trash")
            c = self.login()
        self.ok(c, "CREATE Plain")
        ls = listing(self.ok(c, 'LIST "" * RETURN (SPECIAL-USE)'))
        self.assertIn("\\SENT", ls["Sent Items"][0], ls)
        self.assertIn("\\TRASH", ls["Bin"][0], ls)
        for n in ("INBOX", "Plain"):
            self.assertFalse(ls[n][0] & {"\\SENT", "\\TRASH", "\\DRAFTS", "\\JUNK",
                                         "\\ARCHIVE", "\\ALL", "\\FLAGGED"}, ls[n])
        ls = listing(self.ok(c, 'LIST (SPECIAL-USE) "" *'))
        self.assertEqual(set(ls), {"Sent Items", "Bin"}, "selection option SPECIAL-USE")
        self.assertIn("\\SENT", ls["Sent Items"][0])
        # the attribute follows a rename
        self.ok(c, 'RENAME "Sent Items" Sent')
        ls = listing(self.ok(c, 'LIST (SPECIAL-USE) "" *'))
        self.assertEqual(set(ls), {"Sent", "Bin"})

    # -- international names --

    def test_modified_utf7_rev1(self):
        c = self.login()
        self.ok(c, 'CREATE "Entw&APw-rfe"')
        self.ok(c, 'CREATE "&ZeVnLIqe-/Sub"')
        self.ok(c, 'CREATE "Tom &- Jerry"')
        names = self.names(c)
        self.assertTrue({"Entw&APw-rfe", "&ZeVnLIqe-", "&ZeVnLIqe-/Sub", "Tom &- Jerry"} <= names,
                        names)
        self.ok(c, 'SELECT "Entw&APw-rfe"')
        # the same mailbox seen by a UTF-8 (IMAP4rev2) session
        c2 = self.login(enable="IMAP4rev2")
        names2 = self.names(c2)
        self.assertTrue({"Entwürfe", "日本語", "日本語/Sub", "Tom & Jerry"} <= names2, names2)
        self.ok(c2, 'SELECT "Entwürfe"')

    def test_utf8_names_rev2(self):
        c = self.login(enable="IMAP4rev2")
        self.ok(c, 'CREATE "Grüße"')
        r = c.cmd_lit("CREATE ", "Ελληνικά/Παλιά".encode(), "")
        self.expect(r, "OK")
        names = self.names(c)
        self.assertTrue({"Grüße", "Ελληνικά", "Ελληνικά/Παλιά"} <= names, names)
        st = self.ok(c, 'STATUS "Grüße" (MESSAGES)').of("STATUS")
        self.assertEqual(rs.s(st[0].items()[1]), "Grüße")
        # rev1 session: modified UTF-7
        c1 = self.login()
        names1 = self.names(c1)
        self.assertIn(rs.mutf7_encode("Grüße"), names1)
        self.assertIn(rs.mutf7_encode("Ελληνικά/Παλιά"), names1)
        self.ok(c1, "SELECT " + quote(rs.mutf7_encode("Grüße")))

    def test_utf8_accept(self):
        c = self.login()
        caps = c.capabilities()
        if "UTF8=ACCEPT" not in caps:
            self.skipTest("UTF8=ACCEPT not advertised")
        self.ok(c, "CREATE " + quote(rs.mutf7_encode("Café")))
        r = self.ok(c, "ENABLE UTF8=ACCEPT")
        self.assertIn("UTF8=ACCEPT", r.of("ENABLED")[0].raw.decode().upper())
        self.assertIn("Café", self.names(c))
        self.ok(c, 'CREATE "Ünïcödé"')
        self.assertIn("Ünïcödé", self.names(c))

    def test_rev1_raw_utf8_name_refused(self):
        c = self.login()
        r = c.cmd_lit("CREATE ", "Grüße".encode(), "")
        self.expect(r, ("NO", "BAD"), msg="8-bit name from a rev1 session that did not "
                    "ENABLE UTF8=ACCEPT/IMAP4rev2")

    # -- STATUS --

    def status(self, c, name, items):
        r = self.ok(c, "STATUS %s (%s)" % (quote(name), items))
        st = r.of("STATUS")
        self.assertEqual(len(st), 1, r.describe())
        it = st[0].items()
        self.assertEqual(rs.s(it[1]), name)
        return {str(k).upper(): int(v) for k, v in zip(it[2][::2], it[2][1::2])}

    def test_status(self):
        c = self.login()
        self.ok(c, "CREATE S")
        m = [msg(1), msg(2, body="x" * 500 + "\r\n"), msg(3)]
        r1 = self.expect(c.append("S", m[0], ["\\Seen"]), "OK")
        r2 = self.expect(c.append("S", m[1], ["\\Deleted"]), "OK")
        r3 = self.expect(c.append("S", m[2]), "OK")
        au = r3.code_of("APPENDUID").split()
        st = self.status(c, "S", "MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE DELETED")
        self.assertEqual(st["MESSAGES"], 3)
        self.assertEqual(st["UNSEEN"], 2)
        self.assertEqual(st["DELETED"], 1)
        self.assertEqual(st["SIZE"], sum(len(x) for x in m))
        self.assertEqual(st["UIDVALIDITY"], int(au[1]))
        self.assertEqual(st["UIDNEXT"], int(au[2]) + 1)
        self.assertEqual(st["RECENT"], 3, "no session has seen the appended messages yet")
        # a session selects the mailbox: \Recent goes to it
        c2 = self.login(select="S")
        st = self.status(c, "S", "RECENT MESSAGES")
        self.assertEqual(st["RECENT"], 0, "RFC 3501: \\Recent belongs to the first session "
                         "to select")
        # STATUS of the selected mailbox works too
        st = self.status(c2, "S", "MESSAGES")
        self.assertEqual(st["MESSAGES"], 3)

    def test_status_errors(self):
        c = self.login()
        self.expect(c.cmd("STATUS Nope (MESSAGES)"), "NO", "NONEXISTENT")
        self.each(self.login, ["STATUS INBOX (NOSUCHITEM)", "STATUS INBOX ()", "STATUS INBOX",
                               "STATUS INBOX MESSAGES"], "BAD")
        st = self.status(c, "INBOX", "MESSAGES UIDNEXT")
        self.assertEqual(st["MESSAGES"], 0)
        self.assertGreaterEqual(st["UIDNEXT"], 1)

    # -- SELECT / EXAMINE --

    def check_select(self, r, exists, recent, readonly, rev2=False):
        self.assertEqual(r.numbers("EXISTS"), [exists], r.describe())
        if rev2:
            self.assertEqual(r.of("RECENT"), [], "IMAP4rev2 has no RECENT response")
            self.assertTrue(r.of("LIST"), "RFC 9051 6.3.2: SELECT MUST return a LIST "
                            "response:\n" + r.describe())
        else:
            self.assertEqual(r.numbers("RECENT"), [recent], r.describe())
        flags = r.of("FLAGS")
        self.assertEqual(len(flags), 1, r.describe())
        fl = {f.upper() for f in flags[0].items()[1]}
        self.assertTrue({"\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\SEEN", "\\DRAFT"} <= fl, fl)
        codes = {c.split(" ", 1)[0].upper(): c for c in r.codes()}
        self.assertIn("UIDVALIDITY", codes, r.describe())
        self.assertIn("UIDNEXT", codes, r.describe())
        self.assertGreater(int(codes["UIDVALIDITY"].split()[1]), 0)
        if readonly:
            self.assertEqual(r.code_name(), "READ-ONLY", r.describe())
        else:
            self.assertEqual(r.code_name(), "READ-WRITE", r.describe())
            self.assertIn("PERMANENTFLAGS", codes, r.describe())
            pf = codes["PERMANENTFLAGS"].upper()
            for f in ("\\SEEN", "\\DELETED", "\\FLAGGED", "\\ANSWERED", "\\DRAFT", "\\*"):
                self.assertIn(f, pf, "PERMANENTFLAGS lacks %s: %s" % (f, pf))
            self.assertNotIn("\\RECENT", pf)
        return codes

    def test_select_examine(self):
        c = self.login()
        self.ok(c, "CREATE M")
        uids = self.append_msgs(c, "M", [(msg(1), ["\\Seen"]), msg(2), msg(3)])
        r = self.ok(c, "SELECT M")
        codes = self.check_select(r, 3, 3, False)
        self.assertEqual(codes.get("UNSEEN", "").split()[1:], ["2"],
                         "RFC 3501 6.3.1: OK [UNSEEN n] = first unseen message:\n" + r.describe())
        self.assertEqual(int(codes["UIDNEXT"].split()[1]), uids[-1] + 1)
        # a second session: nothing is recent for it
        c2 = self.login()
        r = self.ok(c2, "EXAMINE M")
        self.check_select(r, 3, 0, True)
        # EXAMINE does not change \Seen
        self.ok(c2, "FETCH 2 BODY[]")
        f = self.ok(c2, "FETCH 2 FLAGS").fetches()[2]["FLAGS"]
        self.assertNotIn("\\SEEN", [x.upper() for x in f], "BODY[] in EXAMINE set \\Seen")
        r = self.expect(c2.cmd("STORE 1 +FLAGS (\\Flagged)"), ("NO", "OK"), msg="STORE on EXAMINE")
        f = self.ok(c2, "FETCH 1 FLAGS").fetches()[1]["FLAGS"]
        self.assertNotIn("\\FLAGGED", [x.upper() for x in f], "STORE changed a read-only mailbox")
        self.expect(c2.cmd("EXPUNGE"), "NO", msg="EXPUNGE on EXAMINE")

    def test_select_rev2(self):
        c = self.login(enable="IMAP4rev2")
        self.ok(c, "CREATE M")
        self.append_msgs(c, "M", [msg(1)])
        r = self.ok(c, "SELECT M")
        self.check_select(r, 1, None, False, rev2=True)
        r = self.ok(c, "SELECT INBOX")
        self.assertIn("CLOSED", [x.split()[0].upper() for x in r.codes()],
                      "RFC 9051 6.3.2: OK [CLOSED] when a mailbox is closed implicitly:\n"
                      + r.describe())
        closed_at = [i for i, u in enumerate(r.untagged)
                     if u.status() and (u.status()[1] or "").upper() == "CLOSED"][0]
        before = [u for u in r.untagged[:closed_at] if u.kind() in ("EXISTS", "FLAGS")]
        self.assertEqual(before, [], "INBOX's responses must follow [CLOSED]:\n" + r.describe())

    def test_select_failure_deselects(self):
        c = self.login(select="INBOX")
        self.expect(c.cmd("SELECT Nope"), "NO", "NONEXISTENT")
        self.expect(c.cmd("FETCH 1:* FLAGS"), "BAD", msg="after a failed SELECT no mailbox "
                    "is selected (RFC 3501 6.3.1)")
        self.expect(c.cmd("SELECT"), "BAD")
        self.expect(c.cmd("EXAMINE Nope"), "NO", "NONEXISTENT")

    def test_select_empty(self):
        c = self.login()
        r = self.ok(c, "SELECT INBOX")
        self.check_select(r, 0, 0, False)
        self.expect(c.cmd("FETCH 1 FLAGS"), "BAD", msg="no message 1 in an empty mailbox")
        self.expect(c.cmd("FETCH 1:* FLAGS"), "BAD", msg="RFC 9051: '*' in an empty mailbox")
        r = self.ok(c, "UID FETCH 1:* FLAGS")
        self.assertEqual(r.of("FETCH"), [])

    # -- CLOSE / UNSELECT / CHECK --

    def test_close_expunges_silently(self):
        c = self.login()
        self.ok(c, "CREATE C")
        self.append_msgs(c, "C", [(msg(1), ["\\Deleted"]), msg(2), (msg(3), ["\\Deleted"])])
        # EXAMINE + CLOSE does not expunge
        self.ok(c, "EXAMINE C")
        r = self.ok(c, "CLOSE")
        self.assertEqual(r.of("EXPUNGE"), [])
        self.assertEqual(self.status(c, "C", "MESSAGES")["MESSAGES"], 3)
        self.ok(c, "SELECT C")
        r = self.ok(c, "CLOSE")
        self.assertEqual(r.of("EXPUNGE"), [], "CLOSE must not send EXPUNGE responses")
        self.assertEqual(self.status(c, "C", "MESSAGES")["MESSAGES"], 1)
        self.expect(c.cmd("FETCH 1 FLAGS"), "BAD", msg="CLOSE deselects")
        self.expect(c.cmd("CLOSE"), "BAD", msg="CLOSE without selection")

    def test_unselect_keeps_deleted(self):
        c = self.login()
        self.ok(c, "CREATE U")
        self.append_msgs(c, "U", [(msg(1), ["\\Deleted"]), msg(2)])
        self.ok(c, "SELECT U")
        r = self.ok(c, "UNSELECT")
        self.assertEqual(r.of("EXPUNGE"), [])
        self.assertEqual(self.status(c, "U", "MESSAGES")["MESSAGES"], 2)
        self.expect(c.cmd("FETCH 1 FLAGS"), "BAD")
        self.expect(c.cmd("UNSELECT"), "BAD")

    def test_check(self):
        c = self.login()
        self.expect(c.cmd("CHECK"), "BAD")
        self.ok(c, "SELECT INBOX")
        self.ok(c, "CHECK")



class ListOneWorker(rs.ServerTestCase):
    """LIST patterns cost linear-ish time: a pathological pattern must not
    stall the other sessions of its worker (one worker here, so a
    bystander shares it)."""
    server_options = {"workers": "1"}
    users_per_class = 4

    def test_pathological_pattern_stalls_nobody(self):
        c = self.login()
        long_name = "a" * 300
        self.ok(c, "CREATE " + quote(long_name))
        self.ok(c, "CREATE " + quote("a" * 299 + "b"))
        bystander = self.login()
        tag = c.tag()
        # 13 stars: a backtracking matcher needs ~300^13 steps here.
        c.send(("%s LIST \"\" \"*a*a*a*a*a*a*a*a*a*a*a*a*a*b\"\r\n" % tag).encode())
        t0 = time.monotonic()
        # A stall of the worker shows as a NOOP answered after many
        # seconds; the bound is far above any honest answer time.
        self.ok(bystander, "NOOP", timeout=10)
        self.assertLess(time.monotonic() - t0, 10)
        untagged, tagged, _ = c.read_until_tag(tag, timeout=20)
        self.assertEqual(tagged.status()[0], "OK", tagged.raw)
        names = [rs.s(u.items()[3]) for u in untagged if u.kind() == "LIST"]
        self.assertEqual(names, ["a" * 299 + "b"])


rs.parametrize(globals(), Mailbox)
rs.parametrize(globals(), ListOneWorker)

if __name__ == "__main__":
    rs.main()
