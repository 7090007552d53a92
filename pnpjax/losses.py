"""Differentiable losses (per example; the caller reduces) and evaluation metrics.

All take a `model.Prediction`, the `protocols.Batch` and a `Context` (layout points etc.).
Selected by name from `LOSSES` for ablations.
"""

from __future__ import annotations

from typing import NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp

from pnpjax import camera, geometry
from pnpjax.model import Prediction
from pnpjax.protocols import Batch


class Context(NamedTuple):
    pts: jax.Array  # (K, 3) nominal layout points
    target_z: jax.Array  # (B, D) standardised true pose vector (for pose_mse)
    rot_weight: jax.Array  # () layout RMS radius: converts radians to layout units (geodesic)


def alignment_residual(pred: Prediction, batch: Batch, pts: jax.Array) -> jax.Array:
    """T_true^-1 T_pred X - X for every layout point: (B, K, 3), in layout units.

    The original's "3D alignment": move the model by the predicted pose, move it back by the
    inverse of the true pose. That is (R_true^T R_pred - I) X + R_true^T (t_pred - t_true),
    written entry by entry on (B,) arrays (as einsums, the 3x3 products batched over B become
    batched dots that are slow on CPU). For the quaternion head (a network output z of 7
    entries, q the normalised first 4), R_true^T R_pred is taken as the matrix of q_true^* q_pred:
    the same value, and the gradient reaches q through 4 entries instead of through the 9 of
    pred.R, whose assembly was the costliest op of the backward pass. Any other prediction (the
    6d head, whose q = matrix_to_quat(R) has no gradient at some R) goes through pred.R.
    """
    R_t = _matrix_entries(*(batch.q[..., i] for i in range(4)))
    if pred.z is not None and pred.z.shape[-1] == 7:
        q_rel = geometry.quat_multiply(geometry.quat_conjugate(batch.q), pred.q)
        r = [q_rel[..., i] for i in range(4)]
        M = [[e - float(i == c) for c, e in enumerate(row)] for i, row in enumerate(_matrix_entries(*r))]
    else:
        R_p = pred.R
        M = [[sum(R_t[j][i] * R_p[..., j, c] for j in range(3)) - float(i == c) for c in range(3)] for i in range(3)]
    dt = pred.t - batch.t
    v = [sum(R_t[j][i] * dt[..., j] for j in range(3)) for i in range(3)]
    X = [pts[:, c] for c in range(3)]  # (K,) each
    return jnp.stack([sum(M[i][c][..., None] * X[c] for c in range(3)) + v[i][..., None] for i in range(3)], -1)


def _matrix_entries(x, y, z, w) -> list[list[jax.Array]]:
    """Rows of the rotation matrix of the quaternion (x, y, z, w) / |q|, entries (...,) as
    geometry.quat_to_matrix (zero -> identity), unstacked."""
    n = x * x + y * y + z * z + w * w
    s = 2.0 / jnp.where(n > 0, n, 1.0)
    return [
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ]


def l1_3d(pred: Prediction, batch: Batch, ctx: Context) -> jax.Array:
    """The original loss: mean over points of |dx| + |dy| + |dz| (layout units, e.g. cm)."""
    return jnp.mean(jnp.sum(jnp.abs(alignment_residual(pred, batch, ctx.pts)), -1), -1)


def l2_3d(pred: Prediction, batch: Batch, ctx: Context) -> jax.Array:
    """Mean over points of the squared Euclidean alignment error (layout units squared)."""
    return jnp.mean(jnp.sum(alignment_residual(pred, batch, ctx.pts) ** 2, -1), -1)


def reproj_2d(pred: Prediction, batch: Batch, ctx: Context) -> jax.Array:
    """Mean over points of the Euclidean distance between the projections of the layout
    under the predicted and the true pose, in normalised image units (depth clamped)."""
    R_true = geometry.quat_to_matrix(batch.q)
    xy_pred = camera.project(geometry.transform_points(pred.R, pred.t, ctx.pts))
    xy_true = camera.project(geometry.transform_points(R_true, batch.t, ctx.pts))
    return jnp.mean(geometry.safe_norm(xy_pred - xy_true), -1)


def pose_mse(pred: Prediction, batch: Batch, ctx: Context) -> jax.Array:
    """Mean squared error of the standardised pose vector (the plain regression baseline)."""
    return jnp.mean((pred.z - ctx.target_z) ** 2, -1)


def geodesic(pred: Prediction, batch: Batch, ctx: Context) -> jax.Array:
    """Rotation angle (radians, times the layout's RMS radius) + translation distance: the
    rotation term is the typical displacement of a layout point, in layout units."""
    angle = geometry.rotation_angle_smooth(pred.R, geometry.quat_to_matrix(batch.q))
    return ctx.rot_weight * angle + geometry.safe_norm(pred.t - batch.t)


LOSSES: dict[str, Callable[[Prediction, Batch, Context], jax.Array]] = {
    "l1_3d": l1_3d,
    "l2_3d": l2_3d,
    "reproj_2d": reproj_2d,
    "pose_mse": pose_mse,
    "geodesic": geodesic,
}


def per_example_metrics(pred: Prediction, batch: Batch, pts: jax.Array) -> dict[str, jax.Array]:
    """Metrics of issue #2, per example: L1-3D (units), rotation error (deg), translation error
    (units), reprojection RMSE against the observed landmarks (px, or image units for seed)."""
    R_true = geometry.quat_to_matrix(batch.q)
    rot = jnp.degrees(geometry.rotation_angle(pred.R, R_true))
    trans = jnp.linalg.norm(pred.t - batch.t, axis=-1)
    l1 = jnp.mean(jnp.sum(jnp.abs(alignment_residual(pred, batch, pts)), -1), -1)
    xy_pred = camera.project(geometry.transform_points(pred.R, pred.t, pts))
    d_px = (xy_pred - batch.xy) * batch.intrinsics[:, None, :2]
    reproj = jnp.sqrt(jnp.mean(jnp.sum(d_px**2, -1), -1))
    return {"l1_3d": l1, "rot_deg": rot, "trans": trans, "reproj": reproj}


def summarize(per_example: dict[str, jax.Array], valid: jax.Array, failure_deg: float = 30.0) -> dict[str, float]:
    """Reduce per-example metrics over valid examples (host side, numpy)."""
    import numpy as np

    v = np.asarray(valid, bool)
    m = {k: np.asarray(a, np.float64)[v] for k, a in per_example.items()}
    rot, trans = m["rot_deg"], m["trans"]
    return {
        "n": int(v.sum()),
        "l1_3d": float(np.mean(m["l1_3d"])),
        "rot_mean_deg": float(np.mean(rot)),
        "rot_median_deg": float(np.median(rot)),
        "rot_p99_deg": float(np.percentile(rot, 99)),
        "trans_mean": float(np.mean(trans)),
        "trans_median": float(np.median(trans)),
        # Per-pose RMSE against the observed landmarks; the median, because a pose whose points
        # come within millimetres of the camera (the seed protocol allows it) has no useful RMSE.
        "reproj_rmse_median": float(np.median(m["reproj"])),
        "failures": float(np.mean(rot > failure_deg)),
    }
