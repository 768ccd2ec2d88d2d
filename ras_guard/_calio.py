"""Integrity of stored calibrations: the content id, and strict reading of the two files (private).

**The calibration id** (format 2) is the first 32 hex digits (128 bits) of SHA-256 over, in this order:

1. the tag ``b"ras-guard calibration v2\\n"``;
2. the canonical JSON of every metadata field except ``calibration_id`` and ``created`` (``sort_keys``,
   separators ``,`` and ``:``, ASCII only, no NaN / Infinity; floats as Python's shortest round-trip repr), then
   ``b"\\n"``;
3. for ``prototypes`` then ``prototype_logits``: ``name:float32:d0xd1\\n`` followed by the tensor's raw
   little-endian float32 bytes (C order).

So the id changes when any constant, prompt, fingerprint field, version string, statistic or tensor value
changes, and two fits of the same data get the same id (``created`` is left out on purpose). It is computed
when a calibration is built and checked when one is saved or loaded; a mismatch is a
:class:`~ras_guard.errors.CalibrationIntegrityError`. The id is a content hash, not a signature: whoever may
write the folder can re-save edited values, but only under a new id, so the safety log never shows a trusted
id for changed numbers.

Example:
    >>> import torch
    >>> cid = content_id({"s_base": 0.5}, torch.zeros(1, 2), torch.zeros(1, 3))
    >>> len(cid), cid == content_id({"s_base": 0.5}, torch.zeros(1, 2), torch.zeros(1, 3))
    (32, True)
    >>> cid == content_id({"s_base": 0.6}, torch.zeros(1, 2), torch.zeros(1, 3))
    False
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .errors import CalibrationError

__all__ = ["ID_HEX_DIGITS", "MAX_META_BYTES", "check_tensors", "content_id", "hashed_fields", "read_meta_text"]

ID_HEX_DIGITS = 32
MAX_META_BYTES = 1024 * 1024
_TAG = b"ras-guard calibration v2\n"
_UNHASHED = ("calibration_id", "created")
_TENSORS = ("prototypes", "prototype_logits")


def hashed_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata fields the id covers (JSON-mode dump minus ``calibration_id`` and ``created``)."""
    return {k: v for k, v in meta.items() if k not in _UNHASHED}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes()


def content_id(fields: dict[str, Any], prototypes: torch.Tensor, prototype_logits: torch.Tensor) -> str:
    """The calibration id of metadata ``fields`` (already :func:`hashed_fields`, JSON-mode) and the tensors.

    Raises:
        CalibrationError: A field is not JSON (e.g. NaN or infinity).
    """
    try:
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(
            f"calibration metadata cannot be hashed ({exc}); every value must be finite JSON."
        ) from exc
    h = hashlib.sha256(_TAG)
    h.update(canonical.encode("ascii") + b"\n")
    for name, t in zip(_TENSORS, (prototypes, prototype_logits), strict=True):
        h.update(f"{name}:float32:{'x'.join(str(d) for d in t.shape)}\n".encode("ascii"))
        h.update(_tensor_bytes(t))
    return h.hexdigest()[:ID_HEX_DIGITS]


def read_meta_text(path: Path) -> str:
    """The text of ``calibration.json``: bounded in size, strict UTF-8, never a pickle.

    Raises:
        CalibrationError: Too large, binary (a pickle or other bytes) or not UTF-8.
    """
    size = path.stat().st_size
    if size > MAX_META_BYTES:
        raise CalibrationError(
            f"{path}: {size} bytes is far too large for calibration metadata (at most {MAX_META_BYTES}); "
            "point at a folder written by `ras-guard calibrate`."
        )
    raw = path.read_bytes()
    if raw[:1] == b"\x80" or b"\x00" in raw:
        raise CalibrationError(
            f"{path}: holds binary data (starting {raw[:4]!r}; a pickle?), not JSON. Calibrations are never "
            "pickled and pickles are never loaded; re-create it with `ras-guard calibrate`."
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            f"{path}: is not UTF-8 text (byte {raw[exc.start:exc.start + 1]!r} at offset {exc.start}); it is not "
            "a calibration written by ras-guard. Re-create it with `ras-guard calibrate`."
        ) from None


def check_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``prototypes`` and ``prototype_logits`` as float32, refusing missing, non-float or non-finite tensors.

    Raises:
        CalibrationError: A tensor is missing, not floating point, or holds NaN / infinity.
    """
    out = []
    for name in _TENSORS:
        if name not in tensors:
            raise CalibrationError(f"{path}: no tensor {name!r} (found {sorted(tensors)}); re-create the calibration.")
        t = tensors[name]
        if not t.is_floating_point():
            raise CalibrationError(f"{path}: tensor {name!r} has dtype {t.dtype}, expected floating point.")
        t = t.float()
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise CalibrationError(
                f"{path}: tensor {name!r} holds {bad} NaN or infinite values; such a calibration scores every "
                "request wrongly. Re-fit it with `ras-guard calibrate`."
            )
        out.append(t)
    return out[0], out[1]
