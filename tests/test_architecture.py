"""The package's shape: imports run one way, no private calls across modules, the solver and
its CLI import neither matplotlib nor cv2, all error classes in errors.py, no host paths."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "pnpjax"
MODULES = {p.stem: p for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def _imports(name: str) -> set[str]:
    """pnpjax modules that `name` imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pnpjax":
            parts = node.module.split(".")
            if len(parts) > 1:
                out.add(parts[1])
            else:
                out.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.Import):
            out.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("pnpjax.") and a.name.count(".") >= 1
            )
    return (out & set(MODULES)) - {name}


def test_import_graph_has_no_cycle():
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_import_scan_sees_the_real_imports():
    # The check above would be vacuous if _imports saw nothing: the CLI imports several modules
    # and checkpoint <-> train was a real cycle once.
    assert {"checkpoint", "config", "inference"} <= _imports("cli")
    assert "checkpoint" in _imports("train") and "train" not in _imports("checkpoint")


def _private_calls(path: Path, own: str) -> list[str]:
    """Uses of another pnpjax module's (or experiments.lib module's) private names in the file at
    `path` (whose own module name is `own`), and of JAX privates."""
    tree = ast.parse(path.read_text(), filename=str(path))
    offenders, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("pnpjax", "experiments.lib"):
            aliases.update({(a.asname or a.name): a.name for a in node.names if a.name != own})
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("pnpjax.", "experiments.lib.")):
            offenders += [f"{own}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            offenders.append(f"{own}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Attribute) and node.attr in ("_cache_size", "_cached"):  # JAX privates
            offenders.append(f"{own}: .{node.attr}")
    return offenders


def test_no_calls_into_other_modules_private_names():
    """In pnpjax/ and in experiments/ (its scripts and lib): no module reaches into another's
    private names (the research machinery uses the library's public API only)."""
    files = {**MODULES, **{f"experiments.lib.{p.stem}": p for p in (REPO / "experiments" / "lib").glob("*.py")}}
    files |= {f"experiments.{p.stem}": p for p in (REPO / "experiments").glob("*.py")}
    offenders = [o for name, path in files.items() for o in _private_calls(path, name.rsplit(".", 1)[-1])]
    assert not offenders, offenders


def test_private_call_check_sees_a_private_call(tmp_path):
    """The check above is not vacuous: it flags both spellings of a private use."""
    f = tmp_path / "m.py"
    f.write_text("from pnpjax import jsmodule\nfrom pnpjax.model import _x\njsmodule._float32(1.0)\n")
    assert _private_calls(f, "m") == ["m: from pnpjax.model import _x", "m: jsmodule._float32"]


def test_error_classes_live_in_errors_py():
    elsewhere = []
    for m in MODULES:
        if m == "errors":
            continue
        for node in ast.walk(_tree(m)):
            if isinstance(node, ast.ClassDef) and (
                node.name.endswith("Error")
                or any(getattr(b, "id", getattr(b, "attr", "")).endswith("Error") for b in node.bases)
            ):
                elsewhere.append(f"{m}.{node.name}")
    assert not elsewhere, elsewhere


def test_solver_and_cli_import_neither_matplotlib_nor_cv2():
    code = (
        "import pnpjax, pnpjax.cli, pnpjax.train, pnpjax.export, pnpjax.inference, pnpjax.refine, sys; "
        "print('matplotlib' in sys.modules, 'cv2' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_no_absolute_path_of_this_machine_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    if not files:  # not a git checkout (an sdist): nothing to check
        return
    # Where this checkout and its shared folder sit (e.g. a developer's /work/main and /work/shared):
    # a path under either, written into a file, only works on this machine.
    needles = {str(REPO) + "/", str(REPO.parent / "shared") + "/"}
    hits = []
    for f in files:
        p = REPO / f
        if not p.is_file() or p.stat().st_size > 2_000_000:
            continue
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{f}: {n}" for n in needles if n in text]
    assert not hits, hits
