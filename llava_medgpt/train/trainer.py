"""`MedGptTrainer`: transformers' Trainer plus what the curriculum needs.

- freezes the model per `mm_tunable_parts` and logs trainable/total parameters per module;
- builds the optimizer itself with one learning rate per module (works under DeepSpeed because our DeepSpeed
  configs have no `optimizer` block; DeepSpeed wraps the optimizer built here and keeps its param groups);
- registers the backbone's MoE block (GPT-oss: GptOssMLP) as a ZeRO-3 leaf module: routing picks different experts
  on different ranks, and without the flag ZeRO-3's per-submodule prefetch can wait forever on MoE;
- makes checkpoints complete-or-invisible and verifiable (checkpointing.CheckpointIntegrityCallback: fsync,
  MANIFEST.sha256, COMPLETE) and rotates only complete ones;
- batches by modality and length (`group_by_modality_length`) or packs rows, with the data package's samplers;
- drops the collator's bookkeeping (`meta`) into a SkipReport, whose limit is checked over all ranks after every
  step and whose counts every checkpoint saves (bad_samples.BadSampleLimitCallback); normalises uint8 tiles on
  the device;
- passes the training-only switches (no cache, MoE router aux loss) with every forward call, not through the
  config that checkpoints and stage outputs save.
"""

import logging

import torch
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from ..data.sampler import ModalityLengthGroupedBatchSampler, PackedBatchSampler
from ..data.skips import SkipReport
from ..model.backbones import text_backbone
from .bad_samples import BadSampleLimitCallback
from .checkpointing import CheckpointIntegrityCallback
from .freezing import format_parameter_counts, parameter_counts, set_trainable_parts
from .param_groups import ModuleLearningRates, build_param_groups

logger = logging.getLogger(__name__)


def register_moe_leaf_modules(model: torch.nn.Module) -> list[str]:
    """Flag the language model's MoE block class as a ZeRO-3 leaf; returns the class names flagged."""
    block = text_backbone(model.config.text_config).moe_block_class
    if block is None:
        return []
    from deepspeed.utils import set_z3_leaf_modules

    classes = {type(m) for m in model.modules() if type(m).__name__ == block}
    if not classes:
        raise ValueError(f"The backbone registry names MoE block {block!r}, but the model has no such module")
    set_z3_leaf_modules(model, list(classes))
    return sorted(c.__name__ for c in classes)


class EpochDataLoader(DataLoader):
    """A DataLoader whose set_epoch reaches its batch sampler (the Trainer calls set_epoch on the loader)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


class MedGptTrainer(Trainer):
    def __init__(self, *args, tunable_parts: tuple[str, ...], keep_checkpoints: int | None = None,
                 forward_kwargs: dict | None = None, **kwargs):
        """tunable_parts: parsed mm_tunable_parts. keep_checkpoints: how many complete checkpoints to keep (the
        Trainer's own save_total_limit must be None: it would rotate before the COMPLETE marker is written).
        forward_kwargs: added to every training forward call (train.training_forward_kwargs: use_cache=False,
        output_router_logits), so that they never enter the saved config."""
        model = kwargs.get("model", args[0] if args else None)
        use_cache = getattr(getattr(model, "config", None), "use_cache", None)
        super().__init__(*args, **kwargs)
        if use_cache is not None:
            # The Trainer writes args.use_cache (False) into the config that checkpoints save; training gets
            # use_cache=False with each call instead (forward_kwargs), so the saved config stays ready to generate.
            self.model.config.use_cache = use_cache
        self.forward_kwargs = dict(forward_kwargs or {})
        if self.args.save_total_limit:
            raise ValueError("Use keep_checkpoints instead of save_total_limit (rotation must see COMPLETE markers)")
        self.keep_checkpoints = keep_checkpoints
        self.skip_report = SkipReport(max_fraction=self.args.max_bad_sample_fraction,
                                      min_samples=self.args.bad_sample_min_samples)
        self.bad_samples = BadSampleLimitCallback(self.skip_report)
        self.add_callback(self.bad_samples)
        # Last: it seals what every other callback (and the Trainer) wrote into the checkpoint.
        self.add_callback(CheckpointIntegrityCallback(keep_checkpoints, state_writers=[self.bad_samples.write_state]))
        set_trainable_parts(self.model, tunable_parts)
        self.parameter_counts = parameter_counts(self.model)
        if self.args.should_log:
            logger.info("Trainable parameters (mm_tunable_parts=%s):\n%s", ",".join(tunable_parts),
                        format_parameter_counts(self.parameter_counts))
        if is_deepspeed_zero3_enabled():
            leaves = register_moe_leaf_modules(self.model)
            if leaves:
                logger.info("ZeRO-3 leaf modules: %s", leaves)

    # ------------------------------------------------------------------------------------------- optimizer

    def module_learning_rates(self) -> ModuleLearningRates:
        return ModuleLearningRates(
            default=self.args.learning_rate,
            multi_modal_projector=self.args.mm_projector_lr,
            vision_tower=self.args.mm_vision_tower_lr,
        )

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        groups = build_param_groups(
            opt_model,
            self.module_learning_rates(),
            self.args.weight_decay,
            set(self.get_decay_parameter_names(opt_model)),
        )
        if not groups:
            raise ValueError("No trainable parameters: check mm_tunable_parts")
        hf_ds_config = getattr(self.args, "hf_deepspeed_config", None)
        if hf_ds_config is not None and hf_ds_config.is_offload():
            # ZeRO-Offload steps on the CPU copy of the weights; DeepSpeed's CPU Adam honours param-group lrs.
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            self.optimizer = DeepSpeedCPUAdam(
                groups, lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon, adamw_mode=True,
            )
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        for group in self.optimizer.param_groups:
            n = sum(getattr(p, "ds_numel", p.numel()) for p in group["params"])
            logger.info("param group %-32s lr=%.3g weight_decay=%.3g params=%d", group["name"], group["lr"],
                        group["weight_decay"], n)
        return self.optimizer

    # ------------------------------------------------------------------------------------------------ data

    def _batch_sampler(self):
        """Our step-sharded batch sampler (packed rows, or modality/length groups), or None for the Trainer's own."""
        data = self.train_dataset
        args = self.args
        if getattr(self.data_collator, "layout", "padded") == "packed":
            return PackedBatchSampler(data.lengths, max_length=args.model_max_length,
                                      rows_per_batch=args.per_device_train_batch_size, num_replicas=args.world_size,
                                      rank=args.process_index, seed=args.seed)
        if args.group_by_modality_length:
            return ModalityLengthGroupedBatchSampler(data.lengths, data.has_image,
                                                     batch_size=args.per_device_train_batch_size,
                                                     num_replicas=args.world_size, rank=args.process_index,
                                                     seed=args.seed)
        return None

    def get_train_dataloader(self):
        batch_sampler = self._batch_sampler()
        if batch_sampler is None:
            return super().get_train_dataloader()
        # Not passed through accelerator.prepare: the sampler already gives each rank its own batches.
        return EpochDataLoader(
            self.train_dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        meta = inputs.pop("meta", None)
        if meta is not None:
            self.skip_report.record(meta.num_samples, meta.skipped)  # checked over all ranks after the step
        pixel_values = inputs.pop("pixel_values", None)
        if pixel_values is not None and pixel_values.dtype == torch.uint8:
            # Workers ship uint8 tiles (4x less to copy); normalise on the training device.
            dtype = next(p.dtype for p in self.model.multi_modal_projector.parameters())
            inputs["pixel_values"] = self.processing_class.image_processor.normalize_on_device(pixel_values, dtype)
        elif pixel_values is not None:
            inputs["pixel_values"] = pixel_values
        inputs.update(self.forward_kwargs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
