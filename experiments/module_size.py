"""Where the bytes of the default JS module go (issue 9's 16 KB / 9 KB gzip target).

    python experiments/module_size.py [--checkpoint DIR]

The default module is `pnpjax export <the web checkpoint> --format js` (experiments/lib/web_bench.py:
WEB_CHECKPOINT, or DIR) for the webcam camera of experiments/bench_web.py (uint8 weights, refinement
included, no tracker). Prints raw and gzip -9 bytes of the whole module, of the same module exported
with `--tracker` (createTracker's code and defaults), of its data line
(`const GENERATED = ...`: weights, layout, camera, statistics, defaults, metadata), of the rest (the
code), and of the uint8 weights text alone beside the order-0 entropy of its characters (what no
byte-wise coder of those codes can beat).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib import web_bench
from experiments.lib.web_bench import EXPORT_CAMERA, byte_sizes
from pnpjax import camera, checkpoint, jsmodule, model
from pnpjax.textsafe import one_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help=f"default: the web checkpoint, {web_bench.WEB_CHECKPOINT.name}")
    a = p.parse_args(argv)
    web = Path(a.checkpoint) if a.checkpoint else web_bench.WEB_CHECKPOINT
    if not (web / "pnpjax.json").is_file():
        print(
            f"module_size.py: error: --checkpoint {one_line(a.checkpoint)}: not a pnpjax checkpoint directory",
            file=sys.stderr,
        )
        return 2
    solver = checkpoint.load(web)
    cam = camera.parse_camera(EXPORT_CAMERA)
    data = web_bench.default_module_data(solver, cam, web.name)
    module = jsmodule.fill(jsmodule.source_text(jsmodule.built_name(False)), data)
    lines = module.split("\n")
    (data_line,) = [ln for ln in lines if ln.startswith("const GENERATED = ")]
    code = "\n".join(ln for ln in lines if ln is not data_line)
    weights = data["weights"]
    counts = Counter(weights)
    entropy = -sum(c * math.log2(c / len(weights)) for c in counts.values()) / 8
    sizes = web_bench.module_sizes(data)
    print(
        f"default module ({one_line(web.name)}, widths {list(solver.config.model.widths)}, "
        f"{model.num_params(solver.params):,} parameters, uint8, camera {EXPORT_CAMERA}); bytes raw / gzip -9"
    )
    for name, text in (("whole module", module), ("data line", data_line), ("code (the rest)", code)):
        raw, gz = byte_sizes(text.encode())
        print(f"  {name:<18} {raw:>7,} / {gz:>6,}")
    assert sizes["module"] == byte_sizes(module.encode())
    raw, gz = sizes["with tracker"]
    print(f"  {'with tracker':<18} {raw:>7,} / {gz:>6,}   (pnpjax export --tracker: createTracker's code and defaults)")
    raw, gz = byte_sizes(weights.encode())
    print(f"  {'weights text':<18} {raw:>7,} / {gz:>6,}   order-0 entropy of its characters {entropy:,.0f} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
