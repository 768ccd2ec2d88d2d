"""``requires-python >= 3.10`` holds (issue 14.6): no 3.11-only syntax or standard library in either package.

Every module is compiled by a Python 3.10 interpreter when one is installed (syntax: ``except*``, ...), and an AST
scan rejects the 3.11+ standard library names that compile fine but fail at import or call time on 3.10.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (REPO / "ras_guard", REPO / "integrations" / "langchain" / "langchain_ras_guard")

#: module -> names it gained in Python 3.11 or later.
NEWER: dict[str, set[str]] = {
    "typing": {"Self", "Never", "LiteralString", "assert_never", "assert_type", "reveal_type", "dataclass_transform",
               "Required", "NotRequired", "TypeVarTuple", "Unpack", "override", "TypeAliasType", "ReadOnly",
               "TypeIs"},
    "enum": {"StrEnum", "ReprEnum", "verify", "member", "nonmember", "global_enum"},
    "asyncio": {"TaskGroup", "timeout", "timeout_at", "Timeout", "Runner", "Barrier"},
    "datetime": {"UTC"},
    "contextlib": {"chdir"},
    "hashlib": {"file_digest"},
    "operator": {"call"},
    "itertools": {"batched"},
}
NEW_MODULES = {"tomllib", "wsgiref.types"}
NEW_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup", "aiter_"}


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py"))


def _findings(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module in NEW_MODULES:
                out.append(f"import of {node.module}")
            for alias in node.names:
                if alias.name in NEWER.get(node.module, ()):
                    out.append(f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in NEW_MODULES:
                    out.append(f"import {alias.name}")
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and node.attr in NEWER.get(module, ()):
                out.append(f"{module}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NEW_BUILTINS:
            out.append(node.id)
        elif type(node).__name__ == "TryStar":
            out.append("except*")
    return [f"{path.relative_to(root)}:{item}" for item in out]


def test_no_python_311_only_standard_library() -> None:
    found = [f for path in _sources() for f in _findings(path)]
    assert not found, f"3.11+ only (use typing_extensions, or a 3.10 spelling): {found}"


def test_the_scan_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom typing import Self\nasync def f():\n    async with asyncio.timeout(1):\n"
                   "        pass\n")
    assert {f.split(":", 1)[1] for f in _findings(bad, tmp_path)} == {"from typing import Self", "asyncio.timeout"}


def test_python310_compiles_every_module() -> None:
    candidates = [shutil.which("python3.10"), *map(str, Path("/root/.pyenv/versions").glob("3.10*/bin/python3.10"))]
    working = [c for c in candidates if c and subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0]
    exe = working[0] if working else None
    if exe is None:
        pytest.skip("no Python 3.10 interpreter here (the AST scan above still runs)")
    code = "import sys, ast\nfor p in sys.argv[1:]:\n    compile(open(p, encoding='utf-8').read(), p, 'exec')\n"
    out = subprocess.run([exe, "-c", code, *map(str, _sources())], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
