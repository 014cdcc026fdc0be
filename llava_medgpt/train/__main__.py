"""Run as: torchrun --nproc_per_node N -m llava_medgpt.train [arguments]  (see llava_medgpt/train/train.py)"""

import sys

from .train import main

sys.exit(main())
