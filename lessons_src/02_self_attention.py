# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-id,-colab,-outputId,-executionInfo
#     notebook_metadata_filter: kernelspec,accelerator,colab.gpuType,-jupytext.text_representation.jupytext_version,-language_info.version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Self-attention
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/02_self_attention.ipynb)
#
# The bigram model of lesson 01 predicts the next character from the current one alone: whatever came
# before is invisible to it. In this lesson each position gets to look back at every earlier position and
# decide, from the data, which of them matter. That mechanism is **self-attention**, the heart of every
# transformer.
#
# **What you will build**
#
# 1. the "average of the past" in three equivalent forms (loops, a matrix product, a masked softmax);
# 2. one causal attention head, step by step, on a `(B, T, C)` batch, with its weights on display;
# 3. a measurement of why the scores are divided by $\sqrt{\text{head size}}$;
# 4. your own head class, checked against `scratchlm.attention.Head`;
# 5. a single-head language model trained against the bigram baseline at equal compute (two seeds each), with
#    the library's training loop, and a look at what its head attends to in real Shakespeare.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab, install the course library from its repository
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "scratchlm @ git+https://github.com/scratchlm/scratchlm"]
    )

import torch

from scratchlm.runtime import configure_threads, get_device, pick, run_mode, set_seed

device = get_device()
configure_threads()
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %% [markdown]
# The rest of the imports, and the data of lesson 01: Tiny Shakespeare, its character tokenizer and the
# 90/10 train/validation split, all from the library.

# %%
import math
import statistics
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.attention import Head
from scratchlm.bigram import BigramLanguageModel
from scratchlm.data import get_batch, load_splits
from scratchlm.generation import generate
from scratchlm.timing import seconds_per_call
from scratchlm.tokenizers import visible

SEED = 1337
gen = set_seed(SEED)

splits = load_splits("tinyshakespeare")  # lesson 01's steps: read, character tokenizer, encode, 90/10 split
tokenizer, train_data, val_data = splits.tokenizer, splits.train, splits.val
print(
    f"{len(train_data) + len(val_data):,} characters, vocabulary of {tokenizer.vocab_size}, "
    f"{len(train_data):,} train / {len(val_data):,} val tokens"
)

# %% [markdown]
# ## 1 · The average of the past, three ways
#
# Take a batch of `B` sequences of `T` positions, each position a vector of `C` numbers. The simplest way
# to let position `t` know about its past is to replace it by the mean of positions `0..t`. It throws away
# the order and treats every earlier token alike, but it is a start, and its vectorised form is the
# skeleton of attention.
#
# **Way 1: loops.** Exactly what the sentence above says.

# %%
B, T, C = 2, 8, 4
x = torch.randn(B, T, C, generator=gen)

avg_loops = torch.zeros(B, T, C)
for b in range(B):
    for t in range(T):
        avg_loops[b, t] = x[b, : t + 1].mean(dim=0)  # mean over positions 0..t
print(x[0, :3])
print(avg_loops[0, :3])

# %% [markdown]
# Row 0 of the average equals row 0 of `x`; row 1 is the mean of rows 0 and 1; row 2 the mean of rows 0–2.
#
# **Way 2: one matrix product.** A lower-triangular matrix of ones, each row divided by its sum, holds the
# averaging weights: row `t` has `1/(t+1)` in its first `t+1` columns. Multiplying it into `x` averages every
# prefix of every sequence at once.

# %%
tril = torch.tril(torch.ones(T, T))
w_matmul = tril / tril.sum(dim=1, keepdim=True)  # each row sums to 1
avg_matmul = w_matmul @ x  # (T, T) @ (B, T, C) -> (B, T, C): the matrix is broadcast over the batch
torch.testing.assert_close(avg_matmul, avg_loops)
print(w_matmul[:5, :5])

# %% [markdown]
# The weights are 1, then ½ ½, then ⅓ ⅓ ⅓, …, and zero above the diagonal, where the future would be.
#
# **Way 3: a masked softmax.** Start from a matrix of scores, all zero; set the scores above the diagonal
# to −∞; take a softmax along each row. `exp(−∞) = 0` removes the future and equal scores share the rest
# equally, so this builds the same matrix.

# %%
scores = torch.zeros(T, T)
scores = scores.masked_fill(tril == 0, float("-inf"))
w_softmax = F.softmax(scores, dim=-1)
avg_softmax = w_softmax @ x
torch.testing.assert_close(w_softmax, w_matmul)
torch.testing.assert_close(avg_softmax, avg_loops)
print(scores[:4, :4])

# %% [markdown]
# All three agree. The third form is the one to remember: the zeros are placeholders. Fill them with
# *scores that depend on the tokens* and the same mask-then-softmax turns them into causal weights that
# favour some past positions over others. That is self-attention in one sentence.
#
# ## 2 · Queries, keys and values
#
# Which earlier characters should position `t` listen to? It depends on what sits at `t` and at each
# earlier position: in the middle of a word the last few letters matter most; after a newline, whether the
# previous line was a speaker's name. So each position computes three vectors from its own embedding,
# each with a learned linear map:
#
# - a **query** `q`: what this position is looking for;
# - a **key** `k`: what this position offers to others who are looking;
# - a **value** `v`: what it hands over when chosen.
#
# The score of position `t` for position `s` is the dot product `q_t · k_s`: large when what `t` looks for
# matches what `s` offers. Let us build one head on a random batch of `B = 4` sequences, `T = 8` positions,
# `C = 32` channels, with a head size of 16.

# %%
torch.manual_seed(SEED)
B, T, C = 4, 8, 32
head_size = 16
x = torch.randn(B, T, C)

query = nn.Linear(C, head_size, bias=False)
key = nn.Linear(C, head_size, bias=False)
value = nn.Linear(C, head_size, bias=False)
q, k, v = query(x), key(x), value(x)  # each (B, T, head_size)
print("x", tuple(x.shape), "-> q, k, v", tuple(q.shape))

# %% [markdown]
# Each of the 4 × 8 positions now has a 16-number query, key and value. One batched matrix product gives
# every query's dot product with every key of its own sequence:

# %%
att_scores = q @ k.transpose(-2, -1) / math.sqrt(head_size)  # (B, T, hs) @ (B, hs, T) -> (B, T, T)
causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
att_weights = F.softmax(att_scores.masked_fill(~causal, float("-inf")), dim=-1)  # (B, T, T)
out = att_weights @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)
print("scores", tuple(att_scores.shape), "weights", tuple(att_weights.shape), "out", tuple(out.shape))
print(att_weights[0].detach())

# %% [markdown]
# These are the three lines of way 3 with data-dependent scores in place of the zeros (the division by
# √16 is explained in the next section). The upper triangle is still zero and each row still sums to one,
# but within a row the weights are no longer equal.

# %%
assert torch.all(att_weights.triu(diagonal=1) == 0), "no weight on the future"
torch.testing.assert_close(att_weights.sum(dim=-1), torch.ones(B, T))
assert not torch.allclose(att_weights[0], att_weights[1]), "different sequences, different weights"

# %% [markdown]
# Averaging gave every sequence the same matrix; attention computes a fresh one for each sequence, because
# the weights are a function of the data.
#
# ## 3 · Why divide by √(head size)?
#
# If the entries of `q` and `k` are independent with mean 0 and variance 1, each product `q_i k_i` has
# variance 1, and their sum over `head_size` terms has variance `head_size`. Let us measure it on random
# unit-variance vectors for head sizes from 2 to 512.

# %%
head_sizes = [2, 4, 8, 16, 32, 64, 128, 256, 512]
n_pairs = 10_000
g = torch.Generator().manual_seed(SEED)
var_raw, var_scaled = [], []
for d in head_sizes:
    qd, kd = torch.randn(n_pairs, d, generator=g), torch.randn(n_pairs, d, generator=g)
    dots = (qd * kd).sum(dim=-1)  # n_pairs scores q·k
    var_raw.append(dots.var().item())
    var_scaled.append((dots / math.sqrt(d)).var().item())

print(f"{'head size':>9} | {'var(q·k)':>9} | {'var(q·k/√d)':>11}")
for d, vr, vs in zip(head_sizes, var_raw, var_scaled, strict=True):
    print(f"{d:>9} | {vr:>9.1f} | {vs:>11.3f}")
for d, vr, vs in zip(head_sizes, var_raw, var_scaled, strict=True):
    assert abs(vr / d - 1) < 0.1 and abs(vs - 1) < 0.1, (d, vr, vs)

# %% [markdown]
# The raw variance tracks the head size (within sampling noise); divided by √d it stays at 1 for every size.
#
# Why should the softmax care? Softmax is sensitive to the *spread* of its inputs: scores with a standard
# deviation of 20 differ by so much that `exp` hands nearly all the weight to the largest one. Below, each
# query scores 32 random keys (one block's worth) and we record the largest softmax weight, averaged over
# 500 queries: 1/32 would be a uniform mix, 1.0 a one-hot pick.

# %%
n_queries, n_keys = 500, 32
max_w_raw, max_w_scaled = [], []
for d in head_sizes:
    qd = torch.randn(n_queries, 1, d, generator=g)
    kd = torch.randn(n_queries, n_keys, d, generator=g)
    s = (qd * kd).sum(dim=-1)  # (n_queries, n_keys)
    max_w_raw.append(F.softmax(s, dim=-1).max(dim=-1).values.mean().item())
    max_w_scaled.append(F.softmax(s / math.sqrt(d), dim=-1).max(dim=-1).values.mean().item())

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
ax1.loglog(head_sizes, var_raw, "o-", label="q·k")
ax1.loglog(head_sizes, var_scaled, "s-", label="q·k / √d")
ax1.loglog(head_sizes, head_sizes, "k:", lw=1, label="y = d")
ax1.set(xlabel="head size d", ylabel="variance of the score", title="Score variance grows like d")
ax1.set_xticks(head_sizes, [str(d) for d in head_sizes])
ax1.legend()
ax2.semilogx(head_sizes, max_w_raw, "o-", label="softmax(q·k)")
ax2.semilogx(head_sizes, max_w_scaled, "s-", label="softmax(q·k / √d)")
ax2.axhline(1.0, color="k", ls=":", lw=1)
ax2.axhline(1 / n_keys, color="k", ls=":", lw=1)
ax2.text(head_sizes[0], 1 / n_keys + 0.02, "uniform (1/32)", fontsize=9)
ax2.text(head_sizes[0], 0.95, "one-hot", fontsize=9, va="top")
ax2.set(
    xlabel="head size d",
    ylabel="mean of the largest weight",
    ylim=(0, 1.05),
    title=f"Softmax over {n_keys} keys saturates without scaling",
)
ax2.set_xticks(head_sizes, [str(d) for d in head_sizes])
ax2.legend(loc="center right")
plt.show()
assert max_w_raw[-1] > 0.8 and max_w_scaled[-1] < 0.5

# %% [markdown]
# Left: the unscaled variance follows the line `y = d`; the scaled one is flat at 1. Right: without scaling
# the softmax turns nearly one-hot as the head grows (at d = 512 the top key takes over nine tenths of the
# weight on average), while the scaled scores keep the same, soft distribution at every size. A saturated
# softmax is also a bad place to start training: the derivative of output `p_i` with respect to score `s_j`
# is `p_i (δ_ij − p_j)`, which vanishes when one `p` is 1 and the others are 0, so almost no gradient reaches
# the queries and keys. Dividing by √d keeps the scores at unit variance at initialisation, whatever the
# head size.
#
# ## 4 · The causal mask
#
# A language model predicts token `t + 1` from tokens `0..t`. If position `t` could attend to `t + 1`, it
# would simply copy the answer, and the model would learn nothing useful. The mask forbids it. Here are the
# softmax of our head's scores for the first sequence without the mask, the mask, and the weights with it.

# %%
unmasked = F.softmax(att_scores[0], dim=-1).detach()
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
panels = [
    (unmasked, "softmax without the mask"),
    (causal.float(), "causal mask (1 = may attend)"),
    (att_weights[0].detach(), "softmax with the mask"),
]
for ax, (matrix, title) in zip(axes, panels, strict=True):
    im = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set(title=title, xlabel="key position s (attended to)", ylabel="query position t")
fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
plt.show()

# %% [markdown]
# Without the mask every row spreads its weight over all 8 positions, future included. With it, row `t`
# redistributes that weight over columns `0..t` only: row 0 can attend only to itself (weight 1).
#
# The mask has a testable consequence: changing the future must not change the output at earlier positions.

# %%
x_changed = x.clone()
x_changed[:, 5:] = torch.randn(B, T - 5, C)  # new tokens at positions 5, 6, 7
scores_changed = query(x_changed) @ key(x_changed).transpose(-2, -1) / math.sqrt(head_size)
weights_changed = F.softmax(scores_changed.masked_fill(~causal, float("-inf")), dim=-1)
out_changed = weights_changed @ value(x_changed)
torch.testing.assert_close(out_changed[:, :5], out[:, :5])  # positions 0..4 did not notice
assert not torch.allclose(out_changed[:, 5:], out[:, 5:])

# %% [markdown]
# ## 5 · Our head as a module, checked against `scratchlm`
#
# Collect the steps into a module. The mask is a *buffer*: it moves with the module to the GPU and is
# saved in its `state_dict`, but the optimizer never touches it. It is built once at the largest length the
# head will see (`block_size`) and sliced to the actual `T`.


# %%
class CausalHead(nn.Module):
    """One causal self-attention head: `x` (B, T, n_embd) -> (out (B, T, head_size), weights (B, T, T))."""

    def __init__(self, n_embd: int, head_size: int, block_size: int):
        super().__init__()
        self.head_size = head_size
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("causal_mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = x.shape[1]
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)
        scores = scores.masked_fill(~self.causal_mask[:T, :T], float("-inf"))
        weights = F.softmax(scores, dim=-1)
        return weights @ v, weights


# %% [markdown]
# Give it the three linear maps of section 2 and it must reproduce the step-by-step result exactly.

# %%
ours = CausalHead(C, head_size, block_size=T)
ours.query, ours.key, ours.value = query, key, value
out_ours, weights_ours = ours(x)
torch.testing.assert_close(out_ours, out)
torch.testing.assert_close(weights_ours, att_weights)
print(list(ours.state_dict()))

# %% [markdown]
# The library's `Head` uses the same names for its parameters and its mask buffer, so our `state_dict`
# loads into it as is (`load_state_dict` is strict: a missing or extra name would raise). Same weights, same
# input: the outputs and attention weights must match.

# %%
lib_head = Head(n_embd=C, head_size=head_size, block_size=T)
lib_head.load_state_dict(ours.state_dict())
out_lib, weights_lib = lib_head(x, return_weights=True)
torch.testing.assert_close(out_lib, out_ours)
torch.testing.assert_close(weights_lib, weights_ours)

# %% [markdown]
# They agree, so from here on we use `scratchlm.attention.Head`. (It also has optional dropout on the
# weights, and it refuses sequences longer than its `block_size` with a clear error.)
#
# ## 6 · A single-head language model against the bigram baseline
#
# The model: embed each token, add an embedding of its position (attention by itself is blind to order: a
# weighted sum does not care where its terms came from), run one head, and map each position's output to
# logits over the vocabulary. All its sizes live in one config.


# %%
@dataclass(frozen=True)
class SingleHeadConfig:
    vocab_size: int
    block_size: int = 32  # longest context; also the number of learned positions
    n_embd: int = 32
    head_size: int = 32


class SingleHeadLanguageModel(nn.Module):
    """Token + position embedding -> one causal `Head` -> linear map to next-token logits."""

    def __init__(self, config: SingleHeadConfig):
        super().__init__()
        self.config = config  # `generate` reads config.block_size to crop the context
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.head = Head(config.n_embd, config.head_size, config.block_size)
        self.lm_head = nn.Linear(config.head_size, config.vocab_size)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """`idx` (B, T) -> (B, T, n_embd): what the head sees."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        return self.token_embedding(idx) + self.position_embedding(positions)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`idx` (B, T) -> logits (B, T, vocab) and, given `targets` (B, T), the mean cross-entropy."""
        logits = self.lm_head(self.head(self.embed(idx)))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# %% [markdown]
# ### Training with the library
#
# Lesson 01 wrote the optimisation loop out in full: draw a batch, compute the loss, `backward`, let the
# optimizer step, adjust the learning rate. Every model from here on trains with that same loop, so the course
# keeps one copy of it in the library: `scratchlm.training.train(config, model=..., splits=...)` runs it for any
# model whose `forward(x, y)` returns `(logits, loss)`, as both of ours do. `config` is a `TrainConfig`: batch
# size, number of steps, AdamW's learning rate and weight decay, the schedule (here no warmup, then a cosine decay
# from `LEARNING_RATE` to a tenth of it), gradient clipping and the seed of the training batches. Lesson 04
# derives the schedule, the weight decay groups and the clipping; here they are the same for both models.
#
# Every `eval_interval` steps, and at step 0, `train` estimates both losses with `estimate_loss`: the mean over
# the same `eval_iters` batches of each split at every call (their generator is seeded afresh each time), so
# two curves differ only because the models do. Callbacks let us watch a run without writing a loop: the one
# below estimates the losses a few extra times early on, where they fall fastest.

# %%
from scratchlm.training import Callback, TrainConfig, evaluate, make_optimizer, train, train_step

BLOCK_SIZE = 32
BATCH_SIZE = pick(smoke=16, cpu=32, gpu=64)
MAX_STEPS = pick(smoke=200, cpu=3000, gpu=5000)
EVAL_INTERVAL = pick(smoke=50, cpu=150, gpu=250)
EARLY_EVALS = (10, 25, 50, 100)  # extra evaluations (in steps of the single head) where the loss falls fastest
EVAL_ITERS = pick(smoke=5, cpu=20, gpu=50)
LEARNING_RATE = 1e-2
SEEDS = (SEED, SEED + 1)

train_config = TrainConfig().replace(
    block_size=BLOCK_SIZE,
    batch_size=BATCH_SIZE,
    max_iters=MAX_STEPS,
    learning_rate=LEARNING_RATE,
    min_lr=LEARNING_RATE / 10,
    warmup_iters=0,
    eval_interval=EVAL_INTERVAL,
    eval_iters=EVAL_ITERS,
)


class EvaluateAt(Callback):
    """Estimate train and val loss after each of `steps` (on top of `train`'s own evaluations)."""

    def __init__(self, steps: list[int]):
        self.steps = set(steps)
        self.records: list[dict[str, float]] = []

    def on_step(self, run, result) -> None:
        if run.step in self.steps:
            losses = run.evaluate()
            self.records.append({"step": run.step, "train_loss": losses["train"], "val_loss": losses["val"]})


def train_lm(model: nn.Module, config: TrainConfig, early: list[int]) -> list[dict[str, float]]:
    """Train `model` with the library loop; every loss estimate (train's own and the early ones), by step."""
    extra = EvaluateAt(early)
    result = train(config, model=model, splits=splits, callbacks=[extra])
    return sorted(result.metrics + extra.records, key=lambda record: record["step"])


# %% [markdown]
# ### What is a fair budget?
#
# "The same number of steps" is not the same amount of work: a step of the bigram model looks up a row of a
# table, while a step of the attention model runs three linear maps, a `(T, T)` attention matrix and an output
# layer. We measure what one training step of each costs here (the fastest of 50 after 10 warm-up steps, on
# fresh copies, so the runs below are not disturbed; `scratchlm.timing.seconds_per_call` is the course's timer),
# and then give the bigram model as many steps as the attention model's steps cost: **equal compute**, measured
# in seconds of this machine.

# %%
torch.manual_seed(SEED)
head_config = SingleHeadConfig(vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE)
timing_batch = get_batch(train_data, BLOCK_SIZE, BATCH_SIZE, torch.Generator().manual_seed(0), device)
step_seconds = {}
for name, probe in (
    ("bigram", BigramLanguageModel(tokenizer.vocab_size)),
    ("single head", SingleHeadLanguageModel(head_config)),
):
    probe.to(device)
    optimizer = make_optimizer(probe, train_config, device)
    times = seconds_per_call(lambda m=probe, o=optimizer: train_step(m, o, timing_batch, grad_clip=1.0), 50, 10, device)
    step_seconds[name] = min(times)  # noise (another process, a cache miss) only ever adds time
cost_ratio = step_seconds["single head"] / step_seconds["bigram"]
BIGRAM_STEPS = round(MAX_STEPS * cost_ratio / 100) * 100  # the single head's compute, in bigram steps
for name, seconds in step_seconds.items():
    print(f"{name:>11}: {seconds * 1e3:.2f} ms per training step")
print(
    f"a single-head step costs {cost_ratio:.1f} bigram steps: the bigram gets {BIGRAM_STEPS:,} steps to its {MAX_STEPS:,}"
)

# %% [markdown]
# Both models are tiny, so part of each step is fixed overhead (launching the operations, the optimizer's
# bookkeeping) that does not grow with the model; the ratio in FLOPs would be larger still. Equal seconds is
# the budget a learner with this machine actually has.
#
# Both models are trained twice, with two seeds (each changes the initial weights and the order of the training
# batches), so that a gap between them can be told from the spread of one model across seeds. The bigram
# model's evaluations sit at the same *compute* as the single head's: after `cost_ratio` times as many steps.

# %%
runs = {"bigram": {}, "single head": {}}
models = {}
for seed in SEEDS:
    torch.manual_seed(seed)
    models["single head", seed] = SingleHeadLanguageModel(head_config).to(device)
    if seed == SEED:  # a frozen copy at initialisation, for section 7
        untrained_lm = SingleHeadLanguageModel(head_config).to(device)
        untrained_lm.load_state_dict(models["single head", seed].state_dict())
    runs["single head"][seed] = train_lm(models["single head", seed], train_config.replace(seed=seed), EARLY_EVALS)

    models["bigram", seed] = BigramLanguageModel(tokenizer.vocab_size).to(device)  # zero logits: uniform
    bigram_config = train_config.replace(
        seed=seed, max_iters=BIGRAM_STEPS, eval_interval=max(1, round(EVAL_INTERVAL * cost_ratio))
    )
    runs["bigram"][seed] = train_lm(
        models["bigram", seed], bigram_config, [round(step * cost_ratio) for step in EARLY_EVALS]
    )
attention_lm, bigram = models["single head", SEED], models["bigram", SEED]
for name in ("bigram", "single head"):
    print(f"{name:>11}: {sum(p.numel() for p in models[name, SEED].parameters()):,} parameters")

# %% [markdown]
# The bigram model is one 65 × 65 table. The attention model has about twice as many parameters: 3 × 32 × 32
# in the head, the rest in its two embedding tables and its output layer.
#
# One more line for the plot: the best a bigram can do at *any* budget. Lesson 01 showed that training a bigram
# converges to its table of normalised counts; with add-one smoothing, that table scores a finite validation
# loss. We load it into a `BigramLanguageModel` and score it with `evaluate(model, splits, config)`, which runs
# `estimate_loss` on the very batches that `train` evaluates a run of `config` on.

# %%
pair_counts = torch.bincount(train_data[:-1] * tokenizer.vocab_size + train_data[1:], minlength=tokenizer.vocab_size**2)
pair_counts = pair_counts.view(tokenizer.vocab_size, tokenizer.vocab_size).float() + 1.0  # add-one smoothing
counted = BigramLanguageModel(tokenizer.vocab_size).to(device)
with torch.no_grad():
    counted.logits_table.weight.copy_((pair_counts / pair_counts.sum(dim=1, keepdim=True)).log())
BIGRAM_FLOOR = evaluate(counted, splits.as_dict(), train_config, device)["val"]
print(f"counted bigram (lesson 01, add-one smoothing): val loss {BIGRAM_FLOOR:.3f} on the same evaluation batches")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), layout="constrained")
for ax in axes:
    for name, color in (("bigram", "tab:blue"), ("single head", "tab:orange")):
        steps = [record["step"] for record in runs[name][SEED]]
        val = torch.tensor([[record["val_loss"] for record in runs[name][seed]] for seed in SEEDS])  # (seeds, evals)
        train_loss = torch.tensor([[record["train_loss"] for record in runs[name][seed]] for seed in SEEDS])
        x_seconds = [step * step_seconds[name] for step in steps]
        ax.fill_between(x_seconds, val.min(0).values, val.max(0).values, color=color, alpha=0.3, lw=0)
        ax.plot(x_seconds, val.mean(0), "o-", ms=3, color=color, label=f"{name}, val (band: {len(SEEDS)} seeds)")
        ax.plot(x_seconds, train_loss.mean(0), ls="--", color=color, label=f"{name}, train (mean of seeds)")
    ax.axhline(BIGRAM_FLOOR, color="k", ls=":", lw=1, label="counted bigram (lesson 01), val")
    ax.axvline(MAX_STEPS * step_seconds["bigram"], color="tab:blue", lw=0.8, alpha=0.6)
    ax.set(
        xlabel="training compute (s): steps × measured seconds per step", ylabel="cross-entropy (nats)", ylim=(2.0, 4.3)
    )
    ax.grid(alpha=0.3)
zoom_seconds = 2 * EARLY_EVALS[-1] * step_seconds["single head"]
axes[0].set(
    xlim=(-0.02 * zoom_seconds, zoom_seconds), title=f"The start: {2 * EARLY_EVALS[-1]} single-head steps' worth"
)
axes[1].text(MAX_STEPS * step_seconds["bigram"], 3.9, f" bigram at {MAX_STEPS:,} steps", color="tab:blue", fontsize=9)
axes[1].set(title=f"Equal compute: {MAX_STEPS:,} single-head steps = {BIGRAM_STEPS:,} bigram steps")
axes[1].legend()
plt.show()

# %% [markdown]
# Both models start at about ln 65 ≈ 4.17 at step 0 (the bigram's table starts at zero, a uniform guess; the
# attention model's small random weights are close to one) and lose most of the distance to their final loss in
# the first hundred-odd steps (left: the start, with the extra evaluations). The bigram model then levels off
# just above the dotted line, the counted table of lesson 01: its extra steps buy nothing, because one character
# of context has nothing more to give (the thin vertical line marks where an equal-*steps* comparison would have
# stopped it). The attention model keeps going below that floor: it sees up to 32 characters of context, not
# one. Train and validation curves stay close for both; neither model is big enough to memorise a million
# characters.

# %%
final = {(name, seed): runs[name][seed][-1] for name in runs for seed in SEEDS}
print(
    f"device={device.type} mode={MODE} seeds={SEEDS} batch={BATCH_SIZE} block={BLOCK_SIZE} lr={LEARNING_RATE} "
    f"(cosine to lr/10, no warmup), eval on {EVAL_ITERS} batches per split\n"
)
print("| model       | parameters | ms per step | steps  | val loss, seed by seed | val, mean |")
print("|-------------|-----------:|------------:|-------:|------------------------|----------:|")
for name, steps in (("bigram", BIGRAM_STEPS), ("single head", MAX_STEPS)):
    n_params = sum(p.numel() for p in models[name, SEED].parameters())
    vals = [final[name, seed]["val_loss"] for seed in SEEDS]
    print(
        f"| {name:<11} | {n_params:>10,} | {step_seconds[name] * 1e3:>11.2f} | {steps:>6,} | "
        f"{' '.join(f'{v:.3f}' for v in vals):<22} | {statistics.mean(vals):>9.3f} |"
    )
print(f"\ncounted bigram (lesson 01, add-one smoothing), no training: val loss {BIGRAM_FLOOR:.3f}")

# %%
for record in final.values():
    assert all(
        math.isfinite(record[k]) and record[k] < math.log(tokenizer.vocab_size) for k in ("train_loss", "val_loss")
    )
worst_head = max(final["single head", seed]["val_loss"] for seed in SEEDS)
best_bigram = min(final["bigram", seed]["val_loss"] for seed in SEEDS)
if MODE != "smoke":  # a few hundred smoke steps are too few for the head to overtake
    assert worst_head < best_bigram, (worst_head, best_bigram)  # the gap is larger than the spread of the seeds
    assert worst_head < BIGRAM_FLOOR - 0.05, (worst_head, BIGRAM_FLOOR)  # below what any bigram can reach

# %% [markdown]
# Context pays, and not because of a larger budget: at equal compute, with either seed, one attention head beats
# the bigram model on held-out text, and it goes below the counted table that no amount of bigram training
# improves on. The two seeds differ by far less than the gap. Both models still write nonsense (the single head
# has no feed-forward layer and only one way of looking back), so compare the samples for word shapes and line
# structure rather than meaning.

# %%
prompt = torch.tensor([tokenizer.encode("\n")], device=device)
for name, model in (("bigram", bigram), ("single head", attention_lm)):
    sample = generate(model, prompt, max_new_tokens=pick(smoke=60, cpu=250, gpu=250), seed=SEED)
    print(f"--- {name} ---{tokenizer.decode(sample[0].tolist())}\n")

# %% [markdown]
# ## 7 · What does the trained head look at?
#
# Take a line of validation text (never trained on), embed it, and ask the head for its weights. Rows are
# the positions doing the looking (queries), columns the positions looked at (keys); `␣` is a space and `⏎`
# a newline. On the left the same model before training, on the right after.

# %%
start = tokenizer.decode(val_data.tolist()).index("\nGood morrow, neighbour Gremio.")
snippet_ids = val_data[start : start + BLOCK_SIZE].view(1, -1).to(device)
labels = [visible(ch) for ch in tokenizer.decode(snippet_ids[0].tolist())]

with torch.no_grad():
    _, w_before = untrained_lm.head(untrained_lm.embed(snippet_ids), return_weights=True)
    _, w_after = attention_lm.head(attention_lm.embed(snippet_ids), return_weights=True)

fig, axes = plt.subplots(1, 2, figsize=(14, 6.8), layout="constrained")
for ax, weights, title in ((axes[0], w_before, "before training"), (axes[1], w_after, "after training")):
    im = ax.imshow(weights[0].cpu(), cmap="magma", vmin=0, vmax=1)
    ax.set_xticks(range(BLOCK_SIZE), labels, fontsize=8)
    ax.set_yticks(range(BLOCK_SIZE), labels, fontsize=8)
    ax.set(title=f"Attention weights {title}", xlabel="key (attended to)", ylabel="query (looking)")
fig.colorbar(im, ax=axes, shrink=0.7, label="weight")
plt.show()
assert torch.all(w_after.triu(diagonal=1) == 0)

# %% [markdown]
# Before training each row is a soft smear over the past, not far from the plain average of way 2. After
# training the weight gathers on the diagonal and just left of it: the head looks at the current character
# and the one or two before it, and how it splits its weight among them depends on the characters. A space or
# a comma keeps almost all of it on itself, while the `h` of "neighbour" looks mostly back at the `g` (after
# "gh" the next letter is easy to guess). The bright diagonal is no accident: in this model the head's output
# is all the output layer sees, so a head that did not attend to the current character could not tell which
# character it is predicting from.
#
# One snippet is an anecdote. Averaged over 256 random validation windows (queries at positions 8 to 31, so
# that every row has at least nine positions to choose from), here is where the weight goes:

# %%
stats_gen = torch.Generator().manual_seed(SEED + 2)
windows, _ = get_batch(val_data, BLOCK_SIZE, 256, stats_gen, device)
queries = torch.arange(8, BLOCK_SIZE, device=device)
print(f"{'attends to':>14} | {'before':>6} | {'after':>6}")
for name, model in (("before", untrained_lm), ("after", attention_lm)):
    with torch.no_grad():
        _, w = model.head(model.embed(windows), return_weights=True)  # (256, T, T)
    by_offset = [w[:, queries, queries - k].mean().item() for k in range(3)]
    if name == "before":
        before = by_offset
    else:
        for k, (b, a) in enumerate(zip(before, by_offset, strict=True)):
            label = "itself (t)" if k == 0 else f"t - {k}"
            print(f"{label:>14} | {b:>6.1%} | {a:>6.1%}")
        print(f"{'older':>14} | {1 - sum(before):>6.1%} | {1 - sum(by_offset):>6.1%}")
assert sum(by_offset) > sum(before)  # training concentrates the weight on the recent past

# %% [markdown]
# At initialisation a query spreads its weight almost evenly over its 9 to 32 choices; after training most of
# it sits on the current character and the one before. A single head must serve every purpose at once, and
# here it chose a sharpened, content-dependent version of a short n-gram window. The next lessons give the
# model several heads, residual connections and stacked layers, so that heads are free to look further.

# %% [markdown]
# ## Where this lesson stands on the ladder
#
# The ladder (lesson 01, `scratchlm.ladder`) trains every model of the course on one fixed budget and scores it in
# bits per byte on the same held-out text. Its "one-head" rung is this lesson's model at the ladder's sizes (80
# channels, a 64-character context), trained with the same recipe and data as the bigram rung. Note what the
# ladder holds fixed: the training text (same bytes, steps and batches), not the compute; its `train s` column
# shows what each rung paid for its place. We train both rungs here, one seed, and show them against the table
# committed with the course.

# %%
from scratchlm.ladder import run_rung, show_ladder

ladder_runs = {name: run_rung(name, seed=0) for name in ("bigram", "one-head")}
show_ladder(highlight=["one-head"], measured=list(ladder_runs.values()))
gain = ladder_runs["bigram"]["bits_per_byte"] - ladder_runs["one-head"]["bits_per_byte"]
print(f"one head instead of a bigram table, same training text: {gain:.3f} bits per byte less")
if MODE != "smoke":
    assert gain > 0, ladder_runs

# %% [markdown]
# On equal training text, one attention head buys 0.15 bits per byte over the bigram table with seed 0 (3.46
# against 3.61), and 0.20 on the mean of the two committed seeds (3.42). Its two seeds differ by 0.09, far more
# than the bigram's (which agree to the third decimal): a single head's result depends on its initialisation and
# batches much more than a table of counts does, so one seed of it says little to the second decimal.
#
# ## Summary
#
# - Averaging the past is a matrix product with a row-normalised lower-triangular matrix, or equivalently a
#   softmax of zeros with −∞ above the diagonal. Attention replaces the zeros by data-dependent scores.
# - Each position emits a query, a key and a value; the weights are `softmax(q·kᵀ / √d)` with the future
#   masked out, and the output is the weighted sum of the values.
# - For unit-variance `q` and `k` the variance of `q·k` equals the head size `d` (measured above from 2 to
#   512); dividing by √d brings it back to 1 and keeps the softmax from saturating into a one-hot choice.
# - The causal mask makes position `t` depend only on positions `0..t`, which we tested by changing the
#   future and watching the past stay put.
# - Our `CausalHead` matches `scratchlm.attention.Head` exactly; with it, a single-head model with 32-dim
#   embeddings beats the bigram model's validation loss at **equal compute** (the bigram got as many steps as
#   the head's steps cost in measured seconds: several times more, by a ratio that depends on the machine and
#   is printed above), with both of two seeds, and goes below the counted bigram table that bounds any bigram (table above). An equal-*steps* comparison would have handed the
#   attention model several times the bigram's compute; here that does not change the winner, because the bigram
#   has levelled off long before, but it is the fair way to state such a comparison.
# - Training now uses the library's `train` (lesson 01's loop, written once), with `estimate_loss` on fixed
#   evaluation batches from step 0 on, and a `Callback` to look inside a run.
#
# ## Exercises
#
# 1. **Remove the scaling.** Copy `SingleHeadLanguageModel` with a head that does not divide by √d (write
#    the head yourself, starting from `CausalHead`), set `head_size=256`, and compare the training curve and
#    the attention heat map with the scaled version. Where does the difference show: at the start or at the
#    end of training?
# 2. **Let it see the future.** Drop the mask from your head and train again. The training loss falls far
#    below the causal model's; explain why, and why the samples are worse rather than better.
# 3. **Head size sweep.** Train the single-head model for head sizes 4, 8, 16, 32 and 64 (keep
#    `n_embd=32`) and plot the final validation loss against the head size. Where do returns diminish?
# 4. **Position matters.** Remove the position embedding. Which loss do you get, and why can the head no
#    longer tell "the previous character" from "a character ten positions back"?
