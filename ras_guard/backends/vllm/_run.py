"""Running rows on vLLM while watching their text: the sync engine's mailbox, and stop-string aborts.

``vllm.LLM.generate`` runs every row to its end. Rows with stop strings are instead added to ``llm.llm_engine``
one by one and stepped from the caller's thread: after each step the row's text (ras-guard's own decoding, see
:mod:`._text`) is checked, and a row whose text holds a stop string is aborted there. A per-engine
:class:`Mailbox` hands every open request its outputs, so streams and watched batches open at the same time on
one engine share its steps. On ``AsyncLLM`` (:func:`arun_row`) each row is one engine request, aborted the same way.

Example:
    >>> outs = run_watched(engine, prompts, params, stops=[("\\n",)] * len(params))  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ...errors import GenerationError
from ._text import cut_at_stop

__all__ = ["Mailbox", "arun_row", "run_watched"]

_MAILBOXES: weakref.WeakKeyDictionary[Any, Mailbox] = weakref.WeakKeyDictionary()

Prompt = tuple[dict[str, Any], "dict[str, Any] | None"]


class Mailbox:
    """Outputs of a sync engine's steps, sorted by request id, for the requests stepped from Python."""

    def __init__(self, llm_engine: Any) -> None:
        self.llm_engine = llm_engine
        self.boxes: dict[str, deque[Any]] = {}

    @classmethod
    def of(cls, llm_engine: Any) -> Mailbox:
        """The one mailbox of ``llm_engine``."""
        box = _MAILBOXES.get(llm_engine)
        if box is None:
            box = _MAILBOXES[llm_engine] = cls(llm_engine)
        return box

    def open(self, prompt: Prompt, params: Any) -> str:
        """Add a request (outputs cumulative) and return its id."""
        from vllm.sampling_params import RequestOutputKind

        params = params.clone()
        params.output_kind = RequestOutputKind.CUMULATIVE
        rid = f"ras-{uuid.uuid4().hex}"
        self.boxes[rid] = deque()
        self.llm_engine.add_request(rid, prompt[0], params, tokenization_kwargs=prompt[1])
        return rid

    def next(self, request_id: str) -> Any:
        """The next output of ``request_id``, stepping the engine until there is one."""
        queue = self.boxes[request_id]
        while not queue:
            if not self.llm_engine.has_unfinished_requests():
                raise GenerationError(f"the vLLM engine dropped request {request_id}.")
            for out in self.llm_engine.step():
                if out.request_id in self.boxes:
                    self.boxes[out.request_id].append(out)
        return queue.popleft()

    def close(self, request_id: str, finished: bool) -> None:
        """Forget ``request_id``, aborting it in the engine unless it finished."""
        if self.boxes.pop(request_id, None) is not None and not finished:
            self.llm_engine.abort_request([request_id])


def _hit(text_of: Callable[[list[int]], str], out: Any, stop: Sequence[str]) -> bool:
    return bool(stop) and cut_at_stop(text_of(list(out.outputs[0].token_ids)), stop)[1]


def run_watched(
    llm_engine: Any,
    text_of: Callable[[list[int]], str],
    prompts: Sequence[Prompt],
    params: Sequence[Any],
    stops: Sequence[Sequence[str]],
) -> list[Any]:
    """The last ``RequestOutput`` of every row, each row aborted at its first stop string.

    Args:
        llm_engine: ``vllm.LLM(...).llm_engine``.
        text_of: A row's token ids to its text (cut at EOS).
        prompts: The vLLM prompt and tokenization kwargs of each row.
        params: Each row's ``SamplingParams``.
        stops: Each row's stop strings.
    """
    mail = Mailbox.of(llm_engine)
    ids = [mail.open(p, sp) for p, sp in zip(prompts, params)]
    outs: list[Any] = [None] * len(ids)
    live = set(range(len(ids)))
    try:
        while live:
            for i in sorted(live):
                out = mail.next(ids[i])
                while mail.boxes[ids[i]]:  # several steps' outputs: the newest is cumulative
                    out = mail.boxes[ids[i]].popleft()
                outs[i] = out
                if out.finished or _hit(text_of, out, stops[i]):
                    mail.close(ids[i], out.finished)
                    live.discard(i)
    finally:
        for i in live:
            mail.close(ids[i], False)
    return outs


async def arun_row(
    llm: Any, text_of: Callable[[list[int]], str], prompt: Prompt, params: Any, stop: Sequence[str] = ()
) -> Any:
    """The last ``RequestOutput`` of one row on ``AsyncLLM``, aborted at its first stop string."""
    from vllm.sampling_params import RequestOutputKind

    params = params.clone()
    params.output_kind = RequestOutputKind.CUMULATIVE if stop else RequestOutputKind.FINAL_ONLY
    rid = f"ras-{uuid.uuid4().hex}"
    last, finished = None, False
    outs = llm.generate(prompt[0], params, rid, tokenization_kwargs=prompt[1])
    try:
        async for out in outs:
            last, finished = out, out.finished
            if finished or _hit(text_of, out, stop):
                break
    finally:
        await outs.aclose()
        if not finished:
            await llm.abort(rid)
    if last is None:
        raise GenerationError(f"the vLLM engine returned nothing for request {rid}.")
    return last
