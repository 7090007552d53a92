"""Put the repository root on sys.path, so a script run as `python experiments/X.py` imports
`experiments.lib` (the shared benchmark/ablation machinery) as the tests do. Import it first."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
