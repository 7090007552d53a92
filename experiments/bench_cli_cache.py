"""Wall seconds of CLI runs without and with the CLI's compiled-program cache, side by side.

    python experiments/bench_cli_cache.py [--checkpoint DIR] [--repeats 3]

Each command runs as a user runs it (a fresh `python -m pnpjax` process): with the cache off
(PNPJAX_CACHE_DIR empty), then with a new empty cache directory (its first run compiles and
writes the programs), then again with that directory filled. Prints the median wall seconds of
each and the ratio off / filled. The commands: `predict` on 5 rows with the JS module's default
refinement (1 ml step, retry 20), `predict` of the network alone, and `eval --n 1000`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
import numpy as np

from experiments.lib.report import md_table
from pnpjax.textsafe import one_line

ROOT = Path(__file__).resolve().parents[1]


def _seconds(args: list[str], cache: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["PNPJAX_CACHE_DIR"] = cache
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pnpjax", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"pnpjax {' '.join(args[:1])} failed: {one_line(r.stderr.strip()[-500:])}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="checkpoints/blazeface6", help="relative to the repository root")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell (median)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        xy = Path(tmp) / "xy.npy"
        np.save(xy, np.random.default_rng(0).uniform(250, 390, (5, 6, 2)))
        out = str(Path(tmp) / "out.npy")
        ckpt = str(ROOT / a.checkpoint)  # (an absolute --checkpoint stays as it is)
        predict = ["predict", "--checkpoint", ckpt, "--input", str(xy), "--output", out]
        predict += ["--camera", "hfov=60,640x480"]
        commands = {
            "predict, 5 rows, --refine 1 --refine-cost ml --refine-retry 20": [
                *predict,
                *("--refine", "1", "--refine-cost", "ml", "--refine-retry", "20"),
            ],
            "predict, 5 rows, network alone": predict,
            "eval --n 1000": ["eval", "--checkpoint", ckpt, "--n", "1000"],
        }
        rows = []
        for i, (name, args) in enumerate(commands.items()):
            cache = str(Path(tmp) / f"cache{i}")
            off = statistics.median(_seconds(args, "") for _ in range(a.repeats))
            first = _seconds(args, cache)
            filled = statistics.median(_seconds(args, cache) for _ in range(a.repeats))
            rows.append([name, f"{off:.2f}", f"{first:.2f}", f"{filled:.2f}", f"{off / filled:.2f}×"])
            print(f"  {name}: off {off:.2f} s, first {first:.2f} s, cached {filled:.2f} s", file=sys.stderr)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Wall seconds, median of {a.repeats} (load average {load:.1f}); checkpoint {one_line(a.checkpoint)}\n")
    print(
        md_table(["command", "cache off", "first run", "cache filled", "off / filled"], rows, ["", ":", ":", ":", ":"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
