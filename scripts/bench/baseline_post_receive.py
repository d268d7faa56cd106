#!/usr/bin/python3
"""The baseline's post-receive hook: what a team without slipway would write. It mails
every pushed ref through smtplib, synchronously, inside the push. It logs its start
time and the Message-ID so the benchmark can measure hook start -> SMTP acceptance.

Environment: BENCH_SMTP_PORT, BENCH_HOOK_LOG.
"""

import os
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage

start = time.time()
repo = os.path.basename(os.getcwd()).removesuffix(".git")
for line in sys.stdin:
    old, new, ref = line.split()
    if set(old) == {"0"}:
        rng = [new, "--not", f"--exclude={ref}", "--glob=refs/*"]
    else:
        rng = [new, f"^{old}"]
    count = subprocess.run(["git", "rev-list", "--count", *rng], capture_output=True, text=True).stdout.strip()
    summary = subprocess.run(["git", "log", "-n10", "--format=%h %s", *rng], capture_output=True, text=True).stdout
    mid = f"<{repo}.{new}@baseline>"
    msg = EmailMessage()
    msg["From"] = "git@baseline.example"
    msg["To"] = "team@example.com"
    msg["Subject"] = f"[git] push of {count} commits to {repo} {ref}"
    msg["Message-ID"] = mid
    msg.set_content(f"{count} commits pushed to {ref} in {repo}.\n\n{summary}")
    with open(os.environ["BENCH_HOOK_LOG"], "a") as log:
        log.write(f"{start:.6f} {mid}\n")
    with smtplib.SMTP("127.0.0.1", int(os.environ["BENCH_SMTP_PORT"])) as smtp:
        smtp.send_message(msg)
