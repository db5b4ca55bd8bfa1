"""A compute-optimal sweep: model sizes × compute budgets, each point one `train` call, resumable.

    grid = sweep_grid("cpu")                          # widths × budgets, the shape rule, the schedule rule
    records = run_sweep(grid, "runs/scaling")         # appends to runs/scaling/results.jsonl
    records = run_sweep(grid, "runs/scaling")         # again: finished points are skipped, an interrupted one
                                                      # continues from its checkpoint

The shape rule: every model has `depth` layers and heads of `head_size` channels; the width (n_embd) sets its
size, N ≈ 12·depth·width². A point (width, C) trains on D = C / flops_per_token tokens (6N + 12·L·T·C per token,
`scratchlm.scaling.flops`), rounded to whole steps of batch_size × block_size tokens (points of fewer than
`min_steps` steps, the biggest models on the smallest budgets, are left out), with its own learning-rate
schedule: warmup over `warmup_fraction` of its steps, cosine decay to `min_lr_fraction` of the peak at its last
step (Chinchilla's lesson: a schedule longer than the run leaves the loss high). The peak follows the width under
standard parameterisation: lr(width) = learning_rate · (lr_width / width)^lr_exponent.

Points that would read the training split more than `max_epochs` times are left out too: repeated tokens are
worth less than fresh ones (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models": up to about 4
epochs almost as good, beyond about 16 close to worthless), so such a point measures memorisation as much as
scaling. `seeds` > 1 runs every point again with seeds seed + 1, ... (keys ending "-s<seed>"), so that the fits
can be given intervals over seeds.

`data` is a registered name or a text file (split at its end, as `train` splits it), a folder made by `prepare`
(its train/val split and tokenizer), or any other corpus `prepare` reads ("python-stdlib"): the sweep then
prepares it once, character-tokenized, into `out/data/` and uses those shards (`sweep_splits`).

Every point writes checkpoints to `out/points/<key>/` at each of its `evals` evaluations; when it finishes, it is
scored once more on `final_eval_iters` fixed validation (and training) batches, the same for every point, and its
record is appended as one JSON line to `out/results.jsonl`: the config, N, D, C, final and best val loss, the
epochs of training data it saw, its loss curve, its wall time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scratchlm import checkpoint as ckpt_io
from scratchlm.data import TokenSplits, load_splits
from scratchlm.errors import ConfigError, DataError, OutputError
from scratchlm.files import atomic_write, folder_lock, output_folder
from scratchlm.memory import check_fits, training_bytes
from scratchlm.model import GPTConfig
from scratchlm.options import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    TEXT,
    Rule,
    check_options,
    is_int,
    is_number,
    number,
    option,
    optional,
)
from scratchlm.runtime import get_device
from scratchlm.scaling.fits import IsoFLOPFit, LossLaw, LossLawFit, fit_isoflops, fit_loss_law
from scratchlm.scaling.flops import flops_per_token, non_embedding_params
from scratchlm.training import (
    Callback,
    Run,
    StepResult,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate,
    train,
)

RESULTS_FILENAME = "results.jsonl"
GRID_FILENAME = "grid.json"
POINTS_DIRNAME = "points"

MAX_SWEEP_FLOPS = 1e21  # ~12 days of a GPU at 1e15 FLOP/s; the "gpu" grid is about 1e17

_WIDTHS = Rule("a non-empty tuple of positive integers", lambda v: bool(v) and all(is_int(w) and w > 0 for w in v))
_BUDGETS = Rule(
    "a non-empty tuple of positive FLOP counts", lambda v: bool(v) and all(is_number(c) and 0 < c < math.inf for c in v)
)
_FRACTION = number("in [0, 1)", lambda v: 0 <= v < 1)
_POSITIVE = number("positive and finite", lambda v: 0 < v < math.inf)


@dataclass(frozen=True)
class SweepGrid:
    """Model widths × compute budgets, and the rules that turn a (width, budget) pair into a training run."""

    widths: tuple[int, ...] = option(
        (32, 48, 64), "model widths (n_embd); the shape rule sets the rest", _WIDTHS, cli=False
    )
    budgets: tuple[float, ...] = option((1e9, 3e9), "compute budgets C in training FLOPs", _BUDGETS, cli=False)
    # the shape rule
    depth: int = option(2, "layers of every model (the shape rule: fixed depth, width varies)", POSITIVE_INT)
    head_size: int = option(16, "channels per attention head (n_head = width / head_size)", POSITIVE_INT)
    block_size: int = option(64, "context length in tokens", POSITIVE_INT)
    # the training rule
    batch_size: int = option(16, "sequences per step (the same for every point)", POSITIVE_INT)
    learning_rate: float = option(6e-3, "peak learning rate of a model of width --lr-width", _POSITIVE, flags=("--lr",))
    lr_width: int = option(64, "the width at which the peak learning rate is --lr", POSITIVE_INT)
    lr_exponent: float = option(
        1.0, "peak lr(width) = lr · (lr_width / width)^lr_exponent", number(">= 0", lambda v: 0 <= v < math.inf)
    )
    warmup_fraction: float = option(0.05, "fraction of each run's steps spent in linear warmup", _FRACTION)
    min_lr_fraction: float = option(0.1, "the cosine decay ends at this fraction of the peak", _FRACTION)
    # evaluation
    evals: int = option(4, "evaluations (and checkpoints) per run", POSITIVE_INT)
    eval_iters: int = option(10, "batches per evaluation during a run", POSITIVE_INT)
    final_eval_iters: int = option(50, "batches of the final evaluation, the same for every run", POSITIVE_INT)
    min_steps: int = option(
        50, "leave out (width, budget) points with fewer steps: too short to train at all", NON_NEGATIVE_INT
    )
    max_epochs: float | None = option(
        None,
        "leave out points that would read the training split more than this many times (default: no cap)",
        optional(_POSITIVE),
    )
    seed: int = option(1337, "random seed of every run (initialisation and batches)", NON_NEGATIVE_INT)
    seeds: int = option(1, "runs per point, with seeds seed, seed + 1, ...", POSITIVE_INT)
    data: str = option(
        "tinyshakespeare",
        "a registered data name, a UTF-8 text file, a folder made by prepare, or a corpus for prepare (python-stdlib)",
        TEXT,
    )

    def __post_init__(self) -> None:
        for name in ("widths", "budgets"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        check_options(self)
        object.__setattr__(self, "budgets", tuple(float(c) for c in self.budgets))
        if bad := [w for w in self.widths if w % self.head_size]:
            raise ConfigError(f"widths {bad} are not multiples of head_size={self.head_size}")

    def replace(self, **changes: Any) -> SweepGrid:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model(self, width: int, vocab_size: int | None = None) -> GPTConfig:
        """The shape rule: `depth` layers, heads of `head_size`, residual stream `width` wide."""
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.depth,
            n_head=width // self.head_size,
            n_embd=width,
        )

    def peak_lr(self, width: int) -> float:
        return self.learning_rate * (self.lr_width / width) ** self.lr_exponent

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    def point(self, width: int, budget: float, vocab_size: int, seed: int | None = None) -> SweepPoint:
        """The training run of a model of `width` on `budget` FLOPs (with `seed`, default the grid's)."""
        model = self.model(width, vocab_size)
        per_token = flops_per_token(model)
        steps = max(1, round(budget / (per_token * self.tokens_per_step)))
        lr = self.peak_lr(width)
        config = TrainConfig(
            model=dataclasses.replace(model, vocab_size=None),  # train() takes it from the tokenizer
            data=self.data,
            batch_size=self.batch_size,
            max_iters=steps,
            learning_rate=lr,
            min_lr=lr * self.min_lr_fraction,
            warmup_iters=round(self.warmup_fraction * steps),
            eval_interval=math.ceil(steps / self.evals),
            eval_iters=self.eval_iters,
            seed=self.seed if seed is None else seed,
            progress=False,  # the sweep shows one bar for all its points
        )
        return SweepPoint(width, float(budget), model, config, self.final_eval_iters, self.seed)

    def points(self, vocab_size: int, train_tokens: int | None = None) -> list[SweepPoint]:
        """Every (width, budget) point with at least `min_steps` steps and, given the training split's size, at most
        `max_epochs` epochs; smallest budget first, each point's seeds together. (The largest models on the smallest
        budgets would get a handful of steps: far from the optimum, and not a trained model.)"""
        if self.max_epochs is not None and train_tokens is None:
            raise ConfigError("this grid caps epochs (max_epochs): points() needs train_tokens, the split's size")
        points = [
            self.point(w, c, vocab_size, self.seed + i)
            for c in sorted(self.budgets)
            for w in sorted(self.widths)
            for i in range(self.seeds)
        ]
        points = [p for p in points if p.steps >= self.min_steps]
        if self.max_epochs is not None:
            points = [p for p in points if p.tokens <= self.max_epochs * train_tokens]
        return points


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: a model (`model`, its vocab_size set) on a budget, and the `TrainConfig` that trains it."""

    width: int
    budget: float
    model: GPTConfig
    config: TrainConfig
    final_eval_iters: int
    grid_seed: int

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def key(self) -> str:
        """The run's name: its folder under points/ and its identity in results.jsonl (runs with a seed other than
        the grid's end in "-s<seed>")."""
        key = f"L{self.model.n_layer}-w{self.width}-C{self.budget:.3g}"
        return key if self.seed == self.grid_seed else f"{key}-s{self.seed}"

    @property
    def params(self) -> int:
        return non_embedding_params(self.model)

    @property
    def flops_per_token(self) -> int:
        return flops_per_token(self.model)

    @property
    def steps(self) -> int:
        return self.config.max_iters

    @property
    def tokens(self) -> int:
        return self.steps * self.config.tokens_per_step

    @property
    def flops(self) -> float:
        """The FLOPs the run actually costs: its whole steps' tokens × FLOPs per token (≈ the budget)."""
        return float(self.tokens) * self.flops_per_token

    def config_dict(self) -> dict[str, Any]:
        """The TrainConfig as plain JSON data: what a finished record is matched against."""
        return json.loads(json.dumps(self.config.to_dict()))


GRIDS: dict[str, SweepGrid] = {
    # seconds: for tests and the lessons' smoke mode
    "smoke": SweepGrid(
        widths=(16, 32, 48),
        budgets=(1e9, 2e9, 4e9),
        depth=2,
        batch_size=8,
        block_size=32,
        evals=2,
        eval_iters=2,
        final_eval_iters=4,
        min_steps=10,
    ),
    # about ten minutes on one CPU thread (bench/README.md has the measured time); the cap of 10 epochs leaves out
    # one point, width 16 at 2e12 (19.5 epochs of Tiny Shakespeare; 119 s of the 15-run sweep's 9.2 minutes)
    "cpu": SweepGrid(
        widths=(16, 32, 48, 64, 96),
        budgets=(5e11, 1e12, 2e12),
        depth=3,
        max_epochs=10,
    ),
    # a GPU: lesson 11's corpus, the standard library's 12 MB of Python (11.9M training characters on CPython 3.11),
    # two seeds per point. Points that would read it more than 4 times are left out (Muennighoff et al. 2023), which
    # caps the budgets: at 3e14 the likely optimum (widths 192-256) reads it 1.1-1.9 times, at 1e15 widths under 256
    # would already read it over 4 times. (The old grid, 1e14-1e16 on Tiny Shakespeare, repeated it 81-3,315 times.)
    "gpu": SweepGrid(
        widths=(64, 96, 128, 192, 256, 384, 512),
        budgets=(3e13, 1e14, 3e14),
        depth=4,
        head_size=32,
        block_size=256,
        batch_size=64,
        learning_rate=3e-3,
        lr_width=256,
        eval_iters=20,
        final_eval_iters=100,
        max_epochs=4,
        seeds=2,
        data="python-stdlib",
    ),
}


def sweep_grid(name: str, **overrides: Any) -> SweepGrid:
    """`GRIDS[name]` with `overrides` applied and validated."""
    if name not in GRIDS:
        raise ConfigError(f"unknown grid {name!r}; choose one of: {', '.join(GRIDS)}")
    return GRIDS[name].replace(**overrides)


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------


_RECORD_FIELDS = {"key": str, "budget": (int, float), "params": int, "tokens": int,
                  "flops": (int, float), "epochs": (int, float), "wall_s": (int, float)}  # fmt: skip


def _record_problem(record: Any) -> str | None:
    """What keeps `record` from being a sweep record (a missing field, a value of the wrong type), or None."""
    if not isinstance(record, dict):
        return "it is not a JSON object"
    for name, kind in _RECORD_FIELDS.items():
        if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
            return f"its {name!r} is missing or not a {kind.__name__ if isinstance(kind, type) else 'number'}"
    loss = record.get("final_val_loss")
    if loss is not None and (not isinstance(loss, (int, float)) or isinstance(loss, bool)):
        return "its 'final_val_loss' is not a number"
    return None


def read_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records in `out_dir/results.jsonl`, in the order they were written. A line cut short (the sweep was
    killed while writing it: the start of a JSON object, never valid JSON) is skipped: that point runs again and
    writes it whole. Any other line that is not a record (not UTF-8, not JSON, a record of something else) is a
    `DataError` naming the file and the line: the folder holds something this sweep did not write."""
    path = Path(out_dir) / RESULTS_FILENAME
    if not path.is_file():
        return []
    records = []
    for line_number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}, line {line_number}"
        try:
            line = raw.decode("utf-8")  # json.dumps writes ASCII: a cut line is valid UTF-8
        except UnicodeDecodeError:
            raise DataError(f"{where} is not UTF-8 text: the file was not written by a sweep") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.startswith("{"):
                continue  # cut short by a kill mid-write
            raise DataError(f"{where} is not a JSON record: the file was not written by a sweep") from None
        if problem := _record_problem(record):
            raise DataError(f"{where} is not a sweep record ({problem})")
        records.append(record)
    return records


def append_result(out_dir: str | Path, record: dict[str, Any]) -> None:
    """Append `record` as one JSON line, flushed to disk before returning."""
    path = Path(out_dir) / RESULTS_FILENAME
    try:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # the previous writer was killed mid-line: start a fresh one
                    f.write(b"\n")
            f.write((json.dumps(record) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"could not append to {path}: {e.strerror or e}") from e


def _check_matches(record: dict[str, Any], point: SweepPoint, path: Path) -> None:
    if record.get("config") != point.config_dict():
        ours, theirs = point.config_dict(), record.get("config") or {}
        changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise ConfigError(
            f"{path} already holds point {point.key} trained with other settings ({', '.join(changed)}); "
            "use another output folder for this grid"
        )


# Fields that only choose which points a grid holds; every other field is the recipe, shared by all its points.
_SELECTION = ("widths", "budgets", "min_steps", "max_epochs", "seeds")  # which points, not how each trains


def _check_same_recipe(out: Path, grid: SweepGrid, started: bool) -> SweepGrid | None:
    """The grid recorded in `out/grid.json` (None if there is none). A sweep folder that has started (results or
    checkpoints) may be extended with other widths and budgets, but not run with another recipe: one fit over two
    recipes would mix them (ConfigError, before anything is written)."""
    path = out / GRID_FILENAME
    if not path.is_file():
        return None
    try:
        recorded = SweepGrid(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:  # JSON, UTF-8 and ConfigError are all ValueErrors
        if not started:
            return None
        raise ConfigError(f"{path} is not a sweep grid ({str(e).splitlines()[0]}); use another output folder") from None
    changed = [f.name for f in dataclasses.fields(grid) if f.name not in _SELECTION
               and getattr(grid, f.name) != getattr(recorded, f.name)]  # fmt: skip
    if changed and started:
        raise ConfigError(
            f"{out} holds a sweep with other settings ({', '.join(changed)}): a fit over both would mix two "
            "recipes; use another output folder, or the same settings to extend it"
        )
    return recorded if not changed else None


def _widened(grid: SweepGrid, recorded: SweepGrid | None) -> SweepGrid:
    """`grid` with the widths and budgets of the grid already recorded in the folder added: grid.json describes
    every point the folder holds."""
    if recorded is None:
        return grid
    return grid.replace(
        widths=tuple(sorted({*grid.widths, *recorded.widths})),
        budgets=tuple(sorted({*grid.budgets, *recorded.budgets})),
    )


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------


class _SweepProgress(Callback):
    """Moves the sweep's bar by the FLOPs of every step taken (steps done before a resume count at once)."""

    def __init__(self, bar: tqdm, point: SweepPoint):
        self.bar, self.flops_per_step, self.counted = bar, point.flops / point.steps, 0

    def on_step(self, run: Run, result: StepResult) -> None:
        self.bar.update((run.step - self.counted) * self.flops_per_step)
        self.counted = run.step


def run_point(
    point: SweepPoint,
    folder: str | Path,
    *,
    splits: TokenSplits,
    device: torch.device | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train `point` with its checkpoints in `folder` (continuing from `folder/ckpt.pt` if there is one), score
    it on the fixed final batches and return its record. Raises `TrainingInterrupted` if the run stopped early
    (Ctrl-C, or a callback that set `run.stop`); its checkpoint then continues it next time. A run that diverges
    (`TrainingDiverged`) returns a record with `diverged` set and no losses."""
    folder = Path(folder)
    device = device if device is not None else get_device()
    saved = None
    if (folder / ckpt_io.FILENAME).is_file():
        saved = ckpt_io.load(folder / ckpt_io.FILENAME)
        settings = {**(saved.config or {}), "out_dir": None, "resume": False}
        if json.loads(json.dumps(settings)) != point.config_dict():
            raise ConfigError(
                f"{saved.path} is a checkpoint of point {point.key} with other settings; "
                "use another output folder for this grid (or delete the checkpoint to start the point afresh)"
            )
    # without a checkpoint the point starts afresh, replacing what a run killed before its first save left behind
    config = point.config.replace(out_dir=str(folder), resume=saved is not None, overwrite=saved is None)
    start = time.perf_counter()
    try:
        result = train(config, callbacks=callbacks, splits=splits, device=device, checkpoint=saved)
    except TrainingDiverged as e:
        wall = time.perf_counter() - start
        outcome = {"diverged": str(e), "final_val_loss": None, "best_val_loss": None, "wall_s": wall}
        return {**_description(point, splits), **outcome, "config": point.config_dict()}
    steps_done = result.metrics[-1]["step"] if result.metrics else 0
    if steps_done < point.steps:
        raise TrainingInterrupted(
            f"point {point.key} stopped at step {steps_done} of {point.steps}; run again to continue"
        )
    final = evaluate(result.model, splits.as_dict(), point.config.replace(eval_iters=point.final_eval_iters), device)
    wall = time.perf_counter() - start
    record = {
        **_description(point, splits),
        "final_val_loss": final["val"],
        "final_train_loss": final["train"],
        "best_val_loss": min([final["val"], *(m["val_loss"] for m in result.metrics)]),
        "curve": [
            {"step": m["step"], "tokens": m["tokens"], "val_loss": m["val_loss"], "train_loss": m["train_loss"]}
            for m in result.metrics
        ],
        "wall_s": wall,
        "resumed_from_step": saved.step if saved is not None else None,
        "threads": torch.get_num_threads(),
        "device": device.type,
        "config": point.config_dict(),
    }
    return record


def _description(point: SweepPoint, splits: TokenSplits) -> dict[str, Any]:
    """What a record says about the run before its results: shape, N, D, C, epochs of the training split."""
    return {
        "key": point.key,
        "width": point.width,
        "n_layer": point.model.n_layer,
        "n_head": point.model.n_head,
        "n_embd": point.model.n_embd,
        "budget": point.budget,
        "params": point.params,
        "params_kaplan": non_embedding_params(point.model, count_head=False),
        "flops_per_token": point.flops_per_token,
        "tokens": point.tokens,
        "flops": point.flops,
        "steps": point.steps,
        "epochs": point.tokens / len(splits.train),
        "learning_rate": point.config.learning_rate,
        "seed": point.seed,
    }


def sweep_splits(data: str | Path, out_dir: str | Path | None = None) -> TokenSplits:
    """The train/val tokens a sweep over `data` trains on.

    A registered name or a text file: `load_splits` (characters, the last 10% for validation). A folder made by
    `prepare` (lesson 11's shards): its splits (made by document) and its tokenizer. Any other corpus `prepare`
    reads ("python-stdlib", "hf:..."): prepared once, character-tokenized, into `out_dir/data/` (reused when the
    sweep is resumed), then read as such a folder.
    """
    from scratchlm.data import REGISTRY
    from scratchlm.pretraining.shards import INDEX_FILENAME, ShardIndex, prepare

    path = Path(data)
    if (path / INDEX_FILENAME).is_file():
        index = ShardIndex.open(path)
    elif str(data) in REGISTRY or path.is_file():
        return load_splits(data)
    else:
        if out_dir is None:
            raise ConfigError(f"{data!r} must be prepared into shards first: give the sweep's output folder")
        index, _ = prepare(data, "char", Path(out_dir) / "data", workers=1, progress=False)
    train, val = (torch.from_numpy(index.read(split).astype(np.int64)) for split in ("train", "val"))
    return TokenSplits(index.tokenizer(), train, val)


def run_sweep(
    grid: SweepGrid,
    out_dir: str | Path,
    *,
    splits: TokenSplits | None = None,
    device: torch.device | None = None,
    points: Sequence[SweepPoint] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    keep_checkpoints: bool = False,
) -> list[dict[str, Any]]:
    """Run every point of `grid` (or `points`) that `out_dir/results.jsonl` does not hold yet; return the records
    of all of them, in the grid's order.

    Resumable: a point already in results.jsonl is skipped (its settings must match, else ConfigError), and a
    point with a checkpoint in out_dir/points/<key>/ continues from it. `splits` (default: `sweep_splits(grid.data,
    out_dir)`, tokenized once here) and `device` (default: the best available) are shared by every run.
    """
    out = output_folder(out_dir, "sweep folder")
    device = device if device is not None else get_device()
    splits = splits if splits is not None else sweep_splits(grid.data, out)
    vocab_size = splits.tokenizer.vocab_size
    # the largest model by formula first: building even a shapes-only model of an absurd depth takes forever
    largest = grid.model(max(grid.widths), vocab_size)
    check_fits(training_bytes(largest, grid.batch_size), device, "the sweep's largest model")
    points = list(points) if points is not None else grid.points(vocab_size, len(splits.train))
    if not points:
        raise ConfigError(
            f"no (width, budget) point of the grid has at least min_steps={grid.min_steps} steps: lower "
            "--min-steps, raise --budgets or choose smaller --widths"
        )
    if (total := sum(p.flops for p in points)) > MAX_SWEEP_FLOPS:
        raise ConfigError(
            f"the grid's points add up to {total:.3g} training FLOPs, more than any one machine does in weeks "
            f"(limit {MAX_SWEEP_FLOPS:.0e}; a 2-core CPU does about 1e11 FLOP/s): lower --budgets"
        )
    # one sweep per folder (two would both append the same points), and every check before the first write
    with folder_lock(out):
        finished = {r["key"]: r for r in read_results(out)}
        for point in points:
            if point.key in finished:
                _check_matches(finished[point.key], point, out / RESULTS_FILENAME)
        recorded = _check_same_recipe(out, grid, started=bool(finished) or (out / POINTS_DIRNAME).is_dir())
        with atomic_write(out / GRID_FILENAME, "w", encoding="utf-8") as f:
            json.dump(_widened(grid, recorded).to_dict(), f, indent=1)
        todo = [p for p in points if p.key not in finished]
        bar = tqdm(
            total=sum(p.flops for p in points),
            initial=sum(p.flops for p in points if p.key in finished),
            unit="FLOP",
            unit_scale=True,
            desc=f"sweep ({len(points) - len(todo)}/{len(points)} points done)",
            disable=not progress,
            dynamic_ncols=True,
        )
        with bar:
            for i, point in enumerate(todo):
                bar.set_postfix_str(point.key, refresh=False)
                folder = out / POINTS_DIRNAME / point.key
                callbacks_ = [_SweepProgress(bar, point), *callbacks]
                record = run_point(point, folder, splits=splits, device=device, callbacks=callbacks_)
                append_result(out, record)
                finished[point.key] = record
                if not keep_checkpoints:  # the record is on disk: the checkpoint has done its job
                    (folder / ckpt_io.FILENAME).unlink(missing_ok=True)
                done = len(points) - len(todo) + i + 1
                bar.set_description(f"sweep ({done}/{len(points)} points done)", refresh=True)
    if not keep_checkpoints:  # a sweep killed between writing a record and deleting its checkpoint
        for point in points:
            (out / POINTS_DIRNAME / point.key / ckpt_io.FILENAME).unlink(missing_ok=True)
    return [finished[p.key] for p in points]


# ----------------------------------------------------------------------------------------------------------------
# Fitting and predicting
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepFit:
    """Both Chinchilla fits of a sweep's records: approach 2 (isoFLOP profiles) and approach 3 (L(N, D); None
    with fewer than five runs)."""

    isoflops: IsoFLOPFit
    loss_law: LossLawFit | None


def fit_sweep(
    records: Sequence[dict[str, Any]], *, budgets: Sequence[float] | None = None, loss: str = "final_val_loss"
) -> SweepFit:
    """Fit the records of the given `budgets` (default: all) by their `loss` (final validation loss by default)."""
    chosen = [r for r in records if r.get(loss) is not None and (budgets is None or r["budget"] in set(budgets))]
    if not chosen:
        raise ConfigError("no finished runs to fit")
    columns = {k: [r[k] for r in chosen] for k in ("budget", "params", "tokens", loss)}
    isoflops = fit_isoflops(columns["budget"], columns["params"], columns["tokens"], columns[loss])
    law = fit_loss_law(columns["params"], columns["tokens"], columns[loss]) if len(chosen) >= 5 else None
    return SweepFit(isoflops, law)


def predicted_optimum(
    law: LossLaw, grid: SweepGrid, budget: float, vocab_size: int, widths: Sequence[int] | None = None
) -> list[tuple[SweepPoint, float]]:
    """Every model the shape rule allows (widths: multiples of head_size up to twice the grid's widest, unless
    given) on `budget`, with the loss `law` predicts for it, best first. The first is the compute-optimal model
    of this shape family according to the fit, FLOPs counted as the sweep counts them (attention included)."""
    if widths is None:
        widths = range(grid.head_size, 2 * max(grid.widths) + 1, grid.head_size)
    points = [grid.point(w, budget, vocab_size) for w in widths]
    return sorted(((p, float(law(p.params, p.tokens))) for p in points), key=lambda pair: pair[1])
