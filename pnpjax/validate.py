"""Finite in, finite out: the rules every input must pass before the arithmetic, in one place.

The JS module applies the same rules (web/); keep the two in step. All checks run on the host in
float64, before anything is cast to float32 or traced.

Landmarks and intrinsics (``pnpjax predict``, the exports' ``camera`` argument):
  * every number is a real, finite number (no NaN, no +-Inf; booleans and strings are not numbers);
  * every landmark coordinate and intrinsic has ``|v| <= MAX_ABS`` (1e8): beyond it float32 keeps
    fewer than one digit of a pixel;
  * ``fx > 0`` and ``fy > 0`` (and ``width, height > 0`` where given);
  * every normalised coordinate ``(u - cx) / fx``, ``(v - cy) / fy`` (computed in float64) has
    ``|x| <= MAX_NORMALIZED`` (1e3, a ray 89.94 degrees off the optical axis). This is the rule
    that is relative to the camera: it refuses ``fx = 5e-324`` and coordinates of 1e30 alike. The
    training protocols stay within |x| < 1.2 (seed) and |x| < 1.1 (realistic, hfov <= 90 deg).
  * an error names the first offending row (0-based) or field.

Poses returned (``check_poses``): finite, unit quaternion (|q| = 1 within 1e-3) with w >= 0, and
in front of the camera (t_z > 0 in OpenCV's frame). A network fed landmarks far from anything it
was trained on can regress a pose behind the camera; that row is refused, never returned.

Layouts: at most ``MAX_POINTS`` points (memory grows with K), coordinates with ``|v| <= 1e6``
layout units, and the origin near the points (``origin_offset / spread <= MAX_ORIGIN_OFFSET``):
poses are translations of the layout's origin, and the sampling protocols place the origin, so
points 10 m from it never land in the image.

Config numbers (``config_numbers``): every float finite; counts and sizes positive integers
(step counts < 2**31, batch and sample sizes <= 2**24: they are drawn in one shot); seeds in
``[0, 2**32)``; ranges ``(lo, hi)`` with ``0 < lo <= hi``; oversampling >= 1; angles in range.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from collections.abc import Sequence

import numpy as np

from pnpjax.errors import ConfigError, InputError, LayoutError

MAX_ABS = 1e8
MAX_NORMALIZED = 1e3
MAX_POINTS = 1024
MAX_LAYOUT_ABS = 1e6
MAX_ORIGIN_OFFSET = 10.0  # |mean of the points| / RMS spread about their mean
MAX_SEED = 2**32 - 1
MAX_REFINE = 1000
MAX_EVAL_N = 10**8
QUAT_NORM_TOL = 1e-3


def _real_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def finite_number(
    v: Any, field: str, *, positive: bool = False, nonneg: bool = False, max_abs: float = MAX_ABS
) -> float:
    """One scalar field: a real, finite number within max_abs (and > 0 / >= 0 if asked)."""
    if not _real_number(v):
        raise InputError(f"{field} must be a number, got {v!r}"[:200])
    f = float(v)
    if not math.isfinite(f):
        raise InputError(f"{field} must be finite, got {f}")
    if abs(f) > max_abs:
        raise InputError(f"{field} = {f:g} is beyond the limit |{field}| <= {max_abs:g}")
    if positive and not f > 0:
        raise InputError(f"{field} must be > 0, got {f:g}")
    if nonneg and not f >= 0:
        raise InputError(f"{field} must be >= 0, got {f:g}")
    return f


def intrinsics(k: Sequence[float], names: Sequence[str] = ("fx", "fy", "cx", "cy", "width", "height")) -> np.ndarray:
    """(fx, fy, cx, cy[, width, height]) checked by the rules above; returns them as float64."""
    vals = list(k)
    for name, v in zip(names, vals):
        finite_number(v, name, positive=name in ("fx", "fy", "width", "height"))
    return np.asarray(vals, np.float64)


_CHECK_ROWS = 1 << 16  # rows per pass of the array checks: bounded temporaries for millions of rows


def _first_bad_row(x: np.ndarray, row_ok) -> tuple[int, int]:
    """(index of the first row where row_ok(chunk) is False, number of such rows), or (-1, 0);
    computed chunk by chunk so that checking N rows needs O(chunk) temporary memory."""
    first, count = -1, 0
    for start in range(0, x.shape[0], _CHECK_ROWS):
        bad = ~row_ok(x[start : start + _CHECK_ROWS])
        n = int(bad.sum())
        if n and first < 0:
            first = start + int(np.argmax(bad))
        count += n
    return first, count


def landmarks(x: np.ndarray, num_points: int, what: str = "landmarks") -> np.ndarray:
    """(N, K, 2) real finite array with |v| <= MAX_ABS; errors name the first bad row.

    Returned as float64, or as float32 when given float32 (every rule holds exactly in float32:
    MAX_ABS is a float32 number), without a float64 copy of a large input."""
    x = np.asarray(x)
    if x.dtype == object or x.dtype == bool or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InputError(f"{what} must be real numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (num_points, 2):
        raise InputError(f"{what}: expected shape (N, {num_points}, 2) for this layout, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{what}: no rows (shape {tuple(x.shape)})")
    x = x if x.dtype in (np.float32, np.float64) and x.dtype.isnative else x.astype(np.float64)
    # Fast path: every value within +-MAX_ABS (NaN fails the comparisons, inf the bound) is the
    # whole rule; two reductions per chunk, no temporaries. Otherwise the rules below name the row.
    if all(
        bool(c.max() <= MAX_ABS and c.min() >= -MAX_ABS)
        for c in (x[i : i + _CHECK_ROWS] for i in range(0, len(x), _CHECK_ROWS))
    ):
        return x
    r, n = _first_bad_row(x, lambda c: np.all(np.isfinite(c), axis=(1, 2)))
    if n:
        raise InputError(f"{what}: row {r} has NaN or infinite values ({n} of {x.shape[0]} rows)")
    r, n = _first_bad_row(x, lambda c: np.all(np.abs(c) <= MAX_ABS, axis=(1, 2)))
    if n:
        raise InputError(
            f"{what}: row {r} has a coordinate of {np.abs(x[r]).max():g}, beyond the limit {MAX_ABS:g} "
            f"({n} of {x.shape[0]} rows)"
        )
    return x


def _normalized_ok(xy: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.all(np.isfinite(xy) & (np.abs(xy) <= MAX_NORMALIZED), axis=(1, 2))


def normalized_landmarks(xy: np.ndarray, what: str = "landmarks") -> np.ndarray:
    """(N, K, 2) normalised coordinates (float64): finite and within MAX_NORMALIZED; names the first bad row."""
    xy = np.asarray(xy, np.float64)
    r, n = _first_bad_row(xy, _normalized_ok)
    if n:
        raise InputError(
            f"{what}: row {r} is {_worst(xy[r]):g} focal lengths off the optical axis (limit {MAX_NORMALIZED:g}: "
            f"|(u - cx) / fx| and |(v - cy) / fy|); check the camera and the landmarks' units "
            f"({n} of {xy.shape[0]} rows)"
        )
    return xy


def _worst(xy_row: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.nanmax(np.abs(xy_row))) if np.isfinite(xy_row).any() else float("inf")


def to_normalized(
    uv: np.ndarray, k: Sequence[float], what: str = "landmarks", *, keep: bool = True
) -> np.ndarray | None:
    """Pixels and (fx, fy, cx, cy) -> checked normalised coordinates, float64 (None with
    keep=False: only the check, in bounded memory, e.g. before the jitted solver normalises)."""
    fx, fy, cx, cy = intrinsics(list(k)[:4], ("fx", "fy", "cx", "cy"))
    c, f = np.array([cx, cy]), np.array([fx, fy])

    def ok(chunk):
        with np.errstate(all="ignore"):
            return _normalized_ok((np.asarray(chunk, np.float64) - c) / f)

    uv = np.asarray(uv)
    # Fast path: finite coordinates inside a box slightly smaller than the rule's pass it for sure
    # (two reductions per coordinate axis, no float64 copy); only otherwise is the rule evaluated exactly.
    half = MAX_NORMALIZED * (1 - 1e-6) * f
    lo, hi = c - half, c + half
    if uv.dtype == np.float32:  # compare in float32 against bounds rounded inwards (still conservative)
        lo = np.nextafter(lo.astype(np.float32), np.float32(np.inf))
        hi = np.nextafter(hi.astype(np.float32), np.float32(-np.inf))
    # Per coordinate axis, the chunk's least and greatest values against the box (NaN fails them).
    if uv.size and all(
        bool(all(chunk[..., a].min() >= lo[a] and chunk[..., a].max() <= hi[a] for a in (0, 1)))
        for chunk in (uv[i : i + _CHECK_ROWS] for i in range(0, len(uv), _CHECK_ROWS))
    ):
        r, n = -1, 0
    else:
        r, n = _first_bad_row(uv, ok)
    if n:
        with np.errstate(all="ignore"):
            row = (np.asarray(uv[r], np.float64) - c) / f
        raise InputError(
            f"{what}: row {r} is {_worst(row):g} focal lengths off the optical axis (limit {MAX_NORMALIZED:g}: "
            f"|(u - cx) / fx| and |(v - cy) / fy|); check the camera and the landmarks' units "
            f"({n} of {uv.shape[0]} rows)"
        )
    if not keep:
        return None
    with np.errstate(all="ignore"):
        return (np.asarray(uv, np.float64) - c) / f


def check_poses(y: np.ndarray, opencv: bool = True, what: str = "pose") -> np.ndarray:
    """(N, 7) qx qy qz qw tx ty tz: finite, unit q with w >= 0, in front of the camera.

    opencv False: the seed/OpenGL frame, where in front means t_z < 0.
    """
    y = np.asarray(y)

    def row_ok(c):
        with np.errstate(all="ignore"):
            c = np.asarray(c, np.float64)
            unit = np.abs(np.sqrt(np.einsum("ij,ij->i", c[:, :4], c[:, :4])) - 1) <= QUAT_NORM_TOL
            front = c[:, 6] > 0 if opencv else c[:, 6] < 0
            return np.all(np.isfinite(c), axis=1) & unit & (c[:, 3] >= 0) & front

    r0, n_bad = _first_bad_row(y, row_ok)  # chunked: bounded temporaries for millions of rows
    if n_bad:
        c = np.asarray(y[r0 : r0 + 1], np.float64)
        q = c[:, :4]
        with np.errstate(all="ignore"):
            finite = np.all(np.isfinite(c), axis=1)
            unit = np.abs(np.linalg.norm(q, axis=1) - 1) <= QUAT_NORM_TOL
        r = 0
        why = (
            "is not finite"
            if not finite[r]
            else "has no unit quaternion"
            if not unit[r] or q[r, 3] < 0
            else "is behind the camera"
        )
        raise InputError(
            f"{what} of row {r0} {why}: its landmarks are outside what this solver was trained on "
            f"({n_bad} of {y.shape[0]} rows)"
        )
    return y


def layout_points(pts: np.ndarray, name: str) -> None:
    """Size, magnitude and origin rules of a layout (see module docstring); raises LayoutError."""
    if pts.shape[0] > MAX_POINTS:
        raise LayoutError(f"layout '{name}': {pts.shape[0]} points, more than the limit of {MAX_POINTS}")
    if np.any(np.abs(pts) > MAX_LAYOUT_ABS):
        raise LayoutError(f"layout '{name}': coordinates beyond {MAX_LAYOUT_ABS:g} units")
    if not np.all(np.isfinite(pts)) or pts.shape[0] == 0:
        return  # layouts.validate_points names these
    centre = pts.mean(0)
    spread = math.sqrt(float(np.mean(np.sum((pts - centre) ** 2, -1))))
    if spread > 0 and float(np.linalg.norm(centre)) > MAX_ORIGIN_OFFSET * spread:
        raise LayoutError(
            f"layout '{name}': its origin is {np.linalg.norm(centre):g} units from its points "
            f"({np.linalg.norm(centre) / spread:.0f}x their spread, limit {MAX_ORIGIN_OFFSET:g}x); "
            "poses place the origin, so give the points relative to a nearby origin (e.g. their centre)"
        )


# --- config numbers ---------------------------------------------------------------------------------

_POSITIVE_INTS = ("batch_size", "steps", "log_every", "eval_every", "eval_size", "checkpoint_every", "stats_samples")
_INT_LIMITS = {
    "steps": 2**31 - 1,
    "log_every": 2**31 - 1,
    "eval_every": 2**31 - 1,
    "checkpoint_every": 2**31 - 1,
    "warmup_steps": 2**31 - 1,
    "batch_size": 2**24,
    "eval_size": 2**24,
    "stats_samples": 2**24,
}  # int32 step counter; one-shot sampling
_RANGES = ("hfov_deg", "long_side_px", "depth_cm", "head_scale")


def _fail(field: str, msg: str) -> ConfigError:
    return ConfigError(f"{field} {msg}")


def _walk(obj, prefix: str = ""):
    """(dotted name, value) of every leaf field of nested frozen dataclasses."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            yield from _walk(v, name + ".")
        else:
            yield name, v


def config_numbers(cfg) -> None:
    """Raise ConfigError (one line naming the field) unless every number of cfg is usable."""
    for name, v in _walk(cfg):
        leaf = name.rsplit(".", 1)[-1]
        vals = v if isinstance(v, tuple) else (v,)
        for x in vals:
            if isinstance(x, bool) or isinstance(x, str):
                continue
            if not _real_number(x):
                raise _fail(name, f"must be a number, got {x!r}")
            if isinstance(x, float) and not math.isfinite(x):
                raise _fail(name, f"must be finite, got {x}")
            if leaf in _INT_LIMITS and not (isinstance(x, (int, np.integer)) and x <= _INT_LIMITS[leaf]):
                raise _fail(name, f"must be an integer <= {_INT_LIMITS[leaf]}, got {x!r}")
        if leaf in _RANGES:
            if len(vals) != 2 or not 0 < vals[0] <= vals[1]:
                raise _fail(name, f"must be a range (lo, hi) with 0 < lo <= hi, got {v}")
        if leaf == "aspects" and (not vals or any(a <= 0 for a in vals)):
            raise _fail(name, f"must be one or more positive width/height ratios, got {v}")
        if leaf == "oversample" and not vals[0] >= 1:
            raise _fail(name, f"must be >= 1 (candidates per sample), got {v}")
        if leaf in ("scale", "lr", "grad_clip") and not vals[0] > 0:
            raise _fail(name, f"must be > 0, got {v}")
        if (
            leaf in ("noise_cm", "margin", "principal_jitter", "shape_jitter_cm", "noise_2d", "warmup_steps")
            and not vals[0] >= 0
        ):
            raise _fail(name, f"must be >= 0, got {v}")
        if leaf in ("max_angle_deg", "yaw_deg", "pitch_deg", "roll_deg") and not 0 <= vals[0] <= 180:
            raise _fail(name, f"must be in [0, 180] degrees, got {v}")
        if leaf == "hfov_deg" and not vals[-1] < 180:
            raise _fail(name, f"must be below 180 degrees, got {v}")
        if leaf == "end_lr_fraction" and not 0 <= vals[0] <= 1:
            raise _fail(name, f"must be in [0, 1], got {v}")
        if leaf == "seed" and not (isinstance(vals[0], (int, np.integer)) and 0 <= vals[0] <= MAX_SEED):
            raise _fail(name, f"must be an integer in [0, {MAX_SEED}], got {v}")
        if leaf in _POSITIVE_INTS and not vals[0] >= 1:
            raise _fail(name, f"must be positive, got {v}")
        if leaf == "widths" and (not vals or any(w < 1 or w > 65536 for w in vals)):
            raise _fail(name, f"must be one or more layer widths in [1, 65536], got {v}")


def cli_int(v: int, flag: str, lo: int, hi: int) -> int:
    if not lo <= v <= hi:
        raise InputError(f"{flag} must be in [{lo}, {hi}], got {v}")
    return v


def cli_seconds(v: float | None) -> float | None:
    if v is not None and not (math.isfinite(v) and 0 < v <= 1e7):
        raise InputError(f"--seconds must be a positive number of seconds, got {v}")
    return v
