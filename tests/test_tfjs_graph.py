"""The TF.js graph-model export (`export --format tfjs` of recipes a layers model cannot express).

Each recipe (centroid inputs, ray translation, roll canonicalisation, their combinations) is
exported from a small solver with real standardisation statistics, loaded in TF.js 4.22
(`tf.loadGraphModel`, Node, cpu backend) and compared with JAX's solver in float64 through the same
camera adapters as `pnpjax predict`: within the layers export's 1e-5 (`helpers.ATOL`), or, where
float32 arithmetic cannot resolve that, within twice the error of JAX's own float32 path
(`pnpjax predict`) on the same inputs (`assert_float32_accurate`; the SavedModel and TensorFlow
runtimes are held to the same). TF.js/float32-JAX ratios measured: 0.26 to 1.04. Measured on these solvers (500 inputs, float64 JAX as
the reference): TF.js 1.2e-5..1.7e-5 against float32 JAX's 2.1e-5..4.7e-5, while moving every
float32 input by one ulp moves float64 JAX by 2.7e-5..8.5e-5 (the fitted output layer has a high
gain: one float32 rounding of the last hidden layer alone costs ~9e-6, numpy emulation). On a
faceapi10 recipe checkpoint trained for 60 s (realistic protocol, pixel camera, faces to 150 cm):
4.3e-5 against float32 JAX's 1.7e-4 and the one-ulp input's 4.2e-4.
`tfjs.run_graph` (numpy, float64) checks the graph itself without Node.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.lib.precision import jax_pose, pose_error
from helpers import ATOL, PIXEL_CAMERA, _xy_pool, assert_float32_accurate, jax_pose64, to_image
from pnpjax import camera, checkpoint, cli, config, export, layouts, model, protocols, tfjs
from pnpjax.model import ModelConfig
from pnpjax.tfjs import ExportError

REPO = Path(__file__).resolve().parents[1]
OP_LIST = REPO / "web" / "node_modules" / "@tensorflow" / "tfjs-converter" / "dist" / "operations" / "op_list"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")

# (inputs, translation, roll[, head]): every recipe the layers model cannot express.
RECIPES = [
    pytest.param(("centroid", "direct", "none"), id="centroid"),
    pytest.param(("standardized", "ray", "none"), id="ray"),
    pytest.param(("centroid", "ray", "none"), id="centroid-ray"),
    pytest.param(("standardized", "direct", "canonical"), id="roll"),
    pytest.param(("centroid", "ray", "canonical"), id="centroid-ray-roll"),
    # The 6d head (Gram-Schmidt, then Shepperd's matrix-to-quaternion) is a graph model too.
    pytest.param(("standardized", "direct", "none", "6d"), id="6d"),
    pytest.param(("centroid", "ray", "canonical", "6d"), id="centroid-ray-roll-6d"),
    # roll 'perspective': the camera turned onto the landmarks' mean viewing ray first.
    pytest.param(("centroid", "ray", "perspective"), id="centroid-ray-persp"),
    pytest.param(("standardized", "direct", "perspective", "6d"), id="persp-6d"),
    # inputs 'axis': the real optical axis seen from the turned camera instead of its ~0 centroid.
    pytest.param(("axis", "ray", "perspective"), id="axis-ray-persp"),
]
CAMERAS = [pytest.param(None, id="seed"), pytest.param(PIXEL_CAMERA, id="pixels")]


def model_config(recipe: tuple[str, ...], widths=(16, 16)) -> ModelConfig:
    """(inputs, translation, roll[, rotation head]) -> the ModelConfig."""
    inputs, translation, roll, rotation = (*recipe, "quat")[:4]
    return ModelConfig(widths, rotation, inputs=inputs, translation=translation, roll=roll)


@functools.cache
def recipe_solver(recipe: tuple[str, str, str], seed: int = 0) -> checkpoint.Solver:
    """A small blazeface6 seed-protocol solver of the recipe, fitted in closed form: random hidden
    layers (flax's init, small non-zero biases), the output layer by least squares on a training
    batch. Its poses lie in the protocol's range (an untrained output layer would put faces
    anywhere), the regime the tolerance of the layers export is stated for."""
    cfg = dataclasses.replace(config.get_config("blazeface6-seed"), model=model_config(recipe))
    layout = layouts.get_layout(cfg.layout)
    stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, jax.random.key(0), n=8192)
    k_init, k_bias, k_data = jax.random.split(jax.random.key(seed), 3)
    params = model.init_params(cfg.model, k_init, layout.num_points)
    names = sorted(params, key=lambda n: int(n.split("_")[-1]))
    params = {
        n: {**params[n], "bias": params[n]["bias"] + 0.05 * jax.random.normal(jax.random.fold_in(k_bias, i), (w,))}
        for i, (n, w) in enumerate((n, params[n]["bias"].shape[0]) for n in names)
    }
    batch = protocols.sample_jit(cfg.train_protocol, k_data, layout, 8192)
    ok = np.asarray(batch.valid)
    if cfg.model.inputs == "axis":  # (its inputs exist in the turned frame only)
        xy_c, _, _, axis = model.upright(cfg.model, batch.xy, stats.roll_weights)
        feats = model.features(cfg.model, xy_c, axis)
    else:  # (the other recipes are fitted on the inputs of the landmarks as they are)
        feats = model.features(cfg.model, batch.xy)
    h = np.asarray((feats - stats.x_mean) / stats.x_std, np.float64)[ok]
    for n in names[:-1]:
        h = np.maximum(h @ np.asarray(params[n]["kernel"], np.float64) + np.asarray(params[n]["bias"]), 0)
    target = np.asarray(model.standardized_target(cfg.model, stats, batch.q, batch.t, batch.xy), np.float64)[ok]
    a = np.concatenate([h, np.ones((len(h), 1))], 1)
    w = np.linalg.solve(a.T @ a + 1e-3 * np.eye(a.shape[1]), a.T @ target)
    params[names[-1]] = {"kernel": jax.numpy.asarray(w[:-1], np.float32), "bias": jax.numpy.asarray(w[-1], np.float32)}
    return checkpoint.Solver(cfg, layout, stats, params, {})


def landmarks(cam, n: int = 500) -> np.ndarray:
    """n held-out seed-protocol landmarks in the camera's image coordinates (float32)."""
    return to_image(_xy_pool(1)[:n], cam)


def node_tfjs(model_dir: Path, x: np.ndarray):
    from experiments.lib.node import tfjs_predict_in_node

    return tfjs_predict_in_node(model_dir, x)


def tfjs_op_names() -> set[str]:
    """Every op tfjs-converter 4.22 maps (its op_list sources)."""
    names: set[str] = set()
    for f in OP_LIST.glob("*.js"):
        names |= set(re.findall(r"'tfOpName':\s*'(\w+)'", f.read_text()))
    return names


# --------------------------------------------------------------------------------------------
# The graph (numpy)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cam", CAMERAS)
@pytest.mark.parametrize("recipe", RECIPES)
def test_graph_is_the_solver(recipe, cam):
    """The graph, evaluated in float64 numpy, is JAX's solver with its camera adapters (float64):
    only its float32 constants separate them (the stats; the camera's float32 rounding is
    compensated, so the reference takes the camera as given)."""
    solver = recipe_solver(recipe)
    uv = landmarks(cam).copy()
    uv[:3] = uv[:3, :1]  # three faces shrunk to a point: no roll direction, no spread (finite, as JAX)
    graph, pose = export.solver_graph(solver, cam)
    y = tfjs.run_graph(graph, {"landmarks": uv}, pose)
    # What remains is exp(y_mean) of the depth rounded to float32, a relative error <= 2^-24 of t
    # (the camera's rounding, f = f_hi (1 + f_rel), is taken out to O(f_rel^2) ~ 1e-15).
    ref = jax_pose64(solver, uv, cam)
    assert np.all(np.isfinite(y)) and np.all(pose_error(y, ref) <= 1e-12 + 2.0**-23 * np.abs(ref))
    assert np.allclose(np.linalg.norm(y[:, :4], axis=1), 1.0, atol=1e-12) and np.all(y[:, 3] >= 0)
    assert {n.op for n in graph.nodes} <= tfjs.GRAPH_OPS
    used = {i for n in graph.nodes for i in n.inputs}
    assert [n.name for n in graph.nodes if n.name not in used] == [pose]  # no dead nodes


@pytest.mark.parametrize("recipe", [("centroid", "ray", "canonical"), ("standardized", "direct", "none", "6d")])
def test_graph_compensates_the_float32_rounding_of_the_camera(recipe):
    """A camera none of whose intrinsics is a float32 number: the graph (float64 numpy) is JAX's
    solver with that camera, not with its float32 rounding (which alone moves the pose by more)."""
    cam = camera.Camera(554.2562584220407, 553.9, 320.1, 239.7, 640.0, 480.0)
    assert all(float(np.float32(v)) != v for v in (cam.fx, cam.fy, cam.cx, cam.cy))
    solver = recipe_solver(recipe)
    uv = landmarks(cam).astype(np.float64)
    graph, pose = export.solver_graph(solver, cam)
    y = tfjs.run_graph(graph, {"landmarks": uv}, pose)
    ref = jax_pose64(solver, uv, cam)
    assert np.all(pose_error(y, ref) <= 1e-12 + 2.0**-23 * np.abs(ref))
    cam32 = camera.Camera(*(float(np.float32(v)) for v in (cam.fx, cam.fy, cam.cx, cam.cy)), cam.width, cam.height)
    assert np.any(pose_error(jax_pose64(solver, uv, cam32), ref) > 1e-12 + 2.0**-23 * np.abs(ref))


def test_plain_recipe_stays_a_layers_model(tmp_path):
    """The seed drop-in (standardized, direct) is still written as a layers model."""
    solver = recipe_solver(("standardized", "direct", "none"))
    assert not export.needs_graph_model(solver.config.model)
    out = export.export_solver(solver, "tfjs", tmp_path / "plain")
    assert json.loads((out / "model.json").read_text())["format"] == "layers-model"
    assert tfjs.read_layers_model(out).input_shape == (6, 2)


@pytest.mark.parametrize("recipe", RECIPES[:3])
def test_written_graph_model_reads_back(recipe, tmp_path):
    """model.json: a graph-model whose Const nodes all have manifest values, a signature naming
    the placeholder and the pose node, and the export's metadata; it reads back to the same graph."""
    solver = recipe_solver(recipe)
    out = export.export_solver(solver, "tfjs", tmp_path / "g")
    assert sorted(p.name for p in out.iterdir()) == ["group1-shard1of1.bin", "model.json"]
    mj = json.loads((out / "model.json").read_text())
    assert mj["format"] == "graph-model"
    nodes = mj["modelTopology"]["node"]
    consts = {n["name"] for n in nodes if n["op"] == "Const"}
    assert consts == {w["name"] for w in mj["weightsManifest"][0]["weights"]}
    assert mj["signature"]["inputs"]["landmarks"]["name"] == "landmarks:0"
    assert [d["size"] for d in mj["signature"]["inputs"]["landmarks"]["tensorShape"]["dim"]] == ["-1", "6", "2"]
    assert mj["signature"]["outputs"]["pose"]["name"] == "pose:0"
    meta = mj["userDefinedMetadata"]
    assert meta["quaternion"] == "x y z w, unit, w >= 0" and meta["layout"] == solver.layout.to_dict()
    back = tfjs.read_graph_model(out)
    uv = landmarks(None, 50)
    graph, pose = export.solver_graph(solver, None)
    assert np.array_equal(
        tfjs.run_graph(back.graph, {"landmarks": uv}, "pose"), tfjs.run_graph(graph, {"landmarks": uv}, pose)
    )


def test_graph_builder_refuses_bad_names_ops_and_metadata(tmp_path):
    g = tfjs.Graph()
    x = g.placeholder("x", (-1, 2))
    for bad in ["", "a b", "-x", "x\n", "_x", 'x"}', "é"]:
        with pytest.raises(ExportError, match="invalid graph node name"):
            g.const(1.0, bad)
    with pytest.raises(ExportError, match="duplicate"):
        g.const(1.0, "x")
    with pytest.raises(ExportError, match="not one of the graph ops"):
        g.op("XlaCallModule", x)
    with pytest.raises(ExportError, match="unknown input"):
        g.op("Relu", "nope")
    with pytest.raises(ExportError, match="NaN or Inf"):
        g.const([1.0, np.nan])
    y = g.op("Relu", x, name="y")
    for meta in [{"signature": {}}, {"structuredOutputKeys": ["a"]}, {"a": float("nan")}, ["not", "a", "dict"]]:
        with pytest.raises(ExportError, match="metadata"):
            tfjs.write_graph_model(tmp_path / "m", g, {y: (y, (-1, 2))}, metadata=meta)
    with pytest.raises(ExportError, match="output"):
        tfjs.write_graph_model(tmp_path / "m", g, {"z": ("z", (-1, 2))})
    assert not (tmp_path / "m").exists()


def test_cli_exports_graph_recipes_as_js_and_tfjs(tmp_path):
    """`pnpjax export` of a centroid/ray checkpoint: `--format js` writes the JS module (which runs the
    recipe itself, tests/test_jsmodule_recipe.py), `--format tfjs` a graph model."""
    ckpt = checkpoint.save(tmp_path / "ckpt", recipe_solver(("centroid", "ray", "none")))
    assert cli.main(["export", "--checkpoint", str(ckpt), "--format", "js", "--out", str(tmp_path / "js")]) == 0
    assert (tmp_path / "js" / export.JS_FILE).is_file()
    out = tmp_path / "tfjs"
    assert cli.main(["export", "--checkpoint", str(ckpt), "--format", "tfjs", "--out", str(out)]) == 0
    assert json.loads((out / "model.json").read_text())["format"] == "graph-model"


# --------------------------------------------------------------------------------------------
# TF.js in Node
# --------------------------------------------------------------------------------------------


# Every recipe with the seed camera, the full recipe with a pixel camera too (one Node run each).
NODE_CASES = [pytest.param(r.values[0], None, id=f"{r.id}-seed", marks=r.marks) for r in RECIPES] + [
    pytest.param(("centroid", "ray", "canonical"), PIXEL_CAMERA, id="centroid-ray-roll-pixels"),
    pytest.param(("centroid", "ray", "perspective"), PIXEL_CAMERA, id="centroid-ray-persp-pixels"),
    pytest.param(("axis", "ray", "perspective"), PIXEL_CAMERA, id="axis-ray-persp-pixels"),
]


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("recipe, cam", NODE_CASES)
def test_graph_model_in_tfjs_equals_jax(recipe, cam, tmp_path):
    """`tf.loadGraphModel` in Node (cpu backend): the pose of JAX's solver (`assert_float32_accurate`);
    a unit quaternion with w >= 0; the metadata as written; only ops tfjs-converter maps."""
    solver = recipe_solver(recipe)
    out = export.export_solver(solver, "tfjs", tmp_path / "g", camera=cam or "seed")
    uv = landmarks(cam)
    y, meta = node_tfjs(out, uv)
    assert y.shape == (len(uv), 7)
    assert_float32_accurate(y, solver, uv, cam)
    assert np.abs(np.linalg.norm(y[:, :4].astype(np.float64), axis=1) - 1).max() < 1e-6 and np.all(y[:, 3] >= 0)
    assert meta == json.loads((out / "model.json").read_text())["userDefinedMetadata"]
    assert meta["camera"]["name"] == ("seed" if cam is None else "pixels")
    ops = {n["op"] for n in json.loads((out / "model.json").read_text())["modelTopology"]["node"]}
    assert ops <= tfjs_op_names(), ops - tfjs_op_names()


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("quantize", ["float16", "uint8"])
def test_quantized_graph_model_in_tfjs(quantize, tmp_path):
    """Quantised MLP weights (the rest float32): TF.js decodes them as `tfjs.dequantize_tensor`
    does (its output is the read-back graph's, in float64, up to float32 arithmetic), and the pose
    stays near the float32 export's (a loose sanity bound; test_tfjs.py bounds the quantisation itself)."""
    solver = recipe_solver(("centroid", "ray", "none"))
    out = export.export_solver(solver, "tfjs", tmp_path / quantize, quantize=quantize)
    back = tfjs.read_graph_model(out)
    assert back.quantization == "mixed"
    mj = json.loads((out / "model.json").read_text())
    quantized = {w["name"] for w in mj["weightsManifest"][0]["weights"] if "quantization" in w}
    assert quantized == {f"mlp/dense_{i}/{p}" for i in range(3) for p in ("kernel", "bias")}
    assert mj["userDefinedMetadata"]["quantization"] == f"{quantize} (MLP weights; the rest float32)"
    uv = landmarks(None)
    y, _ = node_tfjs(out, uv)
    decoded = tfjs.run_graph(back.graph, {"landmarks": uv}, "pose")
    ref = jax_pose64(solver, uv, None)
    # TF.js = the decoded weights up to float32 arithmetic (~1.6e-5 here), far below what the
    # storage itself moves (float16: 2.2e-2, uint8: 0.36 cm), so a wrong decode cannot pass.
    assert pose_error(y, decoded).max() <= 1e-4 < 1e-3 < pose_error(decoded, ref).max()
    assert pose_error(y, ref)[:, 4:].max() < (0.05 if quantize == "float16" else 1.0)


@needs_node
@pytest.mark.node
def test_hostile_names_stay_data(tmp_path):
    """Layout names that look like JSON, JS or TF.js's own metadata keys go into userDefinedMetadata
    as data: TF.js loads the model, returns them unchanged, and computes the same poses."""
    solver = recipe_solver(("centroid", "ray", "none"))
    hostile = [
        '"}]}, "signature": {"inputs": {}}',
        "</script><script>alert(1)</script>",
        "\u2028x\u2029",
        "a\\u0000b",
        "signature",
        "${process.exit(1)}",
    ]
    layout = dataclasses.replace(solver.layout, name='structuredOutputKeys", "x": "', point_names=tuple(hostile))
    evil = dataclasses.replace(solver, layout=layout)
    out = export.export_solver(evil, "tfjs", tmp_path / "evil")
    uv = landmarks(None, 100)
    y, meta = node_tfjs(out, uv)
    assert meta["layout"] == layout.to_dict() and list(meta["layout"]["points"]) == hostile
    assert set(meta) == set(json.loads((out / "model.json").read_text())["userDefinedMetadata"])
    assert_float32_accurate(y, solver, uv, None)


# --------------------------------------------------------------------------------------------
# The other export paths, for the new recipes
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_savedmodel_of_the_new_recipe_is_jax(tmp_path):
    """--format savedmodel (jax2tf) runs model.apply itself, so centroid + ray + roll need nothing
    new: TensorFlow's float32 program is as close to float64 JAX as JAX's own float32 path (TF's
    compilation differs from JAX's, so the two float32 results differ by a few ulps, 6e-5 here)."""
    tf = pytest.importorskip("tensorflow")
    solver = recipe_solver(("centroid", "ray", "canonical"))
    out = export.export_solver(solver, "savedmodel", tmp_path / "sm", camera=PIXEL_CAMERA)
    uv = landmarks(PIXEL_CAMERA)
    y = tf.saved_model.load(str(out)).signatures["serving_default"](landmarks=tf.constant(uv))["pose"].numpy()
    ref = jax_pose64(solver, uv, PIXEL_CAMERA)
    err, jax32 = pose_error(y, ref).max(), pose_error(jax_pose(solver, uv, PIXEL_CAMERA), ref).max()
    assert err <= max(ATOL, 2 * jax32)  # measured: 4.4e-5 against float32 JAX's own 3.8e-5
    assert np.all(y[:, 3] >= 0)


def test_rot6d_quaternion_every_branch():
    """The graph's Gram-Schmidt + Shepperd equals geometry.rot6d_to_matrix -> matrix_to_quat (float64)
    on random 6-vectors, whichever of the four expressions of q each row takes."""
    from pnpjax import geometry

    x6 = np.random.default_rng(0).normal(size=(4000, 6))
    g = tfjs.Graph()
    q = export._rot6d_quat(g, g.placeholder("x", (-1, 6)))
    got = tfjs.run_graph(g, {"x": x6}, q)
    with jax.enable_x64(True):
        ref = np.asarray(geometry.matrix_to_quat(geometry.rot6d_to_matrix(x6)))
    # The same rotation (q up to sign); jaxlie does not normalise q, and safe_norm's 1e-12 leaves R
    # off orthonormal by up to ~1e-8 where a 6-vector half is short, hence the normalisation.
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(np.abs(np.sum(got * ref, 1)) - 1).max() < 1e-12
    R = np.asarray(geometry.rot6d_to_matrix(x6))
    t = np.stack(
        [
            1 + R[:, 0, 0] - R[:, 1, 1] - R[:, 2, 2],
            1 - R[:, 0, 0] + R[:, 1, 1] - R[:, 2, 2],
            1 - R[:, 0, 0] - R[:, 1, 1] + R[:, 2, 2],
            1 + R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2],
        ],
        1,
    )
    assert set(np.argmax(t, 1)) == {0, 1, 2, 3}  # every branch taken


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, cam",
    [(("centroid", "ray", "canonical"), None), (("centroid", "ray", "canonical", "6d"), PIXEL_CAMERA)],
    ids=["seed", "6d-pixels"],
)
def test_graph_model_is_a_tensorflow_graph(recipe, cam, tmp_path):
    """The written model.json's GraphDef, with its constants' values put back as TensorProtos,
    imports into TensorFlow (`tf.graph_util.import_graph_def`) and runs there: a second runtime that
    checks the standard ops' semantics (argument orders, broadcasting) independently of TF.js. TF's
    float32 program differs from JAX's, so it is held to twice float32 JAX's own error."""
    import base64

    tf = pytest.importorskip("tensorflow")
    from google.protobuf import json_format

    solver = recipe_solver(recipe)
    out = export.export_solver(solver, "tfjs", tmp_path / "g", camera=cam or "seed")
    topology = json.loads((out / "model.json").read_text())["modelTopology"]
    values = tfjs.read_graph_model(out).graph.values
    for node in topology["node"]:
        if node["op"] == "Const":
            v = values[node["name"]]
            raw = v.astype("<i4" if v.dtype == np.int32 else "<f4").tobytes()
            node["attr"]["value"]["tensor"]["tensorContent"] = base64.b64encode(raw).decode()
    graph_def = json_format.ParseDict(
        {"node": topology["node"], "versions": topology["versions"]}, tf.compat.v1.GraphDef()
    )
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
    uv = landmarks(cam)
    with tf.compat.v1.Session(graph=graph) as sess:
        y = sess.run("pose:0", {"landmarks:0": uv})
    ref = jax_pose64(solver, uv, cam)
    err, jax32 = pose_error(y, ref).max(), pose_error(jax_pose(solver, uv, cam), ref).max()
    assert err <= max(ATOL, 2 * jax32), (err, jax32)
