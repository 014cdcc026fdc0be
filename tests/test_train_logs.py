"""Short training logs: the rank-merging console filter and the known third-party warning filters."""

import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from llava_medgpt.train.known_warnings import KNOWN_WARNINGS, filter_known_warnings
from llava_medgpt.train.rank_logs import RankLogMerger

REPO = Path(__file__).resolve().parents[1]


def feed(merger, events):
    out = []
    for now, line in events:
        out += merger.feed(line, now)
    return out + merger.close()


def test_a_line_every_rank_prints_appears_once_whichever_rank_is_first():
    merger = RankLogMerger(hold=5.0)
    out = feed(merger, [(0.0, "[rank1]:DeepSpeed op built"), (0.2, "[rank0]:DeepSpeed op built"),
                        (1.0, "[rank0]:step 1"), (1.1, "[rank1]:step 1"), (60.0, "[rank1]:DeepSpeed op built")])
    assert out == ["DeepSpeed op built", "step 1"]


def test_a_line_only_some_ranks_print_keeps_its_rank_after_the_hold():
    merger = RankLogMerger(hold=5.0)
    assert merger.feed("[rank1]:Traceback (most recent call last):", 0.0) == []
    assert merger.feed("[rank0]:{'loss': 2.5}", 1.0) == ["{'loss': 2.5}"]
    assert merger.feed("[rank0]:{'loss': 2.1}", 6.0) == ["[rank 1] Traceback (most recent call last):",
                                                         "{'loss': 2.1}"]
    assert merger.feed("[rank1]:rank one only", 7.0) == []
    assert merger.close() == ["[rank 1] rank one only"]  # nothing held is lost at the end


def test_lines_that_differ_between_ranks_are_all_kept_and_untagged_lines_pass_through():
    merger = RankLogMerger(hold=0.0)
    out = feed(merger, [(0.0, "[rank0]:WARNING x on cuda:0"), (0.0, "[rank1]:WARNING x on cuda:1"),
                        (0.0, "torchrun: worker 1 exited"), (0.0, "[rank12]:from node two")])
    assert out == ["WARNING x on cuda:0", "[rank 1] WARNING x on cuda:1", "torchrun: worker 1 exited",
                   "[rank 12] from node two"]


def test_the_same_log_record_a_millisecond_apart_on_two_ranks_appears_once():
    # The CI run that failed: both ranks logged transformers' special-token warning, 1 ms apart.
    message = "WARNING transformers.trainer_utils: The tokenizer has new PAD/BOS/EOS tokens"
    merger = RankLogMerger(hold=5.0)
    out = feed(merger, [(0.0, f"[rank1]:2026-12-02 05:35:50,157 {message}"),
                        (0.1, f"[rank0]:2026-12-02 05:35:50,158 {message}"),
                        (1.0, "[rank0]:2026-12-02 05:35:51,000 INFO x: rank 0 only"),
                        (1.0, "[rank1]:2026-12-02 05:35:51,000 INFO x: rank 1 only")])
    assert out == [f"2026-12-02 05:35:50,158 {message}", "2026-12-02 05:35:51,000 INFO x: rank 0 only",
                   "[rank 1] 2026-12-02 05:35:51,000 INFO x: rank 1 only"]


def test_the_filter_process_merges_a_stream_and_outlives_the_signals_sent_to_the_ranks():
    proc = subprocess.Popen([sys.executable, str(REPO / "llava_medgpt" / "train" / "rank_logs.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write("[rank0]:line 0\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "line 0\n"  # running, its signal handlers installed
    for signal_number in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):  # what a preempted job's ranks get
        proc.send_signal(signal_number)
    rest = "[rank1]:line 0\n" + "".join(f"[rank{r}]:line {i}\n" for i in (1, 2) for r in (0, 1)) + "[rank1]:only 1"
    out, _ = proc.communicate(rest, timeout=30)
    assert proc.returncode == 0
    assert out.splitlines() == ["line 1", "line 2", "[rank 1] only 1"]  # the last line had no newline


@pytest.mark.parametrize("message, category, module", [
    ("`torch.distributed.reduce_scatter_tensor` is deprecated. Please use `torch.distributed.reduce_scatter_single` "
     "instead.", FutureWarning, "torch.distributed.c10d_logger"),
    ("`torch.distributed.all_gather_into_tensor` is deprecated. Please use `torch.distributed.all_gather_single` "
     "instead.", FutureWarning, "torch.distributed.c10d_logger"),
    ("`gradient_checkpointing` is deprecated and will be removed in v6. Use `activation_checkpointing` instead.",
     FutureWarning, "transformers.training_args"),
    ("`gradient_checkpointing_kwargs` is deprecated and will be removed in v6. Use "
     "`activation_checkpointing_kwargs` instead.", FutureWarning, "transformers.training_args"),
])
def test_exactly_the_known_warnings_are_filtered(message, category, module):
    def shown(message, category, module):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            filter_known_warnings()
            warnings.warn_explicit(message, category, "x.py", 1, module=module, registry={})
        return len(caught)

    assert len(KNOWN_WARNINGS) == 4
    assert shown(message, category, module) == 0
    assert shown(message, category, "llava_medgpt.train.train") == 1  # the same text raised elsewhere
    assert shown(message, UserWarning, module) == 1  # another category
    assert shown("some other deprecation", category, module) == 1  # another message from the same module
