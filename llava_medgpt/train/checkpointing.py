"""Complete-or-invisible, verifiable checkpoints, and finding the one to resume from.

The Trainer (and DeepSpeed, on every rank) writes `OUTPUT_DIR/checkpoint-N/`; then `seal_folder` (run by
`CheckpointIntegrityCallback.on_save` on every rank):
1. every rank fsyncs every file and folder of the checkpoint (each rank flushes what its node wrote);
2. after a barrier, the ranks hash the files in parallel (SHA-256, largest files spread over the ranks) and rank 0
   writes `MANIFEST.sha256` (`sha256sum` format: `cd checkpoint-N && sha256sum -c MANIFEST.sha256` checks it by
   hand), then `COMPLETE`, each through a temporary file, fsync and os.replace, and fsyncs the folder.
A save killed half-way leaves a folder without the marker, which resume ignores and the next start deletes. The
same seal, written last, tells a later stage that a stage's output folder is finished.

On resume (`find_resume_checkpoint` in train.py) the newest complete checkpoint is verified against its manifest
(again hashed by all ranks): a missing, truncated or altered file is reported by name, the damaged folder is renamed
`checkpoint-N.damaged` (kept for inspection, invisible to resume and rotation) and the previous complete checkpoint
is tried, down to a fresh start.

What a resume loads (all files this run wrote itself into OUTPUT_DIR):
- trainer_state.json (JSON: global step, log history), rng_state_*.pth and scheduler.pt (torch.load with
  weights_only=True, by transformers), skipped_samples.rank*.json (the bad-sample counts, JSON);
- under DeepSpeed, global_stepN/*_model_states.pt and *_optim_states.pt: DeepSpeed's own format, read by its
  checkpoint engine with torch.load(weights_only=False). These are pickles, so resume only from checkpoints this
  job wrote, never from a downloaded folder; stage hand-off folders are safetensors (config.json,
  model.safetensors, processor files) and are the only thing a *next* stage reads.

Hashing costs one read of the checkpoint per save and per resume, spread over the ranks (OUTPUT_DIR must be a file
system every rank sees, as it already must for resume).
"""

import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..fileio import MANIFEST_NAME as MANIFEST
from ..fileio import atomic_write, file_sha256, fsync_file, fsync_folder, fsync_tree
from ..fileio import read_sha256_manifest as read_manifest

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE"
DAMAGED_SUFFIX = ".damaged"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# ------------------------------------------------------------------------------------------------ ranks


class RankGroup:
    """The collectives the seal and the verification need: torch.distributed when initialised, else one process."""

    def __init__(self):
        import torch.distributed as dist

        self._dist = dist if dist.is_available() and dist.is_initialized() else None
        self.rank = self._dist.get_rank() if self._dist else 0
        self.world_size = self._dist.get_world_size() if self._dist else 1

    def barrier(self) -> None:
        if self._dist:
            self._dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self._dist:
            return obj
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        if not self._dist:
            return [obj]
        gathered = [None] * self.world_size
        self._dist.all_gather_object(gathered, obj)
        return gathered


# ----------------------------------------------------------------------------------------------- markers


def mark_complete(folder: str | os.PathLike, content: str = "") -> None:
    """Write the marker atomically (a reader never sees a half-written marker)."""
    with atomic_write(Path(folder) / COMPLETE_MARKER) as f:
        f.write(content)


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


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    return [folder for _, folder in checkpoints(output_dir) if is_complete(folder)]


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    complete = complete_checkpoints(output_dir)
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
    doomed = complete_checkpoints(output_dir)[:-keep]
    for folder in doomed:
        # Drop the marker first: a deletion cut short must not leave a folder that still looks complete.
        (folder / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


# ----------------------------------------------------------------------------------------------- manifest


def _sealed_files(folder: Path, recursive: bool = True, exclude: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of the files a manifest covers: the regular files, without the seal's own,
    hidden ones (temporary files, locks) and `exclude`; subfolders only when recursive."""
    skipped = {MANIFEST, COMPLETE_MARKER, *exclude}
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(dirs) if recursive else []
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if relative in skipped or name.startswith(".") or path.is_symlink():
                continue
            found.append((relative, path.stat().st_size))
    return found


def _share(files: list[tuple[str, int]], rank: int, world_size: int) -> list[str]:
    """This rank's files: largest first to the least-loaded rank, the same split on every rank."""
    loads = [0] * world_size
    mine = []
    for name, size in sorted(files, key=lambda item: (-item[1], item[0])):
        owner = min(range(world_size), key=lambda r: (loads[r], r))
        loads[owner] += size
        if owner == rank:
            mine.append(name)
    return mine


def _hash_in_parallel(folder: Path, files: list[tuple[str, int]], group: RankGroup) -> dict[str, str]:
    mine = {name: file_sha256(folder / name) for name in _share(files, group.rank, group.world_size)}
    digests: dict[str, str] = {}
    for part in group.all_gather(mine):
        digests.update(part)
    return digests


def seal_folder(folder: str | os.PathLike, content: str = "", group: RankGroup | None = None,
                recursive: bool = True, exclude: tuple[str, ...] = ()) -> None:
    """fsync everything, write MANIFEST.sha256, then COMPLETE (run on every rank; rank 0 writes the seal).

    recursive=False, exclude: what a stage output's manifest leaves out (its checkpoint folders, the run status).
    """
    folder = Path(folder)
    group = group or RankGroup()
    if recursive:
        fsync_tree(folder)
    else:
        for path in folder.iterdir():
            if path.is_file() and not path.is_symlink():
                fsync_file(path)
        fsync_folder(folder)
    group.barrier()  # every rank's files are on disk before anything is hashed
    files = group.broadcast(_sealed_files(folder, recursive, exclude) if group.rank == 0 else None)
    digests = _hash_in_parallel(folder, files, group)
    if group.rank == 0:
        with atomic_write(folder / MANIFEST) as f:
            for name, _ in files:
                f.write(f"{digests[name]}  {name}\n")
        mark_complete(folder, content)
        fsync_folder(folder)
    group.barrier()


def verify_folder(folder: str | os.PathLike, group: RankGroup | None = None) -> list[str]:
    """Problems of a sealed folder against its manifest, one per damaged file ('<path>: <what>'); [] if intact.

    Run on every rank (each hashes its share). A folder without a manifest cannot be checked: [] and a warning.
    """
    folder = Path(folder)
    group = group or RankGroup()
    entries = None
    problems: list[str] = []
    if group.rank == 0:
        try:
            entries = read_manifest(folder)
        except (OSError, ValueError) as err:
            problems.append(f"{folder / MANIFEST}: unreadable manifest ({err})")
            entries = {}
    entries, problems = group.broadcast((entries, problems))
    if entries is None:
        logger.warning("%s has no %s (sealed by an older version): resuming from it unverified", folder, MANIFEST)
        return []
    present = {}
    for name in entries:
        path = folder / name
        present[name] = path.stat().st_size if path.is_file() else None
    mine = _share([(name, size or 0) for name, size in present.items()], group.rank, group.world_size)
    found = []
    for name in mine:
        if present[name] is None:
            found.append(f"{folder / name}: missing")
            continue
        try:
            digest = file_sha256(folder / name)
        except OSError as err:
            found.append(f"{folder / name}: unreadable ({err})")
            continue
        if digest != entries[name]:
            found.append(f"{folder / name}: content differs from the manifest ({present[name]:,} bytes now; "
                         "truncated or altered after it was written)")
    for part in group.all_gather(found):
        problems.extend(part)
    return sorted(problems)


def quarantine(folder: Path) -> Path:
    """Rename a damaged checkpoint out of resume's and rotation's sight; returns the new name."""
    target = folder.with_name(folder.name + DAMAGED_SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}{DAMAGED_SUFFIX}{n}")
    os.replace(folder, target)
    fsync_folder(folder.parent)
    return target


def newest_intact_checkpoint(output_dir: str | os.PathLike, group: RankGroup | None = None,
                             report: Callable[[str], None] = logger.error) -> Path | None:
    """The newest complete checkpoint whose files match its manifest; damaged ones are reported file by file and
    quarantined (rank 0 renames them). Run on every rank; None: no usable checkpoint (start fresh)."""
    group = group or RankGroup()
    candidates = group.broadcast([str(f) for f in complete_checkpoints(output_dir)] if group.rank == 0 else None)
    for folder in map(Path, reversed(candidates)):
        problems = verify_folder(folder, group)
        if not problems:
            return folder
        if group.rank == 0:
            moved = quarantine(folder)
            report(f"{folder} is damaged ({len(problems)} file(s) differ from its {MANIFEST}):\n  "
                   + "\n  ".join(problems) + f"\nmoved to {moved}; falling back to the previous complete checkpoint")
        group.barrier()
    return None


# ------------------------------------------------------------------------------------------------ callback


def checkpoint_folder(output_dir: str | os.PathLike, step: int) -> Path:
    return Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"


class CheckpointIntegrityCallback(TrainerCallback):
    """Seals every checkpoint the Trainer saves (fsync, MANIFEST.sha256, COMPLETE) and rotates complete ones.

        trainer = Trainer(..., callbacks=[..., CheckpointIntegrityCallback(keep=2, state_writers=[write_skips])])

    keep: complete checkpoints to keep (the Trainer's own save_total_limit must stay None: it would rotate before
        the marker is written). state_writers: `fn(folder, rank)` run on every rank before the seal, to add
        training state of this project's own (the bad-sample counts) to the checkpoint, so the manifest covers it.
    Register it after every other callback that writes into the checkpoint: on_save runs in registration order.
    """

    def __init__(self, keep: int | None = None,
                 state_writers: tuple[Callable[[Path, int], None], ...] | list = ()):
        self.keep = keep
        self.state_writers = list(state_writers)

    def on_save(self, args, state, control, **kwargs):
        folder = checkpoint_folder(args.output_dir, state.global_step)
        for write in self.state_writers:
            write(folder, args.process_index)
        group = RankGroup()
        group.barrier()  # no rank is still writing (its temporary files would vanish under the others' fsync)
        seal_folder(folder, content=f"global_step={state.global_step}\n", group=group)
        if args.should_save:
            rotate_complete_checkpoints(args.output_dir, self.keep)
        group.barrier()
        return control
