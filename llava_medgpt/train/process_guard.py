"""Processes that die with their parent: the launcher owns torchrun, torchrun owns the ranks.

torchrun starts each rank in a session of its own (so that it can signal them as a group), which also takes them
out of the launcher's process group: a `kill -9` of the launcher shell and torchrun left the ranks training and
rotating checkpoints in OUTPUT_DIR, racing any rerun. Linux's parent-death signal (prctl(PR_SET_PDEATHSIG)) is
delivered by the kernel when the parent exits, however it exits, and survives exec:

- scripts/_launch.sh starts torchrun through `python -m llava_medgpt.train.process_guard --signal TERM
  --expect-parent $$ -- torchrun ...`: when the launcher dies, torchrun gets SIGTERM and shuts its ranks down the
  usual way (they save a checkpoint and exit 75);
- each rank (llava_medgpt.train.__main__, before importing torch) asks for SIGKILL when torchrun dies: without
  torchrun there is no rendezvous store and nobody to report to.

A parent that died before the request is caught by comparing the parent pid with the one expected
(--expect-parent, or LLAVA_MEDGPT_TORCHRUN_PID, which the guard exports before it becomes torchrun).
Standard library only: this runs before torch is imported.
"""

import argparse
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
TORCHRUN_PID_ENV = "LLAVA_MEDGPT_TORCHRUN_PID"


def set_parent_death_signal(sig: int) -> bool:
    """Have the kernel send `sig` to this process when its parent exits; False where unsupported (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    return True


def die_with_parent(sig: int, expected_parent: int | None) -> None:
    """set_parent_death_signal, and exit at once (signal `sig`) if the expected parent is already gone."""
    if set_parent_death_signal(sig) and expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)  # the parent exited before the request: nobody would send the signal
        sys.exit(128 + int(sig))


def guard_rank() -> None:
    """In a rank started by torchrun through the guard: SIGKILL when torchrun exits."""
    expected = os.environ.get(TORCHRUN_PID_ENV)
    if expected is not None:
        die_with_parent(signal.SIGKILL, int(expected))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llava_medgpt.train.process_guard",
                                     description="Run a command that receives a signal when this process's parent "
                                                 "exits (prctl PR_SET_PDEATHSIG, then exec).")
    parser.add_argument("--signal", default="TERM", help="signal name sent on the parent's death (default TERM)")
    parser.add_argument("--expect-parent", type=int, help="pid the parent must have (else exit at once)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command [args...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    die_with_parent(signal.Signals[f"SIG{args.signal.upper().removeprefix('SIG')}"], args.expect_parent)
    os.environ[TORCHRUN_PID_ENV] = str(os.getpid())  # exec keeps the pid: the command's children check it
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
