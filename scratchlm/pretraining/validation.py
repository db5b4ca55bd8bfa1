"""The validation loss of a pretraining run: the whole validation split, or a fixed random sample of its windows
with a standard error, and bits per byte over exactly the tokens scored.

    windows = validation_windows(loader.windows, max_windows=640, seed=1337)   # the same at every evaluation
    score = score_windows(model, loader, windows, token_byte_lengths(tokenizer), autocast)
    score.loss, score.loss_se, score.bits_per_byte

Why not "the first few batches in file order": a split is not homogeneous. In the standard library's, a few
generated codec tables are far easier than the rest, and a prefix of the file that happens to hold them reports a
loss half a nat too low while the documents after it are never scored. So the estimate covers the whole split when
the budget allows (`max_windows` at least the split's windows: no sampling error at all), and otherwise a uniform
random sample of windows drawn once from a seed, so every evaluation scores the same tokens and its standard error
is that of a simple random sample (with the finite-population correction).

Bits per byte divides the loss summed over the scored tokens (in bits) by the UTF-8 bytes those very tokens decode
to (an end-of-text token decodes to none), not by the whole split's average bytes per token: a sample of easy,
short-token text would otherwise be converted at the wrong rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.pretraining.loader import ShardLoader


@dataclass(frozen=True)
class SplitScore:
    """A validation estimate.

    loss: mean nats per scored token. loss_se: its standard error from sampling windows (0.0 when the whole split
    is scored). bits_per_byte: the loss summed over the scored tokens, in bits, over their UTF-8 bytes; bpb_se:
    loss_se converted at the same rate. windows, total_windows: windows scored and in the split; tokens, bytes:
    target tokens scored and the bytes they decode to.
    """

    loss: float
    loss_se: float
    bits_per_byte: float
    bpb_se: float
    windows: int
    total_windows: int
    tokens: int
    bytes: int

    @property
    def whole_split(self) -> bool:
        return self.windows == self.total_windows


def token_byte_lengths(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes each id decodes to, shape (vocab_size,) int64; special tokens (end-of-text) count 0.

    A BPE's ids decode to raw bytes (`decode_bytes`); other tokenizers' (characters) to text, encoded here. Ids
    the tokenizer does not know (a vocabulary padded past its size) count 0.
    """
    special = set((getattr(tokenizer, "special_tokens", None) or {}).values())
    lengths = np.zeros(vocab_size, dtype=np.int64)
    decode_bytes = getattr(tokenizer, "decode_bytes", None)
    for i in range(min(vocab_size, tokenizer.vocab_size)):
        if i in special:
            continue
        lengths[i] = len(decode_bytes([i])) if decode_bytes is not None else len(tokenizer.decode([i]).encode("utf-8"))
    return lengths


def validation_windows(total: int, max_windows: int, seed: int) -> np.ndarray:
    """The window numbers an evaluation scores: all `total` when max_windows >= total, else `max_windows` of them
    drawn uniformly without replacement from `seed` (sorted, so reading stays sequential). The same arguments give
    the same windows, so every evaluation of a run scores the same tokens."""
    if max_windows >= total:
        return np.arange(total)
    rng = np.random.default_rng([seed, 0x5EED])
    return np.sort(rng.choice(total, size=max_windows, replace=False))


@torch.no_grad()
def score_windows(
    model: nn.Module,
    loader: ShardLoader,
    windows: np.ndarray,
    byte_lengths: np.ndarray,
    autocast: Any,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> SplitScore:
    """Score `windows` of `loader`'s split with `model` (in eval mode; its mode is restored).

    Rank r scores windows[r::world_size] in batches of `loader.batch_size`; the sums (loss, window means and their
    squares, windows, tokens, bytes) are all-reduced across ranks, so every rank returns the same score, equal to
    one process scoring them all.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = torch.from_numpy(byte_lengths)
    mine = windows[rank::world_size]
    # float64 sums: loss total, sum and sum of squares of per-window mean losses, windows, tokens, bytes
    sums = torch.zeros(6, dtype=torch.float64)
    for start in range(0, len(mine), loader.batch_size):
        tokens = torch.from_numpy(loader.read_windows(mine[start : start + loader.batch_size]))
        x, y = tokens[:, :-1].to(device), tokens[:, 1:].to(device)
        with autocast:
            logits, _ = model(x)
        losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(y.shape).double()
        per_window = losses.mean(dim=1).cpu()
        sums += torch.tensor([losses.sum().item(), per_window.sum().item(), per_window.square().sum().item(),
                              len(per_window), y.numel(), lengths[tokens[:, 1:]].sum().item()],
                             dtype=torch.float64)  # fmt: skip
    if world_size > 1:
        sums = sums.to(device)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        sums = sums.cpu()
    model.train(was_training)
    loss_sum, mean_sum, square_sum, n, n_tokens, n_bytes = sums.tolist()
    loss = loss_sum / n_tokens
    total = loader.windows
    if n >= total or n < 2:
        se = 0.0
    else:  # every window has block_size targets, so the token mean is the mean of the window means
        variance = max(square_sum - mean_sum**2 / n, 0.0) / (n - 1)
        se = math.sqrt(variance / n * (1 - n / total))
    to_bpb = 1 / math.log(2) * n_tokens / max(n_bytes, 1)
    return SplitScore(loss, se, loss * to_bpb, se * to_bpb, int(n), total, int(n_tokens), int(n_bytes))
