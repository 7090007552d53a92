"""OpenCV reference solvers on normalised image coordinates (the yardstick for the MLPs).

The observations are pnpjax's normalised coordinates ((u - cx)/fx, (v - cy)/fy). OpenCV gets
them as the pixels of a virtual pinhole camera K = diag(focal, focal, 1) with no distortion; the
pose is unchanged by that rescaling of the image, and ``focal=1`` is the literal identity camera.
The default focal of 1000 exists because OpenCV's Levenberg-Marquardt (solvePnPRefineLM, and the
refinement inside SOLVEPNP_ITERATIVE) stops on absolute thresholds tuned for pixel-sized errors:
with the identity camera a face at 50-100 cm is left ~1e-2 cm (median) short of the optimum,
with focal >= 100 it converges to ~1e-6 cm. Poses come back in pnpjax's conventions: (x, y, z, w)
quaternions with w >= 0 of R_cam_layout, and t, with X_cam = R X_layout + t (OpenCV camera frame).

Results are reported exactly as OpenCV returns them: SOLVEPNP_ITERATIVE in particular often
converges to a wrong (e.g. mirrored, behind-the-camera) pose while reporting success; that is a
property of the baseline being measured, not something to repair here. Only calls that OpenCV
itself reports as failed (return value False, an exception, or non-finite output) are marked
``ok = False`` and filled with NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

try:  # optional dependencies (the `bench` and `test` extras), not needed to train or export
    import cv2
    from scipy.spatial.transform import Rotation
except ImportError as e:
    raise ImportError("experiments.lib.baselines needs OpenCV and scipy: pip install 'pnpjax[bench]'") from e

from pnpjax.errors import ConfigError

_FLAGS = {
    "iterative": cv2.SOLVEPNP_ITERATIVE,
    "sqpnp": cv2.SOLVEPNP_SQPNP,
    "epnp": cv2.SOLVEPNP_EPNP,
}
METHODS = (*_FLAGS, "lm_from_truth")
# The oracle should sit at the optimum rather than at OpenCV's default stop (20 iterations,
# FLT_EPSILON), which on noisy faces can leave up to ~4e-7 relative error in t.
_ORACLE_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 100, 1e-12)


def solve_one(xy_Kx2: np.ndarray, pts_Kx3: np.ndarray, K: np.ndarray, method: str, rvec0, tvec0):
    """One cv2 call on pixels of camera K -> (rvec (3,), tvec (3,), ok); NaN, False on failure."""
    nan = np.full(3, np.nan)
    try:
        if method == "lm_from_truth":
            # (3, 1) column vectors: solvePnPRefineLM silently ignores (and returns) a (3,) initial pose.
            rvec, tvec = cv2.solvePnPRefineLM(
                pts_Kx3, xy_Kx2, K, None, rvec0.reshape(3, 1).copy(), tvec0.reshape(3, 1).copy(), _ORACLE_CRITERIA
            )
            ok = True
        else:
            ok, rvec, tvec = cv2.solvePnP(pts_Kx3, xy_Kx2, K, None, flags=_FLAGS[method])
    except cv2.error:
        return nan, nan, False
    if not ok or rvec is None or tvec is None:  # SQPnP can return (False, None, None)
        return nan, nan, False
    rvec, tvec = np.asarray(rvec, np.float64).reshape(3), np.asarray(tvec, np.float64).reshape(3)
    ok = bool(ok) and bool(np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec)))
    return (rvec, tvec, True) if ok else (nan, nan, False)


def solve_cv2(
    xy_NxKx2: ArrayLike,
    pts_Kx3: ArrayLike,
    method: str,
    q_true: ArrayLike | None = None,
    t_true: ArrayLike | None = None,
    *,
    focal: float = 1000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve N PnP problems with OpenCV, one ``cv2.solvePnP`` call per pose.

    Args:
      xy_NxKx2: (N, K, 2) observed normalised image coordinates (OpenCV frame: x right, y down).
      pts_Kx3: (K, 3) layout points (or (N, K, 3), one layout per pose), layout units.
      method: "iterative" | "sqpnp" | "epnp" (cv2.SOLVEPNP_*), or "lm_from_truth":
        cv2.solvePnPRefineLM started at the true pose and run to convergence (tight criteria), i.e.
        the maximum-likelihood ("oracle") pose under isotropic Gaussian image noise, found without
        any initialisation error.
      q_true: (N, 4) true (x, y, z, w) quaternions; required for "lm_from_truth".
      t_true: (N, 3) true translations; required for "lm_from_truth".
      focal: focal length of the virtual camera the coordinates are handed to OpenCV in (see the
        module docstring; 1.0 is the identity camera matrix).

    Returns:
      q_Nx4: (x, y, z, w) unit quaternions of R_cam_layout, w >= 0 (float64; NaN where not ok).
      t_Nx3: translations, layout units (float64; NaN where not ok).
      ok_N: bool, OpenCV reported success and returned finite values. A wrong pose that OpenCV
        calls a success is kept as returned.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown OpenCV method '{method}': use one of {METHODS}")
    xy = np.ascontiguousarray(xy_NxKx2, np.float64)
    if xy.ndim != 3 or xy.shape[-1] != 2:
        raise ValueError(f"xy must be (N, K, 2), got {xy.shape}")
    n, k = xy.shape[:2]
    if not focal > 0:
        raise ValueError(f"focal must be > 0, got {focal}")
    K = np.diag([focal, focal, 1.0])
    xy = xy * focal
    pts = np.broadcast_to(np.asarray(pts_Kx3, np.float64), (n, k, 3))
    rvec0 = tvec0 = np.zeros((n, 3))
    if method == "lm_from_truth":
        if q_true is None or t_true is None:
            raise ValueError("method 'lm_from_truth' needs q_true and t_true")
        rvec0 = Rotation.from_quat(np.asarray(q_true, np.float64).reshape(n, 4)).as_rotvec()
        tvec0 = np.asarray(t_true, np.float64).reshape(n, 3)

    rvecs, tvecs, oks = np.empty((n, 3)), np.empty((n, 3)), np.empty(n, bool)
    for i in range(n):
        # Contiguous per-pose copies: OpenCV's Python bindings reject strided views.
        rvecs[i], tvecs[i], oks[i] = solve_one(
            np.ascontiguousarray(xy[i]), np.ascontiguousarray(pts[i]), K, method, rvec0[i], tvec0[i]
        )
    q = np.full((n, 4), np.nan)
    if oks.any():
        q[oks] = Rotation.from_rotvec(rvecs[oks]).as_quat(canonical=True)
    return q, tvecs, oks
