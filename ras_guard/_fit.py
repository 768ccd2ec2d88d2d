"""Fitting a calibration (private; the public entry point is :meth:`ras_guard.Calibration.fit`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .backends.protocol import GenerationRequest
from .calibration import Calibration, _build, auroc
from .config import RASConfig
from .errors import CalibrationError
from .risk import apply_softcap
from .stages import StageModel, assess, drive, release


def _as_guard(guard_or_model: Any, config: RASConfig | None) -> Any:
    from .backends.protocol import Backend
    from .guard import RASGuard

    if isinstance(guard_or_model, RASGuard):
        if config is not None and config != guard_or_model.config:
            return RASGuard(guard_or_model.backend, config=config)
        return guard_or_model
    if isinstance(guard_or_model, Backend):
        return RASGuard(guard_or_model, config=config)
    if isinstance(guard_or_model, (str, Path)):
        from .backends.hf import HFBackend
        from .demo import resolve

        return RASGuard(HFBackend.from_pretrained(resolve(guard_or_model)[0]), config=config)
    raise CalibrationError(
        f"Calibration.fit needs a RASGuard, a backend or a checkpoint path, got {type(guard_or_model).__name__}."
    )


def is_demo_world(guard: Any) -> bool:
    """Whether the guard's model belongs to the demo world: the bundled demo model (same lm_head fingerprint as the
    shipped demo calibration) or a model trained on its 482-word vocabulary (``scripts/train_demo_model.py``)."""
    import json

    from . import demo

    try:
        meta = json.loads((demo.calibration_path() / "calibration.json").read_text(encoding="utf-8"))
        if meta["fingerprint"]["lm_head_sha256"] == guard.backend.fingerprint().lm_head_sha256:
            return True
        vocab = json.loads((demo.model_path() / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):  # no demo assets: nothing is the demo world
        return False
    get_vocab = getattr(guard.backend.tokenizer, "get_vocab", None)
    return callable(get_vocab) and get_vocab() == vocab


def default_reference(guard: Any) -> tuple[str, list[Any]]:
    """The reference set :meth:`Calibration.fit` uses when none is given, with its name.

    The demo world's models get the demo world's 48-px drawings (:func:`ras_guard.data.reference_queries`); every
    other model gets the set meant for real models (:mod:`ras_guard.data.real_reference`).
    """
    from . import data
    from .data.real_reference import real_reference_queries

    if is_demo_world(guard):
        return "demo world (48-px drawings of the synthetic objects)", data.reference_queries()
    return "real models (FigStep-form SafeBench vs benign instructions, VLSafe-shaped pairs)", real_reference_queries()


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def unsafe_prototypes(
    guard: Any, queries: Sequence[str], *, batch_size: int, progress: Callable[[int], None] | None = None
) -> torch.Tensor:
    """Mean final-norm hidden state of the first N response tokens over text-only queries: ``[N, H]``.

    One batch of ``return_hidden`` requests per ``batch_size`` queries; each batch's hidden states are checked to be
    the lm_head input (``log_softmax(lm_head(h))`` equals the reported log-probabilities).
    """
    backend, n = guard.backend, guard.config.num_steer_tokens
    total: torch.Tensor | None = None
    for chunk in _batches(list(queries), batch_size):
        outs = backend.generate([
            GenerationRequest([{"role": "user", "content": [{"type": "text", "text": q}]}], max_new_tokens=n,
                              min_new_tokens=n, num_distributions=n, return_hidden=True)
            for q in chunk
        ])
        hidden = torch.stack([o.hidden for o in outs]).float()
        logprobs = torch.stack([o.logprobs for o in outs]).float()
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
    return total / len(queries)


def fit_calibration(
    cls: type[Calibration],
    guard_or_model: Any,
    unsafe_text_queries: Sequence[str] | None,
    reference_queries: Sequence[Any] | None,
    *,
    config: RASConfig | None,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> Calibration:
    from . import data
    from .messages import normalize_messages

    guard = _as_guard(guard_or_model, config)
    cfg = guard.config
    unsafe = list(unsafe_text_queries) if unsafe_text_queries is not None else data.unsafe_text_queries()
    refs = list(reference_queries) if reference_queries is not None else default_reference(guard)[1]
    if not refs or all(r.harmful for r in refs) or not any(r.harmful for r in refs):
        raise CalibrationError("the reference set must hold both harmful and benign queries (balanced is best).")
    total, done = len(unsafe) + len(refs), 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total)

    fp = guard.backend.fingerprint()
    protos = unsafe_prototypes(guard, unsafe, batch_size=batch_size, progress=tick)
    proto_logits = guard.backend.head_logits(protos).float().cpu()

    provisional = _build(protos, proto_logits, config=cfg, fingerprint=fp, s_base=0.0, model_name=guard.model_name,
                         num_unsafe=len(unsafe), num_reference=0, reference_stats={})
    sims: list[float] = []
    for chunk in _batches(refs, batch_size):
        convs = [
            normalize_messages(r.messages(multimodal=guard.backend.is_multimodal), allow_images=guard.backend.is_multimodal)
            for r in chunk
        ]
        groups = [uuid.uuid4().hex if cfg.reuse_prefix_cache else None] * len(convs)
        model = StageModel.of(cfg, provisional, guard.backend.softcap)
        try:
            sims += [a.similarity for a in drive(assess(convs, model, guard._captions, groups), guard.backend)]
        finally:
            release(guard.backend, groups)
        tick(len(chunk))
    labels = [r.harmful for r in refs]
    s_base = sum(sims) / len(sims)
    harmful = [s for s, y in zip(sims, labels) if y]
    benign = [s for s, y in zip(sims, labels) if not y]
    stats = {
        "harmful_mean_similarity": sum(harmful) / len(harmful),
        "benign_mean_similarity": sum(benign) / len(benign),
        "auroc": auroc(sims, labels),
    }
    return _build(protos, proto_logits, config=cfg, fingerprint=fp, s_base=s_base, model_name=guard.model_name,
                  num_unsafe=len(unsafe), num_reference=len(refs), reference_stats=stats)
