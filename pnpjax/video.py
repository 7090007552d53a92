"""Synthetic face video: sequences of landmarks from a moving head, pure JAX (jit, vmapped).

Built on the realistic protocol's camera, head and noise model (protocols.RealisticProtocol), with
time added. A sequence is `num_segments` segments of `segment_frames` frames at `fps`; each
segment is one kind of motion, drawn independently:

  * still: the head holds its pose;
  * slow: a turn (yaw/pitch, a little roll) whose angles' rate peaks at U(slow_speed_dps), with a
    smooth start and stop (profile tau - sin(2 pi tau) / (2 pi), tau the segment's fraction); the
    geodesic speed of a turn that mixes axes is within sqrt(3) of that rate;
  * fast: a shake (yaw) or nod (pitch) about the current pose, A sin(2 pi n tau) sin(pi tau) with n
    full cycles in the segment and A set so that the peak angular speed is U(fast_speed_dps);
  * lean: the head moves in or out along its viewing ray, depth x exp(+-U(lean_log)), same smooth
    profile as a turn.

The pose is continuous across segments (each starts where the previous ended). Per sequence: one
camera (the realistic protocol's FOV, aspect and size), one person (head size factor and per-point
shape jitter, fixed over time), one image position of the head. Per frame: landmark noise of std
`noise_2d` x the face's image size, AR(1)-correlated from frame to frame with coefficient
`noise_corr` (a detector's error moves slowly); with probability `outlier_rate` one landmark jumps
by U(outlier_px) pixels in a random direction; with probability `drop_rate` the frame has no
landmarks (the detector missed it; frame 0 is never dropped).

Conventions as everywhere in pnpjax: OpenCV camera frame, normalised image coordinates, (x, y, z, w)
quaternions with w >= 0 of R_cam_layout, layout units (cm).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import camera, geometry

STILL, SLOW, FAST, LEAN = range(4)
KINDS = ("still", "slow", "fast", "lean")


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """Every number of the synthetic video (see the module docstring)."""

    fps: float = 30.0
    num_segments: int = 8
    segment_frames: int = 45  # 1.5 s at 30 fps
    kind_probs: tuple[float, float, float, float] = (0.3, 0.25, 0.25, 0.2)  # still, slow, fast, lean
    # Camera (as protocols.RealisticProtocol).
    hfov_deg: tuple[float, float] = (40.0, 90.0)
    aspects: tuple[float, ...] = (4 / 3, 16 / 9, 1.0, 3 / 4, 9 / 16)
    long_side_px: tuple[float, float] = (480.0, 1920.0)
    principal_jitter: float = 0.02
    # Head: where it is and how it starts.
    depth_cm: tuple[float, float] = (35.0, 110.0)  # log-uniform start depth
    depth_limits_cm: tuple[float, float] = (30.0, 140.0)  # a lean never leaves this range
    lateral: float = 0.3  # head origin within this fraction of the half-image from the centre
    start_deg: tuple[float, float, float] = (20.0, 30.0, 10.0)  # |pitch|, |yaw|, |roll| at the start, uniform
    limits_deg: tuple[float, float, float] = (35.0, 60.0, 25.0)  # a slow turn never ends beyond these
    # Motion.
    slow_speed_dps: tuple[float, float] = (10.0, 40.0)  # peak angular speed of a turn, deg/s
    slow_axis_weights: tuple[float, float, float] = (0.6, 1.0, 0.3)  # pitch, yaw, roll share of a turn
    fast_speed_dps: tuple[float, float] = (100.0, 200.0)  # peak angular speed of a shake/nod
    fast_cycles: tuple[int, ...] = (2, 3)  # full oscillations per fast segment
    lean_log: tuple[float, float] = (0.15, 0.35)  # |log depth change| of a lean
    # One person per sequence.
    head_scale: tuple[float, float] = (0.9, 1.1)
    shape_jitter_cm: float = 0.3
    # Detector.
    noise_2d: float = 0.03  # landmark noise std, fraction of the face's image size (RMS radius)
    noise_corr: float = 0.5  # AR(1) coefficient of the landmark noise between consecutive frames
    outlier_rate: float = 0.02  # probability that a frame has one outlier landmark
    outlier_px: tuple[float, float] = (20.0, 60.0)  # its displacement, pixels
    drop_rate: float = 0.03  # probability that a frame has no landmarks

    @property
    def num_frames(self) -> int:
        return self.num_segments * self.segment_frames


SMOKE = VideoConfig(num_segments=4, segment_frames=30)


class Video(NamedTuple):
    """A batch of N sequences of T frames (leading axes (N, T) unless noted)."""

    xy: jax.Array  # (N, T, K, 2) observed normalised coordinates (noise and outliers included)
    outlier_xy: jax.Array  # (N, T, K, 2) the outliers' share of xy (xy - outlier_xy: the clean twin)
    present: jax.Array  # (N, T) bool: the frame has landmarks
    outlier: jax.Array  # (N, T) bool: one of its landmarks is an outlier
    q: jax.Array  # (N, T, 4) true rotation (x, y, z, w), w >= 0
    t: jax.Array  # (N, T, 3) true translation, cm
    kind: jax.Array  # (N, T) int: STILL, SLOW, FAST or LEAN
    segment: jax.Array  # (N, T) int: the segment's index in the sequence
    axis: jax.Array  # (N, T, 3) unit motion direction of the segment in (pitch, yaw, roll) angles (0 if none)
    time: jax.Array  # (N, T) seconds from the first frame
    intrinsics: jax.Array  # (N, 4) fx, fy, cx, cy, pixels
    image_size: jax.Array  # (N, 2) width, height, pixels


def _turn_profile(tau: jax.Array) -> jax.Array:
    """Smooth 0 -> 1 over tau in [0, 1] with zero speed at both ends; peak speed 2 (per unit tau)."""
    return tau - jnp.sin(2 * jnp.pi * tau) / (2 * jnp.pi)


def _shake_profile(tau: jax.Array, n: jax.Array) -> jax.Array:
    """sin(2 pi n tau) sin(pi tau): n oscillations, zero angle and speed at both ends."""
    return jnp.sin(2 * jnp.pi * n * tau) * jnp.sin(jnp.pi * tau)


@functools.cache
def _shake_peak_speeds(cycles: tuple[int, ...]) -> np.ndarray:
    """max over tau of |d/dtau _shake_profile| for each n (a dense grid, computed once)."""
    tau = np.linspace(0.0, 1.0, 20001)
    out = []
    for n in cycles:
        d = 2 * np.pi * n * np.cos(2 * np.pi * n * tau) * np.sin(np.pi * tau) + np.pi * np.sin(
            2 * np.pi * n * tau
        ) * np.cos(np.pi * tau)
        out.append(np.max(np.abs(d)))
    return np.asarray(out)


def _motion_quat(R_front: jax.Array, ang: jax.Array) -> jax.Array:
    """(..., 3) (pitch, yaw, roll) radians about the layout's right/up/facing axes -> q (x, y, z, w).

    The realistic protocol's parametrisation: R = R_front Rot(facing, roll) Rot(up, yaw) Rot(right, pitch).
    """
    right, down, fwd = R_front[0], R_front[1], R_front[2]
    q_motion = geometry.quat_multiply(
        geometry.axis_angle_to_quat(-fwd, ang[..., 2]),
        geometry.quat_multiply(
            geometry.axis_angle_to_quat(-down, ang[..., 1]), geometry.axis_angle_to_quat(right, ang[..., 0])
        ),
    )
    return geometry.quat_canonical(geometry.quat_multiply(geometry.matrix_to_quat(R_front), q_motion))


def _one_sequence(cfg: VideoConfig, key: jax.Array, pts: jax.Array, R_front: jax.Array) -> Video:
    """One sequence (no batch axis)."""
    dtype = pts.dtype
    S, L, T, K = cfg.num_segments, cfg.segment_frames, cfg.num_frames, pts.shape[0]
    D = L / cfg.fps  # segment duration, s
    keys = jax.random.split(key, 8)
    u = lambda k, shape=(), lo=0.0, hi=1.0: jax.random.uniform(k, shape, dtype, lo, hi)  # noqa: E731

    # Camera.
    kc = jax.random.split(keys[0], 5)
    aspect = jnp.asarray(cfg.aspects, dtype)[jax.random.randint(kc[0], (), 0, len(cfg.aspects))]
    long_side = u(kc[1], (), *cfg.long_side_px)
    width = jnp.where(aspect >= 1, long_side, long_side * aspect)
    height = jnp.where(aspect >= 1, long_side / aspect, long_side)
    f = 0.5 * width / jnp.tan(0.5 * jnp.radians(u(kc[2], (), *cfg.hfov_deg)))
    pp = u(kc[3], (2,), -cfg.principal_jitter, cfg.principal_jitter)
    intr = jnp.stack([f, f, width * (0.5 + pp[0]), height * (0.5 + pp[1])])
    size = jnp.stack([width, height])
    # Head origin's direction (normalised image coordinates), fixed for the sequence.
    m = u(kc[4], (2,), -cfg.lateral, cfg.lateral) * 0.5 * size / f

    # Segments: kinds and their random numbers.
    ks = jax.random.split(keys[1], 4)
    kind = jax.random.choice(ks[0], 4, (S,), p=jnp.asarray(cfg.kind_probs, dtype) / sum(cfg.kind_probs))
    r = u(ks[1], (S, 6))
    dirn = jax.random.normal(ks[2], (S, 3), dtype) * jnp.asarray(cfg.slow_axis_weights, dtype)
    dirn = dirn / jnp.linalg.norm(dirn, axis=-1, keepdims=True)
    cyc_i = jax.random.randint(ks[3], (S,), 0, len(cfg.fast_cycles))
    cycles = jnp.asarray(cfg.fast_cycles, dtype)[cyc_i]
    shake_peak = jnp.asarray(_shake_peak_speeds(tuple(cfg.fast_cycles)), dtype)[cyc_i]

    k0 = jax.random.split(keys[2], 2)
    ang0 = u(k0[0], (3,), -1.0, 1.0) * jnp.radians(jnp.asarray(cfg.start_deg, dtype))
    logd0 = u(k0[1], (), math.log(cfg.depth_cm[0]), math.log(cfg.depth_cm[1]))
    lim = jnp.radians(jnp.asarray(cfg.limits_deg, dtype))
    lo_d, hi_d = math.log(cfg.depth_limits_cm[0]), math.log(cfg.depth_limits_cm[1])
    tau = jnp.arange(L, dtype=dtype) / L  # the segment's frames; tau = 1 is the next segment's first

    def segment(state, s):
        ang, logd = state
        k, rs, d = kind[s], r[s], dirn[s]
        # slow turn: from ang to the target, direction turned back where it would pass a limit.
        delta = jnp.radians(u_between(rs[0], cfg.slow_speed_dps)) * D / 2  # peak speed = 2 delta / D
        d = jnp.where(jnp.abs(ang + delta * d) > lim, -jnp.sign(ang) * jnp.abs(d), d)
        target = jnp.clip(ang + delta * d, -lim, lim)
        turn = ang + (target - ang) * _turn_profile(tau)[:, None]
        # fast shake (yaw) or nod (pitch) about ang.
        ax = jnp.where(rs[1] < 0.5, jnp.asarray([0.0, 1.0, 0.0], dtype), jnp.asarray([1.0, 0.0, 0.0], dtype))
        amp = jnp.radians(u_between(rs[2], cfg.fast_speed_dps)) * D / shake_peak[s]
        shake = ang + amp * _shake_profile(tau, cycles[s])[:, None] * ax
        # lean: log depth moves by +-U(lean_log), towards the middle of the allowed range if needed.
        dl = u_between(rs[3], cfg.lean_log) * jnp.where(rs[4] < 0.5, 1.0, -1.0)
        dl = jnp.where((logd + dl > hi_d) | (logd + dl < lo_d), -dl, dl)
        logd_t = jnp.clip(logd + dl, lo_d, hi_d)
        lean = logd + (logd_t - logd) * _turn_profile(tau)
        still_a = jnp.broadcast_to(ang, (L, 3))
        still_d = jnp.broadcast_to(logd, (L,))
        angs = jnp.stack([still_a, turn, shake, still_a])[k]
        logds = jnp.stack([still_d, still_d, still_d, lean])[k]
        new_ang = jnp.where(k == SLOW, target, ang)
        new_logd = jnp.where(k == LEAN, logd_t, logd)
        mot = jnp.stack(
            [
                jnp.zeros(3, dtype),
                (target - ang) / jnp.maximum(jnp.linalg.norm(target - ang), 1e-9),
                ax,
                jnp.zeros(3, dtype),
            ]
        )[k]
        return (new_ang, new_logd), (angs, logds, mot)

    def u_between(x, lohi):
        return lohi[0] + (lohi[1] - lohi[0]) * x

    _, (angs, logds, mot) = jax.lax.scan(segment, (ang0, logd0), jnp.arange(S))
    angs, logds = angs.reshape(T, 3), logds.reshape(T)
    q = _motion_quat(R_front, angs)
    depth = jnp.exp(logds)
    t = depth[:, None] * jnp.concatenate([m, jnp.ones((1,), dtype)])[None, :]

    # The person: head size and shape, fixed for the sequence.
    kp = jax.random.split(keys[3], 2)
    scale = u(kp[0], (), *cfg.head_scale)
    shape = scale * pts + cfg.shape_jitter_cm * jax.random.normal(kp[1], (K, 3), dtype)
    R = geometry.quat_to_matrix(q)
    X = jnp.einsum("tij,kj->tki", R, shape) + t[:, None, :]
    uv = camera.project_pixels(X, intr)

    # Landmark noise: AR(1) over frames, std noise_2d x the face's image size (as the protocol).
    rad = jnp.sqrt(jnp.mean(jnp.sum((pts - jnp.mean(pts, 0)) ** 2, -1)))
    sigma_px = cfg.noise_2d * f * scale * rad / t[:, 2]  # (T,)
    eps = jax.random.normal(keys[4], (T, K, 2), dtype)
    rho = cfg.noise_corr

    def ar(prev, e):
        n = rho * prev + math.sqrt(1 - rho * rho) * e
        return n, n

    _, noise = jax.lax.scan(ar, eps[0], eps[1:])
    noise = jnp.concatenate([eps[:1], noise]) * sigma_px[:, None, None]

    # Outliers: one landmark per affected frame jumps.
    ko = jax.random.split(keys[5], 4)
    outlier = u(ko[0], (T,)) < cfg.outlier_rate
    which = jax.random.randint(ko[1], (T,), 0, K)
    mag = u(ko[2], (T,), *cfg.outlier_px)
    phi = u(ko[3], (T,), 0.0, 2 * math.pi)
    jump = (mag * outlier)[:, None] * jnp.stack([jnp.cos(phi), jnp.sin(phi)], -1)  # (T, 2) px
    jump = jnp.where((jnp.arange(K)[None, :] == which[:, None])[..., None], jump[:, None, :], 0.0)
    present = (u(keys[6], (T,)) >= cfg.drop_rate).at[0].set(True)

    xy_clean = camera.pixels_to_normalized(uv + noise, intr)
    outlier_xy = jump / intr[:2]
    frames = jnp.arange(T)
    return Video(
        xy=xy_clean + outlier_xy,
        outlier_xy=outlier_xy,
        present=present,
        outlier=outlier & present,
        q=q,
        t=t,
        kind=jnp.repeat(kind, L),
        segment=frames // L,
        axis=jnp.repeat(mot, L, axis=0),
        time=frames.astype(dtype) / cfg.fps,
        intrinsics=intr,
        image_size=size,
    )


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def sample_video(cfg: VideoConfig, key: jax.Array, layout, num_sequences: int) -> Video:
    """num_sequences independent sequences (vmapped), compiled once per (cfg, layout, N).

    layout: a layouts.Layout (static). Shapes as `Video`.
    """
    pts = jnp.asarray(layout.array, jnp.float32)
    R_front = jnp.asarray(layout.frontal_rotation, jnp.float32)
    keys = jax.random.split(key, num_sequences)
    return jax.vmap(lambda k: _one_sequence(cfg, k, pts, R_front))(keys)
