"""The solver as an exportable stack of Dense layers, and the export camera's conventions.

Shared by every export (export.py: TF.js layers, the SavedModel; jsmodule.py: the standalone JS
module) and by the studies of their accuracy; it writes no files. See export.py for the stack
and the two export cameras.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from pnpjax import __version__, camera as camlib, geometry, tfjs
from pnpjax.model import Prediction
from pnpjax.tfjs import ExportError

SEED_INTRINSICS = np.array([1.0, -1.0, 0.5, 0.5])  # (fx, fy, cx, cy) of the seed camera, v up

# q_gl = q_cv @ GL_QUAT: left multiplication by (1, 0, 0, 0), the 180° rotation about x that
# maps OpenCV's camera axes to OpenGL's (camera.pose_opencv_to_gl without its canonical sign).
GL_QUAT = np.array([[0, 0, 0, -1], [0, 0, 1, 0], [0, -1, 0, 0], [1, 0, 0, 0]], np.float64)
GL_T = np.diag([1.0, -1.0, -1.0])


# --------------------------------------------------------------------------------------------
# The export camera
# --------------------------------------------------------------------------------------------


def image_intrinsics(cam: camlib.Camera | None) -> np.ndarray:
    """(fx, fy, cx, cy) with normalised coords = (image coords - c) / f; None is the seed camera."""
    return SEED_INTRINSICS.copy() if cam is None else cam.intrinsics


def frame_of(cam: camlib.Camera | None) -> str:
    """The pose frame of an export camera: 'opengl' for the seed camera, else 'opencv'."""
    return "opengl" if cam is None else "opencv"


def _camera_meta(cam: camlib.Camera | None) -> dict[str, Any]:
    fx, fy, cx, cy = (float(v) for v in image_intrinsics(cam))
    if cam is None:  # 1 image height at focal 1: fov_y = 2 atan(1/2)
        return {
            "name": "seed",
            "image": "u = x/width, v = 1 - y/height (up)",
            "fx": fx,
            "fy": fy,
            "cx": cx,
            "cy": cy,
            "fov_y_deg": 53.1301,
        }
    fov_y = float(np.degrees(2 * np.arctan2(cam.height / 2, cam.fy)))
    return {
        "name": "pixels",
        "image": "u, v in pixels (v down)",
        "fx": fx,
        "fy": fy,
        "cx": cx,
        "cy": cy,
        "width": cam.width,
        "height": cam.height,
        "fov_y_deg": round(fov_y, 4),
    }


def export_metadata(solver, cam: camlib.Camera | None, fmt: str, quantization: str, source: str) -> dict[str, Any]:
    """What a consumer needs to use an export, stored with it (userDefinedMetadata, JS, JSON)."""
    k = solver.layout.num_points
    frame = {
        "opengl": "OpenGL/three.js camera frame (x right, y up, looking down -z)",
        "opencv": "OpenCV camera frame (x right, y down, z forward)",
    }[frame_of(cam)]
    meta = {
        "format": f"pnpjax-{fmt}/1",
        "pnpjax_version": __version__,
        "source": {"config": solver.config.name, "checkpoint": source},
        "layout": solver.layout.to_dict(),
        "camera": _camera_meta(cam),
        "input": f"[N, {k}, 2] landmarks in the camera's image coordinates, layout order",
        "output": "[N, 7] qx qy qz qw tx ty tz: X_cam = R(q) X_layout + t",
        "frame": frame,
        "quaternion": "x y z w, not normalised: normalise before use",
        "units": solver.layout.units,
        "quantization": quantization,
    }
    if fmt != "tfjs":  # the js module and the SavedModel return unit quaternions
        meta["quaternion"] = "x y z w, unit, w >= 0"
    if fmt == "js":  # its own doc comment says the rest; keep the module small
        for key in ("input", "output"):
            del meta[key]
    return meta


# --------------------------------------------------------------------------------------------
# Dense stacks
# --------------------------------------------------------------------------------------------


def _params_f64(solver) -> list[tuple[np.ndarray, np.ndarray]]:
    """The MLP's (kernel, bias) pairs in order, float64."""
    p = solver.params
    names = sorted(p, key=lambda n: int(n.split("_")[-1]))
    return [(np.asarray(p[n]["kernel"], np.float64), np.asarray(p[n]["bias"], np.float64)) for n in names]


def _trunk_f64(
    solver, intrinsics: Sequence[float], center: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The MLP's (kernel, bias) pairs in float64 with image coords -> normalised -> standardised
    folded into the first layer; ``center`` (2K,) is subtracted from the image coords beforehand."""
    k = solver.layout.num_points
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    a = np.tile([1 / fx, 1 / fy], k)
    b = np.tile([-cx / fx, -cy / fy], k)
    extra = np.asarray(solver.stats.x_mean).shape[-1] - 2 * k  # model.inputs='centroid': 3 nonlinear features
    if extra:
        if (fx, fy, cx, cy) != (1.0, 1.0, 0.0, 0.0) or center is not None:
            raise ValueError("a camera folds into the first layer only for model.inputs='standardized'")
        a, b = np.ones(2 * k + extra), np.zeros(2 * k + extra)
    if center is not None:  # the layer sees u - c: a (u - c) + (b + a c)
        b = b + a * np.asarray(center, np.float64)
    x_mean, x_std = np.asarray(solver.stats.x_mean, np.float64), np.asarray(solver.stats.x_std, np.float64)
    params = _params_f64(solver)
    w0, b0 = params[0]
    # ((a u + b) - mean) / std = (a / std) u + (b - mean) / std, pushed through the first kernel.
    params[0] = ((a / x_std)[:, None] * w0, b0 + ((b - x_mean) / x_std) @ w0)
    return params


def _with_activations(params: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(kernel, bias) pairs of the MLP -> (kernel, bias, activation): relu, linear output."""
    last = len(params) - 1
    return [(w, bias, "linear" if i == last else "relu") for i, (w, bias) in enumerate(params)]


def _relu_stack(params: list[tuple[np.ndarray, np.ndarray]]) -> list[tfjs.Dense]:
    return [tfjs.Dense(*layer) for layer in _with_activations(params)]


def trunk_layers(solver, intrinsics: Sequence[float]) -> list[tfjs.Dense]:
    """The MLP with image coords -> normalised -> standardised folded into its first layer.

    Output: the standardised pose vector z (linear). ``intrinsics`` is (fx, fy, cx, cy) of the
    image coordinates the first layer takes; (1, 1, 0, 0) means normalised coordinates.
    """
    return _relu_stack(_trunk_f64(solver, intrinsics))


def precise_trunk_layers(solver, cam: camlib.Camera | None) -> list[tfjs.Dense]:
    """`precise_trunk_f64` as float32 Dense layers."""
    return [tfjs.Dense(*layer) for layer in precise_trunk_f64(solver, cam)]


def precise_trunk_f64(solver, cam: camlib.Camera | None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """`trunk_layers` (float64, as (kernel, bias, activation)) with one extra linear input layer that removes most of the float32 rounding
    the folded first layer adds (the float32 export uses it; the function is the same).

    The folded first kernel (w0 / (fx std)) rounded to float32, and its product with coordinates
    that are not centred, cost up to ~4e-5 cm on the shipped checkpoints. Which extra layer helps
    depends on where the inputs lie (measured on the shipped checkpoints' own protocols):
      * seed camera (u, v in [0, 1], faces around the centre): an identity layer with bias -c,
        c the float32 mean input, so the next layer sees centred coordinates. u - c is exact in
        float32 for u in [c/2, 2c] (Sterbenz), i.e. for nearly every in-frame face.
      * pixel cameras (landmarks anywhere in [0, width]): u - c would round for u < c/2, so the
        input is instead duplicated ([I, I], exact) and the first kernel stored as float32
        hi + lo parts (hi = float32(W), lo = float32(W - hi)); TF.js accumulates a matmul in
        float64, so the pair acts as the unrounded kernel.
    """
    k2 = 2 * solver.layout.num_points
    intr = image_intrinsics(cam)
    if cam is None:
        fx, fy, cx, cy = (float(v) for v in intr)
        x_mean = np.asarray(solver.stats.x_mean, np.float64)
        c = np.float32(x_mean * np.tile([fx, fy], k2 // 2) + np.tile([cx, cy], k2 // 2)).astype(np.float64)
        return [(np.eye(k2), -c, "linear")] + _with_activations(_trunk_f64(solver, intr, center=c))
    params = _trunk_f64(solver, intr)
    w, b = params[0]
    hi = w.astype(np.float32).astype(np.float64)
    params[0] = (np.concatenate([hi, w - hi], 0), b)
    return [(np.concatenate([np.eye(k2), np.eye(k2)], 1), np.zeros(2 * k2), "linear")] + _with_activations(params)


def _forward(layers: list[tfjs.Dense], x: np.ndarray) -> np.ndarray:
    return tfjs.predict_numpy(layers, x, dtype=np.float64)


def output_map(solver, frame: str) -> np.ndarray:
    """(7, 7) P with pose_out = pose_opencv @ P: the frame change and the quaternion's sign.

    The sign makes w >= 0 for the average face (the network's output at the mean input), so the
    raw output looks like the original's; q and -q are the same rotation either way.
    """
    p = np.eye(7)
    if frame == "opengl":
        p[:4, :4], p[4:, 4:] = GL_QUAT, GL_T
    z0 = _forward(trunk_layers(solver, (1, 1, 0, 0)), np.asarray(solver.stats.x_mean, np.float64)[None, :, None])
    y0 = z0[0] * np.asarray(solver.stats.y_std, np.float64) + np.asarray(solver.stats.y_mean, np.float64)
    if (y0 @ p)[3] < 0:
        p[:, :4] *= -1
    return p


def pose_layer_f64(solver, cam: camlib.Camera | None) -> tuple[np.ndarray, np.ndarray]:
    """The linear pose layer (float64 kernel, bias): de-standardisation, frame change, quaternion sign."""
    p = output_map(solver, frame_of(cam))
    y_std, y_mean = np.asarray(solver.stats.y_std, np.float64), np.asarray(solver.stats.y_mean, np.float64)
    return y_std[:, None] * p, y_mean @ p


def dense_layers(
    solver, cam: camlib.Camera | None, *, fold_output: bool = False, precise: bool = False
) -> list[tfjs.Dense]:
    """The TF.js Dense stack: export-camera image coords (N, K, 2) -> (N, 7) pose in its frame.

    ``fold_output`` folds the pose layer into the last trunk layer (the original's layout: one
    fewer layer, but per-tensor uint8 then loses the quaternion; kept for `quantization_study`).
    ``precise`` adds the linear input layer of `precise_trunk_layers` (float32 exports).
    """
    if solver.config.model.rotation != "quat":
        raise ExportError(
            f"the '{solver.config.model.rotation}' rotation head needs Gram-Schmidt, which a TF.js Dense stack "
            "cannot express; export it with --format js or --format savedmodel, or train a 'quat' model"
        )
    layers = precise_trunk_layers(solver, cam) if precise else trunk_layers(solver, image_intrinsics(cam))
    kernel, bias = pose_layer_f64(solver, cam)
    if fold_output:
        last = layers[-1]
        w, b = last.kernel.astype(np.float64), last.bias.astype(np.float64)
        return layers[:-1] + [tfjs.Dense(w @ kernel, b @ kernel + bias, "linear")]
    return layers + [tfjs.Dense(kernel, bias, "linear")]


def layer_quantizations(n_layers: int, quantize: str, fold_output: bool) -> list[str]:
    """Per-layer storage: the trunk as asked, the (unfolded) pose layer always float32."""
    if fold_output:
        return [quantize] * n_layers
    return [quantize] * (n_layers - 1) + ["float32"]


def quantization_label(quantize: str, fold_output: bool = False) -> str:
    if quantize == "float32":
        return "float32"
    return f"{quantize} (folded output layer)" if fold_output else f"{quantize} (pose layer float32)"


class LayersSolver:
    """A Dense-stack export behind the solver interface: normalised coords -> OpenCV-frame Prediction.

    Used to measure an export's accuracy with `train.evaluate_predictions` on any protocol.
    """

    def __init__(self, layers: list[tfjs.Dense], cam: camlib.Camera | None):
        self.weights = [(jnp.asarray(d.kernel), jnp.asarray(d.bias), d.activation == "relu") for d in layers]
        self.intrinsics = jnp.asarray(image_intrinsics(cam), jnp.float32)
        self.gl = frame_of(cam) == "opengl"

    def __call__(self, xy) -> Prediction:
        xy = jnp.asarray(xy, jnp.float32)
        h = (xy * self.intrinsics[:2] + self.intrinsics[2:]).reshape(xy.shape[0], -1)
        for w, b, relu in self.weights:
            h = h @ w + b
            h = jnp.maximum(h, 0) if relu else h
        q, t = geometry.quat_normalize(h[:, :4]), h[:, 4:7]
        if self.gl:
            q, t = camlib.pose_gl_to_opencv(q, t)
        return Prediction(geometry.quat_to_matrix(q), q, t, h)


def js_weights(solver, quantize: str) -> tuple[bytes, list[tuple[float, float]], list[tfjs.Dense]]:
    """The JS module's trunk: (stored bytes, uint8 (scale, min) per tensor, layers as the JS decodes them).

    uint8 scale and min are rounded to float32 so they print short; the decoded value is
    fround(q * scale + min) like TF.js's.
    """
    chunks, quant, decoded = [], [], []
    # float32 keeps the input standardisation out of the weights (the module applies it, in
    # float64): the stored kernels are then the checkpoint's float32 params exactly, while folded
    # ones (w0 / std) would be rounded, which costs up to 4.5e-5 cm on the realistic checkpoints.
    trunk = _relu_stack(_params_f64(solver)) if quantize == "float32" else trunk_layers(solver, (1, 1, 0, 0))
    for layer in trunk:
        pair = []
        for values in (layer.kernel, layer.bias):
            try:
                stored, qinfo = tfjs.quantize_tensor(values, quantize)
            except ValueError as e:
                raise ExportError(f"cannot store weights as {quantize}: {e}") from e
            chunks.append(stored.tobytes(order="C"))
            if quantize == "uint8":
                qinfo = {**qinfo, "scale": float(np.float32(qinfo["scale"])), "min": float(np.float32(qinfo["min"]))}
                quant.append((qinfo["scale"], qinfo["min"]))
            pair.append(tfjs.dequantize_tensor(stored, qinfo))
        decoded.append(tfjs.Dense(pair[0], pair[1], layer.activation))
    return b"".join(chunks), quant, decoded
