"""Accuracy and size of the tfjs / js exports at each quantisation (experiments/export_quantization.py)."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import jax

from experiments.lib.report import md_table
from pnpjax import camera as camlib
from pnpjax import export, protocols, tfjs, train


def _dir_bytes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file()}


def quantization_study(
    solver, *, n: int = 100_000, key: int = 0, cam: camlib.Camera | None = None
) -> list[dict[str, Any]]:
    """L1-3D etc. of the solver and of its tfjs/js exports at each quantisation, with their sizes.

    Every export is written, read back (dequantised exactly as TF.js does) and evaluated on the
    same held-out draws of the seed protocol (and of the checkpoint's own test protocol when
    that differs). For a layers model, one extra row, uint8 with the de-standardisation folded into
    the last layer, is the original's layout, to show why the pose layer stays float32. A graph
    model (`export.needs_graph_model`) quantises its MLP weights only.
    """

    batches = {"seed": train.eval_batch(protocols.SEED_TEST, solver.layout, jax.random.key(key), n)}
    if solver.config.protocol != "seed":
        batches[solver.config.protocol] = train.eval_batch(
            solver.config.test_protocol, solver.layout, jax.random.key(key), n
        )

    def metrics(predict) -> dict[str, float]:
        out = {}
        for name, batch in batches.items():
            r = train.evaluate_predictions(predict, batch, solver.layout)
            out.update(
                {
                    f"{name}_l1_3d": r["l1_3d"],
                    f"{name}_rot_mean_deg": r["rot_mean_deg"],
                    f"{name}_trans_mean": r["trans_mean"],
                }
            )
        return out

    rows = [{"export": "JAX (checkpoint)", **metrics(solver)}]
    graph = export.needs_graph_model(solver.config.model)  # a graph model: no folded-layer variant
    variants = [("float32", False), ("float16", False), ("uint8", False)] + [("uint8", True)] * (not graph)
    with tempfile.TemporaryDirectory(prefix="pnpjax-quant-") as tmp:
        for quantize, fold in variants:
            d = Path(tmp) / f"{quantize}{'-folded' if fold else ''}"
            if graph:
                export.export_solver(solver, "tfjs", d, quantize=quantize, camera=cam or "seed")
                label = json.loads((d / tfjs.MODEL_JSON).read_text())["userDefinedMetadata"]["quantization"]
            else:
                d.mkdir()
                layers = export.dense_layers(
                    solver, cam, fold_output=fold, precise=quantize == "float32"
                )  # as export_solver
                label = export.quantization_label(quantize, fold)
                meta = export.export_metadata(solver, cam, "tfjs", label, "")
                export.write_tfjs(
                    d, layers, solver.layout.num_points, export.layer_quantizations(len(layers), quantize, fold), meta
                )
            sizes = _dir_bytes(d)
            row = {
                "export": f"tfjs {label}",
                "shard_bytes": sizes[tfjs.SHARD_NAME],
                "model_json_bytes": sizes[tfjs.MODEL_JSON],
            }
            if not fold:
                try:  # as `pnpjax export --format js` writes it
                    js = export.export_solver(solver, "js", Path(tmp) / f"js-{quantize}", quantize=quantize, camera=cam)
                except export.ExportError:  # a recipe the JS module does not run: no js column
                    pass
                else:
                    js = js.read_bytes()
                    row.update(js_bytes=len(js), js_gzip_bytes=len(gzip.compress(js, 9, mtime=0)))
            row.update(metrics(export.read_tfjs_solver(d, cam)))
            rows.append(row)
    return rows


def quantization_report(results: dict[str, list[dict[str, Any]]], n: int) -> str:
    """Markdown tables of `quantization_study` results, one per checkpoint."""
    lines = [
        "# Export quantisation: accuracy and size",
        "",
        f"L1-3D (cm, mean over {n} held-out draws per protocol, key 0) of each checkpoint and of its "
        "exports read back exactly as TF.js decodes them; bytes of the TF.js weight shard, model.json "
        "and the standalone JS module (raw / gzip -9). Made by `experiments/export_quantization.py`.",
        "",
    ]
    for name, rows in results.items():
        protos = sorted(
            {k[: -len("_l1_3d")] for r in rows for k in r if k.endswith("_l1_3d")}, key=lambda p: p != "seed"
        )
        head = (
            ["export"]
            + [f"{p} L1-3D" for p in protos]
            + [f"{p} rot° / t" for p in protos]
            + ["shard B", "model.json B", "js B", "js gzip B"]
        )
        cells = []
        for r in rows:
            row = [r["export"]] + [f"{r[f'{p}_l1_3d']:.3f}" for p in protos]
            row += [f"{r[f'{p}_rot_mean_deg']:.2f} / {r[f'{p}_trans_mean']:.2f}" for p in protos]
            row += [str(r.get(k, "")) for k in ("shard_bytes", "model_json_bytes", "js_bytes", "js_gzip_bytes")]
            cells.append(row)
        lines += [f"## {name}", "", md_table(head, cells), ""]
    return "\n".join(lines)
