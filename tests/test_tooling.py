"""Core tooling at the LangChain package's level (issue 14.6): ruff's rules and mypy pass on both packages.

The rule sets live in ``pyproject.toml`` (core) and ``integrations/langchain/pyproject.toml``; ``scripts/install.sh``
installs the pinned ruff and mypy (the ``test`` extra). Under ``CI=true`` a missing tool fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LANGCHAIN = REPO / "integrations" / "langchain"


def _tool(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed; scripts/install.sh installs it (the `test` extra)")
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # an editable install is an import hook mypy cannot follow: point it at the core's sources
    env = dict(os.environ, MYPYPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.parametrize(("cwd", "target"), [(REPO, "ras_guard"), (LANGCHAIN, "langchain_ras_guard")])
def test_ruff_finds_nothing(cwd: Path, target: str) -> None:
    _tool("ruff")
    out = _run(cwd, "ruff", "check", "--no-cache", target)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("cwd", "target"), [(REPO, "ras_guard"), (LANGCHAIN, "langchain_ras_guard")])
def test_mypy_finds_nothing(cwd: Path, target: str) -> None:
    _tool("mypy")
    out = _run(cwd, "mypy", target)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_would_catch_a_finding(tmp_path: Path) -> None:
    """The check can fail: the core's rule set flags an unsorted import and a lenient zip."""
    _tool("ruff")
    bad = tmp_path / "ras_guard" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import sys\nimport os\n\nprint(list(zip(os.sep, sys.argv)))\n")
    out = _run(REPO, "ruff", "check", "--no-cache", "--config", str(REPO / "pyproject.toml"), str(bad))
    assert out.returncode == 1 and "I001" in out.stdout and "B905" in out.stdout
