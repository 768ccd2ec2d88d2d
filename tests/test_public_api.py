"""The facade's public names are a contract: pinned here."""

from __future__ import annotations

import ras_guard
from ras_guard import errors


def test_all_is_sorted_and_pinned() -> None:
    assert ras_guard.__all__ == sorted(ras_guard.__all__)
    assert ras_guard.__all__ == [
        "Calibration",
        "CalibrationMismatchError",
        "Decision",
        "GuardedGeneration",
        "GuardedStream",
        "RASConfig",
        "RASGuard",
        "RASGuardError",
        "RiskAssessment",
        "Usage",
        "__version__",
    ]
    for name in ras_guard.__all__:
        assert hasattr(ras_guard, name)


def test_every_error_derives_from_the_base() -> None:
    assert errors.__all__ == sorted(errors.__all__)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RASGuardError)


def test_core_never_imports_langchain() -> None:
    import subprocess
    import sys

    code = "import sys, ras_guard, ras_guard.cli.main; print(any(m.startswith('langchain') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
