"""Attention masks that keep packed samples apart, built from position ids that restart at 0 per sample.

transformers separates packed samples only when attention_mask and past_key_values are None and the model hands
position_ids to its mask builder; GPT-oss does not, so the model builds the masks itself (llava_medgpt.data.packing
describes the packed layout). The result is passed as `attention_mask={"full_attention": ..., ...}`.
"""

import torch


def is_packed(position_ids: torch.Tensor | None) -> bool:
    """Several samples share a row when position ids restart (fall) inside it."""
    return position_ids is not None and position_ids.shape[-1] > 1 and bool((position_ids.diff(dim=-1) < 0).any())


def packed_attention_masks(text_config, position_ids: torch.Tensor, dtype: torch.dtype) -> dict:
    """Per-layer-type attention masks that keep packed sequences apart, for `attention_mask=` of the LM.

    text_config: the language model's config (its `_attn_implementation` picks the mask format, `layer_types` and
    `sliding_window` which masks are needed). position_ids: [B, T] restarting at 0 per sample.
    Returns {"full_attention": mask, "sliding_attention": mask (if the model has sliding layers)}.
    """
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    builders = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}
    layer_types = set(getattr(text_config, "layer_types", None) or ["full_attention"])
    unknown = layer_types - set(builders)
    if unknown:
        raise ValueError(f"no packed mask for layer types {sorted(unknown)}; known: {sorted(builders)}")
    # The builders read only the batch size, length, dtype and device of inputs_embeds.
    shape_only = torch.empty(position_ids.shape + (0,), dtype=dtype, device=position_ids.device)
    return {
        # (config, inputs_embeds, attention_mask, cache) by position: the cache argument is named differently across
        # transformers releases.
        layer_type: builders[layer_type](text_config, shape_only, None, None, position_ids=position_ids)
        for layer_type in sorted(layer_types)
    }


__all__ = ["is_packed", "packed_attention_masks"]
