"""Make the shipped checkpoints (checkpoints/<config name>/) and their generated figures."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

from experiments.lib import paths
from pnpjax import checkpoint, config, protocols, train
from pnpjax.errors import PnpjaxError
from pnpjax.textsafe import md_fence, one_line

SHIPPED = ("blazeface6-seed", "faceapi10-seed", "blazeface6", "faceapi10", "blazeface6-seed-large", "blazeface6-web")
EVAL_KEY = 0  # the same held-out draws as `pnpjax eval` (its default --seed)
# The web formats every shipped checkpoint must export to (the demo, the tests and the README use
# them), and how far an export may be from JAX (float64) to count as the same solver: a sanity
# gate (an export that ignores part of the model is off by degrees or centimetres), not the 1e-5
# precision contract of tests/test_export.py.
WEB_FORMATS = ("tfjs", "js")
GATE_ATOL = 1e-3
GATE_QUANTILE = 99.0  # the JS module moves poses that put a point behind the camera (a few rows)


def export_problems(model_dir: Path, formats=WEB_FORMATS, n: int = 300) -> dict[str, str]:
    """{format: why not} for each web format that cannot carry this model: `pnpjax export` refuses
    it, or its float32 export, run in Node on n inputs of the model's own test protocol, differs
    from JAX in float64 by more than GATE_ATOL (on the GATE_QUANTILE-th percentile row). Empty:
    every format exports it faithfully."""
    from experiments.lib import node, precision
    from pnpjax import export

    solver, cam, uv = precision.shipped_inputs(model_dir, n)
    ref = precision.jax_pose(solver, uv, cam, np.float64)
    problems: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pnpjax-gate-") as tmp:
        for fmt in formats:
            try:
                kw = {"refine_iters": 0} if fmt == "js" else {}
                out = export.export_solver(solver, fmt, Path(tmp) / fmt, camera=cam or "seed", quantize="float32", **kw)
                if fmt == "tfjs":
                    y = node.tfjs_predict_in_node(out, uv)[0]
                else:
                    y = np.asarray(
                        node.js_predict_in_node(out, {"landmarks": uv.astype(np.float64).tolist()})["poses"],
                        np.float64,
                    ).reshape(-1, 7)
            except (PnpjaxError, node.NodeUnavailableError, node.NodeToolError) as e:
                problems[fmt] = f"export failed: {one_line(str(e))[:300]}"
                continue
            err = np.percentile(precision.pose_error(np.asarray(y, np.float64), ref).max(1), GATE_QUANTILE)
            if not err <= GATE_ATOL:
                problems[fmt] = f"export differs from JAX: {GATE_QUANTILE:g}th percentile max |error| {err:.3g}"
    return problems


def evaluate_shipped(name: str, ckpt_dir: Path, n: int) -> dict[str, dict]:
    """Figures of a shipped checkpoint on its protocol (and the original model, for seed configs)."""
    solver = checkpoint.load(ckpt_dir)
    cfg = solver.config
    rows: dict[str, dict] = {}
    protos = {"seed": protocols.SEED_TEST} if cfg.protocol == "seed" else {}
    protos["realistic"] = cfg.realistic
    for pname, proto in protos.items():
        batch = train.eval_batch(proto, solver.layout, jax.random.key(EVAL_KEY), n)
        rows[f"{name} [{pname}]"] = train.evaluate_predictions(solver, batch, solver.layout)
        orig = paths.original_model_dir(solver.layout.name)
        if orig is not None:
            rows[f"original {solver.layout.name} [{pname}]"] = train.evaluate_predictions(
                checkpoint.load(orig), batch, solver.layout
            )
    return rows


def make_checkpoints(
    names,
    workroot: str,
    out: str,
    n: int = 100_000,
    do_train: bool = True,
    command: str = "",
    formats=WEB_FORMATS,
) -> dict[str, dict[str, str]]:
    """Train, gate, ship and evaluate; returns {name: export problems} of the models NOT shipped.

    A trained model replaces checkpoints/<name> only if every format of `formats` exports it
    faithfully (`export_problems`); otherwise the shipped checkpoint stays as it was and the
    reason is printed and returned (the caller exits non-zero)."""
    from pnpjax.cli import metrics_table

    out_dir = Path(out)
    all_rows: dict[str, dict] = {}
    refused: dict[str, dict[str, str]] = {}
    for name in names:
        cfg = config.get_config(name)
        dest = out_dir / name
        if do_train:
            workdir = Path(workroot) / name
            train.train_and_evaluate(cfg, workdir)
            problems = export_problems(workdir / "model", formats) if formats else {}
            if problems:
                refused[name] = problems
                print(
                    f"NOT shipped: {name} (trained in {workdir / 'model'}); {dest} is left as it was: "
                    + "; ".join(f"{f}: {why}" for f, why in problems.items())
                )
                continue
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(workdir / "model", dest)
        rows = evaluate_shipped(name, dest, n)
        meta = json.loads((dest / checkpoint.META_FILE).read_text())
        t = meta.get("train", {})
        text = (
            f"# {name}\n\nGenerated by `{command}` (do not edit).\n\n"
            f"Trained {t.get('steps')} steps × batch {cfg.batch_size} = {t.get('samples')} synthetic samples in "
            f"{t.get('wall_seconds', 0):.0f} s on {t.get('devices')}; {meta['num_params']} parameters; "
            f"loss {cfg.loss}; widths {list(cfg.model.widths)}; rotation head {cfg.model.rotation}.\n\n"
            f"Held-out: {n} draws per protocol (key {EVAL_KEY}, the same as `pnpjax eval`), "
            f"L1-3D/translation in {one_line(meta['layout'].get('units', 'cm'))}, angles in degrees, "
            "reprojection in "
            f"image units (seed) or pixels (realistic).\n\n{md_fence(metrics_table(rows))}\n"
        )
        (dest / "EVAL.md").write_text(text)
        (dest / "eval.json").write_text(json.dumps(rows, indent=1))
        all_rows.update(rows)
        print(text)
    # The index covers every shipped checkpoint present, from their eval.json files.
    index = {}
    for name in SHIPPED:
        f = out_dir / name / "eval.json"
        if f.is_file():
            index.update(json.loads(f.read_text()))
    (out_dir / "README.md").write_text(
        "# Shipped checkpoints\n\nGenerated by `python experiments/make_checkpoints.py` (do not edit); "
        "per-checkpoint details in each EVAL.md.\n\n" + md_fence(metrics_table(index)) + "\n"
    )
    return refused
