"""Batches of windows from memory-mapped shards: each DDP rank reads its own windows, and a run resumes at the
exact token.

    loader = ShardLoader(index, "train", block_size=64, batch_size=12, rank=0, world_size=1, seed=1337)
    x, y = loader.next_batch()                 # (12, 64) int64 each; y is x shifted by one token
    state = loader.state_dict()                # into the checkpoint; load_state_dict(state) continues from here

The split is cut into windows of `block_size + 1` tokens that start every `block_size` tokens (consecutive windows
share one token: the last target of one is the first input of the next), none crossing a shard's end. An epoch
visits every window once, in a random order drawn from (seed, epoch) (`shuffle=True`) or in file order.

Distributed runs: a step's global batch is the next `batch_size * world_size` windows of the epoch's order, and rank
r takes every world_size-th of them starting at r. So the ranks never read the same window, and together they read
exactly what one process with a batch of `batch_size * world_size` reads: the same sequences, the same step. The
state is global (epoch, windows consumed), not per rank, so a checkpoint of a 2-process run resumes in one process,
or in eight, at the same place.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scratchlm.errors import ConfigError, DataError
from scratchlm.pretraining.shards import ShardIndex


class ShardLoader:
    """Windows of one split of a `ShardIndex` for one rank (module docstring).

    shuffle: a random order per epoch (training) or file order (evaluation, sequential reading). device: where
    batches go (CUDA batches are copied from pinned memory without blocking).
    """

    def __init__(
        self,
        index: ShardIndex,
        split: str,
        block_size: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        device: torch.device | str | None = None,
    ):
        if block_size < 1 or batch_size < 1:
            raise ConfigError(f"block_size and batch_size must be positive, got {block_size} and {batch_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.index, self.split = index, split
        self.block_size, self.batch_size = block_size, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.device = torch.device(device) if device is not None else None
        per_shard = np.array([max(n - 1, 0) // block_size for n in index.shard_tokens(split)], dtype=np.int64)
        self.windows = int(per_shard.sum())
        self._ends = np.cumsum(per_shard)  # window k lies in the first shard whose end exceeds k
        self.global_batch = batch_size * world_size
        if self.windows < self.global_batch:
            raise DataError(
                f"the {split} split has {self.windows} windows of {block_size + 1} tokens, fewer than one batch of "
                f"{batch_size} x {world_size} rank(s); prepare more text or use a smaller batch or block size"
            )
        self.epoch = 0
        self.position = 0  # windows of this epoch's order consumed by all ranks together
        self._order: np.ndarray | None = None
        self._order_epoch = -1
        self._offsets = np.arange(block_size + 1)

    def order(self, epoch: int) -> np.ndarray:
        """The window numbers of `epoch` in the order they are read."""
        if self._order_epoch != epoch:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, epoch]).permutation(self.windows)
            else:
                self._order = np.arange(self.windows)
            self._order_epoch = epoch
        return self._order

    def window_ids(self) -> np.ndarray:
        """The window numbers of this rank's next batch (advances the loader)."""
        if self.position + self.global_batch > self.windows:  # the epoch's remainder would be a short batch
            self.epoch += 1
            self.position = 0
        order = self.order(self.epoch)
        start = self.position + self.rank
        ids = order[start : self.position + self.global_batch : self.world_size]
        self.position += self.global_batch
        return ids

    def read_windows(self, ids: np.ndarray) -> np.ndarray:
        """The tokens of windows `ids`, shape (len(ids), block_size + 1), as int64."""
        shards = np.searchsorted(self._ends, ids, side="right")
        out = np.empty((len(ids), self.block_size + 1), dtype=np.int64)
        for row, (window, shard) in enumerate(zip(ids.tolist(), shards.tolist(), strict=True)):
            first = window - (int(self._ends[shard - 1]) if shard else 0)
            start = first * self.block_size
            out[row] = self.index.memmap(self.split, shard)[start : start + self.block_size + 1]
        if out.size and (largest := int(out.max())) >= self.index.vocab_size:  # shards changed, read unverified
            raise DataError(
                f"the {self.split} shards of {self.index.folder} hold token id {largest}, beyond the tokenizer's "
                f"{self.index.vocab_size} ids: they were changed after prepare (run with --verify to find which)"
            )
        return out

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (x, y), each (batch_size, block_size) int64, y[:, t] the token after x[:, t]."""
        windows = torch.from_numpy(self.read_windows(self.window_ids()))
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
        if self.device is not None and self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        if self.device is not None and self.device.type != "cpu":
            return x.to(self.device), y.to(self.device)
        return x, y

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is, for all ranks at once: plain ints, as checkpoints store them."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "block_size": self.block_size,
            "windows": self.windows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s place. The windows must be cut the same way (same split, block size, seed
        and order), else the place would name other tokens: that is an error, not a silent reshuffle."""
        try:
            saved = {k: state[k] for k in ("epoch", "position", "seed", "shuffle", "block_size", "windows")}
        except (KeyError, TypeError):
            raise DataError(
                f"a loader state needs epoch, position, seed, shuffle, block_size, windows: {state!r}"
            ) from None
        mine = self.state_dict()
        changed = [k for k in ("seed", "shuffle", "block_size", "windows") if saved[k] != mine[k]]
        if changed:
            detail = ", ".join(f"{k} {saved[k]} -> {mine[k]}" for k in changed)
            raise DataError(f"cannot continue the saved loader position: the windows changed ({detail})")
        if not (isinstance(saved["position"], int) and 0 <= saved["position"] <= self.windows):
            raise DataError(f"loader position {saved['position']!r} is outside the split's {self.windows} windows")
        self.epoch, self.position = int(saved["epoch"]), int(saved["position"])
