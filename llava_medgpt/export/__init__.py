"""Exporting checkpoints to formats other stacks load without llava_medgpt (`llava-medgpt-export`)."""
