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
# # 09 · KV cache, multi-query and grouped-query attention
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/09_kv_cache_gqa.ipynb)
#
# Every sample so far came from the simple loop of lesson 01, which `generate(..., use_cache=False)` still is:
# run the whole model on the whole context for every new token. The 500th new token then costs a forward pass
# over 500 tokens and more, and almost all of that work recomputes numbers that the previous step already had.
# The library's `generate` avoids that by default (`use_cache=True`, for the library's GPT), which is why the
# lessons before this one asked for `use_cache=False` or said that a cache was at work. This lesson opens that
# box: it finds exactly which numbers can be kept, keeps them (the **KV cache**), and then shrinks what is kept:
# **multi-query** and **grouped-query attention** let several query heads share one key and value head, which
# divides the cache by up to `n_head`.
#
# **What you will build**
#
# 1. a measurement of what generation recomputes, and the argument for why only keys and values need keeping;
# 2. a KV cache for one attention layer, from scratch, checked against full recomputation, then a whole GPT
#    generating with it;
# 3. the library's `KVCache`: greedy output identical to generation without a cache, and a speed benchmark
#    against the number of generated tokens;
# 4. `n_kv_head`: MHA, GQA and MQA, the cache-size formula checked against measured caches, and a table of
#    cache memory for a few model sizes;
# 5. an experiment: validation loss of MHA, GQA and MQA trained on the same budget, against their cache size;
# 6. converting a trained MHA model to GQA by mean-pooling its key and value heads, and a short fine-tune.

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
configure_threads()  # the course's one thread policy
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %% [markdown]
# The rest of the imports, and the data: Tiny Shakespeare with its character tokenizer, used here only to
# give prompts real characters (sections 1–4 use randomly initialised models: a cache must reproduce *any*
# model's output, trained or not).

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import torch.nn.functional as F

from scratchlm.data import load_splits
from scratchlm.generation import generate
from scratchlm.model import GPT, GPTConfig

SEED = 1337
set_seed(SEED)
tokenizer = load_splits("tinyshakespeare").tokenizer  # lesson 01's character tokenizer of Tiny Shakespeare
VOCAB = tokenizer.vocab_size
prompt = torch.tensor([tokenizer.encode("ROMEO:\nWhat light")], device=device)  # (1, 17)
WHERE = device.type + (f", {torch.get_num_threads()} thread" if device.type == "cpu" else "")  # for the results
print(f"vocabulary {VOCAB}, prompt of {prompt.size(1)} tokens")

# %% [markdown]
# ## 1 · What generation recomputes
#
# Take a small random GPT and a sequence. Run it on the first `t` tokens, then on the first `t + 1`, as
# `generate` does in two consecutive steps, and compare the logits at the positions both runs share.

# %%
torch.manual_seed(SEED)
small = GPT(GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=64)).to(device).eval()
seq = torch.tensor([tokenizer.encode("But, soft! what light through yonder window breaks?")], device=device)
t = 20
with torch.no_grad():
    logits_t, _ = small(seq[:, :t])
    logits_t1, _ = small(seq[:, : t + 1])
torch.testing.assert_close(logits_t1[:, :t], logits_t)
print(
    f"step with {t} tokens and step with {t + 1}: the first {t} positions agree to "
    f"{(logits_t1[:, :t] - logits_t).abs().max():.1e}"
)

# %% [markdown]
# The first `t` positions come out the same (up to float rounding) because attention is causal: nothing at
# position `i` depends on a token after `i`. So each step recomputes, from scratch, every number of every
# earlier step, and uses only the last position's logits. With a prompt of $P$ tokens and $N$ new tokens,
# the model processes $\sum_{n=0}^{N-1}(P+n) = NP + N(N-1)/2$ token positions instead of $P + N - 1$.

# %%
P, N = prompt.size(1), 500
no_cache_positions = N * P + N * (N - 1) // 2
print(
    f"P={P}, N={N}: {no_cache_positions:,} positions recomputed vs {P + N - 1:,} needed "
    f"({no_cache_positions / (P + N - 1):.0f}x)"
)

# %% [markdown]
# What is the least we must keep to process only the new token? Follow position `i` through one block. Its
# query, its attention output, its MLP and its residual stream are used only to compute position `i`'s own
# output, which the earlier step has already turned into a token. The one way position `i` reaches a *later*
# position is through attention: a later query scores itself against $k_i$ and averages $v_i$. So per layer
# we keep the keys and values of every position seen so far, and for the new token we compute its q, k, v,
# append its k and v, and let its query attend to all of them. That store is the **KV cache**.
#
# ## 2 · A KV cache for one attention layer
#
# The library's `CausalSelfAttention` is lesson 03's fused layer: one `c_attn` makes q, k and v of every
# head, `c_proj` mixes the heads. Below, the same layer's weights are used with a cache. The cache is a pair
# of tensors `(B, H, T_past, D)` that grows by concatenation. The new chunk may hold several tokens (the
# whole prompt at the first step, the **prefill**), so the causal mask must line up with the *end* of the
# keys: new query `i` sits at absolute position `T_past + i` and may see keys `0 … T_past + i`.

# %%
from scratchlm.attention import CausalSelfAttention


class LayerCache:
    """Keys and values seen so far by one attention layer, (B, H, T_past, D) each; grows by concatenation."""

    def __init__(self):
        self.k = self.v = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


def attend_with_cache(attn: CausalSelfAttention, x_new: torch.Tensor, cache: LayerCache) -> torch.Tensor:
    """x_new (B, T_new, C): the next T_new positions. Returns their attention output (B, T_new, C)."""
    B, T_new, C = x_new.shape
    H = attn.n_head
    D = C // H
    q, k, v = attn.c_attn(x_new).split(C, dim=2)
    q, k, v = (t.view(B, T_new, H, D).transpose(1, 2) for t in (q, k, v))  # (B, H, T_new, D)
    k_all, v_all = cache.append(k, v)  # (B, H, T_past + T_new, D)
    T_all = k_all.size(2)
    T_past = T_all - T_new
    scores = q @ k_all.transpose(-2, -1) / math.sqrt(D)  # (B, H, T_new, T_all)
    # query i is at absolute position T_past + i: it sees keys 0 .. T_past + i
    visible = torch.arange(T_all, device=x_new.device) <= T_past + torch.arange(T_new, device=x_new.device)[:, None]
    y = F.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1) @ v_all  # (B, H, T_new, D)
    return attn.c_proj(y.transpose(1, 2).reshape(B, T_new, C))


attn = small.transformer.h[0].attn
x = torch.randn(2, 12, 64, device=device)
with torch.no_grad():
    full = attn(x)  # every position at once: the reference
    for chunks in ([5, 1, 1, 1, 1, 1, 1, 1], [3, 3, 3, 3], [12]):  # prefill 5 then one at a time, etc.
        cache, outputs, start = LayerCache(), [], 0
        for size in chunks:
            outputs.append(attend_with_cache(attn, x[:, start : start + size], cache))
            start += size
        torch.testing.assert_close(torch.cat(outputs, dim=1), full)
print(
    f"cached outputs equal full recomputation; cache after 12 tokens: k {tuple(cache.k.shape)}, "
    f"v {tuple(cache.v.shape)}"
)

# %% [markdown]
# Whether the 12 positions arrive at once, as a prefill of 5 followed by single tokens, or in chunks of 3, the
# outputs are those of the full layer. Here is the mask for a chunk of 3 new queries after 5 cached keys: the
# usual lower triangle, shifted right by the 5 past positions.

# %%
T_past, T_new = 5, 3
visible = torch.arange(T_past + T_new) <= T_past + torch.arange(T_new)[:, None]
for i, row in enumerate(visible.int().tolist()):
    print(f"query at position {T_past + i}: sees keys", "".join("■" if v else "·" for v in row))

# %% [markdown]
# A whole GPT needs one such cache per layer, and one more detail: a new token's position embedding is that
# of its absolute position, `T_past + i`, not `i`. Everything else in the block (LayerNorms, the MLP, the
# residual additions) acts on each position separately, so it runs on the new tokens alone.


# %%
@torch.no_grad()
def forward_with_cache(model: GPT, idx_new: torch.Tensor, caches: list[LayerCache]) -> torch.Tensor:
    """Logits (B, T_new, V) for the next T_new tokens, given the caches of the tokens before them."""
    T_past = 0 if caches[0].k is None else caches[0].k.size(2)
    pos = torch.arange(T_past, T_past + idx_new.size(1), device=idx_new.device)
    x = model.transformer.wte(idx_new) + model.transformer.wpe(pos)
    for block, cache in zip(model.transformer.h, caches, strict=True):
        x = x + attend_with_cache(block.attn, block.ln_1(x), cache)
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.transformer.ln_f(x))


@torch.no_grad()
def greedy_with_cache(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding: prefill the prompt, then feed one token at a time."""
    caches = [LayerCache() for _ in model.transformer.h]
    logits = forward_with_cache(model, idx, caches)  # prefill: the whole prompt in one call
    for _ in range(max_new_tokens):
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
        logits = forward_with_cache(model, next_id, caches)  # only the new token
    return idx


n_new = pick(smoke=16, cpu=small.config.block_size - prompt.size(1))  # learned positions stop at block_size
ours = greedy_with_cache(small, prompt, n_new)
reference = generate(small, prompt, n_new, temperature=0, use_cache=False)  # recomputes everything at every step
assert torch.equal(ours, reference)
print(repr(tokenizer.decode(ours[0].tolist())))

# %% [markdown]
# The same greedy tokens, token for token (in the default mode up to the end of the model's 64 positions). An
# untrained model repeats itself; the point is that both loops produce the *same* text, and that the only
# changes to the model were the attention layer and the position offset.
#
# ## 3 · The library's cache
#
# `scratchlm.kv_cache.KVCache` is the engineered version. Our cache grows by `torch.cat`, which copies the whole
# history at every step; `KVCache` allocates, per layer, `k` and `v` buffers of shape
# `(B, n_kv_head, max_len, D)` once and writes each new token's key and value in place, and its `length` says
# how many positions are filled. `GPT.forward(idx, cache=cache)` treats `idx` as the tokens at positions
# `cache.length …`, appends their keys and values in every layer and advances `length`. It must agree with
# ours, logits and cached keys alike:

# %%
from scratchlm.kv_cache import KVCache, kv_cache_bytes

cache = KVCache.for_model(small, batch_size=1)  # max_len defaults to the model's block_size
our_caches = [LayerCache() for _ in small.transformer.h]
with torch.no_grad():
    library_logits = [small(prompt, cache=cache)[0]]  # prefill
    our_logits = [forward_with_cache(small, prompt, our_caches)]
    for token in seq[:, :10].split(1, dim=1):  # then ten tokens, one at a time
        library_logits.append(small(token, cache=cache)[0])
        our_logits.append(forward_with_cache(small, token, our_caches))
torch.testing.assert_close(torch.cat(library_logits, dim=1), torch.cat(our_logits, dim=1))
for layer, ours_layer in enumerate(our_caches):
    torch.testing.assert_close(cache.k[layer][:, :, : cache.length], ours_layer.k)
    torch.testing.assert_close(cache.v[layer][:, :, : cache.length], ours_layer.v)
print(
    f"{cache.n_layer} layers, k and v each {tuple(cache.k[0].shape)} = (B, n_kv_head, max_len, D); "
    f"length {cache.length} of {cache.max_len}, {cache.nbytes:,} bytes allocated"
)

# %% [markdown]
# `generate(..., use_cache=True)`, the default, does what `greedy_with_cache` did: one prefill, then one token
# per step. `use_cache=False` recomputes the context at every step.
#
# **How much faster?** The benchmark model has the sizes of the `cpu` training preset (4 layers, 4 heads,
# `n_embd` 80; the cell prints them), with random weights: speed does not depend on the weights. One change:
# the preset's `block_size` is 64, and we want to generate 500 tokens after the prompt. A model with learned positions sees
# at most `block_size` tokens, so with 64 both loops would crop the context to 64 tokens and the cost we want to
# measure, re-reading a long prefix, would never appear. The benchmark model therefore has `block_size=1024`
# (only its position table grows). A forward hook on the model records the time at which each step's logits are
# ready, so one call of `generate` gives the time to the first, second, … N-th new token. The course's one timer,
# `scratchlm.timing.seconds_per_call`, times whole calls; for a time stamp per step the hook uses its other half,
# `synchronize`, which waits for a GPU to finish the step's work before the clock is read. On a CPU the threads
# are those `configure_threads()` chose in the setup cell (the `WHERE` string in the output says how many).

# %%
import numpy as np

from scratchlm.timing import synchronize
from scratchlm.training import PRESETS, preset

BENCH_PRESET = pick(smoke="smoke", cpu="cpu", gpu="gpu")
N_BENCH = pick(smoke=60, cpu=500)
REPEATS = pick(smoke=1, cpu=2)
bench_model = GPT(preset(BENCH_PRESET, block_size=1024).model_config(VOCAB)).to(device).eval()
assert prompt.size(1) + N_BENCH <= bench_model.config.block_size


def now() -> float:
    """The clock, read after the device has finished its queued work (a GPU runs asynchronously)."""
    synchronize(device)
    return time.perf_counter()


def time_to_each_token(model: GPT, use_cache: bool, n: int, repeats: int) -> tuple[np.ndarray, torch.Tensor]:
    """Seconds from the call of generate() to the logits of new token 1, 2, ... n (the fastest of `repeats`
    runs), and the generated ids."""
    best = None
    for _ in range(repeats):
        stamps = []
        hook = model.register_forward_hook(lambda *_, stamps=stamps: stamps.append(now()))
        try:
            start = now()
            out = generate(model, prompt, n, temperature=0, use_cache=use_cache)
        finally:
            hook.remove()
        run = np.array(stamps[:n]) - start
        if best is None or run[-1] < best[-1]:
            best = run
    return best, out


for use_cache in (True, False):  # warm-up
    generate(bench_model, prompt, 5, temperature=0, use_cache=use_cache)
t_cache, out_cache = time_to_each_token(bench_model, True, N_BENCH, REPEATS)
t_full, out_full = time_to_each_token(bench_model, False, N_BENCH, 1)  # the slow one: a single run
assert torch.equal(out_cache, out_full)
speedup = t_full[-1] / t_cache[-1]
load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
print(
    f"{BENCH_PRESET}-preset sizes (n_layer={bench_model.config.n_layer}, n_head={bench_model.config.n_head}, "
    f"n_embd={bench_model.config.n_embd}), block_size 1024, {bench_model.num_parameters() / 1e6:.2f}M parameters, "
    f"prompt {prompt.size(1)} tokens, greedy, {WHERE}, "
    f"load average {load:.1f}"
)
print(
    f"{N_BENCH} new tokens: with cache {t_cache[-1]:.2f} s ({N_BENCH / t_cache[-1]:.0f} tokens/s), "
    f"without {t_full[-1]:.2f} s ({N_BENCH / t_full[-1]:.0f} tokens/s): {speedup:.1f}x faster"
)

# %%
n = np.arange(1, N_BENCH + 1)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
smooth = 9  # steps: a running median, so that a step delayed by another process does not hide the trend
for times, label in ((t_full, "no cache (recompute the context)"), (t_cache, "KV cache")):
    ax1.plot(n, times, label=label)
    step_ms = 1e3 * np.diff(times, prepend=0.0)
    ax2.plot(n[smooth - 1 :], np.median(np.lib.stride_tricks.sliding_window_view(step_ms, smooth), axis=1), label=label)
ax1.set(
    xlabel="new tokens generated N",
    ylabel="seconds",
    title=f"total time to N tokens ({N_BENCH} tokens: {speedup:.1f}x)",
)
ax2.set(xlabel="new token n", ylabel="ms", yscale="log", title=f"time of step n (running median of {smooth})")
for ax in (ax1, ax2):
    ax.legend()
    ax.grid(alpha=0.3)
plt.show()
if MODE != "smoke":  # the goal; the tiny smoke model is all per-step overhead
    assert speedup >= 5, f"the KV cache is only {speedup:.1f}x faster"

# %% [markdown]
# Without a cache, step n runs the model on $P + n$ tokens, so its time grows with n (right) and the total
# grows quadratically (left). With the cache every step runs on one token; only its attention reads a longer
# cache, which for a model this small is a sliver of the work, so the step time stays flat and the total grows
# linearly: the longer the generation, the larger the speed-up. The step time of the cached loop is then mostly the
# fixed cost of launching a few dozen small operators from Python: that, not arithmetic, is what limits
# batch-1 decoding of a small model on a CPU.
#
# ## 4 · Fewer key/value heads: MQA and GQA
#
# The cache holds a key and a value per layer, per head, per position, for every sequence of the batch:
#
# $$\text{bytes} = 2 \cdot n_\text{layer} \cdot n_\text{kv\_head} \cdot D \cdot T \cdot B \cdot s,$$
#
# with $s$ the bytes per number (4 in float32, 2 in bfloat16). With ordinary multi-head attention (MHA)
# $n_\text{kv\_head} = n_\text{head}$, so $n_\text{kv\_head} \cdot D$ is the full width `n_embd`. During
# decoding, every step reads the whole cache, so its size sets both how many sequences fit in memory and how fast
# each step can be. **Multi-query attention** (MQA, Shazeer 2019) keeps `n_head` query heads but gives them one
# shared key head and one shared value head: the cache shrinks `n_head`-fold. **Grouped-query attention** (GQA,
# Ainslie et al. 2023) is the middle ground: `n_kv_head` key/value heads, each shared by a group of
# `n_head / n_kv_head` consecutive query heads. MHA and MQA are its two ends.
#
# In the library, `GPTConfig(n_kv_head=...)` sets it. `c_attn` still makes everything in one matrix product,
# now `n_head` query heads followed by `n_kv_head` key heads and `n_kv_head` value heads. Query head `h` reads
# key/value head `h // (n_head / n_kv_head)`. First as a loop over query heads, then vectorised by repeating
# each key/value head for its group, then against the library's layer:

# %%
gqa_config = GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
gqa_attn = CausalSelfAttention(gqa_config)
B, T, C = 2, 12, gqa_config.n_embd
H, H_kv, D = gqa_config.n_head, gqa_config.kv_heads, gqa_config.head_size
group = H // H_kv
x = torch.randn(B, T, C)
with torch.no_grad():
    q, k, v = gqa_attn.c_attn(x).split((H * D, H_kv * D, H_kv * D), dim=2)
    q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
    k, v = (t.view(B, T, H_kv, D).transpose(1, 2) for t in (k, v))  # (B, H_kv, T, D)

    # loop: query head h attends with key/value head h // group
    y_loop = torch.stack(
        [F.scaled_dot_product_attention(q[:, h], k[:, h // group], v[:, h // group], is_causal=True) for h in range(H)],
        dim=1,
    )
    # vectorised: give each query head a copy of its group's key/value head
    y_repeat = F.scaled_dot_product_attention(
        q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), is_causal=True
    )
    torch.testing.assert_close(y_repeat, y_loop)
    torch.testing.assert_close(gqa_attn.c_proj(y_repeat.transpose(1, 2).reshape(B, T, C)), gqa_attn(x))
mha_attn = CausalSelfAttention(GPTConfig(vocab_size=VOCAB, n_head=4, n_embd=64))
print(
    f"c_attn.weight: MHA {tuple(mha_attn.c_attn.weight.shape)}, GQA with {H_kv} key/value heads "
    f"{tuple(gqa_attn.c_attn.weight.shape)}; k and v per token: {2 * H * D} vs {2 * H_kv * D} numbers"
)

# %% [markdown]
# The copies made by `repeat_interleave` exist only inside the attention call; the cache stores the `n_kv_head`
# heads. (The library goes one step further: `F.scaled_dot_product_attention(..., enable_gqa=True)`, in PyTorch
# 2.5 and later, reads each shared head in place without copying it.)
#
# Now the promise that matters: for every kind of attention and both kinds of positions (learned, and the
# rotary embeddings of `pos_embedding="rope"`, which rotate q and k before they are cached), generation with the
# cache is generation without it. Greedy decoding must give the same tokens, and so must sampling with a seed;
# and the logits of prefill + one token at a time must match one forward pass over the whole sequence.

# %%
VARIANTS = {"MHA": 4, "GQA": 2, "MQA": 1}  # name -> n_kv_head, for n_head = 4
n_new = pick(smoke=16, cpu=64 - prompt.size(1))
print(f"{'positions':<10}{'attention':<10}{'n_kv_head':>10}{'cache bytes':>13}{'max |Δ logit|':>15}  same tokens")
for pos in ("learned", "rope"):
    for name, n_kv in VARIANTS.items():
        torch.manual_seed(SEED)
        model = (
            GPT(
                GPTConfig(
                    vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=64, pos_embedding=pos, n_kv_head=n_kv
                )
            )
            .to(device)
            .eval()
        )
        greedy = generate(model, prompt, n_new, temperature=0)
        assert torch.equal(greedy, generate(model, prompt, n_new, temperature=0, use_cache=False))
        sampled = generate(model, prompt, n_new, temperature=1.0, seed=0)
        assert torch.equal(sampled, generate(model, prompt, n_new, temperature=1.0, seed=0, use_cache=False))
        cache = KVCache.for_model(model, batch_size=1)
        with torch.no_grad():
            full, _ = model(sampled)
            steps = [model(sampled[:, : prompt.size(1)], cache=cache)[0]]
            steps += [model(token, cache=cache)[0] for token in sampled[:, prompt.size(1) :].split(1, dim=1)]
        stepwise = torch.cat(steps, dim=1)
        torch.testing.assert_close(stepwise, full)
        print(f"{pos:<10}{name:<10}{n_kv:>10}{cache.nbytes:>13,}{(stepwise - full).abs().max().item():>15.1e}  yes")

# %% [markdown]
# All six agree: the logits to float rounding, the tokens exactly. The cache of the MQA model is a quarter of
# the MHA model's. That size is the formula above; `kv_cache_bytes` computes it without building anything, and
# it must equal what `KVCache` actually allocates, for any batch size, length and dtype:

# %%
for n_kv in VARIANTS.values():
    config = GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=64, n_kv_head=n_kv)
    model = GPT(config)
    for batch_size, max_len, dtype in ((1, 64, torch.float32), (3, 100, torch.float32), (2, 50, torch.bfloat16)):
        cache = KVCache.for_model(model.to(dtype), batch_size, max_len)
        by_hand = 2 * config.n_layer * n_kv * config.head_size * max_len * batch_size * dtype.itemsize
        assert cache.nbytes == kv_cache_bytes(config, batch_size, max_len, dtype) == by_hand
print("KVCache.nbytes == kv_cache_bytes(...) == 2 · n_layer · n_kv_head · D · T · B · bytes, for every case")

# %% [markdown]
# What that means at realistic sizes: the cache for one sequence of 1024 tokens (batch 1), for the `cpu`
# preset's model, for GPT-2 small, and for a 7B-parameter model shaped like Llama 2 7B (32 layers, 32 heads of
# 128), each as MHA, GQA and MQA (GPT-2 and Llama 2 7B are MHA; the other rows are what they would need), and in
# the last column for a server's batch of 32 sequences of 4096 tokens.

# %%
# NBVAL_CHECK_OUTPUT
import dataclasses

MiB = 2**20
sizes = {  # name: (GPTConfig with n_kv_head=None, the GQA n_kv_head)
    "cpu preset": (PRESETS["cpu"].model_config(VOCAB), 2),
    "GPT-2 small": (GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), 4),
    "7B (Llama-2 shape)": (GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_embd=4096), 8),
}
CONTEXT, BATCH, LONG = 1024, 32, 4096
print(f"KV cache of one sequence of {CONTEXT} tokens, and (last column) of {BATCH} sequences of {LONG} tokens")
print(
    f"{'model':<20}{'attention':<10}{'n_kv_head':>10}{'float32 MiB':>13}{'bfloat16 MiB':>14}"
    f"{f'{BATCH} x {LONG}, bfloat16 GiB':>28}"
)
for model_name, (base_config, gqa_heads) in sizes.items():
    for name, n_kv in (("MHA", base_config.n_head), ("GQA", gqa_heads), ("MQA", 1)):
        config = dataclasses.replace(base_config, n_kv_head=n_kv)
        print(
            f"{model_name:<20}{name:<10}{n_kv:>10}{kv_cache_bytes(config, 1, CONTEXT) / MiB:>13.2f}"
            f"{kv_cache_bytes(config, 1, CONTEXT, torch.bfloat16) / MiB:>14.2f}"
            f"{kv_cache_bytes(config, BATCH, LONG, torch.bfloat16) / 2**30:>28.2f}"
        )

# %% [markdown]
# For the small models of this course the cache is a few MiB and does not matter. For the 7B shape, one
# 1024-token sequence needs 512 MiB in bfloat16 with MHA, and a batch of 32 sequences of 4096 tokens 64 GiB:
# five times the 13 GiB of its weights, and all of it read at every decoding step. GQA with 8 key/value heads
# divides that by 4, MQA by 32. That is why many recent open models (Llama 2 70B, Llama 3, Mistral) use GQA.
#
# ## 5 · What does sharing cost? Validation loss against cache size
#
# Fewer key/value heads means fewer distinct things each layer can look up. To see what it costs, train MHA,
# GQA and MQA on the same budget: the `cpu` preset (4 heads) with the same seed, the same batches and the same
# number of steps, changing only `n_kv_head`. (Smoke mode uses the tiny `smoke` preset with 4 heads instead of 2,
# so that all three variants exist.) The MHA run writes a checkpoint, which section 6 converts.

# %%
import shutil
import tempfile
from pathlib import Path

from scratchlm.training import train

TRAIN_PRESET = pick(smoke="smoke", cpu="cpu", gpu="gpu")
N_HEAD = 4
STEPS = pick(smoke=30, cpu=800, gpu=2000)
budget = dict(
    n_head=N_HEAD,
    max_iters=STEPS,
    eval_interval=STEPS // 4,
    eval_iters=pick(smoke=4, cpu=40, gpu=200),
    warmup_iters=pick(smoke=10, cpu=100, gpu=100),
    seed=SEED,
)  # this short run's own warmup
VARIANTS = {"MHA": N_HEAD, "GQA": N_HEAD // 2, "MQA": 1}
work_dir = Path(tempfile.mkdtemp(prefix="scratchlm-09-"))

runs = {}
for name, n_kv in VARIANTS.items():
    out_dir = str(work_dir / name) if name == "MHA" else None
    runs[name] = train(preset(TRAIN_PRESET, n_kv_head=n_kv, out_dir=out_dir, **budget))

# %%
train_config = runs["MHA"].config
model_config = train_config.model
print(
    f"{TRAIN_PRESET} preset, n_layer={model_config.n_layer} n_head={N_HEAD} n_embd={model_config.n_embd} "
    f"block_size={model_config.block_size}, {STEPS} steps of {train_config.tokens_per_step} tokens, seed {SEED}, "
    f"{WHERE}"
)
print(f"{'variant':<8}{'n_kv_head':>9}{'parameters':>12}{'cache B/token':>15}{'val loss':>10}{'train s':>9}")
cache_per_token = {}
for name, run in runs.items():
    cache_per_token[name] = kv_cache_bytes(run.model.config, 1, 1)
    print(
        f"{name:<8}{run.model.config.kv_heads:>9}{run.model.num_parameters():>12,}{cache_per_token[name]:>15,}"
        f"{run.final_val_loss:>10.3f}{run.metrics[-1]['elapsed_s']:>9.0f}"
    )

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
window = max(1, STEPS // 20)
for name, run in runs.items():
    losses = np.convolve(run.step_losses, np.ones(window) / window, mode="valid")
    ax1.plot(np.arange(window, len(run.step_losses) + 1), losses, label=name)
    ax2.plot(cache_per_token[name], run.final_val_loss, "o", ms=8)
    ax2.annotate(
        f"{name} (n_kv_head={run.model.config.kv_heads})",
        (cache_per_token[name], run.final_val_loss),
        textcoords="offset points",
        xytext=(8, 4),
    )
ax1.set(xlabel="step", ylabel=f"training loss (mean of {window} steps)", title="training")
ax2.set(
    xlabel="KV cache bytes per token (float32)",
    ylabel="validation loss",
    xscale="log",
    title=f"after {STEPS} steps (one seed)",
)
final = [run.final_val_loss for run in runs.values()]
ax2.set_ylim(min(final) - 0.05, max(final) + 0.05)  # a few hundredths either way: keep the scale honest
ax2.set_xticks(list(cache_per_token.values()), [f"{b:,}" for b in cache_per_token.values()])
ax2.minorticks_off()
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
ax1.legend()
plt.show()

for run in runs.values():  # every variant learned something
    assert run.final_val_loss < math.log(VOCAB)

# %% [markdown]
# All three learn at the same pace (left). At the end of the run stored here (`cpu` preset, 800 steps, seed
# 1337) MHA is ahead of MQA, which has a quarter of its cache, by about 0.03 of validation loss, and GQA, with
# half the cache, is 0.002 behind MHA. That is one seed. Differences this small are of the size a different
# seed makes: on the ladder at the end of the lesson, where two seeds of each model train on a longer budget, the
# MHA GPT's two seeds end about 0.05 bits per byte apart (its ± 0.024 is half that range; exercise 4 measures
# the spread here). At this size and budget, sharing key/value heads costs little; it also removes parameters
# (the table's third column), so part of any gap is simply a smaller model.
#
# ## 6 · From MHA to GQA without training from scratch
#
# A model trained with MHA can be converted. GQA's authors build each new key/value head as the **mean of the
# heads in its group**: for the key projection, the rows of `c_attn` that make heads `2g` and `2g + 1` (for
# groups of two) are averaged into the rows of new head `g`, biases too, and the same for values. Queries and
# everything else are kept. The averaged heads are not the old ones, so the model gets worse; a short
# continuation of training (*uptraining*) then lets the rest of the network adapt.
#
# First, the pooling by hand against `scratchlm.model.mha_to_gqa`, on the trained MHA model:

# %%
from scratchlm import checkpoint as ckpt_io
from scratchlm.model import mha_to_gqa
from scratchlm.training import evaluate

mha = runs["MHA"].model
gqa = mha_to_gqa(mha, VARIANTS["GQA"])
H, D, group = N_HEAD, mha.config.head_size, N_HEAD // VARIANTS["GQA"]
for old_block, new_block in zip(mha.transformer.h, gqa.transformer.h, strict=True):
    for param in ("weight", "bias"):
        old = getattr(old_block.attn.c_attn, param).detach()
        q, k, v = old.split(H * D, dim=0)  # MHA: n_head heads each of q, k, v
        # (heads, D, ...) -> (groups, group, D, ...) -> mean over the group
        pooled = [
            t.reshape(H // group, group, D, *t.shape[1:]).mean(dim=1).reshape(H // group * D, *t.shape[1:])
            for t in (k, v)
        ]
        torch.testing.assert_close(getattr(new_block.attn.c_attn, param).detach(), torch.cat([q, *pooled]))
with torch.no_grad():
    torch.testing.assert_close(mha_to_gqa(mha, N_HEAD)(prompt)[0], mha(prompt)[0])  # no pooling: the same model
print(
    f"{mha.num_parameters():,} parameters -> {gqa.num_parameters():,}; kv heads {mha.config.kv_heads} -> "
    f"{gqa.config.kv_heads}"
)

# %% [markdown]
# Now the losses, on exactly the validation batches that `train` evaluated on (`evaluate` with the run's
# config draws them from the same seed): the MHA model, the converted model untouched, and the converted model
# after a short uptraining.
#
# `train` starts from fresh weights unless it resumes from a checkpoint, and a checkpoint is just the model,
# its config and its tokenizer. So we save the converted model as the step-0 checkpoint of a new run (no
# optimizer state) and let `train(..., resume=True)` continue it: a fresh optimizer, a short warmup, and a peak
# learning rate a third of the original's.

# %%
val_split = {"val": runs["MHA"].splits.val}  # the validation split train() held out
before = evaluate(mha, val_split, train_config, device)["val"]
assert abs(before - runs["MHA"].final_val_loss) < 1e-4  # the same batches train() evaluated on
UPTRAIN_STEPS = pick(smoke=10, cpu=100, gpu=250)
conversion = {}
for name in ("GQA", "MQA"):
    converted = mha_to_gqa(mha, VARIANTS[name])
    uptrain_config = preset(
        TRAIN_PRESET,
        **{
            **budget,
            "max_iters": UPTRAIN_STEPS,
            "eval_interval": UPTRAIN_STEPS,
            "warmup_iters": max(1, UPTRAIN_STEPS // 10),
        },
        n_kv_head=VARIANTS[name],
        learning_rate=train_config.learning_rate / 3,
        min_lr=train_config.min_lr / 3,
        out_dir=str(work_dir / f"{name}-uptrained"),
        resume=True,
    )
    ckpt_io.save(uptrain_config.out_dir, converted, config=uptrain_config, tokenizer=runs["MHA"].tokenizer, step=0)
    uptrained = train(uptrain_config)
    conversion[name] = {
        "converted": evaluate(converted, val_split, train_config, device)["val"],
        "uptrained": uptrained.final_val_loss,
        "model": uptrained.model,
    }

# %%
print(f"validation loss ({TRAIN_PRESET} preset, {STEPS} training steps, uptraining {UPTRAIN_STEPS} steps)")
print(f"{'variant':<8}{'trained from scratch':>22}{'MHA, mean-pooled':>18}{'+ uptraining':>14}")
print(f"{'MHA':<8}{before:>22.3f}")
for name, result in conversion.items():
    print(f"{name:<8}{runs[name].final_val_loss:>22.3f}{result['converted']:>18.3f}{result['uptrained']:>14.3f}")

fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
labels = ("trained from scratch", "MHA, mean-pooled", f"+ {UPTRAIN_STEPS} steps uptraining")
for i, name in enumerate(conversion):
    values = (runs[name].final_val_loss, conversion[name]["converted"], conversion[name]["uptrained"])
    bars = ax.bar(
        i + np.arange(3) * 0.27 - 0.27, values, width=0.25, color=["C1", "C3", "C2"], label=labels if i == 0 else None
    )
    # the axis starts at 0, so differences of a few hundredths are written on the bars, relative to MHA
    ax.bar_label(bars, [f"{v:.3f}\n({v - before:+.3f})" for v in values], fontsize=8)
ax.axhline(before, color="C0", ls="--", label=f"MHA trained from scratch ({before:.3f})")
ax.set_xticks(range(len(conversion)), list(conversion))
ax.set(
    ylabel="validation loss (nats)",
    ylim=(0, 1.2 * max(max(r["converted"] for r in conversion.values()), before)),
    title="converting a trained MHA model (in brackets: the difference to MHA)",
)
fig.legend(loc="outside lower center", ncol=2, fontsize=8)
plt.show()

for result in conversion.values():
    assert result["uptrained"] < math.log(VOCAB)
if MODE != "smoke":  # a trained model notices when its keys and values are averaged, and uptraining repairs it
    for result in conversion.values():
        assert result["converted"] > before
        assert result["uptrained"] < result["converted"]

# %% [markdown]
# Mean-pooling costs the trained MHA model a lot of its loss, and the more heads are merged (MQA merges all
# four), the more it costs: the averaged keys and values are not what the queries were trained against. In the
# run stored here a hundred steps of uptraining, an eighth of the original run, recover most of it: both
# uptrained models end close to their counterparts trained from scratch for the full 800 steps (0.019 above
# for GQA, 0.027 for MQA). For
# a large model, whose pretraining cannot be repeated, that is the point: the GQA paper uptrained with 5% of
# the original pretraining steps.
#
# ## 7 · Sampling from the command line
#
# The command-line `sample` uses the same `generate`, so it decodes with the KV cache by default; `--no-cache`
# recomputes the context at every step (same text, slower):
#
# ```bash
# python -m scratchlm sample --ckpt DIR --prompt "ROMEO:" --max-new-tokens 500 --temperature 0.8 --seed 0
# python -m scratchlm sample --ckpt DIR --prompt "ROMEO:" --max-new-tokens 500 --temperature 0.8 --seed 0 --no-cache
# ```
#
# Here it is on the MHA checkpoint written in section 5, checked against `generate` in this notebook with the
# same seed:

# %%
cli_tokens = pick(smoke=40, cpu=300)
cli = subprocess.run(
    [
        sys.executable,
        "-m",
        "scratchlm",
        "sample",
        "--ckpt",
        str(work_dir / "MHA"),
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        str(cli_tokens),
        "--temperature",
        "0.8",
        "--seed",
        "0",
    ],
    capture_output=True,
    text=True,
    check=True,
    env={**os.environ, "SCRATCHLM_THREADS": "1"},
)
ids = torch.tensor(runs["MHA"].tokenizer.encode("ROMEO:"), device=device)
ours = generate(mha, ids, cli_tokens, temperature=0.8, seed=0)
assert cli.stdout == runs["MHA"].tokenizer.decode(ours.tolist()) + "\n"
print(cli.stdout)
shutil.rmtree(work_dir)  # the checkpoints of this lesson are not needed any more

# %% [markdown]
# ## Where this lesson stands on the ladder
#
# The ladder (`scratchlm.ladder`) trains every model of the course on one fixed budget (the same training text,
# batches, schedule and seeds) and scores each on the same held-out text in bits per byte. Lesson 09's rung is
# the lesson-04 GPT with fewer key/value heads than query heads (`n_kv_head` from the ladder's budget),
# everything else equal.

# %%
from scratchlm.errors import DataError
from scratchlm.ladder import mean_bits_per_byte, read_ladder, run_rung, show_ladder

rung = run_rung("gqa", seed=0)  # the ladder's budget for this mode: about a minute on one CPU thread
show_ladder(highlight=["gqa"], measured=[rung])
try:  # the committed results of the same budget, seed 0, to compare with
    committed = [r for r in read_ladder() if r["budget"] == rung["budget"] and r["seed"] == 0]
except DataError:  # an installation without the repository's results file
    committed = []
gpt = {key: [r[key] for r in committed if r["rung"] == "gpt"] for key in ("bits_per_byte", "seconds")}
gpt_bpb = mean_bits_per_byte(committed, "gpt")
print(f"gqa, seed 0: {rung['bits_per_byte']:.4f} bits per byte, {rung['params']:,} parameters")
if gpt["bits_per_byte"]:
    print(f"gpt (MHA), seed 0, committed: {gpt_bpb:.4f}: GQA {rung['bits_per_byte'] - gpt_bpb:+.4f} bits per byte")

# %% [markdown]
# On the ladder's budget GQA with half the key/value heads lands on the GPT's rung: 2.600 bits per byte against
# the GPT's committed 2.592 for seed 0 (the line above; the committed GQA run of the same seed gave 2.593), and 2.606 ± 0.013 against 2.616 ± 0.024 over the two committed seeds, a
# difference well inside the spread between seeds. Halving the KV cache cost nothing this budget can measure.

# %% [markdown]
# ## Summary
#
# - In a causal transformer nothing at position `i` depends on later tokens, so generating without a cache
#   recomputes every earlier position at every step: $NP + N(N-1)/2$ positions for $N$ tokens after a
#   $P$-token prompt.
# - Later positions need only the **keys and values** of earlier ones. A **KV cache** keeps them per layer;
#   each step computes q, k, v for the new token(s), appends k and v, and attends over the cache with the causal
#   mask aligned to its end (the prefill processes the whole prompt at once). New tokens take position offsets
#   `cache.length …` (learned embeddings or RoPE rotations alike).
# - The library's `KVCache` preallocates `(B, n_kv_head, max_len, D)` buffers per layer; `GPT.forward(idx,
#   cache=...)` and `generate(..., use_cache=True)` (the default) use it, with output identical
#   to recomputation. For the `cpu`-preset model the speed-up at 500 tokens was 13.8× in the run stored here
#   (section 3), and it grows with the length.
# - Cache size is $2 \cdot n_\text{layer} \cdot n_\text{kv\_head} \cdot D \cdot T \cdot B$ numbers
#   (`kv_cache_bytes`). **MQA** ($n_\text{kv\_head}=1$) and **GQA** ($1 < n_\text{kv\_head} < n_\text{head}$)
#   share key/value heads among groups of query heads and shrink it by $n_\text{head}/n_\text{kv\_head}$.
# - On our small budget (one seed, 800 steps) the validation losses of MHA, GQA and MQA were within 0.026 of
#   each other (section 5), the size of the difference between two seeds; on the ladder's budget, over two
#   seeds, GQA matched MHA. A trained MHA model can be converted with `mha_to_gqa` (mean-pooled key/value
#   heads) and repaired by a short uptraining (section 6).
#
# ## Exercises
#
# 1. **Where the time goes.** Profile one cached decoding step of the benchmark model with `torch.profiler`.
#    What share of the time is matrix arithmetic, and what share is everything else? Repeat at batch 32: how do
#    tokens per second and the ratio to no-cache generation change, and why?
# 2. **Past the block size.** With learned positions, `generate` falls back to recomputation once the context is
#    longer than `block_size`. A RoPE model has no position table; write a generation loop with a *sliding* cache
#    that keeps only the last W keys and values. Why can the cached keys be kept as they are when the window
#    slides, and how does its output compare with recomputing the last W tokens?
# 3. **A smaller cache in another way.** Store the cache in int8: one scale per (layer, head, position), keys and
#    values quantised on append and dequantised before attention. Measure the memory and how often greedy
#    decoding of the trained model from section 5 still agrees with the float32 cache over 500 tokens.
# 4. **More budget.** Repeat section 5 with the full 3500 steps of the `cpu` preset and three seeds per variant.
#    Is the gap between MHA and MQA larger than the spread between seeds?
