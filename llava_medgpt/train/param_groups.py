"""Optimizer parameter groups with a learning rate per module (LLaVA-OneVision's mm_projector_lr / mm_vision_tower_lr).

The trainer builds the optimizer from these groups itself; a DeepSpeed config `optimizer` block would make the
Trainer skip `create_optimizer` and silently train every module at one learning rate, so our configs have none.
"""

from dataclasses import dataclass

from torch import nn

from .freezing import TUNABLE_PARTS


@dataclass(frozen=True)
class ModuleLearningRates:
    default: float  # the language model and anything not listed below
    multi_modal_projector: float | None = None
    vision_tower: float | None = None

    def of(self, module: str) -> float:
        value = getattr(self, module, None) if module in ("multi_modal_projector", "vision_tower") else None
        return self.default if value is None else value


def build_param_groups(
    model: nn.Module, lrs: ModuleLearningRates, weight_decay: float, decay_parameter_names: set[str]
) -> list[dict]:
    """One group per (module, decay or not) holding trainable parameters only; empty groups are dropped.

    Each group carries `name` (e.g. "vision_tower/decay") so logs and tests can find it; torch and DeepSpeed
    optimizers keep extra keys in param_groups.
    """
    module_of = {}
    for attr in TUNABLE_PARTS.values():
        for name, _ in getattr(model, attr).named_parameters():
            module_of[f"{attr}.{name}"] = attr
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        module = module_of.get(name, "other")
        groups.setdefault((module, name in decay_parameter_names), []).append(param)
    out = []
    for (module, decay), params in sorted(groups.items()):
        out.append(
            {
                "name": f"{module}/{'decay' if decay else 'no_decay'}",
                "params": params,
                "lr": lrs.of(module),
                "weight_decay": weight_decay if decay else 0.0,
            }
        )
    return out
