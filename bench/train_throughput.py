"""Training speed of scratchlm's step against nanoGPT's own model.py, on the same batches, one step each in turn.

    python bench/train_throughput.py --nanogpt ../nanoGPT            # the cpu preset's model, 1 thread, eager
    python bench/train_throughput.py --compile scratchlm             # scratchlm compiled, nanoGPT eager
    python bench/train_throughput.py --compile                       # both sides through torch.compile
    python bench/train_throughput.py --nanogpt-gelu exact            # nanoGPT's model.py exactly as it is
    python bench/train_throughput.py --threads 1 2 --steps 400
    python bench/train_throughput.py --busy-core                     # while another process holds one core
    python bench/train_throughput.py --profile                       # where each step's time goes

scratchlm's side is `train_step` on a `GPT` with `make_optimizer`, the calls `train` makes at every step. The
other side is nanoGPT's `GPT` from its `model.py` (found through --nanogpt; default: a `nanoGPT` checkout beside
this repository), built from its `GPTConfig`, with the AdamW of its `configure_optimizers` (fused only on CUDA) and
the step of its train.py: forward, backward, clip the gradient norm to 1, step, zero_grad(set_to_none=True). Its
MLP's exact GELU is replaced by the tanh form scratchlm (and GPT-2) use, the one change, so both compute the same
function. Both start from the same weights and take the same batches and learning rates, so their losses must
agree step by step to float32 rounding; the script prints the largest difference. With --nanogpt-gelu exact
nanoGPT keeps its exact GELU (its model.py unchanged, and in ATen cheaper than the tanh form): the losses then
differ by the two functions' difference, and only the times compare.

For each thread count the two alternate one step at a time, so a change in machine load hits both alike, and the
median step time of each is compared; then `scratchlm.train` runs the same number of steps end to end. With
--compile each side's forward runs through `torch.compile` (nanoGPT's train.py compiles by default; scratchlm's
`TrainConfig.compile`, which is `compile_model`), and the first step's time, which includes compiling, is
printed. `--compile scratchlm` compiles scratchlm's side alone: nanoGPT then runs eager, as its README's command
for a CPU does (`--compile=False`). MFU is
(6N + 12 L T C) FLOPs per token times tokens/s over the fastest fp32 matrix product measured before the steps (a
1024^3 product through MKL, PyTorch's default, and through oneDNN), measured again after them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from scratchlm.data import get_batch, load_splits
from scratchlm.model import GPT, GPTConfig
from scratchlm.training import (
    TrainConfig,
    autocast_for,
    compile_model,
    lr_at,
    make_optimizer,
    preset,
    train,
    train_step,
)

DEFAULT_NANOGPT = Path(__file__).resolve().parents[1].parent / "nanoGPT"

# ---- nanoGPT's own model.py, imported from a checkout ----------------------------------------------------------


def load_nanogpt(path: Path) -> ModuleType:
    """nanoGPT's `model.py` from `path` (a checkout, or the file itself), imported as a module of its own."""
    file = path / "model.py" if path.is_dir() else path
    if not file.is_file():
        sys.exit(f"no nanoGPT model.py at {file}: pass --nanogpt PATH to a checkout of github.com/karpathy/nanoGPT")
    spec = importlib.util.spec_from_file_location("nanogpt_model", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_models(nanogpt: ModuleType, config: TrainConfig, model_config: GPTConfig, nanogpt_gelu: str = "tanh"):
    """(scratchlm GPT, its optimizer, nanoGPT GPT, its optimizer), both models holding the same weights.

    nanoGPT is built from its GPTConfig and its AdamW from its `configure_optimizers` (fused only on CUDA). With
    nanogpt_gelu "tanh" its MLP's exact GELU is swapped for the tanh approximation GPT-2 and scratchlm use, so
    that both compute the same function and their losses can be checked step by step; "exact" leaves it."""
    cpu = torch.device("cpu")
    torch.manual_seed(config.seed)
    ours = GPT(model_config)
    m = model_config
    with contextlib.redirect_stdout(io.StringIO()):  # nanoGPT prints its parameter counts and AdamW choice
        nano = nanogpt.GPT(
            nanogpt.GPTConfig(
                block_size=m.block_size,
                vocab_size=m.vocab_size,
                n_layer=m.n_layer,
                n_head=m.n_head,
                n_embd=m.n_embd,
                dropout=m.dropout,
                bias=m.bias,
            )
        )
        if nanogpt_gelu == "tanh":
            for block in nano.transformer.h:
                block.mlp.gelu = torch.nn.GELU(approximate="tanh")
        nano.load_state_dict(ours.state_dict())
        nano_opt = nano.configure_optimizers(config.weight_decay, config.learning_rate, config.betas, "cpu")
    return ours, make_optimizer(ours, config, cpu), nano, nano_opt


def nano_step(model, optimizer: torch.optim.Optimizer, x, y, lr: float, grad_clip: float) -> torch.Tensor:
    """One iteration of nanoGPT's train.py loop with one micro-batch (its GradScaler is disabled in float32)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(x, y)
    loss = loss / 1  # train.py divides by gradient_accumulation_steps
    loss.backward()
    if grad_clip != 0.0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ---- measurements --------------------------------------------------------------------------------------------


def make_steppers(
    nanogpt: ModuleType, config: TrainConfig, model_config: GPTConfig, compile: str, nanogpt_gelu: str = "tanh"
):
    """{name: step(i, x, y) -> loss} for both implementations, starting from the same weights. compile "none",
    "scratchlm" or "both": whose forward runs compiled, scratchlm's through `compile_model` (what
    `TrainConfig.compile` does in `train`), nanoGPT's through `torch.compile` (what its train.py does by
    default); the optimizers stay eager on both sides. nanogpt_gelu: `make_models`."""
    ours, ours_opt, nano, nano_opt = make_models(nanogpt, config, model_config, nanogpt_gelu)
    cpu = torch.device("cpu")
    ours_fwd = compile_model(ours, cpu) if compile in ("scratchlm", "both") else ours
    nano_fwd = torch.compile(nano) if compile == "both" else nano
    autocast = autocast_for(cpu, config.dtype)

    def step_ours(i: int, x, y) -> torch.Tensor:
        lr = lr_at(i, config)
        return train_step(ours_fwd, ours_opt, [(x, y)], lr=lr, grad_clip=config.grad_clip, autocast=autocast).loss

    def step_nano(i: int, x, y) -> torch.Tensor:
        return nano_step(nano_fwd, nano_opt, x, y, lr_at(i, config), config.grad_clip)

    return {"scratchlm": step_ours, "nanoGPT": step_nano}


def interleaved(
    nanogpt: ModuleType, config: TrainConfig, splits, steps: int, compile: str, nanogpt_gelu: str
) -> dict[str, dict[str, float]]:
    """Median wall and CPU time per step of each implementation, stepping them in turn on the same batches, and
    the wall time of each one's first step (for a compiled side, that is where `torch.compile` compiles)."""
    model_config = config.model_config(splits.tokenizer.vocab_size)
    steppers = make_steppers(nanogpt, config, model_config, compile, nanogpt_gelu)
    generator = torch.Generator().manual_seed(config.seed)
    wall = {name: [] for name in steppers}
    cpu = {name: [] for name in steppers}
    losses = {name: [] for name in steppers}
    for i in range(steps):
        x, y = get_batch(splits.train, config.model.block_size, config.batch_size, generator)
        for name in sorted(steppers, reverse=i % 2 == 1):  # who goes first alternates too
            step = steppers[name]
            t0, c0 = time.perf_counter(), time.process_time()
            losses[name].append(step(i, x, y).item())
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    skip = max(1, steps // 10)  # the first steps warm up the allocator, oneDNN's kernel cache and the caches
    ours, nano = losses.values()
    gap = max(abs(a - b) for a, b in zip(ours, nano, strict=True))
    return {
        name: {
            "ms": 1000 * statistics.median(wall[name][skip:]),
            "cpu_ms": 1000 * statistics.median(cpu[name][skip:]),
            "first_s": wall[name][0],
            "max_loss_gap": gap,
        }
        for name in steppers
    }


def _best_time(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_peak_flops(n: int = 1024, repeats: int = 10) -> dict[str, float]:
    """fp32 FLOP/s of an n x n x n product: PyTorch's default (`torch.mm`, MKL) and oneDNN's matmul (the op
    `scratchlm.layers` uses), where this PyTorch has it."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    peaks = {"MKL": 2 * n**3 / _best_time(lambda: torch.mm(a, b), repeats)}
    onednn = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    if onednn is not None:
        peaks["oneDNN"] = 2 * n**3 / _best_time(lambda: onednn(a, b, None, "none", [], ""), repeats)
    return peaks


def round_arguments(parser: argparse.ArgumentParser, side: str) -> None:
    """--rounds, --calls and --threads, the flags of the benchmarks that time alternating rounds of calls."""
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds (default 20)")
    parser.add_argument("--calls", type=int, default=5, help=f"timed calls per round and {side} (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def cpu_preset_batch() -> tuple[TrainConfig, Any, tuple[torch.Tensor, torch.Tensor]]:
    """The `cpu` preset, Tiny Shakespeare's splits and one fixed batch of it (seed 0)."""
    config = preset("cpu", progress=False, device="cpu")
    splits = load_splits(config.data)
    batch = get_batch(splits.train, config.model.block_size, config.batch_size, torch.Generator().manual_seed(0))
    return config, splits, batch


def machine_lines() -> str:
    """The processor, torch, threads and load, and today's fp32 GEMM peaks: what a speed figure is printed beside."""
    peaks = measure_peak_flops()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
        f"{torch.get_num_threads()} thread(s); load average {os.getloadavg()[0]:.2f}\n"
        f"fp32 GEMM peak today: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
    )


@contextlib.contextmanager
def busy_core(enabled: bool):
    """A second process spinning on one core for the duration, or nothing."""
    if not enabled:
        yield
        return
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        burner.kill()
        burner.wait()


def end_to_end(config: TrainConfig, splits, steps: int) -> float:
    """Training tokens/s of `scratchlm.train` over `steps` steps (its own figure, evaluations excluded)."""
    result = train(config.replace(max_iters=steps, eval_interval=steps), splits=splits)
    return result.metrics[-1]["tokens_per_s"]


# what the profile's events are grouped into: each name is a node whose CPU total covers its children
CATEGORIES = {
    "linear layers": ("_OneDNNLinear", "_OneDNNLinearBackward", "aten::linear", "AddmmBackward0", "MmBackward0"),
    "attention (SDPA)": ("aten::scaled_dot_product_attention", "ScaledDotProductFlashAttentionForCpuBackward0"),
    "GELU": ("_SigmoidTanhGELU", "_SigmoidTanhGELUBackward", "aten::gelu", "GeluBackward0"),
    "LayerNorm": ("aten::layer_norm", "NativeLayerNormBackward0"),
    "AdamW step, zero_grad": ("Optimizer.step#AdamW.step", "Optimizer.zero_grad#AdamW.zero_grad"),
}


def profile_steps(nanogpt: ModuleType, config: TrainConfig, splits, steps: int, nanogpt_gelu: str) -> None:
    """Where each implementation's step spends its time: per-operator self CPU time under torch.profiler, the
    same grouped by layer type, and the split into forward, backward and optimizer (clip, step, zero_grad)."""
    from torch.profiler import ProfilerActivity, profile

    model_config = config.model_config(splits.tokenizer.vocab_size)
    steppers = make_steppers(nanogpt, config, model_config, "none", nanogpt_gelu)
    generator = torch.Generator().manual_seed(config.seed)
    batches = [get_batch(splits.train, model_config.block_size, config.batch_size, generator) for _ in range(steps)]
    warm = max(1, steps // 5)
    n = steps - warm
    grouped = {}
    for name, step in steppers.items():
        for i, (x, y) in enumerate(batches[:warm]):
            step(i, x, y)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i, (x, y) in enumerate(batches[warm:], start=warm):
                step(i, x, y)
        events = prof.key_averages()
        print(f"\n{name}: the operators with the most self CPU time over {n} steps under the profiler")
        print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
        total = {e.key: e.cpu_time_total / 1000 / n for e in events}
        grouped[name] = {group: sum(total.get(k, 0.0) for k in keys) for group, keys in CATEGORIES.items()}
        everything = sum(e.self_cpu_time_total for e in events) / 1000 / n
        grouped[name]["everything else"] = everything - sum(grouped[name].values())
        grouped[name]["total"] = everything
    print(f"\nCPU ms per step under the profiler, by layer type (forward + backward; mean of {n} steps):")
    print(f"{'':>22}" + "".join(f"{name:>20}" for name in grouped))
    for group in grouped["scratchlm"]:
        print(f"{group:>22}" + "".join(f"{g[group]:20.2f}" for g in grouped.values()))

    # forward / backward / optimizer: the same modules and optimizers, run phase by phase, interleaved
    ours, ours_opt, nano, nano_opt = make_models(nanogpt, config, model_config, nanogpt_gelu)
    models = {"scratchlm": (ours, ours_opt), "nanoGPT": (nano, nano_opt)}
    phases = {name: {"forward": [], "backward": [], "optimizer": []} for name in models}
    for i, (x, y) in enumerate(batches):
        for name, (model, optimizer) in models.items():
            t0 = time.perf_counter()
            _, loss = model(x, y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            if i >= warm:
                for phase, t in zip(phases[name], (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    phases[name][phase].append(t)
    print(f"\nmedian wall ms per phase, without the profiler ({n} steps, interleaved, same batches):")
    print(f"{'':>22}{'forward':>10}{'backward':>10}{'optimizer':>10}")
    for name, p in phases.items():
        print(f"{name:>22}" + "".join(f"{1000 * statistics.median(t):10.2f}" for t in p.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--nanogpt",
        type=Path,
        default=DEFAULT_NANOGPT,
        help=f"a nanoGPT checkout or its model.py (default: {DEFAULT_NANOGPT})",
    )
    parser.add_argument("--steps", type=int, default=150, help="training steps per implementation (default 150)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts to measure (default: 1)")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="both",
        default="none",
        choices=("none", "scratchlm", "both"),
        help="whose forward runs through torch.compile: both (the flag alone), scratchlm, or none (default)",
    )
    parser.add_argument(
        "--nanogpt-gelu",
        choices=("tanh", "exact"),
        default="tanh",
        help="nanoGPT's GELU: tanh, the function scratchlm computes (default), or exact, its model.py unchanged",
    )
    parser.add_argument("--busy-core", action="store_true", help="keep one core busy with a spinning process meanwhile")
    parser.add_argument("--no-train", action="store_true", help="skip the end-to-end `scratchlm.train` run")
    parser.add_argument("--profile", action="store_true", help="profile both steps (eager) instead of timing them")
    args = parser.parse_args()

    nanogpt = load_nanogpt(args.nanogpt)
    splits = load_splits("tinyshakespeare")
    config = TrainConfig.preset("cpu", progress=False, device="cpu", compile=args.compile != "none")
    m = config.model_config(splits.tokenizer.vocab_size)
    flops_per_token = GPT(m).flops_per_token()
    cpu_name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu_name = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    print(
        f"{cpu_name}, {os.cpu_count()} CPUs; torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}\n"
        f"nanoGPT: {args.nanogpt}; recipe: the cpu preset, {m.n_layer} layers, {m.n_head} heads, {m.n_embd} dims, "
        f"block {m.block_size}, batch {config.batch_size} ({config.tokens_per_step} tokens/step), "
        f"{flops_per_token / 1e6:.2f} MFLOP/token; "
        + {"none": "both sides eager", "scratchlm": "scratchlm compiled, nanoGPT eager", "both": "both compiled"}[
            args.compile
        ]
        + ("" if args.nanogpt_gelu == "tanh" else "; nanoGPT keeps its exact GELU (the losses differ)")
        + ("; one core kept busy by another process" if args.busy_core else "")
    )

    with busy_core(args.busy_core):
        for threads in args.threads:
            torch.set_num_threads(threads)
            if args.profile:
                print(f"\n==== {threads} thread(s) ====")
                profile_steps(nanogpt, config, splits, min(args.steps, 60), args.nanogpt_gelu)
                continue
            peaks = measure_peak_flops()
            peak = max(peaks.values())
            results = interleaved(nanogpt, config, splits, args.steps, args.compile, args.nanogpt_gelu)
            peaks_after = measure_peak_flops()
            print(
                f"\n{threads} thread(s): fp32 GEMM peak before/after "
                + ", ".join(f"{k} {peaks[k] / 1e9:.0f}/{peaks_after[k] / 1e9:.0f}" for k in peaks)
                + f" GFLOP/s; {args.steps} interleaved steps each, load average {os.getloadavg()[0]:.2f}"
            )
            print(f"{'implementation':>14} {'ms/step':>8} {'CPU ms':>7} {'tokens/s':>9} {'MFU':>6} {'1st step s':>10}")
            for name, r in results.items():
                tokens_per_s = config.tokens_per_step / (r["ms"] / 1000)
                mfu = flops_per_token * tokens_per_s / peak
                print(
                    f"{name:>14} {r['ms']:8.2f} {r['cpu_ms']:7.2f} {tokens_per_s:9,.0f} {mfu:6.1%} {r['first_s']:10.2f}"
                )
            ours, nano = results["scratchlm"], results["nanoGPT"]
            print(
                f"scratchlm's train_step is {nano['ms'] / ours['ms']:.2f}x nanoGPT's speed; "
                f"their losses differ by at most {ours['max_loss_gap']:.1e} over the {args.steps} steps"
            )
            if not args.no_train:
                tokens_per_s = end_to_end(config, splits, args.steps)
                print(
                    f"scratchlm.train end to end, {args.steps} steps: {tokens_per_s:,.0f} tokens/s "
                    f"(MFU {flops_per_token * tokens_per_s / peak:.1%}); load average {os.getloadavg()[0]:.2f}"
                )


if __name__ == "__main__":
    main()
