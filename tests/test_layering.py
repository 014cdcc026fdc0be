"""Every import points down the layers (docs/architecture.md): a module imports its own component or a lower layer.

Imports are read with ast from every module of the package, including imports inside functions (the lazy ones that
keep `--help` fast) and the lazy export tables (`_EXPORTS = {"Name": "submodule"}`) of package __init__ files.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llava_medgpt"

# Bottom to top. A component is a module or package prefix; a module belongs to the longest prefix that matches.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("constants", "fileio", "rows", "settings"),  # facts, file helpers and settings files every layer uses
    ("processing",),  # record schema, images and tiles, templates, the processor
    ("model",),  # config, modeling, packed-sample masks, loss, builder, tiny checkpoints
    ("_transformers_hook",),  # registers the Auto classes when transformers is imported
    ("",),  # the package root: lazy exports, installs the hook
    ("inference",),  # load_chat_model, generation backends
    ("benchmarks",),  # one reader per benchmark release, for the converters and the eval tasks
    ("data",),  # recipes, index, dataset, collator, sampler, converters
    ("train", "eval"),
    ("data.decontaminate",),  # checks training data against the eval tasks
    ("chat",),
    ("data.curate", "demo", "export"),  # user-facing features built on the layers below
    ("cli",),  # console scripts: one entry per feature
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _component(module: str) -> tuple[str, int]:
    """(component prefix, layer) of a llava_medgpt module."""
    inner = module.removeprefix("llava_medgpt").removeprefix(".")
    best = None
    for layer, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if inner == prefix or inner.startswith(prefix + ".") or prefix == "":
                if best is None or len(prefix) > len(best[0]):
                    best = (prefix, layer)
    return best


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported llava_medgpt module, line) for every import in the file, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if node.module is None:  # from . import x: x is a module of that package
                found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((target, node.lineno))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            if path.name == "__init__.py" and isinstance(node.value, ast.Dict):
                found += [(f"{module}.{v.value}", node.lineno) for v in node.value.values if isinstance(v, ast.Constant)]
    return [(name, line) for name, line in found if name == "llava_medgpt" or name.startswith("llava_medgpt.")]


def _violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source, source_layer = _component(_module_name(path))
        for target, line in imports_of(path):
            component, layer = _component(target)
            if component != source and layer >= source_layer:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {_module_name(path)} (layer {source_layer}"
                                f" {source or 'llava_medgpt'}) imports {target} (layer {layer} {component})")
    return problems


def test_every_import_points_down():
    assert _violations() == []


def test_the_checker_sees_function_level_relative_and_lazy_imports():
    # Known edges of each kind, so the walk cannot silently read nothing.
    edges = {name for name, _ in imports_of(PACKAGE / "train" / "train.py")}
    assert "llava_medgpt.data.dataset" in edges  # relative, module level
    assert "llava_medgpt.model.builder" in edges  # inside setup_model
    root = {name for name, _ in imports_of(PACKAGE / "__init__.py")}
    assert "llava_medgpt.model.modeling" in root  # lazy export table
    curate, data, root = (_component(m) for m in ("llava_medgpt.data.curate.pipeline", "llava_medgpt.data.index",
                                                   "llava_medgpt"))
    assert (curate[0], data[0], root[0]) == ("data.curate", "data", "")
    assert root[1] < data[1] < curate[1]


def test_every_module_has_a_layer_and_the_model_never_imports_data():
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        # Only the package's own __init__ may fall to the root entry; a new top-level module needs a row.
        assert _component(module)[0] != "" or module == "llava_medgpt", f"{module} has no layer in LAYERS"
    for path in (PACKAGE / "model").rglob("*.py"):
        assert not [t for t, _ in imports_of(path) if t.startswith("llava_medgpt.data")], path
