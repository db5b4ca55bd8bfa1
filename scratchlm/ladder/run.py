"""Running the ladder: the data every rung reads, one rung on the budget, all rungs over seeds.

A rung's result is a plain dict (JSON-ready):

    rung, lesson, seed            which model, from which lesson, trained with which seed
    bits_per_byte                 code length of the held-out text per UTF-8 byte (`scratchlm.evaluate`): the
                                  yardstick, comparable across tokenizers
    heldout_nats_per_token        mean loss over the same held-out text, per token of this rung's tokenizer
    val_loss, train_loss          the training loop's final estimate (nats/token) on `eval_iters` random batches
    params                        parameters (a tied matrix counted once)
    seconds, eval_seconds         wall time of training (with its two loss estimates) and of held-out scoring
    tokens, train_bytes, steps    what the rung read: tokens = steps x batch x block; bytes = tokens x the
                                  training split's bytes per token (exact for characters)
    block_size, vocab_size        the rung's context in tokens and its vocabulary
    heldout_bytes                 bytes of the held-out text scored
    budget, budget_config         the budget's name ("smoke", "cpu", "gpu" or "custom") and its fields
    device, threads, torch        where it ran
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from scratchlm.data import TokenSplits, load_splits
from scratchlm.data.sources import load_text
from scratchlm.errors import ConfigError
from scratchlm.evaluate import bits_per_byte, token_bytes, token_nats
from scratchlm.ladder.budget import BUDGETS, LadderBudget
from scratchlm.ladder.budget import budget as named_budget
from scratchlm.ladder.rungs import RUNGS, get_rung
from scratchlm.memory import check_fits, training_bytes
from scratchlm.runtime import get_device
from scratchlm.tokenizers import BPETokenizer
from scratchlm.training import TrainConfig, train


@dataclass(frozen=True)
class LadderData:
    """What a rung reads: the token splits, the held-out ids scored in bits per byte, and byte counts.

    The held-out text is the same characters for every tokenizer: the last `val_fraction` of the data (its
    first `heldout_chars` characters, when the budget says so). `block_size` is the rung's context in tokens:
    the budget's for characters, the same bytes for BPE.
    """

    splits: TokenSplits
    heldout: torch.Tensor  # (N,) ids of the held-out text
    heldout_bytes: int  # its UTF-8 bytes
    n_bytes: torch.Tensor  # (vocab,) bytes of each token id
    bytes_per_token: float  # of the training split
    block_size: int


@functools.lru_cache(maxsize=8)
def _ladder_data(
    data: str, val_fraction: float, tokenizer: str, bpe_vocab_size: int, heldout_chars: int | None, block_size: int
) -> LadderData:
    text = load_text(data)
    if tokenizer == "char":
        # the library's cut: 1 character = 1 token, so train is exactly the first n characters
        splits = load_splits(data, None, val_fraction)
        n_train_chars = len(splits.train)
    else:
        # BPE learns from the training part only, and both parts are cut where the character split cuts
        n_train_chars = int(len(text) * (1.0 - val_fraction))
        bpe = BPETokenizer.train(text[:n_train_chars], bpe_vocab_size, progress=False)
        encode = functools.partial(_encode, bpe)
        splits = TokenSplits(bpe, encode(text[:n_train_chars]), encode(text[n_train_chars:]))
    held_text = text[n_train_chars:]
    if heldout_chars is not None:
        held_text = held_text[:heldout_chars]
    heldout = _encode(splits.tokenizer, held_text)
    n_bytes = token_bytes(splits.tokenizer)
    bytes_per_token = n_bytes[splits.train].sum().item() / len(splits.train)
    tokens_in_context = block_size if tokenizer == "char" else max(1, round(block_size / bytes_per_token))
    splits.check_fits(tokens_in_context, data)
    return LadderData(splits, heldout, len(held_text.encode("utf-8")), n_bytes, bytes_per_token, tokens_in_context)


def _encode(tokenizer: Any, text: str) -> torch.Tensor:
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def ladder_data(budget: LadderBudget, tokenizer: str = "char") -> LadderData:
    """The data of a rung with `tokenizer` ("char" or "bpe") under `budget`, built once per process."""
    if tokenizer not in ("char", "bpe"):
        raise ConfigError(f"tokenizer must be 'char' or 'bpe', got {tokenizer!r}")
    return _ladder_data(
        budget.data,
        budget.val_fraction,
        tokenizer,
        budget.bpe_vocab_size,
        budget.heldout_chars,
        budget.block_size,
    )


def resolve_budget(budget: LadderBudget | str | None = None) -> tuple[str, LadderBudget]:
    """(name, budget): None is the current mode's budget, a string a named one; a LadderBudget equal to a
    named one takes its name, any other is "custom"."""
    if budget is None or isinstance(budget, str):
        resolved = named_budget(budget)
    elif isinstance(budget, LadderBudget):
        resolved = budget
    else:
        raise ConfigError(f"budget must be a LadderBudget, a budget name or None, got {type(budget).__name__}")
    name = next((n for n, b in BUDGETS.items() if b == resolved), "custom")
    return name, resolved


def train_config(budget: LadderBudget, model_config: Any, seed: int, progress: bool = True) -> TrainConfig:
    """The library's TrainConfig for one rung: the budget's recipe, one evaluation at the start and one at the end."""
    return TrainConfig(
        model=model_config,
        data=budget.data,
        val_fraction=budget.val_fraction,
        batch_size=budget.batch_size,
        max_iters=budget.max_iters,
        learning_rate=budget.learning_rate,
        min_lr=budget.min_lr,
        warmup_iters=budget.warmup_iters,
        eval_interval=budget.max_iters,
        eval_iters=budget.eval_iters,
        seed=seed,
        progress=progress,
    )


def run_rung(
    name: str,
    seed: int = 0,
    budget: LadderBudget | str | None = None,
    *,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Train rung `name` with `seed` on the ladder budget and score it on the held-out text (see the module's
    docstring for the fields of the result). budget: a LadderBudget, a name ("smoke", "cpu", "gpu") or None for
    the current mode's (`SCRATCHLM_SMOKE=1`: smoke; a GPU: gpu; else cpu).

    Same seed, same budget, same device: the same result (on CPU, bit for bit).
    """
    rung = get_rung(name)
    budget_name, budget = resolve_budget(budget)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    device = get_device(str(device) if device is not None else None)
    data = ladder_data(budget, rung.tokenizer)
    model_config = rung.model_config(budget, data.splits.tokenizer.vocab_size, data.block_size)
    torch.manual_seed(seed)  # the initial weights: the same draw for a seed, whichever rung came before
    model = rung.build(model_config)
    config = train_config(budget, model_config, seed, progress)

    start = time.perf_counter()
    result = train(config, model=model, splits=data.splits, device=device)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    nats, _ = token_nats(result.model, data.heldout, block_size=data.block_size)
    bpb = bits_per_byte(nats, data.heldout, data.n_bytes)
    eval_seconds = time.perf_counter() - start
    final = result.metrics[-1]
    if not math.isfinite(bpb):
        raise ConfigError(f"rung {name!r} (seed {seed}) scored a non-finite {bpb} bits per byte")
    return {
        "rung": name,
        "lesson": rung.lesson,
        "seed": seed,
        "bits_per_byte": bpb,
        "heldout_nats_per_token": nats.mean().item(),
        "val_loss": final["val_loss"],
        "train_loss": final["train_loss"],
        "params": sum(p.numel() for p in result.model.parameters()),
        "seconds": seconds,
        "eval_seconds": eval_seconds,
        "tokens": final["tokens"],
        "train_bytes": round(final["tokens"] * data.bytes_per_token),
        "steps": final["step"],
        "block_size": data.block_size,
        "vocab_size": data.splits.tokenizer.vocab_size,
        "heldout_bytes": data.heldout_bytes,
        "budget": budget_name,
        "budget_config": budget.to_dict(),
        "device": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def run_ladder(
    seeds: Sequence[int] = (0, 1),
    rungs: Sequence[str] = RUNGS,
    budget: LadderBudget | str | None = None,
    *,
    device: torch.device | str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """`run_rung` for every rung and seed (rung by rung), with one progress bar; `on_result` sees each result
    as it comes (the CLI writes the file after every rung, so an interrupted ladder keeps what it finished)."""
    if not seeds:
        raise ConfigError("run_ladder needs at least one seed")
    _, resolved = resolve_budget(budget)
    where = get_device(str(device) if device is not None else None)
    for name in rungs:  # an unknown name or an absurd size fails before an hour of training, not after
        rung = get_rung(name)
        if name == "bigram":  # a table of vocab x vocab logits: none of the budget's sizes
            continue
        # lower bounds, as the data is not read yet: one id, and for BPE a context of one token
        vocab, block = (resolved.bpe_vocab_size, 1) if rung.tokenizer == "bpe" else (1, resolved.block_size)
        config = rung.model_config(resolved, vocab, block)
        check_fits(training_bytes(config, resolved.batch_size), where, f"training rung {name!r}")
    results = []
    jobs = [(name, seed) for name in rungs for seed in seeds]
    with tqdm(jobs, desc="ladder", unit="run", dynamic_ncols=True) as bar:
        for name, seed in bar:
            bar.set_postfix_str(f"{name} seed {seed}")
            result = run_rung(name, seed, budget, progress=False, device=device)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
