"""Inference below evaluation, chat, serving and curation: load any checkpoint the harness supports and generate.

    models.py     load_chat_model(path) -> ChatModel (our model or a baseline family, via an explicit registry)
    generate.py   GenerationBackend protocol; HFBackend (transformers generate, batched, greedy)
    harmony.py    GPT-oss outputs: the final channel apart from the analysis channel

Layering: imports processing and model only; eval, chat, demo and curation build on it.
"""
