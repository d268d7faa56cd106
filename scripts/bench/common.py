"""Helpers shared by the benchmark drivers in scripts/bench/ (imported, not run)."""

import os
import subprocess


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
