#!/usr/bin/env python3
"""Prints the build benchmark's table and writes everything as one JSON file.

usage: builds_report.py LOAD.json OVERHEAD.json META.json OUT.json
"""

import json
import sys

load = json.load(open(sys.argv[1]))
over = json.load(open(sys.argv[2]))
meta = json.load(open(sys.argv[3]))
out_path = sys.argv[4]
lat, tput = load["latency"], load["throughput"]
json.dump({"meta": meta, **load, "overhead": over}, open(out_path, "w"), indent=2)


def pp(s):
    return f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms" if s.get("n") else "-"


t = over["times"]
rows = [
    (f"push -> first build command, p50 / p99 ({lat['pushes']} pushes, queue empty)",
     pp(lat["push_to_first_command"])),
    ("  event stored -> build queued", pp(lat["stages"]["event_stored_to_queued"])),
    ("  build queued -> build started", pp(lat["stages"]["queued_to_started"])),
    ("  build started -> first command running", pp(lat["stages"]["started_to_first_command"])),
    ("  (client: git push started -> first command)", pp(lat["client_push_start_to_first_command"])),
    ("  (trivial build, started -> ended)", pp(lat["build_duration"])),
    (f"trivial builds per minute ({tput['builds']} branches in one push)",
     f"{tput['builds_per_min']:.0f} /min ({tput['first_push_to_last_build_end_s']:.1f} s)"),
    ("  builder alone: first start -> last end",
     f"{tput['builder_builds_per_min']:.0f} /min ({tput['first_start_to_last_end_s']:.1f} s)"),
    (f"slipway build --local, {over['commands']} commands (mean ± sd)",
     f"{t['slipway-30']['mean_ms']:.1f} ± {t['slipway-30']['stddev_ms']:.1f} ms"),
    (f"same commands in one bash script (mean ± sd)",
     f"{t['bash-30']['mean_ms']:.1f} ± {t['bash-30']['stddev_ms']:.1f} ms"),
    (f"C project ({over['c_project']['commands']} commands, {over['c_project']['pairs']} pairs): slipway / bash",
     f"{over['c_project']['ratio_mean']:.3f} of means; {over['c_project']['pair_ratio_median']:.3f} median pair "
     f"(+{over['c_project']['overhead_ms']:.0f} ms of {t['bash-c']['median_ms']:.0f} ms)"),
    ("micro (30 tiny commands): slipway / bash (mean; median)", f"{over['ratio_mean']:.3f}; {over['ratio_median']:.3f}"),
    ("overhead per command (all extra time / commands)", f"{over['per_command_overhead_ms']:.2f} ms"),
    ("  fixed (1-command build vs script) + marginal per command",
     f"{over['fixed_overhead_ms']:.1f} ms + {over['marginal_per_command_ms']:.2f} ms"),
]
width = max(len(r[0]) for r in rows)
print(f"slipway build benchmark, local executor ({meta['mode']}, {meta['date']}, slipway {meta['rev']})")
print(f"load average (1/5/15 min) before the server runs: {meta['loadavg_before_server']}; "
      f"before the overhead runs: {meta['loadavg_before_overhead']} ({meta['nproc']} cores)")
for label, value in rows:
    print(f"{label:<{width}}  {value}")
bad = []
if lat["failed"]:
    bad.append(f"{lat['failed']} latency builds did not succeed")
if tput["statuses"] != {"SUCCEEDED": tput["builds"]}:
    bad.append(f"throughput statuses {tput['statuses']}")
if bad:
    print("WARNING: " + "; ".join(bad))
ratio = over["c_project"]["ratio_mean"]
print(f"goal (engine overhead < 5% on the C project, ratio <= 1.05): {'met' if ratio <= 1.05 else 'NOT met'} (ratio {ratio:.3f}); "
      f"on 30 tiny commands each costs {over['marginal_per_command_ms']:.2f} ms more than in one script")
print(f"JSON: {out_path}")
