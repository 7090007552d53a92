"""Read and write TF.js models (model.json + binary shards), numpy only: the *layers* format
(a Sequential Flatten + Dense stack) and the *graph* format (a TensorFlow GraphDef in JSON).

The files written here load with ``tf.loadLayersModel`` in ``@tensorflow/tfjs`` 4.x: a Keras-2
style ``Sequential`` topology (``Flatten`` with ``batch_input_shape [null, K, 2]`` followed by
``Dense`` layers, each with an explicit activation) and one weight group whose arrays are
concatenated in manifest order into ``group1-shard1of1.bin``.

Quantisation follows TF.js's own conventions (tfjs-converter ``quantization.py`` and tfjs-core
``io.decodeWeights``):

* ``float16``: values stored as little-endian IEEE half floats, manifest entry
  ``{"dtype": "float16"}``.
* ``uint8`` (affine, one scale/min per tensor): ``value = q * scale + min`` computed in float64
  and rounded to float32. The range is nudged so that 0.0 is exactly representable when the
  tensor's range covers 0; a constant tensor is stored as ``q = 0, scale = 1, min = value``.

A *graph model* (``tf.loadGraphModel``) is what the official converter writes for a SavedModel:
``"format": "graph-model"``, ``modelTopology`` a GraphDef (``node``: name, op, input, attr) whose
``Const`` nodes take their values from the weights manifest by node name, and a ``signature``
naming the input and output nodes. `Graph` builds one from standard TensorFlow ops (the set
`GRAPH_OPS`, every one in tfjs-converter's op mappings), `write_graph_model` writes it, and
`run_graph` evaluates it in numpy (float64 or float32) as a reference for tests.

This module must import fast: only the standard library and numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pnpjax.errors import ExportError, ModelFormatError

__all__ = [
    "ACTIVATIONS",
    "QUANTIZATIONS",
    "SHARD_NAME",
    "Dense",
    "ExportError",
    "GRAPH_OPS",
    "Graph",
    "GraphModel",
    "LayersModel",
    "ModelFormatError",
    "dequantize_tensor",
    "predict_numpy",
    "quantize_tensor",
    "read_graph_model",
    "read_layers_model",
    "run_graph",
    "write_graph_model",
    "write_layers_model",
]

ACTIVATIONS: tuple[str, ...] = ("relu", "linear")
QUANTIZATIONS: tuple[str, ...] = ("float32", "float16", "uint8")
SHARD_NAME = "group1-shard1of1.bin"
MODEL_JSON = "model.json"
MAX_MODEL_JSON_BYTES = 64 << 20
# Keras version whose topology layout we emit (the one the published seed models use).
KERAS_TOPOLOGY_VERSION = "2.2.4-tf"

# Bytes per stored element, for plain dtypes and quantised storage dtypes (TF.js DTYPE_VALUE_SIZE_MAP).
_WEIGHT_DTYPES: dict[str, int] = {"float32": 4, "int32": 4}
_QUANT_DTYPES: dict[str, tuple[int, str]] = {"uint8": (1, "<u1"), "uint16": (2, "<u2"), "float16": (2, "<f2")}


@dataclasses.dataclass
class Dense:
    """One Keras ``Dense`` layer: ``y = activation(x @ kernel + bias)``."""

    kernel: np.ndarray  # (in, out) float32
    bias: np.ndarray  # (out,) float32
    activation: str  # 'relu' | 'linear'

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unsupported activation {self.activation!r}; expected one of {ACTIVATIONS}")
        self.kernel = np.asarray(self.kernel, dtype=np.float32)
        self.bias = np.asarray(self.bias, dtype=np.float32)
        if self.kernel.ndim != 2:
            raise ValueError(f"Dense kernel must be 2-D (in, out), got shape {self.kernel.shape}")
        if self.bias.shape != (self.kernel.shape[1],):
            raise ValueError(f"Dense bias shape {self.bias.shape} does not match kernel {self.kernel.shape}")


@dataclasses.dataclass
class LayersModel:
    """A TF.js layers model read from disk; weights are dequantised to float32."""

    layers: list[Dense]
    input_shape: tuple[int, int]
    metadata: dict[str, Any]
    quantization: str  # 'float32' | 'float16' | 'uint8' | 'uint16' | 'mixed'
    generated_by: str | None = None
    converted_by: str | None = None
    weight_names: list[str] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Quantisation
# --------------------------------------------------------------------------------------------


def quantize_tensor(values: np.ndarray, dtype: str) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Quantise a float32 tensor like tensorflowjs_converter; returns (stored array, manifest entry).

    ``dtype`` is 'float32' (no quantisation, entry None), 'float16' or 'uint8'.
    """
    data = np.asarray(values, dtype=np.float32)
    if dtype == "float32":
        return data.astype("<f4"), None
    if dtype == "float16":
        with np.errstate(over="ignore"):
            half = data.astype("<f2")
        if not np.all(np.isfinite(half)):
            raise ValueError("values overflow float16 (|w| > 65504) or are not finite")
        return half, {"dtype": "float16"}
    if dtype != "uint8":
        raise ValueError(f"unsupported quantization {dtype!r}; expected one of {QUANTIZATIONS}")
    quant_max = 255
    min_val = float(data.min())
    max_val = float(data.max())
    if min_val == max_val:
        # Converter convention: a constant tensor is all zeros with scale 1 and min = the value.
        return np.zeros(data.shape, dtype="<u1"), {"dtype": "uint8", "scale": 1.0, "min": min_val}
    scale = (max_val - min_val) / quant_max
    if min_val <= 0.0 <= max_val:
        # Nudge the range so that 0.0 maps to an integer (exactly representable), as the converter does.
        zero_point = float(np.round(-min_val / scale))
        min_val = -zero_point * scale
        max_val = quant_max * scale + min_val
    q = np.round((np.clip(data.astype(np.float64), min_val, max_val) - min_val) / scale)
    return q.astype("<u1"), {"dtype": "uint8", "scale": scale, "min": min_val}


def dequantize_tensor(stored: np.ndarray, quantization: dict[str, Any] | None) -> np.ndarray:
    """Decode stored values to float32 exactly as tfjs-core ``io.decodeWeights`` does."""
    if quantization is None:
        return np.asarray(stored, dtype=np.float32)
    qdtype = quantization["dtype"]
    if qdtype == "float16":
        return np.asarray(stored).astype(np.float32)
    if qdtype in ("uint8", "uint16"):
        # JS: Float32Array element = v * scale + min, evaluated in float64 (no FMA), then rounded.
        q = np.asarray(stored).astype(np.float64)
        return (q * float(quantization["scale"]) + float(quantization["min"])).astype(np.float32)
    raise ValueError(f"unknown quantization dtype {qdtype!r}")


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _topology(layers: list[Dense], input_shape: tuple[int, int]) -> dict[str, Any]:
    """Keras-2 (2.2.4-style) Sequential topology: Flatten then Dense layers with explicit activations."""
    keras_layers: list[dict[str, Any]] = [
        {
            "class_name": "Flatten",
            "config": {
                "name": "flatten",
                "trainable": True,
                "batch_input_shape": [None, int(input_shape[0]), int(input_shape[1])],
                "dtype": "float32",
                "data_format": "channels_last",
            },
        }
    ]
    for i, layer in enumerate(layers):
        keras_layers.append(
            {
                "class_name": "Dense",
                "config": {
                    "name": _dense_name(i),
                    "trainable": True,
                    "dtype": "float32",
                    "units": int(layer.kernel.shape[1]),
                    "activation": layer.activation,
                    "use_bias": True,
                    "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
                    "bias_initializer": {"class_name": "Zeros", "config": {}},
                    "kernel_regularizer": None,
                    "bias_regularizer": None,
                    "activity_regularizer": None,
                    "kernel_constraint": None,
                    "bias_constraint": None,
                },
            }
        )
    return {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": keras_layers},
    }


def _dense_name(i: int) -> str:
    """Keras's default naming: dense, dense_1, dense_2, ..."""
    return "dense" if i == 0 else f"dense_{i}"


def _check_layers(layers: list[Dense], input_shape: tuple[int, int]) -> None:
    """Validate the layer stack and input shape before writing."""
    if len(input_shape) != 2 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in input_shape
    ):
        raise ExportError(f"input_shape must be two positive ints (K, 2), got {input_shape!r}")
    if not layers:
        raise ExportError("cannot export a model with no Dense layers")
    width = int(input_shape[0]) * int(input_shape[1])
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            raise ExportError(f"layer {i} is {type(layer).__name__}, expected pnpjax.tfjs.Dense")
        if layer.activation not in ACTIVATIONS:
            raise ExportError(f"layer {i}: unsupported activation {layer.activation!r}")
        if layer.kernel.shape[0] != width:
            raise ExportError(f"layer {i}: kernel has {layer.kernel.shape[0]} inputs, previous layer gives {width}")
        if not (np.all(np.isfinite(layer.kernel)) and np.all(np.isfinite(layer.bias))):
            raise ExportError(f"layer {i}: weights contain NaN or Inf")
        width = layer.kernel.shape[1]


def _check_metadata(metadata: dict[str, Any] | None) -> None:
    """userDefinedMetadata must be a plain JSON object (TF.js rejects anything else)."""
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise ExportError("metadata must be a dict with string keys (a JSON object)")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"metadata is not strict-JSON serialisable: {exc}") from exc


def write_layers_model(
    out_dir: str | os.PathLike[str],
    layers: list[Dense],
    input_shape: tuple[int, int],
    *,
    quantize: str = "float32",
    metadata: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``layers`` as a TF.js layers model in ``out_dir``; returns the model.json dict.

    Refuses an existing non-empty ``out_dir`` unless ``force`` (which replaces the whole
    directory). Files are written to a temporary sibling directory and renamed into place, so an
    error never leaves a half-written model behind.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unsupported quantize={quantize!r}; expected one of {QUANTIZATIONS}")
    _check_layers(layers, tuple(input_shape))
    input_shape = (int(input_shape[0]), int(input_shape[1]))
    _check_metadata(metadata)
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"output path {out} exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise ExportError(f"output directory {out} is not empty (pass force=True to replace it)")

    # Encode every tensor first (kernel then bias per layer), so nothing touches disk on error.
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for i, layer in enumerate(layers):
        for suffix, values in (("kernel", layer.kernel), ("bias", layer.bias)):
            try:
                stored, qinfo = quantize_tensor(values, quantize)
            except ValueError as exc:
                raise ExportError(f"layer {i} {suffix}: {exc}") from exc
            entry: dict[str, Any] = {
                "name": f"{_dense_name(i)}/{suffix}",
                "shape": [int(d) for d in values.shape],
                "dtype": "float32",
            }
            if qinfo is not None:
                entry["quantization"] = qinfo
            entries.append(entry)
            chunks.append(stored.tobytes(order="C"))
    model_json: dict[str, Any] = {
        "format": "layers-model",
        "generatedBy": "pnpjax",
        "convertedBy": "pnpjax.tfjs (direct layers-model writer)",
        "modelTopology": {
            "keras_version": KERAS_TOPOLOGY_VERSION,
            "backend": "tensorflow",
            "model_config": _topology(layers, input_shape),
        },
        "weightsManifest": [{"paths": [SHARD_NAME], "weights": entries}],
    }
    if metadata is not None:
        model_json["userDefinedMetadata"] = metadata
    text = json.dumps(model_json, allow_nan=False)
    _write_model_dir(out, text, chunks)
    return model_json


def _write_model_dir(out: Path, model_json_text: str, chunks: list[bytes]) -> None:
    """Write model.json and its one weight shard into `out` atomically (a temp dir, then moved)."""
    from pnpjax import fsio

    tmp = fsio.make_temp_dir(out, ExportError)
    try:
        (tmp / MODEL_JSON).write_text(model_json_text, encoding="utf-8")
        (tmp / SHARD_NAME).write_bytes(b"".join(chunks))
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, dst: Path) -> None:
    """Atomically move directory ``src`` to ``dst``, replacing an existing ``dst`` directory."""
    if not dst.exists():
        os.rename(src, dst)
        return
    from pnpjax import fsio

    backup = Path(tempfile.mkdtemp(prefix=fsio.temp_prefix(dst) + "old-", dir=dst.parent))
    os.rmdir(backup)
    os.rename(dst, backup)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(backup, dst)
        raise
    shutil.rmtree(backup, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def _fail(msg: str) -> ModelFormatError:
    """A one-line ModelFormatError."""
    return ModelFormatError(" ".join(msg.split()))


def _safe_weight_path(model_dir: Path, rel: Any) -> Path:
    """Resolve a manifest path inside ``model_dir``; reject absolute paths, URLs, '..' and symlink escapes."""
    if not isinstance(rel, str) or not rel:
        raise _fail(f"weight path {rel!r} is not a non-empty string")
    if "://" in rel or rel.startswith(("/", "\\")) or os.path.isabs(rel) or (len(rel) > 1 and rel[1] == ":"):
        raise _fail(f"weight path {rel!r} is absolute or a URL; it must be relative to the model directory")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise _fail(f"weight path {rel!r} leaves the model directory ('..')")
    root = model_dir.resolve()
    target = (model_dir / rel).resolve()
    if target != root and root not in target.parents:
        raise _fail(f"weight path {rel!r} resolves outside the model directory (symlink escape)")
    if not target.is_file():
        raise _fail(f"weight file {rel!r} listed in the manifest is missing from {model_dir}")
    return target


def load_json(path: Path) -> dict[str, Any]:
    """Parse model.json, turning I/O and syntax problems into ModelFormatError."""
    if not path.is_file():
        raise _fail(f"missing {path}")
    if path.stat().st_size > MAX_MODEL_JSON_BYTES:
        raise _fail(f"{path} is {path.stat().st_size} bytes, more than the limit of {MAX_MODEL_JSON_BYTES}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise _fail(f"malformed JSON in {path}: nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"malformed JSON in {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise _fail(f"{path} must contain a JSON object, got {type(obj).__name__}")
    return obj


def _read_weights(
    model_dir: Path, manifest: Any, dtypes: tuple[str, ...] = ("float32",)
) -> tuple[dict[str, np.ndarray], list[str], set[str]]:
    """Decode every manifest weight (float32, or int32 where ``dtypes`` allows it); returns
    (name -> array, names in order, quant dtypes)."""
    if not isinstance(manifest, list) or not manifest:
        raise _fail("weightsManifest must be a non-empty list of weight groups")
    weights: dict[str, np.ndarray] = {}
    order: list[str] = []
    quant_kinds: set[str] = set()
    for g, group in enumerate(manifest):
        if (
            not isinstance(group, dict)
            or not isinstance(group.get("paths"), list)
            or not isinstance(group.get("weights"), list)
        ):
            raise _fail(f"weightsManifest[{g}] must be an object with 'paths' and 'weights' lists")
        specs: list[tuple[str, tuple[int, ...], int, dict[str, Any] | None, str]] = []
        expected = 0
        for spec in group["weights"]:
            if not isinstance(spec, dict):
                raise _fail(f"weightsManifest[{g}] has a non-object weight entry")
            name, shape, dtype = spec.get("name"), spec.get("shape"), spec.get("dtype")
            if not isinstance(name, str):
                raise _fail(f"weightsManifest[{g}] has a weight without a string name")
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise _fail(f"weight {name!r} has an invalid shape {shape!r}")
            if dtype not in _WEIGHT_DTYPES or dtype not in dtypes:
                raise _fail(f"weight {name!r} has unsupported dtype {dtype!r} (supported: {', '.join(dtypes)})")
            if name in weights or any(s[0] == name for s in specs):
                raise _fail(f"weight {name!r} appears twice in the manifest")
            quant = spec.get("quantization")
            size = math.prod(shape)
            if quant is None:
                nbytes = size * _WEIGHT_DTYPES[dtype]
                if dtype == "float32":
                    quant_kinds.add("float32")
            else:
                if dtype != "float32" or not isinstance(quant, dict) or quant.get("dtype") not in _QUANT_DTYPES:
                    qd = quant.get("dtype") if isinstance(quant, dict) else quant
                    raise _fail(
                        f"weight {name!r} has unknown quantization dtype {qd!r} (expected uint8, uint16 or float16)"
                    )
                if quant["dtype"] in ("uint8", "uint16"):
                    for key in ("scale", "min"):
                        v = quant.get(key)
                        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                            raise _fail(f"weight {name!r}: {quant['dtype']} quantization needs a finite {key!r}")
                nbytes = size * _QUANT_DTYPES[quant["dtype"]][0]
                quant_kinds.add(quant["dtype"])
            specs.append((name, tuple(shape), nbytes, quant, dtype))
            expected += nbytes
        files = [_safe_weight_path(model_dir, p) for p in group["paths"]]
        if not files and expected:
            raise _fail(f"weightsManifest[{g}] lists weights but no shard paths")
        on_disk = sum(f.stat().st_size for f in files)  # sizes first: never read a shard that cannot be right
        if on_disk != expected:
            raise _fail(
                f"weightsManifest[{g}] shards hold {on_disk} bytes but the manifest's shapes x dtypes need {expected}"
            )
        buf = b"".join(f.read_bytes() for f in files)
        if len(buf) != expected:
            raise _fail(
                f"weightsManifest[{g}] shards hold {len(buf)} bytes but the manifest's shapes x dtypes need {expected}"
            )
        offset = 0
        for name, shape, nbytes, quant, dtype in specs:
            raw = buf[offset : offset + nbytes]
            offset += nbytes
            if quant is None:
                stored = np.frombuffer(raw, dtype="<i4" if dtype == "int32" else "<f4")
                if dtype == "int32":
                    weights[name] = stored.astype(np.int32).reshape(shape)
                    order.append(name)
                    continue
            else:
                stored = np.frombuffer(raw, dtype=_QUANT_DTYPES[quant["dtype"]][1])
            weights[name] = dequantize_tensor(stored, quant).reshape(shape)
            order.append(name)
    return weights, order, quant_kinds


def _model_config(topology: Any) -> tuple[list[Any], str]:
    """Return (layer configs, model class) from a Keras-2 or TF.js-saved topology."""
    if not isinstance(topology, dict):
        raise _fail("modelTopology is missing or not an object")
    config = topology.get("model_config", topology)
    if not isinstance(config, dict) or "class_name" not in config:
        raise _fail("modelTopology has no model_config/class_name")
    cls = config["class_name"]
    if cls != "Sequential":
        raise _fail(f"unsupported model class {cls!r} (only Sequential is supported)")
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner  # Keras < 2.2.3 used a bare list
    if not isinstance(layers, list) or not layers:
        raise _fail("Sequential model has no layers")
    return layers, cls


def _batch_input_shape(cfg: dict[str, Any]) -> tuple[int, int] | None:
    """Parse ``[null, K, C]`` from a layer config, if present."""
    shape = cfg.get("batch_input_shape", cfg.get("batch_shape"))
    if shape is None:
        return None
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or shape[0] is not None
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[1:])
    ):
        raise _fail(f"unsupported batch_input_shape {shape!r}; expected [null, K, C]")
    return int(shape[1]), int(shape[2])


def read_layers_model(model_dir: str | os.PathLike[str]) -> LayersModel:
    """Load and validate a TF.js layers model (Flatten + Dense stack) written by us or the official converter."""
    mdir = Path(model_dir)
    if not mdir.is_dir():
        raise _fail(f"model directory {mdir} does not exist")
    mj = load_json(mdir / MODEL_JSON)
    fmt = mj.get("format", "layers-model")
    if fmt != "layers-model":
        raise _fail(f"unsupported model format {fmt!r} (only layers-model)")
    if "weightsManifest" not in mj:
        raise _fail("model.json has no weightsManifest")
    layer_cfgs, _ = _model_config(mj.get("modelTopology"))
    weights, order, quant_kinds = _read_weights(mdir, mj["weightsManifest"])

    input_shape: tuple[int, int] | None = None
    flattened = False
    dense: list[Dense] = []
    used: set[str] = set()
    width = 0
    for i, layer in enumerate(layer_cfgs):
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            raise _fail(f"layer {i} is not an object with a config")
        cls, cfg = layer.get("class_name"), layer["config"]
        name = cfg.get("name")
        shape = _batch_input_shape(cfg)
        if shape is not None:
            if i != 0:
                raise _fail(f"layer {i} ({cls}) declares an input shape but is not the first layer")
            input_shape = shape
        if cls == "InputLayer":
            if i != 0:
                raise _fail("InputLayer must be the first layer")
            continue
        if cls == "Flatten":
            if flattened or dense or input_shape is None:
                raise _fail("Flatten must come first (after an optional InputLayer) and declare [null, K, C]")
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise _fail(f"Flatten data_format {cfg.get('data_format')!r} is not supported")
            flattened = True
            width = input_shape[0] * input_shape[1]
            continue
        if cls != "Dense":
            raise _fail(f"unsupported layer class {cls!r} (layer {i}); only InputLayer, Flatten and Dense")
        if not flattened:
            raise _fail(f"Dense layer {name!r} is not preceded by Flatten")
        if not isinstance(name, str):
            raise _fail(f"Dense layer {i} has no name")
        act = cfg.get("activation")
        if act is None:
            raise _fail(f"Dense layer {name!r} has no activation (TF.js would silently use linear)")
        if act not in ACTIVATIONS:
            raise _fail(f"Dense layer {name!r} has unsupported activation {act!r}")
        units = cfg.get("units")
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise _fail(f"Dense layer {name!r} has invalid units {units!r}")
        kname, bname = f"{name}/kernel", f"{name}/bias"
        if kname not in weights:
            raise _fail(f"missing weights for layer {name!r}: no {kname!r} in the manifest")
        kernel = weights[kname]
        used.add(kname)
        if cfg.get("use_bias", True):
            if bname not in weights:
                raise _fail(f"missing weights for layer {name!r}: no {bname!r} in the manifest")
            bias = weights[bname]
            used.add(bname)
        else:
            bias = np.zeros((units,), dtype=np.float32)
        if kernel.shape != (width, units) or bias.shape != (units,):
            raise _fail(f"layer {name!r}: kernel {kernel.shape} / bias {bias.shape} do not match ({width}, {units})")
        dense.append(Dense(kernel=kernel, bias=bias, activation=act))
        width = units
    if not dense or input_shape is None:
        raise _fail("model has no Dense layers or no declared input shape")
    unused = [n for n in order if n not in used]
    if unused:
        raise _fail(f"manifest weights not used by any layer: {unused}")

    meta = mj.get("userDefinedMetadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _fail("userDefinedMetadata must be a JSON object")
    kinds = quant_kinds or {"float32"}
    return LayersModel(
        layers=dense,
        input_shape=input_shape,
        metadata=meta,
        quantization=kinds.pop() if len(kinds) == 1 else "mixed",
        generated_by=mj.get("generatedBy"),
        converted_by=mj.get("convertedBy"),
        weight_names=order,
    )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def predict_numpy(layers: list[Dense], x: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """Run the Flatten + Dense stack on ``x`` of shape (N, K, 2); returns (N, out) in ``dtype``."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"expected a batch of keypoints (N, K, 2), got shape {x.shape}")
    h = x.reshape(x.shape[0], -1).astype(dtype)
    if h.shape[1] != layers[0].kernel.shape[0]:
        raise ValueError(f"input flattens to {h.shape[1]} values, model expects {layers[0].kernel.shape[0]}")
    for layer in layers:
        h = h @ layer.kernel.astype(dtype) + layer.bias.astype(dtype)
        if layer.activation == "relu":
            h = np.maximum(h, 0)
    return h


# --------------------------------------------------------------------------------------------
# Graph models
# --------------------------------------------------------------------------------------------

GRAPH_MODEL_FORMAT = "graph-model"
# GraphDef versions of TensorFlow 2.21 (TF.js only reports them as `model.version`).
GRAPH_DEF_VERSIONS = {"producer": 2474, "minConsumer": 0}
# TensorFlow's rule for node names (tensorflow/core/graph/graph_def_builder / NodeDef name check).
_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*\Z")
_TF_DTYPES = {"float32": "DT_FLOAT", "int32": "DT_INT32", "bool": "DT_BOOL"}
# userDefinedMetadata keys TF.js's GraphModel reads as its own (they would replace the signature).
_RESERVED_METADATA = ("signature", "structuredOutputKeys")

# The ops `Graph` emits and `run_graph` evaluates: each is in tfjs-converter's op mappings
# (src/operations/op_list) and in TensorFlow's standard op set.
_UNARY = {
    "Identity": lambda x: x,
    "Relu": lambda x: np.maximum(x, 0),
    "Sqrt": np.sqrt,
    "Square": np.square,
    "Exp": np.exp,
    "Log": np.log,
    "Neg": np.negative,
    "Cos": np.cos,
    "Sin": np.sin,
}
_BINARY = {
    "AddV2": np.add,
    "BiasAdd": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "RealDiv": np.divide,
    "Maximum": np.maximum,
    "Minimum": np.minimum,
    "Atan2": np.arctan2,  # Atan2(y, x) = atan(y / x) in the right quadrant
    "Less": np.less,
    "Equal": np.equal,
}
GRAPH_OPS: frozenset[str] = frozenset(
    {*_UNARY, *_BINARY, "Placeholder", "Const", "MatMul", "Mean", "Sum", "ConcatV2", "Slice", "Reshape"}
    | {"ClipByValue", "SelectV2"}
)


def _attr_type(dtype: str) -> dict[str, str]:
    return {"type": _TF_DTYPES[dtype]}


def _shape_proto(shape: tuple[int, ...]) -> dict[str, Any]:
    """A TensorShapeProto in JSON (-1 for an unknown dimension; sizes as strings, like int64s)."""
    return {"dim": [{"size": str(int(d))} for d in shape]}


@dataclasses.dataclass
class GraphNode:
    """One NodeDef: ``inputs`` are node names (output 0), ``attr`` is already in JSON form."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        node: dict[str, Any] = {"name": self.name, "op": self.op}
        if self.inputs:
            node["input"] = list(self.inputs)
        node["attr"] = self.attr
        return node


class Graph:
    """A TensorFlow GraphDef under construction (float32 tensors, int32 shape/axis constants).

    Node names come from the code that builds the graph, never from data (checked against
    TensorFlow's rule, unique). A constant's value goes to the weights manifest under its node's
    name, as the TF.js converter stores them; ``quantize`` picks its storage (float32 tensors only).
    """

    def __init__(self) -> None:
        self.nodes: list[GraphNode] = []
        self.values: dict[str, np.ndarray] = {}
        self.storage: dict[str, str] = {}
        self.placeholders: dict[str, tuple[int, ...]] = {}
        self._names: set[str] = set()
        self._shared: dict[tuple, str] = {}  # unnamed constants by value: one node each

    def _new_name(self, name: str | None, op: str) -> str:
        if name is None:
            name = f"{op.lower()}_{len(self.nodes)}"
        if not isinstance(name, str) or not _NODE_NAME.match(name):
            raise ExportError(f"invalid graph node name {name!r}")
        if name in self._names:
            raise ExportError(f"duplicate graph node name {name!r}")
        self._names.add(name)
        return name

    def placeholder(self, name: str, shape: tuple[int, ...]) -> str:
        """A float32 input; -1 marks an unknown dimension (the batch)."""
        name = self._new_name(name, "Placeholder")
        shape = tuple(int(d) for d in shape)
        attr = {"dtype": _attr_type("float32"), "shape": {"shape": _shape_proto(shape)}}
        self.nodes.append(GraphNode(name, "Placeholder", (), attr))
        self.placeholders[name] = shape
        return name

    def const(self, value: Any, name: str | None = None, *, dtype: str = "float32", quantize: str = "float32") -> str:
        """A Const node holding ``value`` (stored in the weights manifest)."""
        if dtype not in ("float32", "int32"):
            raise ExportError(f"unsupported constant dtype {dtype!r}")
        if quantize not in QUANTIZATIONS or (dtype == "int32" and quantize != "float32"):
            raise ExportError(f"unsupported storage {quantize!r} for a {dtype} constant")
        array = np.asarray(value, np.float32 if dtype == "float32" else np.int32)
        if dtype == "float32" and not np.all(np.isfinite(array)):
            raise ExportError(f"constant {name or '(unnamed)'} contains NaN or Inf")
        key = (dtype, quantize, array.shape, array.tobytes())
        if name is None and key in self._shared:
            return self._shared[key]
        name = self._new_name(name, "Const")
        self._shared.setdefault(key, name)
        attr = {
            "dtype": _attr_type(dtype),
            "value": {"tensor": {"dtype": _TF_DTYPES[dtype], "tensorShape": _shape_proto(array.shape)}},
        }
        self.nodes.append(GraphNode(name, "Const", (), attr))
        self.values[name] = array
        self.storage[name] = quantize
        return name

    def ints(self, values: Any) -> str:
        """An int32 constant (axes, shapes, slice bounds)."""
        return self.const(values, dtype="int32")

    def op(self, op: str, *inputs: str, name: str | None = None, attr: dict[str, Any] | None = None) -> str:
        """An op node on float32 tensors (comparisons give bool); returns its name."""
        if op not in GRAPH_OPS or op in ("Placeholder", "Const"):
            raise ExportError(f"op {op!r} is not one of the graph ops this writer emits")
        for i in inputs:
            if i not in self._names:
                raise ExportError(f"{op}: unknown input node {i!r}")
        full = {"T": _attr_type("float32"), **(attr or {})}
        name = self._new_name(name, op)
        self.nodes.append(GraphNode(name, op, tuple(inputs), full))
        return name

    # Shorthands for the ops with attributes or int32 operands.
    def reduce(self, op: str, x: str, axis: int | tuple[int, ...], keep_dims: bool = False) -> str:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        return self.op(op, x, self.ints(axes), attr={"keep_dims": {"b": keep_dims}, "Tidx": _attr_type("int32")})

    def concat(self, xs: list[str], axis: int) -> str:
        return self.op("ConcatV2", *xs, self.ints(axis), attr={"N": {"i": str(len(xs))}, "Tidx": _attr_type("int32")})

    def slice(self, x: str, begin: tuple[int, ...], size: tuple[int, ...]) -> str:
        return self.op("Slice", x, self.ints(begin), self.ints(size), attr={"Index": _attr_type("int32")})

    def reshape(self, x: str, shape: tuple[int, ...]) -> str:
        return self.op("Reshape", x, self.ints(shape), attr={"Tshape": _attr_type("int32")})

    def matmul(self, a: str, b: str) -> str:
        return self.op("MatMul", a, b, attr={"transpose_a": {"b": False}, "transpose_b": {"b": False}})

    def clip(self, x: str, lo: float, hi: float) -> str:
        return self.op("ClipByValue", x, self.const(lo), self.const(hi))

    def select(self, cond: str, a: str, b: str) -> str:
        return self.op("SelectV2", cond, a, b)


@dataclasses.dataclass
class GraphModel:
    """A TF.js graph model read from disk (weights dequantised to float32)."""

    graph: Graph
    inputs: dict[str, str]  # signature key -> node name
    outputs: dict[str, str]
    metadata: dict[str, Any]
    quantization: str


def _signature_entry(node: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": f"{node}:0", "dtype": "DT_FLOAT", "tensorShape": _shape_proto(shape)}


def write_graph_model(
    out_dir: str | os.PathLike[str],
    graph: Graph,
    outputs: dict[str, tuple[str, tuple[int, ...]]],
    *,
    metadata: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``graph`` as a TF.js graph model (model.json + one shard) in ``out_dir``; returns model.json.

    ``outputs`` maps a signature key to (node name, shape); the inputs are the graph's
    placeholders. Signature keys equal node names, so ``model.predict(x)`` and
    ``model.execute(x, name)`` both work. Same directory rules as `write_layers_model`.
    """
    _check_metadata(metadata)
    if metadata is not None and any(k in metadata for k in _RESERVED_METADATA):
        raise ExportError(f"metadata may not use the keys {_RESERVED_METADATA} (TF.js reads them as the model's)")
    if not graph.placeholders or not outputs:
        raise ExportError("a graph model needs at least one input and one output")
    names = {n.name for n in graph.nodes}
    for key, (node, _) in outputs.items():
        if node not in names or key != node:
            raise ExportError(f"output {key!r} must name one of the graph's nodes")
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"output path {out} exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise ExportError(f"output directory {out} is not empty (pass force=True to replace it)")
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in graph.values.items():
        entry: dict[str, Any] = {"name": name, "shape": [int(d) for d in value.shape]}
        if value.dtype == np.int32:
            entry["dtype"] = "int32"
            chunks.append(value.astype("<i4").tobytes(order="C"))
        else:
            try:
                stored, qinfo = quantize_tensor(value, graph.storage[name])
            except ValueError as exc:
                raise ExportError(f"constant {name}: {exc}") from exc
            entry["dtype"] = "float32"
            if qinfo is not None:
                entry["quantization"] = qinfo
            chunks.append(stored.tobytes(order="C"))
        entries.append(entry)
    model_json: dict[str, Any] = {
        "format": GRAPH_MODEL_FORMAT,
        "generatedBy": "pnpjax",
        "convertedBy": "pnpjax.tfjs (direct graph-model writer)",
        "modelTopology": {"node": [n.to_json() for n in graph.nodes], "library": {}, "versions": GRAPH_DEF_VERSIONS},
        "weightsManifest": [{"paths": [SHARD_NAME], "weights": entries}],
        "signature": {
            "inputs": {n: _signature_entry(n, s) for n, s in graph.placeholders.items()},
            "outputs": {k: _signature_entry(n, s) for k, (n, s) in outputs.items()},
        },
    }
    if metadata is not None:
        model_json["userDefinedMetadata"] = metadata
    text = json.dumps(model_json, allow_nan=False, separators=(",", ":"))
    _write_model_dir(out, text, chunks)
    return model_json


def _attr_int(attr: dict[str, Any], key: str) -> int:
    return int(attr[key]["i"])


def read_graph_model(model_dir: str | os.PathLike[str]) -> GraphModel:
    """Load a graph model written by `write_graph_model` (only `GRAPH_OPS`, float32 in and out)."""
    mdir = Path(model_dir)
    if not mdir.is_dir():
        raise _fail(f"model directory {mdir} does not exist")
    mj = load_json(mdir / MODEL_JSON)
    if mj.get("format") != GRAPH_MODEL_FORMAT:
        raise _fail(f"unsupported model format {mj.get('format')!r} (expected {GRAPH_MODEL_FORMAT!r})")
    weights, _, quant_kinds = _read_weights(mdir, mj.get("weightsManifest"), ("float32", "int32"))
    topo = mj.get("modelTopology")
    if not isinstance(topo, dict) or not isinstance(topo.get("node"), list):
        raise _fail("modelTopology has no node list")
    graph = Graph()
    try:
        for node in topo["node"]:
            name, op, attr = node["name"], node["op"], node.get("attr", {})
            if op == "Placeholder":
                graph.placeholder(name, tuple(int(d["size"]) for d in attr["shape"]["shape"]["dim"]))
            elif op == "Const":
                if name not in weights:
                    raise _fail(f"constant {name!r} has no value in the weights manifest")
                dtype = "int32" if weights[name].dtype == np.int32 else "float32"
                graph.const(weights[name], name, dtype=dtype)
            else:
                graph.op(op, *node.get("input", []), name=name, attr={k: v for k, v in attr.items() if k != "T"})
    except (KeyError, TypeError, ValueError, ExportError) as exc:
        raise _fail(f"malformed graph: {exc}") from None
    sig = mj.get("signature") or {}

    def nodes_of(entries: Any) -> dict[str, str]:
        if not isinstance(entries, dict):
            raise _fail("signature inputs/outputs must be objects")
        return {k: str(v.get("name", "")).split(":")[0] for k, v in entries.items()}

    meta = mj.get("userDefinedMetadata") or {}
    if not isinstance(meta, dict):
        raise _fail("userDefinedMetadata must be a JSON object")
    kinds = quant_kinds or {"float32"}
    return GraphModel(
        graph,
        nodes_of(sig.get("inputs", {})),
        nodes_of(sig.get("outputs", {})),
        meta,
        kinds.pop() if len(kinds) == 1 else "mixed",
    )


def run_graph(graph: Graph, feeds: dict[str, np.ndarray], fetch: str, dtype: Any = np.float64) -> np.ndarray:
    """Evaluate node ``fetch`` in numpy, every float tensor in ``dtype`` (a reference, not a runtime)."""
    values: dict[str, np.ndarray] = {}
    by_name = {n.name: n for n in graph.nodes}
    for node in graph.nodes:  # nodes are added in a topological order
        if node.op == "Placeholder":
            values[node.name] = np.asarray(feeds[node.name], dtype)
            continue
        if node.op == "Const":
            v = graph.values[node.name]
            values[node.name] = v if v.dtype == np.int32 else v.astype(dtype)
            continue
        x = [values[i] for i in node.inputs]
        op = node.op
        if op in _UNARY:
            y = _UNARY[op](x[0])
        elif op in _BINARY:
            y = _BINARY[op](x[0], x[1])
        elif op == "MatMul":
            a, b = x
            y = (a.T if node.attr["transpose_a"]["b"] else a) @ (b.T if node.attr["transpose_b"]["b"] else b)
        elif op in ("Mean", "Sum"):
            fn = np.mean if op == "Mean" else np.sum
            y = fn(x[0], axis=tuple(int(a) for a in np.ravel(x[1])), keepdims=node.attr["keep_dims"]["b"])
        elif op == "ConcatV2":
            assert len(x) - 1 == _attr_int(node.attr, "N")
            y = np.concatenate(x[:-1], axis=int(x[-1]))
        elif op == "Slice":
            idx = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(x[1].tolist(), x[2].tolist()))
            y = x[0][idx]
        elif op == "Reshape":
            y = x[0].reshape(tuple(x[1].tolist()))
        elif op == "ClipByValue":
            y = np.clip(x[0], x[1], x[2])
        elif op == "SelectV2":
            y = np.where(x[0], x[1], x[2])
        else:  # pragma: no cover - Graph.op refuses anything else
            raise ExportError(f"run_graph: unsupported op {op!r} ({by_name[node.name].name})")
        values[node.name] = y.astype(dtype) if y.dtype.kind == "f" else y
        if node.name == fetch:
            break
    return values[fetch]
