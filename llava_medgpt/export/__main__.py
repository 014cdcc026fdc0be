"""Run as: python -m llava_medgpt.export --to transformers-internvl CKPT OUT  (llava_medgpt/export/cli.py)"""

import sys

from .cli import main

sys.exit(main())
