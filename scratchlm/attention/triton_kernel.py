"""The tiled attention forward of `scratchlm.attention.tiled` as a Triton kernel (lesson 07).

One Triton program computes one block of BLOCK_M query rows of one (batch, head): it loads its queries once,
loops over blocks of BLOCK_N keys with the online softmax (running max `m_i`, running sum `l_i`, rescaled
accumulator), and writes its rows of the output and their logsumexp. The score matrix only ever exists one
(BLOCK_M, BLOCK_N) tile at a time, in registers/SRAM.

Triton is imported on first use, never when this module is imported: it ships for Linux only. On a GPU the
kernel is compiled; on CPU tensors it runs under Triton's interpreter, which executes the same source with
NumPy (slowly) and must be switched on by setting `TRITON_INTERPRET=1` before triton is imported.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from typing import TYPE_CHECKING, Any

import torch

from scratchlm.attention.tiled import _check_inputs, tiled_backward
from scratchlm.errors import ScratchLMError

if TYPE_CHECKING:
    import triton.language as tl
else:
    tl = None  # bound to triton.language by `_kernel()`; the kernel body below resolves `tl` at launch

INTERPRET_ENV = "TRITON_INTERPRET"


class TritonUnavailableError(ScratchLMError):
    """Triton is not installed, or cannot run on these tensors (CPU tensors without the interpreter)."""


# lesson 07 prints this kernel: its arguments are grouped by tensor, a line each, on purpose
# fmt: off
def attention_forward_kernel(
    Q, K, V, Out, LSE,
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_ob, stride_oh, stride_ot, stride_od,
    H, T_q, T_k, scale,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    IS_CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    """One program: BLOCK_M query rows of one (batch, head). `triton.jit` is applied on first use (`_kernel`)."""
    pid_m = tl.program_id(0)  # which block of query rows
    pid_bh = tl.program_id(1)  # which (batch, head)
    b, h = pid_bh // H, pid_bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    # this program's queries stay loaded for the whole loop; padding rows/columns read as 0
    q = tl.load(q_base + rows[:, None] * stride_qt + offs_d[None, :] * stride_qd,
                mask=(rows[:, None] < T_q) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max of each row's scores
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp(score - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)  # running sum of exp(score - m_i) * v

    # causal: key blocks that start after this block's last row are fully masked, so the loop stops before them
    hi = tl.minimum((pid_m + 1) * BLOCK_M, T_k) if IS_CAUSAL else T_k
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k_t = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None] * stride_kd,  # (BLOCK_D, BLOCK_N)
                      mask=(cols[None, :] < T_k) & (offs_d[:, None] < HEAD_DIM), other=0.0)
        s = tl.dot(q, k_t, input_precision=INPUT_PRECISION) * scale
        visible = cols[None, :] < T_k
        if IS_CAUSAL:
            visible = visible & (cols[None, :] <= rows[:, None])
        s = tl.where(visible, s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)  # rescales everything accumulated under the old max
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * stride_vt + offs_dv[None, :] * stride_vd,
                    mask=(cols[:, None] < T_k) & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=INPUT_PRECISION)
        m_i = m_new

    acc = acc / l_i[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh + rows[:, None] * stride_ot + offs_dv[None, :] * stride_od
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=(rows[:, None] < T_q) & (offs_dv[None, :] < HEAD_DIM_V))
    tl.store(LSE + pid_bh * T_q + rows, m_i + tl.log(l_i), mask=rows < T_q)
# fmt: on


def triton_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_m: int = 64,
    block_n: int = 64,
    scale: float | None = None,
    allow_tf32: bool = False,
) -> torch.Tensor:
    """Attention by the Triton kernel: q (B, H, T_q, D), k (B, H, T_k, D), v (B, H, T_k, D_v) → (B, H, T_q, D_v).

    Same contract as `tiled_attention` (causal: query i attends keys <= i, T_q == T_k); float32, float16 or
    bfloat16 inputs, accumulated in float32. The kernel is forward only: if an input requires grad, the
    backward pass is `tiled_backward` in PyTorch, fed the kernel's saved logsumexp. With `allow_tf32`, float32
    matmuls use TF32 tensor cores on GPUs that have them (faster, about 1e-3 relative error).

    CUDA tensors run the compiled kernel. CPU tensors need Triton's interpreter (`TRITON_INTERPRET=1` set
    before triton is imported): it is for checking correctness, its timings mean nothing. The interpreter
    cannot do bfloat16 arithmetic, so there bfloat16 inputs are computed in float32 and the output cast back.
    """
    _check_inputs(q, k, v, causal)
    if q.dim() != 4:
        raise ValueError(f"triton_attention takes (B, H, T, D) tensors, got {q.dim()} dims")
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"triton_attention supports float32, float16 and bfloat16, not {q.dtype}")
    for name, size in (("block_m", block_m), ("block_n", block_n)):
        if size < 16 or size & (size - 1):
            raise ValueError(f"{name} must be a power of two >= 16 (tl.dot's minimum tile), got {size}")
    kernel = _kernel()
    if q.device.type != "cuda" and not _is_interpreted(kernel):
        raise TritonUnavailableError(
            f"Triton compiles for GPUs; to run it on {q.device.type} tensors switch on its interpreter by setting "
            f"the environment variable {INTERPRET_ENV}=1 before triton is imported (e.g. at the top of the script "
            "or notebook), or use scratchlm.attention.tiled_attention"
        )
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if q.dtype == torch.bfloat16 and _is_interpreted(kernel):
        # the interpreter keeps bfloat16 as raw uint16 bits and its tl.dot multiplies those bits (Triton's
        # docs: no bfloat16 arithmetic under TRITON_INTERPRET), so it gets the values in float32 instead
        out = _TritonAttention.apply(q.float(), k.float(), v.float(), causal, scale, (block_m, block_n, allow_tf32))
        return out.to(torch.bfloat16)
    return _TritonAttention.apply(q, k, v, causal, scale, (block_m, block_n, allow_tf32))


class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, options):
        out, lse = triton_forward(q, k, v, causal, scale, *options)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale, ctx.block_size = causal, scale, options[1]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_backward(q, k, v, out, lse, dout, ctx.causal, ctx.scale, ctx.block_size)
        return dq, dk, dv, None, None, None


def triton_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    scale: float,
    block_m: int = 64,
    block_n: int = 64,
    allow_tf32: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernel: one program per (query block, batch·head). Returns out and the float32 logsumexp."""
    triton = _import_triton()
    B, H, T_q, D = q.shape
    T_k, D_v = v.shape[-2], v.shape[-1]
    out = torch.empty(B, H, T_q, D_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, T_q, dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(T_q, block_m), B * H)
    with torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext():
        # fmt: off
        _kernel()[grid](
            q, k, v, out, lse,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(),
            H, T_q, T_k, scale,
            HEAD_DIM=D, HEAD_DIM_V=D_v,
            BLOCK_M=block_m, BLOCK_N=block_n,
            BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_DV=max(16, triton.next_power_of_2(D_v)),
            IS_CAUSAL=causal,
            INPUT_PRECISION="tf32" if allow_tf32 else "ieee",
        )
        # fmt: on
    return out, lse


def triton_available() -> bool:
    """True when triton can be imported (it is not checked whether a GPU or the interpreter can run it)."""
    try:
        _import_triton()
    except TritonUnavailableError:
        return False
    return True


def _import_triton() -> Any:
    try:
        import triton
    except ImportError as e:
        raise TritonUnavailableError(
            "triton is not installed (it is published for Linux only: pip install triton); "
            "use scratchlm.attention.tiled_attention instead"
        ) from e
    return triton


@functools.cache
def _kernel() -> Any:
    """`triton.jit` applied to the kernel, once per process; compiled or interpreted depending on
    TRITON_INTERPRET at that moment."""
    global tl
    triton = _import_triton()
    tl = importlib.import_module("triton.language")
    return triton.jit(attention_forward_kernel)


def _is_interpreted(kernel: Any) -> bool:
    return type(kernel).__name__ == "InterpretedFunction"
