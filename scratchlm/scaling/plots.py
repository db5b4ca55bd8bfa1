"""The figures of a scaling sweep, each drawn on a matplotlib `Axes` the caller provides (a lesson's subplot,
or a file written by `save_report_plots`).

    plot_loss_vs_flops(ax, records)        # a curve per model size and the compute frontier
    plot_isoflops(ax, fit.isoflops)        # the parabolas through each budget's runs, and their minima
    plot_optimal_scaling(ax_n, ax_d, fit.isoflops)  # N*(C) and D*(C) with the fitted exponents
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import NullFormatter

from scratchlm.files import atomic_write
from scratchlm.scaling.fits import IsoFLOPFit

# Published exponents of N* ∝ C^a, for comparison (D* ∝ C^(1-a) under C = 6ND)
KAPLAN_A = 0.73  # Kaplan et al. (2020)
CHINCHILLA_A = 0.50  # Hoffmann et al. (2022), approaches 1 and 2: 0.50 and 0.49


def _by_width(records: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["flops"]):
        groups.setdefault(r["width"], []).append(r)
    return dict(sorted(groups.items()))


def plot_loss_vs_flops(ax, records: Sequence[dict[str, Any]], loss: str = "final_val_loss") -> None:
    """Final loss against training FLOPs, one colour per model size (each run's evaluations during training as a
    faint curve behind), and the compute frontier: the lowest loss reached at each budget. Runs without a loss
    (diverged) are left out."""
    records = [r for r in records if r.get(loss) is not None]
    groups = _by_width(records)
    colors = _colors(len(groups))
    for color, (width, runs) in zip(colors, groups.items(), strict=True):
        for r in runs:
            curve = [c for c in r["curve"] if c["step"] > 0]
            ax.plot(
                [c["tokens"] * r["flops_per_token"] for c in curve],
                [c["val_loss"] for c in curve],
                color=color,
                alpha=0.25,
                lw=0.8,
            )
        label = f"N={runs[0]['params'] / 1e3:,.0f}k (width {width})"
        ax.plot([r["flops"] for r in runs], [r[loss] for r in runs], "o-", color=color, label=label, ms=4)
    budgets = sorted({r["budget"] for r in records})
    best = [min((r for r in records if r["budget"] == c), key=lambda r: r[loss]) for c in budgets]
    ax.plot([r["flops"] for r in best], [r[loss] for r in best], "k--", lw=1.5, label="compute frontier", zorder=5)
    ax.set(xscale="log", xlabel="training FLOPs C", ylabel="validation loss (nats)", title="loss against compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def plot_isoflops(ax, fit: IsoFLOPFit) -> None:
    """Each budget's runs against N, the parabola fitted in log N, and its minimum (hollow when the profile is
    not valid: no minimum inside the sizes run)."""
    colors = _colors(len(fit.profiles))
    for color, p in zip(colors, fit.profiles, strict=True):
        ax.plot(p.sizes, p.losses, "o", color=color, ms=4)
        n = np.geomspace(p.sizes.min() / 1.3, p.sizes.max() * 1.3, 100)
        ax.plot(n, p.n_curve(n), "-", color=color, lw=1, label=f"C = {p.budget:.0e}")
        if p.n_curve.has_minimum:
            face = color if p.valid else "none"
            ax.plot(p.n_opt, p.loss_opt, "*", ms=12, color=color, markerfacecolor=face, markeredgecolor="k")
    ax.set(xscale="log", xlabel="parameters N", ylabel="validation loss (nats)", title="isoFLOP profiles")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def plot_optimal_scaling(ax_n, ax_d, fit: IsoFLOPFit, extra: Sequence[tuple[float, float, float, str]] = ()) -> None:
    """N*(C) on ax_n and D*(C) on ax_d, log-log, with the fitted power laws and, for comparison, lines of
    Kaplan's and Chinchilla's exponents through the same first point. `extra`: (C, N, D, label) points to add
    (a held-out run, say)."""
    valid = fit.valid_profiles
    if not valid:
        for ax in (ax_n, ax_d):
            ax.text(0.5, 0.5, "no valid isoFLOP minimum", transform=ax.transAxes, ha="center")
        return
    c = np.array([p.budget for p in valid])
    span = np.geomspace(c.min() / 2, max([c.max(), *(e[0] for e in extra)]) * 2, 50)
    for ax, values, law, name, ours_to_ref in (
        (ax_n, [p.n_opt for p in valid], fit.n_opt, "N*", (KAPLAN_A, CHINCHILLA_A)),
        (ax_d, [p.d_opt for p in valid], fit.d_opt, "D*", (1 - KAPLAN_A, 1 - CHINCHILLA_A)),
    ):
        ax.plot(c, values, "o", color="C0", label="isoFLOP minima")
        if law is not None:
            ax.plot(span, law(span), "-", color="C0", label=f"fit: {name} ∝ C^{law.exponent:.2f}")
        for exponent, style, who in ((ours_to_ref[0], ":", "Kaplan"), (ours_to_ref[1], "--", "Chinchilla")):
            ax.plot(span, values[0] * (span / c[0]) ** exponent, style, color="gray", label=f"{who}: C^{exponent:.2f}")
        ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", title=f"{name}(C)")
        ax.set_xticks(c, [f"{budget:.0e}" for budget in c])  # the budgets run, rather than powers of ten
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    for budget, n, d, label in extra:
        ax_n.plot(budget, n, "s", color="C3", label=label)
        ax_d.plot(budget, d, "s", color="C3", label=label)
    ax_n.set_ylabel("compute-optimal parameters N*")
    ax_d.set_ylabel("compute-optimal tokens D*")
    for ax in (ax_n, ax_d):
        ax.legend(fontsize=7)


def save_report_plots(records: Sequence[dict[str, Any]], fit: IsoFLOPFit, folder: str | Path) -> list[Path]:
    """Write loss_vs_flops.png, isoflops.png and optimal_scaling.png to `folder`; return their paths."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe from a command line or a thread

    folder = Path(folder)
    paths = []
    for name, draw, size in (
        ("loss_vs_flops.png", lambda fig: plot_loss_vs_flops(fig.subplots(), records), (7, 5)),
        ("isoflops.png", lambda fig: plot_isoflops(fig.subplots(), fit), (7, 5)),
        ("optimal_scaling.png", lambda fig: plot_optimal_scaling(*fig.subplots(1, 2), fit), (11, 4.5)),
    ):
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        path = folder / name
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        paths.append(path)
    return paths


def _colors(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(n, 1))][:n]
