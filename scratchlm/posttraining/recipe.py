"""The base and fine-tuned models of lesson 14, rebuilt the same way by whoever needs them (lesson 15 too).

The base model is a character-level GPT pretrained on Tiny Shakespeare with plain renderings of the task suite's
training items mixed in ("reverse stone = enots", what current pipelines call mid-training): it learns the skills
raw, as text to continue. Fine-tuning then teaches it the chat format and to answer the phrasings of an
instruction. Characters, not BPE, because the skills are about characters: a word reversed or sorted, a letter
counted, digits carried; with one token per character every one of them is visible to the model.

    paths = lesson_models("cpu")               # trains what out/lesson14/cpu lacks, reuses what it holds
    model, tokenizer = checkpoint.load_model(paths.sft)

Each recipe is deterministic (seeded data, initialisation and batches), so the same name gives the same models;
a finished run found in its folder is reused (a resume at its last step trains nothing), a half-finished one
continued exactly.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch

from scratchlm.data import TokenSplits, load_text
from scratchlm.errors import ConfigError
from scratchlm.model import GPTConfig
from scratchlm.posttraining.sft import SFT_TRAIN, SFTConfig, sft
from scratchlm.posttraining.tasks import raw_lines
from scratchlm.tokenizers import CharTokenizer
from scratchlm.training import TrainConfig, TrainResult, train

SKILL_SHARE = 0.5  # of the base model's training characters, the plain skill lines' share
LESSON_ROOT = Path("out") / "lesson14"


def base_corpus(
    text: str, skill_share: float = SKILL_SHARE, val_fraction: float = 0.1, seed: int = 0
) -> tuple[str, str]:
    """(train, val): the first 1 - val_fraction of `text` with blocks of plain skill lines between its
    paragraphs, making up `skill_share` of the characters; and the held-out end of `text`, untouched (its bits
    per byte measure what the model knows of the text, before and after fine-tuning)."""
    if not 0 <= skill_share < 1:
        raise ConfigError(f"skill_share must be in [0, 1), got {skill_share}")
    cut = int(len(text) * (1 - val_fraction))
    paragraphs = text[:cut].split("\n\n")
    sample = raw_lines(1000, seed)
    mean_line = sum(len(line) + 1 for line in sample) / len(sample)
    n_lines = round(skill_share / (1 - skill_share) * cut / mean_line)
    lines = raw_lines(n_lines, seed)
    per_gap = n_lines / max(len(paragraphs), 1)
    blocks, taken = [], 0
    for i, paragraph in enumerate(paragraphs):
        upto = round((i + 1) * per_gap)
        blocks.append(paragraph)
        if upto > taken:
            blocks.append("\n".join(lines[taken:upto]))
            taken = upto
    return "\n\n".join(blocks), text[cut:]


def base_splits(train_text: str, val_text: str) -> TokenSplits:
    """Character splits of the base corpus; the alphabet has every letter and digit whatever the text holds."""
    tokenizer = CharTokenizer.from_text(train_text + val_text + string.ascii_lowercase + string.digits)
    encode = lambda t: torch.tensor(tokenizer.encode(t), dtype=torch.long)
    return TokenSplits(tokenizer, encode(train_text), encode(val_text))


@dataclass(frozen=True)
class Recipe:
    """The sizes of one lesson configuration: the base model's pretraining, its fine-tuning's optimisation and
    how many task conversations it learns from."""

    base: TrainConfig
    sft_train: TrainConfig
    n_conversations: int = 20_000
    val_per_skill: int = 25

    def sft_config(self, base: str | Path, **changes) -> SFTConfig:
        """The fine-tuning of the base checkpoint `base`, with fields replaced by name (out_dir, lora_rank, ...)."""
        config = SFTConfig(base=str(base), train=self.sft_train, n_conversations=self.n_conversations,
                           val_per_skill=self.val_per_skill)  # fmt: skip
        return config.replace(**changes)


BASE_MODEL = GPTConfig(n_layer=4, n_head=4, n_embd=96, block_size=96, pos_embedding="rope")
_BASE = TrainConfig(model=BASE_MODEL, batch_size=16, learning_rate=3e-3, min_lr=1e-4, warmup_iters=100,
                    eval_iters=10, seed=0)  # fmt: skip
RECIPES: dict[str, Recipe] = {
    "smoke": Recipe(
        _BASE.replace(n_layer=2, n_embd=32, n_head=2, block_size=96, max_iters=60, eval_interval=30, eval_iters=2),
        SFT_TRAIN.replace(max_iters=30, eval_interval=15, seed=0),
        n_conversations=500,
        val_per_skill=5,
    ),
    "cpu": Recipe(_BASE.replace(max_iters=2000, eval_interval=500), SFT_TRAIN.replace(seed=0)),
    "gpu": Recipe(
        _BASE.replace(n_layer=6, n_head=6, n_embd=384, batch_size=64, learning_rate=1e-3, max_iters=5000,
                      eval_interval=500),
        SFT_TRAIN.replace(batch_size=64, learning_rate=3e-4, max_iters=1000, seed=0),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class LessonModels:
    """Where a recipe's checkpoints are: the base model and its fine-tuned (full) assistant."""

    base: Path
    sft: Path


def _finished(folder: Path) -> bool:
    return (folder / "ckpt.pt").is_file()


def pretrain_base(recipe: Recipe, folder: str | Path, *, text: str | None = None, progress: bool = True) -> TrainResult:
    """Pretrain the recipe's base model into `folder` (resuming what it holds) on the base corpus of `text`
    (default: Tiny Shakespeare)."""
    train_text, val_text = base_corpus(text if text is not None else load_text("tinyshakespeare"))
    config = recipe.base.replace(out_dir=str(folder), progress=progress, resume=_finished(Path(folder)))
    return train(config, splits=base_splits(train_text, val_text))


def lesson_models(name: str, root: str | Path = LESSON_ROOT, *, progress: bool = True) -> LessonModels:
    """The base and SFT checkpoints of recipe `name` ("smoke", "cpu", "gpu") under root/name, trained if missing."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe, folder = RECIPES[name], Path(root) / name
    paths = LessonModels(folder / "base" / "ckpt.pt", folder / "sft" / "ckpt.pt")
    pretrain_base(recipe, paths.base.parent, progress=progress)
    sft_folder = paths.sft.parent
    sft(recipe.sft_config(paths.base, out_dir=str(sft_folder), progress=progress, resume=_finished(sft_folder)))
    return paths
