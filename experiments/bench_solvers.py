"""Accuracy and speed of pnpjax against OpenCV and the original model, on the same inputs (issue #4).

    python experiments/bench_solvers.py                  # checkpoints/blazeface6-seed, checkpoints/blazeface6
    python experiments/bench_solvers.py --seed-checkpoint runs/b6 --realistic-checkpoint runs/r --n 2000
    python experiments/bench_solvers.py --smoke --seed-checkpoint DIR --realistic-checkpoint DIR --out /tmp/b
    python experiments/bench_solvers.py --key 1 --seed-noise --out experiments/results/bench_solvers_key1  # fresh draws

Writes <out>/README.md (tables, targets, the command), results.json, error_vs_noise.png and
error_cdf.png; the logic is in experiments/lib/bench.py.
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
    p.add_argument(
        "--seed-checkpoint", default=str(REPO / "checkpoints" / "blazeface6-seed"), help="model for the seed protocol"
    )
    p.add_argument(
        "--realistic-checkpoint",
        default=str(REPO / "checkpoints" / "blazeface6"),
        help="model for the realistic protocol",
    )
    p.add_argument(
        "--original", default=None, help="published TF.js model dir (default: <shared>/seed-models/<layout>)"
    )
    p.add_argument("--n", type=int, default=None, help="draws per protocol and noise level")
    p.add_argument("--refine", type=int, nargs="+", default=None, help="LM iteration counts")
    p.add_argument("--repeats", type=int, default=None, help="timed runs of each jitted solver")
    p.add_argument(
        "--seed-extra",
        nargs="*",
        default=None,
        help="further networks to run alone on the seed protocol (default: checkpoints/blazeface6-seed-large)",
    )
    p.add_argument("--key", type=int, default=None, help="PRNG key of the held-out draws (default 0)")
    p.add_argument(
        "--seed-noise",
        type=float,
        nargs="*",
        default=None,
        help="seed-protocol noise_cm levels (none: skip the seed protocol)",
    )
    p.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_solvers"))
    p.add_argument("--smoke", action="store_true", help="tiny run (one noise level per protocol) for the tests")
    a = p.parse_args(argv)
    cfg = bench.SMOKE_SOLVERS if a.smoke else bench.SolverBenchConfig()
    overrides = {
        "n": a.n,
        "refine_iters": tuple(a.refine) if a.refine else None,
        "repeats": a.repeats,
        "key": a.key,
        "seed_noise_cm": None if a.seed_noise is None else tuple(a.seed_noise),
        "seed_extra_checkpoints": tuple(a.seed_extra)
        if a.seed_extra is not None
        else (None if a.smoke else (str(REPO / "checkpoints" / "blazeface6-seed-large"),)),
    }
    cfg = dataclasses.replace(
        cfg,
        seed_checkpoint=a.seed_checkpoint,
        realistic_checkpoint=a.realistic_checkpoint,
        original=a.original,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    results = bench.solver_bench(cfg)
    readme = bench.write_solver_report(results, a.out, shlex.join(["python", "experiments/bench_solvers.py", *argv]))
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
