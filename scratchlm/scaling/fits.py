"""Fitting scaling laws to measured losses, the two ways Hoffmann et al. (2022, "Chinchilla") did.

Approach 2, isoFLOP profiles: at each compute budget C, the final loss of models of different sizes traces a
valley in log N; a parabola through it has its minimum at the compute-optimal size N*(C), and D*(C) is what the
budget buys a model of that size. Power laws through those minima give N* ∝ C^a and D* ∝ C^b.

    profiles = [fit_isoflop(budget, sizes, tokens, losses) for each budget]
    n_law = fit_power_law(budgets, [p.n_opt for p in profiles])          # N*(C) = k · C^a

Approach 3, a parametric loss: L(N, D) = E + A / N^α + B / D^β fitted to every run at once, by minimising the
Huber loss (δ = 1e-3) between the predicted and the measured log-loss with L-BFGS, started from a grid of
initial values and keeping the best fit (Hoffmann et al., appendix D.2). Besiroglu et al. (2024), re-fitting
Chinchilla's data, traced its optimizer's early stop to the scale of the objective; ours is the plain sum of the
Huber terms, in float64, with tolerances far below it.

    law = fit_loss_law(sizes, tokens, losses)
    law(N, D), law.a, law.compute_optimal(C)

Numbers in, numbers out: arrays of N, D, C and losses (NumPy or lists); nothing here knows about training.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from scratchlm.errors import ScratchLMError

ArrayLike = Sequence[float] | np.ndarray


class FitError(ScratchLMError):
    """Data a fit cannot use: too few points, non-positive values, mismatched lengths."""


def _positive_arrays(**arrays: ArrayLike) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays.values()]
    lengths = {len(a) for a in out}
    if len(lengths) != 1:
        raise FitError(f"{', '.join(arrays)} must have the same length, got {[len(a) for a in out]}")
    for name, a in zip(arrays, out, strict=True):
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise FitError(f"{name} must be positive and finite, got {a.tolist()}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Power laws
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · x^exponent."""

    coefficient: float
    exponent: float

    def __call__(self, x: ArrayLike | float) -> np.ndarray | float:
        return self.coefficient * np.asarray(x, dtype=np.float64) ** self.exponent


def fit_power_law(x: ArrayLike, y: ArrayLike) -> PowerLaw:
    """Least squares on log y = log k + a · log x (a straight line on log-log axes). Needs two points or more."""
    x, y = _positive_arrays(x=x, y=y)
    if len(x) < 2 or np.ptp(np.log(x)) == 0:
        raise FitError(f"a power law needs at least two distinct x values, got {x.tolist()}")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return PowerLaw(coefficient=float(np.exp(intercept)), exponent=float(slope))


# ----------------------------------------------------------------------------------------------------------------
# Approach 2: isoFLOP profiles
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parabola:
    """loss = c2 · u² + c1 · u + c0 with u = ln x: a parabola on a log axis."""

    c2: float
    c1: float
    c0: float

    @property
    def has_minimum(self) -> bool:
        return self.c2 > 0

    @property
    def argmin(self) -> float:
        """The x (not ln x) of the vertex; nan when the parabola opens downwards."""
        return math.exp(-self.c1 / (2 * self.c2)) if self.has_minimum else math.nan

    @property
    def minimum(self) -> float:
        return self.c0 - self.c1**2 / (4 * self.c2) if self.has_minimum else math.nan

    def __call__(self, x: ArrayLike | float) -> np.ndarray | float:
        u = np.log(np.asarray(x, dtype=np.float64))
        return self.c2 * u**2 + self.c1 * u + self.c0


def fit_parabola(x: ArrayLike, losses: ArrayLike) -> Parabola:
    """Least-squares parabola of `losses` in ln x (three points or more)."""
    x, losses = _positive_arrays(x=x, losses=losses)
    if len(np.unique(x)) < 3:
        raise FitError(f"a parabola needs at least three distinct x values, got {x.tolist()}")
    c2, c1, c0 = np.polyfit(np.log(x), losses, 2)
    return Parabola(float(c2), float(c1), float(c0))


@dataclass(frozen=True)
class IsoFLOPProfile:
    """The runs of one compute budget and the parabola through their losses in ln N.

    `valid`: the parabola opens upwards and its minimum lies inside the sizes that were run; an extrapolated
    minimum is not a measurement, so invalid profiles are left out of the power laws.
    """

    budget: float
    sizes: np.ndarray
    tokens: np.ndarray
    losses: np.ndarray
    n_curve: Parabola

    @property
    def n_opt(self) -> float:
        return self.n_curve.argmin

    @property
    def d_opt(self) -> float:
        """The tokens the budget buys a model of N* parameters: ln D interpolated in ln N through the runs
        (a quadratic, exact for C = 6ND and for attention's extra term alike)."""
        if not self.n_curve.has_minimum:
            return math.nan
        u = np.log(self.sizes)
        coeffs = np.polyfit(u, np.log(self.tokens), min(2, len(u) - 1))
        return float(np.exp(np.polyval(coeffs, math.log(self.n_opt))))

    @property
    def loss_opt(self) -> float:
        return self.n_curve.minimum

    @property
    def residuals(self) -> np.ndarray:
        """Measured minus fitted loss of each run (sorted by size): how far the runs are from a parabola."""
        return self.losses - self.n_curve(self.sizes)

    @property
    def valid(self) -> bool:
        return self.n_curve.has_minimum and bool(self.sizes.min() <= self.n_opt <= self.sizes.max())


def fit_isoflop(budget: float, sizes: ArrayLike, tokens: ArrayLike, losses: ArrayLike) -> IsoFLOPProfile:
    """Approach 2 at one budget: the parabola of the final losses in ln N, its minimum N*, and D* the tokens
    of a model of N* on this budget.

    Chinchilla takes D* = C / 6N*; with attention counted in C (`scratchlm.scaling.flops`) a model's tokens are
    not exactly C / 6N, so D* is read off the runs' own (N, D) pairs instead.
    """
    sizes, tokens, losses = _positive_arrays(sizes=sizes, tokens=tokens, losses=losses)
    order = np.argsort(sizes)
    sizes, tokens, losses = sizes[order], tokens[order], losses[order]
    return IsoFLOPProfile(float(budget), sizes, tokens, losses, fit_parabola(sizes, losses))


@dataclass(frozen=True)
class IsoFLOPFit:
    """Approach 2: a profile per budget and the power laws N*(C), D*(C) through the valid profiles' minima
    (None with fewer than two valid profiles)."""

    profiles: tuple[IsoFLOPProfile, ...]
    n_opt: PowerLaw | None
    d_opt: PowerLaw | None

    @property
    def valid_profiles(self) -> tuple[IsoFLOPProfile, ...]:
        return tuple(p for p in self.profiles if p.valid)


def fit_isoflops(budgets: ArrayLike, sizes: ArrayLike, tokens: ArrayLike, losses: ArrayLike) -> IsoFLOPFit:
    """Approach 2 over every run: group the runs by budget, fit each group's profile (groups of fewer than three
    sizes are skipped), then the power laws through the valid minima."""
    budgets, sizes, tokens, losses = _positive_arrays(budgets=budgets, sizes=sizes, tokens=tokens, losses=losses)
    profiles = []
    for budget in np.unique(budgets):
        at = budgets == budget
        if len(np.unique(sizes[at])) >= 3:
            profiles.append(fit_isoflop(budget, sizes[at], tokens[at], losses[at]))
    valid = [p for p in profiles if p.valid]
    n_law = d_law = None
    if len(valid) >= 2:
        c = [p.budget for p in valid]
        n_law = fit_power_law(c, [p.n_opt for p in valid])
        d_law = fit_power_law(c, [p.d_opt for p in valid])
    return IsoFLOPFit(tuple(profiles), n_law, d_law)


@dataclass(frozen=True)
class Interval:
    """A fitted value and its bootstrap interval: `low`..`high` holds `level` of the `resamples` refits that gave a
    value; `failed` refits gave none (fewer than two valid profiles: no power law to fit)."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int
    failed: int

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


def bootstrap_isoflop_exponents(
    budgets: ArrayLike,
    sizes: ArrayLike,
    tokens: ArrayLike,
    losses: ArrayLike,
    *,
    noise_sd: float | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[Interval, Interval]:
    """Percentile bootstrap intervals of approach 2's exponents: (a of N* ∝ C^a, b of D* ∝ C^b).

    noise_sd None, a bootstrap over runs: each refit draws, within every budget, as many runs as it has, with
    replacement (a budget left with fewer than three distinct sizes drops out of that refit, as in
    `fit_isoflops`). noise_sd σ, a bootstrap over seeds: each refit keeps the runs and adds N(0, σ²) to every loss,
    σ being the seed-to-seed standard deviation of one run's loss (measured by running points again with another
    seed). Refits whose profiles leave fewer than two valid minima count as `failed`, not as values.
    """
    budgets, sizes, tokens, losses = _positive_arrays(budgets=budgets, sizes=sizes, tokens=tokens, losses=losses)
    if not 0 < level < 1:
        raise FitError(f"level must be in (0, 1), got {level}")
    if noise_sd is not None and not (math.isfinite(noise_sd) and noise_sd >= 0):
        raise FitError(f"noise_sd must be >= 0 and finite, got {noise_sd}")
    full = fit_isoflops(budgets, sizes, tokens, losses)
    if full.n_opt is None:
        raise FitError("the runs give fewer than two valid isoFLOP profiles: there is no exponent to bootstrap")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(budgets == c) for c in np.unique(budgets)]
    a_values, b_values = [], []
    for _ in range(resamples):
        if noise_sd is None:
            pick = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
            fit = fit_isoflops(budgets[pick], sizes[pick], tokens[pick], losses[pick])
        else:
            noisy = losses + rng.normal(0.0, noise_sd, size=len(losses))
            fit = fit_isoflops(budgets, sizes, tokens, np.maximum(noisy, 1e-9))
        if fit.n_opt is not None:
            a_values.append(fit.n_opt.exponent)
            b_values.append(fit.d_opt.exponent)
    tail = 100 * (1 - level) / 2
    out = []
    for estimate, values in ((full.n_opt.exponent, a_values), (full.d_opt.exponent, b_values)):
        low, high = np.percentile(values, [tail, 100 - tail]) if values else (math.nan, math.nan)
        out.append(Interval(estimate, float(low), float(high), level, len(values), resamples - len(values)))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------------------------
# Approach 3: L(N, D) = E + A / N^alpha + B / D^beta
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A / N^α + B / D^β: E the loss of an ideal model of the data, A/N^α what a finite model
    loses, B/D^β what finite training loses."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, sizes: ArrayLike | float, tokens: ArrayLike | float) -> np.ndarray | float:
        n = np.asarray(sizes, dtype=np.float64)
        d = np.asarray(tokens, dtype=np.float64)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def a(self) -> float:
        """The exponent of N* ∝ C^a under C = 6ND: β / (α + β)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """The exponent of D* ∝ C^b under C = 6ND: α / (α + β)."""
        return self.alpha / (self.alpha + self.beta)

    def compute_optimal(self, budget: ArrayLike | float, flops_per_param_token: float = 6.0) -> tuple:
        """(N*, D*) minimising L under C = 6·N·D (Hoffmann et al.'s closed form):
        N* = G · (C/6)^a, D* = (C/6)^b / G with G = (αA / βB)^(1/(α+β))."""
        c = np.asarray(budget, dtype=np.float64) / flops_per_param_token
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return g * c**self.a, c**self.b / g


# Published fits, for comparison. Hoffmann et al. (2022) as printed in the paper (its appendix D.2); Besiroglu
# et al. (2024) re-fitted the same form to data reconstructed from Hoffmann et al.'s figures.
CHINCHILLA = LossLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
BESIROGLU = LossLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

# Hoffmann et al.'s grid of starting points, in the fitted variables (ln A, ln B, ln E, α, β)
INIT_GRID = {
    "ln_A": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "ln_B": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "ln_E": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}


def huber(residual: torch.Tensor, delta: float) -> torch.Tensor:
    """½r² for |r| ≤ δ, δ(|r| − ½δ) beyond: quadratic for small residuals, linear (robust) for outliers."""
    a = residual.abs()
    return torch.where(a <= delta, 0.5 * residual**2, delta * (a - 0.5 * delta))


def _huber_objective(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor, log_l: torch.Tensor, delta: float):
    """Sum over runs of Huber(log L̂ − log L), for one or many parameter rows theta = (ln A, ln B, ln E, α, β)."""
    ln_a, ln_b, ln_e, alpha, beta = theta.unbind(-1)
    terms = torch.stack(
        [
            ln_a[..., None] - alpha[..., None] * log_n,
            ln_b[..., None] - beta[..., None] * log_d,
            ln_e[..., None].expand(*ln_e.shape, log_n.numel()),
        ]
    )
    log_pred = torch.logsumexp(terms, dim=0)  # log(A/N^α + B/D^β + E), computed without overflow
    return huber(log_pred - log_l, delta).sum(-1)


@dataclass(frozen=True)
class LossLawFit:
    """A fitted `LossLaw`, the objective it reached and how many starting points ended within 1e-6 of it."""

    law: LossLaw
    objective: float
    starts: int
    converged_starts: int


def fit_loss_law(
    sizes: ArrayLike,
    tokens: ArrayLike,
    losses: ArrayLike,
    *,
    delta: float = 1e-3,
    refine: int = 8,
    max_iter: int = 500,
) -> LossLawFit:
    """Approach 3: fit L(N, D) = E + A/N^α + B/D^β to runs of N parameters, D tokens and final loss L.

    Minimises Σ Huber_δ(log L̂(N, D) − log L) over (ln A, ln B, ln E, α, β) with L-BFGS. Hoffmann et al. ran
    L-BFGS from every point of a 6·6·5·5·5 grid of starting values; we evaluate the objective at all 4,500
    of them at once, run L-BFGS from the `refine` best and keep the lowest objective reached.
    """
    sizes, tokens, losses = _positive_arrays(sizes=sizes, tokens=tokens, losses=losses)
    if len(sizes) < 5:
        raise FitError(f"L(N, D) has five parameters; fitting it needs at least five runs, got {len(sizes)}")
    log_n, log_d, log_l = (torch.tensor(np.log(a), dtype=torch.float64) for a in (sizes, tokens, losses))
    grid = torch.tensor(list(itertools.product(*INIT_GRID.values())), dtype=torch.float64)
    with torch.no_grad():
        start_values = _huber_objective(grid, log_n, log_d, log_l, delta)
    starts = grid[torch.argsort(start_values)[:refine]]

    results = []
    for start in starts:
        theta = start.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [theta],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure(theta=theta, optimizer=optimizer):
            optimizer.zero_grad()
            value = _huber_objective(theta, log_n, log_d, log_l, delta)
            value.backward()
            return value

        optimizer.step(closure)
        with torch.no_grad():
            value = _huber_objective(theta, log_n, log_d, log_l, delta).item()
        if math.isfinite(value):
            results.append((value, theta.detach()))
    if not results:
        raise FitError("L-BFGS diverged from every starting point")
    best_value, best = min(results, key=lambda r: r[0])
    ln_a, ln_b, ln_e, alpha, beta = best.tolist()
    law = LossLaw(E=math.exp(ln_e), A=math.exp(ln_a), B=math.exp(ln_b), alpha=alpha, beta=beta)
    converged = sum(1 for value, _ in results if value - best_value <= 1e-6 * max(1.0, abs(best_value)))
    return LossLawFit(law=law, objective=best_value, starts=len(starts), converged_starts=converged)
