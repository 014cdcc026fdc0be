"""Merge the console output of several training ranks: a line every rank prints appears once; a line that only
some ranks print appears with its rank.

Run as: ... torchrun --tee 3 ... 2>&1 | python llava_medgpt/train/rank_logs.py   (scripts/_launch.sh does this,
        with TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE="[rank${rank}]:" so that torchrun tags each line; by path, so
        that the package, which loads transformers, is not imported)

Rank 0's lines are printed as they come. A line of another rank waits up to `hold` seconds for rank 0 to print
the same text (ranks run the same code, so mostly it does); if rank 0 does not, it is printed as "[rank N] ...".
A text already printed recently (the last `window` printed lines) is not printed again, whichever rank repeats it.
Texts are compared without a leading logging timestamp ("2026-12-02 05:35:50,157 "): two ranks logging the same
message a millisecond apart print it once (rank 0's copy).
Untagged lines (torchrun's own, srun's) pass through unchanged. The full per-rank logs stay in torchrun's
--log-dir. Standard library only, so it starts in milliseconds; it ignores the signals the launcher forwards to
the ranks and ends when its input ends, so nothing the ranks print on the way out is lost.
"""
# Standard library only (see above).

import os
import re
import select
import signal
import sys
from collections import OrderedDict
from dataclasses import dataclass, field

TAG = re.compile(r"^\[rank(\d+)\]:(.*)$", re.DOTALL)
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ ")  # logging's default %(asctime)s


@dataclass
class RankLogMerger:
    hold: float = 5.0  # seconds a non-zero rank's line waits for rank 0's copy
    window: int = 5000  # how many printed texts are remembered
    _printed: OrderedDict = field(default_factory=OrderedDict)  # key -> None, oldest first
    _pending: OrderedDict = field(default_factory=OrderedDict)  # key -> (rank, text, arrival time), oldest first

    def feed(self, line: str, now: float) -> list[str]:
        """Lines to print now for one input line (without its newline)."""
        out = self.due(now)
        match = TAG.match(line)
        if match is None:
            return out + [line]
        rank, text = int(match.group(1)), match.group(2)
        key = LOG_TIME.sub("", text, count=1)
        if key in self._printed:
            self._pending.pop(key, None)
            return out
        if rank == 0:
            self._pending.pop(key, None)
            self._remember(key)
            return out + [text]
        if key not in self._pending:
            self._pending[key] = (rank, text, now)
        return out

    def due(self, now: float) -> list[str]:
        """Held lines whose wait is over, tagged with their rank."""
        out = []
        while self._pending:
            key, (rank, text, arrived) = next(iter(self._pending.items()))
            if now - arrived < self.hold:
                break
            del self._pending[key]
            self._remember(key)
            out.append(f"[rank {rank}] {text}")
        return out

    def close(self) -> list[str]:
        return self.due(float("inf"))

    def _remember(self, key: str) -> None:
        self._printed[key] = None
        self._printed.move_to_end(key)
        while len(self._printed) > self.window:
            self._printed.popitem(last=False)


def run(fd_in: int, out, clock, hold: float = 5.0) -> None:
    merger = RankLogMerger(hold=hold)
    buffer = b""

    def emit(lines: list[str]) -> None:
        for line in lines:
            out.write(line + "\n")
        if lines:
            out.flush()

    while True:
        ready, _, _ = select.select([fd_in], [], [], 0.5)
        if not ready:
            emit(merger.due(clock()))
            continue
        chunk = os.read(fd_in, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            emit(merger.feed(raw.decode("utf-8", errors="replace"), clock()))
    if buffer:
        emit(merger.feed(buffer.decode("utf-8", errors="replace"), clock()))
    emit(merger.close())


def main() -> None:
    import time

    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    run(sys.stdin.fileno(), sys.stdout, time.monotonic)


if __name__ == "__main__":
    main()
