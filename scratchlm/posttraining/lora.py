"""LoRA from scratch: fine-tune a low-rank change to chosen weight matrices, leave the rest frozen.

Hu et al. (2021): instead of updating a weight W (out, in), learn W + (alpha / r) * B A with A (r, in) and
B (out, r), r much smaller than in and out. B starts at zero, so the adapted model starts as the base model;
A starts random, so B's first gradient is not zero. Only A and B train: r * (in + out) numbers per matrix
instead of in * out, and the optimizer holds state for those alone.

    add_lora(model, rank=4)             # in place: c_attn, c_proj, c_fc of every block become LoRALinear
    lora_parameters(model)              # what the optimizer should see (everything else has requires_grad False)
    merge_lora(model)                   # in place: W += (alpha / r) B A, back to plain Linear layers

After `merge_lora` the model is an ordinary GPT again (its state_dict that of the base architecture) whose
logits equal the adapted model's: nothing of LoRA remains at inference time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from scratchlm.errors import ConfigError
from scratchlm.layers import linear

DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")  # every matrix of every block: attention and MLP


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update: y = base(x) + (alpha / r) * x A^T B^T."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"the LoRA rank must be a positive integer, got {rank!r}")
        if rank > min(base.in_features, base.out_features):
            raise ConfigError(
                f"a LoRA rank of {rank} exceeds this layer's {base.out_features} x {base.in_features} matrix"
            )
        self.base, self.rank, self.alpha = base, rank, alpha
        for p in base.parameters():
            p.requires_grad_(False)
        weight = base.weight
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=weight.device, dtype=weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self) -> torch.Tensor:
        """The update to the base weight, (out, in): (alpha / r) B A."""
        return self.scale * (self.lora_b @ self.lora_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out). The update is applied as two thin products, never as a full matrix."""
        return self.base(x) + self.scale * linear(linear(x, self.lora_a), self.lora_b)


def add_lora(
    model: nn.Module, rank: int, alpha: float | None = None, targets: Sequence[str] = DEFAULT_TARGETS
) -> list[str]:
    """Freeze `model` and replace every Linear whose name ends in one of `targets` by a `LoRALinear`
    (alpha None: equal to the rank, a scale of 1). Returns the names of the adapted layers."""
    alpha = float(rank if alpha is None else alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    adapted = []
    for name, module in list(model.named_modules()):
        parent_name, _, child = name.rpartition(".")
        if child in targets and isinstance(module, nn.Linear):
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(module, rank, alpha))
            adapted.append(name)
    if not adapted:
        raise ConfigError(f"no Linear layer is named {', '.join(targets)}: nothing to adapt")
    return adapted


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The A and B matrices of every LoRA layer of `model`."""
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_a, m.lora_b)]


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and put the plain Linear back, in place; returns `model`.
    The merged layers' parameters stay frozen, as they were (set requires_grad to train them again)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            module.base.weight += module.delta()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.base)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """The number of parameters that receive gradients (a tied tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict `model` would have after `merge_lora`, computed without changing `model`."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    state = {}
    for key, tensor in model.state_dict().items():
        layer, _, leaf = key.rpartition(".")
        if layer in layers and leaf in ("lora_a", "lora_b"):
            continue
        owner, _, part = layer.rpartition(".")
        if part == "base" and owner in layers:  # "….c_attn.base.weight" -> "….c_attn.weight"
            key = f"{owner}.{leaf}"
            tensor = tensor + layers[owner].delta() if leaf == "weight" else tensor
        state[key] = tensor
    return state
