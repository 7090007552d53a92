"""Independent reference implementations the tests check the library against (not shipped)."""

from __future__ import annotations

import numpy as np


def seed_reference_numpy(rng: np.random.Generator, n: int, pts: np.ndarray, scale: float, noise_cm: float = 1.0):
    """The seed recipe exactly as SEED.md states it (draw in the whole box, then filter).

    Independent numpy/scipy re-implementation used by the tests to check the fast sampler.
    Returns (uv_seed (M, K, 2), q_gl (M, 4), t_gl (M, 3), behind (M,)) for the M accepted of n
    draws, in the original's own conventions; `behind` flags accepted samples with a point at
    or behind the camera.
    """
    from scipy.spatial.transform import Rotation

    e = rng.uniform(-np.pi / 3, np.pi / 3, (n, 3))
    rot = Rotation.from_euler("ZYX", e[:, ::-1])  # intrinsic Z-Y-X == R = Rz Ry Rx
    t = np.stack(
        [
            rng.uniform(-40 * scale, 40 * scale, n),
            rng.uniform(-40 * scale, 40 * scale, n),
            rng.uniform(-40 * scale, scale, n),
        ],
        -1,
    )
    P = np.einsum("nij,kj->nki", rot.as_matrix(), pts) + t[:, None, :]
    P = P + rng.uniform(-noise_cm, noise_cm, P.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = 1.0 - (P[..., :2] / P[..., 2:3] + 0.5)
    keep = np.all((uv > -0.1) & (uv < 1.1), axis=(1, 2))
    behind = np.any(P[..., 2] >= 0, axis=1)
    return uv[keep], rot.as_quat()[keep], t[keep], behind[keep]
