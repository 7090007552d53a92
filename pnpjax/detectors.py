"""A landmark detector's full output -> a layout's points.

A layout that names its source detector (`layouts.DetectorSource`: faceapi10 <- face-api.js's 68
points, blazeface6 <- BlazeFace's 6 keypoints) takes that detector's output as it comes:

* an array (N, D, 2) or (D, 2) of the detector's D points, selected by the layout's indices;
* face-api.js results as JSON (`JSON.stringify` of `detectAllFaces(...).withFaceLandmarks()`, of one
  result, of a `FaceLandmarks68`, or of its `.positions`): points as `{"_x", "_y"}` (face-api.js's
  `Point`), `{"x", "y"}` or `[x, y]`;
* `{"landmarks": [...]}` with any of the above (web/tools/detect_faces.mjs writes this).

Arrays that already have the layout's K points pass through unchanged, so every reader accepts both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pnpjax.errors import InputError
from pnpjax.layouts import Layout

FACE_API_68 = "face-api.js/68"


def _point(p: Any) -> Any:
    """{"_x", "_y"} / {"x", "y"} -> [x, y]; anything else unchanged (checked later as numbers)."""
    if isinstance(p, dict):
        for kx, ky in (("_x", "_y"), ("x", "y")):
            if kx in p and ky in p:
                return [p[kx], p[ky]]
        raise InputError(f"a landmark object must have x and y (or _x and _y), got keys {sorted(map(str, p))[:4]}")
    return p


def _points_of(face: Any, depth: int = 0) -> Any:
    """One face-api.js object (result, landmarks, or a list of points) -> a list of points."""
    if depth > 3:  # result -> landmarks -> _positions: anything deeper is not face-api.js output
        raise InputError("face objects are nested too deeply for face-api.js output")
    if isinstance(face, dict):
        for key in ("landmarks", "_positions", "positions"):
            if key in face:
                return _points_of(face[key], depth + 1)
        if "_x" in face or "x" in face:  # a single point: not a face
            raise InputError("expected a face's landmarks, got a single point")
        raise InputError(f"unrecognised face object with keys {sorted(map(str, face))[:6]}")
    if isinstance(face, list):
        return [_point(p) for p in face]
    raise InputError(f"expected a list of landmarks, got {type(face).__name__}")


def from_json(data: Any) -> Any:
    """Parsed JSON in any of the module docstring's forms -> nested lists (N, D, 2) or (D, 2).

    Plain nested number lists pass through unchanged.
    """
    if isinstance(data, dict) and "landmarks" in data and isinstance(data["landmarks"], list):
        data = data["landmarks"]  # {"landmarks": [...]} (detect_faces.mjs) or one face-api.js result
        if data and isinstance(data[0], (int, float)):
            raise InputError("'landmarks' must be a list of points or of faces, not of numbers")
    if isinstance(data, dict):
        return _points_of(data)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if any(k in data[0] for k in ("landmarks", "_positions", "positions")):  # a list of faces
            return [_points_of(f) for f in data]
        return [_point(p) for p in data]  # one face's points as objects
    if isinstance(data, list) and data and isinstance(data[0], list) and data[0] and isinstance(data[0][0], dict):
        return [[_point(p) for p in face] for face in data]
    return data


def select(x: np.ndarray, layout: Layout) -> np.ndarray:
    """(N, D, 2) output of the layout's detector -> (N, K, 2) in layout order; other shapes unchanged."""
    d = layout.detector
    if d is None or x.ndim != 3 or x.shape[1] != d.num_points or x.shape[1] == layout.num_points:
        return x
    return np.ascontiguousarray(x[:, list(d.indices)])
