"""The attention the GPT runs: causal multi-head self-attention with grouped-query heads, RoPE and a KV cache.

`attend` is the masked softmax(q k^T / sqrt(D)) v itself, through PyTorch's fused `scaled_dot_product_attention`
(lesson 07 derives what such a fused kernel does); `CausalSelfAttention` is the module around it: one Linear
for queries, keys and values, the heads as a reshape, optional rotary embeddings (lesson 08) and an optional
key/value cache (lesson 09).

The module is coupled to the rest by shape alone: it reads the sizes it needs from a config object, takes the
rotation table as a (cos, sin) pair and uses any cache that offers `length` and `append(layer, k, v)`; it
imports neither the model nor the cache.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.attention.tiled import tiled_attention
from scratchlm.layers import Linear
from scratchlm.rope import apply_rope

_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa= is new in 2.5


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    past: int = 0,
    dropout_p: float = 0.0,
    kernel: str = "sdpa",
) -> torch.Tensor:
    """Causal attention of T new queries over past + T keys: q (B, H, T, D), k, v (B, H_kv, past + T, D).

    Query i sits at position past + i and may see keys 0 .. past + i. With no past that is the ordinary
    causal mask; a single new token sees every key, so it needs no mask; a chunk of several new tokens after
    a past needs an explicit one (SDPA's is_causal aligns the triangle to the top-left, i.e. assumes no past).
    With H_kv < H (grouped-query attention) each key/value head serves H // H_kv consecutive query heads.

    kernel "tiled" runs lesson 07's `tiled_attention` (online softmax, O(T) memory, no dropout) for the two
    layouts it has: a causal square (no past) and one new token over all keys. A chunk after a past is not
    such a layout (its mask is a shifted triangle), so that case, which only chunked decoding produces, runs
    in SDPA with the explicit mask.
    """
    T, S = q.size(2), k.size(2)
    if kernel == "tiled" and (past == 0 or T == 1):
        group = q.size(1) // k.size(1)
        if group > 1:  # the tiled kernel has one key/value head per query head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return tiled_attention(q, k, v, causal=past == 0)
    if past == 0:
        mask, is_causal = None, True
    elif T == 1:
        mask, is_causal = None, False
    else:
        mask = torch.arange(S, device=q.device) <= past + torch.arange(T, device=q.device)[:, None]  # (T, S)
        is_causal = False
    group = q.size(1) // k.size(1)
    if group == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    if _SDPA_HAS_GQA:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=True
        )
    # older torch: give every query head its own copy of its group's key/value head
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends only to positions <= t.

    One Linear computes queries (n_head heads) and keys and values (kv_heads heads each) at once; the heads
    are a reshape, and the masked softmax(q k^T / sqrt(D)) v runs in PyTorch's fused
    `scaled_dot_product_attention`. With grouped-query attention each key/value head serves a group of
    n_head // kv_heads consecutive query heads.
    """

    def __init__(self, config: Any):
        """config: anything with n_embd, n_head, kv_heads, head_size, bias, dropout and optionally attention
        (the kernel, "sdpa" by default): a `GPTConfig`."""
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, config.head_size
        self.dropout = config.dropout
        self.kernel = getattr(config, "attention", "sdpa")  # "sdpa" or "tiled" (lesson 07's kernel)
        # [q | k | v] in one matrix: for n_kv_head == n_head this is GPT-2's c_attn, names and shape alike
        qkv_size = (config.n_head + 2 * config.kv_heads) * config.head_size
        self.c_attn = Linear(config.n_embd, qkv_size, bias=config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Any = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C).

        rope: (cos, sin), each (T, D/2), the rotation table rows for these T tokens' positions, or None.
        cache: a key/value cache (`scratchlm.kv_cache.KVCache`) holding the keys and values of the
        cache.length tokens before these; the new ones are written into its buffers for `layer` (this block's
        index in the stack) and the T queries attend to all of them. The caller (`GPT.forward`) advances
        cache.length once every layer has run.
        """
        B, T, C = x.shape
        H, H_kv, D = self.n_head, self.n_kv_head, self.head_size
        q, k, v = self.c_attn(x).split((H * D, H_kv * D, H_kv * D), dim=2)
        # (B, T, H * D) -> (B, H, T, D): each head attends independently
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H_kv, D).transpose(1, 2)  # (B, H_kv, T, D)
        v = v.view(B, T, H_kv, D).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)  # (B, H_kv, past + T, D)
        y = attend(q, k, v, past, self.dropout if self.training else 0.0, self.kernel)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # concatenate the heads again
        return self.resid_dropout(self.c_proj(y))
