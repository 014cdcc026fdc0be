"""Run as: python -m llava_medgpt.eval --model CKPT --tasks slake,medqa --data-dir DATA --output OUT"""

from .runner import main

if __name__ == "__main__":
    main()
