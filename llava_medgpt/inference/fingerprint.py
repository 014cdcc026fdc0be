"""A content fingerprint of a checkpoint folder, so that evaluation resumes a prediction file only for the very
checkpoint that wrote it (not another one later saved at the same path, nor one with the same name elsewhere).

    checkpoint_fingerprint("outputs/stage2")   # "sha256:3f1c..." or None (a hub id that is not in the local cache)

The fingerprint is a SHA-256 over (name, SHA-256 of the content) of every file at the folder's top level that
loading reads: the config, the weights and their index, the processor, tokenizer and chat template files. Run
bookkeeping that training keeps beside them (logs, the skip report, the run status, the seal, resume checkpoints
in subfolders) is left out: it changes no output. A folder sealed by training carries MANIFEST.sha256, whose
digests are used as they are (the weights are then not read again); any other file is read and hashed once per
evaluation run (about one read of the weights, which loading them reads anyway).
"""

import hashlib
import os
from pathlib import Path

from ..fileio import MANIFEST_NAME, file_sha256, read_sha256_manifest

# Written by training next to the model files; none of them changes what the model generates.
BOOKKEEPING_FILES = frozenset({MANIFEST_NAME, "COMPLETE", "README.md", "log_history.json", "training_args.json",
                               "training_args.bin", "exit_status.json", "skipped_samples.json", "trainer_state.json"})


def local_folder(model: str | os.PathLike) -> Path | None:
    """The checkpoint's folder: the path itself, or a hub id's snapshot in the local cache (no download)."""
    path = Path(model)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception:  # not a hub id, or not cached: nothing local to fingerprint
        return None


def normalized_model_name(model: str | os.PathLike) -> str:
    """A local folder as its resolved absolute path (no trailing slash, symlinks followed); anything else as given
    without trailing slashes (a hub id or a served model name)."""
    path = Path(model)
    return str(path.resolve()) if path.is_dir() else str(model).rstrip("/")


def _fingerprinted(name: str) -> bool:
    return not name.startswith(".") and name not in BOOKKEEPING_FILES and not (
        name.startswith("skipped_samples.") and name.endswith(".json"))


def checkpoint_fingerprint(model: str | os.PathLike) -> str | None:
    """"sha256:<hex>" of the files loading reads (module docstring), or None without a local folder."""
    folder = local_folder(model)
    if folder is None:
        return None
    try:
        sealed = read_sha256_manifest(folder) or {}
    except ValueError:
        sealed = {}
    total = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not _fingerprinted(path.name):
            continue
        digest = sealed.get(path.name) or file_sha256(path)
        total.update(f"{path.name}\0{digest}\n".encode("utf-8"))
    return f"sha256:{total.hexdigest()}"


__all__ = ["BOOKKEEPING_FILES", "checkpoint_fingerprint", "local_folder", "normalized_model_name"]
