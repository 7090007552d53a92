"""The web solver benchmark: OpenCV.js vs the pnpjax JS module vs the original TF.js model, in Node.

    python experiments/bench_web.py                 # -> experiments/results/bench_web/
    python experiments/bench_web.py --n 300 --out /tmp/bench_web   # quick
    python experiments/bench_web.py --checkpoint runs/mine/model --out /tmp/bench_mine   # another web checkpoint

See experiments/lib/web_bench.py for the protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.lib import web_bench
from pnpjax.textsafe import one_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="draws per setting")
    p.add_argument("--key", type=int, default=0)
    p.add_argument("--runtime", action="append", choices=("Node", "Chromium"), help="default: both")
    p.add_argument(
        "--checkpoint",
        help="the web checkpoint (a realistic-protocol blazeface6 model) whose modules are benchmarked; "
        f"default: {web_bench.WEB_CHECKPOINT.relative_to(web_bench.REPO)}",
    )
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_web"))
    a = p.parse_args(argv)
    web = Path(a.checkpoint) if a.checkpoint else web_bench.WEB_CHECKPOINT
    if not (web / "pnpjax.json").is_file():  # a user error: one line, exit 2, nothing written
        print(
            f"bench_web.py: error: --checkpoint {one_line(a.checkpoint)}: not a pnpjax checkpoint directory",
            file=sys.stderr,
        )
        return 2
    res = web_bench.run(n=a.n, key=a.key, runtimes=tuple(a.runtime or ("Node", "Chromium")), web=web)
    command = (
        "python experiments/bench_web.py"
        + (f" --n {a.n}" if a.n != 2000 else "")
        + (f" --key {a.key}" if a.key else "")
        + (f" --checkpoint {a.checkpoint}" if a.checkpoint else "")
    )
    command += "".join(f" --runtime {r}" for r in a.runtime or ())
    web_bench.write(res, Path(a.out), command)
    for row in web_bench.targets(res):
        print(" | ".join(str(x) for x in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
