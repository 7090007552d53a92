"""The original published models (TF.js layers, uint8) as pnpjax solvers, for side-by-side runs.

Each original model maps the original's image coordinates (u = x/width right, v = 1 - y/height
up, [N, K, 2]) to a standardised (qx qy qz qw tx ty tz) in its OpenGL-like camera frame; the
de-standardisation constants are those published with it (SEED.md). `SeedSolver` wraps it
with the adapters so that it takes and returns the same things as a pnpjax solver:
normalised OpenCV camera coordinates in, an OpenCV-frame pose out.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import camera, geometry, layouts, protocols, tfjs
from pnpjax.errors import CheckpointError
from pnpjax.model import Prediction
from pnpjax.solver import PoseSolver

# y * scale + mean, from SEED.md (the faceapi10 constants are the training notebook's printout).
SEED_DESTANDARDISATION = {
    "blazeface6": (
        [-7.08806138e-3, -1.44241489e-3, 2.81328166e-4, 8.7496564e-1, 6.67847506e-2, -5.86922866e-1, -6.17359176e1],
        [0.2757907, 0.27300393, 0.2815135, 0.06738858, 19.90217464, 20.18727223, 14.15780724],
    ),
    "faceapi10": (
        [-2.12522415e-3, 2.64508744e-4, -1.33624768e-3, 8.72294454e-1, 2.55325474e-2, -2.17989691e-1, -6.12684035e1],
        [0.27886152, 0.27881693, 0.28100003, 0.06806152, 20.15907429, 20.19870753, 14.49564505],
    ),
}
_LAYOUT_BY_K = {6: layouts.BLAZEFACE6, 10: layouts.FACEAPI10}


class SeedSolver(PoseSolver):
    """An original published model behind pnpjax's solver interface (`pnpjax.solver.PoseSolver`):
    normalised OpenCV coordinates in, an OpenCV-frame pose out, through the seed adapters.

    `weights` holds its Dense layers' (kernel, bias, activation) as published (uint8 weights
    dequantised to float32); `pure`'s variables are (the (kernel, bias) pairs, mean, scale).
    """

    def __init__(self, model_dir: Path, model: tfjs.LayersModel, layout: layouts.Layout):
        self.name = f"original {layout.name} ({model_dir.name})"
        self.layout = layout
        self.tfjs_model = model
        mean, scale = SEED_DESTANDARDISATION[layout.name]
        self.mean = jnp.asarray(mean, jnp.float32)
        self.scale = jnp.asarray(scale, jnp.float32)
        self.weights = [(jnp.asarray(d.kernel), jnp.asarray(d.bias), d.activation) for d in model.layers]
        self.meta = {"format": "original TF.js layers model", "path": str(model_dir), "layout": layout.to_dict()}

    @property
    def test_protocol(self) -> protocols.SeedProtocol:
        """The original recipe's test protocol (s = 1), which the original models were made for."""
        return protocols.SEED_TEST

    @functools.cached_property
    def pure(self):
        """(fn, variables) as `checkpoint.Solver.pure`: fn(variables, xy) -> Prediction."""
        acts = tuple(act for _, _, act in self.weights)
        variables = ([(W, b) for W, b, _ in self.weights], self.mean, self.scale)
        return functools.partial(_seed_apply, acts), variables

    def raw(self, uv_seed) -> jnp.ndarray:
        """The original network on original image coords: (N, K, 2) -> (N, 7) de-standardised."""
        fn, (layers, mean, scale) = self.pure
        return _seed_raw(fn.args[0], layers, mean, scale, uv_seed)


def _seed_raw(acts, layers, mean, scale, uv_seed) -> jnp.ndarray:
    x = jnp.asarray(uv_seed, jnp.float32)
    x = x.reshape(x.shape[:-2] + (-1,))
    for (W, b), act in zip(layers, acts):
        x = x @ W + b
        if act == "relu":
            x = jnp.maximum(x, 0)
    return x * scale + mean


@functools.partial(jax.jit, static_argnums=0)
def _seed_apply(acts, variables, xy) -> Prediction:
    """The original model on normalised OpenCV coords, its pose returned in the OpenCV frame
    (compiled once per shape; inlined when traced)."""
    layers, mean, scale = variables
    xy = jnp.asarray(xy, jnp.float32)
    # Normalised OpenCV coords -> pixels of the seed camera -> the original's (u, v up).
    uv = camera.pixels_to_seed(camera.normalized_to_pixels(xy, camera.SEED_CAMERA.intrinsics))
    y = _seed_raw(acts, layers, mean, scale, uv)
    q_gl = geometry.quat_normalize(y[..., :4])
    q, t = camera.pose_gl_to_opencv(q_gl, y[..., 4:7])
    R = geometry.quat_to_matrix(q)
    return Prediction(R, q, t, y)


def load_seed_model(model_dir: str | Path) -> SeedSolver:
    d = Path(model_dir)
    try:
        m = tfjs.read_layers_model(d)
    except tfjs.ModelFormatError as e:
        raise CheckpointError(str(e)) from e
    k = m.input_shape[0]
    if k not in _LAYOUT_BY_K or m.layers[-1].kernel.shape[1] != 7:
        raise CheckpointError(
            f"{d}: not one of the original pose models (K={k}; expected 6 or 10 landmarks, 7 outputs)"
        )
    return SeedSolver(d, m, _LAYOUT_BY_K[k])


def seed_predict_numpy(model: tfjs.LayersModel, layout_name: str, uv_seed: np.ndarray) -> np.ndarray:
    """Reference path (numpy only): the original model and its constants, its own frame."""
    mean, scale = SEED_DESTANDARDISATION[layout_name]
    return tfjs.predict_numpy(model.layers, uv_seed) * np.asarray(scale) + np.asarray(mean)
