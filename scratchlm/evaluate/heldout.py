"""Scoring a held-out text: the loss of every token, bits per byte, and the loss by position in the context.

Lesson 06 derives the first three (why nats per token cannot be compared across tokenizers and bits per byte
can); lesson 08 derives the loss by position (what a model does with context beyond its training length).

Which tokens a prediction may see is the whole subtlety of held-out scoring, so it is stated exactly here:

- `token_nats(model, ids, stride)`: the text is read in windows of `block_size` tokens. A window starts every
  `stride` tokens (default `block_size`: side by side), and one more ends with the text; each window scores
  only the targets no earlier window scored, so every token after the first is scored exactly once.
  `context[p - 1]` says how many tokens the model saw when it predicted `ids[p]`: with side-by-side windows
  1, 2, ..., block_size, 1, 2, ...; with a stride s < block_size, every target after the first window sees
  between block_size - s + 1 and block_size tokens.
- `loss_by_position(model, windows, context=None, stride=None)`: many windows, each scored on its own from
  its first token, so that column t is the loss with t + 1 tokens of context; `context` caps how many tokens
  the model ever reads (for a model with learned positions, which has none beyond block_size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from scratchlm.errors import ConfigError


def token_bytes(tokenizer: Any) -> torch.Tensor:
    """(vocab_size,) int64: how many UTF-8 bytes of text each token id decodes to.

    A byte-level BPE token may be half a character, so its bytes are counted from `decode_bytes`, not from
    the decoded string (which would turn the half into a 3-byte U+FFFD). For a character tokenizer it is the
    UTF-8 length of each character. Summed over the ids of a text, it gives the text's length in bytes.
    """
    if hasattr(tokenizer, "decode_bytes"):
        return torch.tensor([len(tokenizer.decode_bytes([i])) for i in range(tokenizer.vocab_size)], dtype=torch.long)
    if hasattr(tokenizer, "chars"):
        return torch.tensor([len(c.encode("utf-8")) for c in tokenizer.chars], dtype=torch.long)
    return torch.tensor([len(tokenizer.decode([i]).encode("utf-8")) for i in range(tokenizer.vocab_size)])


@contextmanager
def scoring(model: nn.Module) -> Iterator[torch.device]:
    """Run `model` for scoring: eval mode (no dropout) and no autograd, then put its mode back.

    Yields the device of its parameters, where the inputs must go.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def _window_length(model: nn.Module, block_size: int | None) -> int:
    if block_size is not None:
        return block_size
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "block_size"):
        raise ConfigError(f"{type(model).__name__} has no config.block_size: pass block_size= to score it")
    return int(config.block_size)


def score_windows(
    model: nn.Module,
    ids: torch.Tensor,
    measure: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    stride: int | None = None,
    batch_size: int = 64,
    desc: str | None = None,
    *,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of `token_nats`, with any per-prediction measure: (values (len(ids) - 1, ...), context).

    measure(logits (B, T, V) float32, targets (B, T)) -> (B, T, ...) values, one per prediction; values[p - 1]
    is the measure of predicting ids[p], made after reading context[p - 1] tokens. `token_nats` measures the
    cross-entropy; `scratchlm.evaluate.calibration` the top-1 probability and whether it was right.
    """
    T = _window_length(model, block_size)
    ids = torch.as_tensor(ids)
    n = len(ids)
    if ids.dim() != 1 or n < 2:
        raise ConfigError(f"need a 1-D sequence of at least 2 token ids to score, got shape {tuple(ids.shape)}")
    stride = stride or T
    if not 0 < stride <= T:
        raise ConfigError(f"stride must be in [1, block_size={T}], got {stride}")
    T = min(T, n - 1)  # a short text is a single window of all but its last token
    starts = list(range(0, n - T, stride))  # windows ids[s : s + T] whose targets ids[s + 1 : s + T + 1] exist
    if starts[-1] + T < n - 1:
        starts.append(n - 1 - T)  # the tail of the text
    offsets = torch.arange(T)
    values: torch.Tensor | None = None
    context = torch.empty(n - 1, dtype=torch.long)
    scored = 0  # targets ids[1 .. scored] are done
    with scoring(model) as device:
        for i in tqdm(range(0, len(starts), batch_size), desc=desc, disable=desc is None):
            s = torch.tensor(starts[i : i + batch_size])
            x, y = ids[s[:, None] + offsets], ids[s[:, None] + offsets + 1]  # (B, T) inputs and targets
            logits = model(x.to(device))[0]
            value = measure(logits.float(), y.to(device)).cpu()  # value[b, j]: target ids[s_b + j + 1], j + 1 seen
            if values is None:
                values = torch.empty(n - 1, *value.shape[2:], dtype=value.dtype)
            for b, start in enumerate(s.tolist()):
                first = max(scored - start, 0)  # offsets below this were scored by an earlier window
                values[start + first : start + T] = value[b, first:]
                context[start + first : start + T] = torch.arange(first + 1, T + 1)
                scored = start + T
    assert scored == n - 1 and values is not None, "every target is scored exactly once"
    return values, context


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-ln p(target) of every prediction: logits (B, T, V), targets (B, T) -> (B, T) nats."""
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")


def token_nats(
    model: nn.Module,
    ids: torch.Tensor,
    stride: int | None = None,
    batch_size: int = 64,
    desc: str | None = None,
    *,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score every token of `ids` after the first: (nats, context), both of shape (len(ids) - 1,).

    nats[p - 1] = -ln p(ids[p] | the tokens before it in its window); context[p - 1] = how many tokens that
    window showed the model (1 to block_size). Windows of block_size tokens start every `stride` tokens
    (default block_size: side by side), plus a last one that ends with the text; each window scores only the
    targets that no earlier window scored. A text of at most block_size + 1 tokens is one window. `desc`
    shows a progress bar. model: anything called as `model(x)` -> (logits (B, T, V), ...) with
    `config.block_size`, or pass `block_size` (the bigram model has none: any length is fine for it).
    """
    return score_windows(model, ids, cross_entropy, stride, batch_size, desc, block_size=block_size)


def bits_per_byte(nats: torch.Tensor, ids: torch.Tensor, n_bytes: torch.Tensor) -> float:
    """Total bits over the bytes of the scored tokens (all but the first); n_bytes[id] = bytes of token id.

    nats: (len(ids) - 1,) from `token_nats`; n_bytes: `token_bytes(tokenizer)`. Dividing the code length of
    the text by its bytes, not its tokens, is what makes models with different tokenizers comparable.
    """
    ids = torch.as_tensor(ids)
    if len(nats) != len(ids) - 1:
        raise ConfigError(f"nats scores every token but the first: expected {len(ids) - 1} values, got {len(nats)}")
    n = n_bytes[ids[1:]].sum().item()
    if n == 0:
        raise ConfigError("the scored tokens decode to no bytes")
    return nats.sum().item() / (math.log(2) * n)


def _window_losses(model: nn.Module, windows: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """(N, L + 1) ids -> (N, L) cross-entropies, each window read whole; [:, t] predicts token t + 1."""
    out = []
    for chunk in windows.split(batch_size):
        logits = model(chunk[:, :-1].to(device))[0]
        out.append(cross_entropy(logits.float(), chunk[:, 1:].to(device)).cpu())
    return torch.cat(out)


def loss_by_position(
    model: nn.Module,
    windows: torch.Tensor,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """The loss of every prediction in every window: windows (N, L + 1) ids -> losses (N, L).

    losses[:, t] is the cross-entropy of predicting windows[:, t + 1]; `.mean(0)` is the loss by position.

    context None: each window is read whole, so column t saw t + 1 tokens (L may exceed block_size only for
    a model that can read that far, such as RoPE). context c: the model never reads more than c tokens. The
    first c positions come from one window (contexts 1 .. c, the same as reading whole); after that a window
    of c tokens moves on by `stride` (default c) and scores its last `stride` positions (contexts
    c - stride + 1 .. c), and a last, shorter step ends exactly at L, so every position is scored once.
    """
    windows = torch.as_tensor(windows)
    if windows.dim() != 2 or windows.size(1) < 2:
        raise ConfigError(f"windows must be (N, L + 1) token ids with L >= 1, got shape {tuple(windows.shape)}")
    N, L = windows.size(0), windows.size(1) - 1
    with scoring(model) as device:
        if context is None or context >= L:
            return _window_losses(model, windows, batch_size, device)
        stride = stride or context
        if context < 1 or not 0 < stride <= context:
            raise ConfigError(f"need context >= 1 and 0 < stride <= context, got context={context}, stride={stride}")
        losses = torch.empty(N, L)
        losses[:, :context] = _window_losses(model, windows[:, : context + 1], batch_size, device)
        end = context  # positions [0, end) are scored
        while end < L:
            new_end = min(end + stride, L)
            window = windows[:, new_end - context : new_end + 1]
            losses[:, end:new_end] = _window_losses(model, window, batch_size, device)[:, end - new_end :]
            end = new_end
    return losses
