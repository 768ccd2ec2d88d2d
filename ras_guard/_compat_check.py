"""Calibration compatibility with the loaded model's dtype named (private).

Example:
    >>> check_calibration(cal, guard.backend, guard.config)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CalibrationMismatchError

if TYPE_CHECKING:
    from .backends.protocol import Backend
    from .calibration import Calibration
    from .config import RASConfig

__all__ = ["check_calibration"]


def check_calibration(calibration: Calibration, backend: Backend, config: RASConfig) -> None:
    """``check_compatible``, naming the model's dtype when the lm_head differs (a float16 load does)."""
    try:
        calibration.check_compatible(backend.fingerprint(), config)
    except CalibrationMismatchError as exc:
        dtype = getattr(getattr(backend, "model", None), "dtype", None)
        if dtype is None or "lm_head_sha256" not in str(exc):
            raise
        name = str(dtype).removeprefix("torch.")
        raise CalibrationMismatchError(
            f"{exc} The model is loaded in {name}: if it is the checkpoint the calibration was fitted on, "
            f"load it in the dtype of the fit (dtype='float32' or 'bfloat16'; {name} rounds the lm_head "
            f"differently), or fit a calibration with the model loaded in {name}."
        ) from exc
