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
# # 07 · FlashAttention from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/07_flash_attention.ipynb)
#
# Attention as lesson 02 wrote it builds a T×T matrix of scores for every head, masks it, softmaxes it and
# multiplies it by the values. At T = 4096 that matrix is 64 MiB per head in float32, and it is written and read
# back several times. FlashAttention computes exactly the same result without ever holding that matrix: it walks
# over blocks of keys and keeps, per query, only a running max, a running sum and a running output.
#
# In this lesson you will
# - time each step of naive attention, place it on a **roofline** measured on your machine (copy bandwidth and
#   matrix-product peak), and see what really limits it; then measure how its memory grows with the length;
# - derive the **online softmax** (a softmax computed in one pass over blocks) and check it against `torch.softmax`;
# - write **tiled attention** in plain PyTorch, forward and backward (by recomputation), and check it against
#   `F.scaled_dot_product_attention` and autograd;
# - read the same algorithm as a **Triton** kernel, and run it (compiled on a GPU, interpreted on a CPU);
# - see which of PyTorch's own attention backends your machine has, and plot time and peak memory of every
#   version against T;
# - train the GPT with the tiled kernel (`GPTConfig(attention="tiled")`) and check that it learns exactly as with
#   PyTorch's kernel, and at what cost in time.
#
# The finished pieces live in `scratchlm.attention`: `tiled_attention`, `triton_attention`, `online_softmax`.

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
# Triton compiles kernels for GPUs. Without one, its *interpreter* runs the same kernel source with NumPy on CPU
# tensors. The switch is an environment variable that Triton reads when a kernel is defined, so it has to be set
# before anything imports triton (here: now).

# %%
import os

if device.type != "cuda":
    os.environ["TRITON_INTERPRET"] = "1"

import contextlib
import inspect
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch.nn.functional as F

from scratchlm.attention import naive_attention, online_softmax, tiled_attention
from scratchlm.model import GPTConfig
from scratchlm.profiling import operators_called, peak_extra_memory
from scratchlm.scaling.flops import attention_flops_per_token
from scratchlm.timing import seconds_per_call

set_seed(0)
# the benchmarks need a device whose memory we can measure: CUDA, or else the CPU
bench_device = device if device.type == "cuda" else torch.device("cpu")
dtype = torch.float16 if bench_device.type == "cuda" else torch.float32
B, H, D = 1, 4, 64  # one sequence, four heads of size 64
# the thread count is configure_threads()'s (the course's one policy); every time below is the fastest of a
# few calls of scratchlm.timing.seconds_per_call, which waits for the GPU before reading the clock
where = f"{bench_device.type}" + (f", {torch.get_num_threads()} thread(s)" if bench_device.type == "cpu" else "")
print(f"benchmarks on {where} in {dtype}, B={B} H={H} D={D}")


def seconds(fn, repeats=3):
    """Seconds per call of fn(): the fastest of `repeats` timed calls after one warm-up (noise only adds time)."""
    return min(seconds_per_call(fn, repeats=repeats, device=bench_device))


# %% [markdown]
# ## 1 · Where naive attention spends its time
#
# Here is attention written out, as in lesson 02 but with a head dimension: scores, mask, softmax, weighted sum.

# %%
T = pick(smoke=256, cpu=2048, gpu=8192 if bench_device.type == "cuda" else None)
q, k, v = (torch.randn(B, H, T, D, device=bench_device, dtype=dtype) for _ in range(3))

scores = (q * D**-0.5) @ k.transpose(-2, -1)  # (B, H, T, T); scaling q costs less than scaling the scores
mask = torch.ones(T, T, dtype=torch.bool, device=bench_device).tril()
masked = scores.masked_fill(~mask, float("-inf"))
weights = torch.softmax(masked, dim=-1)  # (B, H, T, T)
out = weights @ v  # (B, H, T, D)
torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-4, rtol=1e-3)

MiB = 2**20
print(
    f"T={T}: q, k, v, out are {q.nbytes / MiB:.1f} MiB each; scores, masked and weights "
    f"{scores.nbytes / MiB:.0f} MiB each"
)

# %% [markdown]
# The inputs and the output grow like T·D, the intermediates like T². What does each step cost? Count the
# arithmetic (FLOPs) and the bytes that must at least be read and written, and time each step on its own.
#
# One convention first, because lesson 04 counts the same FLOPs: the two matrix products are counted over the
# *whole* T×T matrix, the masked upper half included, since that is what a dense kernel computes. That is the
# course's single definition, `scratchlm.scaling.flops` (`attention_flops_per_token(config, T,
# masked_half=True)`: 12·L·T·C per trained token, a third of it in the forward pass), and the cell checks that
# its count and ours agree. A kernel that skips the masked tiles (section 3) does about half
# (`masked_half=False`).

# %%
e, n2, nd = q.element_size(), B * H * T * T, B * H * T * D
steps = {  # name: (function, FLOPs, bytes read + written at the very least)
    "scores = q @ kᵀ": (lambda: (q * D**-0.5) @ k.transpose(-2, -1), 2 * n2 * D, (2 * nd + n2) * e),
    "mask": (lambda s=scores: s.masked_fill(~mask, float("-inf")), 0, 2 * n2 * e + T * T),
    "softmax": (lambda s=masked: torch.softmax(s, dim=-1), 5 * n2, 2 * n2 * e),
    "weights @ v": (lambda w=weights: w @ v, 2 * n2 * D, (n2 + 2 * nd) * e),
}
one_layer = GPTConfig(vocab_size=1, block_size=T, n_layer=1, n_head=H, n_embd=H * D)
matmul_flops = steps["scores = q @ kᵀ"][1] + steps["weights @ v"][1]
assert matmul_flops == B * T * attention_flops_per_token(one_layer, T, masked_half=True) // 3  # forward only
step_time = {name: seconds(fn) for name, (fn, _, _) in steps.items()}
total_time, total_flops = sum(step_time.values()), sum(f for _, f, _ in steps.values())
print(f"naive attention, B={B} H={H} T={T} D={D}, {dtype}, {where}; FLOPs count the masked half")
print(f"{'step':<16}{'ms':>9}{'% time':>8}{'% FLOPs':>9}{'FLOP/byte':>11}{'GFLOP/s':>9}{'GB/s':>8}")
for name, (_, flops, nbytes) in steps.items():
    t = step_time[name]
    print(
        f"{name:<16}{t * 1e3:>9.1f}{t / total_time:>8.0%}{flops / total_flops:>9.1%}"
        f"{flops / nbytes:>11.1f}{flops / t / 1e9:>9.1f}{nbytes / t / 1e9:>8.1f}"
    )
elementwise = step_time["mask"] + step_time["softmax"]
print(f"mask + softmax: {(5 * n2) / total_flops:.1%} of the FLOPs, {elementwise / total_time:.0%} of the time")

# %% [markdown]
# The two matrix products do almost all of the arithmetic, about D/2 = 32 FLOPs for every byte they must touch
# in float32; the mask and the softmax do well under one FLOP per byte, and yet they take a large share of the
# time. It is tempting to call them *memory-bound* and stop there. But look at the rates: a few GB/s for the
# elementwise steps and a few tens of GFLOP/s for the products. Is that what this machine's memory and
# arithmetic can do? To say what bounds a step we need the machine's own two limits, measured:
#
# - **the bandwidth roof**: bytes per second of a large copy (read one buffer, write another), and
# - **the compute roof**: FLOP/s of a large matrix product, the best case for arithmetic.
#
# The *roofline model* (Williams, Waterman and Patterson, 2009) combines them: a step with arithmetic intensity
# $I$ (FLOPs per byte moved) can reach at most $\min(\text{peak FLOP/s},\ I \times \text{bandwidth})$. Left of
# the ridge point $I^* = \text{peak}/\text{bandwidth}$ a step is bounded by memory traffic, right of it by
# arithmetic. We measure each roof twice where it matters: writing into memory the process already holds, and
# into freshly allocated memory, which is what `s.masked_fill(...)` and friends do at every call.

# %%
n_copy = pick(smoke=2**24, cpu=2**24, gpu=2**28)  # 64 MiB in float32: far larger than the caches
src, dst = torch.randn(n_copy, device=bench_device, dtype=dtype), torch.empty(n_copy, device=bench_device, dtype=dtype)
copy_bytes = 2 * src.nbytes  # read one, write the other
bw_reused = copy_bytes / seconds(lambda s=src, d=dst: d.copy_(s), repeats=5)
bw_fresh = copy_bytes / seconds(lambda s=src: s.clone(), repeats=5)  # the output is new memory at every call
N_gemm = pick(smoke=512, cpu=2048, gpu=8192 if bench_device.type == "cuda" else None)
a_, b_, c_ = (torch.randn(N_gemm, N_gemm, device=bench_device, dtype=dtype) for _ in range(3))
peak = 2 * N_gemm**3 / seconds(lambda a=a_, b=b_, c=c_: torch.mm(a, b, out=c))
ridge = peak / bw_reused
print(f"{where}, {dtype}:")
print(f"  copy into memory already held:  {bw_reused / 1e9:6.1f} GB/s")
print(f"  copy into freshly allocated:    {bw_fresh / 1e9:6.1f} GB/s")
print(f"  matrix product {N_gemm}×{N_gemm}:      {peak / 1e9:6.1f} GFLOP/s   ridge point {ridge:.1f} FLOP/byte")
del src, dst, a_, b_, c_

# %% [markdown]
# Now the same four steps with their outputs written into buffers allocated once (`out=` arguments, and
# `torch.where` for the mask), so that the difference to the table above is exactly the cost of fresh memory.
# The mask has no FLOPs in the count; to place it on a logarithmic axis we count its select as one operation
# per element.

# %%
buffer_tt, buffer_td = torch.empty_like(scores), torch.empty_like(out)
minus_inf = torch.tensor(float("-inf"), device=bench_device, dtype=dtype)
reused = {
    "scores = q @ kᵀ": lambda o=buffer_tt: torch.matmul(q * D**-0.5, k.transpose(-2, -1), out=o),
    "mask": lambda s=scores, o=buffer_tt: torch.where(mask, s, minus_inf, out=o),
    "softmax": lambda s=masked, o=buffer_tt: torch.ops.aten._softmax.out(s, -1, False, out=o),
    "weights @ v": lambda w=weights, o=buffer_td: torch.matmul(w, v, out=o),
}
torch.testing.assert_close(reused["softmax"](), weights)  # the same results, only the memory differs
reused_time = {name: seconds(fn) for name, fn in reused.items()}
placed_flops = {name: flops or n2 for name, (_, flops, _) in steps.items()}  # the mask: one select per element

print(f"{'step':<16}{'FLOP/byte':>10}{'ms fresh':>10}{'ms reused':>11}{'GFLOP/s':>9}{'GB/s':>7}{'of roof':>9}")
for name, (_, _, nbytes) in steps.items():
    intensity, rate = placed_flops[name] / nbytes, placed_flops[name] / reused_time[name]
    roof = min(peak, intensity * bw_reused)
    print(
        f"{name:<16}{intensity:>10.2f}{step_time[name] * 1e3:>10.1f}{reused_time[name] * 1e3:>11.1f}"
        f"{rate / 1e9:>9.1f}{nbytes / reused_time[name] / 1e9:>7.1f}{rate / roof:>9.0%}"
    )
print(f"all four: {total_time * 1e3:.0f} ms as written, {sum(reused_time.values()) * 1e3:.0f} ms into reused memory")

intensities = np.logspace(-2, 2.5, 200)
fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
ax.loglog(intensities, np.minimum(peak, intensities * bw_reused) / 1e9, "k-", label="roof: copy into held memory")
ax.loglog(intensities, np.minimum(peak, intensities * bw_fresh) / 1e9, "k:", label="roof: copy into fresh memory")
placed_x: list[float] = []
for i, (name, (_, _, nbytes)) in enumerate(steps.items()):
    x = placed_flops[name] / nbytes
    # the two matrix products have the same intensity: draw a step side by side with any already drawn there
    x_drawn = x * 1.35 ** sum(abs(math.log(x / other)) < 0.1 for other in placed_x)
    placed_x.append(x)
    fresh_rate, held_rate = placed_flops[name] / step_time[name] / 1e9, placed_flops[name] / reused_time[name] / 1e9
    ax.plot(x_drawn, fresh_rate, "o", mfc="none", color=f"C{i}", ms=9)
    ax.plot(x_drawn, held_rate, "o", color=f"C{i}", ms=9, label=f"{name} ({x:.2g} FLOP/byte)")
    ax.annotate(
        "", xy=(x_drawn, held_rate), xytext=(x_drawn, fresh_rate), arrowprops=dict(arrowstyle="->", color=f"C{i}")
    )
ax.axvline(ridge, color="grey", lw=0.5, ls="--")
ax.text(ridge, peak / 1e9 * 1.15, f" ridge {ridge:.1f}", fontsize=8, color="grey")
ax.set(
    xlabel="arithmetic intensity (FLOP per byte moved)",
    ylabel="attainable GFLOP/s",
    title=f"roofline of naive attention, T={T} ({where}): open = as written, filled = into held memory",
)
ax.set_ylim(None, peak / 1e9 * 2)
ax.legend(fontsize=8, loc="lower right")
ax.grid(alpha=0.3, which="both")
plt.show()
del scores, masked, weights, out, buffer_tt, buffer_td

# %% [markdown]
# What the roofline says about this machine (the numbers printed above; on a GPU they will differ). The two
# matrix products have the same intensity, so the second is drawn a little to the right of the first, where both
# show; the legend gives each step's own intensity.
#
# - **The matrix products sit right of the ridge**: with about 30 FLOPs per byte they are bounded by arithmetic.
#   Written into memory the process already holds, they reach half to two thirds of the measured peak (49% and
#   64%). As the naive code runs them, `scores` is much slower, because its T×T output is new memory.
# - **The mask and the softmax sit far left of the ridge**: below one operation per byte, their roof is the
#   bandwidth line, so they are memory-bound in the roofline's sense. Into held memory they reach about two
#   thirds of the copy bandwidth (60% and 67%, the last column): a select and an exponential per element cost instructions too,
#   and one core alone does not saturate the memory system. Nowhere near the compute roof, in any case.
# - **As written, every step that produces a T×T matrix runs well below both roofs**, the mask and the softmax
#   close to the dotted line.
#   That line explains it: on a CPU, PyTorch returns a large tensor's memory to the operating system when it is
#   freed, and the next large tensor gets fresh pages, each of which the kernel must map and zero on first
#   touch. The last line of the table puts a number on it: 171 ms as written against 93 ms into reused memory,
#   so almost half of the time of naive attention here goes to fresh memory. (A GPU's caching allocator reuses freed
#   blocks, so there the filled markers are the ones that apply.)
#
# Either way the cure is the same: fusing the four steps into one pass that never writes the T×T matrices out
# removes both the memory traffic of the elementwise steps and the fresh T×T allocations, without saving a
# single FLOP.
#
# Now the memory. On CUDA the allocator keeps a high-water mark; on a CPU, PyTorch keeps no such statistic, so
# `peak_extra_memory` runs the call under `torch.profiler` with `profile_memory=True`, which records every
# allocation and free with its size and time, and takes the maximum running total: the peak of bytes allocated
# *above* what existed before the call (so the inputs do not count, the output does).

# %%
Ts = pick(
    smoke=[64, 128, 256],
    cpu=[256, 512, 1024, 2048, 4096],
    gpu=[512, 1024, 2048, 4096, 8192] if bench_device.type == "cuda" else None,
)
results = {}  # (method, T) -> (seconds, peak extra bytes)


def measure(name, attention, Ts, repeats=3):
    """Time and peak extra memory of attention(q, k, v) for each T, into `results`."""
    for T in Ts:
        qkv = [torch.randn(B, H, T, D, device=bench_device, dtype=dtype) for _ in range(3)]
        call = lambda qkv=qkv: attention(*qkv)
        results[name, T] = (seconds(call, repeats), peak_extra_memory(call, bench_device)[1])


measure("naive", lambda q, k, v: naive_attention(q, k, v, causal=True), Ts)
for T in Ts:
    t, mem = results["naive", T]
    one_matrix = B * H * T * T * torch.finfo(dtype).bits // 8
    print(
        f"naive T={T:>5}: {t * 1e3:8.1f} ms, peak extra {mem / MiB:8.2f} MiB = "
        f"{mem / one_matrix:.2f} × one (B, H, T, T) matrix"
    )

# %% [markdown]
# Doubling T quadruples the peak: at its peak, naive attention holds two full T×T matrices (the masked scores
# and the softmax output) plus the boolean mask. The time grows like T² too, and the library's
# `naive_attention` is the same code as above, used from here on as the baseline.
#
# ## 2 · The online softmax
#
# A numerically safe softmax subtracts the row maximum before exponentiating:
# $\mathrm{softmax}(x)_j = e^{x_j - m} / \ell$ with $m = \max_k x_k$ and $\ell = \sum_k e^{x_k - m}$.
# Computed naively that is three passes over the row (max, sum, normalise), and the first two need the whole
# row. The trick is to compute $m$ and $\ell$ together in one pass. After seeing $x_1, \dots, x_i$ keep
#
# $$m_i = \max(m_{i-1}, x_i), \qquad \ell_i = \ell_{i-1}\, e^{m_{i-1} - m_i} + e^{x_i - m_i},$$
#
# starting from $m_0 = -\infty$, $\ell_0 = 0$. By induction $\ell_i = \sum_{k \le i} e^{x_k - m_i}$: if
# $\ell_{i-1} = \sum_{k<i} e^{x_k - m_{i-1}}$, multiplying by $e^{m_{i-1} - m_i}$ turns every term into
# $e^{x_k - m_i}$. When the max does not change the factor is 1; when it grows, the sum so far is rescaled to the
# new max. Nothing is ever exponentiated above 0, so nothing overflows.


# %%
def online_softmax_loop(x):
    """Softmax of a vector, one element at a time: running max m and running sum ℓ, then normalise."""
    m, ell = -math.inf, 0.0
    ms, ells = [], []
    for xi in x.tolist():
        m_new = max(m, xi)
        ell = ell * math.exp(m - m_new) + math.exp(xi - m_new)
        m = m_new
        ms.append(m)
        ells.append(ell)
    return torch.exp(x - m) / ell, ms, ells


x = torch.randn(200) * 2 + torch.linspace(0, 6, 200) + 500  # float32 overflows above e^88: exp(x) is inf
naive_probs = torch.exp(x) / torch.exp(x).sum()
probs, ms, ells = online_softmax_loop(x)
torch.testing.assert_close(probs, torch.softmax(x, dim=0))
print(
    f"exp(x) / sum(exp(x)) gives {naive_probs[:3].tolist()}...; the online version matches torch.softmax "
    f"to {(probs - torch.softmax(x, 0)).abs().max():.0e}"
)

jumps = [i for i in range(1, len(ms)) if ms[i] > ms[i - 1]]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3))
ax1.plot(x, ".", ms=3, label="$x_i$")
ax1.plot(ms, label="running max $m_i$")
ax1.legend(loc="lower right")
ax1.set_ylabel("$x_i$ and $m_i$")
ax1.set_title("inputs and the running max")
ax2.plot(ells, color="C2")
ax2.set_ylabel(r"running sum $\ell_i$")
ax2.set_title(r"running sum $\ell_i$, rescaled at each new max (dotted)")
for ax in (ax1, ax2):
    ax.set_xlabel("i")
    for j in jumps:
        ax.axvline(j, color="grey", lw=0.5, ls=":")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each time a new maximum appears (left), the running sum is rescaled down by $e^{m_\text{old} - m_\text{new}}$
# (right) and then grows again; at the end it is exactly $\sum_k e^{x_k - \max x}$.
#
# The same update works a block at a time: take the block's max, rescale the old sum once, add the block's
# exponentials. That is what the library's `online_softmax` does, for any number of leading dimensions.


# %%
def online_softmax_blocks(x, block_size):
    m, ell = -math.inf, torch.zeros((), dtype=x.dtype)
    for start in range(0, len(x), block_size):
        block = x[start : start + block_size]
        m_new = max(m, block.max().item())
        ell = ell * math.exp(m - m_new) + torch.exp(block - m_new).sum()
        m = m_new
    return torch.exp(x - m) / ell


for block_size in (1, 7, 64, 1000):
    torch.testing.assert_close(online_softmax_blocks(x, block_size), torch.softmax(x, 0))
    torch.testing.assert_close(online_softmax(x, block_size), torch.softmax(x, 0))
print("loop, block and library versions all equal torch.softmax")

# %% [markdown]
# ## 3 · Tiled attention in plain PyTorch
#
# Attention is a softmax per query row, followed by a weighted sum of values. The weighted sum can ride along
# with the online softmax: keep an unnormalised output $o_i$ and rescale it exactly like $\ell$,
#
# $$o \leftarrow o\, e^{m_\text{old} - m_\text{new}} + \textstyle\sum_j e^{s_j - m_\text{new}} v_j,$$
#
# and divide by $\ell$ at the end. So: split the queries into blocks; for each query block, loop over the key
# blocks, compute that (block × block) tile of scores, update $m$, $\ell$ and $o$, and throw the tile away. With
# a causal mask, key blocks entirely to the right of the diagonal are skipped, and only the blocks that cross
# the diagonal need the mask. We also keep each row's logsumexp $m + \log \ell$ for the backward pass.


# %%
def tiled_forward(q, k, v, causal, block):
    """q, k, v (B, H, T, D) → out (B, H, T, D) and the logsumexp (B, H, T), one (block × block) tile at a time."""
    *batch, T, D = q.shape
    scale = D**-0.5
    out = torch.empty_like(q)
    lse = torch.empty(*batch, T, dtype=torch.float32, device=q.device)
    for qs in range(0, T, block):
        qe = min(qs + block, T)
        q_blk = q[..., qs:qe, :].float() * scale
        m = torch.full((*batch, qe - qs, 1), -math.inf, device=q.device)  # running max per row
        ell = torch.zeros_like(m)  # running sum per row
        o = torch.zeros(*batch, qe - qs, D, device=q.device)  # running, unnormalised output
        for ks in range(0, qe if causal else T, block):  # causal: no key block past the last query
            ke = min(ks + block, T)
            s = q_blk @ k[..., ks:ke, :].float().transpose(-2, -1)  # (B, H, qe-qs, ke-ks)
            if causal and ke - 1 > qs:  # the tile crosses the diagonal
                above = torch.arange(ks, ke, device=q.device) > torch.arange(qs, qe, device=q.device)[:, None]
                s = s.masked_fill(above, -math.inf)
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            rescale = torch.exp(m - m_new)
            ell = ell * rescale + p.sum(-1, keepdim=True)
            o = o * rescale + p @ v[..., ks:ke, :].float()
            m = m_new
        out[..., qs:qe, :] = o / ell
        lse[..., qs:qe] = (m + torch.log(ell)).squeeze(-1)
    return out, lse


# on the CPU in float32 (the 1e-5 check needs float32 accumulation everywhere)
qc, kc, vc = (torch.randn(2, 3, 100, 64) for _ in range(3))  # T=100 is not a multiple of the block
for causal in (True, False):
    ours, _ = tiled_forward(qc, kc, vc, causal, block=32)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(qc, kc, vc, is_causal=causal), atol=1e-5, rtol=1e-5)
print("tiled forward == scaled_dot_product_attention (causal and not), to 1e-5")

# %% [markdown]
# Which tiles does the causal loop visit? For T = 8 blocks:

# %%
n_blocks = 8
kind = np.zeros((n_blocks, n_blocks))
for i in range(n_blocks):
    for j in range(i + 1):  # the loop stops at the query block's end
        kind[i, j] = 2 if j == i else 1  # the diagonal tile needs the mask
fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.imshow(kind, cmap="Blues", vmin=0, vmax=2.5)
ax.set_xlabel("key block")
ax.set_ylabel("query block")
ax.set_title("visited (light), masked (dark)")
plt.show()
print(f"{int((kind > 0).sum())} of {n_blocks**2} tiles computed, {n_blocks} of them masked")

# %% [markdown]
# A little over half the tiles: causal attention does half the work of full attention, and only the diagonal
# tiles pay for the mask.
#
# ### The backward pass, by recomputation
#
# Autograd through naive attention saves the T×T weights $P$ for the backward pass; storing them is exactly the
# memory we want to avoid. With $S = \text{scale}\cdot QK^\top$, $P = \mathrm{softmax}(S)$, $O = PV$ and the
# upstream gradient $dO$:
#
# $$dV = P^\top dO, \qquad dP = dO\, V^\top, \qquad dS_{ij} = P_{ij}\,(dP_{ij} - \delta_i), \qquad
#   dQ = \text{scale}\cdot dS\, K, \qquad dK = \text{scale}\cdot dS^\top Q,$$
#
# where $\delta_i = \sum_j P_{ij}\, dP_{ij}$ is the softmax's correction (the derivative of $p = \mathrm{softmax}(s)$
# is $dS = p \circ (dp - p^\top dp)$). Two observations make this tileable. First, any tile of $P$ can be
# recomputed from $Q$, $K$ and the saved logsumexp: $P_{ij} = e^{S_{ij} - \mathrm{lse}_i}$. Second,
# $\delta_i = \sum_j P_{ij} (dO_i \cdot v_j) = dO_i \cdot O_i$, a row-wise dot product of two T×D matrices. So
# the forward saves only Q, K, V, O and lse, and the backward loops over tiles again.


# %%
def tiled_backward(q, k, v, out, lse, dout, causal, block):
    *_, T, D = q.shape
    scale = D**-0.5
    delta = (dout * out).sum(-1, keepdim=True)  # (B, H, T, 1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for ks in range(0, T, block):
        ke = min(ks + block, T)
        for qs in range(ks if causal else 0, T, block):  # causal: earlier queries never see these keys
            qe = min(qs + block, T)
            s = q[..., qs:qe, :] @ k[..., ks:ke, :].transpose(-2, -1) * scale
            if causal and ke - 1 > qs:
                above = torch.arange(ks, ke, device=q.device) > torch.arange(qs, qe, device=q.device)[:, None]
                s = s.masked_fill(above, -math.inf)
            p = torch.exp(s - lse[..., qs:qe, None])  # this tile of P, recomputed
            dv[..., ks:ke, :] += p.transpose(-2, -1) @ dout[..., qs:qe, :]
            dp = dout[..., qs:qe, :] @ v[..., ks:ke, :].transpose(-2, -1)
            ds = p * (dp - delta[..., qs:qe, :])
            dq[..., qs:qe, :] += ds @ k[..., ks:ke, :] * scale
            dk[..., ks:ke, :] += ds.transpose(-2, -1) @ q[..., qs:qe, :] * scale
    return dq, dk, dv


class TiledAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, block):
        out, lse = tiled_forward(q, k, v, causal, block)
        ctx.save_for_backward(q, k, v, out, lse)  # nothing of size T×T
        ctx.causal, ctx.block = causal, block
        return out

    @staticmethod
    def backward(ctx, dout):
        return *tiled_backward(*ctx.saved_tensors, dout, ctx.causal, ctx.block), None, None


qg, kg, vg = (torch.randn(2, 3, 100, 64, requires_grad=True) for _ in range(3))
dout = torch.randn(2, 3, 100, 64)
for causal in (True, False):
    expected = torch.autograd.grad(naive_attention(qg, kg, vg, causal=causal), (qg, kg, vg), dout)
    ours = torch.autograd.grad(TiledAttention.apply(qg, kg, vg, causal, 32), (qg, kg, vg), dout)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
print("tiled backward == autograd through naive attention (dq, dk, dv; causal and not)")

# %% [markdown]
# Now against the library. `scratchlm.attention.tiled_attention` is the same algorithm with input checks, a
# `scale` argument, 16-bit inputs accumulated in float32, and separate key-block bookkeeping for T_q ≠ T_k.

# %%
for causal in (True, False):
    ours = TiledAttention.apply(qg, kg, vg, causal, 32)
    lib = tiled_attention(qg, kg, vg, causal=causal, block_size=32)
    torch.testing.assert_close(ours, lib)
    for a, b in zip(
        torch.autograd.grad(ours, (qg, kg, vg), dout), torch.autograd.grad(lib, (qg, kg, vg), dout), strict=True
    ):
        torch.testing.assert_close(a, b)
print("notebook version == scratchlm.attention.tiled_attention, forward and backward")

# %% [markdown]
# What does recomputation buy for training? Forward plus backward, naive (autograd keeps the T×T weights)
# against tiled (keeps q, k, v, out and lse):

# %%
T_train = pick(smoke=256, cpu=2048, gpu=8192 if bench_device.type == "cuda" else None)
qt, kt, vt = (torch.randn(B, H, T_train, D, device=bench_device, dtype=dtype, requires_grad=True) for _ in range(3))


def train_step(attention, q, k, v):
    """A forward and backward pass through `attention`; returns nothing so the graph is freed."""
    out = attention(q, k, v)
    out.backward(torch.ones_like(out))
    q.grad = k.grad = v.grad = None


for name, fn in [("naive", naive_attention), ("tiled", tiled_attention)]:
    step = lambda fn=fn: train_step(fn, qt, kt, vt)
    _, mem = peak_extra_memory(step, bench_device)
    print(
        f"{name:>5} forward+backward, T={T_train}: {seconds(step, repeats=1) * 1e3:7.0f} ms, "
        f"peak extra {mem / MiB:7.1f} MiB"
    )

# %% [markdown]
# The tiled version trades a second pass over the tiles (more arithmetic) for never storing P: its training
# memory is linear in T as well.
#
# ## 4 · The same kernel in Triton
#
# In PyTorch every line of `tiled_forward` is a separate kernel that reads its inputs from memory and writes its
# result back, so the tiles still travel through memory. A GPU kernel can keep a tile in registers and shared
# memory from the moment it is computed until it has been folded into the running output. Triton lets us write
# that kernel in Python: a *program* handles one block of BLOCK_M query rows of one (batch, head), and `tl.`
# operations work on whole blocks. This is the library's kernel:

# %%
from scratchlm.attention.triton_kernel import attention_forward_kernel, triton_attention, triton_available

HAVE_TRITON = triton_available()  # imports triton, now that TRITON_INTERPRET is settled
if HAVE_TRITON:
    print(inspect.getsource(attention_forward_kernel))
else:
    print("triton is not installed (it is published for Linux only): skipping the Triton cells")

# %% [markdown]
# It is `tiled_forward`'s inner loop, line for line: `tl.dot` for the tile of scores, `tl.where` for the mask,
# `m_i`, `l_i` and `acc` for the running max, sum and output, and one store of the normalised output and the
# logsumexp at the end. The grid launches one program per (query block, batch × head). On a GPU, Triton compiles
# it; on a CPU, the interpreter runs this Python function once per program with NumPy arrays, which checks
# correctness but says nothing about speed.

# %%
if HAVE_TRITON:
    Ti = pick(smoke=64, cpu=128, gpu=1024 if device.type == "cuda" else None)
    tdev = device if device.type == "cuda" else torch.device("cpu")
    qi, ki, vi = (torch.randn(1, 2, Ti, 64, device=tdev) for _ in range(3))
    for causal in (True, False):
        got = triton_attention(qi, ki, vi, causal=causal, block_m=32, block_n=32)
        torch.testing.assert_close(
            got, F.scaled_dot_product_attention(qi, ki, vi, is_causal=causal), atol=1e-5, rtol=1e-5
        )
    print(f"triton_attention == SDPA on (1, 2, {Ti}, 64), causal and not")
    if tdev.type == "cpu":
        call = lambda: triton_attention(qi, ki, vi, causal=True, block_m=32, block_n=32)
        elapsed = seconds_per_call(call, repeats=1, warmup=0)[0]
        print(f"interpreted: {elapsed * 1e3:.0f} ms per call, a number that says nothing about the kernel's speed")

# %% [markdown]
# On a GPU the benchmark in section 6 adds the Triton kernel to the comparison. The kernel is forward only;
# `triton_attention` still supports autograd by handing the kernel's saved logsumexp to the PyTorch
# `tiled_backward` (writing the backward kernel is an exercise).
#
# ## 5 · PyTorch's own attention backends
#
# `F.scaled_dot_product_attention` (SDPA) dispatches to one of several implementations: FlashAttention,
# "memory-efficient" attention (xFormers), cuDNN's attention, or the unfused *math* fallback, which is our naive
# version. `torch.nn.attention.sdpa_kernel` restricts the choice; asking for a backend that cannot run these
# inputs on this device raises an error. The profiler tells us which aten operator actually ran.

# %%
from torch.nn.attention import SDPBackend, sdpa_kernel


def sdpa_operator(q, k, v, backends=None):
    """Run SDPA (restricted to `backends`) once; return the operator it dispatched to, or None if none could run."""
    try:
        with warnings.catch_warnings(), sdpa_kernel(backends) if backends else contextlib.nullcontext():
            warnings.simplefilter("ignore")  # an unavailable backend warns why, then raises
            ops = operators_called(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    except RuntimeError:
        return None
    return ops[ops.index("aten::scaled_dot_product_attention") + 1]


if bench_device.type == "cuda":
    for flag in ("flash", "mem_efficient", "math", "cudnn"):
        print(f"torch.backends.cuda.{flag}_sdp_enabled() = {getattr(torch.backends.cuda, f'{flag}_sdp_enabled')()}")

T_sdpa = pick(smoke=256, cpu=2048, gpu=8192 if bench_device.type == "cuda" else None)
qs_, ks_, vs_ = (torch.randn(B, H, T_sdpa, D, device=bench_device, dtype=dtype) for _ in range(3))
print(f"default choice: {sdpa_operator(qs_, ks_, vs_)}")
backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
for backend in backends:
    op = sdpa_operator(qs_, ks_, vs_, [backend])
    if op is None:
        print(f"{backend.name:<20} not available for these inputs on {bench_device.type}")
        continue
    with sdpa_kernel([backend]):
        t = seconds(lambda qkv=(qs_, ks_, vs_): F.scaled_dot_product_attention(*qkv, is_causal=True))
    print(f"{backend.name:<20} {t * 1e3:8.1f} ms  ({op}, T={T_sdpa})")
del qs_, ks_, vs_

# %% [markdown]
# On a CPU, PyTorch has two paths: a fused, tiled kernel that it files under `FLASH_ATTENTION`
# (`_scaled_dot_product_flash_attention_for_cpu`, the same online-softmax idea written in C++ and parallelised
# over batch, heads and query blocks), and the `MATH` fallback. The memory-efficient and cuDNN backends are
# CUDA-only. On a recent NVIDIA GPU you will see all four, with FlashAttention (float16/bfloat16 only) usually
# the default.
#
# ## 6 · Time and memory against sequence length
#
# Naive was measured in section 1; now the tiled PyTorch version, SDPA and, on a GPU, the Triton kernel, on the
# same sizes.

# %%
measure("tiled", lambda q, k, v: tiled_attention(q, k, v, causal=True), Ts)
measure("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), Ts)
methods = ["naive", "tiled", "sdpa"]
if HAVE_TRITON and bench_device.type == "cuda":
    measure("triton", lambda q, k, v: triton_attention(q, k, v, causal=True), Ts)
    methods.append("triton")

print(f"causal attention, B={B} H={H} D={D}, {dtype}, {where}; time: fastest of 3 runs")
for label, col, unit, fmt in [("time", 0, 1e-3, ".1f"), ("peak extra memory", 1, MiB, ".2f")]:
    unit_name = "ms" if col == 0 else "MiB"
    print(f"\n{label} ({unit_name}, and as a fraction of naive)")
    print(f"{'T':>6}" + "".join(f"{m:>10}" for m in methods) + "".join(f"{m + '/naive':>14}" for m in methods[1:]))
    for T in Ts:
        row = {m: results[m, T][col] for m in methods}
        print(
            f"{T:>6}"
            + "".join(f"{row[m] / unit:>10{fmt}}" for m in methods)
            + "".join(f"{row[m] / row['naive']:>14.3f}" for m in methods[1:])
        )

# %% [markdown]
# How does each method's peak memory
# grow? Fit $\text{bytes} \approx a\,T + b$ to the tiled version, and the slope of $\log(\text{bytes})$ against
# $\log T$ to each method over the largest sizes (2 means quadratic, 1 linear).

# %%
Tarr = np.array(Ts, dtype=float)
mem_of = {m: np.array([results[m, T][1] for T in Ts], dtype=float) for m in methods}
time_of = {m: np.array([results[m, T][0] for T in Ts]) for m in methods}
a, b = np.polyfit(Tarr, mem_of["tiled"], 1)
fit = a * Tarr + b
worst_residual = np.max(np.abs(mem_of["tiled"] - fit) / mem_of["tiled"])
big = slice(-3, None)  # the three largest T, where constant overheads matter least
slopes = {m: np.polyfit(np.log(Tarr[big]), np.log(mem_of[m][big]), 1)[0] for m in methods}
out_bytes_per_token = B * H * D * torch.finfo(dtype).bits // 8
print(
    f"tiled: bytes ≈ {a:.0f}·T + {b / MiB:.2f} MiB (worst residual {worst_residual:.1%}); "
    f"the output alone is {out_bytes_per_token} bytes per token"
)
print("log-log slope of peak memory over the largest T: " + ", ".join(f"{m} {s:.2f}" for m, s in slopes.items()))
ratio = mem_of["tiled"][-1] / mem_of["naive"][-1]
print(
    f"at T={Ts[-1]}: tiled {mem_of['tiled'][-1] / MiB:.2f} MiB vs naive {mem_of['naive'][-1] / MiB:.2f} MiB "
    f"= 1/{1 / ratio:.0f}"
)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for m in methods:
    ax1.loglog(Tarr, time_of[m] * 1e3, "o-", label=m)
    ax2.loglog(Tarr, mem_of[m] / MiB, "o-", label=f"{m} (slope {slopes[m]:.2f})")
ax2.loglog(Tarr, fit / MiB, "k--", lw=1, label=f"fit {a:.0f}·T + {b / MiB:.2f} MiB")
ax1.set(xlabel="sequence length T", ylabel="ms", title=f"time ({where})")
ax2.set(xlabel="sequence length T", ylabel="MiB", title="peak extra memory")
for ax in (ax1, ax2):
    ax.set_xticks(Tarr, [str(T) for T in Ts])
    ax.minorticks_off()
    ax.legend()
plt.tight_layout()
plt.show()

if MODE != "smoke":  # the goal; tiny smoke sizes are dominated by the fixed scratch of one tile
    assert worst_residual < 0.05, "tiled peak memory should be linear in T"
    assert ratio <= 1 / 8, f"tiled uses {ratio:.3f} of naive's memory at T={Ts[-1]}"

# %% [markdown]
# The memory plot is the point of the lesson. Naive attention's peak grows with slope 2 on the log-log plot: it
# holds T×T matrices. The tiled version's peak is a straight line in T, $a\,T + b$, with almost no residual:
# $a$ is about the size of one output row ($B \cdot H \cdot D$ values) per token and $b$ is the fixed scratch of a
# few block×block tiles. (Its log-log slope is below 1 only because $b$ is still a large part of the peak at
# these sizes; it tends to 1 as T grows.) SDPA's fused CPU kernel behaves the same way, with a little less
# scratch.
#
# Time is another matter. The fused kernels (SDPA's, and Triton's on a GPU) beat naive attention because they
# avoid the memory traffic of section 1. Tiled *PyTorch* runs every step of every tile as a separate operator
# called from Python: it saves memory but only part of the traffic. On the CPU it still beats naive at large T
# here (its tiles are small and their memory is reused, while every T×T matrix of naive attention is fresh
# memory, the largest cost found in section 1); on a GPU, where each of those operators is a kernel
# launch, expect it to be the slowest of all. The full gain in speed needs the fusion that only a kernel
# (Triton, CUDA, or PyTorch's C++ CPU kernel) provides.
#
# ## 7 · Training the GPT with tiled attention
#
# A kernel is only useful if a model can train with it. `GPTConfig(attention="tiled")` makes every attention
# layer of the library's GPT call `tiled_attention` (section 3's forward and recomputing backward) instead of
# PyTorch's fused `scaled_dot_product_attention`. Nothing else changes, so two runs with the same seed, the same
# batches and the same steps must produce the same loss curve, up to float rounding: the two kernels add the
# same numbers in a different order. The windows are longer than the `cpu` preset's 64 characters (256, in
# tiles of 128), so that the causal loop really walks several tiles, and the batch is smaller so that a step
# still sees 768 tokens. (On a GPU the `gpu` preset's dropout is switched off for both runs: the tiled kernel
# has none.)

# %%
from scratchlm.scaling.flops import flops_per_token
from scratchlm.training import preset, train

TRAIN_PRESET = pick(smoke="smoke", cpu="cpu", gpu="gpu")
train_overrides = pick(
    smoke=dict(max_iters=20, eval_interval=10),
    cpu=dict(block_size=256, batch_size=3, max_iters=300, warmup_iters=30, eval_interval=50, eval_iters=10),
    gpu=dict(max_iters=500, warmup_iters=50, eval_interval=100, dropout=0.0),
)
kernel_runs = {kernel: train(preset(TRAIN_PRESET, attention=kernel, **train_overrides)) for kernel in ("sdpa", "tiled")}

# %%
sdpa_run, tiled_run = kernel_runs["sdpa"], kernel_runs["tiled"]
step_gap = np.abs(np.array(tiled_run.step_losses) - np.array(sdpa_run.step_losses))
val_gap = max(abs(a["val_loss"] - b["val_loss"]) for a, b in zip(sdpa_run.metrics, tiled_run.metrics, strict=True))
model_config = sdpa_run.model.config
train_flops = flops_per_token(model_config)  # 6N + 12·L·T·C: the masked half counted, as in section 1
print(
    f"{TRAIN_PRESET} preset, block_size={model_config.block_size}, n_layer={model_config.n_layer} "
    f"n_embd={model_config.n_embd}, {sdpa_run.config.max_iters} steps of {sdpa_run.config.tokens_per_step} tokens, "
    f"seed {sdpa_run.config.seed}, {where}"
)
speed = {kernel: np.mean([m["tokens_per_s"] for m in run.metrics[1:]]) for kernel, run in kernel_runs.items()}
print(f"{'kernel':<7}{'final val loss':>15}{'tokens/s':>10}{'ms/step':>9}{'GFLOP/s':>9}{'of matmul peak':>16}")
for kernel, run in kernel_runs.items():  # tokens/s: training only, the evaluations excluded
    print(
        f"{kernel:<7}{run.final_val_loss:>15.4f}{speed[kernel]:>10,.0f}"
        f"{run.config.tokens_per_step / speed[kernel] * 1e3:>9.1f}{speed[kernel] * train_flops / 1e9:>9.2f}"
        f"{speed[kernel] * train_flops / peak:>16.1%}"
    )
print(f"largest |Δ loss| over all {len(step_gap)} steps: {step_gap.max():.1e}; at the evaluations: {val_gap:.1e}")
print(f"tiled costs {speed['sdpa'] / speed['tiled']:.2f}x the time of SDPA per step")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for kernel, style, color in (("sdpa", "-", "C0"), ("tiled", "--", "C3")):
    run = kernel_runs[kernel]
    ax1.plot(run.step_losses, style, lw=1, color=color, label=f"{kernel}: training loss")
    ax1.plot(
        [m["step"] for m in run.metrics],
        [m["val_loss"] for m in run.metrics],
        "o" + style,
        ms=4,
        color=color,
        label=f"{kernel}: val",
    )
ax1.set(xlabel="step", ylabel="loss (nats)", title="the same run with two attention kernels")
ax1.legend(fontsize=8)
ax2.semilogy(np.maximum(step_gap, 1e-9), ".", ms=3, color="C3")
spacing = float(np.spacing(np.float32(2.0)))
ax2.axhline(spacing, color="grey", ls=":", lw=1, label=f"gap between float32 numbers near 2 ({spacing:.1e})")
ax2.set(xlabel="step", ylabel="|loss(tiled) − loss(sdpa)| (0 drawn at 1e-9)", title="their difference, step by step")
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
plt.show()

assert step_gap.max() < 1e-4 and val_gap < 1e-4, "the tiled kernel must train exactly like SDPA, up to rounding"

# %% [markdown]
# The two curves lie on top of each other. The training losses of the two runs are exactly equal at many steps
# (drawn at the bottom of the right panel) and otherwise differ by one to a few float32 spacings of a number
# near 2: a few millionths at most. Gradients computed by recomputation, section 3's backward, are the gradients autograd
# would give, so the optimiser takes the same steps.
#
# The price is time. At these sizes the whole model is small and attention is only part of a step, but the
# tiled kernel runs its loop in Python, a handful of small operators per tile, forward and again backward;
# PyTorch's fused kernel does the same arithmetic in one C++ call. Here that makes a step about 1.6 times as long
# with the tiled kernel (the table: the cost per step and the
# rate in FLOP/s, with FLOPs counted by `scratchlm.scaling.flops`: 6N plus attention over the full T×T,
# masked half included, the same convention for both kernels, so the column compares time only; set against
# the matrix-product peak measured in section 1). What the tiled kernel buys is memory (section 6),
# which matters once T is long enough that the T×T matrices do not fit; at T = 256 they fit easily.

# %% [markdown]
# ## Where this lesson stands on the ladder
#
# The ladder (`scratchlm.ladder`) trains every model of the course on one fixed budget (the same training text,
# batches, schedule and seeds) and scores each on the same held-out text in bits per byte. Lesson 07's rung is
# the lesson-04 GPT with `attention="tiled"`. It changes how attention is computed, not what is computed, so it
# must land on the GPT's rung; what it may change is the time.

# %%
from scratchlm.errors import DataError
from scratchlm.ladder import mean_bits_per_byte, read_ladder, run_rung, show_ladder

rung = run_rung("tiled-attention", seed=0)  # the ladder's budget for this mode: about a minute on one CPU thread
show_ladder(highlight=["tiled-attention"], measured=[rung])
try:  # the committed results of the same budget, seed 0, to compare with
    committed = [r for r in read_ladder() if r["budget"] == rung["budget"] and r["seed"] == 0]
except DataError:  # an installation without the repository's results file
    committed = []
gpt = {key: [r[key] for r in committed if r["rung"] == "gpt"] for key in ("bits_per_byte", "seconds")}
gpt_bpb = mean_bits_per_byte(committed, "gpt")
print(f"tiled-attention, seed 0: {rung['bits_per_byte']:.4f} bits per byte in {rung['seconds']:.0f} s of training")
if gpt["bits_per_byte"]:
    print(
        f"gpt (SDPA), seed 0, committed: {gpt_bpb:.4f} bits per byte in {gpt['seconds'][0]:.0f} s: "
        f"difference {rung['bits_per_byte'] - gpt_bpb:+.1e} bits per byte, time × {rung['seconds'] / gpt['seconds'][0]:.2f}"
    )
    assert abs(rung["bits_per_byte"] - gpt_bpb) < 0.01, "the tiled kernel must train the same model as SDPA"

# %% [markdown]
# The tiled kernel buys nothing in bits per byte, by design: it lands on the GPT's rung. Over the ladder's 2000
# steps the float32 rounding differences of section 7 have grown (training amplifies small differences), to
# 0.007 bits per byte for seed 0 (2.586 against the GPT's committed 2.592), still well under the difference
# between the GPT's two seeds (its ± 0.024 is half of that range). (This fresh run is also 0.011 below the
# committed tiled run of the same seed, as lesson 04's fresh GPT was below its own: the same seed did not
# reproduce the committed runs here.) Its price is time: 1.33× and 1.47× the GPT's training time for the two
# committed seeds; the 2.76× printed above sets this run's 144 s on a busy machine against the GPT's 52 s
# measured on another day and processor, so it says little. What it buys
# is memory that grows linearly with the context, which only pays once the context is long (section 6).

# %% [markdown]
# ## Summary
#
# - Naive attention materialises T×T matrices: its peak memory grows quadratically. A **roofline** measured on
#   this machine (copy bandwidth and matrix-product peak) places its steps: the two products right of the ridge
#   (bounded by arithmetic, near the peak when their output memory is reused), the mask and the softmax far left
#   of it (memory-bound, never near the compute roof). As written on a CPU, almost half of the time goes to
#   neither: it goes to fresh memory for every T×T result, which the operating system must map and zero.
# - FLOPs are counted once, by `scratchlm.scaling.flops`: attention's two products over the whole T×T matrix,
#   the masked half included (`masked_half=True`), as lesson 04 counts them; a kernel that skips masked tiles
#   does about half.
# - The **online softmax** keeps a running max $m$ and sum $\ell$, rescaling by $e^{m_\text{old}-m_\text{new}}$;
#   applied to the output accumulator too, it gives exact attention one tile at a time.
# - **Tiled attention** never holds more than one block×block tile of scores: peak extra memory is linear in T
#   (fitted above). Its backward pass recomputes the tiles of P from Q, K and the saved logsumexp, so training
#   memory is linear too.
# - The **Triton kernel** is the same loop with the tile kept on chip; on a CPU its interpreter checks it.
# - PyTorch's SDPA picks a fused backend for you; `sdpa_kernel` shows and restricts which.
# - `GPTConfig(attention="tiled")` trains the GPT with the tiled kernel: the same loss curve as SDPA to a few
#   float32 spacings, step by step, at about 1.6× the time per step here (its loop runs in Python).
# - From here on, `scratchlm.attention.tiled_attention` and `triton_attention` are the library versions.
#
# ## Exercises
#
# 1. **Block size.** Time `tiled_attention` and measure its peak memory at T = 2048 for block sizes 16 … 512.
#    Explain both curves: what grows with the block, and what shrinks?
# 2. **Decoding with a KV cache.** When one new query attends T cached keys, the causal mask is aligned to the
#    bottom-right, not the top-left. Add a `causal="bottom_right"` option to `tiled_forward` that lets query i
#    of T_q attend keys up to i + T_k − T_q, and check it against SDPA with
#    `torch.nn.attention.bias.causal_lower_right(T_q, T_k)` as the mask.
# 3. **A Triton backward kernel.** Write the backward as a Triton kernel with one program per key block that
#    accumulates dK and dV and loops over query blocks, with dQ from a second kernel (one program per query
#    block). Check it against `scratchlm.attention.tiled.tiled_backward` in the interpreter.
# 4. **Longer sequences.** On a GPU, push T until naive attention runs out of memory. How long can the sequence
#    get with `triton_attention` in the same memory?
