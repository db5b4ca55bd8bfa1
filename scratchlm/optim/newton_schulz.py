"""Orthogonalising a matrix without an SVD: the quintic Newton–Schulz iteration of Muon.

The polar decomposition. Any matrix G (m, n) is U S Vᵀ, with U (m, r) and V (n, r) orthonormal columns and S
the r = min(m, n) singular values. Its orthogonal part is U Vᵀ: the same directions, every singular value
set to 1, the matrix nearest G among those with orthonormal rows or columns. Muon steps along U Vᵀ instead of
along the gradient, so that every direction the gradient points in moves by the same amount, however small
its singular value.

An odd polynomial acts on the singular values alone. With X = U S Vᵀ, X Xᵀ X = U S³ Vᵀ, so

    p(X) = a X + b (X Xᵀ) X + c (X Xᵀ)² X = U p(S) Vᵀ,   p(x) = a x + b x³ + c x⁵,

and iterating p drives every singular value towards wherever p's fixed point attracts it, keeping U and V.
Only matrix products are needed, which run fast (and in bfloat16) on any accelerator; an SVD does not.

Two preparations. Dividing G by its Frobenius norm first puts every singular value in (0, 1]
(‖G‖_F² = Σ σᵢ² ≥ σ_max²), the interval the coefficients are tuned for. And the products are taken on the
short side: a tall X (m > n) is transposed first, so X Xᵀ is (n, n), the smaller Gram matrix.

The coefficients. The classic cubic (1.5, -0.5, 0) converges to exactly 1 but slowly from small σ (its slope at
0 is 1.5). Keller Jordan's quintic `QUINTIC` = (3.4445, -4.7750, 2.0315) has slope 3.4445 at 0, so small
singular values grow about 3.4445⁵ ≈ 490 times in five steps, at the price of not converging to 1 exactly:
its iterates oscillate in a band around 1. Iterating p five times on a fine grid of x in (0, 1] (the test
suite does the same) gives the band `QUINTIC_BAND`: every singular value with σ / ‖G‖_F ≥ `QUINTIC_FLOOR` =
0.0016 ends in [0.68, 1.21], and no singular value ends above 1.21. Below the floor a direction is still only
amplified (about 490-fold), not orthogonalised: a matrix of condition number 1e4 keeps its weakest directions
small. Muon does not need exactness: an update whose singular values lie in [0.68, 1.21] trains as well as
U Vᵀ, and five cheap steps suffice.
"""

from __future__ import annotations

import torch

QUINTIC = (3.4445, -4.7750, 2.0315)  # Keller Jordan's coefficients of p(x) = a x + b x^3 + c x^5
QUINTIC_STEPS = 5
QUINTIC_BAND = (0.68, 1.21)  # where 5 steps of QUINTIC send every sigma / ||G||_F >= QUINTIC_FLOOR
QUINTIC_FLOOR = 0.0016


def quintic_on_singular_values(x: torch.Tensor, steps: int = QUINTIC_STEPS, coefficients=QUINTIC) -> torch.Tensor:
    """What `newton_schulz` does to each normalised singular value x = σ / ‖G‖_F: p applied `steps` times."""
    a, b, c = coefficients
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


def newton_schulz(
    G: torch.Tensor,
    steps: int = QUINTIC_STEPS,
    coefficients: tuple[float, float, float] = QUINTIC,
    dtype: torch.dtype = torch.float32,
    eps: float = 1e-7,
) -> torch.Tensor:
    """An approximately orthogonal U S' Vᵀ for G = U S Vᵀ (..., m, n), S' in `QUINTIC_BAND` (see the module).

    G may carry leading batch dimensions (each trailing matrix is treated alone). The products run in `dtype`
    (float32 by default; bfloat16 halves the time on GPUs that support it, its rounding widens the band a
    little); the result comes back in G's dtype. eps keeps an all-zero G at zero instead of NaN.
    """
    a, b, c = coefficients
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT  # work with the (n, n) Gram matrix, the smaller one
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)  # every singular value now in (0, 1]
    X = X.reshape(-1, *X.shape[-2:]).contiguous()  # one batch dimension for baddbmm, rows in memory order
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b A + c A², the scaling and sum inside the product
        X = torch.baddbmm(X, B, X, beta=a)  # a X + B X
    X = X.reshape(G.shape[:-2] + X.shape[-2:])
    if tall:
        X = X.mT
    return X.to(G.dtype)
