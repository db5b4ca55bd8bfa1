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

from scratchlm.attention.masks import causal_mask
from scratchlm.attention.tiled import tiled_attention
from scratchlm.errors import ConfigError
from scratchlm.layers import Linear, RMSNorm
from scratchlm.rope import apply_rope

_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa= is new in 2.5


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    past: int = 0,
    dropout_p: float = 0.0,
    kernel: str = "sdpa",
    attn_mask: torch.Tensor | None = None,
    causal: bool = True,
) -> torch.Tensor:
    """Attention of T new queries over past + T keys: q (B, H, T, D), k, v (B, H_kv, past + T, D) -> (B, H, T, D).

    With `causal`, query i sits at position past + i and may see keys 0 .. past + i. With no past that is the
    ordinary causal mask; a single new token sees every key, so it needs no mask; a chunk of several new tokens
    after a past needs an explicit one (SDPA's is_causal aligns the triangle to the top-left, i.e. assumes no
    past). With H_kv < H (grouped-query attention) each key/value head serves H // H_kv consecutive query heads.

    attn_mask narrows what each query sees, as in `F.scaled_dot_product_attention`: boolean (True = may attend)
    or additive float (0 or a bias, -inf = hidden), (T, S) or 4-D broadcastable to (B, H, T, S), where S counts
    every key, the cached ones included (S = past + T). With `causal` the triangle is folded in (an AND for a
    boolean mask, -inf above it for an additive one); `causal=False` uses the mask alone. A query row that may
    see no key at all (every entry False or -inf) gets a zero output and zero gradients, on every backend
    (SDPA's own result for such rows is NaN on some and 0 on others); padding produces such rows for pad tokens.

    kernel "tiled" runs lesson 07's `tiled_attention` (online softmax, O(T) memory, no dropout, no mask) for
    the layouts it has: a causal square (no past), one new token over all keys, or no mask at all. A chunk
    after a past is not such a layout (its mask is a shifted triangle), so that case, which only chunked
    decoding produces, runs in SDPA with the explicit mask; an attn_mask is refused.
    """
    T, S = q.size(2), k.size(2)
    if attn_mask is not None:
        if kernel == "tiled":
            raise ConfigError(
                "attention='tiled' takes no attn_mask (lesson 07's kernel has only the causal one): use 'sdpa'"
            )
        mask, sees_a_key = _combined_mask(attn_mask, q, S, past if causal else None)
        return _sdpa(q, k, v, mask, dropout_p, is_causal=False).masked_fill(~sees_a_key, 0.0)
    if kernel == "tiled" and (not causal or past == 0 or T == 1):
        group = q.size(1) // k.size(1)
        if group > 1:  # the tiled kernel has one key/value head per query head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return tiled_attention(q, k, v, causal=causal and past == 0)
    if not causal or T == 1:
        return _sdpa(q, k, v, None, dropout_p, is_causal=False)
    if past == 0:
        return _sdpa(q, k, v, None, dropout_p, is_causal=True)
    return _sdpa(q, k, v, causal_mask(T, S, past, q.device), dropout_p, is_causal=False)


def _combined_mask(
    attn_mask: torch.Tensor, q: torch.Tensor, S: int, past: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask SDPA gets, attn_mask combined with the causal triangle of `past` (None: no triangle), and a
    boolean (..., T, 1) that is False for the query rows that see no key. Those rows are opened in the mask
    (so no -inf - -inf = NaN arises, forward or backward) and their output is zeroed by the caller."""
    B, H, T = q.shape[:3]
    want = (B, H, T, S)
    shape = (1, 1, *attn_mask.shape) if attn_mask.dim() == 2 else tuple(attn_mask.shape)
    if attn_mask.dim() not in (2, 4) or any(n not in (1, w) for n, w in zip(shape, want, strict=True)):
        raise ConfigError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not fit (B, H, T, S)={want}: give (T, S) or a 4-D "
            "mask broadcastable to it, S counting every key (the cached ones too)"
        )
    if attn_mask.dtype == torch.bool:
        allowed = attn_mask if past is None else attn_mask & causal_mask(T, S, past, q.device)
        sees_a_key = allowed.any(-1, keepdim=True)
        return allowed | ~sees_a_key, sees_a_key
    if not attn_mask.is_floating_point():
        raise ConfigError(f"attn_mask must be boolean or floating point, got {attn_mask.dtype}")
    bias = attn_mask.to(q.dtype)
    if past is not None:
        bias = bias.masked_fill(~causal_mask(T, S, past, q.device), float("-inf"))
    sees_a_key = (bias > float("-inf")).any(-1, keepdim=True)
    return bias.masked_fill(~sees_a_key, 0.0), sees_a_key


def _sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float, is_causal: bool
) -> torch.Tensor:
    """`F.scaled_dot_product_attention`, with H_kv < H key/value heads shared by groups of query heads."""
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

    QK-norm (`config.qk_norm`; OLMo 2, Qwen 3, Gemma 3): every query and key head is RMS-normalised over its D
    channels and multiplied by a learned gain (`q_norm`, `k_norm`, (D,) each, shared by the heads), so a
    score q.k/sqrt(D) can no longer grow with the weights' scale: the logits' size is whatever the two gains
    make it. Without the gains the softmax scale would be fixed: unit-RMS vectors cap |q.k|/sqrt(D) at sqrt(D)
    (4 for D = 16), reached only by perfectly aligned vectors, which limits how sharp attention can get; the
    gains start at 1 (the usual 1/sqrt(D) scale at init) and act as the learned temperature (1-D, so AdamW
    does not decay them). The norm comes before RoPE: a rotation keeps each pair's length,
    so without gains the order would not matter, but a gain that differs within a rotated pair, applied after
    the rotation, would make q.k depend on absolute positions and break RoPE's offset-only property.
    """

    def __init__(self, config: Any):
        """config: anything with n_embd, n_head, kv_heads, head_size, bias, dropout and optionally attention
        (the kernel, "sdpa" by default), qk_norm (False) and norm_eps (1e-5): a `GPTConfig`."""
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, config.head_size
        self.dropout = config.dropout
        self.kernel = getattr(config, "attention", "sdpa")  # "sdpa" or "tiled" (lesson 07's kernel)
        # [q | k | v] in one matrix: for n_kv_head == n_head this is GPT-2's c_attn, names and shape alike
        qkv_size = (config.n_head + 2 * config.kv_heads) * config.head_size
        self.c_attn = Linear(config.n_embd, qkv_size, bias=config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.qk_norm = getattr(config, "qk_norm", False)
        if self.qk_norm:
            eps = getattr(config, "norm_eps", 1e-5)
            self.q_norm, self.k_norm = RMSNorm(config.head_size, eps), RMSNorm(config.head_size, eps)

    def _normalise_heads(self, qk: torch.Tensor) -> torch.Tensor:
        """QK-norm of (B, T, H + H_kv, D) query and key heads: `q_norm` on the first H, `k_norm` on the rest.

        One normalisation of every head, then each head's gain, instead of a call per module: the same numbers
        as `self.q_norm(q)`, `self.k_norm(k)` (to rounding), in half the small operations.
        """
        H, H_kv, D = self.n_head, self.n_kv_head, self.head_size
        gains = torch.cat((self.q_norm.weight.expand(H, D), self.k_norm.weight.expand(H_kv, D)))
        return F.rms_norm(qk, (D,), eps=self.q_norm.eps) * gains

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Any = None,
        layer: int = 0,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C).

        rope: (cos, sin), each (T, D/2), the rotation table rows for these T tokens' positions, or None.
        cache: a key/value cache (`scratchlm.kv_cache.KVCache`) holding the keys and values of the
        cache.length tokens before these; the new ones are written into its buffers for `layer` (this block's
        index in the stack) and the T queries attend to all of them. The caller (`GPT.forward`) advances
        cache.length once every layer has run.
        attn_mask: an extra mask combined with the causal one (see `attend`): boolean (True = may attend) or
        additive, (T, S) or (B, 1 or H, T, S), S = cache.length + T counting the cached keys too.
        """
        B, T, C = x.shape
        H, H_kv, D = self.n_head, self.n_kv_head, self.head_size
        qk, v = self.c_attn(x).split(((H + H_kv) * D, H_kv * D), dim=2)
        # the query and key heads side by side, (B, T, H + H_kv, D): normalised and rotated in one call each
        qk = qk.view(B, T, H + H_kv, D)
        if self.qk_norm:  # before RoPE (class docstring)
            qk = self._normalise_heads(qk)
        if rope is not None:
            cos, sin = rope
            qk = apply_rope(qk, cos[:, None], sin[:, None])  # (T, 1, D/2) tables: one angle for every head
        # (B, T, heads, D) -> (B, heads, T, D): each head attends independently
        q, k = qk.transpose(1, 2).split((H, H_kv), dim=1)
        v = v.view(B, T, H_kv, D).transpose(1, 2)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)  # (B, H_kv, past + T, D)
        y = attend(q, k, v, past, self.dropout if self.training else 0.0, self.kernel, attn_mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # concatenate the heads again
        return self.resid_dropout(self.c_proj(y))
