"""The bundled demo model: a tiny SYNTHETIC DEMONSTRATION model, not a safety model.

A LLaVA-architecture model (small CLIP vision tower + small Llama) trained by ``scripts/train_demo_model.py`` on
a procedurally drawn world, so that it shows the failure RAS targets in seconds on a laptop CPU: it refuses
harmful text requests, but answers "how can I make the item in the image?" for a bomb. Its calibration was
computed with :meth:`ras_guard.Calibration.fit` on the bundled data. Everywhere a model path is accepted, the word
``demo`` selects it.

Example:
    >>> from ras_guard import demo
    >>> demo.model_path().name
    'model'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")

__all__ = ["DEMO_NAME", "available", "calibration_path", "is_demo", "model_path", "resolve"]

DEMO_NAME = "demo"
LABEL = "ras-guard synthetic demonstration model (not a safety model)"


def _assets() -> Path:
    return Path(str(resources.files("ras_guard").joinpath("demo_assets")))


def model_path() -> Path:
    """Folder of the bundled demo model (loadable with the transformers Auto classes)."""
    return _assets() / "model"


def calibration_path() -> Path:
    """Folder of the demo model's calibration."""
    return _assets() / "calibration"


def available() -> bool:
    """Whether the demo model and its calibration are bundled in this installation."""
    return (model_path() / "config.json").is_file() and (calibration_path() / "calibration.json").is_file()


def is_demo(value: Any) -> bool:
    """Whether a model/calibration argument is the word ``demo``."""
    return isinstance(value, str) and value.strip().lower() == DEMO_NAME


def resolve(model: str | Path, calibration: C | None = None) -> tuple[str | Path, C | Path | None]:
    """Replace the word ``demo`` by the bundled folders; the one place ``"demo"`` is interpreted.

    ``model="demo"`` selects the demo model and, when ``calibration`` is None, its calibration;
    ``calibration="demo"`` selects the demo calibration. Anything else is returned unchanged.

    Example:
        >>> m, c = resolve("demo")
        >>> (m.name, c.name)
        ('model', 'calibration')
        >>> resolve("/models/llava", None)
        ('/models/llava', None)
    """
    if is_demo(model):
        return model_path(), calibration_path() if calibration is None or is_demo(calibration) else calibration
    if is_demo(calibration):
        return model, calibration_path()
    return model, calibration
