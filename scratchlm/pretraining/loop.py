"""A pretraining run: one process or many (DDP launched by torchrun), on prepared shards.

    result = pretrain(PretrainConfig(train=preset("cpu", data="runs/stdlib-bpe", out_dir="runs/pt")))
    torchrun --nproc_per_node=2 -m scratchlm pretrain --data runs/stdlib-bpe ...   # the same, on 2 processes

Each step: every rank reads its own micro-batches (`ShardLoader`), runs forward and backward on each under
autocast, and only the last micro-batch's backward all-reduces the gradients (`no_sync` on the others: one
all-reduce per step, not one per micro-batch); then every rank clips and steps the same optimizer on the same
averaged gradients, so the weights, which DDP broadcast from rank 0 once at construction, stay identical without
being sent again. The step's loss is averaged over ranks for the log. Every `eval_interval` steps all ranks score
their share of the validation split (all of it, or a fixed random sample of windows with its standard error:
`validation`), giving the val loss and bits per byte over exactly the tokens scored; rank 0 alone writes metrics.jsonl,
generates samples and saves the checkpoint, which holds the loader's place so that `resume` continues at the exact
token. The progress bar shows tokens/s and MFU (model FLOPs over a peak: `peak_flops_per_device`).

A rank that dies or hangs ends the run: the others fail in their next collective (at once when the connection
drops, after `ddp_timeout` seconds when a peer stops answering) and raise `PeerLost`, which says what happened
and where the last checkpoint is; torchrun then stops the remaining ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from scratchlm import checkpoint as ckpt_io
from scratchlm.errors import CheckpointError, ConfigError, OutputError, ScratchLMError
from scratchlm.files import atomic_write, folder_lock, remove_stale_temporaries
from scratchlm.generation import generate
from scratchlm.memory import check_fits, sampling_bytes, training_bytes
from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import CombinedOptimizer
from scratchlm.pretraining.config import PretrainConfig
from scratchlm.pretraining.loader import ShardLoader
from scratchlm.pretraining.shards import ShardIndex
from scratchlm.pretraining.validation import SplitScore, score_windows, token_byte_lengths, validation_windows
from scratchlm.runtime import get_device
from scratchlm.training import TrainingDiverged, autocast_for, compile_model, make_optimizer, train_step

METRICS_FILENAME = "metrics.jsonl"
LOG_EVERY = 10  # steps between progress-bar updates (each reads the loss back from the device)

# Dense bfloat16 tensor-core peaks (FLOP/s) from NVIDIA's datasheets, matched against torch's device name in order.
GPU_PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


class PeerLost(ScratchLMError):
    """A collective operation failed: another rank died, hung past the timeout, or the network failed."""


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in the run: rank, world size, the rank within its node, and whether this call
    started the process group (and so ends it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun started (it sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR...)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(device_kind: str, timeout_s: float) -> Distributed:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo otherwise), or return a
    single-process `Distributed` outside torchrun. `timeout_s` bounds every collective: a silent peer ends the
    run instead of hanging it."""
    if not launched_by_torchrun():
        return Distributed()
    world_size = int(os.environ["WORLD_SIZE"])
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    if world_size == 1:
        return Distributed(rank, 1, local_rank)
    if dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as e:  # a rendezvous failure has many types (DistNetworkError, RuntimeError, ValueError)
        raise PeerLost(f"rank {rank}: could not join the {backend} process group ({_first_line(e)})") from None
    return Distributed(rank, world_size, local_rank, owns_group=True)


def peak_flops_per_device(device: torch.device, dtype: torch.dtype | None) -> tuple[float | None, str]:
    """(FLOP/s, where the figure comes from) that MFU divides by, for one device.

    CUDA with bfloat16: the datasheet's dense bfloat16 peak of a known GPU (`GPU_PEAK_BF16`), else None. CPU: the
    float32 rate of a 1024 x 1024 x 1024 matrix product measured now, with this process's threads, through the
    kernel the GPT's layers use (a measured, attainable peak, not a datasheet one: MFU against it reads higher than
    against the chip's theoretical FLOP/s). Anything else: None (MFU not shown; `peak_flops` sets it).
    """
    if device.type == "cuda":
        if dtype != torch.bfloat16:
            return None, "no table entry for float32 on GPU"
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAK_BF16:
            if key in name:
                return peak, f"{key} datasheet bfloat16 dense peak"
        return None, f"{name} is not in the table"
    if device.type != "cpu":
        return None, f"no peak known for {device.type}"
    from scratchlm.layers import linear

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = math.inf
    with torch.no_grad():
        for _ in range(4):
            start = time.perf_counter()
            linear(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best, f"measured float32 GEMM, {torch.get_num_threads()} thread(s)"


@dataclass
class PretrainResult:
    """What `pretrain` returns (on every rank; only rank 0's metrics are complete with samples).

    metrics: one record per evaluation (step, tokens, train_loss: the mean training loss since the previous
    evaluation, val_loss with val_loss_se (0 when the whole split is scored), val_bpb, val_windows, val_tokens,
    val_bytes, lr, tokens_per_s, mfu, elapsed_s, samples). step_losses: every step's loss
    averaged over ranks.
    """

    model: nn.Module
    tokenizer: Any
    config: PretrainConfig
    index: ShardIndex
    metrics: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    checkpoint_path: Path | None = None
    world_size: int = 1


def _se_text(score: SplitScore) -> str:
    if score.whole_split:
        return " (the whole split)"
    return f" ± {score.loss_se:.4f} ({score.windows} of {score.total_windows} windows)"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _dropout_seed(seed: int, rank: int, step: int) -> int:
    """The seed of torch's generator at step `step` on `rank`: reseeding every step makes dropout depend only on
    (seed, rank, step), so a resumed run draws what the uninterrupted one would have, and ranks draw differently."""
    return (seed + 1_000_003 * (step + 1) + 7919 * rank) % 2**63


def pretrain(config: PretrainConfig, *, device: torch.device | None = None) -> PretrainResult:
    """Pretrain a GPT as `config` says, on one process or, under torchrun, with DDP across all of them.

    config.train.data: a folder made by `prepare`. With config.train.out_dir, rank 0 writes metrics.jsonl and a
    checkpoint at every evaluation (a new run refuses a folder holding one unless overwrite; resume=True continues
    from it, exactly: weights, optimizer, step, loader position). Under torchrun every rank must see the same
    files (one machine, or a shared filesystem across nodes).
    """
    device = device if device is not None else get_device(config.train.device)
    ddp = init_distributed(device.type, config.ddp_timeout)
    try:
        return _pretrain(config, device, ddp)
    except PeerLost:
        raise
    except (dist.DistError, RuntimeError) as e:
        if ddp.world_size == 1 or not _looks_like_peer_failure(e):
            raise
        raise PeerLost(
            f"rank {ddp.rank} of {ddp.world_size}: a collective operation failed, so another rank died, hung "
            f"longer than ddp_timeout={config.ddp_timeout:g} s, or the network failed ({_first_line(e)}). "
            f"{_last_checkpoint(config)}"
        ) from None
    finally:
        if ddp.owns_group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _looks_like_peer_failure(error: BaseException) -> bool:
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket"))


def _last_checkpoint(config: PretrainConfig) -> str:
    if config.train.out_dir is None:
        return "No checkpoint was being written (no out_dir)."
    path = Path(config.train.out_dir) / ckpt_io.FILENAME
    if not path.is_file():
        return f"No checkpoint had been written to {config.train.out_dir} yet."
    return f"The last checkpoint is {path}: --resume continues from it."


def check_sizes(config: PretrainConfig, model: GPTConfig, accumulation: int, device: torch.device) -> None:
    """Refuse absurd sizes before anything is allocated (`scratchlm.memory`, as `train` does): the model with its
    optimizer and activations plus the micro-batches of one step, and the samples of an evaluation."""
    c = config.train
    step_batches = 2 * accumulation * c.batch_size * model.block_size * 8  # every micro-batch's x and y, int64
    check_fits(training_bytes(model, c.batch_size) + step_batches, device, "pretraining this model")
    if config.samples:
        kept = config.samples * config.sample_tokens * 8  # their ids and text stay in the metrics
        needed = sampling_bytes(model, 1, config.sample_tokens + 1) + kept
        check_fits(needed, device, f"{config.samples:,} samples of {config.sample_tokens:,} tokens")


def _all_reduce_mean(t: torch.Tensor, ddp: Distributed) -> torch.Tensor:
    if ddp.world_size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)  # gloo has no AVG
        t = t / ddp.world_size
    return t


def _pretrain(config: PretrainConfig, device: torch.device, ddp: Distributed) -> PretrainResult:
    train_config = config.train
    if device.type == "cuda":
        if ddp.world_size > 1:
            device = torch.device("cuda", ddp.local_rank)
            torch.cuda.set_device(device)
        torch.set_float32_matmul_precision("high")
    index = ShardIndex.open(train_config.data, verify=False)
    accumulation = config.accumulation(ddp.world_size)
    tokens_per_step = config.tokens_per_step(ddp.world_size)
    model_config = train_config.model_config(index.vocab_size)
    block, batch = model_config.block_size, train_config.batch_size
    check_sizes(config, model_config, accumulation, device)  # before hashing shards or allocating anything
    if config.verify and ddp.is_main:
        index = ShardIndex.open(train_config.data, verify=True)
    tokenizer = index.tokenizer()

    out_dir = Path(train_config.out_dir) if train_config.out_dir is not None else None
    checkpoint = None
    if train_config.resume:
        checkpoint = ckpt_io.load(out_dir / ckpt_io.FILENAME, device="cpu")
    elif out_dir is not None and ddp.is_main:
        existing = [p for p in (out_dir / ckpt_io.FILENAME, out_dir / METRICS_FILENAME) if p.exists()]
        if existing and not train_config.overwrite:
            raise OutputError(
                f"{out_dir} already holds a run ({', '.join(p.name for p in existing)}): resume it (--resume), "
                "start over (--overwrite) or choose another --out"
            )

    torch.manual_seed(train_config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = GPT(model_config)
    loader = ShardLoader(
        index, "train", block, batch, rank=ddp.rank, world_size=ddp.world_size, seed=train_config.seed,
        shuffle=config.shuffle, device=device,
    )  # fmt: skip
    metrics: list[dict[str, Any]] = []
    step_losses: list[float] = []
    step = 0
    if checkpoint is not None:
        corpus = checkpoint.extra.get("corpus_sha256")
        if corpus is not None and corpus != index.index["source"]["sha256"]:
            raise CheckpointError(
                f"cannot resume: {checkpoint.path} was trained on another corpus than {index.folder} holds "
                f"({index.index['source']['name']!r}); resume with the --data it was trained on, or start a new run "
                "in another --out"
            )
        if changed := checkpoint.gpt_config().differences(model_config):
            raise ConfigError(f"cannot resume: the checkpoint was trained with {', '.join(changed)}")
        if checkpoint.tokenizer_state is not None and checkpoint.tokenizer_state != tokenizer.to_dict():
            raise CheckpointError(
                f"cannot resume: {checkpoint.path} was trained with another tokenizer than {index.folder}'s"
            )
        ckpt_io.load_model_state(model, checkpoint.model_state, checkpoint.path)
        if "loader" not in checkpoint.extra:
            raise CheckpointError(f"{checkpoint.path} holds no loader position: it was not written by pretrain")
        loader.load_state_dict(checkpoint.extra["loader"])
        step = checkpoint.step
        metrics = list(checkpoint.metrics)
        step_losses = list(checkpoint.extra.get("step_losses", []))
    model.to(device)
    optimizer = make_optimizer(model, train_config, device)
    if checkpoint is not None and checkpoint.optimizer_state is not None:
        try:
            optimizer.load_state_dict(checkpoint.optimizer_state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint.path}: its optimizer state does not fit this run ({e})") from None
    autocast = autocast_for(device, train_config.dtype)
    amp_dtype = torch.bfloat16 if isinstance(autocast, torch.autocast) else None

    wrapped: nn.Module = model
    if ddp.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward_model = compile_model(wrapped, device) if train_config.compile else wrapped

    peak, peak_source = (config.peak_flops, "given") if config.peak_flops else (None, "")
    if peak is None and ddp.is_main:
        peak, peak_source = peak_flops_per_device(device, amp_dtype)
    flops_per_token = model.flops_per_token()

    lock = folder_lock(out_dir) if out_dir is not None and ddp.is_main else contextlib.nullcontext()
    if out_dir is not None and ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    with lock:
        if out_dir is not None and ddp.is_main:
            remove_stale_temporaries(out_dir)
            with atomic_write(out_dir / METRICS_FILENAME, "w", encoding="utf-8") as f:  # a resumed run keeps its own
                f.writelines(json.dumps(r) + "\n" for r in metrics)
            if checkpoint is None:
                (out_dir / ckpt_io.FILENAME).unlink(missing_ok=True)
        run = _Run(config, device, ddp, index, tokenizer, model, forward_model, wrapped, optimizer, autocast, loader,
                   out_dir, accumulation, tokens_per_step, flops_per_token, peak, peak_source, metrics, step_losses,
                   step, resumed=checkpoint is not None)  # fmt: skip
        run.loop()
    model.eval()
    return PretrainResult(model, tokenizer, config, index, run.metrics, run.step_losses,
                          run.checkpoint_path if out_dir is not None else None, ddp.world_size)  # fmt: skip


@dataclass
class _Run:
    config: PretrainConfig
    device: torch.device
    ddp: Distributed
    index: ShardIndex
    tokenizer: Any
    model: nn.Module
    forward_model: nn.Module
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer | CombinedOptimizer
    autocast: contextlib.AbstractContextManager
    loader: ShardLoader
    out_dir: Path | None
    accumulation: int
    tokens_per_step: int
    flops_per_token: int
    peak: float | None
    peak_source: str
    metrics: list[dict[str, Any]]
    step_losses: list[float]
    step: int
    resumed: bool
    byte_lengths: Any = None  # UTF-8 bytes per token id (`token_byte_lengths`), for bits per byte

    def __post_init__(self) -> None:
        self.byte_lengths = token_byte_lengths(self.tokenizer, self.index.vocab_size)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / ckpt_io.FILENAME if self.out_dir is not None else None

    def mfu(self, tokens_per_s: float) -> float | None:
        if not self.peak:
            return None
        return self.flops_per_token * tokens_per_s / (self.peak * self.ddp.world_size)

    def train_one_step(self) -> torch.Tensor:
        c = self.config.train
        torch.manual_seed(_dropout_seed(c.seed, self.ddp.rank, self.step))
        batches = [self.loader.next_batch() for _ in range(self.accumulation)]
        lr = self.config.lr(self.step)
        no_sync = self.wrapped.no_sync if self.ddp.world_size > 1 else None  # one all-reduce per step
        result = train_step(
            self.forward_model, self.optimizer, batches, lr=lr, grad_clip=c.grad_clip, autocast=self.autocast,
            no_sync=no_sync,
        )  # fmt: skip
        return _all_reduce_mean(result.loss.detach().float(), self.ddp)

    def validate(self) -> SplitScore:
        """The validation split scored as `scratchlm.pretraining.validation` says: all of it when it holds at most
        `eval_iters` global batches of windows, else a fixed random sample of that many windows (drawn from the
        seed, the same at every evaluation and for any number of ranks with the same global batch)."""
        c = self.config.train
        loader = ShardLoader(self.index, "val", c.model.block_size, c.batch_size, shuffle=False)
        windows = validation_windows(loader.windows, c.eval_iters * c.batch_size * self.ddp.world_size, c.seed)
        return score_windows(self.model, loader, windows, self.byte_lengths, self.autocast, rank=self.ddp.rank,
                             world_size=self.ddp.world_size)  # fmt: skip

    def samples(self) -> list[str]:
        start = torch.tensor([self.index.separator], dtype=torch.long)
        out = []
        for i in range(self.config.samples):
            ids = generate(self.model, start, self.config.sample_tokens, seed=self.config.train.seed + i, top_k=200)
            out.append(self.tokenizer.decode(ids[0, len(self.index.separator) :].tolist()))
        return out

    def evaluate_and_save(self, pending: list[torch.Tensor], tokens_per_s: float, t_start: float) -> None:
        losses = torch.stack(pending).tolist() if pending else []
        pending.clear()
        self.step_losses.extend(losses)
        score = self.validate()
        val = score.loss
        bad = [v for v in [*losses, val] if not math.isfinite(v)]
        if bad:
            kept = f"the checkpoint in {self.out_dir} was kept" if self.out_dir else "no checkpoint was written"
            raise TrainingDiverged(f"training diverged: a loss of {bad[0]} by step {self.step}; {kept}")
        record = {
            "step": self.step,
            "tokens": self.step * self.tokens_per_step,
            "train_loss": sum(losses) / len(losses) if losses else None,
            "val_loss": val,
            "val_loss_se": score.loss_se,
            "val_bpb": score.bits_per_byte,
            "val_windows": score.windows,
            "val_tokens": score.tokens,
            "val_bytes": score.bytes,
            "lr": self.config.lr(max(self.step - 1, 0)),
            "tokens_per_s": tokens_per_s,
            "mfu": self.mfu(tokens_per_s) if tokens_per_s else None,
            "elapsed_s": time.perf_counter() - t_start,
        }
        if not self.ddp.is_main:
            self.metrics.append(record)
            return
        record["samples"] = self.samples()
        self.metrics.append(record)
        if self.config.train.progress or self.config.samples:
            tqdm.write(
                f"step {self.step}: val loss {val:.4f}{_se_text(score)}, {record['val_bpb']:.3f} bits/byte"
                + "".join(f"\n  sample: {s!r}" for s in record["samples"])
            )
        if self.out_dir is not None:
            with open(self.out_dir / METRICS_FILENAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            ckpt_io.save(
                self.checkpoint_path, self.model, self.optimizer, self.config.train.to_dict(), self.tokenizer,
                self.step, metrics=self.metrics,
                extra={"loader": self.loader.state_dict(), "pretrain": self.config.to_dict(),
                       "step_losses": list(self.step_losses), "world_size": self.ddp.world_size,
                       "corpus_sha256": self.index.index["source"]["sha256"]},
            )  # fmt: skip

    def loop(self) -> None:
        c = self.config.train
        self.model.train()
        bar = tqdm(total=c.max_iters, initial=min(self.step, c.max_iters), desc="pretraining", unit="step",
                   disable=not (c.progress and self.ddp.is_main), dynamic_ncols=True)  # fmt: skip
        pending: list[torch.Tensor] = []
        t_start = time.perf_counter()
        window_start, window_steps = time.perf_counter(), 0
        last_rate = 0.0
        log_start, log_steps = time.perf_counter(), 0
        just_resumed = self.resumed
        with contextlib.closing(bar):
            while True:
                if (self.step % c.eval_interval == 0 or self.step >= c.max_iters) and not just_resumed:
                    if window_steps:
                        last_rate = window_steps * self.tokens_per_step / (time.perf_counter() - window_start)
                    self.evaluate_and_save(pending, last_rate, t_start)
                    window_start, window_steps = time.perf_counter(), 0
                    log_start, log_steps = time.perf_counter(), 0
                just_resumed = False
                if self.step >= c.max_iters:
                    break
                pending.append(self.train_one_step())
                self.step += 1
                window_steps += 1
                log_steps += 1
                bar.update(1)
                if log_steps == LOG_EVERY and not bar.disable:
                    rate = log_steps * self.tokens_per_step / (time.perf_counter() - log_start)
                    mfu = self.mfu(rate)
                    bar.set_postfix(loss=f"{pending[-1].item():.3f}", tok_s=f"{rate:,.0f}",
                                    mfu=f"{mfu:.1%}" if mfu is not None else "n/a", refresh=False)  # fmt: skip
                    log_start, log_steps = time.perf_counter(), 0
