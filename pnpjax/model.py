"""The solver: a Flax MLP between standardised landmarks and a standardised pose vector.

    xy (B, K, 2) normalised image coords --flatten, (x - x_mean) / x_std--> MLP
    --> z (B, D) --z * y_std + y_mean--> pose vector --decode--> (R, q, t)

The pose vector is [q (4, x y z w), t (3)] for the `quat` head (q normalised after decoding)
or [first two columns of R (6), t (3)] for the `6d` head (Gram-Schmidt). The standardisation
statistics are measured once from the training protocol (`compute_stats`) and travel with
the checkpoint, so nothing is hard-coded.

With `roll='perspective'` the landmarks are first moved (a homography) to the image of a camera
turned onto their mean viewing ray, and the roll is read there (`perspective_frame`); with
`inputs='axis'` the network is also told where the real camera's optical axis lies in that frame
(`frame_axis`), i.e. where in the image the face is.

With `roll='canonical'` the whole pipeline above runs on landmarks turned about the principal
point so that the layout's horizontal axis lies along the image x axis (`canonical_roll`), and
the in-plane turn is put back on its output pose (`apply`): a turn of the input image by any
angle turns the output pose by the same angle about the optical axis, by construction.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from pnpjax import geometry, protocols
from pnpjax.errors import ConfigError


Rotation = Literal["quat", "6d"]  # rotation head: a normalised quaternion, or 6D + Gram-Schmidt
Inputs = Literal["standardized", "centroid", "axis"]  # input treatment (see ModelConfig)
Translation = Literal["direct", "ray"]  # translation parametrisation (see ModelConfig)
Roll = Literal["none", "canonical", "perspective"]  # rotation canonicalisation (see ModelConfig)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    widths: tuple[int, ...] = (64, 64)
    rotation: Rotation = "quat"
    # Geometric preconditioning (issue 13's ablation; the shipped configs keep the defaults, the
    # only ones a TF.js layers model can express, see export.py):
    #   'standardized': the 2K coordinates, standardised (a linear map, folded into the first layer);
    #   'centroid': the landmarks centred on their centroid c and divided by their spread s (RMS
    #     distance to c), plus c and log s as 3 extra inputs; then standardised (nonlinear);
    #   'axis' (roll='perspective' only): as 'centroid', but the 2 inputs of c (~0 after the
    #     perspective turn) replaced by the real camera's optical axis seen from the turned frame,
    #     (a_x / a_z, a_y / a_z) with a = R_f^T e_z (`frame_axis`): where in the image the face is,
    #     which the perspective turn hides, as O(1) numbers (float32-safe, unlike the ~0 centroid).
    inputs: Inputs = "standardized"
    #   'direct': t is regressed as (t_x, t_y, t_z);
    #   'ray': t = exp(a) (c + b, 1): log depth a and an offset b of the centroid ray c (nonlinear).
    translation: Translation = "direct"
    #   'none': the network sees the landmarks as they are;
    #   'canonical': the landmarks are first turned about the principal point by -theta, theta the
    #     image direction of the layout's horizontal axis (`canonical_roll`, weights in
    #     Stats.roll_weights), and the output pose is turned back by Rz(theta) (nonlinear);
    #   'perspective': the camera is first turned by the rotation R_c that takes the optical axis onto
    #     the mean viewing ray of the landmarks (a homography of the image, exact for a pinhole), the
    #     roll is read and removed there, and the pose is turned back by R_c Rz(theta)
    #     (`perspective_frame`): exactly equivariant to every rotation of the camera about its centre.
    roll: Roll = "none"

    @property
    def out_dim(self) -> int:
        return {"quat": 7, "6d": 9}[self.rotation]


class Stats(NamedTuple):
    """Standardisation of inputs (flattened K*2) and of the pose vector."""

    x_mean: jax.Array
    x_std: jax.Array
    y_mean: jax.Array
    y_std: jax.Array
    # Hemisphere of quaternion targets: q and -q are one rotation, so targets take the sign
    # with q . q_ref >= 0, q_ref the layout's frontal pose. (With w >= 0 instead, a frontal
    # face in the OpenCV frame, q ~ (1, 0, 0, 0), would flip sign across the training set.)
    q_ref: jax.Array | None = None
    # (K,) weights of roll canonicalisation (ModelConfig.roll == 'canonical', else None; see
    # `roll_weights`): d = sum_k w_k (xy_k - mean xy) is the image direction of the layout's x axis.
    roll_weights: jax.Array | None = None


class Prediction(NamedTuple):
    R: jax.Array  # (B, 3, 3)
    q: jax.Array  # (B, 4) unit, x y z w
    t: jax.Array  # (B, 3)
    z: jax.Array  # (B, D) raw standardised network output


class MLP(nn.Module):
    widths: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for w in self.widths:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.out_dim)(x)


def encode_pose(rotation: str, q: ArrayLike, t: ArrayLike, q_ref: ArrayLike | None = None) -> jax.Array:
    """(B, 4) quaternion, (B, 3) translation -> (B, D) pose vector of the given head.

    For the quat head the quaternion's sign is that of the hemisphere of q_ref (w >= 0 if None).
    """
    q, t = jnp.asarray(q), jnp.asarray(t)
    if rotation == "quat":
        if q_ref is None:
            return jnp.concatenate([geometry.quat_canonical(q), t], -1)
        sign = jnp.where(jnp.sum(q * jnp.asarray(q_ref, q.dtype), -1, keepdims=True) < 0, -1.0, 1.0).astype(q.dtype)
        return jnp.concatenate([sign * q, t], -1)
    R = geometry.quat_to_matrix(q)
    return jnp.concatenate([R[..., :, 0], R[..., :, 1], t], -1)


def decode_pose(rotation: str, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(B, D) pose vector -> (R, q, t)."""
    if rotation == "quat":
        q = geometry.quat_normalize(y[..., :4])
        return geometry.quat_to_matrix(q), q, y[..., 4:7]
    R = geometry.rot6d_to_matrix(y[..., :6])
    return R, geometry.matrix_to_quat(R), y[..., 6:9]


def network(cfg: ModelConfig) -> MLP:
    return MLP(tuple(cfg.widths), cfg.out_dim)


def input_dim(cfg: ModelConfig, num_points: int) -> int:
    return 2 * num_points + (0 if cfg.inputs == "standardized" else 3)


def _point_sum(a: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """sum_k w_k a[..., k, :] over the K points of (..., K, C) (w = 1 if None), as K slices added one
    by one: on CPU a reduction over the short, non-minor point axis is ~20-40x slower."""
    terms = [a[..., k, :] if weights is None else weights[k] * a[..., k, :] for k in range(a.shape[-2])]
    return functools.reduce(jnp.add, terms)


def _centroid(xy: jax.Array) -> jax.Array:
    """(..., K, 2) -> (..., 2) mean of the points."""
    return _point_sum(xy) / xy.shape[-2]


def features(cfg: ModelConfig, xy: jax.Array, axis: jax.Array | None = None) -> jax.Array:
    """(..., K, 2) normalised image coords -> (..., input_dim) network inputs (before standardisation).

    inputs='axis' needs axis (..., 2), the `frame_axis` of the frame xy is seen in."""
    x = xy.reshape(xy.shape[:-2] + (-1,))
    if cfg.inputs == "standardized":
        return x
    c = _centroid(xy)[..., None, :]
    r2 = _point_sum((xy - c) ** 2) / xy.shape[-2]  # (..., 2)
    spread = jnp.sqrt(r2[..., :1] + r2[..., 1:] + 1e-12)[..., None]  # (..., 1, 1): RMS distance to c
    rel = ((xy - c) / spread).reshape(x.shape)
    if cfg.inputs == "axis":
        if axis is None:
            raise ConfigError("model.inputs='axis' needs the frame's optical axis (model.roll='perspective')")
        return jnp.concatenate([rel, axis, jnp.log(spread[..., 0])], -1)
    return jnp.concatenate([rel, c[..., 0, :], jnp.log(spread[..., 0])], -1)


def _ray(xy: jax.Array) -> jax.Array:
    return _centroid(xy)  # (..., 2): the centroid's normalised image coords


def roll_weights(layout) -> np.ndarray:
    """(K,) float32 weights of roll canonicalisation for a layout: the x coordinates of its points
    in the (orthographic) image of its frontal pose, i.e. camera x of `layout.frontal_rotation @ p_k`,
    centred (sum 0) and scaled to unit norm.

    Raises ConfigError if the layout has no horizontal extent in its frontal pose (every point on
    one vertical line): no in-plane direction can be read from its image.
    """
    x = (np.asarray(layout.array, np.float64) @ np.asarray(layout.frontal_rotation, np.float64).T)[:, 0]
    x = x - x.mean()
    norm = float(np.linalg.norm(x))
    radius = float(np.linalg.norm(np.asarray(layout.array, np.float64) - np.asarray(layout.array).mean(0)))
    if not norm > 1e-6 * max(radius, 1e-30):
        raise ConfigError(
            f"layout '{layout.name}' has no horizontal extent in its frontal pose: model.roll='canonical' "
            "cannot read an in-plane direction from its image; use model.roll='none'"
        )
    return (x / norm).astype(np.float32)


def _centre(xy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(..., K, 2) -> (c (..., 2), d (..., K, 2)): the centroid and the offsets from it, taken as
    the first point plus the mean offset from it (offsets between nearby points are exact).
    Offsets within a few ulps of the coordinates are rounding (XLA may compute equal inputs
    differently in its vector and scalar lanes) and count as zero: a face shrunk to one point gets
    d = 0 exactly (no roll direction), as the TF.js graph's offsets in pixels give."""
    d0 = xy - xy[..., :1, :]
    tiny = 8 * jnp.finfo(xy.dtype).eps * (jnp.abs(xy) + jnp.abs(xy[..., :1, :]))
    d0 = jnp.where(jnp.abs(d0) <= tiny, 0.0, d0)
    m = _centroid(d0)
    return xy[..., 0, :] + m, d0 - m[..., None, :]


def canonical_roll(xy: jax.Array, weights: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """(..., K, 2) normalised image coords -> (cos, sin) of theta, each (...,), the image direction
    of d = sum_k w_k (xy_k - mean_k xy_k); (1, 0) where d is zero (e.g. all landmarks at one point)."""
    w = jnp.asarray(weights, xy.dtype)
    assert w.shape == xy.shape[-2:-1], (w.shape, xy.shape)
    d = _point_sum(xy - _centroid(xy)[..., None, :], w)
    n2 = jnp.sum(d**2, -1)
    zero = n2 == 0
    norm = jnp.maximum(jnp.sqrt(jnp.where(zero, 1.0, n2)), 1e-12)
    return jnp.where(zero, 1.0, d[..., 0] / norm), jnp.where(zero, 0.0, d[..., 1] / norm)


def turn_xy(xy: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """(..., K, 2) points turned about the origin by the angle of (cos, -sin), i.e. by -theta:
    xy' = (cos x + sin y, -sin x + cos y). (cos, sin) are (...,)."""
    c, s = cos[..., None], sin[..., None]
    x, y = xy[..., 0], xy[..., 1]
    return jnp.stack([c * x + s * y, -s * x + c * y], -1)


def _roll_quat(cos: jax.Array, sin: jax.Array) -> jax.Array:
    """(..., 4) quaternion (x, y, z, w) of Rz(theta), w = cos(theta / 2) >= 0, stable for any theta:
    (sin, 1 + cos) is 2 cos(theta/2) (sin(theta/2), cos(theta/2)); near theta = +-pi it vanishes, so
    there (1 - cos, sin) * sign(sin) = 2 |sin(theta/2)| (sin(theta/2), cos(theta/2)) is used."""
    sign = jnp.where(sin < 0, -1.0, 1.0).astype(cos.dtype)
    a = jnp.where(cos >= 0, sin, sign * (1 - cos))
    b = jnp.where(cos >= 0, 1 + cos, sign * sin)
    n = jnp.sqrt(a**2 + b**2)
    zeros = jnp.zeros_like(a)
    return jnp.stack([zeros, zeros, a / n, b / n], -1)


def _quat_z_times(qz: jax.Array, q: jax.Array) -> jax.Array:
    """Hamilton product qz * q for qz = (0, 0, s, c) a turn about z; component by component."""
    s, c = qz[..., 2], qz[..., 3]
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack([c * x - s * y, c * y + s * x, c * z + s * w, c * w - s * z], -1)


def rotate_pose_z(
    R: jax.Array, q: jax.Array, t: jax.Array, cos: jax.Array, sin: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(Rz R, qz q, Rz t) with Rz = [[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]] (a turn about the
    camera's optical axis); R (..., 3, 3), q (..., 4), t (..., 3), cos/sin (...,). R is turned row
    by row (batched 3x3 products are slow on CPU; so is R rebuilt from the turned quaternion)."""
    c, s = cos[..., None], sin[..., None]
    R = jnp.stack([c * R[..., 0, :] - s * R[..., 1, :], s * R[..., 0, :] + c * R[..., 1, :], R[..., 2, :]], -2)
    tx, ty = t[..., 0], t[..., 1]
    t = jnp.stack([cos * tx - sin * ty, sin * tx + cos * ty, t[..., 2]], -1)
    return R, _quat_z_times(_roll_quat(cos, sin), q), t


def perspective_frame(xy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(..., K, 2) normalised image coords -> (q_c (..., 4), xy' (..., K, 2)): q_c (x, y, z, w) is
    the smallest rotation taking the optical axis e_z onto r, the mean of the landmarks' unit
    viewing rays u_k, and xy' the landmarks seen by the camera turned by R_c (xy' = proj(R_c^T u_k)).

    r turns with the camera, so a camera rotation S changes R_c to S R_c up to a turn about e_z,
    which roll canonicalisation then removes: exactly equivariant. In float32 the landmarks'
    offsets from their centroid carry the shape: xy'_k = P (u_k - r/K) / (R_c^T u_k)_z (P the first
    two rows of R_c^T, P r = 0) is computed from those small offsets alone (u_k - u_c written
    without cancellation), not as a difference of O(1) numbers (the centroid of xy' is ~0 and
    standardised by its small spread: its rounding would be amplified ~1000x). Depths are clamped
    (rays more than ~90 deg from r, which no face image has, stay finite)."""
    c, d = _centre(xy)  # (..., 2), (..., K, 2)
    cx, cy = c[..., 0:1], c[..., 1:2]  # (..., 1)
    dx, dy = d[..., 0], d[..., 1]  # (..., K)
    nc = jnp.sqrt(1.0 + cx * cx + cy * cy)
    nk = jnp.sqrt(1.0 + (cx + dx) ** 2 + (cy + dy) ** 2)
    # u_k - u_c with u_c = (c, 1) / |(c, 1)|: (d_k, 0) / n_k + (c, 1) g_k, g_k = 1/n_k - 1/n_c.
    g = -(2 * (cx * dx + cy * dy) + dx * dx + dy * dy) / (nk * nc * (nk + nc))
    ex, ey, ez = dx / nk + cx * g, dy / nk + cy * g, g
    mx, my, mz = (_point_sum(e[..., None])[..., 0] / xy.shape[-2] for e in (ex, ey, ez))  # (...,)
    rx, ry, rz = cx[..., 0] / nc[..., 0] + mx, cy[..., 0] / nc[..., 0] + my, 1.0 / nc[..., 0] + mz  # r / K
    ex, ey, ez = ex - mx[..., None], ey - my[..., None], ez - mz[..., None]  # u_k - r / K
    # q ~ (e_z x r, |r| + e_z . r) = (-r_y, r_x, 0, |r| + r_z); r_z > 0, so never zero.
    rn = jnp.sqrt(rx * rx + ry * ry + rz * rz)
    qx, qy, qw = -ry, rx, rn + rz
    n = jnp.sqrt(qx * qx + qy * qy + qw * qw)
    qx, qy, qw = qx / n, qy / n, qw / n
    q_c = jnp.stack([qx, qy, jnp.zeros_like(qw), qw], -1)
    # Rows of R_c (a quaternion with q_z = 0); (R_c^T v)_i = sum_j R_ji v_j.
    a = [[1 - 2 * qy * qy, 2 * qx * qy, 2 * qy * qw], [2 * qx * qy, 1 - 2 * qx * qx, -2 * qx * qw]]
    a.append([-2 * qy * qw, 2 * qx * qw, 1 - 2 * (qx * qx + qy * qy)])
    col = [[e[..., None] for e in row] for row in a]
    px = col[0][0] * ex + col[1][0] * ey + col[2][0] * ez
    py = col[0][1] * ex + col[1][1] * ey + col[2][1] * ez
    z = (col[0][2] * (cx + dx) + col[1][2] * (cy + dy) + col[2][2]) / nk  # (R_c^T u_k)_z
    inv_z = 1.0 / jnp.maximum(z, 1e-6)
    return q_c, jnp.stack([px * inv_z, py * inv_z], -1)


def _rotate_pose(q_c: jax.Array, R: jax.Array, q: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(R_c R, q_c q, R_c t) for (..., 4) quaternions q_c; R, t entry by entry (no batched dots)."""
    Rc = geometry.quat_to_matrix(q_c)
    rows = [sum(Rc[..., i, j, None] * R[..., j, :] for j in range(3)) for i in range(3)]
    return jnp.stack(rows, -2), geometry.quat_multiply(q_c, q), _rotate_vector(Rc, t)


def _rotate_vector(R: jax.Array, t: jax.Array) -> jax.Array:
    """R t for (..., 3, 3) R and (..., 3) t, entry by entry (no batched dots)."""
    return jnp.stack([sum(R[..., i, j] * t[..., j] for j in range(3)) for i in range(3)], -1)


def _frame(roll: str, xy: jax.Array, weights: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """(q_f (..., 4), xy' (..., K, 2)): the rotation from the canonical camera frame to the real one
    and the canonical landmarks, for roll 'canonical' (q_f = Rz(theta)) or 'perspective'
    (q_f = q_c Rz(theta), theta read on the landmarks of the turned camera)."""
    q_c = None
    if roll == "perspective":
        q_c, xy = perspective_frame(xy)
    cos, sin = canonical_roll(xy, weights)
    q_f = _roll_quat(cos, sin)
    if q_c is not None:
        q_f = geometry.quat_multiply(q_c, q_f)
    return q_f, turn_xy(xy, cos, sin)


def frame_axis(q_f: jax.Array) -> jax.Array:
    """(..., 4) frame rotation q_f (x, y, z, w) -> (..., 2): the real camera's optical axis seen from
    the frame, a = R_f^T e_z (the last row of R_f), projected: (a_x / a_z, a_y / a_z). For the
    perspective frame a_z = the cosine of the turn (> 0 for any face image; clamped)."""
    x, y, z, w = (q_f[..., i] for i in range(4))
    az = jnp.maximum(1 - 2 * (x * x + y * y), 1e-6)
    return jnp.stack([2 * (x * z - w * y) / az, 2 * (y * z + w * x) / az], -1)


def upright(
    cfg: ModelConfig, xy: ArrayLike, weights: ArrayLike, q: ArrayLike | None = None, t: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array | None, jax.Array | None, jax.Array | None]:
    """`canonicalize` for cfg.roll, plus what `apply_upright` needs beside the landmarks: (xy', q',
    t', axis), axis the `frame_axis` for inputs='axis' (else None)."""
    if cfg.inputs != "axis":
        return (*canonicalize(xy, weights, q, t, cfg.roll), None)
    if cfg.roll != "perspective":
        raise ConfigError("model.inputs='axis' needs model.roll='perspective'")
    xy_c, q_c, t_c, q_f = _in_perspective_frame(jnp.asarray(xy), weights, q, t)
    return xy_c, q_c, t_c, frame_axis(q_f)


def _in_perspective_frame(xy: jax.Array, weights: ArrayLike, q: ArrayLike | None, t: ArrayLike | None):
    """`canonicalize` for roll 'perspective', and its frame: (xy', q', t', q_f)."""
    q_f, xy_c = _frame("perspective", xy, weights)
    if q is None:
        return xy_c, None, None, q_f
    q_inv = geometry.quat_conjugate(q_f)
    t_c = _rotate_vector(geometry.quat_to_matrix(q_inv), jnp.asarray(t))
    return xy_c, geometry.quat_multiply(q_inv, jnp.asarray(q)), t_c, q_f


def canonicalize(
    xy: ArrayLike,
    weights: ArrayLike,
    q: ArrayLike | None = None,
    t: ArrayLike | None = None,
    roll: Roll = "canonical",
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Landmarks (and optionally their pose q, t) in the canonical frame: (xy', q', t').

    roll 'canonical': xy' = Rz^T xy (2D), q' = qz^-1 q, t' = Rz^T t, theta from
    `canonical_roll(xy, weights)`; 'perspective': the frame q_f = q_c qz of `perspective_frame`,
    q' = q_f^-1 q, t' = R_f^T t."""
    xy = jnp.asarray(xy)
    if roll == "perspective":
        return _in_perspective_frame(xy, weights, q, t)[:3]
    cos, sin = canonical_roll(xy, weights)
    xy_c = turn_xy(xy, cos, sin)
    if q is None:
        return xy_c, None, None
    q, t = jnp.asarray(q), jnp.asarray(t)
    t_c = jnp.concatenate([turn_xy(t[..., None, :2], cos, sin)[..., 0, :], t[..., 2:]], -1)
    q_c = _quat_z_times(geometry.quat_conjugate(_roll_quat(cos, sin)), q)
    return xy_c, q_c, t_c


def _need_roll_weights(stats: Stats) -> jax.Array:
    if stats.roll_weights is None:
        raise ConfigError("model.roll='canonical' needs stats.roll_weights (see model.roll_weights)")
    return stats.roll_weights


def encode_target(
    cfg: ModelConfig,
    q: ArrayLike,
    t: ArrayLike,
    xy: ArrayLike,
    q_ref: ArrayLike | None = None,
    roll_weights: ArrayLike | None = None,
) -> jax.Array:
    """The pose vector the network regresses (before standardisation), given its input xy.

    With cfg.roll == 'canonical' (roll_weights required) this is the vector of the canonical pose
    (Rz^T R, Rz^T t) given the canonical landmarks Rz^T xy, theta from `canonical_roll` (with
    'perspective', of the pose and landmarks in the frame of `canonicalize`).
    """
    if cfg.roll != "none":
        if roll_weights is None:
            raise ConfigError(f"model.roll='{cfg.roll}' needs roll_weights (see model.roll_weights)")
        xy, q, t = canonicalize(xy, roll_weights, q, t, cfg.roll)
    y = encode_pose(cfg.rotation, q, t, q_ref)
    if cfg.translation == "direct":
        return y
    t = jnp.asarray(t)
    depth = jnp.maximum(t[..., 2:3], 1e-6)
    return jnp.concatenate([y[..., :-3], jnp.log(depth), t[..., :2] / depth - _ray(jnp.asarray(xy))], -1)


@functools.partial(jax.jit, static_argnums=(0, 2))
def init_params(cfg: ModelConfig, key: jax.Array, num_points: int):
    """Initial parameters (one compiled program per config: eager Flax init compiles each
    initialiser's ops one by one)."""
    return network(cfg).init(key, jnp.zeros((1, input_dim(cfg, num_points)), jnp.float32))["params"]


def mlp_apply(params, x: jax.Array) -> jax.Array:
    """The `MLP` of `params` on (..., F) inputs, computed feature-major: h <- relu(W^T h + b) on
    (F, B) activations. Same function as `MLP.apply`; on CPU its forward and backward pass are
    ~1.7x cheaper than the batch-major (B, F) @ (F, W) form, because the batch is the long,
    vectorised minor axis of every product and elementwise op."""
    layers = [params[f"Dense_{i}"] for i in range(len(params))]
    lead = x.shape[:-1]
    # Transposed in memory (not folded into the first layer's products as a strided operand: its
    # forward and weight-gradient products are then ~2x cheaper; ~4 % of a train step).
    h = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
    for i, layer in enumerate(layers):
        h = jnp.dot(layer["kernel"].T, h) + layer["bias"][:, None]
        if i < len(layers) - 1:
            h = nn.relu(h)
    return h.T.reshape(lead + (h.shape[0],))


@functools.partial(jax.jit, static_argnums=0)
def apply(cfg: ModelConfig, params, stats: Stats, xy: ArrayLike) -> Prediction:
    """Run the solver on (B, K, 2) normalised image coordinates (compiled once per config and
    shape; inside a traced function it is inlined)."""
    xy = jnp.asarray(xy)
    if cfg.roll == "canonical":
        cos, sin = canonical_roll(xy, _need_roll_weights(stats))
        p = apply_upright(cfg, params, stats, turn_xy(xy, cos, sin))
        return Prediction(*rotate_pose_z(p.R, p.q, p.t, cos, sin), p.z)
    if cfg.roll == "perspective":
        q_f, xy_c = _frame(cfg.roll, xy, _need_roll_weights(stats))
        p = apply_upright(cfg, params, stats, xy_c, frame_axis(q_f) if cfg.inputs == "axis" else None)
        return Prediction(*_rotate_pose(q_f, p.R, p.q, p.t), p.z)
    return apply_upright(cfg, params, stats, xy)


def apply_upright(cfg: ModelConfig, params, stats: Stats, xy: jax.Array, axis: jax.Array | None = None) -> Prediction:
    """The network and its decoding on landmarks as given, without roll canonicalisation: with
    cfg.roll != 'none', `apply` is this on the canonical landmarks (and, for inputs='axis', their
    frame's `frame_axis`), its pose turned back."""
    z = mlp_apply(params, (features(cfg, xy, axis) - stats.x_mean) / stats.x_std)
    y = z * stats.y_std + stats.y_mean
    if cfg.translation == "ray":
        # a = log depth (clamped: exp stays finite for any output), b = offset of the centroid ray.
        depth = jnp.exp(jnp.clip(y[..., -3:-2], -20.0, 20.0))
        y = jnp.concatenate([y[..., :-3], depth * (_ray(xy) + y[..., -2:]), depth], -1)
    R, q, t = decode_pose(cfg.rotation, y)
    return Prediction(R, q, t, z)


def standardized_target(
    cfg: ModelConfig, stats: Stats, q: ArrayLike, t: ArrayLike, xy: ArrayLike | None = None
) -> jax.Array:
    """The standardised regression target; xy (the network input) is needed for translation='ray'."""
    return (encode_target(cfg, q, t, xy, stats.q_ref, stats.roll_weights) - stats.y_mean) / stats.y_std


def compute_stats(cfg: ModelConfig, protocol: protocols.Protocol, layout, key: jax.Array, n: int = 200_000) -> Stats:
    """Mean/std of inputs and pose vectors over n draws of the training protocol."""
    b = protocols.sample_jit(protocol, key, layout, n)
    return _stats_of(cfg, layout, b.xy, b.q, b.t, b.valid)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _stats_of(cfg: ModelConfig, layout, xy: jax.Array, q: jax.Array, t: jax.Array, valid: jax.Array) -> Stats:
    """`compute_stats` of drawn poses, compiled once per config and layout (the draws come from
    the sampler's own compiled program, shared by every config)."""
    rw = jnp.asarray(roll_weights(layout)) if cfg.roll != "none" else None
    w = valid.astype(jnp.float32)[:, None]
    if rw is None:
        x = features(cfg, xy)
    else:
        xy_c, _, _, axis = upright(cfg, xy, rw)
        x = features(cfg, xy_c, axis)
    q_ref = geometry.matrix_to_quat(jnp.asarray(layout.frontal_rotation, jnp.float32))
    y = encode_target(cfg, q, t, xy, q_ref, rw)

    def mean_std(a):
        m = jnp.sum(a * w, 0) / jnp.sum(w)
        s = jnp.sqrt(jnp.sum(((a - m) ** 2) * w, 0) / jnp.sum(w))
        return m, jnp.maximum(s, 1e-6)

    return Stats(*mean_std(x), *mean_std(y), q_ref, rw)


def num_params(params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
