"""Run as: torchrun --nproc_per_node N -m llava_medgpt.train [arguments]  (see llava_medgpt/train/train.py)"""

import sys

if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
    # The flags only: no model, data or DeepSpeed imports.
    from .arguments import parse_args
    from .known_warnings import filter_known_warnings

    filter_known_warnings()
    parse_args(sys.argv[1:])  # argparse prints the help and exits

from .train import main

sys.exit(main())
