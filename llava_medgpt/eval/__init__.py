"""Evaluation harness for the paper's benchmarks (section 4): task definitions, prompts, strict scoring,
report metrics, batched deterministic generation, paper-style tables.

Run as: python -m llava_medgpt.eval --model CKPT --tasks table4,table5 --data-dir DATA --output OUT
"""
