"""llava_medgpt: training and evaluation stack for MedGPT-oss (GPT-oss + CLIP-ViT-L/14@336 + MLP projector).

Importing the package is cheap: no torch, transformers or deepspeed (CLIs answer --help at once). The public
classes below are imported on first use (PEP 562), and the Auto-class registration runs as soon as
transformers is imported, so after `import llava_medgpt`, `AutoModelForImageTextToText.from_pretrained(folder)`
works on a checkpoint folder without `trust_remote_code` (llava_medgpt/_transformers_hook.py).
"""

from importlib import import_module

from ._transformers_hook import install as _install_registration_hook

# public name -> submodule that defines it
_EXPORTS = {
    "MedGptConfig": "model.configuration",
    "MedGptForConditionalGeneration": "model.modeling",
    "MedGptImageProcessor": "processing.image_processor",
    "MedGptProcessor": "processing.processor",
    "create_tiny_checkpoint": "model.tiny",
    "register_auto_classes": "model.auto",
}

__all__ = sorted(_EXPORTS)

_install_registration_hook()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
