"""Record the sha256 of every params/ file in a checkpoint's pnpjax.json (`params_sha256`).

    python experiments/hash_checkpoints.py                       # every checkpoints/<name>/
    python experiments/hash_checkpoints.py path/to/model [...]   # your own (only files you trust)

`pnpjax train` and `checkpoint.save` write the hashes themselves; this adds them to checkpoints
made before they existed. It refuses a checkpoint whose parameters or statistics fail the sanity
check (pnpjax.integrity), and leaves an existing, matching record alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pnpjax import checkpoint, fsio, integrity


def add_hashes(d: Path) -> bool:
    """Write params_sha256 into d/pnpjax.json; returns True if the file changed."""
    f = d / checkpoint.META_FILE
    meta = json.loads(f.read_text())
    hashes = integrity.hash_tree(d / "params")
    if meta.get(integrity.HASH_KEY) == hashes:
        return False
    meta[integrity.HASH_KEY] = hashes
    text = json.dumps(meta, indent=1)
    fsio.atomic_write(f, lambda tmp: Path(tmp).write_text(text))
    integrity.check_solver(checkpoint.load(d), str(d))  # loads with the new record, and is sane
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="*", type=Path)
    a = p.parse_args(argv)
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    dirs = a.dirs or sorted(d for d in root.iterdir() if (d / checkpoint.META_FILE).is_file())
    for d in dirs:
        print(f"{d}: {'hashes written' if add_hashes(d) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
