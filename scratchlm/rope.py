"""Rotary position embeddings (RoPE): encode a token's position by rotating its query and key vectors.

Learned absolute positions add a vector `wpe[t]` to the token embedding, so attention has to learn from data
how position t relates to position s. RoPE instead rotates each query and key by an angle proportional to its
position, just before the dot product, and the dot product of two rotated vectors depends only on the
*difference* of their positions. Nothing is learned, and the model never sees an absolute position at all.

The construction, for a head of size D (even): split the vector into D/2 pairs (x[2i], x[2i+1]) and read each
pair as one complex number z_i = x[2i] + 1j * x[2i+1]. Pair i turns at its own frequency

    theta_i = base ** (-2i / D),        i = 0 .. D/2 - 1

(fast for the first pairs, slowly for the last: a spectrum of wavelengths from 2*pi to about 2*pi*base), and
at position m it is multiplied by exp(1j * m * theta_i), a rotation by the angle m * theta_i. Written out with
real numbers, pair i becomes

    (x[2i] * cos(m theta_i) - x[2i+1] * sin(m theta_i),   x[2i] * sin(m theta_i) + x[2i+1] * cos(m theta_i)).

Why the score depends only on the offset: for real pairs, the dot product is the real part of one complex
number times the conjugate of the other, q . k = sum_i Re(q_i * conj(k_i)). Rotate q at position m and k at n:

    sum_i Re(q_i e^{i m theta_i} * conj(k_i e^{i n theta_i})) = sum_i Re(q_i conj(k_i) e^{i (m - n) theta_i}),

because conj(e^{i n theta}) = e^{-i n theta}. Only m - n is left: shifting both positions by s leaves every
attention score unchanged, and position 0 is the identity (rotation by angle 0). A rotation keeps lengths,
so RoPE changes no vector's norm either.

`apply_rope` is the form the model uses (real arithmetic on a precomputed cos/sin table from `rope_cache`);
`apply_rope_complex` is the complex-number definition above, kept as the reference it is tested against.
"""

from __future__ import annotations

import torch

from scratchlm.errors import ConfigError
from scratchlm.options import NON_NEGATIVE_INT, is_int


def _check_head_size(head_size: int) -> None:
    if not is_int(head_size) or head_size <= 0 or head_size % 2:
        raise ConfigError(f"RoPE rotates pairs of channels, so the head size must be even, got {head_size!r}")


def rope_frequencies(head_size: int, base: float = 10000.0) -> torch.Tensor:
    """theta_i = base^(-2i / D) for i = 0 .. D/2 - 1, in float64: (D/2,)."""
    _check_head_size(head_size)
    return base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)


def rope_cache(
    head_size: int,
    max_len: int,
    base: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angle m * theta_i for every position m < max_len and pair i: each (max_len, D/2).

    The angles are computed in float64 and rounded once to `dtype`, so a long table loses no precision.
    """
    NON_NEGATIVE_INT.check("max_len", max_len)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), rope_frequencies(head_size, base))
    return angles.cos().to(device=device, dtype=dtype), angles.sin().to(device=device, dtype=dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each interleaved pair (x[..., 2i], x[..., 2i+1]) of x by its angle.

    x: (B, H, T, D) queries or keys; cos, sin: (T, D/2), the rows of `rope_cache` for these T positions. Any
    layout works whose table broadcasts against x[..., :D/2]: the GPT's attention rotates (B, T, H, D) with
    (T, 1, D/2) tables. Returns a tensor shaped and typed like x.

    In float32 or float64 on a CPU or CUDA device the pairs are viewed as complex numbers and multiplied by
    cos + i sin, one vectorised operation (and one in the backward) where the real form takes six and an
    interleaving copy: on one CPU thread a (12, 64, 4, 20) rotation takes 54 us instead of 280. Elsewhere (other
    dtypes, other devices, and inside `torch.compile`, which fuses the real form but generates no code for complex
    operators: Inductor falls back to ATen for them and warns that it may be slower than eager) the real form
    below computes the same numbers.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if _complex_pairs_pay(x):
        pairs = torch.view_as_complex(_pair_view(x))
        return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (B, H, T, D/2): real and imaginary parts of each pair
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (B, H, T, D/2, 2)
    return rotated.flatten(-2)  # interleave the pairs again: (B, H, T, D)


def _complex_pairs_pay(x: torch.Tensor) -> bool:
    return (
        x.dtype in (torch.float32, torch.float64)
        and x.device.type in ("cpu", "cuda")
        and not torch.compiler.is_compiling()
    )


def _pair_view(x: torch.Tensor) -> torch.Tensor:
    """x (..., D) as (..., D/2, 2) in a layout `view_as_complex` accepts (a copy only where x's is not one)."""
    pairs = x.unflatten(-1, (-1, 2))
    viewable = pairs.stride(-1) == 1 and pairs.storage_offset() % 2 == 0
    if not (viewable and all(stride % 2 == 0 for stride in pairs.stride()[:-1])):
        pairs = pairs.clone(memory_format=torch.contiguous_format)  # a new storage: offset 0 (contiguous() keeps it)
    return pairs


def apply_rope_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Reference RoPE, literally the definition: view pairs as complex numbers and multiply by e^{i m theta}.

    x: (..., T, D); positions: int (T,) (or any shape broadcastable against x.shape[:-1]). Computed in
    complex128, returned in x's dtype.
    """
    head_size = x.size(-1)
    angles = positions.to(torch.float64)[..., None] * rope_frequencies(head_size, base).to(x.device)  # (T, D/2)
    rotation = torch.polar(torch.ones_like(angles), angles)  # e^{i m theta_i}
    pairs = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], head_size // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)
