"""The tracking benchmark (experiments/bench_tracking.py): every filter of pnpjax.track and the
per-frame solvers on the same synthetic videos (pnpjax.video), scored per segment kind.

Metrics (rotation errors are geodesic, degrees; translations in cm):
  * rms_rot / rms_trans: root-mean-square error against the truth over all frames (a frame without
    landmarks shows what the method shows there: its held or extrapolated pose);
  * jitter_rot / jitter_trans: on still segments, the RMS change of the output between consecutive
    frames (the truth does not move there, so all of it is jitter);
  * lag: on moving segments, the shift (frames, sub-frame by a parabola through the peak) that
    maximises the normalised cross-correlation between the estimated and the true motion along the
    segment's main axis, both differentiated frame to frame (so a constant offset in an estimate
    plays no part; positive = behind the truth). The main axis is the first principal direction of
    the true rotation vectors (relative to the segment's first frame) for turns and shakes, the
    depth for leans;
  * outliers: each method is run twice, on the video and on its clean twin (the same video without
    the outlier jumps); at an outlier frame `dev` is the rotation difference between the two outputs,
    and `recover` the number of frames from the outlier frame until that difference is below
    RECOVER_DEG (0: never above it; per-frame solvers: 1 when the outlier moved them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from experiments.lib import baselines
from pnpjax import geometry, refine, track, video

RECOVER_DEG = 0.5
MAX_LAG = 8
MAX_RECOVER = 30


def _per_frame_poses(
    solver, xy: np.ndarray, refine_iters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Network poses and network + `refine_iters` ml-refined poses of (N, T, K, 2) landmarks."""
    n, t, k, _ = xy.shape
    flat = jnp.asarray(xy.reshape(n * t, k, 2), jnp.float32)
    p = solver(flat)
    pts = jnp.asarray(solver.layout.array)
    qr, tr = refine.refine_ml(flat, pts, p.q, p.t, refine.noise_model_of(solver.test_protocol), iters=refine_iters)
    shape = lambda a, d: np.asarray(a).reshape(n, t, d)  # noqa: E731
    return shape(p.q, 4), shape(p.t, 3), shape(qr, 4), shape(tr, 3)


def run_methods(
    solver,
    v: video.Video,
    *,
    refine_iters: int = 5,
    tracker: track.TrackerConfig | None = None,
    one_euro: track.OneEuro | None = None,
    sqpnp: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> ((N, T, 4), (N, T, 3)) poses of every method on the video (OpenCV frame)."""
    tracker, one_euro = tracker or track.TrackerConfig(), one_euro or track.OneEuro()
    xy, present = np.asarray(v.xy), np.asarray(v.present)
    qn, tn, qr, tr = _per_frame_poses(solver, xy, refine_iters)
    out: dict[str, tuple[Any, Any]] = {}
    if sqpnp:
        n, t, k, _ = xy.shape
        qs, ts, ok = baselines.solve_cv2(xy.reshape(n * t, k, 2), solver.layout.array.astype(np.float64), "sqpnp")
        ok = ok.reshape(n, t) & present
        qs = np.where(ok[..., None], qs.reshape(n, t, 4), np.array([0, 0, 0, 1.0]))
        ts = np.where(ok[..., None], ts.reshape(n, t, 3), 0.0)
        # A frame where SQPnP fails is shown like a frame without landmarks (the first frame never fails here).
        out["cv2 SQPnP (per frame)"] = track.per_frame(qs.astype(np.float32), ts.astype(np.float32), ok)
    out["network (per frame)"] = track.per_frame(qn, tn, present)
    out[f"network + {refine_iters} ml refinement (per frame)"] = track.per_frame(qr, tr, present)
    out["original Euler Kalman on network"] = track.kalman_euler(track.KalmanEuler(), qn, tn, present)
    out["original Euler Kalman on refined"] = track.kalman_euler(track.KalmanEuler(), qr, tr, present)
    out["One-Euro SE(3) on refined"] = track.one_euro(one_euro, qr, tr, present, v.time)
    pts = jnp.asarray(solver.layout.array)
    out["tracker (default)"] = track.track(tracker, v.xy, v.present, v.time, qn, tn, pts)
    return {k: (np.asarray(q, np.float64), np.asarray(t, np.float64)) for k, (q, t) in out.items()}


def _angle(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """Geodesic angle between (..., 4) quaternion arrays, degrees."""
    rel = Rotation.from_quat(qa.reshape(-1, 4)).inv() * Rotation.from_quat(qb.reshape(-1, 4))
    return np.degrees(rel.magnitude()).reshape(qa.shape[:-1])


def _rotvec_rel(q: np.ndarray, q_ref: np.ndarray) -> np.ndarray:
    """Rotation vectors (degrees) of R(q) R(q_ref)^T, q (T, 4)."""
    r = Rotation.from_quat(q) * Rotation.from_quat(np.broadcast_to(q_ref, q.shape)).inv()
    return np.degrees(r.as_rotvec())


def xcorr_lag(est: np.ndarray, true: np.ndarray, lo: int, hi: int, max_lag: int = MAX_LAG) -> float:
    """Shift of `true` (frames) that best matches est[lo:hi] by normalised cross-correlation."""
    T = len(true)
    lags = np.arange(-max_lag, max_lag + 1)
    e = est[lo:hi] - est[lo:hi].mean()
    c = []
    for L in lags:
        s = true[np.clip(np.arange(lo, hi) - L, 0, T - 1)]
        s = s - s.mean()
        c.append(np.sum(e * s) / (np.linalg.norm(e) * np.linalg.norm(s) + 1e-12))
    c = np.asarray(c)
    i = int(np.argmax(c))
    off = 0.0
    if 0 < i < len(c) - 1:
        den = c[i - 1] - 2 * c[i] + c[i + 1]
        off = 0.5 * (c[i - 1] - c[i + 1]) / den if den < 0 else 0.0
    return float(lags[i] + off)


def segment_lags(q: np.ndarray, t: np.ndarray, v) -> list[tuple[int, float]]:
    """(kind, lag in frames) of every moving segment."""
    out = []
    N, T = v.kind.shape
    L = int(np.sum(v.segment[0] == 0))
    for n in range(N):
        for lo in range(0, T, L):
            hi, k = lo + L, int(v.kind[n, lo])
            if k == video.STILL:
                continue
            if k == video.LEAN:
                sig_t, sig_e = v.t[n, :, 2], t[n, :, 2]
            else:
                rv_t, rv_e = _rotvec_rel(v.q[n], v.q[n, lo]), _rotvec_rel(q[n], v.q[n, lo])
                ax = np.linalg.svd(rv_t[lo:hi] - rv_t[lo:hi].mean(0), full_matrices=False)[2][0]
                sig_t, sig_e = rv_t @ ax, rv_e @ ax
            d = lambda s: np.diff(s, prepend=s[0])  # noqa: E731
            out.append((k, xcorr_lag(d(sig_e), d(sig_t), lo, hi)))
    return out


def recovery(q: np.ndarray, q_clean: np.ndarray, outlier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(deviation at each outlier frame in degrees, frames to recover) from a method's outputs on the
    video and on its clean twin; outlier frames followed by another within MAX_RECOVER are skipped."""
    dev = _angle(q, q_clean)
    devs, rec = [], []
    T = outlier.shape[1]
    for n, f in zip(*np.nonzero(outlier)):
        nxt = np.nonzero(outlier[n, f + 1 : f + 1 + MAX_RECOVER])[0]
        prev = np.nonzero(outlier[n, max(f - MAX_RECOVER, 0) : f])[0]
        if len(nxt) or len(prev) or f + MAX_RECOVER >= T:
            continue
        below = np.nonzero(dev[n, f : f + MAX_RECOVER] < RECOVER_DEG)[0]
        devs.append(dev[n, f])
        rec.append(below[0] if len(below) else MAX_RECOVER)
    return np.asarray(devs), np.asarray(rec)


def score(q: np.ndarray, t: np.ndarray, v, q_clean: np.ndarray | None = None) -> dict[str, Any]:
    """All metrics of one method (see the module docstring); v holds numpy arrays."""
    err = _angle(q, v.q)
    terr = np.linalg.norm(t - v.t, axis=-1)
    same = v.segment[:, 1:] == v.segment[:, :-1]
    still = same & (v.kind[:, 1:] == video.STILL)
    d_rot = _angle(q[:, 1:], q[:, :-1])
    d_tr = np.linalg.norm(t[:, 1:] - t[:, :-1], axis=-1)
    rms = lambda a: float(np.sqrt(np.mean(np.square(a)))) if np.size(a) else float("nan")  # noqa: E731
    res: dict[str, Any] = {
        "rms_rot": rms(err),
        "rms_trans": rms(terr),
        "median_rot": float(np.median(err)),
        "jitter_rot": rms(d_rot[still]),
        "jitter_trans": rms(d_tr[still]),
        "by_kind": {},
    }
    lags = np.asarray(segment_lags(q, t, v))
    for k, name in enumerate(video.KINDS):
        m = v.kind == k
        row = {"rms_rot": rms(err[m]), "rms_trans": rms(terr[m])}
        if k != video.STILL:
            lk = lags[lags[:, 0] == k, 1]
            row.update(lag=float(np.mean(lk)), lag_median=float(np.median(lk)), lag_segments=int(lk.size))
        res["by_kind"][name] = row
    if q_clean is not None:
        dev, rec = recovery(q, q_clean, v.outlier)
        res.update(
            outlier_dev=float(np.mean(dev)),
            outlier_dev_p90=float(np.percentile(dev, 90)),
            recover_frames=float(np.mean(rec)),
            recover_p90=float(np.percentile(rec, 90)),
            outlier_events=int(dev.size),
        )
    return res


def benchmark(solver, cfg: video.VideoConfig, n: int, key: int, **kw) -> tuple[dict[str, dict], Any, dict]:
    """(metrics per method, the video (numpy), the outputs) on n sequences of key `key`."""
    v = video.sample_video(cfg, jax.random.key(key), solver.layout, n)
    clean = v._replace(xy=v.xy - v.outlier_xy)
    outs = run_methods(solver, v, **kw)
    outs_clean = run_methods(solver, clean, **kw)
    vn = jax.tree.map(lambda a: np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a), v)
    return {name: score(q, t, vn, outs_clean[name][0]) for name, (q, t) in outs.items()}, vn, outs


def ypr(q: np.ndarray, R_front: np.ndarray) -> np.ndarray:
    """(..., 4) OpenCV-frame quaternions -> (pitch, yaw, roll) degrees of the realistic protocol's
    parametrisation R = R_front Rot(facing, roll) Rot(up, yaw) Rot(right, pitch)."""
    R = Rotation.from_quat(q.reshape(-1, 4)).as_matrix()
    # In the layout frame (right, up, facing) these are the x, y, z axes for the face presets.
    M = np.einsum("ji,njk->nik", R_front, R)
    return np.degrees(np.asarray(geometry.matrix_to_euler(M))).reshape(q.shape[:-1] + (3,))


def config_dict(obj) -> dict:
    return dataclasses.asdict(obj)
