#!/usr/bin/env python3
"""Push load for slipway's notification path, and the baseline a team would otherwise
run: OpenSSH + git-shell with a post-receive hook that mails through smtplib.

For every accepted push it measures push accepted -> event stored -> mail accepted by
the SMTP server. slipway: the event's stored time (sqlite) to the SMTP sink's acceptance
time (matched by the event id inside the Message-ID). Baseline: the hook's own start
time to the sink's acceptance. Prints p50/p99 and checks that no event was lost.

Driven by scripts/bench-events.sh; not meant to be run alone.
"""

import argparse
import calendar
import json
import os
import sqlite3
import threading
import time

from common import git_env, percentile, run


def client(work, url, env, pushes, times, label):
    os.makedirs(work, exist_ok=True)
    run(["git", "init", "-q", "-b", "main", work], env=env)
    for i in range(pushes):
        with open(os.path.join(work, "file.txt"), "w") as f:
            f.write(f"{label} {i}\n")
        run(["git", "add", "file.txt"], cwd=work, env=env)
        run(["git", "commit", "-q", "-m", f"{label} push {i}"], cwd=work, env=env)
        t0 = time.time()
        run(["git", "push", "-q", url, "main"], cwd=work, env=env)
        times.append(time.time() - t0)


def accepted(sink_dir):
    """Message-ID -> acceptance time (first acceptance)."""
    out = {}
    path = os.path.join(sink_dir, "accepted.log")
    if not os.path.exists(path):
        return out
    for line in open(path):
        t, _, mid = line.strip().partition(" ")
        try:
            out.setdefault(mid, float(t))
        except ValueError:
            continue
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["slipway", "baseline"], required=True)
    ap.add_argument("--url-base", required=True, help="e.g. ssh://git@127.0.0.1:PORT/")
    ap.add_argument("--ssh", required=True, help="GIT_SSH_COMMAND")
    ap.add_argument("--work", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--db", help="slipway.db (slipway mode)")
    ap.add_argument("--hook-log", help="hook start times (baseline mode)")
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--per-client", type=int, default=25)
    ap.add_argument("--suffix", default=".git")
    args = ap.parse_args()
    env = git_env(args.ssh)
    results = {}

    phases = [("sequential", 1, args.sequential), ("concurrent", args.clients, args.per_client)]
    for phase, clients, pushes in phases:
        start = time.time()
        times = []
        threads = []
        for c in range(clients):
            url = f"{args.url_base}bench-{phase}-{c}{args.suffix}"
            work = os.path.join(args.work, f"{phase}-{c}")
            t = threading.Thread(target=client, args=(work, url, env, pushes, times, f"{phase}-{c}"))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        elapsed = time.time() - start
        expected = clients * pushes
        # Wait for every mail (bounded).
        deadline = time.time() + 120
        while time.time() < deadline:
            if len(accepted(args.sink)) >= expected_total(results, expected):
                break
            time.sleep(0.2)
        results[phase] = {"pushes": expected, "elapsed": elapsed, "push_times": times}

    acc = accepted(args.sink)
    latencies = {"sequential": [], "concurrent": []}
    # slipway only: where the time goes. stored -> queued in the outbox (rules engine),
    # queued -> accepted by the SMTP server (notifier + SMTP).
    stages = {"sequential": {"rules": [], "send": []}, "concurrent": {"rules": [], "send": []}}
    lost = 0
    if args.mode == "slipway":
        db = sqlite3.connect(args.db)
        rows = db.execute(
            "SELECT id, time, repo FROM events WHERE type = 'push' AND repo LIKE 'bench-%' ORDER BY id"
        ).fetchall()
        queued = dict(
            db.execute("SELECT event_id, MIN(created) FROM outbox WHERE kind = 'email' GROUP BY event_id")
        )
        by_event = {}
        for mid, t in acc.items():
            parts = mid.strip("<>").split(".")
            if len(parts) >= 3 and parts[0] == "slipway":
                by_event[int(parts[1])] = t
        for eid, stored, repo in rows:
            phase = "sequential" if repo.startswith("bench-sequential") else "concurrent"
            stored_t = calendar.timegm(time.strptime(stored[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + stored[19:-1])
            if eid not in by_event:
                lost += 1
                continue
            latencies[phase].append(by_event[eid] - stored_t)
            if eid in queued:
                stages[phase]["rules"].append(queued[eid] - stored_t)
                stages[phase]["send"].append(by_event[eid] - queued[eid])
        events = len(rows)
    else:
        starts = {}
        for line in open(args.hook_log):
            t, _, mid = line.strip().partition(" ")
            starts[mid] = float(t)
        for mid, t0 in starts.items():
            phase = "sequential" if "bench-sequential" in mid else "concurrent"
            if mid not in acc:
                lost += 1
                continue
            latencies[phase].append(acc[mid] - t0)
        events = len(starts)

    report = {"mode": args.mode, "events": events, "lost": lost, "phases": {}}
    for phase in ("sequential", "concurrent"):
        lat = latencies[phase]
        pt = results[phase]["push_times"]
        report["phases"][phase] = {
            "pushes": results[phase]["pushes"],
            "elapsed_s": round(results[phase]["elapsed"], 2),
            "pushes_per_s": round(results[phase]["pushes"] / results[phase]["elapsed"], 1),
            "push_p50_ms": round(percentile(pt, 50) * 1000, 1),
            "push_p99_ms": round(percentile(pt, 99) * 1000, 1),
            "mail_p50_ms": round(percentile(lat, 50) * 1000, 1),
            "mail_p99_ms": round(percentile(lat, 99) * 1000, 1),
            "mail_max_ms": round(max(lat) * 1000, 1) if lat else None,
            "mails": len(lat),
        }
        for stage, values in stages[phase].items():
            if values:
                report["phases"][phase][f"{stage}_p50_ms"] = round(percentile(values, 50) * 1000, 1)
                report["phases"][phase][f"{stage}_p99_ms"] = round(percentile(values, 99) * 1000, 1)
    print(json.dumps(report))


def expected_total(results, current):
    return sum(r["pushes"] for r in results.values()) + current


if __name__ == "__main__":
    main()
