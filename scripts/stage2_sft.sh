#!/usr/bin/env bash
# Stage 2 - instruction tuning (paper 3.2): medical VQA, text-only instructions and reasoning traces; all
# parameters train. Starts from stage 1's output folder (which carries the YaRN text config).
#
# Run as: sbatch scripts/stage2_sft.sh
#         bash scripts/stage2_sft.sh
#         PRESET=tiny OUTPUT_ROOT=/tmp/x bash scripts/stage2_sft.sh
# Every variable below can be set in the environment instead; extra arguments go to `python -m llava_medgpt.train`.
#
#SBATCH --job-name=medgpt-stage2
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=72:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -euo pipefail
STAGE=2
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -f "$SCRIPT_DIR/_launch.sh" ]]; then  # sbatch runs a copy of this file from its spool folder
  SCRIPT_DIR="$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")"
fi
source "$SCRIPT_DIR/_launch.sh"

: "${PREV_STAGE_CHECKPOINT:=$OUTPUT_ROOT/stage1}"
: "${DATA_RECIPE:=$REPO_DIR/data_recipes/stage2_sft.yaml}"
: "${OUTPUT_DIR:=$OUTPUT_ROOT/stage2}"
: "${TRAIN_VISION_TOWER:=1}"  # Table 2 and the text agree: the vision encoder trains in stage 2
STAGE_TUNABLE_PARTS=mm_mlp_adapter,mm_language_model  # plus mm_vision_tower when TRAIN_VISION_TOWER=1
# Table 2's learning-rate values are not legible in our copy of the paper; these are LLaVA-OneVision's.
: "${LEARNING_RATE:=1e-5}"
: "${MM_PROJECTOR_LR:=1e-5}"
: "${MM_VISION_TOWER_LR:=2e-6}"
# Table 2: AdamW (built by the trainer) under ZeRO-3, weight decay 0.05, cosine schedule with warmup 0.01-0.03.
: "${WEIGHT_DECAY:=0.05}"
: "${WARMUP_RATIO:=0.03}"
: "${NUM_TRAIN_EPOCHS:=1}"
# Batches (scripts/_launch.sh): packed rows by default, one row of MODEL_MAX_LENGTH tokens per GPU and 8 per step;
# PACKING=False gives Table 2 on the paper's 8 x B200 (180 GB): 16 samples per GPU, padded to the longest of the
# batch, 128 per step. Other GPUs: docs/training.md, "Memory plan" (e.g. 8 x 80 GB: PER_DEVICE_BATCH_SIZE=1 MODEL_MAX_LENGTH=16384).
: "${MODEL_MAX_LENGTH:=32768}"
: "${DEEPSPEED_CONFIG:=$REPO_DIR/scripts/deepspeed/zero3.json}"

launch_stage "$@"
