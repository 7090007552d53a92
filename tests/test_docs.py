"""`make docs` (docs/build.py): the API reference builds from the docstrings with no pdoc warning,
with a page per public module and every top-level name of pnpjax documented on the package page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("pdoc")


def test_api_reference_builds_without_warnings(tmp_path):
    import pnpjax

    out = tmp_path / "docs"
    build = REPO / "docs" / "build.py"
    r = subprocess.run([sys.executable, str(build), str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.strip().endswith("warnings: 0"), r.stdout[-500:]
    assert r.stderr == "" or "warning" not in r.stderr.lower(), r.stderr[-2000:]
    modules = [n for n in pnpjax.__all__ if n in pnpjax._SUBMODULES]
    for m in modules:
        assert (out / "pnpjax" / f"{m}.html").is_file(), m
    assert not (out / "pnpjax" / "cli.html").exists()  # only the public modules
    page = (out / "pnpjax.html").read_text(encoding="utf-8")
    for name in pnpjax.__all__:
        if name not in modules:
            assert f'id="{name}"' in page, f"pnpjax.{name} is not documented on the package page"
    solver_page = (out / "pnpjax" / "solver.html").read_text(encoding="utf-8")
    for documented in ("PoseSolver.predict", "PoseSolver.pure", "OpenCV camera frame", "w &gt;= 0"):
        assert documented in solver_page, documented
