"""The terminal chat loop behind `llava-medgpt-chat` (arguments in cli.py)."""

import argparse
import sys
import threading

import torch

from ..inference.streaming import GenerationSettings
from ..processing.harmony import FINAL
from ..processing.image_io import ImageLoadError
from .cli import COMMANDS
from .session import ChatSession, load_chat_session_model

USER_PROMPT = "you> "


class ReplyPrinter:
    """Writes deltas as they come: each channel change starts a new labelled line."""

    def __init__(self, out, show_reasoning: bool, answer_label: str):
        self.out, self.show_reasoning, self.answer_label = out, show_reasoning, answer_label
        self.channel = None

    def write(self, delta) -> None:
        if delta.channel != FINAL and not self.show_reasoning:
            return
        if delta.channel != self.channel:
            if self.channel is not None:
                self.out.write("\n")
            label = self.answer_label if delta.channel == FINAL else ("reasoning> " if delta.channel == "analysis"
                                                                       else f"{delta.channel}> ")
            self.out.write(label)
            self.channel = delta.channel
        self.out.write(delta.text)
        self.out.flush()

    def finish(self) -> None:
        if self.channel is None:
            self.out.write(self.answer_label)
        self.out.write("\n")
        self.out.flush()


def _reply(session: ChatSession, text: str, images: list[str], args, answer_label: str) -> None:
    printer = ReplyPrinter(sys.stdout, args.show_reasoning, answer_label)
    stop = threading.Event()
    try:
        for delta in session.ask(text, images, stop):
            printer.write(delta)
    except KeyboardInterrupt:
        stop.set()  # the worker stops at its next token; the partial reply is dropped from the history
        sys.stdout.write(" [stopped]")
    printer.finish()
    if args.stats and session.last_stats is not None:
        stats = session.last_stats
        speed = f"{stats.tokens_per_s:.1f} tok/s" if stats.tokens_per_s else "n/a tok/s"
        ttft = f"{1000 * stats.first_token_s:.0f} ms" if stats.first_token_s is not None else "n/a"
        print(f"[prompt {stats.prompt_tokens} tokens, first token {ttft}, {stats.new_tokens} new tokens, {speed}]",
              file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    torch.set_grad_enabled(False)
    chat = load_chat_session_model(args.model, device=args.device, dtype=args.dtype)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                                  temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    session = ChatSession(chat, reasoning_effort=args.reasoning, system=args.system, settings=settings)
    pending = list(args.image)

    if args.prompt is not None:
        label = "answer> " if args.show_reasoning else ""
        try:
            _reply(session, args.prompt, pending, args, label)
        except (ImageLoadError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0

    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {args.model} ({chat.model_type}). /help for commands.")
    label = "answer> " if args.show_reasoning else "assistant> "
    while True:
        sys.stdout.write(USER_PROMPT)
        sys.stdout.flush()
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            print()
            return 0
        if not line:  # end of input
            print()
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            command, _, argument = line.partition(" ")
            if command == "/quit":
                return 0
            if command == "/reset":
                session.reset()
                pending = []
                print("(new conversation)")
            elif command == "/image" and argument.strip():
                pending.append(argument.strip())
                print(f"(image {len(pending)} for the next message: {argument.strip()})")
            elif command == "/help":
                for name, meaning in COMMANDS.items():
                    print(f"  {name:<12} {meaning}")
            else:
                print(f"unknown command {line!r}; /help lists them")
            continue
        try:
            _reply(session, line, pending, args, label)
        except (ImageLoadError, ValueError) as err:
            print(f"error: {err}")
        pending = []
