#!/usr/bin/env bash
# Evaluate one checkpoint on the paper's benchmarks, locally or as a SLURM job (one GPU node).
#
# Run as:  sbatch scripts/eval.sh CKPT OUT [TASKS]          (SLURM)
#          bash   scripts/eval.sh CKPT OUT [TASKS]          (local)
# TASKS defaults to table4,table5,table6,figure2. Environment:
#   DATA_DIR         benchmark releases (default ./data/benchmarks)
#   MIMIC_CXR_DIR    MIMIC-CXR-JPG folder (credentialed; MIMIC tasks are skipped without it)
#   TRIALS_DIR       patient-trial collections (SIGIR 2016, TREC CT 2021/2022)
#   BATCH_SIZE       default 8;  EXTRA_ARGS  more runner flags, e.g. "--attn-implementation flex_attention"
# A rerun with the same OUT resumes from the predictions already written.
#SBATCH --job-name=medgpt-eval
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

CKPT=${1:?usage: eval.sh CKPT OUT [TASKS]}
OUT=${2:?usage: eval.sh CKPT OUT [TASKS]}
TASKS=${3:-table4,table5,table6,figure2}
DATA_DIR=${DATA_DIR:-./data/benchmarks}

paths=()
if [[ -n "${MIMIC_CXR_DIR:-}" ]]; then
  for task in mimic_cxr_findings impression_0shot impression_1shot; do paths+=(--task-path "$task=$MIMIC_CXR_DIR"); done
fi
if [[ -n "${TRIALS_DIR:-}" ]]; then
  for task in patient_trial_0shot patient_trial_1shot; do paths+=(--task-path "$task=$TRIALS_DIR"); done
fi

# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
${SLURM_JOB_ID:+srun} python -m llava_medgpt.eval \
  --model "$CKPT" --tasks "$TASKS" --data-dir "$DATA_DIR" "${paths[@]}" \
  --output "$OUT" --batch-size "${BATCH_SIZE:-8}" ${EXTRA_ARGS:-}
