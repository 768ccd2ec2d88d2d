#!/usr/bin/env bash
# Installs ras-guard, its LangChain integration and the test tools into the current Python environment.
# torch: a CPU build (2.13.0) unless a torch is already installed (install your CUDA build first on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q uv
# uv instead of pip only for the certifi override (see scripts/overrides.txt); torch already satisfies torch>=2.4.
"$PY" -m uv pip install -q --python "$PY" --override scripts/overrides.txt \
  -e ".[test,plots]" -e "integrations/langchain[test]"
