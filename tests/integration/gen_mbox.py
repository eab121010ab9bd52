#!/usr/bin/env python3
"""Deterministic generator of varied test mail as an mboxrd file.

    gen_mbox.py [-n COUNT] [--seed SEED] [-o OUT]      (default: stdout)

The same (count, seed) always gives the same bytes.  The file follows the
convention ringmail-admin writes on export, so import followed by export
reproduces it byte for byte, but for the Status:/X-Status: header fields,
which import turns into flags and drops (as_imported gives what is stored):

    From MAILER-DAEMON <asctime(UTC)>\\n
    <message, LF line ends, lines matching ^>*From  quoted with one more '>'>
    \\n

Messages vary: plain text, multipart/alternative, multipart/mixed with
base64 attachments (some binary, 10-200 KB), message/rfc822 forwards,
RFC 2047 encoded and raw UTF-8 headers, body lines starting with "From "
(and ">From ", so mboxrd quoting is exercised both ways), very long lines,
empty bodies, and Status:/X-Status: headers giving flags.

As a module: generate(count, seed) returns a list of Message records (raw
bytes, internal date, expected flags) and write_mbox() writes them.
"""

import argparse
import base64
import random
import re
import sys
import time
from collections import namedtuple

Message = namedtuple("Message", "raw date flags kind")

WDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

PEOPLE = [
    ("Alice Example", "alice@example.com"),
    ("Bob Builder", "bob@builder.example"),
    ("Carol O'Neil", "carol@example.org"),
    ("Jürgen Müller", "juergen@beispiel.de"),
    ("Zoë Saldaña", "zoe@example.net"),
    ("李雷", "lilei@example.cn"),
    ("Ólafur Þórsson", "olafur@example.is"),
    ("Dmitri Ivanov", "dmitri@example.ru"),
    ("Дмитрий Иванов", "dmitri.i@example.ru"),
    ("", "noreply@lists.example.com"),
    ("Support Team", "support@example.com"),
]

WORDS = ("the quick brown fox jumps over lazy dog mail server store index "
         "message header body part boundary lorem ipsum dolor sit amet "
         "consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
         "labore et dolore magna aliqua meeting tomorrow report attached "
         "please find review thanks regards budget quarter draft").split()

UTF8_WORDS = ["café", "naïve", "Grüße", "smörgåsbord", "日本語", "Ελληνικά",
              "русский", "emoji 🙂", "façade", "piñata"]

FROM_LINES = [
    "From the desk of the director: read this.",
    "From here on, everything changes.",
    ">From a quoted reply, already escaped once.",
    ">>From deep in a thread.",
    "From ",
]


def asctime_utc(ts):
    t = time.gmtime(ts)
    return "%s %s %2d %02d:%02d:%02d %d" % (
        WDAYS[t.tm_wday], MONTHS[t.tm_mon - 1], t.tm_mday,
        t.tm_hour, t.tm_min, t.tm_sec, t.tm_year)


def rfc2822_date(ts, zone_min):
    t = time.gmtime(ts + zone_min * 60)
    sign = "+" if zone_min >= 0 else "-"
    z = abs(zone_min)
    return "%s, %d %s %d %02d:%02d:%02d %s%02d%02d" % (
        WDAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec, sign, z // 60, z % 60)


def encoded_word(text, rng):
    data = text.encode("utf-8")
    if rng.random() < 0.5:
        return "=?UTF-8?B?%s?=" % base64.b64encode(data).decode("ascii")
    out = []
    for b in data:
        c = chr(b)
        if b == 0x20:
            out.append("_")
        elif c.isalnum() and b < 0x80:
            out.append(c)
        else:
            out.append("=%02X" % b)
    return "=?UTF-8?Q?%s?=" % "".join(out)


def address(rng, person=None, raw_utf8_ok=True):
    name, addr = person or rng.choice(PEOPLE)
    if not name:
        return addr
    if all(ord(c) < 128 for c in name):
        if "'" in name:
            return '"%s" <%s>' % (name, addr)
        return "%s <%s>" % (name, addr)
    if raw_utf8_ok and rng.random() < 0.3:
        return "%s <%s>" % (name, addr)          # raw UTF-8 (RFC 6532)
    return "%s <%s>" % (encoded_word(name, rng), addr)


def sentence(rng, lo=4, hi=14, utf8=0.05):
    words = []
    for _ in range(rng.randint(lo, hi)):
        words.append(rng.choice(UTF8_WORDS) if rng.random() < utf8 else rng.choice(WORDS))
    s = " ".join(words)
    return s[0].upper() + s[1:] + "."


def paragraph(rng, width=72):
    text = " ".join(sentence(rng) for _ in range(rng.randint(1, 6)))
    lines, cur = [], ""
    for w in text.split(" "):
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = (cur + " " + w) if cur else w
    if cur:
        lines.append(cur)
    return lines


def text_body(rng, from_lines=False, long_line=False):
    lines = []
    for _ in range(rng.randint(1, 8)):
        lines.extend(paragraph(rng))
        lines.append("")
        if from_lines and rng.random() < 0.5:
            lines.append(rng.choice(FROM_LINES))
            lines.append("")
    if from_lines:
        lines.insert(rng.randint(0, len(lines)), rng.choice(FROM_LINES))
    if long_line:
        n = rng.randint(1000, 12000)
        lines.append("".join(rng.choice("abcdefghij klmnop") for _ in range(n)))
    return "\n".join(lines) + "\n"


def subject(rng):
    s = sentence(rng, 2, 8, utf8=0.0)[:-1]
    r = rng.random()
    if r < 0.15:
        return encoded_word(s + " " + rng.choice(UTF8_WORDS), rng)
    if r < 0.25:
        return s + " " + rng.choice(UTF8_WORDS)   # raw UTF-8
    if r < 0.35:
        return "Re: " + s
    if r < 0.40:
        # long subject, folded
        return s + "\n\t" + sentence(rng, 6, 12, utf8=0.0)
    return s


def headers(rng, i, seed, ts, extra):
    zone = rng.choice([0, 60, 120, -300, -480, 330, 540, -180])
    h = [
        "Return-Path: <%s>" % rng.choice(PEOPLE)[1],
        "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n"
        "\tby mail.example.com with ESMTPS id %08x\n\tfor <alice@example.com>; %s"
        % (i % 7, i % 7, i % 250 + 1, rng.getrandbits(32), rfc2822_date(ts, zone)),
        "Date: %s" % rfc2822_date(ts, zone),
        "From: %s" % address(rng),
        "To: %s" % ", ".join(address(rng) for _ in range(rng.randint(1, 3))),
    ]
    if rng.random() < 0.3:
        h.append("Cc: %s" % address(rng))
    h.append("Subject: %s" % subject(rng))
    h.append("Message-ID: <%d.%d.%08x@gen.ringmail.test>" % (i, seed, rng.getrandbits(32)))
    if rng.random() < 0.3:
        h.append("In-Reply-To: <%d.%d@gen.ringmail.test>" % (max(i - 1, 0), seed))
        h.append("References: <%d.%d@gen.ringmail.test>" % (max(i - 2, 0), seed))
    h.extend(extra)
    return h


def boundary(rng):
    return "=_b%016x" % rng.getrandbits(64)


def b64_lines(data):
    enc = base64.b64encode(data).decode("ascii")
    return "\n".join(enc[k:k + 76] for k in range(0, len(enc), 76)) + "\n"


def html_of(text):
    esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    paras = [p for p in esc.split("\n\n") if p.strip()]
    return "<html><body>\n" + "\n".join("<p>%s</p>" % p for p in paras) + "\n</body></html>\n"


def alternative(rng, from_lines):
    b = boundary(rng)
    text = text_body(rng, from_lines)
    return (["MIME-Version: 1.0",
             'Content-Type: multipart/alternative; boundary="%s"' % b],
            "This is a multi-part message in MIME format.\n"
            "\n--%s\nContent-Type: text/plain; charset=UTF-8\n"
            "Content-Transfer-Encoding: 8bit\n\n%s"
            "\n--%s\nContent-Type: text/html; charset=UTF-8\n"
            "Content-Transfer-Encoding: 8bit\n\n%s"
            "\n--%s--\n" % (b, text, b, html_of(text), b))


def attachment(rng):
    r = rng.random()
    if r < 0.6:
        size = rng.randint(10 * 1024, 200 * 1024)
        data = rng.randbytes(size)
        ctype, name = rng.choice([("application/octet-stream", "data.bin"),
                                  ("image/jpeg", "photo.jpg"),
                                  ("application/pdf", "report.pdf")])
    else:
        data = "\n".join(",".join(str(rng.randint(0, 999)) for _ in range(8))
                         for _ in range(rng.randint(5, 200))).encode() + b"\n"
        ctype, name = "text/csv", "numbers.csv"
    if rng.random() < 0.2:
        # RFC 2231 encoded file name
        disp = "attachment; filename*=UTF-8''%s" % "".join(
            "%%%02X" % b for b in ("ü-" + name).encode("utf-8"))
    else:
        disp = 'attachment; filename="%s"' % name
    return ('Content-Type: %s; name="%s"\nContent-Transfer-Encoding: base64\n'
            "Content-Disposition: %s\n\n%s" % (ctype, name, disp, b64_lines(data)))


def mixed(rng, from_lines):
    b = boundary(rng)
    parts = ["Content-Type: text/plain; charset=UTF-8\n"
             "Content-Transfer-Encoding: 8bit\n\n" + text_body(rng, from_lines)]
    for _ in range(rng.choice([1, 1, 1, 2])):
        parts.append(attachment(rng))
    body = "This is a multi-part message in MIME format.\n"
    for p in parts:
        body += "\n--%s\n%s" % (b, p)
    body += "\n--%s--\n" % b
    return (["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="%s"' % b], body)


def forward(rng, i, seed, ts, from_lines):
    inner_h, inner_body = (alternative(rng, from_lines) if rng.random() < 0.4
                           else ([], text_body(rng, from_lines)))
    inner = "\n".join(headers(rng, i + 100000, seed, ts - 86400, inner_h)) + "\n\n" + inner_body
    b = boundary(rng)
    body = ("\n--%s\nContent-Type: text/plain; charset=UTF-8\n\n"
            "Forwarding this, see below.\n"
            "\n--%s\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n%s"
            "\n--%s--\n" % (b, b, inner, b))
    return (["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="%s"' % b], body)


FLAG_STATUS = [
    # (Status, X-Status, expected flags)
    (None, None, set()),
    ("RO", None, {"\\Seen"}),
    ("O", None, set()),
    ("RO", "A", {"\\Seen", "\\Answered"}),
    ("RO", "F", {"\\Seen", "\\Flagged"}),
    ("R", "AF", {"\\Seen", "\\Answered", "\\Flagged"}),
    ("O", "D", {"\\Deleted"}),
    ("RO", "T", {"\\Seen", "\\Draft"}),
]

T_LO = 820454400     # 1996-01-01
T_HI = 1767225599    # 2025-12-31


def make_message(rng, i, seed):
    ts = rng.randint(T_LO, T_HI)
    from_lines = rng.random() < 0.15
    r = rng.random()
    if r < 0.40:
        kind, (extra, body) = "plain", (["Content-Type: text/plain; charset=UTF-8"],
                                        text_body(rng, from_lines))
    elif r < 0.60:
        kind, (extra, body) = "alternative", alternative(rng, from_lines)
    elif r < 0.70:
        kind, (extra, body) = "mixed", mixed(rng, from_lines)
    elif r < 0.80:
        kind, (extra, body) = "forward", forward(rng, i, seed, ts, from_lines)
    elif r < 0.87:
        kind, (extra, body) = "empty", ([], "")
    elif r < 0.93:
        kind, (extra, body) = "longline", ([], text_body(rng, from_lines, long_line=True))
    else:
        kind, (extra, body) = "fromlines", ([], text_body(rng, True))
    status, xstatus, flags = FLAG_STATUS[0] if rng.random() < 0.5 else rng.choice(FLAG_STATUS)
    if status:
        extra = extra + ["Status: " + status]
    if xstatus:
        extra = extra + ["X-Status: " + xstatus]
    hdr = headers(rng, i, seed, ts, extra)
    raw = ("\n".join(hdr) + "\n\n" + body).encode("utf-8")
    return Message(raw, ts, frozenset(flags), kind)


def generate(count, seed=1):
    rng = random.Random(seed)
    return [make_message(rng, i, seed) for i in range(count)]


def without_status(raw):
    """raw as ringmail-admin import stores it from an mbox (but for line
    ends): the Status:/X-Status: header fields became flags and are gone,
    with their continuation lines; the body is untouched."""
    head, sep, body = raw.partition(b"\n\n")
    out, skip = [], False
    for line in head.split(b"\n"):
        if not line[:1] in (b" ", b"\t"):
            skip = re.match(rb"(?i)(x-)?status:", line) is not None
        if not skip:
            out.append(line)
    return b"\n".join(out) + sep + body


def as_imported(msg):
    """The Message as an mbox import stores it (see without_status)."""
    return msg._replace(raw=without_status(msg.raw))


_FROM_RE = re.compile(rb"^(>*From )", re.M)


def mboxrd_entry(msg):
    """One message as it appears in the mbox: From_ line, quoted, blank line."""
    raw = msg.raw
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    return (("From MAILER-DAEMON %s\n" % asctime_utc(msg.date)).encode("ascii")
            + _FROM_RE.sub(rb">\1", raw) + b"\n")


def write_mbox(messages, out):
    for m in messages:
        out.write(mboxrd_entry(m))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default="-")
    a = ap.parse_args()
    msgs = generate(a.count, a.seed)
    if a.output == "-":
        write_mbox(msgs, sys.stdout.buffer)
    else:
        with open(a.output, "wb") as f:
            write_mbox(msgs, f)


if __name__ == "__main__":
    main()
