#!/usr/bin/env bash
# Stage 2 - instruction tuning (paper 3.2): medical VQA, text-only instructions and reasoning traces; all
# parameters train. Starts from stage 1's output folder (which carries the YaRN text config).
#
# Run as: sbatch scripts/stage2_sft.sh
#         bash scripts/stage2_sft.sh
#         PRESET=tiny OUTPUT_ROOT=/tmp/x bash scripts/stage2_sft.sh
# Hyperparameters: configs/stage2_sft.yaml (Table 2). Environment overrides (MODEL_NAME_OR_PATH, DATA_RECIPE,
# OUTPUT_ROOT, LEARNING_RATE, ...): docs/training.md; extra arguments go to `python -m llava_medgpt.train`.
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
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # sbatch runs a copy of this file from its spool folder:
[[ -f "$SCRIPT_DIR/_launch.sh" ]] || SCRIPT_DIR="$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")"
source "$SCRIPT_DIR/_launch.sh" "$@"
