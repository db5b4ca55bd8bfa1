"""Supervised fine-tuning: a base GPT learns to answer in the chat format, through the library's one training loop.

    config = SFTConfig(base="runs/base", train=SFT_TRAIN.replace(out_dir="runs/sft"))
    result = sft(config)                       # result.model: a plain GPT; result.tokenizer: with chat tokens

What fine-tuning adds to `train`:
- the model starts from a base checkpoint; its tokenizer gains the chat tokens and its embedding (and tied head)
  grows by as many rows (`grow_vocabulary`);
- the data are conversations (the task suite, `data="tasks"`, or a JSONL file), rendered with their loss masks and
  batched by packing (document-masked windows) or by padding (`scratchlm.posttraining.batching`);
- with `lora_rank` > 0 only low-rank adapters train, plus the new tokens' embedding rows
  (`scratchlm.posttraining.lora`).

Everything else is `train`'s: `run_training` loops over `train_step`, evaluates and checkpoints every
eval_interval steps, refuses an out_dir that holds a run unless resume or overwrite, holds the folder's lock,
saves on Ctrl-C, refuses divergence. `SFTRun` says only how this run's batches, losses and checkpoints differ.

A checkpoint of a fine-tuned model is an ordinary one (LoRA merged into the weights), so `sample`, `eval` and
`chat` read it as they read any; to resume a LoRA run, the adapters themselves are kept in its `extra`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm import checkpoint as ckpt_io
from scratchlm.attention import document_mask
from scratchlm.errors import CheckpointError, ConfigError, ConversationError
from scratchlm.files import output_folder
from scratchlm.model import GPT
from scratchlm.options import BOOL, NON_NEGATIVE_INT, POSITIVE_INT, TEXT, check_options, number, option, optional
from scratchlm.posttraining.batching import check_length, packed_batch, pad_batch
from scratchlm.posttraining.chat import END, Rendered, add_chat_tokens, has_chat_tokens, read_numbered_jsonl, render
from scratchlm.posttraining.lora import add_lora, lora_parameters, merged_state_dict, trainable_parameters
from scratchlm.posttraining.run_config import WrapsTrainConfig
from scratchlm.posttraining.tasks import held_out_items, training_items
from scratchlm.posttraining.vocabulary import grow_vocabulary, train_new_rows_only
from scratchlm.runtime import get_device
from scratchlm.training import Callback, Run, TrainConfig, autocast_for, make_optimizer, run_training

TASKS = "tasks"
LOSS_SAMPLE = 128  # conversations in each fixed loss estimate

# Fine-tuning's defaults: a short run at a lower peak rate than pretraining, no weight decay (as TRL's
# SFTTrainer; and with LoRA, decay would shrink the frozen embedding rows). The model fields are the base's.
SFT_TRAIN = TrainConfig(
    batch_size=16,
    max_iters=600,
    learning_rate=1e-3,
    min_lr=1e-4,
    warmup_iters=30,
    weight_decay=0.0,
    eval_interval=100,
    eval_iters=1,
)


@dataclass(frozen=True)
class SFTConfig(WrapsTrainConfig):
    """A fine-tuning run: `train` holds the optimisation, output and system options (`TrainConfig`'s; its model,
    data and tokenizer fields are the base checkpoint's and go unused), the rest what is fine-tuned on what."""

    KIND: ClassVar[str] = "sft"
    DESCRIPTION: ClassVar[str] = "a fine-tuning run"
    train: TrainConfig = field(default_factory=lambda: SFT_TRAIN)
    base: str | None = option(
        None, "the base model: a checkpoint file or its folder (not needed with --resume)", optional(TEXT),
        metavar="CKPT",
    )  # fmt: skip
    data: str = option(
        TASKS, "conversations: 'tasks' (the generated task suite) or a JSONL file of {\"messages\": [...]}", TEXT,
        metavar="tasks|FILE",
    )  # fmt: skip
    lora_rank: int = option(0, "LoRA rank of the adapters (0: full fine-tuning)", NON_NEGATIVE_INT)
    lora_alpha: float | None = option(
        None,
        "LoRA's alpha, the adapters' scale times the rank (default: the rank)",
        optional(number("> 0", lambda v: v > 0)),
    )
    packing: bool = option(True, "pack conversations into document-masked windows (else pad one per row)", BOOL)
    n_conversations: int = option(20_000, "conversations generated from the task suite (data 'tasks')", POSITIVE_INT)
    val_per_skill: int = option(25, "held-out task items per skill in the validation loss (data 'tasks')", POSITIVE_INT)

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        check_options(self)
        if self.base is None and not self.train.resume:
            raise ConfigError("give the base model's checkpoint (base=, --base), or resume a run (--resume)")
        if self.lora_rank and self.train.weight_decay:
            raise ConfigError(
                f"LoRA trains with weight_decay 0 (got {self.train.weight_decay}): decay would shrink the frozen "
                "embedding rows"
            )

    @property
    def lora(self) -> bool:
        return self.lora_rank > 0


@dataclass(frozen=True)
class SFTData:
    """The rendered conversations of a run: `train` to learn from, `val` for the validation loss."""

    train: list[Rendered]
    val: list[Rendered]
    pad_id: int


def sft_data(config: SFTConfig, tokenizer: Any, block_size: int) -> SFTData:
    """Render the run's conversations; one longer than the context is refused, naming it."""
    if config.data == TASKS:
        items = itertools.islice(training_items(config.train.seed), config.n_conversations)
        train = [render(item.messages(), tokenizer) for item in items]
        val = [render(item.messages(), tokenizer) for item in held_out_items(config.val_per_skill)]
        where = ["task conversation"] * len(train)
    else:
        numbered = read_numbered_jsonl(config.data)
        rendered = [_render_line(config.data, number, c, tokenizer) for number, c in numbered]
        n_val = len(rendered) // 10  # the last tenth, when there are at least ten; else validate on the training set
        train, val = (rendered[:-n_val], rendered[-n_val:]) if n_val else (rendered, rendered)
        where = [f"{config.data}: the conversation of line {number}" for number, _ in numbered]
    for conversation, name in zip(train + val, where + where[-len(val) :], strict=False):
        check_length(conversation, block_size, name)
    return SFTData(train, val, tokenizer.special_id(END))


def _render_line(path: str, number: int, conversation: list[dict[str, str]], tokenizer: Any) -> Rendered:
    try:
        return render(conversation, tokenizer)
    except ConversationError as e:
        raise ConversationError(f"{path}:{number}: {e}") from None


@torch.no_grad()
def conversation_loss(
    model: nn.Module, conversations: Sequence[Rendered], pad_id: int, batch_size: int = 32,
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:  # fmt: skip
    """Mean loss (nats) per learned token over `conversations`, in eval mode: the masked loss of SFT."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nats, count = 0.0, 0
    for start in range(0, len(conversations), batch_size):
        x, y = pad_batch(conversations[start : start + batch_size], pad_id)
        with autocast or contextlib.nullcontext():
            logits, _ = model(x.to(device))
        y = y.to(device)
        nats += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum").item()
        count += int((y != -1).sum())
    model.train(was_training)
    return nats / max(count, 1)


def merged_copy(model: GPT) -> GPT:
    """A plain GPT (no LoRA layers) with `model`'s weights, adapters merged in; `model` is left unchanged."""
    with torch.random.fork_rng(devices=[]):
        plain = GPT(model.config)
    weight = model.transformer.wte.weight
    plain.to(device=weight.device, dtype=weight.dtype)
    plain.load_state_dict(merged_state_dict(model))
    return plain.eval()


@dataclass
class SFTRun(Run):
    """A `Run` on conversations: batches from `data` (packed or padded), the masked loss on fixed samples of the
    training and held-out conversations, checkpoints with LoRA merged and the adapters kept for resuming."""

    sft: SFTConfig | None = None
    data: SFTData | None = None

    def next_batches(self) -> list[tuple[torch.Tensor, ...]]:
        """One micro-batch per grad_accum_step: batch_size packed windows, or batch_size padded conversations."""
        return [self._batch() for _ in range(self.config.grad_accum_steps)]

    def _draw(self) -> Rendered:
        return self.data.train[int(torch.randint(len(self.data.train), (1,), generator=self.data_generator))]

    def _batch(self) -> tuple[torch.Tensor, ...]:
        c = self.config
        if not self.sft.packing:
            x, y = pad_batch([self._draw() for _ in range(c.batch_size)], self.data.pad_id)
            return x.to(self.device), y.to(self.device)
        windows, used = [], 0
        while True:  # draw until a conversation no longer fits the last of batch_size windows
            conversation = self._draw()
            if windows and used + len(conversation.ids) <= c.model.block_size:
                windows[-1].append(conversation)
            elif len(windows) < c.batch_size:
                windows.append([conversation])
                used = 0
            else:
                break
            used += len(conversation.ids)
        x, y, documents = packed_batch(windows, c.model.block_size, self.data.pad_id)
        return x.to(self.device), y.to(self.device), document_mask(documents).to(self.device)

    def evaluate(self) -> dict[str, float]:
        """The masked loss per learned token on the first conversations of each set (the same at every call)."""
        return {
            name: conversation_loss(self.forward_model, part[:LOSS_SAMPLE], self.data.pad_id, autocast=self.autocast)
            for name, part in (("train", self.data.train), ("val", self.data.val))
        }

    def save(self) -> Path | None:
        if self.out_dir is None:
            return None
        self.saved_step = self.step
        extra: dict[str, Any] = {"step_losses": list(self.step_losses)}
        if self.sft.lora:
            extra["adapted_state"] = dict(self.model.state_dict())
        return ckpt_io.save(
            self.checkpoint_path,
            merged_copy(self.model),
            self.optimizer,
            self.sft.to_dict(),
            self.tokenizer,
            self.step,
            data_generator=self.data_generator,
            metrics=self.metrics,
            extra=extra,
        )


@dataclass
class SFTResult:
    """What `sft` returns. model: a plain GPT, LoRA merged, in eval mode; tokenizer: with the chat tokens;
    trainable: parameters that received gradients; added_tokens: embedding rows grown for the chat tokens (0 when
    the base already had them); metrics and step_losses as `train`'s."""

    model: GPT
    tokenizer: Any
    config: SFTConfig
    trainable: int
    added_tokens: int
    metrics: list[dict[str, Any]]
    step_losses: list[float]
    checkpoint_path: Path | None


def _adapt(model: GPT, config: SFTConfig, first_new: int) -> None:
    if config.lora:
        add_lora(model, config.lora_rank, config.lora_alpha)
        train_new_rows_only(model.transformer.wte, first_new)


def prepare_sft(
    config: SFTConfig, *, checkpoint: ckpt_io.Checkpoint | None = None, device: torch.device | None = None
) -> tuple[SFTRun, int]:
    """The run of `config` resolved once (base model grown and adapted, data rendered, or a run resumed from
    `checkpoint`, default out_dir/ckpt.pt), and the number of embedding rows added for the chat tokens."""
    train_config = config.train
    device = device if device is not None else get_device(train_config.device)
    if train_config.resume and checkpoint is None:
        checkpoint = ckpt_io.load(Path(train_config.out_dir) / ckpt_io.FILENAME, device="cpu")
    out_dir = output_folder(train_config.out_dir, "out_dir") if train_config.out_dir is not None else None
    torch.manual_seed(train_config.seed)
    added = 0
    if checkpoint is not None:  # resuming: the model and tokenizer are the run's own
        tokenizer = checkpoint.build_tokenizer()
        model = GPT(checkpoint.gpt_config())
        _adapt(model, config, tokenizer.base.vocab_size)
        state = checkpoint.extra.get("adapted_state") if config.lora else checkpoint.model_state
        if state is None:
            raise CheckpointError(f"{checkpoint.path} holds no LoRA adapters to resume from")
        ckpt_io.load_model_state(model, state, checkpoint.path)
    else:
        base = ckpt_io.load(config.base, device="cpu")
        tokenizer, model = base.build_tokenizer(), base.build_model()
        if not has_chat_tokens(tokenizer):
            tokenizer = add_chat_tokens(tokenizer)
            added = tokenizer.vocab_size - model.config.vocab_size
            model = grow_vocabulary(model, tokenizer.vocab_size, seed=train_config.seed)
        _adapt(model, config, tokenizer.base.vocab_size)
    train_config = dataclasses.replace(train_config, model=model.config)
    data = sft_data(config, tokenizer, model.config.block_size)
    model.to(device)
    run = SFTRun(
        config=train_config,
        device=device,
        tokenizer=tokenizer,
        splits=None,
        model=model,
        optimizer=make_optimizer(model, train_config, device),
        autocast=autocast_for(device, train_config.dtype),
        data_generator=torch.Generator().manual_seed(train_config.seed),
        forward_model=model,
        out_dir=out_dir,
        sft=config,
        data=data,
    )
    if checkpoint is not None:
        run.restore(checkpoint)
    return run, added


def count_trainable(run: SFTRun) -> int:
    """The parameters a run trains: every one in full fine-tuning; with LoRA the adapters and the chat tokens'
    embedding rows (the only rows the embedding's gradient reaches)."""
    if not run.sft.lora:
        return trainable_parameters(run.model)
    new_rows = run.tokenizer.vocab_size - run.tokenizer.base.vocab_size
    return sum(p.numel() for p in lora_parameters(run.model)) + new_rows * run.model.config.n_embd


def sft(
    config: SFTConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: ckpt_io.Checkpoint | None = None,
    device: torch.device | None = None,
) -> SFTResult:
    """Fine-tune as `config` says (the rules of `train`: resume, never clobber, Ctrl-C saves) and return the
    fine-tuned model, LoRA merged."""
    run, added = prepare_sft(config, checkpoint=checkpoint, device=device)
    result = run_training(run, callbacks)
    return SFTResult(
        model=merged_copy(run.model),
        tokenizer=run.tokenizer,
        config=config,
        trainable=count_trainable(run),
        added_tokens=added,
        metrics=result.metrics,
        step_losses=result.step_losses,
        checkpoint_path=result.checkpoint_path,
    )
