"""Will it fit? Memory estimates made before allocating, so an absurd size is refused with its figure.

`--n-embd 100000` or `--num-samples 10000000` would otherwise start allocating until the machine swaps or the
process is killed, minutes later and with no explanation. The estimates here are lower bounds: the main
terms only, in float32. A run they refuse cannot fit; a run they accept may still be tight.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from scratchlm.errors import ConfigError
from scratchlm.kv_cache import kv_cache_bytes
from scratchlm.model import GPTConfig, swiglu_hidden_size

FLOAT32 = 4


def parameter_count(config: GPTConfig) -> int:
    """The parameters of a GPT of `config`, by formula: nothing is built, so even a million layers cost nothing
    (tests check it against `GPT(config).num_parameters()`)."""
    C, D, bias = config.n_embd, config.head_size, int(config.bias)
    qkv = (config.n_head + 2 * config.kv_heads) * D  # c_attn's outputs
    hidden = swiglu_hidden_size(C) if config.mlp == "swiglu" else 4 * C
    mlp_in = 2 * hidden if config.mlp == "swiglu" else hidden  # SwiGLU's c_fc holds the gate and the up matrix
    norm = C + (bias * C if config.norm == "layernorm" else 0)  # a gain, and LayerNorm's bias (RMSNorm has none)
    block = (
        C * qkv + bias * qkv  # c_attn
        + C * C + bias * C  # attention's c_proj
        + int(config.qk_norm) * 2 * D  # the query and key heads' RMSNorm gains
        + C * mlp_in + bias * mlp_in + hidden * C + bias * C  # the MLP's c_fc and c_proj
        + 2 * norm  # ln_1, ln_2
    )  # fmt: skip
    positions = config.block_size * C if config.pos_embedding == "learned" else 0
    head = 0 if config.tie_embeddings else config.vocab_size * C
    return config.vocab_size * C + positions + config.n_layer * block + norm + head  # norm: ln_f


def training_bytes(config: GPTConfig, batch_size: int) -> int:
    """Training: the weights, their gradients and AdamW's two moments (16 bytes per parameter), plus the
    activations kept for the backward pass (at least the residual stream and MLP of every layer, ~16·C floats
    per token and layer) and the logits with their gradient."""
    tokens = batch_size * config.block_size
    activations = tokens * (config.n_layer * 16 * config.n_embd + 2 * config.vocab_size)
    return 4 * FLOAT32 * parameter_count(config) + FLOAT32 * activations


def sampling_bytes(config: GPTConfig, batch_size: int, total_len: int) -> int:
    """Sampling: the weights, a KV cache of block_size positions, the logits of a prefill and the ids."""
    logits = batch_size * config.block_size * config.vocab_size * FLOAT32
    ids = batch_size * total_len * 8
    return FLOAT32 * parameter_count(config) + kv_cache_bytes(config, batch_size, config.block_size) + logits + ids


def available_bytes(device: torch.device) -> int | None:
    """Memory that `device` can still give us: free GPU memory on CUDA, MemAvailable of /proc/meminfo (Linux)
    or the free physical pages elsewhere for the CPU; None when it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return None  # unified memory: the CPU's figure below would double count, and torch offers no free figure
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, device: torch.device, what: str) -> None:
    """Raise a ConfigError naming both figures when `needed` bytes exceed what `device` has available."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise ConfigError(
            f"{what} needs at least {needed / 2**30:,.1f} GiB but {device.type} has {available / 2**30:,.1f} GiB "
            "available: choose smaller sizes"
        )
