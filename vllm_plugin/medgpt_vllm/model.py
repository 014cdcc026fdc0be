"""`MedGptForConditionalGeneration` for vLLM: vision tower -> pixel-shuffle MLP projector -> language model.

The submodules carry the checkpoint's names (`vision_tower`, `multi_modal_projector.{norm,linear_1,linear_2}`,
`language_model`), so a llava_medgpt checkpoint loads as saved. The towers are vLLM's own: CLIP (or SigLIP) cut
at `vision_feature_layer` with no post-norm, as transformers' `hidden_states[vision_feature_layer]`, and the
language model vLLM registers for the text config's architecture (GptOssForCausalLM, Qwen2, Llama, ...), which
brings tensor parallelism, its attention kernels and MoE.

vLLM's InternVLChatModel has the same projector, but its module imports torchvision at load time, which the CPU
build cannot provide (docs/serving.md), so the small projector is restated here instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vllm.config import VllmConfig
from vllm.model_executor.models.clip import CLIPVisionModel
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal, SupportsPP
from vllm.model_executor.models.siglip import SiglipVisionModel
from vllm.model_executor.models.utils import AutoWeightsLoader, init_vllm_registered_model, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.sequence import IntermediateTensors

from .processing import MedGptDummyInputsBuilder, MedGptMultiModalProcessor, MedGptProcessingInfo

# Vision sub-config model_type -> vLLM tower (llava_medgpt.model.backbones.VISION_BACKBONES).
VISION_TOWERS = {"clip_vision_model": CLIPVisionModel, "siglip_vision_model": SiglipVisionModel}


def pixel_shuffle(features: torch.Tensor, ratio: float) -> torch.Tensor:
    """[N, S, S, C] -> [N, S*r, S*r, C/r^2]; each output position holds its block of input patches, row-major."""
    n, height, width, channels = features.shape
    block = int(round(1 / ratio))
    features = features.reshape(n, height // block, block, width // block, block, channels)
    return features.permute(0, 1, 3, 2, 4, 5).reshape(n, height // block, width // block, block * block * channels)


class MedGptProjector(nn.Module):
    """Zero-pad odd patch grids, pixel shuffle, LayerNorm -> Linear -> GELU -> Linear (as llava_medgpt's projector)."""

    def __init__(self, config):
        super().__init__()
        if config.projector_hidden_act != "gelu":
            raise ValueError(f"projector_hidden_act {config.projector_hidden_act!r} is not supported (gelu only)")
        self.downsample_ratio = config.downsample_ratio
        self.patch_grid, self.padded_grid = config.patch_grid, config.padded_grid
        shuffled_dim = config.vision_config.hidden_size * config.shuffle_block**2
        text_dim = config.text_config.hidden_size
        self.norm = nn.LayerNorm(shuffled_dim)
        self.linear_1 = nn.Linear(shuffled_dim, text_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(text_dim, text_dim)

    def forward(self, patch_features: torch.Tensor) -> torch.Tensor:
        # [N_tiles, S*S, C_vision] -> [N_tiles * (S*r)^2, C_text]
        n_tiles, _, channels = patch_features.shape
        grid = patch_features.reshape(n_tiles, self.patch_grid, self.patch_grid, channels)
        pad = self.padded_grid - self.patch_grid  # zero features at the bottom and right (odd grids)
        grid = nn.functional.pad(grid, (0, 0, 0, pad, 0, pad)) if pad else grid
        shuffled = pixel_shuffle(grid, self.downsample_ratio)
        return self.linear_2(self.act(self.linear_1(self.norm(shuffled.flatten(0, 2)))))


def build_vision_tower(config, quant_config, prefix: str) -> nn.Module:
    vision_config = config.vision_config
    if vision_config.model_type not in VISION_TOWERS:
        raise ValueError(f"vision tower {vision_config.model_type!r} is not supported; known: {sorted(VISION_TOWERS)}")
    layer = config.vision_feature_layer
    num_layers = vision_config.num_hidden_layers + layer + 1 if layer < 0 else layer + 1
    return VISION_TOWERS[vision_config.model_type](
        vision_config, quant_config, num_hidden_layers_override=num_layers, require_post_norm=False, prefix=prefix)


@MULTIMODAL_REGISTRY.register_processor(
    MedGptMultiModalProcessor, info=MedGptProcessingInfo, dummy_inputs=MedGptDummyInputsBuilder)
class MedGptForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsPP):

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return "<image>"
        raise ValueError("MedGPT-oss takes images only")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        self.tokens_per_tile = config.tokens_per_tile
        with self._mark_tower_model(vllm_config, "image"):
            self.vision_tower = build_vision_tower(config, vllm_config.quant_config,
                                                   maybe_prefix(prefix, "vision_tower"))
            self.multi_modal_projector = MedGptProjector(config)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config, hf_config=config.text_config, prefix=maybe_prefix(prefix, "language_model"))
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        pixel_values = kwargs.get("pixel_values")
        if pixel_values is None:
            return []
        if isinstance(pixel_values, (list, tuple)):
            pixel_values = torch.cat(list(pixel_values))
        num_tiles = torch.as_tensor(kwargs["num_tiles"]).flatten().tolist()
        features = self.vision_tower(pixel_values.to(self.vision_tower.dtype),
                                     feature_select_strategy=self.config.vision_feature_select_strategy)
        embeddings = self.multi_modal_projector(features)  # [total_tiles * tokens_per_tile, D]
        return embeddings.split([n * self.tokens_per_tile for n in num_tiles])

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
                intermediate_tensors: IntermediateTensors | None = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs: object):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids=input_ids, positions=positions,
                                         intermediate_tensors=intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(vision_tower_names(weights))


def vision_tower_names(weights: Iterable[tuple[str, torch.Tensor]]):
    """transformers saves a CLIP/SigLIP vision model's weights without its `vision_model.` level
    ("vision_tower.encoder..."); vLLM's towers keep it. Older checkpoints that have it pass unchanged."""
    for name, tensor in weights:
        if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
            name = "vision_tower.vision_model." + name.removeprefix("vision_tower.")
        yield name, tensor
