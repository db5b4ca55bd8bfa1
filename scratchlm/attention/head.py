"""The single causal self-attention head of lesson 02, written out step by step (explicit mask and
softmax) because it is the object of study; the GPT in `scratchlm.model` uses the fused
`scaled_dot_product_attention` for speed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Head(nn.Module):
    """One head of causal self-attention.

    Each position emits a query ("what am I looking for"), a key ("what do I contain") and a value ("what I
    pass on"); position t mixes the values of positions <= t, weighted by softmax(q·k / sqrt(head_size)).
    The 1/sqrt(head_size) keeps the scores at unit variance so the softmax does not saturate at init.
    """

    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float = 0.0):
        super().__init__()
        self.head_size = head_size
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        # a buffer, not a parameter: the mask is part of the module's state but is never trained
        self.register_buffer("causal_mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """`x` (B, T, n_embd) → out (B, T, head_size); with `return_weights`, also the (B, T, T) weights."""
        _, T, _ = x.shape
        if self.causal_mask.shape[0] < T:
            raise ValueError(f"sequence length {T} exceeds this head's block_size {self.causal_mask.shape[0]}")
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, T, T)
        scores = scores.masked_fill(~self.causal_mask[:T, :T], float("-inf"))
        weights = self.dropout(F.softmax(scores, dim=-1))
        out = weights @ v
        return (out, weights) if return_weights else out
