"""Where the repository and the project's shared folder are (no machine's absolute path).

The shared folder (SEED.md, the original published models) is `../shared` beside the repository
root, or the directory named by the environment variable `PNPJAX_SHARED`.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_ENV = "PNPJAX_SHARED"


def shared_dir() -> Path:
    """The shared folder: $PNPJAX_SHARED, else `../shared` beside the repository root."""
    env = os.environ.get(SHARED_ENV)
    return Path(env) if env else REPO.parent / "shared"


def original_model_dir(layout_name: str) -> Path | None:
    """<shared>/seed-models/<layout>, the original published TF.js model, or None if absent."""
    d = shared_dir() / "seed-models" / layout_name
    return d if (d / "model.json").is_file() else None
