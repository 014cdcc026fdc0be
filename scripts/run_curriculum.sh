#!/usr/bin/env bash
# Run the three curriculum stages in order on this machine (each starts from the previous one's folder), then
# evaluate the final checkpoint with the evaluation harness and print a summary.
#
# Run as: PRESET=tiny OUTPUT_ROOT=outputs/tiny bash scripts/run_curriculum.sh   (tiny model + demo data, CPU, minutes)
#         OUTPUT_ROOT=outputs/medgpt EVAL_DATA_DIR=/data/benchmarks bash scripts/run_curriculum.sh   (paper settings;
#                                                                         needs GPUs and data)
# Evaluation (after stage 2, into OUTPUT_ROOT/eval: results.json, tables.md, chart.png, predictions/):
#   EVAL_DATA_DIR   benchmarks in their release layouts (PRESET=tiny: the demo test set the preset writes,
#                   OUTPUT_ROOT/tiny_assets/demo_data/benchmarks); unset: no evaluation (run scripts/eval.sh later)
#   EVAL_TASKS      eval task names or groups (PRESET=tiny: slake,medqa; otherwise table4,table5,table6,figure2)
# On a SLURM cluster submit the stages instead, each after the previous one:
#   j0=$(sbatch --parsable scripts/stage0_pretrain.sh)
#   j1=$(sbatch --parsable --dependency=afterok:$j0 scripts/stage1_midtrain.sh)
#   j2=$(sbatch --parsable --dependency=afterok:$j1 scripts/stage2_sft.sh)
#   sbatch --dependency=afterok:$j2 scripts/eval.sh OUTPUT_ROOT/stage2 OUTPUT_ROOT/eval
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OUTPUT_ROOT="${OUTPUT_ROOT:-outputs}"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$(cd "$SCRIPT_DIR/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${PRESET:-}" == tiny ]]; then
  : "${EVAL_DATA_DIR:=$OUTPUT_ROOT/tiny_assets/demo_data/benchmarks}"
  : "${EVAL_TASKS:=slake,medqa}"
fi
: "${EVAL_TASKS:=table4,table5,table6,figure2}"
start=$SECONDS
for stage in stage0_pretrain stage1_midtrain stage2_sft; do
  echo "==> $stage" >&2
  bash "$SCRIPT_DIR/$stage.sh" "$@"
done

eval_args=()
if [[ -n "${EVAL_DATA_DIR:-}" ]]; then
  echo "==> evaluation of $OUTPUT_ROOT/stage2 ($EVAL_TASKS)" >&2
  HF_HUB_DISABLE_PROGRESS_BARS=1 "$PYTHON" -m llava_medgpt.eval --model "$OUTPUT_ROOT/stage2" --tasks "$EVAL_TASKS" \
    --data-dir "$EVAL_DATA_DIR" --output "$OUTPUT_ROOT/eval" --no-progress
  eval_args=(--eval "$OUTPUT_ROOT/eval")
else
  echo "EVAL_DATA_DIR is not set: no evaluation (see scripts/eval.sh)" >&2
fi
echo
"$PYTHON" -m llava_medgpt.train.summary "$OUTPUT_ROOT" "${eval_args[@]}" --seconds "$((SECONDS - start))"
