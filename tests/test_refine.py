"""Tests for pnpjax.refine: convergence, fixed points, agreement with OpenCV and scipy, safety."""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from pnpjax import refine
from pnpjax.camera import MIN_DEPTH
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
# Every jitted shape / static-argument combination costs a few seconds of XLA compilation, so the
# tests share one batch size and two iteration counts.
N = 64


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def face_poses(rng: np.random.Generator, n: int, max_deg: float = 25.0) -> tuple[Rotation, np.ndarray]:
    """n frontal-ish face poses in the OpenCV frame: R = diag(1,-1,-1) * small rotation, t_z 50..100 cm."""
    R = _FLIP * Rotation.from_euler("xyz", rng.uniform(-1, 1, (n, 3)) * np.deg2rad(max_deg))
    t = np.stack([rng.uniform(-10, 10, n), rng.uniform(-10, 10, n), rng.uniform(50, 100, n)], axis=-1)
    return R, t


def observe(R: Rotation, t: np.ndarray, pts: np.ndarray = PTS_Kx3) -> np.ndarray:
    """Exact normalised coordinates (N, K, 2)."""
    X = np.einsum("nij,kj->nki", R.as_matrix(), pts) + t[:, None, :]
    return X[..., :2] / X[..., 2:]


def perturb(rng: np.random.Generator, R: Rotation, t: np.ndarray, deg=(5.0, 10.0), cm: float = 3.0):
    """Rotate each pose by deg[0]..deg[1] degrees about a random axis and shift it by up to cm."""
    axis = rng.normal(size=(len(t), 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    dR = Rotation.from_rotvec(axis * np.deg2rad(rng.uniform(*deg, len(t)))[:, None])
    return (dR * R).as_quat(), t + rng.uniform(-cm, cm, t.shape)


def angle_between(q_a, q_b) -> np.ndarray:
    R_a, R_b = (Rotation.from_quat(np.asarray(q, np.float64)) for q in (q_a, q_b))
    return (R_a * R_b.inv()).magnitude()


def depths(q, t, pts=PTS_Kx3) -> np.ndarray:
    R = Rotation.from_quat(np.asarray(q, np.float64).reshape(-1, 4)).as_matrix()
    return (np.einsum("nij,kj->nki", R, pts) + np.asarray(t, np.float64).reshape(-1, 1, 3))[..., 2]


@pytest.mark.parametrize("method", ["lm", "gn"])
def test_recovers_exact_pose_from_perturbed_start(x64, method):
    rng = np.random.default_rng(0)
    R, t = face_poses(rng, N)
    q0, t0 = perturb(rng, R, t)
    q, t_out = refine.refine_pose(observe(R, t), PTS_Kx3, q0, t0, iters=10, method=method)
    assert q.dtype == jnp.float64
    assert np.max(angle_between(q, R.as_quat())) < 1e-8
    assert np.max(np.abs(np.asarray(t_out) - t)) < 1e-6


def test_five_iterations_suffice_from_typical_start(x64):
    rng = np.random.default_rng(1)
    R, t = face_poses(rng, N)
    q0, t0 = perturb(rng, R, t)
    q, t_out = refine.refine_pose(observe(R, t), PTS_Kx3, q0, t0, iters=5)
    assert np.max(angle_between(q, R.as_quat())) < 1e-4
    assert np.max(np.abs(np.asarray(t_out) - t)) < 1e-4


def test_float32(x64):
    rng = np.random.default_rng(2)
    R, t = face_poses(rng, N)
    q0, t0 = perturb(rng, R, t)
    args = [np.asarray(a, np.float32) for a in (observe(R, t), PTS_Kx3, q0, t0)]
    with jax.enable_x64(False):
        q, t_out = refine.refine_pose(*args, iters=5)
    assert q.dtype == jnp.float32 and t_out.dtype == jnp.float32
    assert np.max(angle_between(q, R.as_quat())) < 2e-3
    assert np.max(np.abs(np.asarray(t_out) - t)) < 5e-2


@pytest.mark.parametrize("method", ["lm", "gn"])
def test_exact_pose_is_fixed_point(x64, method):
    rng = np.random.default_rng(3)
    R, t = face_poses(rng, N)
    q, t_out = refine.refine_pose(observe(R, t), PTS_Kx3, R.as_quat(), t, iters=5, method=method)
    np.testing.assert_allclose(np.asarray(q), R.as_quat(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(t_out), t, rtol=0, atol=1e-9)


def test_matches_opencv_refine_lm_and_scipy_on_noisy_input(x64):
    rng = np.random.default_rng(4)
    R, t = face_poses(rng, N)
    xy = observe(R, t) + rng.normal(scale=3e-3, size=(N, 6, 2))  # ~2 px at f = 600 px
    q0, t0 = perturb(rng, R, t)
    q, t_out = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10)
    rmse0 = np.asarray(refine.reprojection_rmse(xy, PTS_Kx3, q0, t0))
    rmse = np.asarray(refine.reprojection_rmse(xy, PTS_Kx3, q, t_out))
    assert np.all(rmse < rmse0)

    # OpenCV on the same inputs and start. Pixels of a f=1000 camera: OpenCV's LM stops on
    # absolute thresholds and with an identity camera stops ~1e-2 cm short (see baselines).
    K = np.diag([1000.0, 1000.0, 1.0])
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 100, 1e-12)
    q_cv, t_cv = np.empty((N, 4)), np.empty((N, 3))
    for i in range(N):
        rvec = Rotation.from_quat(q0[i]).as_rotvec().reshape(3, 1)
        rvec, tvec = cv2.solvePnPRefineLM(PTS_Kx3, xy[i] * 1000.0, K, None, rvec, t0[i].reshape(3, 1).copy(), crit)
        q_cv[i], t_cv[i] = Rotation.from_rotvec(rvec.ravel()).as_quat(), tvec.ravel()
    assert np.max(angle_between(q, q_cv)) < 1e-5
    assert np.max(np.abs(np.asarray(t_out) - t_cv)) < 2e-4
    # Where the two differ, ours is the lower cost (OpenCV stops a little early).
    assert np.all(rmse <= np.asarray(refine.reprojection_rmse(xy, PTS_Kx3, q_cv, t_cv)) + 1e-15)

    # An independent optimiser pins down the optimum itself.
    for i in range(10):

        def residual(p, i=i):
            X = PTS_Kx3 @ Rotation.from_rotvec(p[:3]).as_matrix().T + p[3:]
            return (X[:, :2] / X[:, 2:] - xy[i]).ravel()

        p0 = np.r_[Rotation.from_quat(q0[i]).as_rotvec(), t0[i]]
        p = least_squares(residual, p0, xtol=1e-15, ftol=1e-15, gtol=1e-15).x
        assert angle_between(q[i], Rotation.from_rotvec(p[:3]).as_quat()) < 1e-8
        np.testing.assert_allclose(np.asarray(t_out[i]), p[3:], rtol=0, atol=1e-6)


def _degenerate_cases(rng: np.random.Generator):
    R, t = face_poses(rng, N)
    xy = observe(R, t)
    q0, t0 = perturb(rng, R, t)
    yield "identical landmarks", np.zeros_like(xy), PTS_Kx3, q0, t0
    yield "identical layout points", xy, np.zeros_like(PTS_Kx3), q0, t0
    yield "huge noise", xy + rng.normal(scale=10.0, size=xy.shape), PTS_Kx3, q0, t0
    yield "absurd noise", xy + rng.normal(scale=1e4, size=xy.shape), PTS_Kx3, q0, t0
    yield "behind camera", xy, PTS_Kx3, q0, t0 * np.array([1.0, 1.0, -1.0])
    yield "at depth 0", xy, PTS_Kx3, q0, np.zeros_like(t0)
    yield "random rotations", xy, PTS_Kx3, Rotation.random(N, random_state=1).as_quat(), t0
    yield "zero weights", xy, PTS_Kx3, q0, t0
    yield "zero quaternion", xy, PTS_Kx3, np.zeros_like(q0), t0
    yield "non-finite start", xy, PTS_Kx3, np.full_like(q0, np.nan), np.full_like(t0, np.inf)
    yield "NaN landmarks, start behind camera", np.full_like(xy, np.nan), PTS_Kx3, q0, -t0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["lm", "gn"])
def test_never_nan_and_never_behind_camera(x64, dtype, method):
    with jax.enable_x64(dtype == np.float64):
        for name, xy, pts, q0, t0 in _degenerate_cases(np.random.default_rng(5)):
            # Always pass weights (ones or zeros): one compilation per dtype and method.
            weights = np.full(xy.shape[:-1], 0.0 if name == "zero weights" else 1.0, dtype)
            args = [np.asarray(a, dtype) for a in (xy, pts, q0, t0)]
            q, t = refine.refine_pose(*args, iters=5, method=method, weights=weights)
            assert np.all(np.isfinite(q)) and np.all(np.isfinite(t)), name
            np.testing.assert_allclose(np.linalg.norm(np.asarray(q, np.float64), axis=-1), 1.0, atol=1e-5, err_msg=name)
            assert np.all(depths(q, t, np.asarray(pts, np.float64)) > MIN_DEPTH * (1 - 1e-4)), name


def test_start_pose_is_where_the_refinement_starts(x64):
    """start_pose on the degenerate cases: finite, unit q, every point in front (for finite
    landmarks), the rotation kept when it is usable, a pose already in front unchanged; and the
    same pose as refine_pose with 0 iterations (its own start, through jaxlie)."""
    kept = moved = 0
    for name, xy, pts, q0, t0 in _degenerate_cases(np.random.default_rng(5)):
        q, t = (np.asarray(a) for a in refine.start_pose(xy, pts, q0, t0))
        q_ref, t_ref = refine.refine_pose(xy, pts, q0, t0, iters=0)
        np.testing.assert_allclose(q * np.sign(np.sum(q * q_ref, -1, keepdims=True)), q_ref, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(t, t_ref, rtol=1e-12, atol=1e-12, err_msg=name)
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(t)), name
        np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12, err_msg=name)
        if np.all(np.isfinite(xy)):
            assert np.all(depths(q, t, np.asarray(pts, np.float64)) > MIN_DEPTH), name
        usable = np.all(np.isfinite(q0), -1) & (np.linalg.norm(q0, axis=-1) > 0)
        if np.any(usable):
            assert np.max(angle_between(q[usable], np.asarray(q0)[usable])) < 1e-12, name
        q_usable = np.where(usable[:, None], np.asarray(q0, np.float64), [0.0, 0.0, 0.0, 1.0])
        ahead = usable & np.all(depths(q_usable, t0, np.asarray(pts, np.float64)) > MIN_DEPTH, -1)
        np.testing.assert_array_equal(t[ahead], np.asarray(t0, np.float64)[ahead], err_msg=name)
        kept, moved = kept + np.sum(ahead), moved + np.sum(~ahead)
    assert kept > 0 and moved > 0, (kept, moved)  # both branches were seen


def test_cost_never_increases(x64):
    # Cases whose start is replaced or moved first, or whose cost is undefined, are left out.
    skip = ("behind camera", "at depth 0", "zero weights", "zero quaternion", "non-finite start")
    for name, xy, pts, q0, t0 in _degenerate_cases(np.random.default_rng(6)):
        if name in skip or "NaN" in name:
            continue
        q, t = refine.refine_pose(xy, pts, q0, t0, iters=5)
        before = np.asarray(refine.reprojection_rmse(xy, pts, q0, t0))
        after = np.asarray(refine.reprojection_rmse(xy, pts, q, t))
        assert np.all(after <= before), name


def test_start_behind_camera_with_right_rotation_converges(x64):
    rng = np.random.default_rng(7)
    R, t = face_poses(rng, N)
    for t_start in (t * np.array([1.0, 1.0, -1.0]), np.zeros_like(t)):
        q, t_out = refine.refine_pose(observe(R, t), PTS_Kx3, R.as_quat(), t_start, iters=10)
        assert np.max(angle_between(q, R.as_quat())) < 1e-8
        assert np.max(np.abs(np.asarray(t_out) - t)) < 1e-6


def test_zero_weight_equals_dropping_the_point(x64):
    rng = np.random.default_rng(8)
    R, t = face_poses(rng, N)
    xy = observe(R, t) + rng.normal(scale=2e-3, size=(N, 6, 2))
    xy[:, 3] += 0.2  # a gross outlier on the mouth
    q0, t0 = perturb(rng, R, t)
    w = np.ones(6)
    w[3] = 0.0
    q_w, t_w = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=5, weights=np.broadcast_to(w, (N, 6)))
    keep = [0, 1, 2, 4, 5]
    q_d, t_d = refine.refine_pose(xy[:, keep], PTS_Kx3[keep], q0, t0, iters=5)
    np.testing.assert_allclose(np.asarray(q_w), np.asarray(q_d), atol=1e-10)
    np.testing.assert_allclose(np.asarray(t_w), np.asarray(t_d), atol=1e-8)


def test_batched_equals_per_example(x64):
    rng = np.random.default_rng(9)
    R, t = face_poses(rng, 6)
    xy = (observe(R, t) + rng.normal(scale=3e-3, size=(6, 6, 2))).reshape(2, 3, 6, 2)
    q0, t0 = perturb(rng, R, t)
    q0, t0 = q0.reshape(2, 3, 4), t0.reshape(2, 3, 3)
    q, t_out = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=5)
    assert q.shape == (2, 3, 4) and t_out.shape == (2, 3, 3)
    q_b, t_b = refine.refine_pose(xy, np.broadcast_to(PTS_Kx3, (2, 3, 6, 3)), q0, t0, iters=5)
    np.testing.assert_allclose(np.asarray(q_b), np.asarray(q), rtol=0, atol=1e-13)
    # Programs for other batch shapes may round differently; near the optimum the cost is flat to
    # within rounding over ~sqrt(eps) of the pose, so whether the last tiny step is accepted can
    # differ: the same result to 1e-8 (measured here: 4 iterations agree to 1e-15, the 5th step
    # of ~1e-9 is taken in one program only).
    for i in range(2):
        for j in range(3):
            q_ij, t_ij = refine.refine_pose(xy[i, j], PTS_Kx3, q0[i, j], t0[i, j], iters=5)
            assert q_ij.shape == (4,)
            np.testing.assert_allclose(np.asarray(q_ij), np.asarray(q[i, j]), rtol=0, atol=1e-8)
            np.testing.assert_allclose(np.asarray(t_ij), np.asarray(t_out[i, j]), rtol=0, atol=1e-6)


def test_chunks_give_the_same_result(x64, monkeypatch):
    # On CPU a batch larger than _CPU_CHUNK is refined chunk by chunk (the last one padded).
    import functools

    rng = np.random.default_rng(15)
    R, t = face_poses(rng, 37)
    xy = observe(R, t) + rng.normal(scale=3e-3, size=(37, 6, 2))
    q0, t0 = perturb(rng, R, t)
    w = rng.uniform(0.5, 2.0, (37, 6))  # per-example weights are chunked too; the layout is shared
    run = lambda: jax.jit(functools.partial(refine.refine_pose.__wrapped__, iters=5))(xy, PTS_Kx3, q0, t0, weights=w)  # noqa: E731
    q1, t1 = run()
    monkeypatch.setattr(refine, "_CPU_CHUNK", 8)
    q2, t2 = run()
    # Same tolerance as test_batched_equals_per_example (another program shape; flat optimum).
    np.testing.assert_allclose(np.asarray(q2), np.asarray(q1), rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(t2), np.asarray(t1), rtol=0, atol=1e-6)


def test_compiles_once_per_shape():
    rng = np.random.default_rng(10)
    R, t = face_poses(rng, 13)  # a batch size no other test uses
    q0, t0 = perturb(rng, R, t)
    args = [np.asarray(a, np.float32) for a in (observe(R, t), PTS_Kx3, q0, t0)]
    args2 = [a + np.float32(0.01) for a in args]
    args3 = [jnp.asarray(a) for a in args2]  # (staging numpy into jax arrays compiles tiny programs)
    events = []

    def listener(event, duration, **kwargs):
        if event in ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration"):
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        refine.refine_pose(*args, iters=5)
        refine.refine_pose(*args2, iters=5)
        jax.block_until_ready(refine.refine_pose(*args3, iters=5))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert events.count("/jax/core/compile/jaxpr_trace_duration") == 1
    assert events.count("/jax/core/compile/backend_compile_duration") == 1


def _soa(R: Rotation, t: np.ndarray, xy: np.ndarray, sw: np.ndarray):
    """The iterations' batch-last layout: pose (7, N) as (w, x, y, z, t), pts (K, 3, N), xy (K, 2, N), sw (K, N)."""
    n = len(t)
    pose = jnp.asarray(np.concatenate([np.roll(R.as_quat(), 1, axis=-1), t], axis=-1).T)
    pts = jnp.asarray(np.broadcast_to(PTS_Kx3[..., None], PTS_Kx3.shape + (n,)))
    return pose, pts, jnp.moveaxis(jnp.asarray(xy), 0, -1), jnp.asarray(sw).T


def _dense_jacobian(J) -> jax.Array:
    """`_linearise`'s nested lists (None = structural zero) -> (6, 2, K, N)."""
    like = next(d for row in J for d in row if d is not None)
    return jnp.stack([jnp.stack([jnp.zeros_like(like) if d is None else d for d in row]) for row in J])


def test_analytic_jacobian_matches_jacfwd(x64):
    rng = np.random.default_rng(11)
    R, t = face_poses(rng, 4)
    xy = observe(R, t) + rng.normal(scale=1e-2, size=(4, 6, 2))
    pose, pts, xy_s, sw = _soa(R, t, xy, rng.uniform(0.5, 2.0, (4, 6)))
    r, J = refine._linearise(refine._camera_points(pose, pts), xy_s, sw)

    def residual(delta_6xN):
        return jnp.stack(refine._linearise(refine._camera_points(refine._retract(delta_6xN, pose), pts), xy_s, sw)[0])

    np.testing.assert_allclose(np.asarray(jnp.stack(r)), np.asarray(residual(jnp.zeros((6, 4)))), rtol=0, atol=0)
    jac = np.asarray(jax.jacfwd(residual)(jnp.zeros((6, 4))))  # (2, K, N, 6, N)
    J = np.asarray(_dense_jacobian(J))  # (6, 2, K, N)
    for n in range(4):
        np.testing.assert_allclose(jac[:, :, n, :, n], np.moveaxis(J[..., n], 0, -1), atol=1e-12)
        others = np.delete(jac[:, :, n], n, axis=-1)
        assert np.all(others == 0)  # examples do not interact


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_retraction_is_the_se3_exponential(x64, dtype):
    # The iterations write exp(delta) @ T out entry by entry. Reference: the matrix exponential of
    # the 4x4 twist (exact at every angle), also at the angles where the code switches to series
    # (th^2 = sqrt(840 eps): 6.5e-4 rad in float64, 0.1 rad in float32); and jaxlie's
    # SE3.exp(delta) @ T (same (v, omega) order) away from its own small-angle shortcut.
    from scipy.linalg import expm

    rng = np.random.default_rng(14)
    angles = np.array([0.0, 1e-9, 1e-6, 6.4e-4, 6.6e-4, 1e-3, 0.0999, 0.1001, 0.3, 1.0, 2.5])
    n = len(angles)
    R, t = face_poses(rng, n)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    delta = np.concatenate([rng.normal(scale=2.0, size=(n, 3)), axis * angles[:, None]], axis=-1)
    T = refine._to_se3(jnp.asarray(R.as_quat()), jnp.asarray(t))
    got = np.asarray(refine._retract(jnp.asarray(delta.T, dtype), jnp.asarray(T.wxyz_xyz.T, dtype))).T
    assert got.dtype == dtype
    want_R, want_t = np.empty((n, 3, 3)), np.empty((n, 3))
    for i in range(n):
        v, w = delta[i, :3], delta[i, 3:]
        twist = np.zeros((4, 4))
        twist[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
        twist[:3, 3] = v
        E = expm(twist)
        want_R[i], want_t[i] = E[:3, :3] @ R[i].as_matrix(), E[:3, :3] @ t[i] + E[:3, 3]
    tol = {np.float64: 1e-12, np.float32: 2e-5}[dtype]
    got_R = Rotation.from_quat(np.roll(got[:, :4].astype(np.float64), -1, axis=-1)).as_matrix()
    np.testing.assert_allclose(got_R, want_R, rtol=0, atol=tol)
    np.testing.assert_allclose(np.linalg.norm(got[:, :4], axis=-1), 1.0, atol=tol)
    np.testing.assert_allclose(got[:, 4:], want_t, rtol=0, atol=tol * 100)  # |t| ~ 100 cm
    big = angles >= 1e-3
    jl = np.asarray((jaxlie.SE3.exp(jnp.asarray(delta)) @ T).wxyz_xyz)
    np.testing.assert_allclose(got[big], jl[big], rtol=0, atol=tol * 100)


def test_spd_solver(x64):
    rng = np.random.default_rng(12)
    M = rng.normal(size=(50, 12, 6)) * np.array([1e-2, 1e-2, 1e-2, 1.0, 1.0, 1.0])  # badly scaled
    A, b = np.einsum("nki,nkj->nij", M, M), rng.normal(size=(50, 6))
    x = refine._solve_spd(jnp.asarray(A), jnp.asarray(b))
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(A, b[..., None])[..., 0], rtol=1e-8)
    assert np.all(np.isnan(np.asarray(refine._solve_spd(jnp.asarray(-A), jnp.asarray(b)))))


def test_reprojection_rmse(x64):
    rng = np.random.default_rng(13)
    R, t = face_poses(rng, 5)
    xy = observe(R, t)
    assert np.max(np.asarray(refine.reprojection_rmse(xy, PTS_Kx3, R.as_quat(), t))) < 1e-14
    rmse = refine.reprojection_rmse(xy + np.array([3e-3, -4e-3]), PTS_Kx3, R.as_quat(), t)
    np.testing.assert_allclose(np.asarray(rmse), 5e-3, rtol=1e-10)


def test_unknown_method():
    with pytest.raises(ConfigError):
        refine.refine_pose(np.zeros((6, 2)), PTS_Kx3, np.array([0, 0, 0, 1.0]), np.array([0, 0, 60.0]), method="newton")


# --------------------------------------------------------------------------------------------
# Object-space and maximum-likelihood costs
# --------------------------------------------------------------------------------------------


def _object_cost(q, t, xy, pts=PTS_Kx3) -> np.ndarray:
    """Sum of squared distances of the posed points from the observed rays (numpy, independent)."""
    X = (
        np.einsum("nij,kj->nki", Rotation.from_quat(np.asarray(q, np.float64)).as_matrix(), pts)
        + np.asarray(t)[:, None]
    )
    m = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], -1)
    m /= np.linalg.norm(m, axis=-1, keepdims=True)
    return np.sum(np.cross(X, m) ** 2, axis=(1, 2))


def _ml_nll(q, t, xy, s3, s2, pts=PTS_Kx3):
    """-2 log-likelihood (up to a constant) of the mixed-noise model, written directly: the
    landmark of point X is N(proj(X), J (s3^2 I) J^T + s2^2 I) with J the projection's Jacobian."""
    R = jaxlie.SO3(jnp.concatenate([q[3:], q[:3]])).as_matrix()
    X = pts @ R.T + t
    out = 0.0
    for k in range(len(pts)):
        x, y, z = X[k]
        J = jnp.array([[1 / z, 0, -x / z**2], [0, 1 / z, -y / z**2]])
        S = s3**2 * J @ J.T + s2**2 * jnp.eye(2)
        r = X[k, :2] / z - xy[k]
        out = out + r @ jnp.linalg.solve(S, r) + jnp.log(jnp.linalg.det(S))
    return out


def test_ml_cost_and_gradient_match_the_direct_likelihood(x64):
    rng = np.random.default_rng(21)
    R, t = face_poses(rng, 4)
    xy = observe(R, t) + rng.normal(scale=5e-3, size=(4, 6, 2))
    q = R.as_quat()
    s3, s2 = np.array([0.3, 0.5, 0.1, 0.3]), np.array([1e-3, 0.0, 4e-3, 2e-3])
    pose, pts, xy_s, _ = _soa(R, t, xy, np.ones((4, 6)))
    cost, _ = refine._ml_cost_and_front(pose, pts, xy_s, jnp.asarray(s3**2), jnp.asarray(s2**2))
    _, g = refine._ml_normal_equations(refine._camera_points(pose, pts), xy_s, jnp.asarray(s3**2), jnp.asarray(s2**2))
    for n in range(4):
        T = jaxlie.SE3.from_rotation_and_translation(
            jaxlie.SO3(jnp.asarray(np.r_[q[n, 3:], q[n, :3]])), jnp.asarray(t[n])
        )

        def f(delta, n=n, T=T):
            Tn = jaxlie.SE3.exp(delta) @ T
            wxyz = Tn.rotation().wxyz
            return _ml_nll(jnp.concatenate([wxyz[1:], wxyz[:1]]), Tn.translation(), xy[n], s3[n], s2[n])

        np.testing.assert_allclose(float(cost[n]), float(f(jnp.zeros(6))), rtol=1e-10)
        grad = np.asarray(jax.grad(f)(jnp.zeros(6)))
        np.testing.assert_allclose(2 * np.asarray([gk[n] for gk in g]), grad, rtol=1e-7, atol=1e-7 * np.abs(grad).max())


def test_object_cost_beats_opencv_sqpnp_on_its_own_cost(x64):
    """cost="object" minimises SQPnP's error: from a perturbed start it ends at an object-space cost
    no higher than OpenCV's SQPnP solution's (SQPnP stops at a tolerance), on 3D-jittered points."""
    rng = np.random.default_rng(22)
    R, t = face_poses(rng, N)
    jittered = PTS_Kx3[None] + rng.normal(scale=0.3, size=(N, 6, 3))
    X = np.einsum("nij,nkj->nki", R.as_matrix(), jittered) + t[:, None]
    xy = X[..., :2] / X[..., 2:]
    q0, t0 = perturb(rng, R, t)
    q, t_out = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10, cost="object")
    ours = _object_cost(q, np.asarray(t_out), xy)
    cv = np.empty(N)
    for i in range(N):
        _, rvec, tvec = cv2.solvePnP(PTS_Kx3, xy[i], np.eye(3), None, flags=cv2.SOLVEPNP_SQPNP)
        cv[i] = _object_cost(Rotation.from_rotvec(rvec.ravel()).as_quat()[None], tvec.reshape(1, 3), xy[i : i + 1])[0]
    assert np.all(ours <= cv * (1 + 1e-9)), np.max(ours / cv)
    assert np.mean(ours < cv * (1 - 1e-6)) > 0.5  # and strictly lower on most poses
    # The image cost's optimum is a different pose: the costs are not the same estimator.
    q_img, t_img = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10)
    assert np.all(ours <= _object_cost(q_img, np.asarray(t_img), xy) * (1 + 1e-9))
    assert np.median(angle_between(q, q_img)) > 1e-4


@pytest.mark.parametrize("cost", ["object", "ml"])
def test_other_costs_recover_exact_pose_and_keep_it(x64, cost):
    rng = np.random.default_rng(23)
    R, t = face_poses(rng, N)
    xy = observe(R, t)
    q0, t0 = perturb(rng, R, t)
    # ml: a noise-free model (sigma_3d at its floor) converges more slowly from 5-10 deg away.
    run = (
        (lambda q_, t_: refine.refine_ml(xy, PTS_Kx3, q_, t_, refine.NoiseModel(), iters=20))
        if cost == "ml"
        else (lambda q_, t_: refine.refine_pose(xy, PTS_Kx3, q_, t_, iters=10, cost="object"))
    )
    q, t_out = run(q0, t0)
    assert np.max(angle_between(q, R.as_quat())) < 1e-4 * np.pi / 180 and np.max(np.abs(np.asarray(t_out) - t)) < 1e-4
    q, t_out = run(R.as_quat(), t)  # object: a fixed point; ml: moved only by its floor's O(sigma^2) pull
    tol_rad, tol_t = (1e-8, 1e-6) if cost == "object" else (1e-6, 1e-5)
    assert np.max(angle_between(q, R.as_quat())) < tol_rad and np.max(np.abs(np.asarray(t_out) - t)) < tol_t


def test_ml_without_3d_noise_is_the_image_cost(x64):
    rng = np.random.default_rng(24)
    R, t = face_poses(rng, N)
    xy = observe(R, t) + rng.normal(scale=3e-3, size=(N, 6, 2))
    q0, t0 = perturb(rng, R, t)
    q_ml, t_ml = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10, cost="ml", sigma_3d=0.0, sigma_2d=3e-3)
    q_im, t_im = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10)
    assert np.max(angle_between(q_ml, q_im)) < 1e-8 and np.max(np.abs(np.asarray(t_ml) - np.asarray(t_im))) < 1e-6


def test_ml_with_3d_noise_differs_from_both_and_lowers_its_cost(x64):
    rng = np.random.default_rng(25)
    R, t = face_poses(rng, N)
    xy = observe(R, t) + rng.normal(scale=2e-3, size=(N, 6, 2))
    q0, t0 = perturb(rng, R, t)
    s2 = 2e-3
    q, t_out = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10, cost="ml", sigma_3d=0.3, sigma_2d=s2)
    f = jax.vmap(lambda q_, t_, x_: _ml_nll(q_, t_, x_, 0.3, s2))
    q_im, t_im = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10)
    q_ob, t_ob = refine.refine_pose(xy, PTS_Kx3, q0, t0, iters=10, cost="object")
    mine = np.asarray(f(q, t_out, xy))
    assert np.all(mine <= np.asarray(f(jnp.asarray(q_im), t_im, xy)) + 1e-9)
    assert np.all(mine <= np.asarray(f(jnp.asarray(q_ob), t_ob, xy)) + 1e-9)
    assert np.median(angle_between(q, q_im)) > 1e-4 and np.median(angle_between(q, q_ob)) > 1e-5


@pytest.mark.parametrize("cost", ["object", "ml"])
def test_other_costs_never_nan_and_never_behind_camera(x64, cost):
    for name, xy, pts, q0, t0 in _degenerate_cases(np.random.default_rng(26)):
        if name == "zero weights":
            continue
        q, t = refine.refine_pose(xy, pts, q0, t0, iters=5, cost=cost, sigma_3d=0.3, sigma_2d=1e-3)
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(t)), name
        assert np.all(depths(q, t, np.asarray(pts, np.float64)) > MIN_DEPTH * (1 - 1e-4)), name


def test_noise_model_of_protocols_and_bad_values():
    from pnpjax import protocols

    assert refine.noise_model_of(protocols.RealisticProtocol()) == refine.NoiseModel(0.3, 0.03)
    m = refine.noise_model_of(protocols.SeedProtocol(noise_cm=1.0))
    assert m.noise_2d == 0.0 and m.sigma_3d == pytest.approx(1 / np.sqrt(3))  # std of U(-1, 1)
    with pytest.raises(ConfigError, match="finite and >= 0"):
        refine.NoiseModel(-1.0, 0.0)
    with pytest.raises(ConfigError, match="unknown refinement cost"):
        refine.refine_pose(np.zeros((6, 2)), PTS_Kx3, np.array([0, 0, 0, 1.0]), np.array([0, 0, 50.0]), cost="bogus")


def test_ml_retry_continues_only_gross_fits(x64):
    """refine_ml(retry=M): examples whose fit is gross after `iters` steps (starts 40 degrees off)
    get up to M more steps and converge; the others are exactly those of retry=0."""
    from pnpjax import geometry, layouts

    pts = jnp.asarray(layouts.BLAZEFACE6.array, jnp.float64)
    rng = np.random.default_rng(0)
    n = 64
    q_true = np.asarray(
        geometry.quat_normalize(jnp.asarray(rng.normal(size=(n, 4)) * [0.2, 0.2, 0.2, 1] + [1, 0, 0, 0]))
    )
    t_true = np.stack([rng.uniform(-5, 5, n), rng.uniform(-5, 5, n), rng.uniform(50, 80, n)], -1)
    R = np.asarray(geometry.quat_to_matrix(jnp.asarray(q_true)))
    X = np.einsum("nij,kj->nki", R, np.asarray(pts)) + t_true[:, None]
    xy = jnp.asarray(X[..., :2] / X[..., 2:])
    # Half the starts 2 degrees off, half 40 degrees off (about the camera's y axis).
    angle = np.where(np.arange(n) < n // 2, np.radians(2.0), np.radians(40.0))
    turn = np.stack([np.zeros(n), np.sin(angle / 2), np.zeros(n), np.cos(angle / 2)], -1)
    q0 = geometry.quat_multiply(jnp.asarray(turn), jnp.asarray(q_true))
    noise = refine.NoiseModel(0.3, 0.03)
    q2, t2 = refine.refine_ml(xy, pts, q0, jnp.asarray(t_true), noise, iters=2)
    qr, tr = refine.refine_ml(xy, pts, q0, jnp.asarray(t_true), noise, iters=2, retry=30)
    err = lambda q: np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(np.asarray(q) * q_true, -1)), 0, 1)))  # noqa: E731
    changed = np.any(np.asarray(qr) != np.asarray(q2), -1) | np.any(np.asarray(tr) != np.asarray(t2), -1)
    assert not changed[: n // 2].any()  # good fits: untouched
    far2, far_r = err(q2)[n // 2 :], err(qr)[n // 2 :]
    gross = far2 > 10  # still > 10 degrees off after 2 steps
    assert gross.sum() >= n // 8 and np.all(far_r[gross] < 1)  # converged with the retry
