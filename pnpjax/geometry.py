"""Rotations and rigid transforms as small batched pure functions.

Conventions (used everywhere in pnpjax):
  * quaternions are (x, y, z, w), Hamilton product, active rotation;
  * a pose (R, t) maps layout points to camera points: X_cam = R @ X_layout + t;
  * Euler angles (rx, ry, rz) in radians compose as R = Rz @ Ry @ Rx (the seed recipe's order).

SO3 algebra is delegated to jaxlie (which stores (w, x, y, z)); these functions are thin
adapters that fix the (x, y, z, w) order at the library's edge and add the NaN-safe pieces
needed inside losses (normalisation of raw network outputs, Gram-Schmidt, geodesic angle). The
products used on hot paths (quaternion to matrix, quaternion product) are written component by
component instead: jaxlie's forms become batched small dots and gathers on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jaxlie
from jax.typing import ArrayLike

_EPS = 1e-12


def _xyzw_to_wxyz(q: jax.Array) -> jax.Array:
    return jnp.concatenate([q[..., 3:], q[..., :3]], axis=-1)


def _wxyz_to_xyzw(q: jax.Array) -> jax.Array:
    return jnp.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def safe_norm(x: ArrayLike, axis: int = -1, keepdims: bool = False, eps: float = _EPS) -> jax.Array:
    """Euclidean norm whose gradient is finite at zero."""
    x = jnp.asarray(x)
    return jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims) + eps)


def quat_normalize(q: ArrayLike) -> jax.Array:
    """Unit quaternion from a raw 4-vector (finite value and gradient at zero)."""
    q = jnp.asarray(q)
    return q / safe_norm(q, keepdims=True)


def quat_canonical(q: ArrayLike) -> jax.Array:
    """The representative of {q, -q} with w >= 0."""
    q = jnp.asarray(q)
    return jnp.where(q[..., 3:] < 0, -q, q)


def quat_to_matrix(q: ArrayLike) -> jax.Array:
    """(..., 4) quaternion (x, y, z, w) -> (..., 3, 3) rotation matrix of q / |q| (zero -> identity)."""
    q = jnp.asarray(q)
    assert q.shape[-1] == 4, q.shape
    # Closed form entry by entry (jaxlie's outer product q q^T becomes batched 4x4 dots in the
    # backward pass, slow on CPU). Dividing by |q|^2 with a guard keeps value and gradient finite
    # for the zero quaternion, which quat_normalize returns for an all-zero network output.
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    n = x * x + y * y + z * z + w * w
    s = 2.0 / jnp.where(n > 0, n, 1.0)
    rows = [
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quat(R: ArrayLike) -> jax.Array:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (x, y, z, w) with w >= 0."""
    R = jnp.asarray(R)
    assert R.shape[-2:] == (3, 3), R.shape
    return quat_canonical(_wxyz_to_xyzw(jaxlie.SO3.from_matrix(R).wxyz))


def quat_multiply(q1: ArrayLike, q2: ArrayLike) -> jax.Array:
    """Hamilton product q1 * q2 (apply q2 first), (x, y, z, w) order.

    Component by component (jaxlie's product is an outer product and a gather, batched small ops
    on CPU); the solver's roll, the tracker and the samplers share it."""
    q1, q2 = jnp.asarray(q1), jnp.asarray(q2)
    ax, ay, az, aw = (q1[..., i] for i in range(4))
    bx, by, bz, bw = (q2[..., i] for i in range(4))
    return jnp.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        -1,
    )


def quat_conjugate(q: ArrayLike) -> jax.Array:
    q = jnp.asarray(q)
    return q * jnp.array([-1.0, -1.0, -1.0, 1.0], q.dtype)


def euler_to_matrix(euler: ArrayLike) -> jax.Array:
    """(..., 3) angles (rx, ry, rz) in radians -> R = Rz @ Ry @ Rx."""
    e = jnp.asarray(euler)
    assert e.shape[-1] == 3, e.shape
    # Closed form (faster than composing three rotations; the samplers call it per candidate).
    cx, cy, cz = jnp.cos(e[..., 0]), jnp.cos(e[..., 1]), jnp.cos(e[..., 2])
    sx, sy, sz = jnp.sin(e[..., 0]), jnp.sin(e[..., 1]), jnp.sin(e[..., 2])
    rows = [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def axis_angle_to_quat(axis: ArrayLike, angle: ArrayLike) -> jax.Array:
    """Unit axis (..., 3) and angle (...) in radians -> quaternion (x, y, z, w)."""
    axis, half = jnp.asarray(axis), 0.5 * jnp.asarray(angle)
    return jnp.concatenate([jnp.sin(half)[..., None] * axis, jnp.cos(half)[..., None]], axis=-1)


def euler_to_quat(euler: ArrayLike) -> jax.Array:
    """(..., 3) angles (rx, ry, rz) in radians -> quaternion (x, y, z, w) of Rz @ Ry @ Rx, w >= 0."""
    e = jnp.asarray(euler)
    eye = jnp.eye(3, dtype=e.dtype)
    qx, qy, qz = (axis_angle_to_quat(eye[i], e[..., i]) for i in range(3))
    return quat_canonical(quat_multiply(qz, quat_multiply(qy, qx)))


def matrix_to_euler(R: ArrayLike) -> jax.Array:
    """Inverse of euler_to_matrix for |ry| < 90 degrees: (..., 3, 3) -> (rx, ry, rz)."""
    R = jnp.asarray(R)
    rx = jnp.arctan2(R[..., 2, 1], R[..., 2, 2])
    ry = jnp.arcsin(jnp.clip(-R[..., 2, 0], -1.0, 1.0))
    rz = jnp.arctan2(R[..., 1, 0], R[..., 0, 0])
    return jnp.stack([rx, ry, rz], axis=-1)


def rot6d_to_matrix(x: ArrayLike) -> jax.Array:
    """Zhou et al. continuous 6D representation: (..., 6) = two 3-vectors -> (..., 3, 3).

    The columns are Gram-Schmidt of (a, b); NaN-safe when a and b are degenerate.
    """
    x = jnp.asarray(x)
    assert x.shape[-1] == 6, x.shape
    a, b = x[..., :3], x[..., 3:]
    c1 = a / safe_norm(a, keepdims=True)
    b = b - jnp.sum(c1 * b, axis=-1, keepdims=True) * c1
    c2 = b / safe_norm(b, keepdims=True)
    c3 = jnp.cross(c1, c2)
    return jnp.stack([c1, c2, c3], axis=-1)


def transform_points(R: ArrayLike, t: ArrayLike, pts: ArrayLike) -> jax.Array:
    """X' = R X + t for (..., 3, 3), (..., 3) and (..., K, 3) -> (..., K, 3)."""
    R, t, pts = jnp.asarray(R), jnp.asarray(t), jnp.asarray(pts)
    return jnp.einsum("...ij,...kj->...ki", R, pts) + t[..., None, :]


def rotation_angle(R_a: ArrayLike, R_b: ArrayLike) -> jax.Array:
    """Geodesic distance between rotations, radians in [0, pi] (metric; not for gradients at 0)."""
    R_rel = jnp.einsum("...ji,...jk->...ik", jnp.asarray(R_a), jnp.asarray(R_b))
    q = matrix_to_quat(R_rel)
    return 2.0 * jnp.arctan2(jnp.linalg.norm(q[..., :3], axis=-1), jnp.abs(q[..., 3]))


def rotation_angle_smooth(R_a: ArrayLike, R_b: ArrayLike, eps: float = 1e-7) -> jax.Array:
    """Geodesic angle (radians) with finite gradients everywhere, for use in losses.

    Uses atan2(|sin|, cos) from the relative rotation's skew part and trace; the eps under the
    square root keeps the gradient finite at identical rotations.
    """
    R_rel = jnp.einsum("...ji,...jk->...ik", jnp.asarray(R_a), jnp.asarray(R_b))
    cos = 0.5 * (jnp.trace(R_rel, axis1=-2, axis2=-1) - 1.0)
    skew = jnp.stack(
        [
            R_rel[..., 2, 1] - R_rel[..., 1, 2],
            R_rel[..., 0, 2] - R_rel[..., 2, 0],
            R_rel[..., 1, 0] - R_rel[..., 0, 1],
        ],
        axis=-1,
    )
    sin = 0.5 * jnp.sqrt(jnp.sum(skew * skew, axis=-1) + eps)
    return jnp.arctan2(sin, cos)
