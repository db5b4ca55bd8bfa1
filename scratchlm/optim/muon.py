"""Muon: momentum, then the step of each hidden weight matrix orthogonalised (MomentUm Orthogonalized by
Newton–Schulz, Keller Jordan 2024).

For a weight W (m, n) with gradient G, one step is

    buf ← β buf + (1 − β) G                         momentum, an exponential average of gradients
    D   = (1 − β) G + β buf   (Nesterov)  or  buf   the direction
    W   ← W (1 − lr wd)                             decoupled weight decay
    W   ← W − lr · max(1, m/n)^½ · NS(D)            NS: `newton_schulz`, U Vᵀ of D = U S Vᵀ, approximately

Why orthogonalise. The gradient of a matrix is dominated by a few directions (a low stable rank); SGD and Adam
move mostly along those and barely along the rest. U Vᵀ keeps the directions and sets every singular value to
about 1, so rare directions move as far as common ones, and each step has a known size in spectral norm
(about lr, whatever the gradient's scale: NS first divides by the Frobenius norm).

The shape factor max(1, m/n)^½ (rows m = out features, columns n = in features of an `nn.Linear` weight).
An (m, n) matrix with every singular value 1 has min(m, n) of them, so the RMS of its entries is
1/√max(m, n). The factor makes it 1/√n for every shape: tall matrices (the MLP's c_fc, 4C × C) would
otherwise get entries half as large as a square one's at the same lr; wide ones (the MLP's c_proj, C × 4C)
already have 1/√n. Entries of size lr/√fan_in are the scale at which each output of the layer moves by
about lr for an input of unit RMS, so one learning rate suits every matrix of the model.

Fused matrices. A parameter group may give `blocks`, the row sizes of matrices fused into one parameter
(the GPT's c_attn is [q | k | v], (H D + 2 H_kv D) × C): each block is then orthogonalised, and scaled by
its own shape, as if it were its own `nn.Linear` — which it is, fused only so that one matmul computes the
three. Orthogonalising the stack as one matrix would instead equalise the singular values of the stacked
map: a block whose gradient is small (the keys', early in training) would get almost no step, and the step
of each block would depend on the other two.

What clipping means here. The training step clips the total gradient norm before `step`. A scaled gradient
orthogonalises to the same U Vᵀ, so clipping does not change the size of a Muon step; it only lowers the
weight of an outsized gradient in the momentum average (and clips the AdamW parameters' steps as usual).

Only the hidden matrices belong to Muon: embeddings (one row read per token, so a sparse gradient), the
output head (a classifier over the vocabulary) and vectors (norm gains, biases) stay with AdamW; see
`scratchlm.optim.split`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from scratchlm.optim.newton_schulz import QUINTIC_STEPS, newton_schulz


def update_scale(rows: int, cols: int) -> float:
    """max(1, rows / cols) ** 0.5: makes the RMS entry of an orthogonalised (rows, cols) update 1/√cols."""
    return max(1.0, rows / cols) ** 0.5


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters (see the module). Each parameter group may hold, besides lr, momentum,
    nesterov, weight_decay and ns_steps:

    blocks: the row sizes of the matrices fused in each of its parameters (their sum is the row count), or
    None for a single matrix. lr_scale: this group's learning rate relative to the schedule's
    (`train_step` sets lr × lr_scale), kept in the group so that a checkpoint restores it.

    ns_dtype: the precision of the Newton–Schulz products; None picks bfloat16 on CUDA GPUs that support it and
    float32 elsewhere (on a CPU bfloat16 matmuls are slower, not faster).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = QUINTIC_STEPS,
        ns_dtype: torch.dtype | None = None,
    ):
        if not lr > 0:
            raise ValueError(f"Muon's lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Muon's momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"Muon's weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
            blocks=None, lr_scale=1.0,
        )  # fmt: skip
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon updates matrices only, got a parameter of shape {tuple(p.shape)}")
                if group["blocks"] is not None and sum(group["blocks"]) != p.size(0):
                    raise ValueError(f"blocks {group['blocks']} do not add up to the {p.size(0)} rows of a parameter")

    def _dtype(self, p: torch.Tensor) -> torch.dtype:
        if self.ns_dtype is not None:
            return self.ns_dtype
        if p.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending: list[_Update] = []
        for group in self.param_groups:
            lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - beta)
                direction = p.grad.lerp(buf, beta) if group["nesterov"] else buf
                if wd:
                    p.mul_(1 - lr * wd)
                sizes = list(group["blocks"] or [p.size(0)])  # `split` gives views of p, updated in place
                for target, rows in zip(p.split(sizes), direction.split(sizes), strict=True):
                    pending.append(_Update(target, rows, -lr * update_scale(*rows.shape), group["ns_steps"]))
        self._apply(pending)
        return loss

    def _apply(self, updates: list[_Update]) -> None:
        """target -= lr × scale × NS(direction) for every update, one batched `newton_schulz` per shape.

        A model has many matrices of a few shapes (q, k, v and the attention's output are all C × C in every layer);
        stacking each shape's directions, tall ones transposed, runs the iteration's products once per shape
        instead of once per matrix, which on a CPU with small matrices is most of the optimizer's time. Each
        matrix of a stack is still orthogonalised alone (`newton_schulz` treats leading dimensions as a batch).
        """
        stacks: dict[tuple, list[_Update]] = {}
        for u in updates:
            rows, cols = u.direction.shape
            key = (min(rows, cols), max(rows, cols), u.steps, self._dtype(u.target), u.target.device)
            stacks.setdefault(key, []).append(u)
        for (_, _, steps, dtype, _), batch in stacks.items():
            wide = torch.stack([u.direction.mT if u.tall else u.direction for u in batch])
            orthogonal = newton_schulz(wide, steps, dtype=dtype)
            for u, step in zip(batch, orthogonal, strict=True):
                u.target.add_(step.mT if u.tall else step, alpha=u.alpha)


@dataclass(frozen=True)
class _Update:
    """One matrix's pending step: `target` (a view of the parameter) += alpha × NS(`direction`)."""

    target: torch.Tensor
    direction: torch.Tensor
    alpha: float
    steps: int

    @property
    def tall(self) -> bool:
        return self.direction.size(0) > self.direction.size(1)
