"""Refinement time per image, this tree against an earlier commit, interleaved (issue 18).

This machine's speed drifts by 20-50 % between minutes, so a latency change is only measurable
as a same-run comparison: the baseline commit is checked out into a temporary git worktree and
the two trees take turns (``--rounds`` rounds; in each, per method, one child process per tree,
so that the two trees' samples of a method are seconds apart), each process timing
the default refinement (``model.reconstruct(image, mask)`` minus ``refine=False``) of every
method on :mod:`bench.latency`'s first refinable input at 64^2 and 128^2, ``--repeats``
times. Per tree, method and size: the minimum over all repeats and rounds (the least disturbed
run) and the median, and the ratio baseline / this tree.

    python bench/latency_ab.py --baseline 4ae5ec6 [--methods retrieval posefree] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("posefree", "reproject", "retrieval", "selfconsistency", "refine6dof")

CHILD = r"""
import json, os, statistics, sys, time, warnings
root = sys.argv[1]
sys.path[:0] = [root, os.path.join(root, "bench")]
import torch
torch.set_num_threads(2)
warnings.filterwarnings("ignore")
import poseshape
assert poseshape.__file__.startswith(root), poseshape.__file__
from latency import inputs
repeats = int(sys.argv[2])
out = {}
for method in sys.argv[3:]:
    model = poseshape.load(method, device="cpu")
    for size in (64, 128):
        for im, m in inputs(size):
            try:
                model.reconstruct(im, m)  # warm-up; the first refinable input
                break
            except Exception:
                continue
        else:
            continue
        tr, tp = [], []
        for _ in range(repeats):
            t0 = time.perf_counter(); model.reconstruct(im, m); t1 = time.perf_counter()
            model.reconstruct(im, m, refine=False); t2 = time.perf_counter()
            tr.append(t1 - t0); tp.append(t2 - t1)
        out[f"{method} {size}"] = [min(tr) - min(tp), statistics.median(tr) - statistics.median(tp)]
print("RESULT " + json.dumps(out))
"""


def run_child(tree: Path, repeats: int, methods) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(repeats), *methods],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"child in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="the commit to compare against")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="poseshape_ab_"))
    base = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline], check=True)
    runs: dict[str, dict[str, list]] = {"baseline": {}, "this": {}}
    try:
        for r in range(args.rounds):
            for (
                method
            ) in args.methods:  # one child per (method, tree): the two trees' samples of a method are close in time
                for name, tree in (("baseline", base), ("this", ROOT)):
                    res = run_child(tree, args.repeats, [method])
                    for key, (mn, med) in res.items():
                        runs[name].setdefault(key, []).append((mn, med))
                    print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v[0]:.3f}" for k, v in res.items()), flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\nMachine: {platform.machine()} {os.cpu_count()} logical cores, 2 torch threads; baseline {args.baseline}; "
        f"{args.rounds} interleaved rounds x {args.repeats} repeats; load average at end {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| method | input | baseline min s | this min s | baseline median s | this median s | x faster (min) | <= 0.5 s (this, min) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for key in runs["this"]:
        method, size = key.split()
        b = runs["baseline"].get(key)
        t = runs["this"][key]
        tmin = min(x[0] for x in t)
        tmed = statistics.median(x[1] for x in t)
        if b:
            bmin = min(x[0] for x in b)
            bmed = statistics.median(x[1] for x in b)
            cells = f"{bmin:.3f} | {tmin:.3f} | {bmed:.3f} | {tmed:.3f} | {bmin / tmin:.2f}x"
        else:
            cells = f"- | {tmin:.3f} | - | {tmed:.3f} | -"
        print(f"| {method} | {size}^2 | {cells} | {'met' if tmin <= 0.5 else '**over**'} |")


if __name__ == "__main__":
    main()
