"""Sampling text from a language model, one token at a time.

`generate` works for any model whose `forward(idx)` returns `(logits, loss)` with logits `(B, T, V)`:
the bigram model of lesson 01 as well as `GPT`. A model with a `config.block_size` sees only the last
block_size tokens; one without (the bigram model) sees everything.

A `GPT` generates with a key/value cache (`scratchlm.kv_cache`): the prompt is run once to fill the cache,
then each step runs the model on the newest token alone. Other models, and `use_cache=False`, re-run the
model on the whole context at every step. Both give the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.errors import ConfigError
from scratchlm.kv_cache import KVCache
from scratchlm.model import GPT
from scratchlm.options import NON_NEGATIVE_INT, POSITIVE_INT, Rule, optional

_TOP_K = optional(Rule("an integer >= 1", POSITIVE_INT.accepts))


def _check_sampling_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    NON_NEGATIVE_INT.check("max_new_tokens", max_new_tokens)
    if not 0 <= temperature < math.inf:  # also rejects NaN
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    _TOP_K.check("top_k", top_k)
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p must be in (0, 1] or None, got {top_p}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the nucleus of probability mass top_p.

    logits: (B, V). The nucleus is the smallest set of most likely tokens whose probabilities sum to at
    least top_p; the most likely token is always kept, so sampling never sees an empty distribution.
    """
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


_SEED = Rule("an integer in [0, 2**64) or None", lambda v: v is None or (NON_NEGATIVE_INT.accepts(v) and v < 2**64))


def _vocab_size(model: nn.Module) -> int | None:
    """The number of token ids `model` embeds, when it says (a GPT's config, an embedding's rows)."""
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if size is None:
        embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
        size = embedding.num_embeddings if embedding is not None else None
    return size


def _check_prompt(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """idx as a (B, T) batch of valid ids (a one-line ConfigError otherwise)."""
    if idx.dim() not in (1, 2) or idx.dtype != torch.long:
        raise ConfigError(f"idx must be int64 token ids of shape (B, T), got {idx.dtype} {tuple(idx.shape)}")
    idx = idx.unsqueeze(0) if idx.dim() == 1 else idx
    if idx.size(1) == 0:
        raise ConfigError("the prompt is empty: generation needs at least one token to start from")
    vocab_size = _vocab_size(model)
    low, high = idx.min().item(), idx.max().item()
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bad = low if low < 0 else high
        raise ConfigError(
            f"token id {bad} is outside the model's vocabulary (0 .. {vocab_size - 1 if vocab_size else '?'})"
        )
    return idx


@torch.no_grad()
def stream(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every prompt in `idx` as soon as it is sampled: `max_new_tokens` tensors of shape
    (B, 1) (idx: (B, T), or (T,) for one prompt). `generate` collects them; a caller that prints them as they come
    shows text at once and keeps what was printed if it is interrupted. The arguments are `generate`'s."""
    _check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    _SEED.check("seed", seed)
    idx = _check_prompt(model, idx)
    device = next(model.parameters()).device
    idx = idx.to(device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    cache = KVCache.for_model(model, idx.size(0)) if use_cache and isinstance(model, GPT) else None

    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            # a model with learned positions cannot look further back than block_size tokens
            context = idx if block_size is None else idx[:, -block_size:]
            if cache is None or cache.length == cache.max_len:  # no cache, or a full one: recompute
                logits, _ = model(context)
            elif cache.length == 0:  # prefill: the whole (cropped) prompt in one pass
                logits, _ = model(context, cache=cache)
            else:  # the cache holds idx[:, :-1]; only the newest token is new
                logits, _ = model(idx[:, -1:], cache=cache)
            logits = logits[:, -1, :].float()  # (B, V): only the last position predicts the next token
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                # shift the maximum to 0 first: a tiny temperature then sends the others to -inf, never to nan
                logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
                logits = filter_logits(logits, top_k, top_p)
                probs = F.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)
            yield next_id
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Extend each prompt in `idx` by `max_new_tokens` sampled tokens.

    idx: (B, T) int64 token ids (a 1-D (T,) prompt is treated as a batch of one and returned 1-D), each in
    0 .. vocab_size - 1. Returns (B, T + max_new_tokens): the prompts followed by their continuations.

    temperature: divides the logits; below 1 sharpens the distribution, 0 means greedy (argmax).
    top_k: sample only among the k most likely tokens. top_p: sample only from the nucleus of mass top_p.
    seed: sample with a private generator on the model's device, so the same seed gives the same text and
    the global random state is left untouched; None uses the global generator.
    use_cache: decode a `GPT` with a KV cache (other models have none; a GPT whose blocks are one's own must
    pass the cache on to attention that uses it, as the library's blocks do, or generate with use_cache=False).
    The output is the same either way, sampled text included: only the work per step differs. The cache holds
    block_size positions; once the context is longer, the model must see only its last block_size tokens, whose
    keys and values all change as the window slides, so from then on every step recomputes the cropped context,
    exactly as without a cache: generations much longer than block_size lose the speed-up.

    The model is put in eval mode (no dropout) and restored to its previous mode afterwards. `stream` yields
    the same tokens one step at a time.
    """
    steps = list(stream(model, idx, max_new_tokens, temperature, top_k, top_p, seed, use_cache))
    prompt = _check_prompt(model, idx).to(next(model.parameters()).device)
    out = torch.cat([prompt, *steps], dim=1)
    return out.squeeze(0) if idx.dim() == 1 else out
