"""The three RAS stages as plans over the backend protocol, and the drivers that run them.

A plan is a generator: it yields a ``list[GenerationRequest]`` (one engine call), is sent back the
``list[GenerationResult]`` of those requests, in order, and returns its value. :func:`drive` runs a plan on a
:class:`~ras_guard.backends.protocol.Backend`, :func:`adrive` on an
:class:`~ras_guard.backends.protocol.AsyncBackend`; the stages never see an engine.

- stage 1, :func:`visual_contexts` (:mod:`ras_guard.reformulate`): one caption request per new image (caption
  cache first);
- stage 2, :func:`assess` (:mod:`ras_guard.risk`): the reformulated risk probes, similarities, then
  :class:`~ras_guard.types.RiskAssessment` records;
- stage 3, :func:`answer` (:mod:`ras_guard.steering`): the original queries with a
  :class:`~ras_guard.steering.SteeringSpec` each, then :class:`~ras_guard.types.GuardedGeneration` records.

Example:
    >>> from ras_guard.testing import FakeBackend
    >>> from ras_guard.config import RASConfig
    >>> from ras_guard.messages import normalize_messages
    >>> convs = [normalize_messages([{"role": "user", "content": "hi"}])]
    >>> ctx = drive(visual_contexts(convs, RASConfig(), {}), FakeBackend())
    >>> ctx.texts, ctx.tokens
    ([''], 0)
"""

from __future__ import annotations

from .answer import AnswerOptions, answer, answer_requests
from .drive import Plan, adrive, drive, release
from .scoring import StageModel, assess, given_assessments, score
from .visual import Contexts, visual_contexts

__all__ = [
    "AnswerOptions",
    "Contexts",
    "Plan",
    "StageModel",
    "adrive",
    "answer",
    "answer_requests",
    "assess",
    "drive",
    "given_assessments",
    "release",
    "score",
    "visual_contexts",
]
