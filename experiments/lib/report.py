"""Markdown reports of the experiment scripts: one table writer, one report writer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence


def md_cell(value: Any) -> str:
    """A value as one Markdown table cell: pipes escaped, line breaks and HTML brackets neutralised."""
    text = " ".join(str(value).splitlines())
    text = re.sub(r"\\(?=\|)", r"\\\\", text)  # a backslash before a pipe would escape our escape
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def md_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A Markdown table; `align` per column: "" (default) or ":" (right-aligned)."""
    rule = "|" + "".join(("---:|" if a == ":" else "---|") for a in (align or [""] * len(header)))
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", rule]
    lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, title: str, command: str, body: Sequence[str]) -> Path:
    """<out>/results.md (title, the command that made it, body) and <out>/command.txt."""
    text = "\n\n".join([f"# {title}", f"Made by:\n\n```\n{command}\n```", *body]) + "\n"
    path = out / "results.md"
    path.write_text(text)
    (out / "command.txt").write_text(command + "\n")
    return path


def write_results(out: Path, res: dict, readme: str, plot: Callable[[dict, Path], None], plot_name: str) -> None:
    """A study's files in <out>: results.json (res), the plot `plot_name` (plot(res, path)) and README.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    plot(res, out / plot_name)
    (out / "README.md").write_text(readme)
