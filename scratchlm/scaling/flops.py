"""Counting what a training run costs: parameters N, FLOPs per token, and the FLOPs of a whole run.

    N = non_embedding_params(config)            # what scaling laws call the model size
    C = flops_per_token(config) * tokens        # training FLOPs: 6N + 12·L·T·C per token

The conventions, stated once:

- **N** leaves out the position table (a lookup, no arithmetic) and keeps the token embedding, which, tied, is
  also the output layer's matmul: the count `GPT.num_parameters(non_embedding=True)` makes. Kaplan et al. (2020)
  left the token embedding out as well (`count_head=False`); at small sizes that hides a real share of the
  compute, one of the three causes Porian et al. (2024) found for the gap between Kaplan's and Chinchilla's laws.
- **6N** per token: one multiply-add (2 FLOPs) per parameter forward, twice that backward.
- **Attention**: per layer and token, the scores q·kᵀ against T keys (2·T·C FLOPs) and the weighted sum of T values
  (2·T·C), times three for the backward pass: 12·L·T·C. This counts the whole T×T score matrix, the masked upper
  half included, because that is what dense kernels (PyTorch's math and CPU attention, the profiler's formulas)
  compute; it is `GPT.flops_per_token`'s count and lesson 04's. A kernel that skips the masked tiles (lesson 07)
  does about half, 6·L·T·C (`masked_half=False`): the count Kaplan et al.'s 2·n_layer·n_ctx·d_attn per forward
  token corresponds to.

Everything else (LayerNorm, GELU, softmax, the optimizer) is left out, as in both papers: a few percent for
these models (`measure_training_flops` counts the matmuls with PyTorch's `FlopCounterMode` to check).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from scratchlm.model import GPT, GPTConfig


def _meta_gpt(config: GPTConfig) -> GPT:
    """A GPT of `config` whose tensors have shapes but no storage: counting its parameters allocates nothing."""
    with torch.device("meta"):
        return GPT(config)


def non_embedding_params(config: GPTConfig, count_head: bool = True) -> int:
    """N, the model size of scaling laws, for a GPT of `config` (its vocab_size must be set).

    count_head=True (ours, and Chinchilla's spirit): the tied token embedding counts, because it is the output
    layer. count_head=False: Kaplan et al.'s N, without any embedding matrix.
    """
    model = _meta_gpt(config)
    n = model.num_parameters(non_embedding=True)
    if not count_head:
        n -= model.lm_head.weight.numel()  # the tied embedding or the untied head
    return n


def attention_flops_per_token(config: GPTConfig, seq_len: int | None = None, masked_half: bool = True) -> int:
    """Training FLOPs per token of attention's two T-dependent products, forward and backward: 12·L·T·C.

    seq_len: T (default block_size). masked_half=False counts only the causal half, 6·L·T·C.
    """
    T = seq_len or config.block_size
    full = 12 * config.n_layer * T * config.n_embd
    return full if masked_half else full // 2


def flops_per_token(config: GPTConfig, seq_len: int | None = None, masked_half: bool = True) -> int:
    """Training FLOPs per token: 6N + 12·L·T·C (equal to `GPT(config).flops_per_token(seq_len)`)."""
    return 6 * non_embedding_params(config) + attention_flops_per_token(config, seq_len, masked_half)


def training_flops(config: GPTConfig, tokens: int | float, seq_len: int | None = None) -> float:
    """C, the FLOPs of training a GPT of `config` on `tokens` tokens."""
    return float(flops_per_token(config, seq_len)) * tokens


def measure_training_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """The FLOPs PyTorch's `FlopCounterMode` counts in one forward and backward pass of `model` on (x, y).

    Returns {operator name: FLOPs} and "total". The counter knows matmuls and the GPU attention kernels but not
    the fused CPU attention, so attention runs in the math backend here (scores, mask, softmax, weighted sum as
    separate operators, its two products counted as `bmm`), and oneDNN is switched off so that linear layers run
    as the `addmm`/`mm` it counts. Gradients are computed and then cleared.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # oneDNN's ops are not in the counter's table: plain aten matmuls
    try:
        with sdpa_kernel(SDPBackend.MATH), counter:
            _, loss = model(x, y)
            loss.backward()
    finally:
        torch.backends.mkldnn.enabled = onednn
    model.zero_grad(set_to_none=True)
    counts = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    counts["total"] = int(counter.get_total_flops())
    return counts
