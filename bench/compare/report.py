#!/usr/bin/env python3
"""Raw records and the comparison table of bench/compare.sh.

    report.py merge --server S --row LABEL --workload W --clients N --rc RC
                    --bench FILE --sample FILE        (prints one JSON line)
    report.py table RAW.jsonl --meta FILE --out FILE.md   (prints the table)

A raw line: {"server", "row", "workload", "clients", "rc", "bench": the
object ringmail-bench --json printed (null if none), "sample": sampler.py's
object (null if none)}.
"""
import json
import sys

PRIMARY = {"login": "LOGIN", "headers": "FETCH_HEADERS", "bodies": "FETCH_BODY",
           "append": "APPEND"}


def load(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    for line in reversed(text.splitlines()):      # the JSON object is the last line
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def merge(args):
    a = dict(zip(args[::2], args[1::2]))
    rec = {"server": a["--server"], "row": a["--row"], "workload": a["--workload"],
           "clients": int(a["--clients"]), "rc": int(a["--rc"]),
           "bench": load(a["--bench"]), "sample": load(a["--sample"])}
    print(json.dumps(rec, sort_keys=True))


def p99(rec):
    b = rec.get("bench")
    if not b:
        return None
    if rec["workload"] == "idle-hold":
        f = b.get("fanout") or {}
        return f.get("p99_ms") if f.get("appends") else None
    cmds = b.get("commands") or {}
    name = PRIMARY.get(rec["workload"])
    if name:
        return (cmds.get(name) or {}).get("p99_ms")
    vals = [c.get("p99_ms") for c in cmds.values() if c.get("p99_ms") is not None]
    return max(vals) if vals else None         # mixed: the slowest command's p99


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def mem(rec):
    s = rec.get("sample") if rec else None
    if not s:
        return "-"
    anon = s.get("anon_peak_kib")
    return "%.0f (%.0f, %s)" % (s["rss_peak_kib"] / 1024.0, s["pss_peak_kib"] / 1024.0,
                                "-" if anon is None else "%.0f" % (anon / 1024.0))


def table(args):
    raw, meta, out = args[0], None, None
    rest = args[1:]
    for k, v in zip(rest[::2], rest[1::2]):
        if k == "--meta":
            meta = v
        elif k == "--out":
            out = v
    rows, order = {}, []
    with open(raw) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            key = (r["row"], r["clients"])
            if key not in rows:
                rows[key] = {}
                order.append(key)
            rows[key][r["server"]] = r
    head = ["workload", "clients", "Ringmail ops/s", "Dovecot ops/s", "ratio R/D",
            "p99 ms R", "p99 ms D", "peak RSS (PSS, anon) MiB R", "peak RSS (PSS, anon) MiB D",
            "CPU s R", "CPU s D", "errors R/D"]
    body = []
    notes = []
    for key in order:
        R, D = rows[key].get("ringmail"), rows[key].get("dovecot")

        def ops(x):
            return x["bench"]["total_ops_per_sec"] if x and x.get("bench") else None

        def cpu(x):
            return x["sample"]["cpu_s"] if x and x.get("sample") else None

        def errs(x):
            if not x:
                return "-"
            if not x.get("bench"):
                return "fail(rc %d)" % x["rc"]
            return str(x["bench"].get("errors", 0))

        ro, do = ops(R), ops(D)
        ratio = ro / do if ro is not None and do else None
        body.append([key[0], str(key[1]), fmt(ro, ".0f"), fmt(do, ".0f"), fmt(ratio, ".2f"),
                     fmt(p99(R) if R else None, ".2f"), fmt(p99(D) if D else None, ".2f"),
                     mem(R), mem(D), fmt(cpu(R), ".1f"), fmt(cpu(D), ".1f"),
                     "%s/%s" % (errs(R), errs(D))])
        for x in (R, D):
            if x and x.get("bench") and x["bench"].get("errors"):
                bad = ["%s %d" % (n, c["errors"]) for n, c in x["bench"]["commands"].items()
                       if c.get("errors")]
                notes.append("%s, %s, %d clients: %d errors (%s)" % (
                    x["server"], key[0], key[1], x["bench"]["errors"], ", ".join(bad)))
            if x and x.get("bench") and x["workload"] == "idle-hold":
                f = x["bench"].get("fanout") or {}
                if not f.get("appends"):
                    notes.append("%s, idle-hold: no APPEND reached all %d sessions during the "
                                 "run (%s of them idling, %s appends sent): no fan-out figure"
                                 % (x["server"], key[1], f.get("sessions"),
                                    f.get("appends_sent")))
            if x and not x.get("bench"):
                notes.append("%s, %s, %d clients: ringmail-bench printed no result (exit %d)"
                             % (x["server"], key[0], key[1], x["rc"]))
    w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    text = "\n".join("  ".join(c.rjust(w[i]) if i > 0 else c.ljust(w[i])
                               for i, c in enumerate(r)) for r in [head] + body)
    print(text)
    for n in notes:
        print("note: " + n)
    if out:
        md = []
        if meta:
            with open(meta) as f:
                md.append(f.read().rstrip() + "\n")
        md.append("| " + " | ".join(head) + " |")
        md.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
        for r in body:
            md.append("| " + " | ".join(r) + " |")
        md.append("")
        md.append("ops/s: all commands per second (ringmail-bench's total_ops_per_sec). "
                  "p99: of the workload's own command (login: LOGIN, headers: "
                  "FETCH_HEADERS, bodies: FETCH_BODY, append: APPEND; mixed: the slowest "
                  "command's p99; idle-hold: APPEND-to-EXISTS fan-out to every IDLE "
                  "session). Peak RSS: sum of VmRSS over all of the server's processes, "
                  "sampled each second during the run; in parentheses the peak PSS (Dovecot's "
                  "processes share pages, so its RSS sum counts them many times) and the "
                  "peak anonymous RSS (RssAnon: without file mappings, so without mail "
                  "files a server mmaps, which are page cache). CPU s: "
                  "utime+stime of all of the server's processes over the run, reaped "
                  "children included.")
        if notes:
            md.append("")
            md.extend("- " + n for n in notes)
        with open(out, "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("merge", "table"):
        sys.exit(__doc__)
    (merge if sys.argv[1] == "merge" else table)(sys.argv[2:])
