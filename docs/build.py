"""`make docs`: the API reference of pnpjax, generated from its docstrings by pdoc.

    python docs/build.py [OUT_DIR]     (default build/docs; git-ignored)

Writes one HTML page per public module (`pnpjax.__all__`'s submodules) plus the package page,
prints the pages and the number of warnings pdoc raised, and exits 1 if there were any (a
docstring or annotation that does not render is a defect; tests/test_docs.py runs this).
"""

from __future__ import annotations

import sys
import typing
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _resolve_namedtuple_annotations(module) -> None:
    """pdoc reads a NamedTuple's signature from its generated `__new__`, whose string annotations
    (`from __future__ import annotations`) it evaluates in the namespace of collections' generated
    code, where a name such as `Any` does not exist. Hand it the annotations resolved in the
    class's own module."""
    for obj in list(vars(module).values()):
        namedtuple = isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
        if namedtuple and obj.__module__ == module.__name__:
            hints = typing.get_type_hints(obj)
            obj.__new__.__annotations__ = {k: hints[k] for k in obj._fields if k in hints}


def build(out: Path) -> tuple[list[Path], list[str]]:
    """Render the docs into `out`; returns (pages written, warning messages)."""
    sys.path.insert(0, str(REPO))
    import pdoc
    import pdoc.render

    import pnpjax

    # The top-level names are imported on first use (PEP 562); pdoc reads the module's __dict__.
    for name in pnpjax.__all__:
        value = getattr(pnpjax, name)
        if name in pnpjax._SUBMODULES:
            _resolve_namedtuple_annotations(value)
    pdoc.render.configure(docformat="google", footer_text=f"pnpjax {pnpjax.__version__}", search=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc("pnpjax", output_directory=out)
    pages = sorted(out.rglob("*.html"))
    return pages, [f"{w.category.__name__}: {w.message}" for w in caught]


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else REPO / "build" / "docs").absolute()
    pages, warns = build(out)
    for p in pages:
        print(p.relative_to(out))
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{len(pages)} pages in {out}, warnings: {len(warns)}")
    return 1 if warns else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
