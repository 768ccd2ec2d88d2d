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
# FigStep images (the safebench suites) are drawn with FreeMonoBold (GNU FreeFont, GPL with the font exception; not
# bundled). Install it where apt is available and we may use it; elsewhere, say how (the suites raise a clear error).
if ! [ -f /usr/share/fonts/truetype/freefont/FreeMonoBold.ttf ] && [ -z "${RAS_GUARD_FIGSTEP_FONT:-}" ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    { $SUDO apt-get update -q && $SUDO apt-get install -y -q fonts-freefont-ttf; } >/dev/null 2>&1 \
      || echo "note: could not apt-get install fonts-freefont-ttf; FigStep suites need it (or RAS_GUARD_FIGSTEP_FONT)" >&2
  else
    echo "note: install GNU FreeFont (FreeMonoBold.ttf) or set RAS_GUARD_FIGSTEP_FONT for the FigStep suites" >&2
  fi
fi
