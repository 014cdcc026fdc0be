#!/usr/bin/env bash
# Stage 0 - pretraining (paper 3.2): short image-caption pairs; the LLM is frozen, the vision encoder and the
# projector train. Starts from a language model plus a vision tower (or PREV_STAGE_CHECKPOINT if set).
#
# Run as: sbatch scripts/stage0_pretrain.sh            (SLURM; edit the #SBATCH lines for your cluster)
#         bash scripts/stage0_pretrain.sh              (one machine, all its GPUs, or CPU processes)
#         PRESET=tiny OUTPUT_ROOT=/tmp/x bash scripts/stage0_pretrain.sh   (tiny model + demo data, minutes on CPU)
# Every variable below can be set in the environment instead; extra arguments go to `python -m llava_medgpt.train`.
#
#SBATCH --job-name=medgpt-stage0
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -euo pipefail
STAGE=0
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -f "$SCRIPT_DIR/_launch.sh" ]]; then  # sbatch runs a copy of this file from its spool folder
  SCRIPT_DIR="$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")"
fi
source "$SCRIPT_DIR/_launch.sh"

# Start point: a language model and a vision tower (hub ids or local folders). openai/gpt-oss-20b is published in
# MXFP4: the launcher converts it once to bf16 in $BF16_START_DIR (python -m llava_medgpt.model.dequantize SRC DST
# does the same by hand; about 42 GB on disk), which ZeRO-3 then loads partitioned.
: "${MODEL_NAME_OR_PATH:=openai/gpt-oss-20b}"
: "${VISION_TOWER:=openai/clip-vit-large-patch14-336}"
: "${PREV_STAGE_CHECKPOINT:=}"  # set to start from a MedGPT checkpoint folder instead
: "${DATA_RECIPE:=$REPO_DIR/data_recipes/stage0_pretrain.yaml}"
: "${OUTPUT_DIR:=$OUTPUT_ROOT/stage0}"
# The paper's text trains the vision encoder in stage 0; its Table 2 freezes it (stages 0-1). 0 follows Table 2.
: "${TRAIN_VISION_TOWER:=1}"
STAGE_TUNABLE_PARTS=mm_mlp_adapter  # plus mm_vision_tower when TRAIN_VISION_TOWER=1
# Table 2's learning-rate values are not legible in our copy of the paper; these are LLaVA-OneVision's.
: "${LEARNING_RATE:=1e-3}"  # the LLM is frozen; this rate only applies to parts listed nowhere else
: "${MM_PROJECTOR_LR:=1e-3}"
: "${MM_VISION_TOWER_LR:=2e-6}"
# Table 2: AdamW (built by the trainer) under ZeRO-3, weight decay 0.05, cosine schedule with warmup 0.01-0.03.
: "${WEIGHT_DECAY:=0.05}"
: "${WARMUP_RATIO:=0.03}"
: "${NUM_TRAIN_EPOCHS:=1}"
# Batches (scripts/_launch.sh): packed rows by default, one row of MODEL_MAX_LENGTH tokens per GPU and 8 per step;
# PACKING=False gives Table 2 on the paper's 8 x B200 (180 GB): 16 samples per GPU, padded to the longest of the
# batch, 128 per step. Other GPUs: docs/training.md, "Memory plan" (e.g. 8 x 80 GB: PER_DEVICE_BATCH_SIZE=2).
: "${MODEL_MAX_LENGTH:=32768}"
: "${DEEPSPEED_CONFIG:=$REPO_DIR/scripts/deepspeed/zero3.json}"

launch_stage "$@"
