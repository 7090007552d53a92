"""Keypoint layouts: the fixed 3D points of a rigid object, presets and user files.

A layout's coordinates are used exactly as given (its origin, its units): a pose maps them to
the camera frame. The face presets are in cm, face-centred, x right, y up, z towards the viewer
(the seed's coordinates), so their "frontal" view looks along the layout's -z axis.

A user layout file is JSON or CSV:
  JSON: {"name": "marker", "units": "cm", "points": {"tl": [x, y, z], ...}}
        (or "points": [{"name": "tl", "xyz": [x, y, z]}, ...]); optional "up" and "facing"
        axes such as "+y" / "+z" say which layout axes point up and towards the camera in the
        object's frontal pose (used by the realistic protocol), default "+y" and "+z"; optional
        "detector": {"name": ..., "num_points": D, "indices": [...]} says which of a detector's D
        output points each layout point is, in layout order (see pnpjax.detectors).
  CSV:  a header line "name,x,y,z" then one point per line.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from pnpjax.errors import LayoutError


@dataclasses.dataclass(frozen=True)
class DetectorSource:
    """Where a layout's points come from: point k is output point `indices[k]` of detector `name`."""

    name: str
    num_points: int
    indices: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "num_points": self.num_points, "indices": list(self.indices)}

    @classmethod
    def from_dict(cls, d, layout_name: str) -> DetectorSource:
        try:
            name, n, idx = d["name"], d["num_points"], d["indices"]
            ok = isinstance(name, str) and all(type(v) is int for v in (n, *idx))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise LayoutError(
                f'layout \'{layout_name}\': \'detector\' must be {{"name": str, "num_points": int, "indices": [int, ...]}}'
            )
        return cls(name, n, tuple(idx))


_AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}


@dataclasses.dataclass(frozen=True)
class Layout:
    """A named rigid set of K 3D keypoints."""

    name: str
    point_names: tuple[str, ...]
    points: tuple[tuple[float, float, float], ...]  # (K, 3) in `units`
    units: str = "cm"
    up: str = "+y"
    facing: str = "+z"
    detector: DetectorSource | None = None

    def __post_init__(self):
        from pnpjax import validate

        pts = np.asarray(self.points, dtype=np.float64)
        if pts.ndim == 2 and pts.shape[1:] == (3,):
            validate.layout_points(pts, self.name)  # size and magnitude first: no SVD of 20,000 or 1e308-sized points
        validate_points(pts, self.name)
        if len(self.point_names) != len(self.points):
            raise LayoutError(f"layout '{self.name}': {len(self.point_names)} names for {len(self.points)} points")
        if len(set(self.point_names)) != len(self.point_names):
            raise LayoutError(f"layout '{self.name}': point names must be unique")
        for ax in (self.up, self.facing):
            if ax not in _AXES:
                raise LayoutError(f"layout '{self.name}': axis '{ax}' must be one of {sorted(_AXES)}")
        if np.dot(_AXES[self.up], _AXES[self.facing]) != 0:
            raise LayoutError(f"layout '{self.name}': 'up' and 'facing' must be different axes")
        d = self.detector
        if d is not None and (
            len(d.indices) != len(self.points)
            or len(set(d.indices)) != len(d.indices)
            or not all(0 <= i < d.num_points for i in d.indices)
        ):
            raise LayoutError(
                f"layout '{self.name}': detector indices must be {len(self.points)} distinct "
                f"indices into the detector's {d.num_points} points"
            )

    @property
    def num_points(self) -> int:
        return len(self.points)

    @property
    def array(self) -> np.ndarray:
        """(K, 3) float32 points."""
        return np.asarray(self.points, dtype=np.float32)

    @property
    def frontal_rotation(self) -> np.ndarray:
        """R_cam_layout of the frontal pose (OpenCV camera): `facing` towards the camera, `up` up."""
        up, facing = np.array(_AXES[self.up], float), np.array(_AXES[self.facing], float)
        right = np.cross(up, facing)  # layout axis that appears to the camera's right
        # Rows: where camera x (right), y (down), z (forward) point in layout coordinates.
        return np.stack([right, -up, -facing])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "units": self.units,
            "up": self.up,
            "facing": self.facing,
            "points": {n: list(p) for n, p in zip(self.point_names, self.points)},
            **({"detector": self.detector.to_dict()} if self.detector else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, default_name: str = "custom") -> Layout:
        if not isinstance(d, dict) or "points" not in d:
            raise LayoutError("layout JSON must be an object with a 'points' entry")
        pts = d["points"]
        if isinstance(pts, dict):
            names, xyz = list(pts.keys()), list(pts.values())
        elif isinstance(pts, list):
            try:
                names = [str(p.get("name", f"p{i}")) for i, p in enumerate(pts)]
                xyz = [p["xyz"] for p in pts]
            except (AttributeError, KeyError, TypeError) as e:
                raise LayoutError('layout \'points\' list entries must be {"name": ..., "xyz": [x, y, z]}') from e
        else:
            raise LayoutError("layout 'points' must be an object or a list")

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        if not all(isinstance(p, (list, tuple)) and all(number(v) for v in p) for p in xyz):
            raise LayoutError(
                f"layout '{d.get('name', default_name)}': every point must be a list of 3 numbers "
                "(not strings or booleans)"
            )
        arr = _as_points(xyz, d.get("name", default_name))
        name = str(d.get("name", default_name))
        detector = DetectorSource.from_dict(d["detector"], name) if d.get("detector") is not None else None
        preset = PRESETS.get(name)
        if "detector" not in d and preset is not None and np.array_equal(arr, preset.points):
            detector = preset.detector  # metadata written before layouts named their detector
        return cls(
            name=name,
            point_names=tuple(str(n) for n in names),
            points=tuple(tuple(float(v) for v in p) for p in arr),
            units=str(d.get("units", "cm")),
            up=str(d.get("up", "+y")),
            facing=str(d.get("facing", "+z")),
            detector=detector,
        )


def _no_duplicate_keys(pairs: list) -> dict:
    """json object hook: a repeated key (e.g. a point name) is an error, not a silent overwrite."""
    import collections

    dup = sorted(k for k, n in collections.Counter(k for k, _ in pairs).items() if n > 1)
    if dup:
        raise LayoutError(f"layout JSON repeats the key(s) {', '.join(dup)}; point names must be unique")
    return dict(pairs)


def _as_points(xyz, name: str) -> np.ndarray:
    try:
        arr = np.asarray(xyz, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise LayoutError(f"layout '{name}': points must be numbers [x, y, z]") from e
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise LayoutError(f"layout '{name}': points must be K x 3, got shape {arr.shape}")
    return arr


def validate_points(pts: np.ndarray, name: str = "layout") -> None:
    """Raise LayoutError unless pts is (K>=4, 3), finite, and spans at least a plane."""
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise LayoutError(f"layout '{name}': points must be K x 3, got shape {pts.shape}")
    if pts.shape[0] < 4:
        raise LayoutError(f"layout '{name}': needs at least 4 points for a unique pose, got {pts.shape[0]}")
    if not np.all(np.isfinite(pts)):
        raise LayoutError(f"layout '{name}': points must be finite")
    centred = pts - pts.mean(0)
    sv = np.linalg.svd(centred, compute_uv=False)
    if sv[0] <= 0 or sv[1] / sv[0] < 1e-3:
        raise LayoutError(f"layout '{name}': points are coincident or collinear; the pose is not determined")


def load_layout_file(path: str | Path) -> Layout:
    """Read a user layout from .json or .csv (see module docstring)."""
    from pnpjax import fsio

    p = Path(path)
    if not p.exists() or p.is_dir():
        raise LayoutError(f"layout file not found: {p}")
    if p.suffix.lower() not in (".json", ".csv"):
        raise LayoutError(f"layout file {p}: expected a .json or .csv file")
    text = fsio.layout_file_text(p, LayoutError)  # regular file, size-limited, UTF-8, BOM dropped
    if p.suffix.lower() == ".json":
        d = fsio.parse_json(text, f"layout file {p}", LayoutError, object_pairs_hook=_no_duplicate_keys)
        return Layout.from_dict(d, default_name=p.stem)
    if p.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if not rows or [c.strip().lower() for c in rows[0]] != ["name", "x", "y", "z"]:
            raise LayoutError(f"layout file {p}: CSV must start with the header 'name,x,y,z'")
        if any(len(r) != 4 for r in rows[1:]):
            raise LayoutError(f"layout file {p}: every CSV row must be name,x,y,z")
        xyz = _as_points([[c.strip() for c in r[1:]] for r in rows[1:]], p.stem) if rows[1:] else np.zeros((0, 3))
        points = [{"name": r[0].strip(), "xyz": list(x)} for r, x in zip(rows[1:], xyz)]  # a list keeps duplicates
        return Layout.from_dict({"name": p.stem, "points": points})
    raise LayoutError(f"layout file {p}: expected a .json or .csv file")


BLAZEFACE6 = Layout(
    name="blazeface6",
    point_names=("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear"),
    points=(
        (-3.23597, 3.23021, -3.33562),
        (3.23597, 3.23021, -3.33562),
        (0.0, 0.003874, 0.290468),
        (0.0, -3.53483, -2.08927),
        (-8.04888, 2.22486, -12.6444),
        (8.04888, 2.22486, -12.6444),
    ),
    # BlazeFace's 6 keypoints come in this order (the original fed them straight in).
    detector=DetectorSource("blazeface", 6, (0, 1, 2, 3, 4, 5)),
)

FACEAPI10 = Layout(
    name="faceapi10",
    point_names=(
        "nose_tip",
        "bottom_nose",
        "left_nostril",
        "right_nostril",
        "left_eye_outer",
        "left_eye_inner",
        "right_eye_outer",
        "right_eye_inner",
        "left_mouth_corner",
        "right_mouth_corner",
    ),
    points=(
        (0.0, 0.003874, 0.290468),
        (0.0, -1.26207, -1.14108),
        (-0.85877, -1.05017, -1.53035),
        (0.85877, -1.05017, -1.53035),
        (-4.49893, 3.21601, -4.22082),
        (-1.9326, 3.14086, -3.78216),
        (4.49893, 3.21601, -4.22082),
        (1.9326, 3.14086, -3.78216),
        (-2.17298, -3.62696, -3.15651),
        (2.17298, -3.62696, -3.15651),
    ),
    # face-api.js's 68 landmarks (iBUG-300W order); "left" is the image's left (the subject's right).
    # Checked by drawing them on a photo (web/README) and by cv2 SQPnP facing the camera.
    detector=DetectorSource("face-api.js/68", 68, (30, 33, 31, 35, 36, 39, 45, 42, 48, 54)),
)

PRESETS = {BLAZEFACE6.name: BLAZEFACE6, FACEAPI10.name: FACEAPI10}


def get_layout(name_or_path: str) -> Layout:
    """A preset by name, or a user layout file path."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if name_or_path.endswith((".json", ".csv")) or "/" in name_or_path:
        return load_layout_file(name_or_path)
    raise LayoutError(f"unknown layout '{name_or_path}': use one of {sorted(PRESETS)} or a .json/.csv file")


def layout_radius(layout: Layout) -> float:
    """Largest distance of a point from the layout's origin (used for sampling bounds)."""
    return float(max(math.sqrt(sum(c * c for c in p)) for p in layout.points))
