"""Size x quantisation: widths/depths from the original's 64-64 up x TF.js float32/float16/uint8
-> held-out accuracy vs web artifact bytes (Pareto plot, best recipe per byte budget).

    python experiments/ablate_size.py            # full run -> experiments/results/ablate_size/
    python experiments/ablate_size.py --smoke    # seconds; tiny nets (used by the tests)
"""

import argparse
import shlex
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import ablations

HERE = Path(__file__).resolve().parent


def widths(s: str) -> tuple[int, ...]:
    return tuple(int(w) for w in s.split("-"))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="results dir (default experiments/results/ablate_size, or ..._smoke)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=20_000)
    p.add_argument("--sizes", type=widths, nargs="+", default=list(ablations.SIZES), help="e.g. 64-64 128-128 64-64-64")
    p.add_argument("--protocol", choices=("seed", "realistic"), default="realistic")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    if a.smoke:
        a.steps, a.eval_size, a.sizes = min(a.steps, 20), min(a.eval_size, 512), [(8, 8), (16, 16)]
    out = a.out or HERE / "results" / ("ablate_size_smoke" if a.smoke else "ablate_size")
    cmd = ("python experiments/ablate_size.py " + shlex.join(sys.argv[1:])).strip()
    ablations.ablate_size(
        out,
        command=cmd,
        steps=a.steps,
        batch_size=a.batch_size,
        seeds=a.seeds,
        eval_size=a.eval_size,
        sizes=a.sizes,
        protocol=a.protocol,
        smoke=a.smoke,
    )
