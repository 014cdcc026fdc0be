"""llava_medgpt: training and evaluation stack for MedGPT-oss (GPT-oss + CLIP-ViT-L/14@336 + MLP projector).

Importing the package registers its classes with transformers' Auto classes, so `from_pretrained` works on a
checkpoint folder without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .model import MedGptConfig, MedGptForConditionalGeneration
from .model.tiny import create_tiny_checkpoint
from .processing.image_processor import MedGptImageProcessor
from .processing.processor import MedGptProcessor

AutoConfig.register(MedGptConfig.model_type, MedGptConfig)
AutoModel.register(MedGptConfig, MedGptForConditionalGeneration)
AutoModelForImageTextToText.register(MedGptConfig, MedGptForConditionalGeneration)
AutoImageProcessor.register(MedGptConfig, image_processor_classes={"pil": MedGptImageProcessor})
AutoProcessor.register(MedGptConfig, MedGptProcessor)

__all__ = [
    "MedGptConfig",
    "MedGptForConditionalGeneration",
    "MedGptImageProcessor",
    "MedGptProcessor",
    "create_tiny_checkpoint",
]
