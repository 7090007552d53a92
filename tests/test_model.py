"""pnpjax.model: the feature-major MLP is flax's MLP; the geometric input/translation options
(issue 13's ablation) are what their docstrings say (float64, against numpy)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pnpjax import camera, geometry, layouts, model
from pnpjax.model import ModelConfig

PTS = layouts.BLAZEFACE6.array.astype(np.float64)


@pytest.fixture(autouse=True, scope="module")
def _x64():
    with jax.enable_x64(True):
        yield


def _poses(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = Rotation.from_euler("xyz", rng.uniform(-0.8, 0.8, (n, 3))).as_quat(canonical=True)
    t = np.stack([rng.uniform(-15, 15, n), rng.uniform(-15, 15, n), rng.uniform(30, 120, n)], -1)
    xy = np.asarray(camera.project(geometry.transform_points(Rotation.from_quat(q).as_matrix(), t, PTS)))
    return q, t, xy


@pytest.mark.parametrize("widths", [(64, 64), (48, 48, 48), (7,)])
def test_feature_major_mlp_is_the_flax_mlp(widths):
    cfg = ModelConfig(widths=widths)
    params = model.init_params(cfg, jax.random.key(1), 6)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3, 12)))
    ref = model.network(cfg).apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(model.mlp_apply(params, x)), np.asarray(ref), rtol=1e-12, atol=1e-12)


def test_centroid_features_against_numpy():
    _, _, xy = _poses(4)
    f = np.asarray(model.features(ModelConfig(inputs="centroid"), jnp.asarray(xy)))
    c = xy.mean(1)
    s = np.sqrt(np.mean(np.sum((xy - c[:, None]) ** 2, -1), -1))
    want = np.concatenate([((xy - c[:, None]) / s[:, None, None]).reshape(4, -1), c, np.log(s)[:, None]], -1)
    np.testing.assert_allclose(f, want, rtol=1e-9, atol=1e-12)
    assert model.input_dim(ModelConfig(inputs="centroid"), 6) == f.shape[1] == 15
    np.testing.assert_array_equal(np.asarray(model.features(ModelConfig(), jnp.asarray(xy))), xy.reshape(4, -1))


@pytest.mark.parametrize("inputs", ["standardized", "centroid"])
def test_ray_translation_round_trips_and_apply_decodes_it(inputs):
    """encode_target then apply's decoding gives back (q, t): a network whose output is the
    standardised target returns the true pose."""
    q, t, xy = _poses(6, seed=1)
    cfg = ModelConfig(inputs=inputs, translation="ray")
    y = np.asarray(model.encode_target(cfg, q, t, xy))
    np.testing.assert_allclose(y[:, 4], np.log(t[:, 2]), rtol=1e-12)
    np.testing.assert_allclose(y[:, 5:7], t[:, :2] / t[:, 2:] - xy.mean(1), atol=1e-12)
    d = cfg.out_dim
    stats = model.Stats(
        jnp.zeros(model.input_dim(cfg, 6)), jnp.ones(model.input_dim(cfg, 6)), jnp.zeros(d), jnp.ones(d)
    )
    # A one-layer "network" that outputs y exactly: zero kernel, and y as the bias, one pose at a time.
    for i in range(len(q)):
        params = {"Dense_0": {"kernel": jnp.zeros((model.input_dim(cfg, 6), d)), "bias": jnp.asarray(y[i])}}
        p = model.apply(cfg, params, stats, jnp.asarray(xy[i : i + 1]))
        np.testing.assert_allclose(np.asarray(p.t[0]), t[i], rtol=1e-10)
        np.testing.assert_allclose(np.abs(np.asarray(p.q[0]) @ q[i]), 1.0, atol=1e-10)


def test_ray_translation_output_is_finite_for_any_network_output():
    cfg = ModelConfig(translation="ray")
    stats = model.Stats(jnp.zeros(12), jnp.ones(12), jnp.zeros(7), jnp.ones(7))
    params = {"Dense_0": {"kernel": jnp.zeros((12, 7)), "bias": jnp.asarray([0, 0, 0, 1, 1e6, -1e6, 1e6])}}
    p = model.apply(cfg, params, stats, jnp.zeros((1, 6, 2)))
    assert np.all(np.isfinite(np.asarray(p.t)))


def test_unknown_options_are_config_errors():
    from pnpjax import config
    from pnpjax.errors import ConfigError

    base = config.get_config("smoke")
    for field, value in (("inputs", "polar"), ("translation", "log")):
        with pytest.raises(ConfigError, match=field):
            dataclasses.replace(base, model=dataclasses.replace(base.model, **{field: value})).validate()


@pytest.mark.parametrize("fmt", ["tfjs", "js"])
def test_dense_only_exports_refuse_nonlinear_preprocessing(fmt, tmp_path):
    from pnpjax import checkpoint, config, export

    cfg = dataclasses.replace(config.get_config("smoke"), model=ModelConfig(widths=(8,), inputs="centroid"))
    d = cfg.model.out_dim
    stats = model.Stats(jnp.zeros(15), jnp.ones(15), jnp.zeros(d), jnp.ones(d))
    solver = checkpoint.Solver(cfg, layouts.BLAZEFACE6, stats, model.init_params(cfg.model, jax.random.key(0), 6), {})
    with pytest.raises(export.ExportError, match="savedmodel"):
        export.export_solver(solver, fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists()
