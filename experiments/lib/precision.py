"""How close the web exports come to the exact (float64) solver, and what limits them (issue #3).

`precision_study` exports a checkpoint as a float32 TF.js layers model and as a float32 JS module,
runs both in Node on n in-distribution inputs of the checkpoint's own protocol, and compares them
with JAX in float64 on the same float32 inputs. Beside them it measures what bounds any float32
pipeline:

  * JAX's own float32 path (`pnpjax predict`);
  * the inputs' resolution: how far float64 JAX moves when every input coordinate moves by one
    float32 ulp (in a random direction);
  * the exported layer stack with exact (float64) weights but TF.js's arithmetic (each matmul
    accumulated in float64 and rounded to float32, then the bias added in float32): the floor of
    any weight storage for this stack. This is a numpy emulation; the study also reports how far
    it is from TF.js itself on the stored weights (an ulp here and there: TF.js's summation
    order differs).

Realistic-protocol checkpoints take pixels of `PIXEL_CAMERA` (a 640x480 webcam at 60° horizontal FOV); seed
ones the original's coordinates.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lib.report import md_table
from pnpjax import camera, checkpoint, export, geometry, model, protocols, tfjs
from experiments.lib import node

PIXEL_CAMERA = camera.Camera(
    554.2562584220408, 554.2562584220408, 322.5, 238.0, 640.0, 480.0
)  # hfov 60°, 640x480: the study's webcam


@functools.partial(jax.jit, static_argnums=(0, 4))
def _jax_pose(model_cfg, params, stats, uv, seed_camera: bool, intrinsics):
    """JAX's solver on image coords, as `pnpjax predict` runs it (adapters of camera.py)."""
    if seed_camera:
        xy = camera.pixels_to_normalized(camera.seed_to_pixels(uv), camera.SEED_CAMERA.intrinsics)
    else:
        xy = camera.pixels_to_normalized(uv, intrinsics)
    p = model.apply(model_cfg, params, stats, xy)
    q, t = camera.pose_opencv_to_gl(p.q, p.t) if seed_camera else (geometry.quat_canonical(p.q), p.t)
    return jnp.concatenate([q, t], -1)


def jax_pose(solver, uv: np.ndarray, cam: camera.Camera | None, dtype=np.float32) -> np.ndarray:
    """(N, 7) pose of JAX's solver in the camera's frame (w >= 0), computed in float32 or float64."""
    with jax.enable_x64(dtype == np.float64):
        cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        intr = cast(camera.SEED_CAMERA.intrinsics if cam is None else cam.intrinsics)
        stats = model.Stats(*(None if a is None else cast(a) for a in solver.stats))
        return np.asarray(
            _jax_pose(
                solver.config.model, jax.tree_util.tree_map(cast, solver.params), stats, cast(uv), cam is None, intr
            )
        )


def aligned(pose: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N, 7) poses with the quaternion normalised and sign-aligned to ref's (q and -q are one rotation)."""
    q = np.asarray(pose[:, :4], np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    q = q * np.where(np.sum(q * ref[:, :4], axis=1, keepdims=True) < 0, -1.0, 1.0)
    return np.concatenate([q, pose[:, 4:]], 1)


def pose_error(pose: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Elementwise |pose - ref| of (N, 7) poses, quaternions compared up to sign."""
    return np.abs(aligned(pose, ref) - ref)


def shipped_inputs(ckpt: str | Path, n: int = 1000, key: int = 3):
    """(solver, export camera, (n, K, 2) float32 image coords) of a checkpoint's own test protocol."""
    solver = checkpoint.load(ckpt)
    cam = None if solver.config.protocol == "seed" else PIXEL_CAMERA
    proto = solver.config.test_protocol
    xy = np.asarray(protocols.sample_jit(proto, jax.random.key(key), solver.layout, n).xy)
    if cam is None:
        uv = camera.pixels_to_seed(camera.normalized_to_pixels(xy, camera.SEED_CAMERA.intrinsics))
    else:
        uv = camera.normalized_to_pixels(xy, cam.intrinsics)
    return solver, cam, np.asarray(uv, np.float32)


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float64).astype(np.float32).astype(np.float64)


def tfjs_arithmetic(layers: list[tuple[np.ndarray, np.ndarray, bool]], x: np.ndarray) -> np.ndarray:
    """A Dense stack evaluated as TF.js's cpu backend does, with the weights as given (float64)."""
    h = _f32(np.asarray(x).reshape(len(x), -1))
    for w, b, relu in layers:
        h = _f32(_f32(h @ w) + _f32(b))
        h = np.maximum(h, 0) if relu else h
    return h


def precision_study(ckpt: str | Path, n: int = 1000, key: int = 3) -> dict[str, Any]:
    """Max |.| over n inputs and the 7 outputs against float64 JAX (see the module docstring)."""
    solver, cam, uv = shipped_inputs(ckpt, n, key)
    ref = jax_pose(solver, uv, cam, np.float64)
    away = np.where(np.random.default_rng(0).random(uv.shape) < 0.5, np.inf, -np.inf).astype(np.float32)
    out = {
        "checkpoint": Path(ckpt).name,
        "camera": "seed" if cam is None else "pixels",
        "n": n,
        "jax_float32": pose_error(jax_pose(solver, uv, cam), ref).max(),
        "one_ulp_input": pose_error(jax_pose(solver, np.nextafter(uv, away), cam, np.float64), ref).max(),
    }
    graph = export.needs_graph_model(solver.config.model)
    if not graph:
        exact = [(w, b, act == "relu") for w, b, act in export.precise_trunk_f64(solver, cam)]
        exact.append((*export.pose_layer_f64(solver, cam), False))
        out["tfjs_arithmetic_exact_weights"] = pose_error(tfjs_arithmetic(exact, uv), ref).max()
    else:  # a graph model computes op by op on float32 tensors: no exact-weight stack to emulate
        out["tfjs_arithmetic_exact_weights"] = None
    with tempfile.TemporaryDirectory(prefix="pnpjax-precision-") as tmp:
        d = export.export_solver(solver, "tfjs", Path(tmp) / "tfjs", camera=cam or "seed")
        y = node.tfjs_predict_in_node(d, uv)[0]
        out["tfjs_node"] = pose_error(y, ref).max()
        # How well the emulation stands for TF.js: the two on the same (stored float32) weights
        # (for a graph model, `tfjs.run_graph` in float32).
        if graph:
            emulated = tfjs.run_graph(tfjs.read_graph_model(d).graph, {"landmarks": uv}, "pose", np.float32)
        else:
            stored = [
                (layer.kernel.astype(np.float64), layer.bias.astype(np.float64), layer.activation == "relu")
                for layer in tfjs.read_layers_model(d).layers
            ]
            emulated = tfjs_arithmetic(stored, uv)
        out["emulation_vs_node"] = float(np.abs(emulated - y).max())
        try:
            m = export.export_solver(solver, "js", Path(tmp) / "js", camera=cam or "seed", refine_iters=0)
        except export.ExportError:  # a recipe the JS module does not run (yet): n/a
            out["js_node"] = None
        else:
            poses = np.asarray(
                node.js_predict_in_node(m, {"landmarks": uv.astype(np.float64).tolist()})["poses"], np.float64
            )
            out["js_node"] = pose_error(poses.reshape(-1, 7), ref).max()
    return {k: float(v) if isinstance(v, np.floating) else v for k, v in out.items()}


def precision_report(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Float32 web exports against the exact solver",
        "",
        f"Generated by `{command}` (do not edit; `experiments/lib/precision.py`).",
        "",
        f"Max absolute error over {rows[0]['n']} inputs of each checkpoint's own test protocol (key 3, the inputs of "
        "`tests/test_export.py`) and the 7 outputs (quaternion up to sign; translation in cm), against JAX in float64 "
        "on the same float32 inputs. Issue #3 asks for ≤ 1e-5. `TF.js (Node)`: the float32 `pnpjax export --format "
        "tfjs` in TF.js 4.22; `JS module (Node)`: the float32 `--format js` module; `JAX float32`: `pnpjax predict`; "
        "`one-ulp input`: float64 JAX when every input coordinate moves by one float32 ulp; `exact weights, TF.js "
        "arithmetic`: the exported stack with float64 weights in a numpy emulation of TF.js's cpu arithmetic (each "
        "matmul accumulated in float64 and rounded to float32, then the bias added in float32), i.e. what no weight "
        "storage can beat; `emulation vs TF.js`: that emulation against TF.js itself on the stored float32 weights "
        "(raw outputs), the emulation's own accuracy. A checkpoint whose recipe needs a graph model (centroid "
        "inputs, ray translation, roll) is exported as one: its emulation is `pnpjax.tfjs.run_graph` in float32, and "
        "the exact-weight stack does not apply (n/a).",
        "",
    ]
    head = [
        "checkpoint",
        "camera",
        "TF.js (Node)",
        "JS module (Node)",
        "JAX float32",
        "one-ulp input",
        "exact weights, TF.js arithmetic",
        "emulation vs TF.js",
    ]
    keys = [
        "tfjs_node",
        "js_node",
        "jax_float32",
        "one_ulp_input",
        "tfjs_arithmetic_exact_weights",
        "emulation_vs_node",
    ]
    lines += md_table(
        head,
        [[r["checkpoint"], r["camera"], *("n/a" if r[k] is None else f"{r[k]:.2g}" for k in keys)] for r in rows],
        ["", "", *":" * len(keys)],
    ).splitlines()
    return "\n".join(lines) + "\n"
