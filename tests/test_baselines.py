"""Tests for experiments.lib.baselines: OpenCV solvers on normalised coordinates, in pnpjax's conventions."""

from __future__ import annotations

import cv2
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import geometry
from experiments.lib import baselines
from pnpjax.errors import ConfigError

# blazeface6 (SEED.md), cm; x right, y up, z towards the viewer.
PTS_Kx3 = np.array(
    [
        [-3.23597, 3.23021, -3.33562],
        [3.23597, 3.23021, -3.33562],
        [0.0, 0.003874, 0.290468],
        [0.0, -3.53483, -2.08927],
        [-8.04888, 2.22486, -12.6444],
        [8.04888, 2.22486, -12.6444],
    ]
)
_FLIP = Rotation.from_matrix(np.diag([1.0, -1.0, -1.0]))  # frontal face in the OpenCV camera frame


def face_poses(rng: np.random.Generator, n: int, max_deg: float = 30.0) -> tuple[Rotation, np.ndarray]:
    R = _FLIP * Rotation.from_euler("xyz", rng.uniform(-1, 1, (n, 3)) * np.deg2rad(max_deg))
    t = np.stack([rng.uniform(-10, 10, n), rng.uniform(-10, 10, n), rng.uniform(50, 100, n)], axis=-1)
    return R, t


def observe(R: Rotation, t: np.ndarray, pts: np.ndarray = PTS_Kx3) -> np.ndarray:
    X = np.einsum("nij,kj->nki", R.as_matrix(), pts) + t[:, None, :]
    return X[..., :2] / X[..., 2:]


def angle_between(q_a, q_b) -> np.ndarray:
    return (Rotation.from_quat(q_a) * Rotation.from_quat(q_b).inv()).magnitude()


@pytest.mark.parametrize("method", baselines.METHODS)
def test_noise_free_recovers_pose(method):
    rng = np.random.default_rng(0)
    R, t = face_poses(rng, 50)
    q, t_out, ok = baselines.solve_cv2(observe(R, t), PTS_Kx3, method, q_true=R.as_quat(), t_true=t)
    assert q.shape == (50, 4) and t_out.shape == (50, 3) and ok.dtype == bool
    assert ok.all()
    assert np.max(angle_between(q, R.as_quat())) < 1e-4
    assert np.max(np.abs(t_out - t)) < 1e-3


def test_quaternion_is_xyzw_canonical_and_matches_scipy_and_geometry():
    rng = np.random.default_rng(1)
    R, t = face_poses(rng, 20)
    q, _, ok = baselines.solve_cv2(observe(R, t), PTS_Kx3, "sqpnp")
    assert ok.all()
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(q, R.as_quat(canonical=True), atol=1e-8)  # scipy's as_quat is (x, y, z, w)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), R.as_matrix(), atol=1e-8)
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(geometry.quat_to_matrix(q)), R.as_matrix(), atol=1e-8)


def test_known_rotation_component_order():
    # A 90 degree turn about the camera's x axis: (x, y, z, w) = (sin 45, 0, 0, cos 45).
    R = Rotation.from_rotvec([[np.pi / 2, 0.0, 0.0]])
    t = np.array([[1.0, -2.0, 60.0]])
    q, t_out, ok = baselines.solve_cv2(observe(R, t), PTS_Kx3, "epnp")
    assert ok.all()
    np.testing.assert_allclose(q[0], [np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)], atol=1e-8)
    np.testing.assert_allclose(t_out, t, atol=1e-6)


def test_oracle_sits_at_the_optimum_and_focal_is_only_a_scale():
    rng = np.random.default_rng(2)
    R, t = face_poses(rng, 30)
    xy = observe(R, t) + rng.normal(scale=3e-3, size=(30, 6, 2))

    def cost(q, t_):
        X = np.einsum("nij,kj->nki", Rotation.from_quat(q).as_matrix(), PTS_Kx3) + t_[:, None, :]
        return np.sum((X[..., :2] / X[..., 2:] - xy) ** 2, axis=(-2, -1))

    q, t_out, ok = baselines.solve_cv2(xy, PTS_Kx3, "lm_from_truth", R.as_quat(), t)
    assert ok.all()
    assert np.all(cost(q, t_out) < cost(R.as_quat(), t))  # noise moves the optimum off the truth
    # The literal identity camera stops short of the optimum (absolute thresholds), never beyond it.
    q1, t1, ok1 = baselines.solve_cv2(xy, PTS_Kx3, "lm_from_truth", R.as_quat(), t, focal=1.0)
    assert ok1.all()
    assert np.all(cost(q, t_out) <= cost(q1, t1) * (1 + 1e-12))
    # Closed-form solvers do not care about the scale.
    q_a, t_a, _ = baselines.solve_cv2(xy, PTS_Kx3, "sqpnp", focal=1.0)
    q_b, t_b, _ = baselines.solve_cv2(xy, PTS_Kx3, "sqpnp", focal=1000.0)
    assert np.max(angle_between(q_a, q_b)) < 1e-6
    np.testing.assert_allclose(t_a, t_b, atol=1e-4)


def test_iterative_flips_are_reported_not_fixed():
    # With ~2 px noise SOLVEPNP_ITERATIVE lands on the mirrored pose behind the camera for a good
    # fraction of faces while reporting success; the baseline must show exactly that.
    rng = np.random.default_rng(3)
    R, t = face_poses(rng, 100)
    xy = observe(R, t) + rng.normal(scale=3e-3, size=(100, 6, 2))
    q, t_out, ok = baselines.solve_cv2(xy, PTS_Kx3, "iterative")
    flipped = angle_between(q, R.as_quat()) > np.deg2rad(90)
    assert ok.all() and flipped.any()
    assert np.all(t_out[flipped, 2] < 0)
    for i in np.flatnonzero(flipped)[:3]:  # exactly what cv2.solvePnP returns
        K = np.diag([1000.0, 1000.0, 1.0])
        _, rvec, tvec = cv2.solvePnP(PTS_Kx3, xy[i] * 1000.0, K, None, flags=cv2.SOLVEPNP_ITERATIVE)
        np.testing.assert_allclose(t_out[i], tvec.ravel(), atol=1e-9)


def test_opencv_failures_are_flagged():
    rng = np.random.default_rng(4)
    R, t = face_poses(rng, 3)
    xy = observe(R, t)
    xy[1, 0, 0] = np.nan
    for method in ("iterative", "sqpnp", "epnp"):
        q, t_out, ok = baselines.solve_cv2(xy, PTS_Kx3, method)
        assert list(ok) == [True, False, True], method
        assert np.all(np.isnan(q[1])) and np.all(np.isnan(t_out[1])), method
        assert np.all(np.isfinite(q[ok])) and np.all(np.isfinite(t_out[ok])), method
    # The DLT start of SOLVEPNP_ITERATIVE needs 6 non-coplanar points: OpenCV raises for 5.
    _, _, ok = baselines.solve_cv2(xy[:, :5], PTS_Kx3[:5], "iterative")
    assert not ok.any()


def test_bad_arguments():
    xy = np.zeros((2, 6, 2))
    with pytest.raises(ConfigError):
        baselines.solve_cv2(xy, PTS_Kx3, "p3p")
    with pytest.raises(ValueError):
        baselines.solve_cv2(xy, PTS_Kx3, "lm_from_truth")
    with pytest.raises(ValueError):
        baselines.solve_cv2(xy[0], PTS_Kx3, "sqpnp")
