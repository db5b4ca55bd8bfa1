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
# # 04 · The full GPT
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/04_gpt.ipynb)
#
# Lesson 03 ended with a transformer block that matches `scratchlm.model.Block`. A GPT is that block stacked
# `n_layer` times, with a way in (token and position embeddings) and a way out (a final LayerNorm and a layer
# that turns vectors back into next-token scores). This lesson puts the model together, counts what it costs,
# trains it properly on Tiny Shakespeare, samples from it, saves and resumes it, and finally loads OpenAI's
# GPT-2 weights into the very same class.
#
# **What you will build**
#
# 1. the lesson's own `GPT` class: embeddings, a stack of library `Block`s, `ln_f`, a tied output head and
#    GPT-2's initialisation, with a measurement of why the residual projections are initialised smaller;
#    then a check that it is `scratchlm.model.GPT` weight for weight;
# 2. the parameter count as a formula, asserted against the modules;
# 3. the FLOPs per token of training, and how much of this machine's matmul speed a training step uses (MFU);
# 4. the optimiser recipe, each part written by hand and checked against the library: AdamW with weight-decay
#    groups, warmup plus cosine decay, gradient clipping; then the training loop they make, checked against
#    `scratchlm.training.train` weight for weight;
# 5. a real training run with `train`, its loss curves and its samples;
# 6. sampling: temperature, top-k and top-p written by hand, checked against the library's `filter_logits`,
#    and a sampling loop checked against `generate`;
# 7. checkpoints: save, load, rebuild, resume;
# 8. the round trip to Hugging Face's `GPT2LMHeadModel`, and GPT-2 124M itself when you are online.

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
# The rest of the imports, and the data of the earlier lessons: Tiny Shakespeare as characters, split 90/10.

# %%
import importlib.util
import itertools
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch.nn as nn
import torch.nn.functional as F

from scratchlm import checkpoint
from scratchlm import model as library
from scratchlm.data import get_batch, load_splits
from scratchlm.generation import filter_logits, generate
from scratchlm.model import Block, GPTConfig
from scratchlm.scaling.flops import attention_flops_per_token, flops_per_token
from scratchlm.timing import seconds_per_call
from scratchlm.tokenizers import visible
from scratchlm.training import (
    TrainConfig,
    autocast_for,
    lr_at,
    make_optimizer,
    param_groups,
    preset,
    resolve_dtype,
    train,
    train_step,
)

SEED = 1337
set_seed(SEED)

splits = load_splits("tinyshakespeare")  # lesson 01's steps: read, character tokenizer, encode, 90/10 split
tokenizer, train_data, val_data = splits.tokenizer, splits.train, splits.val
V = tokenizer.vocab_size
print(
    f"{len(train_data) + len(val_data):,} characters, vocabulary of {V}, "
    f"{len(train_data):,} train / {len(val_data):,} val tokens"
)

# %% [markdown]
# ## 1 · From token ids to logits
#
# **The way in.** A block maps `(B, T, C)` vectors to `(B, T, C)` vectors, so the ids must first become
# vectors. A token embedding `wte` (a `(V, C)` table) gives each character a learned vector. Attention, though,
# treats its inputs as a set: shuffle the positions and its outputs are shuffled the same way. So a second table,
# the position embedding `wpe` (`(block_size, C)`), gives each position its own learned vector, added to the
# token's.

# %%
torch.manual_seed(SEED)
C = 16
wte, wpe = nn.Embedding(V, C), nn.Embedding(64, C)
idx = torch.tensor([tokenizer.encode("To be, or not")])  # (B=1, T=13)
tok_emb = wte(idx)  # (1, 13, C)
pos_emb = wpe(torch.arange(idx.shape[1]))  # (13, C), broadcast over the batch
x = tok_emb + pos_emb
print(
    "ids",
    tuple(idx.shape),
    "-> token vectors",
    tuple(tok_emb.shape),
    "+ position vectors",
    tuple(pos_emb.shape),
    "=",
    tuple(x.shape),
)
assert torch.equal(tok_emb[0, 1], tok_emb[0, 7])  # the two o's: the same token vector...
assert not torch.allclose(x[0, 1], x[0, 7])  # ...but different inputs to the first block

# %% [markdown]
# The two o's of "To be, or" get the same token vector but enter the first block as different vectors,
# because they sit at different positions.
#
# **The way out.** After the last block, one more LayerNorm `ln_f` (in a Pre-LN stack the residual stream is
# never normalised on its own path, lesson 03), then a linear map from `C` channels to `V` scores, the logits of
# the next token. That map's weight is a `(V, C)` matrix, exactly the shape of `wte`. GPT-2 uses one matrix for
# both, **weight tying**: the output score of token `j` is the dot product of the final vector with `j`'s own
# embedding. A token is then one vector whether it is read or predicted, so what the model learns about it on
# either side helps the other (rare tokens especially), and the model saves `V·C` parameters (38.6 M of GPT-2's
# 124 M, section 2).
#
# **Initialisation.** GPT-2 draws every Linear and Embedding weight from `N(0, 0.02²)` and zeroes the biases.
# Small weights make the initial logits nearly equal, so the first loss is close to `ln V`, the loss of a
# uniform guess. One more rule: the two projections that write *into* the residual stream (attention's and the
# MLP's `c_proj`) get a standard deviation divided by `√(2·n_layer)`. We first write the model, then measure
# what that rule does.


# %%
def gpt2_init(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02²) weights, zero biases, and the residual projections scaled down."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):  # the 2 * n_layer layers that add to the residual stream
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V): embeddings, n_layer blocks, ln_f, a tied output head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying: one (V, C) matrix in and out
        gpt2_init(self, config.n_layer)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T) ids. Returns logits (B, T, V) and the mean cross-entropy (None without targets)."""
        seq_len = idx.shape[1]
        if seq_len > self.config.block_size:  # wpe has a row for each of the first block_size positions only
            raise ValueError(f"sequence of {seq_len} tokens, but block_size is {self.config.block_size}")
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(seq_len, device=idx.device))
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


config = GPTConfig(vocab_size=V, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
torch.manual_seed(SEED)
ours = GPT(config)
x_batch, y_batch = get_batch(val_data, config.block_size, 8, torch.Generator().manual_seed(SEED))
ours.eval()
with torch.no_grad():
    logits, loss = ours(x_batch, y_batch)
print(f"logits {tuple(logits.shape)}, loss at initialisation {loss.item():.3f} (ln V = {math.log(V):.3f})")
assert ours.lm_head.weight is ours.transformer.wte.weight
assert abs(loss.item() - math.log(V)) < 0.1

# %% [markdown]
# The untrained model predicts almost uniformly, as promised: its loss differs from `ln 65` by less than a hundredth.
#
# **Why scale the residual projections?** Each block adds two branches to the residual stream, and at
# initialisation their outputs are roughly independent random vectors, so their variances add up: after `n_layer`
# blocks the stream carries `2·n_layer` of them on top of the embeddings. Dividing each branch's last layer by
# `√(2·n_layer)` divides each added variance by `2·n_layer`, and the total stops depending on depth. The
# experiment: models of increasing depth, built from the same seed, once as above and once with the residual
# projections left at 0.02 (the same random draws, multiplied back by `√(2·n_layer)`). We follow the standard
# deviation of the stream from the embeddings through every block on a batch of real text.


# %%
@torch.no_grad()
def residual_stds(model: GPT, idx: torch.Tensor) -> list[float]:
    """Standard deviation of the residual stream after the embeddings and after each block (eval mode)."""
    model.eval()
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.shape[1]))
    stds = [x.std().item()]
    for block in model.transformer.h:
        x = block(x)
        stds.append(x.std().item())
    return stds


def unscaled(model: GPT) -> GPT:
    """Undo the residual scaling: every c_proj weight back to standard deviation 0.02 (same random draws)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                p.mul_(math.sqrt(2 * model.config.n_layer))
    return model


DEPTHS = pick(smoke=[1, 2, 4, 8], cpu=[1, 2, 4, 8, 16, 32, 48])
stream = {}
for depth in DEPTHS:
    depth_config = GPTConfig(vocab_size=V, block_size=64, n_layer=depth, n_head=4, n_embd=128)
    torch.manual_seed(SEED)
    scaled_model = GPT(depth_config)
    torch.manual_seed(SEED)
    stream[depth] = {
        "scaled": residual_stds(scaled_model, x_batch),
        "unscaled": residual_stds(unscaled(GPT(depth_config)), x_batch),
    }

deepest = DEPTHS[-1]
fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
for kind, color in (("unscaled", "tab:red"), ("scaled", "tab:blue")):
    label = "c_proj std 0.02" if kind == "unscaled" else "c_proj std 0.02 / √(2·n_layer)"
    axes[0].plot(stream[deepest][kind], "o-", ms=3, color=color, label=label)
    axes[1].plot(DEPTHS, [stream[d][kind][-1] for d in DEPTHS], "o-", color=color, label=label)
axes[0].set(
    xlabel="blocks passed (0 = embeddings)",
    ylabel="std of the residual stream",
    title=f"Inside one {deepest}-block model at initialisation",
)
axes[1].set(
    xscale="log", xlabel="n_layer", ylabel="std of the stream entering ln_f", title="At the top of the stack, by depth"
)
axes[1].set_xticks(DEPTHS, [str(d) for d in DEPTHS])
axes[1].minorticks_off()
for ax in axes:
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()
print("n_layer | stream std at the top: scaled / unscaled | embeddings alone")
for depth in DEPTHS:
    print(
        f"{depth:>7} | {stream[depth]['scaled'][-1]:>16.3f} / {stream[depth]['unscaled'][-1]:<15.3f} "
        f"| {stream[depth]['scaled'][0]:.3f}"
    )

# %%
tops = {kind: [stream[d][kind][-1] for d in DEPTHS] for kind in ("scaled", "unscaled")}
assert max(tops["scaled"]) < 1.5 * min(tops["scaled"]), "scaled: the top of the stack does not depend on depth"
assert tops["unscaled"][-1] > 2 * tops["unscaled"][0], "unscaled: the stream grows with depth"

# %% [markdown]
# Without the scaling the stream grows with depth, roughly as `√n_layer`, and in a deep model the embeddings
# become a small part of it: at initialisation the top of the stack is mostly the sum of random branch outputs.
# With the scaling the stream at the top has the same size at every depth, and the embeddings remain a large
# share of it, whatever `n_layer` is. A deep model then starts from the same place as a shallow one.
#
# **The check against the library.** First: the same seed must give the same initial weights, which tests
# the initialisation, the tying and the order in which the modules are built. Then a stronger test of the
# forward pass: every parameter of the library model is randomised (LayerNorms included, so nothing matches
# by luck), its `state_dict` is loaded strictly into ours, and the logits and the loss must agree, in eval mode
# with dropout 0.1 configured.

# %%
torch.manual_seed(SEED)
reference = library.GPT(config)
for (name, a), (ref_name, b) in zip(ours.state_dict().items(), reference.state_dict().items(), strict=True):
    assert name == ref_name and torch.equal(a, b), name

with torch.no_grad():
    for p in reference.parameters():
        nn.init.normal_(p, std=0.2)
ours.load_state_dict(reference.state_dict())
ours.eval()
reference.eval()
with torch.no_grad():
    ours_logits, ours_loss = ours(x_batch, y_batch)
    ref_logits, ref_loss = reference(x_batch, y_batch)
torch.testing.assert_close(ours_logits, ref_logits)
torch.testing.assert_close(ours_loss, ref_loss)
print(
    f"{len(ours.state_dict())} tensors, identical at initialisation; after randomising, "
    f"logits agree and both losses are {ours_loss.item():.3f}"
)

# %% [markdown]
# Our `GPT` and `scratchlm.model.GPT` are the same model; from here on the lesson uses the library's, which
# adds clear error messages and the FLOPs helpers of section 3.
#
# ## 2 · Counting parameters
#
# With `C = n_embd`, `L = n_layer`, `V` the vocabulary and `T = block_size`, every parameter has its place:
#
# | part | parameters |
# |---|---|
# | token embedding `wte` | `V·C` |
# | position embedding `wpe` | `T·C` |
# | attention: `c_attn` (`C → 3C`) and `c_proj` (`C → C`), with biases | `4C² + 4C` |
# | MLP: `c_fc` (`C → 4C`) and `c_proj` (`4C → C`), with biases | `8C² + 5C` |
# | two LayerNorms (gain and bias each) | `4C` |
# | **one block** | `12C² + 13C` |
# | final LayerNorm `ln_f` | `2C` |
# | output head | `0`: tied to `wte` |
#
# The table below applies the formula to four models and asserts it against the modules' own count. The
# models are built on PyTorch's `meta` device, which records shapes without allocating memory, so even
# GPT-2 costs nothing here.


# %%
def parameter_formula(c: GPTConfig) -> dict[str, int]:
    C, L = c.n_embd, c.n_layer
    return {"embeddings": (c.vocab_size + c.block_size) * C, "blocks": L * (12 * C * C + 13 * C), "ln_f": 2 * C}


# NBVAL_CHECK_OUTPUT
sizes = {f'preset("{name}")': preset(name).model_config(V) for name in ("smoke", "cpu", "gpu")}
sizes["GPT-2 124M"] = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
print(
    f"| {'model':<17} | {'V':>6} | {'T':>5} | {'L':>3} | {'C':>4} | {'embeddings':>12} | {'blocks':>12} "
    f"| {'ln_f':>5} | {'total':>12} | {'untied':>12} |"
)
print(f"|{'-' * 19}|{'-' * 8}|{'-' * 7}|{'-' * 5}|{'-' * 6}|{'-' * 14}|{'-' * 14}|{'-' * 7}|{'-' * 14}|{'-' * 14}|")
for name, c in sizes.items():
    parts = parameter_formula(c)
    with torch.device("meta"):
        counted = sum(p.numel() for p in GPT(c).parameters())  # a tied tensor is yielded once
    assert sum(parts.values()) == counted, (name, parts, counted)
    print(
        f"| {name:<17} | {c.vocab_size:>6} | {c.block_size:>5} | {c.n_layer:>3} | {c.n_embd:>4} "
        f"| {parts['embeddings']:>12,} | {parts['blocks']:>12,} | {parts['ln_f']:>5,} | {counted:>12,} "
        f"| {counted + c.vocab_size * c.n_embd:>12,} |"
    )

# %% [markdown]
# The formula and the modules agree for all four. The last column is what the model would have with a separate
# output matrix: for GPT-2 tying saves 38.6 M parameters, almost a third of the model. For our character
# models `V` is only 65, so embeddings are a small share, and nearly all parameters sit in the `12C²` of each
# block: doubling the width quadruples the model, doubling the depth doubles it.
#
# ## 3 · FLOPs per token and model FLOPs utilisation
#
# How much arithmetic does training take per token? Each weight takes part in one multiply-add per token in
# the forward pass: 2 FLOPs. The backward pass computes two products per weight (the gradient for the layer's
# input and the gradient for the weight), twice the forward. So a parameter costs **6 FLOPs per token**, and
# the model `6N`. Two refinements: the position embedding is a table lookup, not a matmul, so `N` leaves it
# out; the token embedding stays, because tied it is also the output layer's matmul. And attention does work
# that no parameter accounts for: each token's query meets `T` keys (`2·T·C` FLOPs per layer) and its
# weights average `T` values (another `2·T·C`); times three for forward and backward, `12·L·T·C` in all.
#
# `FLOPs per token = 6·N + 12·L·T·C`
#
# **Which attention FLOPs count.** Attention here is causal: the query at position `t` may only look at the
# `t + 1` keys up to it, so the upper half of each `T × T` score matrix is masked away. `12·L·T·C` counts the
# whole matrix, masked half included; counting only the half that matters gives `6·L·T·C`. Both are in use,
# so a FLOP count (and an MFU) means something only with its convention stated. The course states it once, in
# `scratchlm.scaling.flops`, and every lesson uses that definition: **the masked half is counted**
# (`flops_per_token(config)`, `masked_half=True`), the work of the plain formula that computes every score
# and then masks, and the count `GPT.flops_per_token` and PyTorch's FLOP counter give. Lesson 07 builds a
# kernel that skips masked tiles and counts the same way, so its utilisation figures and this lesson's are
# comparable; `masked_half=False` gives the causal count, the one Kaplan et al.'s scaling laws use.
#
# From here on the lesson's model is the one the training run of section 5 uses: the preset of this mode.

# %%
RUN = pick(smoke="smoke", cpu="cpu", gpu="gpu")  # the name of the training preset for this mode
OUT_DIR = tempfile.mkdtemp(prefix="scratchlm-lesson04-")  # checkpoints and metrics of this notebook's run
train_config = preset(RUN, out_dir=OUT_DIR)
model_config = train_config.model_config(V)
torch.manual_seed(SEED)
model = library.GPT(model_config)
N = model.num_parameters(non_embedding=True)
L, T, C = model_config.n_layer, model_config.block_size, model_config.n_embd
flops = 6 * N + 12 * L * T * C  # the masked half counted
assert flops == flops_per_token(model_config) == model.flops_per_token()  # the course's one definition
assert flops_per_token(model_config, masked_half=False) == 6 * N + 6 * L * T * C  # the causal half only
print(f'preset("{RUN}"): {model_config}')
print(
    f"N (without wpe) = {N:,}; FLOPs per token = 6N + 12·L·T·C = {6 * N:,} + "
    f"{attention_flops_per_token(model_config):,} = {flops / 1e6:.2f} MFLOP "
    f"(attention {attention_flops_per_token(model_config) / flops:.0%} of it; "
    f"{flops_per_token(model_config, masked_half=False) / 1e6:.2f} MFLOP without the masked half)"
)

# %% [markdown]
# **MFU** (model FLOPs utilisation) divides the FLOP/s a training run achieves, `FLOPs per token × tokens/s`,
# by the device's peak FLOP/s. We measure both. Tokens per second: full training steps (forward, backward,
# clipping, AdamW) of this model at the preset's batch size, after two untimed warm-up steps. Each is a call of
# `scratchlm.training.train_step(model, optimizer, batch, lr=..., grad_clip=..., autocast=...)`, the very step
# that `train` (section 5) runs; section 4 takes its parts apart. The peak: we do
# not look it up, we *estimate* it by timing a large square matrix product in the precision training uses, the
# operation a device is fastest at. A datasheet peak would be higher (and on a shared machine the estimate
# also depends on the load at this moment), so treat the MFU below as an estimate relative to this machine's
# matmul speed, not a hardware constant.


# %% [markdown]
# Both timings use the course's one timer, `scratchlm.timing.seconds_per_call(fn, repeats, warmup, device)`:
# it runs `fn` `warmup` times untimed (the first calls pay for memory allocation and kernel selection), then
# times each of `repeats` calls, waiting for the device before each reading of the clock. That wait matters on
# a GPU, which runs kernels asynchronously: without it the clock would measure how fast work is *queued*.


# %%
def time_training_steps(config: TrainConfig, steps: int, warmup: int = 2) -> tuple[float, list[float]]:
    """Tokens per second of `steps` training steps of `config`'s model (after `warmup` untimed ones), and
    every step's gradient norm before clipping."""
    torch.manual_seed(config.seed)
    net = library.GPT(config.model_config(V)).to(device)
    optimizer = make_optimizer(net, config, device)
    autocast = autocast_for(device, config.dtype)  # bfloat16 autocast on recent GPUs, as train() does
    batches = torch.Generator().manual_seed(config.seed)
    norms = []

    def one_step() -> None:
        batch = get_batch(train_data, config.model.block_size, config.batch_size, batches, device)
        lr = lr_at(len(norms), config)
        norms.append(train_step(net, optimizer, batch, lr=lr, grad_clip=config.grad_clip, autocast=autocast).grad_norm)

    seconds = seconds_per_call(one_step, repeats=steps, warmup=warmup, device=device)
    return steps * config.tokens_per_step / sum(seconds), [n.item() for n in norms]


def matmul_flops_per_second(n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best FLOP/s of an (n, n) @ (n, n) product: 2·n³ FLOPs each time."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / min(seconds_per_call(lambda: a @ b, repeats=repeats, warmup=1, device=device))


if device.type == "cuda":
    torch.set_float32_matmul_precision("high")  # as train() does
tokens_per_s, grad_norms = time_training_steps(train_config, steps=pick(smoke=3, cpu=20, gpu=50))
matmul_dtype = resolve_dtype(train_config.dtype, device) or torch.float32
peak = matmul_flops_per_second(pick(smoke=512, cpu=1024, gpu=8192), matmul_dtype, repeats=pick(smoke=3, cpu=10, gpu=20))
mfu = model.estimate_mfu(tokens_per_s, peak)
load = f" load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
print(
    f"device={device.type} threads={torch.get_num_threads()}{load} preset={RUN} "
    f"batch={train_config.batch_size}x{model_config.block_size} matmul dtype={str(matmul_dtype).removeprefix('torch.')}"
)
print(
    f"training: {tokens_per_s:,.0f} tokens/s x {flops / 1e6:.2f} MFLOP/token = {tokens_per_s * flops / 1e9:.1f} GFLOP/s"
)
print(
    f"matmul estimate of the peak: {peak / 1e9:.1f} GFLOP/s  ->  MFU ≈ {mfu:.1%} "
    f"(masked half counted; {flops_per_token(model_config, masked_half=False) * tokens_per_s / peak:.1%} without it)"
)
assert math.isfinite(mfu) and mfu > 0
torch.testing.assert_close(mfu, flops * tokens_per_s / peak)

# %% [markdown]
# A training step reaches only part of the matmul speed. The rest goes to everything that is not a large
# matrix product: the attention softmax, LayerNorms, GELU, the optimiser update, moving small tensors about,
# and, for models this small, the fixed cost of launching each operation (on a GPU, where the peak is far
# higher, that cost weighs much more). Bigger models at bigger batches spend more of their time in matmuls and
# get closer to the peak (exercise 2). Run this cell twice on a busy machine and the two numbers move: both
# are measured, and both depend on what else the machine is doing.
#
# ## 4 · The optimiser: AdamW, weight decay, schedule, clipping
#
# **Weight decay groups.** AdamW shrinks each weight a little towards zero at every step (by `lr · weight_decay`
# times the weight), separately from the gradient step. For a matrix that is a useful pressure: among the
# weights that fit the data it prefers the smaller ones. For the vectors it makes no sense: a bias or a
# LayerNorm shift pulled towards 0 is not a simpler function, and a LayerNorm gain pulled towards 0 switches its
# branch off. The rule, written by module: the weights of Linear and Embedding layers decay; biases and every
# LayerNorm parameter do not. Two details: `named_parameters` yields the tied head once (it *is* `wte.weight`),
# and AdamW takes a list of groups, each with its own `weight_decay`.


# %%
def our_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's two groups: Linear and Embedding weights decay, biases and LayerNorm parameters do not."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):  # each tensor under the module that owns it
            matrix = isinstance(module, (nn.Linear, nn.Embedding)) and name == "weight"
            (decay if matrix else no_decay).append(p)
    decay = list({id(p): p for p in decay}.values())  # the tied head is wte.weight: keep it once
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# %% [markdown]
# The library's `scratchlm.training.param_groups` says the same in one line, by shape: every tensor with 2 or
# more dimensions (in a GPT exactly the Linear and Embedding weights) decays, every 1-D tensor does not. Both
# rules must put the same tensors in the same groups. Here are the groups of the section 1 model, with the block
# index collapsed:

# %%
# NBVAL_CHECK_OUTPUT
names = {id(p): re.sub(r"\.h\.\d+\.", ".h.*.", name) for name, p in ours.named_parameters()}
groups = param_groups(ours, weight_decay=0.1)
for mine, theirs in zip(our_param_groups(ours, weight_decay=0.1), groups, strict=True):
    assert mine["weight_decay"] == theirs["weight_decay"]
    assert {id(p) for p in mine["params"]} == {id(p) for p in theirs["params"]}
    assert len(mine["params"]) == len(theirs["params"])  # and no tensor twice
for group in groups:
    members = sorted({names[id(p)] for p in group["params"]})
    print(
        f"weight_decay={group['weight_decay']}: {len(group['params'])} tensors, "
        f"{sum(p.numel() for p in group['params']):,} parameters"
    )
    for member in members:
        print(f"    {member}")
assert sum(len(g["params"]) for g in groups) == len(list(ours.parameters()))  # each tensor once (wte is tied)
assert all(p.dim() >= 2 for p in groups[0]["params"]) and all(p.dim() == 1 for p in groups[1]["params"])

# %% [markdown]
# The decayed group holds nearly all the parameters (the matrices); the biases and LayerNorm parameters are
# many tensors but few numbers. The tied head does not appear: it *is* `transformer.wte.weight`.
#
# **The learning-rate schedule.** Warmup, then cosine decay. For `warmup_iters` steps the rate climbs
# linearly to `learning_rate`: the warmup protects the first steps, when Adam's estimates of the gradient's
# scale rest on a handful of batches. Step `s` (counted from 0) gets `learning_rate · (s + 1) / warmup_iters`,
# so the very first step already learns a little. Then half a cosine carries it down to `min_lr` at
# `lr_decay_iters` (by default the last step): with `progress` going from 0 to 1 over the decay,
#
# `lr = min_lr + ½ (1 + cos(π · progress)) · (learning_rate − min_lr)`,
#
# which starts flat (the model still learns fast), falls fastest in the middle, and flattens again at the end,
# where small, careful steps let the model settle into a minimum. After `lr_decay_iters` it stays at `min_lr`.


# %%
def our_lr(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, cosine decay, then flat min_lr."""
    peak, floor, warmup, end = config.learning_rate, config.min_lr, config.warmup_iters, config.decay_iters
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= end:
        return floor
    progress = (step - warmup) / (end - warmup)  # 0 -> 1 over the decay
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - floor)


# %% [markdown]
# The library's `scratchlm.training.lr_at(step, config)` is this function; we check it at every step of this
# mode's preset and of a schedule that decays before the end of training (`lr_decay_iters`), then plot it.

# %%
steps = list(range(train_config.max_iters + 1))
early_end = train_config.replace(lr_decay_iters=max(train_config.max_iters // 2, train_config.warmup_iters + 1))
for schedule in (train_config, early_end):
    for s in steps:
        assert math.isclose(our_lr(s, schedule), lr_at(s, schedule), rel_tol=1e-12, abs_tol=1e-15), s
lrs = [lr_at(s, train_config) for s in steps]
fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
ax.plot(steps, lrs)
ax.axvline(train_config.warmup_iters, color="k", ls=":", lw=1, label=f"end of warmup ({train_config.warmup_iters})")
ax.set(xlabel="step", ylabel="learning rate", title=f'lr_at for preset("{RUN}")')
ax.grid(alpha=0.3)
ax.legend()
plt.show()
peak_lr, eps = train_config.learning_rate, 1e-12  # eps: float rounding in min_lr + 1.0 * (lr - min_lr)
assert math.isclose(lrs[train_config.warmup_iters - 1], peak_lr) and math.isclose(max(lrs), peak_lr)
assert lrs[-1] == train_config.min_lr
assert all(a >= b - eps for a, b in itertools.pairwise(lrs[train_config.warmup_iters - 1 :]))  # then only down

# %% [markdown]
# **Gradient clipping.** A single unlucky batch, or a step at a learning rate the model is not ready for, can
# produce a gradient many times larger than usual, and one such step can undo many good ones (and feed a
# huge value into Adam's moment estimates, which remember it for hundreds of steps). `clip_grad_norm_(params,
# max_norm)` measures the norm of the *whole* gradient, all parameters as one vector, and if it exceeds
# `max_norm` scales every gradient by the same factor `max_norm / norm`: the direction is kept, only the length
# is capped. By hand:


# %%
def our_clip(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale all gradients by one factor so that their joint norm is at most max_norm; return the norm before."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).float()  # all gradients as one vector
    scale = min(1.0, max_norm / (total.item() + 1e-6))  # the 1e-6, as PyTorch's, guards against a zero norm
    for g in grads:
        g.mul_(scale)
    return total


# %% [markdown]
# It must do what PyTorch's `torch.nn.utils.clip_grad_norm_` does (the function `train_step` calls). The steps
# timed above recorded the norm before clipping; below them, the gradient of one batch clipped both ways to half
# its norm, so that this demonstration always clips:

# %%
print(
    f"gradient norms of the first {len(grad_norms)} training steps, before clipping "
    f"(grad_clip={train_config.grad_clip}):",
    " ".join(f"{n:.2f}" for n in grad_norms),
)
torch.manual_seed(SEED)
probe = library.GPT(model_config)
_, loss = probe(
    *get_batch(train_data, model_config.block_size, train_config.batch_size, torch.Generator().manual_seed(SEED))
)
loss.backward()
before = [p.grad.clone() for p in probe.parameters()]
flat_before = torch.cat([g.flatten() for g in before])
max_norm = 0.5 * flat_before.norm().item()
returned = torch.nn.utils.clip_grad_norm_(probe.parameters(), max_norm)
theirs = torch.cat([p.grad.flatten() for p in probe.parameters()])
for p, g in zip(probe.parameters(), before, strict=True):
    p.grad = g.clone()  # the unclipped gradient again, for our function
ours_norm = our_clip(list(probe.parameters()), max_norm)
after = torch.cat([p.grad.flatten() for p in probe.parameters()])
print(
    f"norm {returned:.3f} -> clipped to {after.norm():.3f}; "
    f"cosine(before, after) = {F.cosine_similarity(flat_before.double(), after.double(), dim=0):.4f}"
)
torch.testing.assert_close(ours_norm, returned, rtol=1e-5, atol=0)  # float32 sums in a different order
torch.testing.assert_close(after, theirs, rtol=1e-5, atol=1e-9)

# %% [markdown]
# The clipped gradient points exactly where the original did (cosine 1): clipping changes the step's length,
# never its direction. In the first steps of the stored run every norm is above the cap of 1 (up to 4.0, still
# 1.24 at step 22), so clipping shortens them all; after training the norms sit around the cap (section 5).
# Shortening every step alike would matter little anyway: Adam divides each update by a running estimate of the
# gradient's size, so scaling every gradient by the same factor leaves its steps unchanged. What clipping guards
# against is the odd step whose norm is many times its neighbours' (this short, well-behaved run has none): it is
# cut down to the cap instead of dominating the update and Adam's memory of it.
#
# **The training loop.** Lesson 01 wrote the optimisation loop: batch, forward, backward, step. With the three
# pieces above it becomes the loop every GPT in this course is trained with: seed, model, AdamW over our decay
# groups (with the `betas` of the config and PyTorch's fused kernel, as `make_optimizer` builds it), and at every
# step a fresh batch from a seeded generator, the scheduled learning rate, forward, backward, clipping, update.
# `scratchlm.training.train(config)` runs exactly this loop (each step one `train_step`), plus what a real run
# needs around it: evaluations, checkpoints, a progress bar. So a few steps of ours and of `train`, from the same
# seed, must end in the same weights:

# %%
check_config = preset(RUN, max_iters=pick(smoke=5, cpu=20, gpu=20), progress=False)
torch.manual_seed(check_config.seed)  # model initialisation, as train() seeds it
by_hand = library.GPT(check_config.model_config(V)).to(device).train()
optimizer = torch.optim.AdamW(
    our_param_groups(by_hand, check_config.weight_decay),
    lr=check_config.learning_rate,
    betas=check_config.betas,
    fused=device.type in ("cpu", "cuda"),  # one kernel for all parameters, as make_optimizer chooses
)
batches = torch.Generator().manual_seed(check_config.seed)  # train() draws its batches from such a generator
for step in range(check_config.max_iters):
    x, y = get_batch(train_data, check_config.model.block_size, check_config.batch_size, batches, device)
    for group in optimizer.param_groups:
        group["lr"] = our_lr(step, check_config)
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(device, check_config.dtype):  # bfloat16 on capable GPUs, nothing on a CPU
        _, loss = by_hand(x, y)
    loss.backward()
    our_clip(list(by_hand.parameters()), check_config.grad_clip)
    optimizer.step()
from_library = train(check_config).model
tolerance = dict(rtol=1e-4, atol=1e-5) if device.type == "cpu" else dict(rtol=2e-2, atol=2e-3)  # GPU: bf16
for (name, a), (_, b) in zip(by_hand.state_dict().items(), from_library.state_dict().items(), strict=True):
    torch.testing.assert_close(a, b, **tolerance, msg=name)
print(f"{check_config.max_iters} steps by hand and with train(): the same weights (last loss {loss.item():.3f})")

# %% [markdown]
# The weights agree to float32 rounding (our clipping sums the squares in another order than PyTorch's). From
# here on the lesson trains with `train`.
#
# ## 5 · Training on Tiny Shakespeare
#
# All of the above is in `scratchlm.training.train(config)`: batches from a seeded generator, AdamW with the
# decay groups, `lr_at`, clipping, bfloat16 autocast on GPUs that support it (every step one `train_step`),
# an evaluation of train and val loss every `eval_interval` steps on fixed batches (`estimate_loss`), and a
# checkpoint at every evaluation. A `TrainConfig` holds the model's `GPTConfig` (`train_config.model`) beside
# the settings of the run; `preset(name, n_embd=96, max_iters=500)` changes fields of either by name. The presets are
# sizes for three budgets:
#
# - `preset("gpu")`: the classic character-level configuration, 6 layers, 6 heads, 384 channels, a context of
#   256, batch 64, dropout 0.2, 5000 steps (10.8 M parameters). On a GPU it should end near a validation loss
#   of 1.48, the reference for this configuration (not measured in the CPU run stored with this notebook).
# - `preset("cpu")`: the best recipe a sweep found for the wall-clock time of the usual small CPU recipe (4
#   layers, 128 channels, 2000 steps at a learning rate of 1e-3 decaying to 1e-4: a validation loss of 1.89 in
#   about 100 s on a 2-core CPU). Two levers carried it. The learning rate: 7e-3, decaying to 0, is worth 0.13
#   nats on its own. And the width: a model of 80 channels (0.32 M parameters instead of 0.81 M) takes 3500 steps
#   in the time the wider one takes 2000. A model this small sees far too little text for its size in 100 s, so
#   more steps beat more width. With a warmup of 300 steps (which halved the spread between seeds) the recipe
#   reaches about 1.69 to 1.70 (`bench/README.md` has the sweep, its commands and three seeds). Its settings are
#   printed below.
# - `preset("smoke")`: a few seconds, for CI.
#
# This notebook trains the preset of its mode:

# %%
settings = {**vars(train_config.model), **vars(train_config)}  # the model's fields and the run's, by name
print(
    {
        k: settings[k]
        for k in (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "dropout",
            "batch_size",
            "max_iters",
            "learning_rate",
            "min_lr",
            "warmup_iters",
            "weight_decay",
            "grad_clip",
            "eval_interval",
        )
    }
)
result = train(train_config)

# %%
metrics = result.metrics
final = metrics[-1]
fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
window = max(1, len(result.step_losses) // 50)
smoothed = torch.tensor(result.step_losses).unfold(0, window, 1).mean(dim=1)
ax.plot(
    range(window - 1, len(result.step_losses)),
    smoothed,
    color="0.75",
    lw=1,
    label=f"training batch loss ({window}-step average)",
)
ax.plot([m["step"] for m in metrics], [m["train_loss"] for m in metrics], "o-", label="train loss (eval)")
ax.plot([m["step"] for m in metrics], [m["val_loss"] for m in metrics], "s-", label="val loss (eval)")
ax.set(xlabel="step", ylabel="cross-entropy (nats per character)", title=f'train(preset("{RUN}"))')
ax.grid(alpha=0.3)
ax.legend()
plt.show()
load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
print(
    f"final val loss {final['val_loss']:.3f} (train {final['train_loss']:.3f}) after {final['step']} steps "
    f'of preset("{RUN}"), {model.num_parameters():,} parameters, seed {train_config.seed}, '
    f"{final['tokens']:,} training tokens = {final['tokens'] / len(train_data):.2f} passes over the training text"
)
print(
    f"device={device.type} threads={torch.get_num_threads()}{load}: {final['elapsed_s']:.0f} s wall time, "
    f"{final['tokens_per_s']:,.0f} tokens/s in the last interval"
)

# %% [markdown]
# And the gradient norm of the trained model on a few training batches, to set against the norms of the first
# steps (section 4):

# %%
late_norms = []
for batch in range(5):
    net_x, net_y = get_batch(
        train_data,
        model_config.block_size,
        train_config.batch_size,
        torch.Generator().manual_seed(SEED + 10 + batch),
        device,
    )
    _, loss = result.model(net_x, net_y)
    loss.backward()
    late_norms.append(torch.nn.utils.clip_grad_norm_(result.model.parameters(), float("inf")).item())  # measure only
    result.model.zero_grad(set_to_none=True)
print(
    f"gradient norm after training: {' '.join(f'{n:.2f}' for n in late_norms)} "
    f"(first steps: {' '.join(f'{n:.2f}' for n in grad_norms[:5])}; grad_clip={train_config.grad_clip})"
)

# %% [markdown]
# The loss fell a long way, but the gradient norm need not: on batches of a few thousand tokens much of the
# gradient is sampling noise, and that does not shrink as the model improves. Whether the trained model's
# norms sit above or below `grad_clip` depends on the preset; in the stored CPU run four of the five are below
# it, so at the end of training clipping only stands guard against the odd outlier batch.

# %%
assert all(math.isfinite(m["val_loss"]) for m in metrics)
assert final["val_loss"] < metrics[0]["val_loss"]
if MODE == "cpu":
    assert final["val_loss"] < 1.75, final["val_loss"]
if MODE == "gpu":
    assert final["val_loss"] < 1.6, final["val_loss"]

# %% [markdown]
# The evaluated train and val losses fall together at first and part in the second half: by the end the model
# has read the training text a few times over and fits it somewhat better than text it has never seen. The
# gap is still small next to what the model learned (the `gpu` preset, much bigger and trained much longer,
# needs its dropout to keep that gap in check). For comparison, lesson 01's bigram model ended at a val loss of
# about 2.48.
#
# ## 6 · Sampling: temperature, top-k, top-p
#
# A model gives the logits of the next token; a sampler turns them into one token, appends it, and asks again.
# Three knobs shape the distribution it draws from, each a few lines on a `(B, V)` tensor of logits:
#
# - **Temperature** `τ` divides the logits: `softmax(z / τ)`. Below 1 it sharpens the distribution, above 1 it
#   flattens it, and as `τ → 0` all the mass goes to the most likely token (greedy decoding, taken as `argmax`).
# - **Top-k** keeps the `k` most likely tokens: every logit below the `k`-th largest becomes `−∞`, which
#   softmax turns into probability 0 (ties with the `k`-th are kept).
# - **Top-p** (nucleus) keeps the smallest set of most likely tokens whose probabilities add up to at least `p`.
#   Sort the probabilities in decreasing order; a token is dropped when the tokens ranked above it already reach
#   `p`. The first token always stays, so the set is never empty, and its size adapts: few candidates when the
#   model is sure, many when it is not.


# %%
def our_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits (B, V) for sampling at `temperature` > 0: the maximum shifted to 0 (so a tiny temperature sends
    the others to -inf, never to nan), then divided."""
    return (logits - logits.amax(dim=-1, keepdim=True)) / temperature


def our_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (B, V) with every entry below the k-th largest of its row set to -inf."""
    kth = logits.sort(dim=-1, descending=True).values[:, k - 1 : k]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def our_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits (B, V) with every token outside the nucleus of mass p set to -inf."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)  # in decreasing order
    mass_above = probs.cumsum(dim=-1) - probs  # the probability of the tokens ranked above each one
    drop_sorted = mass_above >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


# %% [markdown]
# The library has the two filters in one function, `scratchlm.generation.filter_logits(logits, top_k, top_p)`
# (top-k first when both are given). Ours must agree with it exactly, on random logits of several shapes and
# on every `k` and `p` tried:

# %%
logits_check = torch.randn(6, V, generator=torch.Generator().manual_seed(SEED)) * 3
for k in (1, 2, 5, V):
    assert torch.equal(our_top_k(logits_check, k), filter_logits(logits_check, top_k=k)), k
for p in (0.05, 0.5, 0.9, 0.99):
    assert torch.equal(our_top_p(logits_check, p), filter_logits(logits_check, top_p=p)), p
    assert torch.equal(our_top_p(our_top_k(logits_check, 10), p), filter_logits(logits_check, top_k=10, top_p=p))
print("our top-k and top-p filters = filter_logits, on every k and p tried")

# %% [markdown]
# Here is one next-token distribution of the trained model and what each knob does to it. From here on the
# lesson uses the library's `filter_logits`.

# %%
net = result.model.eval()
prompt = "ROMEO:\nI will "
with torch.no_grad():
    next_logits = net(torch.tensor([tokenizer.encode(prompt)], device=device))[0][:, -1, :].float().cpu()  # (1, V)
TOP_K, TOP_P, SHOWN = 5, 0.9, 20
order = next_logits[0].argsort(descending=True)[:SHOWN]
labels = [visible(tokenizer.decode([i])) for i in order.tolist()]  # ␣ for a space, ⏎ for a newline
panels = {
    "temperature": {f"T = {t}": F.softmax(our_temperature(next_logits, t), dim=-1) for t in (0.5, 1.0, 2.0)},
    "top-k": {
        "T = 1": F.softmax(next_logits, dim=-1),
        f"top_k = {TOP_K}": F.softmax(filter_logits(next_logits, top_k=TOP_K), dim=-1),
    },
    "top-p": {
        "T = 1": F.softmax(next_logits, dim=-1),
        f"top_p = {TOP_P}": F.softmax(filter_logits(next_logits, top_p=TOP_P), dim=-1),
    },
}
fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained", sharey=True)
for ax, (title, dists) in zip(axes, panels.items(), strict=True):
    width = 0.8 / len(dists)
    for j, (name, probs) in enumerate(dists.items()):
        ax.bar([i + (j - (len(dists) - 1) / 2) * width for i in range(SHOWN)], probs[0, order], width, label=name)
    ax.set_xticks(range(SHOWN), labels)
    ax.set(title=f"{title}: next character after {prompt!r}", xlabel=f"the {SHOWN} most likely characters")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
axes[0].set_ylabel("probability")
plt.show()

probs = F.softmax(next_logits, dim=-1)[0]
kept_k = torch.isfinite(filter_logits(next_logits, top_k=TOP_K))[0]
kept_p = torch.isfinite(filter_logits(next_logits, top_p=TOP_P))[0]
print(
    f"top_k={TOP_K} keeps {kept_k.sum().item()} characters ({probs[kept_k].sum():.0%} of the mass); "
    f"top_p={TOP_P} keeps {kept_p.sum().item()} ({probs[kept_p].sum():.0%} of the mass)"
)
assert kept_k.sum() == TOP_K and set(kept_k.nonzero().flatten().tolist()) == set(order[:TOP_K].tolist())
assert probs[kept_p].sum() >= TOP_P and probs[kept_p].sum() - probs[kept_p].min() < TOP_P  # the smallest such set

# %% [markdown]
# Temperature reshapes the whole distribution without removing anything; top-k and top-p cut its tail to
# zero and renormalise what is left, so the kept tokens all become a little more likely.
#
# **The sampling loop.** Generating is then: run the model on the context (at most its last `block_size`
# tokens: there are no positions beyond), take the logits of the last position, temperature, filters, softmax,
# one draw from a seeded generator, append, repeat. That is `scratchlm.generation.generate`, which we check
# token for token with the same seed. One difference in how it works, not in what it returns: by default
# `generate` keeps the keys and values of the tokens it has already processed (a *KV cache*, lesson 09), so that
# each new token costs one position instead of the whole context. `use_cache=False` turns that off and makes it
# exactly the loop below; this lesson passes it everywhere, since the cache is lesson 09's subject.


# %%
@torch.no_grad()
def our_generate(model: nn.Module, ids: torch.Tensor, n_new: int, temperature: float = 1.0, **filters) -> torch.Tensor:
    """Extend the 1-D prompt `ids` by `n_new` tokens sampled at `temperature` with `filter_logits`'s filters."""
    generator = torch.Generator(device=ids.device).manual_seed(SEED)
    for _ in range(n_new):
        logits = model(ids[None, -model.config.block_size :])[0][:, -1, :].float()  # (1, V)
        logits = filter_logits(our_temperature(logits, temperature), **filters)
        next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)  # (1, 1)
        ids = torch.cat([ids, next_id[0]])
    return ids


check_prompt = torch.tensor(tokenizer.encode("ROMEO:\n"), device=device)
for kwargs in ({"temperature": 1.0}, {"temperature": 0.7, "top_k": TOP_K}, {"top_p": TOP_P}):
    n_check = model_config.block_size + 10  # past block_size, so that the context window slides
    assert torch.equal(
        our_generate(net, check_prompt, n_check, **kwargs),
        generate(net, check_prompt, n_check, seed=SEED, use_cache=False, **kwargs),
    ), kwargs
print("our sampling loop = generate(..., use_cache=False), token for token")

# %% [markdown]
# Now whole samples, every one from the same prompt and the same seed, so that only the sampling rule differs. A
# crude measure of quality next to each: the share of generated words that occur somewhere in the training text.

# %%
train_text = tokenizer.decode(train_data.tolist())
known_words = set(re.findall(r"[A-Za-z']+", train_text))
settings = {
    "greedy (temperature 0)": {"temperature": 0.0},
    "temperature 0.5": {"temperature": 0.5},
    "temperature 1.0": {"temperature": 1.0},
    "temperature 1.5": {"temperature": 1.5},
    f"top_k = {TOP_K}": {"top_k": TOP_K},
    f"top_p = {TOP_P}": {"top_p": TOP_P},
}
prompt_ids = torch.tensor(tokenizer.encode("ROMEO:\n"), device=device)
NEW_TOKENS = pick(smoke=60, cpu=250, gpu=250)
for name, kwargs in settings.items():
    out = generate(net, prompt_ids, max_new_tokens=NEW_TOKENS, seed=SEED, use_cache=False, **kwargs)
    sample = tokenizer.decode(out[len(prompt_ids) :].tolist())
    words = re.findall(r"[A-Za-z']+", sample)
    real = sum(w in known_words for w in words) / max(1, len(words))
    print(f"--- {name}: {real:.0%} of {len(words)} words are in the training text ---\nROMEO:\n{sample}\n")
again = generate(net, prompt_ids, max_new_tokens=NEW_TOKENS, seed=SEED, top_p=TOP_P, use_cache=False)
assert torch.equal(again, out), "the same seed gives the same sample"

# %% [markdown]
# Greedy decoding takes the most likely character every time and soon falls into a loop, repeating one likely
# phrase. Low temperature gives safe, common words; high temperature invents words and loses the layout. Top-k
# and top-p, at temperature 1, sit in between: they remove the unlikely characters behind most misspellings
# (compare their share of real words with plain sampling's) and keep the variety that greedy decoding loses.
# Because the seed is the same, the top-p sample begins exactly like plain sampling at temperature 1, until the
# first character that the nucleus cut changes.
#
# ## 7 · Checkpoints: save, load, resume
#
# `train` wrote a checkpoint to `OUT_DIR` at every evaluation: the weights, the model config, the AdamW state,
# the training config, the tokenizer, the step, every random-number generator's state and the metrics so far.
# `checkpoint.load` reads it back (verifying a checksum), and `build_model` rebuilds the model:

# %%
ckpt = checkpoint.load(OUT_DIR)
restored = ckpt.build_model(device)
restored_tokenizer = ckpt.build_tokenizer()
print(f"{ckpt.path.name}: step {ckpt.step}, {len(ckpt.metrics)} metrics records, model {ckpt.gpt_config()}")
x_check, _ = get_batch(val_data, model_config.block_size, 4, torch.Generator().manual_seed(SEED), device)
with torch.no_grad():
    assert torch.equal(restored(x_check)[0], net(x_check)[0])
assert restored_tokenizer.encode(train_text[:1000]) == tokenizer.encode(train_text[:1000])

# %% [markdown]
# The rebuilt model gives bit-identical logits. For sampling alone the optimiser state is dead weight:
# `checkpoint.save` without an optimizer writes the weights, config and tokenizer only, and `load_model` returns
# the pair you need to generate.

# %%
weights_only = checkpoint.save(Path(OUT_DIR) / "weights-only.pt", net, tokenizer=tokenizer)
sampler, sampler_tokenizer = checkpoint.load_model(weights_only, device)
full_mb, small_mb = ckpt.path.stat().st_size / 1e6, weights_only.stat().st_size / 1e6
print(
    f"training checkpoint {full_mb:.2f} MB, weights only {small_mb:.2f} MB ({full_mb / small_mb:.1f}x: "
    "AdamW keeps two moments per parameter)"
)
assert torch.equal(
    generate(sampler, prompt_ids, 30, seed=SEED, use_cache=False),
    generate(net, prompt_ids, 30, seed=SEED, use_cache=False),
)

# %% [markdown]
# The training checkpoint is about three times the weights: AdamW stores a running mean and a running mean
# square of every gradient.
#
# **Resuming** continues a run as if it had never stopped: the same config with `resume=True`, and a larger
# `max_iters`. Keep `lr_decay_iters` at the original run's end, so that the schedule continues where it was
# (flat at `min_lr`) rather than restarting a longer cosine. The `cpu` preset decays all the way to 0, and at a
# learning rate of 0 more steps learn nothing, so the continuation raises `min_lr` to a twentieth of the peak:
# the schedule of the steps already taken is unchanged, the new ones run at that small constant rate.

# %%
MORE_STEPS = pick(smoke=20, cpu=250, gpu=500)
resume_config = preset(
    RUN,
    out_dir=OUT_DIR,
    resume=True,
    max_iters=train_config.max_iters + MORE_STEPS,
    lr_decay_iters=train_config.decay_iters,
    min_lr=train_config.learning_rate / 20,
)
resumed = train(resume_config)
print(f"{'step':>6} | {'train':>6} | {'val':>6} | {'lr':>8} |")
for m in resumed.metrics[-4:]:
    marker = "  <- resumed" if m["step"] > train_config.max_iters else ""
    print(f"{m['step']:>6} | {m['train_loss']:>6.3f} | {m['val_loss']:>6.3f} | {m['lr']:>8.2e} |{marker}")

# %%
assert resumed.metrics[: len(metrics)] == metrics, "the old records come back from the checkpoint unchanged"
assert resumed.metrics[-1]["step"] == train_config.max_iters + MORE_STEPS
assert all(m["lr"] == resume_config.min_lr for m in resumed.metrics[len(metrics) :])
assert len(resumed.step_losses) == train_config.max_iters + MORE_STEPS
shutil.rmtree(OUT_DIR)  # this run's checkpoints are not needed any more: leave no folder behind in the temp dir

# %% [markdown]
# The metrics carry on from the first run's last step, with its records intact, and the new steps run at
# the new `min_lr`. Because the checkpoint also holds the random states, on a CPU a run of N steps, resumed for M more,
# gives exactly the weights of one run of N + M steps (`tests/test_training.py` checks this).
#
# ## 8 · GPT-2: the same class, OpenAI's weights
#
# Our parameter names are GPT-2's, so Hugging Face's `GPT2LMHeadModel` and our `GPT` convert into each other
# (`scratchlm.hf`, which needs the `transformers` package). The one real difference: HF stores its Linear
# layers as `Conv1D`, with the weight transposed. The round trip on a small, randomly initialised model, with
# every weight randomised so that nothing matches by accident:

# %%
online = False
try:
    socket.create_connection(("huggingface.co", 443), timeout=2).close()
    online = True
except OSError:
    os.environ["HF_HUB_OFFLINE"] = "1"  # offline: read the HF cache only, fail at once rather than retry

have_transformers = importlib.util.find_spec("transformers") is not None
if have_transformers:
    from scratchlm.hf import from_hf, from_pretrained_gpt2, to_hf

    small = library.GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=64)).eval()
    with torch.no_grad():
        for p in small.parameters():
            nn.init.normal_(p, std=0.2)
    hf_model = to_hf(small)
    back = from_hf(hf_model)
    idx = torch.randint(V, (3, 32), generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(idx).logits, small(idx)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(back(idx)[0], small(idx)[0], atol=0, rtol=0)
    print("ours   transformer.h.0.attn.c_attn.weight", tuple(small.transformer.h[0].attn.c_attn.weight.shape))
    print("HF     transformer.h.0.attn.c_attn.weight", tuple(hf_model.transformer.h[0].attn.c_attn.weight.shape))
    print("ours -> HF: the same logits; HF -> ours: identical logits")
else:
    print("`transformers` is not installed (pip install transformers): skipping the Hugging Face round trip")

# %% [markdown]
# The weights are the same numbers in transposed matrices, and both directions compute the same function.
#
# With an internet connection (or the weights in the Hugging Face cache) the same converter loads OpenAI's GPT-2
# 124M into the library's `GPT`, and the state dict moves on into this lesson's own class unchanged. The
# tokenizer is GPT-2's byte-level BPE from lesson 05. Offline, the cell says so and moves on.

# %%
if have_transformers and MODE != "smoke":
    try:
        gpt2 = from_pretrained_gpt2("gpt2")
        with torch.device("meta"):
            our_gpt2 = GPT(gpt2.config)
        our_gpt2.load_state_dict(gpt2.state_dict(), assign=True)  # this lesson's class, OpenAI's weights
        our_gpt2.lm_head.weight = our_gpt2.transformer.wte.weight  # assign=True replaced the tied tensor
        our_gpt2, gpt2 = our_gpt2.to(device).eval(), gpt2.to(device)
        from scratchlm.tokenizers import BPETokenizer

        bpe = BPETokenizer.from_pretrained("r50k_base")
        start = torch.tensor(bpe.encode("The meaning of a language model is"), device=device)
        with torch.no_grad():
            torch.testing.assert_close(our_gpt2(start[None])[0], gpt2(start[None])[0])
        out = generate(our_gpt2, start, max_new_tokens=30, top_k=50, seed=SEED, use_cache=False)
        print(
            f"GPT-2 124M ({our_gpt2.config.n_layer} layers, {gpt2.num_parameters():,} parameters) "
            f"in the lesson's GPT class:\n{bpe.decode(out.tolist())}"
        )
    except Exception as error:  # offline, no cache, or the download failed
        print(
            f"GPT-2 weights not available here ({type(error).__name__}); skipped. Online, this cell "
            "downloads about 550 MB from huggingface.co."
        )
else:
    print("skipped in smoke mode" if MODE == "smoke" else "skipped: `transformers` is not installed")

# %% [markdown]
# ## Where this lesson stands on the ladder
#
# Every lesson's val loss so far came from its own budget, so they cannot be set side by side. The ladder
# (`scratchlm.ladder`) trains every model of the course with one recipe: the same training text, batches,
# schedule and seeds, each model scored in bits per byte on the same held-out text. This lesson's rung, `gpt`, is
# the library's `GPT` at the ladder's sizes: lesson 03's blocks, stacked, with this lesson's embeddings, tied
# head, initialisation and optimiser recipe. We train it once more here (seed 0) and show it beside the
# committed ladder (seeds 0 and 1):

# %%
from scratchlm.ladder import run_rung, show_ladder

gpt_rung = run_rung("gpt", seed=0)
show_ladder(highlight=["gpt"], measured=[gpt_rung])
assert math.isfinite(gpt_rung["bits_per_byte"]) and gpt_rung["bits_per_byte"] < 8

# %% [markdown]
# The fresh run gives 2.580 bits per byte, 0.012 below the committed seed 0 (2.592, measured on 2026-12-02 on an
# AMD EPYC): with the same seed it did not reproduce the committed run here (lesson 03's one-block rungs did, to
# the third decimal), a difference not traced in this lesson and half the rung's seed spread (± 0.024). On the ladder's budget, 2000 steps of 768 characters, the full GPT is 0.02 bits per byte
# better than lesson 03's single block with residuals and LayerNorm (2.616 ± 0.024 against 2.638 ± 0.004, mean
# and half the spread of two seeds): a gap no larger than the GPT's own seed spread, bought with 3.4 times the
# parameters and three times the training time. At this budget depth has not paid for itself yet; it does with
# longer training. The `cpu` preset of section 5 (3500 steps of the same model) ends at a val loss of 1.674 nats
# per character, about 2.42 bits per byte (an estimate on 20 random batches of the same held-out characters),
# below every rung of lessons 01–09 (lesson 13's modern recipes go further).
#
# ## Summary
#
# - A GPT is **embeddings in** (a token table plus a position table, added), a stack of **blocks**, a final
#   **LayerNorm**, and a **tied head** that scores every token by its dot product with the token's embedding.
#   Our class loads the library's weights and reproduces its logits and loss.
# - **GPT-2's initialisation** (`N(0, 0.02²)`, residual projections divided by `√(2·n_layer)`) starts the loss at
#   about `ln V` and keeps the residual stream at the same size at every depth; without the scaling it grows
#   with depth.
# - **Parameters**: `V·C + T·C + L·(12C² + 13C) + 2C`, checked against the modules for four models up to GPT-2.
# - **Compute**: about `6N + 12·L·T·C` FLOPs per training token, counting the masked half of causal attention
#   (the course's one convention, `scratchlm.scaling.flops`; `6N + 6·L·T·C` without it); MFU compares the
#   achieved rate with the device's (here estimated) peak: 25.8% of a 1024 × 1024 matmul's speed for the `cpu`
#   preset on one thread in the stored run, at a load average of 3.0 (the rate and the peak estimate both move
#   with the load); the rest goes to everything that is not a large matmul.
# - **Optimisation**, each part written by hand and asserted equal to the library: AdamW decays matrices, not
#   vectors (`param_groups`); warmup then cosine decay (`lr_at`); gradient clipping caps the step's length
#   without changing its direction. Together they are the training loop, and `train` runs exactly that loop:
#   twenty steps of ours and of `train` end in the same weights.
# - **Training** is then one call, `train(preset(...))`, which logs train and val loss and writes checkpoints;
#   **sampling** trades correctness for variety with temperature, top-k and top-p, written by hand and equal to
#   `filter_logits`, in a sampling loop equal to `generate(..., use_cache=False)` (the KV cache is lesson 09's);
#   a **checkpoint** rebuilds the model bit for bit and resumes training exactly.
# - The same class runs **GPT-2's** weights: conversion to and from Hugging Face is a transpose of four matrices
#   per block.
#
# ## Exercises
#
# 1. **Untie the head.** Give `GPT` a separate `lm_head` (remove the tying line; initialise it like the rest),
#    train `preset("cpu")`'s sizes with it, and compare the parameter count and the final val loss. Is tying a
#    loss in quality, a gain, or neither, for a 65-character vocabulary? Why might the answer differ for GPT-2?
# 2. **MFU against size.** Use `time_training_steps` on `preset(RUN)` with `n_embd` 64, 128, 256 and 512 (and the
#    same for `batch_size`), and plot the MFU. Which operations dominate the time of the smallest model? (Try
#    `torch.profiler.profile`.)
# 3. **Temperature against quality.** For temperatures from 0.3 to 2.0, generate 20 samples each and measure
#    both the share of real words (as in section 6) and the number of distinct words. Plot the two against each
#    other: where is the best trade-off?
# 4. **Resume the wrong way.** Resume the run with `lr_decay_iters` left at `None`. Plot `lr_at` over the resumed
#    steps and the val loss; explain what happens at the first resumed step.
