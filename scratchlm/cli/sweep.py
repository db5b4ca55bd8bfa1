"""`python -m scratchlm sweep`: a scaling-law sweep (model sizes × compute budgets), resumable, and its report.

python -m scratchlm sweep --grid cpu --out runs/scaling      # run it; run it again to resume
python -m scratchlm sweep --report runs/scaling             # fit, print the constants, write the plots
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from scratchlm.cli.args import add_threads_argument, positive_int
from scratchlm.errors import ConfigError
from scratchlm.options import add_arguments, given_options
from scratchlm.runtime import THREADS_ENV, configure_threads, get_device, run_mode
from scratchlm.scaling import (
    BESIROGLU,
    CHINCHILLA,
    GRIDS,
    RESULTS_FILENAME,
    SweepGrid,
    fit_sweep,
    read_results,
    run_sweep,
    sweep_grid,
)

DEFAULT_OUT = "runs/scaling"


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (FLOPs, e.g. 1e12)") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of FLOPs, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="a scaling-law sweep: model sizes x compute budgets, resumable; --report fits it",
        description=(
            "Train every model width of a grid on every compute budget (D = C / FLOPs per token tokens, each run "
            "with its own warmup + cosine schedule), appending one JSON line per finished run to "
            f"OUT/{RESULTS_FILENAME}. Run the same command again to resume: finished runs are skipped and an "
            "interrupted one continues from its checkpoint. Grids: 'smoke' (seconds), 'cpu' (about ten minutes "
            "on 2 cores), 'gpu' (bigger). --report OUT fits the results (Chinchilla approaches 2 and 3), prints "
            "the constants and writes the plots."
        ),
    )
    p.add_argument("--grid", metavar="{" + ",".join(GRIDS) + "}", help="the grid (default: gpu on a GPU, else cpu)")
    p.add_argument(
        "--out", metavar="DIR", help=f"folder of the sweep's results and checkpoints (default {DEFAULT_OUT})"
    )
    p.add_argument("--report", metavar="DIR", help="fit the results in DIR, print the constants, write the plots")
    p.add_argument("--plots", metavar="DIR", help="where --report writes its plots (default: the sweep's folder)")
    p.add_argument("--widths", type=positive_int, nargs="+", metavar="W", help="model widths, replacing the grid's")
    p.add_argument("--budgets", type=_budget, nargs="+", metavar="C", help="compute budgets, replacing the grid's")
    add_threads_argument(p, "one")
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar (default: on)"
    )
    p.add_argument("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    add_arguments(p, SweepGrid, title="grid settings (override the grid's; defaults shown: the cpu grid's)",
                  defaults=GRIDS["cpu"])  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.report is not None:
        if args.out is not None or args.grid is not None:
            raise ConfigError("--report reads a finished sweep; it takes no --grid or --out")
        return report(Path(args.report), Path(args.plots) if args.plots else None)
    device = get_device(args.device)
    name = args.grid or ("gpu" if run_mode(device) == "gpu" else "cpu")
    overrides = given_options(args, SweepGrid)
    if args.widths:
        overrides["widths"] = tuple(args.widths)
    if args.budgets:
        overrides["budgets"] = tuple(args.budgets)
    grid = sweep_grid(name, **overrides)
    threads = configure_threads(args.threads or (None if device.type != "cpu" else _default_threads()))
    out = Path(args.out or DEFAULT_OUT)
    print(
        f"sweep '{name}' on {device} ({threads} threads): widths {', '.join(map(str, grid.widths))} x budgets "
        f"{', '.join(f'{c:.0e}' for c in grid.budgets)} FLOPs, {grid.depth} layers; results in {out}/"
    )
    start = time.perf_counter()
    records = run_sweep(grid, out, device=device, progress=args.progress)
    print(f"{len(records)} runs done ({time.perf_counter() - start:.0f} s in this call)")
    print(_runs_table(records))
    print(f"fit and plot them: python -m scratchlm sweep --report {out}")
    return 0


def _default_threads() -> int | None:
    """One thread unless SCRATCHLM_THREADS says otherwise: the sweep's models are small enough that a second
    thread adds little, and on a shared machine it can cost a lot."""
    return None if os.environ.get(THREADS_ENV) else 1


def _runs_table(records: list[dict]) -> str:
    lines = [f"{'run':<18}{'N':>10}{'D':>12}{'C':>10}{'epochs':>8}{'val loss':>10}{'wall s':>8}"]
    for r in records:
        loss = "diverged" if r.get("final_val_loss") is None else f"{r['final_val_loss']:.4f}"
        lines.append(
            f"{r['key']:<18}{r['params']:>10,}{r['tokens']:>12,}{r['flops']:>10.2e}{r['epochs']:>8.2f}"
            f"{loss:>10}{r['wall_s']:>8.1f}"
        )
    return "\n".join(lines)


def report(folder: Path, plots: Path | None) -> int:
    records = read_results(folder)
    if not records:
        raise ConfigError(f"no finished runs in {folder / RESULTS_FILENAME}")
    fit = fit_sweep(records)
    print(f"{len(records)} runs in {folder / RESULTS_FILENAME}")
    print(_runs_table(records))
    print("\napproach 2 (isoFLOP parabolas in log N):")
    for p in fit.isoflops.profiles:
        state = "" if p.valid else "  (no minimum inside the sizes run: left out)"
        print(f"  C={p.budget:.2e}: N*={p.n_opt:,.0f}  D*={p.d_opt:,.0f}  L*={p.loss_opt:.4f}{state}")
    iso = fit.isoflops
    if iso.n_opt is not None and iso.d_opt is not None:
        print(
            f"  N* = {iso.n_opt.coefficient:.3g} C^{iso.n_opt.exponent:.3f},  "
            f"D* = {iso.d_opt.coefficient:.3g} C^{iso.d_opt.exponent:.3f}   "
            "(Chinchilla: a = 0.49-0.50; Kaplan: a = 0.73)"
        )
    else:
        print("  fewer than two valid budgets: no power law")
    if fit.loss_law is not None:
        law = fit.loss_law.law
        print("approach 3 (L = E + A/N^alpha + B/D^beta, Huber on log-loss, L-BFGS):")
        for name, ref in (
            ("this sweep", law),
            ("Hoffmann et al. 2022", CHINCHILLA),
            ("Besiroglu et al. 2024", BESIROGLU),
        ):
            print(
                f"  {name:<22} E={ref.E:.3f} A={ref.A:.4g} B={ref.B:.4g} alpha={ref.alpha:.3f} beta={ref.beta:.3f}"
                f"  a={ref.a:.3f} b={ref.b:.3f}"
            )
    from scratchlm.scaling.plots import save_report_plots

    for path in save_report_plots(records, fit.isoflops, plots or folder):
        print(f"plot: {path}")
    return 0
