"""Chat with a checkpoint in the terminal, streaming the reply as it is generated.

    llava-medgpt-chat --model outputs/stage2 --image cxr.png                 # interactive, image in turn 1
    llava-medgpt-chat --model outputs/stage2 --image prior.dcm --image current.dcm --prompt "Any change?"
    llava-medgpt-chat --model outputs/stage2 --reasoning high --show-reasoning

Interactive commands: /image PATH (attach to the next message; repeat for several), /reset (new conversation),
/help, /quit (or end of input). Ctrl-C stops the reply being generated. Without --show-reasoning the harmony
analysis channel is not printed; with it, it is printed first, marked "reasoning>", then the answer, "answer>".
`--stats` prints time to first token and tokens/s after each reply (on stderr).
Works with any checkpoint `llava_medgpt.inference.load_chat_model` loads (ours and the baseline families).
"""

import argparse
import sys

REASONING_CHOICES = ("low", "medium", "high")
COMMANDS = {"/image PATH": "attach an image (PNG/JPEG/DICOM...) to the next message",
            "/reset": "start a new conversation", "/help": "show this help", "/quit": "leave"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-medgpt-chat", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--model", required=True, help="checkpoint folder (a stage output, a baseline, ...)")
    parser.add_argument("--image", action="append", default=[], metavar="PATH",
                        help="image for the first message (repeat for several, in order: prior first)")
    parser.add_argument("--prompt", help="ask this one question, print the reply and exit")
    parser.add_argument("--system", help="system / developer instructions for the conversation")
    parser.add_argument("--reasoning", choices=REASONING_CHOICES, help="harmony reasoning effort "
                        "(default: the checkpoint's template option)")
    parser.add_argument("--show-reasoning", action="store_true", help="print the analysis channel too")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, help="seed for sampling")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                        help="default: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--stats", action="store_true", help="print time to first token and tokens/s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .terminal import run  # torch / transformers load only after the arguments parse

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
