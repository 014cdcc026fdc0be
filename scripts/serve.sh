#!/usr/bin/env bash
# Serve a checkpoint with vLLM's OpenAI-compatible server on one node, tensor parallel over its GPUs.
#
# Run as:  bash   scripts/serve.sh CKPT [more vLLM server flags]      (local; CPU build when there is no GPU)
#          sbatch scripts/serve.sh CKPT [more vLLM server flags]      (SLURM: one node, all its GPUs)
# CKPT is a MedGPT-oss stage output / checkpoint folder (served through our plugin, vllm_plugin/) or any model vLLM
# supports (the baselines: docs/serving.md). The environment is .venv-vllm (bash scripts/setup.sh --vllm).
# Environment (all optional):
#   HOST, PORT            listen address (default 127.0.0.1:8000; 0.0.0.0 to serve other nodes)
#   TP                    tensor-parallel size (default: the GPUs visible on this node, 1 on CPU)
#   SERVED_MODEL_NAME     the name clients send as "model" (default: CKPT as given)
#   MAX_MODEL_LEN         context length to serve (default: the model's)
#   DTYPE                 default auto (bf16 weights on GPU); float32 on CPU
#   VLLM_VENV             default <repo>/.venv-vllm
#   VLLM_CPU_KVCACHE_SPACE  CPU only: GiB of KV cache (default 1)
# Evaluate against it: python -m llava_medgpt.eval --backend openai --base-url http://HOST:PORT/v1 --model CKPT ...
#SBATCH --job-name=medgpt-serve
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

CKPT=${1:?usage: serve.sh CKPT [vLLM server flags]}
shift
# Under sbatch this file runs from SLURM's spool folder: find the checkout from the submit directory.
if [[ -n "${SLURM_JOB_ID:-}" && -n "${SLURM_SUBMIT_DIR:-}" ]]; then
  REPO_DIR=$(cd "$SLURM_SUBMIT_DIR" && git rev-parse --show-toplevel 2>/dev/null || pwd)
else
  REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fi
VLLM_VENV=${VLLM_VENV:-$REPO_DIR/.venv-vllm}
PYTHON="$VLLM_VENV/bin/python"
[[ -x $PYTHON ]] || { echo "serve.sh: no vLLM environment at $VLLM_VENV (run: bash scripts/setup.sh --vllm)" >&2; exit 2; }

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  : "${TP:=$(nvidia-smi -L | wc -l)}"
  : "${DTYPE:=auto}"
else
  : "${TP:=1}"
  : "${DTYPE:=float32}"
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
fi

args=(--model "$CKPT" --host "$HOST" --port "$PORT" --tensor-parallel-size "$TP" --dtype "$DTYPE"
      --served-model-name "${SERVED_MODEL_NAME:-$CKPT}" --generation-config auto)
[[ -n "${MAX_MODEL_LEN:-}" ]] && args+=(--max-model-len "$MAX_MODEL_LEN")
if [[ -f "$CKPT/config.json" ]] && grep -q '"model_type": "llava_medgpt"' "$CKPT/config.json"; then
  # MedGPT-oss: the checkpoint's chat_template.jinja (harmony) renders message content as strings whose "<image>"
  # markers vLLM keeps in place; image parts without a marker in the text get one in front ("<image>\n").
  [[ -f "$CKPT/chat_template.jinja" ]] && args+=(--chat-template "$CKPT/chat_template.jinja")
  args+=(--chat-template-content-format string)
fi

echo "[serve] vLLM on $HOST:$PORT, tensor parallel $TP, dtype $DTYPE: $CKPT" >&2
# `python -m` rather than the `vllm` console script, which the CPU build's distribution name breaks. exec: the
# server is this process, so a scheduler's (or a test's) signal reaches it directly.
exec "$PYTHON" -m vllm.entrypoints.openai.api_server "${args[@]}" "$@"
