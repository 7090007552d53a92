"""Rotation-head ablation: quat vs 6d (x seeds; each head one vmapped group, in sequence).

python experiments/ablate_rotation.py            # full run -> experiments/results/ablate_rotation/
python experiments/ablate_rotation.py --smoke    # seconds; tiny nets (used by the tests)
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
    p.add_argument(
        "--out", default=None, help="results dir (default experiments/results/ablate_rotation, or ..._smoke)"
    )
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=20_000)
    p.add_argument("--protocol", choices=("seed", "realistic"), default="seed")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    if a.smoke:
        a.steps, a.eval_size = min(a.steps, 20), min(a.eval_size, 512)
    out = a.out or HERE / "results" / ("ablate_rotation_smoke" if a.smoke else "ablate_rotation")
    cmd = ("python experiments/ablate_rotation.py " + shlex.join(sys.argv[1:])).strip()
    ablations.ablate_rotation(
        out,
        command=cmd,
        steps=a.steps,
        batch_size=a.batch_size,
        seeds=a.seeds,
        eval_size=a.eval_size,
        protocol=a.protocol,
        smoke=a.smoke,
    )
