"""MedGptConfig, MedGptForConditionalGeneration and friends, imported on first use (PEP 562) so that
`llava_medgpt.model.tiny --help` and other light users do not import torch."""

from importlib import import_module

_EXPORTS = {
    "MedGptConfig": "configuration",
    "MedGptForConditionalGeneration": "modeling",
    "MedGptPreTrainedModel": "modeling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
