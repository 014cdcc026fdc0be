"""Preprocessing: the record schema, image tiling and loading, conversation templates, the MedGptProcessor.

    from llava_medgpt.processing import MedGptProcessor, select_tile_grid, load_image

The public names below are imported on first use (PEP 562), so `from llava_medgpt.processing import
select_tile_grid` loads only the tiling module, not torch or transformers.
"""

from importlib import import_module

# public name -> submodule that defines it
_EXPORTS = {
    # tiling: pure functions of sizes and settings
    "TooManyImagesError": "tiling",
    "candidate_grids": "tiling",
    "check_image_count": "tiling",
    "plan_sample_tiles": "tiling",
    "select_tile_grid": "tiling",
    "tile_image": "tiling",
    "tiles_for_grid": "tiling",
    # image_io: one image file / bytes / PIL image -> upright 8-bit RGB
    "ImageLoadError": "image_io",
    "ImageSource": "image_io",
    "load_image": "image_io",
    "read_image_size": "image_io",
    "resolve_image_path": "image_io",
    # geometry: tile size, patch grid and tokens per tile of a vision tower
    "DEFAULT_GEOMETRY": "geometry",
    "VisionGeometry": "geometry",
    # image_processor: images -> tiles at the tower's input size
    "DEFAULT_MAX_TILES_PER_SAMPLE": "image_processor",
    "MedGptImageProcessor": "image_processor",
    # templates: chat messages -> text and target spans
    "CONVERSATION_TEMPLATES": "templates",
    "TemplateError": "templates",
    "build_template": "templates",
    # processor: records / prompts -> token ids, labels, tiles
    "ImageCountMismatchError": "processor",
    "MedGptProcessor": "processor",
    "NoTargetError": "processor",
    "SampleError": "processor",
    "SampleImageError": "processor",
    "SampleTemplateError": "processor",
    "SampleTooLongError": "processor",
    "SampleTooManyImagesError": "processor",
    "expand_image_markers": "processor",
    "labels_from_spans": "processor",
    # records: the training record schema (LLaVA JSON), its validation and chat messages
    "Record": "records",
    "RecordError": "records",
    "messages_from_record": "records",
    "record_images": "records",
    "validate_record": "records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
