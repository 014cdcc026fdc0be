"""The chat CLI as a user runs it: through a pseudo-terminal and through stdin, on a tiny checkpoint trained to give
known harmony replies (tests/chat_fixtures.py), so the test reads real answers in the order they stream."""

import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from chat_fixtures import (
    ANSWER_1,
    ANSWER_2,
    QUESTION_1,
    QUESTION_2,
    REASONING_1,
    REASONING_2,
    dicom_path,
)
from test_eval_baselines import tiny_causal_lm, tiny_gemma3  # noqa: F401  (fixtures: tiny baseline checkpoints)

ROOT = Path(__file__).resolve().parents[1]
CHAT = [sys.executable, "-m", "llava_medgpt.chat"]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


class Terminal:
    """A process on a pseudo-terminal (no echo): send a line, read until the next prompt."""

    def __init__(self, argv: list[str], stderr_path: Path):
        self.master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.stderr = open(stderr_path, "wb")
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=self.stderr, env=_env(), cwd=ROOT)
        os.close(slave)
        self.output = ""

    def read_until(self, marker: str, count: int, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while self.output.count(marker) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no {marker!r} #{count} in time; output so far:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], 1.0)
            if ready:
                try:
                    self.output += os.read(self.master, 4096).decode("utf-8", "replace").replace("\r\n", "\n")
                except OSError:  # the process closed the terminal
                    break
        return self.output

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        try:
            return self.process.wait(timeout=60)
        finally:
            os.close(self.master)
            self.stderr.close()


def test_interactive_multi_turn_with_an_image_then_a_dicom(trained_chat_checkpoint, tmp_path):
    checkpoint, png = trained_chat_checkpoint
    terminal = Terminal(CHAT + ["--model", str(checkpoint), "--image", str(png), "--show-reasoning",
                                "--max-new-tokens", "40"], tmp_path / "stderr.txt")
    try:
        terminal.read_until("you> ", 1)
        assert "Chatting with" in terminal.output  # a terminal gets the banner
        terminal.send(QUESTION_1)
        terminal.read_until("you> ", 2)
        terminal.send(f"/image {dicom_path()}")
        terminal.read_until("you> ", 3)
        terminal.send(QUESTION_2)
        out = terminal.read_until("you> ", 4)
        terminal.send("/quit")
        assert terminal.close() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    turn_1 = f"reasoning> {REASONING_1}\nanswer> {ANSWER_1}\n"
    turn_2 = f"reasoning> {REASONING_2}\nanswer> {ANSWER_2}\n"
    assert turn_1 in out and turn_2 in out
    assert out.index(turn_1) < out.index("(image 1 for the next message: ") < out.index(turn_2)


def test_stdin_hides_reasoning_unless_asked(trained_chat_checkpoint):
    checkpoint, png = trained_chat_checkpoint
    result = subprocess.run(CHAT + ["--model", str(checkpoint), "--image", str(png), "--max-new-tokens", "40"],
                            input=f"{QUESTION_1}\n", capture_output=True, text=True, env=_env(), cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"you> assistant> {ANSWER_1}\nyou> \n"
    assert REASONING_1 not in result.stdout


def test_one_shot_prompt_prints_the_answer_and_stats(trained_chat_checkpoint):
    checkpoint, png = trained_chat_checkpoint
    result = subprocess.run(CHAT + ["--model", str(checkpoint), "--image", str(png), "--prompt", QUESTION_1,
                                    "--stats"], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER_1 + "\n"
    assert "first token" in result.stderr and "tok/s" in result.stderr


def test_one_shot_with_a_missing_image_names_it(trained_chat_checkpoint, tmp_path):
    checkpoint, _ = trained_chat_checkpoint
    missing = tmp_path / "nope.dcm"
    result = subprocess.run(CHAT + ["--model", str(checkpoint), "--image", str(missing), "--prompt", "Q"],
                            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert f"cannot load image {missing}: no such file" in result.stderr


def test_streaming_is_token_by_token_and_channels_come_in_order(trained_chat_checkpoint):
    import llava_medgpt  # noqa: F401
    from llava_medgpt.chat.session import ChatSession, load_chat_session_model
    from llava_medgpt.inference.streaming import GenerationSettings

    checkpoint, png = trained_chat_checkpoint
    session = ChatSession(load_chat_session_model(str(checkpoint), device="cpu"),
                          settings=GenerationSettings(max_new_tokens=40))
    deltas = list(session.ask(QUESTION_1, [png]))
    channels = [d.channel for d in deltas]
    assert channels == sorted(channels, key=["analysis", "final"].index)  # all analysis, then all final
    assert "".join(d.text for d in deltas if d.channel == "analysis") == REASONING_1
    assert "".join(d.text for d in deltas if d.channel == "final") == ANSWER_1
    tokens = [d.tokens for d in deltas]
    assert tokens == sorted(set(tokens)) and len(deltas) >= 4  # one delta per text token, as generated
    assert tokens[0] < session.last_stats.new_tokens  # the first text left before generation ended
    assert session.history[-1] == {"role": "assistant", "content": ANSWER_1, "reasoning": REASONING_1}
    assert session.history[-2] == {"role": "user", "content": "<image>\n" + QUESTION_1}
    # Turn 2 sees turn 1 (without its reasoning) and both images, in order.
    deltas = list(session.ask(QUESTION_2, [dicom_path()]))
    assert "".join(d.text for d in deltas if d.channel == "final") == ANSWER_2
    assert len(session.images) == 2


def test_help_does_not_load_torch_or_the_model_code():
    code = ("import sys\nfrom llava_medgpt.chat.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('terminal loaded:', 'llava_medgpt.chat.terminal' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT,
                            timeout=300)
    assert "--show-reasoning" in result.stdout and "/image PATH" in result.stdout
    assert "terminal loaded: False" in result.stdout


def test_reasoning_effort_and_system_reach_the_prompt(trained_chat_checkpoint):
    import llava_medgpt  # noqa: F401
    from llava_medgpt.chat.session import ChatSession, load_chat_session_model

    checkpoint, _ = trained_chat_checkpoint
    chat = load_chat_session_model(str(checkpoint), device="cpu")
    assert "Reasoning: medium\n" in ChatSession(chat).prompt("Q")  # the checkpoint's own option
    prompt = ChatSession(chat, reasoning_effort="high", system="Be brief.").prompt("Q", num_images=2)
    assert "Reasoning: high\n" in prompt
    assert "<|start|>developer<|message|># Instructions\n\nBe brief.<|end|>" in prompt
    assert prompt.endswith("<|start|>user<|message|><image>\n<image>\nQ<|end|><|start|>assistant")


def test_baseline_families_stream_what_the_eval_backend_generates(tiny_gemma3, tiny_causal_lm, trained_chat_checkpoint):
    """Chat works with any checkpoint the harness loads: the streamed text equals HFBackend's greedy output."""
    import llava_medgpt  # noqa: F401
    from PIL import Image

    from llava_medgpt.chat.session import ChatSession, load_chat_session_model
    from llava_medgpt.inference.generate import HFBackend
    from llava_medgpt.inference.streaming import GenerationSettings

    _, png = trained_chat_checkpoint
    for folder, images in ((tiny_gemma3, [png]), (tiny_causal_lm, [])):
        chat = load_chat_session_model(str(folder), device="cpu")
        session = ChatSession(chat, reasoning_effort="high", settings=GenerationSettings(max_new_tokens=8))
        deltas = list(session.ask("Describe the findings.", images))
        assert {d.channel for d in deltas} == {"final"}  # no harmony: everything is the answer
        loaded = [Image.open(path).convert("RGB") for path in images]
        expected = HFBackend(chat).generate([session.history[:1]], [loaded], max_new_tokens=8)[0]
        assert "".join(d.text for d in deltas) == expected
    with pytest.raises(ValueError, match="text-only"):
        list(session.ask("And this?", [png]))
