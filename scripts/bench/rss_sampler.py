#!/usr/bin/python3
"""Samples the resident memory of a server process tree until told to stop.

    rss_sampler.py --pid PID --server-comm NAME --out FILE [--interval 0.05]

Every INTERVAL seconds it walks /proc, finds PID and all its descendants, and reads
VmRSS from /proc/N/status. Per sample it sums
  * "server": the processes whose command name (/proc/N/comm) is NAME — the server
    itself (slipway: the one process; OpenSSH: the listener plus its per-connection
    sshd processes);
  * "total": the whole tree, i.e. the server plus the git processes it runs (and, for
    OpenSSH, the shell and git-shell in between).
It also accounts CPU time: exactly, as the change of utime+stime+cutime+cstime of PID
(every descendant that ended was reaped into it), and, broken down by command name, as
the change of utime+stime of each process seen (a process loses at most its last
INTERVAL of CPU when it ends between two samples).
On SIGTERM/SIGINT it writes JSON with the peaks, means and CPU seconds to FILE and exits.
RSS of processes sharing pages (fork, shared libraries, the mmapped pack) is counted
once per process, as /proc reports it, which overstates the footprint of many similar
processes; the same sums are also taken of PSS (/proc/N/smaps_rollup), which divides
each shared page among the processes sharing it.
"""

import argparse
import json
import os
import signal
import sys
import time


def read_tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # ppid is the 2nd field after the parenthesised comm (which may hold spaces).
        rest = stat[stat.rfind(b")") + 2:].split()
        ppid = int(rest[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def pss(pid):
    """Proportional set size (shared pages divided among their users), in kB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_and_comm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss, name = 0, ""
            for line in f:
                if line.startswith("Name:"):
                    name = line.split(None, 1)[1].strip()
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
            return rss, name
    except OSError:
        return 0, ""


TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """(own utime+stime, reaped children's cutime+cstime) of pid, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2:].split()
    # rest[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--server-comm", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()

    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    peak_total = peak_server = peak_procs = 0
    peak_total_pss = peak_server_pss = 0
    peak_root = 0
    sum_total = sum_server = 0
    samples = 0
    peak_detail = {}
    root0 = cpu_ticks(args.pid)
    root_last = root0
    first_seen = {}   # pid -> own ticks at the first sample that saw it
    last_seen = {}    # pid -> (name, own ticks)
    first_round = True
    while not stop:
        if not os.path.exists(f"/proc/{args.pid}"):
            break
        total = server = total_pss = server_pss = 0
        detail = {}
        tree = read_tree(args.pid)
        for p in tree:
            rss, name = rss_and_comm(p)
            ticks = cpu_ticks(p)
            if ticks is not None:
                if p not in first_seen:
                    first_seen[p] = ticks[0] if first_round else 0
                last_seen[p] = (name, ticks[0])
            total += rss
            q = pss(p)
            total_pss += q
            if name == args.server_comm:
                server_pss += q
            detail[name] = detail.get(name, 0) + rss
            if name == args.server_comm:
                server += rss
            if p == args.pid:
                peak_root = max(peak_root, rss)
        first_round = False
        root_now = cpu_ticks(args.pid)
        if root_now is not None:
            root_last = root_now
        samples += 1
        sum_total += total
        sum_server += server
        if total > peak_total:
            peak_total, peak_detail = total, detail
        peak_server = max(peak_server, server)
        peak_total_pss = max(peak_total_pss, total_pss)
        peak_server_pss = max(peak_server_pss, server_pss)
        peak_procs = max(peak_procs, len(tree))
        time.sleep(args.interval)

    cpu_by_name = {}
    for p, (name, ticks) in last_seen.items():
        cpu_by_name[name] = cpu_by_name.get(name, 0) + ticks - first_seen[p]
    cpu_by_name = {k: round(v / TICK, 2) for k, v in sorted(cpu_by_name.items())}
    tree_cpu = None
    if root0 is not None and root_last is not None:
        tree_cpu = round((sum(root_last) - sum(root0)) / TICK, 2)
    result = {
        "cpu_tree_s": tree_cpu,
        "cpu_server_s": cpu_by_name.get(args.server_comm, 0.0),
        "cpu_by_name_s": cpu_by_name,
        "samples": samples,
        "peak_server_kb": peak_server,
        "peak_total_kb": peak_total,
        "peak_server_pss_kb": peak_server_pss,
        "peak_total_pss_kb": peak_total_pss,
        "peak_root_kb": peak_root,
        "mean_server_kb": sum_server // max(1, samples),
        "mean_total_kb": sum_total // max(1, samples),
        "peak_processes": peak_procs,
        "by_name_at_total_peak_kb": peak_detail,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
