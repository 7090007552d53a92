"""Pinhole camera, projection, and the adapters between pnpjax's frame and other conventions.

pnpjax's one internal frame is OpenCV's camera frame: x right, y down, z forward (depth), image
pixels (u right, v down) with intrinsics fx, fy, cx, cy. The network sees *normalised camera
coordinates* (x/z, y/z) = ((u - cx)/fx, (v - cy)/fy), so a checkpoint is camera-independent.

Named adapters at the edges:
  * ``seed``: the original work's image coordinates, u = x_px/width to the right and
    v = 1 - y_px/height *up*, focal = one image side, principal point 0.5, and its pose frame
    (OpenGL-like: x right, y up, camera looking down -z). See ``seed_to_pixels`` and
    ``pose_opencv_to_gl``.
  * three.js: its camera frame is the same OpenGL-like frame as the seed's, so
    ``pose_opencv_to_gl`` is also the three.js adapter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from pnpjax import geometry
from pnpjax.errors import CameraError, PnpjaxError

MIN_DEPTH = 1e-3  # depth clamp before dividing; keeps projection and its gradient finite.


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels (OpenCV convention; no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: float
    height: float

    def __post_init__(self):
        vals = dataclasses.astuple(self)
        if not all(math.isfinite(v) for v in vals):
            raise CameraError(f"camera values must be finite, got {vals}")
        if self.fx <= 0 or self.fy <= 0 or self.width <= 0 or self.height <= 0:
            raise CameraError(f"camera needs fx, fy, width, height > 0, got {vals}")
        from pnpjax import validate

        try:
            validate.intrinsics(vals)  # the shared rules (magnitude limits), as the JS module applies them
        except PnpjaxError as e:
            raise CameraError(f"bad camera: {e}") from None

    @classmethod
    def from_hfov(cls, hfov_deg: float, width: float, height: float) -> Camera:
        """Square pixels, principal point at the image centre, horizontal field of view in degrees."""
        if not 0 < hfov_deg < 180:  # also rejects NaN; 0 would divide by zero, 180 give f ~ 0
            raise CameraError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg}")
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, width / 2, height / 2, width, height)

    @property
    def intrinsics(self) -> np.ndarray:
        """(fx, fy, cx, cy) as a float array (the form the jitted functions take)."""
        return np.array([self.fx, self.fy, self.cx, self.cy], np.float64)

    @property
    def matrix(self) -> np.ndarray:
        """3x3 OpenCV camera matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The original's camera, expressed in pnpjax's pixel convention (a 1x1 "image", focal 1).
SEED_CAMERA = Camera(1.0, 1.0, 0.5, 0.5, 1.0, 1.0)


def parse_camera(spec: str | Sequence[float] | Camera | None) -> Camera | None:
    """'seed' | 'fx,fy,cx,cy,w,h' | 'hfov=60,640x480' | sequence | Camera -> Camera ('seed' -> None)."""
    if spec is None or isinstance(spec, Camera):
        return spec
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "seed":
            return None
        if s.startswith("hfov="):
            try:
                fov, size = s[5:].split(",")
                w, h = size.split("x")
                return Camera.from_hfov(float(fov), float(w), float(h))
            except CameraError:
                raise
            except ValueError as e:
                raise CameraError(f"bad camera '{spec}': expected hfov=DEG,WxH (e.g. hfov=60,640x480)") from e
        parts = s.split(",")
    else:
        parts = list(spec)
    try:
        vals = [float(p) for p in parts]
    except (TypeError, ValueError) as e:
        raise CameraError(f"bad camera '{spec}': expected 'seed', 'fx,fy,cx,cy,width,height' or 'hfov=DEG,WxH'") from e
    if len(vals) != 6:
        raise CameraError(f"bad camera '{spec}': expected 6 numbers fx,fy,cx,cy,width,height, got {len(vals)}")
    return Camera(*vals)


def project(points_cam: ArrayLike, min_depth: float = MIN_DEPTH) -> jax.Array:
    """(..., 3) camera-frame points -> (..., 2) normalised image coordinates (x/z, y/z).

    Depth is clamped to ``min_depth`` so the value and gradient stay finite for points at or
    behind the camera (such samples are filtered out by the protocols; the clamp guards AD).
    """
    p = jnp.asarray(points_cam)
    z = jnp.maximum(p[..., 2:3], min_depth)
    return p[..., :2] / z


def _per_point(intrinsics: ArrayLike, pts: jax.Array) -> jax.Array:
    """(..., 4) intrinsics broadcast against (..., K, 2) points (a single (4,) applies to all)."""
    k = jnp.asarray(intrinsics)
    return k[..., None, :] if k.ndim > 1 and pts.ndim == k.ndim + 1 else k


def normalized_to_pixels(xy: ArrayLike, intrinsics: ArrayLike) -> jax.Array:
    """(..., 2) normalised coords and (..., 4) (fx, fy, cx, cy) -> (..., 2) pixels."""
    xy, k = jnp.asarray(xy), _per_point(intrinsics, xy)
    return xy * k[..., :2] + k[..., 2:]


def pixels_to_normalized(uv: ArrayLike, intrinsics: ArrayLike) -> jax.Array:
    """Inverse of ``normalized_to_pixels``: (..., 2) pixels -> (..., 2) normalised coords."""
    uv, k = jnp.asarray(uv), _per_point(intrinsics, uv)
    return (uv - k[..., 2:]) / k[..., :2]


def project_pixels(points_cam: ArrayLike, intrinsics: ArrayLike) -> jax.Array:
    """(..., K, 3) camera-frame points -> (..., K, 2) pixels."""
    return normalized_to_pixels(project(points_cam), intrinsics)


# --- the seed (original) convention --------------------------------------------------------

_FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL/three.js camera axes (a rotation).
_Q_FLIP_YZ = np.array([1.0, 0.0, 0.0, 0.0])  # the same, 180 degrees about x, as (x, y, z, w)


def seed_to_pixels(uv_seed: ArrayLike) -> jax.Array:
    """Original image coords (u right, v up, in [0,1]) -> pixels of ``SEED_CAMERA`` (v down)."""
    uv = jnp.asarray(uv_seed)
    return jnp.stack([uv[..., 0], 1.0 - uv[..., 1]], axis=-1)


def pixels_to_seed(uv_px: ArrayLike) -> jax.Array:
    """Inverse of ``seed_to_pixels`` (the map is its own inverse)."""
    return seed_to_pixels(uv_px)


def pose_opencv_to_gl(q_xyzw: ArrayLike, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Pose in OpenCV's camera frame -> the same pose in the OpenGL/three.js/seed camera frame.

    X_gl = F X_cv with F = diag(1, -1, -1), so R_gl = F R_cv, t_gl = F t_cv. The layout's own
    coordinates are untouched. The quaternion is returned with w >= 0.
    """
    q = jnp.asarray(q_xyzw)
    q_gl = geometry.quat_canonical(geometry.quat_multiply(jnp.asarray(_Q_FLIP_YZ, q.dtype), q))
    return q_gl, jnp.asarray(t) * jnp.asarray([1.0, -1.0, -1.0], q.dtype)


def pose_gl_to_opencv(q_xyzw: ArrayLike, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Inverse of ``pose_opencv_to_gl`` (F is its own inverse)."""
    return pose_opencv_to_gl(q_xyzw, t)
