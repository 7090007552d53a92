"""Training: one pure jitted step `(state, key) -> (state, metrics)` on synthetic batches.

The batch is sampled inside the step from `fold_in(key, step)`, so there is no host data
pipeline and a run is a deterministic function of (config, seed). A workdir holds:
  config.json     the resolved config (a resumed run reads it back)
  pnpjax.json     model metadata (layout, statistics, config)
  metrics.jsonl   one JSON object per log/eval line
  ckpt/           orbax CheckpointManager steps (params, optimizer state, step)
  model/          the final solver (see checkpoint.py), written when training ends
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pnpjax import checkpoint, integrity, layouts, losses, model, protocols
from pnpjax.config import Config
from pnpjax.errors import CheckpointError, ConfigError, NonFiniteLossError, PnpjaxError


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar
    total_steps: jax.Array  # int32 scalar: length of the LR schedule (cfg.steps, or fitted to --seconds)


def learning_rate(cfg: Config, step: jax.Array, total_steps: jax.Array | int | None = None) -> jax.Array:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * end_lr_fraction at total_steps.

    total_steps is an array so that `--seconds` can fit the schedule to a time budget
    measured at run time without recompiling the step.
    """
    total = jnp.asarray(cfg.steps if total_steps is None else total_steps, jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    warm = step / max(cfg.warmup_steps, 1)
    frac = jnp.clip((step - cfg.warmup_steps) / jnp.maximum(total - cfg.warmup_steps, 1.0), 0.0, 1.0)
    cos = cfg.end_lr_fraction + (1 - cfg.end_lr_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
    return cfg.lr * jnp.where(step < cfg.warmup_steps, warm, cos)


def optimizer(cfg: Config) -> optax.GradientTransformation:
    """Adam direction with gradient clipping; the step applies -learning_rate (see train_step)."""
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.scale_by_adam())


def loss_context(cfg: Config, layout: layouts.Layout, stats: model.Stats, batch: protocols.Batch) -> losses.Context:
    pts = jnp.asarray(layout.array)
    rms = jnp.sqrt(jnp.mean(jnp.sum((pts - pts.mean(0)) ** 2, -1)))
    return losses.Context(pts, model.standardized_target(cfg.model, stats, batch.q, batch.t, batch.xy), rms)


# Losses unchanged when the predicted and the true pose turn together about the optical axis
# (T -> Rz T): the alignment residual lives in the layout's frame, reprojection distances and
# rotation angles are kept by the turn, pose_mse compares network outputs.
TURN_INVARIANT_LOSSES = frozenset({"l1_3d", "l2_3d", "reproj_2d", "geodesic", "pose_mse"})
# ... and when they turn together by any rotation of the camera (roll='perspective'): not the
# reprojection, whose pinhole image is not turned rigidly by a rotation off the optical axis.
ROTATION_INVARIANT_LOSSES = TURN_INVARIANT_LOSSES - {"reproj_2d"}


def batch_loss(cfg: Config, layout: layouts.Layout, stats: model.Stats, params, batch: protocols.Batch) -> jax.Array:
    """Mean of the configured per-example loss over the valid examples of a batch."""
    ctx = loss_context(cfg, layout, stats, batch)
    invariant = TURN_INVARIANT_LOSSES if cfg.model.roll == "canonical" else ROTATION_INVARIANT_LOSSES
    if cfg.model.roll != "none" and cfg.loss in invariant:
        # The loss of (Rz R', Rz t') against the truth equals that of (R', t') against the truth
        # turned by Rz^T: turning the truth (no gradient) instead of the prediction is the same
        # loss and gradient, and its backward pass is ~20 % cheaper on CPU.
        xy_c, q_c, t_c, axis = model.upright(cfg.model, batch.xy, stats.roll_weights, batch.q, batch.t)
        pred = model.apply_upright(cfg.model, params, stats, xy_c, axis)
        per_example = losses.LOSSES[cfg.loss](pred, batch._replace(xy=xy_c, q=q_c, t=t_c), ctx)
    else:
        pred = model.apply(cfg.model, params, stats, batch.xy)
        per_example = losses.LOSSES[cfg.loss](pred, batch, ctx)
    return valid_mean(per_example, batch.valid)


def valid_mean(per_example: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean of per-example values over the valid examples (0 if there are none)."""
    w = valid.astype(per_example.dtype)
    return jnp.sum(per_example * w) / jnp.maximum(jnp.sum(w), 1.0)


def apply_gradients(cfg: Config, state: TrainState, loss: jax.Array, grads, batch: protocols.Batch):
    """The update of one step (Adam direction, then -lr of the schedule) and the step's metrics."""
    direction, opt_state = optimizer(cfg).update(grads, state.opt_state, state.params)
    lr = learning_rate(cfg, state.step, state.total_steps)
    params = jax.tree_util.tree_map(lambda p, d: p - lr * d, state.params, direction)
    metrics = {"loss": loss, "valid": jnp.mean(batch.valid.astype(jnp.float32)), "lr": lr}
    return TrainState(params, opt_state, state.step + 1, state.total_steps), metrics


def train_step(
    cfg: Config, layout: layouts.Layout, stats: model.Stats, state: TrainState, key: jax.Array, *, mesh=None
):
    """One optimisation step on a fresh synthetic batch. Bind cfg/layout with partial, then jit.

    With a `mesh`, the batch is sharded over its 'batch' axis (data parallel; params stay
    replicated and XLA inserts the gradient all-reduce). The sampled values are a function of
    the key alone, not of the sharding, so any device count gives the same run.
    """
    batch = sample_batch(cfg, layout, jax.random.fold_in(key, state.step), mesh)
    loss, grads = jax.value_and_grad(functools.partial(batch_loss, cfg, layout, stats))(state.params, batch)
    return apply_gradients(cfg, state, loss, grads, batch)


def sample_batch(cfg: Config, layout: layouts.Layout, key: jax.Array, mesh=None) -> protocols.Batch:
    """The training batch of a step key: cfg.data_shards sub-batches, sub-batch j drawn from
    fold_in(key, j) and the sub-batches concatenated.

    On a mesh each device draws its own sub-batches (shard_map), so sampling is never repeated
    across devices or processes; with data_shards = 1 the one batch is drawn whole and then
    sharded. Either way the values depend on (key, data_shards) only, not on the devices.
    """
    n = cfg.data_shards
    if n == 1:
        batch = protocols.sample(cfg.train_protocol, key, layout, cfg.batch_size)
        if mesh is not None:
            batch = jax.tree_util.tree_map(
                lambda a: jax.lax.with_sharding_constraint(a, batch_sharding(mesh, a.ndim)), batch
            )
        return batch

    def draw(shard_keys):  # (n_local,) keys -> the concatenation of their sub-batches
        b = jax.vmap(lambda k: protocols.sample(cfg.train_protocol, k, layout, cfg.batch_size // n))(shard_keys)
        return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), b)

    shard_keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n))
    if mesh is None:
        return draw(shard_keys)
    from jax.sharding import PartitionSpec

    return jax.shard_map(draw, mesh=mesh, in_specs=PartitionSpec("batch"), out_specs=PartitionSpec("batch"))(shard_keys)


def batch_sharding(mesh, ndim: int):
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec("batch", *([None] * (ndim - 1))))


def make_mesh(batch_size: int, data_shards: int = 1):
    """A 1-D 'batch' mesh over all devices (of every process), or None on one device."""
    n = jax.device_count()
    if n == 1:
        return None
    if batch_size % n:
        raise ConfigError(f"batch_size {batch_size} must be divisible by the {n} devices")
    if data_shards > 1 and data_shards % n:
        raise ConfigError(f"data_shards {data_shards} must be a multiple of the {n} devices")
    return jax.make_mesh((n,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))


class TraceCounted:
    """`jax.jit(fn)` that counts its traces: one per compilation, so tests and reports can check
    that a step compiles once (the "assert_max_traces" idiom; no private JAX API)."""

    def __init__(self, fn: Callable, **jit_kwargs):
        self.traces = 0

        def counted(*args, **kwargs):
            self.traces += 1  # runs only while JAX traces
            return fn(*args, **kwargs)

        self._jitted = jax.jit(counted, **jit_kwargs)

    def __call__(self, *args, **kwargs):
        return self._jitted(*args, **kwargs)


def make_train_step(cfg: Config, layout: layouts.Layout, stats: model.Stats, mesh=None) -> TraceCounted:
    return TraceCounted(functools.partial(train_step, cfg, layout, stats, mesh=mesh), donate_argnums=(0,))


def init_state(cfg: Config, layout: layouts.Layout, key: jax.Array) -> TrainState:
    params = model.init_params(cfg.model, key, layout.num_points)
    return TrainState(params, optimizer(cfg).init(params), jnp.zeros((), jnp.int32), jnp.asarray(cfg.steps, jnp.int32))


def keys(cfg: Config) -> dict[str, jax.Array]:
    """The run's independent PRNG streams, all derived from cfg.seed."""
    root = jax.random.key(cfg.seed)
    return {name: jax.random.fold_in(root, i) for i, name in enumerate(("init", "stats", "train", "eval"))}


# --- evaluation ------------------------------------------------------------------------------


EVAL_SAMPLE_CHUNK = 1 << 17  # draws per sampling call: the sampler's memory is ~oversample x 100 floats a draw


def eval_batch(protocol: protocols.Protocol, layout: layouts.Layout, key: jax.Array, n: int) -> protocols.Batch:
    """A fixed held-out set of n samples (a function of the key and n only).

    Up to EVAL_SAMPLE_CHUNK draws come from one call on `key`; more are drawn chunk by chunk
    (chunk i from `fold_in(key, i)`), so memory stays bounded for `eval --n` in the millions.
    """
    if n <= EVAL_SAMPLE_CHUNK:
        return protocols.sample_jit(protocol, key, layout, n)
    parts = []
    for i, start in enumerate(range(0, n, EVAL_SAMPLE_CHUNK)):
        b = protocols.sample_jit(protocol, jax.random.fold_in(key, i), layout, EVAL_SAMPLE_CHUNK)
        parts.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[: n - start], b))
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_chunk(model_cfg: model.ModelConfig, layout: layouts.Layout, params, stats, batch):
    pred = model.apply(model_cfg, params, stats, batch.xy)
    return losses.per_example_metrics(pred, batch, jnp.asarray(layout.array))


def _summarize_chunks(metrics_fn, batch: protocols.Batch, chunk: int) -> dict:
    """Summary of per-example metrics computed chunk by chunk (bounded memory for 1M draws)."""
    per: dict[str, list] = {}
    for i in range(0, batch.xy.shape[0], chunk):
        b = jax.tree_util.tree_map(lambda a: a[i : i + chunk], batch)
        for k, v in metrics_fn(b).items():
            per.setdefault(k, []).append(np.asarray(v))
    return losses.summarize({k: np.concatenate(v) for k, v in per.items()}, np.asarray(batch.valid))


def evaluate_predictions(predict_fn, batch: protocols.Batch, layout: layouts.Layout, chunk: int = 65536) -> dict:
    """Summary metrics of any solver `predict_fn(xy) -> Prediction` on a Batch."""
    pts = jnp.asarray(layout.array)
    return _summarize_chunks(lambda b: losses.per_example_metrics(predict_fn(b.xy), b, pts), batch, chunk)


def evaluate(cfg: Config, layout: layouts.Layout, params, stats, batch: protocols.Batch, chunk: int = 65536) -> dict:
    """Summary metrics of a pnpjax model (jitted; compiled once per chunk shape)."""
    return _summarize_chunks(lambda b: _eval_chunk(cfg.model, layout, params, stats, b), batch, chunk)


# --- the loop ----------------------------------------------------------------------------------


def _manager(workdir: Path, cfg: Config, cleanup: bool = False):
    """cleanup: remove orbax's temporary step directories of a killed run (training only; loading writes nothing)."""
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        (workdir / "ckpt").absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=2, create=True, enable_async_checkpointing=False, cleanup_tmp_directories=cleanup
        ),
    )


def _restore_state(mngr, step: int, cfg: Config, layout: layouts.Layout, sharding=None) -> TrainState:
    import orbax.checkpoint as ocp

    abstract = jax.eval_shape(lambda: init_state(cfg, layout, jax.random.key(0)))
    if sharding is not None:
        abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)
    restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract._asdict()))
    return TrainState(**restored)


def device_summary() -> str:
    devs = jax.devices()
    kinds = sorted({d.platform for d in devs})
    procs = jax.process_count()
    return f"{len(devs)} × {'/'.join(kinds)}" + (f" in {procs} processes" if procs > 1 else "")


def is_primary() -> bool:
    """Process 0 of a multi-process run (or the only process): the one that writes files."""
    return jax.process_index() == 0


def log_row(f, row: dict) -> None:
    """Append one JSON object as a line of metrics.jsonl (flushed: a killed run keeps its log)."""
    f.write(json.dumps(row) + "\n")
    f.flush()


_CALIBRATION_STEPS = 20
_END_RESERVE_S = 3.5  # final evaluation, checkpoint and model write


@dataclasses.dataclass
class ScheduleFitter:
    """Fits the LR schedule to a wall-time budget (`--seconds`) from the measured step time.

    The loop calls `observe(step, now)` at the steps `wants(step)` names (after blocking on the
    step): step 2 starts the clock (compilation is over), step 2 + 20 gives the first fit, and
    three refits at 1/4, 1/2 and 3/4 of the fitted run correct the noisy first estimate. The
    fitted length never exceeds `max_steps` (the config's schedule).
    """

    seconds: float
    t_start: float  # time.perf_counter() at which the budget started
    max_steps: int
    print_fn: Callable[[str], object] = print
    calibration_steps: int = _CALIBRATION_STEPS
    reserve_s: float = _END_RESERVE_S
    done: bool = False
    _t_calib: float | None = None
    _refits: tuple[int, ...] = ()

    def wants(self, step: int) -> bool:
        return not self.done and (step == 2 or step == 2 + self.calibration_steps or step in self._refits)

    def observe(self, step: int, now: float) -> int | None:
        """The fitted schedule length at this step, or None (step 2 only starts the clock)."""
        if step == 2 or self._t_calib is None:
            self._t_calib = now
            return None
        per_step = (now - self._t_calib) / (step - 2)
        left = self.seconds - (now - self.t_start) - self.reserve_s
        total = int(min(self.max_steps, max(step + 1, step + left / per_step)))
        if not self._refits:
            self._refits = (max(step + 1, total // 4), max(step + 2, total // 2), max(step + 3, 3 * total // 4))
            self.print_fn(f"--seconds {self.seconds:g}: {per_step * 1e3:.2f} ms/step, schedule fitted to {total} steps")
        elif step == max(self._refits):
            self.done = True
            self.print_fn(
                f"--seconds {self.seconds:g}: {per_step * 1e3:.2f} ms/step, schedule refitted to {total} steps"
            )
        return total


def train_and_evaluate(
    cfg: Config,
    workdir: str | Path,
    *,
    seconds: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    print_fn=print,
    t_start: float | None = None,
) -> dict:
    """Train (or resume) a solver in workdir; returns the final evaluation summary.

    `seconds`: a wall-time budget including start-up and compilation. On a fresh run the
    step time is measured over the first steps and the LR schedule is shortened to fit
    (never beyond cfg.steps); the loop also stops if the budget runs out. The fitted length
    is stored in the checkpoint, so a resumed run keeps it. The budget counts from `t_start`
    (a time.perf_counter() value; the CLI passes its own start, so imports count too).
    `max_steps` stops after that step without ending the run (tests of interrupted runs).
    """
    t_start = time.perf_counter() if t_start is None else t_start
    workdir = Path(workdir)
    cfg = cfg.validate()
    # Several processes (jax.distributed): one program over every process's devices; process 0
    # alone writes files, the others only take part in the steps and in orbax's saves.
    primary = is_primary()
    if not primary:
        print_fn = lambda *_: None
    if jax.process_count() > 1 and seconds is not None:
        raise ConfigError("--seconds needs one process (every process must run the same number of steps); use --steps")
    layout = layouts.get_layout(cfg.layout)
    fresh = not _check_workdir(workdir, cfg)
    made = _existing_entries(workdir)
    try:
        return _train_loop(
            cfg,
            layout,
            workdir,
            seconds=seconds,
            max_steps=max_steps,
            progress=progress,
            print_fn=print_fn,
            t_start=t_start,
        )
    except PnpjaxError:
        if fresh and primary:  # a run that fails at once (e.g. a NaN loss) leaves nothing behind, only what it created
            _remove_new_entries(made)
        raise


def _check_workdir(workdir: Path, cfg: Config) -> bool:
    """One-line errors for a workdir that cannot be used; True if it holds a run of this config."""
    from pnpjax import fsio

    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} exists and is not a directory")
    cfg_file = workdir / "config.json"
    if not cfg_file.exists():
        return False
    try:
        saved = Config.from_dict(fsio.read_json(cfg_file, "workdir config", fsio.MAX_META_BYTES, ConfigError))
    except PnpjaxError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"{cfg_file} is not a pnpjax config ({type(e).__name__})") from None
    if saved != cfg:
        raise ConfigError(f"{workdir} holds a run of a different config ('{saved.name}'); use another --workdir")
    return True


def _existing_entries(workdir: Path) -> tuple[Path, set[str] | None]:
    """(workdir, its entries) if it exists, else (its topmost missing ancestor, None): what a failed run may remove."""
    if workdir.is_dir():
        return workdir, {p.name for p in workdir.iterdir()}
    top = workdir.absolute()
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top, None


def _remove_new_entries(made: tuple[Path, set[str] | None]) -> None:
    import shutil

    root, before = made
    if before is None:
        shutil.rmtree(root, ignore_errors=True)
        return
    for p in root.iterdir():
        if p.name not in before:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _train_loop(
    cfg: Config, layout: layouts.Layout, workdir: Path, *, seconds, max_steps, progress, print_fn, t_start
) -> dict:
    multiprocess, primary = jax.process_count() > 1, is_primary()
    cfg_file = workdir / "config.json"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to workdir {workdir}: {e.strerror or e}") from None
    k = keys(cfg)
    mesh = make_mesh(cfg.batch_size, cfg.data_shards)
    replicated = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, k["stats"], cfg.stats_samples)
    try:
        integrity.check_stats(
            stats,
            layout.num_points,
            cfg.model.out_dim,
            "training statistics",
            model.input_dim(cfg.model, layout.num_points),
            roll=cfg.model.roll != "none",
        )
    except CheckpointError:
        raise ConfigError(
            f"layout '{layout.name}': the {cfg.protocol} protocol kept no usable sample of "
            f"{cfg.stats_samples} draws (every point must be in front of the camera and in the image); "
            "check the layout's units and that its origin is near its points"
        ) from None
    mngr = _manager(workdir, cfg, cleanup=True)
    latest = integrity.verified_step(workdir, list(mngr.all_steps()))
    for unverified in [s for s in mngr.all_steps() if latest is None or s > latest]:
        mngr.delete(unverified)  # committed by a run killed before it recorded the step's hashes
    if latest is not None:
        state = _restore_state(mngr, latest, cfg, layout, replicated)
        print_fn(f"resuming {workdir} from step {latest} of {int(state.total_steps)}")
    else:
        state = init_state(cfg, layout, k["init"])
    if replicated is not None:
        state = jax.device_put(state, replicated)  # the same values on every process
    if primary:
        cfg_file.write_text(json.dumps(cfg.to_dict(), indent=1))
        meta = checkpoint.metadata(cfg, layout, stats)
        (workdir / checkpoint.META_FILE).write_text(json.dumps(meta, indent=1))
    # Evaluation runs on each process's own copy of the (replicated) parameters.
    local = (lambda t: jax.tree_util.tree_map(lambda a: a.addressable_data(0), t)) if multiprocess else (lambda t: t)

    step_fn = make_train_step(cfg, layout, stats, mesh)
    test = eval_batch(cfg.test_protocol, layout, k["eval"], cfg.eval_size)
    print_fn(
        f"devices: {device_summary()} | config {cfg.name} | layout {layout.name} (K={layout.num_points}) | "
        f"protocol {cfg.protocol} | loss {cfg.loss} | batch {cfg.batch_size} | params {model.num_params(state.params)}"
    )
    fitter = ScheduleFitter(seconds, t_start, cfg.steps, print_fn) if seconds is not None and latest is None else None
    step = int(state.step)
    bar = None
    if progress and primary:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(state.total_steps), initial=step, desc=cfg.name, unit="step", dynamic_ncols=True)
    summary: dict = {}
    stopped_by_time = False
    with open(workdir / "metrics.jsonl" if primary else os.devnull, "a") as mf:
        log_row(mf, {"kind": "start", "step": step, "devices": device_summary(), "time": time.time()})
        while step < int(state.total_steps) and (max_steps is None or step < max_steps):
            state, metrics = step_fn(state, k["train"])
            step += 1
            if fitter is not None and fitter.wants(step):
                jax.block_until_ready(state.step)
                total = fitter.observe(step, time.perf_counter())
                if total is not None:
                    state = state._replace(total_steps=jnp.asarray(total, jnp.int32))
                    if bar is not None:
                        bar.total = total
                        bar.refresh()
            total = int(state.total_steps)
            if step % cfg.log_every == 0 or step == total:
                loss = float(metrics["loss"])
                if not math.isfinite(loss):
                    raise NonFiniteLossError(f"non-finite loss {loss} at step {step}; lower --lr or check the config")
                elapsed = time.perf_counter() - t_start
                log_row(
                    mf,
                    {
                        "kind": "train",
                        "step": step,
                        "seconds": elapsed,
                        "samples": step * cfg.batch_size,
                        "loss": loss,
                        "lr": float(metrics["lr"]),
                        "valid": float(metrics["valid"]),
                    },
                )
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.3f}")
                    bar.update(step - bar.n)
                if seconds is not None and elapsed > seconds - _END_RESERVE_S:
                    stopped_by_time = True
            end = step == total or stopped_by_time
            if step % cfg.checkpoint_every == 0 or end:
                mngr.save(step, args=_save_args(state), force=True)
                mngr.wait_until_finished()
                if primary:
                    integrity.record_step(workdir, step)
            if step % cfg.eval_every == 0 or end:
                summary = evaluate(cfg, layout, local(state.params), stats, test)
                log_row(mf, {"kind": "eval", "step": step, "seconds": time.perf_counter() - t_start, **summary})
                if bar is not None:
                    bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", l1_3d=f"{summary['l1_3d']:.3f}")
            if stopped_by_time:
                break
        if bar is not None:
            bar.close()
        mngr.wait_until_finished()
        finished = step >= int(state.total_steps) or stopped_by_time
        if finished:
            if not summary:
                summary = evaluate(cfg, layout, local(state.params), stats, test)
            wall = time.perf_counter() - t_start
            solver = checkpoint.Solver(cfg, layout, stats, local(state.params), {})
            train_info = {
                "steps": step,
                "schedule_steps": int(state.total_steps),
                "wall_seconds": wall,
                "samples": step * cfg.batch_size,
                "stopped_by_time": stopped_by_time,
                "devices": device_summary(),
                "processes": jax.process_count(),
            }
            if primary:
                checkpoint.save(
                    workdir / "model",
                    solver,
                    {"train": train_info, "eval": {"protocol": cfg.protocol, "n": cfg.eval_size, **summary}},
                    force=True,
                )
        wall = time.perf_counter() - t_start
        log_row(mf, {"kind": "end", "step": step, "seconds": wall, "finished": finished, **summary})
    return {"step": step, "wall_seconds": wall, "finished": finished, **summary}


def _save_args(state: TrainState):
    import orbax.checkpoint as ocp

    return ocp.args.StandardSave(state._asdict())
