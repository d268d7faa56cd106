#!/usr/bin/python3
"""Pipeline latency on a live slipway server: push -> first action, stage -> next stage.

PUSHES pushes in a row to the default branch of a repository whose pipeline.yml has two
stages of one trivial build each; every push waits for its execution to end (seen on one
long-lived `events --follow --json` stream, so no polling load) before the next, so the
queues are empty. After the last push the stored event log is read once
(`events --json --since ID`) and each execution's times are taken from it:

  push -> first action STARTED   `git/push` (detail.new = the commit) to the first
                                 `pipeline/action-state-change` STARTED of the execution
                                 that push started (`pipeline executions --json`: the
                                 execution whose event_id is the push's id)
  push -> first build running    the same push to `build/build-state-change` IN_PROGRESS
                                 of that action's build_id
  stage -> next stage            `pipeline/stage-state-change` SUCCEEDED of stage 1 to
                                 STARTED of stage 2, same execution

plus the steps in between. Event times are stored with millisecond resolution, so every
number is a difference of two millisecond timestamps (+-1 ms).

Driven by scripts/bench-pipelines.sh; not meant to be run alone. Writes OUT (JSON) and
prints a table.
"""

import argparse
import json
import os
import sys
import time

from common import Follower, event_time, git_env, last_event_id, run, stats_ms

GOAL_MS = 50.0
PIPELINE = "bench"
PIPELINE_YML = """\
name: bench
stages:
  - name: one
    actions:
      - { name: a, build: { buildspec: buildspec.yml } }
  - name: two
    actions:
      - { name: b, build: { buildspec: buildspec.yml } }
"""
BUILDSPEC_YML = """\
version: 0.2
phases:
  build:
    commands: ["true"]
"""
NOT_TERMINAL = ("STARTED", "RESUMED")


def log(msg):
    print(f"bench-pipelines: {msg}", file=sys.stderr, flush=True)


def terminal_execution(e):
    """For the Follower: an execution's end, as (commit, (execution id, state))."""
    if (e.get("source"), e.get("type")) == ("pipeline", "execution-state-change") \
            and e.get("state") not in NOT_TERMINAL:
        d = e.get("detail") or {}
        return d.get("commit"), (d.get("execution"), e.get("state"))
    return None


def stored_events(ssh, since):
    """Every stored event after `since` (the server returns at most 10,000 at once)."""
    events = json.loads(run(ssh + ["events", "--json", "--limit", "10000", "--since", str(since)]) or "[]")
    if len(events) >= 10000:
        raise SystemExit("more than 10,000 events: fewer pushes, or page through the log")
    return sorted(events, key=lambda e: e["id"])


def commit_change(work, env, i):
    with open(os.path.join(work, "file.txt"), "w") as f:
        f.write(f"{i}\n")
    run(["git", "commit", "-q", "-am", f"push {i}"], cwd=work, env=env)
    return run(["git", "rev-parse", "HEAD"], cwd=work, env=env).strip()


def analyse(events, executions, pushes, repo):
    """Per measured push: the times of the events that matter, and what was missing."""
    push_by_commit = {}
    for e in events:
        if (e["source"], e["type"], e["repo"]) == ("git", "push", repo):
            push_by_commit.setdefault(e["detail"].get("new"), e)
    exec_by_event = {x["event_id"]: x for x in executions if x.get("event_id") is not None}
    by_exec = {}
    builds = {}
    for e in events:
        d = e.get("detail") or {}
        if e["source"] == "pipeline" and d.get("pipeline") == PIPELINE and d.get("execution") is not None:
            by_exec.setdefault(d["execution"], []).append(e)
        elif (e["source"], e["type"]) == ("build", "build-state-change") and d.get("build_id") is not None:
            builds.setdefault(d["build_id"], []).append(e)

    def first(evs, **want):
        for e in evs:
            d = e.get("detail") or {}
            if all((e.get(k) if k in ("type", "state") else d.get(k)) == v for k, v in want.items()):
                return e
        return None

    rows, problems, notes = [], [], []
    for p in pushes:
        sha = p["commit"]
        row = {"commit": sha, "client_push_start": p["t0"], "client_push_end": p["t1"],
               "client_seen_end": p.get("seen_end"), "follow_result": p.get("follow_result")}
        rows.append(row)
        pe = push_by_commit.get(sha)
        if not pe:
            problems.append(f"{sha[:10]}: no git/push event with detail.new = this commit")
            continue
        row["push_id"], row["push"] = pe["id"], event_time(pe["time"])
        x = exec_by_event.get(pe["id"])
        if not x:
            problems.append(f"{sha[:10]}: no execution with event_id {pe['id']} in `pipeline executions`")
            continue
        xid = x["id"]
        row["execution"], row["status"] = xid, x.get("status")
        if x.get("status") != "SUCCEEDED":
            problems.append(f"{sha[:10]}: execution {xid} is {x.get('status')} ({x.get('reason')})")
        evs = by_exec.get(xid, [])
        named = {
            "execution_started": first(evs, type="execution-state-change", state="STARTED"),
            "execution_ended": next((e for e in evs if e["type"] == "execution-state-change"
                                     and e["state"] not in NOT_TERMINAL), None),
        }
        stage_starts = [e for e in evs if e["type"] == "stage-state-change" and e["state"] == "STARTED"]
        stage_names = []
        for e in stage_starts:
            if e["detail"].get("stage") not in stage_names:
                stage_names.append(e["detail"].get("stage"))
        s1 = stage_names[0] if stage_names else None
        s2 = stage_names[1] if len(stage_names) > 1 else None
        named["stage1_started"] = first(evs, type="stage-state-change", state="STARTED", stage=s1) if s1 else None
        named["stage1_succeeded"] = first(evs, type="stage-state-change", state="SUCCEEDED", stage=s1) if s1 else None
        named["stage2_started"] = first(evs, type="stage-state-change", state="STARTED", stage=s2) if s2 else None
        a1 = first(evs, type="action-state-change", state="STARTED")
        named["action1_started"] = a1
        named["action1_succeeded"] = first(evs, type="action-state-change", state="SUCCEEDED",
                                           action=a1["detail"].get("action"), stage=a1["detail"].get("stage")) if a1 else None
        a2 = first(evs, type="action-state-change", state="STARTED", stage=s2) if s2 else None
        named["action2_started"] = a2
        for tag, action in (("build1", a1), ("build2", a2)):
            bid = (action or {}).get("detail", {}).get("build_id")
            row[f"{tag}_id"] = bid
            bevs = builds.get(bid, []) if bid is not None else []
            named[f"{tag}_queued"] = first(bevs, state="QUEUED")
            named[f"{tag}_running"] = first(bevs, state="IN_PROGRESS")
            named[f"{tag}_ended"] = next((e for e in bevs if e["state"] not in ("QUEUED", "IN_PROGRESS")), None)
        for k, e in named.items():
            row[k] = event_time(e["time"]) if e else None
            row[f"{k}_id"] = e["id"] if e else None
        # The pipeline may learn of a build's end before the build's own event is stored.
        if row["build1_ended_id"] and row["action1_succeeded_id"] and row["build1_ended_id"] > row["action1_succeeded_id"]:
            notes.append(f"{sha[:10]}: execution {xid}: build {row['build1_id']}'s end (event {row['build1_ended_id']}) "
                         f"was stored after its action's SUCCEEDED (event {row['action1_succeeded_id']})")
        must = ("action1_started", "build1_running", "stage1_succeeded", "stage2_started")
        missing = [k for k in must if row[k] is None]
        if missing:
            problems.append(f"{sha[:10]}: execution {xid}: no event for {', '.join(missing)} "
                            f"(its events: {[(e['id'], e['type'], e['state'], e['detail'].get('stage'), e['detail'].get('action')) for e in evs]})")
    return rows, problems, notes


METRICS = [
    # key, label, from, to, headline (goal 50 ms)
    ("push_to_first_action", "push -> first action STARTED", "push", "action1_started", True),
    ("push_to_first_build_running", "push -> its build IN_PROGRESS", "push", "build1_running", True),
    ("stage_to_next_stage", "stage 1 SUCCEEDED -> stage 2 STARTED", "stage1_succeeded", "stage2_started", True),
    ("push_to_execution_started", "  push -> execution STARTED", "push", "execution_started", False),
    ("execution_to_stage1", "  execution STARTED -> stage 1 STARTED", "execution_started", "stage1_started", False),
    ("stage1_to_action1", "  stage 1 STARTED -> action STARTED", "stage1_started", "action1_started", False),
    ("action1_to_build1_running", "  action STARTED -> build IN_PROGRESS", "action1_started", "build1_running", False),
    ("build1_duration", "  build 1 IN_PROGRESS -> ended (trivial build)", "build1_running", "build1_ended", False),
    ("build1_end_to_stage1_succeeded", "  build 1 ended -> stage 1 SUCCEEDED", "build1_ended", "stage1_succeeded", False),
    ("build1_end_to_build2_running", "  build 1 ended -> build 2 IN_PROGRESS", "build1_ended", "build2_running", False),
    ("push_to_execution_end", "  push -> execution ended (whole pipeline)", "push", "execution_ended", False),
    ("client_push_to_first_action", "  (client: git push started -> first action)", "client_push_start", "action1_started", False),
    ("client_push_wall", "  (client: git push wall time)", "client_push_start", "client_push_end", False),
]


def summarise(rows):
    out = {}
    for key, _, a, b, _ in METRICS:
        vals = [r[b] - r[a] for r in rows if r.get(a) is not None and r.get(b) is not None]
        out[key] = stats_ms(vals)
    return out


def table(result, meta):
    s = result["stats"]
    lines = [f"slipway pipeline latency ({meta.get('mode')}, {meta.get('date')}, slipway {meta.get('rev')}; "
             f"{result['pushes']} pushes in a row, each waits for its execution; event times are ms-resolution)"]
    if "loadavg_before" in meta:
        lines.append(f"load average (1/5/15 min) before: {meta['loadavg_before']}; after: {meta.get('loadavg_after', '?')} "
                     f"({meta.get('nproc', '?')} cores)" + (f"; other processes' CPU during the pushes: {meta['noise']}"
                                                            if meta.get("noise") else ""))
    hdr = f"{'metric':<46} {'n':>4} {'p50 ms':>7} {'p99 ms':>7} {'min':>6} {'max':>7}  {'goal':>5}  {'p50/goal':>8} {'p99/goal':>8}"
    lines += [hdr, "-" * len(hdr)]
    for key, label, _, _, headline in METRICS:
        st = s[key]
        if not st.get("n"):
            lines.append(f"{label:<46} {0:>4} {'-':>7} {'-':>7}")
            continue
        line = f"{label:<46} {st['n']:>4} {st['p50_ms']:>7.1f} {st['p99_ms']:>7.1f} {st['min_ms']:>6.1f} {st['max_ms']:>7.1f}"
        if headline:
            line += (f"  {GOAL_MS:>3.0f}ms  {st['p50_ms'] / GOAL_MS:>8.2f} {st['p99_ms'] / GOAL_MS:>8.2f}"
                     f"  {'met' if st['p99_ms'] <= GOAL_MS else 'p99 NOT met'}")
        lines.append(line)
    for n in result.get("notes", [])[:10]:
        lines.append(f"note: {n}")
    if result["problems"]:
        lines.append(f"WARNING: {len(result['problems'])} problem(s):")
        lines += [f"  {p}" for p in result["problems"][:20]]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url-base", required=True, help="e.g. ssh://git@127.0.0.1:PORT/")
    ap.add_argument("--ssh", required=True, help="GIT_SSH_COMMAND, also used for slipway's commands")
    ap.add_argument("--ssh-port", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True, help="the JSON results")
    ap.add_argument("--meta", help="a JSON object to put in the results and the table's heading")
    ap.add_argument("--pushes", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=2, help="pushes before the measured ones (the first creates the repository)")
    ap.add_argument("--settle", type=float, default=0.1, help="seconds between an execution's end and the next push")
    ap.add_argument("--timeout", type=float, default=120, help="seconds an execution may take")
    ap.add_argument("--repo", default="bench-pipeline")
    args = ap.parse_args()
    meta = json.load(open(args.meta)) if args.meta else {}
    env = git_env(args.ssh)
    ssh = args.ssh.split() + ["-p", args.ssh_port, "git@127.0.0.1"]
    url = f"{args.url_base}{args.repo}.git"
    work = os.path.join(args.work, args.repo)
    os.makedirs(work)
    run(["git", "init", "-q", "-b", "main", work], env=env)
    for name, text in (("pipeline.yml", PIPELINE_YML), ("buildspec.yml", BUILDSPEC_YML), ("file.txt", "0\n")):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    run(["git", "add", "."], cwd=work, env=env)
    run(["git", "commit", "-q", "-m", "pipeline"], cwd=work, env=env)

    since = last_event_id(ssh)
    follower = Follower(ssh, since, terminal_execution, log)
    time.sleep(0.3)  # the stream is open before the first push (it also replays from `since`)
    pushes, problems = [], []
    total = args.warmup + args.pushes
    for i in range(total):
        sha = commit_change(work, env, i + 1) if i else run(["git", "rev-parse", "HEAD"], cwd=work, env=env).strip()
        t0 = time.time()
        run(["git", "push", "-q", url, "main"], cwd=work, env=env)
        t1 = time.time()
        ended = follower.wait_end(sha, args.timeout)
        seen = time.time()
        if ended is None:
            # Say what the server thinks, then go on: the analysis reports what is missing.
            listing = run(ssh + ["pipeline", "executions", PIPELINE, "--json", "--limit", "3"])
            msg = f"push {i + 1} ({sha[:10]}): no terminal execution event within {args.timeout:.0f} s; " \
                  f"`pipeline executions` says: {listing.strip()[:600]}"
            log(msg)
            problems.append(msg)
        if i >= args.warmup:
            pushes.append({"commit": sha, "t0": t0, "t1": t1, "seen_end": seen,
                           "follow_result": list(ended) if ended else None})
        if (i + 1) % 20 == 0:
            log(f"{i + 1}/{total} pushes")
        time.sleep(args.settle)
    time.sleep(0.5)
    follow_err = follower.stop()

    events = stored_events(ssh, since)
    executions = json.loads(run(ssh + ["pipeline", "executions", PIPELINE, "--json", "--limit", str(total + 20)]))
    rows, more, notes = analyse(events, executions, pushes, args.repo)
    problems += more
    # The live stream and the stored log should hold the same events.
    stored_ids = {e["id"] for e in events}
    not_streamed = sorted(stored_ids - follower.ids)
    if not_streamed:
        problems.append(f"{len(not_streamed)} stored events never came on `events --follow` (ids {not_streamed[:20]})")
    if follow_err.strip():
        problems.append(f"`events --follow` stderr: {follow_err.strip()[:300]}")
    result = {
        "meta": meta,
        "goal_ms": GOAL_MS,
        "pipeline_yml": PIPELINE_YML,
        "pushes": args.pushes,
        "warmup": args.warmup,
        "events_stored": len(events),
        "events_streamed": follower.seen,
        "stats": summarise(rows),
        "problems": problems,
        "notes": notes,
        "pushes_detail": rows,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(table(result, meta))
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
