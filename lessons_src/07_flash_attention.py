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
# - measure how the memory and time of naive attention grow with the sequence length, and see which steps are
#   limited by memory traffic rather than arithmetic;
# - derive the **online softmax** (a softmax computed in one pass over blocks) and check it against `torch.softmax`;
# - write **tiled attention** in plain PyTorch, forward and backward (by recomputation), and check it against
#   `F.scaled_dot_product_attention` and autograd;
# - read the same algorithm as a **Triton** kernel, and run it (compiled on a GPU, interpreted on a CPU);
# - see which of PyTorch's own attention backends your machine has, and plot time and peak memory of every
#   version against T.
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
import statistics
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch.nn.functional as F

from scratchlm.attention import naive_attention, online_softmax, tiled_attention
from scratchlm.profiling import operators_called, peak_extra_memory

set_seed(0)
# the benchmarks need a device whose memory we can measure: CUDA, or else the CPU
bench_device = device if device.type == "cuda" else torch.device("cpu")
dtype = torch.float16 if bench_device.type == "cuda" else torch.float32
B, H, D = 1, 4, 64  # one sequence, four heads of size 64
if bench_device.type == "cpu":
    # one thread: the timings compare algorithms, not how well each operator spreads over cores
    # (and many small operators suffer most when the cores are shared with other jobs)
    torch.set_num_threads(1)
where = f"{bench_device.type}" + (f", {torch.get_num_threads()} thread" if bench_device.type == "cpu" else "")
print(f"benchmarks on {where} in {dtype}, B={B} H={H} D={D}")

# %% [markdown]
# ## 1 · Why naive attention is memory-bound
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


# %%
def seconds(fn, repeats=3):
    """Median wall time of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if bench_device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if bench_device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


e, n2, nd = q.element_size(), B * H * T * T, B * H * T * D
steps = {  # name: (function, FLOPs, bytes read + written at the very least)
    "scores = q @ kᵀ": (lambda: (q * D**-0.5) @ k.transpose(-2, -1), 2 * n2 * D, (2 * nd + n2) * e),
    "mask": (lambda s=scores: s.masked_fill(~mask, float("-inf")), 0, 2 * n2 * e + T * T),
    "softmax": (lambda s=masked: torch.softmax(s, dim=-1), 5 * n2, 2 * n2 * e),
    "weights @ v": (lambda w=weights: w @ v, 2 * n2 * D, (n2 + 2 * nd) * e),
}
step_time = {name: seconds(fn) for name, (fn, _, _) in steps.items()}
total_time, total_flops = sum(step_time.values()), sum(f for _, f, _ in steps.values())
print(f"naive attention, B={B} H={H} T={T} D={D}, {dtype}, {where}")
print(f"{'step':<16}{'ms':>9}{'% time':>8}{'% FLOPs':>9}{'FLOP/byte':>11}{'GB/s':>8}")
for name, (_, flops, nbytes) in steps.items():
    t = step_time[name]
    print(
        f"{name:<16}{t * 1e3:>9.1f}{t / total_time:>8.0%}{flops / total_flops:>9.1%}"
        f"{flops / nbytes:>11.1f}{nbytes / t / 1e9:>8.1f}"
    )
elementwise = step_time["mask"] + step_time["softmax"]
print(f"mask + softmax: {(5 * n2) / total_flops:.1%} of the FLOPs, {elementwise / total_time:.0%} of the time")
del scores, masked, weights, out

# %% [markdown]
# The two matrix products do almost all of the arithmetic, about D/2 = 32 FLOPs for every byte they must touch
# in float32. The mask and the softmax do well under one FLOP per byte: each reads a T×T matrix and writes
# another, and the processor spends the time waiting for memory, not computing. Yet they take a large share of
# the total (the table above). That is what *memory-bound* means, and it is why fusing the four steps into one
# pass that never writes the T×T matrices out pays even though it does not save a single FLOP.
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
ax2.plot(ells, color="C2")
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
        start = time.perf_counter()
        got = triton_attention(qi, ki, vi, causal=causal, block_m=32, block_n=32)
        elapsed = time.perf_counter() - start
        torch.testing.assert_close(
            got, F.scaled_dot_product_attention(qi, ki, vi, is_causal=causal), atol=1e-5, rtol=1e-5
        )
    print(f"triton_attention == SDPA on (1, 2, {Ti}, 64), causal and not")
    if tdev.type == "cpu":
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

print(f"causal attention, B={B} H={H} D={D}, {dtype}, {where}; time: median of 3 runs")
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
# here (a tile fits in cache, a T×T matrix does not); on a GPU, where each of those operators is a kernel
# launch, expect it to be the slowest of all. The full gain in speed needs the fusion that only a kernel
# (Triton, CUDA, or PyTorch's C++ CPU kernel) provides.
#
# ## Summary
#
# - Naive attention materialises T×T matrices: its peak memory grows quadratically, and its elementwise steps
#   (mask, softmax) are limited by memory traffic, not arithmetic.
# - The **online softmax** keeps a running max $m$ and sum $\ell$, rescaling by $e^{m_\text{old}-m_\text{new}}$;
#   applied to the output accumulator too, it gives exact attention one tile at a time.
# - **Tiled attention** never holds more than one block×block tile of scores: peak extra memory is linear in T
#   (fitted above). Its backward pass recomputes the tiles of P from Q, K and the saved logsumexp, so training
#   memory is linear too.
# - The **Triton kernel** is the same loop with the tile kept on chip; on a CPU its interpreter checks it.
# - PyTorch's SDPA picks a fused backend for you; `sdpa_kernel` shows and restricts which.
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
