"""The steering processors of both vLLM runner interfaces, against real vLLM classes and fake batches (no engine).

The V2 runner cannot run on CPU (it needs Triton with a CPU backend), so V2 is tested here against a fake
``LogitsContext``; V1 is also tested in a real engine (test_vllm_engine.py, test_vllm_server.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")

import torch  # noqa: E402
from vllm import SamplingParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality  # noqa: E402
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState  # noqa: E402

from ras_guard import Calibration  # noqa: E402
from ras_guard.backends.vllm._steer import CALIBRATION_ENV, PrototypeTable, parse_request  # noqa: E402
from ras_guard.backends.vllm.v1 import RASSteeringV1  # noqa: E402
from ras_guard.backends.vllm.v2 import RASSteeringV2  # noqa: E402
from ras_guard.errors import CalibrationError, CalibrationMismatchError, SteeringArgumentError  # noqa: E402


@pytest.fixture(scope="module")
def cal_dir(vllm_model):
    return vllm_model("llama")[1]


def _config(cal_dir, model_config=None):
    return SimpleNamespace(
        additional_config={"ras_guard_calibration": str(cal_dir)},
        model_config=model_config,
        speculative_config=None,
    )


def _params(**extra):
    return SamplingParams(max_tokens=8, extra_args=extra or None)


@pytest.mark.parametrize(
    "extra",
    [
        {"ras_risk": 2.0},
        {"ras_risk": "abc"},
        {"ras_risk": True},
        {"ras_risk": float("nan")},
        {"ras_risk": -0.1},
        {"ras_risk": 0.5, "ras_risk_floor": 1.5},
        {"ras_risk_floor": 0.1},
        {"ras_risk": 0.5, "ras_typo": 1},
    ],
)
def test_validate_params_refuses_bad_arguments(extra):
    for cls in (RASSteeringV1, RASSteeringV2):
        with pytest.raises(SteeringArgumentError, match="ras_"):
            cls.validate_params(_params(**extra))


def test_validate_params_accepts_good_arguments():
    for extra in (
        {},
        {"ras_risk": 0},
        {"ras_risk": 1},
        {"ras_risk": 0.3, "ras_risk_floor": 0.2},
        {"other": "x"},
    ):
        RASSteeringV1.validate_params(_params(**extra))
        RASSteeringV2.validate_params(_params(**extra))
    assert parse_request({"ras_risk": 0.04}).steered is False  # under the default floor 0.05
    assert parse_request({"ras_risk": 0.0, "ras_risk_floor": 0.0}).steered is False


def test_no_calibration_refuses_to_start(monkeypatch):
    monkeypatch.delenv(CALIBRATION_ENV, raising=False)
    with pytest.raises(CalibrationError, match="RAS_GUARD_CALIBRATION"):
        RASSteeringV1(SimpleNamespace(additional_config={}, model_config=None), torch.device("cpu"), False)


def test_calibration_of_another_checkpoint_refuses_to_start(cal_dir, vllm_model, tmp_path):
    from ras_guard.testing.vllm import build_vllm_tiny_model

    other = build_vllm_tiny_model("llama", tmp_path / "other", seed=1)
    vocab = Calibration.load(cal_dir).prototype_logits.shape[1]
    mc = SimpleNamespace(model=str(other), get_vocab_size=lambda: vocab, hf_text_config=SimpleNamespace())
    with pytest.raises(CalibrationMismatchError, match="lm_head_sha256"):
        RASSteeringV1(_config(cal_dir, mc), torch.device("cpu"), False)
    mc.model = str(vllm_model("llama")[0])
    RASSteeringV1(_config(cal_dir, mc), torch.device("cpu"), False)  # its own checkpoint loads


def test_softcap_interpolates_uncapped_logits():
    proto = torch.randn(3, 6) * 40
    table = PrototypeTable(proto, softcap=30.0)
    raw = torch.randn(2, 6) * 40
    capped = 30.0 * torch.tanh(raw / 30.0)
    out = table.mix(capped, torch.tensor([0, 2]), torch.tensor([1.0, 0.5]))
    assert torch.allclose(out[0], 30.0 * torch.tanh(proto[0] / 30.0), atol=1e-4)
    assert torch.allclose(out[1], 30.0 * torch.tanh((0.5 * raw[1] + 0.5 * proto[2]) / 30.0), atol=1e-3)


def _v2(cal_dir, slots=8, prompt_lens=(5, 7, 3, 4, 6, 2, 2, 2)):
    prompt = np.array(prompt_lens, dtype=np.int32)
    states = LogitsProcRequestState(
        device=torch.device("cpu"),
        max_num_reqs=slots,
        vocab_size=0,
        all_token_ids=None,
        prompt_len=SimpleNamespace(np=prompt, gpu=torch.from_numpy(prompt)),
        prefill_len=None,
        total_len=None,
    )
    return RASSteeringV2(_config(cal_dir), states), prompt


def _ctx(slots, pos, prompt):
    slots = np.asarray(slots)
    return LogitsContext(
        expanded_idx_mapping=torch.tensor(slots),
        idx_mapping=torch.tensor(slots),
        idx_mapping_np=slots,
        expanded_local_pos=torch.zeros(len(slots), dtype=torch.long),
        input_ids=torch.zeros(len(slots)),
        pos=torch.tensor(pos),
        seq_lens_upper_bound_np=np.asarray(pos) + 1,
    )


def test_v2_steers_only_its_rows_within_n_steps(cal_dir):
    proc, prompt = _v2(cal_dir)
    P = proc.table.logits
    assert proc.add_request(0, _params(ras_risk=1.0)) is True
    assert proc.add_request(1, _params(ras_risk=0.01)) is False  # under the floor
    assert proc.add_request(2, _params()) is False
    assert proc.add_request(3, _params(ras_risk=0.5)) is True
    proc.apply_staged_writes()
    slots = [2, 0, 1, 3]
    pos = [prompt[2] - 1, prompt[0] - 1, prompt[1] + 4, prompt[3]]  # steps 0, 0, 5, 1
    logits = torch.randn(4, P.shape[1])
    before = logits.clone()
    out = proc.apply(logits, _ctx(slots, pos, prompt))
    assert torch.equal(out[0], before[0]) and torch.equal(out[2], before[2])  # bit-identical
    assert torch.allclose(out[1], P[0])
    assert torch.allclose(out[3], 0.5 * before[3] + 0.5 * P[1])
    later = torch.randn(2, P.shape[1])
    step_n = [prompt[0] - 1 + P.shape[0], prompt[3] + 5]
    assert torch.equal(proc.apply(later.clone(), _ctx([0, 3], step_n, prompt)), later)
    assert not proc._active.any()  # both retired on the host: later batches cost nothing
    proc.add_request(0, _params())  # a recycled slot forgets its previous occupant
    proc.apply_staged_writes()
    fresh = torch.randn(1, P.shape[1])
    assert proc.apply(fresh, _ctx([0], [prompt[0] - 1], prompt)) is fresh


def test_v1_tracks_added_moved_swapped_removed_rows(cal_dir):
    proc = RASSteeringV1(_config(cal_dir), torch.device("cpu"), False)
    P, n = proc.table.logits, proc.table.num_steps
    outs = {i: [] for i in range(4)}
    added = [
        (0, _params(ras_risk=1.0), [1], outs[0]),
        (1, _params(), [1], outs[1]),
        (2, _params(ras_risk=0.02), [1], outs[2]),
        (3, _params(ras_risk=0.5), [1], outs[3]),
    ]
    proc.update_state(BatchUpdate(batch_size=4, removed=[], added=added, moved=[]))
    logits = torch.randn(4, P.shape[1])
    before = logits.clone()
    out = proc.apply(logits)
    assert torch.allclose(out[0], P[0]) and torch.allclose(out[3], 0.5 * before[3] + 0.5 * P[0])
    assert torch.equal(out[1], before[1]) and torch.equal(out[2], before[2])
    for o in outs.values():
        o.append(7)
    proc.update_state(
        BatchUpdate(
            batch_size=4,
            removed=[1],
            added=[],
            moved=[(0, 2, MoveDirectionality.SWAP), (3, 1, MoveDirectionality.UNIDIRECTIONAL)],
        )
    )
    logits = torch.randn(4, P.shape[1])
    before = logits.clone()
    out = proc.apply(logits)
    assert torch.allclose(out[2], P[1]) and torch.allclose(out[1], 0.5 * before[1] + 0.5 * P[1])
    assert torch.equal(out[0], before[0]) and torch.equal(out[3], before[3])
    for o in outs.values():
        o.extend([7] * n)
    logits = torch.randn(4, P.shape[1])
    assert torch.equal(proc.apply(logits.clone()), logits)  # past step N: untouched
    assert not proc._rows
