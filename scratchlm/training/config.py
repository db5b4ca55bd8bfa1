"""What a training run depends on: `TrainConfig`, the named presets and the learning-rate schedule.

`TrainConfig` holds the model's `GPTConfig` (`config.model`) beside the options of training itself; every
option is declared once, with its help text and its rule (`scratchlm.options`), and the `train` command's
flags are generated from those declarations. `replace` and `preset` take model and training fields alike by
name (`preset("cpu", n_layer=2, max_iters=100)`): the two dataclasses share no field name, so the name alone
says where a value goes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scratchlm.errors import ConfigError
from scratchlm.model import GPTConfig
from scratchlm.options import (
    BOOL,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    TEXT,
    Rule,
    check_options,
    is_number,
    number,
    one_of,
    option,
    optional,
)

DTYPES = ("auto", "float32", "bfloat16")
OPTIMIZERS = ("adamw", "muon")
_UNIT_PAIR = Rule(
    "two numbers in [0, 1)",
    lambda v: isinstance(v, tuple) and len(v) == 2 and all(is_number(b) and 0 <= b < 1 for b in v),
)
_FINITE_POSITIVE = number("positive and finite", lambda v: 0 < v < math.inf)
_FINITE_NON_NEGATIVE = number(">= 0 and finite", lambda v: 0 <= v < math.inf)
_SEED = Rule("an integer in [0, 2**64)", lambda v: NON_NEGATIVE_INT.accepts(v) and v < 2**64)


def _reference_model() -> GPTConfig:
    """The model of the usual small CPU recipe: 4 layers, 4 heads, 128 channels, a 64-token context."""
    return GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults: the usual small CPU recipe (`PRESETS["cpu"]` is a
    narrower model trained for more steps at a higher learning rate in the same wall-clock time).

    model: the architecture; its vocab_size None (the default) takes the tokenizer's.
    Schedule: linear warmup for `warmup_iters` steps to `learning_rate`, then cosine decay to `min_lr` at
    `lr_decay_iters` (None = max_iters), constant after (`lr_at`).
    Optimizer: AdamW for every parameter, or (optimizer "muon") Muon for the hidden weight matrices at its own
    peak `muon_lr` beside AdamW at `learning_rate` for the rest; the schedule multiplies both by the same factor.
    Precision: dtype "auto" uses bfloat16 autocast on CUDA GPUs that support it and float32 elsewhere.
    Output: `out_dir` None writes nothing; otherwise a checkpoint (`ckpt.pt`) at every evaluation and
    `metrics.jsonl`. `resume` continues from `out_dir/ckpt.pt`; a new run in an out_dir that holds one is refused
    unless `overwrite` says to delete it.
    """

    model: GPTConfig = dataclasses.field(default_factory=_reference_model)  # its fields are flags of their own
    # data
    data: str = option(
        "tinyshakespeare", "a registered data name or the path of a UTF-8 text file", TEXT, metavar="NAME|PATH"
    )
    tokenizer: str | None = option(
        None,
        "a tokenizer file (ours or Hugging Face's tokenizer.json, vocab.json or their folder) or a published "
        "vocabulary (r50k_base, cl100k_base); default: characters of the data",
        optional(TEXT),
        metavar="SPEC",
    )
    val_fraction: float = option(
        0.1, "fraction of the text held out for validation (its end)", number("between 0 and 1", lambda v: 0 < v < 1)
    )
    # optimisation
    batch_size: int = option(12, "sequences per micro-batch", POSITIVE_INT)
    grad_accum_steps: int = option(1, "micro-batches per optimizer step", POSITIVE_INT)
    max_iters: int = option(2000, "optimizer steps to train for", NON_NEGATIVE_INT)
    learning_rate: float = option(1e-3, "peak learning rate", _FINITE_POSITIVE, flags=("--lr",))
    min_lr: float = option(1e-4, "learning rate at the end of the cosine decay", _FINITE_NON_NEGATIVE)
    warmup_iters: int = option(100, "steps of linear warmup", NON_NEGATIVE_INT)
    lr_decay_iters: int | None = option(
        None, "step at which the cosine decay reaches --min-lr (default: --max-iters)", optional(POSITIVE_INT)
    )
    weight_decay: float = option(0.1, "AdamW weight decay on matrices", _FINITE_NON_NEGATIVE)
    betas: tuple[float, float] = option((0.9, 0.99), "AdamW's beta1 and beta2", _UNIT_PAIR, metavar="B")
    grad_clip: float = option(
        1.0,
        "clip the gradient norm to this (0: no clipping)",
        number(">= 0 (0 = no clipping) and finite", lambda v: 0 <= v < math.inf),
    )
    optimizer: str = option(
        "adamw",
        "adamw, or muon for the hidden weight matrices (AdamW keeps embeddings, head, norms and biases)",
        one_of(*OPTIMIZERS),
    )
    muon_lr: float = option(
        0.02, "Muon's peak learning rate (--optimizer muon); the schedule scales it as it scales --lr", _FINITE_POSITIVE
    )
    muon_momentum: float = option(0.95, "Muon's momentum (Nesterov)", number("in [0, 1)", lambda v: 0 <= v < 1))
    muon_weight_decay: float = option(0.0, "Muon's decoupled weight decay (--optimizer muon)", _FINITE_NON_NEGATIVE)
    # evaluation and output
    eval_interval: int = option(250, "steps between evaluations and checkpoints", POSITIVE_INT)
    eval_iters: int = option(20, "batches per loss estimate", POSITIVE_INT)
    out_dir: str | None = option(
        None, "folder for checkpoints and metrics.jsonl", optional(TEXT), flags=("--out",), metavar="DIR"
    )
    resume: bool = option(False, "continue the run whose checkpoint is in --out", BOOL)
    overwrite: bool = option(
        False, "start a new run in an --out that holds one, deleting its checkpoint and metrics", BOOL
    )
    progress: bool = option(True, "show a progress bar", BOOL)
    # system
    seed: int = option(1337, "random seed (initialisation, batches, dropout)", _SEED)
    device: str = option("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps", TEXT)
    dtype: str = option("auto", "auto (bfloat16 autocast on capable GPUs), float32 or bfloat16", one_of(*DTYPES))
    compile: bool = option(False, "compile the model with torch.compile", BOOL)

    def __post_init__(self) -> None:
        if not isinstance(self.model, GPTConfig):
            raise ConfigError(f"model must be a GPTConfig, got {type(self.model).__name__}")
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        check_options(self)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.min_lr > self.learning_rate:
            raise ConfigError(f"min_lr must be in [0, learning_rate={self.learning_rate}], got {self.min_lr}")
        if self.resume and self.out_dir is None:
            raise ConfigError("resume=True needs out_dir, the folder holding the checkpoint to resume from")
        if self.resume and self.overwrite:
            raise ConfigError("resume=True continues the run in out_dir and overwrite=True deletes it: choose one")

    @property
    def decay_iters(self) -> int:
        """The step at which the cosine decay reaches min_lr."""
        return self.lr_decay_iters if self.lr_decay_iters is not None else max(self.max_iters, 1)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.block_size * self.grad_accum_steps

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model's config for a tokenizer of `vocab_size` ids. A vocab_size set in `model` may be larger
        (padding the embedding to a round size, as GPT-2 runs often do), never smaller."""
        if self.model.vocab_size is None:
            return dataclasses.replace(self.model, vocab_size=vocab_size)
        if self.model.vocab_size < vocab_size:
            raise ConfigError(
                f"model.vocab_size={self.model.vocab_size} is smaller than the tokenizer's {vocab_size} ids"
            )
        return self.model

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with fields replaced by name, model fields (n_layer, ...) and training fields alike."""
        model_fields = {f.name for f in dataclasses.fields(GPTConfig)}
        own_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(changes) - model_fields - own_fields)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        model_changes = {k: v for k, v in changes.items() if k in model_fields}
        own = {k: v for k, v in changes.items() if k in own_fields}
        if model_changes:
            own["model"] = own.get("model", self.model).replace(**model_changes)  # a new arch decides its fields
        return dataclasses.replace(self, **own)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the model as a nested dict), as checkpoints store it. `resume` and `overwrite` say how a
        run was started, not what it is, so they are stored as False."""
        return dataclasses.asdict(dataclasses.replace(self, resume=False, overwrite=False))

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`; also reads the flat form of checkpoints written before `model` was nested."""
        saved = dict(saved)
        model = saved.pop("model", None)
        config = cls(model=GPTConfig(**model)) if isinstance(model, dict) else cls()
        return config.replace(**saved)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """A named preset (smoke, cpu, cpu-modern, gpu) with some fields replaced."""
        return preset(name, **overrides)


# "cpu": the best recipe a sweep found for the wall-clock time of the usual small CPU recipe (the TrainConfig
# defaults: val 1.89 in ~100 s on 2 cores, measured with two threads and MKL's matmuls before scratchlm.layers); it
# reaches 1.68-1.70 (bench/README.md has the sweep; now about 100 s on one thread with scratchlm.layers).
# "cpu-modern": the `cpu` preset with lesson 13's block (RoPE, RMSNorm, SwiGLU, an untied head, QK-norm) trained
# with Muon, given the same wall time: a step costs about 1.58x (1.57x and 1.59x in two measurements), so 2200 steps
# instead of 3500 (bench/speedrun.py, whose last row it is). The `train` command's default on a CPU.
# "gpu": the classic character-level Shakespeare GPT.
PRESETS: dict[str, TrainConfig] = {
    "smoke": TrainConfig(
        model=GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32),
        batch_size=8,
        max_iters=60,
        learning_rate=3e-3,
        min_lr=3e-4,
        warmup_iters=10,
        eval_interval=30,
        eval_iters=4,
    ),
    "cpu": TrainConfig(
        # narrower than the reference's 128 channels, so that the same 100 s buy 3500 steps instead of 2000
        model=GPTConfig(n_layer=4, n_head=4, n_embd=80, block_size=64),
        batch_size=12,
        max_iters=3500,
        learning_rate=7e-3,  # 7x the reference's 1e-3
        min_lr=0.0,  # cosine all the way down
        warmup_iters=300,  # the reference's 100 did as well at seed 1337 but varied twice as much across seeds
        eval_interval=350,
        eval_iters=20,
    ),
    "gpu": TrainConfig(
        model=GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
        batch_size=64,
        max_iters=5000,
        learning_rate=1e-3,
        min_lr=1e-4,
        warmup_iters=100,
        eval_interval=250,
        eval_iters=200,
    ),
}
PRESETS["cpu-modern"] = PRESETS["cpu"].replace(
    pos_embedding="rope", norm="rmsnorm", mlp="swiglu", tie_embeddings=False, qk_norm=True,
    optimizer="muon", muon_lr=0.01, max_iters=2200, warmup_iters=190, eval_interval=220,
)  # fmt: skip


def preset(name: str, **overrides: Any) -> TrainConfig:
    """`PRESETS[name]` with `overrides` (model or training fields, by name) applied and validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, cosine decay, then flat min_lr.

    Warmup starts at learning_rate / warmup_iters rather than 0 so the very first step already learns.
    """
    if step < config.warmup_iters:
        return config.learning_rate * (step + 1) / config.warmup_iters
    if step >= config.decay_iters:
        return config.min_lr
    progress = (step - config.warmup_iters) / max(1, config.decay_iters - config.warmup_iters)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.min_lr + cosine * (config.learning_rate - config.min_lr)
