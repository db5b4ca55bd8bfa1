"""A GRPO or DPO run from an SFT checkpoint, through `train`'s loop (`run_training`) and `train_step`.

    config = RLConfig(sft="runs/sft", method="grpo", train=RL_TRAIN.replace(out_dir="runs/grpo"))
    run = prepare_rl(config); run_training(run)          # run.step_stats: reward, accuracy, KL, length, tokens/s

Every `updates` steps the run samples a fresh batch of rollouts (`items` training items of the chosen `skills`, `k`
answers each) from the policy as it is then; each step is one `train_step` on the objective of that batch
(`GRPOObjective`, or `DPOObjective` on the batch's correct-over-wrong pairs). The reference is the SFT model, frozen.
`train`'s rules hold: out_dir refused if it holds a run unless resume or overwrite, Ctrl-C saves, a checkpoint and
metrics at every evaluation. Checkpoints fall on batch boundaries (eval_interval is a multiple of updates), so
resuming continues exactly: the rollouts' seeds come from the run's data generator, which the checkpoint restores.
Per-step statistics (reward, accuracy, KL, answer length, tokens/s, and the compute: the tokens of the rollout
batch and of the update) go to `rl_steps.jsonl`, rewritten from the checkpoint's list at every save; the evaluation
records of metrics.jsonl hold `batch_reward` (the last batch's mean reward) and `val_accuracy` (greedy, held out).

DPO learns only from items with both a right and a wrong answer among their k. A batch without one is drawn again,
at most `DPO_DRAWS` times in a row: a model that gets every answer right, or every answer wrong, gives DPO nothing,
and the run stops with one line saying so (its last checkpoint kept) instead of sampling forever.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from scratchlm import checkpoint as ckpt_io
from scratchlm.errors import ConfigError, DataError
from scratchlm.files import atomic_write, output_folder
from scratchlm.model import GPT
from scratchlm.options import BOOL, POSITIVE_INT, TEXT, Rule, check_options, number, one_of, option, optional
from scratchlm.posttraining.chat import require_chat_tokens
from scratchlm.posttraining.dpo import DPOObjective, DPOTargets, preference_pairs
from scratchlm.posttraining.grpo import GRPOObjective, GRPOTargets, kl_k3, masked_mean
from scratchlm.posttraining.rollouts import Rollouts, rollout
from scratchlm.posttraining.run_config import WrapsTrainConfig
from scratchlm.posttraining.scoring import task_accuracy
from scratchlm.posttraining.tasks import SKILLS, held_out_items, training_items
from scratchlm.runtime import get_device
from scratchlm.training import Run, TrainConfig, autocast_for, make_optimizer

STEPS_FILENAME = "rl_steps.jsonl"
ALL_SKILLS = ",".join(SKILLS)
SKILL_LIST = Rule(
    f"a comma-separated list of skills among {ALL_SKILLS}",
    lambda v: isinstance(v, str) and bool(v) and set(v.split(",")) <= set(SKILLS),
)
DPO_DRAWS = 10  # batches of rollouts in a row without a single preference pair before a DPO run gives up

RL_TRAIN = TrainConfig(
    batch_size=1, max_iters=40, learning_rate=1e-4, min_lr=1e-4, warmup_iters=0, weight_decay=0.0,
    eval_interval=20, eval_iters=1, grad_clip=1.0,
)  # fmt: skip


@dataclass(frozen=True)
class RLConfig(WrapsTrainConfig):
    """An RL run: `train` holds the optimisation, output and system options (`TrainConfig`'s), the rest below."""

    KIND: ClassVar[str] = "rl"
    DESCRIPTION: ClassVar[str] = "an RL run"
    train: TrainConfig = field(default_factory=lambda: RL_TRAIN)
    sft: str | None = option(None, "the SFT checkpoint (file or folder) to start from and keep as the reference",
                             optional(TEXT), metavar="CKPT")  # fmt: skip
    method: str = option("grpo", "grpo (rewards from the verifiers) or dpo (correct-over-wrong pairs)",
                         one_of("grpo", "dpo"))  # fmt: skip
    skills: str = option(ALL_SKILLS, "the skills whose training items are rolled out, comma-separated", SKILL_LIST)
    items: int = option(8, "training items per batch of rollouts", POSITIVE_INT)
    k: int = option(8, "sampled answers per item (GRPO's group)", POSITIVE_INT)
    updates: int = option(2, "optimizer steps on each batch of rollouts", POSITIVE_INT)
    max_new_tokens: int = option(12, "longest answer sampled", POSITIVE_INT)
    temperature: float = option(1.0, "sampling temperature of the rollouts", number("> 0", lambda v: v > 0))
    clip: float = option(0.2, "GRPO's ratio clip epsilon", number("in (0, 1)", lambda v: 0 < v < 1))
    kl_coef: float = option(0.05, "GRPO's weight of the k3 KL penalty to the reference (0: none)",
                            number(">= 0", lambda v: v >= 0))  # fmt: skip
    scale_advantages: bool = option(True, "divide GRPO's advantages by their group's spread", BOOL)
    beta: float = option(0.1, "DPO's beta", number("> 0", lambda v: v > 0))
    val_per_skill: int = option(25, "held-out items per skill scored (greedy) at each evaluation", POSITIVE_INT)

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        check_options(self)
        if self.sft is None and not self.train.resume:
            raise ConfigError("give the SFT checkpoint (--sft), or resume a run (--resume)")
        if self.train.eval_interval % self.updates:
            raise ConfigError(
                f"eval_interval ({self.train.eval_interval}) must be a multiple of updates ({self.updates}), so "
                "checkpoints fall between batches of rollouts and resuming is exact"
            )


def rollout_stats(r: Rollouts) -> dict[str, float]:
    """What a batch of rollouts says: mean reward, accuracy, k3 KL to the reference, answer length in tokens."""
    return {
        "reward": r.rewards.mean().item(),
        "accuracy": r.correct.float().mean().item(),
        "kl": masked_mean(kl_k3(r.logprobs, r.ref_logprobs), r.batch.mask).item(),
        "answer_length": r.batch.answer_lengths.mean().item(),
    }


@dataclass
class RLRun(Run):
    """A `Run` whose batches are rollouts of the policy and whose forward model is the method's objective."""

    METRIC_NAMES: ClassVar[tuple[str, str]] = ("batch_reward", "val_accuracy")
    FIXED_BATCHES: ClassVar[bool] = False  # rl_steps.jsonl counts each step's rollout and update tokens
    rl: RLConfig | None = None
    reference: nn.Module | None = None
    step_stats: list[dict[str, Any]] = field(default_factory=list)
    rollouts: Rollouts | None = None  # the latest batch, for a look at what the policy samples
    _batch: tuple[torch.Tensor, Any] | None = None
    _stats: dict[str, float] = field(default_factory=dict)

    def _new_rollouts(self) -> None:
        c = self.rl
        seed = int(torch.randint(2**62, (1,), generator=self.data_generator))
        start = int(torch.randint(2**31, (1,), generator=self.data_generator))
        items = list(itertools.islice(training_items(start, c.skills.split(",")), c.items))
        t0 = time.perf_counter()
        r = rollout(self.model, self.reference, self.tokenizer, items, k=c.k, max_new_tokens=c.max_new_tokens,
                    temperature=c.temperature, seed=seed)  # fmt: skip
        self._stats = {**rollout_stats(r), "tokens_per_s": r.batch.mask.sum().item() / (time.perf_counter() - t0)}
        if c.method == "grpo":
            targets: Any = GRPOTargets.from_rollouts(r, scale=c.scale_advantages)
            self._batch = (r.batch.x, targets)
        else:
            batch, ref_sums = preference_pairs(r)
            self._stats["pairs"] = batch.x.size(0) // 2
            self._batch = (batch.x, DPOTargets(batch.y, batch.mask, ref_sums)) if batch.x.size(0) else None
        # the compute of a step: the rollouts' (B, T) sampled, then scored by policy and reference; the update's rows
        self._stats["rollout_tokens"] = r.batch.x.numel()
        self._stats["update_tokens"] = self._batch[0].numel() if self._batch is not None else 0
        self.rollouts = r

    def _note_margin(self) -> None:
        """DPO: the step just taken's implicit reward margin and pair accuracy, added to its record."""
        last = getattr(self.forward_model, "last", None)
        if last is not None and self.step_stats:
            self.step_stats[-1].update(margin=last.margin.item(), pair_accuracy=last.accuracy.item())

    def next_batches(self) -> list[tuple[torch.Tensor, Any]]:
        self._note_margin()
        if self.step % self.rl.updates == 0 or self._batch is None:
            for _ in range(DPO_DRAWS):
                self._new_rollouts()
                if self._batch is not None:  # None: DPO, and no item had both a right and a wrong answer
                    break
            else:
                c = self.rl
                raise DataError(
                    f"DPO found no item with both a right and a wrong answer in {DPO_DRAWS} batches of rollouts "
                    f"({c.items} items x {c.k} answers) at step {self.step}, the last {self._stats['accuracy']:.0%} "
                    "right: nothing to prefer; try more --items or --k, another --temperature, or --method grpo"
                )
        self.step_stats.append({"step": self.step + 1, **self._stats})
        return [self._batch]

    def evaluate(self) -> dict[str, float]:
        """ "train": the mean reward of the last batch; "val": greedy held-out accuracy over every skill (recorded
        as batch_reward and val_accuracy)."""
        scores = task_accuracy(self.model, self.tokenizer, held_out_items(self.rl.val_per_skill))
        correct = sum(a.correct for a in scores.values())
        total = sum(a.total for a in scores.values())
        return {"train": self._stats.get("reward", 0.0), "val": correct / total}

    def save(self) -> Path | None:
        if self.out_dir is None:
            return None
        self.saved_step = self.step
        self._note_margin()
        with atomic_write(self.out_dir / STEPS_FILENAME, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(s) + "\n" for s in self.step_stats)
        return ckpt_io.save(
            self.checkpoint_path, self.model, self.optimizer, self.rl.to_dict(), self.tokenizer, self.step,
            data_generator=self.data_generator, metrics=self.metrics,
            extra={"step_losses": list(self.step_losses), "step_stats": list(self.step_stats),
                   "reference": self.reference.state_dict()},
        )  # fmt: skip

    def restore(self, checkpoint: ckpt_io.Checkpoint) -> None:
        super().restore(checkpoint)
        self.step_stats = list(checkpoint.extra.get("step_stats", []))


def prepare_rl(
    config: RLConfig, *, checkpoint: ckpt_io.Checkpoint | None = None, device: torch.device | None = None
) -> RLRun:
    """The run of `config`: policy and frozen reference from the SFT checkpoint (or a run resumed from
    `checkpoint`, default out_dir/ckpt.pt), the method's objective around the policy."""
    tc = config.train
    device = device if device is not None else get_device(tc.device)
    if tc.resume and checkpoint is None:
        checkpoint = ckpt_io.load(Path(tc.out_dir) / ckpt_io.FILENAME, device="cpu")
    out_dir = output_folder(tc.out_dir, "out_dir") if tc.out_dir is not None else None
    torch.manual_seed(tc.seed)
    source = checkpoint if checkpoint is not None else ckpt_io.load(config.sft, device="cpu")
    tokenizer, model = source.build_tokenizer(), source.build_model()
    require_chat_tokens(tokenizer, f"{source.path}")
    reference = GPT(model.config)
    reference.load_state_dict(checkpoint.extra["reference"] if checkpoint is not None else model.state_dict())
    reference.requires_grad_(False)
    model.to(device), reference.to(device).eval()
    tc = dataclasses.replace(tc, model=model.config)
    objective = (GRPOObjective(model, clip=config.clip, kl_coef=config.kl_coef) if config.method == "grpo"
                 else DPOObjective(model, beta=config.beta))  # fmt: skip
    run = RLRun(
        config=tc, device=device, tokenizer=tokenizer, splits=None, model=model,
        optimizer=make_optimizer(model, tc, device), autocast=autocast_for(device, tc.dtype),
        data_generator=torch.Generator().manual_seed(tc.seed), forward_model=objective, out_dir=out_dir,
        rl=config, reference=reference,
    )  # fmt: skip
    if checkpoint is not None:
        run.restore(checkpoint)
    return run
