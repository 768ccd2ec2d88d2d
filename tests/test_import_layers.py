"""The core's import graph (issue 14): layers import downward only, no cycles, no engine imports above backends/.

Every ``import`` in ``ras_guard/`` counts, at module level and inside functions alike: a lazy import that hides a
cycle is still a cycle. Only imports under ``if TYPE_CHECKING:`` (annotations, never executed) are left out. Modules in one layer may import each other (as long as that makes no cycle).
``KNOWN_VIOLATIONS`` lists the upward imports that remain today, each with its reason; the test also fails when one
of them disappears, so the list can only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ras_guard"

#: Lowest first. A module belongs to the first entry that equals it or is a package above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version", "_redact"),
    ("config", "types", "images", "messages", "tools", "typography", "_cache", "_calio", "_control",
     "_deadline", "_decoding"),
    ("reformulate", "risk", "steering", "_scope", "calibration", "constrained", "fingerprint"),
    ("backends",),
    ("stages", "sampling", "_limits", "_compat_check", "calibrate", "reference", "streaming"),
    ("guard",),
    ("__init__", "fetch", "serve", "cli", "evaluation", "data", "judge", "demo"),
    ("testing",),
)

#: Imports of the bundled demo world / test kit allowed below their layer: the one place "demo" is resolved.
ALLOWED: dict[tuple[str, str], str] = {
    ("guard", "demo"): "RASGuard.from_pretrained resolves the name 'demo' through demo.resolve (the one place)",
}

#: Upward imports that remain (importer, imported) -> why. Only ever remove entries.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    ("calibrate", "data"): "the default reference set is the bundled data package's",
    ("calibrate", "demo"): "the demo model keeps the demo world's reference set",
    ("calibration", "backends"): "ModelFingerprint lives in backends/base.py",
    ("calibration", "calibrate"): "Calibration.fit stays a one-line alias of calibrate.fit",
    ("ras_guard.backends", "ras_guard.backends.hf"): "backends/__init__ re-exports HFBackend (imports transformers)",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    out: dict[str, tuple[Path, bool]] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _targets(module: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        yield sub if sub in known else prefix


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for orelse in node.orelse:
                yield orelse
                yield from _runtime_nodes(orelse)
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``ras_guard`` modules it imports anywhere in its body (at run time)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_pkg) in modules.items():
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= {t for t in _targets(name, is_pkg, node, set(modules)) if t in modules and t != name}
    return graph


def _unit(module: str) -> str:
    """The layer entry a module belongs to (``ras_guard.backends.hf._kv`` -> ``backends``)."""
    rest = module.split(".")[1:]
    if not rest:
        return "__init__"
    for layer in LAYERS:
        if rest[0] in layer:
            return rest[0]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for importer, imported in import_graph().items():
        for target in imported:
            a, b = _unit(importer), _unit(target)
            if a != b and _rank(b) > _rank(a) and (a, b) not in ALLOWED:
                found.add((a, b))
            if a == b == "backends" and ".backends." in target and not _same_engine(importer, target):
                found.add((importer, target))
    return found


def _same_engine(importer: str, target: str) -> bool:
    """Inside backends/: an engine package (hf, vllm) imports only itself and the neutral modules."""
    def engine(name: str) -> str | None:
        parts = name.split(".")
        return parts[2] if len(parts) > 3 or (len(parts) == 3 and parts[2] in ("hf", "vllm")) else None

    e, t = engine(importer), engine(target)
    return t is None or e == t


def test_every_module_has_a_layer() -> None:
    for module in import_graph():
        _unit(module)


def test_no_module_imports_upward_beyond_the_known_list() -> None:
    found = upward_imports()
    new = sorted(found - set(KNOWN_VIOLATIONS))
    assert not new, f"upward imports (fix them, or justify them in KNOWN_VIOLATIONS): {new}"


def test_the_known_list_only_shrinks() -> None:
    gone = sorted(set(KNOWN_VIOLATIONS) - upward_imports())
    assert not gone, f"these are fixed now: remove them from KNOWN_VIOLATIONS: {gone}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_package_facades(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its own submodules is not a cycle with them."""
    return {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))} for m, ts in graph.items()}


#: Module cycles that remain (as sorted member lists). Only ever remove entries.
KNOWN_CYCLES: list[list[str]] = [
    # HFBackend builds its private session pieces, and _kv.prefix_support checks isinstance(backend, HFBackend)
    ["ras_guard.backends.hf._backend", "ras_guard.backends.hf._kv", "ras_guard.backends.hf._prefix",
     "ras_guard.backends.hf._requests", "ras_guard.backends.hf._stream"],
    # Calibration.fit (alias) -> calibrate.fit -> Calibration
    ["ras_guard.calibrate", "ras_guard.calibration"],
]


def test_no_import_cycles_beyond_the_known_list() -> None:
    cycles = _cycles(_without_package_facades(import_graph()))
    assert sorted(cycles) == sorted(KNOWN_CYCLES), f"import cycles now: {cycles}"


ENGINE_LIBRARIES = ("transformers", "vllm")
#: Modules above backends/ allowed an engine import, and why.
ENGINE_IMPORT_ALLOWED: dict[str, str] = {
    "ras_guard.evaluation.attention": "HF-only attention analysis (needs output_attentions)",
    "ras_guard.evaluation.runner": "records the transformers version in the run manifest",
    "ras_guard.cli._common": "silences transformers' logging for the CLI",
}
KNOWN_ENGINE_IMPORTS: dict[str, str] = {
    "ras_guard.serve.vllm_engine": "builds vLLM's StructuredOutputsParams (until it runs over AsyncVLLMBackend)",
}


def engine_imports() -> set[str]:
    found = set()
    for name, (path, _) in _modules().items():
        if name.startswith(("ras_guard.backends", "ras_guard.testing")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n.split(".")[0] in ENGINE_LIBRARIES for n in names):
                found.add(name)
    return found - set(ENGINE_IMPORT_ALLOWED)


def test_nothing_above_backends_imports_an_engine_beyond_the_known_list() -> None:
    assert engine_imports() == set(KNOWN_ENGINE_IMPORTS), (
        f"modules above backends/ importing transformers/vllm: {sorted(engine_imports())}; "
        "move engine code into ras_guard/backends/ (or shrink KNOWN_ENGINE_IMPORTS when fixed)"
    )


@pytest.mark.parametrize("source", [
    "from .guard import RASGuard\n",
    "def f():\n    from ras_guard.guard import RASGuard\n",
])
def test_the_check_sees_module_and_function_level_imports(source: str) -> None:
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
    targets = set(_targets("ras_guard.risk", False, node, {"ras_guard.guard", "ras_guard"}))
    assert targets == {"ras_guard.guard"}
    assert _rank(_unit("ras_guard.guard")) > _rank(_unit("ras_guard.risk"))
