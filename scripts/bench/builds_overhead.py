#!/usr/bin/env python3
"""The build engine's overhead, on two workloads.

Realistic (the goal's figure): a small C project, 12 modules compiled one command each,
linked, run and packed (about 20 commands of real work, as in a typical buildspec). Timed
in pairs (slipway then bash, bash then slipway, alternating), so that the machine's
drifting load hits both alike; the ratio is total slipway time over total bash time.

Micro (the worst case, to show the per-command cost): a buildspec of 3 phases x 10 commands doing small real work
(sha256sum over the source, seq | sort, gzip, cd and export carried between commands),
run with `slipway build --local DIR`, against the same 30 commands in one bash script run
by hand (`set -e`, same directory). Both timed with hyperfine (in rounds that alternate
the commands, so a drifting machine load hits both alike); also a one-command build
against a one-command script, which separates the fixed cost (process start, buildspec,
git) from the per-command cost.

Driven by scripts/bench-builds.sh; not meant to be run alone. Prints JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import commit_all, run

PHASES = ("install", "pre_build", "build")
# {p}: the phase. Each phase runs the same ten commands on its own output directory.
TEMPLATES = (
    "mkdir -p out/{p}",
    "sha256sum src/*.txt > out/{p}/sums.txt",
    "seq 1 20000 | sort -n | tail -1 > out/{p}/max.txt",
    "cat src/*.txt | wc -c > out/{p}/bytes.txt",
    "cd out/{p}",
    "sort -k2 sums.txt | head -5 > first.txt",
    "export FILES_{p}=$(wc -l < sums.txt)",
    "cd ../..",
    "gzip -c src/f000.txt > out/{p}/f000.gz",
    'echo "{p}: $FILES_{p} files, max $(cat out/{p}/max.txt), $(cat out/{p}/bytes.txt) bytes" >> out/summary.txt',
)


def make_source(path, phases):
    """A git working tree with 64 text files (~4 KiB each), a buildspec and baseline.sh."""
    os.makedirs(os.path.join(path, "src"), exist_ok=True)
    for i in range(64):
        with open(os.path.join(path, "src", f"f{i:03d}.txt"), "w") as f:
            for line in range(100):
                f.write(f"file {i} line {line} {'x' * (line % 17)}\n")
    commands = {p: [t.format(p=p) for t in TEMPLATES] for p in phases}
    with open(os.path.join(path, "buildspec.yml"), "w") as f:
        f.write("version: 0.2\nphases:\n")
        for p in phases:
            f.write(f"  {p}:\n    commands:\n")
            for c in commands[p]:
                f.write(f"      - {json.dumps(c)}\n")
    with open(os.path.join(path, "baseline.sh"), "w") as f:
        f.write(f"set -e\ncd {path}\n")
        for p in phases:
            f.write("\n".join(commands[p]) + "\n")
    commit_all(path)
    return sum(len(c) for c in commands.values())


C_MODULE = """#include <stdint.h>
uint64_t mod{i}(uint64_t n) {{
    uint64_t acc = {i};
    for (uint64_t k = 1; k <= n; k++) {{
        acc = acc * 6364136223846793005ULL + k;
        acc ^= acc >> {shift};
        if ((acc & 7) == {i} % 8) acc += k * k;
    }}
    return acc;
}}
"""
C_MAIN = """#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
{decls}
int main(int argc, char **argv) {{
    uint64_t n = argc > 1 ? strtoull(argv[1], 0, 10) : 1000, total = 0;
{calls}
    printf("%llu\\n", (unsigned long long) total);
    return 0;
}}
"""
C_MODULES = 12


def make_c_project(path):
    """A C project: 12 modules and a main, built by a buildspec and by baseline.sh."""
    os.makedirs(os.path.join(path, "src"), exist_ok=True)
    for i in range(C_MODULES):
        with open(os.path.join(path, "src", f"mod{i}.c"), "w") as f:
            f.write(C_MODULE.format(i=i, shift=13 + i % 7))
    decls = "\n".join(f"uint64_t mod{i}(uint64_t);" for i in range(C_MODULES))
    calls = "\n".join(f"    total += mod{i}(n);" for i in range(C_MODULES))
    with open(os.path.join(path, "src", "main.c"), "w") as f:
        f.write(C_MAIN.format(decls=decls, calls=calls))
    phases = {
        "install": ["gcc --version | head -1", "mkdir -p out"],
        "pre_build": ["cd src", 'export CFLAGS="-O2 -Wall"', "ls *.c | wc -l"],
        "build": [f"gcc $CFLAGS -c mod{i}.c -o ../out/mod{i}.o" for i in range(C_MODULES)]
        + ["gcc $CFLAGS main.c ../out/*.o -o ../out/app"],
        "post_build": [
            "cd ..",
            "./out/app 2000000 > out/result.txt",
            "sha256sum out/result.txt > out/sums.txt",
            "tar czf out/app.tgz out/app",
        ],
    }
    with open(os.path.join(path, "buildspec.yml"), "w") as f:
        f.write("version: 0.2\nphases:\n")
        for p, cmds in phases.items():
            f.write(f"  {p}:\n    commands:\n")
            for c in cmds:
                f.write(f"      - {json.dumps(c)}\n")
    with open(os.path.join(path, "baseline.sh"), "w") as f:
        f.write(f"set -e\ncd {path}\n")
        for cmds in phases.values():
            f.write("\n".join(cmds) + "\n")
    commit_all(path)
    return sum(len(c) for c in phases.values())


def make_trivial(path):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "buildspec.yml"), "w") as f:
        f.write('version: 0.2\nphases:\n  build:\n    commands:\n      - "true"\n')
    with open(os.path.join(path, "baseline.sh"), "w") as f:
        f.write(f"set -e\ncd {path}\ntrue\n")
    commit_all(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the slipway binary")
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    full = os.path.join(args.work, "full")
    one = os.path.join(args.work, "one")
    k = make_source(full, PHASES)
    make_trivial(one)
    cproj = os.path.join(args.work, "c-project")
    kc = make_c_project(cproj)

    # Both must do the same work: run each once and compare what they wrote.
    summaries = []
    for cmd in ([args.bin, "build", "--local", full], ["bash", os.path.join(full, "baseline.sh")]):
        run(["rm", "-rf", os.path.join(full, "out")])
        out = run(cmd)
        if cmd[0] == args.bin and not out.rstrip().endswith("SUCCEEDED"):
            raise SystemExit(f"the local build did not succeed:\n{out}")
        summaries.append(open(os.path.join(full, "out", "summary.txt")).read())
    if summaries[0] != summaries[1]:
        raise SystemExit(f"slipway and bash disagree:\n{summaries[0]}\n---\n{summaries[1]}")
    results = []
    for cmd in ([args.bin, "build", "--local", cproj], ["bash", os.path.join(cproj, "baseline.sh")]):
        run(["rm", "-rf", os.path.join(cproj, "out")])
        out = run(cmd)
        if cmd[0] == args.bin and not out.rstrip().endswith("SUCCEEDED"):
            raise SystemExit(f"the C project's local build did not succeed:\n{out}")
        results.append(open(os.path.join(cproj, "out", "result.txt")).read())
    if results[0] != results[1]:
        raise SystemExit(f"slipway and bash built different programs: {results}")

    names = ["slipway-30", "bash-30", "slipway-1", "bash-1"]
    cmds = [
        f"{args.bin} build --local {full}",
        f"bash {full}/baseline.sh",
        f"{args.bin} build --local {one}",
        f"bash {one}/baseline.sh",
    ]
    # hyperfine runs one command's runs back to back; on a shared machine the load drifts,
    # so the runs are split into rounds that each time all four commands.
    times = {n: [] for n in names}
    rounds = max(1, min(args.rounds, args.runs))
    log = open(os.path.join(args.work, "hyperfine.log"), "w")
    for r in range(rounds):
        runs = args.runs // rounds + (1 if r < args.runs % rounds else 0)
        exported = os.path.join(args.work, f"hyperfine.{r}.json")
        hf = ["hyperfine", "-N", "--style", "basic", "--runs", str(runs), "--warmup", str(args.warmup),
              "--prepare", f"rm -rf {full}/out", "--export-json", exported]
        for n, c in zip(names, cmds):
            hf += ["-n", n, c]
        p = subprocess.run(hf, capture_output=True, text=True)
        log.write(p.stdout + p.stderr)
        if p.returncode != 0:
            raise SystemExit(f"hyperfine failed:\n{p.stdout}\n{p.stderr}")
        for res in json.load(open(exported))["results"]:
            times[res["command"]].extend(res["times"])
    log.close()

    def summary(name):
        t = times[name]
        return {
            "mean_ms": round(statistics.mean(t) * 1000, 2),
            "stddev_ms": round(statistics.stdev(t) * 1000, 2) if len(t) > 1 else 0.0,
            "median_ms": round(statistics.median(t) * 1000, 2),
            "min_ms": round(min(t) * 1000, 2),
            "runs": len(t),
        }

    # The C project, in pairs.
    pair = {"slipway-c": [args.bin, "build", "--local", cproj], "bash-c": ["bash", os.path.join(cproj, "baseline.sh")]}
    for n in pair:
        times[n] = []
    for i in range(args.warmup + args.runs):
        order = list(pair) if i % 2 == 0 else list(reversed(pair))
        for n in order:
            run(["rm", "-rf", os.path.join(cproj, "out")])
            start = time.perf_counter()
            subprocess.run(pair[n], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            if i >= args.warmup:
                times[n].append(time.perf_counter() - start)
    names += list(pair)
    pair_ratios = [a / b for a, b in zip(times["slipway-c"], times["bash-c"])]

    s = {n: summary(n) for n in names}
    over_mean = s["slipway-30"]["mean_ms"] - s["bash-30"]["mean_ms"]
    over_median = s["slipway-30"]["median_ms"] - s["bash-30"]["median_ms"]
    fixed = s["slipway-1"]["median_ms"] - s["bash-1"]["median_ms"]
    report = {
        "c_project": {
            "commands": kc,
            "pairs": len(pair_ratios),
            "ratio_mean": round(s["slipway-c"]["mean_ms"] / s["bash-c"]["mean_ms"], 3),
            "ratio_median": round(s["slipway-c"]["median_ms"] / s["bash-c"]["median_ms"], 3),
            "pair_ratio_median": round(statistics.median(pair_ratios), 3),
            "overhead_ms": round(s["slipway-c"]["median_ms"] - s["bash-c"]["median_ms"], 1),
        },
        "commands": k,
        "times": s,
        "ratio_mean": round(s["slipway-30"]["mean_ms"] / s["bash-30"]["mean_ms"], 3),
        "ratio_median": round(s["slipway-30"]["median_ms"] / s["bash-30"]["median_ms"], 3),
        # The brief's figure: all of slipway's extra time spread over the commands.
        "per_command_overhead_ms": round(over_mean / k, 2),
        "per_command_overhead_median_ms": round(over_median / k, 2),
        # Split: one-command build minus one-command script = fixed cost; the rest is
        # what each further command adds.
        "fixed_overhead_ms": round(fixed, 2),
        "marginal_per_command_ms": round((over_median - fixed) / (k - 1), 2),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
