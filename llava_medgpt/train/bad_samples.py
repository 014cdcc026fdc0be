"""The bad-sample limit as part of the training state: checked over all ranks during training, saved in every
checkpoint, restored on resume.

Each rank counts the samples its batches requested and the ones skipped (`SkipReport`, fed by the trainer's
compute_loss). After every optimizer step the ranks add up their two numbers (one all-reduce): once at least
`min_samples` samples were seen in total, or at the last step whatever the number, a skipped fraction above
`max_fraction` raises `TooManyBadSamplesError` on every rank at the same step (one rank raising alone would leave
the others waiting in a collective). The error carries the combined report (counts per reason, example ids,
first errors), which is also written to OUTPUT_DIR/skipped_samples.json.

Every checkpoint holds each rank's counts (`skipped_samples.rank<R>.json`, covered by its manifest). A resumed run
starts from them, so a preemption neither resets the counts nor lets a rerun that trains zero steps replace the
evidence with an empty report; with another world size, rank 0 takes the sum of all saved ranks.
"""

import json
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from ..data.skips import SkipReport, TooManyBadSamplesError

logger = logging.getLogger(__name__)

RANK_FILE = "skipped_samples.rank{rank}.json"
TOTAL_FILE = "skipped_samples.json"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class BadSampleLimitCallback(TrainerCallback):
    def __init__(self, report: SkipReport):
        self.report = report  # this rank's; its max_fraction / min_samples are the limit

    # --------------------------------------------------------------------------------------------- the check

    def totals(self, device) -> tuple[int, int]:
        """(samples seen, samples skipped) summed over all ranks."""
        counts = torch.tensor([self.report.num_seen, self.report.num_skipped], dtype=torch.int64, device=device)
        if _distributed():
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        seen, skipped = (int(v) for v in counts.tolist())
        return seen, skipped

    def check(self, args, final: bool) -> None:
        """Raise TooManyBadSamplesError on every rank when the run's skipped fraction is over the limit.

        Collective: every rank must call it at the same point. final: ignore min_samples (end of training).
        """
        seen, skipped = self.totals(args.device)
        limit = self.report.max_fraction
        if not seen or skipped / seen <= limit or (seen < self.report.min_samples and not final):
            return
        combined = self.combined()
        if args.should_save:
            combined.write_json(Path(args.output_dir) / TOTAL_FILE)
        self.report.write_json(Path(args.output_dir) / RANK_FILE.format(rank=args.process_index))
        raise TooManyBadSamplesError(f"stopping: {combined.summary()}\nPer-rank and total counts in "
                                     f"{Path(args.output_dir) / TOTAL_FILE}")

    def combined(self) -> SkipReport:
        """All ranks' reports added up (collective)."""
        parts = [self.report.to_dict()]
        if _distributed():
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self.report.to_dict())
        total = SkipReport(max_fraction=self.report.max_fraction, min_samples=self.report.min_samples)
        for part in parts:
            total.merge(SkipReport.from_dict(part))
        return total

    def on_step_end(self, args, state, control, **kwargs):
        self.check(args, final=state.max_steps > 0 and state.global_step >= state.max_steps)
        return control

    # ---------------------------------------------------------------------------------- state in checkpoints

    def write_state(self, folder: Path, rank: int) -> None:
        """CheckpointIntegrityCallback state writer: this rank's counts into the checkpoint being sealed."""
        self.report.write_json(Path(folder) / RANK_FILE.format(rank=rank))

    def restore(self, folder: str | os.PathLike, rank: int, world_size: int) -> None:
        """Start from the counts saved in `folder` (a checkpoint this run resumes from)."""
        folder = Path(folder)
        saved = sorted(folder.glob(RANK_FILE.format(rank="*")))
        if not saved:
            logger.warning("%s holds no bad-sample counts (saved by an older version): counting from zero", folder)
            return
        settings = dict(max_fraction=self.report.max_fraction, min_samples=self.report.min_samples,
                        max_ids_per_reason=self.report.max_ids_per_reason)
        if len(saved) == world_size:
            mine = folder / RANK_FILE.format(rank=rank)
            _load_into(self.report, SkipReport.from_dict(json.loads(mine.read_text()), **settings))
        elif rank == 0:  # another world size: the counts only matter as a sum
            total = SkipReport(**settings)
            for path in saved:
                total.merge(SkipReport.from_dict(json.loads(path.read_text())))
            _load_into(self.report, total)
        else:
            _load_into(self.report, SkipReport(**settings))
        logger.info("Bad-sample counts restored from %s: %d of %d samples skipped on rank %d", folder,
                    self.report.num_skipped, self.report.num_seen, rank)

    def write_reports(self, args) -> None:
        """End of a run: this rank's report and (rank 0) the total in OUTPUT_DIR (collective)."""
        combined = self.combined()
        self.report.write_json(Path(args.output_dir) / RANK_FILE.format(rank=args.process_index))
        if args.should_save:
            combined.write_json(Path(args.output_dir) / TOTAL_FILE)


def _load_into(current: SkipReport, new: SkipReport) -> None:
    """`new`'s counts into `current`, in place (the trainer feeds the same object)."""
    current.num_seen, current.counts, current.ids, current.examples = new.num_seen, new.counts, new.ids, new.examples
