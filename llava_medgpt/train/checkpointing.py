"""Complete-or-invisible checkpoints, and finding the one to resume from.

The Trainer (and DeepSpeed, on every rank) writes `OUTPUT_DIR/checkpoint-N/`; only after every rank has finished
does rank 0 write `checkpoint-N/COMPLETE`, itself through a temporary file and os.replace. A save killed half-way
leaves a folder without the marker, which resume ignores and the next start deletes. The same marker, written
last, tells a later stage that a stage's output folder is finished.

What a resume loads (all files this run wrote itself into OUTPUT_DIR):
- trainer_state.json (JSON: global step, log history), rng_state_*.pth and scheduler.pt (torch.load with
  weights_only=True, by transformers);
- under DeepSpeed, global_stepN/*_model_states.pt and *_optim_states.pt: DeepSpeed's own format, read by its
  checkpoint engine with torch.load(weights_only=False). These are pickles, so resume only from checkpoints this
  job wrote, never from a downloaded folder; stage hand-off folders are safetensors (config.json,
  model.safetensors, processor files) and are the only thing a *next* stage reads.
"""

import os
import re
import shutil
from pathlib import Path

COMPLETE_MARKER = "COMPLETE"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(folder: str | os.PathLike, content: str = "") -> None:
    """Write the marker atomically (a reader never sees a half-written marker)."""
    folder = Path(folder)
    tmp = folder / f".{COMPLETE_MARKER}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / COMPLETE_MARKER)


def is_complete(folder: str | os.PathLike) -> bool:
    return (Path(folder) / COMPLETE_MARKER).is_file()


def checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-N folder in output_dir, by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    complete = [folder for _, folder in checkpoints(output_dir) if is_complete(folder)]
    return complete[-1] if complete else None


def remove_incomplete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Delete checkpoint folders without the marker (a save that was killed); returns what was removed."""
    removed = []
    for _, folder in checkpoints(output_dir):
        if not is_complete(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def rotate_complete_checkpoints(output_dir: str | os.PathLike, keep: int | None) -> list[Path]:
    """Keep the newest `keep` complete checkpoints (None or 0: keep all); incomplete ones are left alone."""
    if not keep:
        return []
    complete = [folder for _, folder in checkpoints(output_dir) if is_complete(folder)]
    doomed = complete[:-keep]
    for folder in doomed:
        # Drop the marker first: a deletion cut short must not leave a folder that still looks complete.
        (folder / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
    return doomed
