"""Saved solvers: a directory with `pnpjax.json` (metadata) and `params/` (orbax).

`pnpjax.json` alone says how to use the model: layout (names and 3D points), the frame and
units of inputs and outputs, the standardisation statistics, the full training config, the
pnpjax version, and (when made by `pnpjax train`) the evaluation figures.

`load(DIR)` accepts a model directory, a training workdir (its finished `model/`, else the
latest orbax step of `ckpt/`), or an original TF.js model directory (see `pnpjax.seed_import`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import __version__, layouts, model
from pnpjax.config import Config
from pnpjax.errors import CheckpointError

META_FILE = "pnpjax.json"
FORMAT = "pnpjax-model/1"
CONVENTIONS = {
    "input": "(N, K, 2) landmarks as normalised OpenCV camera coordinates ((u - cx) / fx, (v - cy) / fy)",
    "output": "pose X_camera = R X_layout + t in the OpenCV camera frame (x right, y down, z forward)",
    "quaternion": "x, y, z, w",
    "units": "translation in the layout's units",
}


@dataclass
class Solver:
    """A loaded solver: everything needed to run it."""

    config: Config
    layout: layouts.Layout
    stats: model.Stats
    params: Any
    meta: dict

    def __call__(self, xy) -> model.Prediction:
        return model.apply(self.config.model, self.params, self.stats, xy)

    @functools.cached_property
    def pure(self) -> tuple[Callable[[Any, jax.Array], model.Prediction], Any]:
        """(fn, variables): the solver as a pure JAX function `fn(variables, xy) -> Prediction` of
        its variables (params, stats) and (..., K, 2) normalised landmarks, for jit/vmap/grad.
        `fn` is the same object on every access (a stable jit static argument)."""
        return functools.partial(_apply, self.config.model), (self.params, self.stats)

    @property
    def test_protocol(self):
        """The protocol this solver is judged on (its config's `test_protocol`)."""
        return self.config.test_protocol


def _apply(model_cfg: model.ModelConfig, variables, xy) -> model.Prediction:
    params, stats = variables
    return model.apply(model_cfg, params, stats, xy)


def stats_to_json(stats: model.Stats) -> dict:
    return {k: np.asarray(v, np.float64).tolist() for k, v in stats._asdict().items() if v is not None}


def stats_from_json(d: dict) -> model.Stats:
    return model.Stats(**{k: jnp.asarray(d[k], jnp.float32) for k in model.Stats._fields if k in d})


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def metadata(cfg: Config, layout: layouts.Layout, stats: model.Stats, params=None, extra: dict | None = None) -> dict:
    """The `pnpjax.json` of a model directory or a training workdir (the one place it is built)."""
    meta = {
        "format": FORMAT,
        "pnpjax_version": __version__,
        "config": cfg.to_dict(),
        "layout": layout.to_dict(),
        "stats": stats_to_json(stats),
        "conventions": CONVENTIONS,
    }
    if params is not None:
        meta["num_params"] = model.num_params(params)
    return {**meta, **(extra or {})}


def save(directory: str | Path, solver: Solver, extra_meta: dict | None = None, force: bool = False) -> Path:
    """Write a model directory atomically (temp dir + rename); refuses to overwrite unless force."""
    out = Path(directory).absolute()
    if out.exists() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out} exists and is not empty (use --force to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        ckptr = _checkpointer()
        ckptr.save(tmp / "params", jax.device_get(solver.params))
        ckptr.wait_until_finished()
        # orbax notes the absolute path it wrote to; a model directory is shared, so drop it.
        (tmp / "params" / "commit_success.txt").unlink(missing_ok=True)
        meta = metadata(solver.config, solver.layout, solver.stats, solver.params, extra_meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_meta(directory: Path) -> dict:
    f = directory / META_FILE
    try:
        meta = json.loads(f.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{directory}: no {META_FILE}; not a pnpjax checkpoint") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{f} is corrupt: {e}") from e
    if not isinstance(meta, dict) or "config" not in meta or "layout" not in meta:
        raise CheckpointError(f"{f} is not pnpjax metadata")
    return meta


def solver_from_meta(meta: dict, params) -> Solver:
    cfg = Config.from_dict(meta["config"])
    try:
        layout = layouts.Layout.from_dict(meta["layout"])
        stats = stats_from_json(meta["stats"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint metadata is incomplete: {e}") from e
    return Solver(cfg, layout, stats, params, meta)


def _abstract_params(cfg: Config, layout: layouts.Layout):
    return jax.eval_shape(lambda: model.init_params(cfg.model, jax.random.key(0), layout.num_points))


def load(directory: str | Path) -> Solver:
    """Load a solver from a model dir, a training workdir, or an original TF.js model dir."""
    d = Path(directory).absolute()
    if not d.exists():
        raise CheckpointError(f"checkpoint not found: {directory}")
    if not d.is_dir():
        raise CheckpointError(f"checkpoint must be a directory: {directory}")
    if (d / "model.json").is_file() and not (d / META_FILE).is_file():
        from pnpjax import seed_import

        return seed_import.load_seed_model(d)
    if (d / "model" / META_FILE).is_file():
        d = d / "model"
    meta = read_meta(d)
    cfg = Config.from_dict(meta["config"])
    layout = layouts.Layout.from_dict(meta["layout"])
    target = _abstract_params(cfg, layout)
    if (d / "params").is_dir():
        params = _restore(lambda: _checkpointer().restore(d / "params", target), d, d / "params")
    elif (d / "ckpt").is_dir():
        params = _restore(lambda: restore_latest_params(d, cfg, layout), d, _latest_step_dir(d / "ckpt"))
    else:
        raise CheckpointError(f"{d}: has {META_FILE} but no params/ or ckpt/")
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)  # noqa: E731
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(target) or shapes(params) != shapes(target):
        raise CheckpointError(f"{d}: the saved parameters do not match the model config in {META_FILE}")
    return solver_from_meta(meta, params)


def restore_latest_params(workdir: str | Path, cfg: Config, layout: layouts.Layout):
    """The parameters of the latest orbax step of a training workdir (`ckpt/<step>/default`).

    Only the train state's `params` item is read, so this needs no optimiser state layout.
    """
    import orbax.checkpoint as ocp

    step_dir = _latest_step_dir(Path(workdir).absolute() / "ckpt")
    if step_dir is None:
        raise CheckpointError(f"{workdir}: no checkpoint steps in ckpt/")
    target = _abstract_params(cfg, layout)
    args = ocp.args.PyTreeRestore(item={"params": target}, partial_restore=True,
                                  restore_args={"params": ocp.checkpoint_utils.construct_restore_args(target)})
    return ocp.PyTreeCheckpointer().restore(step_dir, args=args)["params"]


def _verify_readable(path: Path | None) -> None:
    """Read every stored value of an OCDBT directory (orbax's default format) synchronously.

    orbax restores arrays concurrently; when one read of a corrupt checkpoint fails it returns at
    once and closes its event loop while tensorstore finishes the others, whose callbacks then
    print tracebacks to stderr ("Event loop is closed", "Task exception was never retrieved").
    This pass turns unreadable data into one clean error before orbax starts.
    """
    if path is None or not (path / "manifest.ocdbt").is_file():
        return  # not OCDBT: leave it to orbax
    import tensorstore as ts  # orbax's storage layer

    kv = ts.KvStore.open({"driver": "ocdbt", "base": {"driver": "file", "path": f"{path}/"}}).result()
    for key in kv.list().result():
        kv.read(key).result()


def _latest_step_dir(ckpt: Path) -> Path | None:
    """ckpt/<latest step>/default, the item train.restore_latest_params restores."""
    if not ckpt.is_dir():
        return None
    steps = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()]
    return ckpt / str(max(steps)) / "default" if steps else None


def _restore(fn, d: Path, data_dir: Path | None = None):
    try:
        _verify_readable(data_dir)
        return fn()
    except CheckpointError:
        raise
    except Exception as e:  # orbax and tensorstore raise many types for truncated/corrupt files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {d}: {msg[:200]}") from e
