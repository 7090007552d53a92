"""Train the shipped checkpoints and write their evaluation figures next to them.

    python experiments/make_checkpoints.py                      # all four
    python experiments/make_checkpoints.py --names blazeface6-seed --workroot runs

Each config trains in <workroot>/<name> (resumable), its final model is copied to
checkpoints/<name>/, evaluated on 100k held-out draws of its protocol (beside the original
published model for the seed configs), and the figures are written to
checkpoints/<name>/EVAL.md and checkpoints/README.md.

A trained model is shipped only if each web format (`--formats`, default tfjs and js) exports it
and the export, run in Node, gives JAX's poses (experiments/lib/shipping.py: export_problems). A
recipe that a format cannot express (e.g. roll canonicalisation before the JS module or the TF.js
export handled it) leaves checkpoints/<name> as it was, says why, and the script exits 1.
"""

from __future__ import annotations

import argparse
import sys

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import shipping


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--names", nargs="*", default=list(shipping.SHIPPED))
    p.add_argument("--workroot", default="runs")
    p.add_argument("--out", default="checkpoints")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--eval-only", action="store_true", help="re-evaluate the shipped checkpoints, no training")
    p.add_argument(
        "--formats",
        nargs="*",
        default=list(shipping.WEB_FORMATS),
        choices=shipping.WEB_FORMATS,
        help="web formats a model must export to before it replaces a shipped checkpoint (none: no gate)",
    )
    a = p.parse_args(argv)
    refused = shipping.make_checkpoints(
        a.names,
        a.workroot,
        a.out,
        n=a.n,
        do_train=not a.eval_only,
        command=" ".join(["python experiments/make_checkpoints.py"] + (argv or sys.argv[1:])),
        formats=tuple(a.formats),
    )
    if refused:
        print(f"not shipped (their export gate failed): {', '.join(refused)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
