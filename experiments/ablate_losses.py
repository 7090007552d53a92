"""Loss ablation: l1_3d, l2_3d, reproj_2d, pose_mse, geodesic x seeds in one vmapped program.

python experiments/ablate_losses.py            # full run -> experiments/results/ablate_losses/
python experiments/ablate_losses.py --smoke    # seconds; tiny nets (used by the tests)
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
    p.add_argument("--out", default=None, help="results dir (default experiments/results/ablate_losses, or ..._smoke)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=20_000)
    p.add_argument(
        "--separate", type=int, default=None, help="time this many separate runs (default: all; fewer = extrapolated)"
    )
    p.add_argument(
        "--data",
        choices=("per_seed", "shared"),
        default="per_seed",
        help="batch streams: per seed (as separate runs) or one shared",
    )
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    if a.smoke:
        a.steps, a.eval_size, a.separate = (
            min(a.steps, 20),
            min(a.eval_size, 512),
            1 if a.separate is None else a.separate,
        )
    out = a.out or HERE / "results" / ("ablate_losses_smoke" if a.smoke else "ablate_losses")
    cmd = "python experiments/ablate_losses.py " + shlex.join(sys.argv[1:])
    ablations.ablate_losses(
        out,
        command=cmd.strip(),
        steps=a.steps,
        batch_size=a.batch_size,
        seeds=a.seeds,
        eval_size=a.eval_size,
        separate=a.separate,
        data=a.data,
        smoke=a.smoke,
    )
