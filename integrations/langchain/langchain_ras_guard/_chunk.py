"""One pooled chunk of ``batch`` / ``abatch``: batched assessment, decisions, batched answers (private).

A failing batched call is redone row by row, so one bad row gets its own exception and the others their
answers.

Example:
    >>> run_chunk(guard, llm._decided, [llm._pending(msgs, None, {})])  # doctest: +SKIP
    [(Turn(...), GuardedGeneration(...))]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ras_guard import Decision, GuardedGeneration, RASGuard, RiskAssessment

from ._conventions import seeded
from ._turns import Pending, Turn

__all__ = ["run_chunk"]

_Answer = tuple[Turn, GuardedGeneration | None]


def _assess(guard: RASGuard, pendings: list[Pending]) -> list[RiskAssessment | BaseException]:
    need = [i for i, p in enumerate(pendings) if p.record is None]
    out: list[RiskAssessment | BaseException] = [p.record for p in pendings]  # type: ignore[misc]
    if not need:
        return out
    try:
        for i, a in zip(need, guard.assess_batch([pendings[i].messages for i in need]), strict=True):
            out[i] = a
    except Exception:  # noqa: BLE001 - find the row(s) at fault, one by one
        for i in need:
            try:
                out[i] = guard.assess(pendings[i].messages)
            except Exception as exc:  # noqa: BLE001 - the row's own error, in its slot
                out[i] = exc
    return out


def _answer_record(guard: RASGuard, turn: Turn) -> RiskAssessment:
    """The assessment ``generate_batch`` steers this row with (a given record for ``risk=`` rows)."""
    kw = turn.generate_kwargs
    if "assessment" in kw:
        return kw["assessment"]  # type: ignore[no-any-return]
    return RiskAssessment(
        risk=float(kw["risk"]),
        similarity=float("nan"),
        visual_context="",
        reformulated_prompt="",
        calibration_id=guard.calibration.calibration_id if guard.calibration is not None else "",
        image_sha256=tuple(turn.ras.get("image_sha256", ())),
        given=True,
    )


def _common(turn: Turn) -> dict[str, Any]:
    return {k: v for k, v in turn.generate_kwargs.items() if k not in ("risk", "assessment")}


def _generate(guard: RASGuard, turns: list[tuple[int, Turn]], out: list[Any]) -> None:
    """Answer rows with equal generation arguments in one ``generate_batch`` (row by row if it fails)."""
    groups: list[tuple[dict[str, Any], list[tuple[int, Turn]]]] = []
    for i, turn in turns:
        common = _common(turn)
        for key, members in groups:
            if key == common:
                members.append((i, turn))
                break
        else:
            groups.append((common, [(i, turn)]))
    for common, members in groups:
        try:
            seeded(members[0][1].seed)
            gens = guard.generate_batch(
                [t.messages for _, t in members],
                assessments=[_answer_record(guard, t) for _, t in members],
                **common,
            )
            for (i, turn), gen in zip(members, gens, strict=True):
                out[i] = (turn, gen)
        except Exception:  # noqa: BLE001 - redo one by one: each row its own answer or error
            for i, turn in members:
                try:
                    seeded(turn.seed)
                    out[i] = (turn, guard.generate(turn.messages, **turn.generate_kwargs))
                except Exception as exc:  # noqa: BLE001
                    out[i] = exc


def run_chunk(
    guard: RASGuard, decided: Callable[[Pending, RiskAssessment], Turn], pendings: list[Pending]
) -> list[_Answer | BaseException]:
    """Assess, decide and answer prepared calls together.

    Args:
        guard: The loaded guard.
        decided: The chat model's decision step (``RASGuardedChatModel._decided``).
        pendings: The prepared calls, in row order.

    Returns:
        Per row ``(turn, generation)`` (``generation`` None when blocked) or the row's exception.
    """
    out: list[Any] = [None] * len(pendings)
    to_answer: list[tuple[int, Turn]] = []
    for i, (pending, record) in enumerate(zip(pendings, _assess(guard, pendings), strict=True)):
        if isinstance(record, BaseException):
            out[i] = record
            continue
        try:
            turn = decided(pending, record)
        except Exception as exc:  # noqa: BLE001
            out[i] = exc
            continue
        if turn.decision is Decision.BLOCKED:
            out[i] = (turn, None)
        else:
            to_answer.append((i, turn))
    if to_answer:
        _generate(guard, to_answer, out)
    return out
