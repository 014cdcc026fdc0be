"""Registration of the MedGPT classes with transformers' Auto classes (no `trust_remote_code` needed).

`register_auto_classes()` is idempotent. It runs on its own as soon as transformers is imported in a process
that imported `llava_medgpt` (see `llava_medgpt/__init__.py`), and the loading paths call it explicitly too.
"""

_registered = False


def register_auto_classes() -> None:
    """AutoConfig / AutoModel / AutoModelForImageTextToText / AutoImageProcessor / AutoProcessor know
    model_type "llava_medgpt" after this call."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

    from ..processing.image_processor import MedGptImageProcessor
    from ..processing.processor import MedGptProcessor
    from .configuration import MedGptConfig
    from .modeling import MedGptForConditionalGeneration

    AutoConfig.register(MedGptConfig.model_type, MedGptConfig, exist_ok=True)
    AutoModel.register(MedGptConfig, MedGptForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(MedGptConfig, MedGptForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(MedGptConfig, image_processor_classes={"pil": MedGptImageProcessor}, exist_ok=True)
    AutoProcessor.register(MedGptConfig, MedGptProcessor, exist_ok=True)
    _registered = True
