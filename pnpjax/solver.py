"""What every loaded solver offers: a pure JAX function, and poses for landmarks in an image.

Two kinds of solver come out of `pnpjax.load`: `pnpjax.checkpoint.Solver` (a pnpjax model: a
shipped checkpoint or a training workdir) and `pnpjax.seed_import.SeedSolver` (an original
published TF.js model). Both are `PoseSolver`s:

* `fn, variables = solver.pure` is the solver as a pure function `fn(variables, xy)` of its
  variables and the normalised landmarks, for `jax.jit`, `jax.vmap` and `jax.grad`;
  `solver(xy)` is `fn(variables, xy)`.
* `solver.predict(landmarks, camera=...)` takes image coordinates and returns the (N, 7) array
  that `pnpjax predict` writes, in the same conventions (the CLI calls it).

`evaluate(solver, "seed")` is `pnpjax eval` for one solver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from jax.typing import ArrayLike

from pnpjax.errors import InputError

if TYPE_CHECKING:  # imported lazily at run time: `import pnpjax` stays light
    from pnpjax import camera, layouts, protocols, refine
    from pnpjax.model import Prediction

REFINE_COSTS = ("image", "object", "ml")


class PoseSolver:
    """A solver of one layout: normalised landmarks (OpenCV camera) -> pose (OpenCV camera).

    Attributes:
      layout: the K 3D keypoints it solves for (`pnpjax.layouts.Layout`; units, e.g. cm).
    """

    layout: layouts.Layout

    @property
    def pure(self) -> tuple[Callable[[Any, ArrayLike], Prediction], Any]:
        """(fn, variables): the solver as a pure JAX function, for jit, vmap and grad.

        `fn(variables, xy)` takes a pytree shaped like `variables` (the solver's parameters and
        constants) and (..., K, 2) intrinsics-normalised landmarks `((u - cx) / fx, (v - cy) / fy)`
        of the layout's K points in its order (OpenCV camera: x right, y down). It returns a
        `pnpjax.model.Prediction`: R (..., 3, 3), q (..., 4) unit (x, y, z, w) and t (..., 3), the
        pose `X_camera = R X_layout + t` in the OpenCV camera frame with t in layout units, and z,
        the raw network output. `fn` is the same object on every access (a stable static argument
        of `jax.jit`).
        """
        raise NotImplementedError

    def __call__(self, xy: ArrayLike) -> Prediction:
        """The solver on (..., K, 2) normalised landmarks: `fn(variables, xy)` of `pure`."""
        fn, variables = self.pure
        return fn(variables, xy)

    @property
    def protocol(self) -> str:
        """The inputs it was trained for: "seed" (the original's recipe) or "realistic" (pixels)."""
        return "seed"

    @property
    def test_protocol(self) -> protocols.Protocol:
        """The protocol `pnpjax eval` and `predict`'s "ml" refinement assume for this solver."""
        from pnpjax import protocols

        return protocols.SEED_TEST

    def predict(
        self,
        landmarks: ArrayLike,
        camera: str | Sequence[float] | camera.Camera | None = None,
        refine: int = 0,
        refine_cost: str = "image",
        noise: refine.NoiseModel | None = None,
        *,
        refine_retry: int = 0,
        what: str = "landmarks",
    ) -> np.ndarray:
        """Poses for landmarks in an image: the (N, 7) array `pnpjax predict` writes.

        Args:
          landmarks: (N, K, 2) or (K, 2) image positions of the layout's K points, in its order,
            or the full output of the detector the layout names (e.g. (N, 68, 2) face-api.js points
            for faceapi10; see `pnpjax.detectors`). With `camera="seed"`, the original's image
            coordinates: u = x / width (right), v = 1 - y / height (up), in [0, 1]. Otherwise
            pixels (u right, v down).
          camera: "seed", or the pixel intrinsics `(fx, fy, cx, cy, width, height)` (also as the
            string "fx,fy,cx,cy,width,height", "hfov=DEG,WxH" or a `pnpjax.camera.Camera`).
            Default: "seed" for solvers of the seed protocol (and the original models); a solver
            of the realistic protocol takes pixels and needs the camera.
          refine: Levenberg-Marquardt iterations after the network (0: the network alone).
          refine_cost: "image" (2D reprojection error), "object" (point-to-ray distances, SQPnP's
            cost) or "ml" (the likelihood under `noise`).
          noise: the 3D and 2D noise the "ml" cost assumes (`pnpjax.refine.NoiseModel`); default:
            that of `test_protocol`.
          refine_retry: with refine_cost "ml", up to this many more iterations for the rows whose fit
            is gross after `refine` (see `pnpjax.refine.refine_pose`; the JS module's default is 20).
          what: what error messages call the input (the CLI passes the file name).

        Returns:
          (N, 7) float32 `qx qy qz qw tx ty tz`, the quaternion unit with w >= 0, translation in
          the layout's units (cm for the face layouts). With `camera="seed"` the pose is in the
          original's OpenGL-like camera frame (x right, y up, camera looking down -z, as three.js);
          otherwise in the OpenCV camera frame (x right, y down, z forward).

        Raises:
          pnpjax.errors.InputError: landmarks of the wrong shape, not finite, beyond the limits of
            `pnpjax.validate` (e.g. more than 1e3 focal lengths off the optical axis), a negative
            `refine`, an unknown `refine_cost`, no camera for a pixel solver; or a pose that is not
            finite or lies behind the camera (such a row is never returned). Messages name the row.
          pnpjax.camera.CameraError: a camera that cannot be used.
        """
        from pnpjax import camera as camlib
        from pnpjax import inference, validate

        x = check_landmarks(landmarks, self.layout.num_points, what, self.layout)
        if camera is None:
            if self.protocol != "seed":
                raise InputError("this solver takes pixels: give the camera (fx, fy, cx, cy, width, height)")
            camera = "seed"
        cam = camlib.parse_camera(camera)
        refine = _check_refine(refine, refine_cost)
        if cam is not None:
            validate.to_normalized(x, cam.intrinsics, what, keep=False)  # float64 rules, bounded memory
        else:  # seed coords -> the seed camera's 1x1 pixels (v flipped)
            validate.to_normalized(
                np.stack([x[..., 0], 1.0 - x[..., 1]], -1), camlib.SEED_CAMERA.intrinsics, what, keep=False
            )
        if noise is None:
            from pnpjax import refine as reflib

            noise = reflib.noise_model_of(self.test_protocol)
        retry = _check_refine(refine_retry, refine_cost)
        y = inference.predict_poses(self, x, cam, refine, refine_cost, noise, refine_retry=retry)
        return validate.check_poses(y, opencv=cam is not None, what=f"the pose ({what})")


def _check_refine(refine: int, refine_cost: str) -> int:
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise InputError(f"refine must be a number of iterations >= 0, got {refine!r}")
    if refine_cost not in REFINE_COSTS:
        raise InputError(f"unknown refine_cost {refine_cost!r}: choose from {', '.join(REFINE_COSTS)}")
    return int(refine)


def check_landmarks(
    x: ArrayLike, num_points: int, name: str = "landmarks", layout: layouts.Layout | None = None
) -> np.ndarray:
    """Landmarks as a checked (N, K, 2) float64 array (float32 stays float32; (K, 2) gains the batch axis), or InputError.

    The rules are `pnpjax.validate.landmarks`': real, finite, within its limits, at least one row.

    Args:
      x: array-like of numbers.
      num_points: K, the layout's number of points.
      name: what to call the input in error messages (e.g. the file it came from).
      layout: if given and it names its detector, the detector's full output (e.g. the 68
        face-api.js points for faceapi10) is accepted and reduced to the layout's K points
        (`pnpjax.detectors.select`).
    """
    from pnpjax import detectors, validate

    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise InputError(f"{name} must be an array of numbers ({str(e).splitlines()[0][:100]})") from None
    if layout is not None and x.ndim in (2, 3) and x.dtype.kind in "iuf":
        x = detectors.select(x[None] if x.ndim == 2 else x, layout)
    return validate.landmarks(x, num_points, name)


def evaluate(
    solver: PoseSolver,
    protocol: str | protocols.Protocol = "seed",
    n: int = 100_000,
    key: int = 0,
    refine: int = 0,
    refine_cost: str = "image",
    noise: refine.NoiseModel | None = None,
) -> dict[str, float]:
    """The metrics `pnpjax eval` prints for one solver, on held-out draws of a protocol.

    The draws are a function of (protocol, layout, key, n) only, so solvers evaluated with the
    same arguments are compared on the same inputs.

    Args:
      solver: any `PoseSolver` (e.g. from `pnpjax.load`).
      protocol: "seed" (the original's test recipe, s = 1), "realistic" (the solver's own
        realistic protocol, the default one for the original models), or a
        `pnpjax.protocols.SeedProtocol` / `RealisticProtocol`.
      n: number of draws (the returned "n" counts the valid ones: a sampler may leave a few unfilled).
      key: PRNG seed of the draws.
      refine: Levenberg-Marquardt iterations after the network; `refine_cost` and `noise` as in
        `PoseSolver.predict` (the default noise is the evaluated protocol's).

    Returns:
      {"n": test poses, "l1_3d": the original's 3D alignment error (layout units, mean),
      "rot_mean_deg", "rot_median_deg", "rot_p99_deg": geodesic rotation error (degrees),
      "trans_mean", "trans_median": translation error (layout units),
      "reproj_rmse_median": median over poses of the reprojection RMSE against the observed
      landmarks (image units for seed, pixels for realistic), "failures": the fraction of poses
      with a rotation error above 30 degrees}.
    """
    import jax

    from pnpjax import inference, protocols
    from pnpjax import refine as reflib

    if isinstance(protocol, str):
        if protocol == "seed":
            protocol = protocols.SEED_TEST
        elif protocol == "realistic":
            cfg = getattr(solver, "config", None)
            protocol = cfg.realistic if cfg is not None else protocols.RealisticProtocol()
        else:
            raise InputError(f"unknown protocol {protocol!r}: 'seed', 'realistic' or a protocols.*Protocol")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise InputError(f"n must be a positive number of draws, got {n!r}")
    refine = _check_refine(refine, refine_cost)
    batch = protocols.sample_jit(protocol, jax.random.key(key), solver.layout, int(n))  # train.eval_batch's draws
    noise = reflib.noise_model_of(protocol) if noise is None else noise
    return inference.evaluate(solver, batch, refine, refine_cost, noise)
