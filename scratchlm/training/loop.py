"""Training a model: resolve the run once, loop over `train_step`, evaluate and checkpoint, call back.

    result = train(preset("smoke", max_iters=100))
    result.metrics[-1]["val_loss"], result.model, result.tokenizer, result.splits

`train` first resolves everything the run depends on, once (`prepare_run`): the device, the tokenizer and the
token splits, the checkpoint to resume from (read once), the model and its optimizer, the autocast context.
Then the loop: every `eval_interval` steps it estimates train and val loss on fixed batches, records a metrics
entry, appends it to `out_dir/metrics.jsonl` and writes a checkpoint from which `resume=True` continues
exactly; every step is one `train_step`.

Callbacks see the run without owning a loop: `on_step(run, step_result)` after every step and
`on_eval(run, record)` after every evaluation; setting `run.stop = True` ends training after the current step
(evaluated and checkpointed). Any language model can be trained this way: pass `model=` (the bigram model, a
lesson's single head, a stack of one's own blocks) and `config.model.block_size` sets the window it sees.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from scratchlm import checkpoint as ckpt_io
from scratchlm.data import TokenSplits, get_batch, load_splits
from scratchlm.errors import CheckpointError, ConfigError, OutputError, ScratchLMError
from scratchlm.files import atomic_write, folder_lock, output_folder, remove_stale_temporaries
from scratchlm.memory import check_fits, training_bytes
from scratchlm.model import GPT
from scratchlm.optim import CombinedOptimizer
from scratchlm.runtime import get_device
from scratchlm.training.config import TrainConfig, lr_at
from scratchlm.training.step import (
    StepResult,
    autocast_for,
    compile_model,
    estimate_loss,
    make_optimizer,
    train_step,
)

EVAL_SEED_OFFSET = 1  # eval batches come from their own generator, seeded seed + 1 at every evaluation
METRICS_FILENAME = "metrics.jsonl"


class Callback:
    """Hooks into `train`. Subclass and override what you need; both do nothing by default."""

    def on_step(self, run: Run, result: StepResult) -> None:
        """After optimizer step number `run.step` (1-based: steps done so far). `result.loss` is still a device
        tensor: `.item()` on every step would make a GPU wait."""

    def on_eval(self, run: Run, record: dict[str, Any]) -> None:
        """After the evaluation `record` (also appended to `run.metrics`) and its checkpoint."""


@dataclass
class Run:
    """A training run resolved once: what `train` loops over, and what callbacks see.

    model: the model being trained; `forward_model` is what runs it (the same module, or its `torch.compile`d
    wrapper with compile=True). step: optimizer steps done. metrics: the evaluation records. step_losses: every
    step's training loss (filled at each evaluation; the losses of the steps since then wait on the device).
    resumed: the run continues a checkpoint. stop: set it to end the run after the current step.
    METRIC_NAMES: what the metrics records call the two values `evaluate` returns (a run that measures something
    other than losses names them for what they are).
    FIXED_BATCHES: each step trains `config.tokens_per_step` tokens, so the records and the progress bar count
    tokens and tokens/s from it; a run whose steps are not fixed batches (RL: rollouts, then updates) sets it
    False and counts its tokens in its own log.
    """

    METRIC_NAMES: ClassVar[tuple[str, str]] = ("train_loss", "val_loss")
    FIXED_BATCHES: ClassVar[bool] = True

    config: TrainConfig
    device: torch.device
    tokenizer: Any
    splits: TokenSplits | None
    model: nn.Module
    optimizer: torch.optim.Optimizer | CombinedOptimizer
    autocast: contextlib.AbstractContextManager
    data_generator: torch.Generator
    forward_model: nn.Module
    out_dir: Path | None = None
    step: int = 0
    start_step: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    resumed: bool = False
    stop: bool = False
    saved_step: int | None = None  # the step of the last checkpoint written or resumed from

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / ckpt_io.FILENAME if self.out_dir is not None else None

    def next_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The micro-batches of the next step, drawn from the run's own generator."""
        c = self.config
        return [
            get_batch(self.splits.train, c.model.block_size, c.batch_size, self.data_generator, self.device)
            for _ in range(c.grad_accum_steps)
        ]

    def evaluate(self) -> dict[str, float]:
        """Train and val loss of the model now, on the same batches at every call."""
        return evaluate(self.forward_model, self.splits.as_dict(), self.config, self.device, self.autocast)

    def save(self) -> Path | None:
        """Write the checkpoint (weights, optimizer, config, tokenizer, step, random states, metrics)."""
        if self.out_dir is None:
            return None
        self.saved_step = self.step
        return ckpt_io.save(
            self.checkpoint_path,
            self.model,
            self.optimizer,
            self.config.to_dict(),
            self.tokenizer,
            self.step,
            data_generator=self.data_generator,
            metrics=self.metrics,
            extra={"step_losses": list(self.step_losses)},
        )

    def restore(self, checkpoint: ckpt_io.Checkpoint) -> None:
        """Continue from `checkpoint` (whose weights the model already holds): the optimizer state, the step,
        the metrics and step losses so far, and every random state, the data generator's included."""
        if checkpoint.optimizer_state is not None:
            try:
                self.optimizer.load_state_dict(checkpoint.optimizer_state)
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{checkpoint.path}: its optimizer state does not fit this run ({e})") from None
        self.step = self.start_step = checkpoint.step
        self.resumed = True
        self.metrics = list(checkpoint.metrics)
        self.step_losses = list(checkpoint.extra.get("step_losses", []))
        if checkpoint.rng is not None:
            ckpt_io.restore_rng_state(checkpoint.rng, self.data_generator)
        self.saved_step = checkpoint.step

    def begin_output(self) -> None:
        """Make out_dir ready for this run (call it holding the folder's lock, as `train` does): a new run refuses
        a folder that holds one unless config.overwrite, which deletes it; a resumed run's metrics.jsonl is
        rewritten to the checkpoint's records, dropping lines of steps a killed run logged after its last
        checkpoint; temporary files of killed saves are removed."""
        if self.out_dir is None:
            return
        remove_stale_temporaries(self.out_dir)
        if self.resumed:
            with atomic_write(self.out_dir / METRICS_FILENAME, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(record) + "\n" for record in self.metrics)
            return
        for path in self.check_output():
            path.unlink()

    def check_output(self) -> list[Path]:
        """The files of an earlier run in out_dir that a new run would replace: refused (OutputError) unless
        config.overwrite. `train` asks before it takes the folder's lock too, so a refused run changes nothing."""
        if self.out_dir is None or self.resumed:
            return []
        existing = [p for p in (self.checkpoint_path, self.out_dir / METRICS_FILENAME) if p.exists()]
        if existing and not self.config.overwrite:
            raise OutputError(
                f"{self.out_dir} already holds a training run ({', '.join(p.name for p in existing)}): resume it "
                "(resume=True), start over (overwrite=True) or choose another out_dir"
            )
        return existing


class TrainingDiverged(ScratchLMError):
    """The loss became NaN or infinite: training stopped, and no checkpoint was written over the last good one."""


@dataclass
class TrainResult:
    """What `train` returns.

    metrics: one dict per evaluation: step, train_loss, val_loss, lr (of the last step taken), tokens
    (seen so far), tokens_per_s (training throughput since the previous evaluation, evaluation excluded),
    elapsed_s (wall time since the start of this call). step_losses: the training loss of every step.
    splits: the tokenized train/val data (None for a run on other data, such as conversations). checkpoint_path:
    the last checkpoint written, or None without out_dir.
    """

    model: nn.Module
    tokenizer: Any
    config: TrainConfig
    splits: TokenSplits | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    checkpoint_path: Path | None = None

    @property
    def final_val_loss(self) -> float | None:
        return self.metrics[-1]["val_loss"] if self.metrics else None


def evaluate(
    model: nn.Module,
    splits: dict[str, torch.Tensor],
    config: TrainConfig,
    device: torch.device | str | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """`estimate_loss` on the very batches that `train` evaluates a run of `config` on: its block and batch
    sizes, `eval_iters` batches, drawn from their own generator seeded `config.seed + 1`."""
    return estimate_loss(
        model,
        splits,
        block_size=config.model.block_size,
        batch_size=config.batch_size,
        eval_iters=config.eval_iters,
        seed=config.seed + EVAL_SEED_OFFSET,
        device=device,
        autocast=autocast,
    )


def prepare_run(
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    splits: TokenSplits | None = None,
    checkpoint: ckpt_io.Checkpoint | None = None,
    device: torch.device | None = None,
) -> Run:
    """Resolve everything `config` leaves open, once, and hand it on.

    Each keyword replaces what would otherwise be derived: `model` any LM whose forward(x, y) returns
    (logits, loss) (default: a GPT of `config.model`); `tokenizer` (default: from the checkpoint, else
    `config.tokenizer`, else the characters of the data); `splits` already tokenized data; `checkpoint` an
    already loaded checkpoint to resume from (default with resume=True: `out_dir/ckpt.pt`, read here);
    `device` an already chosen device (default: `get_device(config.device)`).
    """
    device = device if device is not None else get_device(config.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for whatever autocast leaves in float32
    if model is not None and config.out_dir is not None:
        raise ConfigError("out_dir and resume work with the library's GPT only: train a model of your own without")
    if config.resume and checkpoint is None:
        checkpoint = ckpt_io.load(Path(config.out_dir) / ckpt_io.FILENAME, device="cpu")
    out_dir = output_folder(config.out_dir, "out_dir") if config.out_dir is not None else None

    torch.manual_seed(config.seed)  # model init; a resumed run restores every random state below
    data_generator = torch.Generator().manual_seed(config.seed)
    if tokenizer is None and checkpoint is not None:
        tokenizer = checkpoint.build_tokenizer()
    if splits is None:
        splits = load_splits(config.data, tokenizer if tokenizer is not None else config.tokenizer, config.val_fraction)
    splits.check_fits(config.model.block_size, config.data)

    if model is None:
        model_config = config.model_config(splits.tokenizer.vocab_size)
        check_fits(training_bytes(model_config, config.batch_size), device, "training this model")
        model = GPT(model_config)
        if checkpoint is not None:
            if changed := checkpoint.gpt_config().differences(model_config):
                raise ConfigError(f"cannot resume: the checkpoint was trained with {', '.join(changed)}")
            ckpt_io.load_model_state(model, checkpoint.model_state, checkpoint.path)
    model.to(device)
    if checkpoint is not None and (saved := (checkpoint.config or {}).get("optimizer", "adamw")) != config.optimizer:
        raise ConfigError(f"cannot resume: the checkpoint was trained with optimizer={saved}, not {config.optimizer}")
    optimizer = make_optimizer(model, config, device)
    run = Run(
        config=config,
        device=device,
        tokenizer=splits.tokenizer,
        splits=splits,
        model=model,
        optimizer=optimizer,
        autocast=autocast_for(device, config.dtype),
        data_generator=data_generator,
        forward_model=compile_model(model, device) if config.compile else model,
        out_dir=out_dir,
    )
    if checkpoint is not None:
        run.restore(checkpoint)
    return run


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    model: nn.Module | None = None,
    tokenizer: Any = None,
    splits: TokenSplits | None = None,
    checkpoint: ckpt_io.Checkpoint | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train as `config` says and return the model, its tokenizer, the data splits and the metrics.

    Seeds torch's global generator with `config.seed` (model init and dropout draw from it); batches come
    from a private generator seeded the same way. The keywords other than `callbacks` are `prepare_run`'s.

    With an out_dir, the run holds an exclusive lock on it (a second run on the same folder is refused), a new run
    refuses a folder that holds one unless `overwrite=True`, and Ctrl-C finishes the step in progress, writes a
    checkpoint and raises `TrainingInterrupted` (a KeyboardInterrupt). A NaN or infinite loss raises
    `TrainingDiverged` without writing a checkpoint over the last good one.

    With `resume=True` the run continues from `out_dir/ckpt.pt`: weights, optimizer, step, metrics, tokenizer
    and every random state come from the checkpoint, so on CPU N steps + resume + N more steps match 2N steps in
    one go. The architecture must match the checkpoint's; `max_iters` may grow
    (keep `lr_decay_iters` fixed to continue on the same learning-rate schedule).
    """
    run = prepare_run(config, model=model, tokenizer=tokenizer, splits=splits, checkpoint=checkpoint, device=device)
    return run_training(run, callbacks)


def run_training(run: Run, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train a prepared `run` to its config's max_iters under the rules of `train`: the folder refused or locked,
    evaluations and checkpoints every eval_interval steps, Ctrl-C saved, divergence refused.

    A run of another kind of training (fine-tuning on conversations, `scratchlm.posttraining.sft`) is a `Run`
    whose `next_batches`, `evaluate` and `save` say how its batches, losses and checkpoints differ; the loop
    around `train_step` stays this one.
    """
    run.check_output()
    with folder_lock(run.out_dir) if run.out_dir is not None else contextlib.nullcontext():
        run.begin_output()
        _loop(run, callbacks)
    run.model.eval()
    return TrainResult(
        model=run.model,
        tokenizer=run.tokenizer,
        config=run.config,
        splits=run.splits,
        metrics=run.metrics,
        step_losses=run.step_losses,
        checkpoint_path=run.checkpoint_path,
    )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `train` with an out_dir: the step in progress was finished and checkpointed first."""


class _InterruptRequest:
    requested = False


@contextlib.contextmanager
def _deferred_interrupt():
    """Turn the first Ctrl-C (SIGINT) into a request that the loop honours between two steps, so the
    checkpoint it then writes is consistent and resumes exactly; a second Ctrl-C interrupts at once.
    Signal handlers can only be set from the main thread; elsewhere Ctrl-C behaves as usual."""
    request = _InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: put Python's default back afterwards
        previous = signal.default_int_handler

    def handler(signum, frame):
        request.requested = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


class _Throughput:
    """Training tokens per second over the steps since the last evaluation (evaluations excluded)."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.last = 0.0
        self.restart()

    def restart(self) -> None:
        self.start, self.steps = time.perf_counter(), 0

    def rate(self) -> float:
        return self.steps * self.tokens_per_step / max(time.perf_counter() - self.start, 1e-9)

    def close_window(self) -> float:
        if self.steps:
            self.last = self.rate()
        return self.last


def _loop(run: Run, callbacks: Sequence[Callback]) -> None:
    config = run.config
    t_start = time.perf_counter()
    throughput = _Throughput(config.tokens_per_step)
    pending: list[torch.Tensor] = []  # losses kept on the device; .item() every step would sync a GPU

    def flush_losses() -> None:
        """Move the pending losses to `run.step_losses` (one device sync), refusing non-finite ones."""
        losses = torch.stack(pending).tolist() if pending else []
        pending.clear()
        bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
        if bad is not None:
            diverged(run.step - len(losses) + bad + 1, losses[bad])
        run.step_losses.extend(losses)

    def diverged(step: int, loss: float) -> None:
        kept = "no checkpoint was written"
        if run.saved_step is not None:
            kept = f"the checkpoint of step {run.saved_step} in {run.out_dir} was kept"
        raise TrainingDiverged(
            f"training diverged: the loss was {loss} at step {step}; {kept}. Lower the learning rate "
            f"(now {config.learning_rate:g}) or the gradient clip"
        )

    def evaluate_and_save() -> None:
        flush_losses()
        losses = run.evaluate()
        if not all(math.isfinite(v) for v in losses.values()):
            diverged(run.step, losses["val"] if not math.isfinite(losses["val"]) else losses["train"])
        train_name, val_name = run.METRIC_NAMES
        record = {
            "step": run.step,
            train_name: losses["train"],
            val_name: losses["val"],
            "lr": lr_at(max(run.step - 1, 0), config),
            **({"tokens": run.step * config.tokens_per_step, "tokens_per_s": throughput.close_window()}
               if run.FIXED_BATCHES else {}),
            "elapsed_s": time.perf_counter() - t_start,
        }  # fmt: skip
        run.metrics.append(record)
        bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}", refresh=False)
        if run.out_dir is not None:
            metrics_path = run.out_dir / METRICS_FILENAME
            try:
                with open(metrics_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:
                raise OutputError(f"could not append to {metrics_path}: {e.strerror or e}") from e
            run.save()
        for callback in callbacks:
            callback.on_eval(run, record)
        throughput.restart()

    run.model.train()
    bar = tqdm(
        total=config.max_iters,
        initial=min(run.step, config.max_iters),
        disable=not config.progress,
        desc="training",
        unit="step",
        dynamic_ncols=True,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        # with somewhere to save, Ctrl-C ends the step, saves, then stops
        interrupt = stack.enter_context(_deferred_interrupt()) if run.out_dir is not None else None
        while True:
            just_resumed = run.step == run.start_step and run.resumed
            at_end = run.step >= config.max_iters or run.stop
            if (run.step % config.eval_interval == 0 or at_end) and not just_resumed:
                evaluate_and_save()
            if run.step >= config.max_iters or run.stop:
                break
            if interrupt is not None and interrupt.requested:
                flush_losses()
                run.save()
                raise TrainingInterrupted(
                    f"stopped at step {run.step}, checkpoint saved in {run.out_dir} (resume=True continues)"
                )
            result = train_step(
                run.forward_model,
                run.optimizer,
                run.next_batches(),
                lr=lr_at(run.step, config),
                grad_clip=config.grad_clip,
                autocast=run.autocast,
            )
            pending.append(result.loss)
            run.step += 1
            throughput.steps += 1
            bar.update(1)
            for callback in callbacks:
                callback.on_step(run, result)
            if run.step % 10 == 0:  # one sync every 10 steps: show the loss, and stop early if it is no number
                loss = pending[-1].item()
                if not math.isfinite(loss):
                    flush_losses()
                speed = {"tok_s": f"{throughput.rate():,.0f}"} if run.FIXED_BATCHES else {}
                bar.set_postfix(loss=f"{loss:.3f}", **speed, refresh=False)
