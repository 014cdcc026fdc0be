"""Run as: python -m llava_medgpt.demo --model CKPT [--host 127.0.0.1] [--port 7860]  (llava_medgpt/demo/cli.py)"""

import sys

from .cli import main

sys.exit(main())
