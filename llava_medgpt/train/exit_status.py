"""How a training run ended, for the launcher: exit codes, and `OUTPUT_DIR/exit_status.json`.

torchrun exits 1 whatever code a failed rank returned, so the rank that knows why the run ended (rank 0 for the
outcomes all ranks agree on; the failing rank for a crash) also writes the reason into OUTPUT_DIR, and
scripts/_launch.sh exits with that code:

    0   EXIT_OK                 the stage output is complete
    1   EXIT_FAILED             an unexpected error (the traceback is in the log)
    65  EXIT_TOO_MANY_BAD       more bad samples than --max_bad_sample_fraction (EX_DATAERR): fix the data; a rerun
                                fails the same way (the counts are part of every checkpoint)
    74  EXIT_DISK_FULL          no space left on the device of OUTPUT_DIR (EX_IOERR): free space, then rerun
    75  EXIT_REQUEUE            stopped on SIGTERM/SIGUSR1 after saving a checkpoint (EX_TEMPFAIL): run it again

    python -m llava_medgpt.train.exit_status OUTPUT_DIR           # prints the recorded code (nothing if none)
    python -m llava_medgpt.train.exit_status OUTPUT_DIR --clear   # the launcher, before starting torchrun

No torch import here: the launcher reads the status with a bare interpreter.
"""

import errno
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TOO_MANY_BAD = 65  # EX_DATAERR (sysexits.h)
EXIT_DISK_FULL = 74  # EX_IOERR
EXIT_REQUEUE = 75  # EX_TEMPFAIL: "temporary failure, try again"
STATUS_FILE = "exit_status.json"


PROCESS_START = time.time()


def write_exit_status(output_dir: str | os.PathLike, code: int, reason: str, detail: str = "",
                      rank: int = 0, first_wins: bool = False) -> bool:
    """Record how the run ended (atomically); False if it was not written (the disk is full, or first_wins and
    another rank of this run already recorded its failure: the first error is the root cause, later ones on the
    other ranks are usually "connection closed by peer")."""
    from ..fileio import atomic_write

    path = Path(output_dir) / STATUS_FILE
    if first_wins:
        try:
            if path.stat().st_mtime >= PROCESS_START - 1.0:
                return False
        except OSError:
            pass
    status = {"exit_code": code, "reason": reason, "detail": detail, "rank": rank, "host": socket.gethostname(),
              "pid": os.getpid(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        with atomic_write(path) as f:
            f.write(json.dumps(status, indent=1) + "\n")
    except OSError:
        return False
    return True


def read_exit_status(output_dir: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(output_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# torch.save's zip writer reports a failed write without an errno.
_TORCH_WRITE_FAILURE = re.compile(r"PytorchStreamWriter failed|unexpected pos|basic_ios::clear|file write failed")
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
PROBE_BYTES = 1 << 20


class DiskFullError(OSError):
    """No space left (or quota exceeded) on the file system of a folder the run writes to."""


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _probe(folder: Path) -> OSError | None:
    """Write PROBE_BYTES into `folder` and fsync: the OSError a full file system gives, or None if it fits."""
    path = folder / f".space-probe.{os.getpid()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        return err if err.errno in _FULL_ERRNOS else None
    finally:
        try:
            path.unlink()
        except OSError:
            pass
    return None


def disk_full_error(error: BaseException, folder: str | os.PathLike) -> DiskFullError | None:
    """A DiskFullError naming `folder` and its free space if `error` came from a full disk (or quota), else None.

    An OSError with ENOSPC/EDQUOT anywhere in the exception chain says so directly. torch.save (the Trainer's and
    DeepSpeed's checkpoint writer) only says "unexpected pos ... basic_ios::clear"; for those, a real write into
    `folder` finds out whether the file system is full.
    """
    folder = Path(folder)
    cause = next((e for e in _chain(error) if isinstance(e, OSError) and e.errno in _FULL_ERRNOS), None)
    if cause is None and any(_TORCH_WRITE_FAILURE.search(str(e)) for e in _chain(error)):
        cause = _probe(folder)
    if cause is None:
        return None
    try:
        usage = shutil.disk_usage(folder)
        space = f"{usage.free:,} of {usage.total:,} bytes free"
    except OSError:
        space = "free space unknown"
    code = cause.errno if cause.errno in _FULL_ERRNOS else errno.ENOSPC
    return DiskFullError(code, f"{os.strerror(code)} ({errno.errorcode[code]}) while writing under {folder} "
                               f"({space}); free space or move OUTPUT_DIR, then run the same command again: it "
                               f"resumes from the newest complete checkpoint. The write failed with: "
                               f"{type(error).__name__}: {error}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m llava_medgpt.train.exit_status",
                                     description="Print the exit code a run recorded in OUTPUT_DIR (nothing if none).")
    parser.add_argument("output_dir")
    parser.add_argument("--clear", action="store_true", help="remove the record instead (before a new run)")
    args = parser.parse_args(argv)
    if args.clear:
        (Path(args.output_dir) / STATUS_FILE).unlink(missing_ok=True)
        return 0
    status = read_exit_status(args.output_dir)
    if status is not None:
        print(int(status["exit_code"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
