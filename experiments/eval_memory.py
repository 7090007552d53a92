"""Peak memory of `pnpjax eval --n N` (issue #14: memory bounded for millions of draws).

    python experiments/eval_memory.py                 # N = 100k, 500k, 2M on checkpoints/blazeface6-seed
    python experiments/eval_memory.py --tree OLD --n 2000000 --out ...   # the same with another pnpjax tree

Each N runs in its own process; the peak resident set size comes from `os.wait4`. Writes
experiments/results/eval_memory.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss(argv: list[str], tree: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit status) of one process importing pnpjax from `tree`."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # cwd = the tree: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH.
    p = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, p.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "blazeface6-seed"))
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 500_000, 2_000_000])
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "eval_memory.md"))
    ap.add_argument("--tree", default=str(ROOT), help="the pnpjax source tree to run (default: this one)")
    ap.add_argument("--tree-label", default=None, help="how the report names --tree (e.g. 'commit 9b4464f')")
    a = ap.parse_args(argv)
    args = list(argv if argv is not None else sys.argv[1:])
    if a.tree_label:  # the command as recorded: the tree by name, not by its path on this machine
        i = args.index("--tree-label") if "--tree-label" in args else None
        args = args if i is None else args[:i] + args[i + 2 :]
        args = [a.tree_label if x == a.tree else x for x in args]
    command = " ".join(["python experiments/eval_memory.py", *args])
    rows = []
    for n in a.n:
        mb, s, rc = peak_rss(
            [sys.executable, "-m", "pnpjax", "eval", "--checkpoint", a.checkpoint, "--n", str(n)], Path(a.tree)
        )
        rows.append((n, mb, s, rc))
        print(f"n={n}: peak RSS {mb:.0f} MB, {s:.1f} s, exit {rc}", flush=True)
    lines = [
        "# Peak memory of `pnpjax eval`",
        "",
        f"Made by `{command}` on checkpoint {Path(a.checkpoint).name} "
        "(seed protocol; one process per row; peak RSS from `os.wait4`; wall time on a shared 2-core CPU).",
        "",
        "| --n | peak RSS MB | wall s | exit |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {n:,} | {mb:.0f} | {s:.1f} | {rc} |" for n, mb, s, rc in rows]
    Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
