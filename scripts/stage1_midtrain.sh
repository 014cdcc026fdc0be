#!/usr/bin/env bash
# Stage 1 - mid-training (paper 3.2): long-context image-report pairs; all parameters train. YaRN rope scaling
# (factor 32, from 4,096 to 131,072 positions) is set on the text config. Starts from stage 0's output folder.
#
# Run as: sbatch scripts/stage1_midtrain.sh
#         bash scripts/stage1_midtrain.sh
#         PRESET=tiny OUTPUT_ROOT=/tmp/x bash scripts/stage1_midtrain.sh
# Hyperparameters: configs/stage1_midtrain.yaml (Table 2). Environment overrides (MODEL_NAME_OR_PATH, DATA_RECIPE,
# OUTPUT_ROOT, LEARNING_RATE, ...): docs/training.md; extra arguments go to `python -m llava_medgpt.train`.
#
#SBATCH --job-name=medgpt-stage1
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
STAGE=1
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # sbatch runs a copy of this file from its spool folder:
[[ -f "$SCRIPT_DIR/_launch.sh" ]] || SCRIPT_DIR="$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")"
source "$SCRIPT_DIR/_launch.sh" "$@"
