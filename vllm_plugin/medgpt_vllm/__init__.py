"""vLLM plugin for MedGPT-oss: serves llava_medgpt checkpoint folders (config model_type "llava_medgpt",
architecture MedGptForConditionalGeneration) with vLLM, offline (`vllm.LLM`) and through its OpenAI server.

vLLM calls `register` in every process it starts (entry point group `vllm.general_plugins`). Nothing here imports
llava_medgpt: the two environments pin different transformers. Modules:

    tiling.py      the tile rule (pure Python)
    images.py      decoding + tile pixels (PIL, numpy, torch)
    config.py      the checkpoint config class for vLLM's transformers
    processing.py  vLLM multimodal processor: tiles, placeholder expansion, per-request tile budget
    model.py       the model: vLLM's CLIP tower -> our projector -> vLLM's GPT-oss (or another registered LM)
"""

ARCHITECTURE = "MedGptForConditionalGeneration"


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from .config import MODEL_TYPE, MedGptVllmConfig

    try:
        AutoConfig.register(MODEL_TYPE, MedGptVllmConfig)
    except ValueError:  # already registered in this process
        pass
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        # The "module:Class" form defers importing torch-heavy code until a model of this architecture loads.
        ModelRegistry.register_model(ARCHITECTURE, "medgpt_vllm.model:MedGptForConditionalGeneration")
