"""Learning curves (training loss vs wall seconds and vs samples, held-out L1-3D vs samples) of
every metrics.jsonl under a training workdir or an experiments/results/<name> directory.

    python experiments/plot_curves.py experiments/results/ablate_losses   # -> .../learning_curves.png
    python experiments/plot_curves.py runs/demo --out curves.png          # a `pnpjax train` workdir
"""

import argparse

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import ablations

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="workdir, results dir, or one metrics.jsonl")
    p.add_argument("--out", default=None, help="PNG path (default <path>/learning_curves.png)")
    a = p.parse_args()
    print(ablations.plot_curves(a.path, a.out))
