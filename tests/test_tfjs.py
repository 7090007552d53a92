"""Tests of the TF.js layers-model reader/writer (pnpjax.tfjs) against numpy and real TF.js in Node."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable

import numpy as np
import pytest

from experiments.lib import paths
from pnpjax import tfjs
from pnpjax.tfjs import Dense, ExportError, ModelFormatError

SEED_DIR = paths.shared_dir() / "seed-models"
SEEDS = {"blazeface6": 6, "faceapi10": 10}

# float32 arithmetic tolerance for TF.js (float32) vs numpy (float64) on the same weights.
F32_ATOL = 1e-5

F = TypeVar("F", bound=Callable[..., Any])


def needs_node(fn: F) -> F:
    """Mark a test as needing Node; skip only if `node` itself is absent (missing npm deps fail loudly)."""
    skip = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")
    return pytest.mark.node(skip(fn))


def node_predict(model_dir: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict with TF.js in Node (import here so non-Node tests don't need the module)."""
    from experiments.lib.node import tfjs_predict_in_node

    return tfjs_predict_in_node(model_dir, x)


def random_layers(seed: int, k: int = 6, widths: tuple[int, ...] = (64, 64, 7)) -> list[Dense]:
    """A Glorot-initialised MLP with non-zero biases, relu hidden layers and a linear output."""
    rng = np.random.default_rng(seed)
    layers: list[Dense] = []
    fan_in = 2 * k
    for i, w in enumerate(widths):
        lim = np.sqrt(6.0 / (fan_in + w))
        kernel = rng.uniform(-lim, lim, size=(fan_in, w)).astype(np.float32)
        bias = rng.normal(0.0, 0.1, size=w).astype(np.float32)
        layers.append(Dense(kernel, bias, "linear" if i == len(widths) - 1 else "relu"))
        fan_in = w
    return layers


def random_inputs(seed: int, n: int, k: int) -> np.ndarray:
    """Normalised keypoints like the seed protocol's filter window (-0.1, 1.1), as float32."""
    return np.random.default_rng(seed).uniform(-0.1, 1.1, size=(n, k, 2)).astype(np.float32)


def manifest_entries(model_dir: Path) -> list[dict[str, Any]]:
    """All weight entries of a model.json, in manifest order."""
    mj = json.loads((model_dir / "model.json").read_text())
    return [w for group in mj["weightsManifest"] for w in group["weights"]]


def weight_error_bound(entry: dict[str, Any], original: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """A-priori per-element bound on |dequantised - original| from the quantisation scheme.

    float32: 0. float16 (round to nearest): half an ulp, <= |w| * 2^-11 for normal halves and
    2^-25 in the subnormal range. uint8 affine: rounding to the grid costs <= scale/2 (clipping to
    the nudged range moves a value by <= scale/2 and then lands exactly on the end point), plus the
    float32 rounding of q*scale+min (<= |w~| * 2^-24) and a float64 rounding allowance.
    """
    q = entry.get("quantization")
    if q is None:
        return np.zeros_like(original, dtype=np.float64)
    if q["dtype"] == "float16":
        return np.maximum(np.abs(original.astype(np.float64)) * 2.0**-11, 2.0**-25)
    assert q["dtype"] == "uint8"
    return q["scale"] / 2 * (1 + 1e-9) + np.abs(stored.astype(np.float64)) * 2.0**-24


def output_error_bound(
    true_layers: list[Dense], quant_layers: list[Dense], bounds: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray
) -> np.ndarray:
    """Per-sample, per-output bound on |f_quant(x) - f_true(x)| given per-weight error bounds.

    With W~ = W + dW: W~^T h~ - W^T h = W~^T (h~ - h) + dW^T h, so elementwise
    |pre~ - pre| <= |h~ - h| @ |W~| + |h| @ |dW| + |db|; relu is 1-Lipschitz, so the bound on the
    hidden error carries through the activation unchanged. Exact-arithmetic bound.
    """
    h = x.reshape(len(x), -1).astype(np.float64)
    d = np.zeros_like(h)
    for layer_t, layer_q, (e_k, e_b) in zip(true_layers, quant_layers, bounds):
        d = d @ np.abs(layer_q.kernel.astype(np.float64)) + np.abs(h) @ e_k + e_b
        h = h @ layer_t.kernel.astype(np.float64) + layer_t.bias.astype(np.float64)
        if layer_t.activation == "relu":
            h = np.maximum(h, 0.0)
    return d


def weight_error_variance(entry: dict[str, Any], original: np.ndarray) -> np.ndarray:
    """Variance of the rounding error per weight under the standard model (uniform over one grid step).

    uint8: step = scale, so scale^2 / 12. float16: step = the half-precision ulp at |w|.
    """
    q = entry.get("quantization")
    if q is None:
        return np.zeros(original.shape)
    if q["dtype"] == "uint8":
        return np.full(original.shape, q["scale"] ** 2 / 12)
    return np.spacing(np.abs(original).astype(np.float16)).astype(np.float64) ** 2 / 12


def output_error_sigma(
    layers: list[Dense], variances: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray
) -> np.ndarray:
    """Per-sample, per-output standard deviation of the quantisation error, to first order.

    With independent zero-mean weight errors, dy = sum_l J_l (h_{l-1}^T dW_l + db_l), where J_l is
    d y / d pre_l (relu masks and later kernels), so Var(dy_j) = sum_l sum_k J_l[j,k]^2
    (sum_i h_{l-1,i}^2 Var(dW_l[i,k]) + Var(db_l[k])).
    """
    h = x.reshape(len(x), -1).astype(np.float64)
    hs, masks = [], []
    for layer in layers:
        hs.append(h)
        pre = h @ layer.kernel.astype(np.float64) + layer.bias
        masks.append((pre > 0).astype(np.float64) if layer.activation == "relu" else np.ones_like(pre))
        h = pre * masks[-1]
    n_out = layers[-1].kernel.shape[1]
    jac = np.broadcast_to(np.eye(n_out), (len(x), n_out, n_out)) * masks[-1][:, None, :]
    var = np.zeros((len(x), n_out))
    for i in range(len(layers) - 1, -1, -1):
        v_k, v_b = variances[i]
        var += np.einsum("njk,nk->nj", jac**2, hs[i] ** 2 @ v_k + v_b)
        if i:
            jac = np.einsum("njk,ik->nji", jac, layers[i].kernel.astype(np.float64)) * masks[i - 1][:, None, :]
    return np.sqrt(var)


# ------------------------------------------------------------------------------------------------
# Writer / reader, numpy only
# ------------------------------------------------------------------------------------------------


def test_float32_round_trip_is_exact(tmp_path: Path) -> None:
    layers = random_layers(0)
    meta = {"layout": "blazeface6", "mean": [0.1, -2.5e-3], "note": "ünïcode ✓", "nested": {"a": [1, 2, None]}}
    mj = tfjs.write_layers_model(tmp_path / "m", layers, (6, 2), metadata=meta)
    model = tfjs.read_layers_model(tmp_path / "m")
    assert model.input_shape == (6, 2)
    assert model.metadata == meta and mj["userDefinedMetadata"] == meta
    assert model.quantization == "float32"
    assert len(model.layers) == len(layers)
    for a, b in zip(layers, model.layers):
        assert a.activation == b.activation
        assert a.kernel.dtype == b.kernel.dtype == np.float32
        np.testing.assert_array_equal(a.kernel, b.kernel)
        np.testing.assert_array_equal(a.bias, b.bias)
    # Shard layout: kernel then bias per layer, concatenated exactly in manifest order.
    entries = manifest_entries(tmp_path / "m")
    assert [e["name"] for e in entries] == [
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
        "dense_2/kernel",
        "dense_2/bias",
    ]
    expected = b"".join(t.astype("<f4").tobytes() for l in layers for t in (l.kernel, l.bias))
    assert (tmp_path / "m" / tfjs.SHARD_NAME).read_bytes() == expected
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [tfjs.SHARD_NAME, "model.json"]


def test_written_topology_is_keras2_sequential(tmp_path: Path) -> None:
    mj = tfjs.write_layers_model(tmp_path / "m", random_layers(1), (6, 2))
    on_disk = json.loads((tmp_path / "m" / "model.json").read_text())
    assert on_disk == json.loads(json.dumps(mj))
    assert on_disk["format"] == "layers-model"
    assert on_disk["generatedBy"] and on_disk["convertedBy"]
    assert "userDefinedMetadata" not in on_disk
    cfg = on_disk["modelTopology"]["model_config"]
    assert cfg["class_name"] == "Sequential"
    classes = [l["class_name"] for l in cfg["config"]["layers"]]
    assert classes == ["Flatten", "Dense", "Dense", "Dense"]
    assert cfg["config"]["layers"][0]["config"]["batch_input_shape"] == [None, 6, 2]
    # Every Dense layer names its activation explicitly (a missing one silently becomes linear in TF.js).
    assert [l["config"]["activation"] for l in cfg["config"]["layers"][1:]] == ["relu", "relu", "linear"]
    assert on_disk["weightsManifest"][0]["paths"] == [tfjs.SHARD_NAME]


@pytest.mark.parametrize("quant", ["float16", "uint8"])
def test_quantised_weights_respect_the_scheme_bound(tmp_path: Path, quant: str) -> None:
    layers = random_layers(2)
    tfjs.write_layers_model(tmp_path / "m", layers, (6, 2), quantize=quant)
    model = tfjs.read_layers_model(tmp_path / "m")
    assert model.quantization == quant
    entries = manifest_entries(tmp_path / "m")
    originals = [t for l in layers for t in (l.kernel, l.bias)]
    readback = [t for l in model.layers for t in (l.kernel, l.bias)]
    per_elem = 2 if quant == "float16" else 1
    assert (tmp_path / "m" / tfjs.SHARD_NAME).stat().st_size == per_elem * sum(t.size for t in originals)
    for entry, orig, deq in zip(entries, originals, readback):
        err = np.abs(deq.astype(np.float64) - orig.astype(np.float64))
        assert np.all(err <= weight_error_bound(entry, orig, deq))
        assert np.any(err > 0)  # it really was quantised
        if quant == "uint8":
            q = entry["quantization"]
            assert set(q) == {"dtype", "scale", "min"}
            zero_point = -q["min"] / q["scale"]
            # The converter's nudge: when the range covers 0, 0.0 is exactly on the grid.
            assert abs(zero_point - round(zero_point)) < 1e-9
            assert np.float32(round(zero_point) * q["scale"] + q["min"]) == 0.0


def test_uint8_quantiser_reproduces_official_converter_bytes() -> None:
    """Re-quantising the seed models' dequantised weights gives back their exact uint8 shard."""
    for name in SEEDS:
        model = tfjs.read_layers_model(SEED_DIR / name)
        entries = manifest_entries(SEED_DIR / name)
        stored = []
        for entry, tensor in zip(entries, [t for l in model.layers for t in (l.kernel, l.bias)]):
            q, info = tfjs.quantize_tensor(tensor, "uint8")
            assert info is not None
            np.testing.assert_allclose(info["scale"], entry["quantization"]["scale"], rtol=1e-6)
            np.testing.assert_allclose(info["min"], entry["quantization"]["min"], rtol=1e-6)
            stored.append(q.tobytes())
        assert b"".join(stored) == (SEED_DIR / name / "group1-shard1of1.bin").read_bytes()


def test_quantize_constant_tensor_follows_converter() -> None:
    q, info = tfjs.quantize_tensor(np.full((3, 2), 0.25, np.float32), "uint8")
    assert info == {"dtype": "uint8", "scale": 1.0, "min": 0.25}
    assert not q.any()
    np.testing.assert_array_equal(tfjs.dequantize_tensor(q, info), np.full((3, 2), 0.25, np.float32))


def test_read_official_seed_models() -> None:
    for name, k in SEEDS.items():
        model = tfjs.read_layers_model(SEED_DIR / name)
        assert model.input_shape == (k, 2)
        assert model.quantization == "uint8"
        assert model.metadata == {}
        assert [l.kernel.shape for l in model.layers] == [(2 * k, 64), (64, 64), (64, 7)]
        assert [l.activation for l in model.layers] == ["relu", "relu", "linear"]
        assert (
            sum(l.kernel.size + l.bias.size for l in model.layers) == (SEED_DIR / name / tfjs.SHARD_NAME).stat().st_size
        )
        y = tfjs.predict_numpy(model.layers, random_inputs(3, 16, k))
        assert y.shape == (16, 7) and np.all(np.isfinite(y))


def test_predict_numpy_matches_manual_mlp() -> None:
    layers = random_layers(4, k=10)
    x = random_inputs(4, 5, 10)
    h = x.reshape(5, 20).astype(np.float64)
    for l in layers:
        h = h @ l.kernel.astype(np.float64) + l.bias
        h = np.maximum(h, 0) if l.activation == "relu" else h
    np.testing.assert_allclose(tfjs.predict_numpy(layers, x), h, rtol=1e-12, atol=1e-12)
    assert tfjs.predict_numpy(layers, x, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError):
        tfjs.predict_numpy(layers, random_inputs(4, 5, 6))


def test_dense_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation"):
        Dense(np.zeros((2, 3), np.float32), np.zeros(3, np.float32), "tanh")


# ------------------------------------------------------------------------------------------------
# Writer safety
# ------------------------------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_writer_refuses_non_empty_dir_without_force(tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ExportError, match="not empty"):
        tfjs.write_layers_model(out, random_layers(5), (6, 2))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert _leftovers(tmp_path) == []
    tfjs.write_layers_model(out, random_layers(5), (6, 2), force=True)
    assert sorted(p.name for p in out.iterdir()) == [tfjs.SHARD_NAME, "model.json"]
    assert _leftovers(tmp_path) == []


def test_writer_accepts_existing_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    tfjs.write_layers_model(tmp_path / "m", random_layers(5), (6, 2))
    assert tfjs.read_layers_model(tmp_path / "m").input_shape == (6, 2)


def test_writer_leaves_nothing_on_validation_error(tmp_path: Path) -> None:
    bad = random_layers(6)
    bad[1].kernel[3, 4] = np.nan
    cases: list[tuple[list[Dense], tuple[int, int], dict[str, Any]]] = [
        (bad, (6, 2), {}),
        (random_layers(6), (5, 2), {}),  # kernel fan-in does not match input
        (random_layers(6), (6, 2), {"quantize": "int4"}),
        (random_layers(6), (6, 2), {"metadata": {"x": float("nan")}}),
        (random_layers(6), (6, 2), {"metadata": ["not", "an", "object"]}),
        (
            [Dense(np.full((12, 2), 1e5, np.float32), np.zeros(2, np.float32), "linear")],
            (6, 2),
            {"quantize": "float16"},
        ),
    ]
    for layers, shape, kw in cases:
        with pytest.raises(ExportError):
            tfjs.write_layers_model(tmp_path / "m", layers, shape, **kw)
        assert list(tmp_path.iterdir()) == []


def test_writer_failure_mid_write_keeps_old_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m"
    tfjs.write_layers_model(out, random_layers(7), (6, 2), metadata={"v": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(self: Path, data: bytes) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        tfjs.write_layers_model(out, random_layers(8), (6, 2), metadata={"v": 2}, force=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []
    with pytest.raises(OSError):
        monkeypatch.setattr(Path, "write_bytes", boom)
        tfjs.write_layers_model(tmp_path / "fresh", random_layers(8), (6, 2))
    monkeypatch.undo()
    assert not (tmp_path / "fresh").exists() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Reader errors
# ------------------------------------------------------------------------------------------------


def _edit_json(model_dir: Path, fn: Any) -> None:
    mj = json.loads((model_dir / "model.json").read_text())
    fn(mj)
    (model_dir / "model.json").write_text(json.dumps(mj))


def _weights(mj: dict[str, Any]) -> list[dict[str, Any]]:
    return mj["weightsManifest"][0]["weights"]


def _layers(mj: dict[str, Any]) -> list[dict[str, Any]]:
    return mj["modelTopology"]["model_config"]["config"]["layers"]


def _abs_path(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: mj["weightsManifest"][0].update(paths=[str(outside)]))


def _dotdot_path(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: mj["weightsManifest"][0].update(paths=[f"../{outside.name}"]))


def _symlink_escape(d: Path, outside: Path) -> None:
    (d / tfjs.SHARD_NAME).unlink()
    (d / tfjs.SHARD_NAME).symlink_to(outside)


def _symlink_dir_escape(d: Path, outside: Path) -> None:
    (d / "sub").symlink_to(outside.parent, target_is_directory=True)
    _edit_json(d, lambda mj: mj["weightsManifest"][0].update(paths=[f"sub/{outside.name}"]))


def _url_path(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: mj["weightsManifest"][0].update(paths=["https://example.com/w.bin"]))


def _truncate_shard(d: Path, outside: Path) -> None:
    data = (d / tfjs.SHARD_NAME).read_bytes()
    (d / tfjs.SHARD_NAME).write_bytes(data[:-1])


def _extend_shard(d: Path, outside: Path) -> None:
    with open(d / tfjs.SHARD_NAME, "ab") as f:
        f.write(b"\0")


def _unknown_dtype(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _weights(mj)[0].update(dtype="float64"))


def _unknown_quant_dtype(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _weights(mj)[0]["quantization"].update(dtype="int4"))


def _quant_without_scale(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _weights(mj)[0]["quantization"].pop("scale"))


def _missing_weight(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _weights(mj)[3].update(name="dense_1/bias_renamed"))


def _unsupported_layer(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _layers(mj)[2].update(class_name="Conv1D"))


def _missing_activation(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _layers(mj)[1]["config"].pop("activation"))


def _unknown_activation(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _layers(mj)[1]["config"].update(activation="selu"))


def _wrong_kernel_shape(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: _layers(mj)[2]["config"].update(units=32))


def _graph_model(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: mj.update(format="graph-model"))


def _missing_shard(d: Path, outside: Path) -> None:
    (d / tfjs.SHARD_NAME).unlink()


def _missing_model_json(d: Path, outside: Path) -> None:
    (d / "model.json").unlink()


def _malformed_json(d: Path, outside: Path) -> None:
    text = (d / "model.json").read_text()
    (d / "model.json").write_text(text[: len(text) // 2])


def _json_not_object(d: Path, outside: Path) -> None:
    (d / "model.json").write_text("[1, 2, 3]")


def _no_manifest(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: mj.pop("weightsManifest"))


def _metadata_not_object(d: Path, outside: Path) -> None:
    _edit_json(d, lambda mj: mj.update(userDefinedMetadata=[1, 2]))


BAD_COPIES = {
    "absolute_path": (_abs_path, "absolute"),
    "dotdot_path": (_dotdot_path, r"\.\."),
    "symlink_escape": (_symlink_escape, "outside the model directory"),
    "symlink_dir_escape": (_symlink_dir_escape, "outside the model directory"),
    "url_path": (_url_path, "URL"),
    "truncated_shard": (_truncate_shard, "bytes"),
    "extended_shard": (_extend_shard, "bytes"),
    "unknown_dtype": (_unknown_dtype, "dtype 'float64'"),
    "unknown_quant_dtype": (_unknown_quant_dtype, "quantization dtype 'int4'"),
    "quant_without_scale": (_quant_without_scale, "scale"),
    "missing_weight": (_missing_weight, "missing weights for layer 'dense_1'"),
    "unsupported_layer": (_unsupported_layer, "unsupported layer class 'Conv1D'"),
    "missing_activation": (_missing_activation, "no activation"),
    "unknown_activation": (_unknown_activation, "activation 'selu'"),
    "wrong_kernel_shape": (_wrong_kernel_shape, "do not match"),
    "graph_model": (_graph_model, "graph-model"),
    "missing_shard": (_missing_shard, "missing"),
    "missing_model_json": (_missing_model_json, "missing"),
    "malformed_json": (_malformed_json, "malformed JSON"),
    "json_not_object": (_json_not_object, "JSON object"),
    "no_manifest": (_no_manifest, "weightsManifest"),
    "metadata_not_object": (_metadata_not_object, "userDefinedMetadata"),
}


@pytest.mark.parametrize("case", sorted(BAD_COPIES))
def test_reader_rejects_bad_copies(tmp_path: Path, case: str) -> None:
    mutate, pattern = BAD_COPIES[case]
    d = tmp_path / "model"
    # Layer names of the official blazeface6 model are dense, dense_1, dense_2 (same as ours).
    shutil.copytree(SEED_DIR / "blazeface6", d)
    for p in d.iterdir():
        os.chmod(p, 0o644)
    outside = tmp_path / "outside.bin"
    shutil.copy(SEED_DIR / "blazeface6" / tfjs.SHARD_NAME, outside)  # a valid shard, but outside the dir
    tfjs.read_layers_model(d)  # the pristine copy loads
    mutate(d, outside)
    with pytest.raises(ModelFormatError, match=pattern) as info:
        tfjs.read_layers_model(d)
    assert "\n" not in str(info.value)


def test_reader_rejects_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="does not exist"):
        tfjs.read_layers_model(tmp_path / "nope")


def test_reader_rejects_missing_bias_in_our_own_float16_file(tmp_path: Path) -> None:
    d = tmp_path / "m"
    tfjs.write_layers_model(d, random_layers(9), (6, 2), quantize="float16")

    def drop_last_bias(mj: dict[str, Any]) -> None:
        _weights(mj).pop()  # dense_2/bias (7 float16 values = 14 bytes)

    _edit_json(d, drop_last_bias)
    data = (d / tfjs.SHARD_NAME).read_bytes()
    (d / tfjs.SHARD_NAME).write_bytes(data[:-14])  # sizes stay consistent: only the weight is missing
    with pytest.raises(ModelFormatError, match="missing weights for layer 'dense_2'"):
        tfjs.read_layers_model(d)


# ------------------------------------------------------------------------------------------------
# Against real TF.js 4.22 in Node
# ------------------------------------------------------------------------------------------------


@needs_node
@pytest.mark.parametrize("k", [6, 10])
def test_node_float32_matches_numpy(tmp_path: Path, k: int) -> None:
    layers = random_layers(10 + k, k=k)
    tfjs.write_layers_model(tmp_path / "m", layers, (k, 2))
    x = random_inputs(11, 64, k)
    y_node, meta = node_predict(tmp_path / "m", x)
    y_ref = tfjs.predict_numpy(layers, x)
    assert y_node.shape == y_ref.shape == (64, 7)
    assert np.max(np.abs(y_node - y_ref)) <= F32_ATOL
    assert meta == {}


@needs_node
@pytest.mark.parametrize("quant", ["float16", "uint8"])
def test_node_quantised_within_derived_bound(tmp_path: Path, quant: str) -> None:
    layers = random_layers(20)
    tfjs.write_layers_model(tmp_path / "m", layers, (6, 2), quantize=quant)
    model = tfjs.read_layers_model(tmp_path / "m")
    x = random_inputs(21, 128, 6)
    y_node, _ = node_predict(tmp_path / "m", x)

    # 1. TF.js dequantises exactly like our reader: same float32 weights, float32-arithmetic agreement.
    y_q = tfjs.predict_numpy(model.layers, x)
    assert np.max(np.abs(y_node - y_q)) <= F32_ATOL

    # 2. Against the unquantised model, the error stays within the bound derived from the scheme.
    entries = manifest_entries(tmp_path / "m")
    bounds = []
    for i, (lt, lq) in enumerate(zip(layers, model.layers)):
        bounds.append(
            (
                weight_error_bound(entries[2 * i], lt.kernel, lq.kernel),
                weight_error_bound(entries[2 * i + 1], lt.bias, lq.bias),
            )
        )
    bound = output_error_bound(layers, model.layers, bounds, x)
    y_true = tfjs.predict_numpy(layers, x)
    assert np.all(np.abs(y_q - y_true) <= bound + 1e-12)  # exact-arithmetic statement
    assert np.all(np.abs(y_node - y_true) <= bound + F32_ATOL)  # plus float32 arithmetic in TF.js

    # 3. The worst-case bound assumes every error aligns, so it is ~100x loose. The standard
    # rounding-noise model gives the typical size: the observed error must match it (RMS ratio near
    # 1; a quantiser with a 2x coarser step would give ~2) and stay within 6 sigma everywhere.
    variances = [
        (weight_error_variance(entries[2 * i], lt.kernel), weight_error_variance(entries[2 * i + 1], lt.bias))
        for i, lt in enumerate(layers)
    ]
    sigma = output_error_sigma(layers, variances, x)
    err = np.abs(y_node - y_true)
    assert np.all(err <= 6 * sigma + F32_ATOL)
    rms_ratio = np.sqrt(np.mean((y_q - y_true) ** 2) / np.mean(sigma**2))
    assert 0.5 < rms_ratio < 1.5, rms_ratio


@needs_node
def test_node_metadata_round_trip(tmp_path: Path) -> None:
    meta = {
        "layout": "faceapi10",
        "mean": [-2.12522415e-3, 2.64508744e-4, 0.872294454, -61.2684035],
        "scale": [0.27886152, 14.49564505],
        "units": "cm",
        "flags": {"v_up": True, "noise": None, "ünï": "✓"},
    }
    tfjs.write_layers_model(tmp_path / "m", random_layers(30, k=10), (10, 2), metadata=meta, quantize="uint8")
    _, got = node_predict(tmp_path / "m", random_inputs(31, 2, 10))
    assert got == meta
    assert tfjs.read_layers_model(tmp_path / "m").metadata == meta


@needs_node
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_node_matches_reader_on_official_models(name: str) -> None:
    k = SEEDS[name]
    model = tfjs.read_layers_model(SEED_DIR / name)
    x = random_inputs(40, 256, k)
    y_node, meta = node_predict(SEED_DIR / name, x)
    y_ref = tfjs.predict_numpy(model.layers, x)
    assert meta == {}
    # float32 accumulation over ~64-wide layers whose weights reach |w| ~ 10: scale the tolerance
    # by the magnitude of the outputs.
    assert np.all(np.abs(y_node - y_ref) <= F32_ATOL * np.maximum(1.0, np.abs(y_ref)))


@needs_node
def test_node_rejects_escaping_weight_path(tmp_path: Path) -> None:
    """The Node tool, like the reader, refuses shards outside the model directory."""
    from experiments.lib.node import NodeToolError

    d = tmp_path / "model"
    shutil.copytree(SEED_DIR / "blazeface6", d)
    os.chmod(d / "model.json", 0o644)
    shutil.copy(SEED_DIR / "blazeface6" / tfjs.SHARD_NAME, tmp_path / "outside.bin")
    _dotdot_path(d, tmp_path / "outside.bin")
    with pytest.raises(NodeToolError, match="unsafe weight path"):
        node_predict(d, random_inputs(0, 1, 6))


def test_node_helper_explains_missing_npm_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without web/node_modules (or without node) the helper says how to fix it instead of crashing."""
    from experiments.lib import node

    monkeypatch.setattr(node, "WEB_DIR", tmp_path)
    with pytest.raises(node.NodeUnavailableError, match=r"cd web && npm ci"):
        node.tfjs_predict_in_node(SEED_DIR / "blazeface6", random_inputs(0, 1, 6))
