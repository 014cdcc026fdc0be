"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the complete new one, never a part.

    with atomic_write("out/manifest.jsonl") as f:
        for record in records:
            f.write(json.dumps(record) + "\\n")

The data goes to a hidden temporary file in the target's own folder (a rename is only atomic within one file
system), is flushed and fsync-ed, then renamed over the target; the folder is fsync-ed so the rename survives a
power loss. If the block raises, the temporary file is removed and the target is left as it was.
"""

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on a clean exit it replaces `path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write opens files for writing ('w' or 'wb'), got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    f = open(tmp, mode, encoding=None if "b" in mode else encoding)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file this process (or another on this node) wrote to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file under `folder`, then every folder bottom-up (so the names survive a power loss too).

    A file that disappears meanwhile (another process's temporary file, renamed) is skipped."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                try:
                    fsync_file(path)
                except FileNotFoundError:
                    pass
        fsync_folder(Path(root))


def fsync_folder(folder: str | os.PathLike) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders; the rename itself already happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ checksums

# A folder's checksum manifest, in `sha256sum` format ("<hex>  <relative path>" per line), written by the training
# seal (llava_medgpt.train.checkpointing) into checkpoints and stage outputs, read by resume and by evaluation.
MANIFEST_NAME = "MANIFEST.sha256"
_HASH_BLOCK = 8 << 20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_sha256_manifest(folder: str | os.PathLike) -> dict[str, str] | None:
    """relative path -> SHA-256 from the folder's MANIFEST.sha256; None when it has none; ValueError if malformed."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    entries = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{path}:{n}: not a sha256sum line: {line!r}")
        entries[name] = digest
    return entries


__all__ = ["MANIFEST_NAME", "atomic_write", "file_sha256", "fsync_file", "fsync_folder", "fsync_tree",
           "read_sha256_manifest"]
