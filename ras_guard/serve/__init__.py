"""``ras-guard serve``: an OpenAI-compatible HTTP endpoint in front of a guarded model.

Example:
    >>> from ras_guard import RASGuard
    >>> from ras_guard.serve import ServeSettings, create_app
    >>> app = create_app(RASGuard.from_pretrained("demo"), ServeSettings(model_name="demo"))  # doctest: +SKIP

Needs the ``serve`` extra (``pip install 'ras-guard[serve]'``: FastAPI, uvicorn, prometheus-client).
"""

from __future__ import annotations

from .app import ServeSettings, create_app
from .engine import HFEngine
from .runner import load_engine_guard, serve_in_thread

__all__ = ["HFEngine", "ServeSettings", "create_app", "load_engine_guard", "serve_in_thread"]
