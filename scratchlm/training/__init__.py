"""Training: what a run depends on (`config`), one step and one loss estimate (`step`), and the loop that
resolves a run once and calls them (`loop`).

    from scratchlm.training import preset, train
    result = train(preset("smoke", max_iters=100))
"""

from scratchlm.training.config import DTYPES, PRESETS, TrainConfig, lr_at, preset
from scratchlm.training.loop import (
    Callback,
    Run,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    evaluate,
    prepare_run,
    run_training,
    train,
)
from scratchlm.training.step import (
    StepResult,
    autocast_for,
    compile_model,
    estimate_loss,
    make_optimizer,
    param_groups,
    resolve_dtype,
    train_step,
)

__all__ = [
    "DTYPES",
    "PRESETS",
    "Callback",
    "Run",
    "StepResult",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "autocast_for",
    "compile_model",
    "estimate_loss",
    "evaluate",
    "lr_at",
    "make_optimizer",
    "param_groups",
    "prepare_run",
    "preset",
    "resolve_dtype",
    "run_training",
    "train",
    "train_step",
]
