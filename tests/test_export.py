"""Tests of pnpjax.export: each export is run in its real runtime and compared with JAX.

References are JAX's solver through the same camera adapters as `pnpjax predict`, evaluated in
float64 (`jax.enable_x64`): for translations of ~50 cm, float32 JAX itself is ~1e-5 away from
the exact value (measured 1.1e-5 on a trained blazeface6 model), so a 1e-5 comparison with
float32 JAX would test JAX's rounding rather than the export. The float32 JAX output is
checked too, within 1e-5 plus its own distance to float64.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np
import pytest

from pnpjax import camera, checkpoint, cli, export, geometry, jsmodule, tfjs
from experiments.lib import node, precision, quantization
from experiments.lib.precision import jax_pose, pose_error
from helpers import (
    ATOL,
    OTHER_CAMERA,
    PIXEL_CAMERA,
    assert_float32_accurate,
    assert_matches_jax,
    jax_pose64,
    random_solver,
    sample_landmarks,
    to_image,
)
from pnpjax.tfjs import ExportError

REPO = Path(__file__).resolve().parents[1]
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")


@pytest.fixture(scope="session")
def smoke_checkpoint(smoke_workdir: Path) -> Path:
    """The session's trained smoke run (conftest's `smoke_workdir`)."""
    return smoke_workdir


@pytest.fixture(scope="session")
def solver64() -> checkpoint.Solver:
    """The default architecture (64-64, quat head), random weights."""
    return random_solver()


def min_depth(solver, pose: np.ndarray, cam: camera.Camera | None) -> np.ndarray:
    """(N,) smallest depth of the layout's points under (N, 7) poses of the export frame (seed: OpenGL)."""
    with jax.enable_x64(True):
        q, t = pose[:, :4], pose[:, 4:]
        if cam is None:
            q, t = camera.pose_gl_to_opencv(q, t)
        X = geometry.transform_points(
            geometry.quat_to_matrix(geometry.quat_normalize(q)), t, np.asarray(solver.layout.array, np.float64)
        )
        return np.asarray(X[..., 2].min(-1))


def js_predict(module: Path, landmarks: Any = (), cam: Any = None, bad: list | None = None) -> dict:
    """Run web/tools/js_predict.mjs (the module in plain Node)."""
    payload: dict[str, Any] = {"landmarks": np.asarray(landmarks, np.float64).tolist(), "bad": bad or []}
    if cam is not None:
        payload["camera"] = cam
    result = node.js_predict_in_node(module, payload)
    result["poses"] = np.asarray(result["poses"], np.float64).reshape(-1, 7)
    result["three"] = np.asarray(result["three"], np.float64).reshape(-1, 7)
    return result


def node_tfjs(model_dir: Path, x: np.ndarray) -> tuple[np.ndarray, dict]:
    from experiments.lib.node import tfjs_predict_in_node

    return tfjs_predict_in_node(model_dir, x)


# --------------------------------------------------------------------------------------------
# Construction (numpy only)
# --------------------------------------------------------------------------------------------


def test_reference_is_pnpjax_predict(solver64):
    """The tests' jitted JAX reference is `pnpjax predict`'s computation (up to float32 rounding)."""
    uv = sample_landmarks(solver64, None, n=50)
    ref = jax_pose(solver64, uv, None)
    assert pose_error(cli.predict_poses(solver64, uv, None), ref).max() < 5e-5
    assert pose_error(jax_pose64(solver64, uv, None), ref).max() < 5e-5


def test_frame_change_matrix_is_camera_adapter():
    """q @ GL_QUAT is camera.pose_opencv_to_gl's quaternion up to sign (it is linear in q)."""
    q = np.asarray(geometry.quat_normalize(jax.random.normal(jax.random.key(3), (200, 4))))
    q_gl, _ = camera.pose_opencv_to_gl(q, np.zeros((200, 3)))
    mine = q @ export.GL_QUAT
    assert np.allclose(np.abs(np.sum(mine * np.asarray(q_gl), 1)), 1.0, atol=1e-6)


@pytest.mark.parametrize("cam", [None, PIXEL_CAMERA], ids=["seed", "pixels"])
@pytest.mark.parametrize("fold_output,precise", [(False, False), (True, False), (False, True)])
def test_dense_stack_equals_jax(solver64, cam, fold_output, precise):
    """The folded Dense stack (float64 numpy) is the solver with its adapters; w >= 0 at the mean face."""
    uv = sample_landmarks(solver64, cam, n=500)
    layers = export.dense_layers(solver64, cam, fold_output=fold_output, precise=precise)
    assert len(layers) == (3 if fold_output else 4) + precise
    assert [d.activation for d in layers] == ["linear"] * precise + ["relu", "relu"] + ["linear"] * (
        len(layers) - 2 - precise
    )
    y = tfjs.predict_numpy(layers, uv)
    assert pose_error(y, jax_pose64(solver64, uv, cam)).max() <= ATOL
    # The pose layer is a signed permutation times diag(y_std): the frame change and nothing else.
    if not fold_output:
        assert np.count_nonzero(layers[-1].kernel) == 7
    x_mean_uv = to_image(np.asarray(solver64.stats.x_mean).reshape(1, -1, 2), cam)
    assert tfjs.predict_numpy(layers, x_mean_uv)[0, 3] > 0


def test_tfjs_refuses_6d_head():
    with pytest.raises(ExportError, match="6d.*--format js or --format savedmodel"):
        export.dense_layers(random_solver("6d", widths=(8,)), None)


# --------------------------------------------------------------------------------------------
# TF.js in Node
# --------------------------------------------------------------------------------------------


@needs_node
@pytest.mark.node
def test_tfjs_trained_checkpoint_float32_equals_jax(smoke_checkpoint, tmp_path):
    """`pnpjax export --format tfjs --camera seed` of a trained checkpoint in TF.js 4.22 (cpu, Node)."""
    out = export.export_checkpoint(smoke_checkpoint, "tfjs", tmp_path / "tfjs")
    solver = checkpoint.load(smoke_checkpoint)
    uv = sample_landmarks(solver, None)
    y, meta = node_tfjs(out, uv)
    assert y.shape == (1000, 7)
    assert_matches_jax(y, solver, uv, None)
    assert meta["layout"] == solver.layout.to_dict()
    assert meta["camera"]["name"] == "seed" and meta["frame"].startswith("OpenGL")
    assert meta["quantization"] == "float32" and meta["units"] == "cm"
    assert meta["source"] == {"config": "smoke", "checkpoint": "run"}
    assert "not normalised" in meta["quaternion"]
    # Drop-in for the original model.json: same input shape, 7 outputs, one weight shard.
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["modelTopology"]["model_config"]["config"]["layers"][0]["config"]["batch_input_shape"] == [
        None,
        6,
        2,
    ]
    assert sorted(p.name for p in out.iterdir()) == ["group1-shard1of1.bin", "model.json"]


SHIPPED = sorted(p for p in (REPO / "checkpoints").iterdir() if (p / "pnpjax.json").is_file())


# Known gap (issue #3, reported): on the two realistic-protocol checkpoints (pixel camera, faces
# up to 150 cm away) the float32 export is 1.8e-5..2.3e-5 from float64 JAX. There a one-ulp change
# of a float32 pixel input already moves float64 JAX's output by 2.0e-4 and 2.7e-4 (see
# test_tfjs_realistic_error_below_input_resolution), so float32 arithmetic, which must round the
# first layer's sums, cannot reliably reach 1e-5. The strict xfail fails once an export does.
_GAP = pytest.mark.xfail(
    strict=True, reason="float32 export 1.8e-5..2.3e-5 > 1e-5 on realistic checkpoints (issue #3 gap)"
)
_REALISTIC = {"blazeface6", "faceapi10"}
# Known gap, at the edge: the large seed network (3 hidden layers) on the inputs drawn by the
# current seed sampler (issue 13 changed how it draws, not what it draws) is 1.08e-5 from float64
# JAX in TF.js; with its weights exact, TF.js's float32 arithmetic alone is 9.5e-6 on these inputs
# (8.1e-6..9.5e-6 over keys 3..8, `precision.tfjs_arithmetic`): 1e-5 is at this net's float32 floor.
_EDGE = pytest.mark.xfail(
    strict=True, reason="float32 TF.js export 1.08e-5 > 1e-5 on blazeface6-seed-large (float32 floor 9.5e-6)"
)


def _graph_recipe(ckpt: Path) -> bool:
    """The checkpoint's recipe needs a TF.js graph model (centroid inputs, ray translation, roll)."""
    m = json.loads((ckpt / "pnpjax.json").read_text())["config"]["model"]
    defaults = {"inputs": "standardized", "translation": "direct", "roll": "none"}
    return export.needs_graph_model(SimpleNamespace(**{k: m.get(k, v) for k, v in defaults.items()}))


# The two known gaps are the layers export's; a graph model (re-made checkpoints of issue 13's
# recipe) is held to `assert_float32_accurate` instead (tests/test_tfjs_graph.py).
_SHIPPED_PARAMS = [
    pytest.param(
        p,
        id=p.name,
        marks=()
        if _graph_recipe(p)
        else _GAP
        if p.name in _REALISTIC
        else _EDGE
        if p.name == "blazeface6-seed-large"
        else (),
    )
    for p in SHIPPED
]


_shipped_inputs = precision.shipped_inputs


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("ckpt", _SHIPPED_PARAMS)
def test_tfjs_export_of_every_shipped_checkpoint_equals_jax(ckpt, tmp_path):
    """Each shipped checkpoint, exported float32, in TF.js 4.22 (Node, cpu) on 1000 inputs of its own protocol."""
    solver, cam, uv = _shipped_inputs(ckpt)
    out = export.export_checkpoint(ckpt, "tfjs", tmp_path / "tfjs", camera=cam or "seed")
    y, meta = node_tfjs(out, uv)
    assert y.shape == (1000, 7) and meta["layout"] == solver.layout.to_dict()
    if _graph_recipe(ckpt):
        assert json.loads((out / "model.json").read_text())["format"] == "graph-model"
        return assert_float32_accurate(y, solver, uv, cam)
    err = pose_error(y, jax_pose64(solver, uv, cam))
    assert err.max() <= ATOL, (
        f"max |TF.js - JAX(float64)| = {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"
    )


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_js_module_of_every_shipped_checkpoint_equals_jax(ckpt, tmp_path):
    """The float32 JS module computes in float64 (JS numbers): within 1e-5 on every checkpoint,
    the realistic ones included (the web route for users who need the full precision)."""
    solver, cam, uv = _shipped_inputs(ckpt)
    path = export.export_checkpoint(
        ckpt, "js", tmp_path / "js", quantize="float32", camera=cam or "seed", refine_iters=0
    )
    js, ref = js_predict(path, uv)["poses"], jax_pose64(solver, uv, cam)
    # Where the network alone puts a point behind the camera, the module moves the pose in front
    # (its guarantee; tests/test_jsmodule.py): those rows are compared there, not here.
    front = min_depth(solver, ref, cam) > camera.MIN_DEPTH
    assert front.mean() > 0.99 and np.all(min_depth(solver, js, cam) > camera.MIN_DEPTH)
    err = pose_error(js[front], ref[front])
    assert err.max() <= ATOL, (
        f"max |JS - JAX(float64)| = {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"
    )


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("ckpt", [p for p in SHIPPED if p.name in _REALISTIC], ids=lambda p: p.name)
def test_tfjs_realistic_error_below_input_resolution(ckpt, tmp_path):
    """Where 1e-5 is out of reach (above), the float32 export still errs less than a quarter of
    what a one-ulp change of the float32 pixel inputs does to float64 JAX, and less than JAX's own
    float32 path (`pnpjax predict`) errs."""
    solver, cam, uv = _shipped_inputs(ckpt)
    out = export.export_checkpoint(ckpt, "tfjs", tmp_path / "tfjs", camera=cam)
    y, _ = node_tfjs(out, uv)
    ref = jax_pose64(solver, uv, cam)
    err = pose_error(y, ref).max()
    away = np.where(np.random.default_rng(0).random(uv.shape) < 0.5, np.inf, -np.inf).astype(np.float32)
    one_ulp = pose_error(jax_pose64(solver, np.nextafter(uv, away), cam), ref).max()
    jax32 = pose_error(jax_pose(solver, uv, cam), ref).max()
    assert err < 0.25 * one_ulp and err < jax32, (err, one_ulp, jax32)


@needs_node
@pytest.mark.node
def test_tfjs_pixel_camera_float32_equals_jax(solver64, tmp_path):
    out = export.export_solver(solver64, "tfjs", tmp_path / "tfjs", camera=PIXEL_CAMERA)
    uv = sample_landmarks(solver64, PIXEL_CAMERA)
    y, meta = node_tfjs(out, uv)
    assert_matches_jax(y, solver64, uv, PIXEL_CAMERA)
    assert meta["camera"]["fx"] == PIXEL_CAMERA.fx and meta["frame"].startswith("OpenCV")


def propagated_bound(
    f32_layers: list[tfjs.Dense], entries: list[dict], x: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rigorous bound on |y_quantised - y_float32| per output, from a-priori per-weight bounds.

    Per weight: uint8 <= scale/2 (+ float32 rounding of q*scale+min), float16 <= |w| 2^-11 (or
    2^-25 when subnormal), float32 0. Through a layer, y' - y = (h' - h) W' + h (W' - W) + (b' - b),
    so |y' - y| <= d |W'| + |h| E_W + E_b with W' the stored kernel; relu is 1-Lipschitz.
    Returns (bound, the weight bounds in manifest order).
    """

    def weight_bound(entry, w):
        q = entry.get("quantization")
        if q is None:
            return np.zeros_like(w, np.float64)
        if q["dtype"] == "float16":
            return np.maximum(np.abs(w) * 2.0**-11, 2.0**-25)
        return q["scale"] / 2 * (1 + 1e-9) + (np.abs(w) + q["scale"]) * 2.0**-24

    h = x.reshape(len(x), -1).astype(np.float64)
    d = np.zeros_like(h)
    bounds = []
    for i, layer in enumerate(f32_layers):
        ew, eb = weight_bound(entries[2 * i], layer.kernel), weight_bound(entries[2 * i + 1], layer.bias)
        bounds += [ew, eb]
        d = d @ (np.abs(layer.kernel) + ew) + np.abs(h) @ ew + eb
        h = h @ layer.kernel + layer.bias
        if layer.activation == "relu":
            h = np.maximum(h, 0)
    return d, bounds


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("quantize", ["float16", "uint8"])
def test_tfjs_quantized_within_quantisation_error(solver64, tmp_path, quantize):
    """TF.js decodes the quantised weights as written, and the output moves less than they allow."""
    out = export.export_solver(solver64, "tfjs", tmp_path / quantize, quantize=quantize)
    uv = sample_landmarks(solver64, None, n=300)
    y, meta = node_tfjs(out, uv)
    assert meta["quantization"] == f"{quantize} (pose layer float32)"
    read = tfjs.read_layers_model(out)
    assert read.quantization == "mixed"
    entries = json.loads((out / "model.json").read_text())["weightsManifest"][0]["weights"]
    assert [e.get("quantization", {}).get("dtype", "float32") for e in entries] == [quantize] * 6 + ["float32"] * 2
    # 1. TF.js runs exactly the dequantised weights.
    assert np.abs(y - tfjs.predict_numpy(read.layers, uv)).max() <= ATOL
    # 2. Every stored weight is within its a-priori bound, and so is the output.
    f32_layers = export.dense_layers(solver64, None)
    bound, weight_bounds = propagated_bound(f32_layers, entries, uv)
    stored = [a for d in read.layers for a in (d.kernel, d.bias)]
    for s, f, b in zip(stored, [a for d in f32_layers for a in (d.kernel, d.bias)], weight_bounds):
        assert np.all(np.abs(s.astype(np.float64) - f) <= b)
    y32 = tfjs.predict_numpy(f32_layers, uv)
    dev = np.abs(y - y32)
    assert np.all(dev <= bound + ATOL)
    assert dev.max() > 1e-5  # quantisation happened
    if quantize == "float16":  # small enough to be invisible at the solver's accuracy (cm)
        assert dev[:, 4:].max() < 0.2


# --------------------------------------------------------------------------------------------
# The JS module in Node
# --------------------------------------------------------------------------------------------


@needs_node
@pytest.mark.node
def test_js_module_float32_equals_jax_seed_camera(smoke_checkpoint, tmp_path):
    path = export.export_checkpoint(smoke_checkpoint, "js", tmp_path / "js", refine_iters=0)
    assert path == tmp_path / "js" / export.JS_FILE
    solver = checkpoint.load(smoke_checkpoint)
    uv = sample_landmarks(solver, None)
    r = js_predict(path, uv)
    assert_matches_jax(r["poses"], solver, uv, None)
    assert np.all(r["poses"][:, 3] >= 0)
    assert np.allclose(np.linalg.norm(r["poses"][:, :4], axis=1), 1.0, atol=1e-12)
    # Seed camera: the pose is already in three.js's frame.
    assert np.array_equal(r["three"], np.concatenate([r["poses"][:, 4:], r["poses"][:, :4]], 1))
    assert r["metadata"]["layout"] == solver.layout.to_dict() and r["metadata"]["quantization"] == "float32"
    # Flat arrays and the explicit 'seed' camera give the same numbers.
    flat = js_predict(path, uv[:20].reshape(20, -1), cam="seed")
    assert np.array_equal(flat["poses"], r["poses"][:20])


@needs_node
@pytest.mark.node
def test_js_module_pixel_camera_and_camera_argument(solver64, tmp_path):
    path = export.export_solver(solver64, "js", tmp_path / "js", camera=PIXEL_CAMERA, refine_iters=0)
    uv = sample_landmarks(solver64, PIXEL_CAMERA)
    r = js_predict(path, uv)
    assert_matches_jax(r["poses"], solver64, uv, PIXEL_CAMERA)
    # toThreeJS: the OpenGL/three.js frame, as camera.pose_opencv_to_gl.
    with jax.enable_x64(True):
        q_gl, t_gl = camera.pose_opencv_to_gl(r["poses"][:, :4], r["poses"][:, 4:])
    assert np.abs(r["three"] - np.concatenate([t_gl, q_gl], 1)).max() < 1e-12
    # Other intrinsics at run time: landmarks of another camera plus that camera.
    uv2 = sample_landmarks(solver64, OTHER_CAMERA, n=300, seed=2)
    cam2 = {"fx": OTHER_CAMERA.fx, "fy": OTHER_CAMERA.fy, "cx": OTHER_CAMERA.cx, "cy": OTHER_CAMERA.cy}
    assert_matches_jax(js_predict(path, uv2, cam=cam2)["poses"], solver64, uv2, OTHER_CAMERA)


@needs_node
@pytest.mark.node
def test_js_module_6d_head_equals_jax(tmp_path):
    solver = random_solver("6d", seed=4)
    path = export.export_solver(solver, "js", tmp_path / "js", refine_iters=0)
    uv = sample_landmarks(solver, None, n=500)
    js, ref = js_predict(path, uv)["poses"], jax_pose64(solver, uv, None)
    # An untrained network puts some points behind the camera; the module moves those poses in
    # front (its guarantee), so they are compared there (tests/test_jsmodule.py), not here.
    front = min_depth(solver, ref, None) > camera.MIN_DEPTH
    assert front.mean() > 0.95 and np.all(min_depth(solver, js, None) > camera.MIN_DEPTH)
    assert_matches_jax(js[front], solver, uv[front], None)


def js_reference(solver, decoded: list[tfjs.Dense], uv: np.ndarray) -> np.ndarray:
    """The JS module's computation in numpy, on its decoded weights (seed camera, quat head)."""
    xy = np.stack([uv[..., 0] - 0.5, 0.5 - uv[..., 1]], -1).astype(np.float64)
    y = tfjs.predict_numpy(decoded, xy) * np.float32(solver.stats.y_std) + np.float32(solver.stats.y_mean)
    q = y[:, :4] / np.linalg.norm(y[:, :4], axis=1, keepdims=True)
    q, t = q @ export.GL_QUAT, y[:, 4:] * [1, -1, -1]
    return np.concatenate([q * np.where(q[:, 3:] < 0, -1, 1), t], 1)


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("quantize", ["float16", "uint8"])
def test_js_module_quantized_decodes_its_weights(solver64, tmp_path, quantize):
    """The inlined float16/uint8 weights decode in JS to exactly what Python stored; sizes."""
    path = export.export_solver(solver64, "js", tmp_path / "js", quantize=quantize, refine_iters=0)
    uv = sample_landmarks(solver64, None, n=300)
    r = js_predict(path, uv)
    blob, _, decoded = export.js_weights(solver64, quantize)
    assert np.abs(r["poses"] - js_reference(solver64, decoded, uv)).max() <= ATOL
    assert pose_error(r["poses"], jax_pose64(solver64, uv, None)).max() > ATOL  # it is quantised
    text = path.read_bytes()
    if quantize == "float16":
        assert base64.b64encode(blob) in text  # sizes: tests/test_jsmodule.py
    else:  # uint8 codes as text (jsmodule.encode_uint8), shorter than their base64
        stored = jsmodule.module_data(solver64, None, "uint8", "", refine_iters=0, refine_cost="ml")["weights"]
        assert stored.encode() in text and len(stored) < len(base64.b64encode(blob))


BAD_INPUTS = [
    ({"landmarks": [[0.5, 0.5]] * 5}, "6 [x, y] pairs or 12 numbers, got 5"),
    ({"landmarks": [0.5] * 11}, "got 11"),
    ({"landmarks": [[0.5, 0.5]] * 5 + [[0.5, None]]}, "landmark 5 y is null, not a finite number"),
    ({"landmarks": [0.5] * 11 + ["0.5"]}, 'landmark 5 y is "0.5", not a finite number'),
    ({"landmarks": [[0.5, 0.5]] * 5 + [[0.5]]}, "landmark 5 is not an [x, y] pair"),
    ({"landmarks": [[0.5, 0.5]] * 5 + ["ab"]}, "landmark 5 is not an [x, y] pair"),
    ({"landmarks": None}, "got null"),
    ({"landmarks": "0.5, 0.5"}, "landmarks must be"),
    ({"landmarks": [[0.5, 0.5]] * 6, "camera": {"fx": 500, "fy": 500, "cx": 320}}, "camera must be"),
    ({"landmarks": [[0.5, 0.5]] * 6, "camera": "opencv"}, "camera must be"),
]


@needs_node
@pytest.mark.node
def test_js_module_rejects_bad_input(solver64, tmp_path):
    path = export.export_solver(solver64, "js", tmp_path / "js", quantize="uint8")
    bad = [dict(b) for b, _ in BAD_INPUTS]
    r = js_predict(path, bad=bad)
    for (case, expected), message in zip(BAD_INPUTS, r["errors"]):
        assert message is not None, f"no error for {case}"
        assert message.startswith("Error: pnpjax estimatePose: ") and expected in message, (case, message)
        assert "\n" not in message
    assert js_nonfinite(path) == [
        "Error: pnpjax estimatePose: landmark 2 x is NaN, not a finite number",
        "Error: pnpjax estimatePose: landmark 0 y is Infinity, not a finite number",
    ]


def js_nonfinite(path: Path) -> list[str]:
    """Error messages for NaN and Infinity landmarks (not expressible in JSON)."""
    script = (
        f"import {{ estimatePose }} from {json.dumps(path.as_uri())};"
        "const out = [];"
        "for (const bad of [[0.5, 0.5, 0.5, 0.5, NaN, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [[0.5, Infinity], ...Array(5).fill([0.5, 0.5])]]) {"
        "  try { estimatePose(bad); out.push(null); } catch (e) { out.push(`${e.constructor.name}: ${e.message}`); } }"
        "console.log(JSON.stringify(out));"
    )
    proc = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------------------------
# SavedModel in TensorFlow
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.slow
def test_savedmodel_equals_jax_batch_1_and_1000(tf, smoke_checkpoint, tmp_path):
    out = export.export_checkpoint(smoke_checkpoint, "savedmodel", tmp_path / "sm")
    solver = checkpoint.load(smoke_checkpoint)
    meta = json.loads((out / export.SAVEDMODEL_META).read_text())
    assert meta["layout"] == solver.layout.to_dict() and meta["quaternion"] == "x y z w, unit, w >= 0"
    loaded = tf.saved_model.load(str(out))
    serve = loaded.signatures["serving_default"]
    uv = sample_landmarks(solver, None)
    for n in (1, 1000):
        y = serve(landmarks=tf.constant(uv[:n]))["pose"].numpy()
        assert y.shape == (n, 7)
        assert_matches_jax(y, solver, uv[:n], None)
        assert np.all(y[:, 3] >= 0)
    assert np.array_equal(
        loaded.pose(tf.constant(uv[:7]))["pose"].numpy(), serve(landmarks=tf.constant(uv[:7]))["pose"].numpy()
    )


def test_savedmodel_without_tensorflow_is_a_clear_error(solver64, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(ExportError, match=r"needs TensorFlow.*pip install 'pnpjax\[tf\]'"):
        export.export_solver(solver64, "savedmodel", tmp_path / "sm")
    assert not (tmp_path / "sm").exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Output directories and the CLI
# --------------------------------------------------------------------------------------------


def test_export_refuses_non_empty_dir_unless_force(solver64, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for fmt in ("tfjs", "js"):
        with pytest.raises(ExportError, match="not empty.*--force"):
            export.export_solver(solver64, fmt, out)
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export.export_solver(solver64, "js", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [export.JS_TYPES_FILE, export.JS_FILE]  # keep.txt gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        export.export_solver(solver64, "tfjs", tmp_path / "file", force=True)


def test_failed_export_leaves_nothing_behind(solver64, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def broken(out_dir, *args, **kwargs):
        (out_dir / "model.json").write_text("{half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_tfjs", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_solver(solver64, "tfjs", out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directories
    assert [p.name for p in out.iterdir()] == ["old.txt"]


@pytest.fixture(scope="module")
def checkpoint_6d(tmp_path_factory) -> Path:
    return checkpoint.save(tmp_path_factory.mktemp("ckpt6d") / "model", random_solver("6d", widths=(8,)))


def test_cli_export_writes_and_errors_are_one_line(smoke_checkpoint, checkpoint_6d, tmp_path, capsys):
    out = tmp_path / "tfjs"
    assert (
        cli.main(
            [
                "export",
                "--checkpoint",
                str(smoke_checkpoint),
                "--format",
                "tfjs",
                "--out",
                str(out),
                "--quantize",
                "uint8",
            ]
        )
        == 0
    )
    assert f"wrote tfjs export to {out}" in capsys.readouterr().out
    assert (
        json.loads((out / "model.json").read_text())["userDefinedMetadata"]["quantization"]
        == "uint8 (pose layer float32)"
    )
    cases = {
        "not empty": ["--format", "tfjs", "--out", str(out)],
        "bad camera": ["--format", "js", "--out", str(tmp_path / "a"), "--camera", "500,500,320"],
        "not found": ["--format", "js", "--out", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "missing")],
        "float32 weights": ["--format", "savedmodel", "--out", str(tmp_path / "c"), "--quantize", "uint8"],
    }
    for expected, args in cases.items():
        if "--checkpoint" not in args:
            args = ["--checkpoint", str(smoke_checkpoint)] + args
        assert cli.main(["export"] + args) == 2, expected
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pnpjax export: error: ") and expected in lines[0], (
            expected,
            captured.err,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfjs"]  # nothing written by the failures
    # A 6d head (Gram-Schmidt) is no Dense stack: its tfjs export is a graph model.
    assert (
        cli.main(["export", "--checkpoint", str(checkpoint_6d), "--format", "tfjs", "--out", str(tmp_path / "6d")]) == 0
    )
    assert json.loads((tmp_path / "6d" / "model.json").read_text())["format"] == "graph-model"


def test_cli_export_exit_status_in_a_subprocess(smoke_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pnpjax",
            "export",
            "--checkpoint",
            str(smoke_checkpoint),
            "--format",
            "js",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"pnpjax export: error: output directory {out} is not empty (use --force to replace it)"
    ]


# --------------------------------------------------------------------------------------------
# The quantisation study (experiments/export_quantization.py)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quantization_study_sizes_and_accuracy(solver64):
    rows = quantization.quantization_study(solver64, n=2000)
    by_name = {r["export"]: r for r in rows}
    assert list(by_name) == [
        "JAX (checkpoint)",
        "tfjs float32",
        "tfjs float16 (pose layer float32)",
        "tfjs uint8 (pose layer float32)",
        "tfjs uint8 (folded output layer)",
    ]
    # 5,447 parameters (12-64-64-7) plus the float32 pose layer (7x7 + 7); float32 also has the
    # exact centring input layer (12x12 + 12) that export_solver writes for the seed camera.
    assert [by_name[n].get("shard_bytes") for n in list(by_name)[1:]] == [
        4 * (5503 + 156),
        2 * 5447 + 4 * 56,
        5447 + 4 * 56,
        5447,
    ]
    jax_l1 = by_name["JAX (checkpoint)"]["seed_l1_3d"]
    assert abs(by_name["tfjs float32"]["seed_l1_3d"] - jax_l1) < 1e-3 * jax_l1
    assert abs(by_name["tfjs float16 (pose layer float32)"]["seed_l1_3d"] - jax_l1) < 1e-2 * jax_l1
    assert (
        by_name["tfjs uint8 (pose layer float32)"]["js_bytes"]
        < by_name["tfjs float16 (pose layer float32)"]["js_bytes"]
    )
    report = quantization.quantization_report({"random": rows}, 2000)
    assert "| tfjs uint8 (pose layer float32) |" in report and "seed L1-3D" in report


@needs_node
@pytest.mark.node
def test_precision_study_of_a_shipped_checkpoint():
    """experiments/export_precision.py's numbers: the float32 JS module is float64 arithmetic on
    exact weights; TF.js float32 sits within 1e-5 here and below the inputs' own resolution."""
    ckpt = REPO / "checkpoints" / "blazeface6-seed"
    row = precision.precision_study(ckpt, n=100)
    tol = max(ATOL, 2 * row["jax_float32"]) if _graph_recipe(ckpt) else ATOL  # graph: helpers.assert_float32_accurate
    # float64 in both; the recipe's nonlinear steps (spread, log, exp, roll) in another operation
    # order than JAX's leave ~2e-9 (cm, on translations of ~60 cm) where the plain stack leaves < 1e-9.
    js_tol = 1e-8 if _graph_recipe(ckpt) else 1e-9
    assert row["js_node"] < js_tol and row["tfjs_node"] <= tol and ATOL < row["one_ulp_input"]
    assert row["jax_float32"] > 0 and 0 <= row["emulation_vs_node"] < 1e-4
    report = precision.precision_report([row], "python experiments/export_precision.py")
    assert "| blazeface6-seed | seed |" in report and "`python experiments/export_precision.py`" in report
