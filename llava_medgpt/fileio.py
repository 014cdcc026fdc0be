"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the complete new one, never a part.

    with atomic_write("out/manifest.jsonl") as f:
        for record in records:
            f.write(json.dumps(record) + "\\n")

The data goes to a hidden temporary file in the target's own folder (a rename is only atomic within one file
system), is flushed and fsync-ed, then renamed over the target; the folder is fsync-ed so the rename survives a
power loss. If the block raises, the temporary file is removed and the target is left as it was.
"""

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
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
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


__all__ = ["atomic_write"]
