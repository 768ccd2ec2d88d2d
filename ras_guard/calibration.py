"""Calibration: the unsafe prototypes mu_n, their logits, S_base and alpha, tied to one model.

Saved as a folder: ``prototypes.safetensors`` (tensors ``prototypes`` ``[N, H]`` and ``prototype_logits``
``[N, V]``, uncapped) and ``calibration.json`` (everything else, validated by pydantic). Nothing is pickled.

``calibration_id`` is a content hash over the constants and both tensors (defined in :mod:`ras_guard._calio`),
verified on save and on load: a hand-edited file (say a raised ``s_base``) is refused with
:class:`~ras_guard.errors.CalibrationIntegrityError` instead of loading under its trusted id. Infinite or NaN
constants and tensors, binary or non-UTF-8 metadata are refused too. To keep a deliberate edit (or an older
format-1 folder), re-save it under its new id: ``ras-guard calibrate --rehash DIR --out NEW_DIR`` (or
``Calibration.load(DIR, rehash=True).save(NEW_DIR)``).

Example:
    >>> from ras_guard import Calibration, RASGuard
    >>> guard = RASGuard.from_pretrained("demo")  # doctest: +SKIP
    >>> cal = Calibration.fit(guard)  # bundled data  # doctest: +SKIP
    >>> cal.save("my-calibration"); Calibration.load("my-calibration").s_base  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ._calio import check_tensors, content_id, hashed_fields, read_meta_text
from .backends.base import ModelFingerprint
from .config import RASConfig
from .errors import CalibrationError, CalibrationIntegrityError, CalibrationMismatchError
from .risk import alpha_for

if TYPE_CHECKING:
    from .backends.protocol import Backend
    from .data import ReferenceQuery
    from .guard import RASGuard

__all__ = ["Calibration", "CalibrationMeta", "FingerprintInfo", "auroc"]

_META_FILE = "calibration.json"
_TENSOR_FILE = "prototypes.safetensors"
FORMAT_VERSION = 2
"""2: the id covers every constant and both tensors (1: prototypes and some constants, never verified)."""


class FingerprintInfo(BaseModel):
    """The model a calibration was made for."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    architecture: str
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    lm_head_sha256: str = Field(min_length=64, max_length=64)


class CalibrationMeta(BaseModel):
    """Everything in a calibration except the tensors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format_version: int = FORMAT_VERSION
    calibration_id: str
    num_steer_tokens: int = Field(ge=1)
    gamma: float = Field(gt=0, le=1, allow_inf_nan=False)
    s_base: float = Field(ge=-1, lt=1, allow_inf_nan=False)
    alpha: float = Field(gt=0, allow_inf_nan=False)
    caption_prompt: str
    safety_prompt: str
    caption_max_new_tokens: int = Field(ge=1)
    fingerprint: FingerprintInfo
    transformers_version: str
    ras_guard_version: str
    created: str
    model_name: str = ""
    num_unsafe_queries: int = 0
    num_reference_queries: int = 0
    reference_stats: dict[str, float] = Field(default_factory=dict)


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` for the positive class (ties count half).

    Example:
        >>> auroc([0.9, 0.8, 0.1], [True, True, False])
        1.0
    """
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@dataclass(frozen=True)
class Calibration:
    """Prototypes and constants for one model.

    Attributes:
        meta: Validated metadata.
        prototypes: ``[N, H]`` float32 mean final-norm hidden states of unsafe text-only queries.
        prototype_logits: ``[N, V]`` float32 ``lm_head(prototypes)``, uncapped.
    """

    meta: CalibrationMeta
    prototypes: torch.Tensor
    prototype_logits: torch.Tensor

    @property
    def s_base(self) -> float:
        """Mean S over the reference set."""
        return self.meta.s_base

    @property
    def alpha(self) -> float:
        """Sigmoid slope ``ln(99) / (1 - S_base)``."""
        return self.meta.alpha

    @property
    def calibration_id(self) -> str:
        """Content hash of the constants and both tensors (32 hex digits; see :mod:`ras_guard._calio`)."""
        return self.meta.calibration_id

    def content_id(self) -> str:
        """The id this calibration's content hashes to (equal to :attr:`calibration_id` unless changed)."""
        return content_id(hashed_fields(self.meta.model_dump(mode="json")), self.prototypes, self.prototype_logits)

    def rehash(self) -> Calibration:
        """A copy whose ``calibration_id`` (and format version) is that of its content.

        Example:
            >>> Calibration.load("edited", rehash=True).save("edited-resaved")  # doctest: +SKIP
        """
        meta = self.meta.model_copy(update={"format_version": FORMAT_VERSION})
        cid = content_id(hashed_fields(meta.model_dump(mode="json")), self.prototypes, self.prototype_logits)
        return Calibration(meta=meta.model_copy(update={"calibration_id": cid}), prototypes=self.prototypes,
                           prototype_logits=self.prototype_logits)

    def verify(self, where: str = "calibration") -> None:
        """Raise :class:`CalibrationIntegrityError` unless the content hashes to :attr:`calibration_id`."""
        actual = self.content_id()
        if actual != self.calibration_id:
            raise CalibrationIntegrityError(
                f"{where}: calibration_id {self.calibration_id!r} does not match its content, which hashes to "
                f"{actual!r}: calibration.json or prototypes.safetensors was changed after it was saved (or was "
                "not written by ras-guard). Re-fit it with `ras-guard calibrate`; if the change is deliberate, "
                f"re-save it under its new id with `ras-guard calibrate --rehash {where} --out NEW_DIR`."
            )

    def config(self, **overrides: Any) -> RASConfig:
        """A :class:`RASConfig` with this calibration's method constants (other fields default or overridden)."""
        base = {
            "num_steer_tokens": self.meta.num_steer_tokens,
            "gamma": self.meta.gamma,
            "caption_prompt": self.meta.caption_prompt,
            "safety_prompt": self.meta.safety_prompt,
            "caption_max_new_tokens": self.meta.caption_max_new_tokens,
        }
        return RASConfig(**{**base, **overrides})

    def check_compatible(self, fingerprint: ModelFingerprint, config: RASConfig) -> None:
        """Raise :class:`CalibrationMismatchError` naming every difference from the model and config.

        Example:
            >>> cal.check_compatible(guard.backend.fingerprint(), guard.config)  # doctest: +SKIP
        """
        diffs = []
        fp = self.meta.fingerprint
        for key in ("architecture", "vocab_size", "hidden_size", "lm_head_sha256"):
            mine, theirs = getattr(fp, key), getattr(fingerprint, key)
            if mine != theirs:
                diffs.append(f"{key}: calibration {mine!r} vs model {theirs!r}")
        for key in ("num_steer_tokens", "gamma", "caption_prompt", "safety_prompt", "caption_max_new_tokens"):
            mine, theirs = getattr(self.meta, key), getattr(config, key)
            if mine != theirs:
                diffs.append(f"{key}: calibration {mine!r:.60} vs config {theirs!r:.60}")
        if diffs:
            raise CalibrationMismatchError(
                f"calibration {self.calibration_id} was made for another model or configuration: "
                + "; ".join(diffs)
                + ". Fit a calibration for this model with `ras-guard calibrate` (or Calibration.fit)."
            )

    def save(self, directory: str | Path) -> Path:
        """Write ``calibration.json`` and ``prototypes.safetensors`` into ``directory`` (created if needed).

        Raises:
            CalibrationIntegrityError: The content no longer hashes to :attr:`calibration_id` (use
                :meth:`rehash` first if that is intended).
        """
        self.verify(str(directory))
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {"prototypes": self.prototypes.contiguous(), "prototype_logits": self.prototype_logits.contiguous()},
            str(out / _TENSOR_FILE),
            metadata={"calibration_id": self.calibration_id},
        )
        (out / _META_FILE).write_text(json.dumps(self.meta.model_dump(), indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | Path, *, rehash: bool = False) -> Calibration:
        """Read a calibration folder and verify it.

        Args:
            directory: A folder written by :meth:`save` (``ras-guard calibrate``).
            rehash: Accept content that does not hash to its stored id (a deliberate edit, or format 1) and
                give it the id of its content; :meth:`save` it to make that permanent. The stored id is never
                kept for changed content.

        Raises:
            CalibrationIntegrityError: The content does not hash to ``calibration_id``.
            CalibrationError: Missing files, binary / non-UTF-8 / invalid JSON, NaN or infinite values, or
                tensors of the wrong shape.
        """
        folder = Path(directory)
        meta_path, tensor_path = folder / _META_FILE, folder / _TENSOR_FILE
        if not meta_path.is_file() or not tensor_path.is_file():
            raise CalibrationError(
                f"{str(folder)!r} is not a calibration folder (needs {_META_FILE} and {_TENSOR_FILE}); "
                "create one with `ras-guard calibrate`."
            )
        try:
            meta = CalibrationMeta.model_validate_json(read_meta_text(meta_path))
        except ValidationError as exc:
            raise CalibrationError(f"{meta_path}: invalid calibration metadata: {exc}") from exc
        if meta.format_version != FORMAT_VERSION and not (rehash and meta.format_version == 1):
            hint = (" (an older format whose id is not verified); re-save it with "
                    f"`ras-guard calibrate --rehash {folder} --out NEW_DIR`") if meta.format_version == 1 else ""
            raise CalibrationError(
                f"{meta_path}: format_version {meta.format_version}, expected {FORMAT_VERSION}{hint}."
            )
        try:
            tensors = load_file(str(tensor_path))
            with safe_open(str(tensor_path), framework="pt") as f:
                stored_id = (f.metadata() or {}).get("calibration_id")
        except Exception as exc:
            raise CalibrationError(f"{tensor_path}: cannot read prototypes: {exc}") from exc
        protos, logits = check_tensors(tensor_path, tensors)
        n, fp = meta.num_steer_tokens, meta.fingerprint
        if tuple(protos.shape) != (n, fp.hidden_size) or tuple(logits.shape) != (n, fp.vocab_size):
            raise CalibrationError(
                f"{tensor_path}: tensor shapes {tuple(protos.shape)} / {tuple(logits.shape)} do not match "
                f"N={n}, hidden={fp.hidden_size}, vocab={fp.vocab_size}."
            )
        cal = cls(meta=meta, prototypes=protos, prototype_logits=logits)
        if rehash:
            return cal.rehash()
        if stored_id is not None and stored_id != meta.calibration_id:
            raise CalibrationIntegrityError(
                f"{folder}: {_TENSOR_FILE} belongs to calibration {stored_id!r} but {_META_FILE} says "
                f"{meta.calibration_id!r}; the two files come from different calibrations. Re-fit with "
                "`ras-guard calibrate`."
            )
        cal.verify(str(folder))
        return cal

    @classmethod
    def fit(
        cls,
        guard_or_model: RASGuard | Backend | str | Path,
        unsafe_text_queries: Sequence[str] | None = None,
        reference_queries: Sequence[ReferenceQuery] | None = None,
        *,
        config: RASConfig | None = None,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> Calibration:
        """Fit a calibration: an alias of :func:`ras_guard.calibrate.fit` (the artifact does not compute itself).

        Args:
            guard_or_model: A :class:`RASGuard`, a backend, or a local checkpoint path (``"demo"`` works).
            unsafe_text_queries: Harmful text queries (default: the bundled set).
            reference_queries: Balanced harmful/benign image+text queries (default: the bundled set).
            config: Method constants (default: the guard's config, else :class:`RASConfig` defaults).
            batch_size: Queries per forward batch.
            progress: Called as ``progress(done, total)`` after each batch.

        Returns:
            A new :class:`Calibration`.

        Example:
            >>> cal = Calibration.fit("demo")  # doctest: +SKIP
            >>> round(cal.s_base, 3)  # doctest: +SKIP
            0.512
        """
        from .calibrate import fit  # the producer lives in ras_guard.calibrate; this is its alias

        return fit(guard_or_model, unsafe_text_queries, reference_queries, config=config, batch_size=batch_size,
                   progress=progress)


def _transformers_version() -> str:
    """The installed transformers version ("" without it), read from the package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return ""


def _build(
    prototypes: torch.Tensor,
    prototype_logits: torch.Tensor,
    *,
    config: RASConfig,
    fingerprint: ModelFingerprint,
    s_base: float,
    model_name: str,
    num_unsafe: int,
    num_reference: int,
    reference_stats: dict[str, float],
) -> Calibration:
    from ._version import __version__

    fields: dict[str, Any] = {
        "num_steer_tokens": config.num_steer_tokens,
        "gamma": config.gamma,
        "s_base": float(s_base),
        "alpha": alpha_for(s_base),
        "caption_prompt": config.caption_prompt,
        "safety_prompt": config.safety_prompt,
        "caption_max_new_tokens": config.caption_max_new_tokens,
        "fingerprint": FingerprintInfo(**fingerprint.__dict__),
        "transformers_version": _transformers_version(),
        "ras_guard_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_name": model_name,
        "num_unsafe_queries": num_unsafe,
        "num_reference_queries": num_reference,
        "reference_stats": reference_stats,
    }
    protos, logits = prototypes.float().cpu(), prototype_logits.float().cpu()
    meta = CalibrationMeta(calibration_id="", **fields)
    return Calibration(meta=meta, prototypes=protos, prototype_logits=logits).rehash()
