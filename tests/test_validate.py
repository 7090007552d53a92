"""validate.to_normalized's fast path (a conservative box test) decides exactly as the rule itself:
|(u - cx) / fx| <= MAX_NORMALIZED and |(v - cy) / fy| <= MAX_NORMALIZED, computed in float64."""

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
    for rel in (1 - 1e-3, 1 - 1e-7, 1.0, 1 + 1e-7, 1 + 1e-3):
        for sign in (-1, 1):
            uv = rng.uniform(-1, 1, (50, 6, 2)) * [fx, fy] + [cx, cy]  # well inside
            row = int(rng.integers(50))
            uv[row, 3] = [cx + sign * rel * limit * fx, cy]
            uv = uv.astype(dtype)
            expected = _rule(uv, k)
            try:
                validate.to_normalized(uv, k, keep=False)
                got = True
            except InputError as e:
                got = False
                assert f"row {row} " in str(e)
            assert got == expected, (dtype, k, rel, sign)
