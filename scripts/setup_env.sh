#!/usr/bin/env bash
# Creates the project venv and installs tether into it. Idempotent (make re-runs it only when
# pyproject.toml changes). Torch: keeps a torch the base Python already has (GPU users: the venv then
# sees system site-packages); otherwise pins the CPU wheel on machines without an NVIDIA GPU.
set -euo pipefail
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
TORCH_CPU_VERSION="2.13.0"

if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: using the torch already installed in $PY ($("$PY" -c 'import torch; print(torch.__version__)'))"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
else
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "setup: NVIDIA GPU found; installing a CUDA build of torch"
      "$VENV/bin/pip" install -q "torch>=2.4"
    else
      echo "setup: no GPU; installing the CPU build torch==$TORCH_CPU_VERSION"
      "$VENV/bin/pip" install -q "torch==$TORCH_CPU_VERSION"
    fi
  fi
fi
"$VENV/bin/pip" install -q -e ".[dev,serve]"
echo "setup: done ($VENV)"
