#!/usr/bin/env bash
# The paper's vision-encoder ablation (section 3.1, Figure 1): the same language model trained with LoRA on the
# same data for the same number of steps, once per vision encoder, then every run evaluated on the same tasks;
# one table and one plot compare the encoders.
#
# Run as: PRESET=tiny OUTPUT_ROOT=outputs/ablation_tiny bash scripts/ablate_encoders.sh   (tiny, CPU, minutes)
#         OUTPUT_ROOT=outputs/ablation DATA_RECIPE=data_recipes/my_corpus.yaml MAX_STEPS=5000 \
#           EVAL_DATA_DIR=/data/benchmarks bash scripts/ablate_encoders.sh                (GPUs)
#
# Each encoder's run uses scripts/stage0_pretrain.sh (the stage that assembles a model from a language model and
# a vision tower) with --lora_enable, then `python -m llava_medgpt.eval`; the comparison is written by
# `python -m llava_medgpt.eval.ablation` to OUTPUT_ROOT/ablation.{md,json,png}. Variables (all optional):
#
#   ENCODERS            names in llava_medgpt.model.backbones.VISION_ENCODERS (default: Figure 1's four:
#                       clip siglip medsiglip biomedclip; also clip-224)
#   VISION_TOWER_<NAME> a local folder for one encoder instead of its hub id (NAME upper-cased, '-' -> '_'),
#                       e.g. VISION_TOWER_BIOMEDCLIP=/models/biomedclip-vit (BiomedCLIP must be converted first:
#                       python -m llava_medgpt.model.convert_biomedclip)
#   MODEL_NAME_OR_PATH  the language model shared by every run (default openai/gpt-oss-20b)
#   DATA_RECIPE         the training mixture shared by every run (the paper used the BiomedGPT corpus)
#   MAX_STEPS           optimizer steps per run, the same for every encoder (default 1000; tiny: 4)
#   TUNABLE_PARTS       default mm_mlp_adapter,mm_language_model: projector + LoRA adapters, encoder frozen
#                       (add mm_vision_tower to fine-tune the encoders too)
#   LORA_R, LORA_ALPHA  LoRA rank and scale (default 128 / 256, LLaVA-1.5's LoRA recipe; tiny: 8 / 16)
#   EVAL_TASKS          default omnimedvqa,table4 (tiny: omnimedvqa,slake on the repository's release-layout fixtures)
#   EVAL_DATA_DIR       benchmark releases (default ./data/benchmarks)
#   PRESET, OUTPUT_ROOT, NPROC_PER_NODE, DEEPSPEED_CONFIG, PYTHON, ...: as for the stage scripts
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
: "${OUTPUT_ROOT:=outputs/ablation}"
: "${PRESET:=}"
: "${ENCODERS:=clip siglip medsiglip biomedclip}"
: "${TUNABLE_PARTS:=mm_mlp_adapter,mm_language_model}"
# LLaVA-1.5's LoRA recipe: 2e-4 for the adapters, 2e-5 for the projector.
: "${LEARNING_RATE:=2e-4}"
: "${MM_PROJECTOR_LR:=2e-5}"
: "${MM_VISION_TOWER_LR:=2e-6}"
if [[ "$PRESET" == tiny ]]; then
  : "${MAX_STEPS:=4}"
  # One CPU process per run: the comparison needs no data parallelism, and each extra rank costs start-up time.
  : "${NPROC_PER_NODE:=1}"
  export NPROC_PER_NODE
  : "${DATA_RECIPE:=$REPO_DIR/data_recipes/demo_stage2.yaml}"
  : "${EVAL_TASKS:=omnimedvqa,slake}"
  : "${EVAL_DATA_DIR:=$REPO_DIR/tests/fixtures/eval}"
  : "${EVAL_ARGS:=--max-new-tokens 8}"
  : "${LORA_R:=8}"  # the tiny LM is 64 wide
  : "${LORA_ALPHA:=16}"
else
  : "${MAX_STEPS:=1000}"
  : "${DATA_RECIPE:=$REPO_DIR/data_recipes/stage2_sft.yaml}"
  : "${EVAL_TASKS:=omnimedvqa,table4}"
  : "${EVAL_DATA_DIR:=./data/benchmarks}"
  : "${EVAL_ARGS:=}"
  : "${LORA_R:=128}"
  : "${LORA_ALPHA:=256}"
fi
mkdir -p "$OUTPUT_ROOT"
OUTPUT_ROOT="$(cd "$OUTPUT_ROOT" && pwd)"
export OUTPUT_ROOT

_log() { echo "[ablate_encoders] $*" >&2; }

# The tower of one encoder: VISION_TOWER_<NAME>, else (tiny) a tiny random tower of its geometry, else its hub id.
tower_for() {
  local name="$1" variable
  variable="VISION_TOWER_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')"
  if [[ -n "${!variable:-}" ]]; then
    echo "${!variable}"
  elif [[ "$PRESET" == tiny ]]; then
    local folder="$OUTPUT_ROOT/towers/$name"
    if [[ ! -f "$folder/config.json" ]]; then
      # Library start-up messages (e.g. DeepSpeed's accelerator notice) print on stdout: keep them off the result.
      "$PYTHON" -c 'import sys; from llava_medgpt.model.tiny import create_tiny_vision_tower as c; c(sys.argv[1], sys.argv[2])' \
        "$folder" "$name" >&2
    fi
    echo "$folder"
  else
    "$PYTHON" - "$name" <<'EOF' | tail -n 1
import sys
from llava_medgpt.model.backbones import VISION_ENCODERS
encoder = VISION_ENCODERS.get(sys.argv[1])
if encoder is None:
    sys.exit(f"unknown encoder {sys.argv[1]!r}; known: {', '.join(sorted(VISION_ENCODERS))}")
if encoder.needs_conversion:
    sys.exit(f"{encoder.name}: {encoder.hub_id} is not a transformers checkpoint; convert it with "
             f"python -m {encoder.needs_conversion} and set VISION_TOWER_{encoder.name.upper()}=FOLDER")
print(encoder.hub_id)
EOF
  fi
}

start=$SECONDS
runs=()
for encoder in $ENCODERS; do
  run="$OUTPUT_ROOT/$encoder"
  tower="$(tower_for "$encoder")"
  mkdir -p "$run"
  echo "$tower" > "$run/vision_tower.txt"
  _log "==> $encoder: training from $tower ($MAX_STEPS steps, LoRA r=$LORA_R, parts $TUNABLE_PARTS)"
  # The same language model, data, steps, seed and hyperparameters for every encoder; only the tower differs.
  VISION_TOWER="$tower" OUTPUT_DIR="$run/train" DATA_RECIPE="$DATA_RECIPE" MAX_STEPS="$MAX_STEPS" \
    MM_TUNABLE_PARTS="$TUNABLE_PARTS" LEARNING_RATE="$LEARNING_RATE" MM_PROJECTOR_LR="$MM_PROJECTOR_LR" \
    MM_VISION_TOWER_LR="$MM_VISION_TOWER_LR" PREV_STAGE_CHECKPOINT="" \
    bash "$SCRIPT_DIR/stage0_pretrain.sh" --lora_enable True --lora_r "$LORA_R" --lora_alpha "$LORA_ALPHA" "$@"
  _log "==> $encoder: evaluating on $EVAL_TASKS"
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
  "$PYTHON" -m llava_medgpt.eval --model "$run/train" --tasks "$EVAL_TASKS" --data-dir "$EVAL_DATA_DIR" \
    --output "$run/eval" --label "$encoder" --no-progress $EVAL_ARGS
  runs+=(--run "$encoder=$run")
done

"$PYTHON" -m llava_medgpt.eval.ablation "${runs[@]}" --output "$OUTPUT_ROOT"
_log "finished in $((SECONDS - start)) s: $OUTPUT_ROOT/ablation.md, ablation.png, ablation.json"
