#!/usr/bin/env bash
# Run the three curriculum stages in order on this machine; each stage starts from the previous one's folder.
#
# Run as: PRESET=tiny OUTPUT_ROOT=outputs/tiny bash scripts/run_curriculum.sh   (tiny model + demo data, CPU, minutes)
#         OUTPUT_ROOT=outputs/medgpt bash scripts/run_curriculum.sh           (paper settings; needs GPUs and data)
# On a SLURM cluster submit the stages instead, each after the previous one:
#   j0=$(sbatch --parsable scripts/stage0_pretrain.sh)
#   j1=$(sbatch --parsable --dependency=afterok:$j0 scripts/stage1_midtrain.sh)
#   sbatch --dependency=afterok:$j1 scripts/stage2_sft.sh
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OUTPUT_ROOT="${OUTPUT_ROOT:-outputs}"
start=$SECONDS
for stage in stage0_pretrain stage1_midtrain stage2_sft; do
  echo "==> $stage" >&2
  bash "$SCRIPT_DIR/$stage.sh" "$@"
done
root="$(cd "$OUTPUT_ROOT" && pwd)"
echo "Curriculum finished in $((SECONDS - start)) s. Stage outputs (safetensors, loadable with from_pretrained):"
for stage in stage0 stage1 stage2; do
  echo "  $root/$stage"
done
echo "Final model: $root/stage2   resume checkpoints: $root/stage*/checkpoint-*"
