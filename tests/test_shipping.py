"""experiments/lib/shipping.py: a trained model replaces a shipped checkpoint only if every web
format exports it faithfully (Node against JAX float64); otherwise the shipped one stays."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from experiments.lib import shipping
from pnpjax import checkpoint, config, export

REPO = Path(__file__).resolve().parents[1]
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) is not installed")


@needs_node
@pytest.mark.node
def test_export_gate_passes_a_shipped_checkpoint_and_catches_a_wrong_export(monkeypatch):
    ckpt = REPO / "checkpoints" / "blazeface6-seed"
    assert shipping.export_problems(ckpt, n=64) == {}
    # An export of a slightly different solver (as when a format drops part of the model).
    real = export.export_solver

    def wrong(solver, fmt, out, **kw):
        bias = solver.params["Dense_2"]["bias"]
        params = {**solver.params, "Dense_2": {**solver.params["Dense_2"], "bias": bias + 0.05}}
        return real(dataclasses.replace(solver, params=params), fmt, out, **kw)

    monkeypatch.setattr(export, "export_solver", wrong)
    problems = shipping.export_problems(ckpt, n=64)
    assert set(problems) == {"tfjs", "js"} and all("differs from JAX" in p for p in problems.values())


def test_export_gate_reports_a_refused_format(monkeypatch):
    def refuse(solver, fmt, out, **kw):
        raise export.ExportError(f"--format {fmt} cannot express this model")

    monkeypatch.setattr(export, "export_solver", refuse)
    problems = shipping.export_problems(REPO / "checkpoints" / "blazeface6-seed", n=16)
    assert set(problems) == {"tfjs", "js"} and "cannot express" in problems["js"]


def test_a_model_that_fails_the_gate_is_not_shipped(tmp_path, monkeypatch):
    """make_checkpoints trains, the gate refuses: checkpoints/<name> is left byte for byte as it was."""
    smoke = dataclasses.replace(config.get_config("smoke"), steps=4, eval_every=4, checkpoint_every=4, eval_size=64)
    monkeypatch.setitem(config.CONFIGS, "smoke", smoke)
    monkeypatch.setattr(shipping, "export_problems", lambda d, formats: {"js": "export failed: no roll"})
    dest = tmp_path / "out" / "smoke"
    dest.mkdir(parents=True)
    (dest / "pnpjax.json").write_text("old")
    refused = shipping.make_checkpoints(["smoke"], str(tmp_path / "runs"), str(tmp_path / "out"), n=64)
    assert refused == {"smoke": {"js": "export failed: no roll"}}
    assert [p.name for p in dest.iterdir()] == ["pnpjax.json"] and (dest / "pnpjax.json").read_text() == "old"
    assert (tmp_path / "runs" / "smoke" / "model" / checkpoint.META_FILE).is_file()  # trained, kept aside
