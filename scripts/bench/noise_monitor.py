#!/usr/bin/python3
"""Logs the CPU used by processes that are not part of the benchmark.

    noise_monitor.py --root PID --out FILE [--interval 0.5]
    noise_monitor.py --summary FILE START END      # background cores in [START, END]
    noise_monitor.py --quiet FILE SECONDS MAX_CORES # exit 0 if the last SECONDS were quiet

The machine may be shared (another engineer building, tests running). Every INTERVAL
seconds the monitor reads /proc/N/stat of every process, and sums the change of
utime+stime of those that are neither PID's descendants (the benchmark script, its
servers and clients) nor kernel threads (softirq work for loopback traffic is caused
by the benchmark itself). It appends one line per interval to FILE:
    <unix time> <foreign CPU seconds in the interval> <top commands> <idle CPU seconds>
The foreign CPU is the machine's user+nice+system time (/proc/stat) less the
benchmark's: the utime+stime+cutime+cstime of every live process of PID's tree (a
process that ended was reaped into its parent's cutime), so that short-lived foreign
processes (compilers, test helpers) count too. The top commands are the foreign
processes seen using most CPU (by per-process utime+stime, which misses processes that
start and end between two readings). Idle is idle+iowait of all cores: it shows
whether a test was CPU-bound.
"""

import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot():
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
        comm = comm.replace(" ", "_").replace(",", "_").replace(":", "_") or "?"
        rest = stat[stat.rfind(b")") + 2:].split()
        ppid = int(rest[1])
        procs[int(entry)] = (ppid, comm, int(rest[11]) + int(rest[12]),
                             int(rest[13]) + int(rest[14]))
    return procs


def machine_ticks():
    """(busy = user+nice+system, idle = idle+iowait) of all cores, in ticks."""
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    return int(cpu[1]) + int(cpu[2]) + int(cpu[3]), int(cpu[4]) + int(cpu[5])


def descendants(procs, root):
    children = {}
    for pid, v in procs.items():
        children.setdefault(v[0], []).append(pid)
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(children.get(p, ()))
    return out


def monitor(root, out, interval):
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    prev = None
    prev_busy = prev_idle = prev_ours = None
    with open(out, "a", buffering=1) as log:
        while not stop and os.path.exists(f"/proc/{root}"):
            busy, idle = machine_ticks()
            procs = snapshot()
            ours = descendants(procs, root)
            ours_ticks = sum(procs[p][2] + procs[p][3] for p in ours if p in procs)
            if prev is not None:
                total = 0
                by = {}
                for pid, (ppid, comm, ticks, _) in procs.items():
                    if pid in ours or pid == 2 or ppid == 2:
                        continue
                    base = prev.get(pid)
                    d = ticks - (base if base is not None else 0)
                    if d > 0:
                        total += d
                        by[comm] = by.get(comm, 0) + d
                top = sorted(by.items(), key=lambda kv: -kv[1])[:3]
                foreign = max(0, (busy - prev_busy) - (ours_ticks - prev_ours))
                log.write(f"{time.time():.2f} {foreign / TICK:.2f} "
                          + (",".join(f"{k}:{v / TICK:.2f}" for k, v in top) or "-")
                          + f" {(idle - prev_idle) / TICK:.2f}\n")
            prev = {pid: v[2] for pid, v in procs.items()}
            prev_busy, prev_idle, prev_ours = busy, idle, ours_ticks
            time.sleep(interval)


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:
                rows.append((float(parts[0]), float(parts[1]), parts[2].strip("-"), float(parts[3])))
    return rows


def summary(path, start, end):
    rows = [r for r in read(path) if start <= r[0] <= end]
    cpu = sum(r[1] for r in rows)
    tops = {}
    for r in rows:
        for item in filter(None, r[2].split(",")):
            k, _, v = item.rpartition(":")
            tops[k] = tops.get(k, 0) + float(v)
    top = ",".join(f"{k}" for k, _ in sorted(tops.items(), key=lambda kv: -kv[1])[:3])
    idle = sum(r[3] for r in rows)
    wall = max(1e-9, end - start)
    print(f"{cpu / wall:.2f} {idle / wall:.2f} {top or '-'}")


def quiet(path, seconds, max_cores):
    now = time.time()
    rows = [r for r in read(path) if r[0] >= now - seconds]
    if not rows or rows[-1][0] - rows[0][0] < seconds * 0.8:
        return 1
    return 0 if sum(r[1] for r in rows) / seconds <= max_cores else 1


def main():
    a = sys.argv[1:]
    if a[:1] == ["--summary"]:
        summary(a[1], float(a[2]), float(a[3]))
        return 0
    if a[:1] == ["--quiet"]:
        return quiet(a[1], float(a[2]), float(a[3]))
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()
    monitor(args.root, args.out, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
