"""Pose tracking on synthetic video (issue #10): every filter of pnpjax.track and per-frame solvers.

    python experiments/bench_tracking.py                      # 128 sequences of 12 s, key 0
    python experiments/bench_tracking.py --n 16 --out /tmp/bt # quick look

Per method and segment kind: RMS rotation (deg) and translation (cm) error, jitter on still
segments, lag on moving segments, frames to recover after an outlier (experiments/lib/tracking.py
defines each). The per-frame network is the shipped realistic checkpoint (default
checkpoints/blazeface6); per-frame cv2 SQPnP is the anchor. The filters' parameters were picked on
sequences of key 1 (see pnpjax/track.py); the report uses key 0. Writes <out>/results.md,
results.json and ypr.png (yaw/pitch/roll against time on one sequence).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
import numpy as np

from experiments.lib import tracking
from experiments.lib.report import md_table, write_report
from pnpjax import checkpoint, track, video

REPO = Path(__file__).resolve().parents[1]
ANCHOR = "cv2 SQPnP (per frame)"
DEFAULT = "tracker (default)"
BASELINES = ("original Euler Kalman on network", "original Euler Kalman on refined")


def _plot(path: Path, v, outs: dict, n: int, R_front: np.ndarray, fps: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tsec = np.arange(v.q.shape[1]) / fps
    fig, axes = plt.subplots(3, 1, figsize=(13, 9), sharex=True)
    truth = tracking.ypr(v.q[n], R_front)
    shown = [ANCHOR, "original Euler Kalman on network", "One-Euro SE(3) on refined", DEFAULT]
    styles = {
        ANCHOR: dict(color="0.6", lw=0.8),
        "original Euler Kalman on network": dict(color="tab:orange", lw=1.0),
        "One-Euro SE(3) on refined": dict(color="tab:green", lw=1.0),
        DEFAULT: dict(color="tab:blue", lw=1.4),
    }
    colors = {"still": "white", "slow": "#eef5ff", "fast": "#ffecec", "lean": "#effaef"}
    L = int(np.sum(v.segment[n] == 0))
    for ax, j, label in zip(axes, (1, 0, 2), ("yaw", "pitch", "roll")):
        for lo in range(0, len(tsec), L):
            ax.axvspan(tsec[lo], tsec[min(lo + L, len(tsec) - 1)], color=colors[video.KINDS[v.kind[n, lo]]], lw=0)
        for name in shown:
            ax.plot(tsec, tracking.ypr(outs[name][0][n], R_front)[:, j], label=name, **styles[name])
        ax.plot(tsec, truth[:, j], "k--", lw=1.2, label="truth")
        for f in np.nonzero(v.outlier[n])[0]:
            ax.axvline(tsec[f], color="red", lw=0.6, ls=":")
        for f in np.nonzero(~v.present[n])[0]:
            ax.axvline(tsec[f], color="0.3", lw=0.6, ls="-.")
        ax.set_ylabel(f"{label} (deg)")
    axes[0].legend(loc="upper right", fontsize=8, ncol=3)
    kinds = ", ".join(f"{k}: {c}" for k, c in (("slow", "blue"), ("fast", "red"), ("lean", "green")))
    axes[-1].set_xlabel(
        f"time (s); background: segment kind ({kinds}, still: white); red dotted: outlier frame; dash-dot: no landmarks"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "blazeface6"))
    ap.add_argument("--n", type=int, default=128, help="sequences")
    ap.add_argument("--key", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_tracking"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    solver = checkpoint.load(args.checkpoint)
    cfg = video.VideoConfig()
    t0 = time.time()
    res, v, outs = tracking.benchmark(solver, cfg, args.n, args.key)
    wall = time.time() - t0

    names = list(res)
    rows = [
        [
            k,
            f"{r['rms_rot']:.3f}",
            f"{r['median_rot']:.3f}",
            f"{r['rms_trans']:.2f}",
            f"{r['jitter_rot']:.3f}",
            f"{r['jitter_trans']:.3f}",
            f"{r['by_kind']['slow']['lag']:.2f}",
            f"{r['by_kind']['fast']['lag']:.2f}",
            f"{r['by_kind']['lean']['lag']:.2f}",
            f"{r['outlier_dev']:.2f}",
            f"{r['recover_frames']:.2f}",
        ]
        for k, r in res.items()
    ]
    main_table = md_table(
        [
            "method",
            "RMS rot °",
            "median rot °",
            "RMS t cm",
            "still jitter °",
            "still jitter cm",
            "lag slow (fr)",
            "lag fast (fr)",
            "lag lean (fr)",
            "outlier dev °",
            "recover (fr)",
        ],
        rows,
        [""] + [":"] * 10,
    )
    kind_rows = []
    for k in names:
        for kind in video.KINDS:
            r = res[k]["by_kind"][kind]
            kind_rows.append(
                [
                    k,
                    kind,
                    f"{r['rms_rot']:.3f}",
                    f"{r['rms_trans']:.2f}",
                    f"{r['lag']:.2f}" if "lag" in r else "–",
                    f"{r['lag_median']:.2f}" if "lag" in r else "–",
                ]
            )
    kind_table = md_table(
        ["method", "segment", "RMS rot °", "RMS t cm", "lag mean (fr)", "lag median (fr)"],
        kind_rows,
        ["", ""] + [":"] * 4,
    )

    d, a = res[DEFAULT], res[ANCHOR]
    base = {b: res[b] for b in BASELINES}
    checks = [
        ("still jitter <= 0.25x per-frame SQPnP's", d["jitter_rot"] / a["jitter_rot"], 0.25, "ratio"),
        ("RMS rotation error <= 0.8x per-frame SQPnP's", d["rms_rot"] / a["rms_rot"], 0.8, "ratio"),
        ("fast segments: lag <= 1 frame", d["by_kind"]["fast"]["lag"], 1.0, "frames"),
    ]
    target_rows = [
        [name, f"{val:.3f} ({unit})", f"<= {lim}", "met" if val <= lim else "NOT met"]
        for name, val, lim, unit in checks
    ]
    for b, r in base.items():
        better = (
            d["jitter_rot"] < r["jitter_rot"],
            d["rms_rot"] < r["rms_rot"],
            d["by_kind"]["fast"]["lag"] < r["by_kind"]["fast"]["lag"],
        )
        target_rows.append(
            [
                f"better than {b} on jitter / RMS / fast lag",
                f"{d['jitter_rot']:.3f} vs {r['jitter_rot']:.3f}; {d['rms_rot']:.3f} vs {r['rms_rot']:.3f}; "
                f"{d['by_kind']['fast']['lag']:.2f} vs {r['by_kind']['fast']['lag']:.2f}",
                "all three",
                "met" if all(better) else "NOT met",
            ]
        )
    targets = md_table(["target (default tracker)", "measured", "target", ""], target_rows)

    seq = int(
        np.argmax(
            [
                len(set(v.kind[i].tolist())) * 100 + v.outlier[i].sum() + (~v.present[i]).sum()
                for i in range(v.kind.shape[0])
            ]
        )
    )
    _plot(out / "ypr.png", v, outs, seq, np.asarray(solver.layout.frontal_rotation), cfg.fps)

    frames = int(np.prod(v.present.shape))
    command = "python experiments/bench_tracking.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    n_out, n_drop = int(v.outlier.sum()), int((~v.present).sum())
    body = [
        f"{args.n} sequences x {cfg.num_frames} frames at {cfg.fps:g} fps ({frames} frames; key {args.key}); "
        f"per-frame network `{Path(args.checkpoint).name}`; {n_out} outlier frames, {n_drop} frames without "
        f"landmarks. Every method runs on the same landmarks; wall time {wall:.0f} s on this shared 2-core CPU.",
        "Video: `pnpjax.video.VideoConfig()` defaults (segments of 1.5 s: still, slow turn 10-40 °/s, fast "
        "shake/nod 100-200 °/s peak, lean in/out; AR(1) landmark noise, rho 0.5, 3 % of the face's size; shape "
        "fixed per sequence; 2 % outlier frames (one landmark jumps 20-60 px); 3 % frames without landmarks). "
        "Methods: see `pnpjax/track.py`; the 'original Euler Kalman' is the original web app's six kalmanjs "
        "filters (R = 1, Q = 3) on three.js XYZ Euler angles + translation, run on the network's per-frame poses "
        "(as the original did) and on the refined ones.",
        "## Targets\n\n" + targets,
        "## All methods\n\n" + main_table,
        "Jitter: RMS frame-to-frame change on still segments. Lag: cross-correlation of the frame-to-frame motion "
        "along each moving segment's main axis with the truth's (mean over segments; positive = behind). Outlier "
        "dev: rotation difference at an outlier frame against the same method on the clean twin video; recover: "
        f"frames until that difference is < {tracking.RECOVER_DEG} °.",
        "## Per segment kind\n\n" + kind_table,
        f"![yaw, pitch, roll against time](ypr.png)\n\nSequence {seq}: truth (dashed), per-frame SQPnP and filters.",
    ]
    write_report(out, "Pose tracking on synthetic video", command, body)
    (out / "results.json").write_text(
        json.dumps(
            {
                "n": args.n,
                "key": args.key,
                "checkpoint": Path(args.checkpoint).name,
                "video": tracking.config_dict(cfg),
                "tracker": tracking.config_dict(track.TrackerConfig()),
                "one_euro": tracking.config_dict(track.OneEuro()),
                "results": res,
                "wall_seconds": wall,
            },
            indent=1,
        )
    )
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
