"""Run as: torchrun --nproc_per_node N -m llava_medgpt.train [arguments]  (see llava_medgpt/train/train.py)"""

import sys

from .process_guard import guard_rank

guard_rank()  # first, before torch is imported: a rank must not outlive the torchrun that started it

from .arguments import handle_help  # noqa: E402

if handle_help(sys.argv[1:]):  # before torch is imported: --help answers at once
    sys.exit(0)

from .train import main  # noqa: E402

sys.exit(main())
