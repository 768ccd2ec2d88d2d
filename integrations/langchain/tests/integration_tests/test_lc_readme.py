"""The package README's quick start runs as written, with no network (issue 13.5)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from lc_ras_testing import demo_available

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quick_start_runs_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not demo_available():
        pytest.skip("the demo model's assets are not installed")
    section = README.read_text().split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]

    def no_network(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"the quick start opened a connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    scope: dict[str, Any] = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    msg = scope["msg"]
    assert msg.response_metadata["ras"]["decision"] in ("steered", "answered")
    assert msg.response_metadata["ras"]["risk"] > 0.5  # the drawn bomb is assessed as harmful
    assert "'risk'" in capsys.readouterr().out
