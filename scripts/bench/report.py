#!/usr/bin/python3
"""Summarises a bench-git.sh results directory: prints the table and writes summary.md.

    report.py RESULTS_DIR

Reads RESULTS_DIR/<test>.<server>.json (hyperfine --export-json), mem.<phase>.<server>.json
(rss_sampler.py) and meta.json. Exit status 0; it only reports (goal misses are not
failures of the benchmark).
"""

import json
import math
import os
import sys

# (test id, label, kind, goal applies)
TESTS = [
    ("clone", "full clone (`git clone --mirror`)", "throughput", True),
    ("noop-fetch", "no-op fetch (up to date)", "throughput", True),
    ("incr-fetch", "incremental fetch (+100 commits)", "throughput", True),
    ("push", "push 50 MiB (new branch)", "throughput", True),
    ("ls-remote", "`git ls-remote`", "latency", True),
    ("clone-x32", "32 concurrent full clones (wall)", "throughput", True),
    ("ls-remote-samekex", "`git ls-remote`, OpenSSH on slipway's key exchange (supplementary)", "latency", False),
    ("pack-stream", "pack stream only, no client indexing (supplementary)", "throughput", False),
    ("pack-stream-x32", "32 concurrent pack streams, no client indexing (supplementary)", "throughput", False),
]
SERVERS = ("slipway", "openssh")
THROUGHPUT_GOAL = 0.9
LATENCY_GOAL = 1.2


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def fmt_time(mean, sd):
    if mean < 1:
        return f"{mean * 1000:.1f} ± {sd * 1000:.1f} ms"
    return f"{mean:.3f} ± {sd:.3f} s"


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


NOISY = 0.15


def background(res):
    """{(test, server): (foreign cores, top commands, idle cores)} from timeline.tsv."""
    out = {}
    try:
        with open(os.path.join(res, "timeline.tsv")) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 5:
                    f = parts[4].split(" ")
                    try:
                        idle = float(f[1])
                        top = f[2] if len(f) > 2 else "-"
                    except (IndexError, ValueError):  # older format: no idle column
                        idle, top = float("nan"), (f[1] if len(f) > 1 else "-")
                    out[(parts[0], parts[1])] = (float(f[0]), top, idle)
    except FileNotFoundError:
        pass
    return out


def main():
    res = sys.argv[1]
    bg = background(res)
    noisy = []
    meta = load(os.path.join(res, "meta.json")) or {}
    rows = []
    verdicts = []
    for tid, label, kind, goal in TESTS:
        r = {}
        for s in SERVERS:
            j = load(os.path.join(res, f"{tid}.{s}.json"))
            if j:
                x = j["results"][0]
                r[s] = (x["mean"], x["stddev"] or 0.0, len(x["times"]))
        if len(r) < 2:
            continue
        (sm, ss, sn), (om, osd, on) = r["slipway"], r["openssh"]
        rel = math.sqrt((ss / sm) ** 2 + (osd / om) ** 2)
        if kind == "throughput":
            ratio = om / sm
            target = f">= {THROUGHPUT_GOAL}"
            met = ratio >= THROUGHPUT_GOAL
        else:
            ratio = sm / om
            target = f"<= {LATENCY_GOAL}"
            met = ratio <= LATENCY_GOAL
        verdict = ("met" if met else "MISSED") if goal else "(no goal)"
        b = [bg.get((tid, s), (0.0, "-", 0.0)) for s in SERVERS]
        bgcell = f"{b[0][0]:.2f}/{b[1][0]:.2f}"
        idlecell = "/".join("-" if math.isnan(x[2]) else f"{x[2]:.2f}" for x in b)
        if max(b[0][0], b[1][0]) > NOISY:
            bgcell += " NOISY"
            noisy.append((label, b))
        rows.append((label, fmt_time(sm, ss), fmt_time(om, osd), f"{sn}/{on}", bgcell, idlecell,
                     "throughput" if kind == "throughput" else "latency",
                     f"{ratio:.2f} ± {ratio * rel:.2f}", target if goal else "-", verdict))
        if goal:
            verdicts.append((label, kind, ratio, met))

    head = ("operation", "slipway", "OpenSSH", "runs (s/o)", "other procs, cores (s/o)",
            "idle cores (s/o)", "ratio kind",
            "slipway/OpenSSH ratio", "goal", "verdict")
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    print()
    print("slipway vs OpenSSH sshd + git-shell (mean ± stddev; throughput ratio = "
          "OpenSSH time / slipway time, latency ratio = slipway time / OpenSSH time)")
    print(line(head))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))

    md = []
    md.append("| operation | slipway | OpenSSH + git-shell | runs (s/o) | other processes, cores (s/o) | idle cores (s/o) | ratio | slipway/OpenSSH | goal | verdict |")
    md.append("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        md.append("| " + " | ".join(row) + " |")

    mem_rows = []
    for phase, label in (("idle", "idle, before the tests"),
                         ("x32", "peak during 32 concurrent clones"),
                         ("x32s", "peak during 32 concurrent pack streams"),
                         ("idle-after", "idle, after the tests")):
        cells = [label]
        for s in SERVERS:
            m = load(os.path.join(res, f"mem.{phase}.{s}.json"))
            if not m:
                cells += ["-", "-"]
                continue
            cells += [f"{mib(m['peak_server_kb'])} (PSS {mib(m['peak_server_pss_kb'])})",
                      f"{mib(m['peak_total_kb'])} (PSS {mib(m['peak_total_pss_kb'])}, "
                      f"{m['peak_processes']} procs)"]
        mem_rows.append(cells)
    mhead = ("phase", "slipway process", "slipway + git children",
             "sshd processes", "sshd + shells + git children")
    print()
    print("Resident memory: peak of the summed VmRSS (and summed PSS), sampled every 50 ms")
    mw = [max(len(str(x[i])) for x in mem_rows + [mhead]) for i in range(len(mhead))]
    mline = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, mw))
    print(mline(mhead))
    print(mline(["-" * w for w in mw]))
    for row in mem_rows:
        print(mline(row))
    md.append("")
    md.append("| phase | slipway process | slipway + git children | sshd processes | sshd + shells + git children |")
    md.append("|---|---|---|---|---|")
    for row in mem_rows:
        md.append("| " + " | ".join(row) + " |")

    cpu_rows = []
    for phase, label in (("x32", "32 concurrent clones"), ("x32s", "32 concurrent pack streams")):
        cells = [label]
        for s in SERVERS:
            m = load(os.path.join(res, f"mem.{phase}.{s}.json"))
            if not m or m.get("cpu_tree_s") is None:
                cells += ["-", "-", "-"]
                continue
            by = m["cpu_by_name_s"]
            others = ", ".join(f"{k} {v:.1f}" for k, v in by.items() if v >= 0.05)
            cells += [f"{m['cpu_server_s']:.1f} s", f"{m['cpu_tree_s']:.1f} s", others]
        cpu_rows.append(cells)
    chead = ("phase (all runs)", "slipway process", "slipway tree", "slipway tree by name",
             "sshd processes", "sshd tree", "sshd tree by name")
    print()
    print("Server-side CPU time (user+system) over the whole measurement, warmups included")
    cw = [max(len(str(x[i])) for x in cpu_rows + [chead]) for i in range(len(chead))]
    cline = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, cw))
    print(cline(chead))
    print(cline(["-" * w for w in cw]))
    for row in cpu_rows:
        print(cline(row))
    md.append("")
    md.append("| " + " | ".join(chead) + " |")
    md.append("|" + "---|" * len(chead))
    for row in cpu_rows:
        md.append("| " + " | ".join(row) + " |")

    # Per-run detail of the long concurrent tests: which runs other processes disturbed.
    for tid, label, has_warmup in (("clone-x32", "32 concurrent full clones", False),
                                   ("pack-stream-x32", "32 concurrent pack streams", True)):
        per = {}
        for s in SERVERS:
            try:
                with open(os.path.join(res, f"runs.{tid}.{s}.tsv")) as f:
                    runs = [l.split() for l in f if l.strip()]
            except FileNotFoundError:
                continue
            if has_warmup:
                runs = runs[1:]
            per[s] = [(float(r[2]), float(r[3])) for r in runs]
        if len(per) < 2:
            continue
        print()
        print(f"{label}, run by run (seconds, and cores other processes used meanwhile):")
        md.append("")
        md.append(f"{label}, run by run (wall seconds; cores used by other processes meanwhile):")
        md.append("")
        quiet = {}
        for s in SERVERS:
            text = ", ".join(f"{t:.1f} s ({c:.2f})" for t, c in per[s])
            print(f"  {s}: {text}")
            md.append(f"- {s}: {text}")
            quiet[s] = [t for t, c in per[s] if c <= NOISY]
        if quiet["slipway"] and quiet["openssh"]:
            qs = sum(quiet["slipway"]) / len(quiet["slipway"])
            qo = sum(quiet["openssh"]) / len(quiet["openssh"])
            line = (f"  quiet runs only (others <= {NOISY} cores): slipway {qs:.1f} s "
                    f"(n={len(quiet['slipway'])}), OpenSSH {qo:.1f} s (n={len(quiet['openssh'])}), "
                    f"throughput ratio {qo / qs:.2f}")
        else:
            line = "  no quiet run on one side or both: no undisturbed comparison"
        print(line)
        md.append("- " + line.strip())

    print()
    missed = [v for v in verdicts if not v[3]]
    for label, kind, ratio, met in verdicts:
        if not met:
            if kind == "throughput":
                print(f"MISSED: {label}: throughput {ratio:.2f}x OpenSSH "
                      f"(goal >= {THROUGHPUT_GOAL}x, short by {(THROUGHPUT_GOAL - ratio) * 100:.0f} points)")
            else:
                print(f"MISSED: {label}: latency {ratio:.2f}x OpenSSH "
                      f"(goal <= {LATENCY_GOAL}x, over by {(ratio - LATENCY_GOAL) * 100:.0f} points)")
    if not missed:
        print("All goals met.")
    for label, b in noisy:
        print(f"NOISY: {label}: other processes used {b[0][0]:.2f} cores (slipway run; {b[0][1]}) "
              f"and {b[1][0]:.2f} cores (OpenSSH run; {b[1][1]}) of the 2 while it was measured")
    if meta:
        print()
        for k in ("date", "mode", "repo", "machine", "git", "openssh", "slipway", "ssh_algorithms"):
            if k in meta:
                print(f"{k}: {meta[k]}")

    with open(os.path.join(res, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
