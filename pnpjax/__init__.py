"""pnpjax: tiny neural Perspective-n-Point solvers, trained in JAX, shipped to the web.

A solver maps the 2D image positions of a fixed set of 3D keypoints (a *layout*, e.g. six face
landmarks) to the object's pose. Conventions, everywhere: OpenCV camera frame (x right, y down,
z forward), pixels with intrinsics `fx, fy, cx, cy`, quaternions `(x, y, z, w)` with `w >= 0`,
the pose `X_camera = R X_layout + t` with `t` in the layout's units (cm for faces). The original
work's image coordinates (`camera="seed"`: v up, focal 1) and its OpenGL-like pose frame are
adapters at the edges.

```python
import pnpjax

solver = pnpjax.load("checkpoints/blazeface6-seed")   # or a workdir, or an original TF.js model
poses = solver.predict(landmarks, camera="seed")     # (N, 7) qx qy qz qw tx ty tz, as `pnpjax predict`
fn, variables = solver.pure                          # pure JAX: fn(variables, xy) for jit, vmap, grad
summary = pnpjax.evaluate(solver, "seed", n=20_000)  # the metrics of `pnpjax eval`

cfg = dataclasses.replace(pnpjax.get_config("blazeface6-seed"), steps=2_000)
pnpjax.train_and_evaluate(cfg, "runs/mine")          # `pnpjax train`; the solver is in runs/mine/model
```

The top-level names below are the public surface; the submodules listed after them hold the
rest (geometry, the refinement, many models in one vmapped program in `pnpjax.multi`, web
exports). `import pnpjax` is light: each name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first access, PEP 562).
_EXPORTS = {
    "load": "pnpjax.checkpoint",
    "PoseSolver": "pnpjax.solver",
    "Solver": "pnpjax.checkpoint",
    "SeedSolver": "pnpjax.seed_import",
    "Prediction": "pnpjax.model",
    "evaluate": "pnpjax.solver",
    "Camera": "pnpjax.camera",
    "Layout": "pnpjax.layouts",
    "get_layout": "pnpjax.layouts",
    "SeedProtocol": "pnpjax.protocols",
    "RealisticProtocol": "pnpjax.protocols",
    "Batch": "pnpjax.protocols",
    "sample": "pnpjax.protocols",
    "LOSSES": "pnpjax.losses",
    "Config": "pnpjax.config",
    "get_config": "pnpjax.config",
    "train_and_evaluate": "pnpjax.train",
}
# The library's modules, documented with it (cli, tfjs and the test/experiment helpers are not).
_SUBMODULES = (
    "camera",
    "checkpoint",
    "config",
    "detectors",
    "errors",
    "export",
    "geometry",
    "layouts",
    "losses",
    "model",
    "multi",
    "protocols",
    "refine",
    "solver",
    "train",
    "validate",
)

__all__ = [
    "load",
    "PoseSolver",
    "Solver",
    "SeedSolver",
    "Prediction",
    "evaluate",
    "Camera",
    "Layout",
    "get_layout",
    "SeedProtocol",
    "RealisticProtocol",
    "Batch",
    "sample",
    "LOSSES",
    "Config",
    "get_config",
    "train_and_evaluate",
    "camera",
    "checkpoint",
    "config",
    "detectors",
    "errors",
    "export",
    "geometry",
    "layouts",
    "losses",
    "model",
    "multi",
    "protocols",
    "refine",
    "solver",
    "train",
    "validate",
]  # the order of the docs
assert __all__ == [*_EXPORTS, *_SUBMODULES]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from pnpjax import (
        camera,
        checkpoint,
        config,
        detectors,
        errors,
        export,
        geometry,
        layouts,
        losses,
        model,
        multi,
        protocols,
        refine,
        solver,
        train,
        validate,
    )
    from pnpjax.camera import Camera
    from pnpjax.checkpoint import Solver, load
    from pnpjax.config import Config, get_config
    from pnpjax.layouts import Layout, get_layout
    from pnpjax.losses import LOSSES
    from pnpjax.model import Prediction
    from pnpjax.protocols import Batch, RealisticProtocol, SeedProtocol, sample
    from pnpjax.seed_import import SeedSolver
    from pnpjax.solver import PoseSolver, evaluate
    from pnpjax.train import train_and_evaluate


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
