"""Geometric preconditioning / parametrisation ablation (issue 13): input treatment, translation
parametrisation and depth vs width at the original's parameter count (5,447 +- 5 %), x seeds,
equal sample budget; each variant is one vmapped group of its seeds (pnpjax.multi), in sequence.

    python experiments/ablate_geometry.py            # full run -> experiments/results/ablate_geometry/
    python experiments/ablate_geometry.py --smoke    # seconds; tiny nets
    python experiments/ablate_geometry.py --protocol realistic --steps 8000 \
        --variants 64-64 "64-64 centroid+ray" "64-64 centroid+ray+roll" --out experiments/results/ablate_roll_realistic

Variants (ModelConfig fields):
    64-64                    the shipped recipe: standardised coordinates, t regressed directly
    64-64 centroid           landmarks centred on their centroid, divided by their spread, plus
                             the centroid and log spread as inputs (`--model.inputs centroid`)
    64-64 centroid+ray       and t = exp(a) (centroid ray + b)  (`--model.translation ray`)
    48-48-48                 deeper, same parameter count
    64-64 roll               landmarks turned so that the layout's horizontal axis lies on image x,
                             the pose turned back after the network (`--model.roll canonical`)
    64-64 centroid+ray+roll  centroid+ray on roll-canonical landmarks
    64-64 centroid+ray+persp the same, the camera first turned onto the landmarks' mean viewing
                             ray and the roll read there (`--model.roll perspective`)
    64-64 axis+ray+persp     the same, the ~0 centroid inputs replaced by the real optical axis
                             seen from the turned camera (`--model.inputs axis`)
    64-64 axis+ray+persp geodesic   the same trained on the `geodesic` loss (`--loss geodesic`)
    64-64 centroid+ray+persp geodesic, 64-64 centroid+ray+roll geodesic   the same loss on those
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
import jax

from experiments.lib import ablations
from pnpjax import layouts, model, multi

HERE = Path(__file__).resolve().parent

VARIANTS = {
    "64-64": dict(widths=(64, 64)),
    "64-64 centroid": dict(widths=(64, 64), inputs="centroid"),
    "64-64 centroid+ray": dict(widths=(64, 64), inputs="centroid", translation="ray"),
    "48-48-48": dict(widths=(48, 48, 48)),
    "64-64 roll": dict(widths=(64, 64), roll="canonical"),
    "64-64 centroid+ray+roll": dict(widths=(64, 64), inputs="centroid", translation="ray", roll="canonical"),
    "64-64 centroid+ray+persp": dict(widths=(64, 64), inputs="centroid", translation="ray", roll="perspective"),
    "64-64 axis+ray+persp": dict(widths=(64, 64), inputs="axis", translation="ray", roll="perspective"),
    # A Config field beside the model's: trained on the `geodesic` loss (rotation angle x the
    # layout's RMS radius + translation distance) instead of l1_3d.
    "64-64 axis+ray+persp geodesic": dict(
        widths=(64, 64), inputs="axis", translation="ray", roll="perspective", loss="geodesic"
    ),
    "64-64 centroid+ray+persp geodesic": dict(
        widths=(64, 64), inputs="centroid", translation="ray", roll="perspective", loss="geodesic"
    ),
    "64-64 centroid+ray+roll geodesic": dict(
        widths=(64, 64), inputs="centroid", translation="ray", roll="canonical", loss="geodesic"
    ),
}
CONFIG_FIELDS = ("loss",)  # variant keys that set the training Config, not its ModelConfig
DEFAULT_VARIANTS = ("64-64", "64-64 centroid", "64-64 centroid+ray", "48-48-48")


def run(
    out: Path,
    command: str,
    steps: int,
    batch_size: int,
    seeds: int,
    eval_size: int,
    smoke: bool,
    protocol: str = "seed",
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
) -> dict:
    out = ablations.clean(out)
    base = ablations.base_config(protocol, smoke=smoke, steps=steps, batch_size=batch_size)
    layout = layouts.get_layout(base.layout)
    runs, params = [], {}
    for name in variants:
        fields = {k: v for k, v in VARIANTS[name].items() if k not in CONFIG_FIELDS}
        top = {k: v for k, v in VARIANTS[name].items() if k in CONFIG_FIELDS}
        if smoke:
            fields = {**fields, "widths": tuple(max(w // 4, 4) for w in fields["widths"])}
        mcfg = dataclasses.replace(base.model, **fields)
        params[name] = model.num_params(model.init_params(mcfg, jax.random.key(0), layout.num_points))
        for s in range(seeds):
            rn = f"{name.replace(' ', '_')}-s{s}"
            runs.append(multi.Run(rn, dataclasses.replace(base, name=rn, seed=s, model=mcfg, **top).validate()))
    test_name = f"{protocol}_test"
    tests = multi.make_test_sets(layout, {test_name: base.test_protocol}, eval_size)
    results = multi.train_many(runs, out / "runs", tests)
    per: dict[str, dict[str, list[float]]] = {}
    by_run = {r.name: v for v in variants for r in runs if r.name.startswith(v.replace(" ", "_") + "-s")}
    for r, _, _, ev in ablations.results_rows(results):
        for m, (_, scale) in ablations.METRICS.items():
            per.setdefault(by_run[r.name], {}).setdefault(m, []).append(ev[test_name][m] * scale)
    names = list(variants)
    units = "image units" if protocol == "seed" else "px"
    rows = [[f"`{n}`", f"{params[n]:,}"] + [ablations.fmt_ms(per[n][m]) for m in ablations.METRICS] for n in names]
    times = ", ".join(f"{g.timing['total']:.0f} s" for g in results)
    titles = [ablations.METRICS[m][0] for m in ablations.METRICS]
    if protocol == "realistic":
        titles = [t.replace("(image units)", "(px)") for t in titles]
        extra = f" (landmark noise {base.realistic.noise_2d:g} of the face size, train and test)"
    else:
        extra = ""
    losses = {VARIANTS[n].get("loss", base.loss) for n in names}
    loss_text = (
        f"loss `{base.loss}`"
        if losses == {base.loss}
        else (f"loss `{base.loss}` (a variant whose name ends with a loss's name: that loss)")
    )
    body = [
        f"{protocol.capitalize()} protocol{extra}, `{base.layout}`, {loss_text}, {base.steps} steps × batch "
        f"{base.batch_size} per model (equal sample budget), peak learning rate {base.lr:g}, {seeds} seeds per "
        f"variant, each variant one vmapped group ({times}). Held-out: {int(tests[test_name].valid.sum())} draws of "
        f"the {protocol} test protocol (fixed key). Mean ± std over seeds; lengths in cm, reprojection in {units}. "
        "`centroid`, `ray` and `roll` are nonlinear maps of the input or output, which a TF.js layers model (Dense "
        "layers only) cannot express: the SavedModel takes them (the JS module and the TF.js graph export follow "
        "issue 13's shared spec).",
        ablations.md_table(["variant", "params"] + titles, rows),
        ablations.timestamp_note(),
        "![metrics](metrics.png)\n\n![learning curves](learning_curves.png)",
    ]
    ablations.write_report(out, "Geometric preconditioning ablation", command, body)
    ablations.bar_plot(
        out / "metrics.png",
        names,
        per,
        ["l1_3d", "rot_mean_deg", "rot_median_deg", "trans_mean"],
        f"{protocol} protocol: input / translation / roll / depth ({seeds} seeds)",
    )
    ablations.plot_curves(out / "runs", out / "learning_curves.png", title="geometry ablation")
    summary = {n: {"params": params[n], **{m: ablations.mean_std(v) for m, v in per[n].items()}} for n in names}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", default=None, help="results dir (default experiments/results/ablate_geometry, or ..._smoke)"
    )
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-size", type=int, default=20_000)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--protocol", choices=("seed", "realistic"), default="seed")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=DEFAULT_VARIANTS)
    a = p.parse_args()
    if a.smoke:
        a.steps, a.eval_size = min(a.steps, 20), min(a.eval_size, 512)
    out = Path(a.out) if a.out else HERE / "results" / ("ablate_geometry_smoke" if a.smoke else "ablate_geometry")
    cmd = ("python experiments/ablate_geometry.py " + shlex.join(sys.argv[1:])).strip()
    run(out, cmd, a.steps, a.batch_size, a.seeds, a.eval_size, a.smoke, a.protocol, tuple(a.variants))
