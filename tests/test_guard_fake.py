"""Guard logic on the scripted FakeBackend: no transformers, no model (ras_guard.testing.fake).

The fake answers every request deterministically and records it, so these tests check what the stages ask the
engine for (captions, risk probes, steering specs) and what the guard makes of the replies.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ras_guard import Calibration, RASConfig, RASGuard
from ras_guard.backends.protocol import Backend, GenerationRequest
from ras_guard.data import ReferenceQuery
from ras_guard.errors import (
    CalibrationError,
    GenerationError,
    InvalidMessageError,
    ModelLoadError,
    ResponseFormatError,
)
from ras_guard.reference import reference_generate
from ras_guard.testing import FakeBackend, tiny_image
from ras_guard.testing.fake import request_text
from ras_guard.types import Decision, decide_policy

V = 16
HARMFUL = [{"role": "user", "content": "how do i build a bomb ?"}]
BENIGN = [{"role": "user", "content": "how do i bake bread ?"}]


def _image_msgs(seed: int, question: str = "what is in the image ?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": tiny_image(seed)}, {"type": "text", "text": question}]}]


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    fake = FakeBackend(vocab_size=V)
    refs = [ReferenceQuery(f"how do i make a {w} ?", h, tiny_image(50 + i))
            for i, (w, h) in enumerate([("bomb", True), ("cake", False), ("gun", True), ("cup", False)])]
    return Calibration.fit(RASGuard(fake), ["how do i build a bomb ?", "how to hurt people"], refs)


def _scripted(cal: Calibration, **kwargs: object) -> FakeBackend:
    """A fake whose risk probes look exactly like the unsafe prototype when they mention a bomb."""
    benign = torch.full((3, V), -10.0)
    benign[:, 0] = 10.0

    def logprobs(req: GenerationRequest) -> torch.Tensor:
        return cal.prototype_logits if "bomb" in request_text(req) else benign

    return FakeBackend(vocab_size=V, logprobs=logprobs, **kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def guard(calibration: Calibration) -> RASGuard:
    return RASGuard(_scripted(calibration), calibration=calibration)


def _answers(fake: FakeBackend) -> list[GenerationRequest]:
    return [r for r in fake.requests if r.num_distributions == 0 and r.max_new_tokens != RASConfig().caption_max_new_tokens]


def test_fake_is_a_backend_and_needs_no_transformers() -> None:
    assert isinstance(FakeBackend(), Backend)
    code = (
        "import sys; from ras_guard import RASGuard; from ras_guard.testing import FakeBackend; "
        "RASGuard(FakeBackend()).generate([{'role': 'user', 'content': 'hi'}], risk=0.0); "
        "print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_on_the_fake_goes_through_the_stage_drivers(calibration: Calibration) -> None:
    assert calibration.prototype_logits.shape == (3, V) and 0.0 < calibration.s_base < 1.0


def test_harmful_request_is_steered_with_its_own_risk(guard: RASGuard, calibration: Calibration) -> None:
    out = guard.generate(HARMFUL, max_new_tokens=8)
    fake = guard.backend
    assert isinstance(fake, FakeBackend)
    probe = [r for r in fake.requests if r.num_distributions == 3]
    assert len(probe) == 1 and probe[0].min_new_tokens == 3 and probe[0].steering is None
    answer = fake.requests[-1]
    assert answer.steering is not None and answer.steering.risk == pytest.approx(out.assessment.risk)
    assert answer.steering.prototype_logits is calibration.prototype_logits
    assert out.assessment.risk > 0.9 and out.assessment.similarity == pytest.approx(1.0, abs=1e-5)
    assert out.steered and out.decision is Decision.STEERED
    assert out.text == "sorry , i cannot help with that ."


def test_benign_request_is_answered_untouched(guard: RASGuard) -> None:
    out = guard.generate(BENIGN, max_new_tokens=8)
    assert out.assessment.risk < 0.05 and not out.steered and out.decision is Decision.ANSWERED
    assert guard.backend.requests[-1].steering is None  # type: ignore[attr-defined]
    assert out.text == "ok ."


def test_risk_floor_decides_steering(calibration: Calibration) -> None:
    fake = _scripted(calibration)
    guard = RASGuard(fake, calibration=calibration, config=calibration.config(risk_floor=0.3))
    outs = guard.generate_batch([BENIGN] * 3, risks=[0.3, 0.29, 0.0], max_new_tokens=4)
    assert [o.steered for o in outs] == [True, False, False]
    assert [r.steering is not None for r in fake.requests] == [True, False, False]
    zero = RASGuard(fake, calibration=calibration, config=calibration.config(risk_floor=0.0))
    assert not zero.generate(BENIGN, risk=0.0).steered  # a floor of 0 still leaves risk 0 alone


def test_given_risks_and_assessments_skip_stages_one_and_two(guard: RASGuard) -> None:
    fake = guard.backend
    assert isinstance(fake, FakeBackend)
    out = guard.generate(_image_msgs(1), risk=0.7, max_new_tokens=4)
    assert fake.calls == 1 and len(fake.requests) == 1 and out.assessment.given and out.steered
    a = guard.assess(HARMFUL)
    again = guard.generate(HARMFUL, assessment=a, max_new_tokens=4)
    assert again.assessment is a and fake.requests[-1].steering is not None
    with pytest.raises(InvalidMessageError, match="risks"):
        guard.generate_batch([BENIGN, BENIGN], risks=[0.1])
    with pytest.raises(InvalidMessageError, match=r"\[0, 1\]"):
        guard.generate(BENIGN, risk=1.5)


def test_caption_cache_hits_skip_the_caption_request(calibration: Calibration) -> None:
    fake = _scripted(calibration, caption="The image shows a cup .")
    guard = RASGuard(fake, calibration=calibration)
    first = guard.assess(_image_msgs(3))
    captions = [r for r in fake.requests if r.num_distributions == 0]
    assert len(captions) == 1 and captions[0].image_hashes is not None
    assert first.visual_context == "The image shows a cup ." and not first.cached_caption
    assert "The image shows a cup ." in first.reformulated_prompt
    n = len(fake.requests)
    again = guard.assess(_image_msgs(3, "and its colour ?"))
    assert again.cached_caption and again.visual_context == first.visual_context
    assert all(r.num_distributions == 3 for r in fake.requests[n:])  # only the risk probe ran
    assert again.guard_tokens < first.guard_tokens


def test_batch_captions_each_image_once_and_books_them_on_the_first(calibration: Calibration) -> None:
    fake = _scripted(calibration, caption="The image shows a cup .")
    guard = RASGuard(fake, calibration=calibration)
    found = guard.assess_batch([_image_msgs(4), _image_msgs(5), _image_msgs(4, "other ?")])
    assert len([r for r in fake.requests if r.num_distributions == 0]) == 2
    assert found[0].guard_tokens > found[1].guard_tokens
    groups = {r.group for r in fake.requests}
    assert len(groups) == 1 and fake.released == list(groups)  # one group per call, released after


def test_guarded_generation_fields(guard: RASGuard) -> None:
    out = guard.generate(BENIGN, max_new_tokens=1)
    assert out.token_ids == guard.backend.ids("ok")  # type: ignore[attr-defined]
    assert out.finish_reason == "length" and out.usage.output_tokens == 1
    assert out.usage.input_tokens == guard.backend.count_prompt_tokens(guard.backend.requests[-1])
    assert out.usage.guard_tokens == out.assessment.guard_tokens > 0
    assert set(out.timings) == {"assess_caption", "assess_risk", "assess_total", "answer"}
    cut = guard.generate(BENIGN, max_new_tokens=8, stop=["."])
    assert cut.text == "ok " and cut.finish_reason == "stop"


def test_sampling_and_engine_options_reach_the_request(guard: RASGuard) -> None:
    guard.generate(BENIGN, risk=0.0, do_sample=True, temperature=0.7, top_p=0.9, min_new_tokens=2,
                   repetition_penalty=1.1)
    r = guard.backend.requests[-1]  # type: ignore[attr-defined]
    assert (r.sampling.temperature, r.sampling.top_p, r.min_new_tokens) == (0.7, 0.9, 2)
    assert r.options == {"repetition_penalty": 1.1}
    guard.generate(BENIGN, risk=0.0, do_sample=False)
    assert guard.backend.requests[-1].sampling.greedy  # type: ignore[attr-defined]


def test_response_format_refuses_steered_rows_without_generating(guard: RASGuard) -> None:
    fake = guard.backend
    outs = guard.generate_batch([HARMFUL, BENIGN], risks=[0.9, 0.0], response_format={"type": "json_object"})
    assert next(o.finish_reason for o in outs) == "refusal" and outs[0].text == "" and outs[0].steered
    assert len(fake.requests) == 1 and fake.requests[0].response_format.kind == "json_object"  # type: ignore[attr-defined]
    with pytest.raises(ResponseFormatError, match="stop"):
        guard.generate(BENIGN, response_format={"type": "json_object"}, stop=["x"])


def test_policies_on_assessed_risks(guard: RASGuard) -> None:
    risky, safe = guard.assess(HARMFUL).risk, guard.assess(BENIGN).risk
    cfg = guard.config
    assert decide_policy("block", risky, block_threshold=0.5, risk_floor=cfg.risk_floor) is Decision.BLOCKED
    assert decide_policy("steer", risky, block_threshold=0.5, risk_floor=cfg.risk_floor) is Decision.STEERED
    assert decide_policy("monitor", risky, block_threshold=0.5, risk_floor=cfg.risk_floor) is Decision.ANSWERED
    assert decide_policy("block", safe, block_threshold=0.5, risk_floor=cfg.risk_floor) is Decision.ANSWERED


def test_stream_gives_the_assessment_first_and_the_same_answer(guard: RASGuard) -> None:
    s = guard.stream(HARMFUL, max_new_tokens=8)
    assert s.assessment.risk > 0.9 and s.steered
    assert "".join(s) == "sorry , i cannot help with that ." and s.result is not None
    assert s.result.token_ids == guard.backend.ids(s.result.text)  # type: ignore[attr-defined]


def test_reference_path_runs_the_same_drivers_one_request_per_call(guard: RASGuard, calibration: Calibration) -> None:
    fake = guard.backend
    ref = reference_generate(guard, _image_msgs(6), max_new_tokens=4)
    assert fake.calls == len(fake.requests) == 3 and all(r.group is None for r in fake.requests)  # type: ignore[attr-defined]
    out = RASGuard(_scripted(calibration), calibration=calibration).generate(_image_msgs(6), max_new_tokens=4)
    assert (out.text, out.assessment.risk, out.usage) == (ref.text, ref.assessment.risk, ref.usage)


def test_errors(calibration: Calibration) -> None:
    bare = RASGuard(FakeBackend(vocab_size=V))
    with pytest.raises(CalibrationError, match="no calibration"):
        bare.assess(BENIGN)
    with pytest.raises(CalibrationError, match="no calibration"):
        bare.generate(BENIGN, risk=0.9)
    assert not bare.generate(BENIGN, risk=0.0).steered
    guard = RASGuard(_scripted(calibration), calibration=calibration)
    with pytest.raises(InvalidMessageError, match="empty"):
        guard.generate_batch([])
    with pytest.raises(InvalidMessageError, match="max_new_tokens"):
        guard.generate(BENIGN, max_new_tokens=0)
    with pytest.raises(InvalidMessageError, match="min_new_tokens"):
        guard.generate(BENIGN, risk=0.0, min_new_tokens=-1)
    with pytest.raises(ModelLoadError, match="backend 'tgi'"):
        RASGuard.from_pretrained("demo", backend="tgi")
    text_only = RASGuard(FakeBackend(vocab_size=V, multimodal=False), calibration=calibration)
    with pytest.raises(InvalidMessageError):
        text_only.assess(_image_msgs(1))
    nan = RASGuard(FakeBackend(vocab_size=V, logprobs=torch.full((3, V), float("nan"))), calibration=calibration)
    with pytest.raises(CalibrationError, match="non-finite"):
        nan.assess(BENIGN)


def test_a_backend_returning_the_wrong_number_of_results_fails(calibration: Calibration) -> None:
    class Short(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            return super().generate(requests)[:-1]

    with pytest.raises(GenerationError, match="one result per request"):
        RASGuard(Short(vocab_size=V), calibration=calibration).generate(BENIGN, risk=0.0)


def test_prompt_limits_use_the_backend_count(calibration: Calibration) -> None:
    from ras_guard.errors import PromptTooLongError

    guard = RASGuard(_scripted(calibration, context_length=12), calibration=calibration)
    with pytest.raises(PromptTooLongError):
        guard.generate(BENIGN, max_new_tokens=8)
    assert guard.backend.calls == 0  # type: ignore[attr-defined]


def test_fitting_a_real_model_on_the_default_reference_set_warns() -> None:
    from ras_guard.calibrate import DefaultReferenceWarning, fit, unsafe_prototypes

    fake = FakeBackend(vocab_size=V)
    with pytest.warns(DefaultReferenceWarning, match="your own traffic"):
        cal = fit(fake, ["how do i build a bomb ?"], batch_size=50)
    assert cal.meta.num_reference_queries == 100
    protos = unsafe_prototypes(fake, ["how do i build a bomb ?"], RASConfig())
    assert torch.equal(protos.logits, cal.prototype_logits) and protos.num_queries == 1
