"""Record the guard's golden outputs (tokens, risks, similarities) into tests/data/golden_outputs.json.

Run it only when a change of outputs is intended (and say why in the commit); ``tests/test_golden.py`` checks that
every other change leaves them as recorded.

    python scripts/record_golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _golden import GOLDEN, record  # noqa: E402

if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
