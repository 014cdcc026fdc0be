"""Save and stop on SIGTERM / SIGUSR1, so a preempted or time-limited SLURM job can requeue and resume.

The signal handler only sets a flag. At the end of each optimizer step the ranks agree on the flag (one all-reduce
of a single number; ranks receive a signal at slightly different moments, and a save on some ranks but not others
would deadlock the collective save); if any rank saw a signal, the Trainer saves a checkpoint and stops, and the
entrypoint exits with REQUEUE_EXIT_CODE, which scripts/_launch.sh turns into `scontrol requeue`.
"""

import signal

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from .exit_status import EXIT_REQUEUE as REQUEUE_EXIT_CODE  # noqa: F401  (exported under this name)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionCallback(TrainerCallback):
    def __init__(self, signals: tuple[int, ...] = HANDLED_SIGNALS):
        self.signal_received: int | None = None
        self.stopped_for_preemption = False
        for signum in signals:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal_received = signum

    def _any_rank_signalled(self, device: torch.device) -> bool:
        flag = torch.tensor([1.0 if self.signal_received is not None else 0.0], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._any_rank_signalled(args.device):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_for_preemption = True
        return control
