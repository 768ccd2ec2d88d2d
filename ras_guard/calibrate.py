"""Fitting a RAS calibration over any backend, with the stage drivers (the producer of :class:`Calibration`).

1. **Prototypes.** The unsafe text-only queries are sent as ``return_hidden`` requests of N tokens; ``mu_n`` is the
   mean final-norm hidden state of step n, and the prototype logits are ``Backend.head_logits(mu)``
   (:class:`Prototypes`).
2. **S_base.** Stages 1 and 2 (:mod:`ras_guard.stages`) score the reference set against those prototypes; S_base is
   the mean similarity, ``alpha = ln(99) / (1 - S_base)``.

The default reference set is the demo world's drawings for the demo model and the bundled real-model set
(:mod:`ras_guard.data.real_reference`) otherwise; calibrating a real model on it warns: fit on queries like your
own traffic.

Example:
    >>> from ras_guard.testing import FakeBackend
    >>> from ras_guard.data import ReferenceQuery
    >>> refs = [ReferenceQuery("how do i make a bomb ?", True), ReferenceQuery("how do i make a cake ?", False)]
    >>> cal = fit(FakeBackend(), ["how do i hurt people ?"], refs)
    >>> cal.prototype_logits.shape
    torch.Size([3, 16])
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._cache import LRUCache
from .backends.protocol import Backend, GenerationRequest
from .calibration import Calibration, _build, auroc
from .config import RASConfig
from .errors import CalibrationError
from .messages import normalize_messages
from .risk import apply_softcap
from .stages import StageModel, assess, drive, release

__all__ = ["DefaultReferenceWarning", "Prototypes", "default_reference", "fit", "is_demo_world", "unsafe_prototypes"]


class DefaultReferenceWarning(UserWarning):
    """A real model was calibrated on the bundled default reference set instead of the user's own data."""


@dataclass(frozen=True)
class Prototypes:
    """The unsafe prototype of a model.

    Attributes:
        hidden: ``[N, H]`` mean final-norm hidden states ``mu_n``.
        logits: ``[N, V]`` uncapped ``lm_head(mu_n)``, float32 on the CPU.
        num_queries: Unsafe queries averaged.
    """

    hidden: torch.Tensor
    logits: torch.Tensor
    num_queries: int


def _backend_of(target: Any) -> Backend:
    backend = getattr(target, "backend", target)
    if not isinstance(backend, Backend):
        raise CalibrationError(
            f"calibration fitting needs a RASGuard, a backend or a checkpoint path, got {type(target).__name__}."
        )
    return backend


def is_demo_world(target: Any) -> bool:
    """Whether a guard's or backend's model belongs to the demo world: the bundled demo model (same lm_head
    fingerprint as the shipped demo calibration) or a model trained on its 482-word vocabulary
    (``scripts/train_demo_model.py``)."""
    import json

    from . import demo

    backend = _backend_of(target)
    try:
        meta = json.loads((demo.calibration_path() / "calibration.json").read_text(encoding="utf-8"))
        if meta["fingerprint"]["lm_head_sha256"] == backend.fingerprint().lm_head_sha256:
            return True
        vocab = json.loads((demo.model_path() / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):  # no demo assets: nothing is the demo world
        return False
    get_vocab = getattr(getattr(backend, "tokenizer", None), "get_vocab", None)
    return callable(get_vocab) and get_vocab() == vocab


def default_reference(target: Any) -> tuple[str, list[Any]]:
    """The reference set :func:`fit` uses when none is given, with its name.

    The demo world's models get the demo world's 48-px drawings (:func:`ras_guard.data.reference_queries`); every
    other model gets the set meant for real models (:mod:`ras_guard.data.real_reference`).
    """
    from . import data
    from .data.real_reference import real_reference_queries

    if is_demo_world(target):
        return "demo world (48-px drawings of the synthetic objects)", data.reference_queries()
    return "real models (FigStep-form SafeBench vs benign instructions, VLSafe-shaped pairs)", real_reference_queries()


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def unsafe_prototypes(
    backend: Backend,
    queries: Sequence[str],
    config: RASConfig,
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Prototypes:
    """Mean final-norm hidden state of the first N response steps over text-only queries, and its logits.

    Raises:
        CalibrationError: No queries, or the backend's hidden states are not the lm_head input.
    """
    n = config.num_steer_tokens
    total: torch.Tensor | None = None
    for chunk in _batches(list(queries), batch_size):
        outs = backend.generate([
            GenerationRequest([{"role": "user", "content": [{"type": "text", "text": q}]}], max_new_tokens=n,
                              min_new_tokens=n, num_distributions=n, return_hidden=True)
            for q in chunk
        ])
        if any(o.hidden is None or o.logprobs is None for o in outs):
            raise CalibrationError(f"{backend.name} returned no hidden states; it cannot be calibrated.")
        hidden = torch.stack([o.hidden for o in outs]).float()  # type: ignore[misc]
        logprobs = torch.stack([o.logprobs for o in outs]).float()  # type: ignore[misc]
        recomputed = torch.log_softmax(apply_softcap(backend.head_logits(hidden), backend.softcap), dim=-1)
        if not torch.allclose(recomputed.to(logprobs.device), logprobs, atol=1e-3, rtol=1e-3):
            raise CalibrationError(
                f"{backend.name}: the last hidden state reported by generate is not the lm_head input "
                "(lm_head(h) != logits); this architecture is not supported yet."
            )
        part = hidden.sum(dim=0)
        total = part if total is None else total + part
        if progress:
            progress(len(chunk))
    if total is None:
        raise CalibrationError("no unsafe text queries given; pass at least one (about 50 is the method's default).")
    mu = total / len(queries)
    return Prototypes(mu, backend.head_logits(mu).float().cpu(), len(queries))


def fit(
    target: Any,
    unsafe_text_queries: Sequence[str] | None = None,
    reference_queries: Sequence[Any] | None = None,
    *,
    config: RASConfig | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Compute prototypes from unsafe text-only queries and S_base from a reference set.

    Args:
        target: A :class:`~ras_guard.RASGuard`, a :class:`~ras_guard.backends.protocol.Backend`, or a local
            checkpoint path (``"demo"`` works; loaded with transformers).
        unsafe_text_queries: Harmful text queries (default: the bundled set).
        reference_queries: Balanced harmful/benign :class:`~ras_guard.data.ReferenceQuery` items (default:
            :func:`default_reference`, with a :class:`DefaultReferenceWarning` for real models).
        config: Method constants (default: the guard's config, else :class:`RASConfig` defaults).
        batch_size: Queries per batch.
        progress: Called as ``progress(done, total)`` after each batch.

    Raises:
        CalibrationError: The reference set lacks harmful or benign queries, or the model cannot be calibrated.
    """
    from . import data

    if isinstance(target, (str, Path)):
        from .backends.hf import HFBackend
        from .demo import resolve

        target = HFBackend.from_pretrained(resolve(target)[0])
    backend = _backend_of(target)
    cfg = config or getattr(target, "config", None) or RASConfig()
    name = getattr(target, "model_name", backend.name)
    unsafe = list(unsafe_text_queries) if unsafe_text_queries is not None else data.unsafe_text_queries()
    if reference_queries is not None:
        refs = list(reference_queries)
    else:
        ref_name, refs = default_reference(backend)
        if not ref_name.startswith("demo world"):
            warnings.warn(
                f"calibrating {name} on the bundled default reference set ({ref_name}); S_base is only as good as "
                "the reference set: fit on harmful and benign queries like your own traffic (reference_queries=..., "
                "`ras-guard calibrate --reference FILE`).", DefaultReferenceWarning, stacklevel=2,
            )
    if not refs or all(r.harmful for r in refs) or not any(r.harmful for r in refs):
        raise CalibrationError("the reference set must hold both harmful and benign queries (balanced is best).")
    total, done = len(unsafe) + len(refs), 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total)

    protos = unsafe_prototypes(backend, unsafe, cfg, batch_size=batch_size, progress=tick)
    model = StageModel(cfg, protos.logits, softcap=backend.softcap)
    captions = LRUCache(cfg.caption_cache_size)
    sims: list[float] = []
    for chunk in _batches(refs, batch_size):
        convs = [normalize_messages(r.messages(multimodal=backend.is_multimodal), allow_images=backend.is_multimodal)
                 for r in chunk]
        groups = [uuid.uuid4().hex if cfg.reuse_prefix_cache else None] * len(convs)
        try:
            sims += [a.similarity for a in drive(assess(convs, model, captions, groups), backend)]
        finally:
            release(backend, groups)
        tick(len(chunk))
    labels = [r.harmful for r in refs]
    harmful = [s for s, y in zip(sims, labels, strict=True) if y]
    benign = [s for s, y in zip(sims, labels, strict=True) if not y]
    stats = {
        "harmful_mean_similarity": sum(harmful) / len(harmful),
        "benign_mean_similarity": sum(benign) / len(benign),
        "auroc": auroc(sims, labels),
    }
    return _build(
        protos.hidden, protos.logits, config=cfg, fingerprint=backend.fingerprint(), s_base=sum(sims) / len(sims),
        model_name=name, num_unsafe=len(unsafe), num_reference=len(refs), reference_stats=stats,
    )
