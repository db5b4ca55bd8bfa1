"""Scaling laws, measured: what a run costs (`flops`), a resumable sweep of model sizes × compute budgets
(`sweep`), the Chinchilla fits of its results (`fits`) and their plots (`plots`, imported on use: matplotlib).

    grid = sweep_grid("cpu")
    records = run_sweep(grid, "runs/scaling")                 # resumable; results.jsonl, one line per run
    fit = fit_sweep(records)        # approach 2: fit.isoflops (N*(C) ∝ C^a, D*(C) ∝ C^b)
                                    # approach 3: fit.loss_law.law, L(N, D) = E + A/N^α + B/D^β
"""

from scratchlm.scaling.fits import (
    BESIROGLU,
    CHINCHILLA,
    FitError,
    Interval,
    IsoFLOPFit,
    IsoFLOPProfile,
    LossLaw,
    LossLawFit,
    Parabola,
    PowerLaw,
    bootstrap_isoflop_exponents,
    fit_isoflop,
    fit_isoflops,
    fit_loss_law,
    fit_parabola,
    fit_power_law,
)
from scratchlm.scaling.flops import (
    attention_flops_per_token,
    flops_per_token,
    measure_training_flops,
    non_embedding_params,
    training_flops,
)
from scratchlm.scaling.sweep import (
    GRID_FILENAME,
    GRIDS,
    RESULTS_FILENAME,
    SweepFit,
    SweepGrid,
    SweepPoint,
    append_result,
    fit_sweep,
    predicted_optimum,
    read_results,
    run_point,
    run_sweep,
    sweep_grid,
    sweep_splits,
)

__all__ = [
    "BESIROGLU",
    "CHINCHILLA",
    "GRIDS",
    "GRID_FILENAME",
    "RESULTS_FILENAME",
    "FitError",
    "Interval",
    "IsoFLOPFit",
    "IsoFLOPProfile",
    "LossLaw",
    "LossLawFit",
    "Parabola",
    "PowerLaw",
    "SweepFit",
    "SweepGrid",
    "SweepPoint",
    "append_result",
    "attention_flops_per_token",
    "bootstrap_isoflop_exponents",
    "fit_isoflop",
    "fit_isoflops",
    "fit_loss_law",
    "fit_parabola",
    "fit_power_law",
    "fit_sweep",
    "flops_per_token",
    "measure_training_flops",
    "non_embedding_params",
    "predicted_optimum",
    "read_results",
    "run_point",
    "run_sweep",
    "sweep_grid",
    "sweep_splits",
    "training_flops",
]
