#!/usr/bin/env bash
# Set up a fresh virtual environment for llava_medgpt in .venv (or $VENV).
#
# Run as: bash scripts/setup.sh            # the package, for training and evaluation
#         bash scripts/setup.sh --tests    # + test extras and, as root on Debian, slurm-wlm/munge for the SLURM test,
#                                          #   and the vLLM environment the serving tests use (SKIP_VLLM=1: not it)
#         bash scripts/setup.sh --vllm     # only the vLLM serving environment, .venv-vllm (scripts/setup_vllm.sh);
#                                          #   CUDA build when a GPU is visible, else CPU; --cpu / --cuda force one
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
WITH_TESTS=0
WITH_VLLM=0
VLLM_ARGS=()
for arg in "$@"; do
  case $arg in
    --tests) WITH_TESTS=1 ;;
    --vllm) WITH_VLLM=1 ;;
    --cpu|--cuda) VLLM_ARGS+=("$arg") ;;
    *) echo "setup.sh: unknown argument $arg (use --tests, --vllm [--cpu|--cuda])" >&2; exit 2 ;;
  esac
done
if [[ $WITH_VLLM == 1 && $WITH_TESTS == 0 ]]; then
  exec bash scripts/setup_vllm.sh "${VLLM_ARGS[@]}"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch requirement may resolve to a multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}"
if [[ $WITH_TESTS == 1 ]]; then
  "$VENV/bin/python" -m pip install --quiet -e ".[test,curate]"
  # lmms-eval's own requirements pull torch 2.14.1 + CUDA wheels; the adapter test needs only its model API,
  # which imports with these three packages.
  "$VENV/bin/python" -m pip install --quiet --no-deps "lmms-eval==0.7.3"
  "$VENV/bin/python" -m pip install --quiet "pytz>=2024.1" "loguru>=0.7" "evaluate>=0.4"
  # The SLURM integration test runs a real one-machine cluster (slurmctld + two slurmd).
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && ! command -v slurmctld >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  # The web demo's browser test drives Debian's chromium through chromedriver (selenium, from the test extra).
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
else
  "$VENV/bin/python" -m pip install --quiet -e .
fi
# DeepSpeed JIT-compiles a small communication op on its first CPU run (minutes); build it once here.
if ! command -v nvidia-smi >/dev/null; then
  DS_ACCELERATOR=cpu "$VENV/bin/python" -c \
    "from deepspeed.accelerator import get_accelerator as g; g().create_op_builder('ShareMemCommBuilder').load()" \
    >/dev/null 2>&1 || echo "warning: could not prebuild DeepSpeed's CPU communication op; the first run builds it"
fi
# vLLM pins another transformers than ours, so it lives in its own venv; the vLLM tests skip without it.
if [[ $WITH_TESTS == 1 && "${SKIP_VLLM:-0}" != 1 ]]; then
  bash scripts/setup_vllm.sh "${VLLM_ARGS[@]}"
fi
echo "llava_medgpt installed in $VENV (activate with: . $VENV/bin/activate)"
