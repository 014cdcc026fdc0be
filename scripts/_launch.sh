# Shared launcher of the curriculum stages; sourced by scripts/stage{0,1,2}_*.sh, never run by itself.
#
# A stage script sets STAGE and SCRIPT_DIR, sources this file (which applies PRESET defaults), sets its own
# paper hyperparameters with `: "${VAR:=default}"` (so anything already in the environment wins), then calls
# `launch_stage "$@"`. Variables every stage understands (all optional):
#
#   PRESET=tiny           tiny GPT-oss + CLIP and the demo data (built on first use under OUTPUT_ROOT/tiny_assets by
#                         python -m llava_medgpt.train.tiny_preset), short packed rows, higher learning rates and
#                         enough epochs that the loss falls; runs the whole curriculum on CPU in minutes
#   OUTPUT_ROOT           where stages write: OUTPUT_ROOT/stage0, /stage1, /stage2 (default: outputs)
#   PACKING               True (default): several samples per row (rows of MODEL_MAX_LENGTH tokens, samples kept
#                         apart by restarting position ids); PER_DEVICE_BATCH_SIZE then counts rows (default 1 row
#                         per GPU, 8 per step). False: one sample per padded row, Table 2's 16 per GPU / 128 per step
#   PER_DEVICE_BATCH_SIZE, GLOBAL_BATCH_SIZE (auto: PER_DEVICE_BATCH_SIZE x world size), MODEL_MAX_LENGTH
#   NPROC_PER_NODE        processes per node (default: GPUs per node; on CPU 2, or 1 per SLURM node)
#   DEEPSPEED_CONFIG      scripts/deepspeed/{zero2,zero3,zero3_offload}.json
#   ATTN_IMPLEMENTATION   default: the backbone's choice (GPT-oss: flex_attention on GPU, eager on CPU)
#   MAX_STEPS             stop after this many optimizer steps (default: NUM_TRAIN_EPOCHS epochs)
#   TRAIN_VISION_TOWER    1: add mm_vision_tower to the stage's STAGE_TUNABLE_PARTS; MM_TUNABLE_PARTS overrides both
#   BF16_START_DIR        stage 0: where an MXFP4 start is converted to bf16, once (default: OUTPUT_ROOT/start_bf16)
#   INDEX_CACHE_DIR       where the record indexes go (default: beside each manifest; set it for read-only datasets)
#   SAVE_STEPS, SAVE_TOTAL_LIMIT, LOGGING_STEPS, DATALOADER_NUM_WORKERS, SEED, PYTHON
#
# `bash scripts/stageN_*.sh --help` prints the stage's settings as they would be used, without starting anything.
#
# On a machine without GPUs the same command runs CPU processes: DS_ACCELERATOR=cpu, gloo, fp32 (no bf16 on CPU).
# Under SLURM (sbatch) one torchrun per node is started with srun; master address, node rank and world size come
# from SLURM_* variables. A USR1/TERM signal (sbatch --signal=B:USR1@120) is forwarded to the ranks, which save
# a checkpoint and exit; the job is then requeued and resumes from that checkpoint.

REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
PYTHON="${PYTHON:-python}"
: "${OUTPUT_ROOT:=outputs}"
: "${PRESET:=}"
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
REQUEUE_EXIT_CODE=75  # llava_medgpt.train.preemption.REQUEUE_EXIT_CODE

_log() { echo "[stage${STAGE}] $*" >&2; }
_die() { echo "[stage${STAGE}] error: $*" >&2; exit 2; }

# The stage script's own arguments (this file is sourced without arguments, so "$@" is the script's).
WANTS_HELP=0
for _arg in "$@"; do [[ "$_arg" == -h || "$_arg" == --help ]] && WANTS_HELP=1; done

# ----------------------------------------------------------------------------------------------------- hardware
if [[ -z "${NUM_GPUS:-}" ]]; then
  if [[ "$WANTS_HELP" == 1 ]] || ! command -v nvidia-smi >/dev/null; then
    NUM_GPUS=0
  else
    NUM_GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null)" \
      || _die "cannot import torch with $PYTHON (activate the environment first: bash scripts/setup.sh)"
  fi
fi
if [[ "$NUM_GPUS" -gt 0 ]]; then
  ON_GPU=1
else
  ON_GPU=0
  export DS_ACCELERATOR=cpu  # DeepSpeed's CPU accelerator: gloo, no CUDA ops
fi

# ------------------------------------------------------------------------------------------------ PRESET=tiny
TINY_ASSETS="$OUTPUT_ROOT/tiny_assets"
if [[ "$PRESET" == tiny ]]; then
  # Stage 0 starts, like the real one, from a language model and a vision tower (llava_medgpt.model.tiny --parts).
  : "${MODEL_NAME_OR_PATH:=$TINY_ASSETS/language_model}"
  : "${VISION_TOWER:=$TINY_ASSETS/vision_tower}"
  : "${DATA_RECIPE:=$REPO_DIR/data_recipes/demo_stage${STAGE}.yaml}"
  export DEMO_DATA="${DEMO_DATA:-$TINY_ASSETS/demo_data}"
  # Packed like the real recipe: one row per process. The sampler plans rows from length estimates that count 5
  # tiles per image (the demo images are 1 tile), so a 4,096-token row gets about 4 image samples (~1,100 tokens).
  : "${PACKING:=True}"
  : "${PER_DEVICE_BATCH_SIZE:=1}"
  : "${GLOBAL_BATCH_SIZE:=auto}"  # PER_DEVICE_BATCH_SIZE x world size: no gradient accumulation
  : "${MODEL_MAX_LENGTH:=4096}"
  # A few dozen steps per stage, at rates a 64-wide model learns at (the paper's are for a 20B model).
  : "${NUM_TRAIN_EPOCHS:=10}"
  : "${LEARNING_RATE:=2e-3}"
  : "${MM_PROJECTOR_LR:=2e-3}"
  : "${MM_VISION_TOWER_LR:=2e-4}"
  : "${SAVE_STEPS:=25}"
  : "${LOGGING_STEPS:=5}"
  : "${DATALOADER_NUM_WORKERS:=0}"
  if [[ "$ON_GPU" == 0 ]]; then : "${NPROC_PER_NODE:=$([[ -n "${SLURM_JOB_ID:-}" ]] && echo 1 || echo 2)}"; fi
elif [[ -n "$PRESET" ]]; then
  _die "unknown PRESET=$PRESET (known: tiny)"
fi

_prepare_tiny_assets() {
  [[ -f "$TINY_ASSETS/COMPLETE" ]] && return 0
  _log "PRESET=tiny: writing a tiny language model (pretrained on the demo texts), vision tower and the demo data" \
       "to $TINY_ASSETS"
  mkdir -p "$TINY_ASSETS"
  # One thread: for a 64-wide model, thread synchronisation costs more than it saves.
  OMP_NUM_THREADS=1 "$PYTHON" -m llava_medgpt.train.tiny_preset "$TINY_ASSETS" | sed "s/^/[stage${STAGE}] /" >&2
}

# Packing and batch sizes (Table 2: 16 samples per GPU, 128 per step, up to 32,768 tokens each).
_batch_defaults() {
  : "${PACKING:=True}"
  if [[ "$PACKING" == True ]]; then
    # Rows of MODEL_MAX_LENGTH tokens, each holding as many samples as fit: one row per GPU and 8 per step
    # (8 GPUs, no accumulation, as Table 2), 8 x 32,768 tokens, the tokens of 128 samples of about 2,000.
    : "${PER_DEVICE_BATCH_SIZE:=1}"
    : "${GLOBAL_BATCH_SIZE:=8}"
  elif [[ "$PACKING" == False ]]; then
    : "${PER_DEVICE_BATCH_SIZE:=16}"
    : "${GLOBAL_BATCH_SIZE:=128}"
  else
    _die "PACKING must be True or False, got $PACKING"
  fi
  return 0
}

# ------------------------------------------------------------------------------------------- trained parts
_tunable_parts() {
  if [[ -z "${MM_TUNABLE_PARTS:-}" ]]; then
    MM_TUNABLE_PARTS="$STAGE_TUNABLE_PARTS"
    [[ "$TRAIN_VISION_TOWER" == 1 ]] && MM_TUNABLE_PARTS="mm_vision_tower,$MM_TUNABLE_PARTS"
  fi
  return 0
}

# --------------------------------------------------------------------------------------------------- topology
_free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }

_topology() {
  if [[ -n "${SLURM_JOB_ID:-}" && -n "${SLURM_JOB_NUM_NODES:-}" ]]; then
    UNDER_SLURM=1
    NNODES="$SLURM_JOB_NUM_NODES"
    local first
    first="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    # NodeAddr is what the nodes are reachable at (it defaults to the node name on ordinary clusters).
    MASTER_ADDR="${MASTER_ADDR:-$(scontrol show node "$first" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)}"
    MASTER_PORT="${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"
  else
    UNDER_SLURM=0
    NNODES=1
    MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
    MASTER_PORT="${MASTER_PORT:-$(_free_port)}"
  fi
  if [[ -z "${NPROC_PER_NODE:-}" ]]; then
    NPROC_PER_NODE=$([[ "$ON_GPU" == 1 ]] && echo "$NUM_GPUS" || echo 2)
  fi
  WORLD_SIZE=$((NNODES * NPROC_PER_NODE))
  if [[ "$ON_GPU" == 0 && -z "${OMP_NUM_THREADS:-}" ]]; then
    local cores="${SLURM_CPUS_ON_NODE:-$(nproc)}"
    export OMP_NUM_THREADS=$(( cores / NPROC_PER_NODE > 0 ? cores / NPROC_PER_NODE : 1 ))
  fi
}

# ----------------------------------------------------------------------------------------------- the command
_train_args() {
  local accumulation global="$GLOBAL_BATCH_SIZE"
  [[ "$global" == auto ]] && global=$((PER_DEVICE_BATCH_SIZE * WORLD_SIZE))
  if (( global % (PER_DEVICE_BATCH_SIZE * WORLD_SIZE) != 0 )); then
    _die "GLOBAL_BATCH_SIZE=$global is not a multiple of PER_DEVICE_BATCH_SIZE=$PER_DEVICE_BATCH_SIZE x $WORLD_SIZE processes"
  fi
  accumulation=$((global / (PER_DEVICE_BATCH_SIZE * WORLD_SIZE)))
  local unit="sample(s)"
  [[ "$PACKING" == True ]] && unit="packed row(s) of up to $MODEL_MAX_LENGTH tokens"
  _log "world size $WORLD_SIZE ($NNODES node(s) x $NPROC_PER_NODE), per-device batch $PER_DEVICE_BATCH_SIZE $unit," \
       "gradient accumulation $accumulation, global batch $global"

  TRAIN_ARGS=(
    --model_name_or_path "$MODEL_NAME_OR_PATH"
    --mm_tunable_parts "$MM_TUNABLE_PARTS"
    --data_path "$DATA_RECIPE"
    --output_dir "$OUTPUT_DIR"
    --deepspeed "$DEEPSPEED_CONFIG"
    --learning_rate "$LEARNING_RATE"
    --mm_projector_lr "$MM_PROJECTOR_LR"
    --mm_vision_tower_lr "$MM_VISION_TOWER_LR"
    --weight_decay "$WEIGHT_DECAY"
    --lr_scheduler_type cosine
    --warmup_steps "$WARMUP_RATIO"  # a float below 1 is a ratio of the total steps (transformers 5)
    --num_train_epochs "$NUM_TRAIN_EPOCHS"
    --per_device_train_batch_size "$PER_DEVICE_BATCH_SIZE"
    --gradient_accumulation_steps "$accumulation"
    --model_max_length "$MODEL_MAX_LENGTH"
    --packing "$PACKING"
    --gradient_checkpointing True
    --gradient_checkpointing_kwargs '{"use_reentrant": false}'
    --group_by_modality_length "${GROUP_BY_MODALITY_LENGTH:-True}"
    --logging_steps "${LOGGING_STEPS:-1}"
    --logging_first_step True
    --save_strategy steps
    --save_steps "${SAVE_STEPS:-500}"
    --save_total_limit "${SAVE_TOTAL_LIMIT:-2}"
    --dataloader_num_workers "${DATALOADER_NUM_WORKERS:-4}"
    --dataloader_pin_memory "$([[ "$ON_GPU" == 1 ]] && echo True || echo False)"  # pinned memory needs a GPU
    --seed "${SEED:-42}"
    --report_to none
    --disable_tqdm True
  )
  [[ -n "${VISION_TOWER_ARG:-}" ]] && TRAIN_ARGS+=(--vision_tower "$VISION_TOWER_ARG")
  [[ -n "${CONVERSATION_VERSION:-}" ]] && TRAIN_ARGS+=(--version "$CONVERSATION_VERSION")
  [[ -n "${ATTN_IMPLEMENTATION:-}" ]] && TRAIN_ARGS+=(--attn_implementation "$ATTN_IMPLEMENTATION")
  [[ -n "${MAX_STEPS:-}" ]] && TRAIN_ARGS+=(--max_steps "$MAX_STEPS")
  [[ -n "${INDEX_CACHE_DIR:-}" ]] && TRAIN_ARGS+=(--index_cache_dir "$INDEX_CACHE_DIR")
  if [[ -n "${ROPE_SCALING_TYPE:-}" ]]; then
    TRAIN_ARGS+=(--rope_scaling_type "$ROPE_SCALING_TYPE" --rope_scaling_factor "$ROPE_SCALING_FACTOR"
                 --rope_original_max_position_embeddings "$ROPE_ORIGINAL_MAX_POSITION_EMBEDDINGS")
  fi
  if [[ "$ON_GPU" == 1 ]]; then TRAIN_ARGS+=(--bf16 True); fi
  return 0
}

# Run "$@" in the background and forward USR1/TERM to it: the ranks then save a checkpoint and exit. Its console
# output goes through llava_medgpt.train.rank_logs (a line all ranks print appears once; one only some ranks print,
# with its rank), which ignores those signals and ends when the output does.
_run_forwarding_signals() {
  SIGNALLED=0
  local fifo="$OUTPUT_DIR/.console.$$"
  rm -f "$fifo"
  mkfifo "$fifo"
  # By path, not -m: it needs only the standard library, and importing the package would load transformers.
  "$PYTHON" "$REPO_DIR/llava_medgpt/train/rank_logs.py" < "$fifo" >&2 &
  local merger=$!
  "$@" > "$fifo" 2>&1 &
  local child=$!
  trap "SIGNALLED=1; kill -USR1 $child 2>/dev/null || true" USR1 TERM
  local rc
  while :; do
    wait "$child" && rc=0 || rc=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned because a trap ran: keep waiting for the child
  done
  trap - USR1 TERM
  wait "$merger" || true
  rm -f "$fifo"
  return "$rc"
}

# `--help`: what this stage would run, from the same variables, and where the rest of the options are.
_print_help() {
  local script="${BASH_SOURCE[2]:-$0}"
  sed -n '2,/^#SBATCH/p' "$script" | grep -v '^#SBATCH' | sed 's/^# \{0,1\}//'
  echo "Settings (environment variable = value used; set any of them to override):"
  local name
  for name in PRESET OUTPUT_ROOT OUTPUT_DIR MODEL_NAME_OR_PATH VISION_TOWER PREV_STAGE_CHECKPOINT DATA_RECIPE \
              STAGE_TUNABLE_PARTS TRAIN_VISION_TOWER MM_TUNABLE_PARTS LEARNING_RATE MM_PROJECTOR_LR \
              MM_VISION_TOWER_LR WEIGHT_DECAY WARMUP_RATIO NUM_TRAIN_EPOCHS MAX_STEPS MODEL_MAX_LENGTH PACKING \
              PER_DEVICE_BATCH_SIZE GLOBAL_BATCH_SIZE DEEPSPEED_CONFIG ROPE_SCALING_TYPE ROPE_SCALING_FACTOR \
              ROPE_ORIGINAL_MAX_POSITION_EMBEDDINGS NPROC_PER_NODE; do
    [[ -n "${!name:-}" ]] && printf '  %-38s %s\n' "$name" "${!name}"
  done
  echo "Shared variables: scripts/_launch.sh. Extra arguments go to python -m llava_medgpt.train (every"
  echo "transformers.TrainingArguments flag; list them with: python -m llava_medgpt.train --help)."
}

# ------------------------------------------------------------------------------------------------ output lock
# One run per OUTPUT_DIR: a second launcher on the same folder (a rerun while the first still trains, a requeued
# job racing leftover ranks) would interleave their checkpoints. flock(2) on OUTPUT_DIR/.launch.lock, held by this
# shell's descriptor, which torchrun and the ranks inherit: the kernel releases it when the last of them exits,
# however they exit. The file names the holder; a name left there by a holder that died is reported as stale.
_lock_output_dir() {
  local lock="$OUTPUT_DIR/.launch.lock" holder rc=0
  exec {OUTPUT_LOCK_FD}>>"$lock"
  flock --nonblock --conflict-exit-code 200 "$OUTPUT_LOCK_FD" || rc=$?
  holder="$(cat "$lock" 2>/dev/null)"
  if [[ "$rc" == 200 ]]; then
    _die "OUTPUT_DIR=$OUTPUT_DIR is in use by another run (${holder:-holder not recorded yet}; lock $lock); wait for it to finish or stop it first"
  elif [[ "$rc" != 0 ]]; then  # a file system without locks: fall back to the recorded pid on this host
    local host pid
    read -r host pid _ <<<"$holder"
    if [[ "$host" == "host=$(hostname)" ]] && kill -0 "${pid#pid=}" 2>/dev/null; then
      _die "OUTPUT_DIR=$OUTPUT_DIR is in use by another run ($holder)"
    fi
    _log "warning: cannot flock $lock (file system without locks?); only a live holder on this host is detected"
  elif [[ -n "$holder" ]]; then
    _log "stale lock of a run that ended without releasing it ($holder): taking it over"
  fi
  printf 'host=%s pid=%s started=%s%s\n' "$(hostname)" "$$" "$(date +%Y-%m-%dT%H:%M:%S)" \
    "${SLURM_JOB_ID:+ slurm_job=$SLURM_JOB_ID}" >"$lock"
  trap ': >"$OUTPUT_DIR/.launch.lock"' EXIT  # a clean exit leaves no holder name behind
}

# How the ranks said the run ended (llava_medgpt/train/exit_status.py); torchrun itself exits 1 for any failure.
_recorded_exit_code() { "$PYTHON" -m llava_medgpt.train.exit_status "$OUTPUT_DIR" "$@"; }

launch_stage() {
  _batch_defaults
  if [[ "$WANTS_HELP" == 1 ]]; then
    _tunable_parts
    _print_help
    exit 0
  fi
  [[ "$PRESET" == tiny ]] && _prepare_tiny_assets
  # The data recipe is checked first (seconds), with every problem listed at once: before a start model is
  # prepared (minutes for an MXFP4 conversion) and before any training process starts.
  "$PYTHON" -m llava_medgpt.data.recipes "$DATA_RECIPE" --train-args "$@" >/dev/null \
    || _die "data recipe $DATA_RECIPE has the problems listed above"
  mkdir -p "$OUTPUT_DIR"
  _lock_output_dir  # before anything is written for this run
  # Start point: the previous stage's folder, or (stage 0) a language model plus a vision tower.
  if [[ -n "${PREV_STAGE_CHECKPOINT:-}" ]]; then
    [[ -f "$PREV_STAGE_CHECKPOINT/COMPLETE" ]] || \
      _die "PREV_STAGE_CHECKPOINT=$PREV_STAGE_CHECKPOINT is not a finished stage output (no COMPLETE marker); run the previous stage first"
    MODEL_NAME_OR_PATH="$PREV_STAGE_CHECKPOINT"
    VISION_TOWER_ARG=""
  else
    [[ "$STAGE" == 0 ]] || _die "PREV_STAGE_CHECKPOINT is empty; stage $STAGE starts from the previous stage's output"
    VISION_TOWER_ARG="$VISION_TOWER"
    # An MXFP4 language model (openai/gpt-oss-20b as published) is dequantised once to bf16 safetensors, which
    # ZeRO-3 loads partitioned; transformers would load the MXFP4 files whole on every rank.
    MODEL_NAME_OR_PATH="$("$PYTHON" -m llava_medgpt.model.dequantize "$MODEL_NAME_OR_PATH" --if-needed \
      --cache-dir "${BF16_START_DIR:-$OUTPUT_ROOT/start_bf16}")" || _die "cannot prepare the start model $MODEL_NAME_OR_PATH"
  fi
  _tunable_parts
  _topology
  _train_args

  # Every rank's full output is kept under OUTPUT_DIR/logs; the console gets it line by line, tagged "[rankN]:"
  # (global rank) for rank_logs to merge. Progress bars cannot be redrawn through that, so losses print as lines.
  export TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE='[rank${rank}]:' PYTHONUNBUFFERED=1 HF_HUB_DISABLE_PROGRESS_BARS=1
  # torchrun gets SIGTERM if this shell dies (even by SIGKILL), and each rank SIGKILL if torchrun dies
  # (llava_medgpt/train/process_guard.py): no rank outlives the launcher.
  local guard=("$PYTHON" -m llava_medgpt.train.process_guard --signal TERM)
  local torchrun=("$PYTHON" -m torch.distributed.run
    --nnodes "$NNODES" --nproc_per_node "$NPROC_PER_NODE"
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
    --log-dir "$OUTPUT_DIR/logs" --tee 3
    --signals_to_handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown_timeout "${SHUTDOWN_TIMEOUT:-600}")
  local rc
  _recorded_exit_code --clear
  if [[ "$UNDER_SLURM" == 1 ]]; then
    _log "SLURM job $SLURM_JOB_ID: $NNODES node(s) ($SLURM_JOB_NODELIST), master $MASTER_ADDR:$MASTER_PORT"
    # One torchrun per node; its node rank is that task's SLURM_NODEID (torchrun reads PET_NODE_RANK).
    _run_forwarding_signals srun --nodes "$NNODES" --ntasks-per-node 1 --kill-on-bad-exit=1 \
      bash -c 'export PET_NODE_RANK="$SLURM_NODEID"; exec "$@"' _ \
      "${guard[@]}" -- "${torchrun[@]}" -m llava_medgpt.train "${TRAIN_ARGS[@]}" "$@" && rc=0 || rc=$?
  else
    _run_forwarding_signals "${guard[@]}" --expect-parent $$ -- "${torchrun[@]}" --node_rank 0 \
      -m llava_medgpt.train "${TRAIN_ARGS[@]}" "$@" && rc=0 || rc=$?
  fi

  local recorded
  recorded="$(_recorded_exit_code)"
  [[ "$rc" != 0 && -n "$recorded" ]] && rc="$recorded"
  if [[ "$rc" == 0 && -f "$OUTPUT_DIR/COMPLETE" ]]; then
    _log "done. Stage output (start of the next stage): $(cd "$OUTPUT_DIR" && pwd)"
    _log "resume checkpoints: $(cd "$OUTPUT_DIR" && pwd)/checkpoint-*"
    return 0
  fi
  # A signal is a reason to run again only if no rank recorded another outcome (too many bad samples, disk full,
  # an error): those would fail the same way on every requeue.
  if [[ "$rc" == "$REQUEUE_EXIT_CODE" || ( "$SIGNALLED" == 1 && -z "$recorded" ) ]]; then
    if [[ "$UNDER_SLURM" == 1 ]]; then
      _log "stopped on a signal after saving a checkpoint; requeueing job $SLURM_JOB_ID"
      scontrol requeue "$SLURM_JOB_ID"
      exit 0
    fi
    _log "stopped on a signal after saving a checkpoint; run the same command again to resume"
    exit "$REQUEUE_EXIT_CODE"
  fi
  case "$rc" in
    65) _log "training stopped: too many bad samples (exit code 65); the counts are in $OUTPUT_DIR/skipped_samples.json" ;;
    74) _log "training stopped: no space left on the device of $OUTPUT_DIR (exit code 74); free space and run the same command again" ;;
    *) _log "training failed (exit code $rc)" ;;
  esac
  exit "$rc"
}
