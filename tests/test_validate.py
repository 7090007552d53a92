"""validate's fast paths decide exactly as the rules themselves: to_normalized's conservative box
test as |(u - cx) / fx| <= MAX_NORMALIZED and |(v - cy) / fy| <= MAX_NORMALIZED computed in float64;
landmarks' min/max test as "finite and |value| <= MAX_ABS" value by value."""

from __future__ import annotations

import numpy as np
import pytest

from pnpjax import validate
from pnpjax.errors import InputError


def _rule(uv: np.ndarray, k) -> bool:
    fx, fy, cx, cy = k
    with np.errstate(all="ignore"):
        xy = (uv.astype(np.float64) - [cx, cy]) / [fx, fy]
    return bool(np.all(np.isfinite(xy) & (np.abs(xy) <= validate.MAX_NORMALIZED)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [(554.3, 554.3, 320.0, 240.0), (1.0, 1.0, 0.5, 0.5), (3.0, 7.0, 1e5, -2e4)])
def test_fast_path_agrees_with_the_rule_at_the_boundary(dtype, k):
    rng = np.random.default_rng(0)
    fx, fy, cx, cy = k
    limit = validate.MAX_NORMALIZED
    cases = [
        (axis, sign * rel * limit)
        for rel in (1 - 1e-3, 1 - 1e-7, 1.0, 1 + 1e-7, 1 + 1e-3)
        for sign in (-1, 1)
        for axis in (0, 1)
    ]
    cases += [(axis, bad) for bad in (np.nan, np.inf, -np.inf) for axis in (0, 1)]
    for axis, off in cases:
        uv = rng.uniform(-1, 1, (50, 6, 2)) * [fx, fy] + [cx, cy]  # well inside
        row = int(rng.integers(50))
        uv[row, 3] = [cx, cy]
        uv[row, 3, axis] += off * (fx, fy)[axis] if np.isfinite(off) else off
        uv = uv.astype(dtype)
        expected = _rule(uv, k)
        try:
            validate.to_normalized(uv, k, keep=False)
            got = True
        except InputError as e:
            got = False
            assert f"row {row} " in str(e)
        assert got == expected, (dtype, k, axis, off)


def _landmarks_rule(x: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(x)) and np.all(np.abs(x.astype(np.float64)) <= validate.MAX_ABS))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_landmarks_fast_path_agrees_with_the_rule(dtype):
    """Values at, just inside and just beyond +-MAX_ABS, NaN and +-inf, in any row of a
    multi-chunk array: accepted exactly when the rule holds, else the error names that row."""
    rng = np.random.default_rng(1)
    n = validate._CHECK_ROWS + 10  # two chunks
    m = np.float64(validate.MAX_ABS)
    specials = [m, -m, np.nextafter(m, 0), np.nextafter(m, np.inf), -np.nextafter(m, np.inf), 2 * m]
    if dtype != np.int64:
        specials += [np.nan, np.inf, -np.inf, np.nextafter(np.float32(m), np.float32(np.inf))]
    for value in specials:
        x = rng.uniform(-100, 100, (n, 6, 2)).astype(dtype)
        row = int(rng.integers(n))
        with np.errstate(invalid="ignore", over="ignore"):
            x[row, 2, 1] = np.asarray(value).astype(dtype)
        expected = _landmarks_rule(x)
        try:
            validate.landmarks(x, 6)
            got = True
        except InputError as e:
            got = False
            assert f"row {row} " in str(e)
        assert got == expected, (dtype, value)
