"""Real faces (issue 11): face-api.js landmarks -> pnpjax in headless Chromium with a fake webcam.

    python experiments/faces_webcam.py          # needs Node, web/node_modules and Debian's chromium

Writes experiments/results/faces/ (README.md, results.json, mapping.png, filmstrip.png, photo.png);
the logic is in experiments/lib/faces.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.lib import faces  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="*", default=list(range(6)), help="face-api.js sample photos (0-5)")
    p.add_argument("--angles", type=float, nargs="*", default=faces.ROLL_ANGLES, help="image turns per face, degrees")
    p.add_argument("--refine", type=int, default=5, help="refinement iterations of the Python rows")
    p.add_argument("--out", default=str(REPO / "experiments" / "results" / "faces"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pnpjax-faces-") as work:
        s = faces.faces_report(
            Path(a.out),
            Path(work),
            images=a.images,
            angles_deg=a.angles,
            refine_iters=a.refine,
            command=shlex.join(["python", "experiments/faces_webcam.py", *argv]),
        )
    for name, r in s["scores"].items():
        print(f"{name:55s} {r['median_deg']:.2f} deg median over {r['n']} pairs")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
