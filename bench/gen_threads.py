#!/usr/bin/env python3
"""bench/gen_threads.py N OUT.mbox [SEED]: N generated messages in an mbox
file, shaped like a busy mailing-list folder for SORT, THREAD and SEARCH:
threads of 1 to 30 messages whose replies carry "Re:" (sometimes "Fwd:",
"[list]" or an RFC 2047 encoded subject), In-Reply-To and References;
Dates over three years in several zones (some missing or malformed); 400
senders, display names with and without quotes; bodies of 200 to 3000
bytes drawn from a vocabulary of common and rare words.  The same N and
SEED give the same file."""
import random
import sys

WORDS = ("the of and to in is that for it as with was on be by at this had not are but "
         "from or have an they which one you were all we when there can been has more "
         "if no out so said what up its about into than them only other new some could "
         "time these two may first then do any like my now over such our man me even "
         "most made after also did many before must through back years where much your "
         "way well down should because each just those people how too little state good "
         "very make world still own see men work long get here between both life being "
         "under never day same another know while last might us great old year off come "
         "since against go came right used take three").split()
RARE = ["zymurgy%d" % i for i in range(50)]
TOPICS = ("release schedule", "build failure on arm64", "meeting notes", "patch review",
          "quarterly report", "server migration", "holiday plans", "bug in parser",
          "documentation update", "performance regression", "new contributor",
          "security advisory", "conference travel", "budget", "license question")
ZONES = ("+0000", "-0500", "+0100", "+0530", "-0800", "+0900", "+1000", "-0300")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def sender(r, i):
    first = ("Ann", "Bob", "Chen", "Dana", "Émile", "Farid", "Grace", "Hiro", "Ines", "Jon")[i % 10]
    last = "Tester%d" % (i // 10)
    addr = "%s.%s@example%d.org" % (first.lower().replace("é", "e"), last.lower(), i % 7)
    style = i % 4
    if style == 0:
        return "%s %s <%s>" % (first.replace("É", "E"), last, addr)
    if style == 1:
        return "\"%s, %s\" <%s>" % (last, first.replace("É", "E"), addr)
    if style == 2:
        return addr
    word = "=C3=89mile" if first == "Émile" else first
    return "=?UTF-8?Q?%s?= %s <%s>" % (word, last, addr)


def date(r, t):
    if r.random() < 0.01:
        return None
    if r.random() < 0.01:
        return "sometime last week"
    z = r.choice(ZONES)
    tt = t + r.randint(-3600, 3600)
    days, sec = divmod(tt, 86400)
    y, rem = 2023 + days // 365, days % 365
    m, d = min(rem // 31, 11), rem % 31 % 28 + 1
    return "%s, %02d %s %d %02d:%02d:%02d %s" % (DAYS[days % 7], d, MONTHS[m], y, sec // 3600,
                                                 sec // 60 % 60, sec % 60, z)


def body(r):
    n = r.randint(30, 450)
    words = [r.choice(WORDS) for _ in range(n)]
    if r.random() < 0.02:
        words[r.randrange(n)] = r.choice(RARE)
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines)


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    r = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    t = 0
    made = 0
    with open(out, "w", encoding="utf-8") as f:
        while made < n:
            topic = r.choice(TOPICS)
            size = min(n - made, 1 + int(r.expovariate(1 / 4)) % 30)
            ids = []
            for k in range(size):
                t += r.randint(30, 3000)
                mid = "<%d.%d@gen.example.org>" % (made, r.randint(0, 10**9))
                subj = topic if k == 0 else r.choice(("Re: ", "Re: ", "RE: ", "Re: Re: ",
                                                       "Fwd: ", "[list] Re: ")) + topic
                if r.random() < 0.03:
                    subj = "=?UTF-8?B?UmU6IA==?= " + topic
                hdr = ["From: %s" % sender(r, r.randrange(400)),
                       "To: list@example.org", "Subject: %s" % subj, "Message-ID: %s" % mid]
                d = date(r, t)
                if d:
                    hdr.append("Date: %s" % d)
                if ids:
                    parent = r.choice(ids[-3:])
                    hdr.append("In-Reply-To: %s" % parent)
                    hdr.append("References: %s" % " ".join(ids[-5:]))
                hdr.append("Content-Type: text/plain; charset=utf-8")
                f.write("From gen@example.org Mon Dec  7 00:00:00 2026\n")
                f.write("\n".join(hdr) + "\n\n" + body(r).replace("\nFrom ", "\n>From ") + "\n\n")
                ids.append(mid)
                made += 1


if __name__ == "__main__":
    main()
