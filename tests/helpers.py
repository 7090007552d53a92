"""Helpers shared by test modules: reference solvers, inputs and comparisons (fixtures live in conftest.py)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lib import precision
from experiments.lib.precision import aligned, jax_pose, pose_error
from pnpjax import camera, checkpoint, config, layouts, model
from pnpjax.model import ModelConfig

ATOL = 1e-5
# A pixel camera: 640x480, 60° horizontal field of view, principal point off-centre.
PIXEL_CAMERA = precision.PIXEL_CAMERA
OTHER_CAMERA = camera.Camera(900.0, 905.0, 610.0, 355.0, 1280.0, 720.0)


# --------------------------------------------------------------------------------------------
# Models, inputs and references
# --------------------------------------------------------------------------------------------


@functools.cache
def _seed_stats() -> model.Stats:
    """Standardisation of the blazeface6 seed protocol (plain inputs, quat head), computed once."""
    cfg = config.get_config("blazeface6-seed")
    return model.compute_stats(
        ModelConfig(), cfg.train_protocol, layouts.get_layout(cfg.layout), jax.random.key(0), n=20_000
    )


def random_solver(rotation: str = "quat", widths: tuple[int, ...] = (64, 64), seed: int = 0) -> checkpoint.Solver:
    """An untrained blazeface6 solver with real standardisation statistics and non-zero biases."""
    cfg = dataclasses.replace(config.get_config("blazeface6-seed"), model=ModelConfig(widths, rotation))
    layout = layouts.get_layout(cfg.layout)
    k_init, k_bias = jax.random.split(jax.random.key(seed))
    params = model.init_params(cfg.model, k_init, layout.num_points)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(k_bias, len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    stats = _seed_stats()
    if rotation == "6d":  # rotation columns ~ unit vectors; translation statistics as for quat
        stats = stats._replace(
            y_mean=jnp.concatenate([jnp.zeros(6), stats.y_mean[4:]]),
            y_std=jnp.concatenate([jnp.full(6, 0.5), stats.y_std[4:]]),
        )
    return checkpoint.Solver(cfg, layout, stats, params, {})


def spec_roll_weights(layout) -> np.ndarray:
    """The spec's roll weights: x of the layout's points in its frontal pose, centred, unit norm."""
    pts = layout.array @ np.asarray(layout.frontal_rotation, np.float64).T  # (3, 3) rotation matrix
    x = pts[:, 0] - pts[:, 0].mean()
    w = x / np.linalg.norm(x)
    np.testing.assert_allclose(model.roll_weights(layout), w, atol=1e-6)  # pnpjax.model's, as saved with the stats
    return w.astype(np.float32)


def recipe_solver(inputs: str, translation: str, roll: str, rotation: str = "quat", seed: int = 0):
    """A random solver of the recipe with plausible statistics (weights need not be trained for parity)."""
    base = random_solver(rotation, widths=(32, 32), seed=seed)
    k = base.layout.num_points
    cfg = dataclasses.replace(base.config, model=model.ModelConfig((32, 32), rotation, inputs, translation, roll=roll))
    params = model.init_params(cfg.model, jax.random.key(seed + 1), k)
    params = jax.tree_util.tree_map(lambda p: p + 0.05 * jnp.ones_like(p), params)
    rng = np.random.default_rng(seed)
    n_in = model.input_dim(cfg.model, k)
    x_mean = jnp.asarray(rng.normal(0, 0.1, n_in), jnp.float32)
    x_std = jnp.asarray(rng.uniform(0.5, 1.5, n_in), jnp.float32)
    y_mean, y_std = np.asarray(base.stats.y_mean), np.asarray(base.stats.y_std)
    if translation == "ray":  # log depth ~ 4, small ray offsets
        y_mean = np.concatenate([y_mean[:-3], [4.0, 0.0, 0.0]])
        y_std = np.concatenate([y_std[:-3], [0.3, 0.05, 0.05]])
    w = spec_roll_weights(base.layout) if roll != "none" else None
    w = None if w is None else jnp.asarray(w)
    stats = model.Stats(
        x_mean, x_std, jnp.asarray(y_mean, jnp.float32), jnp.asarray(y_std, jnp.float32), base.stats.q_ref, w
    )
    return dataclasses.replace(base, config=cfg, params=params, stats=stats)


@functools.cache
def _xy_pool(seed: int) -> np.ndarray:
    """2000 held-out draws of the seed test protocol (blazeface6, every solver here), normalised coords."""
    from pnpjax import train

    layout = layouts.get_layout("blazeface6")
    batch = train.eval_batch(config.get_config("blazeface6-seed").test_protocol, layout, jax.random.key(seed), 2100)
    xy = np.asarray(batch.xy)[np.asarray(batch.valid)]
    assert len(xy) >= 2000
    return xy[:2000]


def to_image(xy: np.ndarray, cam: camera.Camera | None) -> np.ndarray:
    """Normalised coords -> the export camera's image coords (seed: u right, v up), float32."""
    if cam is None:
        uv = camera.pixels_to_seed(camera.normalized_to_pixels(xy, camera.SEED_CAMERA.intrinsics))
    else:
        uv = camera.normalized_to_pixels(xy, cam.intrinsics)
    return np.asarray(uv, np.float32)


def sample_landmarks(solver, cam: camera.Camera | None, n: int = 1000, seed: int = 1) -> np.ndarray:
    """n in-distribution inputs (the seed test protocol) in the camera's image coords."""
    assert solver.layout.name == "blazeface6" and solver.config.protocol == "seed"
    return to_image(_xy_pool(seed)[:n], cam)


def jax_pose64(solver, uv: np.ndarray, cam: camera.Camera | None) -> np.ndarray:
    return jax_pose(solver, uv, cam, np.float64)


def assert_matches_jax(pose: np.ndarray, solver, uv: np.ndarray, cam: camera.Camera | None) -> None:
    """pose within ATOL of float64 JAX, and of float32 JAX (`pnpjax predict`) up to float32 JAX's own error."""
    ref64 = jax_pose64(solver, uv, cam)
    err = pose_error(pose, ref64)
    assert err.max() <= ATOL, (
        f"max |export - JAX(float64)| = {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"
    )
    ref32 = aligned(jax_pose(solver, uv, cam), ref64)
    assert np.all(pose_error(pose, ref32) <= ATOL + np.abs(ref32 - ref64) + 1e-7)


def assert_float32_accurate(pose: np.ndarray, solver, uv: np.ndarray, cam) -> None:
    """pose within ATOL of float64 JAX where float32 resolves that; else within twice the error of
    float32 JAX (`pnpjax predict`), a peer float32 program of the same function (their errors are
    of one size and vary with the order of operations: neither bounds the other)."""
    ref = jax_pose64(solver, uv, cam)
    err = pose_error(pose, ref).max()
    jax32 = pose_error(jax_pose(solver, uv, cam), ref).max()
    assert err <= max(ATOL, 2 * jax32), f"max |export - JAX(float64)| = {err:.3g}; float32 JAX: {jax32:.3g}"
