"""One training step and one loss estimate: the two loops inside every training run, written once.

    autocast = autocast_for(device, "auto")
    optimizer = make_optimizer(model, config, device)
    result = train_step(model, optimizer, get_batch(train_ids, 64, 12, generator, device),
                        lr=lr_at(step, config), grad_clip=1.0, autocast=autocast)
    result.loss.item(), result.grad_norm

`train` calls these, and so do the lessons (after deriving them once) and the benchmarks, so the step that is
measured is the step that trains. They work for any language model whose `forward(x, y)` returns
`(logits, loss)`: the bigram model, a lesson's single head, the GPT.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from scratchlm.data import get_batch
from scratchlm.errors import ConfigError
from scratchlm.optim import CombinedOptimizer, Muon, split_parameters

Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on every matrix (Linear weights and embeddings), none on
    vectors (biases, LayerNorm gains and shifts).

    Decaying a bias or a LayerNorm gain pulls it towards 0, which is not a simpler function, so they are
    left alone. The embedding is decayed too (as in nanoGPT): tied, it is also the output layer's weight.
    """
    return _decay_groups([p for p in model.parameters() if p.requires_grad], weight_decay)


def _decay_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def compile_model(model: nn.Module, device: torch.device) -> nn.Module:
    """`torch.compile(model)`, and on the CPU with Inductor's C++ wrapper (`cpp_wrapper`).

    A small model's compiled step on the CPU spends a noticeable share of its time in the Python function that
    calls the generated kernels one by one; the C++ wrapper generates that function in C++ as well. On the cpu
    preset's model, one thread, it made the compiled step 6% faster (30.2 against 32.0 ms), and the first step,
    where it compiles with an empty Inductor cache, took 29 s against 27 s (Inductor keeps what it compiled on
    disk, and later runs of the same model reuse it): bench/README.md.

    On the CPU Inductor compiles C++, so a machine without a working C++ compiler is a `ConfigError` here, before
    any training, rather than a long traceback from inside the first step.
    """
    if device.type != "cpu":
        return torch.compile(model)
    _check_cpp_compiler()
    return torch.compile(model, options={"cpp_wrapper": True})


def _check_cpp_compiler() -> None:
    try:
        from torch._inductor import cpp_builder
        from torch._inductor.exc import InvalidCxxCompiler
    except ImportError:  # another PyTorch layout: leave the check to torch.compile itself
        return
    try:
        cpp_builder.get_cpp_compiler()
    except (InvalidCxxCompiler, OSError, RuntimeError) as e:
        raise ConfigError(
            f"compile=True on the CPU needs a working C++ compiler for torch.compile, and none was found ({e}): "
            "install g++ or clang++, or train without compiling"
        ) from None


def make_optimizer(model: nn.Module, config: Any, device: torch.device) -> torch.optim.AdamW | CombinedOptimizer:
    """The optimizer of `config` (a `TrainConfig`) for `model`.

    optimizer "adamw": AdamW over `param_groups`, with config's learning_rate, betas and weight_decay.
    optimizer "muon": a `CombinedOptimizer` of `Muon` over the hidden matrices (`split_parameters`: q, k and
    v of a fused c_attn orthogonalised apart) at muon_lr, muon_momentum (Nesterov) and muon_weight_decay, and
    that AdamW over the other parameters. Muon's groups carry lr_scale = muon_lr / learning_rate, so the
    `lr` that `train_step` sets (the schedule's `lr_at`) scales both optimizers by the same factor.
    """
    # the fused kernel (one launch for all parameters) is the fastest AdamW on both CUDA and CPU
    fused = device.type in ("cuda", "cpu")
    if config.optimizer == "adamw":
        groups = param_groups(model, config.weight_decay)
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, fused=fused)
    hidden, rest = split_parameters(model)
    if not hidden:
        raise ConfigError(
            f"optimizer='muon' found no hidden weight matrices in {type(model).__name__} (nn.Linear layers "
            "other than the head): train it with optimizer='adamw'"
        )
    by_blocks: dict[tuple[int, ...] | None, list[nn.Parameter]] = {}
    for h in hidden:
        by_blocks.setdefault(h.blocks, []).append(h.param)
    lr_scale = config.muon_lr / config.learning_rate
    muon = Muon(
        [{"params": ps, "blocks": blocks, "lr_scale": lr_scale} for blocks, ps in by_blocks.items()],
        lr=config.muon_lr,
        momentum=config.muon_momentum,
        nesterov=True,
        weight_decay=config.muon_weight_decay,
    )
    adamw = torch.optim.AdamW(
        _decay_groups(rest, config.weight_decay), lr=config.learning_rate, betas=config.betas, fused=fused
    )
    return CombinedOptimizer([muon, adamw])


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a run's `dtype` option ("auto", "float32", "bfloat16") on `device`, or None
    for plain float32. "auto" is bfloat16 on CUDA GPUs that support it, float32 elsewhere."""
    if dtype == "float32":
        return None
    if dtype == "bfloat16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("dtype='bfloat16' was requested but this GPU does not support bfloat16")
        return torch.bfloat16
    if dtype != "auto":
        raise ConfigError(f"dtype must be one of auto, float32, bfloat16, got {dtype!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_for(device: torch.device, dtype: str = "auto") -> contextlib.AbstractContextManager:
    """The mixed-precision context for forward passes on `device`: `torch.autocast` in the resolved dtype, or
    a do-nothing context for float32. It can be entered again and again."""
    amp_dtype = resolve_dtype(dtype, device)
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


@dataclass(frozen=True)
class StepResult:
    """What one `train_step` did. loss: the mean training loss over its micro-batches, a 0-d tensor still on
    the device (`.item()` waits for a GPU; keep it as a tensor in hot loops). grad_norm: the total gradient
    norm before clipping (a 0-d tensor), or None when clipping was off."""

    loss: torch.Tensor
    grad_norm: torch.Tensor | None


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | CombinedOptimizer,
    batch: Batch | Sequence[Batch],
    *,
    lr: float | None = None,
    grad_clip: float = 0.0,
    autocast: contextlib.AbstractContextManager | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> StepResult:
    """One optimizer step: forward, backward, clip, update.

    batch: `(x, y)`, each (B, T), or a list of such micro-batches whose gradients are accumulated into one
    step (the gradient of their mean loss, so the number of micro-batches does not rescale the learning rate).
    A batch `(x, y, attn_mask)` runs `model(x, y, attn_mask=attn_mask)`: packed documents, padding
    (`GPT.forward`'s attention mask).
    lr: set on every parameter group first, times the group's "lr_scale" where it has one (Muon's groups
    beside AdamW: `make_optimizer`); None keeps the optimizer's. grad_clip > 0 clips the total
    gradient norm (of all parameters, Muon's and AdamW's together) to it, before the optimizer sees it: Muon
    orthogonalises the clipped momentum, so clipping only lowers an outsized gradient's weight in its
    average, not the size of its step (`scratchlm.optim.muon`). autocast: the context forward passes run in
    (`autocast_for`).
    no_sync: for a `DistributedDataParallel` model, its `no_sync`: every micro-batch but the last then runs
    forward and backward inside it, so gradients accumulate locally and are all-reduced once per step (by the
    last backward) instead of once per micro-batch. Every rank then clips and steps on the same averaged
    gradients, and the result equals one process stepping on all ranks' micro-batches.

    Gradients are cleared at the start of the step, not the end, so after it returns `p.grad` still holds
    this step's gradients for whoever wants to look at them (a callback, a lesson's plot).
    """
    micro_batches = [batch] if isinstance(batch[0], torch.Tensor) else list(batch)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = None
    last = len(micro_batches) - 1
    for i, (x, y, *mask) in enumerate(micro_batches):
        with no_sync() if no_sync is not None and i < last else contextlib.nullcontext():
            with autocast or contextlib.nullcontext():
                _, loss = model(x, y, attn_mask=mask[0]) if mask else model(x, y)
            (loss / len(micro_batches)).backward()
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    grad_norm = None
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return StepResult(loss=loss_sum / len(micro_batches), grad_norm=grad_norm)


@torch.no_grad()
def estimate_loss(
    model: nn.Module,
    splits: dict[str, torch.Tensor],
    *,
    block_size: int,
    batch_size: int,
    eval_iters: int,
    seed: int,
    device: torch.device | str | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """Mean loss over `eval_iters` batches of each split ({name: 1-D token tensor}), in eval mode (no dropout).

    The batches come from a generator seeded with `seed` afresh at every call, so successive estimates differ
    only because the model changed, and evaluating never disturbs the training batches' random stream.
    """
    was_training = model.training
    model.eval()
    out = {}
    for name, data in splits.items():
        generator = torch.Generator().manual_seed(seed)
        losses = torch.empty(eval_iters)
        for i in range(eval_iters):
            x, y = get_batch(data, block_size, batch_size, generator, device)
            with autocast or contextlib.nullcontext():
                _, loss = model(x, y)
            losses[i] = loss.item()
        out[name] = losses.mean().item()
    model.train(was_training)
    return out
