"""Accuracy and size of the tfjs / js exports at float32, float16 and uint8 (issue #3).

    python experiments/export_quantization.py [--checkpoint DIR ...] [--n 100000] [--out FILE]

Without --checkpoint, every checkpoint directory in checkpoints/. Prints the tables and writes
them to experiments/results/export_quantization.md. The logic is `pnpjax.quantization.quantization_study`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import quantization
from pnpjax import checkpoint

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", help="checkpoint dir (repeat); default: checkpoints/*")
    p.add_argument("--n", type=int, default=100_000, help="held-out draws per protocol")
    p.add_argument("--out", default=str(REPO / "experiments" / "results" / "export_quantization.md"))
    args = p.parse_args(argv)
    dirs = args.checkpoint or sorted(str(d) for d in (REPO / "checkpoints").glob("*") if d.is_dir())
    if not dirs:
        print("no checkpoints: pass --checkpoint DIR or put checkpoints in checkpoints/", file=sys.stderr)
        return 2
    results = {}
    for d in dirs:
        solver = checkpoint.load(d)
        name = f"{Path(d).name} ({solver.config.name}, widths {list(solver.config.model.widths)})"
        results[name] = quantization.quantization_study(solver, n=args.n)
        print(quantization.quantization_report({name: results[name]}, args.n), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w") as f:
        f.write(quantization.quantization_report(results, args.n))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
