"""Ablations behind `experiments/*.py`: each trains its models with `pnpjax.multi` (vmapped groups),
evaluates every model on fixed held-out sets, and writes `results.md` (mean ± std over seeds,
the command that made it at the top), PNG plots and per-model `runs/<name>/metrics.jsonl`.

  ablate_losses    l1_3d, l2_3d, reproj_2d, pose_mse, geodesic x seeds in ONE vmapped program,
                   judged on every metric and on every loss; also times the same trainings run
                   one after another with train.py's own step (the vmapped/separate wall ratio).
  ablate_rotation  quat vs 6d rotation head (two structures: two groups in sequence).
  ablate_noise     train-noise x test-noise matrices (realistic protocol: 2D landmark noise, with
                   held-out head shapes and cameras whose FOV lies outside training; seed protocol:
                   the original's 3D jitter noise_cm).
  ablate_size      widths/depths x TF.js storage (float32/float16/uint8) -> accuracy vs bytes of
                   the web artifact (Pareto front), through `pnpjax.export` when available.
  plot_curves      learning curves (loss vs wall seconds and vs samples) of every metrics.jsonl.

Every function has a `smoke` mode (tiny nets, tens of steps) used by tests/test_experiments.py.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lib.report import md_table, write_report
from pnpjax import config as configs
from pnpjax import layouts, losses, model, multi, protocols, train
from pnpjax.config import Config
from pnpjax.model import ModelConfig

LOSS_NAMES = tuple(losses.LOSSES)
# Summary metrics shown in the tables: key of losses.summarize -> (column title, scale)
METRICS = {
    "l1_3d": ("L1-3D (cm)", 1.0),
    "rot_mean_deg": ("rot mean (°)", 1.0),
    "rot_median_deg": ("rot median (°)", 1.0),
    "trans_mean": ("trans mean (cm)", 1.0),
    "reproj_rmse_median": ("reproj RMSE med (image units)", 1.0),
    "failures": ("failures >30° (%)", 100.0),
}


# --- configs ------------------------------------------------------------------------------------


def base_config(protocol: str, *, smoke: bool, steps: int, batch_size: int, layout: str = "blazeface6") -> Config:
    """The starting config of an ablation: a named preset resized to the budget (or the smoke config),
    on the l1_3d loss whatever the preset trains on (the realistic presets moved to `geodesic` after
    the ablations that chose it: their commands keep giving their results)."""
    if smoke:
        cfg = configs.get_config("smoke")
        return dataclasses.replace(
            cfg,
            name=f"smoke-{protocol}",
            protocol=protocol,
            layout=layout,
            steps=steps,
            log_every=max(steps // 4, 1),
            eval_every=max(steps // 2, 1),
        )
    cfg = configs.get_config(layout if protocol == "realistic" else f"{layout}-seed")
    return dataclasses.replace(
        cfg,
        loss="l1_3d",
        steps=steps,
        batch_size=batch_size,
        warmup_steps=min(cfg.warmup_steps, steps // 10),
        log_every=max(steps // 60, 1),
        eval_every=max(steps // 6, 1),
        stats_samples=50_000,
    )


# --- tables -------------------------------------------------------------------------------------


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    a = np.asarray(list(values), np.float64)
    return float(np.mean(a)), float(np.std(a, ddof=1)) if a.size > 1 else 0.0


def fmt_ms(values: Iterable[float], digits: int = 3) -> str:
    m, s = mean_std(values)
    if not np.isfinite(m):
        return "diverged"
    return f"{m:.{digits}g} ± {s:.2g}"


def timestamp_note(extra: str = "") -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Devices: {train.device_summary()}; {os.cpu_count()} CPU cores, load average {load:.1f} at the end "
        f"(the machine was shared){extra}. Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )


# --- evaluation helpers -------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _loss_values(model_cfg: ModelConfig, layout: layouts.Layout, names: tuple[str, ...], params, stats, batch):
    cfg = Config(model=model_cfg)
    pred = model.apply(model_cfg, params, stats, batch.xy)
    ctx = train.loss_context(cfg, layout, stats, batch)
    w = batch.valid.astype(jnp.float32)
    return {n: jnp.sum(losses.LOSSES[n](pred, batch, ctx) * w) / jnp.maximum(jnp.sum(w), 1.0) for n in names}


def loss_values(cfg: Config, layout: layouts.Layout, params, stats, batch: protocols.Batch) -> dict[str, float]:
    """Every loss of `losses.LOSSES` on a held-out batch (mean over valid examples)."""
    return {k: float(v) for k, v in _loss_values(cfg.model, layout, LOSS_NAMES, params, stats, batch).items()}


def protocol_test_sets(
    base: protocols.Protocol,
    layout: layouts.Layout,
    n: int,
    variants: Mapping[str, Mapping[str, Any]],
    seed: int = 1234,
) -> dict[str, protocols.Batch]:
    """Held-out sets of one protocol at several values of its numeric fields, compiled once.

    All variants share the PRNG key (common random numbers: the sets differ only by the varied
    fields, so a comparison across them is paired). Variants must vary the same fields.
    """
    fields = sorted({f for v in variants.values() for f in v})
    if any(sorted(v) != fields for v in variants.values()):
        raise ValueError("every variant must set the same fields")
    fn = jax.jit(lambda key, vals: protocols.sample(multi.with_values(base, vals), key, layout, n))
    key = jax.random.key(seed)
    return {
        name: fn(key, {f: jax.tree_util.tree_map(jnp.float32, v[f]) for f in fields}) for name, v in variants.items()
    }


def concat_batches(*batches: protocols.Batch) -> protocols.Batch:
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *batches)


def results_rows(results: Sequence[multi.GroupResult]) -> list[tuple[multi.Run, Any, model.Stats, dict]]:
    return [(r, p, g.stats, g.evals[r.name]) for g in results for r, p in zip(g.runs, g.params)]


def clean(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("*.png"):
        p.unlink()
    return out


# --- plots --------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(path: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Learning curves of every `metrics.jsonl` under path (a workdir or a results dir).

    Three panels: training loss vs wall seconds, vs samples (log-log), and held-out L1-3D vs
    samples (from the "eval" rows on each run's first test set). Writes `learning_curves.png`.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("metrics.jsonl"))
    if not files:
        raise FileNotFoundError(f"no metrics.jsonl under {path}")
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    cmap = plt.get_cmap("tab10")
    labels: dict[str, int] = {}
    for f in files:
        rows = read_metrics(f)
        start = next((r for r in rows if r.get("kind") == "start"), {})
        name = start.get("run") or f.parent.name
        label = name.rsplit("-s", 1)[0] if "-s" in name else name  # color by recipe, not by seed
        color = cmap(labels.setdefault(label, len(labels)) % 10)
        tr = [r for r in rows if r.get("kind") == "train" and np.isfinite(r.get("loss", np.nan))]
        if tr:
            kw = dict(color=color, alpha=0.8, lw=1.2)
            axes[0].plot([r["seconds"] for r in tr], [r["loss"] for r in tr], **kw)
            axes[1].plot([r["samples"] for r in tr], [r["loss"] for r in tr], **kw)
        first = next((r.get("test") for r in rows if r.get("kind") == "eval"), None)
        ev = [r for r in rows if r.get("kind") == "eval" and r.get("test") == first]
        if ev:
            axes[2].plot(
                [r["step"] * start.get("config", {}).get("batch_size", 1) for r in ev],
                [r["l1_3d"] for r in ev],
                "o-",
                color=color,
                alpha=0.8,
                ms=3,
            )
    for ax, xl, yl in zip(
        axes,
        ("wall seconds (incl. compile)", "samples", "samples"),
        ("training loss (own units)", "training loss (own units)", "held-out L1-3D (cm)"),
    ):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].set_xscale("log")
    handles = [plt.Line2D([], [], color=cmap(i % 10), label=lab) for lab, i in labels.items()]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), fontsize=8)
    fig.suptitle(title or f"learning curves: {path.name}", y=0.02, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.92))
    out = Path(out) if out else (path.parent if path.is_file() else path) / "learning_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def bar_plot(
    out: Path,
    groups: Sequence[str],
    per_group: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[str],
    title: str,
):
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        ms = [mean_std(per_group[g][m]) for g in groups]
        ax.bar(range(len(groups)), [a for a, _ in ms], yerr=[b for _, b in ms], capsize=4, color="tab:blue", alpha=0.8)
        for i, g in enumerate(groups):
            ax.scatter([i] * len(per_group[g][m]), per_group[g][m], color="k", s=8, zorder=3)
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set_title(METRICS.get(m, (m,))[0])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# --- losses -------------------------------------------------------------------------------------


def ablate_losses(
    out: str | Path,
    *,
    command: str,
    steps: int = 1500,
    batch_size: int = 1024,
    seeds: int = 3,
    eval_size: int = 20_000,
    separate: int | None = None,
    data: multi.DataMode = "per_seed",
    smoke: bool = False,
    print_fn=print,
) -> dict:
    """5 losses x seeds in one vmapped program, then `separate` of the same runs one by one.

    `separate` (default: all) is how many of the runs are repeated with train.py's own step to
    time them; with fewer than all, the total is extrapolated (and the table says so). The
    separate runs reuse the group's standardisation statistics and test set, so they are the
    same trainings (checked: their final L1-3D is reported next to the vmapped one).
    """
    out = clean(Path(out))
    base = base_config("seed", smoke=smoke, steps=steps, batch_size=batch_size)
    layout = layouts.get_layout(base.layout)
    runs = [
        multi.Run(f"{loss}-s{s}", dataclasses.replace(base, name=f"{loss}-s{s}", loss=loss, seed=s))
        for loss in LOSS_NAMES
        for s in range(seeds)
    ]
    tests = multi.make_test_sets(layout, {"seed_test": base.seed_test}, eval_size)
    (g,) = multi.train_many(runs, out / "runs", tests, data=data, print_fn=print_fn)
    lossvals = {r.name: loss_values(r.cfg, layout, p, g.stats, tests["seed_test"]) for r, p in zip(g.runs, g.params)}

    n_sep = len(runs) if separate is None else max(1, min(separate, len(runs)))
    # Measure an even spread of losses when only some are timed.
    chosen = [runs[i] for i in np.linspace(0, len(runs) - 1, n_sep).round().astype(int)]
    sep_results = []
    with tempfile.TemporaryDirectory(prefix="pnpjax-separate-") as tmp:
        for r in chosen:
            print_fn(f"separate run {r.name}")
            sep_results.append(multi.train_separately(r, tmp, tests, stats=g.stats, print_fn=print_fn))
    sep_total = sum(s.timing["total"] for s in sep_results) * len(runs) / n_sep
    sep_ms = sum(s.timing["ms_per_step"] for s in sep_results) * len(runs) / n_sep
    ratio = g.timing["total"] / sep_total
    twins = [
        (s.runs[0], g.evals[s.runs[0].name]["seed_test"]["l1_3d"], s.evals[s.runs[0].name]["seed_test"]["l1_3d"])
        for s in sep_results
    ]
    agreement = max(abs(a - b) for _, a, b in twins)
    twin_losses = [loss for loss in LOSS_NAMES if any(r.cfg.loss == loss for r, _, _ in twins)]
    twin_rows = [
        [
            f"`{loss}`",
            fmt_ms(a for r, a, _ in twins if r.cfg.loss == loss),
            fmt_ms(b for r, _, b in twins if r.cfg.loss == loss),
            f"{max(abs(a - b) for r, a, b in twins if r.cfg.loss == loss):.2g}",
        ]
        for loss in twin_losses
    ]

    # Tables.
    per: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        e = g.evals[r.name]["seed_test"]
        d = per.setdefault(r.cfg.loss, {})
        for m, (_, scale) in METRICS.items():
            d.setdefault(m, []).append(e[m] * scale)
        for n in LOSS_NAMES:
            d.setdefault(f"loss:{n}", []).append(lossvals[r.name][n])
    head = ["trained on"] + [METRICS[m][0] for m in METRICS]
    rows = [[f"`{loss}`"] + [fmt_ms(per[loss][m]) for m in METRICS] for loss in LOSS_NAMES]
    head2 = ["trained on \\ judged by"] + [f"`{n}`" for n in LOSS_NAMES]
    rows2 = [[f"`{loss}`"] + [fmt_ms(per[loss][f"loss:{n}"]) for n in LOSS_NAMES] for loss in LOSS_NAMES]
    best = {n: min(LOSS_NAMES, key=lambda loss: np.mean(per[loss][f"loss:{n}"])) for n in LOSS_NAMES}
    extrap = (
        ""
        if n_sep == len(runs)
        else f" (**{n_sep} of {len(runs)} measured, total extrapolated ×{len(runs) / n_sep:.2f}**)"
    )
    t_rows = [
        [
            "vmapped: 1 program, all models",
            f"{g.timing['total']:.1f}",
            f"{g.timing['stats']:.1f}",
            f"{g.timing['compile']:.1f}",
            f"{g.timing['train']:.1f}",
            f"{g.timing['eval']:.1f}",
            f"{g.timing['ms_per_step']:.1f}",
            str(g.traces),
        ],
        [
            f"separate: {len(runs)} runs of train.py's step{extrap}",
            f"{sep_total:.1f}",
            "(shared)",
            f"{sum(s.timing['compile'] for s in sep_results) * len(runs) / n_sep:.1f}",
            f"{sum(s.timing['train'] for s in sep_results) * len(runs) / n_sep:.1f}",
            f"{sum(s.timing['eval'] for s in sep_results) * len(runs) / n_sep:.1f}",
            f"{sep_ms:.1f}",
            str(n_sep),
        ],
    ]
    body = [
        f"{len(LOSS_NAMES)} losses × {seeds} seeds, seed protocol (train s=2, test s=1), `{base.layout}`, "
        f"widths {'-'.join(map(str, base.model.widths))} `{base.model.rotation}`, {base.steps} steps × batch {base.batch_size} "
        f"= {base.steps * base.batch_size:,} samples per model (equal budget), Adam lr {base.lr:g} (warmup {base.warmup_steps}, cosine). "
        f"Data streams: `{data}` ({g.streams} distinct batch streams for {len(runs)} models). "
        f"Held-out: {tests['seed_test'].valid.sum()} draws of the seed test protocol (fixed key), the same for every model. "
        f"Mean ± std over the {seeds} seeds.",
        "## Every model on every metric\n\n" + md_table(head, rows),
        "## Every model on every loss (held-out value of each training loss)\n\n"
        "Units: `l1_3d` cm, `l2_3d` cm², `reproj_2d` normalised image units, `pose_mse` standardised, `geodesic` cm.\n\n"
        + md_table(head2, rows2)
        + "\n\nBest trainer per judging loss: "
        + ", ".join(f"`{n}` ← `{b}`" for n, b in best.items())
        + ".",
        "## Wall time: one vmapped program vs the same trainings run separately\n\n"
        + md_table(
            ["", "total s", "stats s", "compile s", "train-loop s", "eval s", "ms/step (all models)", "step compiles"],
            t_rows,
        )
        + f"\n\n**Ratio vmapped / separate = {ratio:.2f}** (target ≤ 0.5); steady-state step-time ratio "
        f"{g.timing['ms_per_step'] / sep_ms:.2f}. The separate runs use train.py's own jitted step (one compile each, "
        f"their own batch stream each) and the group's statistics and test set, without checkpoints, so both sides do the "
        f"same trainings and evaluations. "
        + timestamp_note()
        + "\n\nThe separate runs are the vmapped models' twins (same init, batches, statistics; `tests/test_multi.py` "
        "checks equality to float tolerance over a few steps). Over the full schedule, float-level differences "
        "(a batched matmul sums in another order) grow like a change of seed, so the twins agree in distribution, "
        "not digit for digit:\n\n"
        + md_table(["loss", "L1-3D vmapped (cm)", "L1-3D separate (cm)", "largest twin difference (cm)"], twin_rows),
        "## Plots\n\n![metrics](metrics.png)\n\n![learning curves](learning_curves.png)",
    ]
    write_report(out, "Loss ablation", command, body)
    bar_plot(
        out / "metrics.png",
        LOSS_NAMES,
        per,
        ["l1_3d", "rot_mean_deg", "trans_mean", "failures"],
        f"trained loss vs held-out metrics (mean ± std, {seeds} seeds)",
    )
    plot_curves(out / "runs", out / "learning_curves.png", title="loss ablation: colour = training loss")
    summary = {
        "ratio": ratio,
        "vmapped_seconds": g.timing["total"],
        "separate_seconds": sep_total,
        "separate_measured": n_sep,
        "step_ms_vmapped": g.timing["ms_per_step"],
        "step_ms_separate": sep_ms,
        "traces": g.traces,
        "streams": g.streams,
        "max_abs_diff_l1_3d_vs_separate": agreement,
        "per_loss": {k: {m: mean_std(v) for m, v in d.items()} for k, d in per.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- rotation head ------------------------------------------------------------------------------


def ablate_rotation(
    out: str | Path,
    *,
    command: str,
    steps: int = 1500,
    batch_size: int = 1024,
    seeds: int = 3,
    eval_size: int = 20_000,
    protocol: str = "seed",
    smoke: bool = False,
    print_fn=print,
) -> dict:
    """quat vs 6d head x seeds (two structures: two vmapped groups, one after the other)."""
    out = clean(Path(out))
    base = base_config(protocol, smoke=smoke, steps=steps, batch_size=batch_size)
    layout = layouts.get_layout(base.layout)
    runs = [
        multi.Run(
            f"{head}-s{s}",
            dataclasses.replace(
                base, name=f"{head}-s{s}", seed=s, model=dataclasses.replace(base.model, rotation=head)
            ),
        )
        for head in ("quat", "6d")
        for s in range(seeds)
    ]
    test_name = f"{protocol}_test"
    tests = multi.make_test_sets(layout, {test_name: base.test_protocol}, eval_size)
    results = multi.train_many(runs, out / "runs", tests, print_fn=print_fn)
    per: dict[str, dict[str, list[float]]] = {}
    for r, _, _, ev in results_rows(results):
        for m, (_, scale) in METRICS.items():
            per.setdefault(r.cfg.model.rotation, {}).setdefault(m, []).append(ev[test_name][m] * scale)
    heads = ("quat", "6d")
    group_times = ", ".join(f"{g.timing['total']:.0f} s" for g in results)
    rows = [[f"`{h}`"] + [fmt_ms(per[h][m]) for m in METRICS] for h in heads]
    body = [
        f"Rotation head: `quat` (4 numbers, normalised) vs `6d` (two columns of R, Gram-Schmidt). {seeds} seeds each, "
        f"{protocol} protocol, `{base.layout}`, widths {'-'.join(map(str, base.model.widths))}, loss `{base.loss}`, "
        f"{base.steps} steps × batch {base.batch_size}; each head is one vmapped group of {seeds} models (the heads differ "
        f"in structure, so the two groups run in sequence: {group_times}). "
        f"Held-out: {int(tests[test_name].valid.sum())} draws of the {protocol} test protocol (fixed key). Mean ± std over seeds.",
        md_table(["head"] + [METRICS[m][0] for m in METRICS], rows),
        timestamp_note(),
        "![metrics](metrics.png)\n\n![learning curves](learning_curves.png)",
    ]
    write_report(out, "Rotation-head ablation", command, body)
    bar_plot(
        out / "metrics.png",
        heads,
        per,
        ["l1_3d", "rot_mean_deg", "rot_median_deg", "trans_mean"],
        f"quat vs 6d ({seeds} seeds)",
    )
    plot_curves(out / "runs", out / "learning_curves.png", title="rotation head: colour = head")
    summary = {h: {m: mean_std(v) for m, v in d.items()} for h, d in per.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- noise --------------------------------------------------------------------------------------

REALISTIC_NOISE = (0.0, 0.01, 0.03, 0.06, 0.1)  # landmark noise std, fraction of the face's image size
SEED_NOISE = (0.0, 0.5, 1.0, 2.0, 4.0)  # half-width of the uniform 3D jitter, cm (the original: 1)
TRAIN_HFOV = (45.0, 75.0)
UNSEEN_HFOV = ((30.0, 45.0), (75.0, 100.0))
HELD_OUT_SHAPE = {"head_scale": (0.85, 1.15), "shape_jitter_cm": 0.5}


def _noise_group(protocol: str, base: Config, levels: Sequence[float], seeds: int) -> list[multi.Run]:
    field = "realistic.noise_2d" if protocol == "realistic" else "seed_train.noise_cm"
    cfg = base
    if protocol == "realistic":
        cfg = dataclasses.replace(base, realistic=dataclasses.replace(base.realistic, hfov_deg=TRAIN_HFOV))
    return [
        multi.Run(f"{protocol}-noise{lv:g}-s{s}", multi.with_values(dataclasses.replace(cfg, seed=s), {field: lv}))
        for lv in levels
        for s in range(seeds)
    ]


def _noise_tests(
    protocol: str, train_proto: protocols.Protocol, layout, levels: Sequence[float], n: int
) -> dict[str, dict[str, protocols.Batch]]:
    """kind -> {test level name -> batch}. Realistic: 'seen' (training cameras and shapes) and
    'unseen' (FOV outside training, half narrower half wider, and held-out head shapes)."""
    if protocol == "seed":
        sets = protocol_test_sets(protocols.SEED_TEST, layout, n, {f"{lv:g}": {"noise_cm": lv} for lv in levels})
        return {"seed test": sets}
    seen = protocol_test_sets(train_proto, layout, n, {f"{lv:g}": {"noise_2d": lv} for lv in levels})
    held = dataclasses.replace(train_proto, **HELD_OUT_SHAPE)
    parts = [
        protocol_test_sets(
            dataclasses.replace(held, hfov_deg=fov),
            layout,
            n // 2,
            {f"{lv:g}": {"noise_2d": lv} for lv in levels},
            seed=99 + i,
        )
        for i, fov in enumerate(UNSEEN_HFOV)
    ]
    unseen = {k: concat_batches(parts[0][k], parts[1][k]) for k in parts[0]}
    return {"seen cameras and shapes": seen, "unseen cameras (FOV outside training) and held-out shapes": unseen}


def ablate_noise(
    out: str | Path,
    *,
    command: str,
    steps: int = 1500,
    batch_size: int = 1024,
    seeds: int = 3,
    eval_size: int = 10_000,
    protocols_: Sequence[str] = ("realistic", "seed"),
    levels: Mapping[str, Sequence[float]] | None = None,
    smoke: bool = False,
    print_fn=print,
) -> dict:
    """Train-noise x test-noise matrices; one vmapped group per protocol (noise levels x seeds).

    Batches are shared across seeds (`data="shared"`: seeds differ in init) and drawn with
    common random numbers across noise levels, so a group has one batch stream per level.
    """
    out = clean(Path(out))
    levels = dict(levels or {"realistic": REALISTIC_NOISE, "seed": SEED_NOISE})
    body = []
    summary: dict = {}
    plt = _plt()
    for protocol in protocols_:
        lv = tuple(levels[protocol])
        base = base_config(protocol, smoke=smoke, steps=steps, batch_size=batch_size)
        layout = layouts.get_layout(base.layout)
        runs = _noise_group(protocol, base, lv, seeds)
        kinds = _noise_tests(protocol, runs[0].cfg.train_protocol, layout, lv, eval_size)
        flat = {f"{kind} | noise {name}": b for kind, sets in kinds.items() for name, b in sets.items()}
        (g,) = multi.train_many(runs, out / "runs", flat, data="shared", print_fn=print_fn)
        unit = (
            "`noise_2d`: landmark noise std, fraction of the face's image size"
            if protocol == "realistic"
            else "`noise_cm`: half-width of the uniform 3D jitter, cm"
        )
        body.append(
            f"## {protocol} protocol — {unit}\n\n"
            + (
                f"Training: realistic protocol with horizontal FOV {TRAIN_HFOV[0]:g}–{TRAIN_HFOV[1]:g}° and the default head shapes "
                f"(scale 0.9–1.1, 0.3 cm jitter); noise_2d as in the rows. Test: noise_2d as in the columns; 'unseen' = FOV "
                f"{UNSEEN_HFOV[0][0]:g}–{UNSEEN_HFOV[0][1]:g}° and {UNSEEN_HFOV[1][0]:g}–{UNSEEN_HFOV[1][1]:g}° (half each) with "
                f"head scale {HELD_OUT_SHAPE['head_scale'][0]}–{HELD_OUT_SHAPE['head_scale'][1]} and {HELD_OUT_SHAPE['shape_jitter_cm']} cm "
                f"shape jitter."
                if protocol == "realistic"
                else "Training: the seed protocol (s=2) with the 3D jitter half-width noise_cm in the rows (the original used 1 cm). "
                "Test: the seed test protocol (s=1) with noise_cm in the columns."
            )
            + f" {seeds} seeds × {len(lv)} levels = {len(runs)} models in one vmapped program, {base.steps} steps × batch "
            f"{base.batch_size}, loss `{base.loss}`, {g.timing['total']:.0f} s. Cells: held-out L1-3D (cm), mean ± std over seeds."
        )
        summary[protocol] = {}
        fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.8), squeeze=False)
        for ax, (kind, sets) in zip(axes[0], kinds.items()):
            mat = np.zeros((len(lv), len(sets)))
            rows = []
            for i, level in enumerate(lv):
                cells = []
                for j, name in enumerate(sets):
                    vals = [
                        g.evals[r.name][f"{kind} | noise {name}"]["l1_3d"]
                        for r in runs
                        if r.name.startswith(f"{protocol}-noise{level:g}-")
                    ]
                    mat[i, j] = np.mean(vals)
                    cells.append(fmt_ms(vals))
                rows.append([f"train {level:g}"] + cells)
            best = [lv[int(np.nanargmin(mat[:, j]))] for j in range(len(sets))]
            body.append(
                f"### {kind}\n\n"
                + md_table(["train \\ test"] + [f"test {n}" for n in sets], rows)
                + "\n\nBest training noise per test noise: "
                + ", ".join(f"{n} → {b:g}" for n, b in zip(sets, best))
                + "."
            )
            summary[protocol][kind] = {"matrix": mat.tolist(), "train": list(lv), "test": list(sets), "best": best}
            im = ax.imshow(np.log10(mat), cmap="viridis_r")
            for i in range(mat.shape[0]):
                for j in range(mat.shape[1]):
                    ax.text(j, i, f"{mat[i, j]:.2g}", ha="center", va="center", color="w", fontsize=8)
            ax.set_xticks(range(len(sets)), list(sets))
            ax.set_yticks(range(len(lv)), [f"{v:g}" for v in lv])
            ax.set_xlabel("test noise")
            ax.set_ylabel("train noise")
            ax.set_title(kind, fontsize=9)
            fig.colorbar(im, ax=ax, label="log10 L1-3D (cm)")
        fig.suptitle(f"{protocol}: held-out L1-3D (cm), mean of {seeds} seeds")
        fig.tight_layout()
        fig.savefig(out / f"noise_{protocol}.png", dpi=110)
        plt.close(fig)
        body.append(f"![{protocol}](noise_{protocol}.png)")
    body.append(timestamp_note())
    body.append("![learning curves](learning_curves.png)")
    write_report(out, "Noise ablation: train noise × test noise", command, body)
    plot_curves(out / "runs", out / "learning_curves.png", title="noise ablation: colour = protocol and training noise")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- size x quantisation ------------------------------------------------------------------------

SIZES = ((64, 64), (128, 128), (256, 256), (64, 64, 64), (128, 128, 128))
QUANTIZATIONS = ("float32", "float16", "uint8")
BUDGETS = (8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000)  # bytes of model.json + shard
RECIPE_TOLERANCE = 0.02  # a recipe is the smallest artifact within 2 % of the best L1-3D under the budget


def _export_rows(solver, quantize: str, tests: Mapping[str, protocols.Batch], layout) -> dict:
    """Bytes of the web artifacts of a solver at one storage dtype, and the accuracy of the
    TF.js model read back (dequantised as TF.js does). Uses pnpjax.export when present."""
    from pnpjax import tfjs

    with tempfile.TemporaryDirectory(prefix="pnpjax-size-") as tmp:
        d = Path(tmp) / "tfjs"
        try:
            from pnpjax import export
        except ImportError:  # the raw MLP, standardisation outside the artifact
            export = None
        if export is not None:
            export.export_solver(solver, "tfjs", d, quantize=quantize, camera="seed")
            predict = export.read_tfjs_solver(d, None)  # a layers or a graph model, by the recipe
            js = export.js_module_source(solver, None, quantize, "").encode()
            extra = {"js_bytes": len(js), "js_gzip_bytes": len(gzip.compress(js, 9, mtime=0)), "via": "pnpjax.export"}
        else:
            p = solver.params
            names = sorted(p, key=lambda n: int(n.split("_")[-1]))
            dense = [
                tfjs.Dense(
                    np.asarray(p[n]["kernel"]), np.asarray(p[n]["bias"]), "relu" if i < len(names) - 1 else "linear"
                )
                for i, n in enumerate(names)
            ]
            tfjs.write_layers_model(
                d,
                dense,
                (layout.num_points, 2),
                quantize=quantize,
                metadata={"stats": {k: np.asarray(v).tolist() for k, v in solver.stats._asdict().items()}},
            )
            back = tfjs.read_layers_model(d).layers
            params = {n: {"kernel": jnp.asarray(b.kernel), "bias": jnp.asarray(b.bias)} for n, b in zip(names, back)}
            predict = lambda xy: model.apply(solver.config.model, params, solver.stats, xy)  # noqa: E731
            extra = {"via": "raw params (standardisation in metadata)"}
        files = {f.name: f.stat().st_size for f in d.iterdir()}
        ev = {name: train.evaluate_predictions(predict, b, layout) for name, b in tests.items()}
    return {"tfjs_bytes": sum(files.values()), "shard_bytes": files.get(tfjs.SHARD_NAME, 0), **extra, "evals": ev}


def ablate_size(
    out: str | Path,
    *,
    command: str,
    steps: int = 1500,
    batch_size: int = 1024,
    seeds: int = 3,
    eval_size: int = 20_000,
    sizes: Sequence[Sequence[int]] = SIZES,
    protocol: str = "realistic",
    smoke: bool = False,
    print_fn=print,
) -> dict:
    """Widths/depths (one vmapped group of seeds each, in sequence) x TF.js storage dtype."""
    from pnpjax import checkpoint

    out = clean(Path(out))
    base = base_config(protocol, smoke=smoke, steps=steps, batch_size=batch_size)
    layout = layouts.get_layout(base.layout)
    runs = [
        multi.Run(
            f"w{'-'.join(map(str, w))}-s{s}",
            dataclasses.replace(
                base, name=f"w{'-'.join(map(str, w))}-s{s}", seed=s, model=ModelConfig(widths=tuple(w))
            ),
        )
        for w in sizes
        for s in range(seeds)
    ]
    test_name = f"{protocol}_test"
    tests = multi.make_test_sets(layout, {test_name: base.test_protocol}, eval_size)
    results = multi.train_many(runs, out / "runs", tests, data="shared", print_fn=print_fn)
    rows: list[dict] = []
    for r, p, stats, ev in results_rows(results):
        solver = checkpoint.Solver(r.cfg, layout, stats, p, {})
        for q in QUANTIZATIONS:
            e = _export_rows(solver, q, tests, layout)
            rows.append(
                {
                    "widths": "-".join(map(str, r.cfg.model.widths)),
                    "seed": r.cfg.seed,
                    "quantize": q,
                    "params": model.num_params(p),
                    "jax_l1_3d": ev[test_name]["l1_3d"],
                    **{k: v for k, v in e.items() if k != "evals"},
                    **{k: e["evals"][test_name][k] for k in ("l1_3d", "rot_mean_deg", "trans_mean", "failures")},
                }
            )
    via = rows[0]["via"]
    table = []
    points = []
    for w in ["-".join(map(str, s)) for s in sizes]:
        for q in QUANTIZATIONS:
            sel = [x for x in rows if x["widths"] == w and x["quantize"] == q]
            b = int(np.mean([x["tfjs_bytes"] for x in sel]))
            l1 = mean_std(x["l1_3d"] for x in sel)
            points.append((w, q, b, l1[0], l1[1], int(np.mean([x.get("js_gzip_bytes", 0) for x in sel]))))
            table.append(
                [
                    w,
                    sel[0]["params"],
                    q,
                    f"{b:,}",
                    f"{np.mean([x.get('js_gzip_bytes', 0) for x in sel]):,.0f}",
                    fmt_ms(x["l1_3d"] for x in sel),
                    fmt_ms(x["jax_l1_3d"] for x in sel),
                    fmt_ms(x["rot_mean_deg"] for x in sel),
                    fmt_ms(x["trans_mean"] for x in sel),
                    fmt_ms(100 * x["failures"] for x in sel),
                ]
            )
    # Pareto front on (bytes, mean L1-3D).
    front = []
    for pt in sorted(points, key=lambda t: (t[2], t[3])):
        if not front or pt[3] < front[-1][3]:
            front.append(pt)
    recipe_rows = []
    for bud in BUDGETS:
        fit = [pt for pt in points if pt[2] <= bud]
        if fit:
            # The smallest artifact within RECIPE_TOLERANCE of the best accuracy that fits.
            best = min(pt[3] for pt in fit)
            w, q, b, m, s, _ = min((pt for pt in fit if pt[3] <= best * (1 + RECIPE_TOLERANCE)), key=lambda t: t[2])
            recipe_rows.append([f"≤ {bud // 1000} KB", f"{w} {q}", f"{b:,}", f"{m:.3g} ± {s:.2g}"])
    body = [
        f"Widths/depths × TF.js storage. Each width is one vmapped group of {seeds} seeds (shared batches: seeds differ in "
        f"init), groups in sequence; {protocol} protocol, `{base.layout}`, loss `{base.loss}`, equal budget of {base.steps} "
        f"steps × batch {base.batch_size}. Every model is exported at each storage dtype, read back with "
        f"`pnpjax.tfjs.read_layers_model` (dequantised exactly as TF.js does) and evaluated on the same "
        f"{int(tests[test_name].valid.sum())} held-out draws of the {protocol} test protocol. Export path: {via}"
        + (
            " — input standardisation folded into the first Dense layer, a float32 7×7 pose layer for the de-standardisation "
            "(seed camera; the quantisation applies to the trunk)."
            if via == "pnpjax.export"
            else "."
        )
        + " Bytes: model.json + weight shard (the TF.js runtime itself, ~200 KB gzip, is extra); js gzip: the "
        "dependency-free ES module export, gzip -9 (no runtime needed).",
        md_table(
            [
                "widths",
                "params",
                "storage",
                "tfjs bytes",
                "js gzip bytes",
                "L1-3D export (cm)",
                "L1-3D JAX f32 (cm)",
                "rot mean (°)",
                "trans mean (cm)",
                "failures >30° (%)",
            ],
            table,
        ),
        "## Pareto front (tfjs bytes vs L1-3D)\n\n"
        + md_table(
            ["widths", "storage", "tfjs bytes", "L1-3D (cm)"],
            [[w, q, f"{b:,}", f"{m:.3g} ± {s:.2g}"] for w, q, b, m, s, _ in front],
        ),
        "## Best model per byte budget (tfjs model.json + shard)\n\n"
        f"The smallest artifact whose mean L1-3D is within {RECIPE_TOLERANCE:.0%} of the best that fits the budget.\n\n"
        + md_table(["budget", "recipe", "bytes", "L1-3D (cm)"], recipe_rows),
        timestamp_note(),
        "![pareto](pareto.png)\n\n![learning curves](learning_curves.png)",
    ]
    write_report(out, "Size × quantisation: accuracy vs web artifact bytes", command, body)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"float32": "o", "float16": "s", "uint8": "^"}
    cmap = plt.get_cmap("tab10")
    for i, w in enumerate(dict.fromkeys(pt[0] for pt in points)):
        for pt in [p for p in points if p[0] == w]:
            ax.errorbar(
                pt[2],
                pt[3],
                yerr=pt[4],
                marker=markers[pt[1]],
                color=cmap(i),
                capsize=3,
                ls="none",
                label=f"{w} {pt[1]}",
            )
    ax.plot([p[2] for p in front], [p[3] for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("TF.js artifact bytes (model.json + shard)")
    ax.set_ylabel(f"held-out L1-3D (cm), {protocol} test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)
    plot_curves(out / "runs", out / "learning_curves.png", title="size ablation: colour = widths")
    summary = {"rows": rows, "front": front, "recipes": recipe_rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
