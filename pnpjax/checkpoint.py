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
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import __version__, fsio, integrity, layouts, model
from pnpjax.config import Config
from pnpjax.errors import CheckpointError, PnpjaxError
from pnpjax.solver import PoseSolver

META_FILE = "pnpjax.json"
FORMAT = "pnpjax-model/1"
CONVENTIONS = {
    "input": "(N, K, 2) landmarks as normalised OpenCV camera coordinates ((u - cx) / fx, (v - cy) / fy)",
    "output": "pose X_camera = R X_layout + t in the OpenCV camera frame (x right, y down, z forward)",
    "quaternion": "x, y, z, w",
    "units": "translation in the layout's units",
}


@dataclass
class Solver(PoseSolver):
    """A pnpjax solver: its training config, layout, standardisation statistics and parameters.

    See `pnpjax.solver.PoseSolver` for `predict` (image coordinates in, (N, 7) poses out) and
    `pure` (the solver as a pure JAX function).

    Attributes:
      config: the full training config (`pnpjax.config.Config`).
      layout: the layout it solves for.
      stats: the input and output standardisation (`pnpjax.model.Stats`).
      params: the MLP's parameters (a flax params pytree).
      meta: the checkpoint's metadata (`pnpjax.json`: conventions, evaluation figures, ...).
    """

    config: Config
    layout: layouts.Layout
    stats: model.Stats
    params: Any
    meta: dict

    @functools.cached_property
    def pure(self) -> tuple[Callable[[Any, jax.Array], model.Prediction], Any]:
        """(fn, variables): the solver as a pure JAX function `fn(variables, xy) -> Prediction` of
        its variables (params, stats) and (..., K, 2) normalised landmarks, for jit/vmap/grad.
        `fn` is the same object on every access (a stable jit static argument)."""
        return functools.partial(_apply, self.config.model), (self.params, self.stats)

    @property
    def protocol(self) -> str:
        """ "seed" or "realistic": the training protocol of its config."""
        return self.config.protocol

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

    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    # In a multi-process run a model directory is written by one process alone (train.py's
    # process 0), so orbax must not wait for the others at its barriers.
    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    )


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
    integrity.check_solver(solver, str(out))  # never write a checkpoint that load would refuse
    tmp = fsio.make_temp_dir(out, CheckpointError)
    try:
        ckptr = _checkpointer()
        ckptr.save(tmp / "params", jax.device_get(solver.params))
        ckptr.wait_until_finished()
        # orbax notes the absolute path it wrote to; a model directory is shared, so drop it.
        (tmp / "params" / "commit_success.txt").unlink(missing_ok=True)
        hashes = {integrity.HASH_KEY: integrity.hash_tree(tmp / "params")}  # verified by load()
        meta = metadata(solver.config, solver.layout, solver.stats, solver.params, {**(extra_meta or {}), **hashes})
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
    if not f.exists() and not f.is_symlink():
        raise CheckpointError(f"{directory}: no {META_FILE}; not a pnpjax checkpoint")
    try:
        meta = fsio.read_json(f, "checkpoint metadata", fsio.MAX_META_BYTES, CheckpointError)
    except CheckpointError as e:
        raise CheckpointError(f"{e} (corrupt checkpoint metadata)") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("config"), dict) and isinstance(meta.get("layout"), dict)):
        raise CheckpointError(f"{f} is not pnpjax metadata (needs 'config' and 'layout' objects)")
    return meta


def _parts(meta: dict, where: str) -> tuple[Config, layouts.Layout]:
    """Config and layout of checkpoint metadata, both validated; any malformed field is one CheckpointError."""
    try:
        cfg = Config.from_dict(meta["config"]).validate()
        layout = layouts.Layout.from_dict(meta["layout"])
    except PnpjaxError as e:
        raise CheckpointError(f"{where}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"{where}: malformed {META_FILE} ({type(e).__name__}: {str(e)[:120]})") from None
    stats = meta.get("stats")
    if not isinstance(stats, dict):
        raise CheckpointError(f"{where}: {META_FILE} has no 'stats' object")
    integrity.check_stats(
        stats,
        layout.num_points,
        cfg.model.out_dim,
        where,
        model.input_dim(cfg.model, layout.num_points),
        roll=cfg.model.roll != "none",
    )
    return cfg, layout


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


def load(directory: str | Path) -> PoseSolver:
    """Load a solver: the paths `--checkpoint` takes.

    Args:
      directory: a model directory (`pnpjax.json` + `params/`, e.g. `checkpoints/blazeface6`), a
        training workdir (its finished `model/`, else the latest step of `ckpt/`), or an original
        TF.js model directory (`model.json` + shard, e.g. `../shared/seed-models/blazeface6`).

    Returns:
      a `Solver` (pnpjax models) or a `pnpjax.seed_import.SeedSolver` (original models); both
      offer `predict` and `pure` (`pnpjax.solver.PoseSolver`).

    Raises:
      pnpjax.errors.CheckpointError: missing, corrupt or incompatible files.
    """
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
    cfg, layout = _parts(meta, str(d))
    if (d / "params").is_dir():
        if integrity.HASH_KEY not in meta:
            raise CheckpointError(
                f"{d}: {META_FILE} has no '{integrity.HASH_KEY}' (made before checkpoints were "
                "hashed; add the hashes with experiments/hash_checkpoints.py if you trust the files)"
            )
        integrity.verify_tree(d / "params", meta[integrity.HASH_KEY], str(d))
    target = _abstract_params(cfg, layout)
    if (d / "params").is_dir():
        params = _restore(lambda: _checkpointer().restore(d / "params", target), d, d / "params")
    elif (d / "ckpt").is_dir():
        step_dir = _latest_step_dir(d / "ckpt")  # verifies the step's sha256 before orbax reads it
        params = _restore(lambda: restore_latest_params(d, cfg, layout), d, step_dir)
    else:
        raise CheckpointError(f"{d}: has {META_FILE} but no params/ or ckpt/")
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)  # noqa: E731
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(target) or shapes(params) != shapes(target):
        raise CheckpointError(f"{d}: the saved parameters do not match the model config in {META_FILE}")
    integrity.check_params(params, str(d))
    return solver_from_meta(meta, params)


def restore_latest_params(workdir: str | Path, cfg: Config, layout: layouts.Layout):
    """The parameters of the latest orbax step of a training workdir (`ckpt/<step>/default`).

    Only the train state's `params` item is read, so this needs no optimiser state layout.
    """
    import orbax.checkpoint as ocp

    step_dir = _latest_step_dir(Path(workdir).absolute() / "ckpt")
    if step_dir is None:
        raise CheckpointError(
            f"{workdir}: no verified checkpoint step in ckpt/ (none with a record in {integrity.STEP_HASH_FILE})"
        )
    target = _abstract_params(cfg, layout)
    args = ocp.args.PyTreeRestore(
        item={"params": target},
        partial_restore=True,
        restore_args={"params": ocp.checkpoint_utils.construct_restore_args(target)},
    )
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


def _steps(ckpt: Path) -> list[int]:
    return [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()] if ckpt.is_dir() else []


def _latest_step_dir(ckpt: Path) -> Path | None:
    """ckpt/<newest step with a verified sha256 record>/default, the item restore_latest_params restores."""
    step = integrity.verified_step(ckpt.parent, _steps(ckpt))
    return None if step is None else ckpt / str(step) / "default"


def _restore(fn, d: Path, data_dir: Path | None = None):
    try:
        _verify_readable(data_dir)
        return fn()
    except CheckpointError:
        raise
    except Exception as e:  # orbax and tensorstore raise many types for truncated/corrupt files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {d}: {msg[:200]}") from e
