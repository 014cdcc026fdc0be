"""Console scripts installed by `pip install` (setup.py entry_points): each is exactly its `python -m` form.

    llava-medgpt-train    python -m llava_medgpt.train         (under torchrun / the stage scripts)
    llava-medgpt-eval     python -m llava_medgpt.eval
    llava-medgpt-convert  python -m llava_medgpt.data.convert
    llava-medgpt-curate   python -m llava_medgpt.data.curate
    llava-medgpt-chat     python -m llava_medgpt.chat
    llava-medgpt-export   python -m llava_medgpt.export
    llava-medgpt-demo     python -m llava_medgpt.demo

Each function imports its command only when called, so installing or listing the scripts loads nothing heavy.
"""

import sys


def train() -> int:
    from .train.arguments import handle_help

    if handle_help(sys.argv[1:]):
        return 0
    from .train.train import main

    return main()


def evaluate() -> int:
    from .eval.runner import main

    main()  # returns the results dict; `python -m llava_medgpt.eval` exits 0 once it has written them
    return 0


def convert() -> int:
    from .data.convert import main

    return main()


def curate() -> int:
    from .data.curate.__main__ import main

    return main()


def chat() -> int:
    from .chat.cli import main

    return main()


def export() -> int:
    from .export.cli import main

    return main()


def demo() -> int:
    from .demo.cli import main

    return main()


# console script -> (function here, the module `python -m` runs)
CONSOLE_SCRIPTS = {
    "llava-medgpt-train": (train, "llava_medgpt.train"),
    "llava-medgpt-eval": (evaluate, "llava_medgpt.eval"),
    "llava-medgpt-convert": (convert, "llava_medgpt.data.convert"),
    "llava-medgpt-curate": (curate, "llava_medgpt.data.curate"),
    "llava-medgpt-chat": (chat, "llava_medgpt.chat"),
    "llava-medgpt-export": (export, "llava_medgpt.export"),
    "llava-medgpt-demo": (demo, "llava_medgpt.demo"),
}

if __name__ == "__main__":
    sys.exit("run one of: " + ", ".join(CONSOLE_SCRIPTS))
