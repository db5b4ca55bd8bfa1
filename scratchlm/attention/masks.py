"""Attention masks: which keys each query may see, as a boolean tensor (True = may attend).

The GPT's attention is always causal; an explicit mask (`attend(..., attn_mask=)`, `GPT.forward(idx,
attn_mask=)`) narrows it further. Post-training needs two kinds:
- padding: a key that is a pad token is hidden from every query, `(ids != pad)[:, None, None, :]`, (B, 1, 1, S);
- packing: several documents share one row of a batch, and a token may see only earlier tokens of its own
  document (`document_mask`), so each document is computed exactly as if it were alone in the row.

Shapes follow `F.scaled_dot_product_attention`: a mask is (T, S) or 4-D, broadcastable to (B, H, T, S), with
T the queries and S all keys, cached ones included (S = past + T).
"""

from __future__ import annotations

import torch

from scratchlm.errors import ConfigError


def causal_mask(n_queries: int, n_keys: int, past: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, S) boolean: query i, the token at position past + i, may see keys 0 .. past + i.

    With no past it is the lower triangle; after a KV cache of `past` tokens (S = past + T) the triangle is
    shifted right by past, so every new query also sees the whole cache.
    """
    return torch.arange(n_keys, device=device) <= past + torch.arange(n_queries, device=device)[:, None]


def document_mask(doc_ids: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """The mask of packed documents: token i may see token j iff both belong to the same document (and, with
    `causal`, j <= i): a block-diagonal lower triangle.

    doc_ids: (T,) or (B, T) integers, one document id per token (any ids; only equality matters, so padding may
    be given an id of its own) -> (T, T) or (B, 1, T, T) boolean, one mask shared by all heads.
    """
    if doc_ids.dim() not in (1, 2) or doc_ids.is_floating_point() or doc_ids.is_complex():
        raise ConfigError(
            f"doc_ids must be integer ids shaped (T,) or (B, T), got {doc_ids.dtype} {tuple(doc_ids.shape)}"
        )
    same = doc_ids[..., :, None] == doc_ids[..., None, :]  # (..., T, T)
    if causal:
        T = doc_ids.size(-1)
        same = same & causal_mask(T, T, device=doc_ids.device)
    return same if doc_ids.dim() == 1 else same[:, None]
