"""What Muon costs per step against AdamW, on the `cpu` preset's model, one thread.

    python bench/optimizer_step.py                  # 20 rounds, fastest of 5 calls per round
    python bench/optimizer_step.py --rounds 40 --threads 2

Two figures for each optimizer as `make_optimizer` builds it (`TrainConfig(optimizer=...)` on the `cpu`
preset): `optimizer.step()` alone, on fixed gradients, and a whole `train_step` (forward, backward, clip, step)
on a fixed batch. Muon's step is `CombinedOptimizer(Muon, AdamW)`: five Newton–Schulz iterations on each of the
model's 16 hidden matrices (q, k, v of c_attn apart) plus the fused AdamW on the embeddings, norms and biases;
AdamW's is the fused AdamW on everything. The two alternate round by round (who goes first alternates too), so a
change in the machine's load hits both alike; each round times a few calls with `scratchlm.timing.seconds_per_call`
and the fastest call over all rounds is reported (noise only adds time). The day's fp32 GEMM peak (a 1024³ product
through MKL and oneDNN, as bench/train_throughput.py measures it) is printed beside the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_preset_batch, machine_lines, round_arguments

from scratchlm.model import GPT
from scratchlm.optim import hidden_matrices
from scratchlm.timing import seconds_per_call
from scratchlm.training import make_optimizer, train_step

CPU = torch.device("cpu")


def setups(config, vocab_size: int, batch) -> dict[str, dict]:
    """For each optimizer: a model (the same initial weights for both), its optimizer, and its gradients."""
    out = {}
    for name in ("adamw", "muon"):
        run = config.replace(optimizer=name)
        torch.manual_seed(0)
        model = GPT(run.model_config(vocab_size))
        optimizer = make_optimizer(model, run, CPU)
        train_step(model, optimizer, batch, lr=run.learning_rate, grad_clip=run.grad_clip)  # gradients, state
        out[name] = dict(model=model, optimizer=optimizer, config=run)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    round_arguments(parser, "side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config, splits, batch = cpu_preset_batch()
    sides = setups(config, splits.tokenizer.vocab_size, batch)
    model = sides["muon"]["model"]
    hidden = hidden_matrices(model)
    print(
        machine_lines() + "\n"
        f"model: the cpu preset ({config.model.n_layer} layers, {config.model.n_embd} dims, block "
        f"{config.model.block_size}, batch {config.batch_size}), {model.num_parameters():,} parameters, of which "
        f"{sum(h.param.numel() for h in hidden):,} in {len(hidden)} hidden matrices for Muon"
    )

    def optimizer_step(side):
        return lambda: side["optimizer"].step()

    def whole_step(side):
        c = side["config"]
        return lambda: train_step(side["model"], side["optimizer"], batch, lr=c.learning_rate, grad_clip=c.grad_clip)

    best = {(what, name): float("inf") for what in ("optimizer.step()", "train_step") for name in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for what, make in (("optimizer.step()", optimizer_step), ("train_step", whole_step)):
            for name in order:
                times = seconds_per_call(make(sides[name]), repeats=args.calls, warmup=1)
                best[(what, name)] = min(best[(what, name)], min(times))

    print(f"\nfastest of {args.rounds} x {args.calls} calls, alternating; ms")
    print(f"{'':>18}{'AdamW':>9}{'Muon':>9}{'Muon/AdamW':>12}")
    for what in ("optimizer.step()", "train_step"):
        a, m = best[(what, "adamw")], best[(what, "muon")]
        print(f"{what:>18}{1000 * a:9.3f}{1000 * m:9.3f}{m / a:11.2f}x")


if __name__ == "__main__":
    main()
