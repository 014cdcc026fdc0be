"""llava_medgpt: training and evaluation stack for MedGPT-oss (GPT-oss + CLIP-ViT-L/14@336 + MLP projector).

Importing the package registers its classes with transformers' Auto classes, so `from_pretrained` works on a
checkpoint folder without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .model import MedGptConfig, MedGptForConditionalGeneration

AutoConfig.register(MedGptConfig.model_type, MedGptConfig)
AutoModel.register(MedGptConfig, MedGptForConditionalGeneration)
AutoModelForImageTextToText.register(MedGptConfig, MedGptForConditionalGeneration)

__all__ = ["MedGptConfig", "MedGptForConditionalGeneration"]
