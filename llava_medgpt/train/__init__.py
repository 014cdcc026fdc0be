"""The curriculum trainer: arguments, freezing, per-module learning rates, preemption-safe checkpoints.

Run as: torchrun --nproc_per_node N -m llava_medgpt.train ...   (scripts/stage{0,1,2}_*.sh build the command)
"""
