"""Helpers shared by the benchmark drivers in scripts/bench/ (imported, not run)."""

import calendar
import json
import os
import subprocess
import sys
import threading
import time


def run(cmd, cwd=None, env=None):
    """Runs `cmd`; its stdout, or exit with what it printed when it fails."""
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def git_env(ssh_cmd=None):
    """An environment for git: fixed identity, no system or user config."""
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
    )
    if ssh_cmd:
        env["GIT_SSH_COMMAND"] = ssh_cmd
    return env


def commit_all(path, message="source"):
    """Makes `path` a git repository (branch main) with everything in it committed."""
    env = git_env()
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "commit", "-q", "-m", message],
    ):
        run(cmd, cwd=path, env=env)


def percentile(values, p):
    """The p-th percentile of `values` (linear interpolation); NaN when empty."""
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    f, c = int(k), min(int(k) + 1, len(values) - 1)
    return values[f] + (values[c] - values[f]) * (k - f)


def stats_ms(values):
    """p50/p99/min/max/mean of `values` (seconds) in milliseconds; {"n": 0} when empty."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "min_ms": round(min(values) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(sum(values) / len(values) * 1000, 2),
    }


def event_time(text):
    """An event's time, RFC 3339 UTC with milliseconds ("2026-11-29T20:31:00.123Z") -> unix seconds."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + text[19:-1])


def last_event_id(ssh):
    """The newest stored event's id (0: none); `ssh` is the command line up to slipway's command."""
    events = json.loads(run(ssh + ["events", "--json", "--limit", "1"]) or "[]")
    return max((e["id"] for e in events), default=0)


class Follower:
    """`events --follow --json --since SINCE` in the background, so a driver waits for
    what it started without polling the server.

    `match(event)` answers (key, value) for the events waited for, or None; the last value
    stored under a key is what `wait_end(key)` answers. Every event's id is kept in `ids`
    (to check that the stream and the stored log agree)."""

    def __init__(self, ssh, since, match, log=lambda msg: print(msg, file=sys.stderr, flush=True)):
        self.proc = subprocess.Popen(
            ssh + ["events", "--follow", "--json", "--since", str(since)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.match = match
        self.log = log
        self.ended = {}          # key -> value
        self.seen = 0            # events received
        self.ids = set()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                self.log(f"events --follow printed a line that is not JSON: {line[:200]}")
                continue
            with self.cond:
                self.seen += 1
                self.ids.add(e.get("id"))
                found = self.match(e)
                if found is not None:
                    self.ended[found[0]] = found[1]
                    self.cond.notify_all()

    def wait_end(self, key, timeout):
        """The value `match` gave for `key`, waiting up to `timeout` s; None if none came."""
        deadline = time.time() + timeout
        with self.cond:
            while key not in self.ended:
                left = deadline - time.time()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 1.0))
            return self.ended[key]

    def stop(self):
        """Ends the stream; answers what it wrote to stderr."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(timeout=5)
        return self.proc.stderr.read() if self.proc.stderr else ""
