"""The web demo (`llava-medgpt-demo`, `python -m llava_medgpt.demo`): Gradio UI over a `ChatSession`."""
