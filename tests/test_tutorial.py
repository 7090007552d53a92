"""experiments/tutorial.ipynb runs top to bottom (nbclient + ipykernel) at smoke size, and is stored
with the outputs of a full run.

The notebook's own asserts are part of the test (e.g. the JS and TF.js exports in Node against
JAX); the kernel is this interpreter (ipykernel's native `python3` spec), with the repository on
PYTHONPATH and PNPJAX_TUTORIAL_SMOKE=1 (the notebook's parameter cell shrinks the sizes).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "tutorial.ipynb"

nbformat = pytest.importorskip("nbformat")


def test_stored_notebook_has_the_outputs_of_a_full_run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(c.execution_count for c in code) and all(c.outputs for c in code[1:]), "store the notebook executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "config blazeface6-seed" in text and "x 2048 samples" in text, "store a full run (not smoke)"
    assert "max |JS - JAX|" in text and "max |TF.js - JAX|" in text


def test_tutorial_runs_at_smoke_size(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("PNPJAX_TUTORIAL_SMOKE", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "experiments")}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "40 steps x 64 samples" in text  # the smoke config ran
    if (REPO / "web" / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        assert "max |JS - JAX|" in text and "max |TF.js - JAX|" in text
    print(f"tutorial (smoke): {time.perf_counter() - t0:.1f} s")
