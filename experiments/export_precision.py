"""Float32 web exports of the shipped checkpoints against the exact (float64) solver (issue #3).

    python experiments/export_precision.py            # every shipped checkpoint (needs Node and web/node_modules)

Writes experiments/results/export_precision.md; the logic is in experiments/lib/precision.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import precision, shipping

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--names", nargs="*", default=list(shipping.SHIPPED))
    p.add_argument("--n", type=int, default=1000, help="inputs per checkpoint")
    p.add_argument("--out", default=str(REPO / "experiments" / "results" / "export_precision.md"))
    a = p.parse_args(argv)
    rows = []
    for name in a.names:
        rows.append(precision.precision_study(REPO / "checkpoints" / name, n=a.n))
        print(rows[-1])
    Path(a.out).write_text(
        precision.precision_report(rows, shlex.join(["python", "experiments/export_precision.py", *argv]))
    )
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
