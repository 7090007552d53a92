"""How few weight bits does the default JS module need: the 64-64 blazeface6 trunk at b bits, refined, against SQPnP.

    python experiments/web_bits_study.py                # -> experiments/results/web_bits_study/
    python experiments/web_bits_study.py --n 300 --bits 8 4 --out bits-quick   # quick

Quantises the web checkpoint's trunk per tensor to each b in --bits with the uint8 export's affine
scheme, measures the network alone and the module's default refinement (1 ml step, retry) in
Python on bench_web's realistic draws against OpenCV.js SQPnP's figures on the same draws, and the
would-be weights text and module bytes (experiments/lib/web_bits.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import web_bits
from pnpjax.textsafe import one_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", type=int, nargs="+", default=list(web_bits.BITS), help="bits per weight, each in [1, 8]")
    p.add_argument("--n", type=int, default=2000, help="draws per noise level")
    p.add_argument("--key", type=int, default=0)
    p.add_argument("--checkpoint", help=f"default: the 64-64 network studied, checkpoints/{web_bits.STUDIED.name}")
    p.add_argument(
        "--sqpnp",
        choices=("auto", "committed", "node"),
        default="auto",
        help="SQPnP's figures: the committed bench_web run (same n, key, checkpoint), OpenCV.js in Node now, "
        "or the committed one when it matches (default)",
    )
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "web_bits_study"))
    a = p.parse_args(argv)

    def error(msg: str) -> int:  # a user error: one line on stderr, exit 2, nothing written
        print(f"web_bits_study.py: error: {one_line(msg)}", file=sys.stderr)
        return 2

    if any(not 1 <= b <= 8 for b in a.bits):
        return error(f"--bits {a.bits}: each must be in [1, 8]")
    if a.n <= 0:
        return error(f"--n {a.n}: must be positive")
    web = Path(a.checkpoint) if a.checkpoint else web_bits.STUDIED
    if not (web / "pnpjax.json").is_file():
        return error(f"--checkpoint {a.checkpoint!r}: not a pnpjax checkpoint directory")
    if a.sqpnp == "committed" and web_bits.committed_sqpnp(a.n, a.key, web) is None:
        return error(f"--sqpnp committed: the committed bench_web run is not --n {a.n} --key {a.key} on {web.name}")
    res = web_bits.run(n=a.n, key=a.key, bits=a.bits, web=web, sqpnp=a.sqpnp)
    command = "python experiments/web_bits_study.py" + "".join(
        f" {x}" for x in (argv if argv is not None else sys.argv[1:])
    )
    web_bits.write(res, Path(a.out), command)
    for label, row in res["rows"].items():
        worst = max(x["ratio"] for x in row["levels"].values())
        sizes = row.get("bytes", {}).get("char", {})
        print(
            f"{label}: worst refined median / SQPnP {worst:.4f}, accuracy kept {row['accurate']}"
            + (f", module {sizes['module']}, without tracker {sizes['without tracker']}" if sizes else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
