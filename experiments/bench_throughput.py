"""Inference throughput of the jitted solver (batch 1, 1k, 1M; with and without refinement)
against cv2 SQPnP per pose, measured in one run (issue #4).

    python experiments/bench_throughput.py                       # checkpoints/blazeface6-seed
    python experiments/bench_throughput.py --checkpoint runs/b6 --batch 1 1000 100000
    python experiments/bench_throughput.py --smoke --checkpoint DIR --out /tmp/t.md

Writes experiments/results/bench_throughput.md; the logic is in experiments/lib/bench.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import bench

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "blazeface6-seed"))
    p.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes")
    p.add_argument("--refine", type=int, nargs="+", default=None, help="LM iteration counts")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_throughput.md"))
    p.add_argument("--smoke", action="store_true", help="batch 1 and 1000 only, few repeats (for the tests)")
    a = p.parse_args(argv)
    cfg = bench.SMOKE_THROUGHPUT if a.smoke else bench.ThroughputConfig()
    overrides = {
        "batch_sizes": tuple(a.batch) if a.batch else None,
        "refine_iters": tuple(a.refine) if a.refine else None,
        "repeats": a.repeats,
    }
    cfg = dataclasses.replace(cfg, checkpoint=a.checkpoint, **{k: v for k, v in overrides.items() if v is not None})
    results = bench.throughput_bench(cfg)
    out = bench.write_throughput_report(
        results, a.out, shlex.join(["python", "experiments/bench_throughput.py", *argv])
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
