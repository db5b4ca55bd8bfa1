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
# # 03 · The Transformer block
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/03_transformer_block.ipynb)
#
# Lesson 02 ended with one attention head on top of an embedding: it learned to look one or two characters
# back, and it beat the bigram model. A GPT stacks the same unit, the **transformer block**, many times over.
# A block is attention with several heads, a small per-position network, and the glue that lets a dozen of
# them be trained together: residual connections and layer normalisation. This lesson builds each piece,
# measures what it is for, and ends with a block that matches `scratchlm.model.Block` weight for weight.
#
# **What you will build**
#
# 1. multi-head attention twice: as separate `Head`s side by side, then as one fused projection reshaped into
#    heads, and a proof that the two compute the same thing;
# 2. the feed-forward network (MLP), and why attention alone cannot do its job;
# 3. residual connections, with the per-layer gradient norms of a 12-layer stack with and without them;
# 4. LayerNorm from scratch, checked against `nn.LayerNorm`;
# 5. an experiment on where LayerNorm goes (Post-LN or Pre-LN) on the same training budget, with two seeds;
# 6. dropout, and where it sits in the block;
# 7. your own block, checked against `scratchlm.model.Block`.

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
# The rest of the imports and the data of lessons 01 and 02: Tiny Shakespeare, its character tokenizer and the
# 90/10 train/validation split.

# %%
import itertools
import math

import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.attention import Head
from scratchlm.data import get_batch, load_splits
from scratchlm.generation import generate
from scratchlm.model import GPT, Block, GPTConfig
from scratchlm.training import Callback, TrainConfig, evaluate, lr_at, train

SEED = 1337
set_seed(SEED)

splits = load_splits("tinyshakespeare")  # lesson 01's steps: read, character tokenizer, encode, 90/10 split
tokenizer, train_data, val_data = splits.tokenizer, splits.train, splits.val
print(
    f"{len(train_data) + len(val_data):,} characters, vocabulary of {tokenizer.vocab_size}, "
    f"{len(train_data):,} train / {len(val_data):,} val tokens"
)

# %% [markdown]
# One configuration object, the library's `GPTConfig`, carries the sizes of every model in this lesson. The
# experiments use small models so that the whole notebook runs in a few minutes on a laptop CPU. A GPU runs the
# very same experiments, only faster (`pick` falls back to the CPU value when no GPU value is given): what they
# show depends on the sizes, and the text describes these.

# %%
BLOCK_SIZE = pick(smoke=16, cpu=32)
N_EMBD = pick(smoke=32, cpu=64)
N_HEAD = 4
config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=1, n_head=N_HEAD, n_embd=N_EMBD)
print(config, f"head_size={config.head_size}", sep="\n")

# %% [markdown]
# ## 1 · Multi-head attention
#
# One head computes one set of attention weights per position: one way of deciding which earlier tokens
# matter. A character model wants several at once (the previous letter, the start of the word, the last
# newline), so a block runs `n_head` heads in parallel, each with `head_size = n_embd / n_head` channels, and
# concatenates their outputs back to `n_embd` channels. A final linear map, the **projection**, lets the heads'
# results mix before they leave the layer. Splitting `n_embd` among the heads keeps the cost of one big head:
# 4 heads of 16 have exactly the query, key and value parameters of 1 head of 64.
#
# **Separate heads.** The direct translation: a list of lesson 02's `Head`, run one after the other.


# %%
class MultiHeadAttention(nn.Module):
    """`n_head` causal heads side by side: (B, T, n_embd) -> concatenated head outputs -> projection."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads = nn.ModuleList(
            [Head(config.n_embd, config.head_size, config.block_size) for _ in range(config.n_head)]
        )
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([head(x) for head in self.heads], dim=-1)  # n_head x (B, T, hs) -> (B, T, n_embd)
        return self.proj(out)


torch.manual_seed(SEED)
B, T, C = 4, BLOCK_SIZE, N_EMBD
x = torch.randn(B, T, C)
mha = MultiHeadAttention(config)
y_separate = mha(x)
print("x", tuple(x.shape), "-> y", tuple(y_separate.shape))

# %% [markdown]
# Same shape in, same shape out: a block can be stacked on a block. But the loop runs `3 × n_head` small
# matrix products, each of which reads all of `x` again.
#
# **One fused projection.** All queries of all heads are one `(n_embd → n_embd)` linear map, and the same
# holds for keys and values, so a single `Linear(n_embd, 3·n_embd)` computes the three of them for every head
# in one matrix product. Its output is cut into q, k and v, and each of those is reshaped from `(B, T, C)` to
# `(B, n_head, T, head_size)`: the head becomes a batch dimension, and one batched matrix product computes
# every head's scores. The names `c_attn` and `c_proj` are GPT-2's (and the library's).


# %%
class FusedSelfAttention(nn.Module):
    """Causal multi-head self-attention with one QKV projection: (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v of every head
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)  # dropout is section 6; at 0.0 it does nothing
        self.resid_dropout = nn.Dropout(config.dropout)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        # persistent=False keeps the mask out of the state_dict, so these weights load into the library's layer
        self.register_buffer("causal_mask", mask, persistent=False)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, C) -> q, k, v, each (B, n_head, T, head_size)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)  # each (B, T, C)
        return tuple(t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.split_heads(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)  # (B, H, T, T): every head at once
        scores = scores.masked_fill(~self.causal_mask[:T, :T], float("-inf"))
        weights = self.attn_dropout(F.softmax(scores, dim=-1))
        y = weights @ v  # (B, H, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # put the heads side by side again: the concatenation
        return self.resid_dropout(self.c_proj(y))


fused = FusedSelfAttention(config)
print({name: tuple(p.shape) for name, p in fused.named_parameters()})

# %% [markdown]
# The fused layer must compute what the separate heads compute, given the same weights. In `c_attn.weight`
# (shape `(3C, C)`) the first `C` rows make the queries, the next `C` the keys, the last `C` the values; within
# each third, rows `h·hs … (h+1)·hs` belong to head `h`, because the reshape cuts the channels into heads in
# that order. So we stack the heads' query matrices, then their key matrices, then their value matrices. The
# separate heads have no bias in q, k, v; the fused layer gets a zero one.

# %%
with torch.no_grad():
    fused.c_attn.weight.copy_(
        torch.cat(
            [
                *[head.query.weight for head in mha.heads],  # each (hs, C)
                *[head.key.weight for head in mha.heads],
                *[head.value.weight for head in mha.heads],
            ]
        )
    )
    fused.c_attn.bias.zero_()
    fused.c_proj.load_state_dict(mha.proj.state_dict())

y_fused = fused(x)
torch.testing.assert_close(y_fused, y_separate)

# %% [markdown]
# Identical, up to float rounding. The order of the rows is part of the layout. Fill `c_attn` head by head
# instead (q, k, v of head 0, then of head 1, …, an equally reasonable layout that some codebases use) and the
# `split` and `view` in `split_heads` hand each head rows that belong to another head, or to another of q, k, v:

# %%
interleaved = FusedSelfAttention(config)
interleaved.load_state_dict(fused.state_dict())
with torch.no_grad():
    interleaved.c_attn.weight.copy_(
        torch.cat([w for head in mha.heads for w in (head.query.weight, head.key.weight, head.value.weight)])
    )
    assert not torch.allclose(interleaved(x), y_separate)  # same numbers, wrong places: a different layer

# %% [markdown]
# The masked softmax in `forward` is what lesson 02 wrote out by hand. PyTorch has it as one fused function,
# `F.scaled_dot_product_attention`, which on a GPU can dispatch to FlashAttention-style kernels (lesson 07)
# that never store the `(T, T)` matrix. `is_causal=True` applies the same mask. It must agree with our explicit version:

# %%
q, k, v = fused.split_heads(x)  # each (B, H, T, hs)
causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
att = F.softmax((q @ k.transpose(-2, -1) / math.sqrt(config.head_size)).masked_fill(~causal, float("-inf")), dim=-1)
explicit = att @ v
sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
torch.testing.assert_close(sdpa, explicit)
print("q, k, v:", tuple(q.shape), "  attention output:", tuple(sdpa.shape))

# %% [markdown]
# The library's `scratchlm.attention.CausalSelfAttention` is this layer with `scaled_dot_product_attention` in
# place of the explicit softmax; section 7 checks it, inside a whole block.
#
# ## 2 · The feed-forward network
#
# Look at what attention can and cannot do. Each output row is a weighted average of value vectors: it moves
# information *between* positions, but for fixed weights it is linear in the values, and an average cannot
# leave the range of the things averaged. Before `c_proj`, every channel of every head's output lies between
# the smallest and the largest value that head could see:

# %%
running_min = v.cummin(dim=2).values  # (B, H, T, hs): smallest value among positions 0..t, per channel
running_max = v.cummax(dim=2).values
assert torch.all(explicit >= running_min - 1e-6) and torch.all(explicit <= running_max + 1e-6)
torch.testing.assert_close(explicit[:, :, 0], v[:, :, 0])  # position 0 can only copy its own value

# %% [markdown]
# Mixing is the whole of attention's job: **communication**. What is missing is **computation**: a
# nonlinear function applied to what each position has gathered, so that the model can build new features
# ("the last three letters were 'the' and a space follows") rather than averages of old ones. That is the
# MLP: widen each position's vector 4×, apply a nonlinearity, project back. It is applied to every position
# separately, with the same weights.


# %%
class MLP(nn.Module):
    """Position-wise feed-forward network: (B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's approximation of GELU
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


mlp = MLP(config)
with torch.no_grad():
    y_all = mlp(x)
    y_one_by_one = torch.stack([mlp(x[:, t]) for t in range(T)], dim=1)  # one position at a time
    perm = torch.randperm(T)
    torch.testing.assert_close(y_one_by_one, y_all)
    torch.testing.assert_close(mlp(x[:, perm]), y_all[:, perm])  # shuffle the positions: outputs follow
n_attn = sum(p.numel() for p in fused.parameters())
n_mlp = sum(p.numel() for p in mlp.parameters())
print(f"parameters: attention {n_attn:,}  MLP {n_mlp:,}  ({n_mlp / (n_attn + n_mlp):.0%} of the pair)")

# %% [markdown]
# The MLP never looks at another position: computing all positions at once, one at a time, or shuffled gives
# the same rows. Yet it holds two thirds of the pair's parameters (`8C²` against attention's `4C²`, plus
# biases): most of a block's capacity for computation sits in its MLP, and attention decides what it gets to see.
#
# The nonlinearity is GELU, `x · Φ(x)` with Φ the standard normal CDF: a smooth ReLU that lets small negative
# inputs through a little, so that they still receive some gradient, where ReLU's is exactly zero. GPT-2 used
# a tanh approximation of Φ; the library keeps it so that GPT-2's weights load exactly.

# %%
z = torch.linspace(-4, 4, 401)
fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
ax.plot(z, F.relu(z), "k:", label="ReLU")
ax.plot(z, F.gelu(z), label="GELU (exact)")
ax.plot(z, F.gelu(z, approximate="tanh"), "--", label="GELU (tanh approximation)")
ax.set(xlabel="x", ylabel="activation", title="GELU: a smooth ReLU", ylim=(-0.5, 4))
ax.legend()
ax.grid(alpha=0.3)
plt.show()
print(
    f"largest gap between exact and tanh GELU on [-4, 4]: {(F.gelu(z) - F.gelu(z, approximate='tanh')).abs().max():.1e}"
)

# %% [markdown]
# The two GELU curves are indistinguishable at this scale (the printed gap is below 10⁻³).
#
# ## 3 · Residual connections
#
# Stack attention and MLP twelve times and the signal passes through 24 sublayers on its way from the input
# to the loss, and the gradient through 24 Jacobians on its way back. A **residual connection** adds each
# sublayer's output to its input instead of replacing it: `x = x + f(x)`. Its Jacobian is `I + ∂f/∂x`, so the
# gradient always has a direct, unchanged path to every layer, and a layer that has nothing useful to add can
# leave the input alone simply by outputting zero.
#
# The library's `Block` has two residual connections, with a LayerNorm at the start of each branch (section 4
# derives LayerNorm; section 5 asks where it should go). Its `forward` comes down to two lines (section 7
# checks our own version of it against the library):
#
# ```python
# x = x + self.attn(self.ln_1(x))  # communication
# x = x + self.mlp(self.ln_2(x))   # computation
# ```
#
# To measure what the additions are worth, remove them and change nothing else. `NoResidualBlock` is the
# library's `Block` with the same four sublayers and a `forward` without the `x +`. The helper `gpt_with`
# builds the library's `GPT` (token and position embeddings, a stack of blocks, a final LayerNorm `ln_f`, the
# output layer) with its usual initialisation and seed, and rewires every block: the models compared below
# start from *identical weights*.
#
# One detail of the wiring: the library's `GPT` calls every block as `block(x, rope, cache, layer)`, handing it
# the rotary position table (lesson 08) and the key/value cache (lesson 09) that its attention may need. A block
# of our own takes these as `*context` and passes them on, untouched, to the library's attention.


# %%
class NoResidualBlock(Block):
    """The library's block without its residual connections: each sublayer replaces the stream."""

    def forward(self, x: torch.Tensor, *context) -> torch.Tensor:
        x = self.attn(self.ln_1(x), *context)
        x = self.mlp(self.ln_2(x))
        return x


def gpt_with(block_class: type[Block], config: GPTConfig, seed: int = SEED) -> GPT:
    """The library's GPT, seeded and initialised as usual, with every block replaced by a `block_class`."""
    torch.manual_seed(seed)
    model = GPT(config)
    for i, block in enumerate(model.transformer.h):
        rewired = block_class(config)
        rewired.load_state_dict(block.state_dict())  # same weights, different wiring
        model.transformer.h[i] = rewired
    return model.to(device)


# %% [markdown]
# Every variant trains on the same budget, with the library's training loop (`scratchlm.training.train`, lesson
# 01's loop written once; lesson 02 introduced it): the same batches (the data generator is seeded by the run's
# seed), AdamW, a peak learning rate, an optional linear warmup, then cosine decay to a tenth of the peak, and no
# gradient clipping. Every `EVAL_INTERVAL` steps, from step 0 on, `train` estimates the training and validation
# losses on the same batches (`estimate_loss`). To look inside a run we hand `train` a **callback**: after every
# step, `BlockGradNorms` records for each block the norm of the gradient of all its parameters taken together.
# `train_step` clears gradients at the start of a step rather than at its end, so they are still there when the
# callback runs, and without clipping they are exactly what the optimizer used.

# %%
BATCH_SIZE = pick(smoke=8, cpu=16)
STEPS = pick(smoke=20, cpu=200)
EVAL_INTERVAL = pick(smoke=10, cpu=25)
EVAL_ITERS = pick(smoke=2, cpu=10)
LEARNING_RATE = 1e-3
BASE_CONFIG = TrainConfig().replace(
    block_size=BLOCK_SIZE,
    batch_size=BATCH_SIZE,
    max_iters=STEPS,
    learning_rate=LEARNING_RATE,
    min_lr=LEARNING_RATE / 10,
    warmup_iters=0,
    grad_clip=0.0,  # no clipping: the recorded gradients are the ones the optimizer uses
    eval_interval=EVAL_INTERVAL,
    eval_iters=EVAL_ITERS,
    seed=SEED,
)


def block_grad_norms(model: GPT) -> list[float]:
    """The norm of each block's gradient (all its parameters as one vector), first block first."""
    return [
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in block.parameters()])).item()
        for block in model.transformer.h
    ]


class BlockGradNorms(Callback):
    """After every optimizer step, each block's gradient norm (`block_grad_norms`): one list per step."""

    def __init__(self):
        self.per_step: list[list[float]] = []

    def on_step(self, run, result) -> None:
        self.per_step.append(block_grad_norms(run.model))


def train_variant(model: GPT, seed: int = SEED, warmup: int = 0) -> dict:
    """Train `model` on the shared budget; its per-step training losses, per-step block gradient norms, the
    evaluations (step, train_loss, val_loss, every EVAL_INTERVAL steps) and the final validation loss."""
    grads = BlockGradNorms()
    result = train(BASE_CONFIG.replace(seed=seed, warmup_iters=warmup), model=model, splits=splits, callbacks=[grads])
    return {
        "loss": result.step_losses,
        "grad_norms": grads.per_step,
        "evals": result.metrics,
        "val": result.final_val_loss,
    }


# %% [markdown]
# One more yardstick. A model that ignores its input can still learn how often each character occurs; the best
# it can then do is the entropy of the character frequencies, the **unigram** loss. A curve that stalls there
# has learned nothing about context.

# %%
counts = torch.bincount(train_data, minlength=tokenizer.vocab_size).float()
p_char = counts / counts.sum()
UNIGRAM = -(p_char[p_char > 0] * p_char[p_char > 0].log()).sum().item()
print(f"unigram entropy of the training text: {UNIGRAM:.3f} nats (uniform guess: {math.log(tokenizer.vocab_size):.3f})")

# %% [markdown]
# Now the two deep stacks, from the same initial weights:

# %%
DEEP = pick(smoke=4, cpu=12)
deep_config = GPTConfig(
    vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=DEEP, n_head=N_HEAD, n_embd=N_EMBD
)
residual_runs = {}
deep_models = {}
for name, block_class in (("with residuals", Block), ("without residuals", NoResidualBlock)):
    deep_models[name] = gpt_with(block_class, deep_config)
    residual_runs[name] = train_variant(deep_models[name])


# %%
def smooth(values: list[float], window: int = 10) -> tuple[list[int], list[float]]:
    """Moving average over `window` steps: (steps, averages)."""
    window = min(window, len(values))
    averaged = torch.tensor(values).unfold(0, window, 1).mean(dim=1).tolist()
    return list(range(window, len(values) + 1)), averaged


def plot_grad_norms(ax: plt.Axes, runs: dict, step: int, title: str, styles: dict | None = None) -> None:
    for name, run in runs.items():
        norms = run["grad_norms"][step]
        ax.semilogy(range(1, len(norms) + 1), norms, "o-", label=name, **(styles or {}).get(name, {}))
    ax.set(xlabel="block (1 = nearest the input)", ylabel="gradient norm", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()


def plot_losses(ax: plt.Axes, runs: dict, title: str, styles: dict | None = None) -> None:
    """Validation loss at every evaluation (markers; with several seeds, their mean and a min-max band) over the
    training loss of every step (thin, 10-step average, mean over seeds). `runs`: name -> run or {seed: run}."""
    for name, run_or_seeds in runs.items():
        seeds = run_or_seeds if "evals" not in run_or_seeds else {SEED: run_or_seeds}
        style = {"color": None, "ls": "-"} | (styles or {}).get(name, {})
        train_curves = torch.tensor([smooth(run["loss"])[1] for run in seeds.values()])
        line = ax.plot(smooth(next(iter(seeds.values()))["loss"])[0], train_curves.mean(0), lw=0.8, alpha=0.45,
                       color=style["color"], ls=style["ls"])[0]  # fmt: skip
        steps = [record["step"] for record in next(iter(seeds.values()))["evals"]]
        val = torch.tensor([[record["val_loss"] for record in run["evals"]] for run in seeds.values()])
        if len(seeds) > 1:
            ax.fill_between(steps, val.min(0).values, val.max(0).values, color=line.get_color(), alpha=0.2, lw=0)
        label = f"{name}, val" + (f" ({len(seeds)} seeds)" if len(seeds) > 1 else "")
        ax.plot(steps, val.mean(0), marker="o", ms=3, color=line.get_color(), ls=style["ls"], label=label)
    ax.axhline(UNIGRAM, color="k", ls=":", lw=1, label="unigram entropy")
    ax.set(xlabel="step", ylabel="loss (nats)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="thin lines: training loss (10-step average)", title_fontsize=8)


fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
plot_grad_norms(axes[0], residual_runs, 0, "Gradient per block at initialisation")
plot_grad_norms(axes[1], residual_runs, STEPS - 1, f"Gradient per block at step {STEPS}")
plot_losses(axes[2], residual_runs, f"{DEEP} blocks, same weights at step 0")
plt.show()

# %% [markdown]
# Left: at initialisation the stack without residuals is *not* starved of gradient. Its blocks get gradients
# about five times larger than the residual stack's, because each LayerNorm divides by the scale of its input,
# which is small here, and so amplifies the gradient flowing back through it. Vanishing gradients are not what
# breaks it at step 0. Right: training breaks it. Within about 50 steps its loss stalls on the unigram line,
# and at the last step (middle) its gradient falls from block to block by about nine orders of magnitude in
# all, from about 0.1 at the last block to about 10⁻¹⁰ at the first: the early blocks have stopped learning. (How
# far it falls is rounding-sensitive, since the stalled model is degenerate; earlier runs of this notebook with
# other kernels and optimizer settings reached 10⁻⁸ and 10⁻¹³.)
# The residual stack's gradients differ by a factor of ten from top to bottom, and its loss keeps falling.
#
# Why does the plain stack stall exactly at the unigram loss? Ask how different the vectors that reach `ln_f`
# are from one position to the next: below, the mean cosine similarity between all pairs of positions in a
# validation batch, after centring each vector as `ln_f` does. At 1.0 every position carries the same vector,
# the model predicts the same distribution everywhere, and the best such distribution is the unigram one.


# %%
@torch.no_grad()
def position_similarity(model: GPT, idx: torch.Tensor) -> float:
    """Mean cosine similarity of the (centred) vectors entering ln_f, over all pairs of the B*T positions."""
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.shape[1], device=idx.device))
    for block in model.transformer.h:
        x = block(x)
    h = x.flatten(0, 1)
    h = F.normalize(h - h.mean(dim=-1, keepdim=True), dim=-1)  # (B*T, C), unit length
    return (h @ h.T).mean().item()


probe_idx, _ = get_batch(val_data, BLOCK_SIZE, BATCH_SIZE, torch.Generator().manual_seed(SEED + 2), device)
untrained = gpt_with(Block, deep_config)
print(
    f"device={device.type} mode={MODE} seed={SEED} blocks={DEEP} n_embd={N_EMBD} steps={STEPS} "
    f"batch={BATCH_SIZE}x{BLOCK_SIZE} lr={LEARNING_RATE} (cosine to lr/10, no warmup)\n"
)
print("| model             | val loss | grad norm, first / last block (final step) | position similarity |")
print("|-------------------|---------:|-------------------------------------------:|--------------------:|")
print(
    f"| {'at initialisation':<17} | {evaluate(untrained, splits.as_dict(), BASE_CONFIG)['val']:>8.3f} | {'':>42} | "
    f"{position_similarity(untrained, probe_idx):>19.2f} |"
)
for name, run in residual_runs.items():
    first, last = run["grad_norms"][-1][0], run["grad_norms"][-1][-1]
    print(
        f"| {name:<17} | {run['val']:>8.3f} | {first:>20.1e} / {last:<19.1e} | "
        f"{position_similarity(deep_models[name], probe_idx):>19.2f} |"
    )

# %%
res, plain = residual_runs["with residuals"], residual_runs["without residuals"]
assert all(math.isfinite(run["val"]) for run in residual_runs.values())
if MODE != "smoke":  # 20 smoke steps are too few to separate the two
    assert res["val"] < plain["val"] - 0.2, (res["val"], plain["val"])
    assert plain["grad_norms"][-1][0] < 1e-3 * plain["grad_norms"][-1][-1], "the plain stack's first block starves"

# %% [markdown]
# Without residuals, the stack has squeezed every position onto the same vector (similarity 1.00, from 0.08 at
# initialisation): the last blocks pass on nothing of what the first ones compute, so almost no gradient
# reaches the first ones. With residuals each block only *adds* to a stream that still contains the
# embeddings, so no block can erase what came in; the positions stay distinguishable (0.29) and the
# validation loss goes well below the unigram line.
#
# ## 4 · LayerNorm
#
# Each residual branch adds to the stream, so the stream's scale drifts with depth and with training, while
# the sublayers work best on inputs of a fixed scale (lesson 02: the scores must not grow, or the softmax
# saturates). **Layer normalisation** fixes the scale at the entrance of every branch: for each position on its
# own, subtract the mean of its `C` channels and divide by their standard deviation, then apply a learned
# per-channel gain and bias so the network can undo the normalisation where that helps. `eps` keeps the
# division finite for a constant vector.


# %%
class LayerNorm(nn.Module):
    """Normalise the last dimension of (..., C) to mean 0 and variance 1, then scale by `weight`, shift by `bias`."""

    def __init__(self, n_embd: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # divide by C, not C - 1, like nn.LayerNorm
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        y = x_hat * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


# %% [markdown]
# Test it on positions of wildly different scales, against `nn.LayerNorm` with a random gain and bias loaded
# into both (the parameter names are the same), and compare the gradients too. The comparison runs in float64,
# where rounding is far too small to hide a real difference: the two compute the variance in a different
# order, and in float32 a position of scale 0.01 already shows rounding differences above `assert_close`'s
# default tolerance.

# %%
torch.manual_seed(SEED)
x_ln = (torch.randn(B, T, C, dtype=torch.float64) + 2.0) * torch.logspace(-2, 2, T).view(1, T, 1)  # std 0.01 to 100
reference = nn.LayerNorm(C, dtype=torch.float64)
nn.init.normal_(reference.weight)
nn.init.normal_(reference.bias)
ours_ln = LayerNorm(C).double()
ours_ln.load_state_dict(reference.state_dict())

x_a, x_b = x_ln.clone().requires_grad_(), x_ln.clone().requires_grad_()
torch.testing.assert_close(ours_ln(x_a), reference(x_b))
ours_ln(x_a).pow(2).sum().backward()
reference(x_b).pow(2).sum().backward()
torch.testing.assert_close(x_a.grad, x_b.grad)
torch.testing.assert_close(ours_ln.weight.grad, reference.weight.grad)

eps = reference.eps
normed = F.layer_norm(x_ln, (C,), eps=eps)  # gain 1, bias 0: the normalisation alone
in_std = x_ln.std(dim=-1, unbiased=False)  # the estimator LayerNorm uses: divide by C
out_std = normed.std(dim=-1, unbiased=False)
predicted = in_std / torch.sqrt(in_std**2 + eps)  # sigma / sqrt(sigma^2 + eps): the output's std
print(f"eps = {eps:g}")
print(
    f"{'position':>8} | {'input mean':>10} | {'input std':>9} | {'output mean':>11} | {'output std':>10} | {'σ/√(σ²+eps)':>11}"
)
for t in (0, 1, T // 2, T - 1):
    print(
        f"{t:>8} | {x_ln[0, t].mean():>10.2f} | {in_std[0, t]:>9.4f} | "
        f"{normed[0, t].mean():>11.2f} | {out_std[0, t]:>10.4f} | {predicted[0, t]:>11.4f}"
    )
torch.testing.assert_close(normed.mean(-1), torch.zeros(B, T, dtype=torch.float64))
torch.testing.assert_close(out_std, predicted)  # the formula explains every position, small ones included
torch.testing.assert_close(
    F.layer_norm(x_ln, (C,), eps=0.0).std(dim=-1, unbiased=False), torch.ones(B, T, dtype=torch.float64)
)

# %% [markdown]
# Our LayerNorm and PyTorch's agree on the outputs and on the gradients. Every position leaves with mean 0,
# and the positions of ordinary scale with standard deviation 1 (before gain and bias). The smallest one does
# not: at position 0 the output's standard deviation is only about 0.94. That is `eps` at work. The division is
# by $\sqrt{\sigma^2 + \epsilon}$, not by $\sigma$, so the output's standard deviation is exactly
# $\sigma / \sqrt{\sigma^2 + \epsilon}$ (last column, and the `assert`): 1 to within $10^{-5}$ while $\sigma^2 \gg
# \epsilon = 10^{-5}$, but an input of standard deviation 0.009 has a variance of about $8 \times 10^{-5}$, to
# which `eps` adds about an eighth, and its output comes out smaller. With `eps=0` every position leaves with
# standard deviation 1 exactly (the last `assert`). The estimator is not the cause: the table measures the
# standard deviation as LayerNorm computes it, dividing by `C`; `Tensor.std`'s default divides by `C − 1` and
# would report $\sqrt{64/63} \approx 1.008$ for every normalised position. `eps` is a floor under the scale:
# a position that is (nearly) constant is left (nearly) at zero instead of being blown up into noise.
#
# Note what LayerNorm normalises over: the channels of one position, not the batch (that would be BatchNorm),
# so a model behaves the same on a batch of 64 during training and on the single sequence it extends during
# generation. From here on we use `nn.LayerNorm`, as the library does.
#
# ## 5 · Where does the LayerNorm go? Post-LN against Pre-LN
#
# The original Transformer (2017) normalised *after* each residual addition, `x = LN(x + f(x))`: **Post-LN**.
# GPT-2 moved the norm to the start of each branch, `x = x + f(LN(x))`: **Pre-LN**, the library's `Block`. In
# Post-LN every addition is followed by a normalisation, so nothing passes from the input to the loss untouched;
# in Pre-LN the stream is a plain sum, and a single `ln_f` before the output layer normalises it once.
#
# The experiment: the same 6-block model, the same initial weights, batches, steps and peak learning rate,
# once with each wiring (`ln_f` stays in both; after Post-LN's last norm it is close to an identity). Two
# schedules: the cosine decay used above, and the same after a linear **warmup**, in which the learning rate
# climbs from almost 0 to its peak over the first half of the steps.


# %%
class PostLNBlock(Block):
    """The library's block with the original Transformer's wiring: normalise after each residual addition."""

    def forward(self, x: torch.Tensor, *context) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x, *context))
        x = self.ln_2(x + self.mlp(x))
        return x


DEPTH = pick(smoke=2, cpu=6)
WARMUPS = (0, STEPS // 2)
SEEDS = (SEED, SEED + 1)
for warmup in WARMUPS:
    schedule = BASE_CONFIG.replace(warmup_iters=warmup)
    lrs = [lr_at(step, schedule) for step in range(STEPS)]
    print(f"warmup {warmup:>3}: lr at steps 0, {STEPS // 4}, {STEPS // 2}, {STEPS - 1}: "
          f"{lrs[0]:.1e} {lrs[STEPS // 4]:.1e} {lrs[STEPS // 2]:.1e} {lrs[-1]:.1e}")  # fmt: skip

# %% [markdown]
# The schedules come from the library's `lr_at(step, config)`, the one the loop uses (lesson 04 derives it):
# with warmup the learning rate starts at 1/100 of the peak and reaches it halfway.
#
# A gap between two training runs can come from the wiring or from luck: which initial weights, which batches.
# So each of the four runs is made with two seeds (each seed changes both), and the plot shows the band between
# them: a difference smaller than the band is not a finding.

# %%
ln_config = GPTConfig(
    vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=DEPTH, n_head=N_HEAD, n_embd=N_EMBD
)
ln_runs, ln_models, ln_styles = {}, {}, {}
for warmup, line_style in zip(WARMUPS, ("-", "--"), strict=True):
    for wiring, block_class, color in (("Pre-LN", Block, "tab:blue"), ("Post-LN", PostLNBlock, "tab:red")):
        name = f"{wiring}, " + (f"warmup {warmup}" if warmup else "no warmup")
        ln_runs[name] = {}
        for seed in SEEDS:
            ln_models[name, seed] = gpt_with(block_class, ln_config, seed=seed)
            ln_runs[name][seed] = train_variant(ln_models[name, seed], seed=seed, warmup=warmup)
        ln_styles[name] = {"color": color, "ls": line_style}

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
at_init = {wiring: ln_runs[f"{wiring}, no warmup"][SEED] for wiring in ("Pre-LN", "Post-LN")}  # same every schedule
plot_grad_norms(
    axes[0],
    at_init,
    0,
    "Gradient per block at initialisation",
    {wiring: {"color": ln_styles[f"{wiring}, no warmup"]["color"]} for wiring in at_init},
)
plot_losses(axes[1], ln_runs, f"{DEPTH} blocks, peak lr {LEARNING_RATE}, {STEPS} steps, seeds {SEEDS}", ln_styles)
plt.show()

print(
    f"device={device.type} mode={MODE} seeds={SEEDS} blocks={DEPTH} n_embd={N_EMBD} steps={STEPS} "
    f"batch={BATCH_SIZE}x{BLOCK_SIZE} peak lr={LEARNING_RATE}, cosine to lr/10\n"
)
print(
    "| wiring, schedule        | val loss, seed by seed | position similarity | grad norm at init, per block (first seed) |"
)
print(
    "|-------------------------|------------------------|--------------------:|-------------------------------------------|"
)
for name, seeds in ln_runs.items():
    vals = " ".join(f"{seeds[seed]['val']:.3f}" for seed in SEEDS)
    similarity = " ".join(f"{position_similarity(ln_models[name, seed], probe_idx):.2f}" for seed in SEEDS)
    norms = " ".join(f"{g:.2f}" for g in seeds[SEED]["grad_norms"][0])
    print(f"| {name:<23} | {vals:<22} | {similarity:>19} | {norms:<41} |")

# %%
assert all(math.isfinite(run["val"]) for seeds in ln_runs.values() for run in seeds.values())
if MODE != "smoke":  # every seed on its own, not only on average
    for seed in SEEDS:
        assert ln_runs["Pre-LN, no warmup"][seed]["val"] < ln_runs["Post-LN, no warmup"][seed]["val"] - 0.3
        for warmup in WARMUPS[1:]:
            assert ln_runs[f"Pre-LN, warmup {warmup}"][seed]["val"] < ln_runs[f"Post-LN, warmup {warmup}"][seed]["val"]

# %% [markdown]
# What the measurement shows, on this model and budget, with two seeds (the right panel's bands, the table's
# pairs of numbers; the seeds differ by at most 0.03 in validation loss):
#
# - **At initialisation** (left) the Pre-LN gradient norms fall gently with depth (1.83 for the first block,
#   1.39 for the last). In Post-LN the first block gets 1.10 and every later block the same 0.06: the first
#   `ln_1` divides the small embeddings (standard deviation about 0.02) by their scale, which multiplies the
#   gradient through it, and hands a unit-scale stream to blocks whose branches start small, so that they are
#   close to identities. The raw sizes are not comparable between the wirings (AdamW rescales every
#   parameter's step anyway); the shape across depth is what differs.
# - **Without warmup** Post-LN does not learn in this budget: its loss falls to the unigram line within about
#   25 steps and stays there (validation 3.33 and 3.36 for the two seeds, against the unigram entropy of 3.31),
#   and its positions end up identical (similarity 1.00), the same collapse as the stack without residuals.
#   Pre-LN trains normally from the same weights.
# - **With warmup** Post-LN comes down to the unigram line as its learning rate climbs, lingers near it around
#   step 75, then leaves it and learns (2.80 and 2.82), but it ends well behind Pre-LN, which hardly cares about
#   the warmup (2.59 and 2.62 without, 2.59 and 2.60 with). The gap, about 0.2, is several times the spread of
#   the seeds.
#
# The gradient norms at step 0 do not predict this outcome on their own; the loss curves show it. What they
# support is the rule the field settled on: Pre-LN trains at this learning rate without special care, while
# Post-LN needs a warmup to learn at all, and still lags here. Two caveats bound the claim. It is 200 steps: the
# Post-LN curve with warmup is still falling at the end, so this measures how hard each wiring
# is to *start*, not where each would end (the original Transformer was Post-LN and trained well, with a long
# warmup). And it is the library's initialisation, which GPT-2 designed for Pre-LN; exercise 3 asks whether
# Post-LN does better with another.
#
# The best of the four models and the stuck one write like this (prompt: a newline, same sampling seed):

# %%
best = min(ln_runs, key=lambda name: ln_runs[name][SEED]["val"])
stuck = "Post-LN, no warmup"
prompt = torch.tensor([tokenizer.encode("\n")], device=device)
for name in (best, stuck):
    # use_cache=False: each new character reruns the model on the whole context, as in training; the library's
    # default keeps a key/value cache instead (same text, less work), which lesson 09 builds
    sample = generate(ln_models[name, SEED], prompt, max_new_tokens=pick(smoke=40, cpu=200), seed=SEED, use_cache=False)
    print(
        f"--- {name}, seed {SEED} (val loss {ln_runs[name][SEED]['val']:.2f}) ---{tokenizer.decode(sample[0].tolist())}\n"
    )

# %% [markdown]
# Neither is English after 200 steps, but the Pre-LN text has word-sized pieces between spaces, a real short
# word here and there ("he") and lines ending in a colon, like the speaker names of a play. The collapsed
# Post-LN model predicts the same distribution after every context, so it can only draw each character with its
# overall frequency: plenty of vowels and spaces, no structure.
#
# ## 6 · Dropout
#
# A bigger model trained longer starts to memorise its training text. **Dropout** is a cheap brake: during
# training it zeroes each element of a tensor with probability `p` and multiplies the survivors by `1/(1-p)`,
# so the expected value is unchanged; in evaluation it does nothing. No unit can rely on any particular other
# unit being present, which discourages brittle co-adaptations. `model.train()` and `model.eval()` switch it.

# %%
drop = nn.Dropout(p=0.25)
ones = torch.ones(10_000)
drop.train()
dropped = drop(ones)
print(
    "train mode: first values",
    [round(v, 3) for v in dropped[:8].tolist()],
    f" fraction zeroed {(dropped == 0).float().mean():.3f}, mean {dropped.mean():.3f}",
)
drop.eval()
print("eval mode:  first values", drop(ones)[:8].tolist())
assert torch.equal(drop(ones), ones)
assert torch.all((dropped == 0) | torch.isclose(dropped, torch.tensor(1 / 0.75)))

# %% [markdown]
# In training mode about a quarter of the ones became zeros and the rest became 1/0.75 ≈ 1.33, keeping the
# mean near 1; in eval mode the input comes out unchanged. In a GPT, dropout (one probability,
# `GPTConfig.dropout`) sits in four places:
#
# - on the **attention weights**, after the softmax (a position randomly ignores some of its past);
# - on the **attention output**, after `c_proj`, just before it is added to the stream;
# - on the **MLP output**, after its `c_proj`, just before it is added to the stream;
# - on the **embeddings** (token + position), in `GPT` itself, before the first block.
#
# It never sits on the residual stream itself: that would randomly erase the identity path that section 3
# showed we need. Our `FusedSelfAttention` and `MLP` already have the first three. The runs above used
# `dropout=0.0`: in 200 steps of 16 × 32 tokens a model sees about a tenth of the training text, too little
# to start memorising it.
#
# ## 7 · The block, assembled and checked
#
# All the pieces, wired Pre-LN: our `LayerNorm`, our fused attention, our `MLP`, two residual additions. The
# attribute names are the library's (`ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`),
# so a `state_dict` moves between the two unchanged.


# %%
class TransformerBlock(nn.Module):
    """Pre-LN transformer block: x + attention(LN(x)), then + MLP(LN(x)). (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = FusedSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope=None, cache=None, layer: int = 0) -> torch.Tensor:
        # the library's GPT passes every block a rotary table and a KV cache; ours has neither (lessons 08, 09)
        if rope is not None or cache is not None:
            raise NotImplementedError("this block has no RoPE and no KV cache: generate with use_cache=False")
        x = x + self.attn(self.ln_1(x))  # communication
        x = x + self.mlp(self.ln_2(x))  # computation
        return x


# %% [markdown]
# The library's block is randomised all over (LayerNorm gains and biases included, so that no parameter sits at
# a value that would hide a mistake), its `state_dict` is loaded into ours (strictly: a missing or extra name
# would raise), and both run in eval mode on the same input. The config has dropout 0.1, to check that eval
# mode really switches it off.

# %%
check_config = GPTConfig(
    vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=2, n_head=N_HEAD, n_embd=N_EMBD, dropout=0.1
)
torch.manual_seed(SEED)
library_block = Block(check_config)
for p in library_block.parameters():
    nn.init.normal_(p, std=0.2)
our_block = TransformerBlock(check_config)
our_block.load_state_dict(library_block.state_dict())
print(list(our_block.state_dict()))

library_block.eval()
our_block.eval()
x = torch.randn(B, T, C)
with torch.no_grad():
    torch.testing.assert_close(our_block(x), library_block(x))

# %% [markdown]
# The same weights give the same outputs. In training mode, with dropout 0.1, two calls on the same input
# differ (each draws new masks), while eval mode is deterministic:

# %%
our_block.train()
with torch.no_grad():
    assert not torch.allclose(our_block(x), our_block(x))
    our_block.eval()
    assert torch.equal(our_block(x), our_block(x))

# %% [markdown]
# Last, a whole model: the library's `GPT` with its blocks replaced by ours, each loaded with the weights of
# the block it replaces, must produce the library model's logits.

# %%
torch.manual_seed(SEED)
library_gpt = GPT(check_config).eval()
our_gpt = GPT(check_config).eval()
our_gpt.load_state_dict(library_gpt.state_dict())
for i, block in enumerate(library_gpt.transformer.h):
    ours = TransformerBlock(check_config).eval()
    ours.load_state_dict(block.state_dict())
    our_gpt.transformer.h[i] = ours
idx = torch.randint(tokenizer.vocab_size, (B, T))
with torch.no_grad():
    torch.testing.assert_close(our_gpt(idx)[0], library_gpt(idx)[0])

# %% [markdown]
# They agree, so from the next lesson on the block is `scratchlm.model.Block` and the model is
# `scratchlm.model.GPT`.

# %% [markdown]
# ## Where this lesson stands on the ladder
#
# Three of the ladder's rungs (lesson 01, `scratchlm.ladder`) are this lesson's pieces, added one at a time to
# lesson 02's one-head model, each one layer deep and trained on the ladder's fixed budget: **multi-head** (the
# head split into 4 heads, plus the output projection), **+mlp** (an MLP after the attention, no residuals, no
# LayerNorm) and **+residual+layernorm** (the same two sublayers wired as one Pre-LN block, with a final
# LayerNorm). We train the three here, one seed, and show them against the committed table.

# %%
from scratchlm.ladder import run_rung, show_ladder

LESSON_RUNGS = ("multi-head", "+mlp", "+residual+layernorm")
ladder_runs = {name: run_rung(name, seed=0) for name in LESSON_RUNGS}
show_ladder(highlight=list(LESSON_RUNGS), measured=list(ladder_runs.values()))
for before, after in itertools.pairwise(LESSON_RUNGS):
    gain = ladder_runs[before]["bits_per_byte"] - ladder_runs[after]["bits_per_byte"]
    print(f"{after:>20} instead of {before:<12}: {gain:.3f} bits per byte less")

# %% [markdown]
# Each piece pays on the same training text (two-seed means from the committed table). Splitting the head into
# four heads with an output projection takes the one-head rung from 3.42 to 3.08 bits per byte (−0.34); the MLP
# takes off another 0.29 (0.33 with seed 0, measured above); residual additions and LayerNorms another 0.15 (0.10
# with seed 0), and they make the block train more evenly: the +mlp rung's two seeds lie 0.09 apart,
# +residual+layernorm's 0.01. One block deep, the wiring is worth the least of the three; section 3 showed what
# it is worth at twelve.
#
# ## Summary
#
# - **Multi-head attention** runs `n_head` heads of size `n_embd / n_head` side by side and mixes their
#   concatenated outputs with a projection. The fused form computes q, k and v of every head with one
#   `Linear(C, 3C)` and a reshape to `(B, H, T, hs)`; with the weights copied across, it equals the list of
#   separate heads, and `scaled_dot_product_attention` equals the explicit masked softmax.
# - Attention only **communicates**: each output is an average of values, within their range. The **MLP**
#   (4× wider, GELU) **computes**, on each position separately, and holds two thirds of a block's parameters.
# - **Residual connections** keep an identity path through the stack. Without them the 12-block model
#   collapsed to the same vector at every position, stalled at the unigram loss, and its first blocks ended
#   with gradients many orders of magnitude below its last; with them, the same weights trained normally.
# - **LayerNorm** normalises each position over its channels (mean 0, then gain and bias); ours matches
#   `nn.LayerNorm` in outputs and gradients. It divides by $\sqrt{\sigma^2 + \epsilon}$, so the output's standard
#   deviation is $\sigma/\sqrt{\sigma^2+\epsilon}$: 1 for inputs of ordinary scale, visibly less (0.94 above) for a
#   position whose variance is within a factor of ten of `eps`.
# - **Pre-LN against Post-LN**, same weights and budget, two seeds: without warmup the Post-LN model never left
#   the unigram plateau; with warmup it learned but stayed behind Pre-LN, with both seeds (table above). The
#   caveat: this is 200 steps of a 6-block, 64-channel model at one learning rate. It shows that Post-LN is
#   harder to *start*, not where it would end; the original Transformer trained Post-LN with a long warmup, and
#   whether it catches up with more steps is not measured here (exercise 3).
# - **Dropout** is active in training mode only; it sits on the attention weights, on each branch's output
#   and on the embeddings, never on the residual stream.
# - Our `TransformerBlock` loads the library `Block`'s weights and reproduces its outputs, alone and inside
#   a whole `GPT`.
#
# ## Exercises
#
# 1. **Heads against width.** Train the Pre-LN model of section 5 with 1, 2, 4, 8 and 16 heads (`n_embd`
#    fixed at 64) and plot the final validation loss. The parameter count does not change; what does?
# 2. **No MLP.** Write a block whose `forward` skips the MLP branch and train a 6-block model on the budget of
#    section 5. How far does it get compared with 6 full blocks, and compared with 2 full blocks (which have
#    about as many parameters: 2 × 12C² against 6 × 4C²)?
# 3. **Rescue Post-LN.** Find the shortest warmup with which the Post-LN model of section 5 leaves the unigram
#    plateau. Then, without warmup, try peak learning rates of 1e-4 and 3e-4, and PyTorch's default
#    initialisation (call `reset_parameters()` on every `nn.Linear` of the model after `gpt_with`). Which
#    change helps most, and does any of them catch Pre-LN?
# 4. **Residual scale.** The library initialises every `c_proj` with standard deviation `0.02 / √(2·n_layer)`.
#    Record the scale (root mean square) of the residual stream after each block of the 12-block model, at
#    initialisation and after training. Why does the initial scale grow so little with depth?
