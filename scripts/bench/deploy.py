#!/usr/bin/python3
"""Deployments on a live slipway server with real agents, against an ssh fan-out.

Driven by scripts/bench-deploy.sh (which starts the server); not meant to be run alone.
In order:

1. memory: the server's RSS (/proc/PID/status) with no agent, with AGENTS agents
   registered and long-polling, and with IDLE more (tag role=idle, in no group); then the
   idle ones are stopped. Per agent = the difference / the number of agents.
2. a revision: a repository with buildspec.yml and appspec.yml (one tiny file to
   /srv/bench, one ValidateService hook that checks it is there) is pushed; the build's
   artifact is the revision.
3. RUNS deployments (after WARMUP) of that build, all at once to the AGENTS agents
   (group `bench/all-at-once`), one after the other. Each is created with
   `deploy create`, waited for on one `events --follow` stream, then read with
   `deploy status --json`, whose times are the server's (unix seconds, full
   resolution):
     deployment created -> ended          time to done
     per event: ready -> dispatched -> started (acknowledged) -> ended
       ready -> started                   dispatch latency through the long-poll
       previous event ended -> ready      the hand-over (report -> supervisor pass)
     script time: on the host that ended last, the sum of started -> ended of the
       events that run a hook script (ValidateService here); overhead = total - that.
   Interleaved with each run: the baseline, the same zip to AGENTS "hosts" (directories)
   through a private OpenSSH sshd on loopback, all at once: one `ssh` per host that
   receives the zip on stdin, unzips it, copies the files and runs the same hook;
   cold (a new connection per host, as a plain `for h in hosts; do ssh h … & done`)
   and warm (over already open ControlMaster connections, as ansible's ControlPersist).
   And after each run, a deployment to a group of one more agent (the 20 idle): the
   dispatch path without 20 agents competing for the same cores. The CPU time of the
   server's and the agents' process trees is taken around each run.

Writes OUT (JSON) and prints a table.
"""

import argparse
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from common import Follower, git_env, last_event_id, run, stats_ms
from rss_sampler import read_tree

APP, GROUP, SOLO = "bench", "all-at-once", "one-host"
DEPLOY_YAML = f"""\
applications:
  {APP}:
    groups:
      {GROUP}:
        tags: [["role=bench"]]
        config: all-at-once
      {SOLO}:
        tags: [["solo=yes"]]
        config: all-at-once
"""
BUILDSPEC_YML = """\
version: 0.2
phases:
  build:
    commands: ["chmod +x scripts/validate.sh"]
artifacts:
  files: ['appspec.yml', 'site/**/*', 'scripts/*']
"""
APPSPEC_YML = """\
version: 0.0
os: linux
files:
  - source: site
    destination: /srv/bench
hooks:
  ValidateService:
    - location: scripts/validate.sh
      timeout: 30
"""
VALIDATE_SH = """\
#!/bin/sh
test -f "$SLIPWAY_AGENT_ROOT/srv/bench/index.html"
"""
INDEX = "bench revision\n"
HOOK_EVENTS = ("ValidateService",)   # the events that run a script in APPSPEC_YML
DISPATCH_GOAL_MS = 20.0
OVERHEAD_GOAL_S = 2.0
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def log(msg):
    print(f"bench-deploy: {msg}", file=sys.stderr, flush=True)


# ---- the server's memory -------------------------------------------------------------

def proc_status(pid):
    """VmRSS, RssAnon (kB) and Threads of `pid`."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "Threads"):
                out[key] = int(value.split()[0])
    return out


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime+stime+cutime+cstime of `pid`, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    rest = stat[stat.rfind(b")") + 2:].split()
    return sum(int(x) for x in rest[11:15]) / TICK


def tree_cpu_s(pid):
    """CPU seconds of `pid` and its live descendants, with what each reaped."""
    return sum(cpu_s(p) for p in read_tree(pid))


def children_cpu_s():
    """CPU seconds of this process's reaped children (ssh clients, git)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sample_memory(pid, samples=10, gap=0.2):
    """The median over `samples` readings, `gap` s apart."""
    rows = []
    for _ in range(samples):
        rows.append(proc_status(pid))
        time.sleep(gap)
    return {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in rows[0]}


# ---- agents --------------------------------------------------------------------------

class Fleet:
    """Registers and runs `slipway-agent` processes, each with its own state and root."""

    def __init__(self, agent_bin, http_port, ssh, work, state_base=None, cpus=None):
        self.bin = agent_bin
        self.pin = ["taskset", "-c", cpus] if cpus else []
        self.url = f"http://127.0.0.1:{http_port}"
        self.ssh = ssh
        self.work = work
        self.state_base = state_base or os.path.join(work, "agents")
        self.procs = {}

    def dirs(self, name):
        base = os.path.join(self.work, "agents", name)
        return (os.path.join(self.state_base, name, "state"), os.path.join(base, "root"),
                os.path.join(base, "agent.log"))

    def register(self, names, tags):
        def one(name):
            more = [a for t in tags(name) for a in ("--tag", t)]
            token = run(self.ssh + ["agent", "token", "create"] + more).split()[0]
            state, root, _ = self.dirs(name)
            os.makedirs(root, exist_ok=True)
            run([self.bin, "register", "--server", self.url, "--token", token, "--name", name,
                 "--state", state])
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(one, names))

    def start(self, names):
        for name in names:
            state, root, logfile = self.dirs(name)
            with open(logfile, "a") as out:
                self.procs[name] = subprocess.Popen(
                    self.pin + [self.bin, "run", "--state", state, "--root", root],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, names):
        for name in names:
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.terminate()
        for name in names:
            p = self.procs.pop(name, None)
            if p:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def stop_all(self):
        self.stop(list(self.procs))

    def dead(self):
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def cpu_s(self):
        """CPU seconds of the running agents and the scripts they ran."""
        return sum(tree_cpu_s(p.pid) for p in self.procs.values())

    def rss_kb(self, names):
        return [proc_status(self.procs[n].pid)["VmRSS"] for n in names if n in self.procs]

    def wait_polling(self, names, since, timeout=60):
        """Until every one of `names` has polled since `since` (agent list)."""
        deadline = time.time() + timeout
        while True:
            agents = json.loads(run(self.ssh + ["agent", "list", "--json"]))
            seen = {a["name"] for a in agents if a.get("last_seen", 0) >= since}
            missing = [n for n in names if n not in seen]
            if not missing:
                return
            dead = self.dead()
            if dead or time.time() > deadline:
                raise SystemExit(f"agents not polling: {missing[:10]} (exited: {dead[:10]}); "
                                 f"see {self.work}/agents/NAME/agent.log")
            time.sleep(0.5)


# ---- the revision --------------------------------------------------------------------

def push_admin(ssh_cmd, url_base, work):
    env = git_env(ssh_cmd)
    clone = os.path.join(work, "admin")
    run(["git", "clone", "-q", f"{url_base}admin.git", clone], env=env)
    with open(os.path.join(clone, "deploy.yaml"), "w") as f:
        f.write(DEPLOY_YAML)
    run(["git", "add", "deploy.yaml"], cwd=clone, env=env)
    run(["git", "commit", "-q", "-m", "deploy.yaml for the benchmark"], cwd=clone, env=env)
    run(["git", "push", "-q", "origin", "HEAD:main"], cwd=clone, env=env)


def build_revision(ssh, ssh_cmd, url_base, work, timeout=120):
    """Pushes the revision's repository; answers the id of its build once it succeeded."""
    env = git_env(ssh_cmd)
    repo = os.path.join(work, "bench-deploy")
    for path, text in (("buildspec.yml", BUILDSPEC_YML), ("appspec.yml", APPSPEC_YML),
                       ("site/index.html", INDEX), ("scripts/validate.sh", VALIDATE_SH)):
        os.makedirs(os.path.dirname(os.path.join(repo, path)) or repo, exist_ok=True)
        with open(os.path.join(repo, path), "w") as f:
            f.write(text)
    run(["git", "init", "-q", "-b", "main", repo], env=env)
    run(["git", "add", "."], cwd=repo, env=env)
    run(["git", "commit", "-q", "-m", "revision"], cwd=repo, env=env)
    run(["git", "push", "-q", f"{url_base}bench-deploy.git", "main"], cwd=repo, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        builds = json.loads(run(ssh + ["build", "list", "--repo", "bench-deploy", "--json"]))
        if builds and builds[0]["status"] not in ("QUEUED", "IN_PROGRESS"):
            if builds[0]["status"] != "SUCCEEDED":
                raise SystemExit(f"the revision's build ended {builds[0]['status']}: "
                                 + run(ssh + ["build", "logs", str(builds[0]["id"])])[-2000:])
            return builds[0]["id"]
        time.sleep(0.3)
    raise SystemExit("the revision's build did not end")


# ---- one deployment ------------------------------------------------------------------

def deployment_end(e):
    """For the Follower: a deployment's end, as (deployment id, (state, seen at))."""
    if (e.get("source"), e.get("type")) == ("deploy", "deployment-state-change") \
            and e.get("state") in TERMINAL:
        return (e.get("detail") or {}).get("deployment"), (e.get("state"), time.time())
    return None


def deploy_once(ssh, follower, build_id, timeout, group=GROUP):
    t0 = time.time()
    out = run(ssh + ["deploy", "create", APP, group, "--build", str(build_id)])
    t1 = time.time()
    m = re.search(r"created deployment (\d+)", out)
    if not m:
        raise SystemExit(f"deploy create said: {out}")
    did = int(m.group(1))
    ended = follower.wait_end(did, timeout)
    if ended is None:
        raise SystemExit(f"deployment {did} did not end within {timeout} s: "
                         + run(ssh + ["deploy", "status", str(did)]))
    status = json.loads(run(ssh + ["deploy", "status", str(did), "--json"]))
    return {"id": did, "client_create_start": t0, "client_create_end": t1,
            "client_seen_end": ended[1], "state": ended[0], "status": status}


def analyse(run_):
    """The times of one deployment (seconds), from its `deploy status --json`."""
    st = run_["status"]
    d = st["deployment"]
    events = st["events"]
    problems = []
    if d["status"] != "SUCCEEDED":
        problems.append(f"deployment {d['id']} {d['status']}: {d.get('reason')}")
    by_host = {}
    for e in events:
        by_host.setdefault(e["agent"], []).append(e)
    out = {"id": d["id"], "hosts": len(by_host), "total": d["ended"] - d["created"],
           "created_to_started": d["started"] - d["created"],
           "client_total": run_["client_seen_end"] - run_["client_create_start"],
           "client_create": run_["client_create_end"] - run_["client_create_start"],
           "dispatch": [], "ready_to_dispatched": [], "dispatched_to_started": [],
           "handover": [], "gap": [], "event_work": {}, "problems": problems}
    host_end, host_work, host_script = {}, {}, {}
    for host, evs in by_host.items():
        evs.sort(key=lambda e: e["seq"])
        prev = None
        for e in evs:
            # ApplicationStop is SKIPPED on a host's first deployment of the group.
            if e["status"] not in ("SUCCEEDED", "SKIPPED"):
                problems.append(f"deployment {d['id']} {host} {e['event']}: {e['status']} {e.get('message')}")
                continue
            r, di, s, en = e.get("ready"), e["dispatched"], e["started"], e["ended"]
            if di is None or s is None or en is None:
                continue   # skipped by the server, never dispatched
            if r is None:
                problems.append("events have no `ready` time: this slipway predates it")
            else:
                out["dispatch"].append(s - r)
                out["ready_to_dispatched"].append(di - r)
                if prev is not None:
                    out["handover"].append(r - prev["ended"])
            out["dispatched_to_started"].append(s - di)
            if prev is not None:
                out["gap"].append(s - prev["ended"])
            out["event_work"].setdefault(e["event"], []).append(en - s)
            host_work[host] = host_work.get(host, 0) + (en - s)
            if e["event"] in HOOK_EVENTS:
                host_script[host] = host_script.get(host, 0) + (en - s)
            prev = e
        if evs:
            host_end[host] = max(e["ended"] or 0 for e in evs)
    if host_end:
        last = max(host_end, key=host_end.get)
        first_ready = min((e["ready"] for e in events if e.get("ready")), default=None)
        out.update(
            critical_host=last,
            script_time=host_script.get(last, 0.0),
            agent_work=host_work.get(last, 0.0),
            overhead=out["total"] - host_script.get(last, 0.0),
            created_to_first_ready=(first_ready - d["created"]) if first_ready else None,
            last_host_to_ended=d["ended"] - host_end[last],
            first_host_done=min(host_end.values()) - d["created"],
        )
    return out


# ---- the baseline: OpenSSH fan-out ---------------------------------------------------

SSHD_CONFIG = """\
# Private sshd for the baseline (as scripts/bench-git.sh sets it up): loopback only, one key.
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
# The files live under /tmp, which StrictModes refuses.
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
# The default 10:30:100 randomly drops connections beyond 10 unauthenticated at once.
MaxStartups 100:30:200
# Debian's bash sources ~/.bashrc for commands run by sshd unless SHLVL says it is nested;
# this host's root ~/.bashrc runs pyenv (~0.1 s), which a deploy account would not have.
SetEnv SHLVL=1
PrintMotd no
X11Forwarding no
LogLevel ERROR
"""

# What each "host" runs: the zip arrives on stdin; the files are installed; the hook runs
# with the variables the agent gives it.
HOST_SCRIPT = """\
set -e
D={root}
mkdir -p "$D/tmp" "$D/srv"
cat > "$D/tmp/bundle.zip"
rm -rf "$D/tmp/rev" && mkdir "$D/tmp/rev" && cd "$D/tmp/rev" && unzip -q ../bundle.zip
rm -rf "$D/srv/bench" && cp -R site "$D/srv/bench"
# slipway's artifact zips keep no file modes; the agent makes a hook executable too.
chmod +x scripts/validate.sh
LIFECYCLE_EVENT=ValidateService DEPLOYMENT_ID={did} APPLICATION_NAME={app} DEPLOYMENT_GROUP_NAME={group} \\
  SLIPWAY_AGENT_ROOT="$D" ./scripts/validate.sh
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Baseline:
    def __init__(self, work, client_key, hosts, zip_path):
        self.dir = os.path.join(work, "openssh")
        os.makedirs(self.dir)
        os.makedirs("/run/sshd", exist_ok=True)
        host_key = os.path.join(self.dir, "host_key")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench-sshd-host", "-f", host_key])
        with open(client_key + ".pub") as f:
            pub = f.read().strip()
        with open(os.path.join(self.dir, "authorized_keys"), "w") as f:
            f.write(f"restrict {pub}\n")
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write(SSHD_CONFIG.format(host_key=host_key, dir=self.dir))
        self.port = free_port()
        run(["/usr/sbin/sshd", "-t", "-f", config, "-p", str(self.port)])
        self.err = open(os.path.join(self.dir, "sshd.stderr"), "w")
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config, "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stderr=self.err)
        for _ in range(100):
            if os.path.exists(os.path.join(self.dir, "sshd.pid")):
                break
            if self.sshd.poll() is not None:
                raise SystemExit(f"sshd exited: {open(self.err.name).read()}")
            time.sleep(0.1)
        self.ssh = ["ssh", "-F", "/dev/null", "-i", client_key, "-o", "IdentitiesOnly=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-p", str(self.port)]
        self.hosts = [os.path.join(self.dir, "hosts", f"host-{i:03d}") for i in range(hosts)]
        for h in self.hosts:
            os.makedirs(h)
        self.zip = zip_path
        self.masters = []
        self.sockets = []

    def open_masters(self):
        """One ControlMaster connection per host, kept open."""
        for i, _ in enumerate(self.hosts):
            sock = os.path.join(self.dir, f"cm-{i:03d}")
            self.masters.append(subprocess.Popen(
                self.ssh + ["-M", "-S", sock, "-o", "ControlPersist=no", "-N", "root@127.0.0.1"],
                stdin=subprocess.DEVNULL))
            self.sockets.append(sock)
        for sock, p in zip(self.sockets, self.masters):
            for _ in range(100):
                if subprocess.run(self.ssh + ["-S", sock, "-O", "check", "root@127.0.0.1"],
                                  capture_output=True).returncode == 0:
                    break
                if p.poll() is not None:
                    raise SystemExit("an ssh ControlMaster exited")
                time.sleep(0.1)
            else:
                raise SystemExit("an ssh ControlMaster did not come up")

    def deploy(self, did, warm):
        """All hosts at once; answers the wall time (s) from the first start to the last end."""
        procs = []
        t0 = time.time()
        for i, root in enumerate(self.hosts):
            opts = ["-S", self.sockets[i], "-o", "ControlMaster=no"] if warm else []
            cmd = HOST_SCRIPT.format(root=root, did=did, app=APP, group=GROUP)
            with open(self.zip, "rb") as stdin:
                procs.append(subprocess.Popen(self.ssh + opts + ["root@127.0.0.1", cmd],
                                              stdin=stdin, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE))
        outs = [p.communicate() for p in procs]
        t1 = time.time()
        bad = [(i, p.returncode, o[1][-300:]) for i, (p, o) in enumerate(zip(procs, outs)) if p.returncode]
        if bad:
            raise SystemExit(f"baseline deployment {did} failed on {len(bad)} host(s): {bad[:3]}")
        for root in self.hosts:
            with open(os.path.join(root, "srv/bench/index.html")) as f:
                if f.read() != INDEX:
                    raise SystemExit(f"baseline: {root} has the wrong file")
        return t1 - t0

    def cpu_s(self):
        """CPU seconds of sshd (with its per-connection processes and what they ran) and of
        the open ControlMaster clients; the clients that ended are in children_cpu_s()."""
        return tree_cpu_s(self.sshd.pid) + sum(tree_cpu_s(p.pid) for p in self.masters)

    def close(self):
        for p in self.masters + [self.sshd]:
            if p.poll() is None:
                p.terminate()
        for p in self.masters + [self.sshd]:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.err.close()


# ---- noise ---------------------------------------------------------------------------

def noise(noise_log, start, end):
    """(other processes' cores, idle cores, top commands) in [start, end]."""
    if not noise_log:
        return None
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "noise_monitor.py"),
                          "--summary", noise_log, str(start), str(end)], capture_output=True, text=True).stdout
    parts = out.split(" ", 2)
    if len(parts) < 3:
        return None
    return {"other_cores": float(parts[0]), "idle_cores": float(parts[1]), "top": parts[2].strip()}


def wait_quiet(noise_log, seconds, most):
    """Waits up to `most` s until the last 5 s had at most 0.15 cores of other processes."""
    if not noise_log or most <= 0:
        return True
    deadline = time.time() + most
    script = os.path.join(os.path.dirname(__file__), "noise_monitor.py")
    while time.time() < deadline:
        if subprocess.run([sys.executable, script, "--quiet", noise_log, str(seconds), "0.15"]).returncode == 0:
            return True
        time.sleep(1)
    return False


# ---- the report ----------------------------------------------------------------------

def summarise(runs, solo, base_cold, base_warm):
    def stat(rows, key):
        return stats_ms([r[key] for r in rows if r.get(key) is not None])

    def pooled(rows, key):
        return stats_ms([v for r in rows for v in r[key]])

    work = {}
    for r in runs:
        for ev, vals in r["event_work"].items():
            work.setdefault(ev, []).extend(vals)
    s = {k: stat(runs, k) for k in ("total", "client_total", "client_create", "created_to_started",
                                    "created_to_first_ready", "first_host_done", "last_host_to_ended",
                                    "script_time", "agent_work", "overhead", "cpu_s",
                                    "cpu_server_s", "cpu_agents_s")}
    s.update({k: pooled(runs, k) for k in ("dispatch", "ready_to_dispatched", "dispatched_to_started",
                                           "handover", "gap")})
    s["event_work"] = {ev: stats_ms(v) for ev, v in work.items()}
    s["solo"] = {k: stat(solo, k) for k in ("total", "overhead")}
    s["solo"].update({k: pooled(solo, k) for k in ("dispatch", "ready_to_dispatched",
                                                   "dispatched_to_started", "handover")})
    s["baseline_cold"] = stats_ms([b["wall"] for b in base_cold])
    s["baseline_warm"] = stats_ms([b["wall"] for b in base_warm])
    s["baseline_cold_cpu_s"] = stats_ms([b["cpu_s"] for b in base_cold])
    s["baseline_warm_cpu_s"] = stats_ms([b["cpu_s"] for b in base_warm])
    noisy = [r for r in runs if (r.get("noise") or {}).get("other_cores", 0) > 0.15]
    s["noisy_runs"] = len(noisy)
    quiet = [r for r in runs if r not in noisy]
    s["quiet"] = {"total": stat(quiet, "total"), "overhead": stat(quiet, "overhead"),
                  "dispatch": pooled(quiet, "dispatch")}
    return s


def table(result):
    meta, s = result["meta"], result["stats"]
    lines = [f"slipway deployments ({meta.get('mode')}, {meta.get('date')}, slipway {meta.get('rev')}; "
             f"{result['agents']} agents, all-at-once, {result['runs']} runs after {result['warmup']} warm-up; "
             f"server times)"]
    if "loadavg_before" in meta:
        lines.append(f"load average before: {meta['loadavg_before']}; after: {meta.get('loadavg_after', '?')} "
                     f"({meta.get('nproc', '?')} cores)")
    if result.get("agent_state"):
        lines.append(f"agents' state directories: {result['agent_state']}")
    if result.get("idle_agents_polling_during_runs"):
        lines.append(f"idle agents polling during the deployments: {result['idle_agents_polling_during_runs']}")
    if result.get("pinned"):
        lines.append(f"pinned: {result['pinned']}")
    n = result.get("noise") or {}
    for phase in ("memory", "deployments"):
        if n.get(phase):
            x = n[phase]
            lines.append(f"other processes' CPU during the {phase}: {x['other_cores']:.2f} cores "
                         f"(idle {x['idle_cores']:.2f}; top: {x['top']})")
    lines.append(f"runs with more than 0.15 cores busy in other processes: {s.get('noisy_runs', '?')} of {result['runs']}")
    if result.get("quiet") is False:
        lines.append("NOTE: the machine did not become quiet before the deployments")
    hdr = f"{'metric':<54} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'min':>7} {'max':>8}"
    lines += ["", hdr, "-" * len(hdr)]

    def row(label, st, extra=""):
        if not st.get("n"):
            return f"{label:<54} {0:>5} {'-':>8}"
        return (f"{label:<54} {st['n']:>5} {st['p50_ms']:>8.1f} {st['p99_ms']:>8.1f} "
                f"{st['min_ms']:>7.1f} {st['max_ms']:>8.1f}{extra}")

    def dispatch_verdict(st):
        if not st.get("n"):
            return ""
        return f"   goal p99 < {DISPATCH_GOAL_MS:.0f} ms: " + ("met" if st["p99_ms"] < DISPATCH_GOAL_MS else "NOT met")

    def overhead_verdict(st):
        if not st.get("n"):
            return ""
        return (f"   goal < {OVERHEAD_GOAL_S * 1000:.0f} ms: "
                + ("met" if st["max_ms"] < OVERHEAD_GOAL_S * 1000 else "NOT met") + " (max)")

    lines += [
        row(f"deployment created -> SUCCEEDED ({result['agents']} hosts)", s["total"]),
        row("  script time (hook events, critical host)", s["script_time"]),
        row("  overhead = total - script time", s["overhead"], overhead_verdict(s["overhead"])),
        row("  (agent work on the critical host, all 7 events)", s["agent_work"]),
        row("  created -> STARTED", s["created_to_started"]),
        row("  created -> first event READY", s["created_to_first_ready"]),
        row("  created -> first host done", s["first_host_done"]),
        row("  last host done -> deployment ended", s["last_host_to_ended"]),
        row("  (client: deploy create -> SUCCEEDED seen)", s["client_total"]),
        row("  (client: the deploy create command alone)", s["client_create"]),
        row("dispatch: event READY -> acknowledged (IN_PROGRESS)", s["dispatch"], dispatch_verdict(s["dispatch"])),
        row("  READY -> dispatched (poll answered)", s["ready_to_dispatched"]),
        row("  dispatched -> acknowledged (agent, incl. its fsync)", s["dispatched_to_started"]),
        row("hand-over: event ended -> next event READY", s["handover"]),
        row("  event ended -> next event acknowledged", s["gap"]),
    ]
    for ev, st in s["event_work"].items():
        lines.append(row(f"  agent runs {ev} (acknowledged -> ended)", st))
    q = s.get("quiet") or {}
    if s.get("noisy_runs") and q.get("total", {}).get("n"):
        lines += [row("quiet runs only: created -> SUCCEEDED", q["total"]),
                  row("quiet runs only: dispatch READY -> acknowledged", q["dispatch"])]
    so = s.get("solo") or {}
    if so.get("total", {}).get("n"):
        lines += ["", "one host alone (a group of one more agent; the 20 idle), after each run:",
                  row("  deployment created -> SUCCEEDED (1 host)", so["total"]),
                  row("  dispatch: READY -> acknowledged", so["dispatch"], dispatch_verdict(so["dispatch"])),
                  row("    READY -> dispatched", so["ready_to_dispatched"]),
                  row("    dispatched -> acknowledged", so["dispatched_to_started"]),
                  row("  hand-over: ended -> next READY", so["handover"])]
    lines += ["", "baseline: the same zip to the same number of hosts through OpenSSH, all at once"]
    t = s["total"]
    for key, label in (("baseline_cold", "ssh fan-out, a new connection per host"),
                       ("baseline_warm", "ssh fan-out over open ControlMaster connections")):
        b = s[key]
        ratio = ""
        if b.get("n") and t.get("n"):
            ratio = f"   slipway/baseline p50 {t['p50_ms'] / b['p50_ms']:.2f}, p99 {t['p99_ms'] / b['p99_ms']:.2f}"
        lines.append(row(f"  {label}", b, ratio))
    lines += ["", "CPU per deployment (ms of CPU, all processes of each side)",
              row("  slipway: server + 20 agents + hooks", s["cpu_s"]),
              row("    the server", s["cpu_server_s"]),
              row("    the agents and hooks", s["cpu_agents_s"]),
              row("  baseline cold: sshd + ssh clients + scripts", s["baseline_cold_cpu_s"]),
              row("  baseline warm: sshd + ssh clients + scripts", s["baseline_warm_cpu_s"])]
    m = result.get("memory") or {}
    if m:
        lines += ["", "server memory (median of 10 readings, VmRSS / RssAnon kB, threads)"]
        for key, label in (("0", "no agent"), ("agents", f"{result['agents']} agents polling"),
                           ("all", f"{m.get('all_count', '?')} agents polling"),
                           ("all_later", f"{m.get('all_count', '?')} agents polling, 12 s later"),
                           ("after_stop", f"{result['agents']} agents again (the others stopped)"),
                           ("after_runs", f"after the deployments ({result['agents']} agents)")):
            x = m.get(key)
            if x:
                lines.append(f"  {label:<48} {x['VmRSS']:>7} / {x['RssAnon']:>7} kB  {x['Threads']:>3} threads")
        for key, label in (("per_agent_20", f"per agent, {result['agents']} vs 0"),
                           ("per_agent_all", f"per agent, {m.get('all_count', '?')} vs 0"),
                           ("per_agent_all_later", f"per agent, {m.get('all_count', '?')} vs 0, 12 s later"),
                           ("per_agent_marginal", f"per agent, {m.get('all_count', '?')} vs {result['agents']}"),
                           ("per_agent_marginal_later", f"per agent, {m.get('all_count', '?')} vs {result['agents']}, 12 s later")):
            if m.get(key):
                x = m[key]
                lines.append(f"  {label:<48} {x['VmRSS']:>7.1f} / {x['RssAnon']:>7.1f} kB")
        if m.get("agent_rss_kb"):
            lines.append(f"  {'one slipway-agent process (median VmRSS)':<48} {m['agent_rss_kb']:>7} kB")
    for p in result["problems"][:20]:
        lines.append(f"PROBLEM: {p}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssh", required=True, help="ssh command line (without host) for slipway's commands and git")
    ap.add_argument("--ssh-port", required=True)
    ap.add_argument("--http-port", required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--agent-bin", required=True)
    ap.add_argument("--client-key", required=True, help="the private key (its .pub beside it) for the baseline's sshd")
    ap.add_argument("--work", required=True)
    ap.add_argument("--agent-state", help="where the agents' state directories go (default: under --work)")
    ap.add_argument("--agent-cpus", help="run the agents on these CPUs only (taskset -c LIST)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta")
    ap.add_argument("--noise-log")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--idle-agents", type=int, default=80, help="more agents for the memory figure (0: none)")
    ap.add_argument("--keep-idle", action="store_true",
                    help="the idle agents keep polling during the deployments (each READY wakes every poll)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--settle", type=float, default=0.5, help="seconds between runs")
    ap.add_argument("--quiet-wait", type=float, default=60, help="at most this long to wait for a quiet machine")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    meta = json.load(open(args.meta)) if args.meta else {}
    ssh_cmd = args.ssh
    ssh = ssh_cmd.split() + ["-p", args.ssh_port, "git@127.0.0.1"]
    url_base = f"ssh://git@127.0.0.1:{args.ssh_port}/"
    os.makedirs(args.work, exist_ok=True)
    fleet = Fleet(args.agent_bin, args.http_port, ssh, args.work, args.agent_state, args.agent_cpus)
    baseline = None
    follower = None

    def on_term(*_):
        raise SystemExit("interrupted")
    signal.signal(signal.SIGTERM, on_term)
    problems, phases, memory = [], {}, {}
    runs, solo, cold, warm = [], [], [], []
    quiet = None
    try:
        push_admin(ssh_cmd, url_base, args.work)
        # ---- memory
        t_mem = time.time()
        time.sleep(2)
        memory["0"] = sample_memory(args.server_pid)
        group = [f"bench-{i:03d}" for i in range(args.agents)]
        idle = [f"idle-{i:03d}" for i in range(args.idle_agents)]
        log(f"registering {len(group)} agents (+{len(idle)} idle ones for the memory figure)")
        fleet.register(group, lambda n: ["role=bench"])
        fleet.register(idle, lambda n: ["role=idle"])
        since = time.time()
        fleet.start(group)
        fleet.wait_polling(group, since)
        time.sleep(2)
        memory["agents"] = sample_memory(args.server_pid)
        if idle:
            since = time.time()
            fleet.start(idle)
            fleet.wait_polling(idle, since)
            time.sleep(2)
            memory["all"] = sample_memory(args.server_pid)
            time.sleep(10)   # tokio's idle blocking threads end after 10 s
            memory["all_later"] = sample_memory(args.server_pid)
            memory["all_count"] = len(group) + len(idle)
            rss = sorted(fleet.rss_kb(group + idle))
            memory["agent_rss_kb"] = rss[len(rss) // 2]
            if not args.keep_idle:
                fleet.stop(idle)
                time.sleep(2)
                memory["after_stop"] = sample_memory(args.server_pid)
        else:
            rss = sorted(fleet.rss_kb(group))
            memory["agent_rss_kb"] = rss[len(rss) // 2]
        phases["memory"] = (t_mem, time.time())

        def per(key, base, count):
            return {k: (memory[key][k] - memory[base][k]) / count for k in ("VmRSS", "RssAnon")}
        memory["per_agent_20"] = per("agents", "0", len(group))
        if idle:
            memory["per_agent_all"] = per("all", "0", memory["all_count"])
            memory["per_agent_all_later"] = per("all_later", "0", memory["all_count"])
            memory["per_agent_marginal"] = per("all", "agents", len(idle))
            memory["per_agent_marginal_later"] = per("all_later", "agents", len(idle))

        # ---- the revision
        log("building the revision")
        build_id = build_revision(ssh, ssh_cmd, url_base, args.work)
        zip_path = os.path.join(args.work, "revision.zip")
        with open(zip_path, "wb") as f:
            subprocess.run(ssh + ["build", "artifact", str(build_id)], stdout=f, check=True)
        baseline = Baseline(args.work, args.client_key, args.agents, zip_path)
        baseline.open_masters()
        # The one-host group's agent (it polls, idle, during the 20-host runs too).
        fleet.register(["solo"], lambda n: ["solo=yes"])
        since = time.time()
        fleet.start(["solo"])
        fleet.wait_polling(["solo"], since)

        # ---- deployments
        since_event = last_event_id(ssh)
        follower = Follower(ssh, since_event, deployment_end, log)
        time.sleep(0.3)
        quiet = wait_quiet(args.noise_log, 5, args.quiet_wait)
        log(f"{args.warmup} + {args.runs} deployments to {len(group)} agents, each followed by the ssh baselines "
            "and a deployment to one host" + ("" if quiet else " (the machine is not quiet)"))
        t_dep = time.time()
        for i in range(args.warmup + args.runs):
            c0 = (tree_cpu_s(args.server_pid), fleet.cpu_s())
            r = deploy_once(ssh, follower, build_id, args.timeout)
            c1 = (tree_cpu_s(args.server_pid), fleet.cpu_s())
            a = analyse(r)
            a["cpu_server_s"], a["cpu_agents_s"] = c1[0] - c0[0], c1[1] - c0[1]
            a["cpu_s"] = a["cpu_server_s"] + a["cpu_agents_s"]
            a["window"] = (r["client_create_start"], r["client_seen_end"])
            problems += a["problems"]
            for name in group:
                with open(os.path.join(fleet.dirs(name)[1], "srv/bench/index.html")) as f:
                    if f.read() != INDEX:
                        problems.append(f"deployment {r['id']}: {name} has the wrong file")
            time.sleep(args.settle)
            b = []
            for is_warm in (False, True):
                b0 = baseline.cpu_s() + children_cpu_s()
                wall = baseline.deploy(i, warm=is_warm)
                b.append({"wall": wall, "cpu_s": baseline.cpu_s() + children_cpu_s() - b0})
                time.sleep(args.settle)
            one = analyse(deploy_once(ssh, follower, build_id, args.timeout, SOLO))
            problems += one["problems"]
            time.sleep(args.settle)
            if i >= args.warmup:
                a["raw"] = r
                runs.append(a)
                solo.append(one)
                cold.append(b[0])
                warm.append(b[1])
            log(f"run {i + 1}/{args.warmup + args.runs}: slipway {a['total'] * 1000:.0f} ms "
                f"(overhead {a.get('overhead', 0) * 1000:.0f} ms), ssh cold {b[0]['wall'] * 1000:.0f} ms, "
                f"warm {b[1]['wall'] * 1000:.0f} ms; one host {one['total'] * 1000:.0f} ms")
        phases["deployments"] = (t_dep, time.time())
        memory["after_runs"] = sample_memory(args.server_pid)
        dead = fleet.dead()
        if dead:
            problems.append(f"agents exited during the run: {dead}")
        follower_err = follower.stop()
        follower = None
        if follower_err.strip():
            problems.append(f"`events --follow` stderr: {follower_err.strip()[:300]}")
    finally:
        if follower:
            follower.stop()
        fleet.stop_all()
        if baseline:
            baseline.close()
    time.sleep(0.6)   # one more noise sample
    for r in runs:
        # The monitor samples every 0.5 s: widen the window to take at least one sample.
        r["noise"] = noise(args.noise_log, r["window"][0] - 0.3, r["window"][1] + 0.3)
    result = {
        "meta": meta,
        "agents": args.agents,
        "runs": args.runs,
        "warmup": args.warmup,
        "agent_state": args.agent_state or "under the work directory",
        "pinned": meta.get("pinned"),
        "idle_agents_polling_during_runs": len(idle) if args.keep_idle else 0,
        "deploy_yaml": DEPLOY_YAML,
        "appspec_yml": APPSPEC_YML,
        "goals": {"dispatch_p99_ms": DISPATCH_GOAL_MS, "overhead_s": OVERHEAD_GOAL_S},
        "quiet": quiet,
        "phases": phases,
        "noise": {k: noise(args.noise_log, *v) for k, v in phases.items()},
        "memory": memory,
        "stats": summarise(runs, solo, cold, warm),
        "baseline_cold": cold,
        "baseline_warm": warm,
        "problems": problems,
        "runs_detail": runs,
        "solo_detail": solo,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(table(result))
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
