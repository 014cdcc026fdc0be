"""Register the Auto classes when transformers is imported, without importing it at `import llava_medgpt`.

`import llava_medgpt` must stay cheap (CLIs' --help), yet a user's

    import llava_medgpt
    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained("runs/stage2")

must find model_type "llava_medgpt". So `install()` either registers at once (transformers already imported)
or puts a finder on sys.meta_path that wraps transformers' loader: when the `transformers` package has finished
executing, `register_auto_classes()` runs, or, if a module it needs is the one importing transformers (e.g.
processing/processor.py reached from data.dataset), as soon as that module has finished. The finder removes
itself once registered. Importing transformers already imports torch, so the
registration adds little to a process that uses transformers, and nothing to one that does not.
"""

import importlib.abc
import importlib.util
import sys


# Modules `register_auto_classes` imports that themselves import transformers at their top. When one of them is
# the first importer of transformers, it is half-executed at that moment (its classes not defined yet), so the
# registration waits until that module has finished.
_NEEDED = ("llava_medgpt.processing.image_processor", "llava_medgpt.processing.processor",
           "llava_medgpt.model.backbones", "llava_medgpt.model.configuration", "llava_medgpt.model.modeling")
_registered = False


def _initializing(name: str, finished: str | None) -> bool:
    module = sys.modules.get(name)
    return name != finished and module is not None and getattr(module.__spec__, "_initializing", False)


def _register(finished: str | None = None) -> None:
    """Register now, unless a module the registration needs is still executing (then its loader retries)."""
    global _registered
    if _registered or "transformers" not in sys.modules:
        return
    if any(_initializing(name, finished) for name in _NEEDED):
        return
    from .model.auto import register_auto_classes

    register_auto_classes()
    _registered = True
    for finder in [f for f in sys.meta_path if isinstance(f, _TransformersFinder)]:
        sys.meta_path.remove(finder)


class _RegisteringLoader(importlib.abc.Loader):
    """A module's own loader, plus a registration attempt once the module has executed."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register(finished=module.__name__)

    def __getattr__(self, name):  # resource readers, is_package, get_code, ...: the real loader's
        return getattr(self._loader, name)


class _TransformersFinder(importlib.abc.MetaPathFinder):
    """Wraps the loaders of transformers and of the modules in _NEEDED until the registration has happened."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers" and fullname not in _NEEDED:
            return None
        sys.meta_path.remove(self)  # the real finders locate the module
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            if not _registered:
                sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    if "transformers" in sys.modules:
        _register()
    if not _registered and not any(isinstance(finder, _TransformersFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TransformersFinder())
