"""Batched Gauss-Newton / Levenberg-Marquardt pose refinement on the reprojection error.

The cost of one example is the (optionally weighted) sum of squared 2D errors in normalised image
coordinates, sum_k w_k |proj(R X_k + t) - xy_k|^2, minimised over the pose's tangent space with a
left retraction in the camera frame, T <- SE3.exp(delta) @ T (delta = (v, omega), jaxlie's order).
Everything is shape-polymorphic over leading batch axes and runs a fixed number of iterations, so
one compiled program serves every batch of a given shape (and the work is the same for every
example, which is what a browser or a vmapped training loss wants).

Guarantees, per example:
  * the returned pose has every layout point at depth > ``MIN_DEPTH`` (layout units);
  * the cost never increases (a step is taken only if its cost is finite and lower), so an exact
    pose is a fixed point and a noisy one can only improve;
  * an initial pose with a point at depth <= ``MIN_DEPTH`` is first moved in front of the camera:
    the rotation is kept and the translation re-initialised by weak perspective (the layout's
    centroid placed on the ray through the observations' mean, at the depth where the layout's 3D
    spread matches the observed 2D spread, never closer than one spread in front of the nearest
    point). That start is then refined like any other; with the right rotation it converges to
    the true pose;
  * the output is finite whenever the layout points are: a zero or non-finite initial rotation is
    replaced by the identity and a non-finite translation by the origin (then moved in front), and
    non-finite observations make every step fail the acceptance test.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jaxlie
from jax.typing import ArrayLike

from pnpjax import geometry
from pnpjax.camera import MIN_DEPTH, project
from pnpjax.errors import ConfigError

METHODS = ("lm", "gn")
_LAMBDA_INIT = 1e-4  # Marquardt damping relative to diag(J^T J): starts close to Gauss-Newton.
_LAMBDA_DOWN, _LAMBDA_UP = 0.1, 10.0
_LAMBDA_MIN, _LAMBDA_MAX = 1e-10, 1e10  # keeps lambda finite in float32 after many rejections.
_DIAG_FLOOR = 1e-6  # relative floor of the damping diagonal: unobservable directions stay damped.


def _to_se3(q_xyzw: jax.Array, t: jax.Array) -> jaxlie.SE3:
    """(..., 4) xyzw quaternion and (..., 3) translation -> jaxlie SE3 (which stores wxyz)."""
    wxyz = jnp.concatenate([q_xyzw[..., 3:], q_xyzw[..., :3]], axis=-1)
    return jaxlie.SE3.from_rotation_and_translation(jaxlie.SO3(wxyz), t)


def _from_se3(T: jaxlie.SE3) -> tuple[jax.Array, jax.Array]:
    """jaxlie SE3 -> ((..., 4) xyzw unit quaternion, (..., 3) translation)."""
    wxyz = T.rotation().wxyz
    q = jnp.concatenate([wxyz[..., 1:], wxyz[..., :1]], axis=-1)
    return geometry.quat_normalize(q), T.translation()


def _camera_points(T: jaxlie.SE3, pts: jax.Array) -> jax.Array:
    """(...,) poses and (..., K, 3) layout points -> (..., K, 3) camera points."""
    return geometry.transform_points(T.rotation().as_matrix(), T.translation(), pts)


def _cost_and_front(T: jaxlie.SE3, pts: jax.Array, xy: jax.Array, sw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted sum of squared errors (...,) and whether every point is at depth > MIN_DEPTH."""
    X = _camera_points(T, pts)
    r = (project(X) - xy) * sw[..., None]
    return jnp.sum(r * r, axis=(-2, -1)), jnp.all(X[..., 2] > MIN_DEPTH, axis=-1)


def _linearise(T: jaxlie.SE3, pts: jax.Array, xy: jax.Array, sw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Residuals (..., K, 2) and their analytic Jacobian (..., K, 2, 6) w.r.t. delta at 0.

    For X' = exp(delta) X, dX'/d(v, omega) = [I, -[X]x]; the projection's Jacobian is
    [[1/z, 0, -x/z^2], [0, 1/z, -y/z^2]] (depth clamped like ``project``).
    """
    X = _camera_points(T, pts)
    x, y = X[..., 0], X[..., 1]
    z = jnp.maximum(X[..., 2], MIN_DEPTH)
    iz = 1.0 / z
    u, v = x * iz, y * iz
    zero = jnp.zeros_like(iz)
    # Rows d(u)/d(v, omega) and d(v)/d(v, omega); omega columns are (dproj/dX) @ (-[X]x).
    du = jnp.stack([iz, zero, -u * iz, -u * v, 1.0 + u * u, -v], axis=-1)
    dv = jnp.stack([zero, iz, -v * iz, -(1.0 + v * v), u * v, u], axis=-1)
    J = jnp.stack([du, dv], axis=-2) * sw[..., None, None]
    r = (jnp.stack([u, v], axis=-1) - xy) * sw[..., None]
    return r, J


def _solve_spd(A: jax.Array, b: jax.Array) -> jax.Array:
    """Solve A x = b for small batched SPD A (..., n, n) by an unrolled, Jacobi-scaled Cholesky.

    Unrolled scalar code vectorises over the batch far better on CPU than a batched LAPACK call,
    and the Jacobi scaling (rotation and translation columns differ by ~1/depth^2) keeps float32
    accurate. A matrix that is not positive definite yields NaN, which the caller rejects.
    """
    n = A.shape[-1]
    s = jax.lax.rsqrt(jnp.diagonal(A, axis1=-2, axis2=-1))
    a = [[A[..., i, j] * s[..., i] * s[..., j] for j in range(n)] for i in range(n)]
    L = [[None] * n for _ in range(n)]
    for j in range(n):
        L[j][j] = jnp.sqrt(a[j][j] - sum(L[j][k] * L[j][k] for k in range(j)))
        for i in range(j + 1, n):
            L[i][j] = (a[i][j] - sum(L[i][k] * L[j][k] for k in range(j))) / L[j][j]
    y = [None] * n
    for i in range(n):
        y[i] = (b[..., i] * s[..., i] - sum(L[i][k] * y[k] for k in range(i))) / L[i][i]
    x = [None] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(L[k][i] * x[k] for k in range(i + 1, n))) / L[i][i]
    return jnp.stack(x, axis=-1) * s


def _move_in_front(R: jax.Array, t: jax.Array, pts: jax.Array, xy: jax.Array) -> jax.Array:
    """A translation that puts every point in front of the camera, keeping R (weak perspective).

    Places the layout centroid on the ray through the observations' mean, at the depth where the
    layout's RMS radius matches the observations' RMS radius, but at least one radius (and
    MIN_DEPTH) beyond the point that would otherwise be nearest. Non-finite observations fall back
    to a pure shift along the optical axis.
    """
    c = jnp.mean(pts, axis=-2)
    P = jnp.einsum("...ij,...kj->...ki", R, pts - c[..., None, :])  # rotated, centred
    rad3 = jnp.sqrt(jnp.mean(jnp.sum(P * P, axis=-1), axis=-1))
    m = jnp.mean(xy, axis=-2)
    rad2 = jnp.sqrt(jnp.mean(jnp.sum((xy - m[..., None, :]) ** 2, axis=-1), axis=-1))
    z_min = jnp.max(-P[..., 2], axis=-1) + jnp.maximum(rad3, 2 * MIN_DEPTH)
    z_wp = rad3 / jnp.where(rad2 > 0, rad2, 1.0)
    # rad2 == 0 (all landmarks identical) or NaN gives no scale: fall back to the nearest safe depth.
    z = jnp.where((rad2 > 0) & jnp.isfinite(z_wp), jnp.maximum(z_wp, z_min), z_min)
    Rc = jnp.einsum("...ij,...j->...i", R, c)
    t_wp = jnp.concatenate([m * z[..., None], z[..., None]], axis=-1) - Rc
    t_shift = t.at[..., 2].set(z - Rc[..., 2])
    return jnp.where(jnp.all(jnp.isfinite(t_wp), axis=-1, keepdims=True), t_wp, t_shift)


def _sanitize_start(q: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Identity rotation for a zero or non-finite q, the origin for a non-finite t (raw net outputs)."""
    q_ok = jnp.all(jnp.isfinite(q), axis=-1, keepdims=True) & (jnp.sum(q * q, axis=-1, keepdims=True) > 0)
    q = jnp.where(q_ok, q, jnp.asarray([0.0, 0.0, 0.0, 1.0], q.dtype))
    t = jnp.where(jnp.all(jnp.isfinite(t), axis=-1, keepdims=True), t, jnp.zeros_like(t))
    return geometry.quat_normalize(q), t


def _broadcast_inputs(xy, pts, q, t, weights):
    """Common float dtype and batch shape for all inputs; weights default to ones."""
    dtype = jnp.result_type(xy, pts, q, t, float)
    xy, pts, q, t = (jnp.asarray(a, dtype) for a in (xy, pts, q, t))
    assert xy.shape[-1] == 2 and pts.shape[-1] == 3, (xy.shape, pts.shape)
    assert q.shape[-1] == 4 and t.shape[-1] == 3, (q.shape, t.shape)
    assert xy.shape[-2] == pts.shape[-2], (xy.shape, pts.shape)
    K = xy.shape[-2]
    batch = jnp.broadcast_shapes(xy.shape[:-2], pts.shape[:-2], q.shape[:-1], t.shape[:-1])
    w = jnp.ones((K,), dtype) if weights is None else jnp.asarray(weights, dtype)
    assert w.shape[-1:] == (K,), w.shape
    batch = jnp.broadcast_shapes(batch, w.shape[:-1])
    return (
        jnp.broadcast_to(xy, batch + (K, 2)),
        jnp.broadcast_to(pts, batch + (K, 3)),
        jnp.broadcast_to(q, batch + (4,)),
        jnp.broadcast_to(t, batch + (3,)),
        jnp.broadcast_to(w, batch + (K,)),
    )


@functools.partial(jax.jit, static_argnames=("iters", "method"))
def refine_pose(
    xy: ArrayLike,
    pts: ArrayLike,
    q: ArrayLike,
    t: ArrayLike,
    *,
    iters: int = 5,
    method: str = "lm",
    weights: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Refine poses by minimising the reprojection error in normalised image coordinates.

    Args:
      xy: (..., K, 2) observed normalised coordinates ((u - cx)/fx, (v - cy)/fy), OpenCV frame.
      pts: (K, 3) or (..., K, 3) layout points (layout units, e.g. cm).
      q: (..., 4) initial rotation R_cam_layout as an (x, y, z, w) quaternion (need not be unit;
        a zero or non-finite q starts from the identity rotation).
      t: (..., 3) initial translation, layout units: X_cam = R X_layout + t (a non-finite t starts
        from the origin, i.e. behind the camera, and is moved in front as described above).
      iters: number of iterations (static; the same work is done for every example).
      method: "lm" (Levenberg-Marquardt: per-example lambda, Marquardt diagonal scaling; a step is
        taken only if it lowers the cost, otherwise lambda grows) or "gn" (undamped Gauss-Newton
        with the same acceptance test, so it stops at the first step that would not improve).
      weights: optional (..., K) non-negative per-point weights on the squared errors.

    Returns:
      (q, t): (..., 4) unit (x, y, z, w) quaternions (sign follows the input, not canonicalised)
      and (..., 3) translations, in the inputs' common float dtype. Every point is at depth
      > MIN_DEPTH and the cost is <= that of the (moved-in-front) initial pose.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown refinement method '{method}': use one of {METHODS}")
    xy, pts, q, t, w = _broadcast_inputs(xy, pts, q, t, weights)
    sw = jnp.sqrt(jnp.maximum(w, 0.0))
    T = _to_se3(*_sanitize_start(q, t))

    # An initial pose behind the camera has no meaningful cost (depths are clamped): restart its
    # translation in front, otherwise every step would be judged against a garbage cost.
    _, in_front = _cost_and_front(T, pts, xy, sw)
    R = T.rotation().as_matrix()
    t0 = jnp.where(in_front[..., None], T.translation(), _move_in_front(R, T.translation(), pts, xy))
    T = jaxlie.SE3.from_rotation_and_translation(T.rotation(), t0)
    cost, _ = _cost_and_front(T, pts, xy, sw)

    lam0 = _LAMBDA_INIT if method == "lm" else 0.0
    lam = jnp.full(cost.shape, lam0, cost.dtype)

    def step(_, state):
        params, cost, lam = state
        T = jaxlie.SE3(params)
        r, J = _linearise(T, pts, xy, sw)
        JtJ = jnp.einsum("...kia,...kib->...ab", J, J)
        g = jnp.einsum("...kia,...ki->...a", J, r)
        d = jnp.diagonal(JtJ, axis1=-2, axis2=-1)
        d = jnp.maximum(d, _DIAG_FLOOR * jnp.max(d, axis=-1, keepdims=True))
        A = JtJ + (lam[..., None] * d)[..., None] * jnp.eye(6, dtype=d.dtype)
        delta = -_solve_spd(A, g)
        T_new = jaxlie.SE3.exp(delta) @ T
        cost_new, front_new = _cost_and_front(T_new, pts, xy, sw)
        ok = front_new & jnp.isfinite(cost_new) & (cost_new < cost)
        ok &= jnp.all(jnp.isfinite(T_new.wxyz_xyz), axis=-1)
        params = jnp.where(ok[..., None], T_new.wxyz_xyz, params)
        cost = jnp.where(ok, cost_new, cost)
        if method == "lm":
            lam = jnp.clip(jnp.where(ok, lam * _LAMBDA_DOWN, lam * _LAMBDA_UP), _LAMBDA_MIN, _LAMBDA_MAX)
        return params, cost, lam

    params, _, _ = jax.lax.fori_loop(0, iters, step, (T.wxyz_xyz, cost, lam))
    return _from_se3(jaxlie.SE3(params))


@jax.jit
def reprojection_rmse(xy: ArrayLike, pts: ArrayLike, q: ArrayLike, t: ArrayLike) -> jax.Array:
    """Root-mean-square 2D reprojection error per example, in normalised image coordinates.

    Args:
      xy: (..., K, 2) observed normalised coordinates.
      pts: (K, 3) or (..., K, 3) layout points.
      q: (..., 4) (x, y, z, w) quaternion of R_cam_layout.
      t: (..., 3) translation.

    Returns:
      (...,) sqrt(mean_k |proj(R X_k + t) - xy_k|^2). Points behind the camera are projected with
      their depth clamped to MIN_DEPTH, so such poses score very large but finite errors.
    """
    xy, pts, q, t, _ = _broadcast_inputs(xy, pts, q, t, None)
    X = geometry.transform_points(geometry.quat_to_matrix(geometry.quat_normalize(q)), t, pts)
    e = project(X) - xy
    return jnp.sqrt(jnp.mean(jnp.sum(e * e, axis=-1), axis=-1))
