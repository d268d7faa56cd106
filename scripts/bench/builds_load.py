#!/usr/bin/env python3
"""Push-triggered builds on slipway's local executor: latency and throughput.

latency: PUSHES pushes in a row to one branch of a repository with a buildspec.yml,
each waiting for its build to finish before the next (so the queue is always empty).
Measured: push -> first build command running, where "push" is the push event's stored
time (the events table in DATA/slipway.db, written before the push is acknowledged) and
"first command running" is $EPOCHREALTIME written by the buildspec's first command into
MARKS/<CODEBUILD_RESOLVED_SOURCE_VERSION>. Also split into event -> queued -> started ->
first command with the builds table's own times.

throughput: BRANCHES trivial builds queued at once (one `git push` of BRANCHES new
branches, each its own commit), timed from the start of that push to the end of the last
build, as `build list --json` reports it.

Driven by scripts/bench-builds.sh; not meant to be run alone. Prints JSON.
"""

import argparse
import calendar
import json
import os
import sqlite3
import sys
import time

from common import git_env, percentile, run

TERMINAL_WAIT_S = 300


def stats_ms(values):
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "min_ms": round(min(values) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def event_time(text):
    """RFC 3339 UTC with milliseconds ("2026-11-29T20:31:00.123Z") -> unix seconds."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + text[19:-1])


class Db:
    """Read-only polling of the server's store (sqlite in WAL mode; readers never block it)."""

    def __init__(self, path):
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def build_of(self, repo, commit):
        return self.conn.execute(
            "SELECT id, status, event_id, queued, started, ended FROM builds"
            " WHERE repo = ? AND commit_id = ? ORDER BY id DESC LIMIT 1",
            (repo, commit),
        ).fetchone()

    def unfinished_or_missing(self, repo, expected):
        done = self.conn.execute(
            "SELECT COUNT(*) FROM builds WHERE repo = ? AND status NOT IN ('QUEUED', 'IN_PROGRESS')",
            (repo,),
        ).fetchone()[0]
        return expected - done

    def event(self, event_id):
        return self.conn.execute("SELECT time FROM events WHERE id = ?", (event_id,)).fetchone()


def wait_build(db, repo, commit, poll=0.01):
    deadline = time.time() + TERMINAL_WAIT_S
    while time.time() < deadline:
        row = db.build_of(repo, commit)
        if row and row[1] not in ("QUEUED", "IN_PROGRESS"):
            return row
        time.sleep(poll)
    raise SystemExit(f"the build of {repo} at {commit} did not finish within {TERMINAL_WAIT_S} s")


def write_spec(path, commands):
    with open(path, "w") as f:
        f.write("version: 0.2\nphases:\n  build:\n    commands:\n")
        for c in commands:
            f.write(f"      - {json.dumps(c)}\n")


def new_repo(work, env, spec_commands):
    os.makedirs(work, exist_ok=True)
    run(["git", "init", "-q", "-b", "main", work], env=env)
    write_spec(os.path.join(work, "buildspec.yml"), spec_commands)
    with open(os.path.join(work, "file.txt"), "w") as f:
        f.write("0\n")
    run(["git", "add", "buildspec.yml", "file.txt"], cwd=work, env=env)
    run(["git", "commit", "-q", "-m", "buildspec"], cwd=work, env=env)
    return run(["git", "rev-parse", "HEAD"], cwd=work, env=env).strip()


def latency(args, env, db):
    repo = "bench-latency"
    url = f"{args.url_base}{repo}.git"
    work = os.path.join(args.work, "latency")
    # $EPOCHREALTIME is a bash builtin (no fork): the time this first command runs.
    first = f'printf "%s\\n" "$EPOCHREALTIME" > {args.marks}/"$CODEBUILD_RESOLVED_SOURCE_VERSION"'
    head = new_repo(work, env, [first, "echo built $CODEBUILD_RESOLVED_SOURCE_VERSION"])
    # The repository's first push creates it and builds once (not measured).
    run(["git", "push", "-q", url, "main"], cwd=work, env=env)
    wait_build(db, repo, head)
    total, stored_queued, queued_started, started_first, durations, push_wall = [], [], [], [], [], []
    client_first = []
    failed = 0
    for i in range(args.pushes):
        with open(os.path.join(work, "file.txt"), "w") as f:
            f.write(f"{i + 1}\n")
        run(["git", "commit", "-q", "-am", f"push {i + 1}"], cwd=work, env=env)
        sha = run(["git", "rev-parse", "HEAD"], cwd=work, env=env).strip()
        t0 = time.time()
        run(["git", "push", "-q", url, "main"], cwd=work, env=env)
        push_wall.append(time.time() - t0)
        bid, status, event_id, queued, started, ended = wait_build(db, repo, sha)
        if status != "SUCCEEDED":
            failed += 1
            print(f"builds_load: build {bid} of {sha} is {status}", file=sys.stderr)
            continue
        mark_path = os.path.join(args.marks, sha)
        mark = float(open(mark_path).read().strip().replace(",", "."))
        stored = event_time(db.event(event_id)[0])
        total.append(mark - stored)
        client_first.append(mark - t0)
        stored_queued.append(queued - stored)
        queued_started.append(started - queued)
        started_first.append(mark - started)
        durations.append(ended - started)
    return {
        "pushes": args.pushes,
        "failed": failed,
        "push_to_first_command": stats_ms(total),
        "stages": {
            "event_stored_to_queued": stats_ms(stored_queued),
            "queued_to_started": stats_ms(queued_started),
            "started_to_first_command": stats_ms(started_first),
        },
        "client_push_start_to_first_command": stats_ms(client_first),
        "push_wall": stats_ms(push_wall),
        "build_duration": stats_ms(durations),
    }


def throughput(args, env, db):
    repo = "bench-throughput"
    url = f"{args.url_base}{repo}.git"
    work = os.path.join(args.work, "throughput")
    head = new_repo(work, env, ["echo trivial $CODEBUILD_WEBHOOK_HEAD_REF"])
    run(["git", "push", "-q", url, "main"], cwd=work, env=env)
    wait_build(db, repo, head)
    # One commit per branch (same tree, its own message), made with plumbing: fast.
    tree = run(["git", "rev-parse", "HEAD^{tree}"], cwd=work, env=env).strip()
    for j in range(args.branches):
        sha = run(["git", "commit-tree", tree, "-p", head, "-m", f"branch {j}"], cwd=work, env=env).strip()
        run(["git", "update-ref", f"refs/heads/b-{j:04d}", sha], cwd=work, env=env)
    t0 = time.time()
    run(["git", "push", "-q", url, "refs/heads/b-*:refs/heads/b-*"], cwd=work, env=env)
    pushed = time.time()
    expected = args.branches + 1
    deadline = time.time() + TERMINAL_WAIT_S
    while db.unfinished_or_missing(repo, expected) > 0:
        if time.time() > deadline:
            raise SystemExit(f"{repo}: not all {args.branches} builds finished within {TERMINAL_WAIT_S} s")
        time.sleep(0.05)
    # The result as users see it: `build list --json`.
    ssh = args.ssh.split() + ["-p", args.ssh_port, "git@127.0.0.1"]
    listing = json.loads(run(ssh + ["build", "list", "--json", "--repo", repo, "--limit", str(expected + 10)]))
    builds = [b for b in listing if (b.get("ref") or "").startswith("refs/heads/b-")]
    if len(builds) != args.branches:
        raise SystemExit(f"{repo}: expected {args.branches} branch builds, `build list` shows {len(builds)}")
    statuses = {}
    for b in builds:
        statuses[b["status"]] = statuses.get(b["status"], 0) + 1
    last_end = max(b["ended"] for b in builds)
    first_start = min(b["started"] for b in builds)
    elapsed = last_end - t0
    return {
        "builds": len(builds),
        "statuses": statuses,
        "push_wall_s": round(pushed - t0, 3),
        "first_push_to_last_build_end_s": round(elapsed, 3),
        "builds_per_min": round(len(builds) / elapsed * 60, 1),
        # The builder alone: from its first start to its last end.
        "first_start_to_last_end_s": round(last_end - first_start, 3),
        "builder_builds_per_min": round(len(builds) / (last_end - first_start) * 60, 1),
        "build_duration": stats_ms([b["ended"] - b["started"] for b in builds]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url-base", required=True, help="e.g. ssh://git@127.0.0.1:PORT/")
    ap.add_argument("--ssh", required=True, help="GIT_SSH_COMMAND (also used for `build list`)")
    ap.add_argument("--ssh-port", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--db", required=True, help="DATA/slipway.db")
    ap.add_argument("--marks", required=True, help="a directory the build user may write")
    ap.add_argument("--pushes", type=int, default=200)
    ap.add_argument("--branches", type=int, default=60)
    args = ap.parse_args()
    env = git_env(args.ssh)
    db = Db(args.db)
    report = {"latency": latency(args, env, db), "throughput": throughput(args, env, db)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
