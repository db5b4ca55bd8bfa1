"""Token data: a text becomes a 1-D tensor of token ids, cut into train/val, sampled as (x, y) windows.

    splits = load_splits("tinyshakespeare")            # a character tokenizer built from the text
    x, y = get_batch(splits.train, block_size=64, batch_size=12, generator=g)

`load_splits` is the one place where "read the text, encode it, cut it" happens: `train` calls it, and so do
the lessons once they have derived it. `get_batch` uses index arithmetic, no per-token Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scratchlm.data.sources import load_text
from scratchlm.errors import ConfigError


@dataclass(frozen=True)
class TokenSplits:
    """A tokenized text cut in two: `train` and `val` are 1-D int64 tensors of token ids; `tokenizer` made them."""

    tokenizer: Any
    train: torch.Tensor
    val: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """{"train": ..., "val": ...}: the form `estimate_loss` takes."""
        return {"train": self.train, "val": self.val}

    def check_fits(self, block_size: int, source: str = "the data") -> None:
        """A ConfigError unless both splits hold more than `block_size` tokens (one window plus its target)."""
        for name, part in (("training", self.train), ("validation", self.val)):
            if len(part) <= block_size:
                raise ConfigError(
                    f"the {name} split of {source!r} has {len(part)} tokens, too few for "
                    f"block_size={block_size}; use more text or a smaller block_size"
                )


def load_splits(data: str | Path = "tinyshakespeare", tokenizer: Any = None, val_fraction: float = 0.1) -> TokenSplits:
    """Read `data` (a registered name or a text file), encode it and cut it into train/val.

    tokenizer: a tokenizer object, or a spec for `scratchlm.tokenizers.load` (a file or a published
    vocabulary's name); None builds a character tokenizer from the text itself.
    """
    from scratchlm.tokenizers import CharTokenizer, load

    text = load_text(data)
    if tokenizer is None:
        tokenizer = CharTokenizer.from_text(text)
    elif isinstance(tokenizer, (str, Path)):
        tokenizer = load(tokenizer)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train, val = split(ids, val_fraction)
    return TokenSplits(tokenizer, train, val)


def split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a 1-D token tensor into (train, val): the first 1 - val_fraction and the rest.

    A contiguous cut (not a shuffle) keeps validation text unseen: neighbouring windows overlap, so a random
    split would leak training text into validation.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n = int(len(data) * (1.0 - val_fraction))
    return data[:n], data[n:]


def get_batch(
    data: torch.Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` random windows of `block_size` tokens.

    Returns `x` and `y`, both `(batch_size, block_size)` int64: `y[b, t]` is the token that follows
    `x[b, t]` in the text (so `y[b, :-1] == x[b, 1:]`). Deterministic for a given generator state.
    """
    if block_size <= 0 or batch_size <= 0:
        raise ConfigError(f"block_size and batch_size must be positive, got {block_size} and {batch_size}")
    if len(data) <= block_size:
        raise ConfigError(f"the data has {len(data)} tokens, too few for windows of block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    windows = data[starts[:, None] + torch.arange(block_size + 1)]
    x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda":  # pinned host memory lets the copy overlap with compute
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        x, y = x.to(device), y.to(device)
    return x, y
