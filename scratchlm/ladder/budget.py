"""The ladder's one fixed budget: what every rung trains on, for how long, and how it is scored.

A rung differs from another only in its model (and, for "gpt-bpe", its tokenizer). Everything else is the
`LadderBudget`: the data and its train/held-out cut, the width and depth the models share, the optimizer
recipe (the library's: AdamW with weight decay on matrices, linear warmup then cosine decay, gradient
clipping), the number of steps, the batches (same seed: same batches, same initialisation draw), the
evaluation batches and the held-out text scored in bits per byte.

What "the same budget" means across tokenizers: every rung reads the same number of training BYTES. The
character rungs read `max_iters * batch_size * block_size` tokens, one byte each (Tiny Shakespeare is ASCII).
The BPE rung takes the same steps, batch and schedule, and a context of `block_size / bytes_per_token`
tokens: each window covers the same ~block_size bytes of text as a character window, so it reads the same
text per step and sees the same text as context. Equal tokens instead would let the BPE model read about
twice the text on the same steps (lesson 06's confound, issue 14 item 4); the price of equal bytes is that the
BPE model does about half the body computation (its wall time shows it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scratchlm.errors import ConfigError
from scratchlm.options import NON_NEGATIVE_INT, POSITIVE_INT, TEXT, check_options, number, option, optional
from scratchlm.runtime import Mode, run_mode

_POSITIVE = number("positive and finite", lambda v: 0 < v < math.inf)
_NON_NEGATIVE = number(">= 0 and finite", lambda v: 0 <= v < math.inf)


@dataclass(frozen=True)
class LadderBudget:
    """Everything the rungs share. The defaults are the "cpu" budget: about a minute per GPT rung on one thread.

    Model sizes apply to every rung that has them: the one- and multi-head rungs use `n_embd` channels (the
    single head is n_embd wide; the multi-head rungs split it into `n_head` heads) and one layer; the GPT rungs
    stack `n_layer` blocks. `n_kv_head` is the "gqa" rung's number of key/value heads.
    `heldout_chars` None scores the whole held-out text (the last `val_fraction` of the data); a number scores
    only its first that many characters (the smoke budget, to stay fast).
    """

    data: str = option("tinyshakespeare", "a registered data name or the path of a UTF-8 text file", TEXT)
    val_fraction: float = option(
        0.1, "the held-out end of the text (validation and bits per byte)", number("in (0, 1)", lambda v: 0 < v < 1)
    )
    block_size: int = option(64, "context in characters (BPE rung: the same bytes, fewer tokens)", POSITIVE_INT)
    n_embd: int = option(80, "width of every rung's model", POSITIVE_INT)
    n_head: int = option(4, "attention heads of the multi-head and GPT rungs", POSITIVE_INT)
    n_layer: int = option(4, "transformer blocks of the GPT rungs", POSITIVE_INT)
    n_kv_head: int = option(2, "key/value heads of the gqa rung (< n_head)", POSITIVE_INT)
    bpe_vocab_size: int = option(512, "vocabulary of the gpt-bpe rung's tokenizer (trained on the train split)",
                                 POSITIVE_INT)  # fmt: skip
    batch_size: int = option(12, "sequences per step", POSITIVE_INT)
    max_iters: int = option(2000, "optimizer steps", POSITIVE_INT)
    learning_rate: float = option(7e-3, "peak learning rate", _POSITIVE, flags=("--lr",))
    min_lr: float = option(0.0, "learning rate at the end of the cosine decay", _NON_NEGATIVE)
    warmup_iters: int = option(200, "steps of linear warmup", NON_NEGATIVE_INT)
    eval_iters: int = option(20, "batches per split of the val loss estimate (nats/token)", POSITIVE_INT)
    heldout_chars: int | None = option(
        None, "score only the first N characters of the held-out text (default: all of it)", optional(POSITIVE_INT)
    )

    def __post_init__(self) -> None:
        check_options(self)
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if not self.n_kv_head < self.n_head or self.n_head % self.n_kv_head:
            raise ConfigError(
                f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} and be smaller (grouped-query attention)"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError(
                f"the rope rung needs an even head size, got n_embd / n_head = {self.n_embd // self.n_head}"
            )
        if self.min_lr > self.learning_rate:
            raise ConfigError(f"min_lr must be at most learning_rate={self.learning_rate}, got {self.min_lr}")
        if self.bpe_vocab_size < 257:
            raise ConfigError(f"bpe_vocab_size must exceed the 256 byte tokens, got {self.bpe_vocab_size}")

    @property
    def train_tokens(self) -> int:
        """Training tokens of a character rung (= training bytes of every rung)."""
        return self.max_iters * self.batch_size * self.block_size

    def replace(self, **changes: Any) -> LadderBudget:
        """A copy with fields replaced by name (validated)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown LadderBudget field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# smoke: seconds per rung (tests, CI's notebooks); cpu: about a minute per GPT rung on one thread;
# gpu: a model six times wider and twice as deep with four times the context, for a GPU's minutes.
BUDGETS: dict[str, LadderBudget] = {
    "smoke": LadderBudget(
        block_size=32,
        n_embd=32,
        n_head=4,
        n_layer=2,
        n_kv_head=2,
        bpe_vocab_size=320,
        batch_size=8,
        max_iters=40,
        learning_rate=1e-2,
        warmup_iters=5,
        eval_iters=2,
        heldout_chars=4000,
    ),
    "cpu": LadderBudget(),
    "gpu": LadderBudget(
        block_size=256,
        n_embd=384,
        n_head=6,
        n_layer=6,
        n_kv_head=2,
        batch_size=64,
        max_iters=3000,
        learning_rate=1e-3,
        min_lr=1e-4,
        warmup_iters=200,
        eval_iters=50,
    ),
}


def default_budget_name(mode: Mode | None = None) -> str:
    """The budget of the current mode (`scratchlm.runtime.run_mode`): smoke, cpu or gpu."""
    return mode or run_mode()


def budget(name: str | None = None, **overrides: Any) -> LadderBudget:
    """`BUDGETS[name]` (default: the current mode's) with `overrides` applied."""
    name = name or default_budget_name()
    if name not in BUDGETS:
        raise ConfigError(f"unknown ladder budget {name!r}; choose one of: {', '.join(BUDGETS)}")
    return BUDGETS[name].replace(**overrides)
