#!/usr/bin/python3
"""Deterministic repository generator for scripts/bench-git.sh.

Writes a `git fast-import` stream for COMMITS commits on refs/heads/main to stdout and,
with --extra-out, a second stream of EXTRA further commits (continuing main) to a file.
The history is a few hundred text files edited a few lines at a time (so the pack has
realistic delta chains) plus incompressible random blobs spread evenly over the history
(so the pack really has the requested size).

Everything is derived from --seed: the same arguments always give the same objects.
Only the standard library is used.
"""

import argparse
import random
import sys

WORDS = (
    "let mut fn pub struct impl enum match return self Some None Ok Err async await "
    "move ref use mod crate where trait type const static if else loop while for in "
    "break continue unsafe extern dyn Box Vec String Option Result Arc Mutex channel "
    "repository commit branch remote fetch push clone pack object tree blob tag merge "
    "rebase hook socket session token audit policy access metrics server client "
    "request response buffer window packet cipher kex host key user admin config"
).split()

AUTHOR = b"Bench Author <bench@example.invalid>"
EPOCH = 1600000000


def text_line(rng):
    n = rng.randint(3, 12)
    indent = "    " * rng.randint(0, 3)
    return (indent + " ".join(rng.choice(WORDS) for _ in range(n)) + ";\n").encode()


class Tree:
    """The text files of the working tree, as lists of lines."""

    def __init__(self, rng, dirs, files_per_dir):
        self.rng = rng
        self.files = {}
        for d in range(dirs):
            for f in range(files_per_dir):
                path = f"src/mod_{d:02d}/file_{f:03d}.rs"
                self.files[path] = [text_line(rng) for _ in range(rng.randint(30, 90))]
        self.paths = sorted(self.files)
        self.next_new = 0

    def edit(self):
        """Edits one file a little; returns (path, content)."""
        rng = self.rng
        if rng.random() < 0.01:
            path = f"src/new/added_{self.next_new:05d}.rs"
            self.next_new += 1
            self.files[path] = [text_line(rng) for _ in range(rng.randint(10, 40))]
            self.paths.append(path)
        else:
            path = rng.choice(self.paths)
            lines = self.files[path]
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(lines))
                lines[i] = text_line(rng)
            if rng.random() < 0.5:
                lines.insert(rng.randrange(len(lines) + 1), text_line(rng))
            if len(lines) > 120 or (rng.random() < 0.2 and len(lines) > 20):
                del lines[rng.randrange(len(lines))]
        return path, b"".join(self.files[path])


def data(out, payload):
    out.write(b"data %d\n" % len(payload))
    out.write(payload)
    out.write(b"\n")


def commit(out, number, first, from_ref, changes):
    out.write(b"commit refs/heads/main\n")
    when = EPOCH + number * 600
    out.write(b"author %s %d +0000\n" % (AUTHOR, when))
    out.write(b"committer %s %d +0000\n" % (AUTHOR, when))
    data(out, b"commit %d: edit %s\n" % (number, changes[0][0].encode()))
    if first and from_ref:
        out.write(b"from %s\n" % from_ref.encode())
    for path, content in changes:
        out.write(b"M 100644 inline %s\n" % path.encode())
        data(out, content)
    out.write(b"\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--commits", type=int, required=True)
    ap.add_argument("--random-mb", type=float, required=True,
                    help="total size of the incompressible blobs (MiB)")
    ap.add_argument("--extra", type=int, default=0, help="commits in the extra stream")
    ap.add_argument("--extra-out", help="file for the extra stream")
    ap.add_argument("--dirs", type=int, default=40)
    ap.add_argument("--files-per-dir", type=int, default=20)
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    brng = random.Random(args.seed + 1)  # binary payloads: independent of the text edits
    tree = Tree(rng, args.dirs, args.files_per_dir)

    total_random = int(args.random_mb * 1024 * 1024)
    # Blobs of 0.5–2 MiB (mean ~1.25 MiB), spread evenly over the base history.
    sizes = []
    left = total_random
    while left > 0:
        s = min(left, brng.randint(512 * 1024, 2 * 1024 * 1024))
        sizes.append(s)
        left -= s
    every = max(1, args.commits // max(1, len(sizes)))
    blob_at = {}
    for i, s in enumerate(sizes):
        blob_at.setdefault(min(args.commits, 1 + i * every), []).append((i, s))

    out = sys.stdout.buffer
    # The first commit carries the whole initial tree.
    for n in range(1, args.commits + 1):
        if n == 1:
            changes = [(p, b"".join(tree.files[p])) for p in tree.paths]
        else:
            changes = [tree.edit() for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        for i, s in blob_at.get(n, ()):
            changes.append((f"assets/blob_{i:04d}.bin", brng.randbytes(s)))
        commit(out, n, n == 1, None, changes)
    out.write(b"done\n")
    out.flush()

    if args.extra_out:
        with open(args.extra_out, "wb") as ex:
            for k in range(args.extra):
                n = args.commits + 1 + k
                changes = [tree.edit() for _ in range(rng.choice((1, 1, 1, 2, 3)))]
                commit(ex, n, k == 0, "refs/heads/main^0", changes)
            ex.write(b"done\n")


if __name__ == "__main__":
    main()
