"""Every ```python block of README.md's "Python API" section runs, as written, from the repository root.

Each `###` subsection's blocks run together in a fresh namespace, in a temporary working
directory that sees the repository's `checkpoints/` (so `runs/...` workdirs land there). The
training sizes are shrunk to smoke size by the literal substitutions in SMOKE: each must occur in
the section exactly as written, so an edit of a snippet that would silently escape the shrinking
fails here instead.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Python API"

# README text -> what runs under test (training and evaluation sizes only).
SMOKE = {
    'dataclasses.replace(pnpjax.get_config("blazeface6-seed"), steps=1500, eval_every=1500, log_every=500)': 'dataclasses.replace(pnpjax.get_config("smoke"), steps=20, eval_every=20, log_every=10)',
    "pnpjax.SeedProtocol(scale=1.0)}, n=20_000)": "pnpjax.SeedProtocol(scale=1.0)}, n=512)",
    'dataclasses.replace(pnpjax.get_config("blazeface6-seed"), name="wider"': 'dataclasses.replace(pnpjax.get_config("smoke"), name="wider"',
    "seconds=60)": "seconds=None, progress=False)",
    'pnpjax.evaluate(wider, "seed", n=20_000)': 'pnpjax.evaluate(wider, "seed", n=512)',
}


def _section_text() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def _subsections() -> dict[str, str]:
    """Subsection title -> its python code (blocks joined)."""
    parts = re.split(r"^### (.+)$", _section_text(), flags=re.M)
    out = {}
    for title, body in zip(parts[1::2], parts[2::2]):
        blocks = re.findall(r"^```python\n(.*?)^```$", body, flags=re.M | re.S)
        if blocks:
            out[title.strip()] = "\n".join(blocks)
    return out


SNIPPETS = _subsections()


def test_the_section_has_the_promised_snippets_and_every_smoke_substitution_applies():
    assert len(SNIPPETS) == 5, list(SNIPPETS)
    code = "\n".join(SNIPPETS.values())
    for readme_text in SMOKE:
        assert code.count(readme_text) >= 1, f"README no longer contains {readme_text!r}; update SMOKE"


@pytest.mark.parametrize("title", list(SNIPPETS))
def test_readme_snippet_runs(title, tmp_path, monkeypatch):
    from pnpjax import losses

    code = SNIPPETS[title]
    for readme_text, smoke_text in SMOKE.items():
        code = code.replace(readme_text, smoke_text)
    (tmp_path / "checkpoints").symlink_to(REPO / "checkpoints")
    monkeypatch.chdir(tmp_path)
    saved_losses = dict(losses.LOSSES)
    t0 = time.perf_counter()
    try:
        exec(compile(code, f"README.md: {title}", "exec"), {"__name__": "__readme__"})
    finally:
        losses.LOSSES.clear()
        losses.LOSSES.update(saved_losses)  # a snippet registers a loss; leave the registry as it was
    print(f"{title}: {time.perf_counter() - t0:.1f} s")
