"""Console scripts: setup.py installs one per command, and each behaves exactly as its `python -m` form."""

import ast
import contextlib
import io
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llava_medgpt.cli import CONSOLE_SCRIPTS

ROOT = Path(__file__).resolve().parents[1]


def _setup_console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entries = ast.literal_eval(node.value)["console_scripts"]
            return dict(entry.split("=", 1) for entry in entries)
    raise AssertionError("setup.py has no entry_points")


def test_setup_installs_every_command_through_cli():
    scripts = _setup_console_scripts()
    assert scripts == {name: f"llava_medgpt.cli:{function.__name__}" for name, (function, _) in
                       CONSOLE_SCRIPTS.items()}
    assert set(scripts) >= {"llava-medgpt-train", "llava-medgpt-eval", "llava-medgpt-convert",
                            "llava-medgpt-chat", "llava-medgpt-curate"}


def _run(call, argv: list[str]) -> tuple[int, str]:
    """Run `call` with sys.argv = argv in this process; (exit code, stdout with the program name blanked)."""
    out, saved = io.StringIO(), sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out):
            try:
                code = call()
            except SystemExit as stop:
                code = stop.code
    finally:
        sys.argv = saved
    # argparse wraps the usage lines by the program name's length: compare words, not line breaks.
    text = " ".join(re.sub(r"^usage: \S+", "usage: PROG", out.getvalue(), flags=re.M).split())
    return (0 if code is None else code), text


@pytest.mark.parametrize("name", sorted(CONSOLE_SCRIPTS))
def test_console_script_equals_python_dash_m(name):
    function, module = CONSOLE_SCRIPTS[name]
    script_code, script_help = _run(function, [name, "--help"])
    module_code, module_help = _run(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True),
                                    [module, "--help"])
    assert script_code == module_code == 0
    assert script_help == module_help and "usage: PROG" in script_help


def test_installed_chat_script_runs():
    """Where the package is installed (pip install -e .), the script is on the interpreter's bin folder."""
    script = shutil.which("llava-medgpt-chat", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.fail("llava-medgpt-chat is not installed beside this interpreter: run `pip install -e .` again")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "usage: llava-medgpt-chat" in result.stdout
