"""Shared set-up of the benchmark scripts: import gonomaly from src/ when it is not installed,
and read real data from ../shared/data unless $GONOMALY_DATA says otherwise."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import gonomaly  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("GONOMALY_DATA", str(ROOT.parent / "shared" / "data"))
