"""A key/value cache: generate a token by running the model on that token alone, not on the whole context.

In a causal transformer the keys and values of position t depend only on tokens <= t, so they do not change
when later tokens arrive. Without a cache, `generate` recomputes them for the whole context at every step
(O(T) work per new token, and attention O(T^2)); with one, each step computes the new token's query, key and
value, appends the key and value to the cache, and attends over everything cached.

The price is memory: per layer, a key and a value for every position, kv_heads of size D each, per sequence:

    bytes = 2 (k and v) * n_layer * n_kv_head * head_size * seq_len * batch_size * bytes_per_element

which is why grouped-query attention (fewer key/value heads, `GPTConfig.n_kv_head`) exists: the cache
shrinks by n_head / n_kv_head while the number of query heads stays the same.

    cache = KVCache.for_model(model, batch_size=1)
    logits, _ = model(prompt, cache=cache)        # prefill: all prompt tokens at once, cache.length = T
    logits, _ = model(next_id, cache=cache)       # decode: one token, attends to the T cached ones
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from scratchlm.errors import ConfigError
from scratchlm.options import POSITIVE_INT

if TYPE_CHECKING:
    from scratchlm.model import GPT, GPTConfig


def kv_cache_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes a KV cache needs for `batch_size` sequences of `seq_len` tokens of a model with `config`."""
    per_token = 2 * config.n_layer * config.kv_heads * config.head_size  # a key and a value per layer and head
    return per_token * seq_len * batch_size * dtype.itemsize


class KVCache:
    """Preallocated keys and values for every layer: `k[layer]`, `v[layer]`, each (B, n_kv_head, max_len, D).

    Positions 0 .. length - 1 are filled. `GPT.forward(idx, cache=cache)` writes the new tokens' keys and
    values at positions length .. length + T - 1 of every layer (`append`), then advances `length` by T.
    Buffers are allocated once, so decoding a token copies one key and one value per layer and head, never
    the whole history.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        head_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        for name, value in (("n_layer", n_layer), ("batch_size", batch_size), ("n_kv_head", n_kv_head),
                            ("head_size", head_size), ("max_len", max_len)):  # fmt: skip
            POSITIVE_INT.check(name, value)
        shape = (batch_size, n_kv_head, max_len, head_size)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0

    @classmethod
    def for_model(cls, model: GPT, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty cache fitting `model` (its device and dtype); max_len defaults to its block_size."""
        config = model.config
        weight = model.transformer.wte.weight
        return cls(
            n_layer=config.n_layer,
            batch_size=batch_size,
            n_kv_head=config.kv_heads,
            head_size=config.head_size,
            max_len=config.block_size if max_len is None else max_len,
            device=weight.device,
            dtype=weight.dtype,
        )

    @property
    def n_layer(self) -> int:
        return len(self.k)

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    @property
    def n_kv_head(self) -> int:
        return self.k[0].size(1)

    @property
    def max_len(self) -> int:
        return self.k[0].size(2)

    @property
    def head_size(self) -> int:
        return self.k[0].size(3)

    @property
    def nbytes(self) -> int:
        """Bytes of all key and value buffers allocated (filled or not)."""
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def reset(self) -> None:
        """Forget every cached token (the buffers are kept and overwritten by the next use)."""
        self.length = 0

    def check_fits(self, config: GPTConfig, batch_size: int, new_tokens: int) -> None:
        """Raise a ConfigError unless `new_tokens` more tokens of a `config` model's batch fit in this cache."""
        want = (config.n_layer, config.kv_heads, config.head_size)
        have = (self.n_layer, self.n_kv_head, self.head_size)
        if want != have:
            raise ConfigError(
                f"this KV cache is for (n_layer, n_kv_head, head_size)={have}, the model has {want}; "
                "make it with KVCache.for_model(model, ...)"
            )
        if batch_size != self.batch_size:
            raise ConfigError(f"the batch has {batch_size} sequences but the KV cache was made for {self.batch_size}")
        if self.length + new_tokens > self.max_len:
            raise ConfigError(
                f"the KV cache is full: it holds {self.length} of max_len={self.max_len} positions and cannot "
                f"take {new_tokens} more (reset() it, or make a longer one)"
            )

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `layer`'s keys and values of T new tokens, k, v: (B, n_kv_head, T, D), at positions length ..
        length + T - 1, and return the layer's keys and values for positions 0 .. length + T - 1.

        `length` itself is not advanced here: every layer appends the same T tokens, and `GPT.forward`
        advances it once after the last layer.
        """
        end = self.length + k.size(2)
        self.k[layer][:, :, self.length : end] = k
        self.v[layer][:, :, self.length : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]
