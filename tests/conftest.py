"""Test-wide settings: no hub access, few threads, a session-scoped tiny checkpoint per backbone."""

import os
import sys

# Any attempt to reach a hub fails fast instead of downloading (the tests must run offline).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The launch scripts the tests start (bash, sbatch) find `python` and `torchrun` on PATH: make them this
# interpreter's, also when pytest runs as .venv/bin/python without an activated environment.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Build (once per session) and return the folder of a tiny checkpoint: tiny_checkpoint("gpt_oss")."""
    import llava_medgpt

    built = {}

    def get(text_backbone: str = "gpt_oss", vision_backbone: str = "clip"):
        key = (text_backbone, vision_backbone)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{text_backbone}-{vision_backbone}")
            built[key] = llava_medgpt.create_tiny_checkpoint(folder, text_backbone, vision_backbone)
        return built[key]

    return get


@pytest.fixture(scope="session")
def trained_chat_checkpoint(tiny_checkpoint, tmp_path_factory):
    """A tiny gpt_oss checkpoint overfitted to known harmony replies (tests/chat_fixtures.py), and its PNG."""
    from chat_fixtures import train_chat_checkpoint, write_red_png

    folder = tmp_path_factory.mktemp("trained-chat")
    png = write_red_png(folder / "red.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two contending ones
    try:
        checkpoint = train_chat_checkpoint(tiny_checkpoint("gpt_oss"), folder / "checkpoint", png)
    finally:
        torch.set_num_threads(threads)
    return checkpoint, png
