"""Score pnpjax against cv2 SQPnP on a detector's landmarks of real images (no ground truth needed).

    node web/tools/detect_faces.mjs photos/*.jpg --out faces.json
    python experiments/score_detections.py faces.json [--checkpoint checkpoints/faceapi10] [--hfov 60] [--refine 5]

Per face: the rotation difference to SQPnP, the reprojection RMSE of each solver (pixels, and in %
of the outer-eye distance) and whether each turns the face towards the camera; medians on stdout
and the full table as JSON (--json). The logic is in experiments/lib/faces.py (score_detections).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.lib import faces, report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("detections", help="detect_faces.mjs output (JSON)")
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "faceapi10"))
    p.add_argument("--hfov", type=float, default=60.0, help="horizontal field of view of the images, degrees")
    p.add_argument("--refine", type=int, default=5)
    p.add_argument("--cost", choices=("image", "object", "ml"), default="ml")
    p.add_argument("--json", default=None, help="write every face's scores here")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    det = json.loads(Path(a.detections).read_text())
    res = faces.score_detections(det, Path(a.checkpoint), hfov_deg=a.hfov, refine_iters=a.refine, cost=a.cost)
    rows = [
        [
            name,
            s["faces"],
            f"{s['reproj_median_pct_eyes']:.2f}",
            s["facing_camera"],
            f"{s['rot_vs_sqpnp_median_deg']:.2f}" if "rot_vs_sqpnp_median_deg" in s else "-",
        ]
        for name, s in res["summary"].items()
    ]
    print(
        report.md_table(
            [
                "solver",
                "faces",
                "reprojection RMSE median, % of outer-eye distance",
                "facing the camera",
                "rotation vs SQPnP median °",
            ],
            rows,
        )
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
