"""Batched Gauss-Newton / Levenberg-Marquardt pose refinement on the reprojection error.

The cost of one example is, by default, the (optionally weighted) sum of squared 2D errors in
normalised image coordinates, sum_k w_k |proj(R X_k + t) - xy_k|^2; or (``cost="object"``) the sum
of squared distances of the posed points from the observations' viewing rays (SQPnP's cost); or
(``cost="ml"``, `refine_ml`) the exact Gaussian negative log-likelihood when both the 3D points and
the landmarks are noisy. It is minimised over the pose's tangent space with a left retraction in
the camera frame, T <- SE3.exp(delta) @ T (delta = (v, omega), jaxlie's order).
Everything is shape-polymorphic over leading batch axes and runs a fixed number of iterations, so
one compiled program serves every batch of a given shape (and the work is the same for every
example, which is what a browser or a vmapped training loss wants).

Layout, for speed on CPU: inside the iterations the pose is a (7, B) array (jaxlie's wxyz_xyz,
transposed) and every per-point quantity has the batch as its last (fastest) axis, e.g. camera
points (3, K, B); the Jacobian stays a nested list of (K, B) entries, and the 6x6 normal equations
are formed and solved entry by entry as (B,) vectors. Every operation is then one long vectorised
loop over examples (batched tiny matrix products, and minor axes of length 2 or 6, vectorise
poorly: this layout is ~4x faster than the batch-first one at 10 iterations). On CPU a large
batch is also processed in chunks of ``_CPU_CHUNK`` examples (``lax.map``), so the working set of
an iteration stays in cache; every example gets the same arithmetic whatever the batch, chunking
or sharing of the layout.

Guarantees, per example:
  * the returned pose has every layout point at depth > ``MIN_DEPTH`` (layout units);
  * the cost never increases (a step is taken only if its cost is finite and lower), so an exact
    pose is a fixed point of the image and object costs and a noisy one can only improve (the
    "ml" likelihood's own optimum sits O(sigma_3d^2) off an exact pose: see `refine_ml`);
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

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import jaxlie
from jax.typing import ArrayLike

from pnpjax import geometry
from pnpjax.camera import MIN_DEPTH, project
from pnpjax.errors import ConfigError

METHODS = ("lm", "gn")
COSTS = ("image", "object", "ml")
_LAMBDA_INIT = 1e-4  # Marquardt damping relative to diag(J^T J): starts close to Gauss-Newton.
_LAMBDA_DOWN, _LAMBDA_UP = 0.1, 10.0
_LAMBDA_MIN, _LAMBDA_MAX = 1e-10, 1e10  # keeps lambda finite in float32 after many rejections.
_DIAG_FLOOR = 1e-6  # relative floor of the damping diagonal: unobservable directions stay damped.
_CPU_CHUNK = 2048  # examples per inner loop on CPU: one iteration's working set stays in L2 cache.
# `retry`: an "ml" fit whose mean per-point r^T Sigma^-1 r (2 expected under the noise model) is
# above this after `iters` steps is gross (a start in another basin), and gets more steps.
RETRY_CHI2 = 25.0


def _to_se3(q_xyzw: jax.Array, t: jax.Array) -> jaxlie.SE3:
    """(..., 4) xyzw quaternion and (..., 3) translation -> jaxlie SE3 (which stores wxyz)."""
    wxyz = jnp.concatenate([q_xyzw[..., 3:], q_xyzw[..., :3]], axis=-1)
    return jaxlie.SE3.from_rotation_and_translation(jaxlie.SO3(wxyz), t)


def _from_se3(T: jaxlie.SE3) -> tuple[jax.Array, jax.Array]:
    """jaxlie SE3 -> ((..., 4) xyzw unit quaternion, (..., 3) translation)."""
    wxyz = T.rotation().wxyz
    q = jnp.concatenate([wxyz[..., 1:], wxyz[..., :1]], axis=-1)
    return geometry.quat_normalize(q), T.translation()


def _quat_matrix(q_4B: jax.Array) -> list[list[jax.Array]]:
    """Rotation matrix entries (3 x 3 nested lists of (B,)) of (w, x, y, z) quaternions (4, B);
    like jaxlie's ``as_matrix``, the quaternion's norm is divided out (no drift over iterations)."""
    w, x, y, z = q_4B
    s = 2.0 / (w * w + x * x + y * y + z * z)
    return [
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ]


def _cross(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _retract(delta_6B: jax.Array, pose_7B: jax.Array) -> jax.Array:
    """SE3.exp(delta) @ T for delta = (v, omega) (6, B) and T = (w, x, y, z, t) (7, B), batch last.

    jaxlie's ``SE3.exp(delta) @ T`` written out entry by entry: q' = exp(omega) q (as quaternions),
    t' = R(omega) t + V(omega) v; with series near 0 that keep full precision there (the tests
    check it against the matrix exponential of the twist and against jaxlie).
    """
    v, om = delta_6B[:3], delta_6B[3:]
    th2 = jnp.sum(om * om, axis=0)
    # Below this, 3-term series replace the closed forms: their first dropped term (th^6 / 362880
    # in b) is below the dtype's resolution, and (th - sin th) / th^3 would lose digits.
    small = th2 < math.sqrt(840.0 * float(jnp.finfo(th2.dtype).eps))
    th2_safe = jnp.where(small, 1.0, th2)  # finite values (and gradients) in the unused branch
    th = jnp.sqrt(th2_safe)
    sin_h, cos_h = jnp.sin(0.5 * th), jnp.cos(0.5 * th)  # the only transcendentals: sin th = 2 sin_h cos_h
    half_sin = jnp.where(small, 0.5 - th2 / 48.0 + th2 * th2 / 3840.0, sin_h / th)  # sin(th/2) / th
    half_cos = jnp.where(small, 1.0 - th2 / 8.0 + th2 * th2 / 384.0, cos_h)
    dq = jnp.concatenate([half_cos[None], om * half_sin])  # exp(omega) as (w, x, y, z)
    a = 2.0 * half_sin * half_sin  # (1 - cos th) / th^2 = 2 sin^2(th/2) / th^2, without the cancellation
    b = jnp.where(small, 1.0 / 6.0 - th2 / 120.0 + th2 * th2 / 5040.0, (th - 2.0 * sin_h * cos_h) / (th2_safe * th))
    w_x_v = _cross(om, v)
    V_v = v + a * w_x_v + b * _cross(om, w_x_v)
    aw, ax, ay, az = dq
    bw, bx, by, bz = pose_7B[:4]
    q = jnp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )
    R = _quat_matrix(dq)
    t = pose_7B[4:]
    Rt = jnp.stack([R[i][0] * t[0] + R[i][1] * t[1] + R[i][2] * t[2] for i in range(3)])
    return jnp.concatenate([q, Rt + V_v])


def _camera_points(pose_7B: jax.Array, pts_K3B: jax.Array) -> jax.Array:
    """Poses (w, x, y, z, t) (7, B) and layout points (K, 3, B) -> camera points (3, K, B)."""
    R = _quat_matrix(pose_7B[:4])
    t = pose_7B[4:]
    P = [pts_K3B[:, j] for j in range(3)]  # (K, B) each
    return jnp.stack([R[i][0] * P[0] + R[i][1] * P[1] + R[i][2] * P[2] + t[i] for i in range(3)])


def _cost_and_front(
    pose_7B: jax.Array, pts_K3B: jax.Array, xy_K2B: jax.Array, sw_KB: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Weighted sum of squared errors (B,) and whether every point is at depth > MIN_DEPTH (B,)."""
    X = _camera_points(pose_7B, pts_K3B)
    iz = 1.0 / jnp.maximum(X[2], MIN_DEPTH)  # the depth clamp of camera.project
    ru = (X[0] * iz - xy_K2B[:, 0]) * sw_KB
    rv = (X[1] * iz - xy_K2B[:, 1]) * sw_KB
    return jnp.sum(ru * ru + rv * rv, axis=0), jnp.all(X[2] > MIN_DEPTH, axis=0)


def _linearise(X_3KB: jax.Array, xy_K2B: jax.Array, sw_KB: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Residuals (2, K, B) and their analytic Jacobian (6, 2, K, B) w.r.t. delta at 0, at the
    camera points X (3, K, B) of the current pose (derivative index first: no transposes).

    For X' = exp(delta) X, dX'/d(v, omega) = [I, -[X]x]; the projection's Jacobian is
    [[1/z, 0, -x/z^2], [0, 1/z, -y/z^2]] (depth clamped like ``project``). Returned as lists of
    (K, B) arrays: r[i], J[a][i] (i: image axis, a: tangent direction), to stay unmaterialised.
    """
    iz = 1.0 / jnp.maximum(X_3KB[2], MIN_DEPTH)
    u, v = X_3KB[0] * iz, X_3KB[1] * iz
    # Rows d(u)/d(v, omega) and d(v)/d(v, omega); omega columns are (dproj/dX) @ (-[X]x).
    du = [iz, None, -u * iz, -u * v, 1.0 + u * u, -v]
    dv = [None, iz, -v * iz, -(1.0 + v * v), u * v, u]
    J = [[None if d is None else d * sw_KB for d in pair] for pair in zip(du, dv)]
    r = [(u - xy_K2B[:, 0]) * sw_KB, (v - xy_K2B[:, 1]) * sw_KB]
    return r, J


def _rays(xy_K2B: jax.Array) -> jax.Array:
    """Unit viewing rays (3, K, B) through the observed normalised coordinates."""
    m = jnp.stack([xy_K2B[:, 0], xy_K2B[:, 1], jnp.ones_like(xy_K2B[:, 0])])
    return m * jax.lax.rsqrt(jnp.sum(m * m, axis=0))


def _object_residuals(X_3KB: jax.Array, m_3KB: jax.Array, sw_KB: jax.Array) -> list[jax.Array]:
    """X x m per point, weighted: its norm is the distance of the camera point X from the ray m."""
    return [
        (X_3KB[1] * m_3KB[2] - X_3KB[2] * m_3KB[1]) * sw_KB,
        (X_3KB[2] * m_3KB[0] - X_3KB[0] * m_3KB[2]) * sw_KB,
        (X_3KB[0] * m_3KB[1] - X_3KB[1] * m_3KB[0]) * sw_KB,
    ]


def _object_cost_and_front(pose_7B, pts_K3B, m_3KB, sw_KB) -> tuple[jax.Array, jax.Array]:
    """Weighted sum of squared point-to-ray distances (B,) and whether every point is in front."""
    X = _camera_points(pose_7B, pts_K3B)
    e = _object_residuals(X, m_3KB, sw_KB)
    return sum(c * c for c in e).sum(axis=0), jnp.all(X[2] > MIN_DEPTH, axis=0)


def _linearise_object(X_3KB: jax.Array, m_3KB: jax.Array, sw_KB: jax.Array) -> tuple[list, list]:
    """Object-space residuals e = X x m (3 of (K, B)) and their Jacobian w.r.t. delta at 0.

    With X' = X + v + omega x X: d e / d v_a = b_a x m and d e / d omega_a = X m_a - (m . X) b_a
    (b_a the a-th unit vector), from (omega x X) x m = X (m . omega) - omega (m . X).
    """
    m = [m_3KB[i] * sw_KB for i in range(3)]  # the weight enters linearly
    X = [X_3KB[i] for i in range(3)]
    mX = m[0] * X[0] + m[1] * X[1] + m[2] * X[2]
    J = [[None, -m[2], m[1]], [m[2], None, -m[0]], [-m[1], m[0], None]]  # b_a x m, rows i
    J += [[X[i] * m[a] - (mX if i == a else 0.0) for i in range(3)] for a in range(3)]
    return _object_residuals(X_3KB, m_3KB, sw_KB), J


def _ml_terms(X_3KB, xy_K2B, s3sq_B, s2sq_B):
    """Per point of the mixed-noise likelihood: cost (K, B) and the terms its derivatives reuse.

    The landmark q = proj(X) is observed as xy with covariance Sigma = a I + b q q^T: a = s2^2 + b,
    b = s3^2 / z^2 (isotropic 3D noise s3 on the point, seen at depth z; 2D noise s2). The cost is
    -2 log-likelihood up to a constant: r^T Sigma^-1 r + log det Sigma, with r = q - xy,
    Sigma^-1 = (I - kappa q q^T) / a, kappa = b / D, D = a + b |q|^2, log det = log a + log D.
    """
    z = jnp.maximum(X_3KB[2], MIN_DEPTH)
    iz = 1.0 / z
    q = [X_3KB[0] * iz, X_3KB[1] * iz]
    r = [q[0] - xy_K2B[:, 0], q[1] - xy_K2B[:, 1]]
    b = s3sq_B * iz * iz
    a = s2sq_B + b
    qq = q[0] * q[0] + q[1] * q[1]
    D = a + b * qq
    kappa = b / D
    qr = q[0] * r[0] + q[1] * r[1]
    rr = r[0] * r[0] + r[1] * r[1]
    cost = (rr - kappa * qr * qr) / a + jnp.log(a) + jnp.log(D)
    return cost, (a, b, D, kappa, q, r, iz, qq, qr, rr)


def _ml_cost_and_front(pose_7B, pts_K3B, xy_K2B, s3sq_B, s2sq_B) -> tuple[jax.Array, jax.Array]:
    X = _camera_points(pose_7B, pts_K3B)
    cost, _ = _ml_terms(X, xy_K2B, s3sq_B, s2sq_B)
    return jnp.sum(cost, axis=0), jnp.all(X[2] > MIN_DEPTH, axis=0)


def _ml_normal_equations(X_3KB, xy_K2B, s3sq_B, s2sq_B):
    """Gauss-Newton matrix sum J^T Sigma^-1 J (Sigma frozen) and HALF the exact gradient of the
    mixed-noise cost, in `_normal_equations`' form (the LM step then solves (H + lam D) d = g)."""
    _, (a, b, D, kappa, q, r, iz, qq, qr, rr) = _ml_terms(X_3KB, xy_K2B, s3sq_B, s2sq_B)
    # Jacobians of q (2 x 6, as in `_linearise`) and of z (6) w.r.t. delta = (v, omega).
    u, v = q
    Ju = [iz, None, -u * iz, -u * v, 1.0 + u * u, -v]
    Jv = [None, iz, -v * iz, -(1.0 + v * v), u * v, u]
    Jz = [None, None, 1.0, X_3KB[1], -X_3KB[0], None]
    ia = 1.0 / a
    # Partials of the cost. Through r (q moves r): 2 Sigma^-1 r.
    Sr = [ia * (r[i] - kappa * qr * q[i]) for i in range(2)]
    # Through q inside Sigma (r held): d quad = -(2 b qr / (a D)) (r - b qr q / D); d logdet = 2 b q / D.
    cq = -2.0 * kappa * qr * ia
    dq = [2.0 * Sr[i] + cq * (r[i] - kappa * qr * q[i]) + 2.0 * kappa * q[i] for i in range(2)]
    # Through z: a and b both move by db = -2 b / z dz.
    dquad_da = -rr * ia * ia + kappa * qr * qr * ia * ia + kappa * qr * qr * ia / D
    dquad_db = -qr * qr * ia / D + kappa * qr * qr * qq * ia / D
    dld_da, dld_db = ia + 1.0 / D, qq / D
    dz = (dquad_da + dquad_db + dld_da + dld_db) * (-2.0 * b * iz)
    g = []
    for k in range(6):
        gk = 0.0
        if Ju[k] is not None:
            gk = gk + dq[0] * Ju[k]
        if Jv[k] is not None:
            gk = gk + dq[1] * Jv[k]
        if Jz[k] is not None:
            gk = gk + dz * Jz[k]
        g.append(0.5 * jnp.sum(gk, axis=0))
    # J^T Sigma^-1 J = sum (Ju Ju' + Jv Jv' - kappa p p') / a with p = u Ju + v Jv.
    sa = jnp.sqrt(ia)
    Wu = [None if j is None else j * sa for j in Ju]
    Wv = [None if j is None else j * sa for j in Jv]
    sk = jnp.sqrt(kappa)
    P = [(0.0 if Wu[k] is None else u * Wu[k]) + (0.0 if Wv[k] is None else v * Wv[k]) for k in range(6)]
    P = [p * sk for p in P]
    JtJ = [[None] * 6 for _ in range(6)]
    for i in range(6):
        for j in range(i, 6):
            JtJ[i][j] = JtJ[j][i] = _dot([Wu[i], Wv[i]], [Wu[j], Wv[j]]) - jnp.sum(P[i] * P[j], axis=0)
    return JtJ, g


def _dot(a: list, b: list) -> jax.Array:
    """sum over image axes and points of a[i] * b[i]; None entries are structural zeros."""
    return sum(jnp.sum(x * y, axis=0) for x, y in zip(a, b) if x is not None and y is not None)


def _normal_equations(r, J) -> tuple[list[list[jax.Array]], list[jax.Array]]:
    """J^T J (6 x 6 nested lists of (B,)) and J^T r (6 of (B,)), from `_linearise`'s lists."""
    JtJ = [[None] * 6 for _ in range(6)]
    for a in range(6):
        for b in range(a, 6):
            JtJ[a][b] = JtJ[b][a] = _dot(J[a], J[b])
    return JtJ, [_dot(J[a], r) for a in range(6)]


def _cholesky_solve(A: list[list[jax.Array]], b: list[jax.Array]) -> list[jax.Array]:
    """Solve A x = b for SPD A given entry by entry (n x n nested lists of equally shaped arrays):
    an unrolled, Jacobi-scaled Cholesky.

    Unrolled scalar code vectorises over the batch far better on CPU than a batched LAPACK call,
    and the Jacobi scaling (rotation and translation columns differ by ~1/depth^2) keeps float32
    accurate. A matrix that is not positive definite yields NaN, which the caller rejects.
    """
    n = len(b)
    s = [jax.lax.rsqrt(A[i][i]) for i in range(n)]
    a = [[A[i][j] * s[i] * s[j] for j in range(n)] for i in range(n)]
    L = [[None] * n for _ in range(n)]
    for j in range(n):
        L[j][j] = jnp.sqrt(a[j][j] - sum(L[j][k] * L[j][k] for k in range(j)))
        for i in range(j + 1, n):
            L[i][j] = (a[i][j] - sum(L[i][k] * L[j][k] for k in range(j))) / L[j][j]
    y = [None] * n
    for i in range(n):
        y[i] = (b[i] * s[i] - sum(L[i][k] * y[k] for k in range(i))) / L[i][i]
    x = [None] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(L[k][i] * x[k] for k in range(i + 1, n))) / L[i][i]
    return [x[i] * s[i] for i in range(n)]


def _solve_spd(A: jax.Array, b: jax.Array) -> jax.Array:
    """Solve A x = b for small batched SPD A (..., n, n), b (..., n) (see ``_cholesky_solve``)."""
    n = A.shape[-1]
    x = _cholesky_solve([[A[..., i, j] for j in range(n)] for i in range(n)], [b[..., i] for i in range(n)])
    return jnp.stack(x, axis=-1)


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


def start_pose(xy: ArrayLike, pts: ArrayLike, q: ArrayLike, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """The pose `refine_pose` starts from, given (q, t): a zero or non-finite rotation becomes the
    identity, a non-finite translation the origin, and a pose with a point at depth <= MIN_DEPTH
    keeps its rotation and is moved in front of the camera (the layout's centroid on the ray through
    the landmarks' mean, at the depth where its spread matches theirs). A pose with every point in
    front is returned as it is (q normalised). The pose trackers fall back to it (`pnpjax.track`).

    Args:
      xy: (..., K, 2) landmarks, normalised image coordinates; pts: (K, 3) or (..., K, 3) layout.
      q, t: (..., 4) (x, y, z, w) quaternions and (..., 3) translations.

    Returns:
      (..., 4) unit quaternions and (..., 3) translations, every point at depth > MIN_DEPTH when
      the landmarks are finite.
    """
    dtype = jnp.result_type(xy, pts, q, t, float)
    xy, pts, q, t = (jnp.asarray(a, dtype) for a in (xy, pts, q, t))
    q, t = _sanitize_start(q, t)
    R = geometry.quat_to_matrix(q)
    depth = jnp.einsum("...j,...kj->...k", R[..., 2, :], pts) + t[..., None, 2]
    ahead = jnp.all(depth > MIN_DEPTH, axis=-1, keepdims=True)
    return q, jnp.where(ahead, t, _move_in_front(R, t, pts, xy))


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


@functools.partial(jax.jit, static_argnames=("method", "cost", "retry"))
def refine_pose(
    xy: ArrayLike,
    pts: ArrayLike,
    q: ArrayLike,
    t: ArrayLike,
    *,
    iters: int = 5,
    retry: int = 0,
    method: str = "lm",
    weights: ArrayLike | None = None,
    cost: str = "image",
    sigma_3d: ArrayLike = 0.0,
    sigma_2d: ArrayLike = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Refine poses by minimising the reprojection error in normalised image coordinates (or the
    object-space error).

    Args:
      xy: (..., K, 2) observed normalised coordinates ((u - cx)/fx, (v - cy)/fy), OpenCV frame.
      pts: (K, 3) or (..., K, 3) layout points (layout units, e.g. cm).
      q: (..., 4) initial rotation R_cam_layout as an (x, y, z, w) quaternion (need not be unit;
        a zero or non-finite q starts from the identity rotation).
      t: (..., 3) initial translation, layout units: X_cam = R X_layout + t (a non-finite t starts
        from the origin, i.e. behind the camera, and is moved in front as described above).
      iters: number of iterations (traced: one compiled program serves every count; the same
        work is done for every example).
      retry: "ml" cost only: up to this many more iterations (static), continuing the same LM run,
        for the examples whose fit after `iters` is gross (mean per-point r^T Sigma^-1 r above
        RETRY_CHI2; 2 is expected): a start in a far basin, e.g. a face far off the optical axis,
        that `iters` steps do not bring back. Other examples are unchanged (a chunk with none
        skips the extra steps).
      method: "lm" (Levenberg-Marquardt: per-example lambda, Marquardt diagonal scaling; a step is
        taken only if it lowers the cost, otherwise lambda grows) or "gn" (undamped Gauss-Newton
        with the same acceptance test, so it stops at the first step that would not improve).
      weights: optional (..., K) non-negative per-point weights on the squared errors.
      cost: "image" (squared 2D reprojection errors: the maximum-likelihood pose when the noise is
        on the landmarks) or "object" (squared distances of the posed 3D points from the viewing
        rays of the observations, the cost SQPnP minimises: the maximum-likelihood pose when the
        noise is isotropic on the 3D points, e.g. a face's shape differing from the layout); or
        "ml": the exact Gaussian likelihood under
        both noises at once, isotropic std ``sigma_3d`` (layout units) on the 3D points and
        ``sigma_2d`` (normalised image units) on the landmarks: per point the landmark's
        covariance is sigma_2d^2 I + (sigma_3d / z)^2 (I + q q^T) (q its projection, z its depth),
        and the cost r^T Sigma^-1 r + log det Sigma, whose log-det term (a point seen farther away
        moves less in the image) neither "image" nor "object" has. ``weights`` are ignored.
      sigma_3d, sigma_2d: the "ml" cost's noise stds, scalars or (...) per example; not both 0.

    Returns:
      (q, t): (..., 4) unit (x, y, z, w) quaternions (sign follows the input, not canonicalised)
      and (..., 3) translations, in the inputs' common float dtype. Every point is at depth
      > MIN_DEPTH and the cost is <= that of the (moved-in-front) initial pose.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown refinement method '{method}': use one of {METHODS}")
    if cost not in COSTS:
        raise ConfigError(f"unknown refinement cost '{cost}': use one of {COSTS}")
    shared = (jnp.ndim(pts) == 2, weights is None or jnp.ndim(weights) == 1)
    xy, pts_b, q, t, w_b = _broadcast_inputs(xy, pts, q, t, weights)
    batch, K = q.shape[:-1], xy.shape[-2]
    flat = lambda a: a.reshape((-1,) + a.shape[len(batch) :])  # noqa: E731
    # A layout or weights shared by the whole batch stay one row (broadcast in the arithmetic).
    pts = jnp.asarray(pts, xy.dtype)[None] if shared[0] else flat(pts_b)
    w = (
        (jnp.ones((1, K), xy.dtype) if weights is None else jnp.asarray(weights, xy.dtype)[None])
        if shared[1]
        else flat(w_b)
    )
    noise = jnp.stack(
        jnp.broadcast_arrays(jnp.asarray(sigma_3d, xy.dtype) ** 2, jnp.asarray(sigma_2d, xy.dtype) ** 2), -1
    )
    noise = noise.reshape((1, 2)) if noise.ndim == 1 else flat(jnp.broadcast_to(noise, batch + (2,)))
    q, t = _map_chunks(
        functools.partial(_refine_flat, iters=iters, method=method, cost=cost, retry=retry),
        flat(xy),
        pts,
        flat(q),
        flat(t),
        w,
        noise,
    )
    return q.reshape(batch + (4,)), t.reshape(batch + (3,))


def _map_chunks(fn, xy: jax.Array, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """fn(xy, *arrays) over the leading axis of xy and of every array with as many rows (arrays
    with one row are shared); on CPU, in chunks of _CPU_CHUNK rows (the last padded by repetition)."""
    n = xy.shape[0]
    if n <= _CPU_CHUNK or jax.default_backend() != "cpu":
        return fn(xy, *arrays)
    m = -(-n // _CPU_CHUNK)
    mapped = [i for i, a in enumerate((xy, *arrays)) if a.shape[0] == n]
    chunks = [
        jnp.pad(a, [(0, m * _CPU_CHUNK - n)] + [(0, 0)] * (a.ndim - 1), mode="edge").reshape(
            (m, _CPU_CHUNK) + a.shape[1:]
        )
        if i in mapped
        else a
        for i, a in enumerate((xy, *arrays))
    ]

    def one(c):
        args = list(chunks)
        for i, a in zip(mapped, c):
            args[i] = a
        return fn(*args)

    out = jax.lax.map(one, [chunks[i] for i in mapped])
    return tuple(o.reshape((m * _CPU_CHUNK,) + o.shape[2:])[:n] for o in out)


def _refine_flat(
    xy, pts, q, t, w, noise=None, *, iters: int, method: str, cost: str = "image", retry: int = 0
) -> tuple[jax.Array, jax.Array]:
    """refine_pose on one flat batch: xy (B, K, 2), q (B, 4), t (B, 3); pts (B or 1, K, 3),
    w (B or 1, K) and noise (B or 1, 2) = (sigma_3d^2, sigma_2d^2) of the "ml" cost."""
    # Shared rows are broadcast here, per chunk: the arithmetic is then the same as for batched ones.
    pts, w = (jnp.broadcast_to(a, xy.shape[:1] + a.shape[1:]) for a in (pts, w))
    kind = cost  # `cost` below is the (B,) value
    sw = jnp.sqrt(jnp.maximum(w, 0.0))
    xy_s, pts_s, sw_s = (jnp.moveaxis(a, 0, -1) for a in (xy, pts, sw))  # batch last
    # An initial pose behind the camera has no meaningful cost (depths are clamped): its translation
    # restarts in front (start_pose), otherwise every step would be judged against a garbage cost.
    pose = _to_se3(*start_pose(xy, pts, q, t)).wxyz_xyz.T  # (7, B)
    if kind == "ml":
        noise = jnp.broadcast_to(noise, xy.shape[:1] + (2,))
        s3sq, s2sq = noise[:, 0], noise[:, 1]
        cost_fn = functools.partial(_ml_cost_and_front, pts_K3B=pts_s, xy_K2B=xy_s, s3sq_B=s3sq, s2sq_B=s2sq)
        lin_fn = None
    elif kind == "object":
        m_s = _rays(xy_s)
        cost_fn = functools.partial(_object_cost_and_front, pts_K3B=pts_s, m_3KB=m_s, sw_KB=sw_s)
        lin_fn = lambda X: _linearise_object(X, m_s, sw_s)  # noqa: E731
    else:
        cost_fn = functools.partial(_cost_and_front, pts_K3B=pts_s, xy_K2B=xy_s, sw_KB=sw_s)
        lin_fn = lambda X: _linearise(X, xy_s, sw_s)  # noqa: E731
    cost, _ = cost_fn(pose)

    lam0 = _LAMBDA_INIT if method == "lm" else 0.0
    lam = jnp.full(cost.shape, lam0, cost.dtype)

    def step(_, state):
        pose, cost, lam = state
        X = _camera_points(pose, pts_s)
        JtJ, g = _ml_normal_equations(X, xy_s, s3sq, s2sq) if kind == "ml" else _normal_equations(*lin_fn(X))
        d = [JtJ[a][a] for a in range(6)]
        d_max = functools.reduce(jnp.maximum, d)
        d = [jnp.maximum(da, _DIAG_FLOOR * d_max) for da in d]
        A = [[JtJ[a][b] + lam * d[a] if a == b else JtJ[a][b] for b in range(6)] for a in range(6)]
        pose_new = _retract(-jnp.stack(_cholesky_solve(A, g)), pose)
        cost_new, front_new = cost_fn(pose_new)
        ok = front_new & jnp.isfinite(cost_new) & (cost_new < cost) & jnp.all(jnp.isfinite(pose_new), axis=0)
        pose = jnp.where(ok, pose_new, pose)
        cost = jnp.where(ok, cost_new, cost)
        if method == "lm":
            lam = jnp.clip(jnp.where(ok, lam * _LAMBDA_DOWN, lam * _LAMBDA_UP), _LAMBDA_MIN, _LAMBDA_MAX)
        return pose, cost, lam

    state = jax.lax.fori_loop(0, iters, step, (pose, cost, lam))
    if retry and kind == "ml":
        _, (a, _b, _D, kappa, _q, _r, _iz, _qq, qr, rr) = _ml_terms(_camera_points(state[0], pts_s), xy_s, s3sq, s2sq)
        gross = (jnp.mean((rr - kappa * qr * qr) / a, axis=0) > RETRY_CHI2) & (jnp.asarray(iters) > 0)

        def more(state):
            masked = lambda i, s: tuple(jnp.where(gross, n, o) for n, o in zip(step(i, s), s))  # noqa: E731
            return jax.lax.fori_loop(0, retry, masked, state)

        state = jax.lax.cond(jnp.any(gross), more, lambda s: s, state)
    return _from_se3(jaxlie.SE3(state[0].T))


@dataclasses.dataclass(frozen=True)
class NoiseModel:
    """The noise the "ml" refinement assumes (see `refine_ml`).

    sigma_3d: std of isotropic Gaussian noise on each 3D point (layout units): how far a real
      object's keypoints stray from the layout (a face's shape, a detector's 3D bias).
    noise_2d: landmark noise std as a fraction of the object's image size (its layout's RMS radius
      over the depth, in normalised image units): `protocols.RealisticProtocol.noise_2d`'s unit,
      which follows the object's size in the image as detectors' errors do.
    """

    sigma_3d: float = 0.0
    noise_2d: float = 0.0

    def __post_init__(self) -> None:
        if not (self.sigma_3d >= 0 and self.noise_2d >= 0 and math.isfinite(self.sigma_3d + self.noise_2d)):
            raise ConfigError(
                f"noise stds must be finite and >= 0, got sigma_3d={self.sigma_3d}, noise_2d={self.noise_2d}"
            )


def noise_model_of(protocol) -> NoiseModel:
    """The noise a protocol puts on its inputs: the seed recipe's uniform +-noise_cm 3D jitter per
    axis has std noise_cm / sqrt(3); the realistic protocol's shape jitter and 2D noise as they are
    (its global head scale changes only the depth, which no cost can see)."""
    if hasattr(protocol, "shape_jitter_cm"):
        return NoiseModel(float(protocol.shape_jitter_cm), float(protocol.noise_2d))
    return NoiseModel(float(protocol.noise_cm) / math.sqrt(3.0), 0.0)


def rms_radius(pts: ArrayLike) -> jax.Array:
    """RMS distance of the layout points from their centroid, (..., K, 3) -> (...)."""
    pts = jnp.asarray(pts)
    c = pts - jnp.mean(pts, axis=-2, keepdims=True)
    return jnp.sqrt(jnp.mean(jnp.sum(c * c, axis=-1), axis=-1))


# A floor on sigma_3d, relative to the layout's radius: with no noise at all the likelihood is
# degenerate (a zero covariance); this keeps it defined. The log-det term moves the optimum of
# noise-free landmarks off the exact pose by O(sigma_3d^2): ~1e-8 rad at this floor.
_SIGMA_3D_FLOOR = 1e-4


def refine_ml(
    xy: ArrayLike,
    pts: ArrayLike,
    q: ArrayLike,
    t: ArrayLike,
    noise: NoiseModel,
    *,
    iters: int = 10,
    method: str = "lm",
    retry: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """`refine_pose` with the "ml" cost for a `NoiseModel`: the landmarks' 2D std is
    noise.noise_2d * rms_radius(pts) / t_z with t_z the starting pose's depth, and sigma_3d is at
    least 1e-4 of the layout's RMS radius. Shapes and guarantees as `refine_pose`.

    Unlike the image and object costs, this likelihood is not minimised by the exact pose of
    noise-free landmarks: its log-det term (a point farther away moves less in the image) pulls
    the optimum by O(sigma_3d^2) (tests/test_refine.py bounds it at the sigma_3d floor); on noisy
    data it is the better estimator (experiments/results/bench_solvers). Far from the optimum it needs
    more iterations than the image cost (GN ignores how the covariance moves with the pose).
    """
    t = jnp.asarray(t)
    rad = rms_radius(pts)
    tz = jnp.maximum(jnp.where(jnp.isfinite(t[..., 2]), t[..., 2], 0.0), MIN_DEPTH)
    # A start behind the camera is moved to a depth the refinement decides; this only sets a scale.
    s2 = noise.noise_2d * rad / jnp.where(t[..., 2] > MIN_DEPTH, tz, rad)
    s3 = jnp.maximum(noise.sigma_3d, _SIGMA_3D_FLOOR * rad)
    return refine_pose(xy, pts, q, t, iters=iters, method=method, cost="ml", sigma_3d=s3, sigma_2d=s2, retry=retry)


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
