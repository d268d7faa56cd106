#!/usr/bin/env python3
"""Prints the notification benchmark's table: slipway against the baseline, with ratios."""

import json
import sys

s = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
rss = sys.argv[3]
print(f"events stored: slipway {s['events']} (lost {s['lost']}), baseline {b['events']} (lost {b['lost']})")
print(f"{'phase':<11} {'metric':<24} {'slipway':>10} {'baseline':>10} {'slipway/baseline':>17}")
rows = (
    ("pushes_per_s", "pushes/s"),
    ("push_p50_ms", "push wall p50 ms"),
    ("push_p99_ms", "push wall p99 ms"),
    ("mail_p50_ms", "accepted->SMTP p50 ms"),
    ("mail_p99_ms", "accepted->SMTP p99 ms"),
    ("mail_max_ms", "accepted->SMTP max ms"),
)
for phase in ("sequential", "concurrent"):
    for key, label in rows:
        sv, bv = s["phases"][phase][key], b["phases"][phase][key]
        ratio = f"{sv / bv:.2f}" if sv and bv else "-"
        print(f"{phase:<11} {label:<24} {sv!s:>10} {bv!s:>10} {ratio:>17}")
seq, con = s["phases"]["sequential"], s["phases"]["concurrent"]
print(f"slipway mails: {seq['mails']}+{con['mails']} for {seq['pushes']}+{con['pushes']} pushes; server peak RSS {rss} kB")
worst = max(seq["mail_p99_ms"], con["mail_p99_ms"])
met = worst < 100 and s["lost"] == 0
print(f"goal (p99 < 100 ms push accepted -> SMTP acceptance, nothing lost): {'met' if met else 'NOT met'} (worst p99 {worst} ms, lost {s['lost']})")
