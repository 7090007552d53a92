"""Solving many poses: one jitted function from image landmarks to poses, run chunk by chunk.

`predict_poses` is what `pnpjax predict` (and `pnpjax.load(...).predict`) runs, `evaluate` what
`pnpjax eval` runs. Each compiles one program per (solver, chunk shape, options): camera
adapter, network, optional Levenberg-Marquardt refinement, frame adapter, all inside one `jit`,
so a batch of millions costs a few dispatches rather than a stream of eager operations. Chunks
are padded to one fixed size (a power of two for small inputs), so a run compiles once, and the
host memory is the input, the output and a few chunks.
"""

from __future__ import annotations

import functools
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import camera, geometry, losses, protocols, refine
from pnpjax.model import Prediction

CHUNK = 65_536  # poses per jitted call: large enough to amortise dispatch, small enough for cache


def refined_prediction(
    fn: Callable,
    variables: Any,
    xy: jax.Array,
    pts: jax.Array,
    iters: int,
    cost: str,
    noise: refine.NoiseModel | None,
    retry: int = 0,
) -> Prediction:
    """The network `fn(variables, xy)`, then `iters` LM steps on `cost` ("ml": under `noise`, and up
    to `retry` more on gross fits, see `refine.refine_pose`).

    xy: (..., K, 2) normalised OpenCV coordinates; pts: (K, 3) layout points. Traceable."""
    p = fn(variables, xy)
    if iters <= 0:
        return p
    if cost == "ml":
        q, t = refine.refine_ml(xy, pts, p.q, p.t, noise, iters=iters, retry=retry)
    else:
        q, t = refine.refine_pose(xy, pts, p.q, p.t, iters=iters, cost=cost)
    return Prediction(geometry.quat_to_matrix(q), q, t, p.z)


@functools.partial(jax.jit, static_argnames=("fn", "iters", "cost", "noise", "seed_frame", "retry"))
def _pose_chunk(fn, variables, uv, intrinsics, pts, *, iters, cost, noise, seed_frame, retry=0):
    """(C, K, 2) image coords -> (C, 7) qx qy qz qw tx ty tz, w >= 0 (see predict_poses)."""
    if seed_frame:
        xy = camera.pixels_to_normalized(camera.seed_to_pixels(uv), intrinsics)
    else:
        xy = camera.pixels_to_normalized(uv, intrinsics)
    p = refined_prediction(fn, variables, xy, pts, iters, cost, noise, retry)
    q, t = camera.pose_opencv_to_gl(p.q, p.t) if seed_frame else (geometry.quat_canonical(p.q), p.t)
    return jnp.concatenate([q, t], -1)


def chunk_size(n: int, chunk: int = CHUNK) -> int:
    """The padded chunk length for n rows: `chunk`, or the next power of two below it."""
    return int(min(chunk, 1 << max(int(n) - 1, 0).bit_length()))


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _padded(a: np.ndarray, size: int) -> np.ndarray:
    """`a` with its first axis padded to `size` by repeating its last row (finite padding)."""
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)], 0)


def predict_poses(
    solver,
    x: np.ndarray,
    cam: camera.Camera | None,
    refine_iters: int = 0,
    refine_cost: str = "image",
    noise: refine.NoiseModel | None = None,
    *,
    refine_retry: int = 0,
    chunk: int = CHUNK,
) -> np.ndarray:
    """Poses of (N, K, 2) landmarks in a camera's image coordinates, as `pnpjax predict` writes them.

    Args:
      solver: a loaded solver (`checkpoint.load`): anything with `.pure` and `.layout`.
      x: (N, K, 2) image coordinates: pixels of `cam` (u right, v down), or for `cam=None` the
        original's coordinates (u = x / width, v = 1 - y / height, v up; focal 1, centre 0.5).
      cam: the camera (`camera.parse_camera`), or None for the seed convention.
      refine_iters: Levenberg-Marquardt iterations after the network (0: the network alone).
      refine_cost: "image" | "object" | "ml" (see `refine.refine_pose`); "ml" uses `noise`.
      noise: the `refine.NoiseModel` of the "ml" cost.
      refine_retry: "ml": up to this many more iterations on gross fits (`refine.refine_pose`).
      chunk: poses per jitted call.

    Returns:
      (N, 7) float32 `qx qy qz qw tx ty tz` with w >= 0, in the layout's units: the OpenCV camera
      frame for a camera, the original's OpenGL-like frame (x right, y up, looking down -z) for
      cam=None.
    """
    if refine_cost == "ml" and refine_iters > 0 and noise is None:
        raise ValueError("refine_cost 'ml' needs a noise model")
    fn, variables = solver.pure
    x = np.asarray(x)
    n = x.shape[0]
    out = np.empty((n, 7), np.float32)
    if n == 0:
        return out
    seed_frame = cam is None
    intrinsics = jnp.asarray((camera.SEED_CAMERA if seed_frame else cam).intrinsics, jnp.float32)
    pts = jnp.asarray(solver.layout.array, jnp.float32)
    size = chunk_size(n, chunk)
    run = functools.partial(
        _pose_chunk,
        fn,
        variables,
        intrinsics=intrinsics,
        pts=pts,
        iters=int(refine_iters),
        cost=refine_cost,
        noise=noise if refine_cost == "ml" and refine_iters > 0 else None,
        seed_frame=seed_frame,
        retry=int(refine_retry) if refine_cost == "ml" and refine_iters > 0 else 0,
    )
    pending: tuple[int, int, jax.Array] | None = None  # one chunk in flight while the next is staged
    for start, stop in _chunks(n, size):
        y = run(_padded(x[start:stop].astype(np.float32, copy=False), size))
        if pending is not None:
            out[pending[0] : pending[1]] = np.asarray(pending[2])[: pending[1] - pending[0]]
        pending = (start, stop, y)
    out[pending[0] : pending[1]] = np.asarray(pending[2])[: pending[1] - pending[0]]
    return out


@functools.partial(jax.jit, static_argnames=("fn", "iters", "cost", "noise"))
def _metrics_chunk(fn, variables, batch: protocols.Batch, pts, *, iters, cost, noise):
    pred = refined_prediction(fn, variables, batch.xy, pts, iters, cost, noise)
    return losses.per_example_metrics(pred, batch, pts)


def evaluate(
    solver,
    batch: protocols.Batch,
    refine_iters: int = 0,
    refine_cost: str = "image",
    noise: refine.NoiseModel | None = None,
    *,
    chunk: int = CHUNK,
) -> dict[str, float]:
    """Summary metrics (`losses.summarize`) of a solver, optionally refined, on a test Batch.

    One jitted program from the batch's normalised landmarks to per-example metrics, run on
    fixed-size chunks (bounded memory for millions of draws)."""
    fn, variables = solver.pure
    pts = jnp.asarray(solver.layout.array, jnp.float32)
    n = int(batch.xy.shape[0])
    size = chunk_size(n, chunk)
    noise = noise if refine_cost == "ml" and refine_iters > 0 else None
    per: dict[str, list[np.ndarray]] = {}
    host = jax.tree_util.tree_map(np.asarray, batch)
    for start, stop in _chunks(n, size):
        b = jax.tree_util.tree_map(lambda a: _padded(a[start:stop], size), host)
        m = _metrics_chunk(fn, variables, b, pts, iters=int(refine_iters), cost=refine_cost, noise=noise)
        for k, v in m.items():
            per.setdefault(k, []).append(np.asarray(v)[: stop - start])
    return losses.summarize({k: np.concatenate(v) for k, v in per.items()}, host.valid)
