"""Memory-efficient attention in plain PyTorch, the algorithm of FlashAttention (lesson 07).

Naive attention materialises the (T_q, T_k) score matrix of every head. The tiled version walks over blocks
of queries and, inside each, blocks of keys, keeping per query row only a running max `m`, a running sum `l`
and an output accumulator: the online softmax. Extra memory is O(T·D) for the output plus O(block²) of
scratch, instead of O(T²).

The backward pass recomputes the block scores from q, k and the saved per-row logsumexp rather than storing
the attention weights, so training memory stays linear in T as well.

All three take tensors shaped like `F.scaled_dot_product_attention`: q (B, H, T_q, D), k (B, H, T_k, D),
v (B, H, T_k, D_v) → out (B, H, T_q, D_v). Float16 and bfloat16 inputs are accumulated in float32.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

DEFAULT_BLOCK_SIZE = 128


def online_softmax(x: torch.Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> torch.Tensor:
    """Softmax over the last dimension, reading `x` one block at a time.

    The first pass keeps a running max `m` and a running sum `l` of exp(x - m); when a block raises the max,
    the sum so far is rescaled by exp(m_old - m_new). The second pass normalises. Equals `torch.softmax(x, -1)`.
    """
    _check_block_size(block_size)
    acc_dtype = _accumulation_dtype(x.dtype)
    m_i = torch.full(x.shape[:-1], -math.inf, dtype=acc_dtype, device=x.device)  # running max
    l_i = torch.zeros(x.shape[:-1], dtype=acc_dtype, device=x.device)  # running sum of exp(x - m_i)
    for start in range(0, x.shape[-1], block_size):
        block = x[..., start : start + block_size].to(acc_dtype)
        m_new = torch.maximum(m_i, block.amax(-1))
        l_i = l_i * _exp_diff(m_i, m_new) + _exp_diff(block, m_new.unsqueeze(-1)).sum(-1)
        m_i = m_new
    return (_exp_diff(x.to(acc_dtype), m_i.unsqueeze(-1)) / l_i.unsqueeze(-1)).to(x.dtype)


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True, scale: float | None = None
) -> torch.Tensor:
    """Attention written out: the full (B, H, T_q, T_k) scores, the mask, the softmax, the weighted sum.

    The reference that the tiled kernels are checked against, and the memory baseline they beat.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if causal:
        T_q, T_k = q.shape[-2], k.shape[-2]
        mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    scale: float | None = None,
) -> torch.Tensor:
    """Exact attention in blocks of `block_size` queries × `block_size` keys, never forming the T×T matrix.

    q (B, H, T_q, D), k (B, H, T_k, D), v (B, H, T_k, D_v) → (B, H, T_q, D_v), in q's dtype; equals
    `F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)`. With `causal`, query i attends
    keys <= i and T_q must equal T_k. Differentiable: backward recomputes the block scores (see module doc).
    """
    _check_inputs(q, k, v, causal)
    _check_block_size(block_size)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _TiledAttention.apply(q, k, v, causal, scale, block_size)


class _TiledAttention(torch.autograd.Function):
    """Saves q, k, v, out and the per-row logsumexp; nothing of size T_q × T_k survives the forward."""

    @staticmethod
    def forward(ctx, q, k, v, causal, scale, block_size):
        out, lse = tiled_forward(q, k, v, causal, scale, block_size)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale, ctx.block_size = causal, scale, block_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_backward(q, k, v, out, lse, dout, ctx.causal, ctx.scale, ctx.block_size)
        return dq, dk, dv, None, None, None


def tiled_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass without autograd: returns out (B, H, T_q, D_v) in q's dtype and the per-row
    logsumexp (B, H, T_q) of the scaled, masked scores in the accumulation dtype (float32 for 16-bit inputs).
    """
    acc_dtype = _accumulation_dtype(q.dtype)
    *batch, T_q, _ = q.shape
    T_k, D_v = v.shape[-2], v.shape[-1]
    out = torch.empty(*batch, T_q, D_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(*batch, T_q, dtype=acc_dtype, device=q.device)
    for qs in range(0, T_q, block_size):
        qe = min(qs + block_size, T_q)
        q_blk = q[..., qs:qe, :].to(acc_dtype) * scale
        m_i = torch.full((*batch, qe - qs, 1), -math.inf, dtype=acc_dtype, device=q.device)  # running max
        l_i = torch.zeros_like(m_i)  # running sum of exp(s - m_i)
        acc = torch.zeros(*batch, qe - qs, D_v, dtype=acc_dtype, device=q.device)
        # causal: key blocks that start after this block's last query are entirely masked, so never visited
        for ks in range(0, qe if causal else T_k, block_size):
            ke = min(ks + block_size, T_k)
            s = q_blk @ k[..., ks:ke, :].to(acc_dtype).transpose(-2, -1)
            if causal and ke - 1 > qs:  # the block reaches above the diagonal
                s = s.masked_fill(_above_diagonal(qs, qe, ks, ke, q.device), -math.inf)
            m_new = torch.maximum(m_i, s.amax(-1, keepdim=True))
            p = _exp_diff(s, m_new)
            alpha = _exp_diff(m_i, m_new)  # rescales what was accumulated under the old max
            l_i = l_i * alpha + p.sum(-1, keepdim=True)
            acc = acc * alpha + p @ v[..., ks:ke, :].to(acc_dtype)
            m_i = m_new
        out[..., qs:qe, :] = acc / l_i
        lse[..., qs:qe] = (m_i + l_i.log()).squeeze(-1)
    return out, lse


def tiled_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    dout: torch.Tensor,
    causal: bool,
    scale: float,
    block_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of attention from the saved q, k, v, out and logsumexp, recomputing P block by block.

    With S = scale·QKᵀ and P = exp(S - lse): dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP - δ) where
    δ_i = Σ_d dO_id O_id (equal to Σ_j P_ij dP_ij), dQ = scale·dS K and dK = scale·dSᵀ Q.
    """
    acc_dtype = _accumulation_dtype(q.dtype)
    T_q, T_k = q.shape[-2], k.shape[-2]
    dout = dout.to(acc_dtype)
    delta = (dout * out.to(acc_dtype)).sum(-1, keepdim=True)  # (B, H, T_q, 1)
    dq = torch.zeros(q.shape, dtype=acc_dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=acc_dtype, device=q.device)
    dv = torch.empty(v.shape, dtype=acc_dtype, device=q.device)
    for ks in range(0, T_k, block_size):
        ke = min(ks + block_size, T_k)
        k_blk, v_blk = k[..., ks:ke, :].to(acc_dtype), v[..., ks:ke, :].to(acc_dtype)
        dk_blk, dv_blk = torch.zeros_like(k_blk), torch.zeros_like(v_blk)
        # causal: queries before ks never see these keys; start at the query block that contains ks
        for qs in range((ks // block_size) * block_size if causal else 0, T_q, block_size):
            qe = min(qs + block_size, T_q)
            q_blk = q[..., qs:qe, :].to(acc_dtype)
            s = (q_blk @ k_blk.transpose(-2, -1)) * scale
            if causal and ke - 1 > qs:
                s = s.masked_fill(_above_diagonal(qs, qe, ks, ke, q.device), -math.inf)
            p = torch.exp(s - lse[..., qs:qe, None])  # the forward's weights, recomputed
            do_blk = dout[..., qs:qe, :]
            dv_blk += p.transpose(-2, -1) @ do_blk
            ds = p * (do_blk @ v_blk.transpose(-2, -1) - delta[..., qs:qe, :])
            dq[..., qs:qe, :] += (ds @ k_blk) * scale
            dk_blk += (ds.transpose(-2, -1) @ q_blk) * scale
        dk[..., ks:ke, :] = dk_blk
        dv[..., ks:ke, :] = dv_blk
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _above_diagonal(qs: int, qe: int, ks: int, ke: int, device: torch.device) -> torch.Tensor:
    """(qe-qs, ke-ks) boolean mask of the keys a query may not see: key index > query index."""
    rows = torch.arange(qs, qe, device=device)[:, None]
    cols = torch.arange(ks, ke, device=device)[None, :]
    return cols > rows


def _exp_diff(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """exp(x - m) with exp(-inf - (-inf)) taken as 0 rather than NaN (a row that has seen only masked keys)."""
    return torch.exp(x - torch.where(torch.isinf(m), torch.zeros_like(m), m))


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit inputs, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def _check_block_size(block_size: int) -> None:
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    if not (q.dim() == k.dim() == v.dim() >= 2):
        raise ValueError(f"q, k, v must have the same number (>= 2) of dims, got {q.dim()}, {k.dim()}, {v.dim()}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[-2] == 0:
        raise ValueError("attention over zero keys is undefined")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs T_q == T_k, got {q.shape[-2]} and {k.shape[-2]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
