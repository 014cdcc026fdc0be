# Shared launcher of the curriculum stages; sourced by scripts/stage{0,1,2}_*.sh (which set STAGE), never run by
# itself. It keeps what only the shell can know, and nothing about how a stage trains:
#   - which settings files apply: configs/stage<STAGE>_*.yaml (the stage's Table 2 hyperparameters), then
#     configs/packing.yaml (PACKING=True, the default) or configs/tiny.yaml (PRESET=tiny);
#   - the environment overrides users rely on, turned into training flags by the table ENV_FLAGS below (they win
#     over the files; flags given to the stage script win over everything): docs/training.md lists them;
#   - the start point (stage 0: a language model + a vision tower, an MXFP4 one converted to bf16 once; later
#     stages: PREV_STAGE_CHECKPOINT, default OUTPUT_ROOT/stage<STAGE-1>), where outputs go (OUTPUT_DIR, default
#     OUTPUT_ROOT/stage<STAGE>), the tiny preset's assets;
#   - topology (processes per node, nodes, master address), the machine (CPU: DeepSpeed's CPU accelerator, fp32, no
#     pinned memory), SLURM (one torchrun per node through srun) and requeue (USR1/TERM forwarded to the ranks,
#     which save a checkpoint and exit; under SLURM the job is then requeued and resumes from it).
# `bash scripts/stageN_*.sh --help` prints the files and the settings that would be used, without starting anything.

REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
PYTHON="${PYTHON:-python}"
: "${OUTPUT_ROOT:=outputs}"
: "${PRESET:=}"
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
REQUEUE_EXIT_CODE=75  # llava_medgpt.train.preemption.REQUEUE_EXIT_CODE
STAGE_SCRIPT="${BASH_SOURCE[1]:-$0}"

_log() { echo "[stage${STAGE}] $*" >&2; }
_die() { echo "[stage${STAGE}] error: $*" >&2; exit 2; }

# The stage script's arguments: this file is sourced with them.
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

# ------------------------------------------------------------------------------------------------- settings
# Environment variable -> training argument. Set ones become flags after the settings files.
ENV_FLAGS=(
  DATA_RECIPE=data_path DEEPSPEED_CONFIG=deepspeed MM_TUNABLE_PARTS=mm_tunable_parts
  LEARNING_RATE=learning_rate MM_PROJECTOR_LR=mm_projector_lr MM_VISION_TOWER_LR=mm_vision_tower_lr
  WEIGHT_DECAY=weight_decay WARMUP_RATIO=warmup_ratio NUM_TRAIN_EPOCHS=num_train_epochs MAX_STEPS=max_steps
  PACKING=packing PER_DEVICE_BATCH_SIZE=per_device_train_batch_size GLOBAL_BATCH_SIZE=global_batch_size
  MODEL_MAX_LENGTH=model_max_length GROUP_BY_MODALITY_LENGTH=group_by_modality_length
  ATTN_IMPLEMENTATION=attn_implementation CONVERSATION_VERSION=version
  ROPE_SCALING_TYPE=rope_scaling_type ROPE_SCALING_FACTOR=rope_scaling_factor
  ROPE_ORIGINAL_MAX_POSITION_EMBEDDINGS=rope_original_max_position_embeddings
  SAVE_STEPS=save_steps SAVE_TOTAL_LIMIT=keep_checkpoints LOGGING_STEPS=logging_steps
  DATALOADER_NUM_WORKERS=dataloader_num_workers SEED=seed INDEX_CACHE_DIR=index_cache_dir
)

STAGE_CONFIGS=("$REPO_DIR"/configs/stage"${STAGE}"_*.yaml)
[[ ${#STAGE_CONFIGS[@]} == 1 && -f "${STAGE_CONFIGS[0]}" ]] || _die "expected one file configs/stage${STAGE}_*.yaml"
CONFIGS=("${STAGE_CONFIGS[0]}")
: "${OUTPUT_DIR:=$OUTPUT_ROOT/stage$STAGE}"
if [[ "$STAGE" -gt 0 ]]; then : "${PREV_STAGE_CHECKPOINT=$OUTPUT_ROOT/stage$((STAGE - 1))}"; fi
: "${PREV_STAGE_CHECKPOINT:=}"

TINY_ASSETS="$OUTPUT_ROOT/tiny_assets"
if [[ "$PRESET" == tiny ]]; then
  # Stage 0 starts, like the real one, from a language model and a vision tower (llava_medgpt.train.tiny_preset).
  : "${MODEL_NAME_OR_PATH:=$TINY_ASSETS/language_model}"
  : "${VISION_TOWER:=$TINY_ASSETS/vision_tower}"
  : "${DATA_RECIPE:=$REPO_DIR/data_recipes/demo_stage${STAGE}.yaml}"
  export DEMO_DATA="${DEMO_DATA:-$TINY_ASSETS/demo_data}"
  CONFIGS+=("$REPO_DIR/configs/tiny.yaml")
  if [[ "$ON_GPU" == 0 ]]; then : "${NPROC_PER_NODE:=$([[ -n "${SLURM_JOB_ID:-}" ]] && echo 1 || echo 2)}"; fi
elif [[ -n "$PRESET" ]]; then
  _die "unknown PRESET=$PRESET (known: tiny)"
elif [[ "${PACKING:-True}" == True ]]; then
  CONFIGS+=("$REPO_DIR/configs/packing.yaml")
elif [[ "$PACKING" != False ]]; then
  _die "PACKING must be True or False, got $PACKING"
fi

_settings_args() {
  SETTINGS_ARGS=()
  local config pair name
  for config in "${CONFIGS[@]}"; do SETTINGS_ARGS+=(--config "$config"); done
  for pair in "${ENV_FLAGS[@]}"; do
    name="${pair%%=*}"
    [[ -n "${!name:-}" && "$name" != GLOBAL_BATCH_SIZE ]] && SETTINGS_ARGS+=("--${pair#*=}" "${!name}")
  done
  [[ -n "${MODEL_NAME_OR_PATH:-}" ]] && SETTINGS_ARGS+=(--model_name_or_path "$MODEL_NAME_OR_PATH")
  [[ -n "${VISION_TOWER:-}" ]] && SETTINGS_ARGS+=(--vision_tower "$VISION_TOWER")
  SETTINGS_ARGS+=(--output_dir "$OUTPUT_DIR")
  return 0
}

# CFG_<NAME>: the value a training argument takes for this command (files, environment, the script's flags).
_resolve() {
  eval "$("$PYTHON" -m llava_medgpt.settings --prefix CFG_ --get "$@" -- "${SETTINGS_ARGS[@]}" "${STAGE_ARGS[@]}")" \
    || _die "cannot read the settings files ${CONFIGS[*]}"
}

_prepare_tiny_assets() {
  [[ -f "$TINY_ASSETS/COMPLETE" ]] && return 0
  _log "PRESET=tiny: writing a tiny language model (pretrained on the demo texts), vision tower and the demo data" \
       "to $TINY_ASSETS"
  mkdir -p "$TINY_ASSETS"
  # One thread: for a 64-wide model, thread synchronisation costs more than it saves.
  OMP_NUM_THREADS=1 HF_HUB_DISABLE_PROGRESS_BARS=1 "$PYTHON" -m llava_medgpt.train.tiny_preset "$TINY_ASSETS" \
    | sed "s/^/[stage${STAGE}] /" >&2
}

# ------------------------------------------------------------------------------------------- trained parts
# TRAIN_VISION_TOWER=0 / 1 removes / adds mm_vision_tower to the stage's parts (Table 2 freezes the tower in
# stages 0-1, the paper's text trains it; the configs follow the text).
_tunable_parts_flag() {
  [[ -z "${TRAIN_VISION_TOWER:-}" || -n "${MM_TUNABLE_PARTS:-}" ]] && return 0
  _resolve mm_tunable_parts
  local parts=",$CFG_MM_TUNABLE_PARTS,"
  parts="${parts//,mm_vision_tower,/,}"
  [[ "$TRAIN_VISION_TOWER" == 1 ]] && parts=",mm_vision_tower$parts"
  parts="${parts#,}"
  CFG_MM_TUNABLE_PARTS="${parts%,}"
  DERIVED_ARGS+=(--mm_tunable_parts "$CFG_MM_TUNABLE_PARTS")
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
# Flags the settings files cannot hold: they follow from the machine, the topology or the start point.
_derived_args() {
  _resolve per_device_train_batch_size global_batch_size packing model_max_length
  if [[ "${GLOBAL_BATCH_SIZE:-}" == auto ]]; then  # PER_DEVICE_BATCH_SIZE x world size: no accumulation
    DERIVED_ARGS+=(--global_batch_size "$((CFG_PER_DEVICE_TRAIN_BATCH_SIZE * WORLD_SIZE))")
    CFG_GLOBAL_BATCH_SIZE=$((CFG_PER_DEVICE_TRAIN_BATCH_SIZE * WORLD_SIZE))
  elif [[ -n "${GLOBAL_BATCH_SIZE:-}" ]]; then
    DERIVED_ARGS+=(--global_batch_size "$GLOBAL_BATCH_SIZE")
    CFG_GLOBAL_BATCH_SIZE="$GLOBAL_BATCH_SIZE"
  fi
  local global="${CFG_GLOBAL_BATCH_SIZE:-$((CFG_PER_DEVICE_TRAIN_BATCH_SIZE * WORLD_SIZE))}"
  if (( global % (CFG_PER_DEVICE_TRAIN_BATCH_SIZE * WORLD_SIZE) != 0 )); then
    _die "global_batch_size $global is not a multiple of per_device_train_batch_size" \
         "$CFG_PER_DEVICE_TRAIN_BATCH_SIZE x $WORLD_SIZE processes"
  fi
  local unit="sample(s)"
  [[ "$CFG_PACKING" == True ]] && unit="packed row(s) of up to $CFG_MODEL_MAX_LENGTH tokens"
  _log "world size $WORLD_SIZE ($NNODES node(s) x $NPROC_PER_NODE), per-device batch $CFG_PER_DEVICE_TRAIN_BATCH_SIZE" \
       "$unit, gradient accumulation $((global / (CFG_PER_DEVICE_TRAIN_BATCH_SIZE * WORLD_SIZE))), global batch $global"
  if [[ "$ON_GPU" == 0 ]]; then
    DERIVED_ARGS+=(--bf16 False --dataloader_pin_memory False)  # no bf16 on CPU; pinned memory needs a GPU
  fi
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

# `--help`: the settings files and the values this stage would use, and where the rest of the options are.
_print_help() {
  sed -n '2,/^#SBATCH/p' "$STAGE_SCRIPT" | grep -v '^#SBATCH' | sed 's/^# \{0,1\}//'
  echo "Settings files: ${CONFIGS[*]#"$REPO_DIR"/}"
  local keys=(model_name_or_path vision_tower data_path output_dir deepspeed mm_tunable_parts learning_rate
              mm_projector_lr mm_vision_tower_lr weight_decay warmup_ratio num_train_epochs max_steps packing
              per_device_train_batch_size global_batch_size model_max_length rope_scaling_type rope_scaling_factor)
  _resolve "${keys[@]}"
  _tunable_parts_flag
  echo "Values used (training argument = value; environment variables in docs/training.md override them):"
  local key var
  for key in "${keys[@]}"; do
    var="CFG_${key^^}"
    [[ -n "$PREV_STAGE_CHECKPOINT" && ( "$key" == model_name_or_path || "$key" == vision_tower ) ]] && continue
    [[ -n "${!var:-}" ]] && printf '  %-38s %s\n' "$key" "${!var}"
  done
  [[ -n "$PREV_STAGE_CHECKPOINT" ]] && printf '  %-38s %s\n' "start (PREV_STAGE_CHECKPOINT)" "$PREV_STAGE_CHECKPOINT"
  echo "Extra arguments go to python -m llava_medgpt.train (its --help lists them; every"
  echo "transformers.TrainingArguments flag is accepted)."
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
  STAGE_ARGS=("$@")
  DERIVED_ARGS=()
  _settings_args
  if [[ "$WANTS_HELP" == 1 ]]; then
    _print_help
    exit 0
  fi
  [[ "$PRESET" == tiny ]] && _prepare_tiny_assets
  # The data recipe is checked first (seconds), with every problem listed at once: before a start model is
  # prepared (minutes for an MXFP4 conversion) and before any training process starts.
  _resolve data_path model_name_or_path
  "$PYTHON" -m llava_medgpt.data.recipes "$CFG_DATA_PATH" --train-args "${SETTINGS_ARGS[@]}" "$@" >/dev/null \
    || _die "data recipe $CFG_DATA_PATH has the problems listed above"
  mkdir -p "$OUTPUT_DIR"
  _lock_output_dir  # before anything is written for this run
  # Start point: the previous stage's folder, or (stage 0) a language model plus a vision tower.
  if [[ -n "$PREV_STAGE_CHECKPOINT" ]]; then
    [[ -f "$PREV_STAGE_CHECKPOINT/COMPLETE" ]] || \
      _die "PREV_STAGE_CHECKPOINT=$PREV_STAGE_CHECKPOINT is not a finished stage output (no COMPLETE marker); run the previous stage first"
    DERIVED_ARGS+=(--model_name_or_path "$PREV_STAGE_CHECKPOINT" --vision_tower "")  # its own tower
  else
    [[ "$STAGE" == 0 ]] || _die "PREV_STAGE_CHECKPOINT is empty; stage $STAGE starts from the previous stage's output"
    # An MXFP4 language model (openai/gpt-oss-20b as published) is dequantised once to bf16 safetensors, which
    # ZeRO-3 loads partitioned; transformers would load the MXFP4 files whole on every rank.
    local start
    start="$("$PYTHON" -m llava_medgpt.model.dequantize "$CFG_MODEL_NAME_OR_PATH" --if-needed \
      --cache-dir "${BF16_START_DIR:-$OUTPUT_ROOT/start_bf16}")" || _die "cannot prepare the start model $CFG_MODEL_NAME_OR_PATH"
    DERIVED_ARGS+=(--model_name_or_path "$start")
  fi
  _tunable_parts_flag
  _topology
  _derived_args
  TRAIN_ARGS=("${SETTINGS_ARGS[@]}" "$@" "${DERIVED_ARGS[@]}")

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
      "${guard[@]}" -- "${torchrun[@]}" -m llava_medgpt.train "${TRAIN_ARGS[@]}" && rc=0 || rc=$?
  else
    _run_forwarding_signals "${guard[@]}" --expect-parent $$ -- "${torchrun[@]}" --node_rank 0 \
      -m llava_medgpt.train "${TRAIN_ARGS[@]}" && rc=0 || rc=$?
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

launch_stage "$@"
