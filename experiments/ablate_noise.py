"""Noise ablation: train-noise level x test-noise level, on held-out head shapes and unseen cameras.

Tests the original's claim that heavy training noise is what made the solver work in real life:
realistic protocol (2D landmark noise; test FOVs outside the training range, held-out shapes) and
seed protocol (the original's 3D jitter, noise_cm). Each protocol is one vmapped group.

    python experiments/ablate_noise.py            # full run -> experiments/results/ablate_noise/
    python experiments/ablate_noise.py --smoke    # seconds; tiny nets, 2 levels (used by the tests)
"""

import argparse
import shlex
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import ablations

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="results dir (default experiments/results/ablate_noise, or ..._smoke)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=10_000)
    p.add_argument("--protocols", nargs="+", choices=("realistic", "seed"), default=["realistic", "seed"])
    p.add_argument("--realistic-levels", type=float, nargs="+", default=list(ablations.REALISTIC_NOISE))
    p.add_argument("--seed-levels", type=float, nargs="+", default=list(ablations.SEED_NOISE))
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    if a.smoke:
        a.steps, a.eval_size = min(a.steps, 20), min(a.eval_size, 512)
        a.realistic_levels, a.seed_levels = a.realistic_levels[::4][:2], a.seed_levels[::4][:2]
    out = a.out or HERE / "results" / ("ablate_noise_smoke" if a.smoke else "ablate_noise")
    cmd = ("python experiments/ablate_noise.py " + shlex.join(sys.argv[1:])).strip()
    ablations.ablate_noise(
        out,
        command=cmd,
        steps=a.steps,
        batch_size=a.batch_size,
        seeds=a.seeds,
        eval_size=a.eval_size,
        protocols_=a.protocols,
        levels={"realistic": a.realistic_levels, "seed": a.seed_levels},
        smoke=a.smoke,
    )
