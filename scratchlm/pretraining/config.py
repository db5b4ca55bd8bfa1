"""What a pretraining run depends on: a `TrainConfig` (model, optimiser, evaluation, output) plus what only
pretraining needs, each declared once as an option (the `pretrain` command's flags come from these fields).

    config = PretrainConfig(train=preset("cpu", data="runs/stdlib-bpe", max_iters=500), batch_tokens=12 * 64 * 4)

`train.data` is the folder `prepare` wrote; the tokenizer comes from it (so `train.tokenizer` must stay None) and
so does the validation split (`train.val_fraction` is not used: the split was made by document at prepare time).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scratchlm.errors import ConfigError
from scratchlm.options import BOOL, NON_NEGATIVE_INT, POSITIVE_INT, check_options, number, one_of, option, optional
from scratchlm.training import TrainConfig, lr_at

SCHEDULES = ("cosine", "wsd")
_POSITIVE = number("positive and finite", lambda v: 0 < v < math.inf)


@dataclass(frozen=True)
class PretrainConfig:
    """A `TrainConfig` (`train`) and the options of pretraining proper.

    Batch: each rank reads `train.batch_size` sequences of `train.model.block_size` tokens per micro-batch; a step
    is `accumulation(world_size)` micro-batches on every rank, `batch_tokens` tokens in all (when set; else
    `train.grad_accum_steps` micro-batches). Precision and compilation are `train.dtype` and `train.compile`.
    """

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    batch_tokens: int | None = option(
        None,
        "tokens per optimizer step, all ranks together: each rank accumulates batch_tokens / (batch_size x "
        "block_size x ranks) micro-batches, which must be a whole number (default: --grad-accum-steps micro-batches)",
        optional(POSITIVE_INT),
        metavar="N",
    )
    schedule: str = option(
        "cosine",
        "learning rate after warmup: cosine (down to --min-lr at --lr-decay-iters) or wsd (warmup-stable-decay: the "
        "peak until the last --decay-fraction of the steps, then a straight line down to --min-lr)",
        one_of(*SCHEDULES),
    )
    decay_fraction: float = option(
        0.2, "wsd: the fraction of --max-iters spent decaying", number("in (0, 1]", lambda v: 0 < v <= 1)
    )
    shuffle: bool = option(
        True, "read the training windows in a new random order every epoch (else in file order)", BOOL
    )
    samples: int = option(1, "samples generated into the log at every evaluation (rank 0)", NON_NEGATIVE_INT)
    sample_tokens: int = option(48, "tokens per sample", POSITIVE_INT)
    verify: bool = option(True, "check every shard's sha256 against the index before training", BOOL)
    ddp_timeout: float = option(
        300.0, "seconds a rank waits for its peers in a collective before the run ends with an error", _POSITIVE
    )
    peak_flops: float | None = option(
        None,
        "peak FLOP/s of one device, the denominator of MFU (default: a table of GPUs' dense bfloat16 peaks; on CPU "
        "the float32 matrix-product rate measured at start)",
        optional(_POSITIVE),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        check_options(self)
        if self.train.tokenizer is not None:
            raise ConfigError(
                "pretraining takes its tokenizer from the prepared folder (--data DIR); choose the tokenizer when "
                "you run prepare, not here"
            )

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per rank per optimizer step."""
        if self.batch_tokens is None:
            return self.train.grad_accum_steps
        per_micro = self.train.batch_size * self.train.model.block_size * world_size
        if self.batch_tokens % per_micro:
            raise ConfigError(
                f"batch_tokens={self.batch_tokens} is not a multiple of batch_size x block_size x ranks = "
                f"{self.train.batch_size} x {self.train.model.block_size} x {world_size} = {per_micro}"
            )
        return self.batch_tokens // per_micro

    def tokens_per_step(self, world_size: int) -> int:
        return self.accumulation(world_size) * self.train.batch_size * self.train.model.block_size * world_size

    def lr(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        return lr_schedule(step, self)

    def replace(self, **changes: Any) -> PretrainConfig:
        """A copy with fields replaced by name: this class's, TrainConfig's and GPTConfig's alike."""
        own = {f.name for f in dataclasses.fields(PretrainConfig)} - {"train"}
        mine = {k: v for k, v in changes.items() if k in own}
        rest = {k: v for k, v in changes.items() if k not in own}
        train = self.train.replace(**rest) if rest else self.train
        return dataclasses.replace(self, train=train, **mine)

    def to_dict(self) -> dict[str, Any]:
        """This class's own fields as plain data (the TrainConfig is stored on its own, as `train` stores it)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}

    @classmethod
    def from_dicts(cls, train: dict[str, Any], own: dict[str, Any]) -> PretrainConfig:
        return cls(train=TrainConfig.from_dict(train), **own)


def lr_schedule(step: int, config: PretrainConfig) -> float:
    """Warmup, then cosine (`scratchlm.training.lr_at`) or warmup-stable-decay.

    WSD (Hu et al. 2024, MiniCPM; Hägele et al. 2024): the peak rate is held after warmup, and only the last
    `decay_fraction` of the steps decays, linearly to min_lr. Its appeal for pretraining: the run does not need to
    know its length until it starts decaying, so a checkpoint from the stable phase can be continued for longer,
    and a short decay from it gives a finished model at any point.
    """
    train = config.train
    if config.schedule == "cosine":
        return lr_at(step, train)
    if step < train.warmup_iters:
        return train.learning_rate * (step + 1) / train.warmup_iters
    total = max(train.max_iters, 1)
    decay_steps = max(1, round(config.decay_fraction * total))
    decay_start = max(total - decay_steps, train.warmup_iters)
    if step < decay_start:
        return train.learning_rate
    progress = min(1.0, (step - decay_start + 1) / max(1, total - decay_start))
    return train.learning_rate + progress * (train.min_lr - train.learning_rate)
