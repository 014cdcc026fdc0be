"""Chatting with a trained checkpoint: `ChatSession` (history, images per turn, streaming) shared by the terminal
chat (`python -m llava_medgpt.chat`, `llava-medgpt-chat`) and the web demo (`llava_medgpt.demo`)."""
