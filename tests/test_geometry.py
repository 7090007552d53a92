"""pnpjax.geometry in float64 against scipy.spatial.transform.Rotation (which is also x, y, z, w)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import geometry

pytestmark = pytest.mark.usefixtures("x64")

N = 64
TOL = 1e-12


def random_rotations(seed: int, n: int = N) -> Rotation:
    """Random rotations plus the special ones (identity, half turns, quarter turns)."""
    c = np.pi / np.sqrt(3)
    special = Rotation.from_rotvec(
        [[0, 0, 0], [np.pi, 0, 0], [0, np.pi, 0], [0, 0, np.pi], [np.pi / 2, 0, 0], [c, c, c]]
    )
    return Rotation.concatenate([special, Rotation.random(n, random_state=seed)])


def same_rotation_quat(q1: np.ndarray, q2: np.ndarray, atol: float = 1e-10) -> None:
    """q1 and q2 describe the same rotations (q and -q are the same rotation)."""
    q1, q2 = np.asarray(q1), np.asarray(q2)
    d = np.minimum(np.abs(q1 - q2).max(-1), np.abs(q1 + q2).max(-1))
    assert np.all(d <= atol), d.max()


def test_x64_fixture_is_active():
    assert jnp.zeros(()).dtype == jnp.float64


def test_quat_to_matrix_matches_scipy_xyzw():
    r = random_rotations(0)
    q = r.as_quat()  # scipy: (x, y, z, w), scalar last
    np.testing.assert_allclose(geometry.quat_to_matrix(q), r.as_matrix(), atol=TOL)
    # The order matters: a quaternion read as (w, x, y, z) would be another rotation.
    assert not np.allclose(geometry.quat_to_matrix(q[:, [3, 0, 1, 2]]), r.as_matrix(), atol=1e-3)


def test_matrix_to_quat_matches_scipy_canonical():
    r = random_rotations(1)
    q = np.asarray(geometry.matrix_to_quat(r.as_matrix()))
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=TOL)
    assert np.all(q[:, 3] >= 0)
    same_rotation_quat(q, r.as_quat())
    generic = np.abs(r.as_quat()[:, 3]) > 1e-6  # away from half turns the canonical sign is unique
    q_ref = r.as_quat(canonical=True)
    np.testing.assert_allclose(q[generic], q_ref[generic], atol=1e-10)


def test_quat_matrix_round_trip():
    r = random_rotations(2)
    q = r.as_quat()
    q2 = geometry.matrix_to_quat(geometry.quat_to_matrix(q))
    same_rotation_quat(q2, q)
    np.testing.assert_allclose(geometry.quat_to_matrix(q2), r.as_matrix(), atol=TOL)


def test_quat_canonical():
    q = Rotation.random(N, random_state=3).as_quat()
    c = np.asarray(geometry.quat_canonical(q))
    assert np.all(c[:, 3] >= 0)
    same_rotation_quat(c, q, atol=0)
    np.testing.assert_array_equal(geometry.quat_canonical(-c), c)


def test_euler_is_Rz_Ry_Rx():
    rng = np.random.default_rng(4)
    e = rng.uniform(-np.pi, np.pi, (N, 3))
    R = np.asarray(geometry.euler_to_matrix(e))
    # scipy: lowercase 'xyz' is extrinsic x then y then z, i.e. R = Rz Ry Rx; uppercase 'ZYX' the same.
    np.testing.assert_allclose(R, Rotation.from_euler("xyz", e).as_matrix(), atol=TOL)
    np.testing.assert_allclose(R, Rotation.from_euler("ZYX", e[:, ::-1]).as_matrix(), atol=TOL)
    # And literally the product of the three elementary rotations.
    rx, ry, rz = (Rotation.from_euler(ax, e[:, i : i + 1]).as_matrix() for i, ax in enumerate("xyz"))
    np.testing.assert_allclose(R, rz @ ry @ rx, atol=TOL)


def test_euler_to_quat_matches_matrix_and_scipy():
    rng = np.random.default_rng(5)
    e = rng.uniform(-np.pi, np.pi, (N, 3))
    q = np.asarray(geometry.euler_to_quat(e))
    same_rotation_quat(q, Rotation.from_euler("xyz", e).as_quat())
    np.testing.assert_allclose(geometry.quat_to_matrix(q), geometry.euler_to_matrix(e), atol=TOL)


def test_euler_matrix_quat_round_trips():
    rng = np.random.default_rng(6)
    # matrix_to_euler is the inverse for |ry| < 90 degrees (the seed protocol draws |angles| <= 60).
    e = np.concatenate([rng.uniform(-np.pi, np.pi, (N, 3)) * [1, 0.49, 1], [[0, 0, 0], [1.0, -1.4, 3.0]]])
    R = geometry.euler_to_matrix(e)
    np.testing.assert_allclose(geometry.matrix_to_euler(R), e, atol=1e-10)
    q = geometry.matrix_to_quat(R)
    np.testing.assert_allclose(geometry.matrix_to_euler(geometry.quat_to_matrix(q)), e, atol=1e-10)
    np.testing.assert_allclose(
        geometry.matrix_to_euler(geometry.quat_to_matrix(geometry.euler_to_quat(e))), e, atol=1e-10
    )


def test_quat_multiply_matches_scipy_composition():
    a, b = Rotation.random(N, random_state=7), Rotation.random(N, random_state=8)
    q = np.asarray(geometry.quat_multiply(a.as_quat(), b.as_quat()))
    same_rotation_quat(q, (a * b).as_quat())  # scipy's a * b applies b first
    np.testing.assert_allclose(geometry.quat_to_matrix(q), a.as_matrix() @ b.as_matrix(), atol=TOL)


def test_quat_conjugate_is_inverse():
    r = Rotation.random(N, random_state=9)
    q = r.as_quat()
    same_rotation_quat(geometry.quat_conjugate(q), r.inv().as_quat())
    ident = geometry.quat_multiply(q, geometry.quat_conjugate(q))
    same_rotation_quat(ident, np.tile([0.0, 0, 0, 1], (N, 1)))


def test_rot6d_gives_rotations():
    x = np.random.default_rng(10).normal(size=(N, 6))
    R = np.asarray(geometry.rot6d_to_matrix(x))
    # (The eps inside safe_norm perturbs orthonormality by ~eps / |a|^2, far below float32's resolution.)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-10)
    # Gram-Schmidt: the first column is along a, the second in the plane of (a, b), on b's side.
    a, b = x[:, :3], x[:, 3:]
    np.testing.assert_allclose(R[:, :, 0], a / np.linalg.norm(a, axis=-1, keepdims=True), atol=1e-12)
    assert np.all(np.einsum("ni,ni->n", R[:, :, 1], b) > 0)
    np.testing.assert_allclose(np.einsum("ni,ni->n", R[:, :, 2], b), 0.0, atol=1e-12)


def test_rot6d_recovers_R_from_first_two_columns():
    R = Rotation.random(N, random_state=11).as_matrix()
    x = np.concatenate([R[:, :, 0], R[:, :, 1]], -1)
    np.testing.assert_allclose(geometry.rot6d_to_matrix(x), R, atol=1e-12)
    # Scale and shear of the two columns do not change the result (that is what Gram-Schmidt removes).
    rng = np.random.default_rng(12)
    s1, s2, shear = rng.uniform(0.5, 3, (3, N, 1))
    x2 = np.concatenate([s1 * R[:, :, 0], s2 * R[:, :, 1] + shear * R[:, :, 0]], -1)
    np.testing.assert_allclose(geometry.rot6d_to_matrix(x2), R, atol=1e-11)


def test_rot6d_nan_safe_when_degenerate():
    x = np.array([[0.0] * 6, [1.0, 0, 0, 2.0, 0, 0]])  # zero, and parallel columns
    R = geometry.rot6d_to_matrix(x)
    J = jax.jit(jax.jacrev(lambda v: geometry.rot6d_to_matrix(v).sum()))(jnp.asarray(x))
    assert np.all(np.isfinite(R)) and np.all(np.isfinite(J))


def test_transform_points_matches_scipy():
    r = Rotation.random(8, random_state=13)
    rng = np.random.default_rng(14)
    t, pts = rng.normal(size=(8, 3)), rng.normal(size=(5, 3))
    out = np.asarray(geometry.transform_points(r.as_matrix(), t, pts))
    ref = np.stack([r[i].apply(pts) + t[i] for i in range(8)])
    np.testing.assert_allclose(out, ref, atol=TOL)


def test_rotation_angle_matches_scipy_magnitude():
    a = random_rotations(15)
    b = Rotation.concatenate([a[:6], Rotation.random(N, random_state=16)])  # includes identical pairs
    ref = (a.inv() * b).magnitude()
    np.testing.assert_allclose(geometry.rotation_angle(a.as_matrix(), b.as_matrix()), ref, atol=1e-7)
    # Near a half turn too.
    c = Rotation.from_rotvec(np.array([[0, 0, np.pi - 1e-6], [0.6, 0.8, 0.0]]) * [[1], [np.pi]])
    np.testing.assert_allclose(geometry.rotation_angle(c.as_matrix(), np.eye(3)), c.magnitude(), atol=1e-6)


def test_rotation_angle_smooth_matches_scipy_away_from_zero():
    a, b = Rotation.random(N, random_state=17), Rotation.random(N, random_state=18)
    ref = (a.inv() * b).magnitude()
    # The eps under the square root biases the angle by at most ~sqrt(eps) / 2 radians.
    np.testing.assert_allclose(geometry.rotation_angle_smooth(a.as_matrix(), b.as_matrix()), ref, atol=2e-4)


def _angle_along_path(v, R_a, R_b):
    """rotation_angle_smooth(R_a Exp(v), R_b), a path of rotations through R_a at v = 0."""
    q = jnp.concatenate([v, jnp.ones(1)]) / jnp.sqrt(1 + v @ v)
    return geometry.rotation_angle_smooth(R_a @ geometry.quat_to_matrix(q), R_b)


_angle_grads = jax.jit(
    lambda v, R_a, R_b: (
        _angle_along_path(v, R_a, R_b),
        jax.grad(_angle_along_path)(v, R_a, R_b),
        jax.jacfwd(_angle_along_path)(v, R_a, R_b),
        jax.grad(geometry.rotation_angle_smooth)(R_a, R_b),
    )
)


@pytest.mark.parametrize("angle", [0.0, np.pi])
def test_rotation_angle_smooth_gradient_finite_at_singular_points(angle):
    R_b = Rotation.random(random_state=19).as_matrix()
    R_a = R_b @ Rotation.from_rotvec([angle, 0, 0]).as_matrix()  # identical, or a half turn apart
    value, *grads = _angle_grads(jnp.zeros(3), R_a, R_b)
    for g in grads:
        assert np.all(np.isfinite(g)), g
    np.testing.assert_allclose(value, angle, atol=2e-4)


def test_rotation_angle_smooth_gradient_matches_finite_differences():
    R_a = Rotation.random(random_state=20).as_matrix()
    R_b = Rotation.random(random_state=21).as_matrix()
    v = jnp.asarray([0.1, -0.2, 0.3])
    value, g, g_fwd, _ = _angle_grads(v, R_a, R_b)
    h = 1e-6
    f = jax.jit(jax.vmap(_angle_along_path, in_axes=(0, None, None)))
    fd = (f(v + h * jnp.eye(3), R_a, R_b) - f(v - h * jnp.eye(3), R_a, R_b)) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-8)
    np.testing.assert_allclose(g_fwd, g, atol=1e-12)


def test_safe_norm_value_and_gradient_at_zero():
    x = np.random.default_rng(23).normal(size=(N, 3))
    np.testing.assert_allclose(geometry.safe_norm(x), np.linalg.norm(x, axis=-1), rtol=1e-10)
    for g in (
        jax.jit(jax.grad(geometry.safe_norm))(jnp.zeros(3)),
        jax.jit(jax.jacfwd(geometry.safe_norm))(jnp.zeros(3)),
    ):
        assert np.all(np.isfinite(g))
        np.testing.assert_array_equal(g, 0.0)
    assert jnp.linalg.norm(jnp.zeros(3)) == 0 and not np.all(np.isfinite(jax.grad(jnp.linalg.norm)(jnp.zeros(3))))


def test_quat_normalize_value_and_jacobian_at_zero():
    q = np.random.default_rng(24).normal(size=(N, 4))
    np.testing.assert_allclose(geometry.quat_normalize(q), q / np.linalg.norm(q, axis=-1, keepdims=True), rtol=1e-10)
    z = jnp.zeros(4)
    assert np.all(np.isfinite(geometry.quat_normalize(z)))
    for jac in (jax.jacfwd, jax.jacrev):
        assert np.all(np.isfinite(jax.jit(jac(geometry.quat_normalize))(z)))


def test_zero_quaternion_gives_a_finite_matrix_and_gradient():
    """A raw network output of exactly zero must not turn into NaN on the way to a rotation."""

    def f(q):
        return geometry.quat_to_matrix(geometry.quat_normalize(q))

    z = jnp.zeros(4)
    np.testing.assert_array_equal(f(z), np.eye(3))  # no rotation information: identity
    assert np.all(np.isfinite(jax.jit(jax.jacrev(f))(z))) and np.all(np.isfinite(jax.jit(jax.jacfwd(f))(z)))
