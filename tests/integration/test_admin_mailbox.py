#!/usr/bin/env python3
"""ringmail-admin mailbox list/create/delete/rename/status and stats.

Environment: RINGMAIL_ADMIN = the built ringmail-admin; RINGMAIL_TEST_TMP =
a scratch directory (else the system's temp dir).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from admin_case import AdminCase  # noqa: E402


class AdminMailbox(AdminCase):
    prefix = "admin-mailbox"

    def fails(self, rc, fragment, *args):
        p = self.admin(*args, rc=rc)
        lines = p.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(fragment, lines[0])

    def names(self, user):
        return [l.split("\t")[0]
                for l in self.admin("mailbox", "list", user).stdout.decode().splitlines()]

    def listing(self, user):
        return self.admin("mailbox", "list", user).stdout.decode().splitlines()

    def test_create_list_delete(self):
        self.fails(1, "user 'bob' does not exist", "mailbox", "list", "bob")
        self.admin("mailbox", "create", "bob", "Work")
        self.assertEqual(self.names("bob"), ["INBOX", "Work"])
        # Missing parents are created too.
        self.admin("mailbox", "create", "bob", "Work/Projects/2024")
        self.assertEqual(self.names("bob"),
                         ["INBOX", "Work", "Work/Projects", "Work/Projects/2024"])
        self.fails(1, "mailbox 'Work' already exists", "mailbox", "create", "bob", "Work")
        self.fails(1, "invalid mailbox name", "mailbox", "create", "bob", "/Lead")
        self.fails(1, "invalid mailbox name", "mailbox", "create", "bob", "a/../b")

        # Special-use attributes show after a TAB.
        self.admin("mailbox", "create", "bob", "Sent", "--special", "sent")
        self.admin("mailbox", "create", "bob", "--special=trash,junk", "Bin")
        lines = self.listing("bob")
        self.assertIn("Sent\t\\Sent", lines)
        self.assertIn("Bin\t\\Trash\t\\Junk", lines)
        self.fails(2, "bad --special 'spam'", "mailbox", "create", "bob", "X", "--special", "spam")
        self.fails(2, "needs a value", "mailbox", "create", "bob", "X", "--special")

        # A parent with children stays; leaves go first.
        self.fails(1, "has child mailboxes", "mailbox", "delete", "bob", "Work")
        self.fails(1, "INBOX cannot be deleted", "mailbox", "delete", "bob", "INBOX")
        self.fails(1, "mailbox 'Nope' does not exist", "mailbox", "delete", "bob", "Nope")
        self.admin("mailbox", "delete", "bob", "Work/Projects/2024")
        self.admin("mailbox", "delete", "bob", "Work/Projects")
        p = self.admin("mailbox", "delete", "bob", "Work")
        self.assertIn("deleted mailbox 'Work'", p.stdout.decode())
        self.assertEqual(sorted(self.names("bob")), ["Bin", "INBOX", "Sent"])

        # Names are UTF-8; "--" lets a name start with a dash.
        self.admin("mailbox", "create", "bob", "Entwürfe")
        self.admin("mailbox", "create", "bob", "--", "-dash")
        self.assertIn("Entwürfe", self.names("bob"))
        self.assertIn("-dash", self.names("bob"))

    def test_rename_moves_children_and_messages(self):
        self.admin("mailbox", "create", "carl", "Work/Projects/2024")
        self.import_n("carl", "Work/Projects", 7, 11)
        self.import_n("carl", "Work", 3, 12)
        st = self.status("carl", "Work/Projects")
        p = self.admin("mailbox", "rename", "carl", "Work", "Jobs")
        self.assertIn("renamed mailbox 'Work' to 'Jobs'", p.stdout.decode())
        self.assertEqual(self.names("carl"),
                         ["INBOX", "Jobs", "Jobs/Projects", "Jobs/Projects/2024"])
        moved = self.status("carl", "Jobs/Projects")
        self.assertEqual(moved["messages"], 7)
        self.assertEqual(moved["uidvalidity"], st["uidvalidity"])
        self.assertEqual(self.status("carl", "Jobs")["messages"], 3)
        self.fails(1, "mailbox 'Work/Projects' does not exist",
                   "mailbox", "status", "carl", "Work/Projects")

        self.admin("mailbox", "create", "carl", "Other")
        self.fails(1, "already exists", "mailbox", "rename", "carl", "Jobs", "Other")
        self.fails(1, "mailbox 'Nope' does not exist", "mailbox", "rename", "carl", "Nope", "X")
        self.fails(1, "cannot rename", "mailbox", "rename", "carl", "Jobs", "Jobs/Inner")

        # Renaming INBOX moves its messages and leaves INBOX empty.
        self.import_n("carl", "INBOX", 4, 13)
        self.admin("mailbox", "rename", "carl", "INBOX", "Old")
        self.assertEqual(self.status("carl", "Old")["messages"], 4)
        self.assertEqual(self.status("carl", "INBOX")["messages"], 0)
        self.assertIn("INBOX", self.names("carl"))

    def test_status_and_stats(self):
        self.import_n("dora", "INBOX", 20, 21)
        self.import_n("dora", "Lists/ietf", 35, 22)
        self.admin("mailbox", "create", "dora", "Empty")
        self.admin("expunge", "dora", "Lists/ietf", "1:10")

        st = self.status("dora", "Lists/ietf")
        for k in ("messages", "recent", "unseen", "deleted", "uidnext", "uidvalidity",
                  "highestmodseq", "size", "log_bytes", "dead_bytes"):
            self.assertIn(k, st)
        self.assertEqual(st["messages"], 25)
        self.assertEqual(st["uidnext"], 36)
        self.assertGreater(st["dead_bytes"], 0)
        self.assertLessEqual(st["dead_bytes"], st["log_bytes"])

        lines = self.admin("stats", "dora").stdout.decode().splitlines()
        self.assertEqual(lines[0].split(),
                         ["MAILBOX", "MESSAGES", "SIZE", "LIVE_BYTES", "DEAD_BYTES",
                          "HIGHESTMODSEQ"])
        rows = {l.split()[0]: l.split()[1:] for l in lines[1:]}
        self.assertEqual(set(rows), {"INBOX", "Lists", "Lists/ietf", "Empty", "(total)"})
        total = [0, 0, 0, 0]
        for name in ("INBOX", "Lists", "Lists/ietf", "Empty"):
            s = self.status("dora", name)
            r = [int(x) for x in rows[name]]
            self.assertEqual(r, [s["messages"], s["size"], s["log_bytes"] - s["dead_bytes"],
                                 s["dead_bytes"], s["highestmodseq"]], name)
            for i in range(4):
                total[i] += r[i]
        self.assertEqual([int(x) for x in rows["(total)"][:4]], total)
        self.assertEqual(total[0], 45)

        # After compaction nothing is dead, and check agrees on the counts.
        p = self.admin("compact", "dora")
        self.assertEqual(len(p.stdout.decode().splitlines()), 4)
        p = self.admin("check", "dora")
        out = p.stdout.decode().splitlines()
        self.assertEqual(len(out), 4)
        for l in out:
            name, _, rest = l.partition(": ")
            self.assertTrue(rest.startswith("ok, "), l)
            self.assertEqual(int(rest.split()[3]), self.status("dora", name)["messages"], l)
        self.assertEqual(self.status("dora", "Lists/ietf")["dead_bytes"], 0)
        self.fails(1, "user 'nobody' does not exist", "stats", "nobody")

    def test_dot_separator(self):
        self.extra = ["-o", "hierarchy_separator=."]
        self.admin("mailbox", "create", "emil", "A.B")
        self.assertEqual(self.names("emil"), ["INBOX", "A", "A.B"])
        self.fails(1, "invalid mailbox name", "mailbox", "create", "emil", "x/y")


if __name__ == "__main__":
    unittest.main(verbosity=2)
