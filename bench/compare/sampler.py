#!/usr/bin/env python3
"""Memory and CPU of one server process tree during a benchmark run.

    sampler.py --pid PID --out FILE [--interval S] [--ready FILE]

PID is the server's top process (ringmaild, or Dovecot's master).  The tree
is PID and every process whose parent chain leads to it, found afresh at
each sample.  On start the sampler takes a CPU snapshot, then touches
--ready; it samples until SIGTERM/SIGINT, then takes the final snapshot and
writes one JSON object to --out:

  rss_peak_kib   peak of the sum of VmRSS over the tree
  pss_peak_kib   peak of the sum of Pss (/proc/PID/smaps_rollup) over the tree
  anon_peak_kib  peak of the sum of RssAnon (RSS less file mappings and shmem:
                 mmapped mail files count in RSS but are page cache)
  procs_peak     most processes seen at once
  cpu_s          utime+stime of the tree, end minus start, counting children
                 reaped meanwhile through the top process's cutime+cstime
  samples        how many samples were taken

A process that exits between two samples and was not reaped by the top
process (a grandchild whose parent waits for it is still counted in that
parent's cutime, and so in the top's at the next reap) is the only CPU that
can be missed; for ringmaild (one process) and Dovecot (every service is a
child of the master) there is none.
"""
import argparse
import json
import os
import signal
import time

HZ = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    # comm may hold spaces and parens: split after the last ')'
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); ppid field 4; utime 14, stime 15, cutime 16, cstime 17
    return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def tree(top):
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            parents[pid] = stat_fields(pid)
        except (OSError, ValueError, IndexError):
            continue
    if top not in parents:
        return {}
    children = {}
    for pid, st in parents.items():
        children.setdefault(st[0], []).append(pid)
    out, todo = {}, [top]
    while todo:
        p = todo.pop()
        out[p] = parents[p]
        todo.extend(children.get(p, ()))
    return out


def cpu_ticks(top):
    t = tree(top)
    ticks = sum(st[1] + st[2] for st in t.values())
    if top in t:
        ticks += t[top][3] + t[top][4]
    return ticks, t


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--ready")
    a = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    t0 = time.monotonic()
    start_ticks, _ = cpu_ticks(a.pid)
    if a.ready:
        open(a.ready, "w").close()
    rss_peak = pss_peak = anon_peak = procs_peak = samples = 0
    while True:
        _, t = cpu_ticks(a.pid)
        rss = sum(status_kib(p, "VmRSS:") for p in t)
        pss = sum(pss_kib(p) for p in t)
        anon = sum(status_kib(p, "RssAnon:") for p in t)
        anon_peak = max(anon_peak, anon)
        rss_peak, pss_peak = max(rss_peak, rss), max(pss_peak, pss)
        procs_peak = max(procs_peak, len(t))
        samples += 1
        if stop:
            break
        deadline = time.monotonic() + a.interval
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.05, a.interval))
    end_ticks, _ = cpu_ticks(a.pid)
    res = {"rss_peak_kib": rss_peak, "pss_peak_kib": pss_peak,
           "anon_peak_kib": anon_peak, "procs_peak": procs_peak,
           "cpu_s": round((end_ticks - start_ticks) / HZ, 2), "samples": samples,
           "wall_s": round(time.monotonic() - t0, 2)}
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f)
        f.write("\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
