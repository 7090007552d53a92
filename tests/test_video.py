"""The synthetic video generator: timing, segment speeds, noise, outliers and drops as configured."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import camera, layouts, video

LAYOUT = layouts.BLAZEFACE6
CFG = dataclasses.replace(video.VideoConfig(), num_segments=6, segment_frames=30)


@pytest.fixture(scope="module")
def vid() -> video.Video:
    return jax.tree.map(np.asarray, video.sample_video(CFG, jax.random.key(3), LAYOUT, 48))


def _speeds(v):
    """Geodesic angular speed between consecutive frames (deg/s) and whether both are in one segment."""
    r = Rotation.from_quat(v.q.reshape(-1, 4).astype(np.float64)).as_matrix().reshape(v.q.shape[:2] + (3, 3))
    rel = np.einsum("ntji,ntjk->ntik", r[:, :-1], r[:, 1:])
    ang = np.degrees(np.linalg.norm(Rotation.from_matrix(rel.reshape(-1, 3, 3)).as_rotvec(), axis=-1)).reshape(
        rel.shape[:2]
    )
    same = v.segment[:, 1:] == v.segment[:, :-1]
    return ang * CFG.fps, same


def test_shapes_and_timing(vid):
    n, t = 48, CFG.num_frames
    assert vid.xy.shape == (n, t, 6, 2) and vid.q.shape == (n, t, 4) and vid.t.shape == (n, t, 3)
    np.testing.assert_allclose(vid.time, np.arange(t) / CFG.fps * np.ones((n, 1)), rtol=1e-6)
    assert np.all(vid.segment == np.arange(t) // CFG.segment_frames)
    np.testing.assert_allclose(np.linalg.norm(vid.q, axis=-1), 1, atol=1e-5)
    assert np.all(vid.q[..., 3] >= 0)
    assert np.all(np.isfinite(vid.xy))
    # every segment kind occurs, the kind is constant within a segment
    assert set(np.unique(vid.kind)) == {0, 1, 2, 3}
    assert np.all(vid.kind.reshape(n, CFG.num_segments, -1) == vid.kind[:, :: CFG.segment_frames, None])


def test_deterministic_per_key():
    cfg = dataclasses.replace(video.SMOKE, outlier_rate=0.0, drop_rate=0.0)  # test_outliers_and_drops' program
    a = video.sample_video(cfg, jax.random.key(0), LAYOUT, 4)
    b = video.sample_video(cfg, jax.random.key(0), LAYOUT, 4)
    c = video.sample_video(cfg, jax.random.key(1), LAYOUT, 4)
    np.testing.assert_array_equal(a.xy, b.xy)
    assert not np.allclose(a.xy, c.xy)


def test_segment_speeds(vid):
    speed, same = _speeds(vid)
    kind = vid.kind[:, 1:]
    dt_depth = np.abs(np.diff(np.log(vid.t[..., 2]), axis=1))
    # still: nothing moves; slow/fast: no depth change; lean: no rotation.
    assert np.max(speed[(kind == video.STILL) & same]) < 1e-3
    assert np.max(speed[(kind == video.LEAN) & same]) < 1e-3
    assert np.max(dt_depth[(kind != video.LEAN) & same]) < 1e-6
    # fast: one axis, so the geodesic speed is the angle's rate; its sampled peak per segment is
    # within the configured range (sampling at 30 fps can only under-estimate the peak, by < 6 %).
    lo, hi = CFG.fast_speed_dps
    fast = np.concatenate([np.zeros((48, 1)), np.where((kind == video.FAST) & same, speed, 0)], axis=1)
    seg_peak = fast.reshape(48, CFG.num_segments, -1).max(-1)
    peaks = seg_peak[vid.kind[:, :: CFG.segment_frames] == video.FAST]
    assert peaks.size > 10
    assert np.all(peaks <= hi * 1.001) and np.all(peaks >= lo * 0.94), (peaks.min(), peaks.max())
    assert peaks.max() > 0.9 * hi  # the range is covered up to ~200 deg/s
    # slow: the angles' rate peaks in the configured range; the geodesic speed of a turn that mixes
    # axes is within sqrt(3) of it.
    slow = speed[(kind == video.SLOW) & same]
    assert np.max(slow) <= math.sqrt(3) * CFG.slow_speed_dps[1] and np.max(slow) > CFG.slow_speed_dps[0]
    # lean: each lean segment changes the depth by a factor within exp(+-lean_log), inside the limits.
    depth = vid.t[..., 2].reshape(48, CFG.num_segments, -1)
    change = np.abs(np.log(depth[..., -1] / depth[..., 0]))[vid.kind[:, :: CFG.segment_frames] == video.LEAN]
    assert np.all(change <= CFG.lean_log[1] + 1e-4) and np.all(change > 0.5 * CFG.lean_log[0])
    assert vid.t[..., 2].min() >= CFG.depth_limits_cm[0] - 1e-3 and vid.t[..., 2].max() <= CFG.depth_limits_cm[1] + 1e-3


def test_outliers_and_drops(vid):
    n_frames = vid.present.size
    # Binomial rates: 48 x 180 frames, 5 standard deviations.
    for observed, p in ((np.mean(vid.outlier), CFG.outlier_rate), (np.mean(~vid.present), CFG.drop_rate)):
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / n_frames), (observed, p)
    assert np.all(vid.present[:, 0])
    px = vid.outlier_xy * vid.intrinsics[:, None, None, :2]
    jump = np.linalg.norm(px, axis=-1)  # (N, T, K)
    moved = jump > 0
    # exactly one landmark jumps on an outlier frame (a dropped frame's outlier is not flagged), by 20-60 px
    flagged = vid.outlier
    assert np.all(moved[flagged].sum(-1) == 1)
    assert np.all(
        (jump[flagged].max(-1) >= CFG.outlier_px[0] - 1e-3) & (jump[flagged].max(-1) <= CFG.outlier_px[1] + 1e-3)
    )
    assert not np.any(moved[vid.present & ~flagged])
    none = video.sample_video(
        dataclasses.replace(video.SMOKE, outlier_rate=0.0, drop_rate=0.0), jax.random.key(0), LAYOUT, 4
    )
    assert np.all(none.present) and not np.any(none.outlier) and not np.any(none.outlier_xy)


def test_landmark_noise_level_and_correlation():
    """Without shape variation the clean landmarks are the true projection plus noise of std
    noise_2d x the face's image size, with lag-1 correlation noise_corr."""
    cfg = dataclasses.replace(video.SMOKE, head_scale=(1.0, 1.0), shape_jitter_cm=0.0, outlier_rate=0.0, noise_corr=0.6)
    v = jax.tree.map(lambda a: np.asarray(a, np.float64), video.sample_video(cfg, jax.random.key(5), LAYOUT, 64))
    pts = LAYOUT.array.astype(np.float64)
    R = Rotation.from_quat(v.q.reshape(-1, 4)).as_matrix().reshape(v.q.shape[:2] + (3, 3))
    X = np.einsum("ntij,kj->ntki", R, pts) + v.t[:, :, None, :]
    xy_true = X[..., :2] / X[..., 2:]
    rad = np.sqrt(np.mean(np.sum((pts - pts.mean(0)) ** 2, -1)))
    sigma = cfg.noise_2d * rad / v.t[..., 2]  # normalised units (f cancels)
    z = (v.xy - xy_true) / sigma[..., None, None]
    assert abs(np.std(z) - 1) < 0.03
    corr = np.mean(z[:, 1:] * z[:, :-1]) / np.mean(z * z)
    assert abs(corr - 0.6) < 0.03
    # and the landmarks are inside the image at this configuration's positions
    uv = camera.normalized_to_pixels(jnp.asarray(v.xy), v.intrinsics[:, None, None, :])
    assert (
        np.mean(np.all((np.asarray(uv) >= 0) & (np.asarray(uv) <= v.image_size[:, None, None, :]), axis=(2, 3))) > 0.99
    )
