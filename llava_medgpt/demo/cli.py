"""Web demo of a checkpoint: upload images or DICOM, see the tiles the model sees, chat with streaming replies.

    llava-medgpt-demo --model outputs/stage2            # http://127.0.0.1:7860, this machine only
    llava-medgpt-demo --model outputs/stage2 --host 0.0.0.0 --port 8080   # reachable from the network

Air-gapped by construction: gradio's analytics are off (GRADIO_ANALYTICS_ENABLED=False, analytics_enabled=False),
no share link, no server-side rendering process, and the page uses system fonts (no font CDN). Uploaded files and
the preview images exist only in a private temporary folder (gradio's GRADIO_TEMP_DIR), removed when the demo exits.
"""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-medgpt-demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default=None, help="cuda, cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .app import serve  # gradio, torch and transformers load only after the arguments parse

    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
