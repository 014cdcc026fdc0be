"""Register the Auto classes when transformers is imported, without importing it at `import llava_medgpt`.

`import llava_medgpt` must stay cheap (CLIs' --help), yet a user's

    import llava_medgpt
    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained("runs/stage2")

must find model_type "llava_medgpt". So `install()` either registers at once (transformers already imported)
or puts a one-shot finder on sys.meta_path that wraps transformers' loader: when the `transformers` package
has finished executing, `register_auto_classes()` runs. Importing transformers already imports torch, so the
registration adds little to a process that uses transformers, and nothing to one that does not.
"""

import importlib.abc
import importlib.util
import sys


def _register() -> None:
    from .model.auto import register_auto_classes

    register_auto_classes()


class _RegisteringLoader(importlib.abc.Loader):
    """transformers' own loader, plus the registration once its package module has executed."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # resource readers, is_package, get_code, ...: the real loader's
        return getattr(self._loader, name)


class _TransformersFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; the real finders locate the package
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    if "transformers" in sys.modules:
        _register()
    elif not any(isinstance(finder, _TransformersFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TransformersFinder())
