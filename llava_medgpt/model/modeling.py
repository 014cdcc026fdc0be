"""`MedGptForConditionalGeneration`: vision tower -> pixel-shuffle MLP projector -> causal language model."""

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast, MoeCausalLMOutputWithPast
from transformers.models.gpt_oss.modeling_gpt_oss import load_balancing_loss_func

from .configuration import MedGptConfig
from .loss import causal_lm_loss
from .packed_masks import is_packed, packed_attention_masks


def pixel_shuffle(features: torch.Tensor, ratio: float) -> torch.Tensor:
    """Space-to-depth on a square patch grid: [N, S, S, C] -> [N, S*r, S*r, C/r^2].

    With r = 0.5 each output position holds the 2x2 block of input patches it covers, so no value is lost: the
    operation is a permutation of the input's entries (InternVL's pixel shuffle).
    """
    n, height, width, channels = features.shape
    block = int(round(1 / ratio))
    # [N, H, W, C] -> [N, H/b, b, W/b, b, C] -> [N, H/b, W/b, b, b, C] -> [N, H/b, W/b, b*b*C]
    features = features.reshape(n, height // block, block, width // block, block, channels)
    features = features.permute(0, 1, 3, 2, 4, 5)
    return features.reshape(n, height // block, width // block, block * block * channels)


def pad_patch_grid(features: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-pad a square patch grid [N, S, S, C] at the bottom and right to [N, side, side, C] (geometry rule for
    grids that the shuffle block does not divide, e.g. SigLIP-384's 27x27 -> 28x28)."""
    pad = side - features.shape[1]
    if pad == 0:
        return features
    return nn.functional.pad(features, (0, 0, 0, pad, 0, pad))  # (C: none, W: right, H: bottom)


class MedGptProjector(nn.Module):
    """Pixel shuffle, then LayerNorm -> Linear -> GELU -> Linear into the language model's embedding space."""

    def __init__(self, config: MedGptConfig):
        super().__init__()
        self.geometry = config.vision_geometry
        shuffled_dim = config.vision_config.hidden_size * self.geometry.block**2
        text_dim = config.text_config.hidden_size
        self.norm = nn.LayerNorm(shuffled_dim)
        self.linear_1 = nn.Linear(shuffled_dim, text_dim)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_dim, text_dim)

    def forward(self, patch_features: torch.Tensor) -> torch.Tensor:
        # patch_features: [N_tiles, S*S, C_vision] -> [N_tiles * tokens_per_tile, C_text]
        n_tiles, n_patches, channels = patch_features.shape
        side = self.geometry.patch_grid
        if n_patches != side * side:
            raise ValueError(
                f"the vision tower gave {n_patches} patch features per tile, but its geometry "
                f"({self.geometry.describe()}) expects {side * side}; were the tiles resized?"
            )
        grid = pad_patch_grid(patch_features.reshape(n_tiles, side, side, channels), self.geometry.padded_grid)
        shuffled = pixel_shuffle(grid, self.geometry.downsample_ratio).flatten(0, 2)
        return self.linear_2(self.act(self.linear_1(self.norm(shuffled))))


class MedGptPreTrainedModel(PreTrainedModel):
    config: MedGptConfig
    config_class = MedGptConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = []
    _skip_keys_device_placement = "past_key_values"
    _supports_flash_attn = False
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False


class MedGptForConditionalGeneration(MedGptPreTrainedModel, GenerationMixin):
    """A LLaVA-style VLM whose image features replace placeholder tokens in the text embeddings.

    Submodules: `vision_tower` (any transformers vision model), `multi_modal_projector` and `language_model`
    (a complete causal LM, so its own loss, MoE router auxiliary loss and generation cache apply unchanged).
    """

    def __init__(self, config: MedGptConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = MedGptProjector(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        # Run the vision path on text-only training batches: None = only when several ranks train (see
        # _touch_vision_tower); True/False forces it.
        self.sync_vision_tower_on_text_batches: bool | None = None
        self._no_split_modules = list(self.language_model._no_split_modules or []) + list(
            self.vision_tower._no_split_modules or []
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N_tiles, 3, H, W] normalised float tiles -> [N_tiles * tokens_per_tile, text_hidden] features."""
        if not torch.is_floating_point(pixel_values):
            raise ValueError(
                f"pixel_values must be normalised floats, got {pixel_values.dtype}; "
                "normalise uint8 tiles with MedGptImageProcessor.normalize_on_device first"
            )
        pixel_values = pixel_values.to(self.vision_tower.dtype)
        outputs = self.vision_tower(pixel_values, output_hidden_states=True)
        patch_features = outputs.hidden_states[self.config.vision_feature_layer]  # [N, 1 + S*S or S*S, C]
        if self.config.vision_feature_select_strategy == "default":
            patch_features = patch_features[:, 1:]  # drop CLS
        return self.multi_modal_projector(patch_features)

    def merge_image_features(
        self, input_ids: torch.LongTensor, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Write feature row k into the k-th placeholder position (reading order across the batch), in one scatter."""
        placeholder_mask = input_ids == self.config.image_token_id  # [B, T]
        n_placeholders = int(placeholder_mask.sum())
        if n_placeholders != image_features.shape[0]:
            raise ValueError(
                f"The text has {n_placeholders} image placeholder tokens but the images give "
                f"{image_features.shape[0]} feature vectors; the processor and the model disagree on tiles per "
                "image or tokens per tile"
            )
        mask = placeholder_mask.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, image_features.to(inputs_embeds.dtype))

    def _must_sync_vision_tower(self) -> bool:
        if self.sync_vision_tower_on_text_batches is not None:
            return self.sync_vision_tower_on_text_batches
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        return distributed and torch.distributed.get_world_size() > 1

    def _touch_vision_tower(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Run the vision path on one blank tile and add it with weight zero.

        Under ZeRO-3 every rank must gather the same parameters in the same order each step (frozen ones too); a
        rank holding a text-only batch would otherwise skip the vision tower and deadlock the others. It also keeps
        trainable vision and projector parameters in the autograd graph, as DDP requires.
        """
        size = self.config.vision_geometry.tile_size
        blank = torch.zeros(1, 3, size, size, device=inputs_embeds.device, dtype=inputs_embeds.dtype)
        return inputs_embeds + 0.0 * self.get_image_features(blank).sum()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_router_logits: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # [B, T, D]
        if pixel_values is not None:
            if input_ids is None:
                raise ValueError("pixel_values need input_ids to locate the image placeholder tokens")
            inputs_embeds = self.merge_image_features(input_ids, inputs_embeds, self.get_image_features(pixel_values))
        elif self.training and self._must_sync_vision_tower():
            inputs_embeds = self._touch_vision_tower(inputs_embeds)

        if past_key_values is not None:  # generation passes the cache as `cache` or `past_key_values`
            kwargs["past_key_values"] = past_key_values
        has_cache = kwargs.get("cache", past_key_values) is not None
        if attention_mask is None and not has_cache and is_packed(position_ids):
            # transformers does not separate packed samples for GPT-oss (nor for any model once a cache exists):
            # build the block-diagonal (and sliding-window) masks from the restarting position ids.
            attention_mask = packed_attention_masks(self.config.text_config, position_ids, inputs_embeds.dtype)
            use_cache = False
        if output_router_logits is None:  # the language model would fall back to its config, so decide here
            output_router_logits = getattr(self.language_model.config, "output_router_logits", None)
        if labels is not None and self.training and not has_cache and self._memory_efficient_loss():
            # Training: the loss without full-vocabulary logits (none are returned).
            return self._forward_with_losses(
                inputs_embeds, attention_mask, position_ids, labels, bool(output_router_logits), False, **kwargs
            )
        if isinstance(attention_mask, dict) and output_router_logits:
            return self._forward_with_losses(inputs_embeds, attention_mask, position_ids, labels, True, True, **kwargs)
        if output_router_logits is not None:
            kwargs["output_router_logits"] = output_router_logits
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _memory_efficient_loss(self) -> bool:
        """Whether training losses skip full logits: the config asks for it and the head is a plain linear layer (a
        head wrapped by an adapter falls back to transformers' loss)."""
        return self.config.loss_implementation != "full" and type(self.get_output_embeddings()) is nn.Linear

    def _forward_with_losses(
        self, inputs_embeds, attention_mask, position_ids, labels, output_router_logits: bool, return_logits: bool,
        **kwargs,
    ):
        """Decoder, then the LM loss and the MoE router aux loss computed here rather than by the causal-LM head.

        Two callers: training (return_logits=False: `model.loss.causal_lm_loss`, no full-vocabulary logits) and
        packed rows with the router aux loss outside training (logits and transformers' loss). transformers'
        causal-LM heads hand the attention mask to the load-balancing loss, which expects a 2D padding mask; packed
        rows bring a dict of per-layer-type masks instead, and carry (almost) no padding, so their load-balancing
        statistics use every position.
        """
        lm = self.language_model
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        shift_labels = kwargs.pop("shift_labels", None)
        if output_router_logits:
            kwargs["output_router_logits"] = True
        outputs = lm.get_decoder()(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # [B, T, D]
        head = self.get_output_embeddings()
        logits = loss = None
        if return_logits:
            logits = head(hidden_states)  # [B, T, V]
            if labels is not None or shift_labels is not None:
                loss = lm.loss_function(
                    logits, labels, lm.config.vocab_size, num_items_in_batch=num_items_in_batch,
                    shift_labels=shift_labels,
                )
        else:
            loss = causal_lm_loss(
                head, hidden_states, labels, num_items_in_batch=num_items_in_batch, shift_labels=shift_labels,
                implementation=self.config.loss_implementation, token_chunk=self.config.loss_token_chunk,
                vocab_block=self.config.loss_vocab_block,
            )
        if not output_router_logits:
            return CausalLMOutputWithPast(loss=loss, logits=logits)
        padding_mask = attention_mask if torch.is_tensor(attention_mask) and attention_mask.dim() == 2 else None
        aux_loss = load_balancing_loss_func(
            outputs.router_logits, lm.config.num_local_experts, lm.config.num_experts_per_tok, padding_mask
        )
        if loss is not None:
            loss = loss + lm.config.router_aux_loss_coef * aux_loss.to(loss.device)
        return MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux_loss, logits=logits, router_logits=outputs.router_logits)


__all__ = [
    "MedGptForConditionalGeneration",
    "MedGptPreTrainedModel",
    "MedGptProjector",
    "pad_patch_grid",
    "pixel_shuffle",
]
