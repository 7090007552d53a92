"""Readers of user files: landmarks (.npy / .json), layout files, JSON metadata.

Every reader either returns checked data or raises one `PnpjaxError` with a one-line message;
none hangs on a FIFO, allocates what a header merely claims, recurses without bound, or accepts
a value that only looks like a number (`"0.5"`, `true`). Sizes are checked before reading (see
fsio.read_regular); the numeric rules are validate.py's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pnpjax import fsio, validate
from pnpjax.errors import InputError

MAX_NPY_BYTES = 4 << 30  # 4 GiB of landmarks (~45M poses of 6 points in float64)
MAX_LANDMARK_JSON_BYTES = 256 * fsio.MiB  # a JSON list of lists is ~20x its numbers in memory: use .npy beyond
MAX_META_BYTES = fsio.MAX_META_BYTES
parse_json, read_json = fsio.parse_json, fsio.read_json  # the JSON readers live in fsio (layouts.py imports them)

_NUMERIC_JSON = b"0123456789+-.eE,[] \t\r\n"


def _numbers_only(obj: Any, path: Path, depth: int = 0) -> None:
    """Every leaf of nested lists is an int or float (not a bool, string, null or object), depth <= 3."""
    if isinstance(obj, list):
        if depth >= 3:
            raise InputError(f"{path}: landmarks are nested more than 3 lists deep")
        for v in obj:
            _numbers_only(v, path, depth + 1)
    elif isinstance(obj, bool) or not isinstance(obj, (int, float)):
        raise InputError(
            f"{path}: landmarks must be numbers, found {json.dumps(obj)[:20]} "
            "(strings, booleans, null and objects are not numbers)"
        )


def _json_landmarks(path: Path, layout=None) -> np.ndarray:
    data = fsio.read_regular(path, "input file", MAX_LANDMARK_JSON_BYTES)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    plain = not data.translate(None, _NUMERIC_JSON)
    if plain:
        # Only numbers in nested lists (the common, possibly huge, case): check the nesting before parsing.
        b = np.frombuffer(data, np.uint8)
        depth = (
            np.cumsum((b == ord("[")).astype(np.int64) - (b == ord("]")).astype(np.int64))
            if b.size
            else np.zeros(1, np.int64)
        )
        if depth.max(initial=0) > 3:
            raise InputError(
                f"{path}: landmarks are nested {int(depth.max())} lists deep; expected a K x 2 list or a list of them"
            )
    elif layout is None or layout.detector is None:
        i = next(j for j, c in enumerate(data) if c not in _NUMERIC_JSON)
        line = data.count(b"\n", 0, i) + 1
        token = data[i : i + 12].split(b",")[0].decode("utf-8", "replace")
        raise InputError(
            f"{path}: landmarks must be numbers in nested lists; found {token!r} at line {line} "
            "(strings, booleans, null and NaN are not numbers)"
        )
    try:
        obj = parse_json(data, "the file")
    except InputError as e:
        raise InputError(f"cannot read landmarks from {path}: {e}") from None
    if not plain:  # a detector's output (face-api.js objects): the points, then the same strict check
        from pnpjax import detectors

        obj = detectors.from_json(obj)
        _numbers_only(obj, path)
    try:
        return np.asarray(obj, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise InputError(
            f"{path}: landmarks must be a K x 2 list of numbers or a list of them (ragged lists?)"
        ) from None


def _npy_landmarks(path: Path) -> np.ndarray:
    st = fsio.check_regular(path, "input file")
    if st.st_size > MAX_NPY_BYTES:
        raise InputError(f"input file {path} is {st.st_size:,} bytes, more than the limit of {MAX_NPY_BYTES:,}")
    head = fsio.read_regular(path, "input file", MAX_NPY_BYTES)  # bounded above; one read, no mmap
    if head[:4] == b"PK\x03\x04":
        raise InputError(f"{path} is a .npz (zip) archive, not a .npy array: save one array with numpy.save")
    if head[:6] != b"\x93NUMPY":
        raise InputError(f"{path} is not a .npy file (no NUMPY magic)")
    import io

    f = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except Exception:  # numpy parses the header dict with the tokenizer: SyntaxError, TokenError, ValueError...
        raise InputError(f"{path}: malformed .npy header") from None
    if dtype.hasobject or dtype.kind not in "iuf":
        raise InputError(f"{path}: landmarks must be real numbers, got dtype {dtype}")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    need = count * dtype.itemsize
    have = len(head) - f.tell()
    if need != have:
        raise InputError(
            f"{path}: the .npy header claims shape {tuple(shape)} ({need:,} bytes of data), the file holds {have:,}"
        )
    x = np.frombuffer(head, dtype=dtype, count=count, offset=f.tell())
    x = x.reshape(shape, order="F" if fortran else "C")
    return x.astype(x.dtype.newbyteorder("="), copy=False)  # big-endian files are read as their values


def read_landmarks(path: str | os.PathLike, num_points: int, layout=None, *, check: bool = True) -> np.ndarray:
    """(N, K, 2) float64 landmarks from .npy or .json (a K x 2 list, or a list of them), checked
    by validate.landmarks (finite, real, within limits, at least one row).

    With a layout that names its detector, also that detector's full output (pnpjax.detectors).
    """
    path = Path(path)
    if path.suffix == ".npy":
        x = _npy_landmarks(path)
    elif path.suffix == ".json":
        x = _json_landmarks(path, layout)
    else:
        fsio.check_regular(path, "input file")
        raise InputError(f"input must be .npy or .json, got {path.name}")
    if layout is not None and x.ndim in (2, 3) and x.dtype.kind in "iuf":
        from pnpjax import detectors

        x = detectors.select(x[None] if x.ndim == 2 else x, layout)
    # check=False: the caller applies the same rules itself (`PoseSolver.predict` does), once.
    return validate.landmarks(x, num_points, str(path)) if check else x


def read_frames(path: str | os.PathLike, num_points: int, layout=None) -> tuple[np.ndarray, np.ndarray]:
    """A video's landmarks (`pnpjax predict --track`): as read_landmarks, except that a frame may
    have none: a null or [] row (.json) or a row that is entirely NaN (.npy).

    Returns ((N, K, 2) float64 landmarks, zeros where missing; (N,) bool, the frame has landmarks).
    """
    path = Path(path)
    if path.suffix == ".json":
        obj = parse_json(fsio.read_regular(path, "input file", MAX_LANDMARK_JSON_BYTES), "the file")
        if not isinstance(obj, list) or not obj:
            raise InputError(
                f"{path}: expected a list of frames (K x 2 lists; null or [] for a frame without landmarks)"
            )
        present = np.array([r is not None and r != [] for r in obj], bool)
        rows = [r for r, p in zip(obj, present) if p]
        _numbers_only(rows, path)
        try:
            x = np.asarray(rows, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise InputError(f"{path}: every frame must be a K x 2 list of numbers (ragged lists?)") from None
    elif path.suffix == ".npy":
        x = _npy_landmarks(path)
        x = x[None] if x.ndim == 2 else x
        present = ~np.all(np.isnan(x), axis=tuple(range(1, x.ndim))) if x.ndim >= 2 else np.ones(len(x), bool)
        x = x[present]
    else:
        fsio.check_regular(path, "input file")
        raise InputError(f"input must be .npy or .json, got {path.name}")
    if not present.any():
        raise InputError(f"{path}: no frame has landmarks")
    if layout is not None and x.ndim == 3 and x.dtype.kind in "iuf":
        from pnpjax import detectors

        x = detectors.select(x, layout)
    x = validate.landmarks(x, num_points, str(path))
    full = np.zeros((present.size, num_points, 2))
    full[present] = x
    return full, present


def read_timestamps(path: str | os.PathLike, n: int) -> np.ndarray:
    """(n,) frame times in seconds from .npy or .json: finite, within +-1e9, non-decreasing."""
    path = Path(path)
    if path.suffix == ".json":
        t = parse_json(fsio.read_regular(path, "timestamps file", MAX_LANDMARK_JSON_BYTES), "the file")
        if not isinstance(t, list):
            raise InputError(f"{path}: timestamps must be a list of {n} numbers (seconds)")
        _numbers_only(t, path)
        t = np.asarray(t, dtype=np.float64)
    elif path.suffix == ".npy":
        t = _npy_landmarks(path).astype(np.float64)
    else:
        fsio.check_regular(path, "timestamps file")
        raise InputError(f"timestamps must be .npy or .json, got {path.name}")
    if t.shape != (n,):
        raise InputError(f"{path}: expected {n} timestamps (seconds, one per frame), got shape {tuple(t.shape)}")
    if not np.all(np.isfinite(t) & (np.abs(t) <= 1e9)) or np.any(np.diff(t) < 0):
        raise InputError(f"{path}: timestamps must be finite seconds (|t| <= 1e9), non-decreasing")
    return t


__all__ = ["parse_json", "read_frames", "read_json", "read_landmarks", "read_timestamps"]
