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
    for field, value in (("inputs", "polar"), ("translation", "log"), ("roll", "yes")):
        with pytest.raises(ConfigError, match=field):
            dataclasses.replace(base, model=dataclasses.replace(base.model, **{field: value})).validate()


# --- roll canonicalisation (issue 13's shared spec) -------------------------------------------------


def _rot2(phi: float) -> np.ndarray:
    c, s = np.cos(phi), np.sin(phi)
    return np.array([[c, -s], [s, c]])


def _rotz(phi: float) -> np.ndarray:
    c, s = np.cos(phi), np.sin(phi)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _roll_solver(inputs: str, translation: str, rotation: str, seed: int = 0, roll: str = "canonical"):
    """A float64 roll-canonical model with real statistics (realistic protocol) and random params."""
    from pnpjax import protocols

    cfg = ModelConfig(widths=(16, 16), inputs=inputs, translation=translation, rotation=rotation, roll=roll)
    stats = model.compute_stats(cfg, protocols.RealisticProtocol(), layouts.BLAZEFACE6, jax.random.key(seed), 4096)
    stats = model.Stats(*(None if a is None else jnp.asarray(a, jnp.float64) for a in stats))
    params = model.init_params(cfg, jax.random.key(seed + 1), 6)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    return cfg, stats, params


def test_roll_weights_are_the_frontal_image_x_centred_unit():
    """Against numpy: the x coordinate (OpenCV camera) of each point of the frontal pose, centred,
    unit norm; for a layout whose frontal pose is not the identity (facing +x), too."""
    for lay in (layouts.BLAZEFACE6, layouts.FACEAPI10):
        w = model.roll_weights(lay)
        x = (lay.array.astype(np.float64) @ lay.frontal_rotation.T)[:, 0]
        np.testing.assert_allclose(w, (x - x.mean()) / np.linalg.norm(x - x.mean()), atol=1e-7)
        assert w.dtype == np.float32 and abs(w.sum()) < 1e-6 and abs(np.linalg.norm(w) - 1) < 1e-6
    # blazeface6: right eye/ear on the image's left (negative x), left eye/ear on its right.
    w = model.roll_weights(layouts.BLAZEFACE6)
    assert w[0] < 0 < w[1] and w[4] < 0 < w[5] and w[2] == w[3] == 0
    # A layout facing +x with up +z: the camera's right is the layout's up x facing = +y.
    pts = np.array([[0, 1, 0], [0, -1, 0], [0, 0, 2], [0.5, 0, -1]], float)
    lay = layouts.Layout(
        name="turned", points=tuple(map(tuple, pts)), point_names=("a", "b", "c", "d"), up="+z", facing="+x"
    )
    x = (pts @ lay.frontal_rotation.T)[:, 0]
    np.testing.assert_allclose(model.roll_weights(lay), (x - x.mean()) / np.linalg.norm(x - x.mean()), atol=1e-7)


def test_roll_weights_refuse_a_layout_without_horizontal_extent():
    from pnpjax.errors import ConfigError

    lay = layouts.Layout(
        name="pole", points=((0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 0)), point_names=("a", "b", "c", "d")
    )
    with pytest.raises(ConfigError, match="horizontal"):
        model.roll_weights(lay)


def test_canonical_frame_puts_the_layout_axis_on_image_x():
    """In the canonical coords, d = sum w_k (xy'_k - c') points along +x; the turn is a rotation
    about the origin (distances to the principal point and between points are kept)."""
    _, _, xy = _poses(20, seed=3)
    xy = xy @ _rot2(2.5).T  # far from upright
    w = model.roll_weights(layouts.BLAZEFACE6).astype(np.float64)
    xy_c = np.asarray(model.canonicalize(jnp.asarray(xy), w)[0])
    d = np.einsum("k,nkc->nc", w, xy_c - xy_c.mean(1, keepdims=True))
    np.testing.assert_allclose(d[:, 1], 0, atol=1e-12)
    assert np.all(d[:, 0] > 0)
    np.testing.assert_allclose(np.linalg.norm(xy_c, axis=-1), np.linalg.norm(xy, axis=-1), rtol=1e-12)
    d0 = np.einsum("k,nkc->nc", w, xy - xy.mean(1, keepdims=True))
    theta = np.arctan2(d0[:, 1], d0[:, 0])
    np.testing.assert_allclose(xy_c, np.einsum("nij,nkj->nki", np.stack([_rot2(-a) for a in theta]), xy), atol=1e-12)


def test_canonical_pose_against_scipy():
    """canonicalize's (q', t') is (Rz(theta)^T R, Rz(theta)^T t), theta the angle of d (scipy, numpy)."""
    q, t, xy = _poses(12, seed=4)
    w = model.roll_weights(layouts.BLAZEFACE6).astype(np.float64)
    _, q_c, t_c = model.canonicalize(jnp.asarray(xy), w, jnp.asarray(q), jnp.asarray(t))
    d = np.einsum("k,nkc->nc", w, xy - xy.mean(1, keepdims=True))
    theta = np.arctan2(d[:, 1], d[:, 0])
    Rz = Rotation.from_euler("z", theta[:, None])
    want = (Rz.inv() * Rotation.from_quat(q)).as_matrix()
    np.testing.assert_allclose(Rotation.from_quat(np.asarray(q_c)).as_matrix(), want, atol=1e-12)
    np.testing.assert_allclose(np.asarray(t_c), Rz.inv().apply(t), atol=1e-10)


def test_roll_quaternion_is_stable_at_every_angle():
    """_roll_quat(cos, sin) is the unit quaternion of Rz(theta) with w >= 0 (scipy), at +-pi too."""
    theta = np.concatenate([np.linspace(-np.pi, np.pi, 721), [np.pi - 1e-9, -np.pi + 1e-9, 1e-12, 0.0]])
    q = np.asarray(model._roll_quat(jnp.asarray(np.cos(theta)), jnp.asarray(np.sin(theta))))
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1, atol=1e-12)
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(
        Rotation.from_quat(q).as_matrix(), Rotation.from_euler("z", theta[:, None]).as_matrix(), atol=1e-12
    )


@pytest.mark.parametrize(
    "inputs,translation,rotation",
    [
        ("standardized", "direct", "quat"),
        ("centroid", "ray", "quat"),
        ("centroid", "direct", "6d"),
        ("standardized", "ray", "6d"),
    ],
)
def test_roll_canonical_is_exactly_equivariant(inputs, translation, rotation):
    """Turning the input image about the principal point by any angle turns the output pose by
    Rz(angle): R -> Rz R, t -> Rz t (float64, a random network with real statistics)."""
    from pnpjax import protocols

    cfg, stats, params = _roll_solver(inputs, translation, rotation)
    b = protocols.sample_jit(protocols.RealisticProtocol(), jax.random.key(7), layouts.BLAZEFACE6, 64)
    xy = np.asarray(b.xy, np.float64)[np.asarray(b.valid)]
    p0 = model.apply(cfg, params, stats, jnp.asarray(xy))
    R0, t0 = np.asarray(p0.R), np.asarray(p0.t)
    assert np.max(np.abs(R0 - np.eye(3))) > 0.1  # a non-trivial network output
    for phi in (1e-3, 0.4, -1.3, 2.9, np.pi, -np.pi / 2, 10.0):
        p = model.apply(cfg, params, stats, jnp.asarray(xy @ _rot2(phi).T))
        np.testing.assert_allclose(np.asarray(p.R), _rotz(phi) @ R0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(p.t), t0 @ _rotz(phi).T, atol=1e-9 * max(1, np.abs(t0).max()))
        # q is the quaternion of R (up to sign)
        np.testing.assert_allclose(Rotation.from_quat(np.asarray(p.q)).as_matrix(), np.asarray(p.R), atol=1e-10)


def test_roll_none_is_not_equivariant():
    """The control: without canonicalisation the same kind of network is not (the test above can fail)."""
    from pnpjax import protocols

    cfg, stats, params = _roll_solver("standardized", "direct", "quat")
    cfg = dataclasses.replace(cfg, roll="none")
    b = protocols.sample_jit(protocols.RealisticProtocol(), jax.random.key(7), layouts.BLAZEFACE6, 64)
    xy = np.asarray(b.xy, np.float64)[np.asarray(b.valid)]
    R0 = np.asarray(model.apply(cfg, params, stats, jnp.asarray(xy)).R)
    R1 = np.asarray(model.apply(cfg, params, stats, jnp.asarray(xy @ _rot2(0.4).T)).R)
    assert np.max(np.abs(R1 - _rotz(0.4) @ R0)) > 1e-3


def _assert_apply_decodes_the_target(cfg: ModelConfig, q, t, xy, w):
    """encode_target of each pose, put in the bias of a zero-kernel network with unit statistics,
    comes back out of `apply` as that pose (float64); returns (targets, stats)."""
    y = np.asarray(model.encode_target(cfg, q, t, xy, roll_weights=w))
    d, n_in = cfg.out_dim, model.input_dim(cfg, 6)
    stats = model.Stats(jnp.zeros(n_in), jnp.ones(n_in), jnp.zeros(d), jnp.ones(d), None, jnp.asarray(w))
    for i in range(len(q)):
        params = {"Dense_0": {"kernel": jnp.zeros((n_in, d)), "bias": jnp.asarray(y[i])}}
        p = model.apply(cfg, params, stats, jnp.asarray(xy[i : i + 1]))
        np.testing.assert_allclose(np.asarray(p.t[0]), t[i], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.abs(np.asarray(p.q[0]) @ q[i]), 1.0, atol=1e-10)
    return y, stats


@pytest.mark.parametrize("inputs,translation,rotation", [("standardized", "direct", "quat"), ("centroid", "ray", "6d")])
def test_roll_canonical_target_round_trips_through_apply(inputs, translation, rotation):
    """encode_target (canonical pose) then apply's decoding (and turning back) gives the true pose,
    for images turned by up to +-180 degrees."""
    q, t, xy = (np.array(a) for a in _poses(8, seed=5))
    w = model.roll_weights(layouts.BLAZEFACE6).astype(np.float64)
    for i, phi in enumerate(np.linspace(-np.pi, np.pi, 8)):
        xy[i] = xy[i] @ _rot2(phi).T
        t[i] = _rotz(phi) @ t[i]
        q[i] = (Rotation.from_euler("z", phi) * Rotation.from_quat(q[i])).as_quat()
    cfg = ModelConfig(inputs=inputs, translation=translation, rotation=rotation, roll="canonical")
    y, stats = _assert_apply_decodes_the_target(cfg, q, t, xy, w)
    # the standardised target of `standardized_target` is the same vector
    z = np.asarray(model.standardized_target(cfg, stats, q, t, xy))
    np.testing.assert_allclose(z, y, atol=1e-12)


def test_roll_canonical_degenerate_input_is_finite():
    """All landmarks at one point (d = 0): theta = 0, finite output; apply without roll_weights is an error."""
    from pnpjax.errors import ConfigError

    cfg, stats, params = _roll_solver("centroid", "ray", "quat")
    p = model.apply(cfg, params, stats, jnp.full((1, 6, 2), 0.1))
    assert all(np.all(np.isfinite(np.asarray(a))) for a in p)
    cos, sin = model.canonical_roll(jnp.full((1, 6, 2), 0.1), stats.roll_weights)
    assert float(cos[0]) == 1.0 and float(sin[0]) == 0.0
    with pytest.raises(ConfigError, match="roll_weights"):
        model.apply(cfg, params, stats._replace(roll_weights=None), jnp.zeros((1, 6, 2)))


def test_roll_canonical_stats_are_of_canonical_targets():
    """compute_stats carries the layout's roll weights, and its statistics are those of the canonical
    inputs and targets of the same draws, recomputed with scipy/numpy in float64."""
    from pnpjax import protocols

    lay, proto, n = layouts.BLAZEFACE6, protocols.RealisticProtocol(), 4096
    cfg = ModelConfig(inputs="centroid", translation="ray", roll="canonical")
    with jax.enable_x64(False):
        st = model.compute_stats(cfg, proto, lay, jax.random.key(0), n)
        b = protocols.sample_jit(proto, jax.random.key(0), lay, n)
    assert model.compute_stats(ModelConfig(), proto, lay, jax.random.key(0), 512).roll_weights is None
    w = model.roll_weights(lay).astype(np.float64)
    np.testing.assert_array_equal(np.asarray(st.roll_weights), model.roll_weights(lay))
    v = np.asarray(b.valid)
    xy, q, t = (np.asarray(a, np.float64)[v] for a in (b.xy, b.q, b.t))
    d = np.einsum("k,nkc->nc", w, xy - xy.mean(1, keepdims=True))
    theta = np.arctan2(d[:, 1], d[:, 0])
    xy_c = np.einsum("nij,nkj->nki", np.stack([_rot2(-a) for a in theta]), xy)
    q_c = (Rotation.from_euler("z", -theta[:, None]) * Rotation.from_quat(q)).as_quat()
    q_c *= np.where(q_c @ np.asarray(st.q_ref, np.float64) < 0, -1, 1)[:, None]
    t_c = Rotation.from_euler("z", -theta[:, None]).apply(t)
    c = xy_c.mean(1)
    s = np.sqrt(np.mean(np.sum((xy_c - c[:, None]) ** 2, -1), -1))
    x = np.concatenate([((xy_c - c[:, None]) / s[:, None, None]).reshape(len(s), -1), c, np.log(s)[:, None]], -1)
    y = np.concatenate([q_c, np.log(t_c[:, 2:]), t_c[:, :2] / t_c[:, 2:] - c], -1)
    for got_m, got_s, a in ((st.x_mean, st.x_std, x), (st.y_mean, st.y_std, y)):
        assert np.all(np.abs(np.asarray(got_m) - a.mean(0)) <= 2e-4 * np.maximum(1, a.std(0)))
        np.testing.assert_allclose(np.asarray(got_s), np.maximum(a.std(0), 1e-6), rtol=2e-3, atol=1e-5)


def test_roll_checkpoint_round_trip_and_missing_weights(tmp_path):
    """roll_weights are saved with the stats and loaded back (same predictions); a roll-canonical
    checkpoint without them is refused at load."""
    import json

    from pnpjax import checkpoint, config
    from pnpjax.errors import CheckpointError

    cfg = dataclasses.replace(
        config.get_config("smoke"),
        model=ModelConfig(widths=(8,), inputs="centroid", translation="ray", roll="canonical"),
    )
    lay = layouts.BLAZEFACE6
    stats = model.compute_stats(cfg.model, cfg.train_protocol, lay, jax.random.key(0), 2048)
    params = model.init_params(cfg.model, jax.random.key(1), 6)
    solver = checkpoint.Solver(cfg, lay, stats, params, {})
    checkpoint.save(tmp_path / "m", solver)
    back = checkpoint.load(tmp_path / "m")
    assert back.config.model.roll == "canonical"
    np.testing.assert_array_equal(np.asarray(back.stats.roll_weights), np.asarray(stats.roll_weights))
    _, _, xy = _poses(5)
    xy = jnp.asarray(xy, jnp.float32)
    with jax.enable_x64(False):
        np.testing.assert_array_equal(
            np.asarray(model.apply(cfg.model, back.params, back.stats, xy).t),
            np.asarray(model.apply(cfg.model, params, stats, xy).t),
        )
    meta_file = tmp_path / "m" / checkpoint.META_FILE
    meta = json.loads(meta_file.read_text())
    del meta["stats"]["roll_weights"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="roll_weights"):
        checkpoint.load(tmp_path / "m")


def test_old_checkpoint_loads_unchanged():
    """A checkpoint written before roll existed (tests/data/legacy-blazeface6-seed: the shipped
    blazeface6-seed until issue 13's recipe; no inputs/translation/roll in its config, no
    q_ref/roll_weights in its stats) loads with roll 'none' and predicts what a plain numpy forward
    pass of its stored parameters gives."""
    from pathlib import Path

    from pnpjax import checkpoint

    d = Path(__file__).resolve().parent / "data" / "legacy-blazeface6-seed"
    solver = checkpoint.load(d)
    assert solver.config.model.roll == "none" and solver.stats.roll_weights is None
    import json

    meta = json.loads((d / checkpoint.META_FILE).read_text())
    assert "roll" not in meta["config"]["model"] and "roll_weights" not in meta["stats"]
    st = {k: np.asarray(v, np.float64) for k, v in meta["stats"].items()}
    _, _, xy = _poses(16, seed=6)
    h = (xy.reshape(16, -1) - st["x_mean"]) / st["x_std"]
    layers = [solver.params[f"Dense_{i}"] for i in range(len(solver.params))]
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        h = np.maximum(h, 0) if i < len(layers) - 1 else h
    y = h * st["y_std"] + st["y_mean"]
    with jax.enable_x64(False):
        p = model.apply(solver.config.model, solver.params, solver.stats, jnp.asarray(xy, jnp.float32))
    np.testing.assert_allclose(np.asarray(p.t), y[:, 4:], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(p.q), y[:, :4] / np.linalg.norm(y[:, :4], axis=-1, keepdims=True), atol=1e-5)


# --- roll='perspective': the camera turned onto the landmarks' mean viewing ray first -------------


def _turn_camera(S: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The normalised image of the same scene seen by the camera rotated by S^T (X -> S X)."""
    h = np.concatenate([xy, np.ones_like(xy[..., :1])], -1) @ S.T
    return h[..., :2] / h[..., 2:]


def test_perspective_frame_against_numpy():
    """q_c turns e_z onto the mean unit viewing ray, with no turn about it (q_c's z = 0, the smallest
    rotation); xy' is the pinhole image of R_c^T X: the layout posed by (R_c^T R, R_c^T t) projects
    there (numpy, float64)."""
    q, t, xy = _poses(16, seed=8)
    q_c, xy_p = (np.asarray(a) for a in model.perspective_frame(jnp.asarray(xy)))
    rays = np.concatenate([xy, np.ones_like(xy[..., :1])], -1)
    r = (rays / np.linalg.norm(rays, axis=-1, keepdims=True)).mean(1)
    R_c = Rotation.from_quat(q_c).as_matrix()
    np.testing.assert_allclose(R_c[:, :, 2], r / np.linalg.norm(r, axis=-1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(q_c[:, 2], 0.0, atol=1e-15)
    X = np.einsum("nji,nkj->nki", R_c, np.einsum("nij,kj->nki", Rotation.from_quat(q).as_matrix(), PTS) + t[:, None])
    np.testing.assert_allclose(xy_p, X[..., :2] / X[..., 2:], atol=1e-12)
    # the mean ray is now the optical axis
    rays_p = np.concatenate([xy_p, np.ones_like(xy_p[..., :1])], -1)
    r_p = (rays_p / np.linalg.norm(rays_p, axis=-1, keepdims=True)).mean(1)
    np.testing.assert_allclose(r_p[:, :2], 0.0, atol=1e-12)


@pytest.mark.parametrize("inputs,translation,rotation", [("centroid", "ray", "quat"), ("standardized", "direct", "6d")])
def test_roll_perspective_is_exactly_equivariant_to_camera_rotations(inputs, translation, rotation):
    """Turning the camera about its centre by any rotation S (the image moved by the homography of
    S) turns the output pose by S: R -> S R, t -> S t (float64, a random network with real
    statistics). roll='canonical' is not (control), beyond turns about the optical axis."""
    from pnpjax import protocols

    cfg, stats, params = _roll_solver(inputs, translation, rotation, roll="perspective")
    b = protocols.sample_jit(protocols.RealisticProtocol(), jax.random.key(7), layouts.BLAZEFACE6, 64)
    xy = np.asarray(b.xy, np.float64)[np.asarray(b.valid)]
    p0 = model.apply(cfg, params, stats, jnp.asarray(xy))
    R0, t0 = np.asarray(p0.R), np.asarray(p0.t)
    assert np.max(np.abs(R0 - np.eye(3))) > 0.1
    rots = Rotation.from_rotvec([[0.1, -0.2, 0.3], [0.0, 0.0, 2.9], [-0.35, 0.25, -1.0], [0.4, 0.0, 0.0]])
    for S in rots.as_matrix():
        p = model.apply(cfg, params, stats, jnp.asarray(_turn_camera(S, xy)))
        np.testing.assert_allclose(np.asarray(p.R), S @ R0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(p.t), t0 @ S.T, atol=1e-8 * max(1, np.abs(t0).max()))
        np.testing.assert_allclose(Rotation.from_quat(np.asarray(p.q)).as_matrix(), np.asarray(p.R), atol=1e-10)
    control = dataclasses.replace(cfg, roll="canonical")
    Rc0 = np.asarray(model.apply(control, params, stats, jnp.asarray(xy)).R)
    Rc1 = np.asarray(model.apply(control, params, stats, jnp.asarray(_turn_camera(rots[0].as_matrix(), xy))).R)
    assert np.max(np.abs(Rc1 - rots[0].as_matrix() @ Rc0)) > 1e-3


def test_roll_perspective_target_round_trips_through_apply():
    """encode_target (the pose in the perspective-canonical frame) then apply's decoding and turning
    back gives the true pose, for faces far off the optical axis and turned images."""
    q, t, xy = (np.array(a) for a in _poses(8, seed=9))
    w = model.roll_weights(layouts.BLAZEFACE6).astype(np.float64)
    S = Rotation.from_rotvec(np.random.default_rng(0).normal(0, 0.6, (8, 3)))
    t = S.apply(t)
    q = (S * Rotation.from_quat(q)).as_quat()
    xy = np.stack([_turn_camera(s, x) for s, x in zip(S.as_matrix(), xy)])
    for inputs, translation, rotation in (
        ("centroid", "ray", "quat"),
        ("standardized", "direct", "6d"),
        ("axis", "ray", "quat"),
    ):
        cfg = ModelConfig(inputs=inputs, translation=translation, rotation=rotation, roll="perspective")
        _assert_apply_decodes_the_target(cfg, q, t, xy, w)


def test_roll_perspective_hostile_geometry_is_finite():
    """All landmarks at one point, and rays ~89.9 deg off the axis in opposite directions (the
    validator's limit): finite poses."""
    cfg, stats, params = _roll_solver("centroid", "ray", "quat", roll="perspective")
    xy = np.zeros((3, 6, 2))
    xy[0] = 0.1
    xy[1, :3, 0], xy[1, 3:, 0] = 1e3, -1e3
    xy[2] = np.random.default_rng(1).uniform(-1e3, 1e3, (6, 2))
    p = model.apply(cfg, params, stats, jnp.asarray(xy))
    assert all(np.all(np.isfinite(np.asarray(a))) for a in p)


def _spec_frame(xy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, 3, 3) R_f = R_c Rz(theta) of roll 'perspective' (scipy, numpy float64): R_c the smallest
    rotation taking e_z onto the mean unit viewing ray, theta the direction of the roll weights'
    moment of the landmarks seen by the camera turned by R_c."""
    rays = np.concatenate([xy, np.ones_like(xy[..., :1])], -1)
    r = (rays / np.linalg.norm(rays, axis=-1, keepdims=True)).mean(1)
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    ax = np.cross([0.0, 0.0, 1.0], r)
    angle = np.arctan2(np.linalg.norm(ax, axis=-1), r[:, 2])
    R_c = Rotation.from_rotvec(ax / np.linalg.norm(ax, axis=-1, keepdims=True) * angle[:, None]).as_matrix()
    h = np.einsum("nji,nkj->nki", R_c, rays)
    xy_p = h[..., :2] / h[..., 2:]
    d = np.einsum("k,nkc->nc", w, xy_p - xy_p.mean(1, keepdims=True))
    return R_c @ Rotation.from_euler("z", np.arctan2(d[:, 1], d[:, 0])[:, None]).as_matrix()


def test_axis_inputs_against_scipy():
    """inputs='axis': the 2 inputs after the centred, scaled landmarks are the real camera's optical
    axis seen from the turned frame, a = R_f^T e_z projected (a_x / a_z, a_y / a_z), R_f from scipy;
    it is the image of the real principal point in that frame, and O(1) (unlike the ~0 centroid
    the inputs 'centroid' give there). The other inputs are those of 'centroid'."""
    q, t, xy = _poses(16, seed=10)
    xy = xy + [0.3, -0.2]  # faces off the optical axis
    w = model.roll_weights(layouts.BLAZEFACE6).astype(np.float64)
    cfg = ModelConfig(inputs="axis", translation="ray", roll="perspective")
    xy_c, q_c, t_c, axis = model.upright(cfg, jnp.asarray(xy), w, jnp.asarray(q), jnp.asarray(t))
    R_f = _spec_frame(xy, w)
    np.testing.assert_allclose(np.asarray(axis), R_f[:, 2, :2] / R_f[:, 2, 2:], atol=1e-12)
    assert np.all(np.linalg.norm(np.asarray(axis), axis=-1) > 0.1)
    # the principal point (the ray e_z) seen from the turned camera R_f^T
    pp = np.stack([_turn_camera(R.T, np.zeros((1, 2)))[0] for R in R_f])
    np.testing.assert_allclose(np.asarray(axis), pp, atol=1e-12)
    # the pose in the frame, and the other inputs, are those of roll 'perspective' with 'centroid'
    ref = model.canonicalize(jnp.asarray(xy), w, jnp.asarray(q), jnp.asarray(t), "perspective")
    for a, b in zip((xy_c, q_c, t_c), ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)
    f = np.asarray(model.features(cfg, xy_c, axis))
    f_c = np.asarray(model.features(ModelConfig(inputs="centroid"), xy_c))
    np.testing.assert_array_equal(f[:, :12], f_c[:, :12])
    np.testing.assert_array_equal(f[:, 14], f_c[:, 14])
    np.testing.assert_array_equal(f[:, 12:14], np.asarray(axis))
    assert np.all(np.abs(f_c[:, 12:14]) < 1e-2)  # the centroid the axis replaces


def test_axis_inputs_need_the_perspective_roll():
    from pnpjax import config
    from pnpjax.errors import ConfigError

    w = model.roll_weights(layouts.BLAZEFACE6)
    with pytest.raises(ConfigError, match="perspective"):
        model.upright(ModelConfig(inputs="axis", roll="canonical"), jnp.zeros((1, 6, 2)), w)
    with pytest.raises(ConfigError, match="axis"):
        model.features(ModelConfig(inputs="axis"), jnp.zeros((1, 6, 2)))
    bad = dataclasses.replace(config.get_config("blazeface6"), model=ModelConfig(inputs="axis", roll="canonical"))
    with pytest.raises(ConfigError, match="perspective"):
        bad.validate()


def test_axis_inputs_keep_roll_equivariance_not_camera_rotations():
    """inputs='axis' + roll 'perspective': turning the image about the principal point by phi turns
    the pose by Rz(phi) exactly (float64); turning the camera off its axis does not simply turn the
    pose (the network now sees where the face is: the 'centroid' inputs' exact equivariance to
    every camera rotation is given up for the translation prior)."""
    from pnpjax import protocols

    cfg, stats, params = _roll_solver("axis", "ray", "quat", roll="perspective")
    b = protocols.sample_jit(protocols.RealisticProtocol(), jax.random.key(7), layouts.BLAZEFACE6, 64)
    xy = np.asarray(b.xy, np.float64)[np.asarray(b.valid)]
    p0 = model.apply(cfg, params, stats, jnp.asarray(xy))
    R0, t0 = np.asarray(p0.R), np.asarray(p0.t)
    for phi in (0.4, -2.9, np.pi):
        S = _rotz(phi)
        p = model.apply(cfg, params, stats, jnp.asarray(_turn_camera(S, xy)))
        np.testing.assert_allclose(np.asarray(p.R), S @ R0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(p.t), t0 @ S.T, atol=1e-8 * max(1, np.abs(t0).max()))
    S = Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()
    R1 = np.asarray(model.apply(cfg, params, stats, jnp.asarray(_turn_camera(S, xy))).R)
    assert np.max(np.abs(R1 - S @ R0)) > 1e-3
