"""Run as: python -m llava_medgpt.chat --model CKPT [--image a.png ...] [--prompt TEXT]  (llava_medgpt/chat/cli.py)"""

import sys

from .cli import main

sys.exit(main())
