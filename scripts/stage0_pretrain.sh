#!/usr/bin/env bash
# Stage 0 - pretraining (paper 3.2): short image-caption pairs; the LLM is frozen, the vision encoder and the
# projector train. Starts from a language model plus a vision tower (or PREV_STAGE_CHECKPOINT if set).
#
# Run as: sbatch scripts/stage0_pretrain.sh            (SLURM; edit the #SBATCH lines for your cluster)
#         bash scripts/stage0_pretrain.sh              (one machine, all its GPUs, or CPU processes)
#         PRESET=tiny OUTPUT_ROOT=/tmp/x bash scripts/stage0_pretrain.sh   (tiny model + demo data, minutes on CPU)
# Hyperparameters: configs/stage0_pretrain.yaml (Table 2). Environment overrides (MODEL_NAME_OR_PATH, DATA_RECIPE,
# OUTPUT_ROOT, LEARNING_RATE, ...): docs/training.md; extra arguments go to `python -m llava_medgpt.train`.
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
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # sbatch runs a copy of this file from its spool folder:
[[ -f "$SCRIPT_DIR/_launch.sh" ]] || SCRIPT_DIR="$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")"
source "$SCRIPT_DIR/_launch.sh" "$@"
