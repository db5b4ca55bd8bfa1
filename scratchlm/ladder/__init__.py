"""The ladder: every lesson's model on one fixed budget, scored in bits per byte on the same held-out text.

Each lesson's own experiment has its own budget, so their losses cannot be compared. The ladder trains every
model the course builds with the same recipe on the same training text (same bytes, batches, schedule and
seeds; `LadderBudget`), and scores each on the same held-out characters in bits per byte, which compares a
character model with a BPE one. The gap between two rungs is what one component buys.

    from scratchlm.ladder import RUNGS, run_rung, run_ladder, show_ladder

    RUNGS                                        # bigram, one-head, multi-head, +mlp, +residual+layernorm, gpt,
                                                 # gpt-bpe, tiled-attention, rope, gqa (`rungs` says what each adds)
    result = run_rung("one-head", seed=0)        # train and score one rung: a dict (bits_per_byte, val_loss,
                                                 # params, seconds, tokens, ...; `run` lists the fields)
    show_ladder(highlight=["one-head"], measured=[result])   # the committed table and plot, this lesson's
                                                             # rungs marked, the fresh value beside the committed
    results = run_ladder(seeds=(0, 1))           # every rung and seed (python -m scratchlm ladder does this)
    write_ladder(results); read_ladder()         # the committed file, RESULTS_PATH
    add_result(results, result)                  # a new (rung, seed) appended, a measured one replaced
    print(ladder_table(results)); plot_ladder(results, highlight=..., measured=..., ax=None)

Budgets (`BUDGETS`, chosen by `scratchlm.runtime.run_mode` unless given): "smoke" (seconds per rung), "cpu"
(about a minute per GPT rung on one thread), "gpu".
"""

from scratchlm.ladder.budget import BUDGETS, LadderBudget, budget
from scratchlm.ladder.report import (
    RESULTS_PATH,
    add_result,
    check_same_budget,
    ladder_table,
    mean_bits_per_byte,
    plot_ladder,
    read_ladder,
    show_ladder,
    write_ladder,
)
from scratchlm.ladder.run import LadderData, ladder_data, resolve_budget, run_ladder, run_rung, train_config
from scratchlm.ladder.rungs import LADDER, RUNGS, EmbeddedLM, Rung, get_rung

__all__ = [
    "BUDGETS",
    "LADDER",
    "RESULTS_PATH",
    "RUNGS",
    "EmbeddedLM",
    "LadderBudget",
    "LadderData",
    "Rung",
    "add_result",
    "budget",
    "check_same_budget",
    "get_rung",
    "ladder_data",
    "ladder_table",
    "mean_bits_per_byte",
    "plot_ladder",
    "read_ladder",
    "resolve_budget",
    "run_ladder",
    "run_rung",
    "show_ladder",
    "train_config",
    "write_ladder",
]
