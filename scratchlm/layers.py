"""The GPT's layers beyond `torch.nn`: Linear and GELU computed faster on the CPU, and the modern block's
RMSNorm, SiLU and ReLU² (`GPTConfig.norm`, `GPTConfig.mlp`).

`Linear` and `GELU` are `nn.Linear` and `nn.GELU` with the same parameters and the same functions.

Where the reference CPU recipe's training step spent its time with PyTorch's defaults (bench/README.md has the
profile and the figures):

- 60% in matrix products. PyTorch hands float32 `mm` and `addmm` to MKL, which does not use its AVX-512 kernels on
  AMD processors (about 90 GFLOP/s on one core of the benchmark machine, an AVX2 rate); oneDNN, the other CPU
  library in every PyTorch build, runs AVX-512 there (`ONEDNN_VERBOSE=1`: avx512_core, about 200 GFLOP/s).
  `linear` runs the forward product and both backward products through oneDNN's matmul
  (`torch.ops.mkldnn._linear_pointwise`).
- 11% in the tanh GELU: ATen's CPU `tanh` costs several times its `sigmoid`, and 0.5 * (1 + tanh(z)) = sigmoid(2z)
  gives the same function through the cheaper one (`gelu_tanh`).

Both were measured on an AMD processor. On an Intel one (a Sapphire Rapids VM, 2026-12-07) PyTorch's defaults were
the faster: MKL runs its AVX-512 kernels there, and with these two paths the `cpu` preset's step took 0.85x the
speed of nanoGPT's, 1.04x-1.05x without them (bench/train_throughput.py). So they are taken only where the processor is
not Intel's (`OWN_CPU_PATHS`); on Intel's `linear` and `gelu_tanh` are `F.linear` and `F.gelu`.

Elsewhere (other devices and dtypes, autocast, products too small to repay oneDNN's ~15 us per call, inside
`torch.compile`, or with `torch.backends.mkldnn.enabled = False`) they are `F.linear` and `F.gelu`, but for
`torch.compile` on the CPU, where the GELU is written as x * sigmoid(2z) in plain operations: Inductor fuses them,
and the tanh it would generate from `F.gelu` costs about twice the fused sigmoid form's whole kernel.
"""

from __future__ import annotations

import math
import platform

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_onednn_matmul = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None

# below about a million multiply-adds (rows x in x out) MKL's lower call overhead wins, as in token-by-token sampling
ONEDNN_MIN_MACS = 1 << 20


def cpu_vendor() -> str:
    """The processor's vendor string where the system names it ("GenuineIntel", "AuthenticAMD"), else ""."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:  # Linux
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()  # Windows: "Intel64 Family 6 ..., GenuineIntel"; elsewhere a name without vendor


def own_cpu_paths_pay(vendor: str) -> bool:
    """Whether this module's CPU paths beat PyTorch's defaults on a processor of `vendor`: measured yes on AMD's,
    no on Intel's (module docstring); processors of other or unknown vendors take them, as before the measurement."""
    return "Intel" not in vendor


OWN_CPU_PATHS = own_cpu_paths_pay(cpu_vendor())


def _plain_cpu_float32(*tensors: torch.Tensor) -> bool:
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def _use_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return (
        OWN_CPU_PATHS
        and _onednn_matmul is not None
        and torch.backends.mkldnn.enabled
        and x.dim() >= 2
        and x.numel() * weight.size(0) >= ONEDNN_MIN_MACS
        and _plain_cpu_float32(x, weight, *([] if bias is None else [bias]))
    )


def _matmul_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias) in oneDNN: a (..., k), b (n, k) -> (..., n). b may be any strided view; a
    non-contiguous `a` is copied first."""
    return _onednn_matmul(a, b, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b, its forward and both backward products in oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _matmul_t(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        g = grad.reshape(-1, grad.size(-1))  # (rows, out)
        if ctx.needs_input_grad[0]:
            grad_x = _matmul_t(grad, weight.t())  # dL/dx = g W
        if ctx.needs_input_grad[1]:
            rows = x.reshape(-1, x.size(-1))  # (rows, in)
            # dL/dW = g^T x. The left operand gets copied to be contiguous: transpose the narrower of the two.
            narrow_g = weight.size(0) <= weight.size(1)
            grad_w = _matmul_t(g.t(), rows.t()) if narrow_g else _matmul_t(rows.t(), g.t()).t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`: x (..., in), weight (out, in), bias (out,) or None -> x W^T + b, (..., out).

    On the CPU in float32 the products run in oneDNN rather than MKL (see the module docstring); the result is
    the same up to float32 rounding (the sums are added in another order).
    """
    if not _use_onednn(x, weight, bias):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _OneDNNLinear.apply(x, weight, bias)
    return _matmul_t(x, weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` (the same parameters, init and state_dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


# below about 65k elements ATen's single pass beats the five or so passes written out here (sampling, say)
GELU_MIN_NUMEL = 1 << 16
_GELU_K = 2 * math.sqrt(2 / math.pi)  # GPT-2's tanh(sqrt(2/pi) * (x + 0.044715 x^3)), doubled for the sigmoid
_GELU_A = 0.044715


def _gelu_gate(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(k x (1 + a x^2)), in place on one new tensor."""
    s = x * x
    return s.mul_(_GELU_A * _GELU_K).add_(_GELU_K).mul_(x).sigmoid_()


class _SigmoidTanhGELU(torch.autograd.Function):
    """GELU's tanh approximation x * sigmoid(k x (1 + a x^2)), k = 2 sqrt(2/pi), a = 0.044715, with its
    derivative s + x s (1 - s) k (1 + 3 a x^2), s the sigmoid, written out (in-place, few passes)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s = _gelu_gate(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        d = x * x
        d.mul_(3 * _GELU_A * _GELU_K).add_(_GELU_K).mul_(x)  # x dz/dx
        # s + x dz/dx s (1 - s) = s (1 + d - d s)
        return d.addcmul_(d, s, value=-1).add_(1).mul_(s).mul_(grad)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """`F.gelu(x, approximate="tanh")`, GPT-2's GELU; on the CPU in float32 through a sigmoid (module docstring)."""
    if torch.compiler.is_compiling() and x.device.type == "cpu":
        # Inductor fuses this into one kernel forward and one backward, and its exp is several times cheaper
        # than the tanh it would otherwise generate (SLEEF's); under compile on the CPU the sigmoid form is
        # what makes the compiled GELU cheap (bench/README.md)
        return x * torch.sigmoid(x * (_GELU_K + _GELU_A * _GELU_K * x * x))
    if not OWN_CPU_PATHS or x.numel() < GELU_MIN_NUMEL or not _plain_cpu_float32(x):
        return F.gelu(x, approximate="tanh")
    if torch.is_grad_enabled() and x.requires_grad:
        return _SigmoidTanhGELU.apply(x)
    return _gelu_gate(x).mul_(x)


class GELU(nn.GELU):
    """`nn.GELU` whose tanh approximation is computed by `gelu_tanh`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_tanh(x) if self.approximate == "tanh" else super().forward(x)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU (swish), x * sigmoid(x): GELU's smooth shape with an exact closed form; the gate of SwiGLU.

    Computed by `F.silu` in one pass; equal to x * torch.sigmoid(x) (tested).
    """
    return F.silu(x)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """ReLU(x)², the MLP activation of the Primer paper (So et al., 2021) and of current speedruns: zero for
    x < 0 like ReLU, but with a continuous derivative 2·max(x, 0)."""
    return F.relu(x).square()


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019): x / sqrt(mean(x²) + eps) * gain.

    LayerNorm without its two centring steps: no mean is subtracted and no bias added, so a (..., dim) input
    is only rescaled to unit RMS, then multiplied by a learned per-channel gain (initialised to 1). On an
    input whose mean is already zero it equals LayerNorm without bias. x (..., dim) -> (..., dim).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
