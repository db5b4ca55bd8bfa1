"""Several optimizers stepped as one: Muon for the hidden matrices beside AdamW for the rest.

A training loop needs five things of its optimizer: `param_groups` (to set each step's learning rate),
`zero_grad`, `step`, `state_dict` and `load_state_dict`. `CombinedOptimizer` gives them for a list of
optimizers over disjoint parameters, so `train_step`, checkpoints and resuming work unchanged; each optimizer
keeps its own kernel (AdamW stays PyTorch's fused one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class CombinedOptimizer:
    """`optimizers` stepped, zeroed, saved and restored together, in their order.

    param_groups: every optimizer's groups in one list (the group dicts themselves, so setting "lr" on one
    sets it in its optimizer). state_dict(): {"optimizers": [each one's state_dict]}.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]):
        if not optimizers:
            raise ValueError("CombinedOptimizer needs at least one optimizer")
        seen: set[int] = set()
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if id(p) in seen:
                        raise ValueError(f"a parameter of shape {tuple(p.shape)} is in two of the optimizers")
                    seen.add(id(p))
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; the state of another kind of optimizer is refused (ValueError)."""
        saved = state.get("optimizers") if isinstance(state, dict) else None
        names = " + ".join(type(o).__name__ for o in self.optimizers)
        if not isinstance(saved, list):
            raise ValueError(f"it holds the state of a single optimizer, not of {names}")
        if len(saved) != len(self.optimizers):
            raise ValueError(f"it holds the state of {len(saved)} optimizers, not of {names}")
        for optimizer, optimizer_state in zip(self.optimizers, saved, strict=True):
            optimizer.load_state_dict(optimizer_state)

    def __repr__(self) -> str:
        return f"CombinedOptimizer({', '.join(type(o).__name__ for o in self.optimizers)})"
