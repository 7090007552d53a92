"""Synthetic data protocols: pure, jit-compatible samplers of (landmarks, pose) batches.

Every sampler takes the PRNG key first and the batch size explicitly, and returns a `Batch`
in pnpjax's frame (OpenCV camera; see camera.py). Samples that the protocol rejects are not
discarded on the host: a fixed number of candidates is drawn, the accepted ones are moved to
the front (`jnp.nonzero(..., size=B)`), and `valid` marks the (rare) unfilled tail, which
losses and metrics ignore. Shapes are static, so the whole thing lives inside the jitted step.

Protocols
---------
`SeedProtocol`: the original recipe of SEED.md, with scale factor s (train 2, test 1):
  Euler (x, y, z) ~ U(-60, 60) deg each, R = Rz Ry Rx, in the seed's OpenGL-like camera frame;
  t ~ U([-40s, 40s]^2 x [-40s, s]) (camera looks down -z); every posed 3D point gets
  U(-1, 1) cm jitter per axis before projection with focal 1 and principal point 0.5; keep the
  sample only if all image coordinates are in (-0.1, 1.1).
  Instead of drawing t in the whole box and discarding ~90 % of draws, the sampler draws the
  depth d = -t_z from a proposal proportional to an upper bound of the in-frame (t_x, t_y)
  area, accepts with probability (true area / bound), then draws t_x, t_y uniformly from the
  in-frame intervals (they are exact intervals, because u depends only on X and Z, v on Y and
  Z). This is exact rejection sampling of the same distribution, at ~5x the acceptance.
  One documented difference: samples with a point at or behind the camera are excluded; the
  original's filter can accept such a sample through the sign flip of X/Z (measured by
  `tests/test_protocols.py` against a literal re-implementation: never seen in 10^6 draws).
  Cost: one threefry draw of 4 + ceil((3K + 3) / 2) 32-bit words per candidate (the angles and
  the depth at 24-bit resolution, jitter, acceptance and t_x, t_y at 16-bit), candidates on the
  minor axis of every array so that XLA vectorises over them.

`RealisticProtocol`: what a real webcam/phone user gives the solver (all numbers are fields):
  camera: horizontal FOV ~ U(40, 90) deg, aspect ratio one of 4:3, 16:9, 1:1, 3:4, 9:16
  (portrait and landscape), long side ~ U(480, 1920) px, square pixels, principal point at the
  centre +- 2 % of the size; head: depth (of the layout origin) log-uniform in [25, 150] cm,
  yaw ~ U(+-70), pitch ~ U(+-45), roll ~ U(+-35) deg about the layout's up/right/facing axes
  from the frontal pose; lateral position uniform over every position that keeps all landmarks
  in the image; shape: global head-size factor ~ U(0.9, 1.1) times the layout, plus
  N(0, 0.3 cm) per-point, per-axis jitter; landmark noise: N(0, sigma) px per coordinate with
  sigma = 0.03 x the face's size in the image (RMS radius of the layout about its centroid,
  projected at its depth); samples whose noisy landmarks leave the image are rejected.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pnpjax import camera, geometry


class Batch(NamedTuple):
    """A batch of B samples in pnpjax's frame (OpenCV camera)."""

    xy: jax.Array  # (B, K, 2) noisy normalised image coordinates, the network input
    q: jax.Array  # (B, 4) true rotation, (x, y, z, w), w >= 0
    t: jax.Array  # (B, 3) true translation, layout units
    intrinsics: jax.Array  # (B, 4) fx, fy, cx, cy in pixels
    image_size: jax.Array  # (B, 2) width, height in pixels
    valid: jax.Array  # (B,) bool; False only in the unfilled tail of a batch


@dataclasses.dataclass(frozen=True)
class SeedProtocol:
    """The original recipe (see module docstring)."""

    scale: float = 2.0  # s: 2 for training, 1 for the test set
    max_angle_deg: float = 60.0
    noise_cm: float = 1.0  # half-width of the uniform per-axis 3D jitter
    margin: float = 0.1  # image coords must lie in (-margin, 1 + margin)
    oversample: float = 2.0  # candidates per returned sample (acceptance: 0.59 at s=2, 0.34 at s=1)


@dataclasses.dataclass(frozen=True)
class RealisticProtocol:
    """A camera/head distribution for real use (see module docstring)."""

    hfov_deg: tuple[float, float] = (40.0, 90.0)
    aspects: tuple[float, ...] = (4 / 3, 16 / 9, 1.0, 3 / 4, 9 / 16)  # width / height
    long_side_px: tuple[float, float] = (480.0, 1920.0)
    principal_jitter: float = 0.02  # fraction of width/height
    depth_cm: tuple[float, float] = (25.0, 150.0)  # log-uniform
    yaw_deg: float = 70.0
    pitch_deg: float = 45.0
    roll_deg: float = 35.0
    head_scale: tuple[float, float] = (0.9, 1.1)
    shape_jitter_cm: float = 0.3  # std of per-point, per-axis Gaussian jitter
    noise_2d: float = 0.03  # landmark noise std as a fraction of the face's image size
    oversample: float = 1.3


Protocol = SeedProtocol | RealisticProtocol

SEED_TRAIN = SeedProtocol(scale=2.0)
SEED_TEST = SeedProtocol(scale=1.0, oversample=4.0)


class _Draws:
    """All of a candidate set's random numbers from ONE uniform draw of shape (m, n), handed out
    column by column. One threefry instance instead of a dozen keeps compilation short."""

    def __init__(self, key: jax.Array, m: int, n: int, dtype=jnp.float32):
        self.u = jax.random.uniform(key, (m, n), dtype)
        self.m, self.n, self.i = m, n, 0

    def uniform(self, shape_tail: tuple[int, ...] = (), lo=0.0, hi=1.0) -> jax.Array:
        c = math.prod(shape_tail)
        assert self.i + c <= self.n, "more random numbers taken than drawn"
        u = self.u[:, self.i : self.i + c].reshape((self.m, *shape_tail))
        self.i += c
        return lo + (hi - lo) * u

    def normal(self, shape_tail: tuple[int, ...]) -> jax.Array:
        eps = jnp.finfo(self.u.dtype).eps
        return jax.scipy.special.ndtri(jnp.clip(self.uniform(shape_tail), eps, 1 - eps))


def _compact(accept: jax.Array, batch_size: int, *arrays: jax.Array):
    """Move accepted candidates to the front; returns (valid_B, *arrays_B)."""
    (idx,) = jnp.nonzero(accept, size=batch_size, fill_value=0)
    valid = jnp.arange(batch_size) < jnp.sum(accept)
    return (valid, *(a[idx] for a in arrays))


def _threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds; Salmon et al. 2011) of the uint32 counter pairs (x1, x2)
    under the key (k1, k2), written out round by round as JAX's own GPU lowering is."""
    rot = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in rot[i % 2]:
            x1 = x1 + x2
            x2 = ((x2 << jnp.uint32(r)) | (x2 >> jnp.uint32(32 - r))) ^ x1
        x1, x2 = x1 + ks[(i + 1) % 3], x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x1, x2


def threefry_words(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 words of `shape`, bit for bit `jax.random.bits(key, shape, uint32)` under
    `jax.threefry_partitionable(False)` for a threefry key (other key types: that call itself).

    JAX lowers threefry on CPU as a loop of 5 steps over memory; written out, the 20 rounds fuse
    into one loop over the counters (an iota)."""
    n = math.prod(shape)
    if str(jax.random.key_impl(key)) != "threefry2x32":
        with jax.threefry_partitionable(False):
            return jax.random.bits(key, shape, jnp.uint32)
    assert 0 < n < 2**32 - 1, n
    k = jax.random.key_data(key)
    h = (n + 1) // 2
    c2 = jnp.arange(h, 2 * h, dtype=jnp.uint32)
    if n % 2:  # JAX pads an odd count with a zero counter
        c2 = jnp.where(c2 == n, jnp.uint32(0), c2)
    x1, x2 = _threefry2x32(k[0], k[1], jnp.arange(h, dtype=jnp.uint32), c2)
    # Materialised: fused into each consumer of a word, the rounds would be recomputed per use.
    return jax.lax.optimization_barrier(jnp.concatenate([x1, x2])[:n].reshape(shape))


def _uniform_bits(key: jax.Array, m: int, n24: int, n16: int, dtype) -> tuple[jax.Array, jax.Array]:
    """(n24, m) and (n16, m) uniforms in (0, 1) from ONE threefry draw of n24 + ceil(n16 / 2)
    32-bit words per candidate: 24-bit uniforms from whole words, 16-bit ones from half words
    (bin midpoints, so both are symmetric about 1/2). Candidates are the minor axis, so the
    arithmetic on them vectorises. Threefry's non-partitionable variant is 2x cheaper on CPU; the
    bits are still a function of the key alone (see train.py on sharding)."""
    words = threefry_words(key, (n24 + (n16 + 1) // 2, m))
    u24 = ((words[:n24] >> 8).astype(dtype) + 0.5) * (2.0**-24)
    half = words[n24:]
    u16 = jnp.concatenate([half >> 16, half & 0xFFFF], 0)[:n16]
    return u24, (u16.astype(dtype) + 0.5) * (2.0**-16)


def _seed_candidates(p: SeedProtocol, key: jax.Array, pts: jax.Array, m: int):
    """m candidate draws of the seed recipe, candidates on the LAST axis (it vectorises on CPU).

    Returns (accept (m,), xy (K, 2, m), q (4, m), t (3, m)) in OpenCV frame.
    Random numbers per candidate: the 3 Euler angles and the depth with 24-bit resolution, the
    3K jitter components, the acceptance test and t_x, t_y with 16-bit resolution (bin width
    2^-16 of their range: 3e-5 cm of jitter), i.e. 4 + ceil((3K + 3) / 2) threefry words.
    """
    k = pts.shape[0]
    s = p.scale
    u24, u16 = _uniform_bits(key, m, 4, 3 * k + 3, pts.dtype)
    # Quaternion of R = Rz Ry Rx from the half angles (closed form), then R from it.
    a = math.radians(p.max_angle_deg)
    half = (u24[:3] - 0.5) * a  # (3, m): half of U(-a, a)
    c, sn = jnp.cos(half), jnp.sin(half)
    qw = c[0] * c[1] * c[2] + sn[0] * sn[1] * sn[2]
    qx = sn[0] * c[1] * c[2] - c[0] * sn[1] * sn[2]
    qy = c[0] * sn[1] * c[2] + sn[0] * c[1] * sn[2]
    qz = c[0] * c[1] * sn[2] - sn[0] * sn[1] * c[2]
    # Materialised here: fused into R's nine entries below, XLA recomputes the sines and cosines
    # per entry (a sixth of the whole train step on CPU). Values are unchanged.
    qx, qy, qz, qw = jax.lax.optimization_barrier((qx, qy, qz, qw))
    R_gl = jnp.stack(
        [
            jnp.stack([1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)]),
            jnp.stack([2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)]),
            jnp.stack([2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)]),
        ]
    )  # (3, 3, m)
    noise = (2.0 * u16[: 3 * k] - 1.0).reshape(k, 3, m) * p.noise_cm
    # (K, 3, m) posed, before translation; three products added (a reduction over the short axis
    # of length 3 is several times slower on CPU), in the order of the reduction (same values).
    rel = R_gl[None, :, 0] * pts[:, 0, None, None] + R_gl[None, :, 1] * pts[:, 1, None, None]
    rel = rel + R_gl[None, :, 2] * pts[:, 2, None, None] + noise
    ax, ay, bz = rel[:, 0], rel[:, 1], rel[:, 2]

    # Depth d = -t_z. In-frame: |(a_i + t_x) / (d - b_i)| < h with h = 0.5 + margin, so for
    # d > max b_i the feasible t_x is the interval (max(-h D_i - a_i), min(h D_i - a_i)),
    # of length 2 h d - c_x (c_x depends on R and the noise). c_x >= 2h max_i b_i
    # >= 2h (-|mean p| - noise) =: c_min, so (2 h d - c_min)^2 bounds the feasible area.
    h = 0.5 + p.margin
    c_min = -2 * h * (jnp.linalg.norm(jnp.mean(pts, 0)) + math.sqrt(3) * p.noise_cm)
    d_lo, d_hi = jnp.maximum(-s, c_min / (2 * h)), 40.0 * s
    w_lo, w_hi = 2 * h * d_lo - c_min, 2 * h * d_hi - c_min
    w = jnp.cbrt(w_lo**3 + u24[3] * (w_hi**3 - w_lo**3))  # density of w proportional to w^2
    d = (w + c_min) / (2 * h)

    depth = d - bz  # (K, m), depth of each point (seed camera looks down -z)
    box = 40.0 * s

    def interval(c):
        lo = jnp.maximum(jnp.max(-h * depth - c, axis=0), -box)
        hi = jnp.minimum(jnp.min(h * depth - c, axis=0), box)
        return lo, hi

    lo_x, hi_x = interval(ax)
    lo_y, hi_y = interval(ay)
    area = jnp.maximum(hi_x - lo_x, 0) * jnp.maximum(hi_y - lo_y, 0)
    in_front = jnp.all(depth > camera.MIN_DEPTH, axis=0)
    u_acc, u_x, u_y = u16[3 * k :]
    accept = in_front & (u_acc * w**2 < area)
    tx = lo_x + u_x * (hi_x - lo_x)
    ty = lo_y + u_y * (hi_y - lo_y)
    # Strict inequalities of the filter (measure-zero boundary cases, and float rounding).
    inv_depth = 1.0 / jnp.maximum(depth, camera.MIN_DEPTH)
    x_gl, y_gl = (ax + tx) * inv_depth, (ay + ty) * inv_depth
    accept &= jnp.all((jnp.abs(x_gl) < h) & (jnp.abs(y_gl) < h), axis=0)

    # To pnpjax's frame: X_cv = F X_gl with F = diag(1, -1, -1), i.e. q = (1, 0, 0, 0) * q_gl
    # = (w, -z, y, -x), then w >= 0; t = F t_gl; xy = (X/depth, -Y/depth) = OpenCV's (x/z, y/z).
    q = jnp.stack([qw, -qz, qy, -qx]) * jnp.where(qx > 0, -1.0, 1.0).astype(pts.dtype)
    t = jnp.stack([tx, -ty, d])
    xy = jnp.stack([x_gl, -y_gl], 1)
    return accept, xy, q, t


def sample_seed(p: SeedProtocol, key: jax.Array, pts: jax.Array, batch_size: int) -> Batch:
    """A batch of the seed recipe (see module docstring). pts: (K, 3) layout, cm."""
    k = pts.shape[0]
    m = int(math.ceil(batch_size * p.oversample))
    accept, xy, q, t = _seed_candidates(p, key, pts, m)
    # One gather of the accepted columns of all outputs, then one transpose to batch-major.
    valid, packed = _compact(accept, batch_size, jnp.concatenate([xy.reshape(2 * k, m), q, t]).T)
    xy, q, t = packed[:, : 2 * k].reshape(batch_size, k, 2), packed[:, 2 * k : 2 * k + 4], packed[:, 2 * k + 4 :]
    dtype = xy.dtype
    intr = jnp.broadcast_to(jnp.asarray(camera.SEED_CAMERA.intrinsics, dtype), (batch_size, 4))
    size = jnp.ones((batch_size, 2), dtype)
    return Batch(xy, q, t, intr, size, valid)


def _realistic_candidates(p: RealisticProtocol, key: jax.Array, pts: jax.Array, R_front: jax.Array, m: int):
    k = pts.shape[0]
    q_front = geometry.matrix_to_quat(R_front)
    dtype = pts.dtype
    r = _Draws(key, m, 13 + 5 * k, dtype)
    # Camera.
    aspects = jnp.asarray(p.aspects, dtype)
    aspect = aspects[jnp.minimum((r.uniform() * len(p.aspects)).astype(jnp.int32), len(p.aspects) - 1)]
    long_side = r.uniform((), *p.long_side_px)
    width = jnp.where(aspect >= 1, long_side, long_side * aspect)
    height = jnp.where(aspect >= 1, long_side / aspect, long_side)
    hfov = jnp.radians(r.uniform((), *p.hfov_deg))
    f = 0.5 * width / jnp.tan(0.5 * hfov)
    pp = r.uniform((2,), -p.principal_jitter, p.principal_jitter)
    cx, cy = width * (0.5 + pp[:, 0]), height * (0.5 + pp[:, 1])
    intr = jnp.stack([f, f, cx, cy], -1)
    size = jnp.stack([width, height], -1)

    # Rotation: frontal pose, then head motion about the layout's own axes:
    # R = R_front @ R_motion, R_motion = Rot(facing, roll) Rot(up, yaw) Rot(right, pitch).
    lim = jnp.radians(jnp.asarray([p.pitch_deg, p.yaw_deg, p.roll_deg], dtype))
    ang = r.uniform((3,), -1.0, 1.0) * lim
    # The layout axes that the camera sees as right, down, forward are the rows of R_front.
    right, down, fwd = R_front[0], R_front[1], R_front[2]
    up, facing = -down, -fwd

    q_motion = geometry.quat_multiply(
        geometry.axis_angle_to_quat(facing, ang[:, 2]),
        geometry.quat_multiply(
            geometry.axis_angle_to_quat(up, ang[:, 1]), geometry.axis_angle_to_quat(right, ang[:, 0])
        ),
    )
    q = geometry.quat_canonical(geometry.quat_multiply(q_front, q_motion))
    R = geometry.quat_to_matrix(q)

    # Shape variation of the observed object (the pose stays defined for the nominal layout).
    scale = r.uniform((1, 1), *p.head_scale)
    jitter = p.shape_jitter_cm * r.normal((k, 3))
    rel = jnp.einsum("mij,mkj->mki", R, scale * pts[None] + jitter)

    # Depth of the layout origin, log-uniform; then the lateral position, uniform over the
    # interval that keeps every landmark in the image: 0 <= f (X_i + t_x) / Z_i + c <= W.
    lo_d, hi_d = math.log(p.depth_cm[0]), math.log(p.depth_cm[1])
    tz = jnp.exp(r.uniform((), lo_d, hi_d))
    depth = tz[:, None] + rel[..., 2]

    def interval(c, principal, extent):
        lo = jnp.max(-principal[:, None] / f[:, None] * depth - c, axis=1)
        hi = jnp.min((extent - principal)[:, None] / f[:, None] * depth - c, axis=1)
        return lo, hi

    lo_x, hi_x = interval(rel[..., 0], cx, width)
    lo_y, hi_y = interval(rel[..., 1], cy, height)
    tx = lo_x + r.uniform() * (hi_x - lo_x)
    ty = lo_y + r.uniform() * (hi_y - lo_y)
    t = jnp.stack([tx, ty, tz], -1)
    accept = (hi_x > lo_x) & (hi_y > lo_y) & jnp.all(depth > 1.0, axis=1)

    uv = camera.project_pixels(rel + t[:, None, :], intr)
    centred = pts - jnp.mean(pts, 0)
    rms_radius = jnp.sqrt(jnp.mean(jnp.sum(centred**2, -1)))
    face_px = f * scale[:, 0, 0] * rms_radius / tz
    sigma = p.noise_2d * face_px
    uv = uv + sigma[:, None, None] * r.normal((k, 2))
    inside = (uv >= 0) & (uv <= size[:, None, :])
    accept &= jnp.all(inside, axis=(1, 2))
    xy = camera.pixels_to_normalized(uv, intr)
    return accept, xy, q, t, intr, size


def sample_realistic(
    p: RealisticProtocol, key: jax.Array, pts: jax.Array, R_front: jax.Array, batch_size: int
) -> Batch:
    """A batch of the realistic protocol. pts: (K, 3) layout; R_front: its frontal rotation."""
    m = int(math.ceil(batch_size * p.oversample))
    accept, xy, q, t, intr, size = _realistic_candidates(p, key, pts, R_front, m)
    valid, xy, q, t, intr, size = _compact(accept, batch_size, xy, q, t, intr, size)
    return Batch(xy, q, t, intr, size, valid)


def sample(protocol: Protocol, key: jax.Array, layout, batch_size: int, dtype=jnp.float32) -> Batch:
    """`batch_size` draws of `protocol` for `layout` (a layouts.Layout) from `key`.

    Compiled once per (protocol, layout, batch size, dtype) and process, like `sample_jit`: a
    call from eager code is one dispatch, not a stream of eager operations. A protocol whose
    fields are traced values (an ablation that vmaps over them) is sampled inline instead."""
    try:
        hash(protocol)
    except TypeError:
        return _sample(protocol, key, layout, batch_size, dtype)
    return _sample_compiled(protocol, key, layout, batch_size, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _sample_compiled(protocol: Protocol, key: jax.Array, layout, batch_size: int, dtype) -> Batch:
    return _sample(protocol, key, layout, batch_size, dtype)


def _sample(protocol: Protocol, key: jax.Array, layout, batch_size: int, dtype=jnp.float32) -> Batch:
    """Dispatch on the protocol type (traceable)."""
    pts = jnp.asarray(layout.array, dtype)
    if isinstance(protocol, SeedProtocol):
        return sample_seed(protocol, key, pts, batch_size)
    if isinstance(protocol, RealisticProtocol):
        return sample_realistic(protocol, key, pts, jnp.asarray(layout.frontal_rotation, dtype), batch_size)
    raise TypeError(f"unknown protocol {protocol!r}")


def sample_jit(protocol: Protocol, key: jax.Array, layout, batch_size: int) -> Batch:
    """`sample` (float32) of a hashable protocol: the same compiled program, once per (protocol,
    layout, batch size) for the whole process."""
    return _sample_compiled(protocol, key, layout, batch_size, jnp.dtype(jnp.float32))
