"""Attention: what the GPT runs and what the lessons derive.

- `CausalSelfAttention`, `attend`: the GPT's attention (fused SDPA, grouped-query heads, RoPE, KV cache, an
  optional extra mask).
- `causal_mask`, `document_mask`: boolean masks (True = may attend), the causal triangle and packed documents.
- `Head`: the single causal head of lesson 02, written out step by step.
- `naive_attention`, `online_softmax`, `tiled_attention`, `triton_attention`: lesson 07's memory-efficient kernels.
"""

from scratchlm.attention.causal import CausalSelfAttention, attend
from scratchlm.attention.head import Head
from scratchlm.attention.masks import causal_mask, document_mask
from scratchlm.attention.tiled import naive_attention, online_softmax, tiled_attention
from scratchlm.attention.triton_kernel import TritonUnavailableError, triton_attention

__all__ = [
    "CausalSelfAttention",
    "Head",
    "TritonUnavailableError",
    "attend",
    "causal_mask",
    "document_mask",
    "naive_attention",
    "online_softmax",
    "tiled_attention",
    "triton_attention",
]
