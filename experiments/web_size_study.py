"""Which network for the default JS module: smaller blazeface6 networks, refined, against OpenCV.js SQPnP.

    python experiments/web_size_study.py                       # -> experiments/results/web_size_study/
    python experiments/web_size_study.py --widths 32 16 --n 300 --out /tmp/study   # quick

Trains (or reuses, resumable) the blazeface6 realistic recipe at each width in --widths (two hidden
layers of that width, the shipped schedule) in <workroot>/blazeface6-w<W>-<W>, then benchmarks the
default module of each, and of the shipped 64-64 `checkpoints/blazeface6` and any --checkpoint
LABEL=DIR, in one Node process (experiments/lib/web_study.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import web_bench, web_study
from pnpjax.textsafe import one_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="*", default=[32, 24, 16], help="hidden widths to train and compare")
    p.add_argument("--workroot", default="runs")
    p.add_argument(
        "--steps", type=int, help="training steps of the --widths networks (default: web_study.STUDY_STEPS, 40,000)"
    )
    p.add_argument(
        "--checkpoint", action="append", default=[], metavar="LABEL=DIR", help="another network to compare (repeatable)"
    )
    p.add_argument("--no-shipped", action="store_true", help="leave out checkpoints/blazeface6 (64-64)")
    p.add_argument("--n", type=int, default=2000, help="draws per noise level")
    p.add_argument("--key", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--iters", type=int, nargs="+", default=list(web_study.ITERS), help="ml steps to run (0 always included)"
    )
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "web_size_study"))
    a = p.parse_args(argv)

    def error(msg: str) -> int:  # a user error: one line on stderr, exit 2, nothing written
        print(f"web_size_study.py: error: {one_line(msg)}", file=sys.stderr)
        return 2

    candidates: dict[str, Path] = {}
    if not a.no_shipped:
        candidates["64-64 (checkpoints/blazeface6)"] = web_bench.REPO / "checkpoints" / "blazeface6"
    for spec in a.checkpoint:
        label, sep, d = spec.partition("=")
        if not sep or not label or not (Path(d) / "pnpjax.json").is_file():
            return error(f"--checkpoint {spec!r}: expected LABEL=DIR with DIR a pnpjax checkpoint directory")
        candidates[label] = Path(d)
    if any(not 0 <= k <= 100 for k in a.iters):
        return error(f"--iters {a.iters}: steps must be in [0, 100]")
    if a.steps is not None and a.steps <= 0:
        return error(f"--steps {a.steps}: must be positive")
    if any(w <= 0 for w in a.widths):
        return error(f"--widths {a.widths}: widths must be positive")
    if not candidates and not a.widths:
        return error("nothing to compare")
    for w in a.widths:
        label = f"{w}-{w}" + (f", {a.steps:,} steps" if a.steps else "")
        candidates[label] = web_study.train_width((w, w), Path(a.workroot), steps=a.steps)
    res = web_study.run(candidates, n=a.n, key=a.key, repeats=a.repeats, iters=a.iters)
    command = "python experiments/web_size_study.py" + "".join(
        f" {x}" for x in (argv if argv is not None else sys.argv[1:])
    )
    web_study.write(res, Path(a.out), command)
    for label, c in res["candidates"].items():
        print(f"{label}: {c['bytes'][0]:,} / {c['bytes'][1]:,} B, fewest steps {c['fewest_steps']}, met {c['met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
