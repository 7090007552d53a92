"""pnpjax.losses: zero at the truth, positive elsewhere, jacfwd = jacrev = finite differences of the
loss as a function of the network output z (float64), finite gradients at singular points, and
l1_3d against an independent numpy version of the original's definition.

The loss of a network output z goes the way training takes it: y = z * y_std + y_mean, then
model.decode_pose (normalised quaternion or Gram-Schmidt), then the loss. Each check is compiled
once per rotation head for all losses together, so this file stays fast.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import camera, geometry, layouts, losses, model, protocols
from pnpjax.model import ModelConfig, Prediction, Stats

HEADS = ("quat", "6d")
NAMES = tuple(losses.LOSSES)
B = 4
PTS = layouts.BLAZEFACE6.array.astype(np.float64)

# The losses are exactly zero at the truth except for their documented NaN-safety floors:
# safe_norm's sqrt(1e-12) and rotation_angle_smooth's sqrt(1e-7) / 2 radians (times the layout's
# RMS radius, ~8 cm), i.e. ~0.01 mm.
ZERO_TOL = {"l1_3d": 1e-10, "l2_3d": 1e-10, "pose_mse": 1e-20, "reproj_2d": 2e-6, "geodesic": 2e-3}


class Problem:
    """B true poses in front of the seed camera, their observations, and standardisation stats."""

    def __init__(self, rotation: str, seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.rotation = rotation
        self.dtype = dtype
        q = Rotation.from_euler("xyz", rng.uniform(-1, 1, (B, 3))).as_quat(canonical=True)
        t = np.stack([rng.uniform(-10, 10, B), rng.uniform(-10, 10, B), rng.uniform(40, 90, B)], -1)
        xy = camera.project(geometry.transform_points(Rotation.from_quat(q).as_matrix(), t, PTS))
        self.batch = protocols.Batch(
            jnp.asarray(xy, dtype),
            jnp.asarray(q, dtype),
            jnp.asarray(t, dtype),
            jnp.asarray(np.tile(camera.SEED_CAMERA.intrinsics, (B, 1)), dtype),
            jnp.ones((B, 2), dtype),
            jnp.ones(B, bool),
        )
        d = ModelConfig(rotation=rotation).out_dim
        self.stats = Stats(
            jnp.zeros(2 * len(PTS), dtype),
            jnp.ones(2 * len(PTS), dtype),
            jnp.asarray(rng.normal(0, 0.3, d) + np.r_[np.zeros(d - 1), -60], dtype),
            jnp.asarray(rng.uniform(0.2, 20, d), dtype),
        )
        self.pts = jnp.asarray(PTS, dtype)
        rms = np.sqrt(np.mean(np.sum((PTS - PTS.mean(0)) ** 2, -1)))
        self.ctx = losses.Context(self.pts, self.z_of_pose(q, t), jnp.asarray(rms, dtype))
        self.z_true = self.ctx.target_z

    def z_of_pose(self, q, t) -> jax.Array:
        """Standardised network output that decodes to the pose (q, t)."""
        return model.standardized_target(
            ModelConfig(rotation=self.rotation), self.stats, jnp.asarray(q, self.dtype), jnp.asarray(t, self.dtype)
        )

    def z_of_raw(self, y) -> jax.Array:
        """Standardised network output whose de-standardised pose vector is y."""
        return (jnp.asarray(y, self.dtype) - self.stats.y_mean) / self.stats.y_std

    def y_of_z(self, z) -> np.ndarray:
        return np.asarray(z * self.stats.y_std + self.stats.y_mean)


def prediction(rotation: str, stats: Stats, z: jax.Array) -> Prediction:
    R, q, t = model.decode_pose(rotation, z * stats.y_std + stats.y_mean)
    return Prediction(R, q, t, z)


def all_losses(rotation: str, z, batch, ctx, stats) -> jax.Array:
    """(len(NAMES), B) per-example losses of the output z."""
    pred = prediction(rotation, stats, z)
    return jnp.stack([losses.LOSSES[n](pred, batch, ctx) for n in NAMES])


@functools.cache
def analysis(rotation: str):
    """jit: z -> (values, jacfwd, jacrev, central finite differences), Jacobians (L, B, B, D)."""

    def run(z, batch, ctx, stats, h):
        f = functools.partial(all_losses, rotation, batch=batch, ctx=ctx, stats=stats)
        jf, jr = jax.jacfwd(f)(z), jax.jacrev(f)(z)
        basis = jnp.eye(z.size, dtype=z.dtype).reshape((z.size,) + z.shape)
        fd = jax.vmap(lambda e: (f(z + h * e) - f(z - h * e)) / (2 * h))(basis)  # (B*D, L, B)
        fd = jnp.moveaxis(fd, 0, -1).reshape(jf.shape)
        return f(z), jf, jr, fd

    return jax.jit(run)


@functools.cache
def values(rotation: str):
    """jit: z -> (L, B) per-example losses."""
    return jax.jit(functools.partial(all_losses, rotation))


@functools.cache
def gradients(rotation: str):
    """jit: z -> (values, d(sum of each loss)/dz), reverse mode (the one training uses)."""

    def run(z, batch, ctx, stats):
        f = functools.partial(all_losses, rotation, batch=batch, ctx=ctx, stats=stats)
        return f(z), jax.jacrev(lambda z: f(z).sum(-1))(z)

    return jax.jit(run)


def test_loss_registry():
    assert set(NAMES) == {"l1_3d", "l2_3d", "reproj_2d", "pose_mse", "geodesic"}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("rotation", HEADS)
def test_zero_at_true_pose_and_positive_elsewhere(rotation):
    p = Problem(rotation, seed=1)
    for name, v in zip(NAMES, np.asarray(values(rotation)(p.z_true, p.batch, p.ctx, p.stats))):
        assert np.all(np.abs(v) <= ZERO_TOL[name]), (name, v)
    rng = np.random.default_rng(2)
    q, t = np.asarray(p.batch.q), np.asarray(p.batch.t)
    for deg, dt in [(0.5, 0.0), (0.0, 0.1), (5.0, 1.0), (60.0, 20.0), (170.0, 0.0)]:
        axis = rng.normal(size=(B, 3))
        dq = Rotation.from_rotvec(axis / np.linalg.norm(axis, axis=-1, keepdims=True) * np.radians(deg))
        q2 = (dq * Rotation.from_quat(q)).as_quat(canonical=True)
        t2 = t + dt * rng.normal(size=(B, 3)) / np.sqrt(3)
        z2 = p.z_of_pose(q2, t2)
        for name, v in zip(NAMES, np.asarray(values(rotation)(z2, p.batch, p.ctx, p.stats))):
            assert np.all(v > 10 * ZERO_TOL[name]), (name, deg, dt, v)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("rotation", HEADS)
def test_jacfwd_jacrev_and_finite_differences_agree(rotation):
    p = Problem(rotation, seed=3)
    rng = np.random.default_rng(4)
    for scale in (0.05, 0.5):  # near the truth and far from it
        z = p.z_true + scale * jnp.asarray(rng.normal(size=p.z_true.shape))
        v, jf, jr, fd = (np.asarray(a) for a in analysis(rotation)(z, p.batch, p.ctx, p.stats, 1e-6))
        assert np.all(np.isfinite(v)) and np.all(v > 0)
        for i, name in enumerate(NAMES):
            np.testing.assert_allclose(jf[i], jr[i], rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(fd[i], jr[i], rtol=1e-5, atol=1e-7 * np.abs(jr[i]).max(), err_msg=name)
            # Per-example losses: example b depends only on its own output z[b].
            off = jr[i] * (1 - np.eye(B))[:, :, None]
            np.testing.assert_array_equal(off, 0.0, err_msg=name)
            assert np.abs(jr[i]).max() > 0, name


SINGULAR = ("truth", "zero_rotation_output", "behind_camera", "at_camera_centre")


def singular_z(p: Problem, case: str) -> jax.Array:
    y = np.array(p.y_of_z(p.z_true))
    k = 4 if p.rotation == "quat" else 6  # rotation part of the pose vector
    if case == "zero_rotation_output":
        y[:, :k] = 0.0
    elif case == "behind_camera":
        y[:, k + 2] = -50.0  # predicted depth far behind the camera
    elif case == "at_camera_centre":
        y[:, k:] = 0.0  # layout origin at the optical centre: some points at or behind depth 0
    return p.z_true if case == "truth" else p.z_of_raw(y)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("rotation", HEADS)
@pytest.mark.parametrize("case", SINGULAR)
def test_gradients_finite_at_singular_points(rotation, case):
    p = Problem(rotation, seed=5)
    z = singular_z(p, case)
    v, jf, jr, _ = (np.asarray(a) for a in analysis(rotation)(z, p.batch, p.ctx, p.stats, 1e-6))
    for i, name in enumerate(NAMES):
        assert np.all(np.isfinite(v[i])), (name, v[i])
        assert np.all(np.isfinite(jr[i])) and np.all(np.isfinite(jf[i])), (name, jr[i])
        np.testing.assert_allclose(jf[i], jr[i], rtol=1e-8, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("rotation", HEADS)
def test_gradients_finite_at_singular_points_float32(rotation):
    """The same in float32, the precision training runs in."""
    p = Problem(rotation, seed=6, dtype=np.float32)
    for case in SINGULAR:
        z = singular_z(p, case)
        v, g = (np.asarray(a) for a in gradients(rotation)(z, p.batch, p.ctx, p.stats))
        assert v.dtype == np.float32 and g.dtype == np.float32
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), (case, v, g)


def l1_3d_numpy(q_pred, t_pred, q_true, t_true, pts) -> np.ndarray:
    """The original's definition: apply the predicted pose, then the inverse of the true pose;
    mean over points of |dx| + |dy| + |dz| (quaternions normalised)."""
    out = []
    for qp, tp, qt, tt in zip(q_pred, t_pred, q_true, t_true):
        moved = Rotation.from_quat(qp).apply(pts) + tp
        back = Rotation.from_quat(qt).inv().apply(moved - tt)
        out.append(np.mean(np.sum(np.abs(back - pts), axis=-1)))
    return np.array(out)


@pytest.mark.usefixtures("x64")
def test_l1_3d_equals_the_original_definition():
    p = Problem("quat", seed=7)
    rng = np.random.default_rng(8)
    y = p.y_of_z(p.z_true) + rng.normal(size=(B, 7)) * [0.3, 0.3, 0.3, 0.3, 5, 5, 10]
    y[:, :4] *= rng.uniform(0.2, 3, (B, 1))  # raw, unnormalised network quaternions
    z = p.z_of_raw(y)
    got = np.asarray(losses.l1_3d(prediction("quat", p.stats, z), p.batch, p.ctx))
    ref = l1_3d_numpy(y[:, :4], y[:, 4:], np.asarray(p.batch.q), np.asarray(p.batch.t), PTS)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.all(ref > 1)
    # The evaluation metric is the same number, and its rotation error is scipy's angle.
    m = losses.per_example_metrics(prediction("quat", p.stats, z), p.batch, p.pts)
    np.testing.assert_allclose(m["l1_3d"], ref, rtol=1e-12)
    angle = (Rotation.from_quat(y[:, :4]).inv() * Rotation.from_quat(np.asarray(p.batch.q))).magnitude()
    np.testing.assert_allclose(m["rot_deg"], np.degrees(angle), atol=1e-6)
    np.testing.assert_allclose(m["trans"], np.linalg.norm(y[:, 4:] - np.asarray(p.batch.t), axis=-1), rtol=1e-12)
