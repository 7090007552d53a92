"""Pose tracking over video: temporal filters on SE(3), pure JAX (`lax.scan` over frames, batched
over sequences).

Every filter maps a batch of N sequences of T frames to one pose per frame, (N, T, 4) unit (x, y, z, w)
quaternions (w >= 0) and (N, T, 3) translations, in the OpenCV camera frame, layout units. A frame
whose `present` flag is False has no landmarks (the detector missed it); every filter then outputs
its last pose (the tracker: its constant-velocity prediction, for at most `coast` s).

Filters
-------
`per_frame`: no filter; the per-frame pose, held over missed frames.

`kalman_euler` (`KalmanEuler`): the original web app's smoothing, reproduced: six independent 1-D
  kalmanjs filters (R = 1 "process noise", Q = 3 "measurement noise", A = C = 1, B = 0; kalmanjs'
  equations: first value x = z / C, cov = Q / C^2; then x' = A x + B u, P' = A P A + R,
  K = P' C / (C P' C + Q), x = x' + K (z - C x'), P = P' - K C P'): one per three.js Euler angle of
  the quaternion (`Euler.setFromQuaternion`, order 'XYZ', i.e. R = Rx Ry Rz, with three.js' gimbal
  branch at |m13| >= 0.9999999), then back to a quaternion (`Quaternion.setFromEuler`), and one per
  translation axis. As in the original, this runs in the three.js (OpenGL) camera frame, where a
  frontal face has angles near 0; the pose is converted from and back to OpenCV's frame around it.
  After the first frames the gain is constant (0.434 for R = 1, Q = 3, whatever the units): an
  exponential smoother, and angles that wrap at +-180 deg are averaged through 0.

`one_euro` (`OneEuro`): the 1-euro filter (Casiez et al. 2012, as in their reference code, the
  derivative taken against the previous *filtered* value) on SE(3): the rotation's innovation is the
  quaternion log of q_meas q_hat^-1 (a camera-frame rotation vector, radians), smoothed as a vector
  with an adaptive cutoff min_cutoff + beta |omega_hat|; the translation likewise, in layout units.
  Cut-off frequencies in Hz, dt from the timestamps.

`track` (`TrackerConfig`, the default): a constant-velocity iterated Kalman filter on SE(3) whose
  measurement is the landmarks themselves (maximum a posteriori with a motion model). State: the pose
  T, its camera-frame twist nu = (v, omega) per second and a 12 x 12 covariance over (pose, twist)
  tangent coordinates. Per frame: predict T- = exp(nu dt) T with white-noise-acceleration process
  noise; then `iters` robust Gauss-Newton steps on
      sum_k w_k |proj(T X_k) - xy_k|^2 / sigma^2 + delta^T P_pp^-1 delta,   delta = log(T T-^-1),
  started at T-, with Cauchy weights w_k = 1 / (1 + (e_k / s)^2) recomputed at every step from the
  residual norms e_k and a scale s = c max(sigma, median_k e_k) (one landmark far from the
  others is down-weighted; when all are far - fast motion the prediction missed - none is);
  sigma = sqrt(noise_2d^2 r^2 + sigma_3d^2) / depth is the landmark noise (r: the layout's RMS
  radius). The twist is then corrected through the pose-twist covariance (the Kalman update of a
  state observed through its pose block). The process noise grows with the estimated angular speed,
  q = q0 (1 + (|omega| / speed_rot)^2 + (|dt/dt| / speed_trans)^2): a still head is smoothed hard, a
  fast one followed closely. A (re)start has no pose prior and a broad twist prior.
  The first frame, a frame after more than `gap` s without landmarks, and any non-finite or
  behind-the-camera result restart the filter from the per-frame network pose, made a valid start
  as the refinement makes it (`refine.start_pose`: finite, every point in front of the camera). A
  coasting extrapolation that would put a point behind the camera holds the last pose instead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from pnpjax import geometry, refine
from pnpjax.camera import MIN_DEPTH, pose_gl_to_opencv, pose_opencv_to_gl
from pnpjax.errors import ConfigError

# --------------------------------------------------------------------------------------------
# small SO(3)/SE(3) helpers on (x, y, z, w) quaternions (the JS module mirrors them line by line)
# --------------------------------------------------------------------------------------------


def _qexp(w: jax.Array) -> jax.Array:
    """Rotation vector (..., 3), radians -> unit quaternion (x, y, z, w)."""
    th2 = jnp.sum(w * w, -1)
    small = th2 < 1e-12
    th = jnp.sqrt(jnp.where(small, 1.0, th2))
    s = jnp.where(small, 0.5 - th2 / 48.0, jnp.sin(0.5 * th) / th)
    c = jnp.where(small, 1.0 - th2 / 8.0, jnp.cos(0.5 * th))
    return jnp.concatenate([w * s[..., None], c[..., None]], -1)


def _qlog(q: jax.Array) -> jax.Array:
    """Unit quaternion -> rotation vector of the shortest rotation it represents (angle <= pi)."""
    q = jnp.where(q[..., 3:] < 0, -q, q)
    v, w = q[..., :3], q[..., 3]
    n2 = jnp.sum(v * v, -1)
    small = n2 < 1e-12
    n = jnp.sqrt(jnp.where(small, 1.0, n2))
    f = jnp.where(small, 2.0 / jnp.maximum(w, 1e-30) * (1.0 - n2 / (3.0 * w * w)), 2.0 * jnp.arctan2(n, w) / n)
    return v * f[..., None]


def _qrot(q: jax.Array, p: jax.Array) -> jax.Array:
    """Rotate points p (..., K, 3) by unit q (..., 4)."""
    return jnp.einsum("...ij,...kj->...ki", geometry.quat_to_matrix(q), p)


def _in_front(q: jax.Array, t: jax.Array, pts: jax.Array) -> jax.Array:
    """Whether every layout point of the pose (q, t) is at depth > MIN_DEPTH."""
    return jnp.all((_qrot(q, pts) + t)[..., 2] > MIN_DEPTH)


def _se3_retract(d: jax.Array, q: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """exp(d) T for d = (v, omega) (..., 6): jaxlie's SE3.exp(d) @ T, written as pnpjax.refine's
    retraction (the same closed forms and series below sqrt(840 eps), which the JS module shares)."""
    v, om = d[..., :3], d[..., 3:]
    th2 = jnp.sum(om * om, -1)
    small = th2 < math.sqrt(840.0 * float(jnp.finfo(th2.dtype).eps))
    th2s = jnp.where(small, 1.0, th2)
    th = jnp.sqrt(th2s)
    sh, ch = jnp.sin(0.5 * th), jnp.cos(0.5 * th)
    hs = jnp.where(small, 0.5 - th2 / 48.0 + th2 * th2 / 3840.0, sh / th)  # sin(th/2) / th
    hc = jnp.where(small, 1.0 - th2 / 8.0 + th2 * th2 / 384.0, ch)
    a = 2.0 * hs * hs  # (1 - cos th) / th^2
    b = jnp.where(small, 1.0 / 6.0 - th2 / 120.0 + th2 * th2 / 5040.0, (th - 2.0 * sh * ch) / (th2s * th))
    dq = jnp.concatenate([om * hs[..., None], hc[..., None]], -1)
    wv = jnp.cross(om, v)
    Vv = v + a[..., None] * wv + b[..., None] * jnp.cross(om, wv)
    R = geometry.quat_to_matrix(dq)
    return geometry.quat_multiply(dq, q), jnp.einsum("...ij,...j->...i", R, t) + Vv


# --------------------------------------------------------------------------------------------
# per frame
# --------------------------------------------------------------------------------------------


def _scan_sequences(step, init, xs):
    """lax.scan of step over frames (axis 1 of every xs leaf), vmapped over sequences (axis 0)."""

    def one(init, xs):
        _, ys = jax.lax.scan(step, init, xs)
        return ys

    return jax.vmap(one)(init, xs)


@jax.jit
def per_frame(q: ArrayLike, t: ArrayLike, present: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """No filter: the per-frame pose (N, T, 4/3), the last one held over frames without landmarks."""
    q, t, present = jnp.asarray(q), jnp.asarray(t), jnp.asarray(present)

    def step(c, x):
        qm, tm, p = x
        c = jax.tree.map(lambda new, old: jnp.where(p, new, old), (qm, tm), c)
        return c, c

    init = (q[:, 0], t[:, 0])
    qo, to = _scan_sequences(step, init, (q, t, present))
    return geometry.quat_canonical(qo), to


# --------------------------------------------------------------------------------------------
# the original's baseline: six 1-D kalmanjs filters on three.js XYZ Euler angles + translation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KalmanEuler:
    """kalmanjs' parameters as the original web app set them."""

    R: float = 1.0  # "process noise"
    Q: float = 3.0  # "measurement noise"
    A: float = 1.0
    B: float = 0.0
    C: float = 1.0


def threejs_euler_xyz(q: ArrayLike) -> jax.Array:
    """three.js `Euler.setFromQuaternion(q, 'XYZ')`: (..., 4) (x, y, z, w) -> (..., 3) radians, R = Rx Ry Rz."""
    R = geometry.quat_to_matrix(geometry.quat_normalize(jnp.asarray(q)))
    m11, m12, m13 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m22, m23 = R[..., 1, 1], R[..., 1, 2]
    m32, m33 = R[..., 2, 1], R[..., 2, 2]
    y = jnp.arcsin(jnp.clip(m13, -1.0, 1.0))
    regular = jnp.abs(m13) < 0.9999999
    x = jnp.where(regular, jnp.arctan2(-m23, m33), jnp.arctan2(m32, m22))
    z = jnp.where(regular, jnp.arctan2(-m12, m11), 0.0)
    return jnp.stack([x, y, z], -1)


def threejs_quat_from_euler_xyz(e: ArrayLike) -> jax.Array:
    """three.js `Quaternion.setFromEuler` for order 'XYZ': (..., 3) radians -> (..., 4) (x, y, z, w)."""
    e = jnp.asarray(e)
    c1, c2, c3 = (jnp.cos(0.5 * e[..., i]) for i in range(3))
    s1, s2, s3 = (jnp.sin(0.5 * e[..., i]) for i in range(3))
    return jnp.stack(
        [
            s1 * c2 * c3 + c1 * s2 * s3,
            c1 * s2 * c3 - s1 * c2 * s3,
            c1 * c2 * s3 + s1 * s2 * c3,
            c1 * c2 * c3 - s1 * s2 * s3,
        ],
        -1,
    )


def _kalmanjs_step(cfg: KalmanEuler, state, z):
    """One kalmanjs `filter(z)` call on arrays of independent channels; state (x, cov, started)."""
    x, cov, started = state
    pred_x = cfg.A * x  # + B u with u = 0
    pred_cov = cfg.A * cov * cfg.A + cfg.R
    K = pred_cov * cfg.C / (cfg.C * pred_cov * cfg.C + cfg.Q)
    x_upd = pred_x + K * (z - cfg.C * pred_x)
    cov_upd = pred_cov - K * cfg.C * pred_cov
    x = jnp.where(started, x_upd, z / cfg.C)
    cov = jnp.where(started, cov_upd, cfg.Q / (cfg.C * cfg.C))
    return x, cov, jnp.ones_like(started)


@functools.partial(jax.jit, static_argnums=0)
def kalman_euler(cfg: KalmanEuler, q: ArrayLike, t: ArrayLike, present: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """The original's smoothing of per-frame poses (N, T, 4), (N, T, 3) (OpenCV frame, see the
    module docstring); frames without landmarks are not fed to the filters (their pose is held)."""
    q, t, present = jnp.asarray(q), jnp.asarray(t), jnp.asarray(present)
    q_gl, t_gl = pose_opencv_to_gl(q, t)
    z = jnp.concatenate([threejs_euler_xyz(q_gl), t_gl], -1)  # (N, T, 6)

    def step(state, x):
        zi, p = x
        new = _kalmanjs_step(cfg, state, zi)
        state = jax.tree.map(lambda a, b: jnp.where(p, a, b), new, state)
        return state, state[0]

    n = z.shape[0]
    init = (jnp.zeros((n, 6), z.dtype), jnp.zeros((n, 6), z.dtype), jnp.zeros((n, 6), bool))
    out = _scan_sequences(step, init, (z, present))
    q_out, t_out = pose_gl_to_opencv(threejs_quat_from_euler_xyz(out[..., :3]), out[..., 3:])
    return geometry.quat_canonical(q_out), t_out


# --------------------------------------------------------------------------------------------
# One-Euro on SE(3)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OneEuro:
    """1-euro filter parameters (cut-offs in Hz; beta in Hz per rad/s and Hz per layout unit/s)."""

    # Picked by a 3 x 3 grid (min cut-off 0.5/1/2 Hz x beta 0.5/2/5) on sequences of a tuning key:
    # the best rotation error with jitter at most the original Kalman filter's.
    min_cutoff_rot: float = 1.0
    beta_rot: float = 2.0
    min_cutoff_trans: float = 1.0
    beta_trans: float = 0.05
    d_cutoff: float = 1.0


def one_euro_alpha(cutoff: ArrayLike, dt: ArrayLike) -> jax.Array:
    """Smoothing factor of a first-order low-pass of cut-off `cutoff` Hz sampled every dt s."""
    tau = 1.0 / (2 * math.pi * jnp.asarray(cutoff))
    return 1.0 / (1.0 + tau / jnp.asarray(dt))


@functools.partial(jax.jit, static_argnums=0)
def one_euro(
    cfg: OneEuro, q: ArrayLike, t: ArrayLike, present: ArrayLike, time: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """1-euro filter of per-frame poses (N, T, 4), (N, T, 3) with timestamps (N, T) seconds."""
    q, t, present, time = (jnp.asarray(a) for a in (q, t, present, time))

    def step(state, x):
        qh, th, wh, vh, last, started = state
        qm, tm, p, now = x
        dt = jnp.where(started, now - last, 1.0)
        dt = jnp.maximum(dt, 1e-6)
        # Rotation: innovation as a camera-frame rotation vector.
        d_rot = _qlog(geometry.quat_multiply(qm, geometry.quat_conjugate(qh)))
        a_d = one_euro_alpha(cfg.d_cutoff, dt)
        wh_new = jnp.where(started, wh + a_d * (d_rot / dt - wh), 0.0)
        a_r = one_euro_alpha(cfg.min_cutoff_rot + cfg.beta_rot * jnp.linalg.norm(wh_new), dt)
        qh_new = jnp.where(started, geometry.quat_multiply(_qexp(a_r * d_rot), qh), qm)
        d_tr = tm - th
        vh_new = jnp.where(started, vh + a_d * (d_tr / dt - vh), 0.0)
        a_t = one_euro_alpha(cfg.min_cutoff_trans + cfg.beta_trans * jnp.linalg.norm(vh_new), dt)
        th_new = jnp.where(started, th + a_t * d_tr, tm)
        new = (geometry.quat_normalize(qh_new), th_new, wh_new, vh_new, now, jnp.ones_like(started))
        state = jax.tree.map(lambda a, b: jnp.where(p, a, b), new, state)
        return state, (state[0], state[1])

    n = q.shape[0]
    z3 = jnp.zeros((n, 3), t.dtype)
    init = (q[:, 0], t[:, 0], z3, z3, time[:, 0], jnp.zeros((n,), bool))
    qo, to = _scan_sequences(step, init, (q, t, present, time))
    return geometry.quat_canonical(qo), to


# --------------------------------------------------------------------------------------------
# the tracker: constant-velocity iterated Kalman filter on SE(3), robust, landmarks as measurement
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """The default tracker's parameters (see the module docstring)."""

    iters: int = 3  # robust Gauss-Newton steps per frame
    init_iters: int = 5  # steps from the network's pose when the filter (re)starts
    noise_2d: float = 0.03  # landmark noise std, fraction of the face's image size
    sigma_3d: float = 0.3  # 3D shape noise std, layout units
    # Process noise: white-noise acceleration densities at rest (rad^2/s^3, unit^2/s^3), times
    # 1 + (|omega| / speed_rot)^2 + (|dt/dt| / speed_trans)^2 (rad/s, units/s). Picked by a grid on
    # sequences of a tuning key (accel_rot 0.02-0.25 x speed_rot 0.05-0.15): the lowest RMS rotation
    # error and still jitter with fast-segment lag well under a frame.
    accel_rot: float = 0.02
    accel_trans: float = 400.0
    speed_rot: float = 0.05
    speed_trans: float = 10.0
    vel_std_rot: float = 2.0  # rad/s, the twist's prior std when the filter (re)starts
    vel_std_trans: float = 50.0  # units/s
    robust: float = 3.0  # Cauchy scale: this many sigma, or this many median residuals if larger
    coast: float = 0.2  # s: frames without landmarks extrapolate at most this long
    gap: float = 1.0  # s: a longer gap restarts the filter

    def __post_init__(self) -> None:
        values = dataclasses.astuple(self)
        if not all(math.isfinite(v) and v >= 0 for v in values) or not (self.iters >= 1 and self.init_iters >= 1):
            raise ConfigError(f"tracker parameters must be finite and >= 0, iterations >= 1: {self}")


class TrackState(NamedTuple):
    """One sequence's tracker state (the batch is vmapped)."""

    q: jax.Array  # (4,) x y z w
    t: jax.Array  # (3,)
    nu: jax.Array  # (6,) camera-frame twist (v, omega) per second
    P: jax.Array  # (12, 12) covariance of (pose, twist) tangent coordinates
    time: jax.Array  # () timestamp of the last update, s
    started: jax.Array  # () bool


def _linearise(q, t, pts, xy):
    """Residuals (K, 2) and Jacobian (K, 2, 6) w.r.t. a left perturbation (v, omega)."""
    X = _qrot(q, pts) + t
    z = jnp.maximum(X[..., 2], MIN_DEPTH)
    u, v = X[..., 0] / z, X[..., 1] / z
    iz = 1.0 / z
    zero = jnp.zeros_like(u)
    Ju = jnp.stack([iz, zero, -u * iz, -u * v, 1.0 + u * u, -v], -1)
    Jv = jnp.stack([zero, iz, -v * iz, -(1.0 + v * v), u * v, u], -1)
    r = jnp.stack([u, v], -1) - xy
    return r, jnp.stack([Ju, Jv], -2), X[..., 2]


def _robust_weights(cfg: TrackerConfig, r: jax.Array, sigma: jax.Array) -> jax.Array:
    """Cauchy weights of the landmarks' residuals (K, 2) (see the module docstring)."""
    e = jnp.sqrt(jnp.sum(r * r, -1))
    s = cfg.robust * jnp.maximum(sigma, jnp.median(e))
    return 1.0 / (1.0 + (e / s) ** 2)


def _process_noise(cfg: TrackerConfig, nu: jax.Array, t: jax.Array, dt: jax.Array) -> jax.Array:
    """(12, 12) white-noise-acceleration process noise over dt, scaled up with the estimated speed
    (angular, and of the translation t: dt/dt = v + omega x t)."""
    t_rate = nu[:3] + jnp.cross(nu[3:], t)
    k = 1.0 + jnp.sum(nu[3:] ** 2) / cfg.speed_rot**2 + jnp.sum(t_rate**2) / cfg.speed_trans**2
    qc = k * jnp.asarray([cfg.accel_trans] * 3 + [cfg.accel_rot] * 3, nu.dtype)
    Qc = jnp.diag(qc)
    return jnp.block([[dt**3 / 3 * Qc, dt**2 / 2 * Qc], [dt**2 / 2 * Qc, dt * Qc]])


def _restart_cov(cfg: TrackerConfig, dtype) -> jax.Array:
    """Covariance at a (re)start: no pose prior (its block is unused), the twist's prior std."""
    s = jnp.asarray([1.0] * 6 + [cfg.vel_std_trans] * 3 + [cfg.vel_std_rot] * 3, dtype)
    return jnp.diag(s * s)


def _sigma(cfg: TrackerConfig, rad: jax.Array, depth: jax.Array) -> jax.Array:
    """Landmark noise std in normalised image units for a face at `depth`."""
    return jnp.sqrt((cfg.noise_2d * rad) ** 2 + cfg.sigma_3d**2) / jnp.maximum(depth, MIN_DEPTH)


def track_step(
    cfg: TrackerConfig,
    pts: jax.Array,
    state: TrackState,
    xy: jax.Array,
    present: jax.Array,
    now: jax.Array,
    q_net: jax.Array,
    t_net: jax.Array,
) -> tuple[TrackState, tuple[jax.Array, jax.Array]]:
    """One frame of one sequence: (state, landmarks (K, 2), present, time s, network pose) ->
    (new state, (q, t) output)."""
    dtype = state.P.dtype
    eye6 = jnp.eye(6, dtype=dtype)
    rad = jnp.sqrt(jnp.mean(jnp.sum((pts - jnp.mean(pts, 0)) ** 2, -1)))
    dt = jnp.maximum(now - state.time, 0.0)
    restart = ~state.started | (dt > cfg.gap)

    # Prediction (the filter's own, or a restart at the network's pose).
    q_pred, t_pred = _se3_retract(state.nu * dt, state.q, state.t)
    F = jnp.block([[eye6, dt * eye6], [jnp.zeros_like(eye6), eye6]])
    P_pred = F @ state.P @ F.T + _process_noise(cfg, state.nu, state.t, dt)
    q0 = jnp.where(restart, q_net, q_pred)
    t0 = jnp.where(restart, t_net, t_pred)
    nu0 = jnp.where(restart, 0.0, state.nu)
    P0 = jnp.where(restart, _restart_cov(cfg, dtype), P_pred)
    P_pp_inv = jnp.where(restart, 0.0, jnp.linalg.inv(P0[:6, :6]))  # a restart has no pose prior

    # Robust Gauss-Newton on landmarks + prior; delta = accumulated left step from (q0, t0).
    def gn(_, c):
        q, t, delta, _A = c
        r, J, depth = _linearise(q, t, pts, xy)
        sigma = _sigma(cfg, rad, jnp.mean(depth))
        w = _robust_weights(cfg, r, sigma) / sigma**2
        A = jnp.einsum("k,kia,kib->ab", w, J, J) + P_pp_inv
        g = jnp.einsum("k,kia,ki->a", w, J, r) + P_pp_inv @ delta
        d = -jnp.linalg.solve(A, g)
        q, t = _se3_retract(d, q, t)
        return q, t, delta + d, A

    n_it = jnp.where(restart, cfg.init_iters, cfg.iters)
    q1, t1, delta, A = jax.lax.fori_loop(0, n_it, gn, (q0, t0, jnp.zeros(6, dtype), jnp.eye(6, dtype=dtype)))
    # Kalman update of the twist through the pose-twist covariance.
    P_pp, P_pv, P_vv = P0[:6, :6], P0[:6, 6:], P0[6:, 6:]
    P_pp_new = jnp.linalg.inv(A)
    G = P_pv.T @ P_pp_inv
    nu1 = nu0 + G @ delta
    P_vv_new = P_vv - G @ (P_pp - P_pp_new) @ G.T
    P_pv_new = P_pp_new @ G.T
    P1 = jnp.block([[P_pp_new, P_pv_new], [P_pv_new.T, P_vv_new]])

    depth_ok = _in_front(q1, t1, pts)
    ok = (
        depth_ok
        & jnp.all(jnp.isfinite(q1))
        & jnp.all(jnp.isfinite(t1))
        & jnp.all(jnp.isfinite(P1))
        & jnp.all(jnp.isfinite(nu1))
    )
    # A failed update restarts at the network's pose (next frame refines it from there).
    q1 = jnp.where(ok, q1, q_net)
    t1 = jnp.where(ok, t1, t_net)
    updated = TrackState(
        geometry.quat_normalize(q1), t1, jnp.where(ok, nu1, 0.0), jnp.where(ok, P1, _restart_cov(cfg, dtype)), now, ok
    )

    # No landmarks: keep the state, output the prediction (extrapolated at most `coast` s), or the
    # last pose where the extrapolation would put a point behind the camera.
    q_coast, t_coast = _se3_retract(state.nu * jnp.minimum(dt, cfg.coast), state.q, state.t)
    coast_ok = _in_front(q_coast, t_coast, pts)
    q_coast, t_coast = jnp.where(coast_ok, q_coast, state.q), jnp.where(coast_ok, t_coast, state.t)
    new_state = jax.tree.map(lambda a, b: jnp.where(present, a, b), updated, state)
    q_out = jnp.where(present, new_state.q, jnp.where(state.started, q_coast, state.q))
    t_out = jnp.where(present, new_state.t, jnp.where(state.started, t_coast, state.t))
    return new_state, (geometry.quat_canonical(geometry.quat_normalize(q_out)), t_out)


def initial_state(batch: tuple[int, ...], dtype=jnp.float32) -> TrackState:
    """A tracker that has seen nothing yet (its first frame with landmarks starts it)."""
    z = lambda *s: jnp.zeros(batch + s, dtype)  # noqa: E731
    return TrackState(
        z(4).at[..., 3].set(1.0),
        z(3),
        z(6),
        jnp.broadcast_to(jnp.eye(12, dtype=dtype), batch + (12, 12)),
        z(),
        jnp.zeros(batch, bool),
    )


@functools.partial(jax.jit, static_argnums=0)
def track(
    cfg: TrackerConfig,
    xy: ArrayLike,
    present: ArrayLike,
    time: ArrayLike,
    q_net: ArrayLike,
    t_net: ArrayLike,
    pts: ArrayLike,
) -> tuple[jax.Array, jax.Array]:
    """The default tracker over N sequences of T frames.

    Args:
      xy: (N, T, K, 2) landmarks, normalised image coordinates (ignored where present is False).
      present: (N, T) bool, the frame has landmarks.
      time: (N, T) timestamps, seconds, non-decreasing.
      q_net, t_net: (N, T, 4), (N, T, 3) the per-frame network pose (used when the filter starts).
      pts: (K, 3) layout points.

    Returns:
      (N, T, 4) unit quaternions (w >= 0) and (N, T, 3) translations, OpenCV camera frame.
    """
    xy, present, time, q_net, t_net = (jnp.asarray(a) for a in (xy, present, time, q_net, t_net))
    dtype = jnp.result_type(xy, q_net, float)
    pts = jnp.asarray(pts, dtype)
    xy = jnp.where(present[..., None, None], xy, 0.0).astype(dtype)
    # The network's pose as the refinement would start from it: in front of the camera.
    q_net, t_net = refine.start_pose(xy, pts, q_net.astype(dtype), t_net.astype(dtype))

    def step(state, x):
        return track_step(cfg, pts, state, *x)

    init = initial_state((xy.shape[0],), dtype)
    return _scan_sequences(step, init, (xy, present, time.astype(dtype), q_net.astype(dtype), t_net.astype(dtype)))


FILTERS = ("per_frame", "kalman_euler", "one_euro", "track")
DEFAULT = "track"


def track_landmarks(
    solver,
    uv: ArrayLike,
    present: ArrayLike,
    time: ArrayLike,
    cam,
    cfg: TrackerConfig = TrackerConfig(),
    dtype=jnp.float32,
) -> jax.Array:
    """One video through a solver and the tracker, as `pnpjax predict --track` and the JS module's
    `createTracker` run it.

    Args:
      solver: a loaded solver (anything with `.pure` and `.layout`).
      uv: (T, K, 2) landmarks in the camera's image coordinates (pixels; for cam=None the original's
        u = x / width, v = 1 - y / height); rows where `present` is False are ignored.
      present: (T,) bool, the frame has landmarks.
      time: (T,) timestamps, seconds, non-decreasing.
      cam: a `camera.Camera`, or None for the seed convention.
      dtype: float32, or float64 under jax_enable_x64 (the JS module's arithmetic).

    Returns:
      (T, 7) qx qy qz qw tx ty tz, w >= 0: OpenCV camera frame for a camera, the original's
      OpenGL-like frame for cam=None.
    """
    from pnpjax import camera

    fn, variables = solver.pure
    present = jnp.asarray(present, bool)
    uv = jnp.where(present[:, None, None], jnp.asarray(uv, dtype), 0.0)
    if cam is None:
        xy = camera.pixels_to_normalized(camera.seed_to_pixels(uv), jnp.asarray(camera.SEED_CAMERA.intrinsics, dtype))
    else:
        xy = camera.pixels_to_normalized(uv, jnp.asarray(cam.intrinsics, dtype))
    variables = jax.tree.map(
        lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, variables
    )
    p = fn(variables, xy)
    q, t = track(
        cfg,
        xy[None],
        present[None],
        jnp.asarray(time, dtype)[None],
        p.q[None].astype(dtype),
        p.t[None].astype(dtype),
        jnp.asarray(solver.layout.array, dtype),
    )
    q, t = q[0], t[0]
    if cam is None:
        q, t = camera.pose_opencv_to_gl(q, t)
    return jnp.concatenate([q, t], -1)
