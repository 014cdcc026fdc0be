"""`import llava_medgpt` imports no torch / transformers / deepspeed, CLIs answer --help without them, and the
Auto-class registration still happens on every loading path (each case in a fresh interpreter)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "deepspeed")
CLIS = ["llava_medgpt.eval", "llava_medgpt.data.convert", "llava_medgpt.data.decontaminate",
        "llava_medgpt.data.recipes", "llava_medgpt.data.demo", "llava_medgpt.data.curate", "llava_medgpt.model.tiny",
        "llava_medgpt.model.dequantize", "llava_medgpt.model.convert_biomedclip", "llava_medgpt.chat",
        "llava_medgpt.train", "llava_medgpt.settings"]


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_import_llava_medgpt_imports_no_heavy_library():
    out = run_python("-c", "import sys, llava_medgpt, llava_medgpt.eval.tasks, llava_medgpt.benchmarks; "
                           f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", CLIS)
def test_cli_help_imports_no_heavy_library(module):
    out = run_python("-X", "importtime", "-m", module, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from llava_medgpt import create_tiny_checkpoint

    return create_tiny_checkpoint(tmp_path_factory.mktemp("lazy") / "tiny", text_backbone="qwen2")


def test_user_import_then_auto_classes_load_the_checkpoint(tiny):
    """The README's use: import llava_medgpt, then transformers' Auto classes, nothing else."""
    code = f"""
import sys
import llava_medgpt
assert "transformers" not in sys.modules
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
config = AutoConfig.from_pretrained({str(tiny)!r}, trust_remote_code=False)
model = AutoModelForImageTextToText.from_pretrained({str(tiny)!r}, trust_remote_code=False)
processor = AutoProcessor.from_pretrained({str(tiny)!r}, trust_remote_code=False)
print(type(config).__name__, type(model).__name__, type(processor).__name__)
# the harness's loading path and the lazy attributes give the same classes
from llava_medgpt.inference.models import load_chat_model
from llava_medgpt.model import MedGptForConditionalGeneration
chat = load_chat_model({str(tiny)!r})
print(llava_medgpt.MedGptConfig is type(chat.model.config), isinstance(chat.model, MedGptForConditionalGeneration))
"""
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["MedGptConfig", "MedGptForConditionalGeneration", "MedGptProcessor", "True", "True"]


def test_registration_when_transformers_came_first(tiny):
    code = f"""
from transformers import AutoConfig
import llava_medgpt
print(type(AutoConfig.from_pretrained({str(tiny)!r}, trust_remote_code=False)).__name__)
"""
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "MedGptConfig"


def test_registration_when_a_module_it_needs_imports_transformers_first(tiny):
    """data.dataset -> processing.processor is the first to import transformers: the registration waits until
    processor.py (which it needs) has finished, instead of importing it half-initialised."""
    code = f"""
import sys
from llava_medgpt.data.dataset import MedGptDataset
from transformers import AutoConfig, AutoProcessor
print(type(AutoConfig.from_pretrained({str(tiny)!r}, trust_remote_code=False)).__name__,
      type(AutoProcessor.from_pretrained({str(tiny)!r}, trust_remote_code=False)).__name__)
"""
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["MedGptConfig", "MedGptProcessor"]


def test_unknown_attribute_is_an_attribute_error():
    missing = run_python("-c", "import llava_medgpt; llava_medgpt.NoSuchThing")
    assert "module 'llava_medgpt' has no attribute 'NoSuchThing'" in missing.stderr


@pytest.mark.parametrize("first", ["llava_medgpt.model.backbones", "llava_medgpt.model.configuration",
                                   "llava_medgpt.model.modeling", "llava_medgpt.processing.image_processor",
                                   "llava_medgpt.processing.processor"])
def test_registration_when_one_of_our_modules_imports_transformers_first(first):
    """The module that imports transformers is itself half executed when transformers finishes: registration waits
    for it instead of failing on a circular import (as test files importing these first did)."""
    code = f"""
import {first}
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
from llava_medgpt.model.configuration import MedGptConfig
assert CONFIG_MAPPING["llava_medgpt"] is MedGptConfig
assert MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[MedGptConfig].__name__ == "MedGptForConditionalGeneration"
assert PROCESSOR_MAPPING[MedGptConfig].__name__ == "MedGptProcessor"
print("registered")
"""
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "registered"
