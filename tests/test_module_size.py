"""One concept per module (issue 14.6, house style): no module of either package over 400 lines.

``KNOWN_LONG`` lists the modules still over the limit, with their length today; the test fails when one grows,
when a new module passes the limit, and when a known one is back under it (so the list only shrinks).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (REPO / "ras_guard", REPO / "integrations" / "langchain" / "langchain_ras_guard")
LIMIT = 400

#: path -> its length when listed (issue 14 splits them).
KNOWN_LONG: dict[str, int] = {
}


def _lengths() -> dict[str, int]:
    return {
        str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
        for pkg in PACKAGES
        for p in sorted(pkg.rglob("*.py"))
    }


def test_no_new_module_over_the_limit() -> None:
    over = {p: n for p, n in _lengths().items() if n > LIMIT and p not in KNOWN_LONG}
    assert not over, f"modules over {LIMIT} lines (split them by concept): {over}"


def test_known_long_modules_do_not_grow_and_leave_the_list_when_short() -> None:
    lengths = _lengths()
    grown = {p: (lengths[p], n) for p, n in KNOWN_LONG.items() if p in lengths and lengths[p] > n}
    assert not grown, f"known long modules grew (now, listed): {grown}"
    fixed = [p for p in KNOWN_LONG if lengths.get(p, 0) <= LIMIT]
    assert not fixed, f"remove from KNOWN_LONG, they are short now (or gone): {fixed}"
