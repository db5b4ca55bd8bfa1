"""Training speed of scratchlm's step against a nanoGPT-equivalent one, on the same batches, one step each in turn.

    python bench/train_throughput.py                       # the reference CPU recipe, 1 and 2 threads
    python bench/train_throughput.py --threads 1 --steps 400
    python bench/train_throughput.py --busy-core           # the same while another process holds one core
    python bench/train_throughput.py --profile --threads 1 # where each step's time goes, operator by operator

scratchlm's side is `train_step` on a `GPT` with `make_optimizer`, the calls `train` makes at every step. The
other side is the same model written in this file the way nanoGPT writes it: one Linear for q, k and v,
`scaled_dot_product_attention(is_causal=True)`, tanh GELU, pre-LayerNorm blocks with biases, a tied head, GPT-2
initialisation, AdamW over nanoGPT's two decay groups (fused only on CUDA, so PyTorch's default AdamW on a CPU)
and nanoGPT's step: forward, backward, clip the gradient norm to 1, step, zero_grad(set_to_none=True). Both start
from the same weights and take the same batches and learning rates, so their losses must agree step by step (to
float32 rounding: the sums are added in different orders); the script prints the largest difference.

For each thread count the two alternate one step at a time, so a change in machine load hits both alike, and the
median step time of each is compared; then `scratchlm.train` runs the same number of steps end to end. MFU is
(6N + 12 L T C) FLOPs per token times tokens/s over the fastest fp32 matrix product measured here (a 1024^3
product through MKL, PyTorch's default, and through oneDNN; on AMD processors the second is about twice the first).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.data import get_batch, load_splits
from scratchlm.model import GPT, GPTConfig
from scratchlm.training import TrainConfig, autocast_for, lr_at, make_optimizer, train, train_step

# ---- the nanoGPT-equivalent: the same function as scratchlm's GPT, written as nanoGPT writes it --------------


class LayerNormWithBias(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class FusedQKVAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd)
        self.attn_dropout, self.resid_dropout = nn.Dropout(c.dropout), nn.Dropout(c.dropout)
        self.dropout = c.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, 2))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class FeedForward(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class PreLNBlock(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1, self.attn = LayerNormWithBias(c.n_embd), FusedQKVAttention(c)
        self.ln_2, self.mlp = LayerNormWithBias(c.n_embd), FeedForward(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoStyleGPT(nn.Module):
    """Parameter names as in GPT-2 (and scratchlm), so `load_state_dict` gives both the same weights."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(c.vocab_size, c.n_embd),
                wpe=nn.Embedding(c.block_size, c.n_embd),
                drop=nn.Dropout(c.dropout),
                h=nn.ModuleList(PreLNBlock(c) for _ in range(c.n_layer)),
                ln_f=LayerNormWithBias(c.n_embd),
            )
        )
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.n_layer))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = idx.size(1)
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def nano_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, **extra)


def nano_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, lr: float, grad_clip: float) -> torch.Tensor:
    """One iteration of nanoGPT's loop with one micro-batch (its GradScaler is disabled in float32: a no-op)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(x, y)
    loss = loss / 1  # nanoGPT divides by gradient_accumulation_steps
    loss.backward()
    if grad_clip != 0.0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ---- measurements --------------------------------------------------------------------------------------------


def make_steppers(config: TrainConfig, model_config: GPTConfig):
    """{name: step(i, x, y) -> loss} for both implementations, starting from the same weights."""
    cpu = torch.device("cpu")
    torch.manual_seed(config.seed)
    ours = GPT(model_config)
    nano = NanoStyleGPT(model_config)
    nano.load_state_dict(ours.state_dict())
    ours_opt, nano_opt = make_optimizer(ours, config, cpu), nano_optimizer(nano, config, cpu)
    autocast = autocast_for(cpu, config.dtype)

    def step_ours(i: int, x, y) -> torch.Tensor:
        lr = lr_at(i, config)
        return train_step(ours, ours_opt, [(x, y)], lr=lr, grad_clip=config.grad_clip, autocast=autocast).loss

    def step_nano(i: int, x, y) -> torch.Tensor:
        return nano_step(nano, nano_opt, x, y, lr_at(i, config), config.grad_clip)

    return {"scratchlm": step_ours, "nanoGPT-equivalent": step_nano}


def interleaved(config: TrainConfig, splits, steps: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU time per step of each implementation, stepping them in turn on the same batches."""
    steppers = make_steppers(config, config.model_config(splits.tokenizer.vocab_size))
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


def profile_steps(config: TrainConfig, splits, steps: int) -> None:
    """Where each implementation's step spends its time: per-operator self CPU time under torch.profiler, the
    same grouped by layer type, and the split into forward, backward and optimizer (clip, step, zero_grad)."""
    from torch.profiler import ProfilerActivity, profile

    model_config = config.model_config(splits.tokenizer.vocab_size)
    steppers = make_steppers(config, model_config)
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
    torch.manual_seed(config.seed)
    ours = GPT(model_config)
    nano = NanoStyleGPT(model_config)
    nano.load_state_dict(ours.state_dict())
    cpu = torch.device("cpu")
    models = {
        "scratchlm": (ours, make_optimizer(ours, config, cpu)),
        "nanoGPT-equivalent": (nano, nano_optimizer(nano, config, cpu)),
    }
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
    parser.add_argument("--steps", type=int, default=200, help="training steps per implementation (default 200)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default: 1 2)"
    )
    parser.add_argument("--busy-core", action="store_true", help="keep one core busy with a spinning process meanwhile")
    parser.add_argument("--no-train", action="store_true", help="skip the end-to-end `scratchlm.train` run")
    parser.add_argument("--profile", action="store_true", help="profile both steps instead of timing them")
    args = parser.parse_args()

    splits = load_splits("tinyshakespeare")
    config = TrainConfig().replace(progress=False, device="cpu", eval_iters=20)  # the reference CPU recipe
    m = config.model_config(splits.tokenizer.vocab_size)
    flops_per_token = GPT(m).flops_per_token()
    cpu_name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu_name = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    print(
        f"{cpu_name}, {os.cpu_count()} CPUs; torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}\n"
        f"recipe: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} dims, block {m.block_size}, batch "
        f"{config.batch_size} ({config.tokens_per_step} tokens/step), {flops_per_token / 1e6:.2f} MFLOP/token"
        + ("; one core kept busy by another process" if args.busy_core else "")
    )

    with busy_core(args.busy_core):
        for threads in args.threads:
            torch.set_num_threads(threads)
            if args.profile:
                print(f"\n==== {threads} thread(s) ====")
                profile_steps(config, splits, min(args.steps, 60))
                continue
            peaks = measure_peak_flops()
            peak = max(peaks.values())
            results = interleaved(config, splits, args.steps)
            print(
                f"\n{threads} thread(s): fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s ("
                + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items())
                + f"); {args.steps} interleaved steps each, load average {os.getloadavg()[0]:.2f}"
            )
            print(f"{'implementation':>20} {'ms/step':>8} {'CPU ms':>7} {'tokens/s':>9} {'MFU':>6}")
            for name, r in results.items():
                tokens_per_s = config.tokens_per_step / (r["ms"] / 1000)
                mfu = flops_per_token * tokens_per_s / peak
                print(f"{name:>20} {r['ms']:8.2f} {r['cpu_ms']:7.2f} {tokens_per_s:9,.0f} {mfu:6.1%}")
            ours, nano = results["scratchlm"], results["nanoGPT-equivalent"]
            print(
                f"scratchlm's train_step is {nano['ms'] / ours['ms']:.2f}x the nanoGPT-equivalent's speed; "
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
