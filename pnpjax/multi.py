"""Many solvers in one program: N models trained under ONE `jax.vmap`-ed, jitted step.

A *group* is a list of `Run`s whose configs share their structure (layout, protocol type,
widths, rotation head, batch size, schedule length, ...) and differ only in values:

  seed         different initialisations (and, with `data="per_seed"`, different batches)
  loss         any weighted mixture of `losses.LOSSES` (per-model weights; a plain `cfg.loss` is a
               one-hot weight vector). Models are partitioned by the *set* of losses they use, and
               each partition is one `vmap` inside the same jitted step, so a model computes only
               its own losses (computing all five for every model and selecting with the one-hot
               weights made the 15-model loss ablation's step 1.5x slower on CPU).
  VALUE_FIELDS learning rate, gradient clip, final LR fraction, training-noise levels.

The step is `train_step(group, layout, stats, states, hyper) -> (states, metrics)`: params and
optimizer states are stacked on a leading model axis, the per-model values live in `hyper`
(arrays, so a new set of values does not recompile), and the varying config fields are put
back into a `Config` *as traced scalars* before calling train.py's own `batch_loss`,
`optimizer`, `learning_rate` and `protocols.sample`. Model i of a group therefore computes
exactly what `train.train_step(cfg_i, layout, stats, state_i, train.keys(cfg_i)["train"])`
computes (tests/test_multi.py checks it to float tolerance).

Synthetic batches are drawn once per distinct *data stream* and shared by the models on that
stream: a stream is (PRNG key, training-protocol values). A batch is drawn by
`train.sample_batch`, as in a separate run: `data_shards` (part of the structure) cuts it into
sub-batches drawn from fold_in(step key, j), so a model of a group trains on the batches of
`pnpjax train --data-shards N`. With `data="per_seed"` a model's key
is `train.keys(cfg)["train"]`, as in a separate run, so models that differ only in loss or LR
share their batches; with `data="shared"` every model uses the first run's key (common random
numbers across seeds; only inits differ). Structure-changing configs (widths, head) go into
separate groups, which `train_many` runs in sequence.

Standardisation statistics are computed once per group (from the first run's training
protocol and stats key) and shared by its models.

Each model logs to `<workdir>/<run name>/metrics.jsonl` in train.py's format ("train" rows with
step, seconds since the group started, samples, loss, lr; "eval" rows with the summary of
`losses.summarize`), so `experiments.lib.ablations.plot_curves` draws them like any run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pnpjax import checkpoint, layouts, losses, model, protocols, train
from pnpjax.config import Config
from pnpjax.errors import ConfigError

# Config fields that may differ between the models of a group (dotted paths). They must be used
# only arithmetically by train.py and protocols.py, so that a traced scalar can stand in for them.
VALUE_FIELDS: tuple[str, ...] = (
    "lr",
    "grad_clip",
    "end_lr_fraction",
    "seed_train.noise_cm",
    "realistic.noise_2d",
    "realistic.shape_jitter_cm",
)
_DATA_PREFIX = {"seed": "seed_train.", "realistic": "realistic."}

DataMode = Literal["per_seed", "shared"]


@dataclasses.dataclass(frozen=True)
class Run:
    """One model of a group: a name, its config, and optionally a loss mixture.

    `loss_weights` (pairs of loss name and weight) replaces `cfg.loss` when given, e.g.
    `(("l1_3d", 1.0), ("reproj_2d", 10.0))`.
    """

    name: str
    cfg: Config
    loss_weights: tuple[tuple[str, float], ...] = ()

    def weights(self) -> dict[str, float]:
        return dict(self.loss_weights) if self.loss_weights else {self.cfg.loss: 1.0}


# --- configs with traced values -----------------------------------------------------------------


def get_field(cfg: Any, field: str) -> Any:
    for part in field.split("."):
        cfg = getattr(cfg, part)
    return cfg


def replace_field(cfg: Any, field: str, value: Any) -> Any:
    head, _, rest = field.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: replace_field(getattr(cfg, head), rest, value)})


def with_values(cfg: Config, values: Mapping[str, Any]) -> Config:
    """cfg with the given dotted fields replaced (values may be tracers inside a jitted step)."""
    for f, v in values.items():
        cfg = replace_field(cfg, f, v)
    return cfg


def structure(cfg: Config) -> Config:
    """cfg with everything a group may vary blanked: runs batch together iff structures are equal."""
    blank = with_values(cfg, {f: 0.0 for f in VALUE_FIELDS})
    return dataclasses.replace(blank, name="", seed=0, loss="l1_3d")


def plan_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """Split runs into batchable groups (equal `structure`), keeping the first-seen order."""
    groups: dict[Config, list[Run]] = {}
    for r in runs:
        groups.setdefault(structure(r.cfg), []).append(r)
    return list(groups.values())


# --- the step ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Group:
    """Static description of a group, bound into the step with functools.partial."""

    template: Config  # the first run's config; `model_fields`/`data_fields` are overwritten per model
    loss_names: tuple[str, ...]  # losses used by some model: the columns of Hyper.loss_w
    partitions: tuple[tuple[tuple[int, ...], tuple[str, ...]], ...]  # (model indices, losses they use)
    model_fields: tuple[str, ...]  # varying VALUE_FIELDS used by the optimiser/loss
    data_fields: tuple[str, ...]  # varying VALUE_FIELDS of the training protocol
    size: int  # number of models N
    streams: int  # number of distinct data streams U
    gather: bool  # False when model i simply uses stream i


class Hyper(NamedTuple):
    """Per-model values of a group (arrays; changing them does not recompile the step)."""

    values: dict[str, jax.Array]  # model field -> (N,)
    loss_w: jax.Array  # (N, L) weights over Group.loss_names
    data_keys: jax.Array  # (U,) PRNG keys of the data streams
    data_values: dict[str, jax.Array]  # data field -> (U,)
    data_index: jax.Array  # (N,) int32 stream of each model


def mixed_batch_loss(
    cfg: Config, layout, stats, loss_names: tuple[str, ...], weights: jax.Array, params, batch
) -> jax.Array:
    """train.batch_loss with the per-example loss sum_j weights[j] * LOSSES[loss_names[j]].

    One forward pass serves every loss (calling train.batch_loss per loss would repeat it);
    one-hot weights give exactly train.batch_loss of that loss.
    """
    pred = model.apply(cfg.model, params, stats, batch.xy)
    ctx = train.loss_context(cfg, layout, stats, batch)
    per_example = sum(weights[j] * losses.LOSSES[name](pred, batch, ctx) for j, name in enumerate(loss_names))
    return train.valid_mean(per_example, batch.valid)


def train_step(group: Group, layout: layouts.Layout, stats: model.Stats, states: train.TrainState, hyper: Hyper):
    """One step of all N models: (stacked states, hyper) -> (stacked states, (N,) metrics)."""
    cfg = group.template
    step = states.step[0]  # all models advance together

    def sample(key, data_values):  # train.train_step's batch: cfg.data_shards sub-batches of fold_in(key, j)
        return train.sample_batch(with_values(cfg, data_values), layout, jax.random.fold_in(key, step))

    batches = jax.vmap(sample)(hyper.data_keys, hyper.data_values)  # (U, B, ...)

    def one(loss_names, state: train.TrainState, values, loss_w, batch):
        c = with_values(cfg, values)
        loss_fn = functools.partial(mixed_batch_loss, c, layout, stats, loss_names, loss_w)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
        return train.apply_gradients(c, state, loss, grads, batch)  # the update of train.train_step

    outs = []
    for idx, names in group.partitions:
        everyone = idx == tuple(range(group.size))
        take = (lambda t: t) if everyone else (lambda t: jax.tree_util.tree_map(lambda a: a[np.asarray(idx)], t))
        if group.streams == 1:
            batch, batch_axis = unstack(batches, 0), None  # one batch, broadcast to every model
        elif everyone and not group.gather:
            batch, batch_axis = batches, 0  # model i uses stream i
        else:
            batch, batch_axis = jax.tree_util.tree_map(lambda a: a[take(hyper.data_index)], batches), 0
        cols = np.asarray([group.loss_names.index(n) for n in names])
        step_fn = jax.vmap(functools.partial(one, names), in_axes=(0, 0, 0, batch_axis))
        outs.append(step_fn(take(states), take(hyper.values), take(hyper.loss_w)[:, cols], batch))
    if len(outs) == 1:
        return outs[0]
    order = np.argsort(np.concatenate([idx for idx, _ in group.partitions]))
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a)[order], *outs)


def make_train_step(group: Group, layout: layouts.Layout, stats: model.Stats):
    return train.TraceCounted(functools.partial(train_step, group, layout, stats), donate_argnums=(0,))


def stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def unstack(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def build_group(runs: Sequence[Run], data: DataMode = "per_seed") -> tuple[Group, Hyper]:
    """The static Group and the per-model Hyper arrays of batchable runs."""
    if not runs:
        raise ConfigError("a group needs at least one run")
    if data not in ("per_seed", "shared"):
        raise ConfigError(f"data must be 'per_seed' or 'shared', got '{data}'")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"run names must be unique, got {names}")
    cfgs = [r.cfg.validate() for r in runs]
    s0 = structure(cfgs[0])
    for r, c in zip(runs, cfgs):
        if structure(c) != s0:
            raise ConfigError(
                f"run '{r.name}' differs from '{runs[0].name}' in structure; use train_many (or plan_groups)"
            )
        for name in r.weights():
            if name not in losses.LOSSES:
                raise ConfigError(f"run '{r.name}': unknown loss '{name}'")
    varying = [f for f in VALUE_FIELDS if len({get_field(c, f) for c in cfgs}) > 1]
    prefix = _DATA_PREFIX[cfgs[0].protocol]
    data_fields = tuple(f for f in varying if f.startswith(prefix))
    model_fields = tuple(f for f in varying if not f.startswith(tuple(_DATA_PREFIX.values())))
    loss_names = tuple(n for n in losses.LOSSES if any(r.weights().get(n, 0.0) != 0.0 for r in runs))
    parts: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(runs):
        parts.setdefault(tuple(n for n in loss_names if r.weights().get(n, 0.0) != 0.0), []).append(i)
    partitions = tuple((tuple(idx), names) for names, idx in parts.items())

    # Data streams: (key seed, protocol values); identical streams are sampled once.
    stream_ids: dict[tuple, int] = {}
    index = []
    for c in cfgs:
        sid = (c.seed if data == "per_seed" else cfgs[0].seed, tuple(get_field(c, f) for f in data_fields))
        index.append(stream_ids.setdefault(sid, len(stream_ids)))
    streams = list(stream_ids)
    seed_cfg = lambda seed: dataclasses.replace(cfgs[0], seed=seed)  # noqa: E731
    hyper = Hyper(
        values={f: jnp.asarray([get_field(c, f) for c in cfgs], jnp.float32) for f in model_fields},
        loss_w=jnp.asarray([[r.weights().get(n, 0.0) for n in loss_names] for r in runs], jnp.float32),
        data_keys=jnp.stack([train.keys(seed_cfg(seed))["train"] for seed, _ in streams]),
        data_values={f: jnp.asarray([vals[i] for _, vals in streams], jnp.float32) for i, f in enumerate(data_fields)},
        data_index=jnp.asarray(index, jnp.int32),
    )
    gather = index != list(range(len(runs)))
    group = Group(cfgs[0], loss_names, partitions, model_fields, data_fields, len(runs), len(streams), gather)
    return group, hyper


def init_states(runs: Sequence[Run], layout: layouts.Layout) -> train.TrainState:
    """Stacked initial TrainStates, each from its run's own init key (as a separate run)."""
    return stack([train.init_state(r.cfg, layout, train.keys(r.cfg)["init"]) for r in runs])


# --- the loop ---------------------------------------------------------------------------------


def make_test_sets(
    layout: layouts.Layout, specs: Mapping[str, protocols.Protocol], n: int, seed: int = 1234
) -> dict[str, protocols.Batch]:
    """Fixed held-out sets: name -> Batch of n draws (keys from `seed` and the name's position)."""
    root = jax.random.key(seed)
    return {
        name: train.eval_batch(p, layout, jax.random.fold_in(root, i), n) for i, (name, p) in enumerate(specs.items())
    }


@dataclasses.dataclass
class GroupResult:
    runs: list[Run]
    stats: model.Stats
    params: list[Any]  # per model, unstacked
    evals: dict[str, dict[str, dict]]  # run name -> test-set name -> summary
    timing: dict[str, float]  # wall seconds: stats, compile, train, eval, total; ms_per_step
    diverged: dict[str, int]  # run name -> first logged step with a non-finite loss
    traces: int  # compilations of the step (1 expected)
    streams: int  # distinct batch streams sampled per step


def _evaluate_all(cfg: Config, layout, params, stats, test_sets: Mapping[str, protocols.Batch]) -> dict[str, dict]:
    return {name: train.evaluate(cfg, layout, params, stats, b) for name, b in test_sets.items()}


def train_group(
    runs: Sequence[Run],
    workdir: str | Path,
    test_sets: Mapping[str, protocols.Batch],
    *,
    data: DataMode = "per_seed",
    save_models: bool = False,
    print_fn=print,
) -> GroupResult:
    """Train the runs of one group together; evaluate every model on every test set.

    Every `cfg.eval_every` steps each model is evaluated on the first test set (a learning
    curve); at the end on all of them. Non-finite losses are recorded per model (the model's
    rows then hold NaN), not raised, so that one diverging recipe does not end an ablation.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    group, hyper = build_group(runs, data)
    cfg = group.template
    layout = layouts.get_layout(cfg.layout)
    stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, train.keys(cfg)["stats"], cfg.stats_samples)
    jax.block_until_ready(stats)
    t_stats = time.perf_counter() - t0
    states = init_states(runs, layout)
    step_fn = make_train_step(group, layout, stats)
    first_test = next(iter(test_sets))
    print_fn(
        f"devices: {train.device_summary()} | group of {group.size} models, {group.streams} data stream(s) | "
        f"widths {'-'.join(map(str, cfg.model.widths))} {cfg.model.rotation} | protocol {cfg.protocol} | "
        f"losses {', '.join(group.loss_names)} | varying {', '.join(group.model_fields + group.data_fields) or '-'} | "
        f"{cfg.steps} steps x {cfg.batch_size}"
    )
    files = []
    for r in runs:
        (workdir / r.name).mkdir(parents=True, exist_ok=True)
        f = open(workdir / r.name / "metrics.jsonl", "w")
        train.log_row(
            f,
            {
                "kind": "start",
                "step": 0,
                "devices": train.device_summary(),
                "time": time.time(),
                "run": r.name,
                "group_size": group.size,
                "config": r.cfg.to_dict(),
                "loss_weights": r.weights(),
            },
        )
        files.append(f)
    diverged: dict[str, int] = {}
    t_eval = 0.0
    t_compile = None
    try:
        t_loop = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            states, metrics = step_fn(states, hyper)
            if t_compile is None:
                jax.block_until_ready(metrics)
                t_compile = time.perf_counter() - t_loop
                t_loop = time.perf_counter()
            if step % cfg.log_every == 0 or step == cfg.steps:
                m = jax.device_get(metrics)
                elapsed = time.perf_counter() - t0
                for i, (r, f) in enumerate(zip(runs, files)):
                    loss = float(m["loss"][i])
                    if not math.isfinite(loss) and r.name not in diverged:
                        diverged[r.name] = step
                        print_fn(f"warning: {r.name}: non-finite loss at step {step}")
                    train.log_row(
                        f,
                        {
                            "kind": "train",
                            "step": step,
                            "seconds": elapsed,
                            "samples": step * cfg.batch_size,
                            "loss": loss,
                            "lr": float(m["lr"][i]),
                            "valid": float(m["valid"][i]),
                        },
                    )
            if step % cfg.eval_every == 0 and step != cfg.steps:
                te = time.perf_counter()
                for i, (r, f) in enumerate(zip(runs, files)):
                    if r.name in diverged:
                        continue
                    s = train.evaluate(cfg, layout, unstack(states.params, i), stats, test_sets[first_test])
                    train.log_row(
                        f, {"kind": "eval", "step": step, "seconds": time.perf_counter() - t0, "test": first_test, **s}
                    )
                t_eval += time.perf_counter() - te
        jax.block_until_ready(states)
        t_train = time.perf_counter() - t_loop - t_eval
        te = time.perf_counter()
        params = [jax.device_get(unstack(states.params, i)) for i in range(group.size)]
        evals = {}
        for r, p, f in zip(runs, params, files):
            evals[r.name] = _evaluate_all(cfg, layout, p, stats, test_sets)
            for name, s in evals[r.name].items():
                train.log_row(
                    f, {"kind": "eval", "step": cfg.steps, "seconds": time.perf_counter() - t0, "test": name, **s}
                )
        t_eval += time.perf_counter() - te
        total = time.perf_counter() - t0
        for r, f in zip(runs, files):
            train.log_row(f, {"kind": "end", "step": cfg.steps, "seconds": total, **evals[r.name][first_test]})
    finally:
        for f in files:
            f.close()
    if save_models:
        for r, p in zip(runs, params):
            solver = checkpoint.Solver(r.cfg, layout, stats, p, {})
            checkpoint.save(workdir / r.name / "model", solver, {"eval": evals[r.name]}, force=True)
    steps_timed = max(cfg.steps - 1, 1)
    timing = {
        "stats": t_stats,
        "compile": t_compile or 0.0,
        "train": t_train,
        "eval": t_eval,
        "total": total,
        "ms_per_step": 1e3 * t_train / steps_timed,
    }
    return GroupResult(list(runs), stats, params, evals, timing, diverged, step_fn.traces, group.streams)


def train_many(
    runs: Sequence[Run],
    workdir: str | Path,
    test_sets: Mapping[str, protocols.Batch],
    *,
    data: DataMode = "per_seed",
    save_models: bool = False,
    print_fn=print,
) -> list[GroupResult]:
    """Train runs in as few vmapped groups as their structures allow, one group after another."""
    return [
        train_group(g, workdir, test_sets, data=data, save_models=save_models, print_fn=print_fn)
        for g in plan_groups(runs)
    ]


def train_separately(
    run: Run,
    workdir: str | Path,
    test_sets: Mapping[str, protocols.Batch],
    *,
    stats: model.Stats | None = None,
    print_fn=print,
) -> GroupResult:
    """The baseline: one run with train.py's own jitted step (its own compile), logged and
    evaluated exactly like a group, without checkpoints. `stats` (e.g. a group's) skips computing
    them, so the run is the same training as in that group."""
    t0 = time.perf_counter()
    workdir = Path(workdir)
    cfg = run.cfg.validate()
    if run.loss_weights:
        raise ConfigError("train_separately runs a single loss (cfg.loss)")
    layout = layouts.get_layout(cfg.layout)
    k = train.keys(cfg)
    if stats is None:
        stats = model.compute_stats(cfg.model, cfg.train_protocol, layout, k["stats"], cfg.stats_samples)
        jax.block_until_ready(stats)
    t_stats = time.perf_counter() - t0
    state = train.init_state(cfg, layout, k["init"])
    step_fn = train.make_train_step(cfg, layout, stats)
    first_test = next(iter(test_sets))
    (workdir / run.name).mkdir(parents=True, exist_ok=True)
    diverged: dict[str, int] = {}
    t_eval, t_compile = 0.0, None
    with open(workdir / run.name / "metrics.jsonl", "w") as f:
        train.log_row(
            f,
            {
                "kind": "start",
                "step": 0,
                "devices": train.device_summary(),
                "time": time.time(),
                "run": run.name,
                "group_size": 1,
                "config": cfg.to_dict(),
                "loss_weights": run.weights(),
            },
        )
        t_loop = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            state, metrics = step_fn(state, k["train"])
            if t_compile is None:
                jax.block_until_ready(metrics)
                t_compile = time.perf_counter() - t_loop
                t_loop = time.perf_counter()
            if step % cfg.log_every == 0 or step == cfg.steps:
                m = jax.device_get(metrics)
                loss = float(m["loss"])
                if not math.isfinite(loss) and run.name not in diverged:
                    diverged[run.name] = step
                train.log_row(
                    f,
                    {
                        "kind": "train",
                        "step": step,
                        "seconds": time.perf_counter() - t0,
                        "samples": step * cfg.batch_size,
                        "loss": loss,
                        "lr": float(m["lr"]),
                        "valid": float(m["valid"]),
                    },
                )
            if step % cfg.eval_every == 0 and step != cfg.steps and run.name not in diverged:
                te = time.perf_counter()
                s = train.evaluate(cfg, layout, state.params, stats, test_sets[first_test])
                train.log_row(
                    f, {"kind": "eval", "step": step, "seconds": time.perf_counter() - t0, "test": first_test, **s}
                )
                t_eval += time.perf_counter() - te
        jax.block_until_ready(state)
        t_train = time.perf_counter() - t_loop - t_eval
        te = time.perf_counter()
        params = jax.device_get(state.params)
        evals = {run.name: _evaluate_all(cfg, layout, params, stats, test_sets)}
        for name, s in evals[run.name].items():
            train.log_row(
                f, {"kind": "eval", "step": cfg.steps, "seconds": time.perf_counter() - t0, "test": name, **s}
            )
        t_eval += time.perf_counter() - te
        total = time.perf_counter() - t0
        train.log_row(f, {"kind": "end", "step": cfg.steps, "seconds": total, **evals[run.name][first_test]})
    timing = {
        "stats": t_stats,
        "compile": t_compile or 0.0,
        "train": t_train,
        "eval": t_eval,
        "total": total,
        "ms_per_step": 1e3 * t_train / max(cfg.steps - 1, 1),
    }
    return GroupResult([run], stats, [params], evals, timing, diverged, step_fn.traces, 1)
