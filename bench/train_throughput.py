"""Training throughput of `scratchlm.train` against a straightforward PyTorch GPT, on the same data and steps.

The baseline is the same model (same sizes, GELU, biases, tied head, AdamW, clipping, schedule) written as a
typical tutorial writes it: one module per attention head with its own query/key/value Linears and an
explicit masked softmax, heads concatenated, and the default AdamW over all parameters. Both draw the same
batches. The two train side by side, one step each in turn, so that a shared machine's changing load hits
both alike; then `scratchlm.train` itself runs the same number of steps for its end-to-end figure.

    python bench/train_throughput.py              # the reference CPU recipe, 200 steps each
    python bench/train_throughput.py --steps 500 --threads 2

MFU is relative to the fp32 matmul throughput measured here (a large square GEMM), the most this
machine reaches; FLOPs per token are PaLM's 6N + 12·L·T·C.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.data import get_batch, load_text, split
from scratchlm.model import GPT, GPTConfig
from scratchlm.runtime import configure_threads
from scratchlm.tokenizers import CharTokenizer
from scratchlm.training import TrainConfig, lr_at, make_optimizer, train


class NaiveHead(nn.Module):
    def __init__(self, n_embd: int, head_size: int, block_size: int):
        super().__init__()
        self.query = nn.Linear(n_embd, head_size)
        self.key = nn.Linear(n_embd, head_size)
        self.value = nn.Linear(n_embd, head_size)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x):
        T = x.size(1)
        q, k, v = self.query(x), self.key(x), self.value(x)
        wei = q @ k.transpose(-2, -1) * k.size(-1) ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ v


class NaiveBlock(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.n_embd)
        self.heads = nn.ModuleList(NaiveHead(c.n_embd, c.head_size, c.block_size) for _ in range(c.n_head))
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.ln2 = nn.LayerNorm(c.n_embd)
        self.ffwd = nn.Sequential(
            nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(approximate="tanh"), nn.Linear(4 * c.n_embd, c.n_embd)
        )

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.proj(torch.cat([head(h) for head in self.heads], dim=-1))
        return x + self.ffwd(self.ln2(x))


class NaiveGPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.tok = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos = nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.Sequential(*[NaiveBlock(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.head.weight = self.tok.weight
        for module in self.modules():  # the same N(0, 0.02) init as ours, so both learn alike
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        logits = self.head(self.ln_f(self.blocks(x)))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_trainer(model: nn.Module, config: TrainConfig, fused: bool) -> tuple[torch.optim.Optimizer, object]:
    """The optimizer and a one-step function; ours uses the library's optimizer set-up (fused AdamW with
    decay groups), the baseline the default AdamW over all parameters, as a tutorial would."""
    if fused:
        optimizer = make_optimizer(model, config, torch.device("cpu"))
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
        )

    def step(i: int, x: torch.Tensor, y: torch.Tensor) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i, config)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return optimizer, step


@torch.no_grad()
def val_loss(model: nn.Module, val_data: torch.Tensor, config: TrainConfig) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 1)
    losses = [
        model(*get_batch(val_data, config.block_size, config.batch_size, generator))[1].item()
        for _ in range(config.eval_iters)
    ]
    model.train()
    return sum(losses) / len(losses)


def compare_step_times(config: TrainConfig, steps: int) -> dict[str, dict[str, float]]:
    """Train both models for `steps` steps, alternating one step of each, so that a change in machine load
    affects both alike; each sees the same sequence of batches."""
    text = load_text(config.data)
    tokenizer = CharTokenizer.from_text(text)
    train_data, val_data = split(torch.tensor(tokenizer.encode(text)), config.val_fraction)
    model_config = config.model_config(tokenizer.vocab_size)
    torch.manual_seed(config.seed)
    models = {"scratchlm": GPT(model_config), "naive": NaiveGPT(model_config)}
    steppers = {name: make_trainer(m, config, fused=name == "scratchlm")[1] for name, m in models.items()}
    generators = {name: torch.Generator().manual_seed(config.seed) for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(steps):
        for name in models:
            x, y = get_batch(train_data, config.block_size, config.batch_size, generators[name])
            start = time.perf_counter()
            steppers[name](i, x, y)
            times[name].append(time.perf_counter() - start)
    results = {}
    for name, ts in times.items():
        median = statistics.median(ts[len(ts) // 10 :])  # the first steps warm up allocator and caches
        results[name] = {
            "median_ms": 1000 * median,
            "tokens_per_s": config.tokens_per_step / median,
            "val_loss": val_loss(models[name], val_data, config),
        }
    return results


def measure_peak_flops(n: int = 1024, repeats: int = 10) -> float:
    """Best fp32 GEMM FLOP/s over a few n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps per implementation (default 200)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores, at most 8)")
    parser.add_argument("--peak-flops", type=float, help="peak FLOP/s for MFU (default: measured fp32 GEMM)")
    args = parser.parse_args()

    threads = configure_threads(args.threads)
    config = TrainConfig(eval_iters=20, progress=False, device="cpu")  # the reference CPU recipe
    peak = args.peak_flops or measure_peak_flops()
    print(
        f"{threads} threads, load average {os.getloadavg()[0]:.2f}, fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s; "
        f"recipe: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} dims, block {config.block_size}, "
        f"batch {config.batch_size}; {args.steps} steps each"
    )
    flops_per_token = GPT(config.model_config(65)).flops_per_token()

    results = compare_step_times(config, args.steps)
    print("\nstep by step, interleaved (median step time):")
    print(f"{'implementation':>15} {'ms/step':>8} {'tokens/s':>10} {'MFU':>7} {'val loss':>9}")
    for name, r in results.items():
        mfu = flops_per_token * r["tokens_per_s"] / peak
        print(f"{name:>15} {r['median_ms']:8.1f} {r['tokens_per_s']:10.0f} {mfu:7.1%} {r['val_loss']:9.4f}")
    ratio = results["naive"]["median_ms"] / results["scratchlm"]["median_ms"]
    print(f"scratchlm is {ratio:.2f}x the naive implementation's speed")

    start = time.perf_counter()
    result = train(dataclasses.replace(config, max_iters=args.steps, eval_interval=args.steps))
    wall = time.perf_counter() - start
    last = result.metrics[-1]
    print(
        f"\nscratchlm.train end to end: {last['tokens_per_s']:.0f} tokens/s while training "
        f"(MFU {flops_per_token * last['tokens_per_s'] / peak:.1%}), {wall:.1f} s wall for {args.steps} steps "
        f"incl. data loading and 2 evaluations; val loss {last['val_loss']:.4f}; load average now "
        f"{os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
