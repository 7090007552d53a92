"""Where the bytes of the default JS module go (issue 9's 16 KB / 9 KB gzip target).

    python experiments/module_size.py

The default module is `pnpjax export checkpoints/blazeface6 --format js` for the webcam camera of
experiments/bench_web.py (uint8 weights, refinement included). Prints raw and gzip -9 bytes of the
whole module, of its data line (`const GENERATED = ...`: weights, layout, camera, statistics,
defaults, metadata), of the rest (the code), and of the uint8 weights text alone beside the
order-0 entropy of its characters (what no byte-wise coder of those codes can beat).
"""

from __future__ import annotations

import gzip
import math
import sys
from collections import Counter

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import web_bench
from experiments.lib.web_bench import EXPORT_CAMERA, REPO
from pnpjax import camera, checkpoint, jsmodule


def sizes(text: str) -> tuple[int, int]:
    data = text.encode()
    return len(data), len(gzip.compress(data, 9, mtime=0))


def main() -> int:
    solver = checkpoint.load(REPO / "checkpoints" / "blazeface6")
    cam = camera.parse_camera(EXPORT_CAMERA)
    module = jsmodule.module_source(solver, cam, "uint8", "blazeface6")
    lines = module.split("\n")
    (data_line,) = [ln for ln in lines if ln.startswith("const GENERATED = ")]
    code = "\n".join(ln for ln in lines if ln is not data_line)
    weights = web_bench.default_module_data(solver, cam)["weights"]
    counts = Counter(weights)
    entropy = -sum(c * math.log2(c / len(weights)) for c in counts.values()) / 8
    print(f"default module (checkpoints/blazeface6, uint8, camera {EXPORT_CAMERA}); bytes raw / gzip -9")
    for name, text in (("whole module", module), ("data line", data_line), ("code (the rest)", code)):
        raw, gz = sizes(text)
        print(f"  {name:<18} {raw:>7,} / {gz:>6,}")
    raw, gz = sizes(weights)
    print(f"  {'weights text':<18} {raw:>7,} / {gz:>6,}   order-0 entropy of its characters {entropy:,.0f} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
